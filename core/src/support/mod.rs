//! Pieces that several backends need: a log buffer with follow, readiness probes,
//! settling for locally retrying queues, time helpers, the last hour of each
//! function's traffic.

mod fanout;
pub mod history;
mod key_gate;
mod local_ack;
mod logs;
pub mod netns;
mod readiness;
mod secret_files;
mod task_subscription;

pub use fanout::FanoutRouter;
pub use history::{History, HistoryPoint};
pub use key_gate::{Held, KeyGate};
pub use local_ack::{DeadLetters, LocalAcker, RetryPolicy, Settled, deliver, retry_after};
pub use logs::LogBuffer;
pub use readiness::{probe, probe_endpoint};
pub use secret_files::{SecretDir, SecretFiles};
pub use task_subscription::TaskSubscription;

/// FNV-1a of `bytes`: a hash that is the same in every build and on every
/// platform (std's is not), for names and ids derived from other names.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// An error and its sources on one line: hyper's own message is often just
/// "client error (Connect)", the reason is in the sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A runtime's event stream from its broadcast sender. A reader that falls
/// behind loses events; it gets a [`RuntimeEvent::Resync`] in their place, so
/// it knows to list everything again rather than trust what it heard.
///
/// [`RuntimeEvent::Resync`]: crate::ports::RuntimeEvent::Resync
pub fn runtime_events(
    sender: &tokio::sync::broadcast::Sender<crate::ports::RuntimeEvent>,
) -> crate::ports::RuntimeEvents {
    use futures::StreamExt;
    use tokio_stream::wrappers::BroadcastStream;
    use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
    BroadcastStream::new(sender.subscribe())
        .map(|e| match e {
            Ok(e) => e,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                crate::ports::RuntimeEvent::Resync { reason: format!("{n} runtime events were missed") }
            }
        })
        .boxed()
}

#[cfg(test)]
mod stable_hash_tests {
    #[test]
    fn stable_hash_is_fnv1a() {
        // Published FNV-1a 64 test vectors: ids made from it must not change between releases.
        assert_eq!(super::stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::stable_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }
}

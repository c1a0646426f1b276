//! Pieces that several backends need: a log buffer with follow, readiness probes,
//! settling for locally retrying queues, time helpers.

mod fanout;
mod key_gate;
mod local_ack;
mod logs;
mod readiness;
mod task_subscription;

pub use fanout::FanoutRouter;
pub use key_gate::{Held, KeyGate};
pub use local_ack::{DeadLetters, LocalAcker, RetryPolicy, Settled, deliver, retry_after};
pub use logs::LogBuffer;
pub use readiness::probe;
pub use task_subscription::TaskSubscription;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

//! Pieces that several backends need: a log buffer with follow, readiness probes,
//! settling for locally retrying queues, time helpers.

mod local_ack;
mod logs;
mod readiness;

pub use local_ack::{DeadLetters, LocalAcker, RetryPolicy, Settled};
pub use logs::LogBuffer;
pub use readiness::probe;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

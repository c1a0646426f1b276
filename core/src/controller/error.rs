use std::time::Duration;

use crate::model::{FunctionName, Phase, ValidationError};
use crate::ports::{QueueError, RouterError, RuntimeError, StoreError};

/// Why a handler could not finish an event, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// What went wrong, for the status and the dead letter.
    pub message: String,
    /// Retry (nack) or give up (dead-letter now).
    pub retryable: bool,
}

impl HandlerError {
    /// An error that a retry can fix.
    pub fn retry(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true }
    }
    /// An error that no retry can fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false }
    }
}

macro_rules! from_port_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for HandlerError {
            fn from(e: $ty) -> Self {
                Self { retryable: e.is_retryable(), message: e.to_string() }
            }
        }
    )*};
}
from_port_error!(RuntimeError, RouterError, StoreError, QueueError);

/// Why a platform call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The input broke a rule; nothing was stored.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No such function.
    #[error("function `{0}` not found")]
    NotFound(FunctionName),
    /// Someone else changed the function at the same time; try again.
    #[error("function `{0}` was changed concurrently; try again")]
    Conflict(FunctionName),
    /// The function failed and will not be retried.
    #[error("function `{name}` failed: {message}")]
    Failed {
        /// The function.
        name: FunctionName,
        /// Why.
        message: String,
    },
    /// `wait_ready` ran out of time.
    #[error("function `{name}` not ready after {waited:?} (phase {}{})", phase.as_str(), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Timeout {
        /// The function.
        name: FunctionName,
        /// How long it waited.
        waited: Duration,
        /// Its phase when time ran out.
        phase: Phase,
        /// Its last message.
        message: Option<String>,
    },
    /// This process cannot answer that: e.g. logs, when the runtime runs in another process.
    #[error("{0}")]
    Unsupported(String),
    /// The builder is missing a part.
    #[error("platform is not configured: {0}")]
    Config(String),
    /// The queue failed; nothing was changed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The router failed during start-up.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// The runtime failed during start-up.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

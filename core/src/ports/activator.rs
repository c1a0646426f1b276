use async_trait::async_trait;

use crate::model::FunctionName;

/// Wakes a function that has no ready instance. The edge calls it when a
/// request arrives for such a function and holds the request until the route
/// gets an endpoint; the controller implements it. A small trait of its own,
/// so an edge never depends on the controller.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Activator: Send + Sync + 'static {
    /// Asks for an instance of `name`; returns once the request is accepted,
    /// not when the instance is ready (the new route says that).
    async fn activate(&self, name: &FunctionName) -> Result<(), ActivationError>;

    /// Tells the controller that the edge found `name`'s instances refusing
    /// connections (they died, or were removed behind the platform's back),
    /// so it reconciles the function now instead of at the next pass. The
    /// edge rate-limits this per function. Default: nothing (the pass heals it).
    async fn unreachable(&self, name: &FunctionName) -> Result<(), ActivationError> {
        let _ = name;
        Ok(())
    }
}

/// Why a function cannot be woken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// No such function.
    #[error("function `{0}` not found")]
    NotFound(FunctionName),
    /// The request could not be passed on now.
    #[error("cannot wake the function now: {0}")]
    Unavailable(String),
}

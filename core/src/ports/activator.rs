use async_trait::async_trait;

use crate::model::{Endpoint, FunctionName};

/// Wakes a function that has no ready instance. The edge calls it when a
/// request arrives for such a function and holds the request until the route
/// gets an endpoint; the controller implements it. A small trait of its own,
/// so an edge never depends on the controller.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Activator: Send + Sync + 'static {
    /// Asks for an instance of `name`. Returns once the ask is recorded
    /// ([`Activation::Requested`]: the new route will say when an instance is
    /// ready), or, where the activator could wake one in this process at once,
    /// with the endpoints that answer now ([`Activation::Ready`]: the edge may
    /// send waiting requests there before the route table follows).
    async fn activate(&self, name: &FunctionName) -> Result<Activation, ActivationError>;

    /// Tells the controller that the edge found `name`'s instances refusing
    /// connections (they died, or were removed behind the platform's back),
    /// so it reconciles the function now instead of at the next pass. The
    /// edge rate-limits this per function. Default: nothing (the pass heals it).
    async fn unreachable(&self, name: &FunctionName) -> Result<(), ActivationError> {
        let _ = name;
        Ok(())
    }
}

/// What an activation did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activation {
    /// The ask is recorded and the controller will start an instance; the
    /// route table tells the edge when it is ready.
    Requested,
    /// An instance was woken in this process and answers at these endpoints
    /// now (a paused instance, which was ready when it was paused). The route
    /// table follows with the same endpoints.
    Ready(Vec<Endpoint>),
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

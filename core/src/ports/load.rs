use crate::model::{Endpoint, FunctionName};

/// What the edge saw of one function's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionLoad {
    /// Requests being served right now.
    pub in_flight: usize,
    /// Requests started since the edge started (only ever grows), so a reader
    /// sees traffic that came and went between two looks.
    pub requests: u64,
}

/// The edge's view of traffic: the autoscaler's input.
///
/// Why a port of its own: the autoscaler lives in core and must not depend on
/// the gateway; any edge that counts requests per function can drive it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait LoadSource: Send + Sync + 'static {
    /// The load of every function the edge knows.
    fn load(&self) -> Vec<(FunctionName, FunctionLoad)>;

    /// Requests in flight to one instance's endpoint, counting those that
    /// started before the endpoint left the routes: an instance is stopped or
    /// paused only once this is 0. `None` when the edge does not count per
    /// endpoint (then a fixed drain time is all there is).
    fn endpoint_in_flight(&self, endpoint: &Endpoint) -> Option<usize> {
        let _ = endpoint;
        None
    }
}

//! The two small ports of asynchronous invocations: an edge hands accepted
//! requests to an [`InvocationIntake`]; the invoker sends them to functions
//! through a [`Dispatch`], which an edge implements with its own request path.

use std::time::Duration;

use async_trait::async_trait;

use crate::model::{AsyncPolicy, CallbackUrl, FunctionName, InvocationId, InvocationRequest, InvocationResponse};

/// Takes asynchronous invocations from an edge: records each durably and
/// tells whoever runs them. The edge answers `202 Accepted` only once
/// [`accept`](Self::accept) returned its id, so an accepted invocation
/// survives a crash that comes right after.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait InvocationIntake: Send + Sync + 'static {
    /// How `function`'s asynchronous invocations are taken (its body cap,
    /// whether `Authorization` is kept): read by an edge before the body.
    async fn policy(&self, function: &FunctionName) -> Result<AsyncPolicy, IntakeError>;

    /// Records `request` for `function`, to run as soon as it can.
    async fn accept(
        &self,
        function: &FunctionName,
        request: InvocationRequest,
        callback: Option<CallbackUrl>,
    ) -> Result<InvocationId, IntakeError>;
}

/// Why an invocation was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    /// No such function (or it is being deleted).
    #[error("function `{0}` not found")]
    NotFound(FunctionName),
    /// It could not be recorded now; nothing was accepted.
    #[error("cannot accept the invocation now: {0}")]
    Unavailable(String),
    /// The request breaks a rule of this deployment (a callback host outside
    /// the allow-list); nothing was accepted.
    #[error(transparent)]
    Invalid(#[from] crate::model::ValidationError),
}

/// Sends a request to a function and returns its answer, through an edge's
/// own path: routing, activation from zero and the in-flight counts the
/// autoscaler reads.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Dispatch: Send + Sync + 'static {
    /// Sends `request` to `function` with `headers` added (they replace any
    /// of the same name), waits at most `timeout`, and keeps at most
    /// `body_cap` bytes of the answer's body.
    async fn dispatch(
        &self,
        function: &FunctionName,
        request: &InvocationRequest,
        headers: Vec<(String, String)>,
        timeout: Duration,
        body_cap: usize,
    ) -> Result<Dispatched, DispatchError>;
}

/// A function's answer to a dispatched request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    /// Status, headers and the capped body.
    pub response: InvocationResponse,
    /// What `Retry-After` asked for, in seconds, if it said.
    pub retry_after: Option<Duration>,
}

/// Why a dispatched request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The edge could not be reached.
    #[error("cannot reach the edge: {0}")]
    Connect(String),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The exchange broke.
    #[error("{0}")]
    Failed(String),
}

/// Sends an invocation's outcome to its callback URL: one POST, with the
/// headers and body given, answered within `timeout`. The invoker decides
/// what is retried; an implementation only reports what happened.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CallbackSender: Send + Sync + 'static {
    /// POSTs `body` to `url`; the receiver's status, or why there is none.
    async fn post(
        &self,
        url: &CallbackUrl,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, DispatchError>;
}

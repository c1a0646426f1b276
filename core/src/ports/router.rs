use async_trait::async_trait;

use super::BoxError;
use crate::model::RouteTable;

/// The edge: serves `<name>.<domain>` from a route table.
///
/// `apply` is declarative and atomic: afterwards the edge serves exactly
/// `table`; on error it keeps serving the previous table. Applying the same
/// table twice is harmless.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Router: Send + Sync + 'static {
    /// Makes the edge serve exactly `table`.
    async fn apply(&self, table: &RouteTable) -> Result<(), RouterError>;
}

/// Why the edge refused or failed a table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// Something in the table cannot be served (the field says what).
    #[error("invalid `{field}`: {message}")]
    InvalidInput {
        /// What was wrong.
        field: String,
        /// The rule.
        message: String,
    },
    /// The edge rejected the new configuration (e.g. `nginx -t` failed); the previous one still serves.
    #[error("edge rejected the configuration: {0}")]
    Rejected(String),
    /// The edge cannot be reached now; try again.
    #[error("edge unavailable: {0}")]
    Unavailable(String),
    /// The backend failed.
    #[error("edge backend: {source}")]
    Backend {
        /// The underlying error.
        #[source]
        source: BoxError,
        /// Whether trying again can help.
        retryable: bool,
    },
}

impl RouterError {
    /// Whether applying again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RouterError::Unavailable(_) => true,
            RouterError::Backend { retryable, .. } => *retryable,
            RouterError::InvalidInput { .. } | RouterError::Rejected(_) => false,
        }
    }
}

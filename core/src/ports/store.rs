use async_trait::async_trait;

use super::BoxError;
use crate::model::{FunctionName, FunctionRecord};

/// The durable record of functions: spec, generation and status.
///
/// Writes compare and set on the generation, so two writers cannot both turn
/// generation 3 into 4. Contract checked by `testkit::store`.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// One function's record, if there is one.
    async fn get(&self, name: &FunctionName) -> Result<Option<FunctionRecord>, StoreError>;
    /// Every record, ordered by name.
    async fn list(&self) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Writes `record` if the stored generation of its function is `expected`
    /// (`None`: no record exists); otherwise fails with `Conflict` and writes nothing.
    async fn compare_and_set(&self, expected: Option<u64>, record: FunctionRecord) -> Result<(), StoreError>;
    /// Removes a record if its generation is `expected`; `NotFound` if there is none.
    async fn delete(&self, name: &FunctionName, expected: u64) -> Result<(), StoreError>;
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No record with that name.
    #[error("function `{0}` not found")]
    NotFound(FunctionName),
    /// The generation was not the one expected: someone else wrote first.
    #[error("function `{name}` changed: expected generation {expected:?}, found {actual:?}")]
    Conflict {
        /// The function.
        name: FunctionName,
        /// What the caller expected.
        expected: Option<u64>,
        /// What is stored.
        actual: Option<u64>,
    },
    /// The request broke a rule.
    #[error("invalid `{field}`: {message}")]
    InvalidInput {
        /// What was wrong.
        field: String,
        /// The rule.
        message: String,
    },
    /// The store cannot be reached now; try again.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend failed (I/O, a corrupt record).
    #[error("store backend: {source}")]
    Backend {
        /// The underlying error.
        #[source]
        source: BoxError,
        /// Whether trying again can help.
        retryable: bool,
    },
}

impl StoreError {
    /// Whether trying again can succeed (a `Conflict` can, after re-reading).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Conflict { .. } | StoreError::Unavailable(_) => true,
            StoreError::Backend { retryable, .. } => *retryable,
            StoreError::NotFound(_) | StoreError::InvalidInput { .. } => false,
        }
    }
}

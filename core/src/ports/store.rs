use async_trait::async_trait;

use super::BoxError;
use crate::model::{FunctionName, FunctionRecord};

/// The durable record of functions: what each is asked to be (spec,
/// generation, deleted, desired scale) and what was last observed.
///
/// Every write compares and sets on the record's `revision`, which the store
/// changes with every write (a store-wide counter, like etcd's revision, so a
/// record deleted and made again never reuses one). A writer reads, changes
/// what it owns and writes back with the revision it read; if anyone wrote in
/// between it gets `Conflict` and reads again. So a scale change never races a
/// deploy, and two writers cannot both turn generation 3 into 4.
/// Contract checked by `testkit::store`.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// One function's record, if there is one.
    async fn get(&self, name: &FunctionName) -> Result<Option<FunctionRecord>, StoreError>;
    /// Every record, ordered by name.
    async fn list(&self) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Writes `record` if the stored revision of its function is `expected`
    /// (`None`: no record exists); otherwise fails with `Conflict` and writes
    /// nothing. Returns the new revision (the `revision` field of `record` is
    /// ignored: the store sets it).
    async fn compare_and_set(&self, expected: Option<u64>, record: FunctionRecord) -> Result<u64, StoreError>;
    /// Removes a record if its revision is `expected`; `NotFound` if there is none.
    async fn delete(&self, name: &FunctionName, expected: u64) -> Result<(), StoreError>;
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No record with that name.
    #[error("function `{0}` not found")]
    NotFound(FunctionName),
    /// The revision was not the one expected: someone else wrote first.
    #[error("function `{name}` changed: expected revision {expected:?}, found {actual:?}")]
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

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

    /// One document of `kind` (see [`DocKey`]): what the platform keeps beside
    /// function records (asynchronous invocations and their results, cron
    /// marks, secrets), each kind in a key space of its own.
    async fn doc_get(&self, key: &DocKey) -> Result<Option<Doc>, StoreError>;
    /// Documents of `kind` that `query` selects, ordered by key.
    async fn doc_list(&self, kind: &DocKind, query: &DocQuery) -> Result<Vec<Doc>, StoreError>;
    /// Writes `value` at `key` if its stored revision is `expected` (`None`:
    /// no document exists), with fsync where the backend is durable; else
    /// `DocConflict` and nothing is written. Returns the new revision, taken
    /// from the same store-wide counter as the records'.
    async fn doc_put(&self, key: &DocKey, expected: Option<u64>, value: Vec<u8>) -> Result<u64, StoreError>;
    /// Removes a document if its revision is `expected`; `DocNotFound` if there is none.
    async fn doc_delete(&self, key: &DocKey, expected: u64) -> Result<(), StoreError>;
}

/// A Store shared with other processes that can tell when a record changes
/// (etcd's watch): a runtime worker then reconciles a function another node
/// changed at once, not at its next pass. Optional: the periodic pass is the
/// backstop, so a change this misses is repaired within one period.
pub trait StoreChanges: Send + Sync + 'static {
    /// Records as they change (written by anyone: the record; deleted: its
    /// name and `None`), from now on while the stream is held. It may skip
    /// changes when the reader falls behind or the backend reconnects.
    fn changes(&self) -> futures::stream::BoxStream<'static, (FunctionName, Option<FunctionRecord>)>;
}

/// A key space of documents: lowercase ASCII letters and `-`, 1 to 32 of them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocKind(String);

impl DocKind {
    /// A checked kind.
    pub fn new(kind: impl Into<String>) -> Result<Self, StoreError> {
        let kind = kind.into();
        if kind.is_empty() || kind.len() > 32 || !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(StoreError::InvalidInput {
                field: "kind".into(),
                message: format!("{kind:?}: 1 to 32 lowercase ASCII letters or `-`"),
            });
        }
        Ok(Self(kind))
    }
    /// The kind as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a document lives: its kind and its key within that kind. A key is
/// 1 to 512 bytes of printable ASCII (no spaces or control characters), so it
/// can stand in a file, a URL path segment or an etcd key as it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocKey {
    kind: DocKind,
    key: String,
}

impl DocKey {
    /// A checked key.
    pub fn new(kind: &DocKind, key: impl Into<String>) -> Result<Self, StoreError> {
        let key = key.into();
        if key.is_empty() || key.len() > 512 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StoreError::InvalidInput {
                field: "key".into(),
                message: format!("{key:?}: 1 to 512 printable ASCII characters, no spaces"),
            });
        }
        Ok(Self { kind: kind.clone(), key })
    }
    /// The kind.
    pub fn kind(&self) -> &DocKind {
        &self.kind
    }
    /// The key within the kind.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl std::fmt::Display for DocKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.0, self.key)
    }
}

/// Which documents of a kind a list returns: keys that start with `prefix`,
/// those after `after` only (for paging), at most `limit` of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocQuery {
    /// Keys start with this ("" for all).
    pub prefix: String,
    /// Keys sort after this one (the last key of the previous page).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

impl DocQuery {
    /// Up to `limit` documents whose key starts with `prefix`.
    pub fn prefix(prefix: impl Into<String>, limit: usize) -> Self {
        Self { prefix: prefix.into(), after: None, limit }
    }
    /// The same query, after `key`.
    pub fn after(mut self, key: impl Into<String>) -> Self {
        self.after = Some(key.into());
        self
    }
}

/// A stored document: opaque bytes (the core's typed wrappers write JSON) and
/// the revision of its last write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc {
    /// The key within its kind.
    pub key: String,
    /// What was written.
    pub value: Vec<u8>,
    /// The store-wide revision of the write.
    pub revision: u64,
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
    /// No document at that key.
    #[error("document `{0}` not found")]
    DocNotFound(DocKey),
    /// A document's revision was not the one expected: someone else wrote first.
    #[error("document `{key}` changed: expected revision {expected:?}, found {actual:?}")]
    DocConflict {
        /// The document.
        key: DocKey,
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
            StoreError::Conflict { .. } | StoreError::DocConflict { .. } | StoreError::Unavailable(_) => true,
            StoreError::Backend { retryable, .. } => *retryable,
            StoreError::NotFound(_) | StoreError::DocNotFound(_) | StoreError::InvalidInput { .. } => false,
        }
    }
}

//! pilotlight-redb: the durable [`Store`] in one redb file.
//!
//! Records are kept as JSON (the same shape the API shows) in one table keyed
//! by function name; every write is one redb write transaction, committed with
//! fsync before it returns, and the compare-and-set check runs inside that
//! transaction. Reading re-validates each record, so a file edited by hand
//! cannot smuggle an invalid name or image into the platform.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use pilotlight_core::model::{FunctionName, FunctionRecord};
use pilotlight_core::ports::{Doc, DocKey, DocKind, DocQuery, Store, StoreError};
use redb::{Database, ReadableTable, TableDefinition};

const FUNCTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("functions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Documents by (kind, key); a value is its revision (8 bytes, big-endian) then its bytes.
/// Added in the same schema version: an older file gains the table on open.
const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs");
/// The layout of the file; bumped when it changes incompatibly.
const SCHEMA_VERSION: u64 = 1;

/// A [`Store`] in one redb file.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    let retryable = matches!(e, redb::Error::Io(_));
    StoreError::Backend { source: Box::new(e), retryable }
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`, creating parent directories.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                "store file {} is already open (is another pilotlight running on this data directory?)",
                path.display()
            )),
            other => StoreError::Unavailable(format!("cannot open store file {}: {other}", path.display())),
        })?;
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(FUNCTIONS).map_err(backend)?;
            txn.open_table(DOCS).map_err(backend)?;
            let mut meta = txn.open_table(META).map_err(backend)?;
            let version = meta.get("schema_version").map_err(backend)?.map(|v| v.value());
            match version {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION).map_err(backend)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::Unavailable(format!(
                        "store file {} has schema version {other}; this build reads version {SCHEMA_VERSION}",
                        path.display()
                    )));
                }
            }
        }
        txn.commit().map_err(backend)?;
        tracing::debug!(path = %path.display(), "redb store open");
        Ok(Self { db: Arc::new(db), path })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Backend { source: Box::new(e), retryable: true })?
    }
}

fn decode(name: &str, bytes: &[u8]) -> Result<FunctionRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Backend {
        source: format!("record `{name}` cannot be read: {e}").into(),
        retryable: false,
    })
}

fn encode(record: &FunctionRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Backend { source: Box::new(e), retryable: false })
}

fn revision_of(table: &impl ReadableTable<&'static str, &'static [u8]>, name: &str) -> Result<Option<u64>, StoreError> {
    match table.get(name).map_err(backend)? {
        Some(v) => Ok(Some(decode(name, v.value())?.revision)),
        None => Ok(None),
    }
}

fn split_doc(key: &str, stored: &[u8]) -> Result<(u64, Vec<u8>), StoreError> {
    match stored.split_first_chunk::<8>() {
        Some((revision, value)) => Ok((u64::from_be_bytes(*revision), value.to_vec())),
        None => Err(StoreError::Backend { source: format!("document `{key}` is truncated").into(), retryable: false }),
    }
}

fn join_doc(revision: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn doc_revision(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    key: &DocKey,
) -> Result<Option<u64>, StoreError> {
    match table.get((key.kind().as_str(), key.key())).map_err(backend)? {
        Some(v) => Ok(Some(split_doc(key.key(), v.value())?.0)),
        None => Ok(None),
    }
}

/// Takes the next store-wide revision, inside the caller's write transaction.
fn next_revision(txn: &redb::WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META).map_err(backend)?;
    let next = meta.get("revision").map_err(backend)?.map_or(0, |v| v.value()) + 1;
    meta.insert("revision", next).map_err(backend)?;
    Ok(next)
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, name: &FunctionName) -> Result<Option<FunctionRecord>, StoreError> {
        let name = name.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(FUNCTIONS).map_err(backend)?;
            let value = table.get(name.as_str()).map_err(backend)?;
            value.map(|v| decode(name.as_str(), v.value())).transpose()
        })
        .await
    }

    async fn list(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(FUNCTIONS).map_err(backend)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                out.push(decode(k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn compare_and_set(&self, expected: Option<u64>, mut record: FunctionRecord) -> Result<u64, StoreError> {
        let name = record.spec.name().clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let revision = {
                let mut table = txn.open_table(FUNCTIONS).map_err(backend)?;
                let actual = revision_of(&table, name.as_str())?;
                if actual != expected {
                    return Err(StoreError::Conflict { name, expected, actual });
                }
                record.revision = next_revision(&txn)?;
                table.insert(name.as_str(), encode(&record)?.as_slice()).map_err(backend)?;
                record.revision
            };
            txn.commit().map_err(backend)?;
            Ok(revision)
        })
        .await
    }

    async fn delete(&self, name: &FunctionName, expected: u64) -> Result<(), StoreError> {
        let name = name.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(FUNCTIONS).map_err(backend)?;
                match revision_of(&table, name.as_str())? {
                    None => return Err(StoreError::NotFound(name)),
                    Some(actual) if actual != expected => {
                        return Err(StoreError::Conflict { name, expected: Some(expected), actual: Some(actual) });
                    }
                    Some(_) => {
                        table.remove(name.as_str()).map_err(backend)?;
                        next_revision(&txn)?;
                    }
                }
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn doc_get(&self, key: &DocKey) -> Result<Option<Doc>, StoreError> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(DOCS).map_err(backend)?;
            let value = table.get((key.kind().as_str(), key.key())).map_err(backend)?;
            value
                .map(|v| {
                    let (revision, value) = split_doc(key.key(), v.value())?;
                    Ok(Doc { key: key.key().to_owned(), value, revision })
                })
                .transpose()
        })
        .await
    }

    async fn doc_list(&self, kind: &DocKind, query: &DocQuery) -> Result<Vec<Doc>, StoreError> {
        let (kind, query) = (kind.clone(), query.clone());
        self.blocking(move |db| {
            use std::ops::Bound;
            let (prefix, limit) = (query.prefix.as_str(), query.limit);
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(DOCS).map_err(backend)?;
            let kind = kind.as_str();
            let start = match query.after.as_deref() {
                Some(a) if a >= prefix => Bound::Excluded((kind, a)),
                _ => Bound::Included((kind, prefix)),
            };
            let mut out = Vec::new();
            for item in table.range::<(&str, &str)>((start, Bound::Unbounded)).map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                let (k_kind, k_key) = k.value();
                if k_kind != kind || !k_key.starts_with(prefix) || out.len() >= limit {
                    break;
                }
                let (revision, value) = split_doc(k_key, v.value())?;
                out.push(Doc { key: k_key.to_owned(), value, revision });
            }
            Ok(out)
        })
        .await
    }

    async fn doc_put(&self, key: &DocKey, expected: Option<u64>, value: Vec<u8>) -> Result<u64, StoreError> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let revision = {
                let mut table = txn.open_table(DOCS).map_err(backend)?;
                let actual = doc_revision(&table, &key)?;
                if actual != expected {
                    return Err(StoreError::DocConflict { key, expected, actual });
                }
                let revision = next_revision(&txn)?;
                table
                    .insert((key.kind().as_str(), key.key()), join_doc(revision, &value).as_slice())
                    .map_err(backend)?;
                revision
            };
            txn.commit().map_err(backend)?;
            Ok(revision)
        })
        .await
    }

    async fn doc_delete(&self, key: &DocKey, expected: u64) -> Result<(), StoreError> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(DOCS).map_err(backend)?;
                match doc_revision(&table, &key)? {
                    None => return Err(StoreError::DocNotFound(key)),
                    Some(actual) if actual != expected => {
                        return Err(StoreError::DocConflict { key, expected: Some(expected), actual: Some(actual) });
                    }
                    Some(_) => {
                        table.remove((key.kind().as_str(), key.key())).map_err(backend)?;
                        next_revision(&txn)?;
                    }
                }
            }
            txn.commit().map_err(backend)
        })
        .await
    }
}

use std::collections::BTreeMap;
use std::ops::Bound;

use async_trait::async_trait;
use parking_lot::RwLock;

use crate::model::{FunctionName, FunctionRecord};
use crate::ports::{Doc, DocKey, DocKind, DocQuery, Store, StoreError};

/// A [`Store`] in a map: for tests and for platforms that keep nothing across restarts.
#[derive(Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    records: BTreeMap<FunctionName, FunctionRecord>,
    /// Documents by kind, then key: each a value and its revision.
    docs: BTreeMap<DocKind, BTreeMap<String, (Vec<u8>, u64)>>,
    /// The store-wide revision: every write takes the next one.
    revision: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, name: &FunctionName) -> Result<Option<FunctionRecord>, StoreError> {
        Ok(self.state.read().records.get(name).cloned())
    }

    async fn list(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        Ok(self.state.read().records.values().cloned().collect())
    }

    async fn compare_and_set(&self, expected: Option<u64>, mut record: FunctionRecord) -> Result<u64, StoreError> {
        let mut state = self.state.write();
        let name = record.spec.name().clone();
        let actual = state.records.get(&name).map(|r| r.revision);
        if actual != expected {
            return Err(StoreError::Conflict { name, expected, actual });
        }
        state.revision += 1;
        record.revision = state.revision;
        state.records.insert(name, record);
        Ok(state.revision)
    }

    async fn delete(&self, name: &FunctionName, expected: u64) -> Result<(), StoreError> {
        let mut state = self.state.write();
        match state.records.get(name).map(|r| r.revision) {
            None => Err(StoreError::NotFound(name.clone())),
            Some(actual) if actual != expected => {
                Err(StoreError::Conflict { name: name.clone(), expected: Some(expected), actual: Some(actual) })
            }
            Some(_) => {
                state.records.remove(name);
                state.revision += 1;
                Ok(())
            }
        }
    }

    async fn doc_get(&self, key: &DocKey) -> Result<Option<Doc>, StoreError> {
        let state = self.state.read();
        let found = state.docs.get(key.kind()).and_then(|d| d.get(key.key()));
        Ok(found.map(|(value, revision)| Doc { key: key.key().to_owned(), value: value.clone(), revision: *revision }))
    }

    async fn doc_list(&self, kind: &DocKind, query: &DocQuery) -> Result<Vec<Doc>, StoreError> {
        let state = self.state.read();
        let Some(docs) = state.docs.get(kind) else { return Ok(Vec::new()) };
        let prefix = query.prefix.as_str();
        let start = match &query.after {
            Some(a) if a.as_str() >= prefix => Bound::Excluded(a.clone()),
            _ => Bound::Included(prefix.to_owned()),
        };
        Ok(docs
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(query.limit)
            .map(|(k, (value, revision))| Doc { key: k.clone(), value: value.clone(), revision: *revision })
            .collect())
    }

    async fn doc_put(&self, key: &DocKey, expected: Option<u64>, value: Vec<u8>) -> Result<u64, StoreError> {
        let mut state = self.state.write();
        let actual = state.docs.get(key.kind()).and_then(|d| d.get(key.key())).map(|(_, r)| *r);
        if actual != expected {
            return Err(StoreError::DocConflict { key: key.clone(), expected, actual });
        }
        state.revision += 1;
        let revision = state.revision;
        state.docs.entry(key.kind().clone()).or_default().insert(key.key().to_owned(), (value, revision));
        Ok(revision)
    }

    async fn doc_delete(&self, key: &DocKey, expected: u64) -> Result<(), StoreError> {
        let mut state = self.state.write();
        let actual = state.docs.get(key.kind()).and_then(|d| d.get(key.key())).map(|(_, r)| *r);
        match actual {
            None => Err(StoreError::DocNotFound(key.clone())),
            Some(actual) if actual != expected => {
                Err(StoreError::DocConflict { key: key.clone(), expected: Some(expected), actual: Some(actual) })
            }
            Some(_) => {
                if let Some(d) = state.docs.get_mut(key.kind()) {
                    d.remove(key.key());
                }
                state.revision += 1;
                Ok(())
            }
        }
    }
}

use std::collections::BTreeMap;

use async_trait::async_trait;
use parking_lot::RwLock;

use crate::model::{FunctionName, FunctionRecord};
use crate::ports::{Store, StoreError};

/// A [`Store`] in a map: for tests and for platforms that keep nothing across restarts.
#[derive(Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    records: BTreeMap<FunctionName, FunctionRecord>,
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
}

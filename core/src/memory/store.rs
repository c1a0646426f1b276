use std::collections::BTreeMap;
use std::sync::RwLock;

use async_trait::async_trait;

use crate::model::{FunctionName, FunctionRecord};
use crate::ports::{Store, StoreError};

/// A [`Store`] in a map: for tests and for platforms that keep nothing across restarts.
#[derive(Default)]
pub struct MemoryStore {
    records: RwLock<BTreeMap<FunctionName, FunctionRecord>>,
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
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        Ok(records.get(name).cloned())
    }

    async fn list(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        Ok(records.values().cloned().collect())
    }

    async fn compare_and_set(&self, expected: Option<u64>, record: FunctionRecord) -> Result<(), StoreError> {
        let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
        let name = record.spec.name().clone();
        let actual = records.get(&name).map(|r| r.generation);
        if actual != expected {
            return Err(StoreError::Conflict { name, expected, actual });
        }
        records.insert(name, record);
        Ok(())
    }

    async fn delete(&self, name: &FunctionName, expected: u64) -> Result<(), StoreError> {
        let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
        match records.get(name).map(|r| r.generation) {
            None => Err(StoreError::NotFound(name.clone())),
            Some(actual) if actual != expected => {
                Err(StoreError::Conflict { name: name.clone(), expected: Some(expected), actual: Some(actual) })
            }
            Some(_) => {
                records.remove(name);
                Ok(())
            }
        }
    }
}

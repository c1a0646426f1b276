use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::model::RouteTable;
use crate::ports::{Router, RouterError};

/// A [`Router`] that records the table it was told to serve (no traffic).
///
/// For tests and for embedding programs that route on their own: `subscribe`
/// yields every applied table. `fail_next` makes the next applies fail, to test
/// that the previous table stays.
pub struct MemoryRouter {
    table: Mutex<RouteTable>,
    applies: AtomicU64,
    failures: AtomicU32,
    tx: watch::Sender<RouteTable>,
}

impl Default for MemoryRouter {
    fn default() -> Self {
        Self {
            table: Mutex::default(),
            applies: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            tx: watch::Sender::new(RouteTable::default()),
        }
    }
}

impl MemoryRouter {
    /// A router serving nothing.
    pub fn new() -> Self {
        Self::default()
    }
    /// The table now served.
    pub fn table(&self) -> RouteTable {
        self.table.lock().clone()
    }
    /// How many applies succeeded.
    pub fn apply_count(&self) -> u64 {
        self.applies.load(Ordering::SeqCst)
    }
    /// Makes the next `n` applies fail with `Unavailable`.
    pub fn fail_next(&self, n: u32) {
        self.failures.store(n, Ordering::SeqCst);
    }
    /// Every table applied from now on.
    pub fn subscribe(&self) -> watch::Receiver<RouteTable> {
        self.tx.subscribe()
    }
}

#[async_trait]
impl Router for MemoryRouter {
    async fn apply(&self, table: &RouteTable) -> Result<(), RouterError> {
        let failing = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if failing {
            return Err(RouterError::Unavailable("injected failure (MemoryRouter::fail_next)".into()));
        }
        *self.table.lock() = table.clone();
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.tx.send_replace(table.clone());
        Ok(())
    }
}

//! A [`Subscription`] fed by a backend's own task: what a queue backend that
//! receives from a broker in the background hands to its consumer.

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ports::{Delivery, QueueError, Subscription};

/// Deliveries from `task`, which stops when the subscription is dropped.
pub struct TaskSubscription {
    ready: mpsc::UnboundedReceiver<Delivery>,
    task: JoinHandle<()>,
}

impl TaskSubscription {
    /// Deliveries that `task` sends on the other end of `ready`.
    pub fn new(ready: mpsc::UnboundedReceiver<Delivery>, task: JoinHandle<()>) -> Self {
        Self { ready, task }
    }
}

#[async_trait]
impl Subscription for TaskSubscription {
    /// Cancel-safe: an mpsc receive loses nothing when dropped.
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        self.ready.recv().await.ok_or(QueueError::Closed)
    }
}

impl Drop for TaskSubscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

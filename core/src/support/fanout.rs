//! One route table, several edges.

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::RouteTable;
use crate::ports::{Router, RouterError};

/// A [`Router`] that gives every table to several edges, in order.
///
/// Why: NGINX serves the functions, and the built-in gateway behind it acts as
/// the activator for functions with no instance; both must know the same
/// table. The edges are applied in the order given, so list the one that other
/// edges forward to first (the activator before NGINX): a function NGINX
/// sends to the activator is then always known there. The first failure stops
/// the apply and is returned; a retry applies the whole table to every edge
/// again, which each edge makes harmless.
pub struct FanoutRouter {
    edges: Vec<Arc<dyn Router>>,
}

impl FanoutRouter {
    /// Applies tables to `edges` in this order.
    pub fn new(edges: Vec<Arc<dyn Router>>) -> Self {
        Self { edges }
    }
}

#[async_trait]
impl Router for FanoutRouter {
    async fn apply(&self, table: &RouteTable) -> Result<(), RouterError> {
        for edge in &self.edges {
            edge.apply(table).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockRouter;

    #[tokio::test]
    async fn applies_in_order_and_stops_at_the_first_failure() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut first = MockRouter::new();
        let o = Arc::clone(&order);
        first.expect_apply().times(2).returning(move |_| {
            o.lock().unwrap().push("first");
            Ok(())
        });
        let mut second = MockRouter::new();
        let o = Arc::clone(&order);
        let mut calls = 0;
        second.expect_apply().times(2).returning(move |_| {
            o.lock().unwrap().push("second");
            calls += 1;
            if calls == 1 { Ok(()) } else { Err(RouterError::Rejected("nginx -t failed".into())) }
        });
        let fanout = FanoutRouter::new(vec![Arc::new(first), Arc::new(second)]);
        let table = RouteTable::default();
        fanout.apply(&table).await.unwrap();
        let err = fanout.apply(&table).await.unwrap_err();
        assert!(err.to_string().contains("nginx -t failed"), "{err}");
        assert_eq!(*order.lock().unwrap(), ["first", "second", "first", "second"]);
    }
}

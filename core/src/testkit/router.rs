//! The `Router` contract (what every edge must accept; serving is checked by each edge's own tests).

use std::net::SocketAddr;

use crate::model::{Endpoint, FunctionName, Route, RouteTable};
use crate::ports::Router;

/// A route (generation 1) of `name` to `endpoints` with this timeout.
pub fn route(name: &str, endpoints: &[SocketAddr], timeout_ms: u64) -> Route {
    Route {
        name: FunctionName::new(name).expect("valid test name"),
        generation: 1,
        endpoints: endpoints.iter().map(|a| Endpoint::new(*a)).collect(),
        timeout_ms,
    }
}

/// A table of these routes.
pub fn table_of(routes: Vec<Route>) -> RouteTable {
    let mut t = RouteTable::new();
    for r in routes {
        t.upsert(r);
    }
    t
}

/// A table routing each `(name, endpoint)` pair (30 s timeouts).
pub fn table(routes: &[(&str, SocketAddr)]) -> RouteTable {
    table_of(routes.iter().map(|(name, addr)| route(name, &[*addr], 30_000)).collect())
}

/// Runs every check.
pub async fn run_all(r: &dyn Router) {
    let a: SocketAddr = ([127, 0, 0, 1], 41001).into();
    let b: SocketAddr = ([127, 0, 0, 1], 41002).into();
    r.apply(&RouteTable::new()).await.expect("apply an empty table");
    let two = table(&[("conf-a", a), ("conf-b", b)]);
    r.apply(&two).await.expect("apply two routes");
    r.apply(&two).await.expect("apply the same table again (idempotent)");
    let mut no_endpoints = table(&[("conf-a", a)]);
    no_endpoints.upsert(Route {
        name: FunctionName::new("conf-c").expect("name"),
        generation: 1,
        endpoints: Vec::new(),
        timeout_ms: 1000,
    });
    r.apply(&no_endpoints).await.expect("apply a route with no ready endpoint");
    r.apply(&RouteTable::new()).await.expect("back to empty");
}

//! The compiled route table: what one request needs, ready to read without locks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::Authority;
use pilotlight_core::model::{Endpoint, FunctionName, RouteTable};

use crate::connect::{Namespaces, Registration};
use crate::counters::FunctionCounters;

/// One upstream instance and the requests in flight to it.
pub(crate) struct EndpointState {
    pub(crate) endpoint: Endpoint,
    pub(crate) authority: Authority,
    in_flight: AtomicUsize,
    /// A namespaced endpoint's made-up authority, known to the connector while this lives.
    _registration: Option<Registration>,
}

impl EndpointState {
    pub(crate) fn new(endpoint: &Endpoint, namespaces: &Arc<Namespaces>) -> Option<Self> {
        let (authority, registration) = match endpoint.netns() {
            None => (Authority::try_from(endpoint.addr().to_string()).ok()?, None),
            Some(ns) => {
                let r = namespaces.register(Arc::from(ns), endpoint.addr())?;
                (r.authority.clone(), Some(r))
            }
        };
        Some(Self {
            endpoint: endpoint.clone(),
            authority,
            in_flight: AtomicUsize::new(0),
            _registration: registration,
        })
    }
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Holds one request's place on an endpoint until dropped.
pub(crate) struct EndpointGuard(Arc<EndpointState>);

impl EndpointGuard {
    pub(crate) fn new(e: Arc<EndpointState>) -> Self {
        e.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(e)
    }
}

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct RouteState {
    pub(crate) name: FunctionName,
    pub(crate) timeout: Duration,
    pub(crate) endpoints: Vec<Arc<EndpointState>>,
    pub(crate) counters: Arc<FunctionCounters>,
    /// Whether it forwards to another node's gateway (multi-node), decided
    /// when the table is compiled so a request does not look.
    pub(crate) forwards: bool,
    next: AtomicUsize,
}

impl RouteState {
    /// The endpoint with the fewest requests in flight, skipping `exclude`;
    /// ties go round-robin so idle endpoints share the load.
    pub(crate) fn pick(&self, exclude: Option<&Endpoint>) -> Option<Arc<EndpointState>> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<&Arc<EndpointState>> = None;
        for i in 0..n {
            let e = &self.endpoints[(start + i) % n];
            if Some(&e.endpoint) == exclude {
                continue;
            }
            if best.is_none_or(|b| e.in_flight() < b.in_flight()) {
                best = Some(e);
            }
        }
        best.cloned()
    }
}

#[derive(Default)]
pub(crate) struct Table {
    routes: HashMap<String, Arc<RouteState>>,
}

impl Table {
    pub(crate) fn get(&self, label: &str) -> Option<&Arc<RouteState>> {
        self.routes.get(label)
    }

    /// Every endpoint of every route.
    pub(crate) fn endpoints(&self) -> impl Iterator<Item = &Arc<EndpointState>> {
        self.routes.values().flat_map(|r| r.endpoints.iter())
    }

    /// This table with `label`'s route serving `endpoints`, if it is routed
    /// with none now: the activation fast path's instance, admitted ahead of
    /// the route table that will list it. `None` when there is nothing to do.
    pub(crate) fn admit(&self, label: &str, endpoints: &[Endpoint], namespaces: &Arc<Namespaces>) -> Option<Table> {
        let route = self.routes.get(label)?;
        if !route.endpoints.is_empty() {
            return None;
        }
        let endpoints: Vec<_> =
            endpoints.iter().filter_map(|e| EndpointState::new(e, namespaces).map(Arc::new)).collect();
        if endpoints.is_empty() {
            return None;
        }
        let mut routes = self.routes.clone();
        routes.insert(
            label.to_owned(),
            Arc::new(RouteState {
                name: route.name.clone(),
                timeout: route.timeout,
                forwards: endpoints.iter().any(|e| e.endpoint.node().is_some()),
                endpoints,
                counters: Arc::clone(&route.counters),
                next: AtomicUsize::new(0),
            }),
        );
        Some(Table { routes })
    }

    /// Builds the table for `routes`, keeping the in-flight counts of
    /// endpoints that stay, and each function's counters.
    pub(crate) fn compile(
        routes: &RouteTable,
        previous: &Table,
        counters: &mut HashMap<FunctionName, Arc<FunctionCounters>>,
        max_waiting: usize,
        namespaces: &Arc<Namespaces>,
    ) -> Table {
        let mut out = HashMap::with_capacity(routes.len());
        for route in routes.iter() {
            let old = previous.routes.get(route.name.as_str());
            let endpoints: Vec<Arc<EndpointState>> = route
                .endpoints
                .iter()
                .filter_map(|ep| {
                    old.and_then(|o| o.endpoints.iter().find(|e| e.endpoint == *ep).cloned())
                        .or_else(|| EndpointState::new(ep, namespaces).map(Arc::new))
                })
                .collect();
            let c = counters
                .entry(route.name.clone())
                .or_insert_with(|| Arc::new(FunctionCounters::new(&route.name, max_waiting)))
                .clone();
            if route.endpoints.is_empty() && old.is_some_and(|o| !o.endpoints.is_empty()) {
                c.forget_activation();
            }
            out.insert(
                route.name.to_string(),
                Arc::new(RouteState {
                    name: route.name.clone(),
                    timeout: route.timeout(),
                    forwards: endpoints.iter().any(|e| e.endpoint.node().is_some()),
                    endpoints,
                    counters: c,
                    next: AtomicUsize::new(0),
                }),
            );
        }
        // Counters of functions that left the table go, unless a request still holds them.
        counters.retain(|name, c| out.contains_key(name.as_str()) || Arc::strong_count(c) > 1);
        Table { routes: out }
    }
}

/// The function label of a `Host` value under `domain`: `hello.example.com:8080`
/// with domain `example.com` gives `hello`. Case-insensitive; anything else is `None`.
pub(crate) fn function_label<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let host = match host.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() <= domain.len() + 1 {
        return None;
    }
    let (label, rest) = host.split_at(host.len() - domain.len() - 1);
    let ok = rest.as_bytes()[0] == b'.' && rest[1..].eq_ignore_ascii_case(domain) && !label.contains('.');
    ok.then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_hosts() {
        let d = "localhost";
        assert_eq!(function_label("hello.localhost", d), Some("hello"));
        assert_eq!(function_label("hello.localhost:8080", d), Some("hello"));
        assert_eq!(function_label("Hello.LOCALHOST", d), Some("Hello"));
        assert_eq!(function_label("hello.localhost.", d), Some("hello"));
        assert_eq!(function_label("localhost", d), None);
        assert_eq!(function_label(".localhost", d), None);
        assert_eq!(function_label("a.b.localhost", d), None);
        assert_eq!(function_label("hellolocalhost", d), None);
        assert_eq!(function_label("hello.example.com", "example.com"), Some("hello"));
        assert_eq!(function_label("[::1]:80", d), None);
    }

    #[test]
    fn admits_endpoints_only_into_a_route_that_has_none() {
        let ns = Arc::new(Namespaces::default());
        let mut counters = HashMap::new();
        let f = FunctionName::new("f").unwrap();
        let g = FunctionName::new("g").unwrap();
        let ep = |p: u16| Endpoint::new(([127, 0, 0, 1], p).into());
        let mut routes = RouteTable::default();
        let route = |name: &FunctionName, endpoints| pilotlight_core::model::Route {
            name: name.clone(),
            generation: 1,
            endpoints,
            timeout_ms: 1000,
        };
        routes.upsert(route(&f, vec![]));
        routes.upsert(route(&g, vec![ep(2)]));
        let table = Table::compile(&routes, &Table::default(), &mut counters, 4, &ns);
        let admitted = table.admit("f", &[ep(1)], &ns).expect("f had no endpoint");
        assert_eq!(admitted.get("f").unwrap().endpoints[0].endpoint, ep(1));
        assert!(Arc::ptr_eq(&admitted.get("f").unwrap().counters, &table.get("f").unwrap().counters));
        assert!(Arc::ptr_eq(admitted.get("g").unwrap(), table.get("g").unwrap()), "other routes are shared");
        assert!(admitted.admit("f", &[ep(3)], &ns).is_none(), "a route with endpoints is left to the table");
        assert!(table.admit("g", &[ep(3)], &ns).is_none());
        assert!(table.admit("nobody", &[ep(3)], &ns).is_none(), "an unrouted function is not added");
    }

    #[test]
    fn picks_fewest_in_flight_and_skips_excluded() {
        let ns = Arc::new(Namespaces::default());
        let eps: Vec<_> = (1..=3)
            .map(|p| Arc::new(EndpointState::new(&Endpoint::new(([127, 0, 0, 1], p).into()), &ns).unwrap()))
            .collect();
        let name = FunctionName::new("f").unwrap();
        let route = RouteState {
            counters: Arc::new(FunctionCounters::new(&name, 1)),
            name,
            timeout: Duration::from_secs(1),
            endpoints: eps.clone(),
            forwards: false,
            next: AtomicUsize::new(0),
        };
        let _g1 = EndpointGuard::new(eps[0].clone());
        let _g2 = EndpointGuard::new(eps[1].clone());
        assert_eq!(route.pick(None).unwrap().endpoint.addr().port(), 3);
        assert_eq!(route.pick(Some(&eps[2].endpoint)).map(|e| e.in_flight()), Some(1));
        let picks: std::collections::HashSet<u16> =
            (0..10).map(|_| route.pick(Some(&eps[2].endpoint)).unwrap().endpoint.addr().port()).collect();
        assert_eq!(picks.len(), 2, "ties are shared round-robin");
    }
}

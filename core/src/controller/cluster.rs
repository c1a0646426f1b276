//! Who runs what when several nodes share one Store: the live nodes as a
//! membership backend (etcd leases) reports them, and placement by
//! rendezvous hashing over them.
//!
//! Every node computes the same owner for a function from the same list of
//! live nodes, with no coordination: the owner is the live node of the
//! function's region (and required labels) with the highest weighted
//! rendezvous score for the function's name. Adding or removing a node moves
//! only the functions whose highest score it had or has, about 1/N of them.
//!
//! A node alone ([`Membership::solo`]) owns everything and is never fenced:
//! that is the single-node platform, unchanged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::model::{Endpoint, FunctionRecord, FunctionSpec, NodeId, NodeInfo, NodeLabels, Region, Route, RouteTable};
use crate::ports::{Router, Store};

/// The live nodes as this node last heard them, and whether its own
/// registration is current. Fed by a membership backend (`set_nodes` on
/// every change it sees, `renewed` on every lease renewal); read by the
/// runtime worker, the router's routes and the API.
pub struct Membership {
    me: NodeInfo,
    nodes: watch::Sender<Arc<Vec<NodeInfo>>>,
    ttl: Duration,
    renewed: Mutex<Instant>,
    solo: bool,
}

/// Why a function has no owner now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoOwner {
    /// No live node serves the function's region.
    #[error("no live node serves region `{region}` (live nodes: {live})")]
    Region {
        /// The function's region.
        region: Region,
        /// The live nodes, `id (region)`.
        live: String,
    },
    /// Nodes serve the region, but none has the labels the placement requires.
    #[error("no live node of region `{region}` has the labels `{required}` (live nodes: {live})")]
    Labels {
        /// The function's region.
        region: Region,
        /// The labels required.
        required: NodeLabels,
        /// The live nodes of the region and their labels.
        live: String,
    },
}

/// Where a function runs, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Here: run its instances and pool.
    Here,
    /// On another live node: run none, route to that node's gateway.
    There(NodeInfo),
    /// Nowhere: no live node may run it.
    Nowhere(NoOwner),
    /// This node cannot renew its registration (cut off from the
    /// membership backend): it takes no ownership action. `drain` once that
    /// has lasted beyond the grace period: its instances stop.
    Fenced {
        /// Whether the grace period is over.
        drain: bool,
    },
}

impl Membership {
    /// A single node, owning everything, never fenced.
    pub fn solo(me: NodeInfo) -> Arc<Self> {
        let nodes = watch::Sender::new(Arc::new(vec![me.clone()]));
        Arc::new(Self { me, nodes, ttl: Duration::MAX, renewed: Mutex::new(Instant::now()), solo: true })
    }

    /// A node of a cluster whose registration lives `ttl` unless renewed.
    /// Until the backend reports the live nodes, it knows only itself.
    pub fn clustered(me: NodeInfo, ttl: Duration) -> Arc<Self> {
        let nodes = watch::Sender::new(Arc::new(vec![me.clone()]));
        Arc::new(Self { me, nodes, ttl, renewed: Mutex::new(Instant::now()), solo: false })
    }

    /// This node.
    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.me.id
    }

    /// Whether other nodes may share the Store (not [`solo`](Self::solo)).
    pub fn is_clustered(&self) -> bool {
        !self.solo
    }

    /// The registration's time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The live nodes, by id.
    pub fn nodes(&self) -> Arc<Vec<NodeInfo>> {
        self.nodes.borrow().clone()
    }

    /// Changes of the live nodes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Vec<NodeInfo>>> {
        self.nodes.subscribe()
    }

    /// The backend's view of the live nodes; subscribers hear of it only if it changed.
    pub fn set_nodes(&self, mut nodes: Vec<NodeInfo>) {
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes.dedup_by(|a, b| a.id == b.id);
        self.nodes.send_if_modified(|current| {
            if **current == nodes {
                return false;
            }
            let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
            tracing::info!(nodes = ?ids, "live nodes changed");
            *current = Arc::new(nodes);
            true
        });
    }

    /// The registration was renewed now.
    pub fn renewed(&self) {
        *self.renewed.lock() = Instant::now();
    }

    /// How long the registration has gone unrenewed beyond its TTL, if it has:
    /// then the other nodes may already have taken this node's functions.
    pub fn fenced_for(&self) -> Option<Duration> {
        if self.solo {
            return None;
        }
        self.renewed.lock().elapsed().checked_sub(self.ttl)
    }

    /// Where `spec` runs now: rendezvous over the live nodes of its region
    /// (`default_region` when it names none) that have its required labels.
    /// A fenced node answers [`Ownership::Fenced`], draining after `grace`.
    pub fn ownership(&self, spec: &FunctionSpec, default_region: &Region, grace: Duration) -> Ownership {
        if let Some(over) = self.fenced_for() {
            return Ownership::Fenced { drain: over >= grace };
        }
        if self.solo {
            return Ownership::Here;
        }
        let nodes = self.nodes();
        match owner(spec.name().as_str(), spec.region().unwrap_or(default_region), spec.placement(), &nodes) {
            Ok(n) if n.id == self.me.id => Ownership::Here,
            Ok(n) => Ownership::There(n.clone()),
            Err(e) => Ownership::Nowhere(e),
        }
    }

    /// The owner of `spec` among the live nodes, whoever asks.
    pub fn owner_of(&self, spec: &FunctionSpec, default_region: &Region) -> Result<NodeInfo, NoOwner> {
        let nodes = self.nodes();
        owner(spec.name().as_str(), spec.region().unwrap_or(default_region), spec.placement(), &nodes).cloned()
    }
}

/// The owner of function `name` among `nodes`: the highest weighted
/// rendezvous score among those of `region` with the `required` labels.
pub fn owner<'a>(
    name: &str,
    region: &Region,
    required: &NodeLabels,
    nodes: &'a [NodeInfo],
) -> Result<&'a NodeInfo, NoOwner> {
    let in_region: Vec<&NodeInfo> = nodes.iter().filter(|n| &n.region == region).collect();
    let describe = |ns: &[&NodeInfo], labels: bool| {
        let parts: Vec<String> = ns
            .iter()
            .map(|n| if labels { format!("{} [{}]", n.id, n.labels) } else { format!("{} ({})", n.id, n.region) })
            .collect();
        if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
    };
    if in_region.is_empty() {
        let all: Vec<&NodeInfo> = nodes.iter().collect();
        return Err(NoOwner::Region { region: region.clone(), live: describe(&all, false) });
    }
    in_region
        .iter()
        .filter(|n| n.labels.satisfy(required))
        .map(|n| (score(name, n), *n))
        .max_by(|(a, na), (b, nb)| a.total_cmp(b).then_with(|| nb.id.cmp(&na.id)))
        .map(|(_, n)| n)
        .ok_or_else(|| NoOwner::Labels {
            region: region.clone(),
            required: required.clone(),
            live: describe(&in_region, true),
        })
}

/// Weighted rendezvous score: `weight / -ln(u)`, `u` in (0, 1) from a hash
/// of the pair. With equal weights the highest `u` wins; a node of twice the
/// weight wins twice as many functions.
fn score(name: &str, node: &NodeInfo) -> f64 {
    let h = pair_hash(name, node.id.as_str());
    #[allow(clippy::cast_precision_loss)] // 53 bits, exact in an f64
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    node.weight() / -u.ln()
}

/// A hash of (function, node) that every node and every version computes
/// alike: FNV-1a over both, then splitmix64's finalizer to spread the bits.
/// (std's hashers are not promised to stay the same across Rust releases.)
fn pair_hash(name: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain([0xff]).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The route table of a front load balancer over the nodes (NGINX in front
/// of them, say): every live function of `records` routed to the gateways of
/// every live node of its region, any of which serves it (each forwards to
/// the owner once). Functions no live node of their region can take are left out.
pub fn front_routes(records: &[FunctionRecord], nodes: &[NodeInfo], default_region: &Region) -> RouteTable {
    let mut table = RouteTable::new();
    for r in records.iter().filter(|r| !r.deleted) {
        let region = r.spec.region().unwrap_or(default_region);
        let mut endpoints: Vec<Endpoint> =
            nodes.iter().filter(|n| &n.region == region).map(|n| Endpoint::new(n.gateway)).collect();
        if endpoints.is_empty() {
            continue;
        }
        endpoints.sort();
        table.upsert(Route {
            name: r.spec.name().clone(),
            generation: r.generation,
            endpoints,
            timeout_ms: u64::try_from(r.spec.timeout().as_millis()).unwrap_or(u64::MAX),
        });
    }
    table
}

/// Keeps `router` (a front load balancer) on [`front_routes`]: applied at
/// once, again whenever the live nodes change, and every `period` (new or
/// deleted functions), until `cancel`. A failed apply is logged and tried
/// at the next change or period.
pub async fn run_front(
    store: Arc<dyn Store>,
    mut nodes: watch::Receiver<Arc<Vec<NodeInfo>>>,
    router: Arc<dyn Router>,
    default_region: Region,
    period: Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut applied: Option<RouteTable> = None;
    loop {
        let live = nodes.borrow_and_update().clone();
        match store.list().await {
            Ok(records) => {
                let table = front_routes(&records, &live, &default_region);
                if applied.as_ref() != Some(&table) {
                    match router.apply(&table).await {
                        Ok(()) => {
                            tracing::info!(functions = table.len(), nodes = live.len(), "front routes applied");
                            applied = Some(table);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot apply the front routes; trying again"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the functions for the front routes"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = nodes.changed() => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn node(id: &str, region: &str, capacity_mb: u64, labels: &str) -> NodeInfo {
        NodeInfo {
            id: NodeId::new(id).unwrap(),
            region: Region::new(region).unwrap(),
            gateway: "127.0.0.1:80".parse().unwrap(),
            capacity_mb,
            labels: NodeLabels::parse_list("labels", labels).unwrap(),
            version: "test".into(),
            started_ms: 0,
        }
    }

    fn owners(names: &[String], nodes: &[NodeInfo]) -> HashMap<String, String> {
        let region = Region::new("local").unwrap();
        names
            .iter()
            .map(|n| (n.clone(), owner(n, &region, &NodeLabels::default(), nodes).unwrap().id.to_string()))
            .collect()
    }

    #[test]
    fn the_hash_is_fixed() {
        // Every node, and every build, must agree: a changed hash would move functions.
        assert_eq!(pair_hash("hello", "node-1"), pair_hash("hello", "node-1"));
        assert_ne!(pair_hash("hello", "node-1"), pair_hash("hello", "node-2"));
        assert_ne!(pair_hash("ab", "c"), pair_hash("a", "bc"));
    }

    #[test]
    fn spread_is_even_and_a_new_node_moves_about_a_quarter() {
        let names: Vec<String> = (0..4000).map(|i| format!("fn-{i}")).collect();
        let three: Vec<NodeInfo> = (1..=3).map(|i| node(&format!("node-{i}"), "local", 0, "")).collect();
        let before = owners(&names, &three);
        let mut count: HashMap<&str, usize> = HashMap::new();
        for o in before.values() {
            *count.entry(o).or_default() += 1;
        }
        for (n, c) in &count {
            assert!((1_150..=1_520).contains(c), "{n} owns {c} of 4000");
        }
        let mut four = three.clone();
        four.push(node("node-4", "local", 0, ""));
        let after = owners(&names, &four);
        let moved: Vec<&String> = names.iter().filter(|n| before[*n] != after[*n]).collect();
        assert!(moved.iter().all(|n| after[*n] == "node-4"), "only moves to the new node");
        assert!((800..=1_200).contains(&moved.len()), "{} of 4000 moved", moved.len());
        // And it leaves again: everything returns to where it was.
        assert_eq!(owners(&names, &three), before);
    }

    #[test]
    fn weight_follows_capacity() {
        let names: Vec<String> = (0..3000).map(|i| format!("fn-{i}")).collect();
        let nodes = vec![node("big", "local", 8192, ""), node("small", "local", 4096, "")];
        let o = owners(&names, &nodes);
        let big = o.values().filter(|n| *n == "big").count();
        assert!((1_850..=2_150).contains(&big), "twice the capacity owns about two thirds: {big}");
    }

    #[test]
    fn region_and_labels_narrow_and_say_why_nothing_fits() {
        let nodes = vec![node("a", "eu", 0, "disk=ssd"), node("b", "eu", 0, ""), node("c", "us", 0, "disk=ssd")];
        let eu = Region::new("eu").unwrap();
        let ssd = NodeLabels::parse_list("p", "disk=ssd").unwrap();
        for i in 0..50 {
            assert_eq!(owner(&format!("f{i}"), &eu, &ssd, &nodes).unwrap().id.as_str(), "a");
        }
        let e = owner("f", &Region::new("ap").unwrap(), &NodeLabels::default(), &nodes).unwrap_err();
        assert_eq!(e.to_string(), "no live node serves region `ap` (live nodes: a (eu), b (eu), c (us))");
        let gpu = NodeLabels::parse_list("p", "gpu=yes").unwrap();
        let e = owner("f", &eu, &gpu, &nodes).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no live node of region `eu` has the labels `gpu=yes` (live nodes: a [disk=ssd], b [])"
        );
    }

    #[test]
    fn the_front_routes_every_function_to_every_gateway_of_its_region() {
        let spec = |n: &str, region: &str| {
            let mut input = crate::model::FunctionSpecInput::exec(n, "/bin/true", &[], 8080);
            input.region = Some(region.into());
            input.validate().unwrap()
        };
        let mut gone = FunctionRecord::new(spec("gone", "eu"), 2);
        gone.deleted = true;
        let records = vec![FunctionRecord::new(spec("a", "eu"), 3), FunctionRecord::new(spec("b", "us"), 1), gone];
        let mut nodes = vec![node("n1", "eu", 0, ""), node("n2", "eu", 0, "")];
        nodes[1].gateway = "127.0.0.2:80".parse().unwrap();
        let table = front_routes(&records, &nodes, &Region::new("eu").unwrap());
        assert_eq!(table.len(), 1, "b has no node of its region; gone is deleted");
        let a = table.get(&"a".parse().unwrap()).unwrap();
        assert_eq!(a.generation, 3);
        assert_eq!(
            a.endpoints.iter().map(|e| e.addr().to_string()).collect::<Vec<_>>(),
            ["127.0.0.1:80", "127.0.0.2:80"]
        );
    }

    #[test]
    fn a_node_past_its_ttl_is_fenced_and_drains_after_the_grace() {
        let m = Membership::clustered(node("a", "local", 0, ""), Duration::from_millis(20));
        let spec = crate::model::FunctionSpecInput::exec("hello", "/bin/true", &[], 8080).validate().unwrap();
        let region = Region::new("local").unwrap();
        assert_eq!(m.ownership(&spec, &region, Duration::from_millis(40)), Ownership::Here);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(m.ownership(&spec, &region, Duration::from_millis(40)), Ownership::Fenced { drain: false });
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(m.ownership(&spec, &region, Duration::from_millis(40)), Ownership::Fenced { drain: true });
        m.renewed();
        assert_eq!(m.ownership(&spec, &region, Duration::from_millis(40)), Ownership::Here);
        let solo = Membership::solo(node("a", "local", 0, ""));
        assert!(solo.fenced_for().is_none() && !solo.is_clustered());
    }
}

//! Node registration in etcd: each node keeps `<prefix>/nodes/<id>` under a
//! lease it renews, and watches `<prefix>/nodes/` to know the live nodes.
//!
//! - A node that stops renewing (crashed, hung, cut off) loses its key when
//!   its lease expires; every other node's watch sees the key go, and their
//!   runtime workers take over what it owned (see
//!   `pilotlight_core::controller::cluster`).
//! - The node itself counts from its last renewal: beyond the TTL it is
//!   fenced (the others may already run its functions), and it registers
//!   again under a new lease as soon as etcd answers.
//! - A node id held by another live node is refused at start, after waiting
//!   one TTL for a previous run's registration to expire.
//! - The watch is a shortcut: the list of nodes is read again every half
//!   TTL as well, so a lost watch event is repaired.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use pilotlight_core::controller::cluster::Membership;
use pilotlight_core::model::NodeInfo;
use pilotlight_core::ports::StoreError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::EtcdStore;

/// The shortest lease etcd grants reliably (its minimum is 1.5 election timeouts).
pub const MIN_TTL: Duration = Duration::from_secs(2);

/// This node's registration, kept alive by tasks until [`Registration::leave`].
pub struct Registration {
    membership: Arc<Membership>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    client: Client,
    key: String,
    lease: Arc<parking_lot::Mutex<i64>>,
}

impl Registration {
    /// The membership this registration feeds.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Stops renewing and removes the registration at once (a clean
    /// shutdown), so the other nodes take over now rather than after the TTL.
    pub async fn leave(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        let lease = *self.lease.lock();
        if let Err(e) = self.client.lease_revoke(lease).await {
            tracing::warn!(error = %e, "cannot revoke this node's lease; it expires by itself");
        }
        tracing::info!(key = %self.key, "left the cluster");
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn unavailable(what: &str, e: &etcd_client::Error) -> StoreError {
    StoreError::Unavailable(format!("etcd: {what}: {e}"))
}

fn ttl_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(MIN_TTL.as_secs())).unwrap_or(i64::MAX)
}

impl EtcdStore {
    /// Registers `membership`'s node under a lease of its TTL and keeps the
    /// registration and the list of live nodes current until
    /// [`Registration::leave`] (or drop).
    pub async fn join(&self, membership: Arc<Membership>) -> Result<Registration, StoreError> {
        let me = membership.me().clone();
        let ttl = membership.ttl();
        if ttl < MIN_TTL {
            return Err(StoreError::InvalidInput {
                field: "node_ttl".into(),
                message: format!("must be at least {MIN_TTL:?} (got {ttl:?})"),
            });
        }
        let prefix = format!("{}/nodes/", self.prefix);
        let key = format!("{prefix}{}", me.id);
        let value = serde_json::to_vec(&me).map_err(|e| StoreError::Backend { source: e.into(), retryable: false })?;
        let mut client = self.client.clone();
        // A previous run of this node may still hold the key: its lease ends within one TTL.
        let deadline = tokio::time::Instant::now() + ttl + Duration::from_secs(1);
        let lease = loop {
            let lease = client.lease_grant(ttl_seconds(ttl), None).await.map_err(|e| unavailable("lease", &e))?.id();
            if create(&mut client, &key, &value, lease).await? {
                break lease;
            }
            let _ = client.lease_revoke(lease).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::InvalidInput {
                    field: "node_id".into(),
                    message: format!(
                        "node `{}` is registered by another live node (its lease was renewed for {ttl:?}); give each node its own id",
                        me.id
                    ),
                });
            }
            tracing::info!(node = %me.id, "waiting for a previous registration of this node to expire");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        membership.renewed();
        membership.set_nodes(list(&mut client, &prefix).await?);
        tracing::info!(node = %me.id, gateway = %me.gateway, region = %me.region, ?ttl, "registered in etcd");
        let cancel = CancellationToken::new();
        let lease = Arc::new(parking_lot::Mutex::new(lease));
        let mut tasks = JoinSet::new();
        tasks.spawn(keep_alive(
            client.clone(),
            Arc::clone(&membership),
            key.clone(),
            value,
            Arc::clone(&lease),
            cancel.clone(),
        ));
        let feed = Arc::clone(&membership);
        tasks.spawn(watch_nodes(client.clone(), move |n| feed.set_nodes(n), ttl / 2, prefix, cancel.clone()));
        Ok(Registration { membership, cancel, tasks, client, key, lease })
    }
}

impl EtcdStore {
    /// The live nodes, as a reader that is not one of them sees them (a
    /// front load balancer): kept current by a watch and a full read every
    /// `every`, until `cancel`.
    pub fn live_nodes(
        &self,
        every: Duration,
        cancel: CancellationToken,
    ) -> tokio::sync::watch::Receiver<Arc<Vec<NodeInfo>>> {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(Vec::new()));
        let set = move |mut nodes: Vec<NodeInfo>| {
            nodes.sort_by(|a, b| a.id.cmp(&b.id));
            tx.send_if_modified(|current| {
                let changed = **current != nodes;
                if changed {
                    *current = Arc::new(nodes);
                }
                changed
            });
        };
        tokio::spawn(watch_nodes(self.client.clone(), set, every, format!("{}/nodes/", self.prefix), cancel));
        rx
    }
}

/// Puts `key` under `lease` if no one holds it; whether it did.
async fn create(client: &mut Client, key: &str, value: &[u8], lease: i64) -> Result<bool, StoreError> {
    let txn = Txn::new().when([Compare::version(key, CompareOp::Equal, 0)]).and_then([TxnOp::put(
        key,
        value,
        Some(PutOptions::new().with_lease(lease)),
    )]);
    Ok(client.txn(txn).await.map_err(|e| unavailable("register", &e))?.succeeded())
}

/// The live nodes: every registration under `prefix` that reads.
async fn list(client: &mut Client, prefix: &str) -> Result<Vec<NodeInfo>, StoreError> {
    let resp = client.get(prefix, Some(GetOptions::new().with_prefix())).await.map_err(|e| unavailable("nodes", &e))?;
    let mut nodes = Vec::new();
    for kv in resp.kvs() {
        match serde_json::from_slice::<NodeInfo>(kv.value()) {
            Ok(n) => nodes.push(n),
            Err(e) => {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %e, "an unreadable node registration is ignored")
            }
        }
    }
    Ok(nodes)
}

/// Renews the lease every third of the TTL; when etcd says it expired (the
/// node was stopped, or cut off, too long), registers again under a new one.
async fn keep_alive(
    mut client: Client,
    membership: Arc<Membership>,
    key: String,
    value: Vec<u8>,
    lease: Arc<parking_lot::Mutex<i64>>,
    cancel: CancellationToken,
) {
    let ttl = membership.ttl();
    let every = ttl / 3;
    loop {
        let id = *lease.lock();
        let renewed = async {
            let (mut keeper, mut stream) = client.lease_keep_alive(id).await?;
            loop {
                keeper.keep_alive().await?;
                match tokio::time::timeout(every, stream.message()).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => membership.renewed(),
                    Ok(Ok(Some(_))) => return Ok::<bool, etcd_client::Error>(false),
                    Ok(Ok(None)) => return Ok(true),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => tracing::warn!(node = %membership.id(), "etcd did not answer a lease renewal in time"),
                }
                tokio::time::sleep(every).await;
            }
        };
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            o = renewed => o,
        };
        match outcome {
            // The stream ended: open a new one for the same lease.
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(node = %membership.id(), "this node's lease expired; registering again");
                let again =
                    async {
                        let new = client.lease_grant(ttl_seconds(ttl), None).await?.id();
                        let txn = Txn::new().when([Compare::version(key.as_str(), CompareOp::Equal, 0)]).and_then([
                            TxnOp::put(key.as_str(), value.as_slice(), Some(PutOptions::new().with_lease(new))),
                        ]);
                        let ok = client.txn(txn).await?.succeeded();
                        Ok::<_, etcd_client::Error>((new, ok))
                    };
                match again.await {
                    Ok((new, true)) => {
                        *lease.lock() = new;
                        membership.renewed();
                        tracing::info!(node = %membership.id(), "registered again");
                    }
                    Ok((new, false)) => {
                        let _ = client.lease_revoke(new).await;
                        tracing::error!(node = %membership.id(), "another node registered with this node's id; retrying");
                    }
                    Err(e) => tracing::warn!(node = %membership.id(), error = %e, "cannot register again yet"),
                }
            }
            Err(e) => tracing::warn!(node = %membership.id(), error = %e, "cannot renew this node's lease; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Keeps the membership's live nodes current: a watch of the prefix for
/// speed, and a full read every half TTL (and after any watch error) so a
/// missed event is repaired.
async fn watch_nodes(
    mut client: Client,
    set: impl Fn(Vec<NodeInfo>) + Send + 'static,
    every: Duration,
    prefix: String,
    cancel: CancellationToken,
) {
    loop {
        match list(&mut client, &prefix).await {
            Ok(nodes) => set(nodes),
            Err(e) => tracing::warn!(error = %e, "cannot list the nodes"),
        }
        let watched = async {
            let mut stream = client.watch(prefix.as_str(), Some(WatchOptions::new().with_prefix())).await?;
            loop {
                let Some(resp) = tokio::time::timeout(every, stream.message()).await.ok().transpose()?.flatten() else {
                    // Quiet for half a TTL, or the stream ended: read the list again.
                    return Ok::<(), etcd_client::Error>(());
                };
                if resp.events().iter().any(|e| matches!(e.event_type(), EventType::Put | EventType::Delete)) {
                    let nodes = list(&mut client.clone(), &prefix)
                        .await
                        .map_err(|e| etcd_client::Error::InvalidArgs(e.to_string()))?;
                    set(nodes);
                }
            }
        };
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            o = watched => o,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "the watch of the nodes failed; reading again");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

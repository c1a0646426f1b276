//! A [`Store`] on etcd, so that several pilotlight nodes share one desired
//! state.
//!
//! The Store's revisions are etcd's own: every write is a transaction that
//! compares the key's `mod_revision` with the one the writer read (or its
//! `version` with 0 for a create), and the new revision is the one etcd gave
//! the write. etcd's revision is store-wide and never reused, which is what
//! the Store contract asks. Records live under `<prefix>/functions/<name>`
//! (JSON, as redb keeps them) and documents under
//! `<prefix>/docs/<kind>/<key>` (the bytes as given), so several platforms
//! can share one etcd with different prefixes.
//!
//! A write etcd acknowledged is committed by a quorum, so it survives the
//! loss of a member; a write whose answer was lost (a leader killed
//! mid-request) is reported as `Unavailable`, and the caller reads again
//! before retrying, as it does after a `Conflict`.
//!
//! Nodes register under a lease in the same etcd ([`membership`]).
//!
//! The records' changes are watched (`StoreChanges`), so a node reconciles
//! a function another node changed at once. TLS to the members (rustls, the
//! `ring` provider) is on when the URL names a CA (`ca=`), with a client
//! certificate (`cert=`, `key=`) for members that ask for one.

mod changes;
pub mod local;
pub mod membership;

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use pilotlight_core::Store;
use pilotlight_core::model::{FunctionName, FunctionRecord};
use pilotlight_core::ports::{Doc, DocKey, DocKind, DocQuery, StoreError};

/// Where the etcd cluster is and how to sign in.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `host:port` of each member.
    pub endpoints: Vec<String>,
    /// Every key starts with this (default `/pilotlight`).
    pub prefix: String,
    /// A user and password, if the cluster has authentication on.
    pub user: Option<(String, String)>,
    /// How long to wait for a connection, and for each request.
    pub timeout: Duration,
    /// TLS to the members: the CA that signed their certificates, and this
    /// client's certificate and key when they ask for one.
    pub tls: Option<EtcdTls>,
}

/// TLS settings, as files (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA certificate the members' certificates are checked against.
    pub ca: std::path::PathBuf,
    /// This client's certificate and key, for members with `--client-cert-auth`.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl EtcdConfig {
    /// Reads `etcd://host:port[,host:port...][/?prefix=/p&user=u&password=p&timeout_ms=n&ca=/ca.pem&cert=/c.pem&key=/k.pem]`
    /// (`ca` turns TLS on; `cert` and `key` go together and need `ca`).
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let bad = |message: String| StoreError::InvalidInput { field: "store".into(), message };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad(format!("must start with etcd:// (got {:?})", redact(url))))?;
        let (hosts, query) = match rest.split_once('?') {
            Some((h, q)) => (h.trim_end_matches('/'), q),
            None => (rest.trim_end_matches('/'), ""),
        };
        let mut endpoints = Vec::new();
        for h in hosts.split(',') {
            let ok = h.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(bad(format!("each member must be host:port (got {h:?} in {:?})", redact(url))));
            }
            endpoints.push(h.to_owned());
        }
        let mut config =
            Self { endpoints, prefix: "/pilotlight".into(), user: None, timeout: Duration::from_secs(5), tls: None };
        let (mut user, mut password) = (None, None);
        let (mut ca, mut cert, mut key) = (None, None, None);
        let file = |name: &str, v: &str| {
            if v.starts_with('/') && v.len() <= 4096 && !v.chars().any(char::is_control) {
                Ok(std::path::PathBuf::from(v))
            } else {
                Err(bad(format!("{name} must be an absolute file path (got {v:?})")))
            }
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "prefix" => {
                    if !v.starts_with('/') || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(bad(format!("prefix must start with / and be printable ASCII (got {v:?})")));
                    }
                    config.prefix = v.trim_end_matches('/').to_owned();
                }
                "user" => user = Some(v.to_owned()),
                "password" => password = Some(v.to_owned()),
                "timeout_ms" => {
                    let ms: u64 = v
                        .parse()
                        .ok()
                        .filter(|ms| (100..=60_000).contains(ms))
                        .ok_or_else(|| bad(format!("timeout_ms must be 100 to 60000 (got {v:?})")))?;
                    config.timeout = Duration::from_millis(ms);
                }
                "ca" => ca = Some(file("ca", v)?),
                "cert" => cert = Some(file("cert", v)?),
                "key" => key = Some(file("key", v)?),
                other => {
                    return Err(bad(format!(
                        "unknown option {other:?}: use prefix, user, password, timeout_ms, ca, cert, key"
                    )));
                }
            }
        }
        match (user, password) {
            (Some(u), Some(p)) => config.user = Some((u, p)),
            (None, None) => {}
            _ => return Err(bad("user and password go together".into())),
        }
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(bad("cert and key go together".into())),
        };
        match (ca, identity) {
            (Some(ca), identity) => config.tls = Some(EtcdTls { ca, identity }),
            (None, Some(_)) => return Err(bad("cert and key need ca (TLS to the members)".into())),
            (None, None) => {}
        }
        Ok(config)
    }
}

/// The client's TLS settings, from the files; an unreadable one is named.
fn tls_options(tls: &EtcdTls) -> Result<etcd_client::TlsOptions, StoreError> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| StoreError::InvalidInput {
            field: "store".into(),
            message: format!("{what} {}: {e}", path.display()),
        })
    };
    let mut options =
        etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read("ca", &tls.ca)?));
    if let Some((cert, key)) = &tls.identity {
        options = options.identity(etcd_client::Identity::from_pem(read("cert", cert)?, read("key", key)?));
    }
    Ok(options)
}

/// An etcd URL without its password, for messages.
fn redact(url: &str) -> String {
    match url.find("password=") {
        Some(i) => {
            let end = url[i..].find('&').map_or(url.len(), |j| i + j);
            format!("{}password=***{}", &url[..i], &url[end..])
        }
        None => url.to_owned(),
    }
}

/// The Store on etcd.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    client: Client,
    prefix: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn unavailable(e: &etcd_client::Error) -> StoreError {
    StoreError::Unavailable(format!("etcd: {e}"))
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { source: format!("{key}: {e}").into(), retryable: false }
}

fn revision(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

fn expected_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl EtcdStore {
    /// Connects, and reads once to be sure the cluster answers (and that the
    /// user may read): a start that cannot reach etcd fails here, naming the
    /// endpoints and the cause, before anything is written.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, StoreError> {
        let mut options = ConnectOptions::new().with_connect_timeout(config.timeout).with_timeout(config.timeout);
        if let Some((u, p)) = &config.user {
            options = options.with_user(u.clone(), p.clone());
        }
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let named = |e: &etcd_client::Error| {
            StoreError::Unavailable(format!("etcd at {} cannot be reached: {e}", config.endpoints.join(",")))
        };
        let client = Client::connect(&config.endpoints, Some(options)).await.map_err(|e| named(&e))?;
        let mut kv = client.kv_client();
        kv.get(format!("{}/", config.prefix), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| named(&e))?;
        Ok(Self { kv, client, prefix: config.prefix.clone() })
    }

    fn function_key(&self, name: &str) -> String {
        format!("{}/functions/{name}", self.prefix)
    }

    fn doc_key(&self, kind: &DocKind, key: &str) -> String {
        format!("{}/docs/{}/{key}", self.prefix, kind.as_str())
    }

    /// A compare-and-set: the key's `mod_revision` is `expected` (`None`: no key),
    /// then put `value`; the new revision, or what is there now.
    async fn cas_put(
        &self,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<Result<u64, Option<u64>>, StoreError> {
        let compare = match expected {
            Some(r) => Compare::mod_revision(key, CompareOp::Equal, expected_i64(r)),
            None => Compare::version(key, CompareOp::Equal, 0),
        };
        let txn = Txn::new().when([compare]).and_then([TxnOp::put(key, value, None)]).or_else([TxnOp::get(key, None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(|e| unavailable(&e))?;
        if resp.succeeded() {
            let r = resp.header().map(|h| revision(h.revision())).unwrap_or_default();
            return Ok(Ok(r));
        }
        Ok(Err(current(&resp.op_responses())))
    }

    async fn cas_delete(&self, key: &str, expected: u64) -> Result<Result<(), Option<u64>>, StoreError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected_i64(expected))])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(|e| unavailable(&e))?;
        if resp.succeeded() {
            return Ok(Ok(()));
        }
        Ok(Err(current(&resp.op_responses())))
    }
}

/// The mod revision of the key an `or_else` get read, if it is there.
fn current(ops: &[TxnOpResponse]) -> Option<u64> {
    ops.iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| revision(kv.mod_revision())),
        _ => None,
    })
}

fn decode_record(key: &str, value: &[u8], mod_revision: i64) -> Result<FunctionRecord, StoreError> {
    let mut record: FunctionRecord = serde_json::from_slice(value).map_err(|e| corrupt(key, e))?;
    record.revision = revision(mod_revision);
    Ok(record)
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, name: &FunctionName) -> Result<Option<FunctionRecord>, StoreError> {
        let key = self.function_key(name.as_str());
        let resp = self.kv.clone().get(key.as_str(), None).await.map_err(|e| unavailable(&e))?;
        resp.kvs().first().map(|kv| decode_record(&key, kv.value(), kv.mod_revision())).transpose()
    }

    async fn list(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        let prefix = self.function_key("");
        let options = GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::Ascend);
        let resp = self.kv.clone().get(prefix.as_str(), Some(options)).await.map_err(|e| unavailable(&e))?;
        resp.kvs().iter().map(|kv| decode_record(&prefix, kv.value(), kv.mod_revision())).collect()
    }

    async fn compare_and_set(&self, expected: Option<u64>, mut record: FunctionRecord) -> Result<u64, StoreError> {
        let name = record.spec.name().clone();
        let key = self.function_key(name.as_str());
        record.revision = 0;
        let value = serde_json::to_vec(&record).map_err(|e| corrupt(&key, e))?;
        match self.cas_put(&key, expected, value).await? {
            Ok(r) => Ok(r),
            Err(actual) => Err(StoreError::Conflict { name, expected, actual }),
        }
    }

    async fn delete(&self, name: &FunctionName, expected: u64) -> Result<(), StoreError> {
        match self.cas_delete(&self.function_key(name.as_str()), expected).await? {
            Ok(()) => Ok(()),
            Err(None) => Err(StoreError::NotFound(name.clone())),
            Err(actual) => Err(StoreError::Conflict { name: name.clone(), expected: Some(expected), actual }),
        }
    }

    async fn doc_get(&self, key: &DocKey) -> Result<Option<Doc>, StoreError> {
        let full = self.doc_key(key.kind(), key.key());
        let resp = self.kv.clone().get(full.as_str(), None).await.map_err(|e| unavailable(&e))?;
        Ok(resp.kvs().first().map(|kv| Doc {
            key: key.key().to_owned(),
            value: kv.value().to_vec(),
            revision: revision(kv.mod_revision()),
        }))
    }

    async fn doc_list(&self, kind: &DocKind, query: &DocQuery) -> Result<Vec<Doc>, StoreError> {
        // etcd reads a limit of 0 as none at all.
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let base = self.doc_key(kind, "");
        let start = match &query.after {
            // The first key after `after` that still has the prefix.
            Some(after) if after.as_str() >= query.prefix.as_str() => format!("{base}{after}\0"),
            _ => format!("{base}{}", query.prefix),
        };
        let mut end = format!("{base}{}", query.prefix).into_bytes();
        // The range end of a prefix: its last byte plus one (keys are printable ASCII).
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let options = GetOptions::new()
            .with_range(end)
            .with_sort(SortTarget::Key, SortOrder::Ascend)
            .with_limit(i64::try_from(query.limit).unwrap_or(i64::MAX));
        let resp = self.kv.clone().get(start.as_str(), Some(options)).await.map_err(|e| unavailable(&e))?;
        resp.kvs()
            .iter()
            .map(|kv| {
                let full = kv.key_str().map_err(|e| corrupt(&base, e))?;
                Ok(Doc {
                    key: full.strip_prefix(base.as_str()).unwrap_or(full).to_owned(),
                    value: kv.value().to_vec(),
                    revision: revision(kv.mod_revision()),
                })
            })
            .collect()
    }

    async fn doc_put(&self, key: &DocKey, expected: Option<u64>, value: Vec<u8>) -> Result<u64, StoreError> {
        match self.cas_put(&self.doc_key(key.kind(), key.key()), expected, value).await? {
            Ok(r) => Ok(r),
            Err(actual) => Err(StoreError::DocConflict { key: key.clone(), expected, actual }),
        }
    }

    async fn doc_delete(&self, key: &DocKey, expected: u64) -> Result<(), StoreError> {
        match self.cas_delete(&self.doc_key(key.kind(), key.key()), expected).await? {
            Ok(()) => Ok(()),
            Err(None) => Err(StoreError::DocNotFound(key.clone())),
            Err(actual) => Err(StoreError::DocConflict { key: key.clone(), expected: Some(expected), actual }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_members_options_and_mistakes() {
        let c =
            EtcdConfig::from_url("etcd://127.0.0.1:2379,10.0.0.2:2379/?prefix=/team-a&user=u&password=s3cret").unwrap();
        assert_eq!(c.endpoints, ["127.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(c.prefix, "/team-a");
        assert_eq!(c.user, Some(("u".into(), "s3cret".into())));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(EtcdConfig::from_url("etcd://h:1").unwrap().prefix, "/pilotlight");
        for bad in [
            "http://h:1",
            "etcd://h",
            "etcd://h:0",
            "etcd://:1",
            "etcd://h:1/?prefix=nope",
            "etcd://h:1/?user=u",
            "etcd://h:1/?colour=red",
            "etcd://h:1/?timeout_ms=5",
            "etcd://h:1/?ca=relative.pem",
            "etcd://h:1/?ca=/ca.pem&cert=/c.pem",
            "etcd://h:1/?cert=/c.pem&key=/k.pem",
        ] {
            let e = EtcdConfig::from_url(bad).unwrap_err();
            assert!(matches!(e, StoreError::InvalidInput { ref field, .. } if field == "store"), "{bad}: {e}");
        }
        let c = EtcdConfig::from_url("etcd://h:1/?ca=/etc/ca.pem&cert=/etc/c.pem&key=/etc/k.pem").unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.ca, std::path::PathBuf::from("/etc/ca.pem"));
        assert_eq!(tls.identity, Some(("/etc/c.pem".into(), "/etc/k.pem".into())));
        let e = EtcdConfig::from_url("nope://u?password=s3cret").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}

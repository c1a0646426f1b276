//! A node of a cluster: what it registers about itself, and the labels a
//! function's placement may require.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::names::{NodeId, Region};
use super::validation::ValidationError;

/// At most this many labels per node or per placement.
pub const MAX_NODE_LABELS: usize = 16;

/// Labels of a node (`disk=ssd`), or those a placement requires. Keys and
/// values are 1 to 63 characters of `a-z`, `0-9`, `-`, `_` and `.`, so they
/// go into etcd keys, logs and headers as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
pub struct NodeLabels(BTreeMap<String, String>);

impl NodeLabels {
    /// Checks every key and value, reporting against `field`.
    pub fn parse_field(field: &str, labels: BTreeMap<String, String>) -> Result<Self, ValidationError> {
        if labels.len() > MAX_NODE_LABELS {
            return Err(ValidationError::new(field, format!("at most {MAX_NODE_LABELS} labels, got {}", labels.len())));
        }
        for (k, v) in &labels {
            check_label(&format!("{field}.{k}"), "key", k)?;
            check_label(&format!("{field}.{k}"), "value", v)?;
        }
        Ok(Self(labels))
    }

    /// Parses `k=v,k2=v2` (empty: none), reporting against `field`.
    pub fn parse_list(field: &str, text: &str) -> Result<Self, ValidationError> {
        let mut labels = BTreeMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(ValidationError::new(field, format!("`{pair}` is not key=value")));
            };
            labels.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Self::parse_field(field, labels)
    }

    /// Whether every label of `required` is here with the same value.
    pub fn satisfy(&self, required: &NodeLabels) -> bool {
        required.0.iter().all(|(k, v)| self.0.get(k) == Some(v))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl std::fmt::Display for NodeLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&pairs.join(","))
    }
}

impl TryFrom<BTreeMap<String, String>> for NodeLabels {
    type Error = ValidationError;
    fn try_from(labels: BTreeMap<String, String>) -> Result<Self, ValidationError> {
        Self::parse_field("labels", labels)
    }
}

impl From<NodeLabels> for BTreeMap<String, String> {
    fn from(l: NodeLabels) -> Self {
        l.0
    }
}

fn check_label(field: &str, what: &str, s: &str) -> Result<(), ValidationError> {
    let ok = (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(field, format!("a label {what} is 1 to 63 characters of a-z, 0-9, `-`, `_` and `.`")))
    }
}

/// What a node registers about itself (in etcd, under its lease), and what
/// every node reads to place functions.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id, unique in the cluster.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub id: NodeId,
    /// The region it serves.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub region: Region,
    /// Where the other nodes' gateways reach its gateway (`ip:port`).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "10.0.0.2:8080"))]
    pub gateway: SocketAddr,
    /// Its memory budget for instances, in MiB (0: none set); placement
    /// weighs nodes by it.
    pub capacity_mb: u64,
    /// Labels a placement may require.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub labels: NodeLabels,
    /// The pilotlight version it runs.
    pub version: String,
    /// When it registered, in milliseconds since the Unix epoch.
    pub started_ms: u64,
}

impl NodeInfo {
    /// The weight of this node in placement: its capacity in GiB, at least 1
    /// (a node without a budget counts as 1 GiB).
    pub fn weight(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // MiB counts are far below 2^52
        let gib = self.capacity_mb as f64 / 1024.0;
        gib.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_match() {
        let node = NodeLabels::parse_list("labels", "disk=ssd, zone=a").unwrap();
        assert_eq!(node.to_string(), "disk=ssd,zone=a");
        assert!(node.satisfy(&NodeLabels::parse_list("p", "disk=ssd").unwrap()));
        assert!(node.satisfy(&NodeLabels::default()));
        assert!(!node.satisfy(&NodeLabels::parse_list("p", "disk=hdd").unwrap()));
        let e = NodeLabels::parse_list("labels", "disk").unwrap_err();
        assert!(e.to_string().contains("`disk` is not key=value"), "{e}");
        let e = NodeLabels::parse_list("placement.labels", "Disk=ssd").unwrap_err();
        assert_eq!(e.field, "placement.labels.Disk");
        let e = NodeLabels::parse_list("labels", "a=b c").unwrap_err();
        assert!(e.to_string().contains("value"), "{e}");
    }
}

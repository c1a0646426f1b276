//! The events that move deployment work between workers, as versioned JSON.
//!
//! On the wire an event is one JSON object: `{"v":1,"type":"DeployRequested",...}`.
//! `v` is the schema version; a reader refuses versions it does not know rather
//! than guessing. Every event is keyed by its function's name, so the queue
//! keeps the events of one function in order.

use serde::{Deserialize, Serialize};

use crate::model::{Endpoint, FunctionName, FunctionSpec, Instance, NodeId, Phase};
use crate::ports::Message;

/// The schema version this build writes and reads.
pub const EVENT_VERSION: u32 = 1;

/// Topic names.
pub mod topics {
    /// API → runtime worker: deploy, delete, reconcile.
    pub const DEPLOYMENTS: &str = "deployments";
    /// Runtime worker → router worker: which endpoints serve a function.
    pub const ROUTES: &str = "routes";
    /// Router and runtime workers → the status worker of every process: what
    /// they observed, recorded in each process's Store.
    pub const STATUS: &str = "status";

    /// Whether users may not publish to or trigger on `name`: the
    /// platform's own topics (those above, `invocations`, anything starting
    /// `pilotlight.`) and dead-letter topics (`<topic>.dlq`).
    pub fn is_reserved(name: &str) -> bool {
        [DEPLOYMENTS, ROUTES, STATUS, "invocations"].contains(&name)
            || name.starts_with("pilotlight.")
            || name.ends_with(".dlq")
    }
}

/// Everything the workers tell each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum Event {
    /// Run `spec` at `generation`, replacing older generations.
    DeployRequested {
        /// What to run.
        spec: FunctionSpec,
        /// Its generation.
        generation: u64,
    },
    /// Stop every instance of `name` and remove its route.
    DeleteRequested {
        /// The function.
        name: FunctionName,
        /// The generation of the delete.
        generation: u64,
    },
    /// Compare `name`'s instances with its stored spec and converge (after an
    /// instance exited, or on resync).
    ReconcileRequested {
        /// The function.
        name: FunctionName,
        /// Why, for the logs.
        reason: String,
    },
    /// Run exactly `running` instances of `name` (clamped to its `min` and
    /// `max`), besides its pool of paused ones. From the autoscaler.
    ScaleRequested {
        /// The function.
        name: FunctionName,
        /// The generation the autoscaler saw; an older one is ignored.
        generation: u64,
        /// Instances to run.
        running: u32,
        /// Why, for the logs.
        reason: String,
    },
    /// A request waits for `name`, which runs no instance: run at least one,
    /// by the fastest tier there is (resume a paused one, else start a
    /// created one, else create and start one).
    ActivationRequested {
        /// The function.
        name: FunctionName,
    },
    /// These endpoints (all ready) serve `name` at `generation`; `removed` means the route goes away.
    EndpointsChanged {
        /// The function.
        name: FunctionName,
        /// The generation the endpoints belong to.
        generation: u64,
        /// Ready endpoints.
        endpoints: Vec<Endpoint>,
        /// Per-request timeout at the edge.
        timeout_ms: u64,
        /// Whether the function was deleted.
        #[serde(default)]
        removed: bool,
        /// The node that sent it (multi-node); `None` from a single node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<NodeId>,
    },
    /// What the runtime worker observed of a function at the end of a
    /// reconcile: its instances, what it wants and published, and the last
    /// failure with its backoff. The status worker merges it into the record.
    Observed {
        /// The function.
        name: FunctionName,
        /// The generation reconciled.
        generation: u64,
        /// The function's instances as the runtime listed them (after the reconcile's steps).
        instances: Vec<Instance>,
        /// Running instances wanted.
        wanted: u32,
        /// The endpoints the edge was asked to route.
        published: Vec<Endpoint>,
        /// Why the reconcile failed (`None`: it succeeded).
        #[serde(default)]
        error: Option<String>,
        /// The failure will not go away by itself (retried at the backoff cap).
        #[serde(default)]
        permanent: bool,
        /// Failed reconciles in a row.
        #[serde(default)]
        attempts: u32,
        /// When it is tried next, in milliseconds since the Unix epoch.
        #[serde(default)]
        next_retry_ms: Option<u64>,
        /// When it was observed, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The node that sent it (multi-node); `None` from a single node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<NodeId>,
    },
    /// Where a function is, as the router reports it (`Ready` with the
    /// endpoints it routes, `Deleted`, or `Failed` when the edge refused).
    StatusChanged {
        /// The function.
        name: FunctionName,
        /// The generation this is about.
        generation: u64,
        /// Its phase.
        phase: Phase,
        /// Its URL, once routed.
        #[serde(default)]
        url: Option<String>,
        /// Why it failed, or progress.
        #[serde(default)]
        message: Option<String>,
        /// For `Failed`: whether the work will be tried again.
        #[serde(default)]
        will_retry: bool,
        /// The endpoints routed, for `Ready`.
        #[serde(default)]
        endpoints: Vec<Endpoint>,
        /// The node that sent it (multi-node); `None` from a single node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<NodeId>,
    },
}

impl Event {
    /// The function this event is about; the queue key.
    pub fn function(&self) -> &FunctionName {
        match self {
            Event::DeployRequested { spec, .. } => spec.name(),
            Event::DeleteRequested { name, .. }
            | Event::ReconcileRequested { name, .. }
            | Event::ScaleRequested { name, .. }
            | Event::ActivationRequested { name }
            | Event::EndpointsChanged { name, .. }
            | Event::Observed { name, .. }
            | Event::StatusChanged { name, .. } => name,
        }
    }

    /// The event's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::DeployRequested { .. } => "DeployRequested",
            Event::DeleteRequested { .. } => "DeleteRequested",
            Event::ReconcileRequested { .. } => "ReconcileRequested",
            Event::ScaleRequested { .. } => "ScaleRequested",
            Event::ActivationRequested { .. } => "ActivationRequested",
            Event::EndpointsChanged { .. } => "EndpointsChanged",
            Event::Observed { .. } => "Observed",
            Event::StatusChanged { .. } => "StatusChanged",
        }
    }

    /// The event as a queue message, keyed by function name.
    pub fn to_message(&self) -> Message {
        #[derive(Serialize)]
        struct Envelope<'a> {
            v: u32,
            #[serde(flatten)]
            event: &'a Event,
        }
        // Serializing these types cannot fail: every map key is a string.
        let payload = serde_json::to_vec(&Envelope { v: EVENT_VERSION, event: self })
            .unwrap_or_else(|e| format!("{{\"v\":0,\"error\":{:?}}}", e.to_string()).into_bytes());
        Message::new(self.function().as_str(), payload)
    }

    /// Reads an event, refusing unknown versions and invalid contents.
    pub fn from_payload(payload: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            v: Option<u32>,
        }
        let Version { v } = serde_json::from_slice(payload).map_err(|e| DecodeError(e.to_string()))?;
        match v {
            Some(EVENT_VERSION) => {}
            Some(other) => {
                return Err(DecodeError(format!(
                    "event version {other} is not supported (this build reads version {EVENT_VERSION})"
                )));
            }
            None => return Err(DecodeError("event has no version field `v`".into())),
        }
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(flatten)]
            event: Event,
        }
        let env: Envelope = serde_json::from_slice(payload).map_err(|e| DecodeError(e.to_string()))?;
        Ok(env.event)
    }
}

/// An event that cannot be read. Never retryable: the bytes will not change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode event: {0}")]
pub struct DecodeError(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FunctionSpecInput;

    #[test]
    fn round_trip_with_version() {
        let spec = FunctionSpecInput::exec("hello", "/bin/hello", &[], 8080).validate().unwrap();
        let ev = Event::DeployRequested { spec, generation: 3 };
        let msg = ev.to_message();
        assert_eq!(msg.key, "hello");
        let text = String::from_utf8(msg.payload.clone()).unwrap();
        assert!(text.starts_with(r#"{"v":1,"type":"DeployRequested""#), "{text}");
        assert_eq!(Event::from_payload(&msg.payload).unwrap(), ev);
    }

    #[test]
    fn refuses_unknown_versions_and_bad_contents() {
        let e = Event::from_payload(br#"{"v":2,"type":"DeleteRequested","name":"a","generation":1}"#).unwrap_err();
        assert!(e.0.contains("version 2"), "{e}");
        assert!(Event::from_payload(br#"{"type":"DeleteRequested","name":"a","generation":1}"#).is_err());
        let e = Event::from_payload(br#"{"v":1,"type":"DeleteRequested","name":"A;B","generation":1}"#).unwrap_err();
        assert!(e.0.contains("DNS label"), "{e}");
    }
}

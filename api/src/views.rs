//! What the API answers: JSON views of functions, instances and receipts.

use pilotlight_core::controller::StatusUpdate;
use pilotlight_core::model::{FunctionRecord, Instance, InstanceState, Phase};
use pilotlight_core::{DeployReceipt, FunctionSpecInput};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One function: what was asked for and where it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionView {
    /// Its name (a DNS label).
    pub name: String,
    /// The spec, with every default written out.
    pub spec: FunctionSpecInput,
    /// Goes up by one with every deploy, update and delete.
    pub generation: u64,
    /// Where the newest generation is.
    pub phase: Phase,
    /// `https://<name>.<domain>` (or http, with the edge's port).
    pub url: Option<String>,
    /// Its instances as the runtime listed them last: running, paused or created.
    pub instances: Vec<InstanceView>,
    /// Running instances wanted now (the desired scale clamped to `min..=max`).
    pub wanted: u32,
    /// Instances the edge routes to.
    pub ready_instances: usize,
    /// Progress, or why the last attempt failed.
    pub message: Option<String>,
    /// The last error, while the last reconcile failed (`failed` or `degraded`).
    pub error: Option<String>,
    /// Whether the platform keeps trying by itself (true while an error stands).
    pub will_retry: bool,
    /// Failed reconciles in a row (0 once one succeeds).
    pub attempts: u32,
    /// When the next try is due, in milliseconds since the Unix epoch.
    pub next_retry_ms: Option<u64>,
    /// The error will not go away by itself (an image that cannot be had, a
    /// full memory budget): it is retried at the backoff cap, and needs a fix.
    pub permanent: bool,
    /// When the runtime was last observed for this function, in milliseconds since the Unix epoch.
    pub observed_at_ms: u64,
    /// The observation is older than two reconcile periods (the engine or
    /// the node could not be reached): `instances` may no longer be true.
    pub stale: bool,
    /// The pull of its image under way, or the last one, layer by layer
    /// (when this server's runtime pulled it; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<pilotlight_core::ports::PullProgress>,
    /// The node that runs it and reported this status (several nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl FunctionView {
    /// The view of a stored record, its instances, and whether what was observed is stale.
    pub fn new(record: FunctionRecord, instances: Vec<InstanceView>, stale: bool) -> Self {
        let status = StatusUpdate::of(&record);
        let error = (status.attempts > 0).then(|| status.message.clone()).flatten();
        Self {
            name: record.spec.name().to_string(),
            generation: record.generation,
            phase: status.phase,
            url: status.url,
            instances,
            wanted: status.wanted,
            ready_instances: status.ready_instances,
            message: status.message,
            error,
            will_retry: status.will_retry,
            attempts: status.attempts,
            next_retry_ms: status.next_retry_ms,
            permanent: status.permanent,
            observed_at_ms: record.status.observed_at_ms,
            stale,
            pull: None,
            node: record.status.node.as_ref().map(ToString::to_string),
            spec: record.spec.into(),
        }
    }
}

/// One instance of a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    /// The runtime's id (container id, process id).
    pub id: String,
    /// `created`, `running`, `paused` or `exited`.
    pub state: InstanceState,
    /// Where the edge reaches it.
    pub endpoint: String,
    /// The generation of the spec it runs.
    pub generation: u64,
}

impl From<Instance> for InstanceView {
    fn from(i: Instance) -> Self {
        Self { id: i.id.to_string(), state: i.state, endpoint: i.endpoint.to_string(), generation: i.generation }
    }
}

/// Every function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionList {
    /// By name.
    pub functions: Vec<FunctionView>,
}

/// What a deploy or delete accepted (202): the work goes on in the background.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    /// The function.
    pub name: String,
    /// The generation that will be converged to.
    pub generation: u64,
    /// The phase right after the call.
    pub phase: Phase,
    /// The public URL.
    pub url: String,
}

impl From<DeployReceipt> for Receipt {
    fn from(r: DeployReceipt) -> Self {
        Self { name: r.name.to_string(), generation: r.generation, phase: r.phase, url: r.url }
    }
}

/// What this node is and serves, for clients and the UI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InfoView {
    /// pilotlight's version.
    pub version: String,
    /// Functions are served at `<name>.<domain>`.
    pub domain: String,
    /// The region this node serves; a spec's `region` must be this one.
    pub region: String,
    /// The runtime: `docker` (specs give `image`) or `process` (specs give `exec`).
    pub runtime: String,
    /// The edge: `gateway` or `nginx`.
    pub edge: String,
    /// The queue: `memory`, `kafka` or `amqp`.
    pub queue: String,
}

/// A status change, as `GET /v1/events` sends it (event name `status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusEvent {
    /// The function.
    pub name: String,
    /// The generation asked for.
    pub generation: u64,
    /// Where it is; `deleted` once it is gone.
    pub phase: Phase,
    /// Its public URL.
    pub url: Option<String>,
    /// Progress, or why it failed.
    pub message: Option<String>,
    /// For `failed`: whether the platform keeps trying.
    pub will_retry: bool,
    /// How many ready instances the edge routes to.
    pub ready_instances: usize,
    /// Running instances wanted.
    pub wanted: u32,
    /// Failed reconciles in a row.
    pub attempts: u32,
    /// When the next try is due, in milliseconds since the Unix epoch.
    pub next_retry_ms: Option<u64>,
    /// The error will not go away by itself (retried at the backoff cap).
    pub permanent: bool,
}

impl From<StatusUpdate> for StatusEvent {
    fn from(u: StatusUpdate) -> Self {
        Self {
            name: u.name.to_string(),
            generation: u.generation,
            phase: u.phase,
            url: u.url,
            message: u.message,
            will_retry: u.will_retry,
            ready_instances: u.ready_instances,
            wanted: u.wanted,
            attempts: u.attempts,
            next_retry_ms: u.next_retry_ms,
            permanent: u.permanent,
        }
    }
}

/// One log line, as `GET /v1/functions/{name}/logs` sends it (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLineView {
    /// The instance that wrote it.
    pub instance: String,
    /// `stdout` or `stderr`.
    pub source: pilotlight_core::ports::LogSource,
    /// The text.
    pub line: String,
    /// When it was read, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the server answers.
    pub status: String,
}

/// An asynchronous invocation: where it is, every attempt, and the function's last answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvocationView {
    /// Its id, as `X-Call-Id` gave it: `<function>.<28 hex digits>`.
    pub id: String,
    /// The function it invokes.
    pub function: String,
    /// `queued`, `running`, `succeeded`, `failed` or `dead`.
    #[schema(pattern = "^(queued|running|succeeded|failed|dead)$")]
    pub state: String,
    /// Why it failed or died.
    pub reason: Option<String>,
    /// The request as it is replayed (its body is not shown).
    pub method: String,
    /// Its path and query.
    pub path: String,
    /// The request body's size in bytes.
    pub body_bytes: usize,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<InvocationAttemptView>,
    /// The function's last answer.
    pub response: Option<InvocationResponseView>,
    /// Where the outcome is POSTed.
    pub callback_url: Option<String>,
    /// The delivery of the outcome to `callback_url`, once it is final.
    pub callback: Option<CallbackView>,
    /// When it was accepted, in ms since the Unix epoch.
    pub created_ms: u64,
    /// When the next attempt is due (queued ones).
    pub next_attempt_ms: Option<u64>,
    /// When it reached a final state.
    pub finished_ms: Option<u64>,
}

/// Where the delivery of an invocation's outcome to its callback URL stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CallbackView {
    /// `pending`, `delivered` (the receiver answered 2xx) or `failed`.
    #[schema(pattern = "^(pending|delivered|failed)$")]
    pub state: String,
    /// Every delivery attempt; `status` is the receiver's answer.
    pub attempts: Vec<InvocationAttemptView>,
    /// When the next attempt is due (pending ones).
    pub next_attempt_ms: Option<u64>,
    /// Why it failed.
    pub reason: Option<String>,
}

fn attempt_views(attempts: Vec<pilotlight_core::model::InvocationAttempt>) -> Vec<InvocationAttemptView> {
    attempts
        .into_iter()
        .map(|a| InvocationAttemptView {
            number: a.number,
            started_ms: a.started_ms,
            duration_ms: a.duration_ms,
            status: a.status,
            error: a.error,
        })
        .collect()
}

/// One attempt of an invocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvocationAttemptView {
    /// 1 for the first.
    pub number: u32,
    /// When it started, in ms since the Unix epoch.
    pub started_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// The function's status, when it answered.
    pub status: Option<u16>,
    /// Why it got no answer.
    pub error: Option<String>,
}

/// The function's last answer to an invocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvocationResponseView {
    /// Its status.
    pub status: u16,
    /// Its headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Its body as text (invalid UTF-8 replaced), at most the kept size.
    pub body: String,
    /// Whether the body was longer than what is kept.
    pub truncated: bool,
}

impl From<pilotlight_core::model::Invocation> for InvocationView {
    fn from(i: pilotlight_core::model::Invocation) -> Self {
        let state = serde_json::to_value(i.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        Self {
            function: i.function().to_string(),
            id: i.id.to_string(),
            state,
            reason: i.reason,
            method: i.request.method().to_owned(),
            path: i.request.path().to_owned(),
            body_bytes: i.request.body().len(),
            attempts: attempt_views(i.attempts),
            response: i.response.map(|r| InvocationResponseView {
                status: r.status,
                headers: r.headers,
                body: String::from_utf8_lossy(&r.body).into_owned(),
                truncated: r.truncated,
            }),
            callback_url: i.callback_url.map(|u| u.as_str().to_owned()),
            callback: i.callback.map(|c| CallbackView {
                state: serde_json::to_value(c.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                attempts: attempt_views(c.attempts),
                next_attempt_ms: c.next_attempt_ms,
                reason: c.reason,
            }),
            created_ms: i.created_ms,
            next_attempt_ms: i.next_attempt_ms,
            finished_ms: i.finished_ms,
        }
    }
}

/// A page of a function's invocations, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvocationList {
    /// The invocations of this page.
    pub invocations: Vec<InvocationView>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next_after: Option<String>,
}

/// What an accepted invocation or a redrive answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvocationReceipt {
    /// The invocation's id (also in `X-Call-Id`).
    pub id: String,
    /// The function.
    pub function: String,
    /// Where to read its outcome (also in `Location`).
    pub status_url: String,
}

/// How many dead letters were queued again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RedriveCount {
    /// Dead letters put back in the queue.
    pub requeued: usize,
}

/// A message published to a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublishReceipt {
    /// The topic.
    pub topic: String,
    /// Its key (messages of one key reach a function in order).
    pub key: String,
    /// The id it carries (the function gets it as `X-Message-Id`).
    pub message_id: String,
}

/// A secret as the API shows it: never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretView {
    /// Its name (the file the function reads is `/run/secrets/<name>`).
    #[schema(pattern = "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")]
    pub name: String,
    /// Its value's size in bytes.
    pub size: usize,
    /// When it was last set, in ms since the Unix epoch.
    pub updated_ms: u64,
    /// The functions that list it (they roll to a new generation when it is set).
    pub used_by: Vec<String>,
}

impl From<pilotlight_core::controller::SecretInfo> for SecretView {
    fn from(s: pilotlight_core::controller::SecretInfo) -> Self {
        Self {
            name: s.name.into(),
            size: s.size,
            updated_ms: s.updated_ms,
            used_by: s.used_by.into_iter().map(String::from).collect(),
        }
    }
}

/// Every secret, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    /// The secrets.
    pub secrets: Vec<SecretView>,
}

/// A registry login as the API shows it: never its password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegistryView {
    /// The registry, `host[:port]` as image references name it.
    pub registry: String,
    /// The user name.
    pub username: String,
    /// When it was last set, in ms since the Unix epoch.
    pub updated_ms: u64,
}

impl From<pilotlight_core::controller::LoginInfo> for RegistryView {
    fn from(l: pilotlight_core::controller::LoginInfo) -> Self {
        Self { registry: l.registry.into(), username: l.username, updated_ms: l.updated_ms }
    }
}

/// Every registry login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegistryList {
    /// The logins.
    pub registries: Vec<RegistryView>,
}

/// What `PUT /v1/registries/{registry}` takes.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    /// The user name: 1 to 4096 characters, no control characters.
    #[schema(min_length = 1, max_length = 4096, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub username: String,
    /// The password or token: 1 to 4096 characters, no control characters; kept sealed, never shown again.
    #[schema(min_length = 1, max_length = 4096, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryLogin({}, password hidden)", self.username)
    }
}

/// One line of `POST /v1/images/build`'s answer: a line of the build's
/// output, or, last, the image built or the error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuildLine {
    /// A line the build printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Last line, on success: the image reference built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Last line, on failure: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On failure: the build's last lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_lines: Vec<String>,
}

/// The images a `docker save` archive held, now loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoadedImages {
    /// Their references (or ids, for untagged ones).
    pub images: Vec<String>,
}

/// The last hour of a function's traffic (`GET /v1/functions/{name}/history`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    /// The function.
    pub function: String,
    /// Seconds per point.
    pub bucket_s: u64,
    /// Oldest first, one per bucket, empty ones included.
    #[schema(value_type = Vec<pilotlight_core::support::HistoryPoint>)]
    pub points: Vec<HistoryPointView>,
}

/// One bucket of a function's history.
pub type HistoryPointView = pilotlight_core::support::HistoryPoint;

/// The nodes of the platform, as this node sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    /// Whether this node is one of a cluster (false: one node alone, which runs everything).
    pub clustered: bool,
    /// The id of the node that answered.
    pub this_node: String,
    /// The live nodes, by id.
    pub nodes: Vec<NodeView>,
}

/// One live node: what it registered, its health, and what it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// Its id.
    pub id: String,
    /// The region it serves.
    pub region: String,
    /// Where the other nodes reach its gateway.
    pub gateway: String,
    /// Its memory budget for instances, MiB (0: none).
    pub capacity_mb: u64,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The pilotlight version it runs.
    pub version: String,
    /// When it registered, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// `ready`: registered and renewing; `fenced`: the node that answered
    /// cannot renew its registration, so it takes no ownership action.
    pub health: String,
    /// The functions placed on it.
    pub functions: Vec<String>,
    /// Running instances it reported, over all its functions.
    pub instances: usize,
}

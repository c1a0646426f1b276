use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::env::EnvVars;
use super::image::ImageRef;
use super::names::{FunctionName, Region, SecretName};
use super::node::NodeLabels;
use super::trigger::{Trigger, TriggerInput, validate_triggers};
use super::validation::{ValidationError, check_range, shown};

/// A TCP port, 1 to 65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct Port(u16);

impl Port {
    /// Validates a port number, reporting errors against `field`.
    pub fn parse_field(field: &str, value: i64) -> Result<Self, ValidationError> {
        check_range::<u16>(field, value, 1, 65535, "").map(Port)
    }
    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<i64> for Port {
    type Error = ValidationError;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::parse_field("port", v)
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The HTTP path a readiness check requests, e.g. `/healthz`.
///
/// Starts with `/`, at most 256 characters of `A-Z a-z 0-9 / . _ ~ - ? = & %`:
/// nothing that could end a request line, a header or a config directive.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HealthPath(String);

impl HealthPath {
    /// Validates a path, reporting errors against `field`.
    pub fn parse_field(field: &str, value: &str) -> Result<Self, ValidationError> {
        let ok = value.starts_with('/')
            && value.len() <= 256
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._~-?=&%".contains(&b));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "must start with '/' and have at most 256 characters of A-Z, a-z, 0-9 and / . _ ~ - ? = & % (got {})",
                    shown(value)
                ),
            ))
        }
    }
    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HealthPath {
    type Error = ValidationError;
    fn try_from(v: String) -> Result<Self, Self::Error> {
        Self::parse_field("health_path", &v)
    }
}

impl From<HealthPath> for String {
    fn from(v: HealthPath) -> String {
        v.0
    }
}

/// An executable and its arguments, for the process runtime. They are passed
/// to `execve` directly, never through a shell.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExecSpec {
    program: String,
    args: Vec<String>,
}

impl ExecSpec {
    /// The program to run: a path, or a name looked up in `PATH`.
    pub fn program(&self) -> &str {
        &self.program
    }
    /// Its arguments.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

/// What runs a function.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// A container image, for container runtimes.
    Image(ImageRef),
    /// A local executable, for the process runtime.
    Exec(ExecSpec),
}

impl Source {
    /// `"image"` or `"exec"`: the spec field this source came from, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Image(_) => "image",
            Source::Exec(_) => "exec",
        }
    }
}

/// Resource limits of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    memory_mb: u32,
    cpu_millis: u32,
    pids: u32,
    read_only_rootfs: bool,
}

impl Limits {
    /// Default memory limit: 128 MiB.
    pub const DEFAULT_MEMORY_MB: u32 = 128;
    /// Default CPU limit: one core.
    pub const DEFAULT_CPU_MILLIS: u32 = 1000;
    /// Default process/thread limit.
    pub const DEFAULT_PIDS: u32 = 256;

    /// Memory limit in MiB (6 to 65536; Docker refuses less than 6).
    pub fn memory_mb(&self) -> u32 {
        self.memory_mb
    }
    /// CPU limit in thousandths of a core (10 to 64000).
    pub fn cpu_millis(&self) -> u32 {
        self.cpu_millis
    }
    /// Maximum number of processes and threads (8 to 32768).
    pub fn pids(&self) -> u32 {
        self.pids
    }
    /// Whether the root filesystem is mounted read-only.
    pub fn read_only_rootfs(&self) -> bool {
        self.read_only_rootfs
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mb: Self::DEFAULT_MEMORY_MB,
            cpu_millis: Self::DEFAULT_CPU_MILLIS,
            pids: Self::DEFAULT_PIDS,
            read_only_rootfs: false,
        }
    }
}

/// The network an instance of a container function joins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Network {
    /// The platform's bridge network: the function can reach out (egress), and
    /// the edge reaches it through its namespace or a published port.
    #[default]
    Bridge,
    /// Loopback only: no egress at all, the fastest start and the tightest
    /// isolation. Only the gateway's namespace path can reach such an instance.
    None,
}

impl Network {
    /// `bridge` or `none`, as written in a spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Bridge => "bridge",
            Network::None => "none",
        }
    }
    /// Validates a value, reporting errors against `field`.
    pub fn parse_field(field: &str, value: &str) -> Result<Self, ValidationError> {
        match value {
            "bridge" => Ok(Network::Bridge),
            "none" => Ok(Network::None),
            other => Err(ValidationError::new(field, format!("must be `bridge` or `none` (got {})", shown(other)))),
        }
    }
}

/// How many instances a function runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scaling {
    min: u32,
    max: u32,
    prewarm: u32,
    precreate: u32,
    target_concurrency: u32,
    idle_timeout_s: u32,
}

impl Scaling {
    /// Default `min`: 0, so an idle function can scale to zero.
    pub const DEFAULT_MIN: u32 = 0;
    /// Default `max`.
    pub const DEFAULT_MAX: u32 = 4;
    /// Default `prewarm`: one paused instance kept ready.
    pub const DEFAULT_PREWARM: u32 = 1;
    /// Default `precreate`: none (a created container costs no memory, but
    /// a name, a network endpoint and disk for each).
    pub const DEFAULT_PRECREATE: u32 = 0;
    /// Default in-flight requests per instance.
    pub const DEFAULT_TARGET_CONCURRENCY: u32 = 10;
    /// Default idle time before scaling down, in seconds.
    pub const DEFAULT_IDLE_TIMEOUT_S: u32 = 60;
    /// Upper bound of `max`.
    pub const MAX_INSTANCES: u32 = 100;

    /// Fewest running instances (0 to 100).
    pub fn min(&self) -> u32 {
        self.min
    }
    /// Most running instances (1 to 100, at least `min`).
    pub fn max(&self) -> u32 {
        self.max
    }
    /// Paused instances kept ready (0 to `max`).
    pub fn prewarm(&self) -> u32 {
        self.prewarm
    }
    /// Instances kept created but not started (0 to `max`), beside the paused
    /// pool: they hold no memory, and starting one skips the create. Only
    /// runtimes that can create without starting (Docker) keep them.
    pub fn precreate(&self) -> u32 {
        self.precreate
    }
    /// In-flight requests one instance should carry (1 to 10000).
    pub fn target_concurrency(&self) -> u32 {
        self.target_concurrency
    }
    /// How long a function may be idle before it scales down.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s.into())
    }
    /// Instances a deploy starts: `max(min, 1)`, so a new function answers at
    /// once. Scaling down to `min` is the autoscaler's job.
    pub fn initial_instances(&self) -> u32 {
        self.min.max(1)
    }
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            min: Self::DEFAULT_MIN,
            max: Self::DEFAULT_MAX,
            prewarm: Self::DEFAULT_PREWARM,
            precreate: Self::DEFAULT_PRECREATE,
            target_concurrency: Self::DEFAULT_TARGET_CONCURRENCY,
            idle_timeout_s: Self::DEFAULT_IDLE_TIMEOUT_S,
        }
    }
}

/// A validated function: what to run, on which port, with which limits.
///
/// Built from a [`FunctionSpecInput`] (the JSON shape users write) by
/// [`FunctionSpecInput::validate`]; serializes back to that shape with every
/// default written out.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "FunctionSpecInput", into = "FunctionSpecInput")]
pub struct FunctionSpec {
    name: FunctionName,
    source: Source,
    port: Port,
    region: Option<Region>,
    env: EnvVars,
    limits: Limits,
    scaling: Scaling,
    timeout_s: u32,
    health_path: Option<HealthPath>,
    network: Network,
    triggers: Vec<Trigger>,
    asynchronous: AsyncPolicy,
    secrets: Vec<SecretName>,
    placement: NodeLabels,
}

impl FunctionSpec {
    /// Default per-request timeout, in seconds.
    pub const DEFAULT_TIMEOUT_S: u32 = 30;

    /// The function's name.
    pub fn name(&self) -> &FunctionName {
        &self.name
    }
    /// What runs it.
    pub fn source(&self) -> &Source {
        &self.source
    }
    /// The port it serves HTTP on, inside its instance.
    pub fn port(&self) -> Port {
        self.port
    }
    /// The region it was asked for; `None` means the platform's own.
    pub fn region(&self) -> Option<&Region> {
        self.region.as_ref()
    }
    /// Its environment (without `PORT`, which the runtime sets).
    pub fn env(&self) -> &EnvVars {
        &self.env
    }
    /// Resource limits of each instance.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// Its scaling policy.
    pub fn scaling(&self) -> &Scaling {
        &self.scaling
    }
    /// How long one request may take at the edge.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s.into())
    }
    /// The HTTP path that readiness checks, if any (otherwise a TCP connect suffices).
    pub fn health_path(&self) -> Option<&HealthPath> {
        self.health_path.as_ref()
    }
    /// The network its instances join (container runtimes).
    pub fn network(&self) -> Network {
        self.network
    }
    /// How its asynchronous invocations are taken and run.
    pub fn asynchronous(&self) -> &AsyncPolicy {
        &self.asynchronous
    }
    /// What calls it besides requests: cron schedules and topics.
    pub fn triggers(&self) -> &[Trigger] {
        &self.triggers
    }
    /// The secrets its instances read as files (`/run/secrets/<name>` in a
    /// container, `$PILOTLIGHT_SECRETS_DIR/<name>` for a process); never env.
    pub fn secrets(&self) -> &[SecretName] {
        &self.secrets
    }
    /// The node labels a node must have to run it (empty: any node of its region).
    pub fn placement(&self) -> &NodeLabels {
        &self.placement
    }
    /// The same spec in a given region (the platform fills in its own when none was asked).
    pub fn with_region(mut self, region: Region) -> Self {
        self.region = Some(region);
        self
    }
}

/// The program and arguments of an `exec` source, as written by a user.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecInput {
    /// The program to run: 1 to 4096 bytes without control characters but tab.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 4096))]
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

/// `limits` as written by a user; every field is optional.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    /// Memory in MiB, 6 to 65536; default 128.
    #[cfg_attr(feature = "openapi", schema(minimum = 6, maximum = 65536))]
    pub memory_mb: Option<i64>,
    /// CPU in thousandths of a core, 10 to 64000; default 1000.
    #[cfg_attr(feature = "openapi", schema(minimum = 10, maximum = 64000))]
    pub cpu_millis: Option<i64>,
    /// Processes and threads, 8 to 32768; default 256.
    #[cfg_attr(feature = "openapi", schema(minimum = 8, maximum = 32768))]
    pub pids: Option<i64>,
    /// Read-only root filesystem; default false.
    pub read_only_rootfs: Option<bool>,
}

/// `scaling` as written by a user; every field is optional.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingInput {
    /// Fewest running instances, 0 to 100, at most `max`; default 0.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub min: Option<i64>,
    /// Most instances, 1 to 100; default 4 (or `min` if that is more).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub max: Option<i64>,
    /// Paused instances kept ready, 0 to 100, at most `max`; default 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub prewarm: Option<i64>,
    /// Created instances kept ready, 0 to 100, at most `max`; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub precreate: Option<i64>,
    /// Requests in flight per instance the autoscaler aims at, 1 to 10000; default 10.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub target_concurrency: Option<i64>,
    /// Idle seconds before scaling down, 1 to 86400; default 60.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86400))]
    pub idle_timeout_s: Option<i64>,
}

/// How a function's asynchronous invocations are taken and run; every
/// field falls back to the platform's setting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsyncPolicy {
    /// The largest body accepted (413 beyond); `None`: the edge's setting (1 MiB).
    pub max_body_bytes: Option<usize>,
    /// Attempts under way at once per instance; `None`: the invoker's setting (1).
    pub per_instance: Option<u32>,
    /// Keep the caller's `Authorization` header for the function (default: dropped).
    pub forward_authorization: bool,
}

impl AsyncPolicy {
    /// The largest body an asynchronous invocation of a function may have.
    pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
}

/// `async` as written by a user; every field is optional.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncInput {
    /// The largest body accepted, 1 B to 16 MiB; default the platform's (1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16777216))]
    pub max_body_bytes: Option<i64>,
    /// Attempts under way at once per instance, 1 to 1000; default the platform's (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub per_instance: Option<i64>,
    /// Keep the caller's `Authorization` header (default false: it is dropped before the request is stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_authorization: Option<bool>,
}

fn validate_async(a: AsyncInput) -> Result<AsyncPolicy, ValidationError> {
    let cap = i64::try_from(AsyncPolicy::MAX_BODY_BYTES).unwrap_or(i64::MAX);
    Ok(AsyncPolicy {
        max_body_bytes: a.max_body_bytes.map(|v| check_range("max_body_bytes", v, 1, cap, " bytes")).transpose()?,
        per_instance: a.per_instance.map(|v| check_range("per_instance", v, 1, 1000, "")).transpose()?,
        forward_authorization: a.forward_authorization.unwrap_or(false),
    })
}

/// A function spec as users write it (JSON, TOML, a form). Unknown fields are
/// rejected. Only `name`, one of `image`/`exec`, and `port` are required.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpecInput {
    /// A DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'.
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, nullable = false, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)
    )]
    pub name: Option<String>,
    /// A container image reference (for the Docker runtime):
    /// `[registry[:port]/]repository[:tag][@sha256:<64 hex>]`, the name at most 255 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub image: Option<String>,
    /// An executable (for the process runtime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecInput>,
    /// The port the function serves HTTP on.
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false, minimum = 1, maximum = 65535))]
    pub port: Option<i64>,
    /// The region (a DNS label); default: the platform's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63))]
    pub region: Option<String>,
    /// Environment variables: at most 128, names `[A-Za-z_][A-Za-z0-9_]*` (not `PORT`
    /// or `PILOTLIGHT_*`), values at most 4096 bytes without control characters but tab,
    /// 64 KiB in all.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsInput>,
    /// Scaling policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingInput>,
    /// Per-request timeout in seconds, 1 to 3600; default 30.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    pub timeout_s: Option<i64>,
    /// Readiness path such as `/healthz`; default none (a TCP connect suffices).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^/[A-Za-z0-9/._~?=&%-]{0,255}$", max_length = 256))]
    pub health_path: Option<String>,
    /// `bridge` (default: egress allowed) or `none` (loopback only: no
    /// egress, the fastest start; needs the gateway's namespace path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(bridge|none)$"))]
    pub network: Option<String>,
    /// Cron schedules (`{"cron": "*/5 * * * *", "path": "/tick"}`) and topics
    /// (`{"topic": "orders", "path": "/order"}`) that call the function; at most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 16))]
    pub triggers: Vec<TriggerInput>,
    /// Asynchronous invocations of this function: body cap, concurrency, `Authorization`.
    #[serde(rename = "async", default, skip_serializing_if = "Option::is_none")]
    pub asynchronous: Option<AsyncInput>,
    /// Names of secrets (`pilotlight secret set NAME`) the function reads as
    /// files at `/run/secrets/<name>`; at most 32, no repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 32))]
    pub secrets: Vec<String>,
    /// Where it may run when several nodes share the platform: the node
    /// labels required (`{"labels": {"disk": "ssd"}}`); default any node of its region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementInput>,
}

/// `placement` as written by a user.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementInput {
    /// Labels a node must have, each key and value 1 to 63 of a-z, 0-9, `-`, `_` and `.`; at most 16.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

const MAX_ARGS: usize = 256;
/// How many secrets one function may list.
pub const MAX_SECRETS: usize = 32;
const MAX_ARG_BYTES: usize = 4096;

impl FunctionSpecInput {
    /// A spec that runs a container image.
    pub fn image(name: &str, image: &str, port: i64) -> Self {
        Self { name: Some(name.into()), image: Some(image.into()), port: Some(port), ..Self::default() }
    }

    /// A spec that runs a local executable.
    pub fn exec(name: &str, program: &str, args: &[&str], port: i64) -> Self {
        Self {
            name: Some(name.into()),
            exec: Some(ExecInput { program: program.into(), args: args.iter().map(|a| (*a).to_owned()).collect() }),
            port: Some(port),
            ..Self::default()
        }
    }

    /// Checks every field and builds the spec; the first broken rule is returned.
    pub fn validate(self) -> Result<FunctionSpec, ValidationError> {
        let name =
            FunctionName::parse_field("name", self.name.ok_or_else(|| ValidationError::new("name", "is required"))?)?;
        let source = match (self.image, self.exec) {
            (Some(_), Some(_)) => {
                return Err(ValidationError::new("image", "give either `image` or `exec`, not both"));
            }
            (None, None) => {
                return Err(ValidationError::new("image", "is required (or `exec` for the process runtime)"));
            }
            (Some(image), None) => Source::Image(ImageRef::parse_field("image", &image)?),
            (None, Some(exec)) => Source::Exec(validate_exec(exec)?),
        };
        let port = Port::parse_field("port", self.port.ok_or_else(|| ValidationError::new("port", "is required"))?)?;
        let region = self.region.map(|r| Region::parse_field("region", r)).transpose()?;
        let env = EnvVars::new(self.env)?;
        let limits = validate_limits(self.limits.unwrap_or_default()).map_err(|e| e.within("limits"))?;
        let scaling = validate_scaling(self.scaling.unwrap_or_default()).map_err(|e| e.within("scaling"))?;
        let timeout_s = match self.timeout_s {
            Some(t) => check_range("timeout_s", t, 1, 3600, " seconds")?,
            None => FunctionSpec::DEFAULT_TIMEOUT_S,
        };
        let health_path = self.health_path.map(|p| HealthPath::parse_field("health_path", &p)).transpose()?;
        let network = self.network.map_or(Ok(Network::default()), |n| Network::parse_field("network", &n))?;
        let triggers = validate_triggers(self.triggers)?;
        let asynchronous = validate_async(self.asynchronous.unwrap_or_default()).map_err(|e| e.within("async"))?;
        let secrets = validate_secrets(self.secrets)?;
        let placement =
            NodeLabels::parse_field("placement.labels", self.placement.map(|p| p.labels).unwrap_or_default())?;
        Ok(FunctionSpec {
            name,
            source,
            port,
            region,
            env,
            limits,
            scaling,
            timeout_s,
            health_path,
            network,
            triggers,
            asynchronous,
            secrets,
            placement,
        })
    }
}

fn validate_secrets(names: Vec<String>) -> Result<Vec<SecretName>, ValidationError> {
    if names.len() > MAX_SECRETS {
        return Err(ValidationError::new("secrets", format!("must list at most {MAX_SECRETS} secrets")));
    }
    let mut out: Vec<SecretName> = Vec::with_capacity(names.len());
    for (i, n) in names.into_iter().enumerate() {
        let field = format!("secrets.{i}");
        let name = SecretName::parse_field(&field, n)?;
        if out.contains(&name) {
            return Err(ValidationError::new(field, format!("`{name}` is listed twice")));
        }
        out.push(name);
    }
    Ok(out)
}

fn validate_exec(exec: ExecInput) -> Result<ExecSpec, ValidationError> {
    let printable = |s: &str| !s.chars().any(|c| c.is_control() && c != '\t');
    if exec.program.is_empty() || exec.program.len() > MAX_ARG_BYTES || !printable(&exec.program) {
        return Err(ValidationError::new(
            "exec.program",
            format!("must be 1 to {MAX_ARG_BYTES} bytes without control characters (got {})", shown(&exec.program)),
        ));
    }
    if exec.args.len() > MAX_ARGS {
        return Err(ValidationError::new("exec.args", format!("must have at most {MAX_ARGS} arguments")));
    }
    for (i, a) in exec.args.iter().enumerate() {
        if a.len() > MAX_ARG_BYTES || !printable(a) {
            return Err(ValidationError::new(
                format!("exec.args.{i}"),
                format!("must be at most {MAX_ARG_BYTES} bytes without control characters"),
            ));
        }
    }
    Ok(ExecSpec { program: exec.program, args: exec.args })
}

fn validate_limits(l: LimitsInput) -> Result<Limits, ValidationError> {
    let d = Limits::default();
    Ok(Limits {
        memory_mb: l.memory_mb.map_or(Ok(d.memory_mb), |v| check_range("memory_mb", v, 6, 65536, " MiB"))?,
        cpu_millis: l.cpu_millis.map_or(Ok(d.cpu_millis), |v| check_range("cpu_millis", v, 10, 64000, ""))?,
        pids: l.pids.map_or(Ok(d.pids), |v| check_range("pids", v, 8, 32768, ""))?,
        read_only_rootfs: l.read_only_rootfs.unwrap_or(d.read_only_rootfs),
    })
}

fn validate_scaling(s: ScalingInput) -> Result<Scaling, ValidationError> {
    let d = Scaling::default();
    let cap = i64::from(Scaling::MAX_INSTANCES);
    let min: u32 = s.min.map_or(Ok(d.min), |v| check_range("min", v, 0, cap, ""))?;
    // An explicit `min` above the default `max` raises the default rather than failing.
    let max: u32 = match s.max {
        Some(v) => check_range("max", v, 1, cap, "")?,
        None => d.max.max(min),
    };
    if min > max {
        return Err(ValidationError::new("min", format!("must not exceed max ({min} > {max})")));
    }
    let prewarm: u32 = s.prewarm.map_or(Ok(d.prewarm.min(max)), |v| check_range("prewarm", v, 0, cap, ""))?;
    if prewarm > max {
        return Err(ValidationError::new("prewarm", format!("must not exceed max ({prewarm} > {max})")));
    }
    let precreate: u32 = s.precreate.map_or(Ok(d.precreate), |v| check_range("precreate", v, 0, cap, ""))?;
    if precreate > max {
        return Err(ValidationError::new("precreate", format!("must not exceed max ({precreate} > {max})")));
    }
    Ok(Scaling {
        min,
        max,
        prewarm,
        precreate,
        target_concurrency: s
            .target_concurrency
            .map_or(Ok(d.target_concurrency), |v| check_range("target_concurrency", v, 1, 10_000, ""))?,
        idle_timeout_s: s
            .idle_timeout_s
            .map_or(Ok(d.idle_timeout_s), |v| check_range("idle_timeout_s", v, 1, 86_400, " seconds"))?,
    })
}

impl TryFrom<FunctionSpecInput> for FunctionSpec {
    type Error = ValidationError;
    fn try_from(v: FunctionSpecInput) -> Result<Self, Self::Error> {
        v.validate()
    }
}

impl From<FunctionSpec> for FunctionSpecInput {
    fn from(s: FunctionSpec) -> Self {
        let (image, exec) = match s.source {
            Source::Image(i) => (Some(i.to_string()), None),
            Source::Exec(e) => (None, Some(ExecInput { program: e.program, args: e.args })),
        };
        FunctionSpecInput {
            name: Some(s.name.into()),
            image,
            exec,
            port: Some(s.port.get().into()),
            region: s.region.map(Into::into),
            env: s.env.into(),
            limits: Some(LimitsInput {
                memory_mb: Some(s.limits.memory_mb.into()),
                cpu_millis: Some(s.limits.cpu_millis.into()),
                pids: Some(s.limits.pids.into()),
                read_only_rootfs: Some(s.limits.read_only_rootfs),
            }),
            scaling: Some(ScalingInput {
                min: Some(s.scaling.min.into()),
                max: Some(s.scaling.max.into()),
                prewarm: Some(s.scaling.prewarm.into()),
                // Written out only when set, so specs stored before the field existed read back the same.
                precreate: (s.scaling.precreate != Scaling::DEFAULT_PRECREATE).then(|| s.scaling.precreate.into()),
                target_concurrency: Some(s.scaling.target_concurrency.into()),
                idle_timeout_s: Some(s.scaling.idle_timeout_s.into()),
            }),
            timeout_s: Some(s.timeout_s.into()),
            health_path: s.health_path.map(Into::into),
            // Written out only when set, so specs stored before the field existed read back the same.
            network: (s.network != Network::default()).then(|| s.network.as_str().to_owned()),
            triggers: s.triggers.into_iter().map(TriggerInput::from).collect(),
            // Written out only when set, so specs stored before the field existed read back the same.
            asynchronous: (s.asynchronous != AsyncPolicy::default()).then(|| AsyncInput {
                max_body_bytes: s.asynchronous.max_body_bytes.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                per_instance: s.asynchronous.per_instance.map(i64::from),
                forward_authorization: Some(s.asynchronous.forward_authorization),
            }),
            secrets: s.secrets.into_iter().map(String::from).collect(),
            // Written out only when set, so specs stored before the field existed read back the same.
            placement: (!s.placement.is_empty()).then(|| PlacementInput { labels: s.placement.into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<FunctionSpec, String> {
        let input: FunctionSpecInput = serde_json::from_str(json).map_err(|e| e.to_string())?;
        input.validate().map_err(|e| e.field)
    }

    #[test]
    fn minimal_spec_gets_documented_defaults() {
        let spec = parse(r#"{"name":"hello","image":"pilotlight/hello:latest","port":8080}"#).unwrap();
        assert_eq!(spec.limits(), &Limits::default());
        assert_eq!(spec.scaling(), &Scaling::default());
        assert_eq!(spec.timeout(), Duration::from_secs(30));
        assert_eq!(spec.scaling().initial_instances(), 1);
        // Round trip through JSON keeps every value.
        let json = serde_json::to_string(&spec).unwrap();
        let back: FunctionSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn secrets_are_names_that_round_trip_and_are_bounded() {
        let spec = parse(r#"{"name":"a","image":"a","port":1,"secrets":["db-password","tls.key"]}"#).unwrap();
        let names: Vec<&str> = spec.secrets().iter().map(SecretName::as_str).collect();
        assert_eq!(names, ["db-password", "tls.key"]);
        let back: FunctionSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
        let many: Vec<String> = (0..=MAX_SECRETS).map(|i| format!("\"s{i}\"")).collect();
        let json = format!(r#"{{"name":"a","image":"a","port":1,"secrets":[{}]}}"#, many.join(","));
        assert_eq!(parse(&json).unwrap_err(), "secrets");
    }

    #[test]
    fn the_issue_example_parses() {
        let spec = parse(
            r#"{"name":"hello","image":"pilotlight/hello:latest","port":8080,"region":"local",
                "env":{"K":"V"},"limits":{"memory_mb":128,"cpu_millis":500,"pids":64},
                "scaling":{"min":0,"max":4,"prewarm":1,"target_concurrency":10,"idle_timeout_s":60},
                "timeout_s":30}"#,
        )
        .unwrap();
        assert_eq!(spec.limits().cpu_millis(), 500);
        assert_eq!(spec.region().map(Region::as_str), Some("local"));
    }

    #[test]
    fn every_rejection_names_its_field() {
        let cases = [
            (r#"{"image":"a","port":1}"#, "name"),
            (r#"{"name":"Bad","image":"a","port":1}"#, "name"),
            (r#"{"name":"a","port":1}"#, "image"),
            (r#"{"name":"a","image":"a","exec":{"program":"x"},"port":1}"#, "image"),
            (r#"{"name":"a","image":"A","port":1}"#, "image"),
            (r#"{"name":"a","image":"a"}"#, "port"),
            (r#"{"name":"a","image":"a","port":0}"#, "port"),
            (r#"{"name":"a","image":"a","port":70000}"#, "port"),
            (r#"{"name":"a","image":"a","port":1,"region":"EU"}"#, "region"),
            (r#"{"name":"a","image":"a","port":1,"env":{"1X":"v"}}"#, "env.1X"),
            (r#"{"name":"a","image":"a","port":1,"limits":{"memory_mb":1}}"#, "limits.memory_mb"),
            (r#"{"name":"a","image":"a","port":1,"scaling":{"min":5,"max":2}}"#, "scaling.min"),
            (r#"{"name":"a","image":"a","port":1,"scaling":{"prewarm":9,"max":2}}"#, "scaling.prewarm"),
            (r#"{"name":"a","image":"a","port":1,"scaling":{"max":0}}"#, "scaling.max"),
            (r#"{"name":"a","image":"a","port":1,"timeout_s":0}"#, "timeout_s"),
            (r#"{"name":"a","image":"a","port":1,"health_path":"x"}"#, "health_path"),
            (r#"{"name":"a","exec":{"program":""},"port":1}"#, "exec.program"),
            (r#"{"name":"a","exec":{"program":"x","args":["a\u0000"]},"port":1}"#, "exec.args.0"),
            (r#"{"name":"a","image":"a","port":1,"secrets":["ok","../etc"]}"#, "secrets.1"),
            (r#"{"name":"a","image":"a","port":1,"secrets":["ok","ok"]}"#, "secrets.1"),
        ];
        for (json, field) in cases {
            assert_eq!(parse(json).unwrap_err(), field, "{json}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse(r#"{"name":"a","image":"a","port":1,"replicas":3}"#).unwrap_err();
        assert!(err.contains("unknown field `replicas`"), "{err}");
    }

    #[test]
    fn min_above_default_max_raises_max() {
        let spec = parse(r#"{"name":"a","image":"a","port":1,"scaling":{"min":6}}"#).unwrap();
        assert_eq!((spec.scaling().min(), spec.scaling().max()), (6, 6));
        assert_eq!(spec.scaling().initial_instances(), 6);
    }
}

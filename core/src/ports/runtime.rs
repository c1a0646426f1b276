use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use super::BoxError;
use crate::model::{FunctionName, FunctionSpec, Instance, InstanceId};

/// Which output stream a log line came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line an instance wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Where it was written.
    pub source: LogSource,
    /// The text, without its line break.
    pub line: String,
    /// When it was read, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// What part of an instance's logs to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last this-many lines kept (all kept lines when `None`).
    pub tail: Option<usize>,
    /// Keep the stream open and yield new lines as they are written.
    pub follow: bool,
}

/// A stream of log lines.
pub type LogStream = BoxStream<'static, Result<LogLine, RuntimeError>>;

/// Resource use of one instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceStats {
    /// CPU time used so far, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub memory_bytes: u64,
    /// The memory limit, in bytes, if the runtime enforces one.
    pub memory_limit_bytes: Option<u64>,
}

/// Why an instance ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExitReason {
    /// It exited with this status code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// It was killed for using more memory than its limit.
    OutOfMemory,
    /// The runtime could not tell.
    Unknown,
}

/// Something that happened to an instance without the controller asking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RuntimeEvent {
    /// An instance ended on its own (crash, OOM, killed from outside).
    /// Not sent for instances the controller stopped.
    Exited {
        /// The instance.
        id: InstanceId,
        /// Its function.
        function: FunctionName,
        /// Its generation.
        generation: u64,
        /// Why.
        reason: ExitReason,
    },
    /// Events may have been missed (the runtime's event source reconnected,
    /// or a reader fell behind): whoever watches should list everything again.
    Resync {
        /// What happened, for the logs.
        reason: String,
    },
}

/// A stream of runtime events.
pub type RuntimeEvents = BoxStream<'static, RuntimeEvent>;

/// One layer of an image pull, as the engine reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerProgress {
    /// The layer's short id.
    pub id: String,
    /// What the engine says of it (`Downloading`, `Extracting`, `Pull complete`, `Already exists`).
    pub status: String,
    /// Bytes done of the current step.
    pub current_bytes: u64,
    /// Bytes of the current step in all, when known.
    pub total_bytes: u64,
}

/// An image pull, in progress or the last one finished, layer by layer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// The image.
    pub image: String,
    /// Each layer, in the order the engine first named it.
    pub layers: Vec<LayerProgress>,
    /// Whether it ended (well or not).
    pub done: bool,
    /// When it began and (if done) ended, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// See `started_ms`.
    pub finished_ms: Option<u64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl PullProgress {
    /// Bytes done and in all, over the layers whose size is known.
    pub fn bytes(&self) -> (u64, u64) {
        self.layers.iter().fold((0, 0), |(c, t), l| (c + l.current_bytes, t + l.total_bytes))
    }

    /// One line for people: `3/5 layers, 12.3/40.1 MB`.
    pub fn summary(&self) -> String {
        let finished = |s: &str| {
            let s = s.to_ascii_lowercase();
            s.contains("complete") || s.contains("already exists")
        };
        let complete = self.layers.iter().filter(|l| finished(&l.status)).count();
        let (current, total) = self.bytes();
        let mb = |b: u64| b as f64 / 1_000_000.0;
        let verb = if self.done { "pulled" } else { "pulling" };
        format!(
            "{verb} {}: {complete}/{} layers, {:.1}/{:.1} MB",
            self.image,
            self.layers.len(),
            mb(current),
            mb(total)
        )
    }
}

/// Runs instances of functions (containers, processes).
///
/// Contract (checked by `testkit::runtime`):
/// - `start` returns only once the instance answers on its endpoint (readiness),
///   or fails with the instance removed and its last log lines in the error.
/// - Instances carry labels (platform, function, generation), so `list` finds
///   those this platform owns even after the platform restarted.
/// - `stop` is idempotent: stopping a gone instance is Ok.
/// - A source of the wrong kind (an image for the process runtime) is `InvalidInput`.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Makes sure `spec` can be started (pulls an image, checks an executable). Idempotent.
    async fn prepare(&self, spec: &FunctionSpec) -> Result<(), RuntimeError>;
    /// Starts one instance of `spec` at `generation` and waits until it is ready.
    async fn start(&self, spec: &FunctionSpec, generation: u64) -> Result<Instance, RuntimeError>;
    /// Stops an instance gracefully (then forcibly after a grace period) and removes it.
    async fn stop(&self, id: &InstanceId) -> Result<(), RuntimeError>;
    /// Freezes an instance; it keeps its memory and resumes in milliseconds.
    async fn pause(&self, id: &InstanceId) -> Result<(), RuntimeError>;
    /// Thaws a paused instance.
    async fn resume(&self, id: &InstanceId) -> Result<Instance, RuntimeError>;
    /// Creates an instance of `spec` at `generation` without starting it (a
    /// container in state `created`): it holds no memory and runs nothing, and
    /// [`start_created`](Self::start_created) makes it ready sooner than
    /// [`start`](Self::start) would. `list` shows it as `Created`.
    ///
    /// A runtime with no such state (a process exists only once it runs)
    /// keeps this default, `Unsupported`, and the pool skips that tier.
    async fn create(&self, spec: &FunctionSpec, generation: u64) -> Result<Instance, RuntimeError> {
        let _ = generation;
        Err(RuntimeError::Unsupported(format!("creating `{}` without starting it", spec.name())))
    }
    /// Starts an instance made by [`create`](Self::create) and waits until it
    /// is ready, with `start`'s contract: on failure it is removed and the
    /// error carries its last log lines.
    async fn start_created(&self, spec: &FunctionSpec, id: &InstanceId) -> Result<Instance, RuntimeError> {
        let _ = spec;
        Err(RuntimeError::Unsupported(format!("starting the created instance `{id}`")))
    }
    /// Every instance this platform owns.
    async fn list(&self) -> Result<Vec<Instance>, RuntimeError>;
    /// The instances of one function: what a single reconcile reads. A
    /// runtime that can filter where the instances live (the engine's label
    /// filter) overrides this, so a reconcile does not fetch every instance.
    async fn list_function(&self, function: &FunctionName) -> Result<Vec<Instance>, RuntimeError> {
        Ok(self.list().await?.into_iter().filter(|i| &i.function == function).collect())
    }
    /// An instance's logs.
    async fn logs(&self, id: &InstanceId, options: LogOptions) -> Result<LogStream, RuntimeError>;
    /// An instance's resource use.
    async fn stats(&self, id: &InstanceId) -> Result<InstanceStats, RuntimeError>;
    /// The pull of `image` under way, or the last one finished, if this
    /// runtime pulls images and pulled this one (for progress in a status).
    fn pull_progress(&self, image: &str) -> Option<PullProgress> {
        let _ = image;
        None
    }
    /// Exits and other events the controller did not cause. Each call returns
    /// a new stream. A runtime whose event source can fail reconnects by
    /// itself and then sends [`RuntimeEvent::Resync`]; so does a stream whose
    /// reader fell behind and lost events. The controller's periodic pass
    /// repairs whatever an event stream misses anyway.
    fn events(&self) -> RuntimeEvents;
}

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No such instance.
    #[error("instance `{0}` not found")]
    NotFound(InstanceId),
    /// The spec cannot run here (e.g. an image given to the process runtime).
    #[error("invalid `{field}`: {message}")]
    InvalidInput {
        /// What was wrong.
        field: String,
        /// The rule, or what this runtime accepts instead.
        message: String,
    },
    /// The image or executable cannot be had.
    #[error("cannot prepare `{what}`: {message}")]
    Unpreparable {
        /// The image or program.
        what: String,
        /// Why.
        message: String,
    },
    /// The instance did not become ready; it was removed. `logs` are its last lines.
    #[error("{message}{}", format_logs(.logs))]
    NotReady {
        /// What happened (deadline passed, exited early).
        message: String,
        /// Its last log lines.
        logs: Vec<String>,
    },
    /// The runtime cannot be reached now; try again.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// This runtime does not do that (e.g. create without starting).
    #[error("this runtime does not support {0}")]
    Unsupported(String),
    /// The backend failed.
    #[error("runtime backend: {source}")]
    Backend {
        /// The underlying error.
        #[source]
        source: BoxError,
        /// Whether trying again can help.
        retryable: bool,
    },
}

fn format_logs(logs: &[String]) -> String {
    if logs.is_empty() { String::new() } else { format!("; last log lines:\n{}", logs.join("\n")) }
}

impl RuntimeError {
    /// The error a runtime gives for a source it does not run: `runtime` (e.g.
    /// "Docker runtime") runs `wants` sources; `hint` says where to go instead.
    pub fn wrong_source(spec: &crate::model::FunctionSpec, runtime: &str, wants: &str, hint: &str) -> Self {
        let kind = spec.source().kind();
        RuntimeError::InvalidInput {
            field: kind.into(),
            message: format!("the {runtime} runs `{wants}` sources, but `{}` gives an `{kind}`; {hint}", spec.name()),
        }
    }

    /// Whether trying again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RuntimeError::NotReady { .. } | RuntimeError::Unavailable(_) => true,
            RuntimeError::Backend { retryable, .. } => *retryable,
            RuntimeError::NotFound(_)
            | RuntimeError::InvalidInput { .. }
            | RuntimeError::Unpreparable { .. }
            | RuntimeError::Unsupported(_) => false,
        }
    }
}

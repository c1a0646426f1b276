//! The controller: the platform's API and the workers that converge state.
//!
//! ```text
//! Platform::deploy ─ validate ─ Store (the record is the intent) ─ "deployments" (a nudge) ─▶ RuntimeWorker
//!   RuntimeWorker: reconcile(name) = read record + list instances ─ plan (pure) ─ execute
//!     ─ "routes" ─▶ RouterWorker ─ Router: apply the whole table ─ "status" ─▶ StatusWorker ─ Store
//!     ─ "status" (Observed) ─▶ StatusWorker ─ Store (phase derived from what was observed)
//!   periodic pass (every ~30 s): every function reconciled, the route table applied again
//! ```
//!
//! Intent lives in the Store (spec, generation, deleted, desired scale);
//! events only make a reconcile happen sooner. Every handler is idempotent
//! and compares generations, because the queue delivers at least once and a
//! process can die between any two steps. A failed reconcile backs off and is
//! retried until it converges or the function is deleted; the dead-letter
//! topic keeps only events that cannot be handled at all (undecodable).

mod autoscaler;
pub mod cluster;
mod consume;
mod cron;
mod error;
mod invocations;
mod invoker;
mod plan;
mod platform;
mod records;
mod router_worker;
mod runtime_worker;
mod secrets;
mod status_worker;
mod topics;
mod urls;
mod workqueue;

pub use autoscaler::{Autoscaler, AutoscalerConfig, Decision};
pub use consume::{Attempt, EventHandler, run_consumer};
pub use cron::{CronConfig, CronPass, CronScheduler};
pub use error::{HandlerError, PlatformError};
pub use invocations::{InvocationStore, Redrive};
pub use invoker::{Invoker, InvokerConfig, InvokerNudge, StoreIntake};
pub use plan::{Plan, PlanInput, Step, plan};
pub use platform::{DeployReceipt, InstanceLogLine, Platform, PlatformBuilder, StatusUpdate, StoreActivator};
pub use router_worker::RouterWorker;
pub use runtime_worker::{FastResume, PassReport, RuntimeWorker, RuntimeWorkerConfig};
pub use secrets::{
    KeySource, LoginInfo, MAX_LOGIN_CHARS, MAX_SECRET_BYTES, MAX_SECRETS_STORED, SECRET_KEY_ENV, SecretInfo, SecretKey,
    SecretVault,
};
pub use status_worker::StatusWorker;
pub use topics::{MESSAGE_ID_HEADER, TopicConfig, TopicTriggers, trigger_group};
pub use urls::PublicUrls;

/// Consumer group names.
pub mod groups {
    /// The runtime worker's group on `deployments`.
    pub const RUNTIME: &str = "runtime";
    /// The router worker's group on `routes`.
    pub const ROUTER: &str = "router";
    /// The status worker's group on `status`.
    pub const STATUS: &str = "status";
}

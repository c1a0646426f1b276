//! The controller: the platform's API and the workers that converge state.
//!
//! ```text
//! Platform::deploy ─ validate ─ Store (generation += 1) ─ "deployments" ─▶ RuntimeWorker
//!   RuntimeWorker ─ Runtime: prepare, start until ready, stop old ─ "routes" ─▶ RouterWorker
//!   RouterWorker ─ Router: apply the whole table ─ "status" ─▶ StatusWorker ─ Store
//! ```
//!
//! Every handler is idempotent and compares generations, because the queue
//! delivers at least once and a process can die between any two steps. Each
//! handler returns `Ok` (ack), or a [`HandlerError`] that says whether to retry
//! (nack, with backoff, then dead-letter) or dead-letter at once.

mod autoscaler;
mod consume;
mod error;
mod platform;
mod router_worker;
mod runtime_worker;
mod status_worker;
mod urls;

pub use autoscaler::{Autoscaler, AutoscalerConfig, Decision};
pub use consume::{Attempt, EventHandler, run_consumer};
pub use error::{HandlerError, PlatformError};
pub use platform::{DeployReceipt, InstanceLogLine, Platform, PlatformActivator, PlatformBuilder, StatusUpdate};
pub use router_worker::RouterWorker;
pub use runtime_worker::{RuntimeWorker, RuntimeWorkerConfig};
pub use status_worker::StatusWorker;
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

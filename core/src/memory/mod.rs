//! In-memory backends of the four ports: the embedded defaults (queue, store),
//! a router that records what it was told, and a runtime whose instances are
//! tiny HTTP servers inside this process. They run the same conformance
//! suites as the real backends.

mod queue;
mod router;
mod runtime;
mod store;

pub use queue::{MemoryQueue, MemoryQueueConfig};
pub use router::MemoryRouter;
pub use runtime::MemoryRuntime;
pub use store::MemoryStore;

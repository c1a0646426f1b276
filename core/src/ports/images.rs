//! Images sent to the platform instead of pulled: a build context built by
//! the engine, or a `docker save` archive loaded into it.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::RuntimeError;

/// Builds and loads images where the runtime runs them (the Docker engine).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Images: Send + Sync + 'static {
    /// Builds `tag` from `context` (a tar with a `Dockerfile` at its root),
    /// sending each line of the build's output to `log` as it comes. A failed
    /// build's error carries its last lines.
    async fn build(&self, tag: &str, context: Vec<u8>, log: mpsc::Sender<String>) -> Result<(), RuntimeError>;
    /// Loads a `docker save` archive; returns the image references it held.
    async fn load(&self, archive: Vec<u8>) -> Result<Vec<String>, RuntimeError>;
}

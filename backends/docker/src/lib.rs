//! pilotlight-docker: a [`Runtime`](pilotlight_core::Runtime) on Docker, through bollard.
//!
//! Each instance is one container, created from the function's image with:
//! - labels `io.pilotlight.platform`, `io.pilotlight.function`,
//!   `io.pilotlight.generation`, so `list` (and a restarted platform) finds it;
//! - `PORT` and the function's env;
//! - its port published on 127.0.0.1 with an ephemeral host port (never
//!   0.0.0.0), on a Docker network of the platform's own;
//! - memory (and memory+swap equal to it), nano-CPUs and pids limits;
//! - `no-new-privileges`, every capability dropped, never privileged, a
//!   read-only root filesystem when the spec asks; restart policy `no` (the
//!   platform replaces instances, not Docker); a capped json-file log;
//! - the function's secrets, if it lists any, as read-only files in a bind
//!   mount at `/run/secrets` (never in env, so `docker inspect` shows the
//!   directory's path and no value).
//!
//! Readiness is probed only after the engine's start call returned (probing
//! earlier runs into the kernel's ~1 s SYN retry on a port whose container
//! network is not up yet), by an HTTP request (a TCP connect proves nothing:
//! docker-proxy accepts on the published port even while the container does
//! not listen), on the health path when the spec has one. On the deadline the error carries the container's last log lines and
//! the container is removed.

mod build;
mod runtime;

pub use build::{build_image_from_dir, build_image_from_tar};

/// bollard's kill options, for tests and tools that kill a container from outside.
pub mod bollard_kill {
    pub use bollard::query_parameters::KillContainerOptions;
}
pub use runtime::{
    DockerRuntime, DockerRuntimeConfig, EndpointMode, LABEL_FUNCTION, LABEL_GENERATION, LABEL_PLATFORM, SECRETS_MOUNT,
};

//! pilotlight-process: a [`Runtime`](pilotlight_core::Runtime) that runs each
//! instance of a function as a local child process. No Docker needed.
//!
//! - The function's `exec` source is spawned directly (no shell) in its own
//!   process group, with `PORT` (a free loopback port), `HOST=127.0.0.1`, the
//!   function's env, and label variables (`PILOTLIGHT_PLATFORM`,
//!   `PILOTLIGHT_FUNCTION`, `PILOTLIGHT_GENERATION`) by which a restarted
//!   platform finds its instances again in `/proc`.
//! - `start` returns once the process answers HTTP on its port (2xx on the
//!   health path, if the spec has one); if it exits first, or the deadline
//!   passes, the error carries its last output.
//! - The function's secrets, if it lists any, are files in a directory of
//!   their own, named by `PILOTLIGHT_SECRETS_DIR` (never env values).
//! - stdout and stderr are kept as logs; exits nobody asked for are reported.
//! - `stop` sends SIGTERM to the group, then SIGKILL after a grace period;
//!   `pause`/`resume` send SIGSTOP/SIGCONT.
//!
//! What it does not do: enforce the spec's limits (memory, CPU, pids) or
//! isolate the process. Use the Docker runtime for that.

mod adopt;
mod runtime;

pub use runtime::{ProcessRuntime, ProcessRuntimeConfig, SECRETS_DIR_ENV};

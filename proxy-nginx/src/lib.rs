//! pilotlight-nginx: pilotlight's [`Router`](pilotlight_core::Router) on NGINX,
//! for those who already run it.
//!
//! - [`NginxRouter::apply`](pilotlight_core::Router::apply) renders the whole
//!   route table with tera templates (built in, or your own directory) into a
//!   new generation directory, runs `nginx -t` on it, switches the `current`
//!   symlink to it in one rename, reloads NGINX, and returns only once NGINX's
//!   status location answers with the new generation. On any failure the
//!   previous configuration keeps serving and the error carries NGINX's own
//!   message. Applies that arrive during a reload are coalesced into one.
//! - Managed mode starts NGINX as the current user from a generated main
//!   configuration under the data directory; system mode drives an installed
//!   NGINX through a config directory and a reload command.
//! - Each function gets an `upstream` with keepalive and a `server` for
//!   `<name>.<domain>` on the HTTP and HTTPS listeners. A default server answers
//!   404 with JSON and holds the one certificate. A function with no ready
//!   instance points at the gateway's activator (or answers 503).
//! - Nothing user-supplied is pasted raw: every value in a template comes from
//!   a validated type and is checked again before rendering.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pilotlight_core::model::{Domain, RouteTable};
//! use pilotlight_core::Router;
//! use pilotlight_nginx::{NginxConfig, NginxRouter};
//!
//! let config = NginxConfig::managed(Domain::new("localhost")?, "pilotlight-data")
//!     .with_https(([127, 0, 0, 1], 8443).into(), "/etc/ssl/wildcard.pem", "/etc/ssl/wildcard.key");
//! let nginx = NginxRouter::start(config).await?;
//! nginx.apply(&RouteTable::new()).await?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod generations;
mod process;
pub mod render;
mod router;

pub use config::{HttpsConfig, NginxConfig, NginxMode, SystemReload};
pub use error::NginxError;
pub use generations::CURRENT;
pub use process::STATUS_PATH;
pub use router::{ApplyTimings, NginxRouter, NginxStats};

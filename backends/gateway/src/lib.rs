//! pilotlight-gateway: pilotlight's own edge, and the activator behind NGINX.
//!
//! - Serves HTTP/1.1 and HTTP/2 (h2c and, over TLS, ALPN `h2`) and routes by
//!   the `Host` (or `:authority`) `<name>.<domain>` to the function's ready
//!   endpoints over pooled keep-alive connections, picking the endpoint with the
//!   fewest requests in flight.
//! - [`Router::apply`](pilotlight_core::Router::apply) compiles the table and
//!   swaps it in atomically (arc-swap); requests in flight keep the table they
//!   started with.
//! - A function whose route has no endpoint is woken through the
//!   [`Activator`](pilotlight_core::ports::Activator) while its requests wait
//!   (bounded per function, with a deadline, then 503 with `Retry-After`).
//! - HTTPS with SNI: a configured PEM pair, or a development CA made on first
//!   start that signs `*.<domain>`; certificates obtained by ACME are served by
//!   host name.
//! - Per-function counters through the `metrics` facade:
//!   `pilotlight_gateway_requests_total`, `pilotlight_gateway_errors_total{kind}`,
//!   `pilotlight_gateway_in_flight`, `pilotlight_gateway_request_duration_seconds`.

mod acme;
mod activation;
mod asynchronous;
mod config;
mod connect;
mod counters;
mod error;
mod headers;
mod proxy;
mod responses;
mod rules;
mod server;
mod table;
mod tls;
mod upgrade;

pub use acme::{AcmeConfig, AcmeIssuer};
pub use asynchronous::{GatewayDispatch, HttpCallbacks};
pub use config::{GatewayConfig, TlsSource};
pub use error::GatewayError;
pub use server::Gateway;

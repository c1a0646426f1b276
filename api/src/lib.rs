//! pilotlight's REST API, its web UI and a typed client.
//!
//! [`ApiServer`] serves a [`pilotlight_core::Platform`] over HTTP on its own
//! address:
//!
//! - JSON under `/v1`: `POST/GET /v1/functions`, `GET/DELETE /v1/functions/{name}`,
//!   `GET /v1/functions/{name}/logs?follow=true&tail=N` (NDJSON), `GET /v1/events`
//!   (server-sent events), `GET /v1/info`, `GET /v1/openapi.json`;
//! - secrets: `GET /v1/secrets`, `PUT/DELETE /v1/secrets/{name}` (values go
//!   in, never out: answers carry names, sizes and users only);
//! - `GET /metrics` (Prometheus text, rendered by whatever recorder the
//!   embedding program installed) and `GET /healthz`;
//! - the web UI at `/`.
//!
//! Every endpoint except `/healthz` and the UI's files needs
//! `Authorization: Bearer <token>`; [`ApiToken::load_or_create`] keeps the
//! token in `<data-dir>/api-token`. Every error has one shape,
//! `{"error":{"code","message","field"}}`, and a bad spec names its field.
//!
//! The API holds no state of its own: everything it shows comes from the
//! platform's store, so any number of API processes can share one.
#![warn(missing_docs)]

mod body;
pub mod client;
mod error;
mod image_routes;
mod openapi;
mod routes;
mod secret_routes;
mod server;
mod token;
mod ui;
pub mod views;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use openapi::{ApiDoc, document as openapi_document};
pub use routes::LogQuery;
pub use server::{ApiConfig, ApiServer, ApiServerError, MetricsRender, app};
pub use token::{ApiToken, TOKEN_FILE, TokenError};

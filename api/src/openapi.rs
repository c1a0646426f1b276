//! The OpenAPI document, generated from the handlers' annotations and the types' schemas.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{error, image_routes, routes, secret_routes, views};

/// `GET /v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "pilotlight", description = "Deploy, inspect and delete functions on a pilotlight node."),
    paths(routes::deploy, routes::list, routes::get, routes::delete, routes::logs, routes::history, routes::invocation, routes::invoke, routes::invocations, routes::dead_letters, routes::retry_dead_letter, routes::retry_dead_letters, routes::publish, secret_routes::list, secret_routes::set, secret_routes::remove, secret_routes::registries, secret_routes::login, secret_routes::logout, image_routes::build, image_routes::load, routes::events, routes::info, routes::metrics, routes::healthz),
    components(schemas(
        views::FunctionView, views::FunctionList, views::InstanceView, views::Receipt, views::InfoView,
        views::StatusEvent, views::LogLineView, views::Health, error::ErrorBody, error::ErrorDetail,
        views::InvocationView, views::InvocationAttemptView, views::CallbackView, views::PublishReceipt, views::InvocationResponseView,
        views::InvocationList, views::InvocationReceipt, views::RedriveCount, views::SecretView, views::SecretList, views::RegistryView, views::RegistryList, views::RegistryLogin, views::BuildLine, views::LoadedImages, views::HistoryView, pilotlight_core::support::HistoryPoint,
        pilotlight_core::FunctionSpecInput, pilotlight_core::ports::PullProgress, pilotlight_core::ports::LayerProgress,
    )),
    modifiers(&BearerAuth),
    tags((name = "functions", description = "Functions and their status, logs and events"), (name = "invocations", description = "Asynchronous invocations (`Prefer: respond-async` at the edge)"), (name = "topics", description = "Messages for topic triggers"), (name = "images", description = "Images sent instead of pulled: built from a context, or loaded from an archive"), (name = "secrets", description = "Secrets functions read as files, and registry logins; values and passwords go in and never come out"), (name = "server", description = "This node"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token in <data-dir>/api-token"))
                    .build(),
            ),
        );
    }
}

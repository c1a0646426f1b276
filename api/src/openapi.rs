//! The OpenAPI document, generated from the handlers' annotations and the types' schemas.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{error, image_routes, routes, secret_routes, views};

/// `GET /v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "pilotlight", description = "Deploy, inspect and delete functions on a pilotlight node."),
    paths(routes::deploy, routes::list, routes::get, routes::delete, routes::logs, routes::history, routes::invocation, routes::invoke, routes::invocations, routes::dead_letters, routes::retry_dead_letter, routes::retry_dead_letters, routes::publish, secret_routes::list, secret_routes::set, secret_routes::remove, secret_routes::registries, secret_routes::login, secret_routes::logout, image_routes::build, image_routes::load, routes::events, routes::info, routes::nodes, routes::metrics, routes::healthz),
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

/// The document `GET /v1/openapi.json` serves: [`ApiDoc`] and what
/// utoipa's attributes cannot state, added as JSON (utoipa's own types would
/// not carry it: its `Link` serializes `operation_id`, not `operationId`):
///
/// - the environment's names and size, the secrets' names and no repeats,
///   the placement's labels,
///   and that a spec has exactly one of `image` and `exec`;
/// - an event stream's schema as one event's (`event`, and JSON `data`);
/// - links from a deploy and an asynchronous invocation to what takes their ids.
///
/// What JSON Schema cannot say at all stays in the descriptions: `min`,
/// `prewarm` and `precreate` at most `max`; an image name at most 255
/// characters; a cron expression the scheduler parses.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(spec) = doc.pointer_mut("/components/schemas/FunctionSpecInput") {
        exact_spec(spec);
    }
    if let Some(labels) = doc.pointer_mut("/components/schemas/PlacementInput/properties/labels") {
        let label = serde_json::json!({"type": "string", "pattern": "^[a-z0-9._-]{1,63}$"});
        labels["maxProperties"] = serde_json::json!(pilotlight_core::model::MAX_NODE_LABELS);
        labels["propertyNames"] = label.clone();
        labels["additionalProperties"] = label;
    }
    if let Some(events) = doc.pointer_mut("/paths/~1v1~1events/get/responses/200/content/text~1event-stream/schema") {
        *events = serde_json::json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"type": "string", "enum": ["status"]},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/StatusEvent"},
                },
            },
        });
    }
    links(&mut doc);
    doc
}

fn exact_spec(spec: &mut serde_json::Value) {
    use serde_json::json;
    if let Some(env) = spec.pointer_mut("/properties/env") {
        env["maxProperties"] = json!(pilotlight_core::model::MAX_ENV_VARS);
        env["propertyNames"] =
            json!({"type": "string", "pattern": "^(?!PORT$)(?!PILOTLIGHT_)[A-Za-z_][A-Za-z0-9_]{0,255}$"});
        env["additionalProperties"] = json!({"type": "string", "maxLength": 4096, "pattern": "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]*$"});
    }
    if let Some(secrets) = spec.pointer_mut("/properties/secrets") {
        secrets["uniqueItems"] = json!(true);
        secrets["items"] = json!({"type": "string", "pattern": "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"});
    }
    spec["oneOf"] = json!([
        {"required": ["image"], "properties": {"image": {"type": "string"}}, "not": {"required": ["exec"]}},
        {"required": ["exec"], "properties": {"exec": {"type": "object"}}, "not": {"required": ["image"]}},
    ]);
}

/// OpenAPI links: what a deploy or an asynchronous invocation answers names
/// the resource the other operations take, so a client (or a fuzzer's
/// stateful phase) can follow them.
fn links(doc: &mut serde_json::Value) {
    use serde_json::json;
    let by_name = |op: &str| json!({"operationId": op, "parameters": {"name": "$response.body#/name"}});
    if let Some(r) = doc.pointer_mut("/paths/~1v1~1functions/post/responses/202") {
        r["links"] = json!({
            "GetFunction": by_name("get"),
            "FunctionHistory": by_name("history"),
            "FunctionLogs": by_name("logs"),
            "InvokeFunction": by_name("invoke"),
            "FunctionInvocations": by_name("invocations"),
            "FunctionDeadLetters": by_name("dead_letters"),
            "DeleteFunction": by_name("delete"),
        });
    }
    if let Some(r) = doc.pointer_mut("/paths/~1v1~1functions~1{name}~1invocations/post/responses/202") {
        r["links"] =
            json!({"GetInvocation": {"operationId": "invocation", "parameters": {"id": "$response.body#/id"}}});
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_states_the_validators_own_rules() {
        let doc = super::document();
        let params = doc.pointer("/paths/~1v1~1functions~1{name}~1invocations/post/parameters").unwrap();
        let callback = params.as_array().unwrap().iter().find(|p| p["name"] == "callback_url").unwrap();
        assert_eq!(callback["in"], "query");
        assert_eq!(callback["schema"]["pattern"], pilotlight_core::model::CALLBACK_URL_PATTERN);
        // Query parameters are in the query, not in the path.
        for (path, method) in [("/v1/functions/{name}/logs", "get"), ("/v1/functions/{name}/invocations", "get")] {
            let ptr = format!("/paths/{}/{method}/parameters", path.replace('/', "~1"));
            for p in doc.pointer(&ptr).unwrap().as_array().unwrap() {
                let expected = if p["name"] == "name" { "path" } else { "query" };
                assert_eq!(p["in"], expected, "{path} {}", p["name"]);
            }
        }
        // Operation ids are unique, and the links name them the OpenAPI way.
        let mut ids = Vec::new();
        for ops in doc["paths"].as_object().unwrap().values() {
            for op in ops.as_object().unwrap().values() {
                ids.push(op["operationId"].as_str().unwrap().to_owned());
            }
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "repeated operation ids");
        let link = doc.pointer("/paths/~1v1~1functions/post/responses/202/links/GetFunction").unwrap();
        assert_eq!(link["operationId"], "get");
        assert_eq!(
            doc.pointer("/components/schemas/FunctionSpecInput/required").unwrap(),
            &serde_json::json!(["name", "port"])
        );
    }
}

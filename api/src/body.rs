//! Reading a function spec from a request body: a size cap, then JSON with the
//! path of the field at fault in every error.

use axum::body::Body;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use pilotlight_core::{FunctionSpec, FunctionSpecInput};

use crate::error::ApiError;

/// Reads at most `cap` bytes; a longer body is refused with 413 and read no further.
pub async fn read_capped(body: Body, declared_len: Option<u64>, cap: usize) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body must be at most {cap} bytes"),
        )
    };
    if declared_len.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("cannot read the body: {e}"))),
    }
}

/// Parses and validates a spec. Broken JSON is 400 (`invalid_json`); a field of
/// the wrong type, an unknown field or a broken rule is 422 naming the field.
pub fn parse_spec(bytes: &[u8]) -> Result<FunctionSpec, ApiError> {
    // serde would read a JSON array as a struct's fields in order; a spec is an object.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the body is empty; send a function spec as a JSON object",
            ));
        }
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "the body must be a JSON object (a function spec)",
            ));
        }
    }
    // The same holds for the objects inside it.
    if let Ok(serde_json::Value::Object(spec)) = serde_json::from_slice::<serde_json::Value>(bytes) {
        nested_objects(&spec)?;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let input: FunctionSpecInput = match serde_path_to_error::deserialize(&mut de) {
        Ok(input) => input,
        Err(e) => return Err(json_error(e)),
    };
    if let Err(e) = de.end() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not one JSON object: {e}"),
        ));
    }
    input
        .validate()
        .map_err(|v| ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", v.field.clone(), v.to_string()))
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = inner.to_string();
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not valid JSON: {message}"))
        }
        serde_json::error::Category::Data => {
            // serde says "unknown field `foo`, expected one of ..."; the path already ends with it.
            if let Some(unknown) = message.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
                let field = if path == "." { unknown.to_owned() } else { path.clone() };
                let message = format!("`{field}` is not a spec field: {message}");
                return ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "unknown_field", field, message);
            }
            if path == "." {
                return ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    format!("the body must be a function spec object: {message}"),
                );
            }
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                path.clone(),
                format!("`{path}`: {message}"),
            )
        }
    }
}

/// `exec`, `limits`, `scaling`, `async` and each trigger are objects (or
/// null where optional): serde would take an array for them too.
fn nested_objects(spec: &serde_json::Map<String, serde_json::Value>) -> Result<(), ApiError> {
    use serde_json::Value;
    let not_object = |field: String| {
        ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", field, "must be a JSON object")
    };
    for key in ["exec", "limits", "scaling", "async", "placement"] {
        if let Some(v) = spec.get(key)
            && !matches!(v, Value::Object(_) | Value::Null)
        {
            return Err(not_object(key.to_owned()));
        }
    }
    if let Some(Value::Array(triggers)) = spec.get("triggers") {
        for (i, t) in triggers.iter().enumerate() {
            if !t.is_object() {
                return Err(not_object(format!("triggers.{i}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        parse_spec(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn each_bad_spec_names_its_field() {
        let cases: &[(&str, u16, &str, Option<&str>)] = &[
            (r#"{"name":"Bad_Name","image":"x","port":8080}"#, 422, "invalid_field", Some("name")),
            (r#"{"name":"ok","image":"x","port":0}"#, 422, "invalid_field", Some("port")),
            (r#"{"name":"ok","image":"x","port":70000}"#, 422, "invalid_field", Some("port")),
            (r#"{"name":"ok","port":8080}"#, 422, "invalid_field", Some("image")),
            (r#"{"name":"ok","image":"x","port":8080,"colour":"red"}"#, 422, "unknown_field", Some("colour")),
            (
                r#"{"name":"ok","image":"x","port":8080,"scaling":{"maximum":3}}"#,
                422,
                "unknown_field",
                Some("scaling.maximum"),
            ),
            (r#"{"name":"ok","image":"x","port":"eighty"}"#, 422, "invalid_field", Some("port")),
            (
                r#"{"name":"ok","image":"x","port":8080,"scaling":{"min":5,"max":2}}"#,
                422,
                "invalid_field",
                Some("scaling.min"),
            ),
            (r#"[1,2]"#, 422, "invalid_field", None),
            (
                r#"{"name":"ok","exec":{"program":"x"},"port":1,"async":[null,null]}"#,
                422,
                "invalid_field",
                Some("async"),
            ),
            (r#"{"name":"ok","image":"x","port":1,"scaling":[1,2]}"#, 422, "invalid_field", Some("scaling")),
            (
                r#"{"name":"ok","image":"x","port":1,"triggers":[["* * * * *"]]}"#,
                422,
                "invalid_field",
                Some("triggers.0"),
            ),
            ("  ", 400, "invalid_json", None),
            (r#"{"name":"ok","#, 400, "invalid_json", None),
            (r#"{"name":"ok","image":"x","port":1} {}"#, 400, "invalid_json", None),
        ];
        for (body, status, code, field) in cases {
            let e = err(body);
            assert_eq!(e.status.as_u16(), *status, "{body}: {e:?}");
            assert_eq!(e.detail.code, *code, "{body}: {e:?}");
            assert_eq!(e.detail.field.as_deref(), *field, "{body}: {e:?}");
        }
    }

    #[test]
    fn only_name_source_and_port_are_required() {
        let spec = parse_spec(br#"{"name":"hello","image":"pilotlight/hello:latest","port":8080}"#).unwrap();
        assert_eq!(spec.name().as_str(), "hello");
        assert_eq!(spec.scaling().prewarm(), 1);
    }
}

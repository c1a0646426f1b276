//! The gateway's own answers: small JSON bodies with a code and a message.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// A JSON error answer: `{"error":{"code":"...","message":"..."}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The edge's own answer, not the function's: the invoker tells them apart.
    if let Ok(v) = HeaderValue::from_str(code) {
        resp.headers_mut().insert(EDGE_ERROR_HEADER, v);
    }
    resp
}

/// Set on the answers the gateway gives itself (its error code), never on a function's.
pub const EDGE_ERROR_HEADER: &str = "x-pilotlight-edge-error";

/// 503 with `Retry-After`.
pub(crate) fn unavailable(message: &str, retry_after_s: u32) -> Response<Full<Bytes>> {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "no_instance", message);
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    resp
}

/// A plain-text 200, for ACME challenges.
pub(crate) fn text(body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

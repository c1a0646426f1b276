//! Asynchronous invocations at the edge: a request that carries
//! `Prefer: respond-async` (RFC 7240) is recorded through the
//! [`InvocationIntake`] and answered `202 Accepted` at once; and the
//! [`Dispatch`] the invoker sends those requests back through, which is the
//! gateway's own listener, so routing, activation from zero and the
//! in-flight counts are those of any other request.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pilotlight_core::model::{CallbackUrl, Domain, FunctionName, InvocationRequest, InvocationResponse};
use pilotlight_core::ports::{CallbackSender, Dispatch, DispatchError, Dispatched, IntakeError, InvocationIntake};

use crate::headers::strip_hop_by_hop;
use crate::responses;

/// The header that names where the outcome is POSTed.
const CALLBACK: &str = "x-callback-url";

/// Whether `headers` ask for an asynchronous answer: a `Prefer` header with
/// the `respond-async` preference (tokens are case-insensitive; parameters
/// after `;` are ignored).
pub(crate) fn prefers_async(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|p| {
        let token = p.split(';').next().unwrap_or("").trim();
        token.eq_ignore_ascii_case("respond-async")
    })
}

/// Records `req` for `function` and answers 202 with `Location` and
/// `X-Call-Id`; or 400 (a header or the callback URL breaks a rule), 404
/// (the function went away), 413 (the body is over `max_body`) or 503 (it
/// could not be recorded: nothing was accepted).
pub(crate) async fn accept(
    intake: &dyn InvocationIntake,
    function: &FunctionName,
    req: Request<Incoming>,
    max_body: usize,
) -> Response<Full<Bytes>> {
    let policy = match intake.policy(function).await {
        Ok(p) => p,
        Err(e) => return not_accepted(function, &e),
    };
    let max_body = policy.max_body_bytes.unwrap_or(max_body);
    let (parts, body) = req.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let too_large = || {
        responses::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("an asynchronous request's body is at most {max_body} bytes"),
        )
    };
    if declared.is_some_and(|n: usize| n > max_body) {
        return too_large();
    }
    let body = match Limited::new(body, max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return too_large(),
        Err(e) => {
            return responses::error(StatusCode::BAD_REQUEST, "bad_body", &format!("the body could not be read: {e}"));
        }
    };
    let callback = match parts.headers.get(CALLBACK) {
        None => None,
        Some(v) => {
            match v.to_str().map_err(|_| "not text".to_owned()).and_then(|v| CallbackUrl::new(v).map_err(|e| e.message))
            {
                Ok(url) => Some(url),
                Err(rule) => {
                    return responses::error(
                        StatusCode::BAD_REQUEST,
                        "invalid_callback_url",
                        &format!("X-Callback-Url: {rule}"),
                    );
                }
            }
        }
    };
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    // What the edge itself answers or sets again on delivery is not replayed.
    for name in [header::HOST, header::CONTENT_LENGTH, HeaderName::from_static("prefer")] {
        headers.remove(name);
    }
    // Credentials are not kept in the Store unless the function asked for them.
    if !policy.forward_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    headers.remove(CALLBACK);
    let mut kept = Vec::with_capacity(headers.len());
    for (name, value) in &headers {
        match value.to_str() {
            Ok(v) => kept.push((name.as_str().to_owned(), v.to_owned())),
            Err(_) => {
                return responses::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_header",
                    &format!("header `{name}` is not text; an asynchronous request keeps text headers only"),
                );
            }
        }
    }
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let request = match InvocationRequest::new(parts.method.as_str(), target, kept, body.to_vec()) {
        Ok(r) => r,
        Err(e) => return responses::error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    match intake.accept(function, request, callback).await {
        Ok(id) => {
            let location = format!("/v1/invocations/{id}");
            let body = serde_json::json!({ "id": id.as_str(), "function": function.as_str(), "status_url": location });
            let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
            *resp.status_mut() = StatusCode::ACCEPTED;
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert("preference-applied", HeaderValue::from_static("respond-async"));
            // An id is a function name, a dot and hex digits: always a valid header value.
            if let (Ok(loc), Ok(call)) = (HeaderValue::try_from(location), HeaderValue::try_from(id.as_str())) {
                h.insert(header::LOCATION, loc);
                h.insert("x-call-id", call);
            }
            resp
        }
        Err(e) => not_accepted(function, &e),
    }
}

/// The answer to an invocation the intake did not take: 400 (a rule of this
/// deployment), 404 (the function went away) or 503 (try again).
fn not_accepted(function: &FunctionName, e: &IntakeError) -> Response<Full<Bytes>> {
    match e {
        IntakeError::Invalid(v) => {
            responses::error(StatusCode::BAD_REQUEST, "invalid_callback_url", &format!("X-Callback-Url: {}", v.message))
        }
        IntakeError::NotFound(_) => responses::error(
            StatusCode::NOT_FOUND,
            "unknown_function",
            &format!("`{function}` was removed; nothing was accepted"),
        ),
        e => {
            let mut resp = responses::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_accepted",
                &format!("{e}; nothing was accepted"),
            );
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
    }
}

/// Sends invocations to functions through a gateway's HTTP listener, with
/// the function's host name, as a client would.
pub struct GatewayDispatch {
    client: Client<HttpConnector, Full<Bytes>>,
    edge: SocketAddr,
    domain: Domain,
}

impl GatewayDispatch {
    pub(crate) fn new(edge: SocketAddr, domain: Domain) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Self { client, edge, domain }
    }
}

fn build(
    edge: SocketAddr,
    host: &str,
    request: &InvocationRequest,
    extra: &[(String, String)],
) -> Result<Request<Full<Bytes>>, DispatchError> {
    let bad = |e: &dyn std::fmt::Display| DispatchError::Failed(format!("the stored request cannot be sent: {e}"));
    let uri: Uri = format!("http://{edge}{}", request.path()).parse().map_err(|e| bad(&e))?;
    let mut req = Request::builder()
        .method(request.method())
        .uri(uri)
        .body(Full::new(Bytes::copy_from_slice(request.body())))
        .map_err(|e| bad(&e))?;
    let headers = req.headers_mut();
    for (name, value) in request.headers() {
        let (n, v) = (
            HeaderName::try_from(name.as_str()).map_err(|e| bad(&e))?,
            HeaderValue::try_from(value.as_str()).map_err(|e| bad(&e))?,
        );
        headers.append(n, v);
    }
    for (name, value) in extra {
        let (n, v) = (
            HeaderName::try_from(name.as_str()).map_err(|e| bad(&e))?,
            HeaderValue::try_from(value.as_str()).map_err(|e| bad(&e))?,
        );
        headers.insert(n, v);
    }
    headers.insert(header::HOST, HeaderValue::try_from(host).map_err(|e| bad(&e))?);
    Ok(req)
}

/// Reads at most `cap` bytes of `body`; whether there was more.
async fn capped(mut body: Incoming, cap: usize) -> Result<(Vec<u8>, bool), DispatchError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| DispatchError::Failed(format!("the answer's body broke off: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let room = cap.saturating_sub(out.len());
            if data.len() > room {
                out.extend_from_slice(&data[..room]);
                return Ok((out, true));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok((out, false))
}

#[async_trait]
impl Dispatch for GatewayDispatch {
    async fn dispatch(
        &self,
        function: &FunctionName,
        request: &InvocationRequest,
        headers: Vec<(String, String)>,
        timeout: Duration,
        body_cap: usize,
    ) -> Result<Dispatched, DispatchError> {
        let req = build(self.edge, &self.domain.host_for(function), request, &headers)?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    DispatchError::Connect(e.to_string())
                } else {
                    DispatchError::Failed(e.to_string())
                }
            })?;
            let (parts, body) = resp.into_parts();
            let (body, truncated) = capped(body, body_cap).await?;
            Ok::<_, DispatchError>((parts, body, truncated))
        };
        let (parts, body, truncated) =
            tokio::time::timeout(timeout, exchange).await.map_err(|_| DispatchError::Timeout(timeout))??;
        // The edge (this node's, or the owner's it forwarded to) does not route
        // the function yet: a function just deployed, or moving between nodes.
        // That is the edge's answer, not the function's, and passes.
        if parts.status == http::StatusCode::NOT_FOUND
            && parts.headers.get(crate::responses::EDGE_ERROR_HEADER).is_some_and(|v| v == "unknown_host")
        {
            return Err(DispatchError::Connect(format!("the edge does not route `{function}` yet")));
        }
        let retry_after = parts
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let headers = parts
            .headers
            .iter()
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_owned(), v.to_owned())))
            .collect();
        Ok(Dispatched {
            response: InvocationResponse { status: parts.status.as_u16(), headers, body, truncated },
            retry_after,
        })
    }
}

/// Sends callbacks over HTTP or HTTPS (verified against the system's
/// roots), one pooled client for all of them.
pub struct HttpCallbacks {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpCallbacks {
    /// A sender that trusts the system's certificate roots. Fails when none can be read.
    pub fn new() -> Result<Self, std::io::Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Ok(Self { client })
    }
}

#[async_trait]
impl CallbackSender for HttpCallbacks {
    async fn post(
        &self,
        url: &CallbackUrl,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, DispatchError> {
        let bad = |e: &dyn std::fmt::Display| DispatchError::Failed(format!("the callback cannot be sent: {e}"));
        let uri: Uri = url.as_str().parse().map_err(|e| bad(&e))?;
        let mut req = Request::builder()
            .method(http::Method::POST)
            .uri(uri)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| bad(&e))?;
        for (name, value) in &headers {
            let (n, v) = (
                HeaderName::try_from(name.as_str()).map_err(|e| bad(&e))?,
                HeaderValue::try_from(value.as_str()).map_err(|e| bad(&e))?,
            );
            req.headers_mut().insert(n, v);
        }
        let exchange = async {
            // Any failure to get an answer is worth another attempt: a refused
            // or reset connection, a TLS handshake that failed, a broken body.
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| DispatchError::Connect(pilotlight_core::support::error_chain(&e)))?;
            let status = resp.status().as_u16();
            // The receiver's body is not kept; read (a little of) it so the connection can be reused.
            let _ = Limited::new(resp.into_body(), 64 * 1024).collect().await;
            Ok(status)
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| DispatchError::Timeout(timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("prefer", HeaderValue::from_str(v).unwrap());
        }
        prefers_async(&h)
    }

    #[test]
    fn the_respond_async_preference_is_found_among_others() {
        assert!(prefer(&["respond-async"]));
        assert!(prefer(&["Respond-Async"]));
        assert!(prefer(&["return=minimal, respond-async; wait=10"]));
        assert!(prefer(&["wait=5", "respond-async"]));
        assert!(!prefer(&["return=minimal"]));
        assert!(!prefer(&["respond-asyncx"]));
        assert!(!prefer(&[]));
    }
}

//! Forwarding one request to an instance and its answer back, streaming both bodies.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;

use crate::activation;
use crate::counters::{ErrorKind, FunctionCounters};
use crate::headers::{set_forwarded, strip_hop_by_hop};
use crate::responses;
use crate::server::Shared;
use crate::table::{EndpointGuard, EndpointState, RouteState, function_label};

/// What the gateway sends upstream: the client's body, or nothing (a retry).
pub(crate) type ReqBody = Either<Incoming, Empty<Bytes>>;
/// What the gateway answers: the upstream's body, or one of its own.
pub(crate) type RespBody = Either<Tracked, Full<Bytes>>;
/// The pooled upstream client.
pub(crate) type UpstreamClient = Client<crate::connect::Connector, ReqBody>;

/// One gateway thread's upstream pools. HTTP/1.1 serves everything but gRPC,
/// which needs HTTP/2 end to end for its trailers, so it goes h2c.
#[derive(Clone)]
pub(crate) struct Upstreams {
    pub(crate) http1: UpstreamClient,
    pub(crate) h2c: UpstreamClient,
}

/// Whether a request is gRPC: HTTP/2 with `content-type: application/grpc[+proto|...]`.
fn is_grpc(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_2
        && headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
            ct.strip_prefix("application/grpc").is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
        })
}

const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

/// How many gateways a request has passed on its way to a function's
/// instances (multi-node): set when a gateway forwards to another node's.
pub const HOPS_HEADER: &str = "x-pilotlight-hops";

/// A request is forwarded to another node at most this often. One hop is
/// the rule (any edge to the owner); the second covers a move in progress,
/// when the new owner's edge still sends to the old owner until its own
/// instances serve. A third would be a loop while ownership settles: 503.
pub const MAX_HOPS: u8 = 2;

fn own(resp: Response<Full<Bytes>>) -> Response<RespBody> {
    resp.map(Either::Right)
}

/// Counts a request as in flight for its function until dropped.
struct InFlight(Arc<FunctionCounters>);

impl InFlight {
    fn new(c: Arc<FunctionCounters>) -> Self {
        c.start();
        Self(c)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// The upstream's response body; the request stays counted until it is fully sent.
pub(crate) struct Tracked {
    inner: Incoming,
    _in_flight: InFlight,
    _endpoint: EndpointGuard,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Handles one request from a client.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    client: &Upstreams,
    req: Request<Incoming>,
    client_ip: &HeaderValue,
    https: bool,
) -> Response<RespBody> {
    if !https && let Some(token) = req.uri().path().strip_prefix(ACME_PREFIX) {
        return own(match shared.challenges.get(token) {
            Some(key_auth) => responses::text(key_auth),
            None => responses::error(StatusCode::NOT_FOUND, "not_found", "no such ACME challenge"),
        });
    }
    let host = match crate::rules::check(&req, &shared.config) {
        Ok(h) => h,
        Err(refusal) => return own(*refusal),
    };
    let Some(host_str) = host.to_str().ok() else {
        return own(responses::error(StatusCode::BAD_REQUEST, "bad_host", "the Host header is not text"));
    };
    let domain = shared.config.domain.as_str();
    let route = function_label(host_str, domain).and_then(|label| {
        let table = shared.table.load();
        match table.get(label) {
            Some(r) => Some(Arc::clone(r)),
            None if label.bytes().any(|b| b.is_ascii_uppercase()) => table.get(&label.to_ascii_lowercase()).cloned(),
            None => None,
        }
    });
    let Some(route) = route else {
        return own(responses::error(
            StatusCode::NOT_FOUND,
            "unknown_host",
            &format!("no function is served at {host_str:?}; functions are served at <name>.{domain}"),
        ));
    };
    if crate::asynchronous::prefers_async(req.headers()) {
        let intake = shared.intake.read().clone();
        if let Some(intake) = intake {
            let max = shared.config.max_async_body_bytes;
            return own(crate::asynchronous::accept(intake.as_ref(), &route.name, req, max).await);
        }
    }
    if route.endpoints.is_empty() {
        let held = Instant::now();
        let route = match Box::pin(activation::wait(shared, route)).await {
            Ok(r) => r,
            Err(resp) => return own(resp),
        };
        let released = Instant::now();
        let name = route.name.clone();
        let resp = Box::pin(forward(shared, client, route, req, client_ip, https, host)).await;
        tracing::debug!(
            function = %name,
            held_ms = (released - held).as_secs_f64() * 1e3,
            upstream_ms = released.elapsed().as_secs_f64() * 1e3,
            "an activated request has its answer"
        );
        return resp;
    }
    // Boxed: the forwarding state is about 2.6 KB, and hyper moves the
    // request's future a few times before it first polls it; a box makes
    // those moves 16 bytes each (measured: see docs/operations.md).
    Box::pin(forward(shared, client, route, req, client_ip, https, host)).await
}

/// Asks for a reconcile at most this often per function while its instances refuse connections.
const REPORT_UNREACHABLE_EVERY: Duration = Duration::from_secs(1);

/// Tells the controller that `route`'s instances refuse connections (they
/// died, or were removed behind its back), so it looks now, not at its next pass.
fn report_unreachable(shared: &Shared, route: &RouteState) {
    if !route.counters.should_report_unreachable(REPORT_UNREACHABLE_EVERY) {
        return;
    }
    let activator = shared.activator.read().clone();
    if let Some(a) = activator {
        let name = route.name.clone();
        tokio::spawn(async move {
            if let Err(e) = a.unreachable(&name).await {
                tracing::debug!(function = %name, error = %e, "cannot report unreachable instances");
            }
        });
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

enum SendError {
    Timeout,
    Connect(String),
    Other(String),
}

/// The request line of what goes upstream, and which pool carries it.
struct Head<'a> {
    method: Method,
    pq: &'a PathAndQuery,
    grpc: bool,
}

async fn send(
    client: &Upstreams,
    route: &RouteState,
    endpoint: &Arc<EndpointState>,
    head: &Head<'_>,
    headers: HeaderMap,
    body: ReqBody,
) -> Result<(Response<Incoming>, EndpointGuard), SendError> {
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(endpoint.authority.clone())
        .path_and_query(head.pq.clone())
        .build()
        .map_err(|e| SendError::Other(e.to_string()))?;
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    let grpc = head.grpc;
    *req.uri_mut() = uri;
    *req.version_mut() = if grpc { Version::HTTP_2 } else { Version::HTTP_11 };
    *req.headers_mut() = headers;
    let guard = EndpointGuard::new(Arc::clone(endpoint));
    let client = if grpc { &client.h2c } else { &client.http1 };
    match tokio::time::timeout(route.timeout, client.request(req)).await {
        Err(_) => Err(SendError::Timeout),
        Ok(Err(e)) if e.is_connect() => Err(SendError::Connect(e.to_string())),
        Ok(Err(e)) => Err(SendError::Other(e.to_string())),
        Ok(Ok(resp)) => Ok((resp, guard)),
    }
}

async fn forward(
    shared: &Shared,
    client: &Upstreams,
    route: Arc<RouteState>,
    req: Request<Incoming>,
    client_ip: &HeaderValue,
    https: bool,
    host: HeaderValue,
) -> Response<RespBody> {
    let started = Instant::now();
    let in_flight = InFlight::new(Arc::clone(&route.counters));
    let mut req = req;
    let upgrade = crate::upgrade::requested(&mut req);
    let (parts, body) = req.into_parts();
    let grpc = is_grpc(parts.version, &parts.headers);
    let mut headers = parts.headers;
    let wants_trailers =
        grpc && headers.get(header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    strip_hop_by_hop(&mut headers);
    if let Some(u) = &upgrade {
        u.restore(&mut headers);
    }
    // The hop count is the gateways' own: it never reaches a function, and
    // one that is not a small number counts as spent.
    let hops = headers
        .remove(HOPS_HEADER)
        .map_or(0, |v| v.to_str().ok().and_then(|s| s.parse::<u8>().ok()).unwrap_or(MAX_HOPS));
    if route.forwards {
        if hops >= MAX_HOPS {
            route.counters.error(ErrorKind::NoInstance);
            return own(responses::unavailable(
                &format!("`{}` is moving between nodes (forwarded {hops} times already)", route.name),
                1,
            ));
        }
        headers.insert(HOPS_HEADER, HeaderValue::from(u16::from(hops) + 1));
    }
    if wants_trailers {
        // The one `TE` HTTP/2 allows, and gRPC servers insist on it.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    set_forwarded(&mut headers, client_ip, if https { "https" } else { "http" }, &host);
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, host);
    }
    let pq = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    // Only a request without a body can be sent twice (the body streams and is
    // gone), and only where there is another instance to send it to.
    let retry_headers =
        (route.endpoints.len() > 1 && is_idempotent(&parts.method) && body.is_end_stream()).then(|| headers.clone());
    let head = Head { method: parts.method, pq: &pq, grpc };
    let Some(endpoint) = route.pick(None) else {
        route.counters.error(ErrorKind::NoInstance);
        return own(responses::unavailable(&format!("`{}` has no ready instance", route.name), 1));
    };
    let mut outcome = send(client, &route, &endpoint, &head, headers, Either::Left(body)).await;
    if let (Err(SendError::Connect(first)), Some(headers)) = (&outcome, retry_headers)
        && let Some(other) = route.pick(Some(&endpoint.endpoint))
    {
        tracing::debug!(function = %route.name, failed = %endpoint.endpoint, retry = %other.endpoint, error = %first, "upstream refused; retrying once on another instance");
        outcome = send(client, &route, &other, &head, headers, Either::Right(Empty::new())).await;
    }
    route.counters.latency(started.elapsed());
    match outcome {
        Ok((mut resp, endpoint_guard)) if crate::upgrade::switches(&resp) => {
            let Some(requested) = upgrade else {
                route.counters.error(ErrorKind::Upstream);
                tracing::warn!(function = %route.name, "upstream switched protocols unasked");
                return own(responses::error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    &format!("`{}` answered 101 to a request that asked for no upgrade", route.name),
                ));
            };
            let upstream = hyper::upgrade::on(&mut resp);
            let (mut parts, _) = resp.into_parts();
            let protocol = parts.headers.get(header::UPGRADE).cloned();
            strip_hop_by_hop(&mut parts.headers);
            crate::upgrade::restore(&mut parts.headers, protocol);
            crate::upgrade::tunnel(shared, requested, upstream, route.name.to_string(), (in_flight, endpoint_guard));
            Response::from_parts(parts, Either::Right(Full::new(Bytes::new())))
        }
        Ok((resp, endpoint_guard)) => {
            if resp.status().is_server_error() {
                route.counters.error(ErrorKind::Status5xx);
            }
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(
                parts,
                Either::Left(Tracked { inner: body, _in_flight: in_flight, _endpoint: endpoint_guard }),
            )
        }
        Err(SendError::Timeout) => {
            route.counters.error(ErrorKind::Timeout);
            own(responses::error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                &format!("`{}` did not answer within {:?}", route.name, route.timeout),
            ))
        }
        Err(SendError::Connect(e)) => {
            route.counters.error(ErrorKind::Upstream);
            report_unreachable(shared, &route);
            tracing::warn!(function = %route.name, error = %e, "upstream refused the connection");
            own(responses::error(StatusCode::BAD_GATEWAY, "upstream_failed", &format!("`{}` failed: {e}", route.name)))
        }
        Err(SendError::Other(e)) => {
            route.counters.error(ErrorKind::Upstream);
            tracing::warn!(function = %route.name, error = %e, "upstream failed");
            own(responses::error(StatusCode::BAD_GATEWAY, "upstream_failed", &format!("`{}` failed: {e}", route.name)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc(version: Version, ct: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        is_grpc(version, &h)
    }

    #[test]
    fn grpc_is_http2_with_a_grpc_content_type() {
        assert!(grpc(Version::HTTP_2, "application/grpc"));
        assert!(grpc(Version::HTTP_2, "application/grpc+proto"));
        assert!(grpc(Version::HTTP_2, "application/grpc;charset=utf-8"));
        assert!(!grpc(Version::HTTP_2, "application/grpcx"));
        assert!(!grpc(Version::HTTP_2, "application/json"));
        assert!(!grpc(Version::HTTP_11, "application/grpc"), "gRPC needs HTTP/2 end to end");
        assert!(!is_grpc(Version::HTTP_2, &HeaderMap::new()));
    }
}

//! The request rules the edge enforces before routing.
//!
//! | request | answer | by |
//! |---|---|---|
//! | two `Host` lines (RFC 9112 §3.2), or a `Host` that is not a valid host[:port] | 400 | here |
//! | an HTTP/1.1 absolute-form target whose `Host` names another host | 400 | here |
//! | no `Host` and no authority in the target | 400 | here |
//! | one header line over `max_header_line_bytes` (16 KiB) | 431 | here |
//! | a head over `max_header_bytes` (64 KiB) | 431 | hyper (its read buffer) |
//! | obs-fold, white space before a colon, `Content-Length`s that differ, a `Transfer-Encoding` not ending in `chunked` | 400 | hyper |
//! | both `Content-Length` and `Transfer-Encoding` | normalised: `Content-Length` dropped, the body read as chunked, the connection closed after it | hyper |
//! | `Content-Length` twice with one value | normalised to one | hyper |
//!
//! HTTP/2 routes by `Host` when the request has one, else by `:authority`:
//! some clients put the connection's address in `:authority` and the
//! site in `Host`, so a difference there is not refused.
//!
//! `Transfer-Encoding` is hop-by-hop and the upstream client frames the body
//! itself, so a function never sees both lengths, and the edge never routes
//! by one host while the function reads another. `tests/protocol.rs` sends
//! each shape over a raw socket.

use std::str::FromStr;

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;

use crate::config::GatewayConfig;
use crate::responses;

/// The answer to a refused request (boxed: it is the rare path).
type Refusal = Box<Response<Full<Bytes>>>;

/// A refusal closes the connection: a client that sent a malformed request
/// is not trusted with another one on the same connection.
fn refuse(status: StatusCode, code: &str, message: &str) -> Refusal {
    let mut resp = responses::error(status, code, message);
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    Box::new(resp)
}

/// Checks `req` against the rules; returns the host to route by.
pub(crate) fn check<B>(req: &Request<B>, config: &GatewayConfig) -> Result<HeaderValue, Refusal> {
    for (name, value) in req.headers() {
        let line = name.as_str().len() + 2 + value.len();
        if line > config.max_header_line_bytes {
            return Err(refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header_too_large",
                &format!(
                    "the `{name}` header line is {line} bytes; this edge takes at most {} per line",
                    config.max_header_line_bytes
                ),
            ));
        }
    }
    host(req)
}

/// The host to route by: the one `Host` header, checked against the
/// target's authority in an HTTP/1 absolute-form request.
fn host<B>(req: &Request<B>) -> Result<HeaderValue, Refusal> {
    let mut all = req.headers().get_all(header::HOST).iter();
    let host = all.next();
    if all.next().is_some() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "duplicate_host",
            "the request has more than one Host header (RFC 9112 §3.2)",
        ));
    }
    let host = match host {
        Some(h) => Some((
            h,
            authority(h).ok_or_else(|| {
                refuse(StatusCode::BAD_REQUEST, "bad_host", "the Host header is not a valid host[:port]")
            })?,
        )),
        None => None,
    };
    let absolute_form = req.version() <= http::Version::HTTP_11;
    match (host, req.uri().authority()) {
        (Some((h, parsed)), Some(target)) if absolute_form => {
            if same_host(&parsed, target) {
                Ok(h.clone())
            } else {
                Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "host_mismatch",
                    &format!("the Host header names {parsed} but the request target names {target}"),
                ))
            }
        }
        (Some((h, _)), _) => Ok(h.clone()),
        (None, Some(target)) => HeaderValue::from_str(target.as_str())
            .map_err(|_| refuse(StatusCode::BAD_REQUEST, "bad_host", "the request target's host is not valid")),
        (None, None) => Err(refuse(StatusCode::BAD_REQUEST, "missing_host", "the request has no Host header")),
    }
}

/// A `host[:port]` with no user info.
fn authority(value: &HeaderValue) -> Option<Authority> {
    let text = value.to_str().ok()?;
    if text.is_empty() || text.contains('@') {
        return None;
    }
    let a = Authority::from_str(text).ok()?;
    (!a.host().is_empty()).then_some(a)
}

fn same_host(a: &Authority, b: &Authority) -> bool {
    a.host().eq_ignore_ascii_case(b.host())
        && (a.port_u16().is_none() || b.port_u16().is_none() || a.port_u16() == b.port_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pilotlight_core::model::Domain;

    fn config() -> GatewayConfig {
        GatewayConfig::new(Domain::new("localhost").unwrap(), "/tmp/unused")
    }

    fn code(r: Result<HeaderValue, Refusal>) -> (u16, String) {
        match r {
            Ok(h) => (200, h.to_str().unwrap().to_owned()),
            Err(resp) => (resp.status().as_u16(), String::new()),
        }
    }

    fn req(target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(target).version(http::Version::HTTP_11);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_rules() {
        let c = config();
        let long = "x".repeat(17 * 1024);
        let cases: Vec<(&str, Request<()>, u16)> = vec![
            ("one host", req("/", &[("host", "a.localhost")]), 200),
            ("two hosts", req("/", &[("host", "a.localhost"), ("host", "b.localhost")]), 400),
            ("user info", req("/", &[("host", "me@a.localhost")]), 400),
            ("empty", req("/", &[("host", "")]), 400),
            ("no host", req("/", &[]), 400),
            ("absolute-form, agreeing", req("http://a.localhost/x", &[("host", "A.localhost:80")]), 200),
            ("absolute-form, another host", req("http://a.localhost/x", &[("host", "b.localhost")]), 400),
            ("absolute-form, no Host", req("http://a.localhost/x", &[]), 200),
            (
                "HTTP/2, Host and another :authority",
                {
                    let mut r = req("http://127.0.0.1:1234/x", &[("host", "a.localhost")]);
                    *r.version_mut() = http::Version::HTTP_2;
                    r
                },
                200,
            ),
            ("a line over 16 KiB", req("/", &[("host", "a.localhost"), ("x-big", &long)]), 431),
        ];
        for (what, r, want) in cases {
            assert_eq!(code(check(&r, &c)).0, want, "{what}");
        }
    }
}

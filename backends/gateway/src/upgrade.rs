//! HTTP/1.1 upgrades (RFC 9110 §7.8): WebSocket, and any other protocol a
//! client asks for with `Connection: upgrade`. The gateway passes the request
//! on with its upgrade, and once the function answers 101 it joins the two
//! connections byte for byte until either side closes.
//!
//! An open tunnel keeps its function's in-flight count and its endpoint's, so
//! the autoscaler sees it as load and a drain waits for it (up to its limit).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::server::Shared;

/// What a client asked to upgrade to, and the handle to its connection after the 101.
pub(crate) struct Requested {
    protocol: HeaderValue,
    client: OnUpgrade,
}

fn names_upgrade(headers: &HeaderMap) -> bool {
    crate::headers::connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// The upgrade `req` asks for: an HTTP/1.1 request whose `Connection` names
/// `upgrade` and that carries `Upgrade`. HTTP/2 has no such mechanism (its
/// extended CONNECT is not supported), so there the headers are dropped as
/// hop-by-hop, as before.
pub(crate) fn requested<B>(req: &mut Request<B>) -> Option<Requested> {
    if req.version() != Version::HTTP_11 || !names_upgrade(req.headers()) {
        return None;
    }
    let protocol = req.headers().get(header::UPGRADE)?.clone();
    Some(Requested { protocol, client: hyper::upgrade::on(req) })
}

impl Requested {
    /// Puts the upgrade back on headers stripped of hop-by-hop fields.
    pub(crate) fn restore(&self, headers: &mut HeaderMap) {
        restore(headers, Some(self.protocol.clone()));
    }
}

/// Sets `Connection: upgrade` and, when known, `Upgrade: <protocol>` on
/// headers stripped of hop-by-hop fields: the request upstream, the 101 back.
pub(crate) fn restore(headers: &mut HeaderMap, protocol: Option<HeaderValue>) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(p) = protocol {
        headers.insert(header::UPGRADE, p);
    }
}

/// Whether the function's answer switches protocols.
pub(crate) fn switches<B>(resp: &Response<B>) -> bool {
    resp.status() == StatusCode::SWITCHING_PROTOCOLS
}

/// Joins the client's connection to the function's once both sides have
/// switched, on the gateway's tracked tasks, cut at the end of a shutdown's
/// grace. `hold` (the in-flight and endpoint counts) lives as long as the tunnel.
pub(crate) fn tunnel<H: Send + 'static>(
    shared: &Shared,
    requested: Requested,
    upstream: OnUpgrade,
    function: String,
    hold: H,
) {
    let kill = shared.kill.clone();
    shared.connections.spawn(async move {
        let _hold = hold;
        let (client, upstream) = match tokio::join!(requested.client, upstream) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(%function, error = %e, "an upgrade did not complete");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        tokio::select! {
            res = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match res {
                Ok((up, down)) => tracing::debug!(%function, up, down, "upgraded connection closed"),
                Err(e) => tracing::debug!(%function, error = %e, "upgraded connection ended with an error"),
            },
            _ = kill.cancelled() => tracing::debug!(%function, "upgraded connection cut at the end of the shutdown grace"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, connection: &str) -> Request<()> {
        let mut r = Request::builder().version(version).header(header::UPGRADE, "websocket");
        if !connection.is_empty() {
            r = r.header(header::CONNECTION, connection);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn an_upgrade_needs_http11_and_connection_naming_it() {
        assert!(requested(&mut req(Version::HTTP_11, "Upgrade")).is_some());
        assert!(requested(&mut req(Version::HTTP_11, "keep-alive, UPGRADE")).is_some());
        assert!(requested(&mut req(Version::HTTP_11, "")).is_none(), "Upgrade alone is not a request to upgrade");
        assert!(requested(&mut req(Version::HTTP_11, "keep-alive")).is_none());
        assert!(requested(&mut req(Version::HTTP_2, "upgrade")).is_none());
        assert!(requested(&mut req(Version::HTTP_10, "upgrade")).is_none());
        let mut no_token = Request::builder().header(header::CONNECTION, "upgrade").body(()).unwrap();
        assert!(requested(&mut no_token).is_none());
    }

    #[test]
    fn restore_puts_back_only_the_upgrade() {
        let r = requested(&mut req(Version::HTTP_11, "upgrade, x-secret")).unwrap();
        let mut h = HeaderMap::new();
        r.restore(&mut h);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h.len(), 2);
    }
}

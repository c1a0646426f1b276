//! How the gateway opens a connection to an instance: a plain TCP connect,
//! or, for an endpoint inside a container's network namespace, a socket made
//! in that namespace (see `pilotlight_core::support::netns`).
//!
//! The pooled client keys connections by URI authority, so each namespaced
//! endpoint gets a made-up authority of its own (`n<k>.netns.invalid:<port>`)
//! that this connector maps back to the namespace and address. Two containers
//! that both listen on 127.0.0.1:8080 thus never share a pooled connection.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use http::uri::Authority;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use parking_lot::RwLock;
use tokio::net::TcpStream;

const SUFFIX: &str = ".netns.invalid";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The namespaced endpoints the table holds, by made-up host.
#[derive(Default)]
pub(crate) struct Namespaces {
    by_host: RwLock<HashMap<String, (Arc<str>, SocketAddr)>>,
    next: AtomicU64,
}

/// A namespaced endpoint's registration: its made-up authority, forgotten on drop.
pub(crate) struct Registration {
    namespaces: Arc<Namespaces>,
    host: String,
    pub(crate) authority: Authority,
}

impl Namespaces {
    pub(crate) fn register(self: &Arc<Self>, netns: Arc<str>, addr: SocketAddr) -> Option<Registration> {
        let host = format!("n{}{SUFFIX}", self.next.fetch_add(1, Ordering::Relaxed));
        let authority = Authority::try_from(format!("{host}:{}", addr.port())).ok()?;
        self.by_host.write().insert(host.clone(), (netns, addr));
        Some(Registration { namespaces: Arc::clone(self), host, authority })
    }
    fn lookup(&self, host: &str) -> Option<(Arc<str>, SocketAddr)> {
        self.by_host.read().get(host).cloned()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.namespaces.by_host.write().remove(&self.host);
    }
}

/// The upstream connector: namespaced endpoints through their namespace, the rest over plain TCP.
#[derive(Clone)]
pub(crate) struct Connector {
    http: HttpConnector,
    namespaces: Arc<Namespaces>,
    timeout: Duration,
}

impl Connector {
    pub(crate) fn new(namespaces: Arc<Namespaces>, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        Self { http, namespaces, timeout }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let namespaced = uri.host().filter(|h| h.ends_with(SUFFIX)).map(|h| self.namespaces.lookup(h));
        match namespaced {
            None => {
                let connecting = self.http.call(uri);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Some(None) => Box::pin(async move { Err(format!("no namespaced endpoint is known as {uri}").into()) }),
            Some(Some((netns, addr))) => {
                let timeout = self.timeout;
                Box::pin(async move {
                    let stream = pilotlight_core::support::netns::connect(&netns, addr, timeout).await?;
                    Ok(TokioIo::new(stream))
                })
            }
        }
    }
}

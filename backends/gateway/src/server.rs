use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pilotlight_core::model::{Endpoint, FunctionName, RouteTable};
use pilotlight_core::ports::{Activator, InvocationIntake, Router, RouterError};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acme::{AcmeConfig, AcmeIssuer, Challenges};
use crate::config::{GatewayConfig, TlsSource};
use crate::counters::FunctionCounters;
use crate::error::GatewayError;
use crate::proxy::{self, UpstreamClient, Upstreams};
use crate::table::{EndpointState, Table};
use crate::tls::{self, CertStore, DevCa};

/// State every connection shares.
pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) table: ArcSwap<Table>,
    /// Bumped after every swap, so held requests look again.
    pub(crate) version: watch::Sender<u64>,
    pub(crate) activator: RwLock<Option<Arc<dyn Activator>>>,
    /// Where `Prefer: respond-async` requests are recorded; none: they are served synchronously.
    pub(crate) intake: RwLock<Option<Arc<dyn InvocationIntake>>>,
    pub(crate) counters: Mutex<HashMap<FunctionName, Arc<FunctionCounters>>>,
    pub(crate) challenges: Arc<Challenges>,
    /// Endpoints swapped out of the table while requests still held them:
    /// their in-flight counts tell a drain when the instance is idle.
    pub(crate) retired: Mutex<Vec<Weak<EndpointState>>>,
    /// The connections, and the tunnels of upgraded ones, that a shutdown waits for.
    pub(crate) connections: TaskTracker,
    /// Fired when the shutdown grace is over: what still runs is cut.
    pub(crate) kill: CancellationToken,
    /// Endpoints inside network namespaces, for the upstream connector.
    pub(crate) namespaces: Arc<crate::connect::Namespaces>,
    /// Serializes table swaps (applies and admissions), so none is compiled
    /// from a table another one is replacing.
    pub(crate) swap_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    /// Sends `name`'s requests to `endpoints` now, if its route has none:
    /// an instance the activator woke in its own process, ready before the
    /// route table that will list it. Held requests are released at once.
    pub(crate) async fn admit(&self, name: &FunctionName, endpoints: &[Endpoint]) {
        let _one = self.swap_lock.lock().await;
        let admitted = self.table.load().admit(name.as_str(), endpoints, &self.namespaces);
        if let Some(table) = admitted {
            self.table.store(Arc::new(table));
            self.version.send_modify(|v| *v = v.wrapping_add(1));
            tracing::debug!(function = %name, ?endpoints, "activated endpoints admitted ahead of the route table");
        }
    }
}

/// The running gateway: listeners bound, serving until [`shutdown`](Self::shutdown).
///
/// It is also the platform's [`Router`]: `apply` swaps the route table in.
pub struct Gateway {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    dev_ca: Option<DevCa>,
    certs: Arc<CertStore>,
    acme: RwLock<Option<Arc<AcmeIssuer>>>,
    stop_accepting: CancellationToken,
    drain: CancellationToken,
    /// Fired when the shutdown grace is over: what still runs is cut.
    kill: CancellationToken,
    connections: TaskTracker,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Gateway {
    /// Binds the listeners, prepares TLS and starts serving an empty table.
    pub async fn start(config: GatewayConfig) -> Result<Self, GatewayError> {
        // The process-wide default provider may be unset or different; name ours.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = Arc::new(CertStore::default());
        let mut dev_ca = None;
        let tls = match &config.tls {
            TlsSource::Disabled => None,
            TlsSource::Pem { cert, key } => {
                certs.set_wildcard(Arc::new(tls::load_pem_files(cert, key)?));
                Some(())
            }
            TlsSource::DevCa { dir } => {
                let ca = DevCa::load_or_create(dir)?;
                certs.set_wildcard(Arc::new(ca.wildcard(&config.domain)?));
                dev_ca = Some(ca);
                Some(())
            }
        };
        let (connections, kill) = (TaskTracker::new(), CancellationToken::new());
        let shared = Arc::new(Shared {
            connections: connections.clone(),
            kill: kill.clone(),
            namespaces: Arc::default(),
            table: ArcSwap::from_pointee(Table::default()),
            version: watch::Sender::new(0),
            activator: RwLock::new(None),
            intake: RwLock::new(None),
            counters: Mutex::default(),
            challenges: Arc::default(),
            retired: Mutex::default(),
            swap_lock: tokio::sync::Mutex::new(()),
            config,
        });
        let threads = shared.config.threads.max(1);
        let http = reuseport_group(shared.config.http_addr, threads)?;
        let http_addr =
            http[0].local_addr().map_err(|source| GatewayError::Bind { addr: shared.config.http_addr, source })?;
        let mut https_addr = None;
        let mut https: Vec<Option<(std::net::TcpListener, TlsAcceptor)>> = (0..threads).map(|_| None).collect();
        if tls.is_some() {
            let listeners = reuseport_group(shared.config.https_addr, threads)?;
            https_addr = Some(
                listeners[0]
                    .local_addr()
                    .map_err(|source| GatewayError::Bind { addr: shared.config.https_addr, source })?,
            );
            let mut server = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| GatewayError::Certificate(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(Arc::clone(&certs) as Arc<dyn rustls::server::ResolvesServerCert>);
            server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let acceptor = TlsAcceptor::from(Arc::new(server));
            for (slot, l) in https.iter_mut().zip(listeners) {
                *slot = Some((l, acceptor.clone()));
            }
        }
        let gw = Self {
            shared: Arc::clone(&shared),
            http_addr,
            https_addr,
            dev_ca,
            certs,
            acme: RwLock::new(None),
            stop_accepting: CancellationToken::new(),
            drain: CancellationToken::new(),
            kill,
            connections,
            threads: Mutex::new(Vec::new()),
        };
        for (i, (http, https)) in http.into_iter().zip(https).enumerate() {
            gw.spawn_thread(i, http, https)?;
        }
        tracing::info!(
            http = %gw.http_addr,
            https = ?gw.https_addr,
            domain = %shared.config.domain,
            threads,
            dev_ca = ?gw.dev_ca.as_ref().map(DevCa::path),
            "gateway listening"
        );
        Ok(gw)
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The HTTPS listener's address, if TLS is on.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The development CA's certificate, when the gateway made or used one.
    pub fn dev_ca_path(&self) -> Option<&std::path::Path> {
        self.dev_ca.as_ref().map(DevCa::path)
    }

    /// Sets who wakes functions with no ready instance (the platform).
    pub fn set_activator(&self, activator: Arc<dyn Activator>) {
        *self.shared.activator.write() = Some(activator);
    }

    /// Sets where asynchronous requests (`Prefer: respond-async`) are
    /// recorded: they are answered `202 Accepted` with the invocation's id.
    /// Without one, the preference is ignored (RFC 7240 allows it) and the
    /// request is served as usual.
    pub fn set_intake(&self, intake: Arc<dyn InvocationIntake>) {
        *self.shared.intake.write() = Some(intake);
    }

    /// Sends invocations to functions through this gateway's HTTP listener,
    /// as a client would: for the platform's invoker.
    pub fn dispatcher(&self) -> crate::asynchronous::GatewayDispatch {
        crate::asynchronous::GatewayDispatch::new(self.http_addr, self.shared.config.domain.clone())
    }

    /// Requests in flight for a function right now: the autoscaler's signal.
    pub fn in_flight(&self, name: &FunctionName) -> usize {
        let counters = self.shared.counters.lock();
        counters.get(name).map_or(0, |c| c.in_flight())
    }

    /// Requests in flight to the instance at `endpoint`, including those that
    /// started before a table swap took it out of the routes.
    pub fn endpoint_in_flight(&self, endpoint: &Endpoint) -> usize {
        let table = self.shared.table.load();
        let current: usize = table.endpoints().filter(|e| e.endpoint == *endpoint).map(|e| e.in_flight()).sum();
        let mut retired = self.shared.retired.lock();
        retired.retain(|w| w.strong_count() > 0);
        let old: usize =
            retired.iter().filter_map(Weak::upgrade).filter(|e| e.endpoint == *endpoint).map(|e| e.in_flight()).sum();
        current + old
    }

    /// The load of every function in the table (in flight, requests so far): the autoscaler's input.
    pub fn load(&self) -> Vec<(FunctionName, pilotlight_core::ports::FunctionLoad)> {
        let counters = self.shared.counters.lock();
        counters
            .iter()
            .map(|(n, c)| {
                (n.clone(), pilotlight_core::ports::FunctionLoad { in_flight: c.in_flight(), requests: c.started() })
            })
            .collect()
    }

    /// Turns on ACME: certificates for every routed function's host name are
    /// obtained in the background (and renewed twice a day when due).
    pub async fn enable_acme(&self, config: AcmeConfig) -> Result<Arc<AcmeIssuer>, GatewayError> {
        let issuer =
            Arc::new(AcmeIssuer::new(config, Arc::clone(&self.shared.challenges), Arc::clone(&self.certs)).await?);
        *self.acme.write() = Some(Arc::clone(&issuer));
        let (renewer, stop) = (Arc::clone(&issuer), self.stop_accepting.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(12 * 3600)) => {}
                }
                for (host, e) in renewer.renew_due().await {
                    tracing::warn!(host, error = %e, "certificate renewal failed; will retry");
                }
            }
        });
        Ok(issuer)
    }

    /// One event-loop thread: a current-thread runtime serving its own
    /// listeners, with its own upstream pool.
    fn spawn_thread(
        &self,
        index: usize,
        http: std::net::TcpListener,
        https: Option<(std::net::TcpListener, TlsAcceptor)>,
    ) -> Result<(), GatewayError> {
        let shared = Arc::clone(&self.shared);
        let (stop, drain, kill, tracker) =
            (self.stop_accepting.clone(), self.drain.clone(), self.kill.clone(), self.connections.clone());
        let addr = self.http_addr;
        let handle = std::thread::Builder::new()
            .name(format!("pilotlight-gw-{index}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "gateway thread cannot build its runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    // Shared by the thread's connections: a request clones the Arc, not the two clients.
                    let client = Arc::new(upstream_client(&shared.config, &shared.namespaces));
                    let serve_http = accept_loop(http, None, &shared, &client, &stop, &drain, &kill, &tracker);
                    match https {
                        Some((l, acceptor)) => {
                            let serve_https =
                                accept_loop(l, Some(acceptor), &shared, &client, &stop, &drain, &kill, &tracker);
                            tokio::join!(serve_http, serve_https);
                        }
                        None => serve_http.await,
                    }
                    // Keep driving this thread's connections until they are done.
                    tokio::select! {
                        _ = tracker.wait() => {}
                        _ = kill.cancelled() => {}
                    }
                });
            })
            .map_err(|source| GatewayError::Bind { addr, source })?;
        self.threads.lock().push(handle);
        Ok(())
    }

    /// Stops accepting, lets requests in flight finish (up to the configured
    /// grace), then closes what is left.
    pub async fn shutdown(&self) {
        self.stop_accepting.cancel();
        self.drain.cancel();
        self.connections.close();
        let grace = self.shared.config.shutdown_grace;
        if tokio::time::timeout(grace, self.connections.wait()).await.is_err() {
            tracing::warn!(?grace, "connections still open after the shutdown grace; closing them");
        }
        self.kill.cancel();
        let threads = std::mem::take(&mut *self.threads.lock());
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Without a shutdown call the threads would serve on; end them.
        self.stop_accepting.cancel();
        self.drain.cancel();
        self.kill.cancel();
        self.connections.close();
    }
}

/// This thread's upstream pools: HTTP/1.1, and HTTP/2 in clear text for gRPC.
fn upstream_client(config: &GatewayConfig, namespaces: &Arc<crate::connect::Namespaces>) -> Upstreams {
    let client = |h2c: bool| -> UpstreamClient {
        let connector = crate::connect::Connector::new(Arc::clone(namespaces), Duration::from_secs(5));
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.upstream_idle_timeout)
            .pool_timer(TokioTimer::new())
            .http2_only(h2c)
            .timer(TokioTimer::new())
            .build(connector)
    };
    Upstreams { http1: client(false), h2c: client(true) }
}

/// `n` listeners on one address with `SO_REUSEPORT`, so the kernel spreads
/// connections over the threads. A plain bind first makes sure nobody else
/// holds the port (another process could otherwise join the group silently).
fn reuseport_group(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, GatewayError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind_err = |source| GatewayError::Bind { addr, source };
    let probe = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    let addr = probe.local_addr().map_err(bind_err)?;
    drop(probe);
    (0..n)
        .map(|_| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(bind_err)?;
            socket.set_reuse_address(true).map_err(bind_err)?;
            socket.set_reuse_port(true).map_err(bind_err)?;
            socket.set_nonblocking(true).map_err(bind_err)?;
            socket.bind(&addr.into()).map_err(bind_err)?;
            socket.listen(1024).map_err(bind_err)?;
            Ok(socket.into())
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    shared: &Arc<Shared>,
    client: &Arc<Upstreams>,
    stop: &CancellationToken,
    drain: &CancellationToken,
    kill: &CancellationToken,
    tracker: &TaskTracker,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "gateway listener cannot join the runtime");
            return;
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (shared, client, drain, kill, tls) =
            (Arc::clone(shared), client.clone(), drain.clone(), kill.clone(), tls.clone());
        tracker.spawn(async move {
            match tls {
                None => serve(shared, client, TokioIo::new(stream), peer, false, drain, kill).await,
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        serve(shared, client, TokioIo::new(tls_stream), peer, true, drain, kill).await
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
}

async fn serve<I>(
    shared: Arc<Shared>,
    client: Arc<Upstreams>,
    io: TokioIo<I>,
    peer: SocketAddr,
    https: bool,
    drain: CancellationToken,
    kill: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let client_ip = crate::headers::client_value(peer.ip());
    let (max_head, header_timeout) = (shared.config.max_header_bytes.max(8 * 1024), shared.config.header_timeout);
    let svc = service_fn(move |req| {
        let (shared, client, client_ip) = (Arc::clone(&shared), client.clone(), client_ip.clone());
        async move { Ok::<_, Infallible>(proxy::handle(&shared, &client, req, &client_ip, https).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A head larger than the read buffer gets hyper's own 431.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(max_head);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX));
    // Upgrades (WebSocket and any other token) hand the connection to a tunnel.
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        _ = drain.cancelled() => {
            // Finish the request in progress, then close; no new requests on this connection.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended with an error while draining");
                    }
                }
                _ = kill.cancelled() => tracing::debug!(%peer, "connection cut at the end of the shutdown grace"),
            }
        }
    }
}

#[async_trait]
impl Router for Gateway {
    async fn apply(&self, table: &RouteTable) -> Result<(), RouterError> {
        let _one = self.shared.swap_lock.lock().await;
        let compiled = {
            let previous = self.shared.table.load();
            let mut counters = self.shared.counters.lock();
            Table::compile(
                table,
                &previous,
                &mut counters,
                self.shared.config.max_waiting_per_function,
                &self.shared.namespaces,
            )
        };
        // Certificates first, so a route never serves HTTPS without its own.
        if let Some(ca) = &self.dev_ca {
            for route in table.iter() {
                let host = self.shared.config.domain.host_for(&route.name);
                if !self.certs.has_host(&host) {
                    let key = ca
                        .issue(vec![host.clone()])
                        .map_err(|e| RouterError::Backend { source: Box::new(e), retryable: false })?;
                    self.certs.set_host(&host, Arc::new(key));
                }
            }
        }
        // Endpoints that leave keep counting the requests that hold them.
        {
            let previous = self.shared.table.load();
            let kept: std::collections::HashSet<*const EndpointState> = compiled.endpoints().map(Arc::as_ptr).collect();
            let mut retired = self.shared.retired.lock();
            retired.retain(|w| w.strong_count() > 0);
            retired.extend(previous.endpoints().filter(|e| !kept.contains(&Arc::as_ptr(e))).map(Arc::downgrade));
        }
        self.shared.table.store(Arc::new(compiled));
        self.shared.version.send_modify(|v| *v = v.wrapping_add(1));
        let issuer = self.acme.read().clone();
        if let Some(issuer) = issuer {
            for route in table.iter() {
                issuer.request(self.shared.config.domain.host_for(&route.name));
            }
        }
        Ok(())
    }
}

impl pilotlight_core::ports::LoadSource for Gateway {
    fn load(&self) -> Vec<(FunctionName, pilotlight_core::ports::FunctionLoad)> {
        Gateway::load(self)
    }
    fn endpoint_in_flight(&self, endpoint: &Endpoint) -> Option<usize> {
        Some(Gateway::endpoint_in_flight(self, endpoint))
    }
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pilotlight_core::model::Domain;

/// Where the HTTPS listener's certificate comes from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TlsSource {
    /// No HTTPS listener.
    Disabled,
    /// A certificate chain and private key in PEM files (e.g. a wildcard for `*.<domain>`).
    Pem {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A local development CA kept in `dir` (made on first start) signs a
    /// certificate for `*.<domain>`. Trust `dir/dev-ca.pem` in a browser.
    DevCa {
        /// Where the CA's certificate and key live.
        dir: PathBuf,
    },
}

/// Settings of a [`crate::Gateway`].
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Functions are served at `<name>.<domain>`.
    pub domain: Domain,
    /// The HTTP listener (port 0 picks a free one).
    pub http_addr: SocketAddr,
    /// The HTTPS listener, when TLS is not disabled.
    pub https_addr: SocketAddr,
    /// The HTTPS certificate.
    pub tls: TlsSource,
    /// How long a request waits for a function with no ready instance.
    pub activation_timeout: Duration,
    /// How many requests may wait per function; more get 503 at once.
    pub max_waiting_per_function: usize,
    /// How long shutdown lets requests in flight finish.
    pub shutdown_grace: Duration,
    /// Idle keep-alive connections to upstreams are closed after this long.
    pub upstream_idle_timeout: Duration,
    /// Event-loop threads. Each has its own listener (`SO_REUSEPORT`), its own
    /// runtime and its own upstream connection pool, so a request and its
    /// upstream connection never wake another thread. Default: one per core.
    pub threads: usize,
    /// A request head (the request line and every header, HTTP/1.1; the
    /// header list, HTTP/2) may be at most this many bytes; a larger one gets
    /// 431 (default 64 KiB; at least 8 KiB).
    pub max_header_bytes: usize,
    /// One header line (name, `: ` and value) may be at most this many
    /// bytes; a longer one gets 431 (default 16 KiB).
    pub max_header_line_bytes: usize,
    /// A client must send its whole request head within this long, or its
    /// connection is closed (default 30 s), so half-sent requests cannot hold
    /// connections open.
    pub header_timeout: Duration,
    /// The largest body of an asynchronous request (`Prefer: respond-async`),
    /// kept in the Store until it is delivered; larger ones get 413 (default 1 MiB).
    pub max_async_body_bytes: usize,
}

impl GatewayConfig {
    /// Loopback defaults: HTTP on 127.0.0.1:8080, HTTPS on 127.0.0.1:8443 with a dev CA in `data_dir/tls`.
    pub fn new(domain: Domain, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            domain,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https_addr: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls: TlsSource::DevCa { dir: data_dir.into().join("tls") },
            activation_timeout: Duration::from_secs(30),
            max_waiting_per_function: 1000,
            shutdown_grace: Duration::from_secs(30),
            upstream_idle_timeout: Duration::from_secs(90),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_header_bytes: 64 * 1024,
            max_header_line_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(30),
            max_async_body_bytes: 1024 * 1024,
        }
    }

    /// Both listeners on free loopback ports (for tests and embedding).
    pub fn ephemeral(mut self) -> Self {
        self.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        self.https_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        self
    }
}

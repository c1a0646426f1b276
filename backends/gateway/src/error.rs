use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the gateway could not start or configure itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file is unreadable or invalid.
    #[error("TLS material {path}: {message}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Making or signing a certificate failed.
    #[error("certificate generation: {0}")]
    Certificate(String),
    /// An ACME exchange failed.
    #[error("ACME: {0}")]
    Acme(String),
}

//! HTTPS material: PEM files, the development CA, and an SNI resolver that
//! prefers a per-host certificate (from ACME) over the wildcard one.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use pilotlight_core::model::Domain;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::GatewayError;

/// Picks the certificate for a TLS handshake by its SNI name.
#[derive(Debug, Default)]
pub(crate) struct CertStore {
    wildcard: RwLock<Option<Arc<CertifiedKey>>>,
    by_host: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertStore {
    pub(crate) fn set_wildcard(&self, key: Arc<CertifiedKey>) {
        *self.wildcard.write() = Some(key);
    }
    pub(crate) fn set_host(&self, host: &str, key: Arc<CertifiedKey>) {
        self.by_host.write().insert(host.to_ascii_lowercase(), key);
    }
    pub(crate) fn has_host(&self, host: &str) -> bool {
        self.by_host.read().contains_key(&host.to_ascii_lowercase())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = hello.server_name() {
            let by_host = self.by_host.read();
            if let Some(k) = by_host.get(&sni.to_ascii_lowercase()) {
                return Some(Arc::clone(k));
            }
        }
        self.wildcard.read().clone()
    }
}

fn tls_err(path: &Path, message: impl Into<String>) -> GatewayError {
    GatewayError::Tls { path: path.to_path_buf(), message: message.into() }
}

/// A certified key from PEM text: a chain (leaf first) and a private key.
pub(crate) fn certified_key_from_pem(
    chain_pem: &str,
    key_pem: &str,
    origin: &Path,
) -> Result<CertifiedKey, GatewayError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(origin, format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(origin, "no certificate found in the PEM"));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| tls_err(origin, format!("bad key PEM: {e}")))?
        .ok_or_else(|| tls_err(origin, "no private key found in the PEM"))?;
    let signing = any_supported_type(&key).map_err(|e| tls_err(origin, format!("unsupported private key: {e}")))?;
    Ok(CertifiedKey::new(certs, signing))
}

/// Loads a configured certificate and key.
pub(crate) fn load_pem_files(cert: &Path, key: &Path) -> Result<CertifiedKey, GatewayError> {
    let chain = fs::read_to_string(cert).map_err(|e| tls_err(cert, format!("cannot read: {e}")))?;
    let key_pem = fs::read_to_string(key).map_err(|e| tls_err(key, format!("cannot read: {e}")))?;
    certified_key_from_pem(&chain, &key_pem, cert)
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), GatewayError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| tls_err(path, format!("cannot write: {e}")))?;
    f.write_all(contents.as_bytes()).map_err(|e| tls_err(path, format!("cannot write: {e}")))
}

fn cert_err(e: rcgen::Error) -> GatewayError {
    GatewayError::Certificate(e.to_string())
}

/// The local development CA: made on first start in `dir`, reused after, so a
/// browser that trusts `dev-ca.pem` once keeps trusting the gateway.
pub(crate) struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    path: PathBuf,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").field("path", &self.path).finish_non_exhaustive()
    }
}

impl DevCa {
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self, GatewayError> {
        fs::create_dir_all(dir).map_err(|e| tls_err(dir, format!("cannot create: {e}")))?;
        let path = dir.join("dev-ca.pem");
        let key_path = dir.join("dev-ca-key.pem");
        let (ca_pem, key_pem) = if path.exists() && key_path.exists() {
            let read = |p: &Path| fs::read_to_string(p).map_err(|e| tls_err(p, format!("cannot read: {e}")));
            (read(&path)?, read(&key_path)?)
        } else {
            let key = KeyPair::generate().map_err(cert_err)?;
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, "pilotlight development CA");
            params.distinguished_name.push(DnType::OrganizationName, "pilotlight");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages =
                vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
            params.not_before = rcgen::date_time_ymd(2024, 1, 1);
            params.not_after = rcgen::date_time_ymd(2036, 1, 1);
            let cert = params.self_signed(&key).map_err(cert_err)?;
            write_private(&key_path, &key.serialize_pem())?;
            fs::write(&path, cert.pem()).map_err(|e| tls_err(&path, format!("cannot write: {e}")))?;
            tracing::info!(path = %path.display(), "created a development CA; trust it to browse the functions over HTTPS");
            (cert.pem(), key.serialize_pem())
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| tls_err(&key_path, e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| tls_err(&path, e.to_string()))?;
        Ok(Self { issuer, ca_pem, path })
    }

    /// The CA certificate's path, to trust in a browser.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A certificate for `names`, valid for 397 days, chained to the CA.
    pub(crate) fn issue(&self, names: Vec<String>) -> Result<CertifiedKey, GatewayError> {
        let mut params = CertificateParams::new(names.clone()).map_err(cert_err)?;
        params.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(3600)).into();
        params.not_after = (now + std::time::Duration::from_secs(397 * 86_400)).into();
        let leaf_key = KeyPair::generate().map_err(cert_err)?;
        let leaf = params.signed_by(&leaf_key, &self.issuer).map_err(cert_err)?;
        let chain = format!("{}{}", leaf.pem(), self.ca_pem);
        certified_key_from_pem(&chain, &leaf_key.serialize_pem(), &self.path)
    }

    /// The fallback certificate for `*.<domain>` and `<domain>`. Clients refuse
    /// a wildcard directly under a one-label name such as `localhost`, so each
    /// function's host also gets its own certificate (see [`DevCa::issue`]).
    pub(crate) fn wildcard(&self, domain: &Domain) -> Result<CertifiedKey, GatewayError> {
        self.issue(vec![format!("*.{domain}"), domain.to_string()])
    }
}

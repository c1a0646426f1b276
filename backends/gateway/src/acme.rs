//! Certificates from an ACME CA (Let's Encrypt, or Debian's `pebble` in tests)
//! for function host names, over HTTP-01 challenges that the gateway's own HTTP
//! listener answers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};

use crate::error::GatewayError;
use crate::tls::{CertStore, certified_key_from_pem, write_private};

/// Where and how to get certificates.
#[derive(Clone, Debug)]
pub struct AcmeConfig {
    /// The CA's directory URL (e.g. Let's Encrypt's, or pebble's `https://127.0.0.1:14000/dir`).
    pub directory_url: String,
    /// Contact URLs for the account, e.g. `mailto:ops@example.com`.
    pub contact: Vec<String>,
    /// A PEM root to trust for the CA's own HTTPS (pebble's test certificate); `None` uses the system roots.
    pub ca_root: Option<PathBuf>,
    /// Where the account and the certificates are kept.
    pub dir: PathBuf,
    /// Renew a certificate this long before it expires.
    pub renew_before: Duration,
}

/// Tokens the HTTP listener answers at `/.well-known/acme-challenge/<token>`.
#[derive(Default)]
pub(crate) struct Challenges(RwLock<HashMap<String, String>>);

impl Challenges {
    pub(crate) fn get(&self, token: &str) -> Option<String> {
        self.0.read().get(token).cloned()
    }
    fn put(&self, token: String, key_auth: String) {
        self.0.write().insert(token, key_auth);
    }
    fn remove(&self, token: &str) {
        self.0.write().remove(token);
    }
}

/// Obtains, stores, loads and renews certificates. Made by
/// [`Gateway::enable_acme`](crate::Gateway::enable_acme).
pub struct AcmeIssuer {
    config: AcmeConfig,
    account: Account,
    challenges: Arc<Challenges>,
    certs: Arc<CertStore>,
    /// Expiry of each certificate held.
    expiry: RwLock<HashMap<String, SystemTime>>,
    /// One issuance at a time.
    in_progress: tokio::sync::Mutex<()>,
    /// Hosts with an order queued or running, and when each last failed:
    /// table changes must not turn into a stream of orders to the CA.
    requests: parking_lot::Mutex<Requests>,
}

#[derive(Default)]
struct Requests {
    queued: std::collections::HashSet<String>,
    failed_at: HashMap<String, std::time::Instant>,
}

/// After a failed order for a host, wait this long before the next.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(600);

fn acme_err(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Acme(e.to_string())
}

fn not_after(chain_pem: &str) -> Option<SystemTime> {
    let der = rustls_pemfile::certs(&mut chain_pem.as_bytes()).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

impl AcmeIssuer {
    pub(crate) async fn new(
        config: AcmeConfig,
        challenges: Arc<Challenges>,
        certs: Arc<CertStore>,
    ) -> Result<Self, GatewayError> {
        std::fs::create_dir_all(config.dir.join("certs")).map_err(acme_err)?;
        let builder = || match &config.ca_root {
            Some(root) => Account::builder_with_root(root),
            None => Account::builder(),
        };
        let creds_path = config.dir.join("account.json");
        let account = match std::fs::read_to_string(&creds_path) {
            Ok(text) => {
                let creds: AccountCredentials = serde_json::from_str(&text).map_err(acme_err)?;
                builder().map_err(acme_err)?.from_credentials(creds).await.map_err(acme_err)?
            }
            Err(_) => {
                let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
                let (account, creds) = builder()
                    .map_err(acme_err)?
                    .create(
                        &NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false },
                        config.directory_url.clone(),
                        None,
                    )
                    .await
                    .map_err(acme_err)?;
                write_private(&creds_path, &serde_json::to_string(&creds).map_err(acme_err)?)?;
                tracing::info!(directory = %config.directory_url, "ACME account created");
                account
            }
        };
        let issuer = Self {
            config,
            account,
            challenges,
            certs,
            expiry: RwLock::default(),
            in_progress: tokio::sync::Mutex::new(()),
            requests: parking_lot::Mutex::default(),
        };
        issuer.load_stored()?;
        Ok(issuer)
    }

    fn paths(&self, host: &str) -> (PathBuf, PathBuf) {
        let dir = self.config.dir.join("certs");
        (dir.join(format!("{host}.pem")), dir.join(format!("{host}-key.pem")))
    }

    /// Serves the certificates stored by an earlier run.
    fn load_stored(&self) -> Result<(), GatewayError> {
        let Ok(entries) = std::fs::read_dir(self.config.dir.join("certs")) else { return Ok(()) };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(host) = name.strip_suffix(".pem").filter(|h| !h.ends_with("-key")) else { continue };
            let (cert_path, key_path) = self.paths(host);
            let (Ok(chain), Ok(key)) = (std::fs::read_to_string(&cert_path), std::fs::read_to_string(&key_path)) else {
                continue;
            };
            match certified_key_from_pem(&chain, &key, &cert_path) {
                Ok(k) => {
                    self.certs.set_host(host, Arc::new(k));
                    if let Some(t) = not_after(&chain) {
                        self.expiry.write().insert(host.to_owned(), t);
                    }
                }
                Err(e) => tracing::warn!(host, error = %e, "stored certificate ignored"),
            }
        }
        Ok(())
    }

    /// Whether `host` has a certificate that is not due for renewal.
    pub fn is_fresh(&self, host: &str) -> bool {
        let expiry = self.expiry.read();
        expiry.get(host).is_some_and(|t| *t > SystemTime::now() + self.config.renew_before)
    }

    /// Obtains a certificate for `host` (unless a fresh one is held), stores it
    /// and serves it for that SNI name from now on.
    pub async fn ensure(&self, host: &str) -> Result<(), GatewayError> {
        let _one_at_a_time = self.in_progress.lock().await;
        if self.is_fresh(host) && self.certs.has_host(host) {
            return Ok(());
        }
        let (chain, key) = self.order(host).await?;
        let (cert_path, key_path) = self.paths(host);
        let certified = certified_key_from_pem(&chain, &key, &cert_path)?;
        write_private(&key_path, &key)?;
        std::fs::write(&cert_path, &chain).map_err(acme_err)?;
        self.certs.set_host(host, Arc::new(certified));
        if let Some(t) = not_after(&chain) {
            self.expiry.write().insert(host.to_owned(), t);
        }
        tracing::info!(host, "certificate obtained by ACME");
        Ok(())
    }

    /// Orders a certificate for `host` in the background, unless it is fresh,
    /// already queued, or failed less than 10 minutes ago.
    pub fn request(self: &Arc<Self>, host: String) {
        if self.is_fresh(&host) {
            return;
        }
        {
            let mut r = self.requests.lock();
            let recently_failed = r.failed_at.get(&host).is_some_and(|t| t.elapsed() < RETRY_AFTER_FAILURE);
            if recently_failed || !r.queued.insert(host.clone()) {
                return;
            }
        }
        let issuer = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = issuer.ensure(&host).await;
            let mut r = issuer.requests.lock();
            r.queued.remove(&host);
            match outcome {
                Ok(()) => {
                    r.failed_at.remove(&host);
                }
                Err(e) => {
                    r.failed_at.insert(host.clone(), std::time::Instant::now());
                    tracing::warn!(host, error = %e, "ACME certificate not obtained; the wildcard certificate serves meanwhile; retrying in 10 minutes");
                }
            }
        });
    }

    /// Renews every held certificate that is due.
    pub async fn renew_due(&self) -> Vec<(String, GatewayError)> {
        let hosts: Vec<String> = self.expiry.read().keys().cloned().collect();
        let mut failures = Vec::new();
        for host in hosts {
            if !self.is_fresh(&host)
                && let Err(e) = self.ensure(&host).await
            {
                failures.push((host, e));
            }
        }
        failures
    }

    async fn order(&self, host: &str) -> Result<(String, String), GatewayError> {
        let identifiers = [Identifier::Dns(host.to_owned())];
        let mut order = self.account.new_order(&NewOrder::new(&identifiers)).await.map_err(acme_err)?;
        let mut tokens = Vec::new();
        let result = async {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(acme_err)?;
                match authz.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => return Err(GatewayError::Acme(format!("authorization for {host} is {other:?}"))),
                }
                let mut challenge = authz
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| GatewayError::Acme(format!("the CA offers no HTTP-01 challenge for {host}")))?;
                let token = challenge.token.clone();
                self.challenges.put(token.clone(), challenge.key_authorization().as_str().to_owned());
                tokens.push(token);
                challenge.set_ready().await.map_err(acme_err)?;
            }
            let retries = RetryPolicy::default().timeout(Duration::from_secs(60));
            let status = order.poll_ready(&retries).await.map_err(acme_err)?;
            if status != OrderStatus::Ready {
                return Err(GatewayError::Acme(format!("order for {host} ended {status:?}, not ready")));
            }
            let key = order.finalize().await.map_err(acme_err)?;
            let chain = order.poll_certificate(&retries).await.map_err(acme_err)?;
            Ok((chain, key))
        }
        .await;
        for t in &tokens {
            self.challenges.remove(t);
        }
        result
    }
}

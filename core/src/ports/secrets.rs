//! Where runtimes get the values of a function's secrets.
//!
//! The controller's [`SecretVault`](crate::controller::SecretVault) keeps them
//! sealed in the Store; a runtime asks for the plaintext only when it starts an
//! instance, writes it to files, and drops it (the bytes are zeroized).

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::StoreError;
use crate::model::{FunctionName, RegistryHost, SecretName, ValidationError};

/// One secret's plaintext, wiped from memory when dropped. Its `Debug` shows
/// the name and size only, so it cannot reach a log by accident.
pub struct SecretValue {
    /// Its name.
    pub name: SecretName,
    /// Its bytes.
    pub bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue({}, {} bytes)", self.name, self.bytes.len())
    }
}

/// Reads secrets' plaintext for a runtime.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SecretSource: Send + Sync + 'static {
    /// The values of `names`, in that order; any missing one is an error.
    async fn read(&self, names: &[SecretName]) -> Result<Vec<SecretValue>, SecretError>;
}

/// A registry login: what a pull from that registry presents. Its `Debug`
/// hides the password.
#[derive(Clone)]
pub struct RegistryCredentials {
    /// The user name.
    pub username: String,
    /// The password (or token), wiped from memory when dropped.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryCredentials({}, password hidden)", self.username)
    }
}

/// Reads registry logins for a runtime's pulls.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RegistryAuth: Send + Sync + 'static {
    /// The login kept for `registry`, if any.
    async fn credentials(&self, registry: &RegistryHost) -> Result<Option<RegistryCredentials>, SecretError>;
}

/// Why a secret operation failed. No variant carries a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A name or value broke a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No secret of that name.
    #[error("no secret `{0}`; create it with `pilotlight secret set {0}`")]
    NotFound(SecretName),
    /// A registry login that cannot be opened with this server's key.
    #[error(
        "the login for registry `{0}` cannot be decrypted with this server's key; run `pilotlight registry login {0}` again"
    )]
    UndecryptableLogin(RegistryHost),
    /// Functions still list it.
    #[error("secret `{name}` is used by {}; remove it from their `secrets` first", list(.functions))]
    InUse {
        /// The secret.
        name: SecretName,
        /// The functions that list it.
        functions: Vec<FunctionName>,
    },
    /// No login kept for that registry.
    #[error("no login for registry `{0}`; add one with `pilotlight registry login {0}`")]
    NoLogin(RegistryHost),
    /// The stored value cannot be opened: it was sealed with another key, or changed.
    #[error(
        "secret `{0}` cannot be decrypted with this server's key (was the key file or PILOTLIGHT_SECRET_KEY changed?); set it again"
    )]
    Undecryptable(SecretName),
    /// The key is missing or malformed.
    #[error("secret key: {0}")]
    Key(String),
    /// The Store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn list(functions: &[FunctionName]) -> String {
    let names: Vec<String> = functions.iter().map(|f| format!("`{f}`")).collect();
    let noun = if names.len() == 1 { "function" } else { "functions" };
    format!("{noun} {}", names.join(", "))
}

impl SecretError {
    /// Whether trying again can help (the Store was unavailable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SecretError::Store(e) if e.is_retryable())
    }
}

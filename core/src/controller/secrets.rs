//! Secrets: values a function reads as files, sealed in the Store.
//!
//! ```text
//! set(name, value) ─ XChaCha20-Poly1305 (random 24-byte nonce, the name as
//!   associated data) ─ Store doc `secrets/<name>` {nonce, sealed, size, updated}
//! runtime start ─ SecretSource::read(spec.secrets) ─ open ─ files in the instance
//! roll pass ─ each function's digest of its secrets' Store revisions ≠ the
//!   record's ─ new generation (a zero-downtime update)
//! ```
//!
//! The key never enters the Store: it is a file in the data directory
//! (mode 0600) or an environment variable. Sealing with the name as associated
//! data means a sealed value copied under another name does not open. Nothing
//! here formats a value: errors and [`SecretInfo`] carry names and sizes only.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::model::{FunctionName, RegistryHost, SecretName, ValidationError};
use crate::ports::{
    DocKey, DocKind, DocQuery, RegistryAuth, RegistryCredentials, SecretError, SecretSource, SecretValue, Store,
    StoreError,
};
use crate::support::{now_ms, stable_hash};

/// The largest secret value, in bytes (a TLS key with its chain fits).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
/// The most secrets one platform keeps.
pub const MAX_SECRETS_STORED: usize = 1024;
/// The environment variable that may hold the key (64 hex digits), instead of the key file.
pub const SECRET_KEY_ENV: &str = "PILOTLIGHT_SECRET_KEY";

const KIND: &str = "secrets";
const AAD_PREFIX: &str = "pilotlight-secret:";
const LOGIN_KIND: &str = "registry-logins";
const LOGIN_AAD_PREFIX: &str = "pilotlight-registry:";
/// The longest registry user name, and password or token, accepted, in characters.
pub const MAX_LOGIN_CHARS: usize = 4096;

/// The 256-bit key that seals secrets. Its `Debug` does not show it.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Result<Self, SecretError> {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::fill(k.as_mut()).map_err(|e| SecretError::Key(format!("no randomness for a key: {e}")))?;
        Ok(Self(k))
    }

    /// A key written as 64 hex digits (surrounding white space ignored).
    pub fn parse_hex(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bad = || SecretError::Key("must be 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`".into());
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut k = Zeroizing::new([0u8; 32]);
        for (i, byte) in k.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
        }
        Ok(Self(k))
    }

    /// The key from [`SECRET_KEY_ENV`] when it is set, else from `file`,
    /// which is created (mode 0600, a new random key) when it does not exist.
    /// A key file readable by others is refused.
    pub fn load_or_create(file: &Path) -> Result<(Self, KeySource), SecretError> {
        if let Ok(text) = std::env::var(SECRET_KEY_ENV) {
            return Self::parse_hex(&text)
                .map(|k| (k, KeySource::Env))
                .map_err(|e| SecretError::Key(format!("{SECRET_KEY_ENV}: {e}")));
        }
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let shown = file.display();
        match std::fs::read_to_string(file) {
            Ok(text) => {
                let mode = std::fs::metadata(file)
                    .map_err(|e| SecretError::Key(format!("{shown}: {e}")))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(SecretError::Key(format!(
                        "{shown} is readable by others (mode {:o}); run `chmod 600 {shown}`",
                        mode & 0o777
                    )));
                }
                let text = Zeroizing::new(text);
                Self::parse_hex(&text)
                    .map(|k| (k, KeySource::File))
                    .map_err(|e| SecretError::Key(format!("{shown}: {e}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                let hex = Zeroizing::new(key.0.iter().map(|b| format!("{b:02x}")).collect::<String>());
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(file)
                    .map_err(|e| SecretError::Key(format!("cannot create {shown}: {e}")))?;
                f.write_all(hex.as_bytes())
                    .and_then(|()| f.write_all(b"\n"))
                    .and_then(|()| f.sync_all())
                    .map_err(|e| SecretError::Key(format!("cannot write {shown}: {e}")))?;
                Ok((key, KeySource::Created))
            }
            Err(e) => Err(SecretError::Key(format!("cannot read {shown}: {e}"))),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(*self.0))
    }
}

/// Where [`SecretKey::load_or_create`] found the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// [`SECRET_KEY_ENV`].
    Env,
    /// The key file, as it was.
    File,
    /// The key file, made by this call.
    Created,
}

/// One stored secret, as the Store holds it: sealed.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sealed {
    nonce: String,
    sealed: String,
    size: usize,
    updated_ms: u64,
}

/// One registry login, as the Store holds it: the password sealed.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SealedLogin {
    username: String,
    nonce: String,
    sealed: String,
    updated_ms: u64,
}

/// What may be shown of a registry login: never its password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginInfo {
    /// The registry.
    pub registry: RegistryHost,
    /// The user name.
    pub username: String,
    /// When it was last set, in milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

/// What may be shown of a secret: never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: SecretName,
    /// Its value's size in bytes.
    pub size: usize,
    /// When it was last set, in milliseconds since the Unix epoch.
    pub updated_ms: u64,
    /// The functions that list it.
    pub used_by: Vec<FunctionName>,
}

/// Keeps secrets sealed in a Store; see the module docs.
#[derive(Clone)]
pub struct SecretVault {
    store: Arc<dyn Store>,
    key: SecretKey,
    kind: DocKind,
}

fn kind() -> DocKind {
    DocKind::new(KIND).unwrap_or_else(|_| unreachable!("a valid kind"))
}

fn doc_key(name: &SecretName) -> Result<DocKey, StoreError> {
    DocKey::new(&kind(), name.as_str())
}

fn login_kind() -> DocKind {
    DocKind::new(LOGIN_KIND).unwrap_or_else(|_| unreachable!("a valid kind"))
}

fn login_key(registry: &RegistryHost) -> Result<DocKey, StoreError> {
    DocKey::new(&login_kind(), registry.as_str())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend { source: Box::new(e), retryable: false })
}

fn aad(name: &SecretName) -> Vec<u8> {
    format!("{AAD_PREFIX}{name}").into_bytes()
}

fn decode(name: &SecretName, bytes: &[u8]) -> Result<Sealed, SecretError> {
    serde_json::from_slice(bytes).map_err(|_| SecretError::Undecryptable(name.clone()))
}

/// A digest of the Store revisions of `names` (in order; a missing one counts
/// as missing): it changes whenever one of them is set again.
pub(crate) async fn secrets_digest(store: &dyn Store, names: &[SecretName]) -> Result<Option<String>, StoreError> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut text = String::new();
    for name in names {
        let revision = store.doc_get(&doc_key(name)?).await?.map(|d| d.revision);
        text.push_str(&format!("{name}={};", revision.map_or_else(|| "missing".to_owned(), |r| r.to_string())));
    }
    Ok(Some(format!("{:016x}", stable_hash(text.as_bytes()))))
}

/// Whether the Store holds any secret.
pub(crate) async fn any_secret(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(!store.doc_list(&kind(), &DocQuery::prefix("", 1)).await?.is_empty())
}

/// The secrets of `names` that the Store does not hold, by index in `names`.
pub(crate) async fn missing_secrets(
    store: &dyn Store,
    names: &[SecretName],
) -> Result<Option<(usize, SecretName)>, StoreError> {
    for (i, name) in names.iter().enumerate() {
        if store.doc_get(&doc_key(name)?).await?.is_none() {
            return Ok(Some((i, name.clone())));
        }
    }
    Ok(None)
}

impl SecretVault {
    /// Secrets in `store`, sealed with `key`.
    pub fn new(store: Arc<dyn Store>, key: SecretKey) -> Self {
        Self { store, key, kind: kind() }
    }

    /// Seals `plain` with a fresh nonce, bound to `aad`: (nonce, sealed), base64.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<(String, String), SecretError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Key(format!("no randomness for a nonce: {e}")))?;
        let sealed = self
            .key
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
            .map_err(|_| SecretError::Key("the cipher refused the value".into()))?;
        Ok((B64.encode(nonce), B64.encode(sealed)))
    }

    /// Opens what [`seal`](Self::seal) made with the same `aad`; `None` if it does not open.
    fn unseal(&self, aad: &[u8], nonce: &str, sealed: &str) -> Option<Zeroizing<Vec<u8>>> {
        let nonce: [u8; 24] = B64.decode(nonce).ok()?.try_into().ok()?;
        let ciphertext = B64.decode(sealed).ok()?;
        self.key.cipher().decrypt(&XNonce::from(nonce), Payload { msg: &ciphertext, aad }).ok().map(Zeroizing::new)
    }

    /// Writes `bytes` at `key` with a compare-and-set on whatever is there.
    async fn put(&self, key: &DocKey, bytes: Vec<u8>, what: &str) -> Result<(), SecretError> {
        for _ in 0..16 {
            let expected = self.store.doc_get(key).await?.map(|d| d.revision);
            match self.store.doc_put(key, expected, bytes.clone()).await {
                Ok(_) => return Ok(()),
                Err(StoreError::DocConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable(format!("{what} kept changing under concurrent writes; try again")).into())
    }

    /// Removes `key` (compare-and-set); `false` when there was nothing.
    async fn delete(&self, key: &DocKey, what: &str) -> Result<bool, SecretError> {
        for _ in 0..16 {
            let Some(doc) = self.store.doc_get(key).await? else { return Ok(false) };
            match self.store.doc_delete(key, doc.revision).await {
                Ok(()) => return Ok(true),
                Err(StoreError::DocConflict { .. }) => continue,
                Err(StoreError::DocNotFound(_)) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable(format!("{what} kept changing under concurrent writes; try again")).into())
    }

    /// Keeps a login for `registry`, sealed; the runtime's pulls of that
    /// registry's images present it.
    pub async fn login(
        &self,
        registry: &RegistryHost,
        username: &str,
        password: &str,
    ) -> Result<LoginInfo, SecretError> {
        // Characters, not bytes: the rule the API's schema states (`maxLength`).
        let printable =
            |v: &str| !v.is_empty() && v.chars().count() <= MAX_LOGIN_CHARS && !v.chars().any(char::is_control);
        if !printable(username) {
            return Err(ValidationError::new(
                "username",
                format!("must be 1 to {MAX_LOGIN_CHARS} characters without control characters"),
            )
            .into());
        }
        if !printable(password) {
            return Err(ValidationError::new(
                "password",
                format!("must be 1 to {MAX_LOGIN_CHARS} characters without control characters"),
            )
            .into());
        }
        let aad = format!("{LOGIN_AAD_PREFIX}{registry}");
        let (nonce, sealed) = self.seal(aad.as_bytes(), password.as_bytes())?;
        let doc = SealedLogin { username: username.to_owned(), nonce, sealed, updated_ms: now_ms() };
        self.put(&login_key(registry)?, encode(&doc)?, &format!("the login for `{registry}`")).await?;
        tracing::info!(%registry, username, "registry login kept");
        Ok(LoginInfo { registry: registry.clone(), username: doc.username, updated_ms: doc.updated_ms })
    }

    /// Every registry login: registries and user names, never passwords.
    pub async fn logins(&self) -> Result<Vec<LoginInfo>, SecretError> {
        let docs = self.store.doc_list(&login_kind(), &DocQuery::prefix("", MAX_SECRETS_STORED)).await?;
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            let Ok(registry) = RegistryHost::parse_field("registry", &doc.key) else { continue };
            let login: SealedLogin =
                serde_json::from_slice(&doc.value).map_err(|_| SecretError::UndecryptableLogin(registry.clone()))?;
            out.push(LoginInfo { registry, username: login.username, updated_ms: login.updated_ms });
        }
        Ok(out)
    }

    /// Forgets the login for `registry`.
    pub async fn logout(&self, registry: &RegistryHost) -> Result<(), SecretError> {
        if self.delete(&login_key(registry)?, &format!("the login for `{registry}`")).await? {
            tracing::info!(%registry, "registry login removed");
            Ok(())
        } else {
            Err(SecretError::NoLogin(registry.clone()))
        }
    }

    async fn users(&self) -> Result<Vec<(FunctionName, Vec<SecretName>)>, StoreError> {
        Ok(self
            .store
            .list()
            .await?
            .into_iter()
            .filter(|r| !r.deleted)
            .map(|r| (r.spec.name().clone(), r.spec.secrets().to_vec()))
            .collect())
    }

    fn info(name: SecretName, sealed: &Sealed, users: &[(FunctionName, Vec<SecretName>)]) -> SecretInfo {
        let used_by = users.iter().filter(|(_, s)| s.contains(&name)).map(|(f, _)| f.clone()).collect();
        SecretInfo { name, size: sealed.size, updated_ms: sealed.updated_ms, used_by }
    }

    /// Creates or replaces a secret. Functions that use it roll to a new
    /// generation on the platform's next secrets pass
    /// ([`Platform::roll_secrets`](crate::Platform::roll_secrets)).
    pub async fn set(&self, name: &SecretName, value: &[u8]) -> Result<SecretInfo, SecretError> {
        if value.is_empty() || value.len() > MAX_SECRET_BYTES {
            return Err(ValidationError::new(
                "value",
                format!("must be 1 to {MAX_SECRET_BYTES} bytes (got {} bytes)", value.len()),
            )
            .into());
        }
        let key = doc_key(name)?;
        if self.store.doc_get(&key).await?.is_none()
            && self.store.doc_list(&self.kind, &DocQuery::prefix("", MAX_SECRETS_STORED)).await?.len()
                >= MAX_SECRETS_STORED
        {
            return Err(ValidationError::new(
                "name",
                format!("this platform keeps at most {MAX_SECRETS_STORED} secrets; remove some first"),
            )
            .into());
        }
        let (nonce, sealed) = self.seal(&aad(name), value)?;
        let doc = Sealed { nonce, sealed, size: value.len(), updated_ms: now_ms() };
        self.put(&key, encode(&doc)?, &format!("secret `{name}`")).await?;
        tracing::info!(secret = %name, size = value.len(), "secret set");
        Ok(Self::info(name.clone(), &doc, &self.users().await?))
    }

    /// Every secret, by name: sizes, update times and users, never values.
    pub async fn list(&self) -> Result<Vec<SecretInfo>, SecretError> {
        let users = self.users().await?;
        let docs = self.store.doc_list(&self.kind, &DocQuery::prefix("", MAX_SECRETS_STORED)).await?;
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            let Ok(name) = SecretName::new(doc.key.clone()) else { continue };
            let sealed = decode(&name, &doc.value)?;
            out.push(Self::info(name, &sealed, &users));
        }
        Ok(out)
    }

    /// Removes a secret; refused while a function lists it (naming them).
    pub async fn remove(&self, name: &SecretName) -> Result<(), SecretError> {
        let users: Vec<FunctionName> =
            self.users().await?.into_iter().filter(|(_, s)| s.contains(name)).map(|(f, _)| f).collect();
        if !users.is_empty() {
            return Err(SecretError::InUse { name: name.clone(), functions: users });
        }
        if !self.delete(&doc_key(name)?, &format!("secret `{name}`")).await? {
            return Err(SecretError::NotFound(name.clone()));
        }
        tracing::info!(secret = %name, "secret removed");
        Ok(())
    }

    async fn open(&self, name: &SecretName) -> Result<SecretValue, SecretError> {
        let doc = self.store.doc_get(&doc_key(name)?).await?.ok_or_else(|| SecretError::NotFound(name.clone()))?;
        let sealed = decode(name, &doc.value)?;
        let bytes = self
            .unseal(&aad(name), &sealed.nonce, &sealed.sealed)
            .ok_or_else(|| SecretError::Undecryptable(name.clone()))?;
        Ok(SecretValue { name: name.clone(), bytes })
    }
}

#[async_trait]
impl SecretSource for SecretVault {
    async fn read(&self, names: &[SecretName]) -> Result<Vec<SecretValue>, SecretError> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(self.open(name).await?);
        }
        Ok(out)
    }
}

#[async_trait]
impl RegistryAuth for SecretVault {
    async fn credentials(&self, registry: &RegistryHost) -> Result<Option<RegistryCredentials>, SecretError> {
        let Some(doc) = self.store.doc_get(&login_key(registry)?).await? else { return Ok(None) };
        let undecryptable = || SecretError::UndecryptableLogin(registry.clone());
        let login: SealedLogin = serde_json::from_slice(&doc.value).map_err(|_| undecryptable())?;
        let aad = format!("{LOGIN_AAD_PREFIX}{registry}");
        let password = self.unseal(aad.as_bytes(), &login.nonce, &login.sealed).ok_or_else(undecryptable)?;
        let password = String::from_utf8(password.to_vec()).map_err(|_| undecryptable())?;
        Ok(Some(RegistryCredentials { username: login.username, password: Zeroizing::new(password) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    fn vault(store: &Arc<MemoryStore>) -> SecretVault {
        SecretVault::new(Arc::clone(store) as Arc<dyn Store>, SecretKey::parse_hex(&"ab".repeat(32)).unwrap())
    }

    fn name(s: &str) -> SecretName {
        SecretName::new(s).unwrap()
    }

    #[tokio::test]
    async fn a_value_is_sealed_at_rest_and_opens_with_the_key_only() {
        let store = Arc::new(MemoryStore::new());
        let v = vault(&store);
        let info = v.set(&name("db-password"), b"hunter2-very-secret").await.unwrap();
        assert_eq!((info.size, info.used_by.len()), (19, 0));
        let doc = store.doc_get(&doc_key(&name("db-password")).unwrap()).await.unwrap().unwrap();
        let raw = String::from_utf8_lossy(&doc.value);
        assert!(!raw.contains("hunter2"), "stored sealed: {raw}");
        let read = v.read(&[name("db-password")]).await.unwrap();
        assert_eq!(read[0].bytes.as_slice(), b"hunter2-very-secret");
        assert!(!format!("{read:?}").contains("hunter2"), "Debug shows no value");

        let other = SecretVault::new(Arc::clone(&store) as Arc<dyn Store>, SecretKey::generate().unwrap());
        let err = other.read(&[name("db-password")]).await.unwrap_err();
        assert!(matches!(err, SecretError::Undecryptable(_)), "{err}");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn a_sealed_value_moved_to_another_name_does_not_open() {
        let store = Arc::new(MemoryStore::new());
        let v = vault(&store);
        v.set(&name("a"), b"value-a").await.unwrap();
        let doc = store.doc_get(&doc_key(&name("a")).unwrap()).await.unwrap().unwrap();
        store.doc_put(&doc_key(&name("b")).unwrap(), None, doc.value).await.unwrap();
        assert!(matches!(v.read(&[name("b")]).await.unwrap_err(), SecretError::Undecryptable(_)));
    }

    #[tokio::test]
    async fn sizes_are_bounded_and_removal_of_a_missing_one_says_so() {
        let store = Arc::new(MemoryStore::new());
        let v = vault(&store);
        let err = v.set(&name("big"), &vec![1u8; MAX_SECRET_BYTES + 1]).await.unwrap_err();
        assert!(matches!(&err, SecretError::Invalid(e) if e.field == "value"), "{err}");
        assert!(matches!(v.set(&name("empty"), b"").await.unwrap_err(), SecretError::Invalid(_)));
        assert!(matches!(v.remove(&name("nope")).await.unwrap_err(), SecretError::NotFound(_)));
        assert!(v.list().await.unwrap().is_empty(), "nothing half-done");
    }

    #[tokio::test]
    async fn setting_again_changes_the_digest() {
        let store = Arc::new(MemoryStore::new());
        let v = vault(&store);
        let names = [name("a"), name("b")];
        let missing = secrets_digest(store.as_ref(), &names).await.unwrap();
        v.set(&names[0], b"1").await.unwrap();
        v.set(&names[1], b"2").await.unwrap();
        let first = secrets_digest(store.as_ref(), &names).await.unwrap();
        assert_ne!(first, missing);
        assert_eq!(secrets_digest(store.as_ref(), &names).await.unwrap(), first, "stable while nothing changes");
        v.set(&names[1], b"2").await.unwrap();
        assert_ne!(secrets_digest(store.as_ref(), &names).await.unwrap(), first, "a new set rolls even the same value");
        assert_eq!(secrets_digest(store.as_ref(), &[]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn registry_logins_keep_the_password_sealed() {
        let store = Arc::new(MemoryStore::new());
        let v = vault(&store);
        let host = RegistryHost::parse_field("registry", "127.0.0.1:5000").unwrap();
        assert!(v.credentials(&host).await.unwrap().is_none());
        let info = v.login(&host, "ci", "pa55-word-xyz").await.unwrap();
        assert_eq!((info.registry.as_str(), info.username.as_str()), ("127.0.0.1:5000", "ci"));
        let raw = store.doc_get(&login_key(&host).unwrap()).await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw.value).contains("pa55"), "sealed at rest");
        let creds = v.credentials(&host).await.unwrap().unwrap();
        assert_eq!((creds.username.as_str(), creds.password.as_str()), ("ci", "pa55-word-xyz"));
        assert!(!format!("{creds:?}").contains("pa55"));
        assert_eq!(v.logins().await.unwrap(), vec![info]);
        let other = SecretVault::new(Arc::clone(&store) as Arc<dyn Store>, SecretKey::generate().unwrap());
        assert!(matches!(other.credentials(&host).await.unwrap_err(), SecretError::UndecryptableLogin(_)));
        let err = v.login(&host, "ci", "").await.unwrap_err();
        assert!(matches!(&err, SecretError::Invalid(e) if e.field == "password"), "{err}");
        v.logout(&host).await.unwrap();
        assert!(matches!(v.logout(&host).await.unwrap_err(), SecretError::NoLogin(_)));
        assert!(v.logins().await.unwrap().is_empty());
    }

    #[test]
    fn keys_are_64_hex_digits_and_the_file_is_private() {
        assert!(SecretKey::parse_hex(&"0f".repeat(32)).is_ok());
        for bad in ["", "zz", &"0".repeat(63), &"g".repeat(64)] {
            assert!(SecretKey::parse_hex(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", SecretKey::generate().unwrap()), "SecretKey(..)");
        if std::env::var(SECRET_KEY_ENV).is_ok() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("pl-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret.key");
        let _ = std::fs::remove_file(&file);
        let (a, how) = SecretKey::load_or_create(&file).unwrap();
        assert_eq!(how, KeySource::Created);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let (b, how) = SecretKey::load_or_create(&file).unwrap();
        assert_eq!((how, *a.0), (KeySource::File, *b.0));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretKey::load_or_create(&file).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

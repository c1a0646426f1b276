//! The server's secrets: the key, the vault in the Store, and where the
//! runtimes write the files.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use pilotlight_core::controller::SecretVault;
use pilotlight_core::model::{RegistryHost, SecretName};
use pilotlight_core::ports::{RegistryAuth, RegistryCredentials, SecretError, SecretSource, SecretValue};
use pilotlight_core::support::SecretFiles;

/// The vault, for a runtime made before the Store is open (the runtime is
/// connected first, so a missing engine leaves nothing behind).
#[derive(Default)]
pub(crate) struct LateVault(OnceLock<SecretVault>);

impl LateVault {
    pub(crate) fn set(&self, vault: SecretVault) {
        let _ = self.0.set(vault);
    }
}

#[async_trait]
impl SecretSource for LateVault {
    async fn read(&self, names: &[SecretName]) -> Result<Vec<SecretValue>, SecretError> {
        match self.0.get() {
            Some(v) => v.read(names).await,
            None => Err(SecretError::Key("the secret store is not open yet".into())),
        }
    }
}

#[async_trait]
impl RegistryAuth for LateVault {
    async fn credentials(&self, registry: &RegistryHost) -> Result<Option<RegistryCredentials>, SecretError> {
        match self.0.get() {
            Some(v) => v.credentials(registry).await,
            None => Err(SecretError::Key("the secret store is not open yet".into())),
        }
    }
}

/// Where the runtimes write the secret files of instances: a tmpfs when the
/// host has one (`/dev/shm`, directly, where its sticky bit keeps others from
/// replacing the directory), so plaintext never reaches a disk; else the data
/// directory. Nothing is created until a function with secrets starts.
pub(crate) fn files(platform_id: &str, data_dir: &Path, late: &Arc<LateVault>) -> SecretFiles {
    let source = Arc::clone(late) as Arc<dyn SecretSource>;
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        shm.join(format!("pilotlight-{platform_id}-secrets"))
    } else {
        data_dir.join("run").join("secrets")
    };
    SecretFiles::new(source, root)
}

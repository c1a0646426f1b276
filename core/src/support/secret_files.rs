//! A function's secrets written out as files for its instances, the way both
//! runtimes hand them over: a directory per function generation (a bind mount
//! at `/run/secrets` for a container, `PILOTLIGHT_SECRETS_DIR` for a process).
//!
//! The root is private to the platform's user (0700), so nobody else on the
//! host reaches the files; inside it each generation's directory (0755) and
//! its files (0444) are readable by whatever user the function's image runs
//! as. Files are written to a temporary name and renamed, so an instance
//! never reads half a value. Put the root on a tmpfs (the server uses
//! `/dev/shm` when it can), so values never reach a disk.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::model::{FunctionName, SecretName};
use crate::ports::{RuntimeError, SecretError, SecretSource};

/// Writes secrets' files for a runtime; see the module docs.
#[derive(Clone)]
pub struct SecretFiles {
    source: Arc<dyn SecretSource>,
    root: PathBuf,
    /// Scopes with a start in progress, and how many: never pruned.
    busy: Arc<Mutex<HashMap<String, usize>>>,
}

/// A scope's directory, kept from pruning while this lives: hold it until
/// the instance is started (and so shows in the runtime's list) or removed.
#[derive(Debug)]
pub struct SecretDir {
    path: PathBuf,
    scope: String,
    busy: Arc<Mutex<HashMap<String, usize>>>,
}

impl SecretDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let mut busy = self.busy.lock();
        if let Some(n) = busy.get_mut(&self.scope) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.scope);
            }
        }
    }
}

/// How young a directory with no instance may be and still stay: a list of
/// instances read just before a start finished does not show it yet.
const PRUNE_MIN_AGE: Duration = Duration::from_secs(10);

impl std::fmt::Debug for SecretFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretFiles({})", self.root.display())
    }
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let text = format!("cannot {what} {}", path.display());
    move |e| RuntimeError::Backend { source: format!("{text}: {e}").into(), retryable: true }
}

impl SecretFiles {
    /// Files under `root`, values from `source`. Nothing is created until
    /// the first [`write`](Self::write): then `root` is made (mode 0700), and
    /// must be a directory of this user's own.
    pub fn new(source: Arc<dyn SecretSource>, root: impl Into<PathBuf>) -> Self {
        Self { source, root: root.into(), busy: Arc::default() }
    }

    fn ensure_root(&self) -> Result<(), RuntimeError> {
        let root = &self.root;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(io("create", root))?;
        // In a shared place like /dev/shm the root must be this user's own
        // directory, not a link or a directory someone else made first.
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(root).map_err(io("inspect", root))?;
        if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(RuntimeError::InvalidInput {
                field: "secrets_dir".into(),
                message: format!("{} is not a directory of this user's own; remove it", root.display()),
            });
        }
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(io("protect", root))
    }

    /// Where the directories are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory name of one function generation (both parts are validated names).
    pub fn scope(function: &FunctionName, generation: u64) -> String {
        format!("{function}.g{generation}")
    }

    /// Writes `names`' current values into the directory of `scope` (removing
    /// files of secrets no longer listed) and returns the directory, kept
    /// from [`prune`](Self::prune) while the returned value lives.
    pub async fn write(&self, scope: &str, names: &[SecretName]) -> Result<SecretDir, RuntimeError> {
        *self.busy.lock().entry(scope.to_owned()).or_default() += 1;
        let lease = SecretDir { path: self.root.join(scope), scope: scope.to_owned(), busy: Arc::clone(&self.busy) };
        let values = self.source.read(names).await.map_err(|e| match e {
            SecretError::NotFound(_) | SecretError::Undecryptable(_) => {
                RuntimeError::InvalidInput { field: "secrets".into(), message: e.to_string() }
            }
            other => {
                let retryable = other.is_retryable();
                RuntimeError::Backend { source: Box::new(other), retryable }
            }
        })?;
        self.ensure_root()?;
        let dir = self.root.join(scope);
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(&dir).map_err(io("create", &dir))?;
        for value in &values {
            let file = dir.join(value.name.as_str());
            let tmp = dir.join(format!(".{}.tmp", value.name));
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            f.write_all(&value.bytes).and_then(|()| f.sync_all()).map_err(io("write", &tmp))?;
            std::fs::rename(&tmp, &file).map_err(io("rename", &file))?;
        }
        let wanted: HashSet<&str> = names.iter().map(SecretName::as_str).collect();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !name.to_str().is_some_and(|n| wanted.contains(n)) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(lease)
    }

    /// Whether `path` is one of this root's directories (a bind mount found on
    /// a container, before it is written again).
    pub fn owns(&self, path: &Path) -> Option<String> {
        let scope = path.strip_prefix(&self.root).ok()?.to_str()?;
        (!scope.is_empty() && !scope.contains('/') && !scope.starts_with('.')).then(|| scope.to_owned())
    }

    /// Removes the directories whose scope `live` rejects (no instance of
    /// that generation is left), but not those of a start in progress nor
    /// those written in the last few seconds; then the root, once empty.
    pub fn prune(&self, live: impl Fn(&str) -> bool) {
        self.prune_older(live, PRUNE_MIN_AGE);
    }

    fn prune_older(&self, live: impl Fn(&str) -> bool, min_age: Duration) {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for entry in entries.flatten() {
            let Some(scope) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if live(&scope) || self.busy.lock().contains_key(&scope) || old.is_none_or(|age| age < min_age) {
                continue;
            }
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::debug!(scope, "removed the secret files of a generation with no instance left"),
                Err(e) => tracing::warn!(scope, error = %e, "cannot remove old secret files"),
            }
        }
        // Fails (and stays) while anything is left in it.
        let _ = std::fs::remove_dir(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{MockSecretSource, SecretValue};

    #[tokio::test]
    async fn files_are_written_private_to_the_platform_and_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("pl-secret-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut source = MockSecretSource::new();
        let mut round = 0;
        source.expect_read().returning(move |names| {
            round += 1;
            Ok(names
                .iter()
                .map(|n| SecretValue { name: n.clone(), bytes: format!("{n}-{round}").into_bytes().into() })
                .collect())
        });
        let files = SecretFiles::new(Arc::new(source), &dir);
        let a = SecretName::new("a").unwrap();
        let b = SecretName::new("b").unwrap();
        let scope = SecretFiles::scope(&FunctionName::new("f").unwrap(), 3);
        let lease = files.write(&scope, &[a.clone(), b.clone()]).await.unwrap();
        let at = lease.path().to_path_buf();
        assert_eq!(std::fs::read_to_string(at.join("a")).unwrap(), "a-1");
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(at.join("b")).unwrap().permissions().mode() & 0o777, 0o444);
        files.write(&scope, std::slice::from_ref(&a)).await.unwrap();
        assert_eq!(std::fs::read_to_string(at.join("a")).unwrap(), "a-2");
        assert!(!at.join("b").exists(), "a secret no longer listed is removed");
        assert_eq!(files.owns(&at).as_deref(), Some("f.g3"));
        assert_eq!(files.owns(Path::new("/etc")), None);
        files.prune_older(|s| s == "f.g3", Duration::ZERO);
        assert!(at.exists());
        files.prune_older(|_| false, Duration::ZERO);
        assert!(at.exists(), "a start in progress keeps its directory");
        drop(lease);
        files.prune(|_| false);
        assert!(at.exists(), "young directories stay");
        files.prune_older(|_| false, Duration::ZERO);
        assert!(!at.exists() && !dir.exists(), "the directory, then the empty root, go");
    }
}

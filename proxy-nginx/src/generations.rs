//! Generations of the configuration on disk: `gen-N/` directories and the
//! `current` symlink, switched by an atomic rename.

use std::path::{Path, PathBuf};

use crate::error::NginxError;
use crate::render::Rendered;

/// The link NGINX reads its configuration through.
pub const CURRENT: &str = "current";
const PREFIX: &str = "gen-";

pub(crate) struct Generations {
    root: PathBuf,
}

impl Generations {
    /// Opens (creating) `root`.
    pub(crate) fn open(root: &Path) -> Result<Self, NginxError> {
        std::fs::create_dir_all(root).map_err(|e| NginxError::io(format!("create {}", root.display()), e))?;
        Ok(Self { root: root.to_owned() })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn dir(&self, generation: u64) -> PathBuf {
        self.root.join(format!("{PREFIX}{generation:010}"))
    }

    /// Every generation directory on disk, oldest first.
    fn all(&self) -> Vec<u64> {
        let mut out: Vec<u64> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix(PREFIX)?.parse().ok())
            .collect();
        out.sort_unstable();
        out
    }

    /// The number after every generation on disk, so a restarted router
    /// never reuses one (the status location would then prove nothing).
    pub(crate) fn next_after_disk(&self) -> u64 {
        self.all().last().map_or(1, |g| g + 1)
    }

    /// The generation `current` points at.
    pub(crate) fn current(&self) -> Option<u64> {
        let target = std::fs::read_link(self.root.join(CURRENT)).ok()?;
        target.file_name()?.to_str()?.strip_prefix(PREFIX)?.parse().ok()
    }

    /// Writes one generation's files into a fresh directory.
    pub(crate) fn write(&self, generation: u64, files: &Rendered) -> Result<PathBuf, NginxError> {
        let dir = self.dir(generation);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| NginxError::io(format!("remove {}", dir.display()), e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| NginxError::io(format!("create {}", dir.display()), e))?;
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| NginxError::io(format!("write {}", p.display()), e))?;
        }
        Ok(dir)
    }

    /// Points `current` at `generation` in one rename: NGINX never sees a
    /// half-switched configuration.
    pub(crate) fn switch(&self, generation: u64) -> Result<(), NginxError> {
        let tmp = self.root.join(format!(".{CURRENT}.{generation}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let target = PathBuf::from(format!("{PREFIX}{generation:010}"));
        std::os::unix::fs::symlink(&target, &tmp).map_err(|e| NginxError::io(format!("link {}", tmp.display()), e))?;
        std::fs::rename(&tmp, self.root.join(CURRENT))
            .map_err(|e| NginxError::io(format!("switch {}", self.root.join(CURRENT).display()), e))
    }

    /// Removes a generation that was never served.
    pub(crate) fn discard(&self, generation: u64) {
        let _ = std::fs::remove_dir_all(self.dir(generation));
    }

    /// Keeps the current generation and the `keep` newest others.
    pub(crate) fn prune(&self, keep: usize) {
        let current = self.current();
        let others: Vec<u64> = self.all().into_iter().filter(|g| Some(*g) != current).collect();
        let drop = others.len().saturating_sub(keep);
        for g in &others[..drop] {
            self.discard(*g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_prune_and_numbering() {
        let tmp = tempfile::tempdir().unwrap();
        let g = Generations::open(tmp.path()).unwrap();
        assert_eq!(g.next_after_disk(), 1);
        assert_eq!(g.current(), None);
        for n in 1..=6 {
            g.write(n, &vec![("pilotlight.conf", format!("# {n}"))]).unwrap();
        }
        g.switch(3).unwrap();
        assert_eq!(g.current(), Some(3));
        assert_eq!(std::fs::read_to_string(tmp.path().join("current/pilotlight.conf")).unwrap(), "# 3");
        g.switch(6).unwrap();
        assert_eq!(g.current(), Some(6));
        g.prune(2);
        assert_eq!(g.all(), vec![4, 5, 6]);
        assert_eq!(g.next_after_disk(), 7);
        // A reopened router continues the count.
        assert_eq!(Generations::open(tmp.path()).unwrap().next_after_disk(), 7);
    }
}

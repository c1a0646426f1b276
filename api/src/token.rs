//! The API's bearer token: made on first start, kept in `<data-dir>/api-token` (mode 0600).

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file name of the token inside the data directory.
pub const TOKEN_FILE: &str = "api-token";

/// A bearer token. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

/// Why the token could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Reading or writing the file failed.
    #[error("api token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but holds no usable token.
    #[error("api token file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The rule.
        message: String,
    },
    /// The operating system gave no randomness.
    #[error("no randomness for the api token: {0}")]
    Random(String),
}

impl ApiToken {
    /// Wraps a token given by the operator (at least 16 printable ASCII characters, no spaces).
    pub fn new(token: impl Into<String>) -> Result<Self, String> {
        let token = token.into();
        if token.len() < 16 || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be 16 to 256 printable ASCII characters without spaces".into());
        }
        Ok(Self(token))
    }

    /// A new random token: 32 bytes from the OS, hex-encoded, prefixed `pl_`.
    pub fn generate() -> Result<Self, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self(format!("pl_{hex}")))
    }

    /// Reads `<dir>/api-token`, or makes one there (mode 0600) when there is
    /// none. The flag says whether it was made now, so the caller prints it once.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), TokenError> {
        let path = dir.join(TOKEN_FILE);
        let io = |source| TokenError::Io { path: path.clone(), source };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the api token file is readable by others; chmod 600 it");
                }
                let token =
                    Self::new(text.trim()).map_err(|message| TokenError::Invalid { path: path.clone(), message })?;
                Ok((token, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let token = Self::generate()?;
                // create_new: two servers starting at once never overwrite each other's token.
                let mut file =
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
                file.write_all(format!("{}\n", token.0).as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok((token, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The token itself, to print once or to send.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Compares in time that does not depend on where the first difference is.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_with_mode_0600_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (made, created) = ApiToken::load_or_create(dir.path()).unwrap();
        assert!(created);
        assert!(made.reveal().starts_with("pl_") && made.reveal().len() == 67);
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (read, created) = ApiToken::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(read, made);
        assert!(!format!("{made:?}").contains(made.reveal()));
    }

    #[test]
    fn matching_is_exact() {
        let t = ApiToken::new("0123456789abcdef").unwrap();
        assert!(t.matches("0123456789abcdef"));
        for wrong in ["", "0123456789abcde", "0123456789abcdef0", "1123456789abcdef", "0123456789abcdeF"] {
            assert!(!t.matches(wrong), "{wrong}");
        }
        assert!(ApiToken::new("short").is_err());
        assert!(ApiToken::new("has a space in it!!").is_err());
    }

    #[test]
    fn a_broken_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKEN_FILE), "x\n").unwrap();
        let err = ApiToken::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("api-token") && err.contains("16 to 256"), "{err}");
    }
}

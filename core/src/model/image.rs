use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::validation::{ValidationError, shown};

/// An image reference as Docker parses it: `[registry[:port]/]repository[:tag][@sha256:<64 hex>]`.
///
/// The grammar is the one of the distribution `reference` package: path
/// components are lower-case alphanumerics joined by `.`, `_`, `__` or runs of
/// `-`; a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; the first component is a
/// registry when it has a `.` or `:` or is `localhost`. Only `sha256` digests are
/// accepted. The whole name is at most 255 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    registry: Option<String>,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

const FIELD: &str = "image";

impl ImageRef {
    /// Parses and validates a reference, reporting errors against the field `image`.
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        Self::parse_field(FIELD, value)
    }

    /// Parses and validates a reference, reporting errors against `field`.
    pub fn parse_field(field: &str, value: &str) -> Result<Self, ValidationError> {
        let bad = |rule: &str| ValidationError::new(field, format!("{rule} (got {})", shown(value)));
        if value.is_empty() {
            return Err(bad("must not be empty"));
        }
        let (rest, digest) = match value.split_once('@') {
            Some((rest, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("digest must be sha256:<64 lower-case hex digits>"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return Err(bad("digest must be sha256:<64 lower-case hex digits>"));
                }
                (rest, Some(digest.to_owned()))
            }
            None => (value, None),
        };
        // A tag follows the last ':' that comes after the last '/'; an earlier ':' is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !ok {
                return Err(bad(
                    "tag must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '.', '-', not starting with '.' or '-'",
                ));
            }
        }
        if name.is_empty() || name.len() > 255 {
            return Err(bad("repository name must be 1 to 255 characters"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                if !is_registry(first) {
                    return Err(bad("registry must be a host name with an optional :port"));
                }
                (Some(first.to_owned()), path)
            }
            _ => (None, name),
        };
        if !repository.split('/').all(is_path_component) {
            return Err(bad(
                "repository must be '/'-separated components of a-z and 0-9, joined inside by '.', '_', '__' or '-'",
            ));
        }
        Ok(Self { registry, repository: repository.to_owned(), tag: tag.map(str::to_owned), digest })
    }

    /// The registry host (and port), if the reference names one.
    pub fn registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }
    /// The repository path, e.g. `library/nginx` or `pilotlight/hello`.
    pub fn repository(&self) -> &str {
        &self.repository
    }
    /// The tag, if any. Docker assumes `latest` when there is neither tag nor digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The `sha256:…` digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

/// A registry's address as image references name it: `host[:port]`
/// (`registry.example.com`, `127.0.0.1:5000`), at most 255 characters.
/// Credentials are kept per registry under this name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistryHost(String);

impl RegistryHost {
    /// Validates `value`, reporting errors against `field`.
    pub fn parse_field(field: &str, value: &str) -> Result<Self, ValidationError> {
        if value.len() <= 255 && is_registry(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "must be a registry host with an optional port, like registry.example.com or 127.0.0.1:5000 (got {})",
                    super::validation::shown(value)
                ),
            ))
        }
    }
    /// The host and port.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RegistryHost {
    type Error = ValidationError;
    fn try_from(v: String) -> Result<Self, Self::Error> {
        Self::parse_field("registry", &v)
    }
}

impl From<RegistryHost> for String {
    fn from(v: RegistryHost) -> String {
        v.0
    }
}

fn is_registry(host_port: &str) -> bool {
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host_port, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator: find its full run and check it is one of the allowed shapes.
        let start = i;
        while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ImageRef {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<ImageRef> for String {
    fn from(v: ImageRef) -> String {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_references() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for ok in [
            "hello".to_owned(),
            "pilotlight/hello:latest".to_owned(),
            "localhost:5000/team/app:v1.2_3".to_owned(),
            "registry.example.com/a/b/c".to_owned(),
            "my-registry:443/x__y/z.w-q".to_owned(),
            format!("app@{digest}"),
            format!("app:1@{digest}"),
        ] {
            let r = ImageRef::new(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(r.to_string(), ok);
        }
        let r = ImageRef::new("localhost:5000/team/app:v1").unwrap();
        assert_eq!((r.registry(), r.repository(), r.tag()), (Some("localhost:5000"), "team/app", Some("v1")));
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for bad in [
            "",
            "Hello",
            "app:",
            "app:-x",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a_-b",
            "app@sha256:xyz",
            "app@md5:abc",
            "a b",
            "a;rm -rf",
            "app:tag\n",
            "-app",
            "app-",
        ] {
            let e = ImageRef::new(bad).unwrap_err();
            assert_eq!(e.field, "image", "{bad}");
        }
    }
}

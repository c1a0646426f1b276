use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::validation::{ValidationError, check_dns_label, shown};

/// Implements the string plumbing shared by the validated name types:
/// `Display`, `FromStr`, `TryFrom<String>`, `AsRef<str>` and `as_str`.
/// Each type supplies its own `parse(field, value)`.
macro_rules! string_newtype {
    ($ty:ident, $field:literal) => {
        impl $ty {
            /// Validates `value`, reporting errors against the default field name.
            pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
                let value = value.into();
                Self::check($field, &value)?;
                Ok(Self(value))
            }

            /// Validates `value`, reporting errors against `field`.
            pub fn parse_field(field: &str, value: impl Into<String>) -> Result<Self, ValidationError> {
                let value = value.into();
                Self::check(field, &value)?;
                Ok(Self(value))
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $ty {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = ValidationError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A function's name: one DNS label, so `<name>.<domain>` is a valid host name.
///
/// 1 to 63 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
/// Upper case is rejected rather than folded, so the name a user gave is the
/// name in the URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionName(String);

impl FunctionName {
    fn check(field: &str, value: &str) -> Result<(), ValidationError> {
        check_dns_label(field, value)
    }
}
string_newtype!(FunctionName, "name");

/// A node's id in a cluster, such as `node-1`: a DNS label, unique among
/// the nodes sharing a Store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    fn check(field: &str, value: &str) -> Result<(), ValidationError> {
        check_dns_label(field, value)
    }
}
string_newtype!(NodeId, "node_id");

/// A region a node serves, such as `local` or `eu-west-1`: a DNS label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    fn check(field: &str, value: &str) -> Result<(), ValidationError> {
        check_dns_label(field, value)
    }
}
string_newtype!(Region, "region");

/// The name of a secret: what a function lists in `secrets` and the file it
/// reads at `/run/secrets/<name>`.
///
/// 1 to 63 characters of `a-z`, `0-9`, `-`, `_` and `.`, starting and ending
/// with a letter or digit: a file name with no path in it (no `/`, never
/// `.` or `..`), and a key the Store and a URL path take as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretName(String);

impl SecretName {
    fn check(field: &str, value: &str) -> Result<(), ValidationError> {
        let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let bytes = value.as_bytes();
        let ok = (1..=63).contains(&bytes.len())
            && edge(bytes.first())
            && edge(bytes.last())
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(b));
        if ok {
            Ok(())
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "must be 1 to 63 characters of a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit (got {})",
                    shown(value)
                ),
            ))
        }
    }
}

string_newtype!(SecretName, "secret");

/// The domain functions are served under: `https://<name>.<domain>`.
///
/// Lower-case DNS labels joined by dots, at most 253 characters, no trailing
/// dot. `localhost` is valid (browsers resolve `*.localhost` to loopback).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl Domain {
    fn check(field: &str, value: &str) -> Result<(), ValidationError> {
        if value.is_empty() || value.len() > 253 {
            return Err(ValidationError::new(
                field,
                format!("must be a DNS name of 1 to 253 characters (got {})", shown(value)),
            ));
        }
        for label in value.split('.') {
            check_dns_label(field, label).map_err(|_| {
                ValidationError::new(
                    field,
                    format!(
                        "must be lower-case DNS labels (a-z, 0-9, '-', 1 to 63 characters each, \
                         not starting or ending with '-') joined by '.' (got {})",
                        shown(value)
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// The host name of a function under this domain.
    pub fn host_for(&self, name: &FunctionName) -> String {
        format!("{name}.{}", self.0)
    }
}
string_newtype!(Domain, "domain");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_label_rules() {
        for ok in ["a", "hello", "a-b", "x1", &"a".repeat(63)] {
            assert!(FunctionName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", "a b", "é", &"a".repeat(64)] {
            let err = FunctionName::new(bad).unwrap_err();
            assert_eq!(err.field, "name");
            assert!(err.message.contains("DNS label"), "{err}");
        }
    }

    #[test]
    fn secret_names_are_plain_file_names() {
        for ok in ["db-password", "a", "tls.key", "api_key2", &"a".repeat(63)] {
            assert!(SecretName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a.", "-a", "A", "a b", "é", &"a".repeat(64)] {
            let err = SecretName::new(bad).unwrap_err();
            assert_eq!(err.field, "secret", "{bad}");
        }
    }

    #[test]
    fn domains_are_dotted_labels() {
        for ok in ["localhost", "example.com", "fn.my-site.io"] {
            assert!(Domain::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "a..b", "a.", ".a", "Example.com", "a_b.com", "a;b", &"a.".repeat(130)] {
            assert_eq!(Domain::new(bad).unwrap_err().field, "domain", "{bad}");
        }
    }

    #[test]
    fn serde_revalidates() {
        let err = serde_json::from_str::<FunctionName>("\"Bad Name\"").unwrap_err();
        assert!(err.to_string().contains("DNS label"));
        let ok: FunctionName = serde_json::from_str("\"good\"").unwrap();
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"good\"");
    }
}

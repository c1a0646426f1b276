use serde::{Deserialize, Serialize};

/// A rejected input: which field, and the rule it broke.
///
/// `field` is a dotted path into the function spec (`name`, `env.FOO`,
/// `scaling.max`), so an API can point at the exact input that was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("invalid `{field}`: {message}")]
pub struct ValidationError {
    /// Dotted path of the offending field.
    pub field: String,
    /// The rule that was broken, phrased for a person.
    pub message: String,
}

impl ValidationError {
    /// Builds an error for `field` with the rule it broke.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// Prefixes the field path, e.g. `max` inside `scaling` becomes `scaling.max`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// Shows a user-supplied value inside an error message: escaped (so control
/// characters cannot forge log lines) and cut to a readable length.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 64;
    let mut cut: String = value.chars().take(MAX).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// Checks the rules of an RFC 1123 DNS label, lower case only: 1 to 63
/// characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
pub(crate) fn check_dns_label(field: &str, value: &str) -> Result<(), ValidationError> {
    const RULE: &str = "must be a DNS label: 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'";
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok { Ok(()) } else { Err(ValidationError::new(field, format!("{RULE} (got {})", shown(value)))) }
}

/// Checks an integer against an inclusive range and converts it.
pub(crate) fn check_range<T: TryFrom<i64>>(
    field: &str,
    value: i64,
    min: i64,
    max: i64,
    unit: &str,
) -> Result<T, ValidationError> {
    if value < min || value > max {
        return Err(ValidationError::new(field, format!("must be between {min} and {max}{unit} (got {value})")));
    }
    T::try_from(value).map_err(|_| ValidationError::new(field, format!("is out of range (got {value})")))
}

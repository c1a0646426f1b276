use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::validation::{ValidationError, shown};

/// At most this many variables per function.
pub const MAX_ENV_VARS: usize = 128;
/// A variable's name is at most this many bytes.
pub const MAX_ENV_NAME_BYTES: usize = 256;
/// A variable's value is at most this many bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 4096;
/// All names and values together are at most this many bytes.
pub const MAX_ENV_TOTAL_BYTES: usize = 64 * 1024;

/// A function's environment.
///
/// Names match `[A-Za-z_][A-Za-z0-9_]*`. Values are printable text: no NUL, no
/// line breaks, no other control characters (tab is allowed), so a value can
/// never end a line of a config file or an HTTP header. `PORT` and names that
/// start with `PILOTLIGHT_` are set by the platform and cannot be given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
pub struct EnvVars(BTreeMap<String, String>);

impl EnvVars {
    /// Validates every variable; errors name the field as `env.<NAME>`.
    pub fn new(vars: BTreeMap<String, String>) -> Result<Self, ValidationError> {
        if vars.len() > MAX_ENV_VARS {
            return Err(ValidationError::new(
                "env",
                format!("must have at most {MAX_ENV_VARS} variables (got {})", vars.len()),
            ));
        }
        let mut total = 0;
        for (name, value) in &vars {
            let field = format!("env.{}", name.chars().take(64).collect::<String>());
            check_name(&field, name)?;
            if value.len() > MAX_ENV_VALUE_BYTES {
                return Err(ValidationError::new(
                    field,
                    format!("value must be at most {MAX_ENV_VALUE_BYTES} bytes (got {})", value.len()),
                ));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(ValidationError::new(
                    field,
                    "value must not contain control characters (NUL, line breaks, escapes); tab is allowed",
                ));
            }
            total += name.len() + value.len();
        }
        if total > MAX_ENV_TOTAL_BYTES {
            return Err(ValidationError::new(
                "env",
                format!("names and values must total at most {MAX_ENV_TOTAL_BYTES} bytes (got {total})"),
            ));
        }
        Ok(Self(vars))
    }

    /// The variables, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of one variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// How many variables there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn check_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_ENV_NAME_BYTES
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(ValidationError::new(
            field,
            format!(
                "name must match [A-Za-z_][A-Za-z0-9_]* and be at most {MAX_ENV_NAME_BYTES} bytes (got {})",
                shown(name)
            ),
        ));
    }
    if name == "PORT" || name.starts_with("PILOTLIGHT_") {
        return Err(ValidationError::new(field, "is set by the platform (PORT and PILOTLIGHT_*) and cannot be given"));
    }
    Ok(())
}

impl TryFrom<BTreeMap<String, String>> for EnvVars {
    type Error = ValidationError;
    fn try_from(v: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<EnvVars> for BTreeMap<String, String> {
    fn from(v: EnvVars) -> Self {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(k: &str, v: &str) -> Result<EnvVars, ValidationError> {
        EnvVars::new(BTreeMap::from([(k.to_owned(), v.to_owned())]))
    }

    #[test]
    fn names_and_values() {
        assert!(one("_A1", "x y\tz;{}$\"'#").is_ok());
        assert_eq!(one("1A", "x").unwrap_err().field, "env.1A");
        assert_eq!(one("A-B", "x").unwrap_err().field, "env.A-B");
        assert!(one("A", "x\ny").unwrap_err().message.contains("control"));
        assert!(one("A", "x\u{0}").is_err());
        assert!(one("A", &"v".repeat(MAX_ENV_VALUE_BYTES + 1)).is_err());
        assert!(one("PORT", "1").unwrap_err().message.contains("set by the platform"));
        assert!(one("PILOTLIGHT_X", "1").is_err());
    }

    #[test]
    fn caps_count_and_total() {
        let many: BTreeMap<_, _> = (0..=MAX_ENV_VARS).map(|i| (format!("V{i}"), String::new())).collect();
        assert_eq!(EnvVars::new(many).unwrap_err().field, "env");
        let big: BTreeMap<_, _> = (0..20).map(|i| (format!("V{i}"), "x".repeat(MAX_ENV_VALUE_BYTES))).collect();
        assert!(EnvVars::new(big).unwrap_err().message.contains("total"));
    }
}

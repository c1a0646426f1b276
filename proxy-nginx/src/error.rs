use pilotlight_core::ports::RouterError;

/// What went wrong driving NGINX. Every variant that follows a switch says
/// that the previous configuration is still the one served.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NginxError {
    /// A setting is unusable (the field names which one).
    #[error("invalid `{field}`: {message}")]
    InvalidConfig {
        /// The setting.
        field: String,
        /// The rule it breaks.
        message: String,
    },
    /// A template could not be loaded or rendered.
    #[error("template `{template}`: {message}")]
    Template {
        /// Which template.
        template: String,
        /// Tera's explanation, with its causes.
        message: String,
    },
    /// `nginx -t` refused the rendered configuration; nothing was switched.
    #[error("nginx -t refused configuration generation {generation} (the previous one still serves): {message}")]
    Rejected {
        /// The refused generation.
        generation: u64,
        /// NGINX's own message.
        message: String,
    },
    /// The reload failed or the new generation never answered; the previous
    /// configuration was switched back.
    #[error("reload to configuration generation {generation} failed (switched back to the previous one): {message}")]
    Reload {
        /// The generation that did not take.
        generation: u64,
        /// What NGINX or the reload command said.
        message: String,
    },
    /// NGINX could not be started (managed mode).
    #[error("cannot start nginx: {0}")]
    Start(String),
    /// A file operation failed.
    #[error("{what}: {message}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The OS error.
        message: String,
    },
}

impl NginxError {
    pub(crate) fn io(what: impl Into<String>, e: std::io::Error) -> Self {
        NginxError::Io { what: what.into(), message: e.to_string() }
    }

    /// Whether trying the same apply again can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, NginxError::Reload { .. } | NginxError::Start(_) | NginxError::Io { .. })
    }
}

impl From<NginxError> for RouterError {
    fn from(e: NginxError) -> Self {
        match e {
            NginxError::InvalidConfig { field, message } => RouterError::InvalidInput { field, message },
            e @ (NginxError::Template { .. } | NginxError::Rejected { .. }) => RouterError::Rejected(e.to_string()),
            e @ (NginxError::Reload { .. } | NginxError::Start(_)) => RouterError::Unavailable(e.to_string()),
            e @ NginxError::Io { .. } => RouterError::Backend { source: Box::new(e), retryable: true },
        }
    }
}

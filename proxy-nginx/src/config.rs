//! What the NGINX router needs to know, and the checks that keep every value
//! that reaches a config file safe to paste into NGINX syntax.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pilotlight_core::model::Domain;

use crate::error::NginxError;

/// How pilotlight runs NGINX.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum NginxMode {
    /// pilotlight starts its own NGINX as the current user, from a main
    /// configuration it generates under [`NginxConfig::dir`]. A master left
    /// running by an earlier run is adopted (it keeps serving meanwhile).
    Managed {
        /// `worker_processes`; 0 means `auto` (one per core).
        worker_processes: u32,
        /// `worker_connections`.
        worker_connections: u32,
        /// Stop NGINX when the router is dropped (fast stop; [`crate::NginxRouter::shutdown`] is graceful).
        stop_on_drop: bool,
    },
    /// pilotlight drives an NGINX that is already installed. Its `http { }`
    /// block must contain `include <dir>/current/pilotlight.conf;`; after a
    /// switch pilotlight reloads it and waits for the new generation to answer.
    System {
        /// How to reload it.
        reload: SystemReload,
    },
}

/// How a system NGINX is told to load the new configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SystemReload {
    /// Run a command (no shell), e.g. `["nginx", "-s", "reload"]` or
    /// `["systemctl", "reload", "nginx"]`. `nginx -s reload` parses the whole
    /// configuration once more just to find the master, which doubles the
    /// time of a reload of a large table.
    Command(Vec<String>),
    /// Send SIGHUP to the master named by this pid file (e.g. `/run/nginx.pid`):
    /// the fastest way, and pilotlight can then also tell when the old workers
    /// stopped accepting. Needs permission to signal the master.
    Signal {
        /// The master's pid file.
        pid_file: PathBuf,
    },
}

/// HTTPS on the edge: one certificate (a wildcard for `*.<domain>`) for every function.
#[derive(Clone, Debug)]
pub struct HttpsConfig {
    /// The HTTPS listener.
    pub addr: SocketAddr,
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// Settings of an [`crate::NginxRouter`].
#[derive(Clone, Debug)]
pub struct NginxConfig {
    /// Functions are served at `<name>.<domain>`.
    pub domain: Domain,
    /// Where generations of the configuration live (`gen-N/`, and `current`,
    /// a symlink to the one being served). Managed mode also keeps the pid
    /// file, `error.log` and temp directories here.
    pub dir: PathBuf,
    /// Managed or system NGINX.
    pub mode: NginxMode,
    /// The HTTP listener of every function (and of the 404 default server).
    pub http_addr: SocketAddr,
    /// HTTPS, or `None` for HTTP only.
    pub https: Option<HttpsConfig>,
    /// A loopback listener where NGINX answers which generation it serves.
    pub status_addr: SocketAddr,
    /// Where a function with no ready instance is sent: the gateway's
    /// activator (its HTTP listener). `None`: such a function answers 503.
    pub activator: Option<SocketAddr>,
    /// A directory with your own `nginx.conf.tera` and/or `pilotlight.conf.tera`
    /// (and `test.conf.tera`); a file not there falls back to the built-in one.
    pub templates: Option<PathBuf>,
    /// Idle keep-alive connections each worker keeps per function.
    pub upstream_keepalive: u32,
    /// `client_max_body_size` in MiB for requests to functions (0: no limit).
    pub max_body_mib: u32,
    /// Generations kept on disk besides the current one (for inspection and rollback).
    pub keep_generations: usize,
    /// How long a reload may take until the new generation answers.
    pub confirm_timeout: Duration,
    /// The `nginx` binary.
    pub nginx_binary: PathBuf,
}

impl NginxConfig {
    /// A managed NGINX on loopback: HTTP on 127.0.0.1:8080, no HTTPS, status
    /// on 127.0.0.1:8079, configuration under `data_dir/nginx`.
    pub fn managed(domain: Domain, data_dir: impl AsRef<Path>) -> Self {
        Self::with_mode(
            domain,
            data_dir.as_ref().join("nginx"),
            NginxMode::Managed { worker_processes: 0, worker_connections: 4096, stop_on_drop: true },
        )
    }

    /// An installed NGINX reloaded with `nginx -s reload`, whose `http { }`
    /// includes `dir/current/pilotlight.conf`.
    pub fn system(domain: Domain, dir: impl Into<PathBuf>) -> Self {
        let mut c = Self::with_mode(
            domain,
            dir.into(),
            NginxMode::System { reload: SystemReload::Command(vec!["nginx".into(), "-s".into(), "reload".into()]) },
        );
        c.http_addr = SocketAddr::from(([0, 0, 0, 0], 80));
        c
    }

    fn with_mode(domain: Domain, dir: PathBuf, mode: NginxMode) -> Self {
        Self {
            domain,
            dir,
            mode,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https: None,
            status_addr: SocketAddr::from(([127, 0, 0, 1], 8079)),
            activator: None,
            templates: None,
            upstream_keepalive: 16,
            max_body_mib: 100,
            keep_generations: 4,
            confirm_timeout: Duration::from_secs(60),
            nginx_binary: PathBuf::from("nginx"),
        }
    }

    /// HTTPS on `addr` with this certificate and key.
    pub fn with_https(mut self, addr: SocketAddr, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.https = Some(HttpsConfig { addr, cert: cert.into(), key: key.into() });
        self
    }

    /// Checks every setting, naming the field and the rule on the first bad one.
    pub fn validate(&self) -> Result<(), NginxError> {
        safe_path("dir", &self.dir)?;
        safe_path("nginx_binary", &self.nginx_binary)?;
        if let Some(t) = &self.templates {
            safe_path("templates", t)?;
            if !t.is_dir() {
                return Err(invalid("templates", format!("`{}` is not a directory", t.display())));
            }
        }
        if let Some(h) = &self.https {
            for (field, p) in [("https.cert", &h.cert), ("https.key", &h.key)] {
                safe_path(field, p)?;
                if !p.is_absolute() {
                    return Err(invalid(field, format!("must be an absolute path (got `{}`)", p.display())));
                }
                if let Err(e) = std::fs::metadata(p) {
                    return Err(invalid(field, format!("cannot read `{}`: {e}", p.display())));
                }
            }
            if h.addr == self.http_addr {
                return Err(invalid("https.addr", format!("must differ from http_addr ({})", h.addr)));
            }
        }
        if !self.status_addr.ip().is_loopback() {
            return Err(invalid("status_addr", format!("must be a loopback address (got {})", self.status_addr)));
        }
        let mut listeners = vec![self.http_addr];
        listeners.extend(self.https.as_ref().map(|h| h.addr));
        if listeners.iter().any(|a| a.port() == self.status_addr.port() && same_host(*a, self.status_addr)) {
            return Err(invalid(
                "status_addr",
                format!("must differ from the edge's listeners ({})", self.status_addr),
            ));
        }
        if self.activator.is_some_and(|a| a == self.http_addr) {
            return Err(invalid("activator", "must not be NGINX's own HTTP listener (requests would loop)".into()));
        }
        if !(1..=4096).contains(&self.upstream_keepalive) {
            return Err(invalid("upstream_keepalive", format!("must be 1-4096 (got {})", self.upstream_keepalive)));
        }
        if self.keep_generations < 1 {
            return Err(invalid("keep_generations", "must be at least 1 (rollback needs the previous one)".into()));
        }
        if self.confirm_timeout < Duration::from_millis(100) {
            return Err(invalid(
                "confirm_timeout",
                format!("must be at least 100 ms (got {:?})", self.confirm_timeout),
            ));
        }
        match &self.mode {
            NginxMode::Managed { worker_connections, worker_processes, .. } => {
                if !(16..=1_000_000).contains(worker_connections) {
                    return Err(invalid(
                        "worker_connections",
                        format!("must be 16-1000000 (got {worker_connections})"),
                    ));
                }
                if *worker_processes > 1024 {
                    return Err(invalid(
                        "worker_processes",
                        format!("must be 0 (auto) to 1024 (got {worker_processes})"),
                    ));
                }
            }
            NginxMode::System { reload: SystemReload::Command(argv) } => {
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(invalid("reload", "must name a command, e.g. [\"nginx\", \"-s\", \"reload\"]".into()));
                }
            }
            NginxMode::System { reload: SystemReload::Signal { pid_file } } => {
                if !pid_file.is_absolute() {
                    return Err(invalid(
                        "reload.pid_file",
                        format!("must be an absolute path (got `{}`)", pid_file.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn same_host(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

fn invalid(field: &str, message: String) -> NginxError {
    NginxError::InvalidConfig { field: field.to_owned(), message }
}

/// Characters that may appear in a value pasted into NGINX syntax unquoted:
/// nothing that ends a directive (`;`), opens or closes a block (`{` `}`),
/// starts a comment (`#`), a variable (`$`), a quote, an escape or white space.
pub(crate) fn is_safe_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':' | '[' | ']' | '+' | '@' | ',')
        })
}

/// A path that can be written into a config file as it is.
pub(crate) fn safe_path(field: &str, p: &Path) -> Result<(), NginxError> {
    let Some(s) = p.to_str() else {
        return Err(invalid(field, format!("must be valid UTF-8 (got {})", p.display())));
    };
    if !is_safe_token(s) {
        return Err(invalid(
            field,
            format!(
                "must contain only letters, digits and . - _ / : + @ , (no spaces, quotes, `;`, `{{`, `}}`, `#` or `$`), got {s:?}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> NginxConfig {
        NginxConfig::managed(Domain::new("pilot.test").unwrap(), "/tmp/pl")
    }

    #[test]
    fn defaults_are_valid() {
        base().validate().unwrap();
        NginxConfig::system(Domain::new("pilot.test").unwrap(), "/etc/nginx/pilotlight").validate().unwrap();
    }

    #[test]
    fn hostile_paths_are_refused_with_the_field_named() {
        for bad in
            ["/tmp/a;b", "/tmp/a b", "/tmp/a}", "/tmp/a{", "/tmp/$x", "/tmp/'q'", "/tmp/\"q\"", "/tmp/a#b", "/tmp/a\nb"]
        {
            let mut c = base();
            c.dir = bad.into();
            let err = c.validate().unwrap_err();
            assert!(matches!(&err, NginxError::InvalidConfig { field, .. } if field == "dir"), "{bad:?}: {err}");
        }
        let mut c = base();
        c.https = Some(HttpsConfig { addr: ([127, 0, 0, 1], 8443).into(), cert: "/x;y".into(), key: "/k".into() });
        assert!(c.validate().unwrap_err().to_string().contains("https.cert"));
    }

    #[test]
    fn other_rules_name_their_field() {
        let mut c = base();
        c.status_addr = ([10, 0, 0, 1], 80).into();
        assert!(c.validate().unwrap_err().to_string().contains("status_addr"));
        let mut c = base();
        c.status_addr = c.http_addr;
        assert!(c.validate().unwrap_err().to_string().contains("status_addr"));
        let mut c = base();
        c.upstream_keepalive = 0;
        assert!(c.validate().unwrap_err().to_string().contains("upstream_keepalive"));
        let mut c = base();
        c.activator = Some(c.http_addr);
        assert!(c.validate().unwrap_err().to_string().contains("activator"));
        let mut c = NginxConfig::system(Domain::new("pilot.test").unwrap(), "/etc/nginx/pl");
        c.mode = NginxMode::System { reload: SystemReload::Command(vec![]) };
        assert!(c.validate().unwrap_err().to_string().contains("reload"));
        c.mode = NginxMode::System { reload: SystemReload::Signal { pid_file: "run/nginx.pid".into() } };
        assert!(c.validate().unwrap_err().to_string().contains("reload"));
        let mut c = base();
        c.https = Some(HttpsConfig { addr: c.http_addr, cert: "/nonexistent.pem".into(), key: "/k".into() });
        assert!(c.validate().unwrap_err().to_string().contains("https.cert"));
    }
}

//! Turning a [`RouteTable`] into NGINX configuration with tera.
//!
//! Every value in the template context is built here from validated types
//! (`FunctionName`, `Domain`, `SocketAddr`, numbers, paths checked by
//! [`NginxConfig::validate`]) and checked once more (`is_safe_token`)
//! before it is handed to tera, so a template cannot be made to print
//! anything that ends a directive or opens a block.

use std::path::{Path, PathBuf};

use pilotlight_core::model::{Route, RouteTable};
use serde::Serialize;
use tera::Tera;

use crate::config::{NginxConfig, NginxMode, is_safe_token};
use crate::error::NginxError;

/// The main configuration (managed mode only).
pub const MAIN_TEMPLATE: &str = "nginx.conf.tera";
/// The routes, included inside `http { }`.
pub const ROUTES_TEMPLATE: &str = "pilotlight.conf.tera";
/// The wrapper `nginx -t` checks the routes with in system mode.
pub const TEST_TEMPLATE: &str = "test.conf.tera";

const BUILTIN: [(&str, &str); 3] = [
    (MAIN_TEMPLATE, include_str!("../templates/nginx.conf.tera")),
    (ROUTES_TEMPLATE, include_str!("../templates/pilotlight.conf.tera")),
    (TEST_TEMPLATE, include_str!("../templates/test.conf.tera")),
];

/// The file names of one generation's directory.
pub const MAIN_FILE: &str = "nginx.conf";
/// See [`MAIN_FILE`].
pub const ROUTES_FILE: &str = "pilotlight.conf";
/// See [`MAIN_FILE`].
pub const TEST_FILE: &str = "test.conf";

#[derive(Serialize)]
struct Https {
    listen: String,
    cert: String,
    key: String,
}

#[derive(Serialize)]
struct Function {
    name: String,
    host: String,
    generation: u64,
    upstream: String,
    /// The instances, or the activator when there is none; empty: answer 503.
    targets: Vec<String>,
    timeout_ms: u64,
    connect_timeout_ms: u64,
}

#[derive(Serialize)]
struct Context {
    generation: u64,
    domain: String,
    root: String,
    dir: String,
    routes_file: String,
    http_listen: String,
    https: Option<Https>,
    status_listen: String,
    keepalive: u32,
    max_body: String,
    names_hash_max_size: usize,
    names_hash_bucket_size: usize,
    worker_processes: String,
    worker_connections: u32,
    functions: Vec<Function>,
}

/// The files of one generation: `(file name, contents)`.
pub type Rendered = Vec<(&'static str, String)>;

/// Loaded templates plus the settings that go into every rendering.
pub struct Renderer {
    tera: Tera,
    config: NginxConfig,
    root: PathBuf,
}

impl Renderer {
    /// Loads the built-in templates, then any of the same names from
    /// `config.templates`. A template that does not parse is an error naming it.
    pub fn new(config: &NginxConfig, root: &Path) -> Result<Self, NginxError> {
        let mut tera = Tera::default();
        tera.autoescape_on(Vec::new());
        for (name, builtin) in BUILTIN {
            let own = config.templates.as_ref().map(|d| d.join(name)).filter(|p| p.is_file());
            let source = match &own {
                Some(p) => {
                    std::fs::read_to_string(p).map_err(|e| NginxError::io(format!("read {}", p.display()), e))?
                }
                None => builtin.to_owned(),
            };
            tera.add_raw_template(name, &source).map_err(|e| NginxError::Template {
                template: own.map_or_else(|| name.to_owned(), |p| p.display().to_string()),
                message: chain(&e),
            })?;
        }
        Ok(Self { tera, config: config.clone(), root: root.to_owned() })
    }

    /// Renders generation `generation` of `table`, to be written into `dir`.
    pub fn render(&self, table: &RouteTable, generation: u64, dir: &Path) -> Result<Rendered, NginxError> {
        let ctx = self.context(table, generation, dir)?;
        let ctx = tera::Context::from_serialize(&ctx)
            .map_err(|e| NginxError::Template { template: "(context)".into(), message: chain(&e) })?;
        let mut files = Vec::with_capacity(2);
        let names: &[(&str, &'static str)] = match self.config.mode {
            NginxMode::Managed { .. } => &[(MAIN_TEMPLATE, MAIN_FILE), (ROUTES_TEMPLATE, ROUTES_FILE)],
            NginxMode::System { .. } => &[(TEST_TEMPLATE, TEST_FILE), (ROUTES_TEMPLATE, ROUTES_FILE)],
        };
        for (template, file) in names {
            let text = self
                .tera
                .render(template, &ctx)
                .map_err(|e| NginxError::Template { template: (*template).to_owned(), message: chain(&e) })?;
            files.push((*file, text));
        }
        Ok(files)
    }

    fn context(&self, table: &RouteTable, generation: u64, dir: &Path) -> Result<Context, NginxError> {
        let c = &self.config;
        let activator = c.activator.map(|a| a.to_string());
        let mut longest_host = 0;
        // NGINX connects from its own namespace only: an instance inside a
        // container's namespace (no published port) is out of its reach.
        if let Some((r, e)) =
            table.iter().find_map(|r| r.endpoints.iter().find(|e| e.netns().is_some()).map(|e| (r, e)))
        {
            return Err(NginxError::InvalidConfig {
                field: "endpoints".into(),
                message: format!(
                    "`{}` has an instance at {e}, inside a network namespace, which NGINX cannot reach; \
                     run the Docker runtime with published ports when NGINX is the edge",
                    r.name
                ),
            });
        }
        let functions = table
            .iter()
            .map(|r| {
                let f = function(r, &c.domain.host_for(&r.name), activator.as_deref());
                longest_host = longest_host.max(f.host.len());
                f
            })
            .collect::<Vec<_>>();
        let ctx = Context {
            generation,
            domain: c.domain.to_string(),
            root: path(&self.root),
            dir: path(dir),
            routes_file: path(&dir.join(ROUTES_FILE)),
            http_listen: c.http_addr.to_string(),
            https: c.https.as_ref().map(|h| Https {
                listen: h.addr.to_string(),
                cert: path(&h.cert),
                key: path(&h.key),
            }),
            status_listen: c.status_addr.to_string(),
            keepalive: c.upstream_keepalive,
            max_body: format!("{}m", c.max_body_mib),
            names_hash_max_size: (2 * functions.len()).next_power_of_two().max(512),
            // A bucket holds a name plus two pointers; NGINX wants a power of two.
            names_hash_bucket_size: (longest_host + 32).next_power_of_two().max(64),
            worker_processes: match c.mode {
                NginxMode::Managed { worker_processes: 0, .. } | NginxMode::System { .. } => "auto".into(),
                NginxMode::Managed { worker_processes: n, .. } => n.to_string(),
            },
            worker_connections: match c.mode {
                NginxMode::Managed { worker_connections, .. } => worker_connections,
                NginxMode::System { .. } => 1024,
            },
            functions,
        };
        check_context(&ctx)?;
        Ok(ctx)
    }
}

fn function(r: &Route, host: &str, activator: Option<&str>) -> Function {
    let mut targets: Vec<String> = r.endpoints.iter().map(|e| e.addr().to_string()).collect();
    if targets.is_empty() {
        targets.extend(activator.map(str::to_owned));
    }
    let timeout_ms = r.timeout_ms.max(1);
    Function {
        name: r.name.to_string(),
        host: host.to_owned(),
        generation: r.generation,
        upstream: upstream_name(r.name.as_str()),
        targets,
        timeout_ms,
        connect_timeout_ms: timeout_ms.min(5_000),
    }
}

/// `u<8 hex digits>-<name>`: NGINX looks upstreams up by name with a linear
/// scan while it parses (quadratic in the number of functions); a hash up
/// front makes two names differ at their first characters, which halved
/// `nginx -t` at 10,000 functions (2.2 s to 1.1 s, measured).
pub fn upstream_name(name: &str) -> String {
    // FNV-1a, 32 bits: stable across builds and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("u{h:08x}-{name}")
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The last line of defence: every string in the context must be a plain token.
fn check_context(ctx: &Context) -> Result<(), NginxError> {
    let mut values: Vec<(&str, &str)> = vec![
        ("domain", &ctx.domain),
        ("dir", &ctx.root),
        ("dir", &ctx.dir),
        ("dir", &ctx.routes_file),
        ("http_addr", &ctx.http_listen),
        ("status_addr", &ctx.status_listen),
    ];
    if let Some(h) = &ctx.https {
        values.extend([("https.addr", h.listen.as_str()), ("https.cert", &h.cert), ("https.key", &h.key)]);
    }
    for f in &ctx.functions {
        values.extend([("name", f.name.as_str()), ("host", &f.host), ("upstream", &f.upstream)]);
        values.extend(f.targets.iter().map(|t| ("endpoints", t.as_str())));
    }
    for (field, v) in values {
        if !is_safe_token(v) {
            return Err(NginxError::InvalidConfig {
                field: field.to_owned(),
                message: format!("{v:?} cannot be written into an NGINX configuration"),
            });
        }
    }
    Ok(())
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_names_are_stable_and_distinct() {
        assert_eq!(upstream_name("hello"), upstream_name("hello"));
        assert_ne!(upstream_name("fn1"), upstream_name("fn2"));
        assert!(upstream_name("hello").ends_with("-hello"));
        assert!(is_safe_token(&upstream_name("a-b-c")));
    }

    #[test]
    fn the_context_check_refuses_what_validated_types_never_produce() {
        let ctx = Context {
            generation: 1,
            domain: "pilot.test".into(),
            root: "/r".into(),
            dir: "/r/gen".into(),
            routes_file: "/r/gen/x".into(),
            http_listen: "127.0.0.1:80".into(),
            https: None,
            status_listen: "127.0.0.1:81".into(),
            keepalive: 1,
            max_body: "1m".into(),
            names_hash_max_size: 512,
            names_hash_bucket_size: 64,
            worker_processes: "auto".into(),
            worker_connections: 64,
            functions: vec![Function {
                name: "x; }".into(),
                host: "x.pilot.test".into(),
                generation: 1,
                upstream: "u".into(),
                targets: vec![],
                timeout_ms: 1,
                connect_timeout_ms: 1,
            }],
        };
        let err = check_context(&ctx).unwrap_err();
        assert!(err.to_string().contains("`name`"), "{err}");
    }
}

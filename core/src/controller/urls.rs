use crate::model::{Domain, FunctionName};

/// How a function's public URL is written: `<scheme>://<name>.<domain>[:<port>]/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrls {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The domain functions are served under.
    pub domain: Domain,
    /// The edge's port, when it is not the scheme's default.
    pub port: Option<u16>,
}

impl PublicUrls {
    /// `http://<name>.<domain>/` on the default port.
    pub fn http(domain: Domain) -> Self {
        Self { scheme: "http", domain, port: None }
    }

    /// The URL of one function.
    pub fn url_for(&self, name: &FunctionName) -> String {
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        match self.port {
            Some(p) if p != default_port => format!("{}://{}:{p}/", self.scheme, self.domain.host_for(name)),
            _ => format!("{}://{}/", self.scheme, self.domain.host_for(name)),
        }
    }
}

//! Asynchronous invocations: a request accepted now and delivered to its
//! function later, with every attempt recorded. What is stored is exactly
//! what will be replayed, so each part is checked here, when it is built and
//! when it is read back.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::names::FunctionName;
use super::validation::ValidationError;

/// Longest accepted request target (path and query).
pub const MAX_INVOCATION_PATH_BYTES: usize = 8 * 1024;
/// Most header lines kept with an invocation.
pub const MAX_INVOCATION_HEADERS: usize = 100;
/// Longest header value kept with an invocation.
pub const MAX_INVOCATION_HEADER_BYTES: usize = 8 * 1024;
/// Longest callback URL.
pub const MAX_CALLBACK_URL_BYTES: usize = 2 * 1024;

/// An invocation's id: `<function>.<12 hex digits of the creation time in ms><16 random hex digits>`.
/// It names its function (a function name has no dot), so one look-up finds
/// it, and ids of one function sort by creation time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InvocationId(String);

impl InvocationId {
    /// A new id for `function`, made at `now_ms`, with 64 random bits.
    pub fn generate(function: &FunctionName, now_ms: u64) -> Result<Self, ValidationError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random)
            .map_err(|e| ValidationError::new("id", format!("no randomness for an invocation id: {e}")))?;
        Ok(Self(format!("{function}.{:012x}{:016x}", now_ms & 0xffff_ffff_ffff, u64::from_be_bytes(random))))
    }

    /// The id of what a trigger fires for `function` at `at_ms`: the same
    /// inputs always give the same id, so a tick recorded twice (two
    /// schedulers, or one that crashed between recording and marking) is
    /// one invocation. `source` tells the function's triggers apart.
    pub fn for_trigger(function: &FunctionName, at_ms: u64, source: &str) -> Self {
        let hash = crate::support::stable_hash(source.as_bytes());
        Self(format!("{function}.{:012x}{hash:016x}", at_ms & 0xffff_ffff_ffff))
    }

    /// Checks an id given by a caller.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let rule = "an invocation id: <function>.<28 lowercase hex digits>";
        let (function, rest) = value.split_once('.').ok_or_else(|| ValidationError::new("id", rule))?;
        FunctionName::new(function).map_err(|_| ValidationError::new("id", rule))?;
        if rest.len() != 28 || !rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ValidationError::new("id", rule));
        }
        Ok(Self(value.to_owned()))
    }

    /// The function it invokes.
    pub fn function(&self) -> FunctionName {
        let name = self.0.split_once('.').map_or(self.0.as_str(), |(f, _)| f);
        FunctionName::new(name).unwrap_or_else(|_| unreachable!("an id is checked when it is made"))
    }

    /// When it was made, in ms since the epoch (the low 48 bits).
    pub fn created_ms(&self) -> u64 {
        self.0.split_once('.').and_then(|(_, r)| u64::from_str_radix(&r[..12], 16).ok()).unwrap_or(0)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for InvocationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for InvocationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The request to replay: method, target, the headers kept and the body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRequest", into = "RawRequest")]
pub struct InvocationRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct RawRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    /// Base64 (standard alphabet, padded).
    body: String,
}

impl TryFrom<RawRequest> for InvocationRequest {
    type Error = ValidationError;
    fn try_from(raw: RawRequest) -> Result<Self, ValidationError> {
        let body = base64::engine::general_purpose::STANDARD
            .decode(raw.body.as_bytes())
            .map_err(|e| ValidationError::new("request.body", format!("not base64: {e}")))?;
        Self::new(&raw.method, &raw.path, raw.headers, body)
    }
}

impl From<InvocationRequest> for RawRequest {
    fn from(r: InvocationRequest) -> Self {
        RawRequest {
            method: r.method,
            path: r.path,
            headers: r.headers,
            body: base64::engine::general_purpose::STANDARD.encode(&r.body),
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl InvocationRequest {
    /// Checks and builds a request: `method` an HTTP token of at most 32
    /// characters; `path` an origin-form target (starts with `/`, printable
    /// ASCII, at most 8 KiB); at most 100 headers, each a token name (kept
    /// lowercase) and a value of printable ASCII, spaces and tabs (no line
    /// breaks), at most 8 KiB.
    pub fn new(
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<Self, ValidationError> {
        if method.len() > 32 || !is_token(method) {
            return Err(ValidationError::new("request.method", format!("{method:?} is not an HTTP method token")));
        }
        if !path.starts_with('/')
            || path.len() > MAX_INVOCATION_PATH_BYTES
            || !path.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ValidationError::new(
                "request.path",
                format!(
                    "must start with `/`, be printable ASCII without spaces and at most {MAX_INVOCATION_PATH_BYTES} bytes"
                ),
            ));
        }
        if headers.len() > MAX_INVOCATION_HEADERS {
            return Err(ValidationError::new(
                "request.headers",
                format!("{} headers; at most {MAX_INVOCATION_HEADERS} are kept", headers.len()),
            ));
        }
        let mut kept = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            if !is_token(&name) {
                return Err(ValidationError::new("request.headers", format!("{name:?} is not a header name")));
            }
            if value.len() > MAX_INVOCATION_HEADER_BYTES
                || !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                return Err(ValidationError::new(
                    format!("request.headers.{name}"),
                    format!("a value is printable ASCII, spaces and tabs, at most {MAX_INVOCATION_HEADER_BYTES} bytes"),
                ));
            }
            kept.push((name.to_ascii_lowercase(), value));
        }
        Ok(Self { method: method.to_owned(), path: path.to_owned(), headers: kept, body })
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }
    /// The path and query.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The headers kept, names lowercase.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Where an invocation's outcome is POSTed: an `http` or `https` URL with a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CallbackUrl(String);

impl CallbackUrl {
    /// Checks a callback URL: `http://` or `https://`, a host, no user info,
    /// no spaces or control characters, at most 2 KiB.
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        let field = "callback_url";
        if value.len() > MAX_CALLBACK_URL_BYTES || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                field,
                format!("printable ASCII without spaces, at most {MAX_CALLBACK_URL_BYTES} bytes"),
            ));
        }
        if !matches_callback_grammar(value) {
            return Err(ValidationError::new(field, format!("must match {CALLBACK_URL_PATTERN}")));
        }
        let uri: http::Uri = value.parse().map_err(|e| ValidationError::new(field, format!("not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(ValidationError::new(field, "only http:// and https:// URLs are called back")),
        }
        let authority = uri.authority().ok_or_else(|| ValidationError::new(field, "the URL names no host"))?;
        if authority.as_str().contains('@') {
            return Err(ValidationError::new(field, "user info in a callback URL is not accepted"));
        }
        if authority.host().is_empty() {
            return Err(ValidationError::new(field, "the URL names no host"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The host it names, lowercase (for an allow-list).
    pub fn host(&self) -> String {
        self.0.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::to_ascii_lowercase)).unwrap_or_default()
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The grammar a callback URL must follow, as the API's schema states it:
/// `http` or `https`, a host name or a bracketed IPv6 address, a port up to
/// 65535, then a path and query of RFC 3986 characters (no fragment).
pub const CALLBACK_URL_PATTERN: &str = "^https?://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+)(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?][A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$";

/// [`CALLBACK_URL_PATTERN`], checked by hand (no regex engine in the core).
fn matches_callback_grammar(value: &str) -> bool {
    let Some(rest) = value.strip_prefix("http://").or_else(|| value.strip_prefix("https://")) else {
        return false;
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((inner, after)) => {
                let ok = !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                if !ok {
                    return false;
                }
                match after {
                    "" => ("[]", None),
                    p => match p.strip_prefix(':') {
                        Some(p) => ("[]", Some(p)),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let host_ok =
        host == "[]" || (!host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    // 0 to 65535, with leading zeros only in forms of at most 4 digits (as the pattern's alternatives).
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p.len() < 5 || (!p.starts_with('0') && p.parse::<u32>().is_ok_and(|n| n <= 65_535)))
    });
    let tail_ok = tail.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~!$&'()*+,;=:@%/?-".contains(&b));
    host_ok && port_ok && tail_ok
}

impl<'de> Deserialize<'de> for CallbackUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Where an invocation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationState {
    /// Accepted and waiting for its next attempt.
    Queued,
    /// An attempt is under way.
    Running,
    /// The function answered with a status that is not retried.
    Succeeded,
    /// The function's last answer was an error that is not retried.
    Failed,
    /// Every attempt failed: kept as a dead letter with the reason.
    Dead,
}

impl InvocationState {
    /// Whether nothing more will happen to it (unless a dead letter is retried).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Dead)
    }
}

/// What one attempt did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationAttempt {
    /// 1 for the first.
    pub number: u32,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// The function's status, when it answered.
    pub status: Option<u16>,
    /// Why it failed without an answer (connection refused, timeout).
    pub error: Option<String>,
}

/// The function's last answer, with its body capped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationResponse {
    /// Its status.
    pub status: u16,
    /// Its headers (names lowercase; values that are not text are left out).
    pub headers: Vec<(String, String)>,
    /// Its body, base64, at most the cap.
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    /// Whether the body was longer than the cap.
    pub truncated: bool,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// An asynchronous invocation as stored: what was asked, where it is, and
/// every attempt so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// Its id (which names the function).
    pub id: InvocationId,
    /// The request to replay.
    pub request: InvocationRequest,
    /// Where it is.
    pub state: InvocationState,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<InvocationAttempt>,
    /// When the next attempt is due (queued ones), ms since the epoch.
    pub next_attempt_ms: Option<u64>,
    /// The function's last answer.
    pub response: Option<InvocationResponse>,
    /// Why it failed or died, for a person.
    pub reason: Option<String>,
    /// Where the outcome is POSTed.
    pub callback_url: Option<CallbackUrl>,
    /// Where the outcome's delivery to `callback_url` stands; set when the
    /// invocation reaches a final state (absent on documents written before callbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackDelivery>,
    /// When it was accepted, ms since the epoch.
    pub created_ms: u64,
    /// When it reached a final state.
    pub finished_ms: Option<u64>,
    /// The Store's revision of this copy (not stored: the Store keeps it).
    #[serde(skip)]
    pub revision: u64,
}

impl Invocation {
    /// A queued invocation of `request`, due at once.
    pub fn queued(id: InvocationId, request: InvocationRequest, callback_url: Option<CallbackUrl>) -> Self {
        let created_ms = id.created_ms();
        Self {
            id,
            request,
            state: InvocationState::Queued,
            attempts: Vec::new(),
            next_attempt_ms: Some(created_ms),
            response: None,
            reason: None,
            callback_url,
            callback: None,
            created_ms,
            finished_ms: None,
            revision: 0,
        }
    }

    /// The function it invokes.
    pub fn function(&self) -> FunctionName {
        self.id.function()
    }
}

/// Where the delivery of an invocation's outcome to its callback URL stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackState {
    /// Not delivered yet; the next attempt is due at `next_attempt_ms`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed, or the receiver refused it (a 4xx); `reason` says which.
    Failed,
}

/// The callback of an invocation that reached a final state: its attempts,
/// and whether it is still to be delivered. Kept in the invocation's document,
/// so a delivery survives a crash like the invocation itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackDelivery {
    /// Where it stands.
    pub state: CallbackState,
    /// Every attempt so far (`status` is the receiver's answer).
    pub attempts: Vec<InvocationAttempt>,
    /// When the next attempt is due (while pending; during an attempt, when
    /// its claim runs out).
    pub next_attempt_ms: Option<u64>,
    /// Why it failed, when it did.
    pub reason: Option<String>,
}

impl CallbackDelivery {
    /// A delivery to be made now.
    pub fn pending(now_ms: u64) -> Self {
        Self { state: CallbackState::Pending, attempts: Vec::new(), next_attempt_ms: Some(now_ms), reason: None }
    }
}

/// Which hosts callbacks may be sent to. The platform calls whatever URL a
/// caller names, from inside the operator's network, so an operator can
/// narrow it: each entry is a host (`hooks.example.com`) or every subdomain
/// of one (`*.example.com`). Empty allows every host (the default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackHosts(Vec<String>);

impl CallbackHosts {
    /// Every host.
    pub fn any() -> Self {
        Self::default()
    }

    /// Parses entries such as `hooks.example.com`, `*.example.com` or
    /// `127.0.0.1`; `field` names the setting in errors.
    pub fn parse<'a>(field: &str, entries: impl IntoIterator<Item = &'a str>) -> Result<Self, ValidationError> {
        let mut kept = Vec::new();
        for entry in entries {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            let host = entry.strip_prefix("*.").unwrap_or(&entry);
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            let ipv6 = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
            if host.len() > 253 || !(ipv6 || host.split('.').all(label_ok)) {
                return Err(ValidationError::new(
                    field,
                    format!(
                        "{} is not a host: use `hooks.example.com`, `*.example.com`, an IP address or `[::1]`",
                        super::validation::shown(&entry)
                    ),
                ));
            }
            kept.push(entry);
        }
        Ok(Self(kept))
    }

    /// Whether it allows every host.
    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `url`'s host may be called.
    pub fn allows(&self, url: &CallbackUrl) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let host = url.host();
        self.0.iter().any(|entry| match entry.strip_prefix("*.") {
            Some(parent) => host.strip_suffix(parent).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => *entry == host,
        })
    }

    /// The entries, as configured.
    pub fn entries(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: &str) -> FunctionName {
        FunctionName::new(n).unwrap()
    }

    #[test]
    fn ids_name_their_function_sort_by_time_and_are_checked() {
        let a = InvocationId::generate(&f("hello"), 1_700_000_000_000).unwrap();
        let b = InvocationId::generate(&f("hello"), 1_700_000_000_001).unwrap();
        assert!(a < b);
        assert_eq!(a.function(), f("hello"));
        assert_eq!(a.created_ms(), 1_700_000_000_000);
        assert_eq!(InvocationId::parse(a.as_str()).unwrap(), a);
        for bad in ["hello", "hello.", "Hello.0123", "hello.0123456789abcdef0123456789AB", "../x.0", "a b.00"] {
            assert!(InvocationId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_request_is_checked_and_round_trips() {
        let r = InvocationRequest::new(
            "POST",
            "/hooks?x=1",
            vec![("Content-Type".into(), "application/json".into())],
            vec![0, 159, 255],
        )
        .unwrap();
        assert_eq!(r.headers()[0].0, "content-type", "names are kept lowercase");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<InvocationRequest>(&json).unwrap(), r);
        assert!(InvocationRequest::new("GET /", "/", vec![], vec![]).is_err(), "method");
        assert!(InvocationRequest::new("GET", "x", vec![], vec![]).is_err(), "origin form");
        assert!(InvocationRequest::new("GET", "/a b", vec![], vec![]).is_err(), "no spaces");
        let crlf = vec![("x-a".into(), "1\r\nx-b: 2".into())];
        assert!(InvocationRequest::new("GET", "/", crlf, vec![]).is_err(), "no line breaks in a value");
        let tampered = json.replace("/hooks?x=1", "hooks");
        assert!(serde_json::from_str::<InvocationRequest>(&tampered).is_err(), "checked when read back");
    }

    #[test]
    fn callback_hosts_allow_exact_hosts_and_subdomains() {
        let url = |u: &str| CallbackUrl::new(u).unwrap();
        assert!(CallbackHosts::any().allows(&url("http://anything.example:9/x")));
        let hosts =
            CallbackHosts::parse("callback_hosts", ["hooks.example.com", " *.corp.example ", "127.0.0.1", ""]).unwrap();
        assert_eq!(hosts.entries().len(), 3);
        assert!(hosts.allows(&url("https://hooks.example.com/a")));
        assert!(hosts.allows(&url("https://HOOKS.example.com/a")), "hosts are case-insensitive");
        assert!(hosts.allows(&url("http://a.b.corp.example:8080/")));
        assert!(hosts.allows(&url("http://127.0.0.1:9000/")));
        assert!(!hosts.allows(&url("http://corp.example/")), "a wildcard is for subdomains");
        assert!(!hosts.allows(&url("http://evilcorp.example/")));
        assert!(!hosts.allows(&url("http://hooks.example.com.evil/")));
        assert!(!hosts.allows(&url("http://127.0.0.2/")));
        for bad in ["http://x", "a b", "-a.example", "*.", "a..b"] {
            let e = CallbackHosts::parse("callback_hosts", [bad]).unwrap_err();
            assert_eq!(e.field, "callback_hosts", "{bad}");
        }
    }

    #[test]
    fn callback_urls_are_http_or_https_with_a_host() {
        assert_eq!(CallbackUrl::new("https://Hooks.example.com:8443/done?x=1").unwrap().host(), "hooks.example.com");
        assert!(CallbackUrl::new("http://127.0.0.1:9000/cb").is_ok());
        for bad in ["ftp://x/y", "file:///etc/passwd", "/relative", "http://", "http://user:pw@host/", "http://a b/"] {
            let e = CallbackUrl::new(bad).unwrap_err();
            assert_eq!(e.field, "callback_url", "{bad}");
        }
        // The grammar the API's schema states, at its edges; whatever it lets
        // through, the URL parser takes too.
        for ok in [
            "http://a",
            "http://[::1]:8080/x",
            "http://[.]",
            "https://h:0",
            "https://h:0065",
            "https://h:65535/",
            "http://h?q=1/%zz",
            "http://-./a:b@c;d=e,f*+()!$&'~",
        ] {
            assert!(CallbackUrl::new(ok).is_ok(), "{ok}");
            assert!(ok.parse::<http::Uri>().is_ok(), "{ok}");
        }
        for bad in [
            "https://h:65536",
            "https://h:00080",
            "http://h#frag",
            "http://h/<x>",
            "http://h/{x}",
            "http://h_x/",
            "HTTP://h/",
            "http://[]/",
            "http://[::1]x/",
            "http://h:/",
        ] {
            assert!(CallbackUrl::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_invocation_round_trips_through_json() {
        let id = InvocationId::generate(&f("hello"), 5).unwrap();
        let mut inv = Invocation::queued(
            id,
            InvocationRequest::new("GET", "/", vec![], vec![]).unwrap(),
            Some(CallbackUrl::new("http://127.0.0.1:1/cb").unwrap()),
        );
        inv.attempts.push(InvocationAttempt {
            number: 1,
            started_ms: 6,
            duration_ms: 2,
            status: Some(503),
            error: None,
        });
        inv.response =
            Some(InvocationResponse { status: 503, headers: vec![], body: b"busy".to_vec(), truncated: false });
        let back: Invocation = serde_json::from_slice(&serde_json::to_vec(&inv).unwrap()).unwrap();
        assert_eq!(back, inv);
        assert_eq!(back.function(), f("hello"));
        assert_eq!(back.next_attempt_ms, Some(5));
    }
}

//! `pilotlight`: the command-line client of a pilotlight server's API.
//!
//! ```sh
//! cargo run --example pilotlight -- deploy hello --image pilotlight/hello:latest --port 8080
//! cargo run --example pilotlight -- ls
//! ```
//!
//! It finds the server and the token in `PILOTLIGHT_URL`, `PILOTLIGHT_TOKEN`
//! (or `PILOTLIGHT_TOKEN_FILE`), `~/.config/pilotlight/client.json`, or else
//! `http://127.0.0.1:8090` and `./pilotlight-data/api-token`.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use pilotlight::FunctionSpecInput;
use pilotlight::api::client::{Client, ClientSettings};
use pilotlight::api::views::FunctionView;
use pilotlight::core::model::{ExecInput, InstanceState, LimitsInput, Phase, ScalingInput};

const USAGE: &str = "pilotlight: deploy and manage functions on a pilotlight server

Usage:
  pilotlight deploy NAME (--image IMAGE | --exec PROGRAM [--arg ARG]...) --port PORT [options]
  pilotlight deploy NAME (--build DIR | --image-archive FILE) --port PORT [options]
  pilotlight deploy --file SPEC.json
  pilotlight ls
  pilotlight get NAME [--json]
  pilotlight rm NAME [--wait]
  pilotlight logs NAME [-f] [--tail N]
  pilotlight open NAME
  pilotlight invoke NAME [--path /p] [--data TEXT | --data-file FILE] [--content-type T]
                         [--async [--callback URL] [--wait]]
  pilotlight invocations NAME [--state queued|running|succeeded|failed|dead] [--limit N]
  pilotlight dead-letters NAME [--retry | --retry-id ID]
  pilotlight publish TOPIC [--key K] [--data TEXT | --data-file FILE] [--content-type T]
  pilotlight secret set NAME [--from-file FILE]   (else the value is read from stdin)
  pilotlight secret ls
  pilotlight secret rm NAME
  pilotlight registry login HOST[:PORT] --username U   (the password is read from stdin)
  pilotlight registry ls
  pilotlight registry logout HOST[:PORT]

secret: a value a function reads as the file /run/secrets/NAME (deploy --secret NAME).
  It is kept encrypted and never shown again; setting it rolls the functions that use it.
registry: a login kept encrypted like a secret; pulls of that registry's images present it.

invoke: a POST to the function's URL through the edge, its answer on stdout; with
  --async it is kept and retried by the platform (--wait shows the outcome).

deploy --build DIR: DIR (with a Dockerfile, less what .dockerignore names) is sent to the
  server, built by its engine (the log shows as it runs), then deployed. --image-archive FILE:
  a `docker save` tar is loaded by the server's engine and its first image deployed.

deploy options:
  --env KEY=VALUE           (repeatable)
  --secret NAME             a secret the function reads at /run/secrets/NAME (repeatable)
  --region R  --timeout-s S  --health-path /healthz
  --memory-mb N  --cpu-millis N  --pids N
  --min N  --max N  --prewarm N  --precreate N  --target-concurrency N  --idle-timeout-s S
  --no-wait                 return once the server accepted the spec
  --wait-timeout S          how long to show progress [120]

Server and token: PILOTLIGHT_URL [http://127.0.0.1:8090], PILOTLIGHT_TOKEN or
PILOTLIGHT_TOKEN_FILE [./pilotlight-data/api-token], or ~/.config/pilotlight/client.json
({\"url\":..., \"token\":... or \"token_file\":...}); --url and --token override them.";

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A command line split into words and `--flag value` pairs (`-f` and boolean flags take no value).
struct Args {
    words: Vec<String>,
    flags: Vec<(String, String)>,
}

const BOOLEAN: &[&str] = &["json", "wait", "no-wait", "f", "follow", "help", "async", "retry"];

impl Args {
    fn parse(raw: Vec<String>) -> Result<Self, Error> {
        let (mut words, mut flags) = (Vec::new(), Vec::new());
        let mut it = raw.into_iter();
        while let Some(a) = it.next() {
            let name = a.strip_prefix("--").or_else(|| a.strip_prefix('-').filter(|n| n.len() == 1));
            match name {
                Some(n) => {
                    let (n, inline) = match n.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (n.to_owned(), None),
                    };
                    let value = if BOOLEAN.contains(&n.as_str()) {
                        inline.unwrap_or_else(|| "true".into())
                    } else {
                        inline.or_else(|| it.next()).ok_or_else(|| format!("--{n} needs a value"))?
                    };
                    flags.push((n, value));
                }
                None => words.push(a),
            }
        }
        Ok(Self { words, flags })
    }
    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.flags.iter().position(|(n, _)| n == name)?;
        Some(self.flags.remove(i).1)
    }
    fn take_all(&mut self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(v) = self.take(name) {
            out.push(v);
        }
        out
    }
    fn has(&mut self, name: &str) -> bool {
        self.take(name).is_some_and(|v| v != "false")
    }
    fn number(&mut self, name: &str) -> Result<Option<i64>, Error> {
        self.take(name)
            .map(|v| v.parse::<i64>().map_err(|_| format!("--{name} must be a number (got {v:?})").into()))
            .transpose()
    }
    fn done(&self) -> Result<(), Error> {
        match self.flags.first() {
            Some((n, _)) => Err(format!("unknown flag --{n} for this command; see --help").into()),
            None => Ok(()),
        }
    }
}

async fn run(raw: Vec<String>) -> Result<ExitCode, Error> {
    let mut args = Args::parse(raw)?;
    if args.has("help") || args.words.is_empty() {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut settings = ClientSettings::discover()?;
    if let Some(u) = args.take("url") {
        settings.url = Some(u);
    }
    if let Some(t) = args.take("token") {
        settings.token = Some(t);
    }
    let client = settings.client()?;
    let command = args.words.remove(0);
    let name = args.words.first().cloned();
    let need_name = || name.clone().ok_or_else(|| format!("`pilotlight {command}` needs a function name"));
    match command.as_str() {
        "deploy" => deploy(&client, name, &mut args).await,
        "ls" | "list" => {
            args.done()?;
            let functions = client.list().await?;
            print_table(&functions);
            Ok(ExitCode::SUCCESS)
        }
        "get" => {
            let name = need_name()?;
            let json = args.has("json");
            args.done()?;
            let f = client.get(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                print_function(&f);
            }
            Ok(ExitCode::SUCCESS)
        }
        "rm" | "delete" => {
            let name = need_name()?;
            let wait = args.has("wait");
            args.done()?;
            let mut events = if wait { Some(client.events().await?) } else { None };
            let r = client.delete(&name).await?;
            println!("deleting {} (generation {})", r.name, r.generation);
            if let Some(events) = events.as_mut() {
                while let Some(e) = tokio::time::timeout(Duration::from_secs(60), events.next()).await? {
                    let e = e?;
                    if e.name == name && e.phase == Phase::Deleted {
                        println!("deleted {name}");
                        break;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        "logs" => {
            let name = need_name()?;
            let follow = args.has("f") || args.has("follow");
            let tail = args.number("tail")?.unwrap_or(100);
            args.done()?;
            let tail = usize::try_from(tail).map_err(|_| "--tail must not be negative")?;
            let mut lines = client.logs(&name, follow, tail).await?;
            let mut out = std::io::stdout().lock();
            while let Some(line) = lines.next().await {
                let l = line?;
                let id: String = l.instance.chars().take(12).collect();
                writeln!(out, "{id} {}", l.line)?;
                out.flush()?;
            }
            Ok(ExitCode::SUCCESS)
        }
        "open" => {
            let name = need_name()?;
            args.done()?;
            let f = client.get(&name).await?;
            let url = f.url.ok_or("the function has no URL yet")?;
            println!("{url}");
            let opener = std::env::var("BROWSER").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "xdg-open".into());
            // The URL is the server's, built from a validated name and domain; it goes to the opener as one argument, no shell.
            match std::process::Command::new(&opener).arg(&url).status() {
                Ok(s) if s.success() => {}
                _ => eprintln!("(could not start `{opener}`; open the URL above yourself)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        "invoke" => invoke(&client, &need_name()?, &mut args).await,
        "invocations" => {
            let name = need_name()?;
            let state = args.take("state");
            let limit =
                usize::try_from(args.number("limit")?.unwrap_or(50)).map_err(|_| "--limit must not be negative")?;
            args.done()?;
            let page = client.invocations(&name, state.as_deref(), None, limit).await?;
            print_invocations(&page.invocations, "no invocations kept");
            Ok(ExitCode::SUCCESS)
        }
        "dead-letters" => {
            let name = need_name()?;
            let retry_all = args.has("retry");
            let retry_one = args.take("retry-id");
            args.done()?;
            if let Some(id) = retry_one {
                let r = client.retry_dead_letter(&id).await?;
                println!("queued {} again; its outcome: {}", r.id, r.status_url);
            } else if retry_all {
                let r = client.retry_dead_letters(&name).await?;
                println!("{} dead letter(s) of {name} queued again", r.requeued);
            } else {
                let page = client.dead_letters(&name, None, 500).await?;
                print_invocations(&page.invocations, "no dead letters");
            }
            Ok(ExitCode::SUCCESS)
        }
        "publish" => {
            let topic = need_name()?;
            let key = args.take("key");
            let body = body_of(&mut args)?;
            let content_type = args.take("content-type").unwrap_or_else(|| "application/octet-stream".into());
            args.done()?;
            let key = key.unwrap_or_else(|| format!("{:x}", now_ms()));
            let r = client.publish(&topic, &key, body, &content_type).await?;
            println!("published {} to {} (key {})", r.message_id, r.topic, r.key);
            Ok(ExitCode::SUCCESS)
        }
        "secret" => secret(&client, &mut args).await,
        "registry" => registry(&client, &mut args).await,
        other => Err(format!("unknown command `{other}`; see --help").into()),
    }
}

/// `pilotlight secret set|ls|rm`: a value goes in from a file or stdin, and is never printed.
async fn secret(client: &Client, args: &mut Args) -> Result<ExitCode, Error> {
    let action = args.words.first().cloned().unwrap_or_default();
    let name = || args.words.get(1).cloned().ok_or_else(|| format!("`pilotlight secret {action}` needs a secret name"));
    match action.as_str() {
        "set" => {
            let name = name()?;
            let from = args.take("from-file");
            args.done()?;
            let value = match from {
                Some(path) => std::fs::read(&path).map_err(|e| format!("--from-file {path}: {e}"))?,
                None => read_stdin(&format!("the value of {name}"))?,
            };
            let s = client.set_secret(&name, value).await?;
            let rolling =
                if s.used_by.is_empty() { String::new() } else { format!("; rolling {}", s.used_by.join(", ")) };
            println!("secret {} set ({} bytes){rolling}", s.name, s.size);
            Ok(ExitCode::SUCCESS)
        }
        "ls" | "list" => {
            args.done()?;
            let secrets = client.secrets().await?;
            if secrets.is_empty() {
                println!("no secrets");
            }
            for s in secrets {
                let used = if s.used_by.is_empty() { "-".to_owned() } else { s.used_by.join(",") };
                println!("{:<32} {:>7} bytes  updated {} ago  used by {used}", s.name, s.size, ago(s.updated_ms));
            }
            Ok(ExitCode::SUCCESS)
        }
        "rm" | "delete" => {
            let name = name()?;
            args.done()?;
            client.remove_secret(&name).await?;
            println!("secret {name} removed");
            Ok(ExitCode::SUCCESS)
        }
        "" => Err("`pilotlight secret` needs set, ls or rm; see --help".into()),
        other => Err(format!("unknown `pilotlight secret {other}`: use set, ls or rm").into()),
    }
}

async fn deploy(client: &Client, name: Option<String>, args: &mut Args) -> Result<ExitCode, Error> {
    let spec: serde_json::Value = match args.take("file") {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?
        }
        None => {
            let mut input = FunctionSpecInput { name: name.clone(), ..FunctionSpecInput::default() };
            input.image = args.take("image");
            let (build_dir, archive) = (args.take("build"), args.take("image-archive"));
            if build_dir.is_some() && archive.is_some() {
                return Err("give --build or --image-archive, not both".into());
            }
            if (build_dir.is_some() || archive.is_some())
                && (input.image.is_some() || args.flags.iter().any(|(n, _)| n == "exec"))
            {
                return Err("--image and --exec cannot go with --build or --image-archive".into());
            }
            if let Some(dir) = build_dir {
                input.image = Some(build(client, name.as_deref(), &dir).await?);
            } else if let Some(file) = archive {
                input.image = Some(load(client, &file).await?);
            }
            let args_list = args.take_all("arg");
            if let Some(program) = args.take("exec") {
                input.exec = Some(ExecInput { program, args: args_list });
            }
            input.port = args.number("port")?;
            input.region = args.take("region");
            input.timeout_s = args.number("timeout-s")?;
            input.health_path = args.take("health-path");
            let mut env = BTreeMap::new();
            for kv in args.take_all("env") {
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("--env wants KEY=VALUE (got {kv:?})"))?;
                env.insert(k.to_owned(), v.to_owned());
            }
            input.env = env;
            input.secrets = args.take_all("secret");
            let limits = LimitsInput {
                memory_mb: args.number("memory-mb")?,
                cpu_millis: args.number("cpu-millis")?,
                pids: args.number("pids")?,
                read_only_rootfs: None,
            };
            if limits != LimitsInput::default() {
                input.limits = Some(limits);
            }
            let scaling = ScalingInput {
                min: args.number("min")?,
                max: args.number("max")?,
                prewarm: args.number("prewarm")?,
                precreate: args.number("precreate")?,
                target_concurrency: args.number("target-concurrency")?,
                idle_timeout_s: args.number("idle-timeout-s")?,
            };
            if scaling != ScalingInput::default() {
                input.scaling = Some(scaling);
            }
            serde_json::to_value(&input)?
        }
    };
    let no_wait = args.has("no-wait");
    let wait = Duration::from_secs(args.number("wait-timeout")?.unwrap_or(120).max(1).unsigned_abs());
    args.done()?;
    // Listen before deploying, so no change is missed.
    let mut events = if no_wait { None } else { Some(client.events().await?) };
    let receipt_ms = now_ms();
    let receipt = client.deploy(&spec).await?;
    println!("accepted {} generation {} -> {}", receipt.name, receipt.generation, receipt.url);
    let Some(events) = events.as_mut() else { return Ok(ExitCode::SUCCESS) };
    let started = tokio::time::Instant::now();
    let mut last: Option<(Phase, Option<String>)> = None;
    // A pull sends no status events: its progress is read from the function's view meanwhile.
    let mut look = tokio::time::interval(Duration::from_millis(500));
    let mut pulled: Option<String> = None;
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout_at(started + wait, events.next()) => next,
            _ = look.tick() => {
                show_pull(client, &receipt.name, receipt_ms, started, &mut pulled).await;
                continue;
            }
        };
        let Ok(next) = next else {
            eprintln!("still not ready after {wait:?}; `pilotlight get {}` shows where it is", receipt.name);
            return Ok(ExitCode::FAILURE);
        };
        let Some(e) = next else { return Err("the server closed the event stream".into()) };
        let e = e?;
        if e.name != receipt.name || e.generation < receipt.generation {
            continue;
        }
        let now = (e.phase, e.message.clone());
        if last.as_ref() != Some(&now) {
            let secs = started.elapsed().as_secs_f64();
            let retry = match (e.attempts, e.next_retry_ms) {
                (0, _) | (_, None) => String::new(),
                (n, Some(at)) => format!(" (attempt {n}, next try {})", in_time(at)),
            };
            println!("  {secs:6.2}s  {:<9} {}{retry}", e.phase.as_str(), e.message.clone().unwrap_or_default());
            last = Some(now);
        }
        match e.phase {
            Phase::Ready if e.generation == receipt.generation => {
                show_pull(client, &receipt.name, receipt_ms, started, &mut pulled).await;
                println!("ready: {}", e.url.unwrap_or(receipt.url));
                return Ok(ExitCode::SUCCESS);
            }
            Phase::Failed if e.permanent => {
                eprintln!("failed: {}", e.message.unwrap_or_default());
                eprintln!(
                    "this will not go away by itself; pilotlight retries it every few minutes until it is fixed or deleted"
                );
                return Ok(ExitCode::FAILURE);
            }
            Phase::Deleted | Phase::Deleting => return Err("the function was deleted while deploying".into()),
            _ => {}
        }
    }
}

/// `--build DIR`: packs DIR (less .dockerignore's matches), has the server
/// build it and shows the build's output; the image reference built.
async fn build(client: &Client, name: Option<&str>, dir: &str) -> Result<String, Error> {
    let name = name.ok_or("`pilotlight deploy --build DIR` needs a function name")?;
    let root = std::path::Path::new(dir);
    if !root.join("Dockerfile").is_file() {
        return Err(format!("--build {dir}: no Dockerfile there").into());
    }
    let context = pack(root).map_err(|e| format!("--build {dir}: {e}"))?;
    // The tag follows the content, so a changed directory is a new image (and a rolling update).
    let hash = pilotlight::core::support::stable_hash(&context);
    let tag = format!("localhost/pilotlight-build/{name}:{hash:016x}");
    println!("building {tag} from {dir} ({:.1} MB sent)", context.len() as f64 / 1_000_000.0);
    let mut lines = client.build_image(&tag, context).await?;
    while let Some(line) = lines.next().await {
        let line = line?;
        if let Some(l) = line.log {
            println!("  build  {l}");
        }
        if let Some(e) = line.error {
            for l in line.last_lines {
                eprintln!("  | {l}");
            }
            return Err(e.into());
        }
        if let Some(image) = line.image {
            return Ok(image);
        }
    }
    Err("the server ended the build without saying how it went".into())
}

/// `--image-archive FILE`: has the server load a `docker save` archive; its first image.
async fn load(client: &Client, file: &str) -> Result<String, Error> {
    let archive = std::fs::read(file).map_err(|e| format!("--image-archive {file}: {e}"))?;
    println!("loading {file} ({:.1} MB)", archive.len() as f64 / 1_000_000.0);
    let loaded = client.load_images(archive).await?;
    println!("loaded {}", loaded.images.join(", "));
    loaded
        .images
        .into_iter()
        .find(|i| !i.starts_with("sha256:"))
        .ok_or_else(|| format!("--image-archive {file}: its images have no name (save them with a tag)").into())
}

/// A tar of `root`, leaving out what its `.dockerignore` names (the
/// engine's rules: `*` and `?` within a path segment, `**` across them, `!`
/// to take back; the last match wins; a directory takes what is under it).
fn pack(root: &std::path::Path) -> Result<Vec<u8>, Error> {
    let mut patterns: Vec<(bool, globset::GlobMatcher)> = Vec::new();
    let ignore_file = root.join(".dockerignore");
    let text = match std::fs::read_to_string(&ignore_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", ignore_file.display()).into()),
    };
    for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (exclude, pattern) = match line.strip_prefix('!') {
            Some(p) => (false, p.trim()),
            None => (true, line),
        };
        let pattern = pattern.trim_start_matches("./").trim_matches('/');
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| format!(".dockerignore line {n}: {e}"))?;
        patterns.push((exclude, glob.compile_matcher()));
    }
    let ignored = |rel: &str| {
        let mut out = false;
        for (exclude, glob) in &patterns {
            let mut prefix = String::new();
            for part in rel.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if glob.is_match(&prefix) {
                    out = *exclude;
                    break;
                }
            }
        }
        // The engine needs these two whatever the file says.
        out && rel != "Dockerfile" && rel != ".dockerignore"
    };
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let rel = path.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
            if ignored(&rel) {
                continue;
            }
            if entry.file_type()?.is_dir() {
                tar.append_dir(&rel, &path)?;
                stack.push(path);
            } else {
                tar.append_path_with_name(&path, &rel)?;
            }
        }
    }
    Ok(tar.into_inner()?)
}

/// Prints the progress of the function's image pull (one begun since the
/// deploy) when it changed since `shown`.
async fn show_pull(
    client: &Client,
    name: &str,
    since_ms: u64,
    started: tokio::time::Instant,
    shown: &mut Option<String>,
) {
    let Ok(f) = client.get(name).await else { return };
    // The server's clock against this one's: a pull that began before the
    // deploy (another function's, of the same image) is not this deploy's.
    let Some(p) = f.pull.filter(|p| p.started_ms >= since_ms) else { return };
    let line = match &p.error {
        Some(e) => format!("{} failed: {e}", p.summary()),
        None => p.summary(),
    };
    if shown.as_deref() != Some(line.as_str()) {
        println!("  {:6.2}s  {:<9} {line}", started.elapsed().as_secs_f64(), "pull");
        *shown = Some(line);
    }
}

/// `--data TEXT` or `--data-file FILE` (`-` for stdin); empty without either.
fn body_of(args: &mut Args) -> Result<Vec<u8>, Error> {
    match (args.take("data"), args.take("data-file")) {
        (Some(_), Some(_)) => Err("give --data or --data-file, not both".into()),
        (Some(d), None) => Ok(d.into_bytes()),
        (None, Some(f)) if f == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            Ok(buf)
        }
        (None, Some(f)) => std::fs::read(&f).map_err(|e| format!("--data-file {f}: {e}").into()),
        (None, None) => Ok(Vec::new()),
    }
}

async fn invoke(client: &Client, name: &str, args: &mut Args) -> Result<ExitCode, Error> {
    let path = args.take("path").unwrap_or_else(|| "/".into());
    let body = body_of(args)?;
    let content_type = args.take("content-type").unwrap_or_else(|| "application/octet-stream".into());
    let asynchronous = args.has("async");
    let callback = args.take("callback");
    let wait = args.has("wait");
    args.done()?;
    if !asynchronous {
        if callback.is_some() || wait {
            return Err("--callback and --wait go with --async".into());
        }
        let f = client.get(name).await?;
        let url = f.url.ok_or("the function has no URL yet")?;
        let (status, answer) = call_url(&url, &path, &body, &content_type).await?;
        std::io::stdout().write_all(&answer)?;
        eprintln!("(status {status})");
        return Ok(if status < 400 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let r = client.invoke(name, &path, body, &content_type, callback.as_deref()).await?;
    println!("accepted {} (outcome at {})", r.id, r.status_url);
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let i = client.invocation(&r.id).await?;
        if matches!(i.state.as_str(), "succeeded" | "failed" | "dead") {
            println!(
                "{}: {} after {} attempt(s){}",
                i.id,
                i.state,
                i.attempts.len(),
                i.reason.map(|r| format!(" ({r})")).unwrap_or_default()
            );
            if let Some(resp) = i.response {
                println!("status {}", resp.status);
                print!("{}", resp.body);
            }
            return Ok(if i.state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One HTTP/1.1 POST to a function's `http://` URL; `*.localhost` is 127.0.0.1.
async fn call_url(url: &str, path: &str, body: &[u8], content_type: &str) -> Result<(u16, Vec<u8>), Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or("the function's URL is https; call it with curl")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port in {url}"))?),
        None => (authority, 80),
    };
    if !path.starts_with('/') || path.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(format!("--path must start with / and have no spaces (got {path:?})").into());
    }
    if content_type.bytes().any(|b| b.is_ascii_control()) {
        return Err("--content-type must not hold control characters".into());
    }
    let target = if host == "localhost" || host.ends_with(".localhost") { "127.0.0.1" } else { host };
    let mut conn = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect((target, port)))
        .await
        .map_err(|_| format!("{url}: no connection within 10 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the function's answer is not HTTP")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("the function's answer has no status")?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let mut answer = raw[split + 4..].to_vec();
    if chunked {
        answer = dechunk(&answer);
    }
    Ok((status, answer))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

fn print_invocations(list: &[pilotlight::api::views::InvocationView], none: &str) {
    if list.is_empty() {
        println!("{none}");
        return;
    }
    let width = list.iter().map(|i| i.id.len()).max().unwrap_or(2);
    println!("{:<width$}  {:<9}  {:>8}  {:>6}  {:>6}  REASON", "ID", "STATE", "ATTEMPTS", "STATUS", "AGE");
    for i in list {
        println!(
            "{:<width$}  {:<9}  {:>8}  {:>6}  {:>6}  {}",
            i.id,
            i.state,
            i.attempts.len(),
            i.response.as_ref().map_or("-".to_owned(), |r| r.status.to_string()),
            ago(i.created_ms),
            i.reason.as_deref().unwrap_or("")
        );
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// "in 4s" for a time in milliseconds since the epoch.
fn in_time(at_ms: u64) -> String {
    format!("in {:.0}s", at_ms.saturating_sub(now_ms()) as f64 / 1000.0)
}

/// "12s" since a time in milliseconds since the epoch.
/// Reads a value from stdin (prompting on a terminal), for secrets and passwords.
fn read_stdin(what: &str) -> Result<Vec<u8>, Error> {
    use std::io::{IsTerminal, Read};
    if std::io::stdin().is_terminal() {
        eprintln!("type {what}, then Ctrl-D:");
    }
    let mut v = Vec::new();
    std::io::stdin().read_to_end(&mut v).map_err(|e| format!("reading {what} from stdin: {e}"))?;
    Ok(v)
}

/// `pilotlight registry login|ls|logout`: the password goes in from stdin and is never printed.
async fn registry(client: &Client, args: &mut Args) -> Result<ExitCode, Error> {
    let action = args.words.first().cloned().unwrap_or_default();
    let host = || args.words.get(1).cloned().ok_or_else(|| format!("`pilotlight registry {action}` needs HOST[:PORT]"));
    match action.as_str() {
        "login" => {
            let host = host()?;
            let username = args.take("username").ok_or("--username is required")?;
            args.done()?;
            let password = read_stdin("the password")?;
            let password = String::from_utf8(password).map_err(|_| "the password is not UTF-8")?;
            // One trailing line break (from `echo`, or a file) is not part of it.
            let password = password.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&password);
            let r = client.registry_login(&host, &username, password).await?;
            println!("login for {} kept (user {})", r.registry, r.username);
            Ok(ExitCode::SUCCESS)
        }
        "ls" | "list" => {
            args.done()?;
            let logins = client.registries().await?;
            if logins.is_empty() {
                println!("no registry logins");
            }
            for r in logins {
                println!("{:<40} user {:<24} updated {} ago", r.registry, r.username, ago(r.updated_ms));
            }
            Ok(ExitCode::SUCCESS)
        }
        "logout" => {
            let host = host()?;
            args.done()?;
            client.registry_logout(&host).await?;
            println!("login for {host} removed");
            Ok(ExitCode::SUCCESS)
        }
        "" => Err("`pilotlight registry` needs login, ls or logout; see --help".into()),
        other => Err(format!("unknown `pilotlight registry {other}`: use login, ls or logout").into()),
    }
}

fn ago(at_ms: u64) -> String {
    format!("{:.0}s", now_ms().saturating_sub(at_ms) as f64 / 1000.0)
}

fn print_table(functions: &[FunctionView]) {
    if functions.is_empty() {
        println!("no functions; deploy one with `pilotlight deploy NAME --image IMAGE --port PORT`");
        return;
    }
    let width = functions.iter().map(|f| f.name.len()).max().unwrap_or(4).max(4);
    println!("{:<width$}  {:<9}  {:>4}  {:>9}  URL", "NAME", "PHASE", "GEN", "INSTANCES");
    for f in functions {
        let running = f.instances.iter().filter(|i| i.state == InstanceState::Running).count();
        let instances = format!("{running}/{}", f.instances.len());
        println!(
            "{:<width$}  {:<9}  {:>4}  {:>9}  {}",
            f.name,
            f.phase.as_str(),
            f.generation,
            instances,
            f.url.as_deref().unwrap_or("-")
        );
        if let Some(err) = &f.error {
            let next = f.next_retry_ms.map_or(String::new(), |at| format!(", next try {}", in_time(at)));
            println!("{:<width$}  error (attempt {}{next}): {err}", "", f.attempts);
        }
        if f.stale {
            println!("{:<width$}  stale: not observed for {}", "", ago(f.observed_at_ms));
        }
    }
}

fn print_function(f: &FunctionView) {
    println!("name        {}", f.name);
    println!("phase       {} (generation {})", f.phase.as_str(), f.generation);
    println!("url         {}", f.url.as_deref().unwrap_or("-"));
    match (&f.spec.image, &f.spec.exec) {
        (Some(i), _) => println!("image       {i}"),
        (_, Some(e)) => println!("exec        {} {}", e.program, e.args.join(" ")),
        _ => {}
    }
    println!("port        {}", f.spec.port.unwrap_or_default());
    if let Some(m) = &f.message {
        println!("message     {m}");
    }
    if f.attempts > 0 {
        let next = f.next_retry_ms.map_or("-".to_owned(), in_time);
        let kind = if f.permanent { "needs a fix; retried at the backoff cap" } else { "retrying with backoff" };
        println!("attempts    {} failed in a row ({kind}); next try {next}", f.attempts);
    }
    let observed = if f.observed_at_ms == 0 {
        "never".to_owned()
    } else {
        format!(
            "{} ago{}",
            ago(f.observed_at_ms),
            if f.stale { " (STALE: the runtime could not be observed lately)" } else { "" }
        )
    };
    println!("observed    {observed}");
    println!("instances   {} (wanted running: {}, routed: {})", f.instances.len(), f.wanted, f.ready_instances);
    for i in &f.instances {
        let id: String = i.id.chars().take(12).collect();
        println!("  {id:<12}  {:<8}  {}  gen {}", state_name(i.state), i.endpoint, i.generation);
    }
}

fn state_name(s: InstanceState) -> &'static str {
    match s {
        InstanceState::Created => "created",
        InstanceState::Running => "running",
        InstanceState::Paused => "paused",
        InstanceState::Exited => "exited",
        _ => "unknown",
    }
}

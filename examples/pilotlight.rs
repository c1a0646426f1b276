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
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use futures::StreamExt;
use pilotlight::FunctionSpecInput;
use pilotlight::api::client::{Client, ClientSettings};
use pilotlight::api::views::FunctionView;
use pilotlight::core::model::{ExecInput, InstanceState, LimitsInput, Phase, ScalingInput};

/// pilotlight: deploy and manage functions on a pilotlight server.
#[derive(Debug, Parser)]
#[command(name = "pilotlight", version, after_help = EXAMPLES)]
struct Cli {
    /// The server's API [default: http://127.0.0.1:8090, or ~/.config/pilotlight/client.json].
    #[arg(long, global = true, env = "PILOTLIGHT_URL", value_name = "URL", display_order = 100)]
    url: Option<String>,
    /// The API token [default: PILOTLIGHT_TOKEN_FILE, or ./pilotlight-data/api-token].
    #[arg(
        long,
        global = true,
        env = "PILOTLIGHT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        display_order = 101
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

const EXAMPLES: &str = "Examples:
  pilotlight deploy hello --image pilotlight/hello:latest --port 8080
  pilotlight deploy hello --build ./hello --port 8080 --secret db-password
  pilotlight ls
  pilotlight logs hello -f
  pilotlight invoke hello --data 'hi' --async --wait
  printf %s \"$PASSWORD\" | pilotlight secret set db-password
  pilotlight completions bash > /etc/bash_completion.d/pilotlight

The server and the token come from --url and --token, PILOTLIGHT_URL, PILOTLIGHT_TOKEN or
PILOTLIGHT_TOKEN_FILE, or ~/.config/pilotlight/client.json ({\"url\":..., \"token\":... or \"token_file\":...}).";

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Deploy a function (or a new version of it) and show its progress until it is ready.
    #[command(after_help = DEPLOY_EXAMPLES)]
    Deploy(Box<DeployArgs>),
    /// List the functions.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one function: its spec, status and instances.
    Get {
        /// The function.
        name: String,
        /// The API's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Delete a function and its instances.
    #[command(visible_alias = "delete")]
    Rm {
        /// The function.
        name: String,
        /// Wait until it is gone.
        #[arg(long)]
        wait: bool,
    },
    /// Print a function's logs.
    Logs {
        /// The function.
        name: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Lines from the end to start with.
        #[arg(long, default_value_t = 100, value_name = "N")]
        tail: usize,
    },
    /// Print a function's URL and open it in $BROWSER (else xdg-open).
    Open {
        /// The function.
        name: String,
    },
    /// POST to a function through the edge; its answer goes to stdout.
    Invoke(InvokeArgs),
    /// List a function's asynchronous invocations, newest first.
    Invocations {
        /// The function.
        name: String,
        /// Only those in this state.
        #[arg(long, value_parser = ["queued", "running", "succeeded", "failed", "dead"])]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
    },
    /// List a function's dead letters, or queue them again.
    DeadLetters {
        /// The function.
        name: String,
        /// Queue all of them again.
        #[arg(long, conflicts_with = "retry_id")]
        retry: bool,
        /// Queue this one again.
        #[arg(long, value_name = "ID")]
        retry_id: Option<String>,
    },
    /// Publish a message to a topic (topic triggers call their functions with it).
    Publish {
        /// The topic.
        topic: String,
        /// The message key [default: the time, in hex].
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Secrets: values a function reads as the file /run/secrets/NAME (deploy --secret NAME).
    ///
    /// A value is kept encrypted and never shown again; setting it rolls the functions that use it.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Registry logins, kept encrypted like secrets; pulls of that registry's images present them.
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// The live nodes of a cluster, with their health and the functions placed on each.
    Nodes,
    /// Print shell completions: `pilotlight completions bash > /etc/bash_completion.d/pilotlight`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

const DEPLOY_EXAMPLES: &str = "Examples:
  pilotlight deploy hello --image pilotlight/hello:latest --port 8080 --min 1 --env GREETING=hi
  pilotlight deploy hello --build ./hello --port 8080      (DIR has a Dockerfile; .dockerignore is honoured)
  pilotlight deploy hello --image-archive hello.tar --port 8080      (a `docker save` tar)
  pilotlight deploy echo --exec /usr/bin/python3 --arg -m --arg http.server --port 8000   (runtime process)
  pilotlight deploy --file hello.json";

/// Where the image comes from, and the rest of the spec.
#[derive(Debug, Args)]
struct DeployArgs {
    /// The function's name (a DNS label); not with --file.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    name: Option<String>,
    /// A whole spec as JSON (the API's body).
    #[arg(long, value_name = "SPEC.json")]
    file: Option<PathBuf>,
    /// An image reference.
    #[arg(long, group = "source")]
    image: Option<String>,
    /// A program to run (process runtime).
    #[arg(long, group = "source", value_name = "PROGRAM")]
    exec: Option<String>,
    /// An argument of --exec (repeatable).
    #[arg(long = "arg", value_name = "ARG", requires = "exec", allow_hyphen_values = true)]
    args: Vec<String>,
    /// Build DIR (its Dockerfile, less what .dockerignore names) on the server, then deploy it.
    #[arg(long, group = "source", value_name = "DIR")]
    build: Option<PathBuf>,
    /// Load a `docker save` tar on the server and deploy its first image.
    #[arg(long, group = "source", value_name = "FILE")]
    image_archive: Option<PathBuf>,
    /// The port the function serves HTTP on.
    #[arg(long)]
    port: Option<i64>,
    /// KEY=VALUE in the function's environment (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A secret the function reads at /run/secrets/NAME (repeatable).
    #[arg(long, value_name = "NAME")]
    secret: Vec<String>,
    /// The region that runs it.
    #[arg(long)]
    region: Option<String>,
    /// A request's time limit, in seconds.
    #[arg(long, value_name = "S")]
    timeout_s: Option<i64>,
    /// The readiness check's path.
    #[arg(long, value_name = "/PATH")]
    health_path: Option<String>,
    /// Memory limit per instance, MiB.
    #[arg(long, value_name = "MIB")]
    memory_mb: Option<i64>,
    /// CPU per instance, thousandths of a core.
    #[arg(long, value_name = "N")]
    cpu_millis: Option<i64>,
    /// Process limit per instance.
    #[arg(long, value_name = "N")]
    pids: Option<i64>,
    /// Fewest running instances (0: scale to zero).
    #[arg(long, value_name = "N")]
    min: Option<i64>,
    /// Most instances.
    #[arg(long, value_name = "N")]
    max: Option<i64>,
    /// Paused instances kept ready.
    #[arg(long, value_name = "N")]
    prewarm: Option<i64>,
    /// Created (not started) instances kept ready.
    #[arg(long, value_name = "N")]
    precreate: Option<i64>,
    /// Requests in flight per instance the autoscaler aims at.
    #[arg(long, value_name = "N")]
    target_concurrency: Option<i64>,
    /// Idle time before scaling down to min, in seconds.
    #[arg(long, value_name = "S")]
    idle_timeout_s: Option<i64>,
    /// Return once the server accepted the spec.
    #[arg(long)]
    no_wait: bool,
    /// How long to show progress, in seconds.
    #[arg(long, value_name = "S", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    wait_timeout: u64,
}

/// A request body: text, a file, or stdin.
#[derive(Debug, Args)]
struct BodyArgs {
    /// The body, as text.
    #[arg(long, conflicts_with = "data_file")]
    data: Option<String>,
    /// The body, from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    data_file: Option<PathBuf>,
    /// The body's Content-Type.
    #[arg(long, value_name = "TYPE", default_value = "application/octet-stream")]
    content_type: String,
}

#[derive(Debug, Args)]
struct InvokeArgs {
    /// The function.
    name: String,
    /// The path to call.
    #[arg(long, default_value = "/")]
    path: String,
    #[command(flatten)]
    body: BodyArgs,
    /// Have the platform keep it and call the function later, with retries.
    #[arg(long = "async")]
    asynchronous: bool,
    /// Call this URL with the outcome (with --async).
    #[arg(long, requires = "asynchronous", value_name = "URL")]
    callback: Option<String>,
    /// Wait for the outcome and show it (with --async).
    #[arg(long, requires = "asynchronous")]
    wait: bool,
}

#[derive(Debug, Subcommand)]
enum SecretCmd {
    /// Set a secret from stdin or --from-file.
    Set {
        /// The secret's name.
        name: String,
        /// Read the value from this file instead of stdin.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
    /// List the secrets: names, sizes and users, never values.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove a secret (refused while a function uses it).
    #[command(visible_alias = "delete")]
    Rm {
        /// The secret's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryCmd {
    /// Keep a login for HOST[:PORT]; the password is read from stdin.
    Login {
        /// The registry, as images name it (127.0.0.1:5000, ghcr.io).
        host: String,
        /// The user name.
        #[arg(long)]
        username: String,
    },
    /// List the logins (user names only).
    #[command(visible_alias = "list")]
    Ls,
    /// Remove the login for HOST[:PORT].
    Logout {
        /// The registry.
        host: String,
    },
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    if let Cmd::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "pilotlight", &mut std::io::stdout());
        return Ok(ExitCode::SUCCESS);
    }
    let mut settings = ClientSettings::discover()?;
    if let Some(u) = cli.url {
        settings.url = Some(u);
    }
    if let Some(t) = cli.token {
        settings.token = Some(t);
    }
    let client = settings.client()?;
    match cli.command {
        Cmd::Deploy(args) => deploy(&client, *args).await,
        Cmd::Ls => {
            let functions = client.list().await?;
            print_table(&functions);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Get { name, json } => {
            let f = client.get(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                print_function(&f);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rm { name, wait } => {
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
        Cmd::Logs { name, follow, tail } => {
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
        Cmd::Open { name } => {
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
        Cmd::Invoke(args) => invoke(&client, args).await,
        Cmd::Invocations { name, state, limit } => {
            let page = client.invocations(&name, state.as_deref(), None, limit).await?;
            print_invocations(&page.invocations, "no invocations kept");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::DeadLetters { name, retry, retry_id } => {
            if let Some(id) = retry_id {
                let r = client.retry_dead_letter(&id).await?;
                println!("queued {} again; its outcome: {}", r.id, r.status_url);
            } else if retry {
                let r = client.retry_dead_letters(&name).await?;
                println!("{} dead letter(s) of {name} queued again", r.requeued);
            } else {
                let page = client.dead_letters(&name, None, 500).await?;
                print_invocations(&page.invocations, "no dead letters");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Publish { topic, key, body } => {
            let data = body_of(&body)?;
            let key = key.unwrap_or_else(|| format!("{:x}", now_ms()));
            let r = client.publish(&topic, &key, data, &body.content_type).await?;
            println!("published {} to {} (key {})", r.message_id, r.topic, r.key);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Secret(cmd) => secret(&client, cmd).await,
        Cmd::Registry(cmd) => registry(&client, cmd).await,
        Cmd::Nodes => {
            let list = client.nodes().await?;
            if !list.clustered {
                println!("one node alone ({}): it runs every function", list.this_node);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<16} {:<10} {:<22} {:<8} {:>9} {:>9}  LABELS",
                "NODE", "REGION", "GATEWAY", "HEALTH", "FUNCTIONS", "INSTANCES"
            );
            for n in &list.nodes {
                let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let me = if n.id == list.this_node { " *" } else { "" };
                println!(
                    "{:<16} {:<10} {:<22} {:<8} {:>9} {:>9}  {}",
                    format!("{}{me}", n.id),
                    n.region,
                    n.gateway,
                    n.health,
                    n.functions.len(),
                    n.instances,
                    labels.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Completions { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// `pilotlight secret set|ls|rm`: a value goes in from a file or stdin, and is never printed.
async fn secret(client: &Client, cmd: SecretCmd) -> Result<ExitCode, Error> {
    match cmd {
        SecretCmd::Set { name, from_file } => {
            let value = match from_file {
                Some(path) => std::fs::read(&path).map_err(|e| format!("--from-file {}: {e}", path.display()))?,
                None => read_stdin(&format!("the value of {name}"))?,
            };
            let s = client.set_secret(&name, value).await?;
            let rolling =
                if s.used_by.is_empty() { String::new() } else { format!("; rolling {}", s.used_by.join(", ")) };
            println!("secret {} set ({} bytes){rolling}", s.name, s.size);
        }
        SecretCmd::Ls => {
            let secrets = client.secrets().await?;
            if secrets.is_empty() {
                println!("no secrets");
            }
            for s in secrets {
                let used = if s.used_by.is_empty() { "-".to_owned() } else { s.used_by.join(",") };
                println!("{:<32} {:>7} bytes  updated {} ago  used by {used}", s.name, s.size, ago(s.updated_ms));
            }
        }
        SecretCmd::Rm { name } => {
            client.remove_secret(&name).await?;
            println!("secret {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn deploy(client: &Client, args: DeployArgs) -> Result<ExitCode, Error> {
    let spec: serde_json::Value = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => {
            let name = args.name.clone();
            let mut input = FunctionSpecInput { name: name.clone(), ..FunctionSpecInput::default() };
            input.image = args.image;
            if let Some(dir) = &args.build {
                input.image = Some(build(client, name.as_deref(), dir).await?);
            } else if let Some(file) = &args.image_archive {
                input.image = Some(load(client, file).await?);
            }
            if let Some(program) = args.exec {
                input.exec = Some(ExecInput { program, args: args.args });
            }
            input.port = args.port;
            input.region = args.region;
            input.timeout_s = args.timeout_s;
            input.health_path = args.health_path;
            let mut env = BTreeMap::new();
            for kv in &args.env {
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("--env wants KEY=VALUE (got {kv:?})"))?;
                env.insert(k.to_owned(), v.to_owned());
            }
            input.env = env;
            input.secrets = args.secret;
            let limits = LimitsInput {
                memory_mb: args.memory_mb,
                cpu_millis: args.cpu_millis,
                pids: args.pids,
                read_only_rootfs: None,
            };
            if limits != LimitsInput::default() {
                input.limits = Some(limits);
            }
            let scaling = ScalingInput {
                min: args.min,
                max: args.max,
                prewarm: args.prewarm,
                precreate: args.precreate,
                target_concurrency: args.target_concurrency,
                idle_timeout_s: args.idle_timeout_s,
            };
            if scaling != ScalingInput::default() {
                input.scaling = Some(scaling);
            }
            serde_json::to_value(&input)?
        }
    };
    let no_wait = args.no_wait;
    let wait = Duration::from_secs(args.wait_timeout);
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
async fn build(client: &Client, name: Option<&str>, root: &Path) -> Result<String, Error> {
    let name = name.ok_or("`pilotlight deploy --build DIR` needs a function name")?;
    let dir = root.display();
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
async fn load(client: &Client, path: &Path) -> Result<String, Error> {
    let file = path.display();
    let archive = std::fs::read(path).map_err(|e| format!("--image-archive {file}: {e}"))?;
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
fn body_of(args: &BodyArgs) -> Result<Vec<u8>, Error> {
    match (&args.data, &args.data_file) {
        (Some(d), _) => Ok(d.clone().into_bytes()),
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            Ok(buf)
        }
        (None, Some(f)) => std::fs::read(f).map_err(|e| format!("--data-file {}: {e}", f.display()).into()),
        (None, None) => Ok(Vec::new()),
    }
}

async fn invoke(client: &Client, args: InvokeArgs) -> Result<ExitCode, Error> {
    let InvokeArgs { name, path, body, asynchronous, callback, wait } = args;
    let (name, content_type) = (name.as_str(), body.content_type.clone());
    let body = body_of(&body)?;
    if !asynchronous {
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
async fn registry(client: &Client, cmd: RegistryCmd) -> Result<ExitCode, Error> {
    match cmd {
        RegistryCmd::Login { host, username } => {
            let password = read_stdin("the password")?;
            let password = String::from_utf8(password).map_err(|_| "the password is not UTF-8")?;
            // One trailing line break (from `echo`, or a file) is not part of it.
            let password = password.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&password);
            let r = client.registry_login(&host, &username, password).await?;
            println!("login for {} kept (user {})", r.registry, r.username);
            Ok(ExitCode::SUCCESS)
        }
        RegistryCmd::Ls => {
            let logins = client.registries().await?;
            if logins.is_empty() {
                println!("no registry logins");
            }
            for r in logins {
                println!("{:<40} user {:<24} updated {} ago", r.registry, r.username, ago(r.updated_ms));
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCmd::Logout { host } => {
            client.registry_logout(&host).await?;
            println!("login for {host} removed");
            Ok(ExitCode::SUCCESS)
        }
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

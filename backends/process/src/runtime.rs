use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use pilotlight_core::model::{Endpoint, ExecSpec, FunctionSpec, Instance, InstanceId, InstanceState, Source};
use pilotlight_core::ports::{
    ExitReason, InstanceStats, LogOptions, LogSource, LogStream, Runtime, RuntimeError, RuntimeEvent, RuntimeEvents,
};
use pilotlight_core::support::{LogBuffer, SecretDir, SecretFiles};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{broadcast, watch};

use crate::adopt::{self, LABEL_FUNCTION, LABEL_GENERATION, LABEL_PLATFORM};

/// The variable that names a process's secrets directory (one file per secret).
pub const SECRETS_DIR_ENV: &str = "PILOTLIGHT_SECRETS_DIR";

/// Settings of a [`ProcessRuntime`].
#[derive(Clone, Debug)]
pub struct ProcessRuntimeConfig {
    /// The label value that marks this platform's processes. Two platforms on
    /// one machine (or two test runs) must use different ids, or each would
    /// adopt and stop the other's instances.
    pub platform_id: String,
    /// How long a start may take until the process answers.
    pub ready_timeout: Duration,
    /// How long `stop` waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// Log lines kept per instance.
    pub log_lines: usize,
    /// Variables passed through from the platform's own environment (`PATH` and locale by default).
    pub inherit_env: Vec<String>,
    /// Kill every child when the runtime is dropped (tests: nothing outlives a
    /// failed test). Off by default, so a restarted platform adopts its instances.
    pub kill_on_drop: bool,
    /// Where a function's `secrets` come from and where their files are
    /// written (the process finds the directory in `PILOTLIGHT_SECRETS_DIR`);
    /// `None` refuses functions that list secrets.
    pub secrets: Option<SecretFiles>,
}

impl Default for ProcessRuntimeConfig {
    fn default() -> Self {
        Self {
            platform_id: "pilotlight".into(),
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(5),
            log_lines: 1000,
            inherit_env: ["PATH", "LANG", "LC_ALL", "TZ"].map(String::from).to_vec(),
            kill_on_drop: false,
            secrets: None,
        }
    }
}

/// Runs instances as child processes. See the crate docs.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProcessRuntimeConfig,
    children: Mutex<HashMap<InstanceId, ChildSlot>>,
    events: broadcast::Sender<RuntimeEvent>,
}

#[derive(Clone)]
struct ChildSlot {
    info: Instance,
    pid: i32,
    logs: Arc<LogBuffer>,
    /// Set before the platform stops it, so its exit is not reported as a crash.
    stopping: Arc<AtomicBool>,
    exited: watch::Receiver<Option<ExitReason>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.config.kill_on_drop {
            let children = self.children.get_mut();
            for slot in children.values() {
                slot.stopping.store(true, Ordering::SeqCst);
                signal_group(slot.pid, Signal::SIGKILL);
            }
        }
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> RuntimeError {
    RuntimeError::Backend { source: Box::new(e), retryable: true }
}

fn exec_of(spec: &FunctionSpec) -> Result<&ExecSpec, RuntimeError> {
    if spec.network() != pilotlight_core::model::Network::Bridge {
        return Err(RuntimeError::InvalidInput {
            field: "network".into(),
            message: format!(
                "the process runtime runs `{}` in the host's network and cannot take it away; use `bridge` (or the Docker runtime for `none`)",
                spec.name()
            ),
        });
    }
    match spec.source() {
        Source::Exec(e) => Ok(e),
        _ => Err(RuntimeError::wrong_source(spec, "process runtime", "exec", "use the Docker runtime for images")),
    }
}

/// Resolves `program` like `execvp` would, to tell early that it is missing.
fn resolve(program: &str, path_var: Option<&str>) -> Option<std::path::PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = Path::new(program);
        return executable(p).then(|| p.to_path_buf());
    }
    path_var?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| executable(p))
}

/// A free port on 127.0.0.1, as chosen by the kernel.
fn free_port() -> Result<u16, RuntimeError> {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(backend)?;
    Ok(l.local_addr().map_err(backend)?.port())
}

fn signal_group(pid: i32, sig: Signal) {
    // ESRCH (already gone) is the outcome we want anyway.
    let _ = killpg(Pid::from_raw(pid), sig);
}

fn exit_reason(status: std::process::ExitStatus) -> ExitReason {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitReason::Code(c),
        (None, Some(s)) => ExitReason::Signal(s),
        _ => ExitReason::Unknown,
    }
}

fn pump(stream: impl AsyncRead + Unpin + Send + 'static, source: LogSource, logs: Arc<LogBuffer>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            logs.push(source, line);
        }
    });
}

impl ProcessRuntime {
    /// A runtime with these settings.
    pub fn new(config: ProcessRuntimeConfig) -> Self {
        Self { inner: Arc::new(Inner { config, children: Mutex::default(), events: broadcast::Sender::new(1024) }) }
    }

    /// The settings.
    pub fn config(&self) -> &ProcessRuntimeConfig {
        &self.inner.config
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<InstanceId, ChildSlot>> {
        self.inner.children.lock()
    }

    /// Stops every instance this runtime started or adopted (for a clean shutdown).
    pub async fn stop_all(&self) -> Result<(), RuntimeError> {
        let all = self.list().await?;
        futures::future::join_all(all.iter().map(|i| self.stop(&i.id))).await.into_iter().collect()
    }

    fn spawn(
        &self,
        spec: &FunctionSpec,
        exec: &ExecSpec,
        generation: u64,
        port: u16,
        secrets: Option<&Path>,
    ) -> Result<ChildSlot, RuntimeError> {
        let config = &self.inner.config;
        let mut cmd = Command::new(exec.program());
        cmd.args(exec.args())
            .env_clear()
            .envs(config.inherit_env.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v))))
            .envs(spec.env().iter())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env(LABEL_PLATFORM, &config.platform_id)
            .env(LABEL_FUNCTION, spec.name().as_str())
            .env(LABEL_GENERATION, generation.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(dir) = secrets {
            cmd.env(SECRETS_DIR_ENV, dir);
        }
        let mut child = cmd.spawn().map_err(|e| RuntimeError::Unpreparable {
            what: exec.program().to_owned(),
            message: format!("cannot spawn: {e}"),
        })?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| RuntimeError::Unavailable("spawned process has no pid".into()))?;
        let logs = Arc::new(LogBuffer::new(config.log_lines));
        if let Some(out) = child.stdout.take() {
            pump(out, LogSource::Stdout, Arc::clone(&logs));
        }
        if let Some(err) = child.stderr.take() {
            pump(err, LogSource::Stderr, Arc::clone(&logs));
        }
        let info = Instance {
            id: adopt::instance_id(pid),
            function: spec.name().clone(),
            generation,
            endpoint: Endpoint::new(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            state: InstanceState::Created,
        };
        let stopping = Arc::new(AtomicBool::new(false));
        let (exited_tx, exited) = watch::channel(None);
        // The waiter owns the child: it reaps it, records why it ended, and
        // reports exits the platform did not cause.
        let (inner, id, stop_flag, ev_info) =
            (Arc::downgrade(&self.inner), info.id.clone(), Arc::clone(&stopping), info.clone());
        tokio::spawn(async move {
            let reason = match child.wait().await {
                Ok(status) => exit_reason(status),
                Err(_) => ExitReason::Unknown,
            };
            // Whatever the leader left behind in its group goes too.
            signal_group(pid, Signal::SIGKILL);
            exited_tx.send_replace(Some(reason.clone()));
            let Some(inner) = inner.upgrade() else { return };
            inner.children.lock().remove(&id);
            if !stop_flag.load(Ordering::SeqCst) {
                tracing::warn!(function = %ev_info.function, instance = %id, ?reason, "instance exited");
                let _ = inner.events.send(RuntimeEvent::Exited {
                    id,
                    function: ev_info.function,
                    generation: ev_info.generation,
                    reason,
                });
            }
        });
        Ok(ChildSlot { info, pid, logs, stopping, exited })
    }

    /// Waits until the instance answers, it exits, or the deadline passes.
    async fn await_ready(&self, spec: &FunctionSpec, slot: &ChildSlot) -> Result<(), RuntimeError> {
        let deadline = tokio::time::Instant::now() + self.inner.config.ready_timeout;
        let addr = slot.info.endpoint.addr();
        let health = spec.health_path().map(|p| p.as_str());
        let mut exited = slot.exited.clone();
        let mut pause = Duration::from_millis(2);
        loop {
            let reason = exited.borrow_and_update().clone();
            if let Some(reason) = reason {
                return Err(self
                    .not_ready(slot, format!("`{}` exited ({reason:?}) before it answered on {addr}", spec.name()))
                    .await);
            }
            if pilotlight_core::support::probe(addr, health).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let what = match health {
                    Some(p) => format!("answered GET {p} with 2xx"),
                    None => "answered HTTP".into(),
                };
                return Err(self
                    .not_ready(
                        slot,
                        format!(
                            "`{}` never {what} on {addr} within {:?}",
                            spec.name(),
                            self.inner.config.ready_timeout
                        ),
                    )
                    .await);
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = exited.changed() => {}
            }
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    async fn not_ready(&self, slot: &ChildSlot, message: String) -> RuntimeError {
        slot.stopping.store(true, Ordering::SeqCst);
        signal_group(slot.pid, Signal::SIGKILL);
        let mut exited = slot.exited.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), exited.wait_for(Option::is_some)).await;
        // Let the log pumps catch the last lines the process wrote.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let logs = slot.logs.tail(Some(20)).into_iter().map(|l| l.line).collect();
        RuntimeError::NotReady { message, logs }
    }

    /// Signals a process we did not start in this run, and waits until it is gone.
    async fn stop_adopted(&self, pid: i32) {
        signal_group(pid, Signal::SIGTERM);
        signal_group(pid, Signal::SIGCONT);
        let deadline = tokio::time::Instant::now() + self.inner.config.stop_grace;
        while adopt::alive(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal_group(pid, Signal::SIGKILL);
        for _ in 0..100 {
            if !adopt::alive(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn adopted(&self, id: &InstanceId) -> Option<(i32, Instance)> {
        let pid = adopt::pid_of(id)?;
        adopt::labelled(pid, &self.inner.config.platform_id).map(|i| (pid, i))
    }

    async fn set_state(&self, id: &InstanceId, state: InstanceState, sig: Signal) -> Result<Instance, RuntimeError> {
        {
            let mut map = self.lock();
            if let Some(slot) = map.get_mut(id) {
                signal_group(slot.pid, sig);
                slot.info.state = state;
                return Ok(slot.info.clone());
            }
        }
        let (pid, mut info) = self.adopted(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        signal_group(pid, sig);
        // An adopted process's state is read back from /proc, and a signal is
        // delivered asynchronously: wait (briefly) until /proc agrees, so a
        // `list` right after this call does not report the old state.
        let stopped = state == InstanceState::Paused;
        for _ in 0..500 {
            match adopt::stat(pid) {
                Some((s, _)) if (s == 'T') != stopped => tokio::time::sleep(Duration::from_millis(2)).await,
                _ => break,
            }
        }
        info.state = state;
        Ok(info)
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    async fn prepare(&self, spec: &FunctionSpec) -> Result<(), RuntimeError> {
        let exec = exec_of(spec)?;
        let path = std::env::var("PATH").ok();
        match resolve(exec.program(), path.as_deref()) {
            Some(_) => Ok(()),
            None => Err(RuntimeError::Unpreparable {
                what: exec.program().to_owned(),
                message: "no such executable file (checked the path, or PATH for a bare name)".into(),
            }),
        }
    }

    async fn start(&self, spec: &FunctionSpec, generation: u64) -> Result<Instance, RuntimeError> {
        let exec = exec_of(spec)?;
        let port = free_port()?;
        let secrets = match (spec.secrets().is_empty(), &self.inner.config.secrets) {
            (true, _) => None,
            (false, Some(files)) => {
                Some(files.write(&SecretFiles::scope(spec.name(), generation), spec.secrets()).await?)
            }
            (false, None) => {
                return Err(RuntimeError::InvalidInput {
                    field: "secrets".into(),
                    message: format!(
                        "`{}` lists secrets, and this process runtime was given no secret store",
                        spec.name()
                    ),
                });
            }
        };
        let slot = self.spawn(spec, exec, generation, port, secrets.as_ref().map(SecretDir::path))?;
        let id = slot.info.id.clone();
        // Registered while starting (as `Created`, which `list` leaves out) so a
        // concurrent `list` does not mistake it for an adopted process.
        self.lock().insert(id.clone(), slot.clone());
        if let Err(e) = self.await_ready(spec, &slot).await {
            self.lock().remove(&id);
            return Err(e);
        }
        let ready = self.lock().get_mut(&id).map(|s| {
            s.info.state = InstanceState::Running;
            s.info.clone()
        });
        match ready {
            Some(info) => {
                tracing::debug!(function = %spec.name(), instance = %id, endpoint = %info.endpoint, "process started");
                Ok(info)
            }
            // The waiter removed it: it exited between the probe and now.
            None => Err(self.not_ready(&slot, format!("`{}` exited right after it became ready", spec.name())).await),
        }
    }

    async fn stop(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        let slot = self.lock().remove(id);
        let Some(slot) = slot else {
            if let Some((pid, _)) = self.adopted(id) {
                self.stop_adopted(pid).await;
            }
            return Ok(());
        };
        slot.stopping.store(true, Ordering::SeqCst);
        signal_group(slot.pid, Signal::SIGTERM);
        // A paused process cannot act on SIGTERM until it runs again.
        signal_group(slot.pid, Signal::SIGCONT);
        let mut exited = slot.exited.clone();
        let graceful =
            tokio::time::timeout(self.inner.config.stop_grace, exited.wait_for(Option::is_some)).await.is_ok();
        if !graceful {
            tracing::warn!(instance = %id, "no exit after SIGTERM within the grace period; sending SIGKILL");
            signal_group(slot.pid, Signal::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(5), exited.wait_for(Option::is_some)).await;
        }
        Ok(())
    }

    async fn pause(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        self.set_state(id, InstanceState::Paused, Signal::SIGSTOP).await.map(|_| ())
    }

    async fn resume(&self, id: &InstanceId) -> Result<Instance, RuntimeError> {
        self.set_state(id, InstanceState::Running, Signal::SIGCONT).await
    }

    async fn list(&self) -> Result<Vec<Instance>, RuntimeError> {
        let mut out: Vec<Instance> = self.lock().values().map(|s| s.info.clone()).collect();
        let platform = self.inner.config.platform_id.clone();
        let adopted = tokio::task::spawn_blocking(move || adopt::scan(&platform)).await.map_err(backend)?;
        let ours: std::collections::HashSet<InstanceId> = out.iter().map(|i| i.id.clone()).collect();
        let mine = self.lock();
        out.extend(adopted.into_iter().filter(|i| !ours.contains(&i.id) && !mine.contains_key(&i.id)));
        drop(mine);
        if let Some(files) = &self.inner.config.secrets {
            // A generation with no process left (starting ones count) needs its files no more.
            let live: std::collections::HashSet<String> =
                out.iter().map(|i| SecretFiles::scope(&i.function, i.generation)).collect();
            files.prune(|scope| live.contains(scope));
        }
        // Leave out processes still starting (they are not ours to manage until ready).
        out.retain(|i| i.state != InstanceState::Created);
        Ok(out)
    }

    async fn logs(&self, id: &InstanceId, options: LogOptions) -> Result<LogStream, RuntimeError> {
        if let Some(slot) = self.lock().get(id) {
            return Ok(slot.logs.stream(options));
        }
        if self.adopted(id).is_some() {
            let note = pilotlight_core::ports::LogLine {
                source: LogSource::Stderr,
                line:
                    "[pilotlight: this instance was started by an earlier run of the platform; its output was not kept]"
                        .into(),
                at_ms: pilotlight_core::support::now_ms(),
            };
            return Ok(futures::stream::iter([Ok(note)]).boxed());
        }
        Err(RuntimeError::NotFound(id.clone()))
    }

    async fn stats(&self, id: &InstanceId) -> Result<InstanceStats, RuntimeError> {
        let pid = match self.lock().get(id) {
            Some(slot) => slot.pid,
            None => self.adopted(id).map(|(pid, _)| pid).ok_or_else(|| RuntimeError::NotFound(id.clone()))?,
        };
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|_| RuntimeError::NotFound(id.clone()))?;
        let after = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat; `after` starts at field 3.
        let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
        let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
        Ok(InstanceStats {
            cpu_seconds: ticks as f64 / hz as f64,
            memory_bytes: pages * u64::try_from(page).unwrap_or(4096),
            memory_limit_bytes: None,
        })
    }

    fn events(&self) -> RuntimeEvents {
        pilotlight_core::support::runtime_events(&self.inner.events)
    }
}

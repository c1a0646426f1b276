//! Running NGINX: `nginx -t`, the managed master (start, adopt, HUP, stop),
//! the system reload command, and the probe that confirms a generation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::error::NginxError;

/// The path of the status location (see the routes template).
pub const STATUS_PATH: &str = "/pilotlight/generation";

/// Runs a command without a shell; Ok(stderr + stdout) on success, Err(the same) on failure.
async fn run(argv: &[&std::ffi::OsStr]) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run `{}`: {e}", program.to_string_lossy()))?;
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        text.push('\n');
        text.push_str(stdout.trim());
    }
    if out.status.success() { Ok(text) } else { Err(if text.is_empty() { out.status.to_string() } else { text }) }
}

/// `nginx -t -q -c <config> -p <prefix>`: NGINX's own verdict on a file.
pub(crate) async fn test_config(nginx: &Path, config: &Path, prefix: &Path) -> Result<(), String> {
    let argv = [
        nginx.as_os_str(),
        "-t".as_ref(),
        "-q".as_ref(),
        "-c".as_ref(),
        config.as_os_str(),
        "-p".as_ref(),
        prefix.as_os_str(),
    ];
    run(&argv).await.map(drop).map_err(|e| {
        // Keep NGINX's diagnostics; drop its closing "test failed" line.
        e.lines().filter(|l| !l.contains("test failed")).collect::<Vec<_>>().join("\n")
    })
}

/// The system mode's reload command.
pub(crate) async fn run_reload(reload: &[String]) -> Result<(), String> {
    let argv: Vec<&std::ffi::OsStr> = reload.iter().map(|s| s.as_ref()).collect();
    run(&argv).await.map(drop)
}

/// The live NGINX master named by a pid file.
pub(crate) fn master_from_pid_file(pid_file: &Path) -> Result<Pid, String> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| format!("read {}: {e}", pid_file.display()))?;
    let pid: i32 = text.trim().parse().map_err(|_| format!("{} holds no pid ({text:?})", pid_file.display()))?;
    let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&title).starts_with("nginx: master process") {
        return Err(format!("{} names pid {pid}, which is not a running nginx master", pid_file.display()));
    }
    Ok(Pid::from_raw(pid))
}

/// The NGINX master pilotlight manages, found through its pid file.
pub(crate) struct Master {
    nginx: PathBuf,
    root: PathBuf,
}

impl Master {
    pub(crate) fn new(nginx: &Path, root: &Path) -> Self {
        Self { nginx: nginx.to_owned(), root: root.to_owned() }
    }

    fn config(&self) -> PathBuf {
        self.root.join(crate::generations::CURRENT).join(crate::render::MAIN_FILE)
    }

    /// The master's pid, if the pid file names a live NGINX master started from our configuration.
    pub(crate) fn pid(&self) -> Option<Pid> {
        let text = std::fs::read_to_string(self.root.join("nginx.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let ours = cmdline.starts_with("nginx: master process") && cmdline.contains(&*self.config().to_string_lossy());
        ours.then(|| Pid::from_raw(pid))
    }

    /// The temp directories the main configuration names (`nginx -t` wants them to exist).
    pub(crate) fn prepare_dirs(&self) -> Result<(), NginxError> {
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            let d = self.root.join("tmp").join(sub);
            std::fs::create_dir_all(&d).map_err(|e| NginxError::io(format!("create {}", d.display()), e))?;
        }
        Ok(())
    }

    /// Starts the master (it daemonizes; this returns once its pid file exists).
    pub(crate) async fn start(&self) -> Result<Pid, NginxError> {
        self.prepare_dirs()?;
        let _ = std::fs::remove_file(self.root.join("nginx.pid"));
        let config = self.config();
        let argv = [self.nginx.as_os_str(), "-c".as_ref(), config.as_os_str(), "-p".as_ref(), self.root.as_os_str()];
        run(&argv)
            .await
            .map_err(|e| NginxError::Start(format!("`{} -c {}`: {e}", self.nginx.display(), config.display())))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = self.pid() {
                return Ok(pid);
            }
            if Instant::now() > deadline {
                return Err(NginxError::Start(format!(
                    "no master after 10 s (pid file {}); {}",
                    self.root.join("nginx.pid").display(),
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Asks the master to load the configuration `current` points at.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let pid = self.pid().ok_or("the managed nginx master is not running")?;
        kill(pid, Signal::SIGHUP).map_err(|e| format!("SIGHUP to nginx master {pid}: {e}"))
    }

    /// Stops the master: `graceful` lets requests in flight finish (SIGQUIT),
    /// else SIGTERM. Waits up to `wait` for it to exit, then SIGKILLs its group.
    pub(crate) async fn stop(&self, graceful: bool, wait: Duration) {
        let Some(pid) = self.pid() else { return };
        let _ = kill(pid, if graceful { Signal::SIGQUIT } else { Signal::SIGTERM });
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if !alive(pid.as_raw()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!(%pid, "nginx master did not stop in time; killing it");
        let _ = kill(pid, Signal::SIGKILL);
    }

    /// The same as [`Master::stop`] without waiting, for `Drop`.
    pub(crate) fn signal_stop(&self) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }

    /// The last lines of error.log that say why something failed.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.root.join("error.log"))
    }
}

/// Whether `pid` runs (a zombie does not: where PID 1 does not reap, an
/// exited daemon stays one).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st != "Z")))
        .unwrap_or(false)
}

/// The last few `[emerg]`/`[alert]`/`[crit]` lines of an NGINX error log.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> =
        text.lines().filter(|l| l.contains("[emerg]") || l.contains("[alert]") || l.contains("[crit]")).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() { format!("nothing in {}", path.display()) } else { tail.join("\n") }
}

/// Which generation NGINX answers with on its status listener, if any.
pub(crate) async fn served_generation(status: SocketAddr) -> Option<u64> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(status).await.ok()?;
        let req = format!("GET {STATUS_PATH} HTTP/1.0\r\nHost: pilotlight-status\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::with_capacity(256);
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.trim().parse().ok())?
    };
    tokio::time::timeout(Duration::from_secs(2), fetch).await.ok().flatten()
}

/// Polls the status listener until it answers `generation` three times in a
/// row, then makes sure no worker of the previous generation still accepts.
///
/// After a reload the NGINX master starts the new workers, sleeps 100 ms (a
/// fixed pause in its source), and only then tells the old workers to stop
/// accepting: for that window a new connection may still get the old table.
/// With `old_workers` (managed mode: the master's children before the HUP),
/// this waits until each has exited or calls itself "shutting down"; without
/// (system mode), it waits out the window and checks three more answers.
pub(crate) async fn confirm(
    status: SocketAddr,
    generation: u64,
    timeout: Duration,
    old_workers: Option<&[u32]>,
) -> Result<(), Option<u64>> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    for pass in 0..2 {
        let mut in_a_row = 0;
        while in_a_row < 3 {
            let answer = served_generation(status).await;
            in_a_row = if answer == Some(generation) { in_a_row + 1 } else { 0 };
            last = answer.or(last);
            if Instant::now() > deadline {
                return Err(last);
            }
            if in_a_row == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        if pass == 1 {
            break;
        }
        match old_workers {
            Some(pids) => {
                while pids.iter().any(|p| still_accepting(*p)) {
                    if Instant::now() > deadline {
                        return Err(last);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                return Ok(());
            }
            None => tokio::time::sleep(Duration::from_millis(150)).await,
        }
    }
    Ok(())
}

/// Whether `pid` is an NGINX worker that has not started shutting down.
fn still_accepting(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let title = String::from_utf8_lossy(&c);
        title.starts_with("nginx: worker process") && !title.contains("shutting down")
    })
}

/// The children of `pid` (an NGINX master's workers).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

//! [`NginxRouter`]: `Router::apply` as render → `nginx -t` → switch → reload →
//! confirm, one at a time, with applies that arrive meanwhile coalesced.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pilotlight_core::model::RouteTable;
use pilotlight_core::ports::{Router, RouterError};
use tracing::{Instrument, info, info_span, warn};

use crate::config::{NginxConfig, NginxMode, SystemReload};
use crate::error::NginxError;
use crate::generations::Generations;
use crate::process::{self, Master};
use crate::render::{MAIN_FILE, Renderer, TEST_FILE};

/// How long one apply spent in each step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ApplyTimings {
    /// The configuration generation served afterwards.
    pub generation: u64,
    /// Functions in the table.
    pub functions: usize,
    /// Rendering the templates and writing the files.
    pub render: Duration,
    /// `nginx -t`.
    pub test: Duration,
    /// Switching `current` and signalling (or running the reload command).
    pub reload: Duration,
    /// From the reload until the new generation answered.
    pub confirm: Duration,
}

impl ApplyTimings {
    /// The whole apply.
    pub fn total(&self) -> Duration {
        self.render + self.test + self.reload + self.confirm
    }
}

/// Counters of what the router did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NginxStats {
    /// Calls to `apply`.
    pub applies: u64,
    /// Reloads that took (the new generation answered).
    pub reloads: u64,
    /// Applies answered by a reload that another call ran (see [`NginxRouter`]).
    pub coalesced: u64,
    /// Applies that returned an error.
    pub failures: u64,
}

/// The outcome of the last apply, kept for the calls it answered.
struct Done {
    seq: u64,
    outcome: Result<(), NginxError>,
    /// The table being served, to skip a reload that would change nothing.
    served: Option<RouteTable>,
}

/// A [`Router`] that drives NGINX.
///
/// `apply` renders the whole table into a new `gen-N/` directory, has
/// `nginx -t` check it, points the `current` symlink at it, reloads NGINX
/// (SIGHUP to the managed master, or the system reload command) and returns
/// once NGINX's status location answers with the new generation. On any
/// failure the previous generation stays (or is switched back) and the error
/// carries NGINX's own message.
///
/// Applies are serialized. A call that arrives while another is reloading
/// parks its table; when the running one finishes, the newest parked table is
/// applied once and every call it superseded gets that outcome: a burst of
/// route changes costs two reloads, not one each. Tables are whole (not
/// deltas), so the newest one includes what the older ones asked for.
pub struct NginxRouter {
    config: NginxConfig,
    renderer: Renderer,
    generations: Generations,
    master: Option<Master>,
    next_generation: AtomicU64,
    next_seq: AtomicU64,
    wanted: Mutex<Option<(u64, RouteTable)>>,
    done: tokio::sync::Mutex<Done>,
    stats: Mutex<NginxStats>,
    timings: Mutex<Option<ApplyTimings>>,
}

impl NginxRouter {
    /// Checks `config`, loads the templates and makes NGINX serve.
    ///
    /// Managed mode: a master left running by an earlier run (found through
    /// the pid file) is adopted and keeps serving what it serves; otherwise the
    /// last generation on disk is started, or an empty table if there is none.
    /// System mode: an empty table is written if `current` does not exist; the
    /// host's NGINX is reloaded on the first apply.
    pub async fn start(config: NginxConfig) -> Result<Self, NginxError> {
        config.validate()?;
        // Canonical, so every path written into the configuration is absolute.
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| NginxError::io(format!("create {}", config.dir.display()), e))?;
        let root = std::fs::canonicalize(&config.dir)
            .map_err(|e| NginxError::io(format!("resolve {}", config.dir.display()), e))?;
        let generations = Generations::open(&root)?;
        let renderer = Renderer::new(&config, &root)?;
        let master = matches!(config.mode, NginxMode::Managed { .. }).then(|| Master::new(&config.nginx_binary, &root));
        if let Some(m) = &master {
            m.prepare_dirs()?;
        }
        let router = Self {
            next_generation: AtomicU64::new(generations.next_after_disk()),
            renderer,
            generations,
            master,
            next_seq: AtomicU64::new(1),
            wanted: Mutex::new(None),
            done: tokio::sync::Mutex::new(Done { seq: 0, outcome: Ok(()), served: None }),
            stats: Mutex::new(NginxStats::default()),
            timings: Mutex::new(None),
            config,
        };
        router.bring_up().await?;
        Ok(router)
    }

    async fn bring_up(&self) -> Result<(), NginxError> {
        let adopted = self.master.as_ref().and_then(|m| m.pid());
        if let Some(pid) = adopted {
            info!(%pid, dir = %self.generations.root().display(), "adopting the running nginx master");
            return Ok(());
        }
        let current = match self.generations.current() {
            Some(g) if self.generations.dir(g).join(self.main_or_test_file()).is_file() => Some(g),
            _ => None,
        };
        let Some(master) = &self.master else {
            if current.is_none() {
                let g = self.render_and_test(&RouteTable::new()).await?.generation;
                self.generations.switch(g)?;
            }
            return Ok(());
        };
        let generation = match current {
            Some(g) => g,
            None => {
                let g = self.render_and_test(&RouteTable::new()).await?.generation;
                self.generations.switch(g)?;
                g
            }
        };
        master.start().await?;
        process::confirm(self.config.status_addr, generation, self.config.confirm_timeout, Some(&[])).await.map_err(|seen| {
            NginxError::Start(format!(
                "nginx started but its status listener {} did not answer generation {generation} (last answer: {seen:?}); {}",
                self.config.status_addr,
                master.log_tail()
            ))
        })?;
        info!(generation, http = %self.config.http_addr, "nginx started");
        Ok(())
    }

    fn main_or_test_file(&self) -> &'static str {
        if self.master.is_some() { MAIN_FILE } else { TEST_FILE }
    }

    /// Renders `table` into a new generation directory and has `nginx -t` check it.
    async fn render_and_test(&self, table: &RouteTable) -> Result<ApplyTimings, NginxError> {
        let generation = self.next_generation.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let dir = self.generations.dir(generation);
        let files = self.renderer.render(table, generation, &dir)?;
        self.generations.write(generation, &files)?;
        let render = started.elapsed();
        let started = Instant::now();
        let checked = process::test_config(
            &self.config.nginx_binary,
            &dir.join(self.main_or_test_file()),
            self.generations.root(),
        )
        .await;
        if let Err(message) = checked {
            self.generations.discard(generation);
            return Err(NginxError::Rejected { generation, message });
        }
        Ok(ApplyTimings { generation, functions: table.len(), render, test: started.elapsed(), ..Default::default() })
    }

    /// The apply itself, called by one caller at a time.
    async fn apply_now(&self, table: &RouteTable) -> Result<(), NginxError> {
        let mut t = self.render_and_test(table).await?;
        let generation = t.generation;
        let previous = self.generations.current();
        let started = Instant::now();
        self.generations.switch(generation)?;
        let old_workers =
            self.serving_master().map(|p| p.map_or_else(Vec::new, |p| process::children(p.as_raw() as u32)));
        if let Err(message) = self.reload().await {
            return Err(self.roll_back(previous, generation, message).await);
        }
        t.reload = started.elapsed();
        let started = Instant::now();
        let confirmed =
            process::confirm(self.config.status_addr, generation, self.config.confirm_timeout, old_workers.as_deref())
                .await;
        if let Err(seen) = confirmed {
            let why = format!(
                "the status listener {} still answered generation {seen:?} after {:?}; {}",
                self.config.status_addr,
                self.config.confirm_timeout,
                self.log_tail()
            );
            return Err(self.roll_back(previous, generation, why).await);
        }
        t.confirm = started.elapsed();
        self.generations.prune(self.config.keep_generations);
        info!(
            generation,
            functions = t.functions,
            total_ms = t.total().as_millis() as u64,
            "nginx serves the new table"
        );
        *self.timings.lock() = Some(t);
        Ok(())
    }

    async fn reload(&self) -> Result<(), String> {
        match (&self.master, &self.config.mode) {
            (Some(master), _) => match master.pid() {
                Some(_) => master.reload(),
                // The master died (killed, OOM): start it again on the new generation.
                None => {
                    warn!("the managed nginx master is gone; starting it again");
                    master.start().await.map(drop).map_err(|e| e.to_string())
                }
            },
            (None, NginxMode::System { reload: SystemReload::Command(argv) }) => process::run_reload(argv).await,
            (None, NginxMode::System { reload: SystemReload::Signal { pid_file } }) => {
                let pid = process::master_from_pid_file(pid_file)?;
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)
                    .map_err(|e| format!("SIGHUP to nginx master {pid}: {e}"))
            }
            (None, NginxMode::Managed { .. }) => Err("managed mode without a master".into()),
        }
    }

    /// Points `current` back at `previous`, reloads so NGINX serves it, and
    /// returns the error for the generation that failed.
    async fn roll_back(&self, previous: Option<u64>, failed: u64, message: String) -> NginxError {
        warn!(failed, ?previous, %message, "nginx reload failed; switching back");
        if let Some(p) = previous {
            if let Err(e) = self.generations.switch(p) {
                warn!(error = %e, "cannot switch back");
            } else if let Err(e) = self.reload().await {
                warn!(error = %e, "reload of the previous generation failed");
            }
        }
        self.generations.discard(failed);
        NginxError::Reload { generation: failed, message }
    }

    /// `Some(master)` when the router knows which master serves (managed, or
    /// system with a pid file): a reload can then wait for its old workers
    /// precisely. `Some(None)`: a managed master that is not running.
    fn serving_master(&self) -> Option<Option<nix::unistd::Pid>> {
        match (&self.master, &self.config.mode) {
            (Some(m), _) => Some(m.pid()),
            (None, NginxMode::System { reload: SystemReload::Signal { pid_file } }) => {
                Some(process::master_from_pid_file(pid_file).ok())
            }
            _ => None,
        }
    }

    fn log_tail(&self) -> String {
        match &self.master {
            Some(m) => m.log_tail(),
            None => "see the host's NGINX error log".into(),
        }
    }

    /// What the router did so far.
    pub fn stats(&self) -> NginxStats {
        *self.stats.lock()
    }

    /// How long the last successful reload spent in each step.
    pub fn last_apply(&self) -> Option<ApplyTimings> {
        *self.timings.lock()
    }

    /// The configuration generation NGINX answers with now, if it answers.
    pub async fn served_generation(&self) -> Option<u64> {
        process::served_generation(self.config.status_addr).await
    }

    /// The managed master's pid.
    pub fn master_pid(&self) -> Option<u32> {
        self.master.as_ref().and_then(|m| m.pid()).map(|p| p.as_raw() as u32)
    }

    /// The directory that holds the generations (and `current`).
    pub fn dir(&self) -> &std::path::Path {
        self.generations.root()
    }

    /// The settings in use.
    pub fn config(&self) -> &NginxConfig {
        &self.config
    }

    /// Stops a managed NGINX gracefully: requests in flight finish (up to `grace`).
    pub async fn shutdown(&self, grace: Duration) {
        if let Some(m) = &self.master {
            m.stop(true, grace).await;
        }
    }

    fn count(&self, f: impl FnOnce(&mut NginxStats)) {
        f(&mut self.stats.lock());
    }
}

#[async_trait]
impl Router for NginxRouter {
    async fn apply(&self, table: &RouteTable) -> Result<(), RouterError> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        self.count(|s| s.applies += 1);
        {
            let mut wanted = self.wanted.lock();
            if wanted.as_ref().is_none_or(|(s, _)| *s < seq) {
                *wanted = Some((seq, table.clone()));
            }
        }
        let mut done = self.done.lock().await;
        if done.seq >= seq {
            // A newer table than ours was applied while we waited.
            self.count(|s| s.coalesced += 1);
            return done.outcome.clone().map_err(Into::into);
        }
        let taken = self.wanted.lock().take();
        let Some((newest, table)) = taken else {
            return Err(RouterError::Unavailable("internal: no table to apply".into()));
        };
        let unchanged = done.served.as_ref() == Some(&table) && self.master.as_ref().is_none_or(|m| m.pid().is_some());
        let span = info_span!("nginx_apply", functions = table.len(), seq = newest);
        let outcome = if unchanged { Ok(()) } else { self.apply_now(&table).instrument(span).await };
        match &outcome {
            Ok(()) => {
                if !unchanged {
                    self.count(|s| s.reloads += 1);
                    metrics::counter!("pilotlight_nginx_reloads_total", "outcome" => "ok").increment(1);
                }
                done.served = Some(table);
            }
            Err(e) => {
                self.count(|s| s.failures += 1);
                metrics::counter!("pilotlight_nginx_reloads_total", "outcome" => "failed").increment(1);
                warn!(error = %e, "nginx apply failed");
            }
        }
        done.seq = newest;
        done.outcome = outcome.clone();
        outcome.map_err(Into::into)
    }
}

impl Drop for NginxRouter {
    fn drop(&mut self) {
        if let (Some(m), NginxMode::Managed { stop_on_drop: true, .. }) = (&self.master, &self.config.mode) {
            m.signal_stop();
        }
    }
}

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use async_trait::async_trait;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::model::{Endpoint, FunctionSpec, Instance, InstanceId, InstanceState};
use crate::ports::{
    ExitReason, InstanceStats, LogOptions, LogSource, LogStream, Runtime, RuntimeError, RuntimeEvent, RuntimeEvents,
};
use crate::support::LogBuffer;

/// A [`Runtime`] whose instances are tiny HTTP servers inside this process.
///
/// Each instance listens on its own 127.0.0.1 port and answers every request
/// with `Hello from <name>!`, so routing can be tested for real without
/// processes or containers. Pausing stops it answering (connections wait, as
/// with SIGSTOP). `crash` and `fail_next_starts` inject failures.
#[derive(Clone, Default)]
pub struct MemoryRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    instances: Mutex<HashMap<InstanceId, Slot>>,
    next_id: AtomicU64,
    failing_starts: AtomicU32,
    starts: AtomicU64,
    resumes: AtomicU64,
    unavailable: std::sync::atomic::AtomicBool,
    calls: AtomicU64,
    events: broadcast::Sender<RuntimeEvent>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            instances: Mutex::default(),
            next_id: AtomicU64::new(0),
            failing_starts: AtomicU32::new(0),
            starts: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            unavailable: std::sync::atomic::AtomicBool::new(false),
            calls: AtomicU64::new(0),
            events: broadcast::Sender::new(256),
        }
    }
}

struct Slot {
    info: Instance,
    paused: watch::Sender<bool>,
    server: JoinHandle<()>,
    logs: Arc<LogBuffer>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MemoryRuntime {
    /// A runtime with no instances.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` starts fail as if the instance never became ready.
    pub fn fail_next_starts(&self, n: u32) {
        self.inner.failing_starts.store(n, Ordering::SeqCst);
    }

    /// How many instances were started successfully so far.
    pub fn start_count(&self) -> u64 {
        self.inner.starts.load(Ordering::SeqCst)
    }

    /// How many paused instances were resumed so far.
    pub fn resume_count(&self) -> u64 {
        self.inner.resumes.load(Ordering::SeqCst)
    }

    /// Kills an instance as if it crashed, and reports the exit.
    pub fn crash(&self, id: &InstanceId) -> bool {
        let slot = self.lock().remove(id);
        match slot {
            Some(slot) => {
                let _ = self.inner.events.send(RuntimeEvent::Exited {
                    id: id.clone(),
                    function: slot.info.function.clone(),
                    generation: slot.info.generation,
                    reason: ExitReason::Signal(9),
                });
                true
            }
            None => false,
        }
    }

    /// Removes an instance behind the platform's back: no exit is reported,
    /// as when a container is removed while the platform is not listening.
    pub fn vanish(&self, id: &InstanceId) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Plays an engine outage: while on, every call fails with `Unavailable`
    /// (the instances keep running and answering).
    pub fn set_unavailable(&self, down: bool) {
        self.inner.unavailable.store(down, Ordering::SeqCst);
    }

    /// How many port calls (list, start, stop, …) were made so far.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::SeqCst)
    }

    fn call(&self) -> Result<(), RuntimeError> {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        if self.inner.unavailable.load(Ordering::SeqCst) {
            return Err(RuntimeError::Unavailable("the memory runtime plays an outage".into()));
        }
        Ok(())
    }

    fn injected_failure(&self, spec: &FunctionSpec) -> Result<(), RuntimeError> {
        let failing =
            self.inner.failing_starts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if failing {
            return Err(RuntimeError::NotReady {
                message: format!("instance of `{}` did not become ready (injected failure)", spec.name()),
                logs: vec!["injected by MemoryRuntime::fail_next_starts".into()],
            });
        }
        Ok(())
    }

    /// An instance listening on its own port; a `created` one does not answer
    /// until started (its connections wait, as with a container not yet running).
    async fn make(&self, spec: &FunctionSpec, generation: u64, created: bool) -> Result<Instance, RuntimeError> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| RuntimeError::Backend { source: Box::new(e), retryable: true })?;
        let addr = listener.local_addr().map_err(|e| RuntimeError::Backend { source: Box::new(e), retryable: true })?;
        let n = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        let id = InstanceId::new(format!("mem-{}-{n}", spec.name()));
        let logs = Arc::new(LogBuffer::new(1000));
        logs.push(LogSource::Stdout, format!("{} listening on {addr}", spec.name()));
        let (paused, paused_rx) = watch::channel(created);
        let greeting: Arc<str> = format!("Hello from {}!", spec.name()).into();
        let server = tokio::spawn(serve(listener, greeting, paused_rx, Arc::clone(&logs)));
        let info = Instance {
            id: id.clone(),
            function: spec.name().clone(),
            generation,
            endpoint: Endpoint::new(addr),
            state: if created { InstanceState::Created } else { InstanceState::Running },
        };
        self.lock().insert(id, Slot { info: info.clone(), paused, server, logs });
        Ok(info)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<InstanceId, Slot>> {
        self.inner.instances.lock()
    }
}

async fn serve(listener: TcpListener, greeting: Arc<str>, mut paused: watch::Receiver<bool>, logs: Arc<LogBuffer>) {
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let Ok((conn, _)) = listener.accept().await else { continue };
        let (greeting, paused, logs) = (Arc::clone(&greeting), paused.clone(), Arc::clone(&logs));
        tokio::spawn(answer(conn, greeting, paused, logs));
    }
}

async fn answer(mut conn: TcpStream, greeting: Arc<str>, mut paused: watch::Receiver<bool>, logs: Arc<LogBuffer>) {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        match conn.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
    }
    if paused.wait_for(|p| !*p).await.is_err() {
        return;
    }
    let request_line = String::from_utf8_lossy(&buf[..len]).lines().next().unwrap_or_default().to_owned();
    logs.push(LogSource::Stdout, request_line);
    let body = format!("{greeting}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes()).await;
}

#[async_trait]
impl Runtime for MemoryRuntime {
    async fn prepare(&self, _spec: &FunctionSpec) -> Result<(), RuntimeError> {
        self.call()?;
        Ok(())
    }

    async fn start(&self, spec: &FunctionSpec, generation: u64) -> Result<Instance, RuntimeError> {
        self.call()?;
        self.injected_failure(spec)?;
        let info = self.make(spec, generation, false).await?;
        self.inner.starts.fetch_add(1, Ordering::SeqCst);
        Ok(info)
    }

    async fn create(&self, spec: &FunctionSpec, generation: u64) -> Result<Instance, RuntimeError> {
        self.call()?;
        self.make(spec, generation, true).await
    }

    async fn start_created(&self, spec: &FunctionSpec, id: &InstanceId) -> Result<Instance, RuntimeError> {
        self.call()?;
        if let Err(e) = self.injected_failure(spec) {
            self.lock().remove(id);
            return Err(e);
        }
        let mut map = self.lock();
        let slot = map.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        if slot.info.state != InstanceState::Created {
            return Err(RuntimeError::InvalidInput {
                field: "instance".into(),
                message: format!("`{id}` is {:?}, not created", slot.info.state),
            });
        }
        slot.paused.send_replace(false);
        slot.info.state = InstanceState::Running;
        self.inner.starts.fetch_add(1, Ordering::SeqCst);
        Ok(slot.info.clone())
    }

    async fn stop(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        self.call()?;
        self.lock().remove(id);
        Ok(())
    }

    async fn pause(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        self.call()?;
        let mut map = self.lock();
        let slot = map.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        slot.paused.send_replace(true);
        slot.info.state = InstanceState::Paused;
        Ok(())
    }

    async fn resume(&self, id: &InstanceId) -> Result<Instance, RuntimeError> {
        self.call()?;
        let mut map = self.lock();
        let slot = map.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        if slot.info.state == InstanceState::Paused {
            self.inner.resumes.fetch_add(1, Ordering::SeqCst);
        }
        slot.paused.send_replace(false);
        slot.info.state = InstanceState::Running;
        Ok(slot.info.clone())
    }

    async fn list(&self) -> Result<Vec<Instance>, RuntimeError> {
        self.call()?;
        Ok(self.lock().values().map(|s| s.info.clone()).collect())
    }

    async fn logs(&self, id: &InstanceId, options: LogOptions) -> Result<LogStream, RuntimeError> {
        let map = self.lock();
        let slot = map.get(id).ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        Ok(slot.logs.stream(options))
    }

    async fn stats(&self, id: &InstanceId) -> Result<InstanceStats, RuntimeError> {
        if self.lock().contains_key(id) {
            Ok(InstanceStats::default())
        } else {
            Err(RuntimeError::NotFound(id.clone()))
        }
    }

    fn events(&self) -> RuntimeEvents {
        crate::support::runtime_events(&self.inner.events)
    }
}

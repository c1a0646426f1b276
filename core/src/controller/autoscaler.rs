//! The autoscaler: reads the edge's in-flight counts every tick and asks the
//! runtime worker for the number of instances each function needs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, topics};
use crate::model::{DesiredScale, FunctionName, FunctionRecord, Phase};
use crate::ports::{FunctionLoad, LoadSource, Queue, Store};
use crate::support::now_ms;

/// Settings of the [`Autoscaler`].
#[derive(Clone, Debug)]
pub struct AutoscalerConfig {
    /// How often it looks (default 1 s).
    pub tick: Duration,
    /// A lower instance count must hold this long before it scales down
    /// (default 30 s); scaling up is immediate.
    pub scale_down_window: Duration,
    /// A request for the same count is not repeated sooner than this, while the
    /// runtime catches up (default 5 s).
    pub repeat_after: Duration,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            scale_down_window: Duration::from_secs(30),
            repeat_after: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct Track {
    requests: u64,
    /// Running instances at the last look: more than that, unasked, means an
    /// activation woke the function (its request may not be counted yet).
    seen_running: u32,
    last_active: Option<Instant>,
    below_since: Option<Instant>,
    asked: Option<(u64, u32, Instant)>,
}

/// What to do about one function this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Leave it.
    Keep,
    /// Ask for this many running instances.
    Scale(u32),
}

/// Per function: desired = ceil(in-flight / target_concurrency), clamped to
/// `min..=max`. Up at once; down only after the count stayed lower for the
/// window; to `min` (which may be 0) once no request came for `idle_timeout`.
/// The running count it compares with is what the edge routes to (the ready
/// endpoints in the store), so activations and restarts are seen as they are.
pub struct Autoscaler {
    queue: Arc<dyn Queue>,
    store: Arc<dyn Store>,
    load: Arc<dyn LoadSource>,
    config: AutoscalerConfig,
    tracks: HashMap<FunctionName, Track>,
    cluster: Option<(Arc<super::cluster::Membership>, crate::model::Region)>,
}

impl Autoscaler {
    /// An autoscaler reading `load` and the specs in `store`, asking through `queue`.
    pub fn new(
        queue: Arc<dyn Queue>,
        store: Arc<dyn Store>,
        load: Arc<dyn LoadSource>,
        config: AutoscalerConfig,
    ) -> Self {
        Self { queue, store, load, config, tracks: HashMap::new(), cluster: None }
    }

    /// Scales only the functions this node owns among `membership`'s live
    /// nodes (`region` for specs that name none): the owner's edge sees all
    /// of a function's requests, those forwarded to it included.
    pub fn with_membership(
        mut self,
        membership: Arc<super::cluster::Membership>,
        region: crate::model::Region,
    ) -> Self {
        self.cluster = Some((membership, region));
        self
    }

    fn owns(&self, r: &FunctionRecord) -> bool {
        self.cluster.as_ref().is_none_or(|(m, region)| {
            !m.is_clustered() || m.owner_of(&r.spec, region).is_ok_and(|o| &o.id == m.id()) && m.fenced_for().is_none()
        })
    }

    /// Ticks until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(self.config.tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(e) = self.tick(Instant::now()).await {
                tracing::warn!(error = %e, "autoscaler tick failed");
            }
        }
    }

    /// One look at every function; returns what it asked for.
    pub async fn tick(&mut self, now: Instant) -> Result<Vec<(FunctionName, u32)>, crate::PlatformError> {
        let records = self.store.list().await?;
        let load: HashMap<FunctionName, FunctionLoad> = self.load.load().into_iter().collect();
        let mut asked = Vec::new();
        let ours: Vec<&FunctionRecord> = records.iter().filter(|r| !r.deleted && self.owns(r)).collect();
        for r in ours {
            let l = load.get(r.spec.name()).copied().unwrap_or_default();
            let track = self.tracks.entry(r.spec.name().clone()).or_default();
            if let Decision::Scale(n) = decide(r, l, track, &self.config, now) {
                let reason = format!("autoscaler: {} in flight", l.in_flight);
                // The ask is recorded first (the record is the intent; it
                // outlives a restart), only for the generation it was decided on.
                let generation = r.generation;
                let written = super::records::update(self.store.as_ref(), r.spec.name(), |rec| {
                    if rec.deleted || rec.generation != generation || rec.scale.running == Some(n) {
                        return false;
                    }
                    rec.scale = DesiredScale { running: Some(n), reason: reason.clone(), at_ms: now_ms() };
                    true
                })
                .await?;
                if written.is_none_or(|rec| rec.generation != generation) {
                    continue;
                }
                let event = Event::ScaleRequested { name: r.spec.name().clone(), generation, running: n, reason };
                self.queue.publish(topics::DEPLOYMENTS, event.to_message()).await?;
                asked.push((r.spec.name().clone(), n));
            }
        }
        self.tracks.retain(|name, _| records.iter().any(|r| !r.deleted && r.spec.name() == name));
        Ok(asked)
    }
}

fn decide(r: &FunctionRecord, l: FunctionLoad, t: &mut Track, c: &AutoscalerConfig, now: Instant) -> Decision {
    let s = r.spec.scaling();
    if l.requests != t.requests || l.in_flight > 0 || t.last_active.is_none() {
        t.last_active = Some(now);
    }
    t.requests = l.requests;
    // Only a generation that serves is scaled; a deploy in progress or failed is the runtime worker's.
    if r.status.generation != r.generation || !matches!(r.status.phase, Phase::Ready | Phase::Degraded) {
        t.below_since = None;
        return Decision::Keep;
    }
    let running = u32::try_from(r.status.endpoints.len()).unwrap_or(u32::MAX);
    if running > t.seen_running {
        t.last_active = Some(now);
    }
    t.seen_running = running;
    let target = s.target_concurrency().max(1);
    let needed = u32::try_from(l.in_flight).unwrap_or(u32::MAX).div_ceil(target).clamp(s.min(), s.max());
    let idle = t.last_active.is_some_and(|a| now.duration_since(a) >= s.idle_timeout());
    let want = if needed > running {
        t.below_since = None;
        needed
    } else if idle {
        s.min()
    } else {
        // Traffic came recently: keep at least one instance until the function is idle.
        let floor = needed.max(1).clamp(s.min(), s.max());
        if floor >= running {
            t.below_since = None;
            return Decision::Keep;
        }
        let since = *t.below_since.get_or_insert(now);
        if now.duration_since(since) < c.scale_down_window {
            return Decision::Keep;
        }
        floor
    };
    if want == running {
        return Decision::Keep;
    }
    if let Some((g, n, at)) = t.asked
        && g == r.generation
        && n == want
        && now.duration_since(at) < c.repeat_after
    {
        return Decision::Keep;
    }
    t.below_since = None;
    t.asked = Some((r.generation, want, now));
    Decision::Scale(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, FunctionSpecInput, FunctionStatus, ScalingInput};

    fn record(min: i64, max: i64, target: i64, idle_s: i64, running: usize) -> FunctionRecord {
        let mut input = FunctionSpecInput::image("f", "x", 8080);
        input.scaling = Some(ScalingInput {
            min: Some(min),
            max: Some(max),
            target_concurrency: Some(target),
            idle_timeout_s: Some(idle_s),
            ..Default::default()
        });
        let mut status = FunctionStatus::new(Phase::Ready, 1);
        status.endpoints =
            (0..running).map(|i| Endpoint::new(format!("127.0.0.1:{}", 1000 + i).parse().unwrap())).collect();
        FunctionRecord { status, ..FunctionRecord::new(input.validate().unwrap(), 1) }
    }

    fn load(in_flight: usize, requests: u64) -> FunctionLoad {
        FunctionLoad { in_flight, requests }
    }

    #[test]
    fn scales_up_at_once_clamped_to_max() {
        let c = AutoscalerConfig::default();
        let now = Instant::now();
        let mut t = Track::default();
        assert_eq!(decide(&record(0, 4, 10, 60, 1), load(25, 30), &mut t, &c, now), Decision::Scale(3));
        let mut t = Track::default();
        assert_eq!(decide(&record(0, 4, 10, 60, 1), load(500, 500), &mut t, &c, now), Decision::Scale(4));
        // The same ask is not repeated while the runtime catches up.
        assert_eq!(
            decide(&record(0, 4, 10, 60, 1), load(500, 501), &mut t, &c, now + Duration::from_secs(1)),
            Decision::Keep
        );
        assert_eq!(
            decide(&record(0, 4, 10, 60, 1), load(500, 502), &mut t, &c, now + Duration::from_secs(6)),
            Decision::Scale(4)
        );
    }

    #[test]
    fn scales_down_only_after_the_window_and_to_min_when_idle() {
        let c = AutoscalerConfig { scale_down_window: Duration::from_secs(30), ..Default::default() };
        let t0 = Instant::now();
        let mut t = Track::default();
        let r = record(0, 4, 10, 60, 3);
        // Busy, then quieter: 5 in flight needs 1, but only after 30 s below.
        assert_eq!(decide(&r, load(5, 10), &mut t, &c, t0), Decision::Keep);
        assert_eq!(decide(&r, load(5, 20), &mut t, &c, t0 + Duration::from_secs(29)), Decision::Keep);
        assert_eq!(decide(&r, load(5, 30), &mut t, &c, t0 + Duration::from_secs(31)), Decision::Scale(1));
        // Idle for idle_timeout: to min, which is 0.
        let r = record(0, 4, 10, 60, 1);
        let mut t = Track::default();
        assert_eq!(decide(&r, load(0, 7), &mut t, &c, t0), Decision::Keep);
        assert_eq!(decide(&r, load(0, 7), &mut t, &c, t0 + Duration::from_secs(59)), Decision::Keep);
        assert_eq!(decide(&r, load(0, 7), &mut t, &c, t0 + Duration::from_secs(61)), Decision::Scale(0));
        // A request in between resets the idle clock.
        let mut t = Track::default();
        assert_eq!(decide(&r, load(0, 7), &mut t, &c, t0), Decision::Keep);
        assert_eq!(decide(&r, load(0, 8), &mut t, &c, t0 + Duration::from_secs(50)), Decision::Keep);
        assert_eq!(decide(&r, load(0, 8), &mut t, &c, t0 + Duration::from_secs(100)), Decision::Keep);
        assert_eq!(decide(&r, load(0, 8), &mut t, &c, t0 + Duration::from_secs(111)), Decision::Scale(0));
        // min is kept when idle.
        let r = record(2, 4, 10, 60, 3);
        let mut t = Track::default();
        decide(&r, load(0, 1), &mut t, &c, t0);
        assert_eq!(decide(&r, load(0, 1), &mut t, &c, t0 + Duration::from_secs(61)), Decision::Scale(2));
    }

    #[test]
    fn an_activation_counts_as_activity() {
        let c = AutoscalerConfig::default();
        let t0 = Instant::now();
        let mut t = Track::default();
        assert_eq!(decide(&record(0, 4, 10, 60, 0), load(0, 3), &mut t, &c, t0), Decision::Keep);
        // Long idle, then an instance appears (the activator woke it) before its request is counted.
        let later = t0 + Duration::from_secs(600);
        assert_eq!(decide(&record(0, 4, 10, 60, 1), load(0, 3), &mut t, &c, later), Decision::Keep);
        assert_eq!(
            decide(&record(0, 4, 10, 60, 1), load(0, 3), &mut t, &c, later + Duration::from_secs(61)),
            Decision::Scale(0)
        );
    }

    #[test]
    fn leaves_deploys_in_progress_alone() {
        let c = AutoscalerConfig::default();
        let mut r = record(0, 4, 1, 60, 0);
        r.status.phase = Phase::Deploying;
        assert_eq!(decide(&r, load(50, 50), &mut Track::default(), &c, Instant::now()), Decision::Keep);
    }
}

//! The last hour of each function's traffic, kept in this process: what the
//! web UI draws without a Prometheus server.
//!
//! [`History`] is a `metrics` recorder. Installed beside the Prometheus one
//! (`metrics_util`'s fanout), it picks out the series it charts by name —
//! the edge's requests, errors and latency, and the runtime worker's cold
//! starts — and adds them to a ring of [`BUCKETS`] buckets of
//! [`BUCKET_SECS`] seconds per function. Instances are sampled into the same
//! ring by whoever knows them ([`History::sample_instances`]). Everything
//! else the recorder is handed is a no-op.
//!
//! Latency goes into a log-scale histogram per bucket (each bound 1.25 times
//! the last, 100 µs to about 2 min), so a quantile is within 12% of the
//! true value; buckets without requests hold no histogram at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Seconds per bucket.
pub const BUCKET_SECS: u64 = 30;
/// Buckets kept: one hour.
pub const BUCKETS: usize = 120;
/// Latency bins: bound `i` is `MIN_LATENCY_S * GROWTH^i`.
const BINS: usize = 64;
const MIN_LATENCY_S: f64 = 0.000_1;
const GROWTH: f64 = 1.25;

/// The series the recorder charts.
pub const REQUESTS: &str = "pilotlight_gateway_requests_total";
/// Requests the edge answered with an error, or the function with a 5xx.
pub const ERRORS: &str = "pilotlight_gateway_errors_total";
/// Seconds from a request's arrival to its answer's head.
pub const LATENCY: &str = "pilotlight_gateway_request_duration_seconds";
/// Seconds to bring an instance up for a waiting request, by `tier`.
pub const COLD_STARTS: &str = "pilotlight_cold_start_seconds";

#[derive(Clone, Default)]
struct Bucket {
    /// Which bucket of time (seconds since the epoch / [`BUCKET_SECS`]); a stale one is reset.
    slot: u64,
    requests: u64,
    errors: u64,
    latency: Option<Box<[u32; BINS]>>,
    cold_starts: BTreeMap<String, u32>,
    instances: Option<(u32, u32)>,
}

impl Bucket {
    fn at(&mut self, slot: u64) -> &mut Self {
        if self.slot != slot {
            *self = Self { slot, ..Self::default() };
        }
        self
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        let bins = self.latency.as_ref()?;
        let total: u64 = bins.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &n) in bins.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                // The bin's geometric middle.
                return Some(bound(i) / GROWTH.sqrt());
            }
        }
        Some(bound(BINS - 1))
    }
}

fn bound(i: usize) -> f64 {
    MIN_LATENCY_S * GROWTH.powi(i32::try_from(i + 1).unwrap_or(i32::MAX))
}

fn bin(seconds: f64) -> usize {
    if seconds.is_nan() || seconds <= MIN_LATENCY_S {
        return 0;
    }
    let i = ((seconds / MIN_LATENCY_S).ln() / GROWTH.ln()).floor();
    (i.max(0.0) as usize).min(BINS - 1)
}

type Ring = Box<[Bucket; BUCKETS]>;

/// One function's ring, locked on its own: a registered handle holds it, so
/// a request on the edge takes this lock and no map lookup or global lock.
type SharedRing = Arc<Mutex<Ring>>;

fn empty_ring() -> Ring {
    Box::new(std::array::from_fn(|_| Bucket::default()))
}

/// The last hour of every function that had traffic; see the module's doc.
#[derive(Clone, Default)]
pub struct History {
    functions: Arc<Mutex<HashMap<String, SharedRing>>>,
    /// The clock, in seconds; a test sets its own.
    clock: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
}

/// One bucket of a function's history, as the API answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPoint {
    /// The bucket's start, ms since the epoch.
    pub at_ms: u64,
    /// Requests per second over the bucket (the current one: so far).
    pub requests_per_s: f64,
    /// Requests in the bucket.
    pub requests: u64,
    /// Median latency in ms; absent without requests.
    pub p50_ms: Option<f64>,
    /// 99th-percentile latency in ms; absent without requests.
    pub p99_ms: Option<f64>,
    /// Errors (the edge's, and the function's 5xx) per request, 0 to 1; absent without requests.
    pub error_rate: Option<f64>,
    /// Running instances at the bucket's last sample; absent if none was taken.
    pub running: Option<u32>,
    /// Paused (warm) instances at the bucket's last sample.
    pub paused: Option<u32>,
    /// Cold starts in the bucket, by tier (`resume`, `start_created`, `create`).
    pub cold_starts: BTreeMap<String, u32>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("functions", &self.functions.lock().len()).finish_non_exhaustive()
    }
}

impl History {
    /// An empty history on the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty history on a clock of seconds since the epoch (for tests).
    pub fn with_clock(clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self { clock: Some(Arc::new(clock)), ..Self::default() }
    }

    fn now_s(&self) -> u64 {
        match &self.clock {
            Some(c) => c(),
            None => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }

    /// `function`'s ring, made on first use.
    fn ring(&self, function: &str) -> SharedRing {
        let mut functions = self.functions.lock();
        match functions.get(function) {
            Some(r) => Arc::clone(r),
            None => {
                Arc::clone(functions.entry(function.to_owned()).or_insert_with(|| Arc::new(Mutex::new(empty_ring()))))
            }
        }
    }

    /// Changes the current bucket of `ring`.
    fn write(&self, ring: &Mutex<Ring>, f: impl FnOnce(&mut Bucket)) {
        let slot = self.now_s() / BUCKET_SECS;
        let i = usize::try_from(slot % BUCKETS as u64).unwrap_or(0);
        f(ring.lock()[i].at(slot));
    }

    fn with_bucket(&self, function: &str, f: impl FnOnce(&mut Bucket)) {
        self.write(&self.ring(function), f);
    }

    /// Counts requests of `function`.
    pub fn add_requests(&self, function: &str, n: u64) {
        self.with_bucket(function, |b| b.requests += n);
    }

    /// Counts failed requests of `function`.
    pub fn add_errors(&self, function: &str, n: u64) {
        self.with_bucket(function, |b| b.errors += n);
    }

    /// Records one request's latency.
    pub fn observe_latency(&self, function: &str, seconds: f64) {
        self.with_bucket(function, |b| observe(b, seconds));
    }

    /// Counts one cold start of `tier`.
    pub fn cold_start(&self, function: &str, tier: &str) {
        self.with_bucket(function, |b| cold(b, tier));
    }

    /// Records how many instances run and how many are paused now.
    pub fn sample_instances(&self, function: &str, running: u32, paused: u32) {
        self.with_bucket(function, |b| b.instances = Some((running, paused)));
    }

    /// Forgets a function (deleted). A ring that registered handles still
    /// feed is emptied and kept, so a function made again under the name is
    /// charted from where those handles write.
    pub fn forget(&self, function: &str) {
        let mut functions = self.functions.lock();
        if let Some(ring) = functions.get(function) {
            if Arc::strong_count(ring) == 1 {
                functions.remove(function);
            } else {
                *ring.lock() = empty_ring();
            }
        }
    }

    /// The functions it holds.
    pub fn functions(&self) -> Vec<String> {
        self.functions.lock().keys().cloned().collect()
    }

    /// The last hour of `function`, oldest first, one point per bucket (empty
    /// buckets included, so a chart's time axis is even).
    pub fn points(&self, function: &str) -> Vec<HistoryPoint> {
        let now = self.now_s() / BUCKET_SECS;
        let shared = self.functions.lock().get(function).map(Arc::clone);
        let guard = shared.as_ref().map(|r| r.lock());
        let ring = guard.as_deref();
        let first = now.saturating_sub(BUCKETS as u64 - 1);
        (first..=now)
            .map(|slot| {
                let i = usize::try_from(slot % BUCKETS as u64).unwrap_or(0);
                let empty = Bucket { slot, ..Bucket::default() };
                let b = ring.map(|r| &r[i]).filter(|b| b.slot == slot).unwrap_or(&empty);
                let elapsed = if slot == now { (self.now_s() % BUCKET_SECS + 1).min(BUCKET_SECS) } else { BUCKET_SECS };
                let ms = |s: Option<f64>| s.map(|s| (s * 1_000_000.0).round() / 1000.0);
                HistoryPoint {
                    at_ms: slot * BUCKET_SECS * 1000,
                    requests_per_s: b.requests as f64 / elapsed as f64,
                    requests: b.requests,
                    p50_ms: ms(b.quantile(0.5)),
                    p99_ms: ms(b.quantile(0.99)),
                    error_rate: (b.requests > 0).then(|| (b.errors as f64 / b.requests as f64).min(1.0)),
                    running: b.instances.map(|i| i.0),
                    paused: b.instances.map(|i| i.1),
                    cold_starts: b.cold_starts.clone(),
                }
            })
            .collect()
    }
}

/// What one registered handle feeds.
enum Feed {
    Requests,
    Errors,
    Latency,
    ColdStart(String),
}

/// A registered counter or histogram: the function's ring, found once.
struct Handle {
    history: History,
    ring: SharedRing,
    feed: Feed,
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        match self.feed {
            Feed::Requests => self.history.write(&self.ring, |b| b.requests += value),
            Feed::Errors => self.history.write(&self.ring, |b| b.errors += value),
            Feed::Latency | Feed::ColdStart(_) => {}
        }
    }
    fn absolute(&self, _value: u64) {}
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        match &self.feed {
            Feed::Latency => self.history.write(&self.ring, |b| observe(b, value)),
            Feed::ColdStart(tier) => self.history.write(&self.ring, |b| cold(b, tier)),
            Feed::Requests | Feed::Errors => {}
        }
    }
}

fn observe(b: &mut Bucket, seconds: f64) {
    let bins = b.latency.get_or_insert_with(|| Box::new([0; BINS]));
    let i = bin(seconds);
    bins[i] = bins[i].saturating_add(1);
}

fn cold(b: &mut Bucket, tier: &str) {
    *b.cold_starts.entry(tier.to_owned()).or_default() += 1;
}

impl History {
    fn handle(&self, key: &Key) -> Option<Arc<Handle>> {
        let label = |name: &str| key.labels().find(|l| l.key() == name).map(|l| l.value().to_owned());
        let function = label("function")?;
        let feed = match key.name() {
            REQUESTS => Feed::Requests,
            ERRORS => Feed::Errors,
            LATENCY => Feed::Latency,
            COLD_STARTS => Feed::ColdStart(label("tier").unwrap_or_else(|| "unknown".into())),
            _ => return None,
        };
        Some(Arc::new(Handle { history: self.clone(), ring: self.ring(&function), feed }))
    }
}

impl Recorder for History {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.handle(key).map_or_else(Counter::noop, Counter::from_arc)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.handle(key).map_or_else(Histogram::noop, Histogram::from_arc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn clocked() -> (History, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(1_800_000_000));
        let n = Arc::clone(&now);
        (History::with_clock(move || n.load(Ordering::Relaxed)), now)
    }

    #[test]
    fn requests_errors_latency_and_cold_starts_land_in_the_current_bucket() {
        let (h, _) = clocked();
        let meta = metrics::Metadata::new("t", metrics::Level::INFO, None);
        let key = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            Key::from_parts(name, labels.iter().map(|(k, v)| metrics::Label::new(*k, *v)).collect::<Vec<_>>())
        };
        let requests = h.register_counter(&key(REQUESTS, &[("function", "hello")]), &meta);
        let errors = h.register_counter(&key(ERRORS, &[("function", "hello"), ("kind", "status_5xx")]), &meta);
        let latency = h.register_histogram(&key(LATENCY, &[("function", "hello")]), &meta);
        let cold = h.register_histogram(&key(COLD_STARTS, &[("function", "hello"), ("tier", "resume")]), &meta);
        let other = h.register_counter(&key("pilotlight_reconcile_total", &[("outcome", "ok")]), &meta);
        requests.increment(100);
        errors.increment(5);
        for i in 0..100 {
            latency.record(if i < 98 { 0.010 } else { 0.500 });
        }
        cold.record(0.02);
        other.increment(7);
        h.sample_instances("hello", 2, 3);
        let points = h.points("hello");
        assert_eq!(points.len(), BUCKETS);
        let last = points.last().unwrap();
        assert_eq!(last.requests, 100);
        assert_eq!(last.error_rate, Some(0.05));
        let p50 = last.p50_ms.unwrap();
        assert!((9.0..11.5).contains(&p50), "p50 {p50}");
        let p99 = last.p99_ms.unwrap();
        assert!((440.0..560.0).contains(&p99), "p99 {p99}");
        assert_eq!((last.running, last.paused), (Some(2), Some(3)));
        assert_eq!(last.cold_starts.get("resume"), Some(&1));
        assert!(points[..BUCKETS - 1].iter().all(|p| p.requests == 0 && p.p50_ms.is_none()));
        assert_eq!(h.functions(), vec!["hello".to_owned()]);
        // Deleted while the edge still holds its handles: emptied, and what they
        // count next (the function made again) is charted.
        h.forget("hello");
        assert_eq!(h.points("hello").iter().map(|p| p.requests).sum::<u64>(), 0);
        requests.increment(3);
        assert_eq!(h.points("hello").last().unwrap().requests, 3);
    }

    #[test]
    fn an_hour_later_the_old_buckets_are_gone_and_the_axis_moves_on() {
        let (h, now) = clocked();
        h.add_requests("hello", 30);
        let first = h.points("hello");
        assert_eq!(first.last().unwrap().requests, 30);
        now.fetch_add(BUCKET_SECS, Ordering::Relaxed);
        let second = h.points("hello");
        assert_eq!(second[BUCKETS - 2].requests, 30, "the last bucket is now the one before");
        assert_eq!(second[BUCKETS - 2].requests_per_s, 1.0);
        assert_eq!(second[BUCKETS - 1].at_ms - second[BUCKETS - 2].at_ms, BUCKET_SECS * 1000);
        now.fetch_add(BUCKET_SECS * BUCKETS as u64, Ordering::Relaxed);
        // Writing into the slot the old bucket had resets it.
        h.add_requests("hello", 1);
        assert_eq!(h.points("hello").iter().map(|p| p.requests).sum::<u64>(), 1);
        h.forget("hello");
        assert!(h.functions().is_empty());
    }

    #[test]
    fn a_quiet_function_costs_a_few_kilobytes() {
        // 120 buckets without requests: no latency bins are allocated.
        let ring = std::mem::size_of::<Bucket>() * BUCKETS;
        assert!(ring < 12 * 1024, "{ring} bytes per function");
        // A bucket with requests adds its bins.
        assert_eq!(std::mem::size_of::<[u32; BINS]>(), 256);
    }

    #[test]
    fn latency_bins_cover_the_range_and_stay_within_their_error() {
        assert_eq!(bin(0.0), 0);
        assert_eq!(bin(f64::NAN), 0);
        assert_eq!(bin(1e9), BINS - 1);
        for ms in [0.2, 1.0, 7.0, 50.0, 900.0, 30_000.0] {
            let mut b = Bucket::default();
            let bins = b.latency.get_or_insert_with(|| Box::new([0; BINS]));
            bins[bin(ms / 1000.0)] += 1;
            let got = b.quantile(0.5).unwrap() * 1000.0;
            assert!((got / ms - 1.0).abs() < 0.12, "{ms} ms came back as {got}");
        }
    }
}

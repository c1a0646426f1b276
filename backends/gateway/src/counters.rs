//! Per-function counters. They outlive table swaps: the autoscaler reads the
//! in-flight count, and metrics handles are registered once per function, not
//! per request.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use pilotlight_core::model::FunctionName;
use tokio::sync::Semaphore;

/// What can go wrong with a proxied request, as the `kind` label.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ErrorKind {
    Timeout,
    Upstream,
    NoInstance,
    /// The function answered, with a 5xx.
    Status5xx,
}

pub(crate) struct FunctionCounters {
    in_flight: AtomicUsize,
    /// Requests started, ever: the autoscaler tells idle from busy by it.
    started: AtomicU64,
    /// Requests allowed to wait for an instance at once.
    pub(crate) waiting: Semaphore,
    last_activation: Mutex<Option<Instant>>,
    last_unreachable: Mutex<Option<Instant>>,
    requests: Counter,
    errors: [Counter; 4],
    in_flight_gauge: Gauge,
    latency: Histogram,
}

impl FunctionCounters {
    pub(crate) fn new(name: &FunctionName, max_waiting: usize) -> Self {
        let f = name.to_string();
        let error = |kind: &'static str| metrics::counter!("pilotlight_gateway_errors_total", "function" => f.clone(), "kind" => kind);
        Self {
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            waiting: Semaphore::new(max_waiting),
            last_activation: Mutex::new(None),
            last_unreachable: Mutex::new(None),
            requests: metrics::counter!("pilotlight_gateway_requests_total", "function" => f.clone()),
            errors: [error("timeout"), error("upstream"), error("no_instance"), error("status_5xx")],
            in_flight_gauge: metrics::gauge!("pilotlight_gateway_in_flight", "function" => f.clone()),
            latency: metrics::histogram!("pilotlight_gateway_request_duration_seconds", "function" => f),
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    pub(crate) fn start(&self) {
        self.requests.increment(1);
        self.started.fetch_add(1, Ordering::Relaxed);
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.in_flight_gauge.set(n as f64);
    }

    pub(crate) fn finish(&self) {
        let n = self.in_flight.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        self.in_flight_gauge.set(n as f64);
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].increment(1);
    }

    pub(crate) fn latency(&self, d: Duration) {
        self.latency.record(d.as_secs_f64());
    }

    /// Whether to ask the activator again: at most once per `every`.
    pub(crate) fn should_activate(&self, every: Duration) -> bool {
        at_most_once_per(&self.last_activation, every)
    }

    /// The function lost its last endpoint: the next held request asks the
    /// activator at once, however recently an earlier one did.
    pub(crate) fn forget_activation(&self) {
        *self.last_activation.lock() = None;
    }

    /// Whether to report the function's instances unreachable: at most once per `every`.
    pub(crate) fn should_report_unreachable(&self, every: Duration) -> bool {
        at_most_once_per(&self.last_unreachable, every)
    }
}

fn at_most_once_per(last: &Mutex<Option<Instant>>, every: Duration) -> bool {
    let mut last = last.lock();
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < every) {
        return false;
    }
    *last = Some(now);
    true
}

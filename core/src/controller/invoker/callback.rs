//! Delivering an invocation's outcome to its `X-Callback-Url`.
//!
//! When an invocation reaches a final state with a callback URL, the same
//! compare-and-set that records the outcome marks its callback pending, so
//! the delivery is as durable as the invocation. The invoker's scan finds it,
//! claims it (its next attempt moves past the timeout, so a delivery cut by a
//! crash is made again), POSTs the function's response with headers that say
//! what happened, and records the attempt: delivered on a 2xx, retried with
//! backoff on a connection failure, a timeout, 408, 429 or a 5xx, and failed
//! (with the reason) on any other answer or after the last attempt. Each
//! invocation so ends with exactly one final callback outcome.

use std::sync::Arc;
use std::time::Duration;

use super::Invoker;
use crate::model::{CallbackState, Invocation, InvocationAttempt, InvocationState};
use crate::ports::{DispatchError, StoreError};
use crate::support::now_ms;

/// A callback attempt's outcome, as the invoker classifies it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CallbackVerdict {
    Delivered,
    /// Not worth another attempt: the receiver refused it.
    Refused,
    Retry,
}

pub(super) fn callback_verdict(result: &Result<u16, DispatchError>) -> CallbackVerdict {
    match result {
        Ok(200..=299) => CallbackVerdict::Delivered,
        Ok(408 | 429 | 500..=599) | Err(_) => CallbackVerdict::Retry,
        Ok(_) => CallbackVerdict::Refused,
    }
}

fn state_name(state: InvocationState) -> &'static str {
    match state {
        InvocationState::Queued => "queued",
        InvocationState::Running => "running",
        InvocationState::Succeeded => "succeeded",
        InvocationState::Failed => "failed",
        InvocationState::Dead => "dead",
    }
}

/// The headers of the callback of `inv` (a final invocation). Every value is
/// made here from numbers, names and ids, or copied from the function's own
/// `Content-Type`, which was a valid header value when it was received.
pub(super) fn callback_headers(inv: &Invocation, attempt: u32) -> Vec<(String, String)> {
    let took_ms = inv.finished_ms.unwrap_or(inv.created_ms).saturating_sub(inv.created_ms);
    let mut headers = vec![
        ("x-call-id".to_owned(), inv.id.to_string()),
        ("x-function-name".to_owned(), inv.function().to_string()),
        ("x-invocation-state".to_owned(), state_name(inv.state).to_owned()),
        ("x-duration-seconds".to_owned(), format!("{:.3}", Duration::from_millis(took_ms).as_secs_f64())),
        ("x-attempts".to_owned(), inv.attempts.len().to_string()),
        ("x-callback-attempt".to_owned(), attempt.to_string()),
    ];
    let content_type = inv
        .response
        .as_ref()
        .and_then(|r| r.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.clone()));
    headers.push(("content-type".to_owned(), content_type.unwrap_or_else(|| "application/octet-stream".to_owned())));
    if let Some(r) = &inv.response {
        headers.push(("x-function-status".to_owned(), r.status.to_string()));
        if r.truncated {
            headers.push(("x-body-truncated".to_owned(), "true".to_owned()));
        }
    }
    headers
}

impl Invoker {
    /// Claims the pending callback of `inv` and starts its delivery, when
    /// there is room among the deliveries under way.
    pub(super) async fn start_callback(self: &Arc<Self>, inv: Invocation, now: u64) -> Result<(), StoreError> {
        if *self.calling.lock() >= self.config.callback_concurrency.max(1) {
            self.hints.lock().callbacks.insert((now, inv.id));
            return Ok(());
        }
        let lease = u64::try_from((self.config.callback_timeout + Duration::from_secs(5)).as_millis()).unwrap_or(0);
        let mut claimed = false;
        let inv =
            self.invocations
                .update(&inv.id, |i| {
                    claimed = i.callback.as_ref().is_some_and(|c| {
                        c.state == CallbackState::Pending && c.next_attempt_ms.is_none_or(|t| t <= now)
                    });
                    if let Some(c) = i.callback.as_mut().filter(|_| claimed) {
                        c.next_attempt_ms = Some(now.saturating_add(lease));
                    }
                    claimed
                })
                .await?;
        let Some(inv) = inv.filter(|_| claimed) else { return Ok(()) };
        *self.calling.lock() += 1;
        let me = Arc::clone(self);
        self.attempts.lock().spawn(async move { me.deliver(inv).await });
        Ok(())
    }

    /// One callback attempt, then its record.
    async fn deliver(self: Arc<Self>, inv: Invocation) {
        let number = inv.callback.as_ref().map_or(0, |c| u32::try_from(c.attempts.len()).unwrap_or(u32::MAX)) + 1;
        let started = now_ms();
        let began = tokio::time::Instant::now();
        let result = match &inv.callback_url {
            Some(url) if self.config.callback_hosts.allows(url) => {
                let body = inv.response.as_ref().map(|r| r.body.clone()).unwrap_or_default();
                self.callbacks.post(url, callback_headers(&inv, number), body, self.config.callback_timeout).await
            }
            Some(url) => Err(DispatchError::Failed(format!(
                "host `{}` is no longer in the callback allow-list; not sent",
                url.host()
            ))),
            None => Err(DispatchError::Failed("no callback URL".to_owned())),
        };
        let verdict = match &result {
            Err(DispatchError::Failed(_)) => CallbackVerdict::Refused,
            other => callback_verdict(other),
        };
        let attempt = InvocationAttempt {
            number,
            started_ms: started,
            duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            status: result.as_ref().ok().copied(),
            error: result.as_ref().err().map(ToString::to_string),
        };
        let backoff = self.config.backoff(number);
        let max_attempts = self.config.callback_max_attempts.max(1);
        let recorded = self
            .invocations
            .update(&inv.id, |i| {
                let Some(c) = i.callback.as_mut() else { return false };
                // A later attempt (this one's claim ran out) or a redrive took over.
                if c.state != CallbackState::Pending || c.attempts.iter().any(|a| a.number >= number) {
                    return false;
                }
                c.attempts.push(attempt.clone());
                let what =
                    || attempt.error.clone().unwrap_or_else(|| format!("status {}", attempt.status.unwrap_or(0)));
                match verdict {
                    CallbackVerdict::Delivered => {
                        c.state = CallbackState::Delivered;
                        c.next_attempt_ms = None;
                    }
                    CallbackVerdict::Refused => {
                        c.state = CallbackState::Failed;
                        c.next_attempt_ms = None;
                        c.reason = Some(format!("the receiver refused it: {}", what()));
                    }
                    CallbackVerdict::Retry if number >= max_attempts => {
                        c.state = CallbackState::Failed;
                        c.next_attempt_ms = None;
                        c.reason = Some(format!("{number} attempts failed; the last: {}", what()));
                    }
                    CallbackVerdict::Retry => {
                        let wait = u64::try_from(backoff.as_millis()).unwrap_or(0);
                        c.next_attempt_ms = Some(now_ms().saturating_add(wait));
                    }
                }
                true
            })
            .await;
        match recorded {
            Ok(Some(i)) => {
                if let Some(at) = super::due_at(&i) {
                    self.hints.lock().add(&i, at);
                }
                let outcome = match i.callback.as_ref().map(|c| c.state) {
                    Some(CallbackState::Delivered) => "delivered",
                    Some(CallbackState::Failed) => "failed",
                    _ => "retried",
                };
                metrics::counter!("pilotlight_invocation_callbacks_total", "function" => i.function().to_string(), "outcome" => outcome)
                    .increment(1);
                if outcome == "failed" {
                    tracing::warn!(id = %i.id, reason = ?i.callback.as_ref().and_then(|c| c.reason.as_deref()), "callback failed");
                }
            }
            Ok(None) => tracing::debug!(id = %inv.id, "invocation removed while its callback was sent"),
            Err(e) => {
                tracing::warn!(id = %inv.id, error = %e, "cannot record a callback attempt; it will be sent again")
            }
        }
        *self.calling.lock() -= 1;
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        CallbackDelivery, CallbackUrl, FunctionName, InvocationId, InvocationRequest, InvocationResponse,
    };

    #[test]
    fn what_a_callback_retries() {
        assert_eq!(callback_verdict(&Ok(200)), CallbackVerdict::Delivered);
        assert_eq!(callback_verdict(&Ok(204)), CallbackVerdict::Delivered);
        for s in [408, 429, 500, 502, 503] {
            assert_eq!(callback_verdict(&Ok(s)), CallbackVerdict::Retry, "{s}");
        }
        for s in [301, 400, 401, 404, 410] {
            assert_eq!(callback_verdict(&Ok(s)), CallbackVerdict::Refused, "{s}");
        }
        assert_eq!(callback_verdict(&Err(DispatchError::Connect("refused".into()))), CallbackVerdict::Retry);
        assert_eq!(callback_verdict(&Err(DispatchError::Timeout(Duration::from_secs(1)))), CallbackVerdict::Retry);
    }

    #[test]
    fn the_headers_say_what_happened() {
        let function = FunctionName::new("f").unwrap();
        let id = InvocationId::generate(&function, 1_000).unwrap();
        let request = InvocationRequest::new("POST", "/", vec![], vec![]).unwrap();
        let mut inv = Invocation::queued(id.clone(), request, Some(CallbackUrl::new("http://127.0.0.1:9/cb").unwrap()));
        inv.state = InvocationState::Succeeded;
        inv.finished_ms = Some(3_500);
        inv.attempts.push(InvocationAttempt {
            number: 1,
            started_ms: 1_000,
            duration_ms: 5,
            status: Some(201),
            error: None,
        });
        inv.response = Some(InvocationResponse {
            status: 201,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"ok".to_vec(),
            truncated: true,
        });
        inv.callback = Some(CallbackDelivery::pending(3_500));
        let h: std::collections::HashMap<_, _> = callback_headers(&inv, 2).into_iter().collect();
        assert_eq!(h["x-call-id"], id.as_str());
        assert_eq!(h["x-function-name"], "f");
        assert_eq!(h["x-function-status"], "201");
        assert_eq!(h["x-invocation-state"], "succeeded");
        assert_eq!(h["x-duration-seconds"], "2.500");
        assert_eq!(h["x-attempts"], "1");
        assert_eq!(h["x-callback-attempt"], "2");
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["x-body-truncated"], "true");
        inv.response = None;
        inv.state = InvocationState::Dead;
        let h: std::collections::HashMap<_, _> = callback_headers(&inv, 1).into_iter().collect();
        assert!(!h.contains_key("x-function-status"), "no answer, no status");
        assert_eq!(h["x-invocation-state"], "dead");
        assert_eq!(h["content-type"], "application/octet-stream");
    }
}

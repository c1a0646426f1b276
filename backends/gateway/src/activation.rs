//! Holding requests for a function with no ready instance while it is woken.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::counters::ErrorKind;
use crate::responses;
use crate::server::Shared;
use crate::table::RouteState;

/// Asks the activator again at most this often while requests wait.
const REACTIVATE_EVERY: Duration = Duration::from_secs(1);

/// Waits until the function's route has an endpoint and returns that route;
/// or answers 503 (queue full, deadline passed) or 404 (the function went away).
pub(crate) async fn wait(shared: &Shared, route: Arc<RouteState>) -> Result<Arc<RouteState>, Response<Full<Bytes>>> {
    let counters = Arc::clone(&route.counters);
    let retry_after = u32::try_from(shared.config.activation_timeout.as_secs().clamp(1, 60)).unwrap_or(1);
    let Ok(_permit) = counters.waiting.try_acquire() else {
        counters.error(ErrorKind::NoInstance);
        return Err(responses::unavailable(
            &format!("too many requests are waiting for `{}` to start", route.name),
            retry_after,
        ));
    };
    let deadline = tokio::time::Instant::now() + shared.config.activation_timeout;
    let mut changes = shared.version.subscribe();
    loop {
        let current = shared.table.load().get(route.name.as_str()).cloned();
        match current {
            None => {
                return Err(responses::error(
                    StatusCode::NOT_FOUND,
                    "unknown_host",
                    &format!("`{}` was removed while the request waited", route.name),
                ));
            }
            Some(r) if !r.endpoints.is_empty() => {
                tracing::debug!(function = %route.name, "a held request is released to an endpoint");
                return Ok(r);
            }
            Some(_) => {}
        }
        if counters.should_activate(REACTIVATE_EVERY) {
            let activator = shared.activator.read().clone();
            match activator {
                Some(a) => {
                    let name = route.name.clone();
                    tracing::debug!(function = %name, "a request is held; asking the activator");
                    tokio::spawn(async move {
                        if let Err(e) = a.activate(&name).await {
                            tracing::warn!(function = %name, error = %e, "activation failed");
                        }
                    });
                }
                None => tracing::debug!(function = %route.name, "no activator; waiting for a route update"),
            }
        }
        if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
            counters.error(ErrorKind::NoInstance);
            return Err(responses::unavailable(
                &format!(
                    "`{}` has no ready instance and none started within {:?}",
                    route.name, shared.config.activation_timeout
                ),
                retry_after,
            ));
        }
    }
}

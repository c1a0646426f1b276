//! Holding requests for a function with no ready instance while it is woken.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use pilotlight_core::ports::Activation;

use crate::counters::ErrorKind;
use crate::responses;
use crate::server::Shared;
use crate::table::RouteState;

/// Asks the activator again at most this often while requests wait.
const REACTIVATE_EVERY: Duration = Duration::from_secs(1);

/// Waits until the function's route has an endpoint and returns that route;
/// or answers 503 (queue full, deadline passed) or 404 (the function went away).
pub(crate) async fn wait(
    shared: &Arc<Shared>,
    route: Arc<RouteState>,
) -> Result<Arc<RouteState>, Response<Full<Bytes>>> {
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
                    let shared = Arc::clone(shared);
                    tracing::debug!(function = %name, "a request is held; asking the activator");
                    // Its own task: a client that goes away does not cut an activation short.
                    tokio::spawn(async move {
                        match a.activate(&name).await {
                            Ok(Activation::Ready(endpoints)) => shared.admit(&name, &endpoints).await,
                            Ok(_) => {}
                            Err(e) => tracing::warn!(function = %name, error = %e, "activation failed"),
                        }
                    });
                }
                None => tracing::debug!(function = %route.name, "no activator; waiting for a route update"),
            }
        }
        // Look again on a table change, and at least once per REACTIVATE_EVERY: a
        // request that came within that time of an earlier activation (which the
        // function has since been scaled down from) must ask again itself.
        let look_again = deadline.min(tokio::time::Instant::now() + REACTIVATE_EVERY);
        if tokio::time::timeout_at(look_again, changes.changed()).await.is_ok() || look_again < deadline {
            continue;
        }
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

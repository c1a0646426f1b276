//! Rolling functions whose secrets changed.
//!
//! Level-triggered: each record keeps the digest of the secret revisions its
//! generation started with; a pass compares it with the Store's now and, where
//! they differ, writes a new generation of the same spec (a zero-downtime
//! update: the new instances, which read the new values, are ready before the
//! old ones drain). A crash between setting a secret and the roll loses
//! nothing: the next pass finds the difference again.

use std::sync::Weak;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Inner, Platform};
use crate::controller::error::PlatformError;
use crate::controller::secrets::{any_secret, secrets_digest};
use crate::events::Event;
use crate::model::{FunctionName, FunctionRecord};
use crate::ports::StoreError;
use crate::support::now_ms;

impl Platform {
    /// One secrets pass: every function whose secrets were set since its
    /// generation started rolls to a new generation. Returns those rolled.
    pub async fn roll_secrets(&self) -> Result<Vec<FunctionName>, PlatformError> {
        let store = &self.inner.store;
        let mut rolled = Vec::new();
        // With no secret at all (most platforms) there is nothing to compare:
        // one tiny read instead of a list of every function per period.
        if !any_secret(store.as_ref()).await? {
            return Ok(rolled);
        }
        for previous in store.list().await? {
            if previous.deleted || previous.spec.secrets().is_empty() {
                continue;
            }
            let digest = secrets_digest(store.as_ref(), previous.spec.secrets()).await?;
            if digest == previous.secrets_digest {
                continue;
            }
            let name = previous.spec.name().clone();
            let generation = previous.generation + 1;
            let mut record = FunctionRecord { generation, secrets_digest: digest, ..previous.clone() };
            record.scale.reason = "a secret changed".into();
            record.scale.at_ms = now_ms();
            record.status.phase = record.status.derive_phase(generation, false);
            let event = Event::DeployRequested { spec: record.spec.clone(), generation };
            match self.write_then_publish(Some(previous), record, event).await {
                Ok(()) => {
                    tracing::info!(function = %name, generation, "a secret changed: rolling to a new generation");
                    rolled.push(name);
                }
                // Someone wrote the record in between: the next pass looks again.
                Err(PlatformError::Store(StoreError::Conflict { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(rolled)
    }

    /// Runs [`roll_secrets`](Self::roll_secrets) every `period` until
    /// `cancel`, or until the platform is dropped (it holds it weakly, so the
    /// platform's own task set does not keep it alive).
    pub(super) async fn run_secret_rolls(inner: Weak<Inner>, period: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            let Some(inner) = inner.upgrade() else { return };
            if let Err(e) = (Platform { inner }).roll_secrets().await {
                tracing::warn!(error = %e, "secrets pass failed; trying again");
            }
        }
    }
}

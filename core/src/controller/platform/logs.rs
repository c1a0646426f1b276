//! The log streams of a function's instances, merged as lines arrive.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Platform;
use crate::controller::error::PlatformError;
use crate::model::{FunctionName, InstanceId, InstanceState};
use crate::ports::{LogLine, LogOptions, Runtime, RuntimeError, Store};

impl Platform {
    /// The logs of the function's instances, merged as lines arrive. `tail`
    /// applies to each instance present at the call. With `follow`, the
    /// stream stays open until the function is deleted (or the reader goes),
    /// and instances that start later join it with everything they wrote.
    pub async fn logs(
        &self,
        name: &FunctionName,
        options: LogOptions,
    ) -> Result<futures::stream::BoxStream<'static, Result<InstanceLogLine, RuntimeError>>, PlatformError> {
        use futures::StreamExt;
        if self.get(name).await?.is_none() {
            return Err(PlatformError::NotFound(name.clone()));
        }
        let Some(runtime) = &self.inner.runtime else {
            return Err(PlatformError::Unsupported(
                "this process runs no runtime, so it holds no logs; ask the process that runs the instances".into(),
            ));
        };
        // Subscribed before the first listing, so an instance that starts
        // right after it is seen by the follow below.
        let changed = self.inner.changed.subscribe();
        let mut streams = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for instance in runtime.list().await?.into_iter().filter(|i| &i.function == name) {
            // A created (not started) instance has written nothing; it joins once it runs.
            if instance.state == InstanceState::Created {
                continue;
            }
            match runtime.logs(&instance.id, options).await {
                Ok(s) => {
                    seen.insert(instance.id.clone());
                    streams.push(labelled(instance.id, s));
                }
                // It stopped between the list and now: it has nothing to say.
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let merged = futures::stream::select_all(streams);
        if !options.follow {
            return Ok(merged.boxed());
        }
        let follow = FollowedLogs {
            runtime: Arc::clone(runtime),
            store: Arc::clone(&self.inner.store),
            name: name.clone(),
            changed,
            seen,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(follow.run(merged, tx));
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
    }
}

/// One log line of one instance, as [`Platform::logs`] yields it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceLogLine {
    /// The instance that wrote it.
    pub instance: InstanceId,
    /// The line.
    #[serde(flatten)]
    pub line: LogLine,
}

type LogLines = futures::stream::BoxStream<'static, Result<InstanceLogLine, RuntimeError>>;

fn labelled(id: InstanceId, s: crate::ports::LogStream) -> LogLines {
    use futures::StreamExt;
    s.map(move |line| line.map(|line| InstanceLogLine { instance: id.clone(), line })).boxed()
}

/// A followed log stream that adds instances as they start: on every status
/// change it lists the function's instances again and joins the new ones.
struct FollowedLogs {
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    name: FunctionName,
    changed: watch::Receiver<u64>,
    seen: std::collections::HashSet<InstanceId>,
}

impl FollowedLogs {
    async fn run(
        mut self,
        mut merged: futures::stream::SelectAll<LogLines>,
        tx: tokio::sync::mpsc::Sender<Result<InstanceLogLine, RuntimeError>>,
    ) {
        use futures::StreamExt;
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                line = merged.next(), if !merged.is_empty() => {
                    if let Some(line) = line
                        && tx.send(line).await.is_err()
                    {
                        return;
                    }
                }
                changed = self.changed.changed() => {
                    if changed.is_err() {
                        return; // the platform is gone
                    }
                    match self.store.get(&self.name).await {
                        Ok(Some(r)) if !r.deleted => {}
                        Ok(_) => return, // deleted: nothing more will come
                        Err(e) => {
                            tracing::debug!(error = %e, "followed logs: cannot read the function; trying at the next change");
                            continue;
                        }
                    }
                    let Ok(list) = self.runtime.list().await else { continue };
                    for i in list {
                        if i.function != self.name || i.state == InstanceState::Created || self.seen.contains(&i.id) {
                            continue;
                        }
                        // From its first line: it started after the reader asked.
                        if let Ok(s) = self.runtime.logs(&i.id, LogOptions { tail: None, follow: true }).await {
                            self.seen.insert(i.id.clone());
                            merged.push(labelled(i.id, s));
                        }
                    }
                }
            }
        }
    }
}

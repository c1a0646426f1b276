//! The records' changes, for nodes that share this Store.

use std::time::Duration;

use pilotlight_core::model::{FunctionName, FunctionRecord};

use crate::EtcdStore;

/// The records' changes, from etcd's watch of `<prefix>/functions/`: a
/// background task forwards every record written (and the name of every one deleted),
/// and watches again (from where it stopped) after an error. A reader that
/// falls behind by more than 1,024 changes loses some: the periodic pass
/// repairs that.
impl pilotlight_core::ports::StoreChanges for EtcdStore {
    fn changes(&self) -> futures::stream::BoxStream<'static, (FunctionName, Option<FunctionRecord>)> {
        use futures::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel::<(FunctionName, Option<FunctionRecord>)>(1024);
        let mut client = self.client.clone();
        let prefix = format!("{}/functions/", self.prefix);
        tokio::spawn(async move {
            let mut from = 0i64;
            while !tx.is_closed() {
                let mut options = etcd_client::WatchOptions::new().with_prefix();
                if from > 0 {
                    options = options.with_start_revision(from);
                }
                match client.watch(prefix.as_str(), Some(options)).await {
                    Ok(mut stream) => loop {
                        let next = tokio::select! {
                            () = tx.closed() => return,
                            n = stream.message() => n,
                        };
                        match next {
                            Ok(Some(resp)) => {
                                for e in resp.events() {
                                    let Some(kv) = e.kv() else { continue };
                                    from = from.max(kv.mod_revision() + 1);
                                    let key = String::from_utf8_lossy(kv.key());
                                    let Some(name) = key.strip_prefix(&prefix).and_then(|n| n.parse().ok()) else {
                                        continue;
                                    };
                                    let record = match e.event_type() {
                                        etcd_client::EventType::Put => serde_json::from_slice(kv.value()).ok(),
                                        etcd_client::EventType::Delete => None,
                                    };
                                    let _ = tx.try_send((name, record));
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "the watch of the records failed; watching again");
                                break;
                            }
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot watch the records; trying again"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) }).boxed()
    }
}

use parking_lot::Mutex;
use std::collections::VecDeque;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::now_ms;
use crate::ports::{LogLine, LogOptions, LogSource, LogStream};

/// The last lines an instance wrote, plus a feed of new ones for `follow`.
///
/// Followers' streams end when the buffer is dropped (the instance is gone). A
/// follower that falls more than `capacity` lines behind is told how many it
/// missed instead of blocking the writer.
pub struct LogBuffer {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: usize,
    tx: broadcast::Sender<LogLine>,
}

impl LogBuffer {
    /// Keeps the last `capacity` lines (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            lines: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            tx: broadcast::Sender::new(capacity),
        }
    }

    /// Records one line.
    pub fn push(&self, source: LogSource, line: impl Into<String>) {
        let line = LogLine { source, line: line.into(), at_ms: now_ms() };
        let mut lines = self.lines.lock();
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(line.clone());
        // Sending under the lock keeps followers' order the same as the buffer's.
        let _ = self.tx.send(line);
    }

    /// The last `tail` lines (all kept lines when `None`).
    pub fn tail(&self, tail: Option<usize>) -> Vec<LogLine> {
        let lines = self.lines.lock();
        let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
        lines.iter().skip(skip).cloned().collect()
    }

    /// The kept lines as `options` asks, followed by new ones when `options.follow`.
    pub fn stream(&self, options: LogOptions) -> LogStream {
        // Subscribe while holding the lock so no line falls between the snapshot and the feed.
        let lines = self.lines.lock();
        let rx = options.follow.then(|| self.tx.subscribe());
        let skip = options.tail.map_or(0, |n| lines.len().saturating_sub(n));
        let snapshot: Vec<_> = lines.iter().skip(skip).cloned().map(Ok).collect();
        drop(lines);
        let head = futures::stream::iter(snapshot);
        match rx {
            None => head.boxed(),
            Some(rx) => head
                .chain(BroadcastStream::new(rx).map(|r| match r {
                    Ok(line) => Ok(line),
                    Err(BroadcastStreamRecvError::Lagged(n)) => Ok(LogLine {
                        source: LogSource::Stderr,
                        line: format!("[pilotlight: {n} log lines skipped, the reader fell behind]"),
                        at_ms: now_ms(),
                    }),
                }))
                .boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tail_and_follow() {
        let buf = std::sync::Arc::new(LogBuffer::new(3));
        for i in 0..5 {
            buf.push(LogSource::Stdout, format!("l{i}"));
        }
        let got: Vec<_> = buf.tail(Some(2)).into_iter().map(|l| l.line).collect();
        assert_eq!(got, ["l3", "l4"]);
        assert_eq!(buf.tail(None).len(), 3);
        let mut s = buf.stream(LogOptions { tail: Some(1), follow: true });
        buf.push(LogSource::Stderr, "new");
        assert_eq!(s.next().await.unwrap().unwrap().line, "l4");
        assert_eq!(s.next().await.unwrap().unwrap().line, "new");
        drop(buf);
        assert!(s.next().await.is_none(), "follow ends when the instance is gone");
    }
}

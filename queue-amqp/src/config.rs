//! Settings of the AMQP queue, from a struct or a URL.

use std::time::Duration;

use pilotlight_core::ports::QueueError;
use pilotlight_core::support::RetryPolicy;

/// Settings of a [`crate::AmqpQueue`].
#[derive(Clone, Debug)]
pub struct AmqpConfig {
    /// The AMQP URI as lapin takes it: `amqp://user:pass@host:5672/%2f?heartbeat=10`
    /// (`amqps://` for TLS).
    pub uri: String,
    /// Put before every exchange and queue name, so several platforms can
    /// share one broker (e.g. `pilotlight.`).
    pub prefix: String,
    /// Deliveries of one message before it is dead-lettered.
    pub max_attempts: u32,
    /// First retry after this long, doubling per attempt...
    pub backoff_base: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// How long `publish` keeps trying (reconnecting) before it fails retryably.
    pub publish_timeout: Duration,
    /// Unacknowledged messages the broker sends one consumer ahead.
    pub prefetch: u16,
    /// Pause between reconnection attempts.
    pub reconnect_delay: Duration,
    /// Delete a group's queue after it has had no consumer for this long
    /// (`x-expires`). `None` (the default): keep it, and what it holds, forever.
    pub idle_queue_expiry: Option<Duration>,
}

impl AmqpConfig {
    /// Defaults for `uri`: prefix `pilotlight.`, 5 attempts, backoff 200 ms
    /// doubling to 30 s, 30 s to publish, prefetch 64.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            prefix: "pilotlight.".into(),
            max_attempts: 5,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(30),
            prefetch: 64,
            reconnect_delay: Duration::from_millis(500),
            idle_queue_expiry: None,
        }
    }

    /// An AMQP URI whose query may also carry pilotlight's own keys
    /// (`prefix`, `max_attempts`, `prefetch`); the rest of the query
    /// (`heartbeat`, `frame_max`, ...) stays for lapin.
    pub fn from_url(url: &str) -> Result<Self, QueueError> {
        let invalid = |field: &str, message: String| QueueError::InvalidInput { field: field.into(), message };
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(invalid("url", format!("must start with amqp:// or amqps:// (got {url:?})")));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut c = Self::new(base);
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| invalid("url", format!("`{pair}` is not key=value")))?;
            let number = || v.parse::<u64>().map_err(|_| invalid("url", format!("`{k}` must be a number (got {v:?})")));
            match k {
                "prefix" => c.prefix = v.to_owned(),
                "max_attempts" => c.max_attempts = number()? as u32,
                "prefetch" => c.prefetch = number()?.min(u64::from(u16::MAX)) as u16,
                _ => rest.push(pair),
            }
        }
        if !rest.is_empty() {
            c.uri = format!("{base}?{}", rest.join("&"));
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks every setting, naming the field on the first bad one.
    pub fn validate(&self) -> Result<(), QueueError> {
        let invalid = |field: &str, message: String| Err(QueueError::InvalidInput { field: field.into(), message });
        if self.uri.parse::<lapin::uri::AMQPUri>().is_err() {
            return invalid("uri", format!("is not an AMQP URI (got {:?})", redact(&self.uri)));
        }
        if !self.prefix.is_empty() {
            pilotlight_core::ports::check_topic_name("prefix", &self.prefix)?;
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return invalid("max_attempts", format!("must be 1-1000 (got {})", self.max_attempts));
        }
        if self.prefetch == 0 {
            return invalid("prefetch", "must be at least 1".into());
        }
        if self.backoff_base > self.backoff_max {
            return invalid("backoff_base", "must not exceed backoff_max".into());
        }
        Ok(())
    }

    /// Attempts and backoff, as the subscriptions apply them.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy { max_attempts: self.max_attempts, backoff_base: self.backoff_base, backoff_max: self.backoff_max }
    }
}

/// The URI without its password, for messages.
pub(crate) fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &uri[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &uri[..s + 3], &uri[at..])
        }
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_lapins_keys_and_take_pilotlights() {
        let c = AmqpConfig::from_url("amqp://u:p@127.0.0.1:5672/%2f?heartbeat=10&prefix=pl.&prefetch=8").unwrap();
        assert_eq!(c.uri, "amqp://u:p@127.0.0.1:5672/%2f?heartbeat=10");
        assert_eq!((c.prefix.as_str(), c.prefetch), ("pl.", 8));
    }

    #[test]
    fn bad_settings_name_the_field_and_hide_the_password() {
        for (url, field) in
            [("kafka://x", "url"), ("amqp://h?prefix=Bad%20", "prefix"), ("amqp://h?prefetch=0", "prefetch")]
        {
            match AmqpConfig::from_url(url) {
                Err(QueueError::InvalidInput { field: f, .. }) => assert_eq!(f, field, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(redact("amqp://guest:secret@h:5672/%2f"), "amqp://guest:***@h:5672/%2f");
    }
}

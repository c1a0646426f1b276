//! Triggers: what calls a function besides a request at its URL. A cron
//! schedule fires asynchronous invocations; a topic trigger delivers the
//! messages of a topic on the platform's queue. Both are part of the
//! function's spec, validated like every other field.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::validation::{ValidationError, shown};

/// Triggers one function may have.
pub const MAX_TRIGGERS: usize = 16;
/// Bytes of a cron trigger's body.
pub const MAX_TRIGGER_BODY_BYTES: usize = 64 * 1024;
const MAX_CRON_BYTES: usize = 256;
const MAX_PATH_BYTES: usize = 2048;

/// What happens to the ticks of a schedule that passed while nothing could
/// fire them (the platform was down).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CatchUp {
    /// The latest missed tick fires once (not once per missed tick).
    #[default]
    One,
    /// Missed ticks are skipped; the schedule goes on from the next one.
    None,
}

impl CatchUp {
    /// `one` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::One => "one",
            Self::None => "none",
        }
    }
}

/// A validated cron schedule: a 5-field expression (minute precision) or a
/// 6-field one (with seconds first), evaluated in a time zone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CronSchedule {
    expression: String,
    time_zone: Option<String>,
}

impl CronSchedule {
    /// Parses `expression` (checked by the `croner` crate) in the IANA
    /// `time_zone` (UTC when `None`), naming `field` in errors.
    pub fn parse(field: &str, expression: &str, time_zone: Option<&str>) -> Result<Self, ValidationError> {
        let schedule = Self { expression: expression.trim().to_owned(), time_zone: time_zone.map(str::to_owned) };
        if schedule.expression.is_empty() || schedule.expression.len() > MAX_CRON_BYTES {
            return Err(ValidationError::new(
                format!("{field}.cron"),
                format!("must be a cron expression of 1 to {MAX_CRON_BYTES} bytes"),
            ));
        }
        schedule.cron().map_err(|e| {
            ValidationError::new(
                format!("{field}.cron"),
                format!(
                    "{} is not a cron expression: {e} (five fields `min hour day month weekday`, or six with seconds first)",
                    shown(&schedule.expression)
                ),
            )
        })?;
        if let Some(tz) = &schedule.time_zone {
            jiff::tz::TimeZone::get(tz).map_err(|_| {
                ValidationError::new(
                    format!("{field}.time_zone"),
                    format!("{} is not a known IANA time zone, such as `Europe/Paris` or `UTC`", shown(tz)),
                )
            })?;
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone, when one was given.
    pub fn time_zone(&self) -> Option<&str> {
        self.time_zone.as_deref()
    }

    fn cron(&self) -> Result<croner::Cron, croner::errors::CronError> {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(&self.expression)
    }

    fn zone(&self) -> jiff::tz::TimeZone {
        self.time_zone.as_deref().and_then(|tz| jiff::tz::TimeZone::get(tz).ok()).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// The latest tick at or before `at_ms` (ms since the Unix epoch), if any
    /// (a valid expression always has one, unless the zone's database went away).
    pub fn latest_at_or_before(&self, at_ms: u64) -> Option<u64> {
        let cron = self.cron().ok()?;
        let at = jiff::Timestamp::from_millisecond(i64::try_from(at_ms).ok()?).ok()?.to_zoned(self.zone());
        let tick = cron.find_previous_occurrence(&at, true).ok()?;
        u64::try_from(tick.timestamp().as_millisecond()).ok()
    }

    /// The first tick after `after_ms`.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let cron = self.cron().ok()?;
        let at = jiff::Timestamp::from_millisecond(i64::try_from(after_ms).ok()?).ok()?.to_zoned(self.zone());
        let tick = cron.find_next_occurrence(&at, false).ok()?;
        u64::try_from(tick.timestamp().as_millisecond()).ok()
    }
}

/// A schedule that fires an asynchronous invocation per tick (a POST of
/// `body` to `path`), retried and dead-lettered like any other.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CronTrigger {
    /// When.
    pub schedule: CronSchedule,
    /// The path and query the function receives.
    pub path: String,
    /// The body it receives.
    pub body: String,
    /// What happens to ticks missed while the platform was down.
    pub catch_up: CatchUp,
}

/// Messages published to `topic` on the platform's queue, delivered to the
/// function as POSTs to `path`, in order per key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopicTrigger {
    /// The topic.
    pub topic: String,
    /// The path and query the function receives.
    pub path: String,
}

/// One trigger of a function.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// A cron schedule.
    Cron(CronTrigger),
    /// A topic on the platform's queue.
    Topic(TopicTrigger),
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cron(c) => write!(f, "cron `{}` -> {}", c.schedule.expression(), c.path),
            Self::Topic(t) => write!(f, "topic `{}` -> {}", t.topic, t.path),
        }
    }
}

/// A trigger as users write it: `{"cron": "*/5 * * * *", "path": "/tick"}` or
/// `{"topic": "orders", "path": "/order"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    /// A cron expression: five fields (`min hour day month weekday`), or six with seconds first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub cron: Option<String>,
    /// An IANA time zone for `cron` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// For `cron`: `one` (default: the latest tick missed while the platform was down fires once) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(one|none)$"))]
    pub catch_up: Option<String>,
    /// For `cron`: the body of each tick's POST (text, default empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 65536))]
    pub body: Option<String>,
    /// A topic on the platform's queue: 1 to 200 of `a-z 0-9 . _ -`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9._-]{1,200}$"))]
    pub topic: Option<String>,
    /// The path and query the function receives (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^/[!-~]*$", max_length = 2048))]
    pub path: Option<String>,
}

fn check_path(field: &str, path: Option<String>) -> Result<String, ValidationError> {
    let path = path.unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') || path.len() > MAX_PATH_BYTES || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::new(
            format!("{field}.path"),
            format!(
                "must start with `/` and be printable ASCII without spaces, at most {MAX_PATH_BYTES} bytes (got {})",
                shown(&path)
            ),
        ));
    }
    Ok(path)
}

impl TriggerInput {
    /// Checks one trigger; `field` is its place (`triggers.0`).
    pub fn validate(self, field: &str) -> Result<Trigger, ValidationError> {
        let path = check_path(field, self.path)?;
        match (self.cron, self.topic) {
            (Some(_), Some(_)) => {
                Err(ValidationError::new(format!("{field}.cron"), "give either `cron` or `topic`, not both"))
            }
            (None, None) => Err(ValidationError::new(format!("{field}.cron"), "is required (or `topic`)")),
            (Some(cron), None) => {
                let schedule = CronSchedule::parse(field, &cron, self.time_zone.as_deref())?;
                let catch_up = match self.catch_up.as_deref() {
                    None | Some("one") => CatchUp::One,
                    Some("none") => CatchUp::None,
                    Some(other) => {
                        return Err(ValidationError::new(
                            format!("{field}.catch_up"),
                            format!("must be `one` or `none` (got {})", shown(other)),
                        ));
                    }
                };
                let body = self.body.unwrap_or_default();
                if body.len() > MAX_TRIGGER_BODY_BYTES {
                    return Err(ValidationError::new(
                        format!("{field}.body"),
                        format!("must be at most {MAX_TRIGGER_BODY_BYTES} bytes (got {})", body.len()),
                    ));
                }
                Ok(Trigger::Cron(CronTrigger { schedule, path, body, catch_up }))
            }
            (None, Some(topic)) => {
                for (key, set) in [
                    ("time_zone", self.time_zone.is_some()),
                    ("catch_up", self.catch_up.is_some()),
                    ("body", self.body.is_some()),
                ] {
                    if set {
                        return Err(ValidationError::new(
                            format!("{field}.{key}"),
                            "belongs to a `cron` trigger; a topic trigger's body is the message",
                        ));
                    }
                }
                crate::ports::check_topic_name(&format!("{field}.topic"), &topic)
                    .map_err(|e| ValidationError::new(format!("{field}.topic"), e.to_string()))?;
                if crate::events::topics::is_reserved(&topic) {
                    return Err(ValidationError::new(
                        format!("{field}.topic"),
                        format!(
                            "{} is reserved: `deployments`, `routes`, `status`, `invocations` and `pilotlight.*` are the platform's own, `*.dlq` hold dead letters",
                            shown(&topic)
                        ),
                    ));
                }
                Ok(Trigger::Topic(TopicTrigger { topic, path }))
            }
        }
    }
}

impl From<Trigger> for TriggerInput {
    fn from(t: Trigger) -> Self {
        match t {
            Trigger::Cron(c) => TriggerInput {
                cron: Some(c.schedule.expression),
                time_zone: c.schedule.time_zone,
                catch_up: (c.catch_up != CatchUp::default()).then(|| c.catch_up.as_str().to_owned()),
                body: (!c.body.is_empty()).then_some(c.body),
                topic: None,
                path: Some(c.path),
            },
            Trigger::Topic(t) => TriggerInput { topic: Some(t.topic), path: Some(t.path), ..Default::default() },
        }
    }
}

/// Checks a function's `triggers`.
pub fn validate_triggers(input: Vec<TriggerInput>) -> Result<Vec<Trigger>, ValidationError> {
    if input.len() > MAX_TRIGGERS {
        return Err(ValidationError::new("triggers", format!("at most {MAX_TRIGGERS} (got {})", input.len())));
    }
    let triggers: Vec<Trigger> =
        input.into_iter().enumerate().map(|(i, t)| t.validate(&format!("triggers.{i}"))).collect::<Result<_, _>>()?;
    for (i, t) in triggers.iter().enumerate() {
        if let Trigger::Topic(topic) = t
            && triggers[..i].iter().any(|o| matches!(o, Trigger::Topic(p) if p.topic == topic.topic))
        {
            return Err(ValidationError::new(
                format!("triggers.{i}.topic"),
                format!("`{}` has a trigger already: one per topic (it is one consumer group)", topic.topic),
            ));
        }
    }
    Ok(triggers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(expr: &str) -> TriggerInput {
        TriggerInput { cron: Some(expr.into()), ..Default::default() }
    }

    #[test]
    fn cron_triggers_are_checked_and_named() {
        let Trigger::Cron(c) = cron("*/5 * * * *").validate("triggers.0").unwrap() else { panic!() };
        assert_eq!((c.path.as_str(), c.catch_up, c.schedule.time_zone()), ("/", CatchUp::One, None));
        assert!(cron("* * * * * *").validate("t").is_ok(), "six fields: seconds");
        let e = cron("61 * * * *").validate("triggers.2").unwrap_err();
        assert_eq!(e.field, "triggers.2.cron");
        assert!(e.message.contains("not a cron expression"), "{e}");
        for bad in ["", "* * *", "every minute", "* * * * * * *"] {
            assert_eq!(cron(bad).validate("t").unwrap_err().field, "t.cron", "{bad:?}");
        }
        let tz = TriggerInput { time_zone: Some("Mars/Olympus".into()), ..cron("0 9 * * *") };
        assert_eq!(tz.validate("t").unwrap_err().field, "t.time_zone");
        let tz = TriggerInput { catch_up: Some("all".into()), ..cron("0 9 * * *") };
        assert_eq!(tz.validate("t").unwrap_err().field, "t.catch_up");
        let both = TriggerInput { topic: Some("orders".into()), ..cron("* * * * *") };
        assert_eq!(both.validate("t").unwrap_err().field, "t.cron");
        let big = TriggerInput { body: Some("x".repeat(MAX_TRIGGER_BODY_BYTES + 1)), ..cron("* * * * *") };
        assert_eq!(big.validate("t").unwrap_err().field, "t.body");
        let path = TriggerInput { path: Some("tick".into()), ..cron("* * * * *") };
        assert_eq!(path.validate("t").unwrap_err().field, "t.path");
    }

    #[test]
    fn topic_triggers_are_checked() {
        let topic = |t: &str| TriggerInput { topic: Some(t.into()), ..Default::default() };
        assert!(topic("orders.eu-1").validate("t").is_ok());
        for bad in ["Orders", "a b", "", "orders.dlq", "pilotlight.events", "deployments", "status"] {
            assert_eq!(topic(bad).validate("t").unwrap_err().field, "t.topic", "{bad:?}");
        }
        let with_body = TriggerInput { body: Some("x".into()), ..topic("orders") };
        assert_eq!(with_body.validate("t").unwrap_err().field, "t.body");
        assert_eq!(validate_triggers(vec![topic("a"); MAX_TRIGGERS + 1]).unwrap_err().field, "triggers");
        assert_eq!(validate_triggers(vec![topic("a"), topic("b"), topic("a")]).unwrap_err().field, "triggers.2.topic");
    }

    #[test]
    fn ticks_are_found_in_their_time_zone() {
        let every_5s = CronSchedule::parse("t", "*/5 * * * * *", None).unwrap();
        assert_eq!(every_5s.latest_at_or_before(12_345), Some(10_000));
        assert_eq!(every_5s.latest_at_or_before(10_000), Some(10_000), "inclusive");
        assert_eq!(every_5s.next_after(10_000), Some(15_000), "exclusive");
        // 09:00 every day in Paris is 08:00 UTC in winter (2026-01-15).
        let paris = CronSchedule::parse("t", "0 9 * * *", Some("Europe/Paris")).unwrap();
        let noon_utc = 1_768_478_400_000; // 2026-01-15T12:00:00Z
        assert_eq!(paris.latest_at_or_before(noon_utc), Some(noon_utc - 4 * 3_600_000));
    }

    #[test]
    fn a_trigger_round_trips_through_its_input() {
        let t = TriggerInput {
            time_zone: Some("UTC".into()),
            catch_up: Some("none".into()),
            body: Some("{}".into()),
            path: Some("/tick?x=1".into()),
            ..cron("*/5 * * * *")
        }
        .validate("t")
        .unwrap();
        assert_eq!(TriggerInput::from(t.clone()).validate("t").unwrap(), t);
    }
}

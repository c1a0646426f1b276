//! The `Queue` contract.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{unique, within};
use crate::ports::{Delivery, Message, Queue, QueueError, Subscription, dead_letter_topic, headers};

/// How the queue under test is configured.
#[derive(Clone, Debug)]
pub struct QueueSuite {
    /// The backend's `max_attempts` (configure a small one, e.g. 3).
    pub max_attempts: u32,
    /// How long one receive may take, backoff included (configure a short backoff).
    pub receive_timeout: Duration,
}

impl Default for QueueSuite {
    fn default() -> Self {
        Self { max_attempts: 3, receive_timeout: Duration::from_secs(15) }
    }
}

async fn recv(s: &QueueSuite, sub: &mut Box<dyn Subscription>, what: &str) -> Delivery {
    within(s.receive_timeout, what, sub.next()).await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Asserts that nothing is delivered within `wait`.
async fn nothing(sub: &mut Box<dyn Subscription>, wait: Duration, what: &str) {
    if let Ok(Ok(d)) = tokio::time::timeout(wait, sub.next()).await {
        panic!("{what}: unexpected delivery {d:?} (payload {:?})", String::from_utf8_lossy(&d.message().payload));
    }
}

fn text(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.message().payload).into_owned()
}

/// Runs every check.
pub async fn run_all(q: &dyn Queue, s: &QueueSuite) {
    publish_then_consume(q, s).await;
    groups_each_see_every_message(q, s).await;
    members_share_a_group(q, s).await;
    nack_redelivers(q, s).await;
    dead_letter_after_max_attempts(q, s).await;
    dead_letter_at_once(q, s).await;
    order_per_key_survives_retries(q, s).await;
    unsettled_is_redelivered(q, s).await;
    rejects_bad_names(q).await;
}

/// A published message arrives with its key, payload and headers; once acked it does not come back.
pub async fn publish_then_consume(q: &dyn Queue, s: &QueueSuite) {
    let topic = unique("conf-basic");
    let mut sub = q.subscribe(&topic, "g").await.expect("subscribe");
    let mut m = Message::new("k1", "hello");
    m.headers.insert("x-test".into(), "1".into());
    q.publish(&topic, m.clone()).await.expect("publish");
    let d = recv(s, &mut sub, "publish_then_consume: first delivery").await;
    assert_eq!(d.message(), &m, "publish_then_consume: message changed in transit");
    assert_eq!(d.attempt(), 1, "publish_then_consume: first delivery is attempt 1");
    assert_eq!(d.topic(), topic);
    d.ack().await.expect("ack");
    nothing(&mut sub, Duration::from_millis(300), "publish_then_consume: acked message came back").await;
}

/// Two groups each receive all messages.
pub async fn groups_each_see_every_message(q: &dyn Queue, s: &QueueSuite) {
    let topic = unique("conf-groups");
    let mut a = q.subscribe(&topic, "a").await.expect("subscribe a");
    let mut b = q.subscribe(&topic, "b").await.expect("subscribe b");
    for i in 0..10 {
        q.publish(&topic, Message::new(format!("k{i}"), format!("m{i}"))).await.expect("publish");
    }
    for (name, sub) in [("a", &mut a), ("b", &mut b)] {
        let mut got = BTreeSet::new();
        for _ in 0..10 {
            let d = recv(s, sub, "groups_each_see_every_message").await;
            got.insert(text(&d));
            d.ack().await.expect("ack");
        }
        assert_eq!(got.len(), 10, "group {name} did not see every message: {got:?}");
    }
}

/// Two members of one group split the messages: each message goes to exactly one.
pub async fn members_share_a_group(q: &dyn Queue, s: &QueueSuite) {
    let topic = unique("conf-members");
    let mut m1 = q.subscribe(&topic, "g").await.expect("subscribe 1");
    let mut m2 = q.subscribe(&topic, "g").await.expect("subscribe 2");
    let n = 20;
    for i in 0..n {
        q.publish(&topic, Message::new(format!("k{i}"), format!("m{i}"))).await.expect("publish");
    }
    let mut got = Vec::new();
    while got.len() < n {
        let d = tokio::select! {
            d = m1.next() => d,
            d = m2.next() => d,
            _ = tokio::time::sleep(s.receive_timeout) => panic!("members_share_a_group: only {} of {n} delivered", got.len()),
        }
        .expect("next");
        got.push(text(&d));
        d.ack().await.expect("ack");
    }
    let unique_msgs: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(unique_msgs.len(), n, "members_share_a_group: a message went to two members: {got:?}");
    nothing(&mut m1, Duration::from_millis(200), "members_share_a_group: extra delivery").await;
    nothing(&mut m2, Duration::from_millis(200), "members_share_a_group: extra delivery").await;
}

/// A nacked message comes back with the next attempt number.
pub async fn nack_redelivers(q: &dyn Queue, s: &QueueSuite) {
    let topic = unique("conf-nack");
    let mut sub = q.subscribe(&topic, "g").await.expect("subscribe");
    q.publish(&topic, Message::new("k", "again")).await.expect("publish");
    let d = recv(s, &mut sub, "nack_redelivers: first").await;
    d.nack("try later").await.expect("nack");
    let d = recv(s, &mut sub, "nack_redelivers: redelivery").await;
    assert_eq!(text(&d), "again");
    assert_eq!(d.attempt(), 2, "nack_redelivers: attempt should count up");
    d.ack().await.expect("ack");
}

/// After `max_attempts` nacks the message lands in `<topic>.dlq` with the reason.
pub async fn dead_letter_after_max_attempts(q: &dyn Queue, s: &QueueSuite) {
    let topic = unique("conf-dlq");
    let mut dlq = q.subscribe(&dead_letter_topic(&topic), "inspect").await.expect("subscribe dlq");
    let mut sub = q.subscribe(&topic, "g").await.expect("subscribe");
    q.publish(&topic, Message::new("k", "poison")).await.expect("publish");
    for attempt in 1..=s.max_attempts {
        let d = recv(s, &mut sub, "dead_letter_after_max_attempts: delivery").await;
        assert_eq!(d.attempt(), attempt);
        assert_eq!(d.is_last_attempt(), attempt == s.max_attempts);
        d.nack(format!("failure {attempt}")).await.expect("nack");
    }
    nothing(&mut sub, Duration::from_millis(300), "dead_letter_after_max_attempts: delivered past max").await;
    let dead = recv(s, &mut dlq, "dead_letter_after_max_attempts: dead letter").await;
    assert_eq!(text(&dead), "poison");
    assert_eq!(dead.message().key, "k");
    let h = &dead.message().headers;
    assert_eq!(
        h.get(headers::DEAD_LETTER_REASON).map(String::as_str),
        Some(format!("failure {}", s.max_attempts).as_str())
    );
    assert_eq!(h.get(headers::ATTEMPTS), Some(&s.max_attempts.to_string()));
    assert_eq!(h.get(headers::ORIGINAL_TOPIC), Some(&topic));
    dead.ack().await.expect("ack");
}

/// `dead_letter` skips the remaining attempts.
pub async fn dead_letter_at_once(q: &dyn Queue, s: &QueueSuite) {
    let topic = unique("conf-reject");
    let mut dlq = q.subscribe(&dead_letter_topic(&topic), "inspect").await.expect("subscribe dlq");
    let mut sub = q.subscribe(&topic, "g").await.expect("subscribe");
    q.publish(&topic, Message::new("k", "bad")).await.expect("publish");
    recv(s, &mut sub, "dead_letter_at_once").await.dead_letter("cannot ever work").await.expect("dead_letter");
    let dead = recv(s, &mut dlq, "dead_letter_at_once: dead letter").await;
    assert_eq!(dead.message().headers.get(headers::DEAD_LETTER_REASON).map(String::as_str), Some("cannot ever work"));
    dead.ack().await.expect("ack");
    nothing(&mut sub, Duration::from_millis(300), "dead_letter_at_once: delivered again").await;
}

/// One key's messages arrive in publish order, one at a time, even when one is retried.
pub async fn order_per_key_survives_retries(q: &dyn Queue, s: &QueueSuite) {
    let topic = unique("conf-order");
    let mut sub = q.subscribe(&topic, "g").await.expect("subscribe");
    for i in 1..=5 {
        q.publish(&topic, Message::new("fn-a", format!("a{i}"))).await.expect("publish");
    }
    // While a1 is out (not settled), a2 must not be handed out, even to the same member.
    let first = recv(s, &mut sub, "order_per_key_survives_retries: a1").await;
    assert_eq!(text(&first), "a1");
    nothing(&mut sub, Duration::from_millis(300), "order_per_key_survives_retries: a2 came while a1 was unsettled")
        .await;
    first.ack().await.expect("ack");
    let mut seen = vec!["a1".to_owned()];
    let mut nacked = false;
    while seen.len() < 5 {
        let d = recv(s, &mut sub, "order_per_key_survives_retries").await;
        let t = text(&d);
        if t == "a2" && !nacked {
            nacked = true;
            // While a2 waits for its retry, a3 must not overtake it.
            d.nack("retry a2").await.expect("nack");
            continue;
        }
        seen.push(t);
        d.ack().await.expect("ack");
    }
    assert_eq!(seen, ["a1", "a2", "a3", "a4", "a5"], "order_per_key_survives_retries");
}

/// A delivery dropped without ack or nack (its consumer died) is delivered again.
pub async fn unsettled_is_redelivered(q: &dyn Queue, s: &QueueSuite) {
    let topic = unique("conf-drop");
    let mut sub = q.subscribe(&topic, "g").await.expect("subscribe");
    q.publish(&topic, Message::new("k", "lost?")).await.expect("publish");
    drop(recv(s, &mut sub, "unsettled_is_redelivered: first").await);
    let d = recv(s, &mut sub, "unsettled_is_redelivered: again").await;
    assert_eq!(text(&d), "lost?");
    d.ack().await.expect("ack");
}

/// Topic and group names that are not `[a-z0-9._-]{1,200}` are refused with the field named.
pub async fn rejects_bad_names(q: &dyn Queue) {
    for bad in ["", "Upper", "sp ace", "semi;colon", "new\nline"] {
        match q.publish(bad, Message::new("k", "x")).await {
            Err(QueueError::InvalidInput { field, .. }) => assert_eq!(field, "topic"),
            other => panic!("rejects_bad_names: publish to {bad:?} gave {other:?}"),
        }
    }
    match q.subscribe("fine", "Bad Group").await {
        Err(QueueError::InvalidInput { field, .. }) => assert_eq!(field, "group"),
        Err(e) => panic!("rejects_bad_names: wrong error {e}"),
        Ok(_) => panic!("rejects_bad_names: bad group accepted"),
    }
}

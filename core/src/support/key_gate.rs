//! The messages a queue subscription holds until they are settled, handed
//! out one key at a time: the part of the queue contract ("a key's next
//! message waits until the previous one is settled") that brokers do not give
//! by themselves. `P` is the broker's position of a message (a Kafka offset
//! within a partition, an AMQP delivery tag), ordered as received.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::ports::Message;

/// A message held until settled, and how many times it was handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The message.
    pub message: Message,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// Held messages by position, and per key the positions waiting in order.
#[derive(Debug)]
pub struct KeyGate<P> {
    held: BTreeMap<P, Held>,
    keys: HashMap<String, VecDeque<P>>,
}

impl<P> Default for KeyGate<P> {
    fn default() -> Self {
        Self { held: BTreeMap::new(), keys: HashMap::new() }
    }
}

impl<P: Ord + Copy> KeyGate<P> {
    /// An empty gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds `message` at `pos`. True when it is the only one of its key, so
    /// it is to be handed out now; otherwise it waits for the ones before it.
    pub fn hold(&mut self, pos: P, message: Message) -> bool {
        let waiting = self.keys.entry(message.key.clone()).or_default();
        waiting.push_back(pos);
        let first = waiting.len() == 1;
        self.held.insert(pos, Held { message, attempt: 1 });
        first
    }

    /// The message held at `pos`.
    pub fn get(&self, pos: P) -> Option<&Held> {
        self.held.get(&pos)
    }

    /// Counts one more attempt of the message at `pos` (it stays first of its key); false if none is held there.
    pub fn retry(&mut self, pos: P) -> bool {
        self.held.get_mut(&pos).map(|h| h.attempt += 1).is_some()
    }

    /// Lets go of the settled message at `pos`. `None` if nothing was held
    /// there; otherwise `Some` of its key's next position, to hand out now.
    pub fn release(&mut self, pos: P) -> Option<Option<P>> {
        let done = self.held.remove(&pos)?;
        let waiting = self.keys.get_mut(&done.message.key)?;
        waiting.retain(|p| *p != pos);
        let next = waiting.front().copied();
        if next.is_none() {
            self.keys.remove(&done.message.key);
        }
        Some(next)
    }

    /// The oldest position still held (what a commit must not pass).
    pub fn oldest(&self) -> Option<P> {
        self.held.keys().next().copied()
    }

    /// Whether a message is held at `pos`.
    pub fn contains(&self, pos: P) -> bool {
        self.held.contains_key(&pos)
    }

    /// Forgets everything (the broker will deliver it again).
    pub fn clear(&mut self) {
        self.held.clear();
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_next_message_waits_for_the_previous_one() {
        let mut g = KeyGate::new();
        assert!(g.hold(1, Message::new("a", "a1")));
        assert!(g.hold(2, Message::new("b", "b1")));
        assert!(!g.hold(3, Message::new("a", "a2")), "a2 waits for a1");
        assert!(g.retry(1));
        assert_eq!(g.get(1).unwrap().attempt, 2);
        assert_eq!(g.oldest(), Some(1));
        assert_eq!(g.release(1), Some(Some(3)), "a1 settled: a2 goes out");
        assert_eq!(g.release(2), Some(None));
        assert_eq!(g.release(2), None, "settling twice does nothing");
        assert_eq!(g.oldest(), Some(3));
        assert_eq!(g.release(3), Some(None));
        assert_eq!(g.oldest(), None);
        assert!(g.hold(4, Message::new("a", "a3")), "the key is free again");
        g.clear();
        assert!(!g.contains(4));
    }
}

//! Events handed to the subscribers of one key only (an IBAN's balance changes, a user's transfer results).
//!
//! One broadcast channel per key that has subscribers, created by the first subscriber and removed with the last,
//! so an event wakes only the subscribers that asked for its key. (One instance-wide channel filtered per
//! subscriber woke every subscription for every event: with 500 websockets, 500 wake-ups per balance change.)

use crate::lock::lock;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

type Channels<K, T> = Arc<Mutex<HashMap<K, broadcast::Sender<Arc<T>>>>>;

/// Subscribers by key; each key's channel buffers `buffer` events per subscriber before it lags.
pub struct Fanout<K, T> {
    channels: Channels<K, T>,
    buffer: usize,
}

impl<K: Hash + Eq + Clone, T> Fanout<K, T> {
    pub fn new(buffer: usize) -> Self {
        Self { channels: Arc::default(), buffer: buffer.max(1) }
    }

    /// Listens to the events of `key` from now on.
    pub fn subscribe(&self, key: K) -> Subscriber<K, T> {
        let mut channels = lock(&self.channels);
        let rx = match channels.get(&key) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(self.buffer);
                channels.insert(key.clone(), tx);
                rx
            }
        };
        Subscriber { rx, key, channels: self.channels.clone() }
    }

    /// Hands `item` to the subscribers of `key`; returns how many there were.
    pub fn publish(&self, key: &K, item: T) -> usize {
        let channels = lock(&self.channels);
        match channels.get(key) {
            Some(tx) => tx.send(Arc::new(item)).unwrap_or(0),
            None => 0,
        }
    }

    /// Subscribers over every key.
    pub fn subscribers(&self) -> usize {
        lock(&self.channels).values().map(broadcast::Sender::receiver_count).sum()
    }

    /// Keys with at least one subscriber.
    pub fn keys(&self) -> usize {
        lock(&self.channels).len()
    }
}

impl<K, T> Drop for Fanout<K, T> {
    /// Subscribers' streams end when the fan-out goes (at shutdown).
    fn drop(&mut self) {
        lock(&self.channels).clear();
    }
}

/// One subscriber of one key. Dropping the last subscriber of a key removes the key's channel.
pub struct Subscriber<K: Hash + Eq, T> {
    rx: broadcast::Receiver<Arc<T>>,
    key: K,
    channels: Channels<K, T>,
}

impl<K: Hash + Eq, T> Subscriber<K, T> {
    pub async fn recv(&mut self) -> Result<Arc<T>, RecvError> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Result<Arc<T>, TryRecvError> {
        self.rx.try_recv()
    }
}

impl<K: Hash + Eq, T> Drop for Subscriber<K, T> {
    fn drop(&mut self) {
        // Under the lock nobody subscribes meanwhile; `self.rx` is still alive here, so 1 means "only me".
        let mut channels = lock(&self.channels);
        if channels.get(&self.key).is_some_and(|tx| tx.receiver_count() <= 1) {
            channels.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reaches_the_subscribers_of_its_key_only() {
        let fanout = Fanout::<String, u32>::new(8);
        let mut a1 = fanout.subscribe("A".into());
        let mut a2 = fanout.subscribe("A".into());
        let mut b = fanout.subscribe("B".into());
        assert_eq!((fanout.subscribers(), fanout.keys()), (3, 2));
        assert_eq!(fanout.publish(&"A".into(), 1), 2);
        assert_eq!(fanout.publish(&"C".into(), 2), 0, "nobody listens to C");
        assert_eq!(*a1.try_recv().unwrap(), 1);
        assert_eq!(*a2.try_recv().unwrap(), 1);
        assert!(b.try_recv().is_err(), "B heard nothing of A");
    }

    #[test]
    fn the_last_subscriber_of_a_key_removes_its_channel() {
        let fanout = Fanout::<i64, u32>::new(8);
        let first = fanout.subscribe(7);
        let second = fanout.subscribe(7);
        drop(first);
        assert_eq!((fanout.subscribers(), fanout.keys()), (1, 1), "one subscriber of 7 is left");
        drop(second);
        assert_eq!((fanout.subscribers(), fanout.keys()), (0, 0), "no channel is kept for nobody");
        let mut again = fanout.subscribe(7);
        assert_eq!(fanout.publish(&7, 3), 1);
        assert_eq!(*again.try_recv().unwrap(), 3, "a new subscriber after the removal hears new events");
    }

    #[test]
    fn a_subscriber_that_falls_a_buffer_behind_lags() {
        let fanout = Fanout::<i64, u32>::new(2);
        let mut slow = fanout.subscribe(1);
        for v in 0..5 {
            fanout.publish(&1, v);
        }
        assert!(matches!(slow.try_recv(), Err(TryRecvError::Lagged(3))));
    }
}

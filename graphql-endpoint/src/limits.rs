//! What bounds the work an anonymous client can cause: a fixed number of password hashes at once and a bounded
//! queue of them, and operations per websocket, per client address, per user and per instance. (Login and
//! registration attempts are counted in PostgreSQL, shared by every instance: `store::attempts`.) (One credential field
//! per operation is a schema extension: `schema::extensions`.)

use crate::error::{GatewayError, GatewayResult};
use crate::lock::lock;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Buffered events per subscription key (an IBAN, a user) before a subscriber that has not read them counts as
/// too slow and is dropped. Each key with subscribers holds one such buffer (about 40 bytes a slot).
pub const SUBSCRIBER_BUFFER: usize = 256;

/// Read buffer of each websocket. The library's default, 128 KiB, is zeroed again before every read: with
/// hundreds of sockets that memset was the gateway's largest CPU cost, and the buffers its largest memory. A
/// longer message still arrives whole (the buffer grows for it, up to the body limit).
pub const WS_READ_BUFFER: usize = 4096;

// ---- password hashes ----------------------------------------------------------------------------------------

type HashJob = Box<dyn FnOnce() + Send>;

/// Runs password hashes on `permits` dedicated threads, at most `permits` at once; up to `max_waiting` others
/// wait their turn, and beyond that a hash is refused at once (OVERLOADED) instead of queueing without bound.
///
/// Dedicated threads rather than tokio's blocking pool bound the memory: glibc gives each new thread its own
/// arena and keeps a freed Argon2 buffer in it, so hashes spread over the blocking pool's changing threads left
/// the gateway at hundreds of MiB after a burst of logins. Here each thread reuses its own buffer.
pub struct HashPool {
    permits: Semaphore,
    threads: usize,
    max_waiting: usize,
    waiting: AtomicUsize,
    jobs: Mutex<std::sync::mpsc::Sender<HashJob>>,
    running: AtomicUsize,
    peak: AtomicUsize,
    total: AtomicUsize,
}

impl HashPool {
    pub fn new(permits: usize, max_waiting: usize) -> Self {
        let permits = permits.max(1);
        let (jobs, queue) = std::sync::mpsc::channel::<HashJob>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..permits {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new().name(format!("password-hash-{i}")).spawn(move || {
                loop {
                    // The lock is held only while taking a job; the threads stop when the pool is dropped.
                    let job = match lock(&queue).recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    // A panicking hash fails its own request (its answer channel closes), not the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hash thread");
            }
        }
        Self {
            permits: Semaphore::new(permits),
            threads: permits,
            max_waiting,
            waiting: AtomicUsize::new(0),
            jobs: Mutex::new(jobs),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
        }
    }

    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> GatewayResult<T> {
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _queued = Waiting(&self.waiting);
        if queued >= self.max_waiting.saturating_add(self.threads) {
            metrics::counter!("gateway_password_hashes_refused_total").increment(1);
            return Err(GatewayError::Overloaded("too many password checks are waiting; retry shortly"));
        }
        let _permit = self.permits.acquire().await.map_err(GatewayError::internal)?;
        self.total.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _ = tx.send(f());
        });
        let sent = lock(&self.jobs).send(job).map_err(|_| GatewayError::internal("password-hash threads stopped"));
        let result = match sent {
            Ok(()) => rx.await.map_err(|_| GatewayError::internal("a password hash failed")),
            Err(e) => Err(e),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Hashes waiting for a thread or running now.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The most hashes that ran at the same time so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Hashes computed (or being computed) so far.
    pub fn count(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

/// Counts one caller as waiting (or running) until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---- refusals ----------------------------------------------------------------------------------------------

/// The RATE_LIMITED refusal of `what`, with the wait rounded up to whole seconds.
pub fn rate_limited(what: &'static str, wait: Duration) -> GatewayError {
    GatewayError::RateLimited { what, retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
}

// ---- operations per websocket and per instance --------------------------------------------------------------

/// Counts running operations (subscriptions, and queries or mutations while they run) against a cap.
#[derive(Debug)]
pub struct Slots {
    used: AtomicUsize,
    max: usize,
}

/// One taken slot; given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Slots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { used: AtomicUsize::new(0), max })
    }

    /// A slot, or `None` when all are taken.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.max).then_some(n + 1)).ok()?;
        Some(Slot(self.clone()))
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts running things per key (a client address, a user) against a cap per key. Only keys with something
/// running are kept, so the map is bounded by what runs.
#[derive(Debug)]
pub struct KeyedSlots<K: Hash + Eq + Clone> {
    max: usize,
    used: Mutex<HashMap<K, usize>>,
}

/// One taken slot of a key; given back when dropped.
#[derive(Debug)]
pub struct KeyedSlot<K: Hash + Eq + Clone> {
    slots: Arc<KeyedSlots<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> KeyedSlots<K> {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, used: Mutex::default() })
    }

    /// A slot of `key`, or `None` when the key has all of its slots taken.
    pub fn take(self: &Arc<Self>, key: &K) -> Option<KeyedSlot<K>> {
        if self.max == 0 {
            return None;
        }
        let mut used = lock(&self.used);
        let n = used.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(KeyedSlot { slots: self.clone(), key: key.clone() })
    }

    pub fn used(&self, key: &K) -> usize {
        lock(&self.used).get(key).copied().unwrap_or(0)
    }

    /// Keys with something running.
    pub fn keys(&self) -> usize {
        lock(&self.used).len()
    }
}

impl<K: Hash + Eq + Clone> Drop for KeyedSlot<K> {
    fn drop(&mut self) {
        let mut used = lock(&self.slots.used);
        if let Some(n) = used.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                used.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_slots_cap_each_key_and_forget_idle_keys() {
        let slots = KeyedSlots::<&str>::new(2);
        let a1 = slots.take(&"a").unwrap();
        let _a2 = slots.take(&"a").unwrap();
        assert!(slots.take(&"a").is_none(), "a has used its share");
        let b = slots.take(&"b").unwrap();
        assert_eq!((slots.used(&"a"), slots.keys()), (2, 2));
        drop(a1);
        assert!(slots.take(&"a").is_some(), "a slot of a came back");
        drop(b);
        assert_eq!(slots.keys(), 1, "b holds nothing and is forgotten");
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let limited = |wait| rate_limited("too many failed logins", wait);
        assert!(matches!(limited(Duration::from_millis(1500)), GatewayError::RateLimited { retry_after_secs: 2, .. }));
        assert!(matches!(limited(Duration::from_secs(3)), GatewayError::RateLimited { retry_after_secs: 3, .. }));
    }

    #[test]
    fn slots_are_capped_and_given_back() {
        let slots = Slots::new(2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop(a);
        assert!(slots.take().is_some());
    }
}

//! What bounds the work an anonymous client can cause: a fixed number of password hashes at once, failed logins
//! per user name and per client address, and operations per websocket and per instance. (One credential field
//! per operation is a schema extension: `schema::extensions`.)

use crate::error::{GatewayError, GatewayResult};
use crate::lock::lock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
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

/// Runs password hashes on `permits` dedicated threads, at most `permits` at once; the others wait their turn.
///
/// Dedicated threads rather than tokio's blocking pool bound the memory: glibc gives each new thread its own
/// arena and keeps a freed Argon2 buffer in it, so hashes spread over the blocking pool's changing threads left
/// the gateway at hundreds of MiB after a burst of logins. Here each thread reuses its own buffer.
pub struct HashPool {
    permits: Semaphore,
    jobs: Mutex<std::sync::mpsc::Sender<HashJob>>,
    running: AtomicUsize,
    peak: AtomicUsize,
    total: AtomicUsize,
}

impl HashPool {
    pub fn new(permits: usize) -> Self {
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
            jobs: Mutex::new(jobs),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
        }
    }

    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> GatewayResult<T> {
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

    /// The most hashes that ran at the same time so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Hashes computed (or being computed) so far.
    pub fn count(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

// ---- failed logins ------------------------------------------------------------------------------------------

/// Counts failures per key (a user name, a client address) in a fixed window. At most `capacity` keys are
/// tracked: when full, expired entries go first, then the oldest one.
pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Self { max_failures, window, capacity: capacity.max(1), entries: Mutex::default() }
    }

    /// `Err(wait)` while `key` has used up its failures of the current window.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let entries = lock(&self.entries);
        match entries.get(key) {
            Some(f) if f.count >= self.max_failures => {
                let ends = f.since + self.window;
                if ends > now { Err(ends - now) } else { Ok(()) }
            }
            _ => Ok(()),
        }
    }

    pub fn fail(&self, key: &str, now: Instant) {
        let mut entries = lock(&self.entries);
        if let Some(f) = entries.get_mut(key) {
            if f.since + self.window <= now {
                *f = Failures { count: 1, since: now };
            } else {
                f.count = f.count.saturating_add(1);
            }
            return;
        }
        if entries.len() >= self.capacity {
            let window = self.window;
            entries.retain(|_, f| f.since + window > now);
        }
        if entries.len() >= self.capacity
            && let Some(oldest) = entries.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(key.to_owned(), Failures { count: 1, since: now });
    }

    pub fn clear(&self, key: &str) {
        lock(&self.entries).remove(key);
    }

    pub fn tracked(&self) -> usize {
        lock(&self.entries).len()
    }
}

/// The RATE_LIMITED refusal, with the wait rounded up to whole seconds.
pub fn rate_limited(wait: Duration) -> GatewayError {
    GatewayError::RateLimited { retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_a_key_for_the_rest_of_the_window() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("alice", t0).is_ok());
            limiter.fail("alice", t0);
        }
        assert_eq!(limiter.check("alice", t0 + Duration::from_secs(10)), Err(Duration::from_secs(50)));
        assert!(limiter.check("bob", t0).is_ok(), "other keys are not affected");
        assert!(limiter.check("alice", t0 + Duration::from_secs(60)).is_ok(), "the window ends");
        limiter.fail("alice", t0 + Duration::from_secs(61));
        assert!(limiter.check("alice", t0 + Duration::from_secs(61)).is_ok(), "a new window starts at one");
        limiter.clear("alice");
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn the_failure_map_is_bounded() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(60), 10);
        let t0 = Instant::now();
        for i in 0..1000 {
            limiter.fail(&format!("user{i}"), t0 + Duration::from_millis(i));
        }
        assert_eq!(limiter.tracked(), 10);
        assert!(limiter.check("user999", t0 + Duration::from_secs(1)).is_err(), "the newest keys are kept");
        assert!(limiter.check("user0", t0 + Duration::from_secs(1)).is_ok(), "the oldest went first");
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        assert!(matches!(rate_limited(Duration::from_millis(1500)), GatewayError::RateLimited { retry_after_secs: 2 }));
        assert!(matches!(rate_limited(Duration::from_secs(3)), GatewayError::RateLimited { retry_after_secs: 3 }));
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

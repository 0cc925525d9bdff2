//! Values that many readers ask for and that may be a moment old: the bank's counters, the load-test runs.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long `bankStats`' counters are served before they are read again.
pub const STATS_CACHE: Duration = Duration::from_millis(500);
/// How long `loadTestRuns` is served before the results folder is read again.
pub const RUNS_CACHE: Duration = Duration::from_secs(2);

/// A value read at most once per `ttl`, by one reader at a time: readers that come meanwhile wait for that
/// read and share its answer, so a thousand aliases of a field cost one read.
pub struct Cached<T> {
    ttl: Duration,
    slot: tokio::sync::Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Cached<T> {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, slot: tokio::sync::Mutex::new(None) }
    }

    /// The cached value while it is fresh; otherwise `read`'s, which is kept if it succeeded.
    pub async fn get<F, Fut, E>(&self, read: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = read().await?;
        *slot = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_readers_share_one_read_and_a_failure_is_not_kept() {
        let cache = Arc::new(Cached::<u32>::new(Duration::from_secs(60)));
        let reads = Arc::new(AtomicUsize::new(0));
        let readers = (0..50).map(|_| {
            let (cache, reads) = (cache.clone(), reads.clone());
            async move {
                cache
                    .get(|| async move {
                        reads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(7)
                    })
                    .await
            }
        });
        let answers = futures::future::join_all(readers).await;
        assert!(answers.iter().all(|a| *a == Ok(7)));
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for fifty readers");

        let failing = Cached::<u32>::new(Duration::from_secs(60));
        assert_eq!(failing.get(|| async { Err::<u32, _>("down") }).await, Err("down"));
        assert_eq!(failing.get(|| async { Ok::<_, &str>(3) }).await, Ok(3), "the failure was not cached");
    }
}

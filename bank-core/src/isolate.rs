//! Poison isolation: retrying a batch, and isolating the one record that makes it fail. Every consumer that
//! writes a batch in one PostgreSQL transaction (the command-handler, the gateway's projection) runs it here.
//!
//! A batch that fails for a reason outside its records (PostgreSQL, Kafka or the registry unreachable, a
//! deadlock, a serialization failure) is retried as a whole with a growing pause, as long as it takes. A batch
//! that fails because of a record (PostgreSQL refuses a value, or the attempt panics) is retried
//! [`RECORD_ATTEMPTS`] times, then split in halves, each attempted on its own in order, until the failing record
//! is alone: the consumer then turns it into a dead letter ([`Attempt::poison`]) and attempts it again, and
//! everything after it goes on as usual. A dead letter that still fails was not the record's fault: it is retried
//! like an outage.

use crate::retry::Backoff;
use crate::shutdown::CancellationToken;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

/// Attempts of a batch (or part of one) that failed because of a record, before it is split.
pub const RECORD_ATTEMPTS: u32 = 2;

/// Why an attempt failed; the `reason` label of the consumer's retry counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// PostgreSQL broke a deadlock by aborting this transaction.
    Deadlock,
    /// A serialization failure or another transaction-rollback condition.
    Serialization,
    /// PostgreSQL, Kafka or the registry not reachable, or any error not caused by a record.
    Unavailable,
    /// PostgreSQL refused a value of a record (a data exception or a constraint), or the attempt panicked.
    Record,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deadlock => "deadlock",
            Self::Serialization => "serialization",
            Self::Unavailable => "unavailable",
            Self::Record => "record",
        }
    }

    /// The class of a PostgreSQL SQLSTATE: 40P01 deadlock, 40xxx rollback, 22xxx (data exception) and 23xxx
    /// (integrity constraint) are caused by values; everything else (connection, resources, shutdown, ...) is not.
    pub fn of_sqlstate(code: &str) -> Self {
        if code == "40P01" {
            Self::Deadlock
        } else if code.starts_with("40") {
            Self::Serialization
        } else if code.starts_with("22") || code.starts_with("23") {
            Self::Record
        } else {
            Self::Unavailable
        }
    }
}

/// A failed attempt: its class and what to log (and to put in a dead letter).
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    /// Classifies an error by the PostgreSQL error in its chain, if any (none: [`FailureKind::Unavailable`]).
    pub fn of(e: &anyhow::Error) -> Self {
        let kind = e.chain().find_map(|c| c.downcast_ref::<sqlx::Error>()).map_or(FailureKind::Unavailable, kind_of);
        Self { kind, message: format!("{e:#}") }
    }

    /// Classifies a PostgreSQL error.
    pub fn of_sqlx(e: &sqlx::Error) -> Self {
        Self { kind: kind_of(e), message: e.to_string() }
    }

    /// Not caused by a record: retried as long as it takes.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { kind: FailureKind::Unavailable, message: message.into() }
    }

    fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Self { kind: FailureKind::Record, message: format!("handling panicked: {what}") }
    }
}

fn kind_of(e: &sqlx::Error) -> FailureKind {
    match e {
        sqlx::Error::Database(db) => FailureKind::of_sqlstate(db.code().as_deref().unwrap_or("")),
        _ => FailureKind::Unavailable,
    }
}

/// A consumer of batches, as the engine drives it.
pub trait Attempt<I> {
    /// What one committed part yields.
    type Output;
    /// The counter of failed attempts, labelled by `reason` ([`FailureKind::as_str`]).
    const RETRIES_METRIC: &'static str;

    /// One transaction over a contiguous part of a batch.
    fn attempt<'a>(&'a self, part: &'a [I]) -> BoxFuture<'a, Result<Self::Output, Failure>>;

    /// Turns the record isolated as the one that fails its batch into one that can only be dead-lettered; false
    /// if it already is one.
    fn poison(&self, item: &mut I, failure: &Failure) -> bool;

    /// Called for every failed attempt (after the counter), e.g. for a consumer's own tallies.
    fn retried(&self, _kind: FailureKind) {}
}

/// Attempts `items` in order through `attempt`, retrying and isolating as described in the module; a panic in an
/// attempt counts as a failure caused by a record. `done` receives each committed part's output. Returns `true`
/// if a shutdown interrupted it (parts handed to `done` are committed; the rest is not).
pub async fn isolate<I: Sync, A: Attempt<I> + Sync>(
    attempt: &A,
    items: &mut [I],
    mut done: impl FnMut(A::Output),
    shutdown: &CancellationToken,
) -> bool {
    let mut queue: VecDeque<Range<usize>> = VecDeque::new();
    queue.push_back(0..items.len());
    while let Some(range) = queue.pop_front() {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        let mut record_failures = 0;
        while let Some(part) = items.get(range.clone()) {
            let failure = match std::panic::AssertUnwindSafe(attempt.attempt(part)).catch_unwind().await {
                Ok(Ok(t)) => {
                    done(t);
                    break;
                }
                Ok(Err(f)) => f,
                Err(panic) => Failure::panicked(panic.as_ref()),
            };
            metrics::counter!(A::RETRIES_METRIC, "reason" => failure.kind.as_str()).increment(1);
            attempt.retried(failure.kind);
            tracing::warn!(error = %failure.message, kind = failure.kind.as_str(), records = range.len(), "batch failed");
            if shutdown.is_cancelled() {
                return true;
            }
            if failure.kind == FailureKind::Record {
                record_failures += 1;
                if record_failures >= RECORD_ATTEMPTS {
                    if range.len() > 1 {
                        let mid = range.start + range.len() / 2;
                        queue.push_front(mid..range.end);
                        queue.push_front(range.start..mid);
                        break;
                    }
                    if let Some(item) = items.get_mut(range.start)
                        && attempt.poison(item, &failure)
                    {
                        tracing::error!(error = %failure.message, "dead-lettering a record that cannot be handled");
                        record_failures = 0;
                        continue;
                    }
                    // Already a dead letter and still failing: not the record's fault after all.
                }
            }
            if !backoff.sleep_or_cancelled(shutdown).await {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A fake consumer: an item fails its part in the class it names until it is poisoned (poisoned items become
    /// `Dead`); an `Outage(n)` fails the first n attempts that contain it; attempts are logged.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Item {
        Fine(u32),
        Bad(u32),
        Panics(u32),
        Outage(u32),
        Deadlocks(u32),
        Dead(u32),
    }

    #[derive(Default)]
    struct Fake {
        attempts: Mutex<Vec<Vec<Item>>>,
        retried: Mutex<Vec<FailureKind>>,
    }

    impl Attempt<Item> for Fake {
        type Output = Vec<Item>;
        const RETRIES_METRIC: &'static str = "test_retries_total";

        fn attempt<'a>(&'a self, part: &'a [Item]) -> BoxFuture<'a, Result<Vec<Item>, Failure>> {
            let before = {
                let mut log = self.attempts.lock().unwrap();
                log.push(part.to_vec());
                log.len()
            };
            Box::pin(async move {
                for item in part {
                    match item {
                        Item::Bad(_) => return Err(Failure { kind: FailureKind::Record, message: "refused".into() }),
                        Item::Panics(n) => panic!("item {n} panics"),
                        Item::Outage(n) if before <= *n as usize => return Err(Failure::unavailable("down")),
                        Item::Deadlocks(n) if before <= *n as usize => {
                            return Err(Failure {
                                kind: FailureKind::of_sqlstate("40P01"),
                                message: "deadlock".into(),
                            });
                        }
                        _ => {}
                    }
                }
                Ok(part.to_vec())
            })
        }

        fn poison(&self, item: &mut Item, _: &Failure) -> bool {
            let n = match *item {
                Item::Dead(_) => return false,
                Item::Fine(n) | Item::Bad(n) | Item::Panics(n) | Item::Outage(n) | Item::Deadlocks(n) => n,
            };
            *item = Item::Dead(n);
            true
        }

        fn retried(&self, kind: FailureKind) {
            self.retried.lock().unwrap().push(kind);
        }
    }

    async fn run(items: &mut [Item]) -> (Vec<Vec<Item>>, Fake) {
        let fake = Fake::default();
        let mut committed = Vec::new();
        let interrupted = isolate(&fake, items, |part| committed.push(part), &CancellationToken::new()).await;
        assert!(!interrupted);
        (committed, fake)
    }

    fn fine(range: std::ops::RangeInclusive<u32>) -> Vec<Item> {
        range.map(Item::Fine).collect()
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_attempt() {
        let (committed, fake) = run(&mut fine(1..=12)).await;
        assert_eq!(committed, vec![fine(1..=12)]);
        assert_eq!(fake.attempts.lock().unwrap().len(), 1);
        assert!(fake.retried.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_record_is_isolated_and_everything_else_committed_in_order() {
        let mut items = fine(1..=20);
        items[12] = Item::Bad(13);
        let (committed, fake) = run(&mut items).await;
        let mut want = fine(1..=20);
        want[12] = Item::Dead(13);
        assert_eq!(committed.concat(), want, "every record once, in order, the failing one dead-lettered");
        assert!(committed.contains(&vec![Item::Dead(13)]), "the poison record is handled alone: {committed:?}");
        assert!(fake.retried.lock().unwrap().iter().all(|k| *k == FailureKind::Record));
    }

    #[tokio::test]
    async fn a_panicking_record_is_isolated_like_a_refused_one() {
        let mut items = fine(1..=8);
        items[2] = Item::Panics(3);
        let (committed, _) = run(&mut items).await;
        let mut want = fine(1..=8);
        want[2] = Item::Dead(3);
        assert_eq!(committed.concat(), want);
    }

    #[tokio::test]
    async fn an_outage_or_a_deadlock_retries_the_whole_batch_without_splitting_it() {
        for (item, kind) in [(Item::Outage(3), FailureKind::Unavailable), (Item::Deadlocks(3), FailureKind::Deadlock)] {
            let mut items = fine(1..=6);
            items[4] = item;
            let (committed, fake) = run(&mut items).await;
            assert_eq!(committed, vec![items.clone()], "one commit of the whole batch, nothing dead-lettered");
            let attempts = fake.attempts.lock().unwrap();
            assert_eq!(attempts.len(), 4, "three failures past RECORD_ATTEMPTS, then success: {attempts:?}");
            assert!(attempts.iter().all(|a| a.len() == 6), "never split: {attempts:?}");
            assert_eq!(*fake.retried.lock().unwrap(), vec![kind; 3]);
        }
    }

    #[tokio::test]
    async fn a_batch_of_only_the_failing_record_is_dead_lettered() {
        let (committed, fake) = run(&mut [Item::Bad(1)]).await;
        assert_eq!(committed, vec![vec![Item::Dead(1)]]);
        assert_eq!(fake.attempts.lock().unwrap().len(), RECORD_ATTEMPTS as usize + 1);
    }

    #[tokio::test]
    async fn a_shutdown_stops_the_retries() {
        let fake = Fake::default();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut items = vec![Item::Outage(u32::MAX)];
        let mut committed = Vec::new();
        assert!(isolate(&fake, &mut items, |p| committed.push(p), &shutdown).await);
        assert!(committed.is_empty());
    }

    #[test]
    fn sqlstates_are_classified() {
        assert_eq!(FailureKind::of_sqlstate("40P01"), FailureKind::Deadlock);
        assert_eq!(FailureKind::of_sqlstate("40001"), FailureKind::Serialization);
        assert_eq!(FailureKind::of_sqlstate("22021"), FailureKind::Record);
        assert_eq!(FailureKind::of_sqlstate("23505"), FailureKind::Record);
        assert_eq!(FailureKind::of_sqlstate("08006"), FailureKind::Unavailable);
        assert_eq!(FailureKind::of_sqlstate("57P01"), FailureKind::Unavailable);
        assert_eq!(FailureKind::of_sqlstate(""), FailureKind::Unavailable);
    }
}

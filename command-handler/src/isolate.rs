//! Retrying a batch, and isolating the one record that makes it fail.
//!
//! A batch that fails for a reason outside its records (PostgreSQL or the registry unreachable, a deadlock, a
//! serialization failure) is retried as a whole with a growing pause, as long as it takes. A batch that fails
//! because of a record (PostgreSQL refuses a value, or handling panics) is retried a bounded number of times,
//! then split in halves, each handled on its own in order, until the failing record is alone: that record is
//! then dead-lettered with the error and its command gets a failed result (`UNPROCESSABLE`), and everything after
//! it is handled as usual. If even that fails, the record is only dead-lettered.

use crate::store::{BatchOutcome, Command, Handler, Incoming};
use bank_core::retry::Backoff;
use bank_core::shutdown::CancellationToken;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Attempts of a batch (or part of one) that failed because of a record, before it is split.
pub const RECORD_ATTEMPTS: u32 = 2;

/// Why an attempt failed; the `reason` label of `handler_batch_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// PostgreSQL broke a deadlock by aborting this transaction.
    Deadlock,
    /// A serialization failure or another transaction-rollback condition.
    Serialization,
    /// PostgreSQL, Kafka or the registry not reachable, or any error not caused by a record.
    Unavailable,
    /// PostgreSQL refused a value of a record (a data exception or a constraint), or handling panicked.
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
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    /// Classifies an error of a batch attempt by the PostgreSQL error in its chain, if any.
    pub fn of(e: &anyhow::Error) -> Self {
        let message = format!("{e:#}");
        let kind =
            e.chain().find_map(|c| c.downcast_ref::<sqlx::Error>()).map_or(FailureKind::Unavailable, |e| match e {
                sqlx::Error::Database(db) => kind_of_sqlstate(db.code().as_deref().unwrap_or("")),
                _ => FailureKind::Unavailable,
            });
        Self { kind, message }
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

/// Class of a PostgreSQL SQLSTATE: 40P01 deadlock, 40xxx rollback, 22xxx (data exception) and 23xxx
/// (integrity constraint) are caused by values; everything else (connection, resources, shutdown, ...) is not.
fn kind_of_sqlstate(code: &str) -> FailureKind {
    if code == "40P01" {
        FailureKind::Deadlock
    } else if code.starts_with("40") {
        FailureKind::Serialization
    } else if code.starts_with("22") || code.starts_with("23") {
        FailureKind::Record
    } else {
        FailureKind::Unavailable
    }
}

static DEADLOCK_RETRIES: AtomicU64 = AtomicU64::new(0);

/// Batches retried after a deadlock, by every handler of this process since it started.
pub fn deadlock_retries() -> u64 {
    DEADLOCK_RETRIES.load(Ordering::Relaxed)
}

fn count_retry(kind: FailureKind) {
    if kind == FailureKind::Deadlock {
        DEADLOCK_RETRIES.fetch_add(1, Ordering::Relaxed);
    }
    metrics::counter!("handler_batch_retries_total", "reason" => kind.as_str()).increment(1);
}

/// One transaction over a contiguous part of a batch.
pub trait Attempt<I> {
    type Output;
    fn attempt<'a>(&'a self, part: &'a [I]) -> BoxFuture<'a, Result<Self::Output, Failure>>;
}

/// Handles `items` in order through `attempt`, retrying and isolating as described in the module. `poison`
/// turns an item into one that `attempt` can only dead-letter (false if it already is one); `done` receives
/// each committed part's result. Returns `true` if a shutdown interrupted it (parts handed to `done` are
/// committed; the rest is not).
pub async fn isolate<I: Sync, A: Attempt<I> + Sync>(
    attempt: &A,
    items: &mut [I],
    poison: impl Fn(&mut I, &Failure) -> bool,
    mut done: impl FnMut(A::Output),
    shutdown: &CancellationToken,
) -> bool {
    let mut queue: VecDeque<Range<usize>> = VecDeque::new();
    queue.push_back(0..items.len());
    while let Some(range) = queue.pop_front() {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        let mut record_failures = 0;
        while let Some(part) = items.get(range.clone()) {
            let failure = match attempt.attempt(part).await {
                Ok(t) => {
                    done(t);
                    break;
                }
                Err(f) => f,
            };
            count_retry(failure.kind);
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
                        && poison(item, &failure)
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

impl Attempt<Incoming> for Handler {
    type Output = BatchOutcome;

    fn attempt<'a>(&'a self, part: &'a [Incoming]) -> BoxFuture<'a, Result<BatchOutcome, Failure>> {
        Box::pin(async move {
            match std::panic::AssertUnwindSafe(self.handle_batch(part)).catch_unwind().await {
                Ok(Ok(o)) => Ok(o),
                Ok(Err(e)) => Err(Failure::of(&e)),
                Err(panic) => Err(Failure::panicked(panic.as_ref())),
            }
        })
    }
}

impl Handler {
    /// Handles a batch (see [`isolate`]): one transaction when all goes well, more when a record had to be
    /// isolated. Returns what committed and whether a shutdown interrupted the rest.
    pub async fn handle_isolating(
        &self,
        mut batch: Vec<Incoming>,
        shutdown: &CancellationToken,
    ) -> (BatchOutcome, bool) {
        let mut outcome = BatchOutcome::default();
        let interrupted = isolate(self, &mut batch, demote, |o| outcome.absorb(o), shutdown).await;
        (outcome, interrupted)
    }
}

/// Turns the record isolated as the one that fails its batch into one that can only be dead-lettered: a command
/// first keeps its id and kind (it gets a failed `UNPROCESSABLE` result with its dead letter); if even that
/// fails, only the dead letter is left. False if it is already a bare dead letter.
pub fn demote(r: &mut Incoming, f: &Failure) -> bool {
    r.command = match &r.command {
        Command::Transfer(_) | Command::Creation(_) => {
            let (Some(id), Some(kind)) = (r.command.id(), r.command.kind()) else { return false };
            Command::Unprocessable { id, kind, error: format!("cannot be handled: {}", f.message) }
        }
        Command::Unprocessable { error, .. } => Command::Poison(error.clone()),
        Command::Poison(_) => return false,
    };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails while its part holds an unpoisoned 13 (poisoned items become 0); counts attempts.
    struct Thirteen(std::sync::atomic::AtomicU32);

    impl Attempt<u32> for Thirteen {
        type Output = Vec<u32>;
        fn attempt<'a>(&'a self, part: &'a [u32]) -> BoxFuture<'a, Result<Vec<u32>, Failure>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            let result = if part.contains(&13) {
                Err(Failure { kind: FailureKind::Record, message: "13".into() })
            } else {
                Ok(part.to_vec())
            };
            Box::pin(async move { result })
        }
    }

    async fn run(items: &mut [u32]) -> (Vec<Vec<u32>>, u32) {
        let mut committed = Vec::new();
        let attempt = Thirteen(std::sync::atomic::AtomicU32::new(0));
        let interrupted = isolate(
            &attempt,
            items,
            |i: &mut u32, _: &Failure| {
                let was = *i != 0;
                *i = 0;
                was
            },
            |part| committed.push(part),
            &CancellationToken::new(),
        )
        .await;
        assert!(!interrupted);
        (committed, attempt.0.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_attempt() {
        let mut items: Vec<u32> = (1..=12).collect();
        let (committed, attempts) = run(&mut items).await;
        assert_eq!(committed, vec![(1..=12).collect::<Vec<_>>()]);
        assert_eq!(attempts, 1);
    }

    #[tokio::test]
    async fn the_failing_record_is_isolated_and_everything_else_committed_in_order() {
        let mut items: Vec<u32> = (1..=20).collect();
        let (committed, _) = run(&mut items).await;
        let flat: Vec<u32> = committed.concat();
        let mut want: Vec<u32> = (1..=20).collect();
        want[12] = 0;
        assert_eq!(flat, want, "every record once, in order, the failing one dead-lettered");
        assert!(committed.contains(&vec![0]), "the poison record is handled alone: {committed:?}");
    }

    #[tokio::test]
    async fn a_batch_of_only_the_failing_record_is_dead_lettered() {
        let mut items = vec![13];
        let (committed, attempts) = run(&mut items).await;
        assert_eq!(committed, vec![vec![0]]);
        assert_eq!(attempts, RECORD_ATTEMPTS + 1);
    }

    #[test]
    fn an_isolated_command_is_demoted_to_a_failed_result_then_to_a_bare_dead_letter() {
        let id = bank_core::CommandId::new();
        let command = bank_core::avro::ConfirmAccountCreation { id, a_type: bank_core::avro::Atype::Auto };
        let mut r = Incoming {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: None,
            payload: None,
            command: Command::Creation(command),
        };
        let f = Failure { kind: FailureKind::Record, message: "refused".into() };
        assert!(demote(&mut r, &f));
        let Command::Unprocessable { id: kept, kind, error } = &r.command else { panic!("{:?}", r.command) };
        assert_eq!(
            (*kept, *kind, error.as_str()),
            (id, crate::plan::CommandKind::Account, "cannot be handled: refused")
        );
        let again = Failure { kind: FailureKind::Record, message: "still refused".into() };
        assert!(demote(&mut r, &again));
        assert!(matches!(&r.command, Command::Poison(e) if e == "cannot be handled: refused"), "{:?}", r.command);
        assert!(!demote(&mut r, &again), "a bare dead letter that fails is not the record's fault");
    }

    #[test]
    fn sqlstates_are_classified() {
        assert_eq!(kind_of_sqlstate("40P01"), FailureKind::Deadlock);
        assert_eq!(kind_of_sqlstate("40001"), FailureKind::Serialization);
        assert_eq!(kind_of_sqlstate("22021"), FailureKind::Record);
        assert_eq!(kind_of_sqlstate("23505"), FailureKind::Record);
        assert_eq!(kind_of_sqlstate("08006"), FailureKind::Unavailable);
        assert_eq!(kind_of_sqlstate("57P01"), FailureKind::Unavailable);
        assert_eq!(kind_of_sqlstate(""), FailureKind::Unavailable);
    }
}

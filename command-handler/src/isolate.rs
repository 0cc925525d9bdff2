//! The command-handler as a consumer of the poison-isolation engine ([`bank_core::isolate`]): a batch is one
//! transaction; the record isolated as the one that fails it is demoted, first to a command with a failed
//! `UNPROCESSABLE` result and its dead letter, then, if even that fails, to a bare dead letter.

use crate::batch::{BatchOutcome, Command, Incoming};
use crate::handler::Handler;
use bank_core::isolate::{Attempt, Failure, FailureKind, isolate};
use bank_core::shutdown::CancellationToken;
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};

static DEADLOCK_RETRIES: AtomicU64 = AtomicU64::new(0);

/// Batches retried after a deadlock, by every handler of this process since it started.
pub fn deadlock_retries() -> u64 {
    DEADLOCK_RETRIES.load(Ordering::Relaxed)
}

impl Attempt<Incoming> for Handler {
    type Output = BatchOutcome;
    const RETRIES_METRIC: &'static str = bank_core::metric_names::HANDLER_BATCH_RETRIES;

    fn attempt<'a>(&'a self, part: &'a [Incoming]) -> BoxFuture<'a, Result<BatchOutcome, Failure>> {
        Box::pin(async move { self.handle_batch(part).await.map_err(|e| Failure::of(&e)) })
    }

    fn poison(&self, item: &mut Incoming, failure: &Failure) -> bool {
        demote(item, failure)
    }

    fn retried(&self, kind: FailureKind) {
        if kind == FailureKind::Deadlock {
            DEADLOCK_RETRIES.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Handler {
    /// Handles a batch (see [`bank_core::isolate`]): one transaction when all goes well, more when a record had to be
    /// isolated. Returns what committed and whether a shutdown interrupted the rest.
    pub async fn handle_isolating(
        &self,
        mut batch: Vec<Incoming>,
        shutdown: &CancellationToken,
    ) -> (BatchOutcome, bool) {
        let mut outcome = BatchOutcome::default();
        let interrupted = isolate(self, &mut batch, |o| outcome.absorb(o), shutdown).await;
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
            (id, crate::batch::CommandKind::Account, "cannot be handled: refused")
        );
        let again = Failure { kind: FailureKind::Record, message: "still refused".into() };
        assert!(demote(&mut r, &again));
        assert!(matches!(&r.command, Command::Poison(e) if e == "cannot be handled: refused"), "{:?}", r.command);
        assert!(!demote(&mut r, &again), "a bare dead letter that fails is not the record's fault");
    }
}

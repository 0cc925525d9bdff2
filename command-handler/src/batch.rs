//! The handler's batch as every phase sees it: a consumed record and what it decoded to ([`Incoming`],
//! [`Command`]), what one committed batch did ([`BatchOutcome`], with the [`OutboxRow`]s it wrote), and the rules
//! that are configuration ([`Limits`]). A leaf: it imports nothing of this crate.

use bank_core::avro::{ConfirmAccountCreation, ConfirmMoneyTransfer};
use bank_core::{CommandId, Iban, Money};
use std::collections::{BTreeMap, HashMap};

/// A consumed record and what it decoded to.
#[derive(Debug)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub command: Command,
}

#[derive(Debug)]
pub enum Command {
    Transfer(ConfirmMoneyTransfer),
    Creation(ConfirmAccountCreation),
    /// Decoded, but it makes its batch fail (isolation found it): goes to `dead_letters` with this error, and the
    /// command gets a failed result (`UNPROCESSABLE`).
    Unprocessable {
        id: CommandId,
        kind: CommandKind,
        error: String,
    },
    /// Could not be decoded (or not even its failed result could be stored): goes to `dead_letters` with this
    /// error.
    Poison(String),
}

impl Command {
    /// The command id, if the record decoded.
    pub fn id(&self) -> Option<CommandId> {
        match self {
            Self::Transfer(c) => Some(c.id),
            Self::Creation(c) => Some(c.id),
            Self::Unprocessable { id, .. } => Some(*id),
            Self::Poison(_) => None,
        }
    }

    /// What the command asks for, if the record decoded.
    pub fn kind(&self) -> Option<CommandKind> {
        match self {
            Self::Transfer(_) => Some(CommandKind::Transfer),
            Self::Creation(_) => Some(CommandKind::Account),
            Self::Unprocessable { kind, .. } => Some(*kind),
            Self::Poison(_) => None,
        }
    }
}

/// What one committed batch did.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub outbox: Vec<OutboxRow>,
    /// Next offset per (topic, partition) after this batch.
    pub offsets: BTreeMap<(String, i32), i64>,
    pub skipped: u64,
    pub confirmed: u64,
    pub failed: u64,
    pub replayed: u64,
    pub dead_lettered: u64,
    pub accounts_created: u64,
    pub refusals: HashMap<&'static str, u64>,
}

impl BatchOutcome {
    /// Adds the outcome of a later transaction of the same batch.
    pub fn absorb(&mut self, other: BatchOutcome) {
        self.outbox.extend(other.outbox);
        for (k, next) in other.offsets {
            let e = self.offsets.entry(k).or_insert(next);
            *e = (*e).max(next);
        }
        self.skipped += other.skipped;
        self.confirmed += other.confirmed;
        self.failed += other.failed;
        self.replayed += other.replayed;
        self.dead_lettered += other.dead_lettered;
        self.accounts_created += other.accounts_created;
        for (code, n) in other.refusals {
            *self.refusals.entry(code).or_default() += n;
        }
    }
}

/// What a command asks for; the `kind` column of `bank.results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Transfer,
    Account,
}

impl CommandKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transfer => "transfer",
            Self::Account => "account",
        }
    }
}

/// An encoded event in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub seq: i64,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

/// Rules that are configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_transfer: Money,
    pub default_limit: Money,
}

/// Where new accounts' IBANs come from; [`Iban::generate`] unless a test needs collisions.
pub type IbanGenerator = std::sync::Arc<dyn Fn() -> Iban + Send + Sync>;

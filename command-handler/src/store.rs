//! The `bank` schema and the batch transaction: for one batch of command records, ONE Postgres transaction
//! holds the balance changes, the stored result per command id, the outgoing events (outbox) and the consumed
//! offsets. A record below the stored offset of its partition was already handled and is skipped; a command id
//! with a stored result is a replay and re-emits that result without touching a balance.
//!
//! [`Handler::handle_batch`] runs the phases: lock the offsets ([`crate::offsets`]), load stored results, plan
//! every record ([`crate::plan`]), create accounts, lock accounts and check tokens, apply the transfers
//! ([`crate::apply`]), then write results, events ([`crate::events`]) and offsets.

use crate::plan::{self, CommandKind};
use crate::{apply, events, offsets};
use anyhow::Context;
use bank_core::avro::{ConfirmAccountCreation, ConfirmMoneyTransfer};
use bank_core::db::Migration;
use bank_core::registry::Codec;
use bank_core::{CommandId, Iban, Money};
use sqlx::postgres::PgPool;
use std::collections::{BTreeMap, HashMap};

pub use crate::apply::ensure_company;
pub use crate::events::{OutboxRow, parse_headers};
pub use crate::offsets::stored_offsets;

pub const SCHEMA: &str = "bank";

/// The `bank` schema's migrations. Their text is part of every database they created: never edit one, add one.
pub const MIGRATIONS: &[Migration] =
    &[(1, include_str!("../migrations/0001_bank.sql")), (2, include_str!("../migrations/0002_balance_seq.sql"))];

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

/// The handler's topics: the contract's names with the configured prefix.
pub use bank_core::topics::TopicNames as Topics;

/// Rules that are configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_transfer: Money,
    pub default_limit: Money,
}

/// Where new accounts' IBANs come from; [`Iban::generate`] unless a test needs collisions.
pub type IbanGenerator = std::sync::Arc<dyn Fn() -> Iban + Send + Sync>;

pub struct Handler {
    pub pool: PgPool,
    pub codec: Codec,
    pub topics: Topics,
    pub limits: Limits,
    pub new_iban: IbanGenerator,
}

impl Handler {
    pub fn new(pool: PgPool, codec: Codec, topics: Topics, limits: Limits) -> Self {
        Self { pool, codec, topics, limits, new_iban: std::sync::Arc::new(Iban::generate) }
    }

    /// Handles one batch in one transaction. Any error rolls everything back; the caller retries the batch.
    pub async fn handle_batch(&self, batch: &[Incoming]) -> anyhow::Result<BatchOutcome> {
        let mut tx = self.pool.begin().await.context("begin")?;
        let mut next = offsets::lock(&mut tx, batch).await?;
        let fresh = plan::fresh(batch, &next);
        let stored = apply::stored_results(&mut tx, &plan::ids(batch, &fresh)).await?;
        let plan::Planned { mut plans, pending } =
            plan::plan(batch, &fresh, &stored, self.limits.max_transfer, &*self.new_iban);

        // New accounts first: a transfer of this batch may pay into an account created earlier in it.
        apply::create_accounts(&mut tx, batch, &mut plans, self.limits.default_limit, &*self.new_iban).await?;
        let known = apply::lock_accounts(&mut tx, &pending).await?;
        let transfers = plan::authorise(batch, &pending, &known, &mut plans);
        let rows = apply::apply_transfers(&mut tx, &transfers).await?;
        let balances = plan::applied(&transfers, &rows, &mut plans)?;

        let mut out = BatchOutcome::default();
        let mut emitter = events::Emitter::new(self);
        for (i, (r, plan)) in batch.iter().zip(&plans).enumerate() {
            emitter.record(i, r, plan, &balances, &mut out).await?;
        }
        emitter.results.insert(&mut tx).await?;
        out.outbox = events::insert_outbox(&mut tx, emitter.events).await?;
        offsets::advance(batch, &mut next);
        offsets::store(&mut tx, &next).await?;
        tx.commit().await.context("commit")?;
        out.offsets = next;
        Ok(out)
    }
}

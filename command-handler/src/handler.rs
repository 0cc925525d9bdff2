//! The handler and its batch transaction, with the `bank` schema's migrations: for one batch of command records, ONE Postgres transaction
//! holds the balance changes, the stored result per command id, the outgoing events (outbox) and the consumed
//! offsets. A record below the stored offset of its partition was already handled and is skipped; a command id
//! with a stored result is a replay and re-emits that result without touching a balance.
//!
//! [`Handler::handle_batch`] runs the phases: lock the offsets ([`crate::offsets`]), load stored results, plan
//! every record ([`crate::plan`]), create accounts, lock accounts and check tokens, apply the transfers
//! ([`crate::apply`]), then write results, events ([`crate::events`]) and offsets.

use crate::batch::{BatchOutcome, IbanGenerator, Incoming, Limits};
use crate::{apply, events, offsets, plan};
use anyhow::Context;
use bank_core::Iban;
use bank_core::db::Migration;
use bank_core::registry::Codec;
use sqlx::postgres::PgPool;

pub const SCHEMA: &str = "bank";

/// The `bank` schema's migrations. Their text is part of every database they created: never edit one, add one.
pub const MIGRATIONS: &[Migration] =
    &[(1, include_str!("../migrations/0001_bank.sql")), (2, include_str!("../migrations/0002_balance_seq.sql"))];

/// The handler's topics: the contract's names with the configured prefix.
pub use bank_core::topics::TopicNames as Topics;

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
        let mut emitter = events::Emitter::new(&self.codec, &self.topics);
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

//! The SQL of a batch transaction: stored results, new accounts, locking the accounts, `apply_transfers`, and
//! the result rows. Every function runs inside the batch's transaction.

use crate::batch::{Command, CommandKind, Incoming};
use crate::plan::{AppliedRow, Plan, Stored, Transfer};
use anyhow::Context;
use bank_core::avro::ConfirmMoneyTransfer;
use bank_core::movement::Movement;
use bank_core::refusal::{Refusal, RefusalCode};
use bank_core::{AccountToken, CASH, COMPANY_IBAN, CommandId, Iban, Money};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

type Tx<'t> = Transaction<'t, Postgres>;

/// Attempts to find a free IBAN for a new account before it is refused with `NO_IBAN_AVAILABLE`.
const IBAN_ATTEMPTS: usize = 5;

/// Creates the company account if it does not exist. With a configured token, the stored token is set to it.
pub async fn ensure_company(pool: &PgPool, token: Option<&str>, opening: Money, limit: Money) -> anyhow::Result<()> {
    let generated = AccountToken::generate();
    let inserted = sqlx::query(
        "INSERT INTO bank.accounts (iban, token, balance, limit_cents, opening_balance, a_type) \
         VALUES ($1, $2, $3, $4, $3, 'MANUAL') ON CONFLICT (iban) DO NOTHING",
    )
    .bind(COMPANY_IBAN)
    .bind(token.unwrap_or(generated.expose()))
    .bind(opening.cents())
    .bind(limit.cents())
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        tracing::info!(iban = COMPANY_IBAN, opening = %opening, "company account created");
    }
    if let Some(token) = token {
        sqlx::query("UPDATE bank.accounts SET token = $2 WHERE iban = $1 AND token <> $2")
            .bind(COMPANY_IBAN)
            .bind(token)
            .execute(pool)
            .await?;
    } else if inserted == 1 {
        tracing::warn!("COMPANY_ACCOUNT_TOKEN is not set: the company account got a random token nobody knows");
    }
    Ok(())
}

/// Stored results of `ids`, with the account each created.
pub async fn stored_results(tx: &mut Tx<'_>, ids: &[Uuid]) -> anyhow::Result<HashMap<Uuid, Stored>> {
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT r.id, r.kind, r.confirmed, r.reason, r.iban, a.token, a.a_type FROM bank.results r \
         LEFT JOIN bank.accounts a ON a.iban = r.iban WHERE r.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await
    .context("load stored results")?;
    Ok(rows.into_iter().map(|s| (s.id, s)).collect())
}

/// A new account to insert.
struct NewAccount {
    index: usize,
    iban: String,
    token: String,
    a_type: &'static str,
    id: Uuid,
}

/// Inserts the accounts of the creations planned; an IBAN that is taken (by an existing account or another
/// creation of this batch) is drawn again from `new_iban`, up to [`IBAN_ATTEMPTS`] times, then the creation is
/// refused.
pub async fn create_accounts(
    tx: &mut Tx<'_>,
    batch: &[Incoming],
    plans: &mut [Plan],
    default_limit: Money,
    new_iban: &(dyn Fn() -> Iban + Send + Sync),
) -> anyhow::Result<()> {
    let mut done: HashSet<usize> = HashSet::new();
    for _attempt in 0..IBAN_ATTEMPTS {
        let todo: Vec<NewAccount> = plans
            .iter()
            .enumerate()
            .filter(|(i, _)| !done.contains(i))
            .filter_map(|(index, plan)| match (plan, batch.get(index).map(|r| &r.command)) {
                (Plan::Creation { iban, token, a_type }, Some(Command::Creation(c))) => Some(NewAccount {
                    index,
                    iban: iban.as_str().to_owned(),
                    token: token.expose().to_owned(),
                    a_type: a_type.symbol(),
                    id: c.id.as_uuid(),
                }),
                _ => None,
            })
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let ibans: Vec<&str> = todo.iter().map(|t| t.iban.as_str()).collect();
        let tokens: Vec<&str> = todo.iter().map(|t| t.token.as_str()).collect();
        let types: Vec<&str> = todo.iter().map(|t| t.a_type).collect();
        let ids: Vec<Uuid> = todo.iter().map(|t| t.id).collect();
        // Matched by command id: two creations of this batch can draw the same IBAN, and only one gets it.
        let inserted: HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>(
            "INSERT INTO bank.accounts (iban, token, balance, limit_cents, opening_balance, a_type, created_by) \
             SELECT u.iban, u.token, 0, $4, 0, u.a_type, u.id FROM UNNEST($1::text[], $2::text[], $3::text[], $5::uuid[]) \
             AS u(iban, token, a_type, id) ON CONFLICT (iban) DO NOTHING RETURNING created_by",
        )
        .bind(&ibans)
        .bind(&tokens)
        .bind(&types)
        .bind(default_limit.cents())
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await
        .context("create accounts")?
        .into_iter()
        .collect();
        for t in todo {
            if inserted.contains(&t.id) {
                done.insert(t.index);
            } else if let Some(Plan::Creation { iban, .. }) = plans.get_mut(t.index) {
                *iban = new_iban();
            }
        }
    }
    for (i, plan) in plans.iter_mut().enumerate() {
        if matches!(plan, Plan::Creation { .. }) && !done.contains(&i) {
            *plan = Plan::Refused(Refusal::new(RefusalCode::NoIbanAvailable, "no free IBAN found after 5 attempts"));
        }
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    iban: String,
    token: String,
}

/// Locks every account the pending transfers touch, in IBAN order, and returns their tokens. `apply_transfers`
/// then updates them in batch order without taking a new lock, so two instances whose batches touch the same
/// accounts wait for each other instead of deadlocking.
pub async fn lock_accounts(
    tx: &mut Tx<'_>,
    pending: &[(usize, Movement)],
) -> anyhow::Result<HashMap<String, AccountToken>> {
    let mut wanted: Vec<&str> = pending.iter().flat_map(|(_, m)| m.accounts()).map(Iban::as_str).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let rows: Vec<TokenRow> =
        sqlx::query_as("SELECT iban, token FROM bank.accounts WHERE iban = ANY($1) ORDER BY iban FOR UPDATE")
            .bind(&wanted)
            .fetch_all(&mut **tx)
            .await
            .context("load accounts")?;
    Ok(rows.into_iter().map(|r| (r.iban, AccountToken::from_wire(r.token))).collect())
}

/// Applies the transfers in order (`bank.apply_transfers`); one row per transfer, in order.
pub async fn apply_transfers(tx: &mut Tx<'_>, apply: &[Transfer<'_>]) -> anyhow::Result<Vec<AppliedRow>> {
    let (froms, tos): (Vec<&str>, Vec<&str>) = apply.iter().map(|t| t.movement.sides()).unzip();
    let amounts: Vec<i64> = apply.iter().map(|t| t.amount.cents()).collect();
    sqlx::query_as(
        "SELECT ord, ok, code, from_balance, to_balance, from_seq, to_seq \
         FROM bank.apply_transfers($1::text[], $2::text[], $3::bigint[]) ORDER BY ord",
    )
    .bind(&froms)
    .bind(&tos)
    .bind(&amounts)
    .fetch_all(&mut **tx)
    .await
    .context("apply transfers")
}

/// `from`/`to` of a transfer as stored with its result: `cash` or a valid compact IBAN, otherwise NULL (a refused
/// command's side can be any string, and not every string can be stored).
fn stored_side(side: &str) -> Option<String> {
    (side == CASH || (side.is_ascii() && Iban::parse(side).is_ok_and(|i| i.as_str() == side))).then(|| side.to_owned())
}

/// The `bank.results` rows of a batch, column by column.
#[derive(Default)]
pub struct ResultRows {
    id: Vec<Uuid>,
    kind: Vec<&'static str>,
    confirmed: Vec<bool>,
    reason: Vec<Option<String>>,
    from: Vec<Option<String>>,
    to: Vec<Option<String>>,
    amount: Vec<Option<i64>>,
    from_balance: Vec<Option<i64>>,
    to_balance: Vec<Option<i64>>,
    iban: Vec<Option<String>>,
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
}

impl ResultRows {
    fn push_source(&mut self, r: &Incoming) {
        self.topic.push(r.topic.clone());
        self.partition.push(r.partition);
        self.offset.push(r.offset);
    }

    pub fn push_transfer(
        &mut self,
        r: &Incoming,
        c: &ConfirmMoneyTransfer,
        confirmed: bool,
        reason: Option<&str>,
        balances: Option<(Option<i64>, Option<i64>)>,
    ) {
        self.id.push(c.id.as_uuid());
        self.kind.push(CommandKind::Transfer.as_str());
        self.confirmed.push(confirmed);
        self.reason.push(reason.map(str::to_owned));
        self.from.push(stored_side(&c.from));
        self.to.push(stored_side(&c.to));
        self.amount.push(Some(c.amount));
        let (fb, tb) = balances.unwrap_or((None, None));
        self.from_balance.push(fb);
        self.to_balance.push(tb);
        self.iban.push(None);
        self.push_source(r);
    }

    pub fn push_account(
        &mut self,
        r: &Incoming,
        id: CommandId,
        confirmed: bool,
        reason: Option<&str>,
        iban: Option<&str>,
    ) {
        self.id.push(id.as_uuid());
        self.kind.push(CommandKind::Account.as_str());
        self.confirmed.push(confirmed);
        self.reason.push(reason.map(str::to_owned));
        self.from.push(None);
        self.to.push(None);
        self.amount.push(None);
        self.from_balance.push(None);
        self.to_balance.push(None);
        self.iban.push(iban.map(str::to_owned));
        self.push_source(r);
    }

    /// The failed result of a command that could not be handled: only what identifies it, none of its values.
    pub fn push_unprocessable(&mut self, r: &Incoming, id: CommandId, kind: CommandKind, reason: &str) {
        self.id.push(id.as_uuid());
        self.kind.push(kind.as_str());
        self.confirmed.push(false);
        self.reason.push(Some(reason.to_owned()));
        self.from.push(None);
        self.to.push(None);
        self.amount.push(None);
        self.from_balance.push(None);
        self.to_balance.push(None);
        self.iban.push(None);
        self.push_source(r);
    }

    pub async fn insert(self, tx: &mut Tx<'_>) -> anyhow::Result<()> {
        if self.id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO bank.results (id, kind, confirmed, reason, from_iban, to_iban, amount, from_balance, \
             to_balance, iban, source_topic, source_partition, source_offset) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::text[], \
             $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::int[], $13::bigint[])",
        )
        .bind(&self.id)
        .bind(&self.kind)
        .bind(&self.confirmed)
        .bind(&self.reason)
        .bind(&self.from)
        .bind(&self.to)
        .bind(&self.amount)
        .bind(&self.from_balance)
        .bind(&self.to_balance)
        .bind(&self.iban)
        .bind(&self.topic)
        .bind(&self.partition)
        .bind(&self.offset)
        .execute(&mut **tx)
        .await
        .context("insert results")?;
        Ok(())
    }
}

//! The `bank` schema and the batch transaction: for one batch of command records, ONE Postgres transaction
//! holds the balance changes, the stored result per command id, the outgoing events (outbox) and the consumed
//! offsets. A record below the stored offset of its partition was already handled and is skipped; a command id
//! with a stored result is a replay and re-emits that result without touching a balance.

use crate::rules::{self, Movement};
use anyhow::Context;
use bank_core::avro::{
    AccountCreationConfirmed, AccountCreationFailed, Atype, AvroRecord, BalanceChanged, ConfirmAccountCreation,
    ConfirmMoneyTransfer, MoneyTransferConfirmed, MoneyTransferFailed,
};
use bank_core::db::Migration;
use bank_core::refusal::{Refusal, RefusalCode};
use bank_core::registry::Codec;
use bank_core::topics::dead_letter_headers;
use bank_core::{AccountToken, CASH, COMPANY_IBAN, CommandId, Iban, Money};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

pub const SCHEMA: &str = "bank";

pub const MIGRATIONS: &[Migration] = &[
    (
        1,
        r#"
CREATE TABLE bank.accounts (
    iban            TEXT PRIMARY KEY,
    token           TEXT NOT NULL,
    balance         BIGINT NOT NULL,
    limit_cents     BIGINT NOT NULL,
    opening_balance BIGINT NOT NULL,
    a_type          TEXT NOT NULL CHECK (a_type IN ('AUTO', 'MANUAL')),
    created_by      UUID,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT balance_not_below_limit CHECK (balance >= limit_cents)
);

-- One row per command id: the outcome that a replay re-emits, and the ledger the audit checks.
CREATE TABLE bank.results (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('transfer', 'account')),
    confirmed        BOOLEAN NOT NULL,
    reason           TEXT,
    from_iban        TEXT,
    to_iban          TEXT,
    amount           BIGINT,
    from_balance     BIGINT,
    to_balance       BIGINT,
    iban             TEXT,
    source_topic     TEXT NOT NULL,
    source_partition INT NOT NULL,
    source_offset    BIGINT NOT NULL,
    handled_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Encoded events waiting to be published; deleted once Kafka acknowledged them.
CREATE TABLE bank.outbox (
    seq        BIGSERIAL PRIMARY KEY,
    topic      TEXT NOT NULL,
    key        BYTEA,
    payload    BYTEA,
    headers    TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Next offset to handle per source partition; the consumer seeks here on assignment.
CREATE TABLE bank.consumed_offsets (
    topic       TEXT NOT NULL,
    partition   INT NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- Applies transfers in order. A debit happens only if the balance stays at or above the limit, a credit only
-- if it cannot overflow; both are single UPDATEs, so there is no read-modify-write race.
CREATE FUNCTION bank.apply_transfers(froms TEXT[], tos TEXT[], amounts BIGINT[])
RETURNS TABLE (ord INT, ok BOOLEAN, code TEXT, from_balance BIGINT, to_balance BIGINT)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    i  INT;
    fb BIGINT;
    tb BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(amounts, 1), 0) LOOP
        fb := NULL;
        tb := NULL;
        IF froms[i] <> 'cash' THEN
            UPDATE bank.accounts a SET balance = a.balance - amounts[i]
             WHERE a.iban = froms[i] AND a.balance - amounts[i] >= a.limit_cents
            RETURNING a.balance INTO fb;
            IF NOT FOUND THEN
                ord := i; ok := false; code := 'INSUFFICIENT_FUNDS'; from_balance := NULL; to_balance := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        IF tos[i] <> 'cash' THEN
            UPDATE bank.accounts a SET balance = a.balance + amounts[i]
             WHERE a.iban = tos[i] AND a.balance <= 9223372036854775807 - amounts[i]
            RETURNING a.balance INTO tb;
            IF NOT FOUND THEN
                IF froms[i] <> 'cash' THEN
                    UPDATE bank.accounts a SET balance = a.balance + amounts[i] WHERE a.iban = froms[i];
                END IF;
                ord := i; ok := false; code := 'BALANCE_OVERFLOW'; from_balance := NULL; to_balance := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        ord := i; ok := true; code := NULL; from_balance := fb; to_balance := tb;
        RETURN NEXT;
    END LOOP;
END
$fn$;
"#,
    ),
    (
        2,
        r#"
-- Balance changes of the account so far; each balance_changed event carries the count after it (`seq`), so a
-- consumer that sees events out of order keeps the newest balance.
ALTER TABLE bank.accounts ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;

DROP FUNCTION bank.apply_transfers(TEXT[], TEXT[], BIGINT[]);

-- As in migration 1, and each balance change also counts up the account's seq (returned with the balance).
CREATE FUNCTION bank.apply_transfers(froms TEXT[], tos TEXT[], amounts BIGINT[])
RETURNS TABLE (ord INT, ok BOOLEAN, code TEXT, from_balance BIGINT, to_balance BIGINT, from_seq BIGINT, to_seq BIGINT)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    i  INT;
    fb BIGINT;
    tb BIGINT;
    fs BIGINT;
    ts BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(amounts, 1), 0) LOOP
        fb := NULL;
        tb := NULL;
        fs := NULL;
        ts := NULL;
        IF froms[i] <> 'cash' THEN
            UPDATE bank.accounts a SET balance = a.balance - amounts[i], seq = a.seq + 1
             WHERE a.iban = froms[i] AND a.balance - amounts[i] >= a.limit_cents
            RETURNING a.balance, a.seq INTO fb, fs;
            IF NOT FOUND THEN
                ord := i; ok := false; code := 'INSUFFICIENT_FUNDS'; from_balance := NULL; to_balance := NULL;
                from_seq := NULL; to_seq := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        IF tos[i] <> 'cash' THEN
            UPDATE bank.accounts a SET balance = a.balance + amounts[i], seq = a.seq + 1
             WHERE a.iban = tos[i] AND a.balance <= 9223372036854775807 - amounts[i]
            RETURNING a.balance, a.seq INTO tb, ts;
            IF NOT FOUND THEN
                IF froms[i] <> 'cash' THEN
                    UPDATE bank.accounts a SET balance = a.balance + amounts[i], seq = a.seq - 1 WHERE a.iban = froms[i];
                END IF;
                ord := i; ok := false; code := 'BALANCE_OVERFLOW'; from_balance := NULL; to_balance := NULL;
                from_seq := NULL; to_seq := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        ord := i; ok := true; code := NULL; from_balance := fb; to_balance := tb; from_seq := fs; to_seq := ts;
        RETURN NEXT;
    END LOOP;
END
$fn$;
"#,
    ),
];

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
    /// Could not be decoded: goes to `dead_letters` with this error.
    Poison(String),
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

/// Stored next offsets for the partitions of `topic`.
pub async fn stored_offsets(pool: &PgPool, topic: &str) -> Result<HashMap<i32, i64>, sqlx::Error> {
    let rows = sqlx::query("SELECT partition, next_offset FROM bank.consumed_offsets WHERE topic = $1")
        .bind(topic)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(|r| (r.get::<i32, _>(0), r.get::<i64, _>(1))).collect())
}

enum Plan {
    Skip,
    Poison(String),
    /// Re-emit a result stored by an earlier batch.
    Replay(Stored),
    /// Same id as an earlier record of this batch: emit that record's result again.
    Repeat(usize),
    Creation {
        iban: Iban,
        token: AccountToken,
        a_type: Atype,
    },
    Refused(Refusal),
    /// Valid so far; decided by `apply_transfers`.
    Apply,
}

#[derive(Debug, Clone)]
struct Stored {
    kind: String,
    confirmed: bool,
    reason: Option<String>,
    iban: Option<String>,
    token: Option<String>,
    a_type: Option<String>,
}

/// What a record's result is, once decided; the source of its result event.
#[derive(Clone)]
enum Decided {
    Transfer { confirmed: bool, reason: Option<String> },
    Account { iban: Option<(String, String, Atype)>, reason: Option<String> },
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
        let mut out = BatchOutcome::default();
        let mut tx = self.pool.begin().await.context("begin")?;

        // 1. Lock this batch's partitions (in a fixed order, so two instances cannot deadlock) and skip
        //    records another instance, or an earlier run, already handled.
        let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for r in batch {
            let e = first.entry((r.topic.clone(), r.partition)).or_insert(r.offset);
            *e = (*e).min(r.offset);
        }
        let (ts, ps, os): (Vec<String>, Vec<i32>, Vec<i64>) =
            first.iter().map(|((t, p), o)| (t.clone(), *p, *o)).fold((vec![], vec![], vec![]), |mut acc, (t, p, o)| {
                acc.0.push(t);
                acc.1.push(p);
                acc.2.push(o);
                acc
            });
        sqlx::query(
            "INSERT INTO bank.consumed_offsets (topic, partition, next_offset) \
             SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[]) ON CONFLICT DO NOTHING",
        )
        .bind(&ts)
        .bind(&ps)
        .bind(&os)
        .execute(&mut *tx)
        .await
        .context("insert offsets")?;
        let rows = sqlx::query(
            "SELECT o.topic, o.partition, o.next_offset FROM bank.consumed_offsets o \
             JOIN UNNEST($1::text[], $2::int[]) u(t, p) ON o.topic = u.t AND o.partition = u.p \
             ORDER BY o.topic, o.partition FOR UPDATE OF o",
        )
        .bind(&ts)
        .bind(&ps)
        .fetch_all(&mut *tx)
        .await
        .context("lock offsets")?;
        let mut next: BTreeMap<(String, i32), i64> =
            rows.iter().map(|r| ((r.get::<String, _>(0), r.get::<i32, _>(1)), r.get::<i64, _>(2))).collect();
        let fresh: Vec<bool> =
            batch.iter().map(|r| next.get(&(r.topic.clone(), r.partition)).is_none_or(|n| r.offset >= *n)).collect();

        // 2. Stored results of the ids in this batch.
        let ids: Vec<Uuid> = batch
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| **f)
            .filter_map(|(r, _)| match &r.command {
                Command::Transfer(c) => Some(c.id.as_uuid()),
                Command::Creation(c) => Some(c.id.as_uuid()),
                Command::Poison(_) => None,
            })
            .collect();
        let stored: HashMap<Uuid, Stored> = sqlx::query(
            "SELECT r.id, r.kind, r.confirmed, r.reason, r.iban, a.token, a.a_type FROM bank.results r \
             LEFT JOIN bank.accounts a ON a.iban = r.iban WHERE r.id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .context("load stored results")?
        .iter()
        .map(|r| {
            (
                r.get::<Uuid, _>(0),
                Stored {
                    kind: r.get(1),
                    confirmed: r.get(2),
                    reason: r.get(3),
                    iban: r.get(4),
                    token: r.get(5),
                    a_type: r.get(6),
                },
            )
        })
        .collect();

        // 3. Plan every record; static rules first.
        let mut seen: HashMap<Uuid, usize> = HashMap::new();
        let mut plans: Vec<Plan> = Vec::with_capacity(batch.len());
        let mut pending: Vec<(usize, Movement)> = Vec::new();
        for (i, (r, fresh)) in batch.iter().zip(&fresh).enumerate() {
            if !fresh {
                plans.push(Plan::Skip);
                continue;
            }
            let id = match &r.command {
                Command::Poison(e) => {
                    plans.push(Plan::Poison(e.clone()));
                    continue;
                }
                Command::Transfer(c) => c.id.as_uuid(),
                Command::Creation(c) => c.id.as_uuid(),
            };
            if let Some(s) = stored.get(&id) {
                plans.push(Plan::Replay(s.clone()));
                continue;
            }
            if let Some(&earlier) = seen.get(&id) {
                plans.push(Plan::Repeat(earlier));
                continue;
            }
            seen.insert(id, i);
            match &r.command {
                Command::Creation(c) => plans.push(Plan::Creation {
                    iban: (self.new_iban)(),
                    token: AccountToken::generate(),
                    a_type: c.a_type,
                }),
                Command::Transfer(c) => match rules::check(c, self.limits.max_transfer) {
                    Ok(m) => {
                        pending.push((i, m));
                        plans.push(Plan::Apply);
                    }
                    Err(refusal) => plans.push(Plan::Refused(refusal)),
                },
                Command::Poison(_) => unreachable!("handled above"),
            }
        }

        // 4. New accounts, before the transfers of this batch (one may pay into an account created earlier in it).
        self.create_accounts(&mut tx, batch, &mut plans).await?;

        // 5. Tokens and existence, checked in Rust with a constant-time comparison. Every account of the batch is
        //    locked here, in IBAN order: `apply_transfers` then updates them in batch order without taking a new
        //    lock, so two instances whose batches touch the same accounts wait for each other instead of deadlocking.
        let mut wanted: Vec<String> =
            pending.iter().flat_map(|(_, m)| m.accounts()).map(|i| i.as_str().to_owned()).collect();
        wanted.sort();
        wanted.dedup();
        let known: HashMap<String, AccountToken> =
            sqlx::query("SELECT iban, token FROM bank.accounts WHERE iban = ANY($1) ORDER BY iban FOR UPDATE")
                .bind(&wanted)
                .fetch_all(&mut *tx)
                .await
                .context("load accounts")?
                .iter()
                .map(|r| (r.get::<String, _>(0), AccountToken::from_wire(r.get::<String, _>(1))))
                .collect();
        let mut apply: Vec<(usize, &Movement, i64)> = Vec::new();
        for (record_index, movement) in &pending {
            let Some(Command::Transfer(cmd)) = batch.get(*record_index).map(|r| &r.command) else { continue };
            let refusal =
                if let Some(unknown) = movement.accounts().into_iter().find(|a| !known.contains_key(a.as_str())) {
                    Some(Refusal::new(RefusalCode::UnknownAccount, format!("no account {unknown}")))
                } else if !known.get(movement.authorising().as_str()).is_some_and(|t| t.matches(&cmd.token)) {
                    Some(Refusal::new(
                        RefusalCode::InvalidToken,
                        format!("token does not authorise account {}", movement.authorising()),
                    ))
                } else {
                    None
                };
            match (refusal, plans.get_mut(*record_index)) {
                (Some(r), Some(plan)) => *plan = Plan::Refused(r),
                (Some(_), None) => {}
                (None, _) => apply.push((*record_index, movement, cmd.amount)),
            }
        }

        // 6. Balances, in order, in SQL.
        let (froms, tos, amounts): (Vec<&str>, Vec<&str>, Vec<i64>) =
            apply.iter().fold((vec![], vec![], vec![]), |mut acc, (_, m, amount)| {
                let (f, t) = m.sides();
                acc.0.push(f);
                acc.1.push(t);
                acc.2.push(*amount);
                acc
            });
        let applied = sqlx::query(
            "SELECT ord, ok, code, from_balance, to_balance, from_seq, to_seq \
             FROM bank.apply_transfers($1::text[], $2::text[], $3::bigint[]) ORDER BY ord",
        )
        .bind(&froms)
        .bind(&tos)
        .bind(&amounts)
        .fetch_all(&mut *tx)
        .await
        .context("apply transfers")?;
        let mut balances: HashMap<usize, (Option<i64>, Option<i64>)> = HashMap::new();
        let mut seqs: HashMap<usize, (Option<i64>, Option<i64>)> = HashMap::new();
        for (row, (record_index, movement, amount)) in applied.iter().zip(&apply) {
            if row.get::<bool, _>(1) {
                balances.insert(*record_index, (row.get(3), row.get(4)));
                seqs.insert(*record_index, (row.get(5), row.get(6)));
            } else {
                let code: String = row.get(2);
                let refusal = if code == RefusalCode::InsufficientFunds.as_str() {
                    let (from, _) = movement.sides();
                    Refusal::new(
                        RefusalCode::InsufficientFunds,
                        format!("{} from {from} would take the balance below its limit", Money::from_cents(*amount)),
                    )
                } else {
                    let (_, to) = movement.sides();
                    Refusal::new(RefusalCode::BalanceOverflow, format!("the balance of {to} would overflow"))
                };
                if let Some(plan) = plans.get_mut(*record_index) {
                    *plan = Plan::Refused(refusal);
                }
            }
        }
        anyhow::ensure!(
            applied.len() == apply.len(),
            "apply_transfers returned {} rows for {}",
            applied.len(),
            apply.len()
        );

        // 7. Results, events and offsets.
        let mut results = ResultRows::default();
        let mut events: Vec<Event> = Vec::new();
        let mut decided: HashMap<usize, Decided> = HashMap::new();
        for (i, (r, plan)) in batch.iter().zip(&plans).enumerate() {
            let key = |id: &CommandId| Some(id.as_uuid().to_string().into_bytes());
            match plan {
                Plan::Skip => {
                    out.skipped += 1;
                    continue;
                }
                Plan::Poison(error) => {
                    out.dead_lettered += 1;
                    let headers = vec![
                        (dead_letter_headers::SOURCE_TOPIC.to_owned(), r.topic.clone()),
                        (dead_letter_headers::SOURCE_PARTITION.to_owned(), r.partition.to_string()),
                        (dead_letter_headers::SOURCE_OFFSET.to_owned(), r.offset.to_string()),
                        (dead_letter_headers::ERROR.to_owned(), error.clone()),
                    ];
                    events.push((self.topics.dead_letters.clone(), r.key.clone(), r.payload.clone(), headers));
                }
                Plan::Replay(s) => {
                    out.replayed += 1;
                    let d = if s.kind == "transfer" {
                        Decided::Transfer { confirmed: s.confirmed, reason: s.reason.clone() }
                    } else {
                        let account = match (&s.iban, &s.token, s.a_type.as_deref().and_then(Atype::from_symbol)) {
                            (Some(iban), Some(token), Some(a_type)) => Some((iban.clone(), token.clone(), a_type)),
                            _ => None,
                        };
                        Decided::Account { iban: account, reason: s.reason.clone() }
                    };
                    self.result_event(r, &d, &mut events, key).await?;
                }
                Plan::Repeat(earlier) => {
                    out.replayed += 1;
                    let d = decided.get(earlier).cloned().context("repeated id without an earlier result")?;
                    self.result_event(r, &d, &mut events, key).await?;
                }
                Plan::Creation { iban, token, a_type } => {
                    let Command::Creation(c) = &r.command else { unreachable!("creation plan") };
                    out.accounts_created += 1;
                    out.confirmed += 1;
                    results.push_account(r, c.id, true, None, Some(iban.as_str()));
                    let d = Decided::Account {
                        iban: Some((iban.as_str().to_owned(), token.expose().to_owned(), *a_type)),
                        reason: None,
                    };
                    self.result_event(r, &d, &mut events, key).await?;
                    decided.insert(i, d);
                }
                Plan::Refused(refusal) => {
                    out.failed += 1;
                    *out.refusals.entry(refusal.code.as_str()).or_default() += 1;
                    let reason = refusal.reason();
                    let d = match &r.command {
                        Command::Transfer(c) => {
                            results.push_transfer(r, c, false, Some(&reason), None);
                            Decided::Transfer { confirmed: false, reason: Some(reason) }
                        }
                        Command::Creation(c) => {
                            results.push_account(r, c.id, false, Some(&reason), None);
                            Decided::Account { iban: None, reason: Some(reason) }
                        }
                        Command::Poison(_) => unreachable!("poison is planned as such"),
                    };
                    self.result_event(r, &d, &mut events, key).await?;
                    decided.insert(i, d);
                }
                Plan::Apply => {
                    let Command::Transfer(c) = &r.command else { unreachable!("apply plan") };
                    let (fb, tb) = balances.get(&i).copied().context("an applied transfer without balances")?;
                    out.confirmed += 1;
                    results.push_transfer(r, c, true, None, Some((fb, tb)));
                    let (fs, ts) = seqs.get(&i).copied().unwrap_or_default();
                    if let Some(balance) = fb {
                        let seq = fs.unwrap_or_default();
                        self.balance_event(c, &c.from, (balance, seq), -c.amount, &c.to, &mut events).await?;
                    }
                    if let Some(balance) = tb {
                        let seq = ts.unwrap_or_default();
                        self.balance_event(c, &c.to, (balance, seq), c.amount, &c.from, &mut events).await?;
                    }
                    let d = Decided::Transfer { confirmed: true, reason: None };
                    self.result_event(r, &d, &mut events, key).await?;
                    decided.insert(i, d);
                }
            }
            let e = next.entry((r.topic.clone(), r.partition)).or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
        results.insert(&mut tx).await?;
        out.outbox = insert_outbox(&mut tx, events).await?;
        let (ts, ps, ns): (Vec<String>, Vec<i32>, Vec<i64>) =
            next.iter().fold((vec![], vec![], vec![]), |mut acc, ((t, p), n)| {
                acc.0.push(t.clone());
                acc.1.push(*p);
                acc.2.push(*n);
                acc
            });
        sqlx::query(
            "UPDATE bank.consumed_offsets o SET next_offset = u.n, updated_at = now() \
             FROM UNNEST($1::text[], $2::int[], $3::bigint[]) u(t, p, n) \
             WHERE o.topic = u.t AND o.partition = u.p AND o.next_offset <> u.n",
        )
        .bind(&ts)
        .bind(&ps)
        .bind(&ns)
        .execute(&mut *tx)
        .await
        .context("store offsets")?;
        tx.commit().await.context("commit")?;
        out.offsets = next;
        Ok(out)
    }

    async fn create_accounts(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &[Incoming],
        plans: &mut [Plan],
    ) -> anyhow::Result<()> {
        let mut done: std::collections::HashSet<usize> = std::collections::HashSet::new();
        for _attempt in 0..5 {
            let mut todo: Vec<(usize, String, String, &'static str, Uuid)> = Vec::new();
            for (i, plan) in plans.iter().enumerate() {
                if let (Plan::Creation { iban, token, a_type }, Some(Command::Creation(c))) =
                    (plan, batch.get(i).map(|r| &r.command))
                    && !done.contains(&i)
                {
                    todo.push((
                        i,
                        iban.as_str().to_owned(),
                        token.expose().to_owned(),
                        a_type.symbol(),
                        c.id.as_uuid(),
                    ));
                }
            }
            if todo.is_empty() {
                return Ok(());
            }
            let ibans: Vec<&str> = todo.iter().map(|t| t.1.as_str()).collect();
            let tokens: Vec<&str> = todo.iter().map(|t| t.2.as_str()).collect();
            let types: Vec<&str> = todo.iter().map(|t| t.3).collect();
            let ids: Vec<Uuid> = todo.iter().map(|t| t.4).collect();
            // Matched by command id: two creations of this batch can draw the same IBAN, and only one gets it.
            let inserted: Vec<Uuid> = sqlx::query_scalar(
                "INSERT INTO bank.accounts (iban, token, balance, limit_cents, opening_balance, a_type, created_by) \
                 SELECT u.iban, u.token, 0, $4, 0, u.a_type, u.id FROM UNNEST($1::text[], $2::text[], $3::text[], $5::uuid[]) \
                 AS u(iban, token, a_type, id) ON CONFLICT (iban) DO NOTHING RETURNING created_by",
            )
            .bind(&ibans)
            .bind(&tokens)
            .bind(&types)
            .bind(self.limits.default_limit.cents())
            .bind(&ids)
            .fetch_all(&mut **tx)
            .await
            .context("create accounts")?;
            let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
            for (i, _, _, _, id) in todo {
                if inserted.contains(&id) {
                    done.insert(i);
                } else if let Some(Plan::Creation { iban, .. }) = plans.get_mut(i) {
                    *iban = (self.new_iban)();
                }
            }
        }
        for (i, plan) in plans.iter_mut().enumerate() {
            if matches!(plan, Plan::Creation { .. }) && !done.contains(&i) {
                *plan =
                    Plan::Refused(Refusal::new(RefusalCode::NoIbanAvailable, "no free IBAN found after 5 attempts"));
            }
        }
        Ok(())
    }

    async fn result_event(
        &self,
        r: &Incoming,
        d: &Decided,
        events: &mut Vec<Event>,
        key: impl Fn(&CommandId) -> Option<Vec<u8>>,
    ) -> anyhow::Result<()> {
        let id = match &r.command {
            Command::Transfer(c) => c.id,
            Command::Creation(c) => c.id,
            Command::Poison(_) => unreachable!("poison has no result"),
        };
        let (topic, payload) = match d {
            Decided::Transfer { confirmed: true, .. } => {
                let t = &self.topics.money_transfer_confirmed;
                (t, self.encode(t, &MoneyTransferConfirmed { id }).await?)
            }
            Decided::Transfer { confirmed: false, reason } => {
                let t = &self.topics.money_transfer_failed;
                (t, self.encode(t, &MoneyTransferFailed { id, reason: reason.clone().unwrap_or_default() }).await?)
            }
            Decided::Account { iban: Some((iban, token, a_type)), .. } => {
                let t = &self.topics.account_creation_confirmed;
                let rec = AccountCreationConfirmed { id, iban: iban.clone(), token: token.clone(), a_type: *a_type };
                (t, self.encode(t, &rec).await?)
            }
            Decided::Account { iban: None, reason } => {
                let t = &self.topics.account_creation_failed;
                (t, self.encode(t, &AccountCreationFailed { id, reason: reason.clone().unwrap_or_default() }).await?)
            }
        };
        events.push((topic.clone(), key(&id), Some(payload), Vec::new()));
        Ok(())
    }

    async fn balance_event(
        &self,
        c: &ConfirmMoneyTransfer,
        iban: &str,
        (new_balance, seq): (i64, i64),
        changed_by: i64,
        from_to: &str,
        events: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        let t = &self.topics.balance_changed;
        let rec = BalanceChanged {
            iban: iban.to_owned(),
            new_balance,
            changed_by,
            from_to: from_to.to_owned(),
            description: c.description.clone(),
            transfer_id: Some(c.id),
            seq,
        };
        events.push((t.clone(), Some(iban.as_bytes().to_vec()), Some(self.encode(t, &rec).await?), Vec::new()));
        Ok(())
    }

    async fn encode<R: AvroRecord>(&self, topic: &str, record: &R) -> anyhow::Result<Vec<u8>> {
        self.codec.encode(topic, record).await.with_context(|| format!("encode {} for {topic}", R::FULL_NAME))
    }
}

/// `from`/`to` of a transfer as stored with its result: `cash` or a valid compact IBAN, otherwise NULL (a refused
/// command's side can be any string, and not every string can be stored).
fn stored_side(side: &str) -> Option<String> {
    (side == CASH || (side.is_ascii() && Iban::parse(side).is_ok_and(|i| i.as_str() == side))).then(|| side.to_owned())
}

#[derive(Default)]
struct ResultRows {
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

    fn push_transfer(
        &mut self,
        r: &Incoming,
        c: &ConfirmMoneyTransfer,
        confirmed: bool,
        reason: Option<&str>,
        balances: Option<(Option<i64>, Option<i64>)>,
    ) {
        self.id.push(c.id.as_uuid());
        self.kind.push("transfer");
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

    fn push_account(&mut self, r: &Incoming, id: CommandId, confirmed: bool, reason: Option<&str>, iban: Option<&str>) {
        self.id.push(id.as_uuid());
        self.kind.push("account");
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

    async fn insert(self, tx: &mut Transaction<'_, Postgres>) -> anyhow::Result<()> {
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

/// An encoded event before it has an outbox sequence number: topic, key, payload, headers.
type Event = (String, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, String)>);

async fn insert_outbox(tx: &mut Transaction<'_, Postgres>, events: Vec<Event>) -> anyhow::Result<Vec<OutboxRow>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let topics: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    let keys: Vec<Option<&[u8]>> = events.iter().map(|e| e.1.as_deref()).collect();
    let payloads: Vec<Option<&[u8]>> = events.iter().map(|e| e.2.as_deref()).collect();
    let headers: Vec<Option<String>> =
        events.iter().map(|e| if e.3.is_empty() { None } else { serde_json::to_string(&e.3).ok() }).collect();
    let mut seqs: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO bank.outbox (topic, key, payload, headers) \
         SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bytea[], $4::text[]) RETURNING seq",
    )
    .bind(&topics)
    .bind(&keys)
    .bind(&payloads)
    .bind(&headers)
    .fetch_all(&mut **tx)
    .await
    .context("insert outbox")?;
    seqs.sort_unstable();
    Ok(seqs
        .into_iter()
        .zip(events)
        .map(|(seq, (topic, key, payload, headers))| OutboxRow { seq, topic, key, payload, headers })
        .collect())
}

/// Parses the stored header column.
pub fn parse_headers(stored: Option<&str>) -> Vec<(String, String)> {
    stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
}

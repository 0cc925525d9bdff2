//! What each record of a batch becomes, decided without a database: skipped (already handled), dead-lettered,
//! a replay of a stored result, a repeat of an earlier record of the batch, a refusal, an account creation, or a
//! transfer to apply. The database answers (stored offsets, stored results, accounts, `apply_transfers` rows)
//! come in as plain values.

use crate::batch::{Command, CommandKind, Incoming};
use crate::rules;
use bank_core::avro::Atype;
use bank_core::movement::Movement;
use bank_core::refusal::{Refusal, RefusalCode};
use bank_core::{AccountToken, Iban, Money};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use uuid::Uuid;

/// A `kind` column value this code does not know.
#[derive(Debug)]
pub struct UnknownKind(pub String);

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown result kind {:?}", self.0)
    }
}

impl std::error::Error for UnknownKind {}

impl TryFrom<String> for CommandKind {
    type Error = UnknownKind;
    fn try_from(s: String) -> Result<Self, UnknownKind> {
        match s.as_str() {
            "transfer" => Ok(Self::Transfer),
            "account" => Ok(Self::Account),
            _ => Err(UnknownKind(s)),
        }
    }
}

impl sqlx::Type<sqlx::Postgres> for CommandKind {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for CommandKind {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let s = <String as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Self::try_from(s)?)
    }
}

/// A result stored by an earlier batch, with the account it created (if any).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Stored {
    pub id: Uuid,
    pub kind: CommandKind,
    pub confirmed: bool,
    pub reason: Option<String>,
    pub iban: Option<String>,
    pub token: Option<String>,
    pub a_type: Option<String>,
}

/// A row of `bank.apply_transfers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct AppliedRow {
    pub ord: i32,
    pub ok: bool,
    pub code: Option<String>,
    pub from_balance: Option<i64>,
    pub to_balance: Option<i64>,
    pub from_seq: Option<i64>,
    pub to_seq: Option<i64>,
}

#[derive(Debug)]
pub enum Plan {
    Skip,
    /// Dead-letter only, with this error.
    Poison(String),
    /// Dead-letter with this error, and store and publish a failed result (`UNPROCESSABLE`).
    Unprocessable(String),
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

/// The plans of a batch (one per record, in order) and the valid transfers among them.
pub struct Planned {
    pub plans: Vec<Plan>,
    /// Record index and movement of every transfer planned as [`Plan::Apply`].
    pub pending: Vec<(usize, Movement)>,
}

/// A transfer that passed every check before `apply_transfers`.
#[derive(Debug, Clone, Copy)]
pub struct Transfer<'a> {
    pub index: usize,
    pub movement: &'a Movement,
    pub amount: Money,
}

/// New balances and sequence numbers of an applied transfer (`None` for `cash`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balances {
    pub from_balance: Option<i64>,
    pub to_balance: Option<i64>,
    pub from_seq: Option<i64>,
    pub to_seq: Option<i64>,
}

/// The reason of the failed result of a command that was dead-lettered because it could not be handled. It names
/// no value of the command: those are what could not be handled.
pub fn unprocessable() -> Refusal {
    Refusal::new(RefusalCode::Unprocessable, "the command could not be handled; it was dead-lettered")
}

/// Per record: false if the stored next offset of its partition is past it (another instance, or an earlier
/// run, handled it).
pub fn fresh(batch: &[Incoming], next: &BTreeMap<(String, i32), i64>) -> Vec<bool> {
    batch.iter().map(|r| next.get(&(r.topic.clone(), r.partition)).is_none_or(|n| r.offset >= *n)).collect()
}

/// Command ids of the fresh records, whose stored results must be looked up.
pub fn ids(batch: &[Incoming], fresh: &[bool]) -> Vec<Uuid> {
    batch.iter().zip(fresh).filter(|(_, f)| **f).filter_map(|(r, _)| r.command.id()).map(|id| id.as_uuid()).collect()
}

/// Plans every record with the rules that need no account.
pub fn plan(
    batch: &[Incoming],
    fresh: &[bool],
    stored: &HashMap<Uuid, Stored>,
    max_transfer: Money,
    new_iban: &dyn Fn() -> Iban,
) -> Planned {
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    let mut plans = Vec::with_capacity(batch.len());
    let mut pending = Vec::new();
    for (i, (r, fresh)) in batch.iter().zip(fresh).enumerate() {
        let id = r.command.id().map(|id| id.as_uuid());
        let earlier =
            id.and_then(|id| stored.get(&id).cloned().map(Plan::Replay).or(seen.get(&id).copied().map(Plan::Repeat)));
        let plan = match (&r.command, earlier) {
            _ if !fresh => Plan::Skip,
            (Command::Poison(e), _) => Plan::Poison(e.clone()),
            // Its id already has a result: only the record is dead-lettered.
            (Command::Unprocessable { error, .. }, Some(_)) => Plan::Poison(error.clone()),
            (_, Some(earlier)) => earlier,
            (Command::Unprocessable { error, .. }, None) => Plan::Unprocessable(error.clone()),
            (Command::Creation(c), None) => {
                Plan::Creation { iban: new_iban(), token: AccountToken::generate(), a_type: c.a_type }
            }
            (Command::Transfer(c), None) => match rules::check(c, max_transfer) {
                Ok(m) => {
                    pending.push((i, m));
                    Plan::Apply
                }
                Err(refusal) => Plan::Refused(refusal),
            },
        };
        if let (Some(id), Plan::Unprocessable(_) | Plan::Creation { .. } | Plan::Apply | Plan::Refused(_)) = (id, &plan)
        {
            seen.insert(id, i);
        }
        plans.push(plan);
    }
    Planned { plans, pending }
}

/// Refuses the pending transfers whose accounts do not exist or whose token does not authorise them (`known`:
/// token per existing IBAN); returns the rest, in batch order.
pub fn authorise<'a>(
    batch: &[Incoming],
    pending: &'a [(usize, Movement)],
    known: &HashMap<String, AccountToken>,
    plans: &mut [Plan],
) -> Vec<Transfer<'a>> {
    let mut apply = Vec::new();
    for (index, movement) in pending {
        let Some(Command::Transfer(cmd)) = batch.get(*index).map(|r| &r.command) else { continue };
        let refusal = if let Some(unknown) = movement.accounts().into_iter().find(|a| !known.contains_key(a.as_str())) {
            Some(Refusal::new(RefusalCode::UnknownAccount, format!("no account {unknown}")))
        } else if !known.get(movement.authorising().as_str()).is_some_and(|t| t.matches(&cmd.token)) {
            Some(Refusal::new(
                RefusalCode::InvalidToken,
                format!("token does not authorise account {}", movement.authorising()),
            ))
        } else {
            None
        };
        match (refusal, plans.get_mut(*index)) {
            (Some(r), Some(plan)) => *plan = Plan::Refused(r),
            (Some(_), None) => {}
            (None, _) => apply.push(Transfer { index: *index, movement, amount: Money::from_cents(cmd.amount) }),
        }
    }
    apply
}

/// Reads `apply_transfers`' rows (one per transfer, in order): refuses the transfers it did not apply and
/// returns the new balances of the others by record index.
pub fn applied(
    apply: &[Transfer<'_>],
    rows: &[AppliedRow],
    plans: &mut [Plan],
) -> anyhow::Result<HashMap<usize, Balances>> {
    anyhow::ensure!(rows.len() == apply.len(), "apply_transfers returned {} rows for {}", rows.len(), apply.len());
    let mut balances = HashMap::new();
    for (row, t) in rows.iter().zip(apply) {
        if row.ok {
            let b = Balances {
                from_balance: row.from_balance,
                to_balance: row.to_balance,
                from_seq: row.from_seq,
                to_seq: row.to_seq,
            };
            balances.insert(t.index, b);
            continue;
        }
        let (from, to) = t.movement.sides();
        let refusal = if row.code.as_deref() == Some(RefusalCode::InsufficientFunds.as_str()) {
            Refusal::new(
                RefusalCode::InsufficientFunds,
                format!("{} from {from} would take the balance below its limit", t.amount),
            )
        } else {
            Refusal::new(RefusalCode::BalanceOverflow, format!("the balance of {to} would overflow"))
        };
        if let Some(plan) = plans.get_mut(t.index) {
            *plan = Plan::Refused(refusal);
        }
    }
    Ok(balances)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

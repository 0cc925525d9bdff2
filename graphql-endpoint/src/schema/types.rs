//! The GraphQL types: scalars, objects and enums, and their conversions from the gateway's rows.

use crate::channel::Notice;
use crate::store::{self, Role, TransferRow, User};
use async_graphql::{Enum, ID, InputValueError, InputValueResult, Scalar, ScalarType, SimpleObject, Value};
use bank_core::refusal::Refusal;

pub use crate::store::TransferStatus;

/// A 64-bit integer (cents, counters), sent as a decimal string so JavaScript keeps every digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BigInt(pub i64);

#[Scalar(name = "BigInt")]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => s.parse().map(BigInt).map_err(|_| InputValueError::custom("not a 64-bit integer")),
            Value::Number(n) => n.as_i64().map(BigInt).ok_or_else(|| InputValueError::custom("not a 64-bit integer")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Account {
    pub iban: String,
    /// Balance in cents
    pub balance_cents: BigInt,
    /// Lowest balance allowed, in cents (negative: an overdraft)
    pub limit_cents: BigInt,
    /// AUTO (made by the command generator) or MANUAL (a registered user), when known
    pub a_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum UserRole {
    Client,
    Employee,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Session {
    /// Opaque bearer token: `Authorization: Bearer <token>` over HTTP, `{"token": "<token>"}` in `connection_init`
    pub token: String,
    pub username: String,
    pub role: UserRole,
    pub account: Account,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct TransferResult {
    pub id: ID,
    pub status: TransferStatus,
    /// The handler's reason when FAILED, `CODE: message`
    pub reason: Option<String>,
    /// The handler's refusal code when FAILED, e.g. INSUFFICIENT_FUNDS
    pub code: Option<String>,
}

impl TransferResult {
    fn of(id: uuid::Uuid, status: TransferStatus, reason: Option<&str>) -> Self {
        let code = reason.and_then(|r| Refusal::parse_reason(r).0).map(|c| c.as_str().to_owned());
        Self { id: ID(id.to_string()), status, reason: reason.map(str::to_owned), code }
    }

    pub fn from_notice(n: &Notice) -> Self {
        Self::of(n.id, n.status.unwrap_or(TransferStatus::Pending), n.reason.as_deref())
    }
}

impl From<&TransferRow> for TransferResult {
    fn from(r: &TransferRow) -> Self {
        Self::of(r.id, r.status, r.reason.as_deref())
    }
}

impl From<TransferRow> for TransferResult {
    fn from(r: TransferRow) -> Self {
        Self::from(&r)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum Direction {
    /// Money in
    Credit,
    /// Money out
    Debit,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Transaction {
    /// `<transfer id>:<iban>`: the same in queries and subscriptions
    pub id: ID,
    pub transfer_id: Option<ID>,
    pub iban: String,
    pub new_balance_cents: BigInt,
    pub changed_by_cents: BigInt,
    /// The other side: an IBAN, or `cash`
    pub from_to: String,
    pub description: String,
    pub direction: Direction,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl From<&store::BalanceRecord> for Transaction {
    fn from(r: &store::BalanceRecord) -> Self {
        let id = match r.transfer_id {
            Some(t) => format!("{t}:{}", r.iban),
            None => format!("p{}o{}:{}", r.partition, r.offset, r.iban),
        };
        Transaction {
            id: ID(id),
            transfer_id: r.transfer_id.map(|t| ID(t.to_string())),
            iban: r.iban.clone(),
            new_balance_cents: BigInt(r.new_balance),
            changed_by_cents: BigInt(r.changed_by),
            from_to: r.from_to.clone(),
            description: r.description.clone(),
            direction: if r.changed_by < 0 { Direction::Debit } else { Direction::Credit },
            at: r.at,
        }
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct TransactionEdge {
    pub cursor: String,
    pub node: Transaction,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct TransactionConnection {
    pub edges: Vec<TransactionEdge>,
    pub nodes: Vec<Transaction>,
    pub page_info: PageInfo,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct AccountEdge {
    pub cursor: String,
    pub node: Account,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct AccountConnection {
    pub edges: Vec<AccountEdge>,
    pub nodes: Vec<Account>,
    pub page_info: PageInfo,
}

/// Public counters of the whole bank.
#[derive(Debug, Clone, SimpleObject)]
pub struct BankStats {
    /// Accounts known to the gateway's projection
    pub accounts: BigInt,
    /// Balance changes projected
    pub transactions: BigInt,
    /// Confirmed transfers projected (deposits and withdrawals included)
    pub transfers: BigInt,
    /// Confirmed transfers per second over the last ten seconds
    pub transfers_per_second: f64,
}

impl From<&User> for UserRole {
    fn from(user: &User) -> Self {
        match user.role {
            Role::Client => UserRole::Client,
            Role::Employee => UserRole::Employee,
        }
    }
}

impl Account {
    /// An account of `limit_cents` as the projection sees it.
    pub fn of(row: store::AccountRow, limit_cents: i64) -> Self {
        Account {
            iban: row.iban,
            balance_cents: BigInt(row.balance),
            limit_cents: BigInt(limit_cents),
            a_type: row.a_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_ints_travel_as_strings() {
        assert_eq!(BigInt(i64::MAX).to_value(), Value::String("9223372036854775807".into()));
        assert_eq!(BigInt::parse(Value::String("-5".into())).unwrap(), BigInt(-5));
        assert!(BigInt::parse(Value::String("1.5".into())).is_err());
    }

    #[test]
    fn a_failed_result_carries_the_refusal_code() {
        let id = uuid::Uuid::new_v4();
        let row = TransferRow {
            id,
            from_iban: "a".into(),
            to_iban: "b".into(),
            amount: 1,
            description: String::new(),
            status: TransferStatus::Failed,
            reason: Some("INSUFFICIENT_FUNDS: not enough".into()),
        };
        let r = TransferResult::from(&row);
        assert_eq!((r.status, r.code.as_deref()), (TransferStatus::Failed, Some("INSUFFICIENT_FUNDS")));
        assert_eq!(r.id, ID(id.to_string()));
        let n = Notice {
            kind: crate::channel::NoticeKind::Transfer,
            id,
            user: 1,
            status: None,
            reason: None,
            balance: false,
        };
        assert_eq!(TransferResult::from_notice(&n).status, TransferStatus::Pending, "no status: still pending");
    }
}

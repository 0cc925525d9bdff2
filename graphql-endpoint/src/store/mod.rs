//! The gateway's tables (Postgres schema `gateway`): users and their sessions, the transfers users asked for
//! (one per idempotency key), login and registration attempts, and the projection of `balance_changed` into transactions and account balances.
//! The tables are created by the SQL files in `graphql-endpoint/migrations`.

pub mod attempts;
mod project;
mod reads;
mod transfers;
mod users;

pub use crate::status::TransferStatus;
pub use project::{BalanceRecord, Projected, ProjectionBatch, project};
pub use reads::{AccountRow, TransactionRow, accounts, balance, counters, history};
pub use transfers::{NewTransfer, TransferRow, balance_projected, claim_transfers, resolve_transfer, transfer};
pub use users::{
    EmployeeUpsert, Role, User, credentials, delete_session, delete_sessions_of, delete_user, insert_client,
    insert_session, pending_creation, token_hash, upsert_employee, user_by_id, user_by_session,
};

pub const SCHEMA: &str = "gateway";

/// The schema's migrations, applied in order once each (an applied one must never change).
pub const MIGRATIONS: &[bank_core::db::Migration] = &[
    (1, include_str!("../../migrations/0001_tables.sql")),
    (2, include_str!("../../migrations/0002_account_seq.sql")),
    (3, include_str!("../../migrations/0003_attempts.sql")),
];

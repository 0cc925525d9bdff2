//! The results channel's contract: its name ([`CHANNEL`]), its payload ([`Notice`]) and the SQL that sends it
//! (expressions the projection and the session store put in their statements). A leaf: the store writes these,
//! [`crate::results`] listens for them and delivers them.

use crate::status::TransferStatus;
use bank_core::iban::CASH;
use serde::Deserialize;
use uuid::Uuid;

/// Channel of `pg_notify` messages: results of gateway transfers and account creations, for every instance.
pub const CHANNEL: &str = "gateway_events";

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// A transfer the gateway sent was decided (`status`, `reason`)
    Transfer,
    /// An account creation was decided (opened or refused)
    Account,
    /// The user's sessions changed (logout, password change): websockets re-check theirs
    Sessions,
    /// A kind this version does not know: handed to a waiting request only
    #[serde(other)]
    Other,
}

/// A result announced through `pg_notify` by the projection.
#[derive(Debug, Clone, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub id: Uuid,
    pub user: i64,
    #[serde(default)]
    pub status: Option<TransferStatus>,
    #[serde(default)]
    pub reason: Option<String>,
    /// A transfer's: its debited account's balance (the credited one's for a cash deposit) shows it already
    #[serde(default)]
    pub balance: bool,
}

// ---- the SQL that sends notices -----------------------------------------------------------------------------
// Each is an expression over the named columns of the surrounding query; `channel` is the bind parameter that
// carries [`CHANNEL`].

/// A decided account creation, over the columns `creation_id` and `id` (the user).
pub fn account_notice(channel: &str) -> String {
    format!("pg_notify({channel}, json_build_object('kind', 'account', 'id', creation_id, 'user', id)::text)")
}

/// A decided transfer, over the columns `id`, `user_id`, `status`, `reason`, `from_iban` and `to_iban` of `upd`, sent
/// in the transaction that stored it: `balance` says whether the debited account's balance change for it (the
/// credited one's for a cash deposit) is stored too, which a confirmed transfer's answer waits for.
pub fn transfer_notice(channel: &str) -> String {
    format!(
        "pg_notify({channel}, json_build_object('kind', 'transfer', 'id', id, 'user', user_id, \
                                                 'status', status, 'reason', reason, \
                                                 'balance', EXISTS (SELECT 1 FROM gateway.transactions x \
                                                     WHERE x.transfer_id = upd.id AND x.iban = CASE upd.from_iban \
                                                         WHEN '{CASH}' THEN upd.to_iban ELSE upd.from_iban END))::text)"
    )
}

/// A user's sessions changed, over the column `user_id`.
pub fn sessions_notice(channel: &str) -> String {
    format!(
        "pg_notify({channel}, json_build_object('kind', 'sessions', 'id', '00000000-0000-0000-0000-000000000000', \
                               'user', user_id)::text)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_as_the_sql_builds_them() {
        let n: Notice = serde_json::from_str(
            r#"{"kind":"transfer","id":"7d9f3a52-5b39-4d39-9a57-0d7f6e2f4a10","user":7,"status":"FAILED","reason":"X: y"}"#,
        )
        .unwrap();
        assert_eq!(
            (n.kind, n.user, n.status, n.reason.as_deref()),
            (NoticeKind::Transfer, 7, Some(TransferStatus::Failed), Some("X: y"))
        );
        let n: Notice =
            serde_json::from_str(r#"{"kind":"account","id":"7d9f3a52-5b39-4d39-9a57-0d7f6e2f4a10","user":3}"#).unwrap();
        assert_eq!((n.kind, n.status), (NoticeKind::Account, None));
        let n: Notice =
            serde_json::from_str(r#"{"kind":"later","id":"7d9f3a52-5b39-4d39-9a57-0d7f6e2f4a10","user":3}"#).unwrap();
        assert_eq!(n.kind, NoticeKind::Other);
    }
}

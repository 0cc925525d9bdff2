//! Exactly-once as a client sees it, after a chaos run: every transfer the client was told CONFIRMED is stored
//! once as confirmed and shows once per account side in the gateway's history; every FAILED one is stored as failed
//! and moved nothing; every transfer was decided; and every user's balance, in the bank and in the gateway's
//! projection, is exactly its opening balance plus the confirmed transfers. The client's side is a [`ClientView`]
//! (written by the load tester's `chaos drive`).

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A user of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientUser {
    pub name: String,
    pub token: String,
    pub iban: String,
}

/// One transfer (or funding deposit: `from` is `cash`) and what the client saw of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sent {
    pub key: String,
    /// Index of the paying user (`None`: a cash deposit).
    pub from: Option<usize>,
    pub to: usize,
    pub amount: i64,
    /// The first answer: CONFIRMED, FAILED, PENDING, or ERROR (no answer, an HTTP or a GraphQL error).
    pub first: String,
    pub first_error: Option<String>,
    /// The decided status after settling (PENDING or ERROR: never decided).
    pub status: String,
    pub id: Option<String>,
    pub attempts: u32,
}

/// What a chaos run's client saw: its users and every transfer it sent (`chaos drive` writes it).
#[derive(Debug, Serialize, Deserialize)]
pub struct ClientView {
    pub seed: u64,
    pub users: Vec<ClientUser>,
    pub sent: Vec<Sent>,
}

/// Whether a status is the bank's decision (not PENDING, not an error).
pub fn decided(status: &str) -> bool {
    status == "CONFIRMED" || status == "FAILED"
}

/// What [`verify`] found.
#[derive(Debug)]
pub struct Verdict {
    pub confirmed: usize,
    pub failed: usize,
    pub balances_checked: usize,
    /// Empty when exactly-once holds.
    pub problems: Vec<String>,
}

/// Checks `out` against the bank's and the gateway's tables, waiting up to `settle` for the history to catch up.
pub async fn verify(out: &ClientView, pool: &PgPool, settle: Duration) -> anyhow::Result<Verdict> {
    let mut problems: Vec<String> = Vec::new();
    let ids = |status: &str| -> Vec<uuid::Uuid> {
        out.sent
            .iter()
            .filter(|s| s.status == status)
            .filter_map(|s| s.id.as_deref().and_then(|id| uuid::Uuid::parse_str(id).ok()))
            .collect()
    };
    let (confirmed, failed) = (ids("CONFIRMED"), ids("FAILED"));
    for s in out.sent.iter().filter(|s| !decided(&s.status) || s.id.is_none()) {
        problems.push(format!("{} never decided: {} ({:?})", s.key, s.status, s.first_error));
    }
    for s in out.sent.iter().filter(|s| s.first == "CONFIRMED" && s.status != "CONFIRMED") {
        problems.push(format!("{} was CONFIRMED, later {}", s.key, s.status));
    }
    // Stored results: one per id (the primary key), confirmed as the client was told.
    let all: Vec<uuid::Uuid> = confirmed.iter().chain(&failed).copied().collect();
    let stored: HashMap<uuid::Uuid, bool> =
        sqlx::query_as::<_, (uuid::Uuid, bool)>("SELECT id, confirmed FROM bank.results WHERE id = ANY($1)")
            .bind(&all)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    for id in &confirmed {
        if stored.get(id) != Some(&true) {
            problems.push(format!("transfer {id} CONFIRMED to the client, stored as {:?}", stored.get(id)));
        }
    }
    for id in &failed {
        if stored.get(id) != Some(&false) {
            problems.push(format!("transfer {id} FAILED to the client, stored as {:?}", stored.get(id)));
        }
    }
    // History: one line per account side of each confirmed transfer, none for a failed one.
    let sides: HashMap<uuid::Uuid, i64> = out
        .sent
        .iter()
        .filter_map(|s| {
            let id = uuid::Uuid::parse_str(s.id.as_deref()?).ok()?;
            let n = if s.status == "CONFIRMED" { if s.from.is_some() { 2 } else { 1 } } else { 0 };
            Some((id, n))
        })
        .collect();
    let deadline = Instant::now() + settle;
    let history_wrong = loop {
        let rows: HashMap<uuid::Uuid, i64> = sqlx::query_as::<_, (uuid::Uuid, i64)>(
            "SELECT transfer_id, count(*) FROM gateway.transactions WHERE transfer_id = ANY($1) GROUP BY transfer_id",
        )
        .bind(&all)
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
        let wrong: Vec<String> = sides
            .iter()
            .filter(|(id, n)| rows.get(*id).copied().unwrap_or(0) != **n)
            .map(|(id, n)| format!("transfer {id}: {} history lines, {n} expected", rows.get(id).copied().unwrap_or(0)))
            .collect();
        if wrong.is_empty() || Instant::now() >= deadline {
            break wrong;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    problems.extend(history_wrong);
    // Balances: opening balance plus the decided transfers, in the bank and in the gateway's projection.
    let mut expected: HashMap<&str, i64> = out.users.iter().map(|u| (u.iban.as_str(), 0)).collect();
    for s in out.sent.iter().filter(|s| s.status == "CONFIRMED") {
        if let Some(to) = out.users.get(s.to) {
            *expected.entry(to.iban.as_str()).or_insert(0) += s.amount;
        }
        if let Some(from) = s.from.and_then(|i| out.users.get(i)) {
            *expected.entry(from.iban.as_str()).or_insert(0) -= s.amount;
        }
    }
    let ibans: Vec<String> = out.users.iter().map(|u| u.iban.clone()).collect();
    let balances: Vec<(String, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT b.iban, b.balance, b.opening_balance, g.balance FROM bank.accounts b \
         LEFT JOIN gateway.accounts g ON g.iban = b.iban WHERE b.iban = ANY($1)",
    )
    .bind(&ibans)
    .fetch_all(pool)
    .await?;
    if balances.len() != ibans.len() {
        problems.push(format!("{} of {} users' accounts in the bank", balances.len(), ibans.len()));
    }
    for (iban, balance, opening, projected) in &balances {
        let want = opening + expected.get(iban.as_str()).copied().unwrap_or(0);
        if *balance != want {
            problems.push(format!("{iban}: balance {balance}, {want} from the decided transfers"));
        }
        if projected.is_some_and(|p| p != *balance) {
            problems.push(format!("{iban}: the gateway shows {projected:?}, the bank {balance}"));
        }
    }
    Ok(Verdict { confirmed: confirmed.len(), failed: failed.len(), balances_checked: balances.len(), problems })
}

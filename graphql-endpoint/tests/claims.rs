//! Batched idempotency claims against a real PostgreSQL: many claims at once are recorded once per key, a
//! repeated key returns the first claim's row, and a claim PostgreSQL refuses fails alone.

use graphql_endpoint::claims::Claims;
use graphql_endpoint::store::{self, NewTransfer};
use std::collections::HashMap;
use uuid::Uuid;

async fn database() -> sqlx::PgPool {
    let (_, pool) = bank_core::testing::fresh_database().await;
    bank_core::db::migrate(&pool, store::SCHEMA, store::MIGRATIONS).await.unwrap();
    pool
}

async fn user(pool: &sqlx::PgPool, name: &str) -> i64 {
    store::insert_client(pool, name, "not a hash", Uuid::new_v4()).await.unwrap().unwrap()
}

fn transfer(user_id: i64, key: &str, amount: i64) -> NewTransfer {
    NewTransfer {
        id: Uuid::new_v4(),
        user_id,
        idempotency_key: key.to_owned(),
        from_iban: "NL66OPEN0000000001".into(),
        to_iban: "NL66OPEN0000000002".into(),
        amount,
        description: format!("claim {key}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_are_recorded_once_per_key_and_repeats_get_the_first_row() {
    let pool = database().await;
    let (alice, bob) = (user(&pool, "alice").await, user(&pool, "bob").await);
    let claims = std::sync::Arc::new(Claims::start(pool.clone()));
    // 600 claims at once over 200 keys per user, each key three times: batches form, and repeats of one key
    // land in one batch and in different ones.
    let mut tasks = Vec::new();
    for i in 0..600 {
        let claims = claims.clone();
        let owner = if i % 2 == 0 { alice } else { bob };
        let key = format!("k{}", i % 200);
        tasks.push(tokio::spawn(async move { (owner, key.clone(), claims.claim(transfer(owner, &key, 5)).await) }));
    }
    let mut by_key: HashMap<(i64, String), Vec<(Uuid, bool)>> = HashMap::new();
    for t in tasks {
        let (owner, key, claimed) = t.await.unwrap();
        let (row, fresh) = claimed.unwrap();
        assert_eq!((row.amount, row.description.as_str()), (5, format!("claim {key}").as_str()));
        by_key.entry((owner, key)).or_default().push((row.id, fresh));
    }
    // alice has the even i: keys k0, k2, …, each three times; bob the odd ones.
    assert_eq!(by_key.len(), 200);
    for ((owner, key), seen) in &by_key {
        assert_eq!(seen.iter().filter(|(_, fresh)| *fresh).count(), 1, "{owner} {key}: one claim is new");
        assert!(seen.iter().all(|(id, _)| *id == seen[0].0), "{owner} {key}: every claim answers with one row");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway.transfers").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 200);
    // Claimed in far fewer statements than claims (each batch is one, plus one for its repeats).
    assert!(claims.batches() < 300, "{} batches for 600 claims", claims.batches());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_postgres_refuses_fails_alone() {
    let pool = database().await;
    let alice = user(&pool, "alice").await;
    let gone = user(&pool, "gone").await;
    store::delete_user(&pool, gone).await.unwrap();
    let claims = std::sync::Arc::new(Claims::start(pool.clone()));
    // The deleted user's claims break the foreign key; sent among others, in the same batches.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let claims = claims.clone();
        let owner = if i % 10 == 3 { gone } else { alice };
        tasks.push(tokio::spawn(async move { (owner, claims.claim(transfer(owner, &format!("k{i}"), 7)).await) }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (owner, Ok((row, true))) if owner == alice => {
                assert_eq!(row.amount, 7);
                ok += 1;
            }
            (owner, Err(e)) if owner == gone => {
                assert!(e.to_string().contains("foreign key"), "{e}");
                refused += 1;
            }
            (owner, other) => panic!("user {owner}: {other:?}"),
        }
    }
    assert_eq!((ok, refused), (90, 10));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway.transfers").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 90);
}

/// The balance change of claimed transfer `t` on its debited account.
fn debit_of(t: &NewTransfer, offset: i64) -> store::BalanceRecord {
    store::BalanceRecord {
        transfer_id: Some(t.id),
        iban: t.from_iban.clone(),
        new_balance: 100 - t.amount,
        changed_by: -t.amount,
        from_to: t.to_iban.clone(),
        description: t.description.clone(),
        at: chrono::Utc::now(),
        partition: 0,
        offset,
        account_seq: offset + 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_notice_says_whether_its_balance_change_is_stored() {
    let pool = database().await;
    let alice = user(&pool, "alice").await;
    let claims = Claims::start(pool.clone());
    let (with, without) = (transfer(alice, "with", 5), transfer(alice, "without", 5));
    for t in [&with, &without] {
        assert!(claims.claim(t.clone()).await.unwrap().1);
    }
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen(graphql_endpoint::channel::CHANNEL).await.unwrap();
    // `with`'s result comes with its balance change; `without`'s alone (its change in a later batch).
    let batch = store::ProjectionBatch {
        balances: vec![debit_of(&with, 0)],
        results: vec![(with.id, true, None), (without.id, true, None)],
        ..Default::default()
    };
    store::project(&pool, &batch).await.unwrap();
    let mut balance = HashMap::new();
    for _ in 0..2 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv()).await.unwrap().unwrap();
        let notice: graphql_endpoint::channel::Notice = serde_json::from_str(n.payload()).unwrap();
        balance.insert(notice.id, notice.balance);
    }
    assert_eq!(balance.get(&with.id), Some(&true), "{balance:?}");
    assert_eq!(balance.get(&without.id), Some(&false), "{balance:?}");
}

//! Batches handed to the handler directly (the same code path the consumer uses) against the real PostgreSQL
//! and registry: what two creations in one batch get, and two instances applying crossing transfers at once.

mod common;

use bank_core::avro::{AccountCreationConfirmed, Atype, ConfirmAccountCreation, ConfirmMoneyTransfer};
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use bank_core::testing::registry_url;
use bank_core::{CASH, CommandId, Iban, Money, topics};
use command_handler::store::{self, Command, Handler, Incoming, Topics};
use common::{COMPANY_TOKEN, Fixture, transfer};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const COMPANY_OPENING: i64 = 1_000_000_000;

/// A handler instance with its own connection pool, as a second process would have.
async fn instance(f: &Fixture) -> Handler {
    let pool = bank_core::db::connect(&f.db_url, 4).await.unwrap();
    bank_core::db::migrate(&pool, store::SCHEMA, command_handler::MIGRATIONS).await.unwrap();
    store::ensure_company(&pool, Some(COMPANY_TOKEN), Money::from_cents(COMPANY_OPENING), Money::from_cents(-50_000))
        .await
        .unwrap();
    Handler::new(pool, Codec::new(&registry_url()).unwrap(), Topics::with_prefix(&f.prefix), f.config(1).limits())
}

fn incoming(topic: &str, partition: i32, offset: i64, command: Command) -> Incoming {
    Incoming { topic: topic.to_owned(), partition, offset, key: None, payload: None, command }
}

fn creation(id: CommandId) -> Command {
    Command::Creation(ConfirmAccountCreation { id, a_type: Atype::Auto })
}

/// (iban, token) per command id in the account-creation confirmations of `out`.
async fn confirmations(f: &Fixture, out: &store::BatchOutcome) -> HashMap<CommandId, (String, String)> {
    let mut found = HashMap::new();
    for row in &out.outbox {
        if row.topic == f.topic(topics::ACCOUNT_CREATION_CONFIRMED) {
            let c: AccountCreationConfirmed = f.codec.decode(row.payload.as_deref()).await.unwrap();
            found.insert(c.id, (c.iban, c.token));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_creations_in_one_batch_that_draw_the_same_iban_get_distinct_accounts() {
    let f = Fixture::new().await;
    let mut h = instance(&f).await;
    let same = Iban::from_account_number(1_234_567_890);
    let draws = Mutex::new(vec![same.clone(), same, Iban::from_account_number(1_234_567_891)].into_iter());
    h.new_iban = Arc::new(move || draws.lock().unwrap().next().unwrap_or_else(Iban::generate));

    let topic = f.topic(topics::CONFIRM_ACCOUNT_CREATION);
    let (x, y) = (CommandId::new(), CommandId::new());
    let out =
        h.handle_batch(&[incoming(&topic, 0, 0, creation(x)), incoming(&topic, 0, 1, creation(y))]).await.unwrap();
    assert_eq!(out.accounts_created, 2);
    let first = confirmations(&f, &out).await;
    let ((ix, tx), (iy, ty)) = (first[&x].clone(), first[&y].clone());
    assert_ne!(ix, iy, "both creations were confirmed with the same IBAN");
    assert_ne!(tx, ty);
    for (id, iban, token) in [(x, &ix, &tx), (y, &iy, &ty)] {
        let row = sqlx::query("SELECT token, created_by FROM bank.accounts WHERE iban = $1")
            .bind(iban)
            .fetch_one(&h.pool)
            .await
            .unwrap();
        assert_eq!((&row.get::<String, _>(0), row.get::<uuid::Uuid, _>(1)), (token, id.as_uuid()));
    }

    // A replay of each repeats its own account and token.
    let out =
        h.handle_batch(&[incoming(&topic, 0, 2, creation(y)), incoming(&topic, 0, 3, creation(x))]).await.unwrap();
    assert_eq!(out.replayed, 2);
    assert_eq!(confirmations(&f, &out).await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_applying_crossing_transfers_never_deadlock() {
    let f = Fixture::new().await;
    let (one, two) = (instance(&f).await, instance(&f).await);
    let shutdown = CancellationToken::new();
    let accounts_topic = f.topic(topics::CONFIRM_ACCOUNT_CREATION);
    let transfers = f.topic(topics::CONFIRM_MONEY_TRANSFER);

    const PAIRS: usize = 100;
    let ids: Vec<CommandId> = (0..PAIRS * 2).map(|_| CommandId::new()).collect();
    let batch: Vec<Incoming> =
        ids.iter().enumerate().map(|(i, id)| incoming(&accounts_topic, 0, i as i64, creation(*id))).collect();
    let created = confirmations(&f, &one.handle_batch(&batch).await.unwrap()).await;
    let accounts: Vec<(String, String)> = ids.iter().map(|id| created[id].clone()).collect();
    let deposits: Vec<Incoming> = accounts
        .iter()
        .enumerate()
        .map(|(i, (iban, token))| {
            incoming(&transfers, 2, i as i64, Command::Transfer(transfer(token, 100_000, CASH, iban, "start")))
        })
        .collect();
    assert_eq!(one.handle_batch(&deposits).await.unwrap().confirmed, (PAIRS * 2) as u64);

    // Instance one moves x -> y for every pair, first to last, while instance two moves y -> x, last to first:
    // applied in batch order, they meet in the middle, each holding accounts the other needs next.
    let before = command_handler::isolate::deadlock_retries();
    const ROUNDS: i64 = 10;
    let mut offset = 0;
    let mut sent = 0;
    for round in 0..ROUNDS {
        let mut forth = Vec::new();
        let mut back = Vec::new();
        for pair in accounts.chunks(2) {
            let [(x, tx), (y, ty)] = pair else { unreachable!() };
            let t: ConfirmMoneyTransfer = transfer(tx, 100 + round, x, y, "forth");
            forth.push(incoming(&transfers, 0, offset, Command::Transfer(t)));
            back.insert(0, incoming(&transfers, 1, offset, Command::Transfer(transfer(ty, 50 + round, y, x, "back"))));
            offset += 1;
            sent += 2;
        }
        let ((a, stopped_a), (b, stopped_b)) =
            tokio::join!(one.handle_isolating(forth, &shutdown), two.handle_isolating(back, &shutdown));
        assert!(!stopped_a && !stopped_b);
        assert_eq!(a.confirmed + b.confirmed, (PAIRS * 2) as u64, "every transfer confirmed");
    }
    let deadlocks = command_handler::isolate::deadlock_retries() - before;
    eprintln!("{sent} crossing transfers in {ROUNDS} rounds, {deadlocks} deadlock retries");
    assert_eq!(deadlocks, 0, "batches of two instances deadlocked");

    let total: i64 =
        sqlx::query_scalar("SELECT sum(balance)::bigint FROM bank.accounts").fetch_one(&f.pool).await.unwrap();
    assert_eq!(total, COMPANY_OPENING + 100_000 * (PAIRS as i64) * 2, "money conserved");
    let results: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bank.results WHERE kind = 'transfer' AND from_iban <> 'cash'")
            .fetch_one(&f.pool)
            .await
            .unwrap();
    assert_eq!(results, sent, "one result per transfer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_postgres_refuses_is_isolated_and_dead_lettered_and_the_rest_of_its_batch_applied() {
    let f = Fixture::new().await;
    let _handler = f.spawn_handler(1000).await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    // PostgreSQL refuses the result of one command (a data exception, as for a value it cannot store).
    let cmds: Vec<ConfirmMoneyTransfer> = (0..20).map(|i| transfer(ta, 100 + i, CASH, a, "deposit")).collect();
    let poison = &cmds[7];
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION bank.refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.id = '{}' THEN RAISE EXCEPTION 'cannot store this one' USING ERRCODE = '22023'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER refuse_one BEFORE INSERT ON bank.results FOR EACH ROW EXECUTE FUNCTION bank.refuse_one();",
        poison.id.as_uuid()
    ))
    .execute(&f.pool)
    .await
    .unwrap();
    common::produce_all(&f, &cmds).await;
    for c in cmds.iter().filter(|c| c.id != poison.id) {
        assert!(f.result(c.id).await.0, "the rest of the batch is applied");
    }
    let want: i64 = cmds.iter().filter(|c| c.id != poison.id).map(|c| c.amount).sum();
    assert_eq!(f.balance(a).await, want, "every deposit but the refused one, once");

    let mut dead = Vec::new();
    for _ in 0..100 {
        dead =
            f.read_topic(topics::DEAD_LETTERS).into_iter().filter(|r| r.key.as_deref() == Some(a.as_bytes())).collect();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(dead.len(), 1, "only the refused record is dead-lettered");
    let error = &dead[0].headers[bank_core::topics::dead_letter_headers::ERROR];
    assert!(error.contains("cannot be handled") && error.contains("cannot store this one"), "{error}");
    let sent: ConfirmMoneyTransfer = f.codec.decode(dead[0].payload.as_deref()).await.unwrap();
    assert_eq!(sent.id, poison.id, "the original record is kept");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM bank.results WHERE id = $1")
        .bind(poison.id.as_uuid())
        .fetch_one(&f.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

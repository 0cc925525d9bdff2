//! Batches handed to the handler directly (the same code path the consumer uses) against the real PostgreSQL
//! and registry: what two creations in one batch get, two instances applying crossing transfers at once, and
//! records isolated because PostgreSQL refuses them.

mod common;

use bank_core::avro::{
    AccountCreationConfirmed, AccountCreationFailed, Atype, ConfirmAccountCreation, ConfirmMoneyTransfer,
    MoneyTransferFailed,
};
use bank_core::refusal::{Refusal, RefusalCode};
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use bank_core::testing::registry_url;
use bank_core::{CASH, CommandId, Iban, Money, topics};
use command_handler::apply::ensure_company;
use command_handler::batch::{BatchOutcome, Command, Incoming};
use command_handler::handler::{self, Handler, Topics};
use common::{COMPANY_TOKEN, Fixture, transfer};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const COMPANY_OPENING: i64 = 1_000_000_000;

/// A handler instance with its own connection pool, as a second process would have.
async fn instance(f: &Fixture) -> Handler {
    let pool = bank_core::db::connect(&f.db_url, 4).await.unwrap();
    bank_core::db::migrate(&pool, handler::SCHEMA, command_handler::MIGRATIONS).await.unwrap();
    ensure_company(&pool, Some(COMPANY_TOKEN), Money::from_cents(COMPANY_OPENING), Money::from_cents(-50_000))
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
async fn confirmations(f: &Fixture, out: &BatchOutcome) -> HashMap<CommandId, (String, String)> {
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

/// Waits for the record keyed `key` on `name`.
async fn keyed(f: &Fixture, name: &str, key: &[u8]) -> Vec<common::Record> {
    for _ in 0..100 {
        let found: Vec<_> = f.read_topic(name).into_iter().filter(|r| r.key.as_deref() == Some(key)).collect();
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_postgres_refuses_is_dead_lettered_and_gets_a_failed_unprocessable_result() {
    let f = Fixture::new().await;
    let _handler = f.spawn_handler(1000).await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    let cmds: Vec<ConfirmMoneyTransfer> =
        (0..20).map(|i| transfer(ta, 100 + i, CASH, a, "hostile <text> \u{1}")).collect();
    let poison = &cmds[7];
    // PostgreSQL refuses the confirmed result of one command; its failed result it accepts.
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION bank.refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.id = '{}' AND NEW.confirmed THEN RAISE EXCEPTION 'cannot store this one' USING ERRCODE = '22023'; END IF; \
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
    let (confirmed, reason) = f.result(poison.id).await;
    assert!(!confirmed, "the refused command has a failed result");
    let reason = reason.expect("a failed result has a reason");
    assert_eq!(Refusal::parse_reason(&reason).0, Some(RefusalCode::Unprocessable), "{reason}");
    assert!(!reason.contains("cannot store this one") && !reason.contains("hostile"), "no echo: {reason}");
    let want: i64 = cmds.iter().filter(|c| c.id != poison.id).map(|c| c.amount).sum();
    assert_eq!(f.balance(a).await, want, "every deposit but the refused one, once");

    let id_key = poison.id.as_uuid().to_string().into_bytes();
    let failed = keyed(&f, topics::MONEY_TRANSFER_FAILED, &id_key).await;
    assert_eq!(failed.len(), 1, "one failed result published");
    let event: MoneyTransferFailed = f.codec.decode(failed[0].payload.as_deref()).await.unwrap();
    assert_eq!((event.id, event.reason.as_str()), (poison.id, reason.as_str()), "published as stored");
    let dead = keyed(&f, topics::DEAD_LETTERS, a.as_bytes()).await;
    assert_eq!(dead.len(), 1, "the record is dead-lettered too");
    let sent: ConfirmMoneyTransfer = f.codec.decode(dead[0].payload.as_deref()).await.unwrap();
    assert_eq!(sent.id, poison.id, "the original record is kept");
    let audit = f.audit().await;
    assert!(audit.passed(), "every command has one result: {audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_creation_postgres_refuses_gets_a_failed_unprocessable_result_in_the_same_batch() {
    let f = Fixture::new().await;
    let h = instance(&f).await;
    let topic = f.topic(topics::CONFIRM_ACCOUNT_CREATION);
    let ids: Vec<CommandId> = (0..6).map(|_| CommandId::new()).collect();
    let refused = ids[2];
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION bank.refuse_account() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.created_by = '{}' THEN RAISE EXCEPTION 'no account for this one' USING ERRCODE = '23514'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER refuse_account BEFORE INSERT ON bank.accounts FOR EACH ROW EXECUTE FUNCTION bank.refuse_account();",
        refused.as_uuid()
    ))
    .execute(&h.pool)
    .await
    .unwrap();
    let batch: Vec<Incoming> =
        ids.iter().enumerate().map(|(i, id)| incoming(&topic, 0, i as i64, creation(*id))).collect();
    let (out, interrupted) = h.handle_isolating(batch, &CancellationToken::new()).await;
    assert!(!interrupted);
    assert_eq!((out.accounts_created, out.failed, out.dead_lettered), (5, 1, 1));
    assert_eq!(out.refusals.get("UNPROCESSABLE"), Some(&1));
    assert_eq!(out.offsets.get(&(topic.clone(), 0)), Some(&6), "the whole batch is consumed");
    let created = confirmations(&f, &out).await;
    assert_eq!(created.len(), 5);
    assert!(!created.contains_key(&refused));

    let mut failed = Vec::new();
    for row in out.outbox.iter().filter(|r| r.topic == f.topic(topics::ACCOUNT_CREATION_FAILED)) {
        failed.push(f.codec.decode::<AccountCreationFailed>(row.payload.as_deref()).await.unwrap());
    }
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, refused);
    assert!(failed[0].reason.starts_with("UNPROCESSABLE: "), "{}", failed[0].reason);
    let dead = out.outbox.iter().filter(|r| r.topic == f.topic(topics::DEAD_LETTERS)).count();
    assert_eq!(dead, 1);
    let row = sqlx::query("SELECT kind, confirmed, reason FROM bank.results WHERE id = $1")
        .bind(refused.as_uuid())
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let stored: (String, bool, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(stored, ("account".to_owned(), false, failed[0].reason.clone()), "stored as published");

    // Sent again, it repeats its stored failure and creates nothing.
    let again = h.handle_batch(&[incoming(&topic, 0, 6, creation(refused))]).await.unwrap();
    assert_eq!((again.replayed, again.accounts_created), (1, 0));
}

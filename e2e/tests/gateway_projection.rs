//! The projection of `balance_changed`: redelivery adds nothing, and a record it cannot decode is dead-lettered
//! while everything after it is still projected.

mod common;

use bank_core::topics;
use common::*;
use graphql_endpoint::store::{self, BalanceRecord, Projected, ProjectionBatch};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::Duration;

async fn stats(bank: &Bank) -> serde_json::Value {
    bank.ok(None, "{ bankStats { accounts transactions transfers } }").await["bankStats"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivery_adds_nothing_and_poison_is_dead_lettered() {
    let bank = Bank::start(1).await;
    let gateway = &bank.gateway().service.gateway;
    let (alice, iban) = bank.register("alice").await;
    let r = bank.ok(Some(&alice), "mutation { deposit(amountCents: 1000) { status } }").await;
    assert_eq!(r["deposit"]["status"], "CONFIRMED");
    bank.wait_history(&alice, &iban, 1).await;
    let before = stats(&bank).await;
    assert_eq!(before["transfers"], "1", "{before}");

    // The same balance change delivered twice more, in one batch: nothing is added or counted.
    let row = store::history(&gateway.pool, &iban, None, 1).await.unwrap().remove(0);
    let record = BalanceRecord { offset: row.record.offset + 7, ..row.record.clone() };
    let batch = ProjectionBatch { balances: vec![record.clone(), record], ..Default::default() };
    assert_eq!(store::project(&gateway.pool, &batch).await.unwrap(), Projected::default());
    assert_eq!(stats(&bank).await, before);
    assert_eq!(store::history(&gateway.pool, &iban, None, 10).await.unwrap().len(), 1);
    assert_eq!(bank.balance(&alice).await, 1000);

    // Garbage on balance_changed, then a real deposit: the garbage is dead-lettered, the deposit projected.
    let topic = format!("{}{}", bank.prefix, topics::BALANCE_CHANGED);
    gateway
        .producer
        .send(
            FutureRecord::to(&topic).key(iban.as_bytes()).payload(b"not avro at all".as_slice()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let r = bank.ok(Some(&alice), "mutation { deposit(amountCents: 500) { status } }").await;
    assert_eq!(r["deposit"]["status"], "CONFIRMED");
    let history = bank.wait_history(&alice, &iban, 2).await;
    assert_eq!(history[0]["newBalanceCents"], "1500");
    assert_eq!(bank.balance(&alice).await, 1500);

    let dead = format!("{}{}", bank.prefix, topics::DEAD_LETTERS);
    let consumer: BaseConsumer =
        bank_core::kafka::consumer_config(&bank_core::testing::kafka_brokers(), "projection-test", "projection-test")
            .create()
            .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&dead, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(20);
    let found = loop {
        assert!(std::time::Instant::now() < until, "no dead letter within 20 s");
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else { continue };
        if m.payload() != Some(b"not avro at all".as_slice()) {
            continue;
        }
        let headers = m.headers().expect("dead letters carry headers");
        let source = headers.iter().find(|h| h.key == topics::dead_letter_headers::SOURCE_TOPIC).and_then(|h| h.value);
        break source.map(|v| String::from_utf8_lossy(v).into_owned());
    };
    assert_eq!(found.as_deref(), Some(topic.as_str()));
}

/// The first record on the gateway's dead-letter topic whose payload is `payload`: its headers.
fn dead_letter_headers(bank: &Bank, payload: &[u8]) -> std::collections::HashMap<String, String> {
    let dead = format!("{}{}", bank.prefix, topics::DEAD_LETTERS);
    let consumer: BaseConsumer =
        bank_core::kafka::consumer_config(&bank_core::testing::kafka_brokers(), "projection-test", "projection-test")
            .create()
            .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&dead, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(std::time::Instant::now() < until, "no dead letter within 20 s");
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else { continue };
        if m.payload() != Some(payload) {
            continue;
        }
        return m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_owned(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_postgres_cannot_store_is_dead_lettered_and_the_rest_projected() {
    let bank = Bank::start(1).await;
    let gateway = &bank.gateway().service.gateway;
    let (alice, iban) = bank.register("alice").await;
    let r = bank.ok(Some(&alice), "mutation { deposit(amountCents: 1000) { status } }").await;
    assert_eq!(r["deposit"]["status"], "CONFIRMED");
    bank.wait_history(&alice, &iban, 1).await;

    // Well-formed Avro that PostgreSQL refuses to store (a NUL byte in the IBAN, a text key column), then a real
    // deposit: before, the projection retried that batch forever and nothing after it was projected.
    let topic = format!("{}{}", bank.prefix, topics::BALANCE_CHANGED);
    let mut poison_payloads = Vec::new();
    for (poisoned_iban, description) in
        [(format!("{iban}\0"), "nul after the iban"), (format!("\0{iban}"), "nul before")]
    {
        let poison = bank_core::avro::BalanceChanged {
            iban: poisoned_iban,
            new_balance: 999_999,
            changed_by: 999_999 - 1000,
            from_to: "cash".to_owned(),
            description: description.to_owned(),
            transfer_id: Some(bank_core::CommandId::new()),
            seq: 0,
        };
        poison_payloads.push(publish(gateway, &topic, &iban, &poison).await);
    }
    let r = bank.ok(Some(&alice), "mutation { deposit(amountCents: 500) { status } }").await;
    assert_eq!(r["deposit"]["status"], "CONFIRMED");
    let history = bank.wait_history(&alice, &iban, 2).await;
    assert_eq!(history[0]["newBalanceCents"], "1500", "{history}");
    assert_eq!(history.as_array().unwrap().len(), 2, "the poison records are not in the history: {history}");
    assert_eq!(bank.balance(&alice).await, 1500);

    for payload in &poison_payloads {
        let headers = dead_letter_headers(&bank, payload);
        assert_eq!(headers.get(topics::dead_letter_headers::SOURCE_TOPIC), Some(&topic));
        let error = headers.get(topics::dead_letter_headers::ERROR).cloned().unwrap_or_default();
        assert!(error.contains("cannot be projected"), "error header: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nul_byte_in_a_text_field_from_the_topic_is_projected_as_a_replacement_character() {
    // The handler confirms what any producer with a valid token sends; a NUL byte in the description or in
    // `from_to` must not cost the history its lines (the audit counts them).
    let bank = Bank::start(1).await;
    let gateway = &bank.gateway().service.gateway;
    let (alice, iban) = bank.register("alice").await;
    let topic = format!("{}{}", bank.prefix, topics::BALANCE_CHANGED);
    let change = bank_core::avro::BalanceChanged {
        iban: iban.clone(),
        new_balance: 700,
        changed_by: 700,
        from_to: "ca\0sh".to_owned(),
        description: "a\0b\0\0c".to_owned(),
        transfer_id: Some(bank_core::CommandId::new()),
        seq: 1,
    };
    publish(gateway, &topic, &iban, &change).await;
    let history = bank.wait_history(&alice, &iban, 1).await;
    assert_eq!(history[0]["description"], "a\u{fffd}b\u{fffd}\u{fffd}c", "{history}");
    assert_eq!(history[0]["fromTo"], "ca\u{fffd}sh", "{history}");
    assert_eq!(bank.balance(&alice).await, 700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_seq_far_ahead_does_not_freeze_the_balance() {
    let bank = Bank::start(1).await;
    let gateway = &bank.gateway().service.gateway;
    let (alice, iban) = bank.register("alice").await;
    let r = bank.ok(Some(&alice), "mutation { deposit(amountCents: 1000) { status } }").await;
    assert_eq!(r["deposit"]["status"], "CONFIRMED");
    bank.wait_history(&alice, &iban, 1).await;
    let topic = format!("{}{}", bank.prefix, topics::BALANCE_CHANGED);
    let forged = bank_core::avro::BalanceChanged {
        iban: iban.clone(),
        new_balance: 1,
        changed_by: -999,
        from_to: "cash".to_owned(),
        description: "forged".to_owned(),
        transfer_id: Some(bank_core::CommandId::new()),
        seq: i64::MAX,
    };
    publish(gateway, &topic, &iban, &forged).await;
    bank.wait_history(&alice, &iban, 2).await;
    assert_eq!(bank.balance(&alice).await, 1000, "the forged change moved no balance");
    let r = bank.ok(Some(&alice), "mutation { deposit(amountCents: 500) { status } }").await;
    assert_eq!(r["deposit"]["status"], "CONFIRMED");
    bank.wait_history(&alice, &iban, 3).await;
    assert_eq!(bank.balance(&alice).await, 1500, "the next real change still moves it");
}

/// Writes `record` to `topic` as a producer other than the handler would, keyed by `iban`; returns its payload.
async fn publish(
    gateway: &graphql_endpoint::gateway::Gateway,
    topic: &str,
    iban: &str,
    record: &bank_core::avro::BalanceChanged,
) -> Vec<u8> {
    let payload = gateway.codec.encode(topic, record).await.unwrap();
    gateway
        .producer
        .send(FutureRecord::to(topic).key(iban.as_bytes()).payload(&payload), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    payload
}

fn change(iban: &str, new_balance: i64, account_seq: i64, offset: i64) -> BalanceRecord {
    BalanceRecord {
        transfer_id: Some(uuid::Uuid::new_v4()),
        iban: iban.to_owned(),
        new_balance,
        changed_by: 100,
        from_to: "cash".to_owned(),
        description: format!("change {account_seq}"),
        at: chrono::Utc::now(),
        partition: 0,
        offset,
        account_seq,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn balance_changes_arriving_out_of_order_never_move_the_balance_back() {
    let bank = Bank::start(1).await;
    let pool = &bank.gateway().service.gateway.pool;
    let project = |balances: Vec<BalanceRecord>| async move {
        store::project(pool, &ProjectionBatch { balances, ..Default::default() }).await.unwrap()
    };
    let a = bank_core::Iban::from_account_number(4_000_000_001).as_str().to_owned();
    // Two handler instances (or an orphan-outbox sweep) can publish an account's changes out of order.
    project(vec![change(&a, 300, 2, 1)]).await;
    project(vec![change(&a, 100, 1, 2)]).await;
    assert_eq!(store::balance(pool, &a).await.unwrap(), 300, "the older change arrived last");
    // Within one batch, too.
    project(vec![change(&a, 700, 4, 3), change(&a, 500, 3, 4)]).await;
    assert_eq!(store::balance(pool, &a).await.unwrap(), 700);
    assert_eq!(store::history(pool, &a, None, 10).await.unwrap().len(), 4, "every change is in the history");
    // Changes from before the sequence existed (0) keep the arrival order.
    let b = bank_core::Iban::from_account_number(4_000_000_002).as_str().to_owned();
    project(vec![change(&b, 300, 0, 5)]).await;
    project(vec![change(&b, 100, 0, 6)]).await;
    assert_eq!(store::balance(pool, &b).await.unwrap(), 100);
    // ... until the first change with one.
    project(vec![change(&b, 900, 1, 7)]).await;
    project(vec![change(&b, 50, 0, 8)]).await;
    assert_eq!(store::balance(pool, &b).await.unwrap(), 900);
}

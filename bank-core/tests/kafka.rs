//! The shared Kafka plumbing against the stack's real broker: `next_batch` stops at its size, at its deadline
//! and on shutdown; `dead_letter` carries the source in headers; the test-topic guard deletes what it owns.

use bank_core::kafka::{self, Source, dead_letter, next_batch};
use bank_core::shutdown::CancellationToken;
use bank_core::testing::{DeleteTopicsOnDrop, infra_missing, kafka_brokers, unique_prefix};
use bank_core::topics::{self, dead_letter_headers as h};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;

async fn create(names: &[&str]) {
    let admin = kafka::admin(&kafka_brokers()).unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let new: Vec<NewTopic<'_>> = names.iter().map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1))).collect();
    for r in admin.create_topics(&new, &opts).await.unwrap_or_else(|e| infra_missing("kafka", e)) {
        r.unwrap();
    }
}

fn reader(topic: &str) -> StreamConsumer {
    let c: StreamConsumer = kafka::consumer(&kafka_brokers(), &format!("{topic}-reader"), "test").unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    c
}

fn exists(topic: &str) -> bool {
    let admin = kafka::admin(&kafka_brokers()).unwrap();
    let md = admin.inner().fetch_metadata(None, Duration::from_secs(10)).unwrap();
    md.topics().iter().any(|t| t.name() == topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_batch_stops_at_its_size_its_deadline_and_on_shutdown() {
    let prefix = unique_prefix();
    let topic = format!("{prefix}{}", topics::HEARTBEAT);
    let guard = DeleteTopicsOnDrop(prefix.clone());
    create(&[&topic]).await;
    let producer = kafka::producer(&kafka_brokers(), "test").unwrap();
    for i in 0..5u8 {
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&topic).payload(std::slice::from_ref(&i));
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
    let consumer = reader(&topic);
    let shutdown = CancellationToken::new();
    let wait = Duration::from_millis(300);

    let first = next_batch(&consumer, &shutdown, "test", 3, wait).await.expect("a batch");
    let offsets: Vec<i64> = first.iter().map(Message::offset).collect();
    assert_eq!(offsets, [0, 1, 2], "stops at its size");
    drop(first);
    let rest = next_batch(&consumer, &shutdown, "test", 100, wait).await.expect("a batch");
    let offsets: Vec<i64> = rest.iter().map(Message::offset).collect();
    assert_eq!(offsets, [3, 4], "stops at its deadline with what there is");
    drop(rest);

    let waiting = {
        let s = shutdown.clone();
        tokio::spawn(async move {
            let c = reader(&format!("{prefix}{}", topics::HEARTBEAT));
            // Skip the five records, then wait for a sixth that never comes.
            let _ = next_batch(&c, &s, "test", 5, Duration::from_secs(5)).await;
            next_batch(&c, &s, "test", 5, Duration::from_secs(5)).await.map(|b| b.len())
        })
    };
    // Not a synchronisation: the result is the same either way; this only makes the task likelier to be waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    let got = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("returns on shutdown").unwrap();
    assert_eq!(got, None, "no batch once shutdown fired");

    drop(guard);
    assert!(!exists(&topic), "the guard deleted the topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_keeps_key_payload_and_names_its_source() {
    let prefix = unique_prefix();
    let _guard = DeleteTopicsOnDrop(prefix.clone());
    let to = format!("{prefix}{}", topics::DEAD_LETTERS);
    create(&[&to]).await;
    let producer = kafka::producer(&kafka_brokers(), "test").unwrap();
    let source = Source {
        topic: "p_balance_changed",
        partition: 7,
        offset: 41,
        key: Some(b"NL66OPEN0000000000"),
        payload: Some(&[0, 1, 2, 3]),
    };
    dead_letter(&producer, &to, source, "cannot be projected").await.unwrap();

    let consumer = reader(&to);
    let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv()).await.expect("a dead letter").unwrap();
    assert_eq!(m.key(), Some(&b"NL66OPEN0000000000"[..]));
    assert_eq!(m.payload(), Some(&[0u8, 1, 2, 3][..]));
    let headers: HashMap<String, String> = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|x| (x.key.to_owned(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned()))
                .collect()
        })
        .unwrap_or_default();
    // The header values themselves are pinned by the unit test of `dead_letter_headers`.
    let want: HashMap<String, String> =
        kafka::dead_letter_headers("p_balance_changed", 7, 41, "cannot be projected").into_iter().collect();
    assert_eq!(headers.get(h::SOURCE_TOPIC).map(String::as_str), Some("p_balance_changed"));
    assert_eq!(headers, want);
}

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

/// Puts `instance` into librdkafka's fatal state, as a broker's sequence-number desynchronisation does (librdkafka
/// offers this hook because real fatal errors cannot be caused on demand).
#[allow(unsafe_code)]
fn make_fatal(instance: &rdkafka::producer::FutureProducer) {
    use rdkafka::producer::Producer as _;
    let reason = c"test: sequence desynchronisation";
    // SAFETY: the handle is alive for the call (`instance` holds it) and `reason` is a NUL-terminated string that
    // librdkafka copies.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            instance.client().native_ptr(),
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        )
    };
    assert_eq!(err, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR, "fatal error raised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_failed_for_good_is_made_again() {
    let prefix = unique_prefix();
    let topic = format!("{prefix}{}", topics::HEARTBEAT);
    let guard = DeleteTopicsOnDrop(prefix.clone());
    create(&[&topic]).await;
    let send = |p: kafka::Producer, byte: u8| {
        let topic = topic.clone();
        async move {
            let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&topic).payload(std::slice::from_ref(&byte));
            p.send(record, Duration::from_secs(10)).await.map(|_| ()).map_err(|(e, _)| e)
        }
    };
    let producer = kafka::producer(&kafka_brokers(), "fatal-test").unwrap();
    send(producer.clone(), 1).await.expect("delivered before the fatal error");

    // librdkafka's own producer never leaves the fatal state: this is what the bank's producers met.
    let raw: rdkafka::producer::FutureProducer =
        kafka::producer_config(&kafka_brokers(), "fatal-raw").create().unwrap();
    make_fatal(&raw);
    for _ in 0..2 {
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&topic).payload(&[9u8][..]);
        let failed = raw.send(record, Duration::from_secs(10)).await;
        assert!(failed.is_err(), "a fatal librdkafka producer keeps failing");
    }

    // An instance is replaced at most once per MIN_LIFETIME.
    tokio::time::sleep(bank_core::producer::MIN_LIFETIME).await;
    make_fatal(&producer.instance());
    let first = send(producer.clone(), 2).await;
    assert!(first.is_err(), "the send that meets the fatal state fails to its caller (it sends again)");
    assert_eq!(producer.replacements(), 1, "the fatal instance was replaced once");
    // A clone shares the replacement.
    send(producer.clone(), 3).await.expect("delivered by the new instance");

    // A new instance that fails at once is not replaced before MIN_LIFETIME (no loop of new clients when every
    // instance fails), and is replaced after it.
    make_fatal(&producer.instance());
    assert!(send(producer.clone(), 5).await.is_err());
    assert_eq!(producer.replacements(), 1, "not replaced again within MIN_LIFETIME");
    tokio::time::sleep(bank_core::producer::MIN_LIFETIME).await;
    assert!(send(producer.clone(), 6).await.is_err(), "still the fatal instance");
    assert_eq!(producer.replacements(), 2, "replaced once MIN_LIFETIME had passed");
    send(producer, 4).await.expect("delivered by the newest instance");

    let consumer = reader(&topic);
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(15), consumer.recv()).await.expect("records").unwrap();
        got.push(m.payload().unwrap().to_vec());
    }
    assert_eq!(got, [vec![1u8], vec![3], vec![4]], "what was acknowledged is on the topic, in order");
    drop(guard);
}

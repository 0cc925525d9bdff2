//! What the handler shows to monitoring, against the real Kafka and PostgreSQL: the age of commands when it
//! applies them, and its consumer group's offsets committed to Kafka. Alone in its test binary: it reads the
//! process-wide metrics, which no other handler may move meanwhile.

mod common;

use bank_core::testing::kafka_brokers;
use bank_core::{CASH, topics};
use common::{Fixture, transfer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// `handler_command_age_seconds{quantile="..."}` and its `_count`, from this process's metrics.
fn age_metric(suffix: &str) -> Option<f64> {
    let text = bank_core::telemetry::metrics().render();
    let wanted = format!("handler_command_age_seconds{suffix} ");
    text.lines().find_map(|l| l.strip_prefix(&wanted)?.trim().parse().ok())
}

/// Per partition of `topic`: (high watermark, the group's offset committed in Kafka, if any).
fn committed(group: &str, topic: &str) -> Vec<(i64, Option<i64>)> {
    let c: BaseConsumer = bank_core::kafka::consumer_config(&kafka_brokers(), group, "handler-test").create().unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .map(|e| {
            let (_, high) = c.fetch_watermarks(topic, e.partition(), Duration::from_secs(10)).unwrap();
            let at = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            (high, at)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_age_is_recorded_and_the_group_offsets_advance_in_kafka() {
    let f = Fixture::new().await;
    let _handler = f.spawn_handler(100).await;
    let accounts = f.accounts(1).await;
    let (iban, token) = &accounts[0];
    let group = format!("{}command-handler", f.prefix);
    let topic = f.topic(topics::CONFIRM_MONEY_TRANSFER);
    let count_before = age_metric("_count").unwrap_or(0.0);

    // A deposit whose record says it entered Kafka 30 s ago: applied now, it is at least 30 s old.
    let old = transfer(token, 100, CASH, iban, "an old deposit");
    let stamp = bank_core::clock::unix_millis() - 30_000;
    let bytes = f.encode(&topic, &old).await;
    let record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&topic).key(iban.as_bytes()).payload(bytes.as_slice()).timestamp(stamp);
    f.producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    let fresh: Vec<_> = (0..5).map(|i| transfer(token, 10 + i, CASH, iban, "a fresh deposit")).collect();
    for c in &fresh {
        f.send_transfer(c).await;
    }
    for id in std::iter::once(old.id).chain(fresh.iter().map(|c| c.id)) {
        assert!(f.result(id).await.0, "the deposit was applied");
    }

    // Every consumed record was timed; the old one is the oldest seen.
    let count = age_metric("_count").expect("handler_command_age_seconds_count is exported");
    assert!(count - count_before >= 6.0, "6 commands applied, {} ages recorded", count - count_before);
    let max = age_metric("{quantile=\"1\"}").expect("the age's maximum is exported");
    // (Summaries are sketches, accurate to about 1%.)
    assert!((29.0..120.0).contains(&max), "the 30 s old command is the oldest: max age {max} s");
    let median = age_metric("{quantile=\"0.5\"}").expect("the age's median is exported");
    assert!((0.0..30.0).contains(&median), "most commands were fresh: median age {median} s");

    // The group's offsets in Kafka reach the end of the partitions the handler read (committed asynchronously
    // after each Postgres commit).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parts = committed(&group, &topic);
        let read: Vec<_> = parts.iter().filter(|(high, _)| *high > 0).collect();
        assert!(!read.is_empty(), "the transfers are on the topic");
        if read.iter().all(|(high, at)| *at == Some(*high)) {
            break;
        }
        assert!(Instant::now() < deadline, "the handler's committed offsets did not reach the end: {parts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let creations = committed(&group, &f.topic(topics::CONFIRM_ACCOUNT_CREATION));
    assert!(
        creations.iter().all(|(high, at)| *high == 0 || *at == Some(*high)),
        "account creations committed too: {creations:?}"
    );

    // They advance with new work.
    let before: i64 = committed(&group, &topic).iter().filter_map(|(_, at)| *at).sum();
    let more = transfer(token, 7, CASH, iban, "one more deposit");
    f.send_transfer(&more).await;
    assert!(f.result(more.id).await.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let after: i64 = committed(&group, &topic).iter().filter_map(|(_, at)| *at).sum();
        if after == before + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "committed offsets stayed at {after}, expected {}", before + 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

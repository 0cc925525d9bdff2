//! The machine's floor, measured in the same process at the start of every run: a Kafka produce → consume
//! round trip, a single-row PostgreSQL commit loop, and an HTTP no-op on the gateway, one at a time.

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;
use tokio::time::Instant;

use crate::gql::Api;
use crate::hist;
use bank_core::load_test_run::Calibration;

const ROUNDS: u32 = 200;

pub async fn calibrate(brokers: &bank_core::kafka::Brokers, database_url: &str, api: Option<&Api>) -> Calibration {
    let mut c = Calibration::default();
    match kafka(brokers).await {
        Ok((p50, p99)) => (c.kafka_round_trip_p50_ms, c.kafka_round_trip_p99_ms) = (Some(p50), Some(p99)),
        Err(e) => c.notes.push(format!("kafka round trip not measured: {e}")),
    }
    match postgres(database_url).await {
        Ok((rate, p50)) => (c.postgres_commits_per_sec, c.postgres_commit_p50_ms) = (Some(rate), Some(p50)),
        Err(e) => c.notes.push(format!("postgres commit loop not measured: {e}")),
    }
    if let Some(api) = api {
        match http(api).await {
            Ok((p50, p99)) => (c.http_round_trip_p50_ms, c.http_round_trip_p99_ms) = (Some(p50), Some(p99)),
            Err(e) => c.notes.push(format!("HTTP round trip not measured: {e}")),
        }
    }
    c
}

fn quantiles(h: &hdrhistogram::Histogram<u64>) -> (f64, f64) {
    (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0)
}

async fn kafka(brokers: &bank_core::kafka::Brokers) -> anyhow::Result<(f64, f64)> {
    // A topic of its own, read from its beginning, deleted afterwards.
    let topic = format!("load_test_calibration_{}", uuid::Uuid::new_v4().simple());
    let admin = bank_core::kafka::admin(brokers)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &opts).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("cannot create {t}: {e}"))?;
    }
    let result = round_trips(brokers, &topic).await;
    let _ = admin.delete_topics(&[&topic], &opts).await;
    result
}

async fn round_trips(brokers: &bank_core::kafka::Brokers, topic: &str) -> anyhow::Result<(f64, f64)> {
    // The services' own client settings, so the floor is what they can reach.
    let producer = bank_core::kafka::producer(brokers, "load-test-calibration")?;
    let consumer: StreamConsumer = brokers
        .config()
        .set("group.id", format!("load-test-calibration-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.min.bytes", "1")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut h = hist::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut warm = 20;
    let mut i = 0u32;
    while i < ROUNDS && Instant::now() < deadline {
        let payload = format!("{i}");
        let sent = Instant::now();
        producer
            .send(FutureRecord::<(), _>::to(topic).payload(&payload), Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)?;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(15), consumer.recv()).await??;
            if rdkafka::Message::payload(&m) == Some(payload.as_bytes()) {
                break;
            }
        }
        // The first round trips include the new topic's leader election and the consumer's first fetch.
        if warm > 0 {
            warm -= 1;
            continue;
        }
        hist::record(&mut h, sent.elapsed());
        i += 1;
    }
    anyhow::ensure!(!h.is_empty(), "no round trip completed");
    Ok(quantiles(&h))
}

async fn postgres(url: &str) -> anyhow::Result<(f64, f64)> {
    use sqlx::Connection;
    let mut conn = tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(url)).await??;
    let table = format!("load_test_calibration_{}", std::process::id());
    sqlx::query(&format!("CREATE TABLE {table} (id INT PRIMARY KEY, n BIGINT NOT NULL)")).execute(&mut conn).await?;
    sqlx::query(&format!("INSERT INTO {table} VALUES (1, 0)")).execute(&mut conn).await?;
    let update = format!("UPDATE {table} SET n = n + 1 WHERE id = 1");
    let mut h = hist::new();
    let started = Instant::now();
    let mut n = 0u32;
    let mut result = Ok(());
    // Each statement is its own transaction: one synchronous commit each.
    while n < 1000 && started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        if let Err(e) = sqlx::query(&update).execute(&mut conn).await {
            result = Err(e);
            break;
        }
        hist::record(&mut h, t.elapsed());
        n += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = sqlx::query(&format!("DROP TABLE {table}")).execute(&mut conn).await;
    result?;
    anyhow::ensure!(n > 0, "no commit completed");
    Ok((f64::from(n) / elapsed, quantiles(&h).0))
}

async fn http(api: &Api) -> anyhow::Result<(f64, f64)> {
    let mut h = hist::new();
    for i in 0..(ROUNDS + 20) {
        let t = Instant::now();
        api.health().await?;
        if i >= 20 {
            hist::record(&mut h, t.elapsed());
        }
    }
    Ok(quantiles(&h))
}

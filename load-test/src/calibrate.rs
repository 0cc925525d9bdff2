//! The machine's floor, measured in the same process at the start of every run: one at a time, a Kafka
//! produce → consume round trip, a single-row PostgreSQL commit loop and an HTTP no-op on the gateway; and as
//! throughput, batched Kafka records with the bank's producer, batched double-entry transfers in PostgreSQL and
//! concurrent HTTP no-ops through the gateway.

use futures::StreamExt;
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
/// Records sent for the Kafka throughput floor (about a command's size each).
const KAFKA_RECORDS: usize = 30_000;
/// Accounts and transactions of the PostgreSQL floor: the handler's default batch size.
const PG_ACCOUNTS: i32 = 1000;
const PG_BATCH: usize = 1000;
/// How long each throughput floor runs at most.
const FLOOR_TIME: Duration = Duration::from_secs(3);
/// HTTP requests open at once for the HTTP floor.
const HTTP_CONCURRENCY: usize = 32;

pub async fn calibrate(brokers: &bank_core::kafka::Brokers, database_url: &str, api: Option<&Api>) -> Calibration {
    let mut c = Calibration::default();
    match kafka(brokers).await {
        Ok(((p50, p99), rate)) => {
            (c.kafka_round_trip_p50_ms, c.kafka_round_trip_p99_ms) = (Some(p50), Some(p99));
            match rate {
                Ok(rate) => c.kafka_records_per_sec = Some(rate),
                Err(e) => c.notes.push(format!("kafka throughput not measured: {e}")),
            }
        }
        Err(e) => c.notes.push(format!("kafka round trip not measured: {e}")),
    }
    match postgres(database_url).await {
        Ok((rate, p50)) => (c.postgres_commits_per_sec, c.postgres_commit_p50_ms) = (Some(rate), Some(p50)),
        Err(e) => c.notes.push(format!("postgres commit loop not measured: {e}")),
    }
    match postgres_transfers(database_url).await {
        Ok(rate) => c.postgres_transfers_per_sec = Some(rate),
        Err(e) => c.notes.push(format!("postgres transfer throughput not measured: {e}")),
    }
    if let Some(api) = api {
        match http(api).await {
            Ok((p50, p99)) => (c.http_round_trip_p50_ms, c.http_round_trip_p99_ms) = (Some(p50), Some(p99)),
            Err(e) => c.notes.push(format!("HTTP round trip not measured: {e}")),
        }
        match http_throughput(api).await {
            Ok(rate) => c.http_requests_per_sec = Some(rate),
            Err(e) => c.notes.push(format!("HTTP throughput not measured: {e}")),
        }
    }
    c
}

fn quantiles(h: &hdrhistogram::Histogram<u64>) -> (f64, f64) {
    (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0)
}

/// A consumer of the calibration topic, answered as soon as a record is there.
fn consumer(brokers: &bank_core::kafka::Brokers) -> anyhow::Result<StreamConsumer> {
    Ok(brokers
        .config()
        .set("group.id", format!("load-test-calibration-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.min.bytes", "1")
        .create()?)
}

type KafkaFloor = ((f64, f64), anyhow::Result<f64>);

async fn kafka(brokers: &bank_core::kafka::Brokers) -> anyhow::Result<KafkaFloor> {
    // A topic of its own, read from its beginning, deleted afterwards.
    let topic = format!("load_test_calibration_{}", uuid::Uuid::new_v4().simple());
    let admin = bank_core::kafka::admin(brokers)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &opts).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("cannot create {t}: {e}"))?;
    }
    let result = match round_trips(brokers, &topic).await {
        Ok(q) => Ok((q, throughput(brokers, &topic).await)),
        Err(e) => Err(e),
    };
    let _ = admin.delete_topics(&[&topic], &opts).await;
    result
}

/// Records per second produced with the bank's producer settings (all sent at once, batched by librdkafka) and
/// read back by a consumer, from the first send to the last record read.
async fn throughput(brokers: &bank_core::kafka::Brokers, topic: &str) -> anyhow::Result<f64> {
    let producer = bank_core::kafka::producer(brokers, "load-test-calibration")?;
    let consumer = consumer(brokers)?;
    // Past what the round trips wrote.
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(5))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(high))?;
    consumer.assign(&tpl)?;
    let payload = vec![b'x'; 200];
    let started = Instant::now();
    let send = async {
        let sends =
            (0..KAFKA_RECORDS).map(|i| {
                let key = i.to_string();
                let producer = &producer;
                let payload = &payload;
                async move {
                    producer.send(FutureRecord::to(topic).key(&key).payload(payload), Duration::from_secs(10)).await
                }
            });
        futures::stream::iter(sends).buffer_unordered(10_000).filter(|r| std::future::ready(r.is_err())).count().await
    };
    let read = async {
        let mut n = 0;
        while n < KAFKA_RECORDS && started.elapsed() < FLOOR_TIME * 5 {
            match tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
                Ok(Ok(_)) => n += 1,
                Ok(Err(e)) => return Err(anyhow::anyhow!(e)),
                Err(_) => break,
            }
        }
        Ok(n)
    };
    let (failed, read) = tokio::join!(send, read);
    let read = read?;
    anyhow::ensure!(failed == 0, "{failed} of {KAFKA_RECORDS} records were not delivered");
    anyhow::ensure!(read == KAFKA_RECORDS, "{read} of {KAFKA_RECORDS} records read back");
    Ok(KAFKA_RECORDS as f64 / started.elapsed().as_secs_f64())
}

async fn round_trips(brokers: &bank_core::kafka::Brokers, topic: &str) -> anyhow::Result<(f64, f64)> {
    // The services' own client settings, so the floor is what they can reach.
    let producer = bank_core::kafka::producer(brokers, "load-test-calibration")?;
    let consumer = consumer(brokers)?;
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

/// Double-entry transfers per second in transactions of the handler's batch size: per transaction, the debits
/// and the credits each as one set-based `UPDATE` and the ledger rows as one `INSERT`, committed synchronously.
async fn postgres_transfers(url: &str) -> anyhow::Result<f64> {
    use sqlx::Connection;
    let mut conn = tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(url)).await??;
    let (accounts, ledger) = (
        format!("load_test_floor_accounts_{}", std::process::id()),
        format!("load_test_floor_ledger_{}", std::process::id()),
    );
    let setup = [
        format!("CREATE TABLE {accounts} (id INT PRIMARY KEY, balance BIGINT NOT NULL)"),
        format!("INSERT INTO {accounts} SELECT g, 1000000 FROM generate_series(1, {PG_ACCOUNTS}) g"),
        format!(
            "CREATE TABLE {ledger} (seq BIGSERIAL PRIMARY KEY, from_id INT NOT NULL, to_id INT NOT NULL, amount BIGINT NOT NULL)"
        ),
    ];
    let mut result = Ok(0usize);
    for q in &setup {
        if let Err(e) = sqlx::query(q).execute(&mut conn).await {
            result = Err(e);
            break;
        }
    }
    let debit = format!(
        "UPDATE {accounts} a SET balance = a.balance - s.amount FROM          (SELECT f, sum(x) AS amount FROM UNNEST($1::int[], $2::bigint[]) u(f, x) GROUP BY f) s WHERE a.id = s.f"
    );
    let credit = format!(
        "UPDATE {accounts} a SET balance = a.balance + s.amount FROM          (SELECT t, sum(x) AS amount FROM UNNEST($1::int[], $2::bigint[]) u(t, x) GROUP BY t) s WHERE a.id = s.t"
    );
    let insert = format!(
        "INSERT INTO {ledger} (from_id, to_id, amount) SELECT * FROM UNNEST($1::int[], $2::int[], $3::bigint[])"
    );
    // A fixed spread of pairs (no two sides alike), the same on every run.
    let from: Vec<i32> = (0..PG_BATCH).map(|i| (i as i32 * 7) % PG_ACCOUNTS + 1).collect();
    let to: Vec<i32> = (0..PG_BATCH).map(|i| (i as i32 * 13 + 1) % PG_ACCOUNTS + 1).collect();
    let amount: Vec<i64> = vec![1; PG_BATCH];
    let started = Instant::now();
    if result.is_ok() {
        let mut done = 0usize;
        while started.elapsed() < FLOOR_TIME {
            let batch = async {
                let mut tx = conn.begin().await?;
                sqlx::query(&debit).bind(&from).bind(&amount).execute(&mut *tx).await?;
                sqlx::query(&credit).bind(&to).bind(&amount).execute(&mut *tx).await?;
                sqlx::query(&insert).bind(&from).bind(&to).bind(&amount).execute(&mut *tx).await?;
                tx.commit().await
            };
            if let Err(e) = batch.await {
                result = Err(e);
                break;
            }
            done += PG_BATCH;
        }
        result = result.map(|_| done);
    }
    let elapsed = started.elapsed().as_secs_f64();
    for t in [&ledger, &accounts] {
        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {t}")).execute(&mut conn).await;
    }
    let done = result?;
    anyhow::ensure!(done > 0, "no transaction committed");
    Ok(done as f64 / elapsed)
}

/// `GET /health` through the gateway per second with [`HTTP_CONCURRENCY`] open at once.
async fn http_throughput(api: &Api) -> anyhow::Result<f64> {
    let started = Instant::now();
    let workers = (0..HTTP_CONCURRENCY).map(|_| async {
        let mut n = 0u64;
        while started.elapsed() < FLOOR_TIME {
            api.health().await?;
            n += 1;
        }
        Ok::<_, crate::gql::ApiError>(n)
    });
    let counts = futures::future::try_join_all(workers).await?;
    Ok(counts.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64())
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

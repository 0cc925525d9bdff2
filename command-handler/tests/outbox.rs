//! The outbox publisher against the real Kafka and PostgreSQL. Alone in its test binary: it reads the
//! process-wide metrics, which no other handler may move meanwhile.

mod common;

use bank_core::shutdown::CancellationToken;
use bank_core::topics;
use command_handler::apply::ensure_company;
use command_handler::batch::OutboxRow;
use command_handler::handler::{self, Handler, Topics};
use common::{COMPANY_TOKEN, Fixture};

async fn instance(f: &Fixture) -> Handler {
    let pool = bank_core::db::connect(&f.db_url, 4).await.unwrap();
    bank_core::db::migrate(&pool, handler::SCHEMA, command_handler::MIGRATIONS).await.unwrap();
    ensure_company(&pool, Some(COMPANY_TOKEN), bank_core::Money::from_cents(1), bank_core::Money::from_cents(0))
        .await
        .unwrap();
    let codec = bank_core::registry::Codec::new(&bank_core::testing::registry_url()).unwrap();
    Handler::new(pool, codec, Topics::with_prefix(&f.prefix), f.config(1).limits())
}

fn published_total() -> f64 {
    bank_core::telemetry::metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("handler_events_published_total ")?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_published_event_is_counted_once_even_when_some_needed_a_second_round() {
    let f = Fixture::new().await;
    let h = instance(&f).await;
    let publisher = command_handler::outbox::Publisher {
        pool: h.pool.clone(),
        producer: bank_core::kafka::producer(&bank_core::testing::kafka_brokers(), "handler-test").unwrap(),
    };
    let before = published_total();
    let mut rows: Vec<OutboxRow> = (1..=5)
        .map(|seq| OutboxRow {
            seq,
            topic: f.topic(topics::MONEY_TRANSFER_CONFIRMED),
            key: Some(b"k".to_vec()),
            payload: Some(vec![seq as u8; 10]),
            headers: Vec::new(),
        })
        .collect();
    // Refused by the producer as too large: delivered in a second round, truncated.
    rows.insert(
        2,
        OutboxRow {
            seq: 6,
            topic: f.topic(topics::DEAD_LETTERS),
            key: Some(b"k".to_vec()),
            payload: Some(vec![7; 1_100_000]),
            headers: Vec::new(),
        },
    );
    let published =
        tokio::time::timeout(std::time::Duration::from_secs(60), publisher.publish(rows, &CancellationToken::new()))
            .await
            .expect("publishing finished");
    assert_eq!(published, 6);
    assert_eq!(published_total() - before, 6.0, "handler_events_published_total counts each event once");
}

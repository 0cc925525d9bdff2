//! The generator against the real stack, with a real command-handler behind it: heartbeats become commands,
//! keyed by the debited account, the generator keeps its accounts across a restart, and a recreated heartbeat
//! topic's records are new commands.

use bank_core::avro::{ConfirmMoneyTransfer, Heartbeat};
use bank_core::config::{CommonArgs, DatabaseArgs};
use bank_core::kafka::Producer;
use bank_core::provision;
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use bank_core::testing::{DeleteTopicsOnDrop, infra_missing, kafka_brokers, registry_url, unique_prefix};
use bank_core::{CASH, topics};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const COMPANY_TOKEN: &str = "fedcba9876543210fedcba9876543210";

fn common(prefix: &str) -> CommonArgs {
    bank_core::testing::common_args(prefix)
}

async fn spawn_generator(prefix: &str) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let mut config = command_generator::Config::parse_from(["command-generator"]);
    config.common = common(prefix);
    config.seed = 99;
    config.company_token = Some(COMPANY_TOKEN.into());
    config.start_from = "earliest".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token = CancellationToken::new();
    let t = token.clone();
    let task = tokio::spawn(async move { command_generator::run(config, listener, t).await.expect("generator ran") });
    (token, task)
}

/// Waits until the generator (in this process, so its gauge is in this process's recorder) knows `n` accounts.
async fn known_accounts(n: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = bank_core::telemetry::metrics().render();
        let known = text
            .lines()
            .find_map(|l| l.strip_prefix("generator_known_accounts "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if known == Some(f64::from(n)) {
            return;
        }
        assert!(Instant::now() < deadline, "the generator never knew {n} accounts (gauge: {known:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn beats(producer: &Producer, codec: &Codec, prefix: &str, range: std::ops::Range<i64>) {
    let topic = format!("{prefix}{}", topics::HEARTBEAT);
    for beat in range {
        let bytes = codec.encode(&topic, &Heartbeat { beat }).await.unwrap();
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&topic).payload(&bytes);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
}

async fn results(pool: &sqlx::PgPool, n: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have: i64 = sqlx::query_scalar("SELECT count(*) FROM bank.results").fetch_one(pool).await.unwrap_or(0);
        if have >= n || Instant::now() > deadline {
            return have;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_become_commands_known_accounts_survive_a_restart_and_a_recreated_topic_gives_new_ones() {
    let prefix = unique_prefix();
    provision::sync(&kafka_brokers(), &registry_url(), &prefix, 1, Duration::from_secs(30), topics::TOPICS)
        .await
        .unwrap_or_else(|e| infra_missing("kafka or the schema registry", format!("{e:#}")));
    let _topics = DeleteTopicsOnDrop(prefix.clone());
    let (db_url, pool) = bank_core::testing::fresh_database().await;
    let mut handler = command_handler::Config::parse_from(["command-handler"]);
    handler.common = common(&prefix);
    handler.database = DatabaseArgs { database_url: db_url, database_max_connections: 4 };
    handler.company_token = Some(COMPANY_TOKEN.into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handler_token = CancellationToken::new();
    tokio::spawn(command_handler::run(handler, listener, handler_token.clone()));

    let codec = Codec::new(&registry_url()).unwrap();
    let producer = bank_core::kafka::producer(&kafka_brokers(), "generator-test").unwrap();
    let (generator, task) = spawn_generator(&prefix).await;
    // The first 20 beats create accounts; once their confirmations are back, the rest can spend from them.
    beats(&producer, &codec, &prefix, 0..20).await;
    assert_eq!(results(&pool, 20).await, 20);
    known_accounts(20).await;
    beats(&producer, &codec, &prefix, 20..150).await;
    assert_eq!(results(&pool, 150).await, 150, "one command per heartbeat");
    let accounts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bank.accounts WHERE a_type = 'AUTO'").fetch_one(&pool).await.unwrap();
    assert_eq!(accounts, 20, "the first 20 beats create accounts");
    let confirmed: i64 = sqlx::query_scalar("SELECT count(*) FROM bank.results WHERE kind = 'transfer' AND confirmed")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(confirmed > 30, "most transfers succeed: {confirmed} of 130");

    // Restart: the known accounts come back from account_creation_confirmed, so beats 150..250 are transfers
    // and one creation (beat 200), not a fresh round of account creations.
    generator.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("the generator stops").expect("generator ran");
    let (generator, _task) = spawn_generator(&prefix).await;
    beats(&producer, &codec, &prefix, 150..250).await;
    assert_eq!(results(&pool, 250).await, 250);
    let accounts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bank.accounts WHERE a_type = 'AUTO'").fetch_one(&pool).await.unwrap();
    assert_eq!(accounts, 21, "only beat 200 created an account after the restart");

    // Keys: the debited account.
    let topic = format!("{prefix}{}", topics::CONFIRM_MONEY_TRANSFER);
    let reader: BaseConsumer =
        bank_core::kafka::consumer_config(&kafka_brokers(), &format!("{prefix}r"), "t").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..12 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning).unwrap();
    }
    reader.assign(&tpl).unwrap();
    let (mut seen, deadline) = (0, Instant::now() + Duration::from_secs(20));
    while seen < 229 && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            let t: ConfirmMoneyTransfer = codec.decode(m.payload()).await.unwrap();
            let debited = if t.from == CASH { &t.to } else { &t.from };
            assert_eq!(m.key(), Some(debited.as_bytes()));
            seen += 1;
        }
    }
    assert_eq!(seen, 229, "every transfer read back");

    // The heartbeat topic deleted and created again, the bank's database kept: offsets start at 0 again, but
    // these are new heartbeats, so their commands are new too (20 more results), not replays of beats 0..20.
    generator.cancel();
    let heartbeat = format!("{prefix}{}", topics::HEARTBEAT);
    let admin = bank_core::kafka::admin(&kafka_brokers()).unwrap();
    let options = rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    admin.delete_topics(&[heartbeat.as_str()], &options).await.expect("heartbeat deleted");
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) =
        provision::sync(&kafka_brokers(), &registry_url(), &prefix, 1, Duration::from_secs(10), topics::TOPICS).await
    {
        assert!(Instant::now() < deadline, "heartbeat not created again: {e:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (generator, _task) = spawn_generator(&prefix).await;
    beats(&producer, &codec, &prefix, 0..20).await;
    assert_eq!(results(&pool, 270).await, 270, "the recreated topic's commands are new commands");
    generator.cancel();
    handler_token.cancel();
}

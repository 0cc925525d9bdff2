//! `provision::sync` against the real Kafka and schema registry of `cargo xtask up`. Every test uses its own topic prefix.

use bank_core::avro::*;
use bank_core::provision::{Report, sync};
use bank_core::registry::{Codec, RegistryClient};
use bank_core::testing::{DeleteTopicsOnDrop, kafka_brokers, registry_url, unique_prefix};
use bank_core::topics::{self, TOPICS};
use bank_core::{CommandId, kafka};
use rdkafka::Message;
use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

async fn run_sync(prefix: &str) -> Report {
    sync(&kafka_brokers(), &registry_url(), prefix, 1, WAIT, TOPICS)
        .await
        .unwrap_or_else(|e| bank_core::testing::infra_missing("kafka or the schema registry", format!("{e:#}")))
}

/// Partition counts of the prefix's topics, once metadata shows at least `expected` of them.
async fn partitions(prefix: &str, expected: usize) -> HashMap<String, usize> {
    let consumer = kafka::consumer(&kafka_brokers(), &format!("{prefix}probe"), "test").unwrap();
    for _ in 0..100 {
        let md = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
        let found: HashMap<String, usize> = md
            .topics()
            .iter()
            .filter(|t| t.name().starts_with(prefix))
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect();
        if found.len() >= expected {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("topics with prefix {prefix} did not appear in metadata");
}

#[tokio::test]
async fn creates_every_topic_and_schema_then_a_second_run_changes_nothing() {
    let prefix = unique_prefix();
    let _topics = DeleteTopicsOnDrop(prefix.clone());
    let first = run_sync(&prefix).await;
    assert_eq!(first.created.len(), TOPICS.len(), "{first:?}");
    // One subject per topic with a record; account confirmations have two topics.
    assert_eq!(first.registered.len(), ALL_SCHEMAS.len() + 1, "{first:?}");
    assert_eq!(first.registered.len(), TOPICS.iter().filter(|t| t.record.is_some()).count());
    assert!(first.changed_anything());

    let existing = partitions(&prefix, TOPICS.len()).await;
    for t in TOPICS {
        assert_eq!(existing.get(&t.name_with(&prefix)), Some(&usize::try_from(t.partitions).unwrap()), "{}", t.name);
    }
    let subjects = RegistryClient::new(&registry_url()).unwrap().subjects().await.unwrap();
    for t in TOPICS.iter().filter(|t| t.record.is_some()) {
        assert!(subjects.contains(&t.value_subject(&prefix)), "{} not registered", t.name);
    }

    let second = run_sync(&prefix).await;
    assert_eq!(second, Report::default(), "second run must be a no-op");
    assert!(second.to_string().starts_with("nothing to change"));
}

#[tokio::test]
async fn grows_partitions_and_fixes_configs_but_leaves_unknown_topics_alone() {
    let prefix = unique_prefix();
    let _topics = DeleteTopicsOnDrop(prefix.clone());
    let admin = kafka::admin(&kafka_brokers()).unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let small = format!("{prefix}{}", topics::CONFIRM_MONEY_TRANSFER);
    let foreign = format!("{prefix}someone_elses_topic");
    let wrong = NewTopic::new(&small, 2, TopicReplication::Fixed(1)).set("retention.ms", "1000");
    let other = NewTopic::new(&foreign, 1, TopicReplication::Fixed(1));
    for r in admin.create_topics([&wrong, &other], &opts).await.unwrap() {
        r.unwrap();
    }

    let report = run_sync(&prefix).await;
    assert_eq!(report.grown, vec![(small.clone(), 2, 12)]);
    assert_eq!(report.reconfigured, vec![small.clone()]);
    assert_eq!(report.created.len(), TOPICS.len() - 1);

    let now = partitions(&prefix, TOPICS.len() + 1).await;
    assert_eq!(now.get(&small), Some(&12));
    assert_eq!(now.get(&foreign), Some(&1), "an unknown topic must survive");
    let described = admin.describe_configs([&ResourceSpecifier::Topic(&small)], &opts).await.unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    assert_eq!(resource.get("retention.ms").and_then(|e| e.value.as_deref()), Some("604800000"));

    assert_eq!(run_sync(&prefix).await, Report::default());
}

#[tokio::test]
async fn an_incompatible_registered_schema_fails_with_a_clear_message() {
    let prefix = unique_prefix();
    let _topics = DeleteTopicsOnDrop(prefix.clone());
    let subject = format!("{prefix}heartbeat-value");
    let conflicting = r#"{"type":"record","name":"Heartbeat","namespace":"nl.openweb.data","fields":[{"name":"beat","type":"string"}]}"#;
    RegistryClient::new(&registry_url()).unwrap().register(&subject, conflicting).await.unwrap();
    let err = sync(&kafka_brokers(), &registry_url(), &prefix, 1, WAIT, TOPICS).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("incompatible") && msg.contains(&subject), "{msg}");
}

#[tokio::test]
async fn every_record_type_round_trips_through_the_registry_and_kafka() {
    let prefix = unique_prefix();
    let _topics = DeleteTopicsOnDrop(prefix.clone());
    run_sync(&prefix).await;
    let codec = Codec::new(&registry_url()).unwrap();
    let producer = kafka::producer(&kafka_brokers(), "contract-test").unwrap();
    let id = CommandId::new();
    let token = bank_core::AccountToken::generate().expose().to_owned();

    let heartbeat = Heartbeat { beat: 42 };
    let cac = ConfirmAccountCreation { id, a_type: Atype::Manual };
    let acc =
        AccountCreationConfirmed { id, iban: "NL66OPEN0000000000".into(), token: token.clone(), a_type: Atype::Auto };
    let acf = AccountCreationFailed { id, reason: "iban already exists".into() };
    let cmt = ConfirmMoneyTransfer {
        id,
        token,
        amount: 12_345,
        from: "NL66OPEN0000000000".into(),
        to: "cash".into(),
        description: "ünïcödé ✓ '; DROP TABLE x;--".into(),
    };
    let mtc = MoneyTransferConfirmed { id };
    let mtf = MoneyTransferFailed { id, reason: "INSUFFICIENT_FUNDS: balance too low".into() };
    let bc = BalanceChanged {
        iban: "NL66OPEN0000000000".into(),
        new_balance: -50_000,
        changed_by: i64::MIN + 1,
        from_to: "cash".into(),
        description: String::new(),
        transfer_id: Some(id),
        seq: i64::MAX,
    };

    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    macro_rules! send {
        ($topic:expr, $record:expr) => {{
            let topic = format!("{prefix}{}", $topic);
            let bytes = codec.encode(&topic, &$record).await.unwrap();
            assert_eq!(bytes[0], 0, "confluent magic byte");
            sent.push((topic, bytes));
        }};
    }
    send!(topics::HEARTBEAT, heartbeat);
    send!(topics::CONFIRM_ACCOUNT_CREATION, cac);
    send!(topics::ACCOUNT_CREATION_CONFIRMED, acc);
    send!(topics::ACCOUNT_CREATION_FAILED, acf);
    send!(topics::CONFIRM_MONEY_TRANSFER, cmt);
    send!(topics::MONEY_TRANSFER_CONFIRMED, mtc);
    send!(topics::MONEY_TRANSFER_FAILED, mtf);
    send!(topics::BALANCE_CHANGED, bc);
    for (topic, bytes) in &sent {
        producer
            .send(FutureRecord::to(topic).key("k").payload(bytes), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let consumer = kafka::consumer(&kafka_brokers(), &format!("{prefix}contract"), "contract-test").unwrap();
    let names: Vec<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    consumer.subscribe(&names).unwrap();
    let mut received: HashMap<String, Vec<u8>> = HashMap::new();
    while received.len() < sent.len() {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records did not arrive within 30s")
            .unwrap();
        received.insert(msg.topic().to_owned(), msg.payload().unwrap().to_vec());
    }
    let get = |t: &str| received.get(&format!("{prefix}{t}")).map(Vec::as_slice);

    assert_eq!(codec.decode::<Heartbeat>(get(topics::HEARTBEAT)).await.unwrap(), heartbeat);
    assert_eq!(codec.decode::<ConfirmAccountCreation>(get(topics::CONFIRM_ACCOUNT_CREATION)).await.unwrap(), cac);
    assert_eq!(codec.decode::<AccountCreationConfirmed>(get(topics::ACCOUNT_CREATION_CONFIRMED)).await.unwrap(), acc);
    assert_eq!(codec.decode::<AccountCreationFailed>(get(topics::ACCOUNT_CREATION_FAILED)).await.unwrap(), acf);
    assert_eq!(codec.decode::<ConfirmMoneyTransfer>(get(topics::CONFIRM_MONEY_TRANSFER)).await.unwrap(), cmt);
    assert_eq!(codec.decode::<MoneyTransferConfirmed>(get(topics::MONEY_TRANSFER_CONFIRMED)).await.unwrap(), mtc);
    assert_eq!(codec.decode::<MoneyTransferFailed>(get(topics::MONEY_TRANSFER_FAILED)).await.unwrap(), mtf);
    assert_eq!(codec.decode::<BalanceChanged>(get(topics::BALANCE_CHANGED)).await.unwrap(), bc);
    // A record of one type is not silently accepted as another.
    assert!(codec.decode::<Heartbeat>(get(topics::BALANCE_CHANGED)).await.is_err());
}

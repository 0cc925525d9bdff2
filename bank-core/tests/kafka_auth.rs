//! Black box against the stack's Kafka, as an attacker on the machine would try it: without a password nothing
//! is served, a wrong password is refused, and a service's principal reaches its own topics only. On the open
//! broker of before, any local client read registered users' tokens and wrote forged events.

use bank_core::kafka::{self, Brokers, Credentials};
use bank_core::kafka_wire::Connection;
use bank_core::testing::{kafka_as, kafka_brokers};
use bank_core::topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

fn first_broker() -> String {
    kafka_brokers().servers.split(',').next().unwrap().to_owned()
}

/// What a metadata request for `topic` answers: the topic's own error, or the request's.
fn topic_metadata(brokers: &Brokers, topic: &str) -> Result<Option<RDKafkaErrorCode>, KafkaError> {
    let c: BaseConsumer =
        kafka::consumer_config(brokers, "auth-probe", "auth-test").set("socket.timeout.ms", "3000").create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(6))?;
    Ok(md.topics().first().and_then(|t| t.error()).map(RDKafkaErrorCode::from))
}

/// The first error reading `topic` from its beginning in the group `group`, or `None` if records or silence came.
fn read_error(brokers: &Brokers, group: &str, topic: &str) -> Option<KafkaError> {
    let c: BaseConsumer = kafka::consumer_config(brokers, group, "auth-test").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(500)) {
            Some(Err(e)) => return Some(e),
            Some(Ok(_)) => return None,
            None => {}
        }
    }
    None
}

async fn produce(brokers: &Brokers, topic: &str) -> Result<(), KafkaError> {
    let p: FutureProducer = kafka::producer_config(brokers, "auth-test").set("message.timeout.ms", "8000").create()?;
    p.send(FutureRecord::<[u8], [u8]>::to(topic).payload(b"forged"), Duration::from_secs(10))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

fn is_authorization(e: &KafkaError) -> bool {
    let text = format!("{e:?}");
    text.contains("Authorization") || text.contains("AUTHORIZATION")
}

#[test]
fn a_client_without_a_password_is_served_nothing() {
    // By hand: an unauthenticated Metadata request is answered by a closed connection.
    let mut raw = Connection::open(&first_broker(), None, Duration::from_secs(5)).expect("the broker accepts TCP");
    assert!(raw.broker_count().is_err(), "an unauthenticated Metadata request was answered");
    // And librdkafka, as kcat would: no metadata at all.
    let open = Brokers::new(&kafka_brokers().servers, None);
    assert!(topic_metadata(&open, topics::ACCOUNT_CREATION_CONFIRMED_MANUAL).is_err());
}

#[test]
fn a_wrong_password_is_refused_and_the_right_one_served() {
    let mut admin = kafka_brokers().credentials.expect("the stack's admin credentials (.openbank/env)");
    let mut ok = Connection::open(&first_broker(), Some(&admin), Duration::from_secs(5)).unwrap();
    assert!(ok.broker_count().unwrap() >= 1);
    admin.password.push('x');
    let refused = Connection::open(&first_broker(), Some(&admin), Duration::from_secs(5));
    assert!(refused.is_err(), "a wrong password authenticated");
    let nobody = Credentials { username: "mallory".into(), password: "guess".into() };
    assert!(Connection::open(&first_broker(), Some(&nobody), Duration::from_secs(5)).is_err());
}

#[test]
fn the_generator_cannot_read_registered_users_tokens_nor_forge_balances() {
    let generator = kafka_as("command-generator");
    // Its own input is there for it...
    assert_eq!(topic_metadata(&generator, topics::ACCOUNT_CREATION_CONFIRMED).unwrap(), None);
    // ...registered users' confirmations are not, not even their metadata.
    assert_eq!(
        topic_metadata(&generator, topics::ACCOUNT_CREATION_CONFIRMED_MANUAL).unwrap(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt.block_on(produce(&generator, topics::BALANCE_CHANGED)).expect_err("the generator wrote balance_changed");
    assert!(is_authorization(&e), "{e:?}");
}

#[test]
fn the_gateway_cannot_forge_results_nor_read_commands() {
    let gateway = kafka_as("graphql-endpoint");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for topic in [topics::MONEY_TRANSFER_CONFIRMED, topics::BALANCE_CHANGED] {
        let e = rt.block_on(produce(&gateway, topic)).expect_err("the gateway wrote a result");
        assert!(is_authorization(&e), "{topic}: {e:?}");
    }
    // It writes commands, but cannot read them (they carry other users' tokens): its reader group is its own, so
    // the refusal is the topic's.
    let e = read_error(&gateway, "graphql-endpoint-auth-test", topics::CONFIRM_MONEY_TRANSFER)
        .expect("reading confirm_money_transfer as the gateway gave no error");
    assert!(is_authorization(&e), "{e:?}");
    // Nor join another service's group, even on a topic it may read.
    let c: BaseConsumer = kafka::consumer_config(&gateway, "command-handler", "auth-test").create().unwrap();
    c.subscribe(&[topics::BALANCE_CHANGED]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut refused = None;
    while refused.is_none() && std::time::Instant::now() < deadline {
        if let Some(Err(e)) = c.poll(Duration::from_millis(500)) {
            refused = Some(e);
        }
    }
    let e = refused.expect("the gateway joined the handler's consumer group");
    assert!(is_authorization(&e), "{e:?}");
}

#[test]
fn the_heartbeat_reaches_nothing_but_its_topic() {
    let heartbeat = kafka_as("heartbeat");
    assert_eq!(topic_metadata(&heartbeat, topics::HEARTBEAT).unwrap(), None);
    assert_eq!(
        topic_metadata(&heartbeat, topics::ACCOUNT_CREATION_CONFIRMED).unwrap(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    // It joins no consumer group either.
    let e = read_error(&heartbeat, "heartbeat-auth-test", topics::HEARTBEAT).expect("the heartbeat read in a group");
    assert!(is_authorization(&e), "{e:?}");
}

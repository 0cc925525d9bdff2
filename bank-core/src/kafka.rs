//! Kafka clients with every setting written out in one place.

use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;

pub use crate::kafka_wire::Credentials;
pub use crate::producer::{Delivery, Producer};

/// Where the brokers are and who this client is to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brokers {
    /// Bootstrap servers, comma separated.
    pub servers: String,
    /// SASL/SCRAM-SHA-256 credentials; without them the client speaks PLAINTEXT.
    pub credentials: Option<Credentials>,
}

impl Brokers {
    pub fn new(servers: &str, credentials: Option<Credentials>) -> Self {
        Self { servers: servers.to_owned(), credentials }
    }

    /// A client config with the servers and, with credentials, SASL/SCRAM-SHA-256 (over plain TCP: the brokers
    /// listen on loopback or on the compose network only).
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.servers);
        if let Some(cr) = &self.credentials {
            c.set("security.protocol", "SASL_PLAINTEXT")
                .set("sasl.mechanisms", "SCRAM-SHA-256")
                .set("sasl.username", &cr.username)
                .set("sasl.password", &cr.password);
        }
        c
    }
}

/// The batching trade of every service's Kafka clients, as a latency/throughput setting of the whole stack:
/// `KAFKA_LINGER_MS` (how long a producer waits to fill a batch; default 2) and `KAFKA_FETCH_MIN_BYTES` /
/// `KAFKA_FETCH_WAIT_MAX_MS` (how much a consumer's fetch waits for; defaults 1 byte, 100 ms). A value that is not
/// a number up to 1,000,000 is ignored (the default stays).
pub fn batching(var: &str, default: u32) -> String {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|v| *v <= 1_000_000)
        .unwrap_or(default)
        .to_string()
}

/// Idempotent producer: no duplicates or reordering per partition on retries.
pub fn producer_config(brokers: &Brokers, client_id: &str) -> ClientConfig {
    let mut c = brokers.config();
    c.set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("retries", "2147483647")
        .set("message.timeout.ms", "120000")
        .set("request.timeout.ms", "30000")
        .set("linger.ms", batching("KAFKA_LINGER_MS", 2))
        .set("batch.num.messages", "10000")
        // Bounded send queue (librdkafka's default is 1 GB): a full queue is back-pressure to the caller.
        .set("queue.buffering.max.messages", "100000")
        .set("queue.buffering.max.kbytes", "16384")
        .set("compression.type", "lz4")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "5000");
    c
}

/// The idempotent producer of [`producer_config`], made again should it fail for good ([`Producer`]).
pub fn producer(brokers: &Brokers, client_id: &str) -> Result<Producer, rdkafka::error::KafkaError> {
    Producer::new(producer_config(brokers, client_id))
}

/// Consumer with manual offset handling: nothing is committed automatically; a service stores offsets
/// only after the work they stand for is durable (in Kafka or in Postgres).
pub fn consumer_config(brokers: &Brokers, group_id: &str, client_id: &str) -> ClientConfig {
    let mut c = brokers.config();
    c.set("group.id", group_id)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000")
        .set("max.poll.interval.ms", "300000")
        // The broker answers a fetch as soon as one byte is there (`fetch.min.bytes`), so the wait only bounds how
        // often an idle consumer asks: 10 ms kept the idle stack's Kafka at ~13 % of a core, 100 ms at ~6 %.
        .set("fetch.wait.max.ms", batching("KAFKA_FETCH_WAIT_MAX_MS", 100))
        .set("fetch.min.bytes", batching("KAFKA_FETCH_MIN_BYTES", 1))
        // Bounded prefetch. librdkafka's defaults (100,000 messages and 64 MB queued per partition, 50 MB per
        // fetch) let a consumer that reads many partitions grow to hundreds of megabytes during a burst.
        .set("queued.min.messages", "2000")
        .set("queued.max.messages.kbytes", "2048")
        // With a queue that small a busy consumer hits the bound often, and librdkafka then pauses fetching that
        // partition for `fetch.queue.backoff.ms` (default 1 s: second-long stalls under load). Resume quickly.
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.max.bytes", "2097152")
        .set("max.partition.fetch.bytes", "1048576")
        .set("partition.assignment.strategy", "range,roundrobin")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "5000");
    c
}

/// The next record, or `None` once `shutdown` fires. A consumer error (broker away, rebalance trouble) is logged
/// and the read retried after a short pause; librdkafka reconnects by itself.
pub async fn next_record<'a, C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &'a StreamConsumer<C>,
    shutdown: &tokio_util::sync::CancellationToken,
    what: &str,
) -> Option<rdkafka::message::BorrowedMessage<'a>> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            m = consumer.recv() => match m {
                Ok(m) => return Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, consumer = what, "consumer error; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// A batch of up to `max` records: the first waits for a record (`None` once `shutdown` fires), the rest are taken
/// as they come until `max` records or `wait` after the first. A consumer error is logged and the gathering goes on.
pub async fn next_batch<'a, C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &'a StreamConsumer<C>,
    shutdown: &tokio_util::sync::CancellationToken,
    what: &str,
    max: usize,
    wait: std::time::Duration,
) -> Option<Vec<rdkafka::message::BorrowedMessage<'a>>> {
    let first = next_record(consumer, shutdown, what).await?;
    let mut batch = Vec::with_capacity(max.clamp(1, 4096));
    batch.push(first);
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(m),
            Ok(Err(e)) => tracing::warn!(error = %e, consumer = what, "consumer error"),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The headers of a `dead_letters` record: where the record came from and why it was set aside.
pub fn dead_letter_headers(topic: &str, partition: i32, offset: i64, error: &str) -> Vec<(String, String)> {
    use crate::topics::dead_letter_headers as h;
    vec![
        (h::SOURCE_TOPIC.to_owned(), topic.to_owned()),
        (h::SOURCE_PARTITION.to_owned(), partition.to_string()),
        (h::SOURCE_OFFSET.to_owned(), offset.to_string()),
        (h::ERROR.to_owned(), error.to_owned()),
    ]
}

/// A record that cannot be processed, as it was read.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

impl<'a> Source<'a> {
    /// The record `m` as read from Kafka.
    pub fn of<M: rdkafka::message::Message>(m: &'a M) -> Self {
        Self { topic: m.topic(), partition: m.partition(), offset: m.offset(), key: m.key(), payload: m.payload() }
    }
}

/// Sends `source` unchanged to the dead-letter topic `to` with [`dead_letter_headers`], waiting for Kafka's
/// acknowledgement (at most 30 s).
pub async fn dead_letter(producer: &Producer, to: &str, source: Source<'_>, error: &str) -> anyhow::Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    let mut headers = OwnedHeaders::new();
    for (key, value) in dead_letter_headers(source.topic, source.partition, source.offset, error) {
        headers = headers.insert(Header { key: &key, value: Some(&value) });
    }
    let mut record = rdkafka::producer::FutureRecord::<[u8], [u8]>::to(to).headers(headers);
    if let Some(k) = source.key {
        record = record.key(k);
    }
    if let Some(p) = source.payload {
        record = record.payload(p);
    }
    producer
        .send(record, std::time::Duration::from_secs(30))
        .await
        .map_err(|(e, _)| anyhow::anyhow!("cannot dead-letter a record: {e}"))?;
    Ok(())
}

/// Whether `e` is one librdkafka recovers from by itself (a broker connection lost, a leader or coordinator moving,
/// a request timing out), so a reader should carry on rather than give up.
pub fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::Resolve
                | C::OperationTimedOut
                | C::RequestTimedOut
                | C::NetworkException
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::NotEnoughReplicas
                | C::KafkaStorageError
                | C::FencedLeaderEpoch
                | C::UnknownLeaderEpoch
                | C::OffsetNotAvailable
        )
    )
}

pub fn consumer(
    brokers: &Brokers,
    group_id: &str,
    client_id: &str,
) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
    consumer_config(brokers, group_id, client_id).create()
}

pub fn admin(brokers: &Brokers) -> Result<AdminClient<DefaultClientContext>, rdkafka::error::KafkaError> {
    brokers.config().set("client.id", "open-bank-admin").set("request.timeout.ms", "10000").create()
}

/// Whether the brokers answer a metadata request within two seconds (for `/ready`). Runs off the async workers.
pub async fn reachable(producer: &Producer) -> Result<(), String> {
    use rdkafka::producer::Producer as _;
    let p = producer.instance();
    tokio::task::spawn_blocking(move || p.client().fetch_metadata(None, std::time::Duration::from_secs(2)).map(|_| ()))
        .await
        .map_err(|_| "probe failed".to_owned())?
        .map_err(|_| "kafka unreachable".to_owned())
}

/// A `/ready` check for services whose only dependency is Kafka.
#[cfg(feature = "http")]
pub fn ready_check(producer: &Producer) -> crate::http::ReadyCheck {
    let producer = producer.clone();
    std::sync::Arc::new(move || {
        let p = producer.clone();
        Box::pin(async move { reachable(&p).await })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::dead_letter_headers as h;

    #[test]
    fn a_lost_connection_is_transient_a_refusal_is_not() {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
        let consumption = KafkaError::MessageConsumption;
        assert!(is_transient(&consumption(C::BrokerTransportFailure)), "the error a restarted broker gave the audit");
        assert!(is_transient(&consumption(C::NotLeaderForPartition)));
        assert!(!is_transient(&consumption(C::TopicAuthorizationFailed)), "refused by an ACL: never retried");
        assert!(!is_transient(&consumption(C::UnknownTopicOrPartition)), "a missing topic is reported");
        assert!(!is_transient(&KafkaError::Canceled));
    }

    #[test]
    fn dead_letter_headers_name_the_source_and_the_error() {
        let got = dead_letter_headers("p_balance_changed", 3, 42, "bad record");
        let want: Vec<(String, String)> = [
            (h::SOURCE_TOPIC, "p_balance_changed"),
            (h::SOURCE_PARTITION, "3"),
            (h::SOURCE_OFFSET, "42"),
            (h::ERROR, "bad record"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(got, want);
    }
}

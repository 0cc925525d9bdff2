//! Where a consumer group stands on its topics, from Kafka alone: the end of every partition (high watermark)
//! and the group's committed offset. The group is only asked (an offset fetch), never joined.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::metadata::Metadata;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::Duration;

/// How long one Kafka request of a sample may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A consumer group's position, summed over its topics' partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Committed offsets (a partition without one counts from its low watermark): grows by the records consumed.
    pub consumed: i64,
    /// Records not yet consumed: high watermark minus committed offset.
    pub lag: i64,
}

/// Asks Kafka for one consumer group's position on a set of topics.
pub struct GroupProbe {
    consumer: BaseConsumer,
    topics: Vec<String>,
}

impl GroupProbe {
    pub fn new(brokers: &bank_core::kafka::Brokers, group: &str, topics: Vec<String>) -> KafkaResult<Self> {
        let consumer = bank_core::kafka::consumer_config(brokers, group, "graphql-endpoint-pipeline").create()?;
        Ok(Self { consumer, topics })
    }

    /// The group's position; blocking (a few Kafka round trips), so it runs off the async workers.
    pub fn position(&self, metadata: &Metadata) -> KafkaResult<Position> {
        let mut tpl = TopicPartitionList::new();
        for t in metadata.topics().iter().filter(|t| self.topics.iter().any(|w| w == t.name())) {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
        if tpl.count() == 0 {
            return Err(KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopic));
        }
        let committed = self.consumer.committed_offsets(tpl, TIMEOUT)?;
        let mut position = Position { consumed: 0, lag: 0 };
        for e in committed.elements() {
            let (low, high) = self.consumer.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
            let at = match e.offset() {
                Offset::Offset(o) => o.clamp(low, high.max(low)),
                _ => low,
            };
            position.consumed = position.consumed.saturating_add(at);
            position.lag = position.lag.saturating_add(high.saturating_sub(at).max(0));
        }
        Ok(position)
    }

    /// Every topic's partitions, in one request.
    pub fn metadata(&self) -> KafkaResult<Metadata> {
        self.consumer.fetch_metadata(None, TIMEOUT)
    }
}

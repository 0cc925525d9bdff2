//! The consumer loop: gathers a batch of records, decodes them, hands the batch to the handler, passes the
//! committed events to the outbox publisher and mirrors the offsets to Kafka; and the consumer-lag gauges.

use crate::batch::{Command, Incoming, OutboxRow};
use crate::handler::Handler;
use crate::offsets::OffsetsContext;
use bank_core::inbound::{Inbound, TopicKind};
use bank_core::kafka::next_batch;
use bank_core::retry::Backoff;
use bank_core::shutdown::CancellationToken;
use futures::FutureExt;
use rdkafka::TopicPartitionList as Tpl;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::Offset;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub type HandlerConsumer = StreamConsumer<OffsetsContext>;

pub async fn consume(
    consumer: &HandlerConsumer,
    handler: &Handler,
    max: usize,
    wait: Duration,
    outbox: &mpsc::Sender<Vec<OutboxRow>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let Some(records) = next_batch(consumer, shutdown, "handler", max, wait).await else {
            return Ok(());
        };
        // When each command entered Kafka (its record's timestamp), for the age at apply time.
        let stamps: Vec<i64> = records.iter().filter_map(|m| m.timestamp().to_millis()).collect();
        let mut batch: Vec<Incoming> = Vec::with_capacity(records.len());
        for m in &records {
            batch.push(read(handler, m, shutdown).await);
        }
        drop(records);
        if shutdown.is_cancelled()
            && batch.iter().any(|r| matches!(r.command, Command::Poison(ref e) if e == INTERRUPTED))
        {
            return Ok(());
        }

        let started = Instant::now();
        let size = batch.len();
        let (outcome, interrupted) = handler.handle_isolating(batch, shutdown).await;
        if interrupted && outcome.offsets.is_empty() {
            // Nothing of this batch committed; the next run starts at the stored offsets.
            return Ok(());
        }
        metrics::histogram!("handler_batch_size").record(size as f64);
        metrics::histogram!("handler_batch_seconds").record(started.elapsed().as_secs_f64());
        if !interrupted {
            let committed_ms = bank_core::clock::unix_millis();
            let age = metrics::histogram!(bank_core::metric_names::HANDLER_COMMAND_AGE);
            for stamp in &stamps {
                age.record(command_age_seconds(*stamp, committed_ms));
            }
        }
        let count = |outcome: &str, n: u64| {
            metrics::counter!(bank_core::metric_names::HANDLER_COMMANDS, "outcome" => outcome.to_owned()).increment(n)
        };
        count("confirmed", outcome.confirmed);
        count("failed", outcome.failed);
        count("replayed", outcome.replayed);
        count("dead_lettered", outcome.dead_lettered);
        count("skipped", outcome.skipped);
        metrics::counter!("handler_accounts_created_total").increment(outcome.accounts_created);
        for (code, n) in &outcome.refusals {
            metrics::counter!("handler_refusals_total", "code" => *code).increment(*n);
        }
        if !outcome.outbox.is_empty() && outbox.send(outcome.outbox).await.is_err() {
            anyhow::bail!("the outbox publisher stopped");
        }
        // Kafka's committed offsets only mirror Postgres, asynchronously and after its commit, so that standard
        // Kafka tools show the group's lag; Postgres alone decides where a partition continues on assignment.
        let mut tpl = Tpl::new();
        for ((topic, partition), next) in &outcome.offsets {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "mirroring offsets to Kafka failed");
        }
        if interrupted {
            // The rest of this batch did not commit; the next run starts at the stored offsets.
            return Ok(());
        }
    }
}

/// Seconds from a command's Kafka timestamp to the commit of the batch that applied it; never negative (the
/// producer's clock may run ahead of this host's).
pub fn command_age_seconds(stamp_ms: i64, committed_ms: i64) -> f64 {
    committed_ms.saturating_sub(stamp_ms).max(0) as f64 / 1000.0
}

const INTERRUPTED: &str = "interrupted by shutdown before it could be decoded";

/// Copies a record and decodes it. A registry outage is waited out; anything else undecodable is poison.
async fn read(handler: &Handler, m: &rdkafka::message::BorrowedMessage<'_>, shutdown: &CancellationToken) -> Incoming {
    let topic = m.topic().to_owned();
    let key = m.key().map(<[u8]>::to_vec);
    let payload = m.payload().map(<[u8]>::to_vec);
    // The handler reads only the two command topics; a record from any other is read as an account creation,
    // which it will not decode as.
    let kind = match handler.topics.kind_of(&topic) {
        Some(TopicKind::ConfirmMoneyTransfer) => TopicKind::ConfirmMoneyTransfer,
        _ => TopicKind::ConfirmAccountCreation,
    };
    let mut backoff = Backoff::new(Duration::from_millis(100));
    let command = loop {
        let decoding = async {
            Inbound::decode(&handler.codec, kind, payload.as_deref()).await.map(|inbound| match inbound {
                Inbound::ConfirmMoneyTransfer(c) => Command::Transfer(c),
                Inbound::ConfirmAccountCreation(c) => Command::Creation(c),
                _ => Command::Poison("not a command record".to_owned()),
            })
        };
        // A decoder that panics on some bytes must not take the handler down: the record is poison.
        let Ok(decoded) = std::panic::AssertUnwindSafe(decoding).catch_unwind().await else {
            break Command::Poison("decoding the record panicked".to_owned());
        };
        match decoded {
            Ok(c) => break c,
            Err(e) if e.is_transient() => {
                if shutdown.is_cancelled() {
                    break Command::Poison(INTERRUPTED.to_owned());
                }
                tracing::warn!(error = %e, "schema registry unavailable; retrying");
                backoff.sleep().await;
            }
            Err(e) => break Command::Poison(e.to_string()),
        }
    };
    Incoming { topic, partition: m.partition(), offset: m.offset(), key, payload, command }
}

/// Publishes consumer lag per assigned partition every few seconds.
pub async fn report_lag(consumer: Arc<HandlerConsumer>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let c = consumer.clone();
        let lags = tokio::task::spawn_blocking(move || -> KafkaResult<Vec<(String, i32, i64)>> {
            let positions = c.position()?;
            let mut out = Vec::new();
            for e in positions.elements() {
                let (_, high) = c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))?;
                if let Offset::Offset(pos) = e.offset() {
                    out.push((e.topic().to_owned(), e.partition(), (high - pos).max(0)));
                }
            }
            Ok(out)
        })
        .await;
        if let Ok(Ok(lags)) = lags {
            let mut total = 0;
            for (topic, partition, lag) in lags {
                total += lag;
                metrics::gauge!("handler_consumer_lag", "topic" => topic, "partition" => partition.to_string())
                    .set(lag as f64);
            }
            metrics::gauge!("handler_consumer_lag_total").set(total as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::command_age_seconds;

    #[test]
    fn command_age_is_the_time_from_the_record_to_the_commit_and_never_negative() {
        assert_eq!(command_age_seconds(1_000, 3_500), 2.5);
        assert_eq!(command_age_seconds(5_000, 5_000), 0.0);
        assert_eq!(
            command_age_seconds(9_000, 5_000),
            0.0,
            "a producer clock ahead of ours gives 0, not a negative age"
        );
        assert_eq!(command_age_seconds(i64::MIN, i64::MAX), i64::MAX as f64 / 1000.0);
    }
}

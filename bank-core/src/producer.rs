//! The services' Kafka producer: librdkafka's idempotent producer, made again when it fails for good.
//!
//! An idempotent producer can enter a *fatal* state that it never leaves: every message queued and every later
//! send then fails with `Local: Fatal error`. librdkafka raises it when it cannot keep its per-partition sequence
//! numbers consistent with a broker's, and it does so in the field after a broker stops and rejoins a cluster
//! while messages are in flight (an `OUT_OF_ORDER_SEQUENCE_NUMBER` or `Inconsistent state` after leadership
//! moved). Its documentation says the application must then destroy the instance and make a new one. [`Producer`]
//! does that: the first failure that finds the instance in its fatal state replaces it with a new one (a new
//! producer id, fresh sequence numbers), logged with librdkafka's reason, and every send after that goes to the
//! new instance. Messages the old instance held fail to their callers, who send them again as after any failed
//! delivery: every consumer of the bank de-duplicates (events by transfer id and IBAN, commands by command id).

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// A cloneable handle on the current producer instance; clones share it (and its replacement).
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

struct Shared {
    config: ClientConfig,
    client_id: String,
    /// The instance and its generation (1 for the first; each replacement adds one).
    current: RwLock<(u64, FutureProducer)>,
    replaced: AtomicU64,
}

impl Producer {
    /// A producer made from `config` (which names its `client.id`).
    pub fn new(config: ClientConfig) -> KafkaResult<Self> {
        let first: FutureProducer = config.create()?;
        let client_id = config.get("client.id").unwrap_or("producer").to_owned();
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                client_id,
                current: RwLock::new((1, first)),
                replaced: AtomicU64::new(0),
            }),
        })
    }

    /// The current instance and its generation.
    fn current(&self) -> (u64, FutureProducer) {
        match self.shared.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The current librdkafka instance, for what this handle does not wrap (metadata requests, in-flight counts).
    pub fn instance(&self) -> FutureProducer {
        self.current().1
    }

    /// How many times an instance in its fatal state was replaced.
    pub fn replacements(&self) -> u64 {
        self.shared.replaced.load(Ordering::Relaxed)
    }

    /// Queues `record` without waiting (see [`FutureProducer::send_result`]); the returned future gives its
    /// delivery. A failure that finds the instance fatal replaces it before it reaches the caller.
    #[allow(clippy::result_large_err)]
    pub fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<Delivery, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        let (generation, instance) = self.current();
        match instance.send_result(record) {
            Ok(inner) => Ok(Delivery { inner, generation, owner: self.clone() }),
            Err((e, record)) => {
                self.after_failure(generation, &instance, &e);
                Err((e, record))
            }
        }
    }

    /// Sends `record`, waiting up to `queue_timeout` for room in the local queue, then for its delivery
    /// (see [`FutureProducer::send`]).
    pub async fn send<K, P>(&self, record: FutureRecord<'_, K, P>, queue_timeout: Duration) -> OwnedDeliveryResult
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        let (generation, instance) = self.current();
        let result = instance.send(record, Timeout::After(queue_timeout)).await;
        if let Err((e, _)) = &result {
            self.after_failure(generation, &instance, e);
        }
        result
    }

    /// Waits up to `timeout` for every queued message of the current instance to be delivered.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.instance().flush(Timeout::After(timeout))
    }

    /// After `e` from the instance of `generation`: if that instance is in its fatal state and still the current
    /// one, a new one takes its place.
    fn after_failure(&self, generation: u64, instance: &FutureProducer, e: &KafkaError) {
        let fatal = instance.client().fatal_error();
        if fatal.is_none() && e.rdkafka_error_code() != Some(RDKafkaErrorCode::Fatal) {
            return;
        }
        let Ok(mut current) = self.shared.current.write() else { return };
        if current.0 != generation {
            return; // another failure replaced it already
        }
        let reason = fatal.map_or_else(|| e.to_string(), |(code, reason)| format!("{code:?}: {reason}"));
        match self.shared.config.create::<FutureProducer>() {
            Ok(fresh) => {
                let (_, old) = std::mem::replace(&mut *current, (generation + 1, fresh));
                drop(current);
                // Destroying a librdkafka instance purges its queues and joins its threads: not on an async worker.
                std::thread::spawn(move || drop(old));
                let n = self.shared.replaced.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(
                    client = %self.shared.client_id,
                    reason = %reason,
                    replacements = n,
                    "the Kafka producer failed for good; a new one takes its place (messages in flight are sent again)"
                );
            }
            Err(ce) => tracing::error!(
                client = %self.shared.client_id,
                reason = %reason,
                error = %ce,
                "the Kafka producer failed for good and a new one could not be made; trying again on the next failure"
            ),
        }
    }
}

/// The delivery of one queued message (a [`DeliveryFuture`] that reports a fatal failure to its [`Producer`]).
pub struct Delivery {
    inner: DeliveryFuture,
    generation: u64,
    owner: Producer,
}

impl Future for Delivery {
    type Output = <DeliveryFuture as Future>::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = Pin::new(&mut self.inner).poll(cx);
        if let Poll::Ready(Ok(Err((e, _)))) = &polled {
            let (generation, owner) = (self.generation, self.owner.clone());
            let (current_generation, instance) = owner.current();
            if current_generation == generation {
                owner.after_failure(generation, &instance, e);
            }
        }
        polled
    }
}

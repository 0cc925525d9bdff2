//! The services' Kafka producer: librdkafka's idempotent producer, made again when it fails for good.
//!
//! An idempotent producer can enter a *fatal* state that it never leaves: every later send then fails with
//! `Local: Fatal error` and queued messages are purged. librdkafka raises it when it cannot keep its per-partition
//! sequence numbers consistent with a broker's, and it does so in the field after a broker stops and rejoins a
//! cluster while messages are in flight (an `OUT_OF_ORDER_SEQUENCE_NUMBER` or `Inconsistent state` after leadership
//! moved). Its documentation says the application must then destroy the instance and make a new one. [`Producer`]
//! does that: the first failure that finds the instance in its fatal state replaces it with a new one (a new
//! producer id, fresh sequence numbers), logged with librdkafka's reason, and every send after that goes to the
//! new instance. So does a failure after [`STALLED`] without a single delivery (an instance wedged in a state
//! that is not fatal). Messages the old instance held fail to their callers, who send them again as after any
//! failed delivery: every consumer of the bank de-duplicates (events by transfer id and IBAN, commands by command
//! id). An instance is replaced at most once per [`MIN_LIFETIME`], so a cause that makes every new instance fatal
//! at once (a missing ACL) does not turn into a loop of new clients.

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// An instance that failed and delivered nothing for this long is replaced too (2.5 × `message.timeout.ms`).
pub const STALLED: Duration = Duration::from_secs(300);
/// The least time between two replacements.
pub const MIN_LIFETIME: Duration = Duration::from_secs(5);

/// A cloneable handle on the current producer instance; clones share it (and its replacement).
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

struct Shared {
    config: ClientConfig,
    client_id: String,
    current: RwLock<Current>,
    /// When anything was last delivered (or the current instance made), in milliseconds since `epoch`.
    last_delivered_ms: AtomicU64,
    epoch: Instant,
    replaced: AtomicU64,
}

#[derive(Clone)]
struct Current {
    /// 1 for the first instance; each replacement adds one.
    generation: u64,
    instance: Arc<FutureProducer>,
    made: Instant,
}

impl Producer {
    /// A producer made from `config` (which names its `client.id`).
    pub fn new(config: ClientConfig) -> KafkaResult<Self> {
        let first: FutureProducer = config.create()?;
        let client_id = config.get("client.id").unwrap_or("producer").to_owned();
        let now = Instant::now();
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                client_id,
                current: RwLock::new(Current { generation: 1, instance: Arc::new(first), made: now }),
                last_delivered_ms: AtomicU64::new(0),
                epoch: now,
                replaced: AtomicU64::new(0),
            }),
        })
    }

    fn current(&self) -> Current {
        self.shared.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The current librdkafka instance, for what this handle does not wrap (metadata requests). Let it go soon: a
    /// replaced instance is destroyed once nobody holds it.
    pub fn instance(&self) -> Arc<FutureProducer> {
        self.current().instance
    }

    /// How many times an instance was replaced.
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
        let Current { generation, instance, .. } = self.current();
        match instance.send_result(record) {
            Ok(inner) => Ok(Delivery { inner, generation, owner: self.clone() }),
            Err((e, record)) => {
                drop(instance);
                self.after_failure(generation, &e);
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
        let Current { generation, instance, .. } = self.current();
        let result = instance.send(record, Timeout::After(queue_timeout)).await;
        drop(instance);
        match &result {
            Ok(_) => self.delivered(),
            Err((e, _)) => self.after_failure(generation, e),
        }
        result
    }

    /// Waits up to `timeout` for every queued message of the current instance to be delivered.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.instance().flush(Timeout::After(timeout))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn delivered(&self) {
        self.shared.last_delivered_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// After `e` from the instance of `generation`: if that instance is fatal (or stalled) and still the current
    /// one, a new one takes its place.
    fn after_failure(&self, generation: u64, e: &KafkaError) {
        let instance = self.current();
        if instance.generation != generation {
            return; // replaced already
        }
        let fatal = instance.instance.client().fatal_error();
        let idle =
            Duration::from_millis(self.now_ms().saturating_sub(self.shared.last_delivered_ms.load(Ordering::Relaxed)));
        let stalled = idle >= STALLED && instance.made.elapsed() >= STALLED;
        if fatal.is_none() && e.rdkafka_error_code() != Some(RDKafkaErrorCode::Fatal) && !stalled {
            return;
        }
        drop(instance);
        let reason = match fatal {
            Some((code, reason)) => format!("{code:?}: {reason}"),
            None if stalled => format!("nothing delivered for {} s; the last failure: {e}", idle.as_secs()),
            None => e.to_string(),
        };
        let mut current = self.shared.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.generation != generation || current.made.elapsed() < MIN_LIFETIME {
            return;
        }
        match self.shared.config.create::<FutureProducer>() {
            Ok(fresh) => {
                let new = Current { generation: generation + 1, instance: Arc::new(fresh), made: Instant::now() };
                let old = std::mem::replace(&mut *current, new).instance;
                drop(current);
                self.delivered(); // the new instance gets its own STALLED
                retire(old);
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

/// Destroys a replaced instance on a thread of its own once nobody else holds it: destroying one purges its queues,
/// flushes for up to 500 ms and joins its threads, which must not happen on an async worker. A holder that keeps it
/// longer than a minute destroys it itself.
fn retire(old: Arc<FutureProducer>) {
    let spawned = std::thread::Builder::new().name("producer-retire".into()).spawn(move || {
        let mut old = old;
        for _ in 0..1200 {
            match Arc::try_unwrap(old) {
                Ok(instance) => {
                    drop(instance);
                    return;
                }
                Err(shared) => old = shared,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no thread to destroy a replaced producer; it goes with its last holder");
    }
}

/// The delivery of one queued message (a [`DeliveryFuture`] that reports to its [`Producer`]).
pub struct Delivery {
    inner: DeliveryFuture,
    generation: u64,
    owner: Producer,
}

impl Future for Delivery {
    type Output = <DeliveryFuture as Future>::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = Pin::new(&mut self.inner).poll(cx);
        match &polled {
            Poll::Ready(Ok(Ok(_))) => self.owner.delivered(),
            Poll::Ready(Ok(Err((e, _)))) => self.owner.after_failure(self.generation, e),
            _ => {}
        }
        polled
    }
}

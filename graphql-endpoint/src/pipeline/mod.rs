//! The live view of the running bank behind the `pipeline` query (the web UI's Pipeline page): per stage
//! (heartbeat, generator, handler, projection) its rate in records per second and its consumer lag, the age of
//! commands when the handler applies them, and the delay of the newest balance changes.
//!
//! Fed from the services' own `/metrics` endpoints (their addresses are configuration, see
//! [`crate::config::Config`]; no service is imported) and from Kafka: the end of each partition and each consumer
//! group's committed offsets. Rates are the change of a counter between two samples. A sample is taken at most
//! once per `PIPELINE_CACHE_MS`, whatever the number of readers; readers in between get the cached view.

pub mod offsets;
pub mod prometheus;

use crate::live::Hub;
use async_graphql::SimpleObject;
use bank_core::metric_names;
use bank_core::topics::TopicNames;
use offsets::{GroupProbe, Position};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the pipeline's numbers come from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub heartbeat_metrics: Option<String>,
    pub generator_metrics: Option<String>,
    pub handler_metrics: Option<String>,
    pub kafka_brokers: bank_core::kafka::Brokers,
    /// Consumer groups (prefixed) of the generator, the handler and the projection.
    pub generator_group: String,
    pub handler_group: String,
    pub projection_group: String,
    pub topics: TopicNames,
    /// How long a sample is served before the next is taken.
    pub cache_for: Duration,
}

/// One stage of the pipeline as the page shows it.
#[derive(Debug, Clone, SimpleObject)]
pub struct PipelineStage {
    /// heartbeat, generator, handler or projection
    pub name: String,
    /// Records per second over the last few seconds: beats sent, commands generated, commands handled, balance
    /// changes and results projected; null until two samples exist or when its source is unreachable
    pub records_per_second: Option<f64>,
    /// Records waiting for the stage's consumer group on its input topics (end of each partition minus the
    /// group's committed offset); null for the heartbeat (it reads nothing) or when Kafka does not answer
    pub lag: Option<i64>,
    /// Why a number is missing, if one is
    pub error: Option<String>,
}

/// Percentiles of a delay, in seconds.
#[derive(Debug, Clone, SimpleObject)]
pub struct PipelineDelay {
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// How many measurements the percentiles are drawn from (0: none recently)
    pub samples: i32,
}

/// The live view of the pipeline. Public and read-only: rates, lags and delays, no account data.
#[derive(Debug, Clone, SimpleObject)]
pub struct PipelineView {
    /// When the sample was taken, in milliseconds since 1970-01-01 UTC
    pub taken_at_ms: f64,
    /// heartbeat, generator, handler, projection, in that order
    pub stages: Vec<PipelineStage>,
    /// Age of commands when the handler applies them: from the command's Kafka timestamp to the commit of its
    /// batch (the handler's `handler_command_age_seconds`, over its last minute or so)
    pub command_age: PipelineDelay,
    /// Delay of the newest balance changes (the last 60 s, at most 1024): from the handler publishing the
    /// balance change (its Kafka timestamp) to this gateway receiving it
    pub balance_change_delay: PipelineDelay,
}

/// Raw numbers of one sample.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    /// Counter per stage (heartbeat, generator, handler, projection).
    counters: [Option<f64>; 4],
    lags: [Option<i64>; 4],
    errors: [Option<String>; 4],
    command_age: (Option<f64>, Option<f64>, i32),
}

/// Samples kept to compute rates: the newest and up to [`RATE_WINDOW`] behind it.
const MAX_SAMPLES: usize = 32;
/// Rates are taken over up to this much time, so one-second views do not jump with each batch commit.
const RATE_WINDOW: Duration = Duration::from_secs(5);
const STAGES: [&str; 4] = ["heartbeat", "generator", "handler", "projection"];

#[derive(Default)]
struct State {
    samples: VecDeque<Sample>,
    view: Option<(Instant, PipelineView)>,
}

pub struct Pipeline {
    sources: Sources,
    http: reqwest::Client,
    /// Generator, handler and projection groups, made on the first view (a gateway nobody asks opens no
    /// connections for it); `None` when the Kafka client could not be made.
    probes: std::sync::OnceLock<Option<Arc<[GroupProbe; 3]>>>,
    state: tokio::sync::Mutex<State>,
}

impl Pipeline {
    pub fn new(sources: Sources) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).no_proxy().build().unwrap_or_default();
        Self { sources, http, probes: std::sync::OnceLock::new(), state: tokio::sync::Mutex::default() }
    }

    /// The current view: cached for `cache_for`; otherwise a new sample, taken once for every waiting reader.
    pub async fn view(&self, hub: &Hub) -> PipelineView {
        let mut state = self.state.lock().await;
        if let Some((at, view)) = &state.view
            && at.elapsed() < self.sources.cache_for
        {
            return view.clone();
        }
        let sample = self.sample().await;
        state.samples.push_back(sample);
        while state.samples.len() > MAX_SAMPLES {
            state.samples.pop_front();
        }
        let view = view_of(&state.samples, hub);
        state.view = Some((Instant::now(), view.clone()));
        view
    }

    async fn sample(&self) -> Sample {
        let (heartbeat, generator, handler, kafka) = tokio::join!(
            self.scrape(self.sources.heartbeat_metrics.as_deref()),
            self.scrape(self.sources.generator_metrics.as_deref()),
            self.scrape(self.sources.handler_metrics.as_deref()),
            self.positions(),
        );
        let mut s = Sample {
            at: Instant::now(),
            counters: [None; 4],
            lags: [None; 4],
            errors: Default::default(),
            command_age: (None, None, 0),
        };
        match heartbeat {
            Ok(text) => s.counters[0] = prometheus::sum(&text, metric_names::HEARTBEAT_BEATS_SENT, None).or(Some(0.0)),
            Err(e) => s.errors[0] = Some(e),
        }
        match generator {
            Ok(text) => s.counters[1] = prometheus::sum(&text, metric_names::GENERATOR_COMMANDS, None).or(Some(0.0)),
            Err(e) => s.errors[1] = Some(e),
        }
        match handler {
            Ok(text) => {
                s.counters[2] =
                    prometheus::sum(&text, metric_names::HANDLER_COMMANDS, Some("outcome=\"skipped\"")).or(Some(0.0));
                let age = metric_names::HANDLER_COMMAND_AGE;
                let count = prometheus::sum(&text, &format!("{age}_count"), None).unwrap_or(0.0);
                s.command_age = (
                    prometheus::quantile(&text, age, "0.5"),
                    prometheus::quantile(&text, age, "0.99"),
                    count.clamp(0.0, f64::from(i32::MAX)) as i32,
                );
            }
            Err(e) => s.errors[2] = Some(e),
        }
        match kafka {
            Ok([generator, handler, projection]) => {
                s.lags[1] = Some(generator.lag);
                s.lags[2] = Some(handler.lag);
                s.lags[3] = Some(projection.lag);
                s.counters[3] = Some(projection.consumed as f64);
            }
            Err(e) => {
                for slot in s.errors.iter_mut().skip(1) {
                    *slot = Some(slot.take().map_or_else(|| e.clone(), |m| format!("{m}; {e}")));
                }
            }
        }
        s
    }

    /// A service's metrics text; `Err` says why there is none (without its address).
    async fn scrape(&self, url: Option<&str>) -> Result<String, String> {
        let Some(url) = url else { return Err("not configured".into()) };
        let response = self.http.get(url).send().await.map_err(|_| "metrics endpoint unreachable".to_owned())?;
        if !response.status().is_success() {
            return Err(format!("metrics endpoint answered {}", response.status().as_u16()));
        }
        // Bounded: a metrics page is a few kilobytes; a larger answer is not read.
        if response.content_length().is_some_and(|n| n > MAX_METRICS_BYTES) {
            return Err("metrics page too large".into());
        }
        let text = response.text().await.map_err(|_| "metrics endpoint unreachable".to_owned())?;
        if text.len() as u64 > MAX_METRICS_BYTES {
            return Err("metrics page too large".into());
        }
        Ok(text)
    }

    async fn positions(&self) -> Result<[Position; 3], String> {
        let probes = self.probes.get_or_init(|| match probes(&self.sources) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::warn!(error = %e, "the pipeline view cannot ask Kafka for consumer positions");
                None
            }
        });
        let Some(probes) = probes.clone() else { return Err("kafka client unavailable".into()) };
        tokio::task::spawn_blocking(move || {
            let [generator, handler, projection] = &*probes;
            let metadata = generator.metadata()?;
            Ok::<_, rdkafka::error::KafkaError>([
                generator.position(&metadata)?,
                handler.position(&metadata)?,
                projection.position(&metadata)?,
            ])
        })
        .await
        .map_err(|_| "kafka probe failed".to_owned())?
        .map_err(|e| {
            tracing::debug!(error = %e, "pipeline view: kafka positions unavailable");
            "kafka unavailable".to_owned()
        })
    }
}

/// Kafka clients asking for the generator's, the handler's and the projection's positions.
fn probes(sources: &Sources) -> rdkafka::error::KafkaResult<[GroupProbe; 3]> {
    let (b, t) = (&sources.kafka_brokers, &sources.topics);
    Ok([
        GroupProbe::new(b, &sources.generator_group, vec![t.heartbeat.clone()])?,
        GroupProbe::new(
            b,
            &sources.handler_group,
            vec![t.confirm_money_transfer.clone(), t.confirm_account_creation.clone()],
        )?,
        GroupProbe::new(
            b,
            &sources.projection_group,
            vec![
                t.balance_changed.clone(),
                t.account_creation_confirmed.clone(),
                t.account_creation_confirmed_manual.clone(),
                t.account_creation_failed.clone(),
                t.money_transfer_confirmed.clone(),
                t.money_transfer_failed.clone(),
            ],
        )?,
    ])
}

/// Largest metrics page read.
const MAX_METRICS_BYTES: u64 = 4 * 1024 * 1024;

/// The view of the newest sample, with rates against the oldest sample within [`RATE_WINDOW`].
fn view_of(samples: &VecDeque<Sample>, hub: &Hub) -> PipelineView {
    let Some(newest) = samples.back() else {
        return PipelineView {
            taken_at_ms: bank_core::clock::unix_millis() as f64,
            stages: Vec::new(),
            command_age: PipelineDelay { p50_seconds: None, p99_seconds: None, samples: 0 },
            balance_change_delay: delay_of(hub.recent_delays()),
        };
    };
    let base = samples
        .iter()
        .find(|s| newest.at.duration_since(s.at) <= RATE_WINDOW && newest.at.duration_since(s.at) >= MIN_RATE_SPAN);
    let stages = STAGES
        .iter()
        .enumerate()
        .map(|(i, name)| PipelineStage {
            name: (*name).to_owned(),
            records_per_second: base.and_then(|b| rate(b, newest, i)),
            lag: newest.lags.get(i).copied().flatten(),
            error: newest.errors.get(i).cloned().flatten(),
        })
        .collect();
    let (p50, p99, n) = newest.command_age;
    PipelineView {
        taken_at_ms: bank_core::clock::unix_millis() as f64,
        stages,
        command_age: PipelineDelay { p50_seconds: p50, p99_seconds: p99, samples: n },
        balance_change_delay: delay_of(hub.recent_delays()),
    }
}

/// Two samples closer than this give no rate.
const MIN_RATE_SPAN: Duration = Duration::from_millis(500);

/// Counter `i`'s growth per second from `base` to `newest`; none when either lacks it or it went back (the
/// service restarted).
fn rate(base: &Sample, newest: &Sample, i: usize) -> Option<f64> {
    let (from, to) = (base.counters.get(i).copied().flatten()?, newest.counters.get(i).copied().flatten()?);
    let secs = newest.at.duration_since(base.at).as_secs_f64();
    (to >= from && secs > 0.0).then(|| (to - from) / secs)
}

/// p50 and p99 of delays in milliseconds.
fn delay_of(mut ms: Vec<u64>) -> PipelineDelay {
    ms.sort_unstable();
    let at = |q: f64| -> Option<f64> {
        let last = ms.len().checked_sub(1)?;
        let i = ((last as f64) * q).round() as usize;
        ms.get(i.min(last)).map(|v| *v as f64 / 1000.0)
    };
    PipelineDelay { p50_seconds: at(0.5), p99_seconds: at(0.99), samples: i32::try_from(ms.len()).unwrap_or(i32::MAX) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, counters: [Option<f64>; 4]) -> Sample {
        Sample { at, counters, lags: [None; 4], errors: Default::default(), command_age: (None, None, 0) }
    }

    #[test]
    fn rates_are_counter_growth_per_second_and_none_after_a_restart() {
        let t0 = Instant::now();
        let a = sample(t0, [Some(100.0), Some(10.0), None, Some(50.0)]);
        let b = sample(t0 + Duration::from_secs(2), [Some(300.0), Some(4.0), Some(1.0), Some(50.0)]);
        assert_eq!(rate(&a, &b, 0), Some(100.0));
        assert_eq!(rate(&a, &b, 1), None, "a counter that went back (a restart) gives no rate");
        assert_eq!(rate(&a, &b, 2), None, "no rate without two values");
        assert_eq!(rate(&a, &b, 3), Some(0.0));
        assert_eq!(rate(&a, &b, 7), None);
    }

    #[test]
    fn the_view_takes_rates_over_the_window_and_only_with_two_samples() {
        let hub = Hub::default();
        let t0 = Instant::now();
        let mut samples = VecDeque::from([sample(t0, [Some(0.0), None, None, None])]);
        assert!(view_of(&samples, &hub).stages.iter().all(|s| s.records_per_second.is_none()));
        samples.push_back(sample(t0 + Duration::from_secs(1), [Some(10.0), None, None, None]));
        samples.push_back(sample(t0 + Duration::from_secs(4), [Some(80.0), None, None, None]));
        let v = view_of(&samples, &hub);
        assert_eq!(v.stages.len(), 4);
        assert_eq!(v.stages[0].name, "heartbeat");
        assert_eq!(v.stages[0].records_per_second, Some(20.0), "from the oldest sample within the window");
        samples.push_back(sample(t0 + Duration::from_secs(10), [Some(80.0), None, None, None]));
        assert_eq!(view_of(&samples, &hub).stages[0].records_per_second, None, "no sample within the window");
    }

    #[test]
    fn delays_give_percentiles_in_seconds() {
        let d = delay_of((1..=100).rev().collect());
        assert_eq!(d.samples, 100);
        assert_eq!(d.p50_seconds, Some(0.051));
        assert_eq!(d.p99_seconds, Some(0.099));
        let none = delay_of(Vec::new());
        assert_eq!((none.p50_seconds, none.p99_seconds, none.samples), (None, None, 0));
        assert_eq!(delay_of(vec![7]).p99_seconds, Some(0.007));
    }
}

//! Provisioning: creates the topics of the wire contract ([`crate::topics::TOPICS`]) under a prefix, reconciles
//! existing ones (grows partitions, fixes configs; never deletes or shrinks, never touches topics it does not know)
//! and registers every value schema (`<topic>-value`) with the schema registry. Waits for Kafka and the registry
//! with bounded backoff; a second run changes nothing.
//!
//! The synchronizer binary runs it once for the stack; integration tests run it for their own prefix.

use crate::registry::{RegistryClient, RegistryError};
use crate::retry::Backoff;
use crate::topics::{TOPICS, TopicSpec};
use anyhow::{Context, bail};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a run changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<String>,
    /// (topic, partitions before, partitions after)
    pub grown: Vec<(String, i32, i32)>,
    pub reconfigured: Vec<String>,
    /// Subjects that got a new schema version.
    pub registered: Vec<String>,
    /// Topics with more partitions than the contract (left alone: partitions cannot shrink).
    pub oversized: Vec<String>,
    /// Kafka ACLs made sure of (the synchronizer's `--kafka-acls`; creating one that exists changes nothing).
    pub acls: usize,
}

impl Report {
    pub fn changed_anything(&self) -> bool {
        !(self.created.is_empty()
            && self.grown.is_empty()
            && self.reconfigured.is_empty()
            && self.registered.is_empty())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.changed_anything() {
            write!(f, "nothing to change: {} topics and schemas already match the contract", TOPICS.len())?;
        } else {
            write!(
                f,
                "created {} topics, grew {}, reconfigured {}, registered {} schemas",
                self.created.len(),
                self.grown.len(),
                self.reconfigured.len(),
                self.registered.len()
            )?;
        }
        if self.acls > 0 {
            write!(f, "; {} Kafka ACLs in place", self.acls)?;
        }
        Ok(())
    }
}

/// Reconciles `topics` (names prefixed with `prefix`) on the cluster and registry.
pub async fn sync(
    brokers: &crate::kafka::Brokers,
    registry_url: &str,
    prefix: &str,
    replication_factor: i32,
    wait: Duration,
    topics: &[TopicSpec],
) -> anyhow::Result<Report> {
    let admin = Arc::new(crate::kafka::admin(brokers).context("failed to create the kafka admin client")?);
    let registry = RegistryClient::new(registry_url).context("failed to create the registry client")?;
    let deadline = Instant::now() + wait;

    let existing = retry("kafka", deadline, || metadata(admin.clone())).await?;
    let replication = capped_replication(replication_factor, existing.brokers);
    retry("schema registry", deadline, || {
        let r = registry.clone();
        async move { r.subjects().await.map(|_| ()).map_err(|e| e.to_string()) }
    })
    .await?;

    let mut report = Report::default();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for spec in topics {
        let name = spec.name_with(prefix);
        let current = match existing.partitions.get(&name) {
            Some(&current) => Some(current),
            None => create_topic(&admin, spec, &name, replication, deadline, &options, &mut report).await?,
        };
        if let Some(current) = current {
            reconcile_topic(&admin, spec, &name, current, &options, &mut report).await?;
        }
    }

    // Services start right after us: wait until every contract topic is visible in metadata.
    retry("topics to appear in metadata", deadline, || {
        let admin = admin.clone();
        let wanted: Vec<String> = topics.iter().map(|t| t.name_with(prefix)).collect();
        async move {
            let state = metadata(admin).await?;
            match wanted.iter().find(|t| !state.partitions.contains_key(*t)) {
                Some(missing) => Err(format!("{missing} not in metadata yet")),
                None => Ok(()),
            }
        }
    })
    .await?;

    register_schemas(&registry, topics, prefix, &mut report).await?;
    Ok(report)
}

/// The wanted replication factor, capped at the number of brokers up (at least 1).
fn capped_replication(wanted: i32, brokers: usize) -> i32 {
    let brokers_up = i32::try_from(brokers).unwrap_or(i32::MAX).max(1);
    let replication = wanted.clamp(1, brokers_up);
    if replication < wanted {
        tracing::info!(wanted, brokers = brokers_up, replication, "replication capped at broker count");
    }
    replication
}

/// Creates a topic missing from the metadata snapshot. Returns its partition count when it turns out to exist
/// already (so it is reconciled like the others), `None` when this call created it.
async fn create_topic(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    spec: &TopicSpec,
    name: &str,
    replication: i32,
    deadline: Instant,
    options: &AdminOptions,
    report: &mut Report,
) -> anyhow::Result<Option<i32>> {
    let mut topic = NewTopic::new(name, spec.partitions, TopicReplication::Fixed(replication));
    for (k, v) in spec.configs {
        topic = topic.set(k, v);
    }
    let created = admin.create_topics([&topic], options).await.context("create topics request failed")?;
    match created.into_iter().next().context("create topics returned no result")? {
        Ok(_) => {
            tracing::info!(topic = %name, partitions = spec.partitions, replication, "topic created");
            report.created.push(name.to_owned());
            Ok(None)
        }
        // Created since our metadata snapshot (another synchronizer, or metadata lag): reconcile it.
        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
            Ok(Some(retry(name, deadline, || topic_partitions(admin.clone(), name.to_owned())).await?))
        }
        Err((t, code)) => bail!("cannot create topic {t}: {code}"),
    }
}

/// Grows an existing topic to the contract's partitions (never shrinks it) and fixes its configs.
async fn reconcile_topic(
    admin: &AdminClient<DefaultClientContext>,
    spec: &TopicSpec,
    name: &str,
    current: i32,
    options: &AdminOptions,
    report: &mut Report,
) -> anyhow::Result<()> {
    if current < spec.partitions {
        let grow = NewPartitions::new(name, usize::try_from(spec.partitions).unwrap_or(0));
        for result in admin.create_partitions([&grow], options).await.context("create partitions request failed")? {
            if let Err((t, code)) = result {
                bail!("cannot grow topic {t} to {} partitions: {code}", spec.partitions);
            }
        }
        tracing::info!(topic = %name, from = current, to = spec.partitions, "partitions added");
        report.grown.push((name.to_owned(), current, spec.partitions));
    } else if current > spec.partitions {
        tracing::warn!(topic = %name, partitions = current, contract = spec.partitions, "topic has more partitions than the contract; left as is");
        report.oversized.push(name.to_owned());
    }
    if reconcile_configs(admin, name, spec, options).await? {
        report.reconfigured.push(name.to_owned());
    }
    Ok(())
}

/// Registers each topic's value schema under `<prefix><topic>-value` unless that subject already holds it.
async fn register_schemas(
    registry: &RegistryClient,
    topics: &[TopicSpec],
    prefix: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    for spec in topics {
        let Some((record, schema)) = spec.record else { continue };
        let subject = spec.value_subject(prefix);
        if registry.lookup(&subject, schema).await.with_context(|| format!("failed to look up {subject}"))?.is_some() {
            continue;
        }
        match registry.register(&subject, schema).await {
            Ok(id) => {
                tracing::info!(subject = %subject, record, id, "schema registered");
                report.registered.push(subject);
            }
            Err(RegistryError::Refused { status: 409, body }) => bail!(
                "the {record} schema in bank-core/avro is incompatible with what subject {subject} already holds: {} \
                 (only additive, defaulted fields at the end of a record are allowed)",
                body.message
            ),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("failed to register {subject}"))),
        }
    }
    Ok(())
}

/// Sets contract configs that differ. Returns whether anything changed.
async fn reconcile_configs(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    spec: &TopicSpec,
    options: &AdminOptions,
) -> anyhow::Result<bool> {
    let described =
        admin.describe_configs([&ResourceSpecifier::Topic(name)], options).await.context("describe configs failed")?;
    let resource = match described.into_iter().next() {
        Some(Ok(r)) => r,
        Some(Err(code)) => bail!("cannot describe configs of {name}: {code}"),
        None => bail!("no config description returned for {name}"),
    };
    let differs = spec.configs.iter().any(|(k, v)| resource.get(k).and_then(|e| e.value.as_deref()) != Some(*v));
    if !differs {
        return Ok(false);
    }
    // AlterConfigs sets the topic's whole dynamic config: exactly the contract's.
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
    for (k, v) in spec.configs {
        alter = alter.set(k, v);
    }
    for result in admin.alter_configs([&alter], options).await.context("alter configs failed")? {
        if let Err((_, code)) = result {
            bail!("cannot fix configs of {name}: {code}");
        }
    }
    tracing::info!(topic = %name, "topic configs fixed");
    Ok(true)
}

struct ClusterState {
    brokers: usize,
    partitions: HashMap<String, i32>,
}

/// Partition count of one topic, from a metadata request for it.
async fn topic_partitions(admin: Arc<AdminClient<DefaultClientContext>>, name: String) -> Result<i32, String> {
    tokio::task::spawn_blocking(move || {
        let md = admin.inner().fetch_metadata(Some(&name), Duration::from_secs(5)).map_err(|e| e.to_string())?;
        match md.topics().first() {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(i32::try_from(t.partitions().len()).unwrap_or(i32::MAX))
            }
            _ => Err(format!("{name} not in metadata yet")),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn metadata(admin: Arc<AdminClient<DefaultClientContext>>) -> Result<ClusterState, String> {
    tokio::task::spawn_blocking(move || {
        let md = admin.inner().fetch_metadata(None, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        if md.brokers().is_empty() {
            return Err("no brokers in metadata".to_owned());
        }
        let partitions = md
            .topics()
            .iter()
            .map(|t| (t.name().to_owned(), i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)))
            .collect();
        Ok(ClusterState { brokers: md.brokers().len(), partitions })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Retries `op` with exponential backoff (200 ms doubling to 5 s) until `deadline`.
async fn retry<T, F, Fut>(what: &str, deadline: Instant, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200));
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() + backoff.peek() > deadline => bail!("gave up waiting for {what}: {e}"),
            Err(e) => {
                tracing::info!(what, error = %e, retry_in_ms = backoff.peek().as_millis() as u64, "waiting");
                backoff.sleep().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_is_capped_at_the_brokers_up_and_is_at_least_one() {
        for (wanted, brokers, expected) in [(3, 1, 1), (3, 3, 3), (3, 5, 3), (1, 3, 1), (0, 3, 1), (3, 0, 1)] {
            assert_eq!(capped_replication(wanted, brokers), expected, "wanted {wanted} with {brokers} brokers");
        }
    }

    #[test]
    fn a_report_without_changes_says_so_and_one_with_changes_counts_them() {
        let nothing = Report { oversized: vec!["t".into()], ..Report::default() };
        assert!(!nothing.changed_anything());
        assert!(nothing.to_string().starts_with("nothing to change"));
        let some =
            Report { created: vec!["a".into(), "b".into()], registered: vec!["a-value".into()], ..Report::default() };
        assert!(some.changed_anything());
        assert_eq!(some.to_string(), "created 2 topics, grew 0, reconfigured 0, registered 1 schemas");
    }
}

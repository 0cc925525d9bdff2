//! Apache Kafka 4.x in KRaft mode from Maven Central jars on the local JDK: one combined broker+controller, or
//! (`up --brokers 3`) a cluster of three combined nodes that form the controller quorum together, so any one of
//! them can die without losing the quorum or a committed record (replication 3, `min.insync.replicas` 2).
//! Node `n` listens on its slots' ports (`kafka-<n>`, `kafka-<n>-controller`): by default 9092/9093, 9094/9095,
//! 9096/9097, moved by `up` when another program holds one.
//!
//! Nobody gets in without a password. The client listener takes SASL/SCRAM-SHA-256 only: the super user `admin`
//! (brokers among themselves, the synchronizer, tests and tools) and one principal per service
//! ([`bank_core::principals`]), each with a password generated for this checkout in `.openbank/kafka/credentials/`
//! and added to the storage when it is formatted; the StandardAuthorizer refuses whatever no ACL allows, and the
//! synchronizer creates the services' ACLs. The controller listener takes SASL/PLAIN from `admin` alone (SCRAM
//! credentials live in the metadata log, which the controllers serve, so they cannot guard it).

use anyhow::{Context, bail};
use bank_core::kafka_wire::{Connection, Credentials};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::component::{Component, Ctx, Layer, Started, step};
use crate::env::Endpoints;
use crate::instance::{instance_name, split_instance};
use crate::kafka_auth::{self, jaas_quoted};
use crate::paths::{Paths, write_private};
use crate::ports::Ports;
use crate::proc::{self, Stopped};
use crate::state::recorded_instances;
use crate::state::{Record, State};
use bank_core::clock::unix_secs;

pub const VERSION: &str = "4.1.1";
const LOG4J_VERSION: &str = "2.24.3";
const NEEDLE: &str = "kafka.Kafka";
/// The most brokers `up --brokers` runs.
pub const MAX_BROKERS: u32 = 3;

/// The broker(s), or the cluster `KAFKA_BROKERS` names.
pub struct Kafka;

impl Component for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn layer(&self) -> Layer {
        Layer::Broker
    }

    fn external(&self, endpoints: &Endpoints) -> Option<String> {
        endpoints.external_kafka.then(|| endpoints.kafka_brokers.split(',').next().unwrap_or_default().to_owned())
    }

    fn start(&self, ctx: &Ctx, _previous: Option<&Record>, log: PathBuf) -> anyhow::Result<Started> {
        let (n, count) = (ctx.instance, ctx.instances.max(1));
        let name = instance_name("kafka", n);
        if n == 1 {
            let what = if count == 1 { "KRaft".to_owned() } else { format!("KRaft, {count} brokers") };
            step(&name, &format!("starting Apache Kafka {VERSION} ({what})"));
        }
        let ports = &ctx.endpoints.ports;
        let formatted = prepare(ctx.paths, ports, count)?;
        let (record, took) = start_node(ctx.paths, ports, n, count, &log)?;
        step(&name, &format!("ready on {} in {:.1}s (pid {})", record.address, took.as_secs_f64(), pid(&record)));
        Ok(Started { record, started: true, took, new_storage: formatted })
    }

    fn probe(&self, record: &Record) -> bool {
        brokers(&record.address).is_ok_and(|n| n > 0)
    }

    /// Every node at once (a node alone cannot shut down cleanly once the others left the quorum).
    fn stop(&self, paths: &Paths, record: &Record, _clean: bool) -> anyhow::Result<Option<Stopped>> {
        let state = State::load(&paths.state_file());
        let mut nodes: Vec<Record> =
            state.components.iter().filter(|r| r.managed && split_instance(&r.name).0 == "kafka").cloned().collect();
        if !nodes.iter().any(|r| r.name == record.name) {
            nodes.push(record.clone());
        }
        let stopped = stop_nodes(&nodes);
        Ok(stopped.into_iter().find(|(name, _)| *name == record.name).map(|(_, s)| s))
    }

    fn restart(&self, paths: &Paths, state: &mut State) -> anyhow::Result<()> {
        let nodes: Vec<Record> =
            state.components.iter().filter(|r| r.managed && split_instance(&r.name).0 == "kafka").cloned().collect();
        if !nodes.iter().any(|r| r.name == "kafka") {
            bail!("kafka was not started by `cargo xtask up`");
        }
        let count = recorded_instances(state, "kafka").max(1);
        stop_nodes(&nodes);
        let t = Instant::now();
        let ports = state.ports.clone();
        prepare(paths, &ports, count)?;
        for n in 1..=count {
            let name = instance_name("kafka", n);
            let log = state.run_dir(paths)?.join(format!("{name}.log"));
            let (record, _) = start_node(paths, &ports, n, count, &log)?;
            step(&name, &format!("restarted (pid {})", pid(&record)));
            state.put(record);
        }
        step("kafka", &format!("ready in {:.1}s", t.elapsed().as_secs_f64()));
        state.save(&paths.state_file())?;
        Ok(())
    }

    fn restart_instance(&self, paths: &Paths, state: &mut State, name: &str) -> anyhow::Result<()> {
        if name == "kafka" {
            return self.restart(paths, state);
        }
        let record = state
            .get(name)
            .filter(|r| r.managed)
            .cloned()
            .with_context(|| format!("{name} was not started by `cargo xtask up`"))?;
        stop_nodes(std::slice::from_ref(&record));
        start_again(paths, state, name)
    }

    fn pids(&self, record: &Record) -> Vec<u32> {
        record.pid.filter(|&pid| proc::alive(pid, &record.needle)).into_iter().collect()
    }
}

/// Kills one node with SIGKILL (a crash, no clean shutdown); `start_again` brings it back.
pub fn kill_node(state: &State, name: &str) -> anyhow::Result<()> {
    let record =
        state.get(name).filter(|r| r.managed).with_context(|| format!("{name} was not started by `cargo xtask up`"))?;
    if let Some(pid) = record.pid {
        proc::kill(pid, &record.needle);
    }
    Ok(())
}

/// Starts a stopped node of the recorded cluster again, with its data, and waits until it serves.
pub fn start_again(paths: &Paths, state: &mut State, name: &str) -> anyhow::Result<()> {
    let n = split_instance(name).1;
    let count = recorded_instances(state, "kafka").max(1);
    let log = state.run_dir(paths)?.join(format!("{name}.log"));
    let (record, took) = start_node(paths, &state.ports.clone(), n, count, &log)?;
    step(name, &format!("started again, ready in {:.1}s (pid {})", took.as_secs_f64(), pid(&record)));
    state.put(record);
    state.save(&paths.state_file())?;
    Ok(())
}

/// Stops the given nodes in parallel: SIGTERM to all, SIGKILL to those still running after 30 s.
fn stop_nodes(nodes: &[Record]) -> Vec<(String, Stopped)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .filter_map(|r| {
                let pid = r.pid.filter(|&pid| proc::alive(pid, &r.needle))?;
                Some(s.spawn(move || (r.name.clone(), proc::stop(pid, &r.needle, Duration::from_secs(30)))))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .inspect(|(name, st)| {
                let what = if st.killed {
                    "killed after 30s grace".to_owned()
                } else {
                    format!("stopped in {:.1}s", st.took.as_secs_f64())
                };
                step(name, &what);
            })
            .collect()
    })
}

fn pid(record: &Record) -> u32 {
    record.pid.unwrap_or(0)
}

pub fn libs(paths: &Paths) -> PathBuf {
    paths.cache.join(format!("kafka-{VERSION}")).join("libs")
}

/// Resolves `org.apache.kafka:kafka_2.13` and its runtime dependencies into the cache with Maven.
pub fn ensure_jars(paths: &Paths) -> anyhow::Result<PathBuf> {
    let libs = libs(paths);
    let marker = libs.join(".complete");
    if marker.exists() {
        return Ok(libs);
    }
    let dir = libs.parent().expect("libs has a parent").to_path_buf();
    std::fs::create_dir_all(&dir)?;
    let pom = format!(
        r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>open-bank</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"#
    );
    std::fs::write(dir.join("pom.xml"), pom)?;
    eprintln!("  downloading Apache Kafka {VERSION} and its dependencies from Maven Central into {}", libs.display());
    let out = Command::new("mvn")
        .args(["-B", "-q", "-f"])
        .arg(dir.join("pom.xml"))
        .arg("dependency:copy-dependencies")
        .arg(format!("-DoutputDirectory={}", libs.display()))
        .arg("-DincludeScope=runtime")
        .output()
        .context("mvn was not found; install Maven (apt-get install maven) to fetch Kafka from Maven Central")?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "Maven could not fetch org.apache.kafka:kafka_2.13:{VERSION}:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    if !libs.join(format!("kafka_2.13-{VERSION}.jar")).exists() {
        bail!("Maven finished but kafka_2.13-{VERSION}.jar is not in {}", libs.display());
    }
    std::fs::write(&marker, "")?;
    Ok(libs)
}

/// Node `n`'s storage: `.openbank/data/kafka` for the first, `kafka-<n>` for the others.
fn data_dir(paths: &Paths, n: u32) -> PathBuf {
    paths.data().join(instance_name("kafka", n))
}

fn props_path(paths: &Paths, n: u32) -> PathBuf {
    let file = if n == 1 { "server.properties".to_owned() } else { format!("server-{n}.properties") };
    paths.home.join("kafka").join(file)
}

/// Text of node `n`'s command line that tells it apart from the other nodes.
fn needle(n: u32) -> String {
    if n == 1 { NEEDLE.to_owned() } else { format!("server-{n}.properties") }
}

/// Where the fingerprint of the principals the storage was formatted with is kept.
fn principals_file(paths: &Paths) -> PathBuf {
    paths.data().join("kafka-principals")
}

/// Where the number of nodes the storage was formatted for is kept.
fn topology_file(paths: &Paths) -> PathBuf {
    paths.data().join("kafka-brokers")
}

/// `min.insync.replicas`: 2 of 3 replicas in a cluster (one broker may fail without losing an acknowledged
/// record or stopping writes), 1 on a single broker.
pub fn min_insync_replicas(count: u32) -> u32 {
    if count >= 3 { 2 } else { 1 }
}

/// Node `n`'s `server.properties` for a cluster of `count` combined broker+controller nodes.
fn server_properties(paths: &Paths, ports: &Ports, n: u32, count: u32, admin: &Credentials) -> anyhow::Result<String> {
    let (address, controller) = ports.kafka_node(n);
    let voters = (1..=count).map(|i| format!("{i}@{}", ports.kafka_node(i).1)).collect::<Vec<_>>().join(",");
    let isr = min_insync_replicas(count);
    let (user, pw) = (jaas_quoted(&admin.username)?, jaas_quoted(&admin.password)?);
    Ok(format!(
        "# written by `cargo xtask up`: node {n} of {count} combined broker+controller nodes, loopback only\n\
         process.roles=broker,controller\n\
         node.id={n}\n\
         controller.quorum.voters={voters}\n\
         listeners=CLIENT://{address},CONTROLLER://{controller}\n\
         advertised.listeners=CLIENT://{address}\n\
         controller.listener.names=CONTROLLER\n\
         inter.broker.listener.name=CLIENT\n\
         listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT\n\
         listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-256\n\
         sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256\n\
         listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
         required username=\"{user}\" password=\"{pw}\";\n\
         listener.name.controller.sasl.enabled.mechanisms=PLAIN\n\
         sasl.mechanism.controller.protocol=PLAIN\n\
         listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \
         required username=\"{user}\" password=\"{pw}\" user_{user}=\"{pw}\";\n\
         authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
         allow.everyone.if.no.acl.found=false\n\
         super.users=User:{user}\n\
         log.dirs={}\n\
         num.partitions=1\n\
         default.replication.factor={count}\n\
         min.insync.replicas={isr}\n\
         offsets.topic.replication.factor={count}\n\
         offsets.topic.num.partitions=12\n\
         transaction.state.log.replication.factor={count}\n\
         transaction.state.log.min.isr={isr}\n\
         share.coordinator.state.topic.replication.factor={count}\n\
         share.coordinator.state.topic.min.isr={isr}\n\
         group.initial.rebalance.delay.ms=0\n\
         auto.create.topics.enable=false\n\
         log.retention.check.interval.ms=60000\n",
        data_dir(paths, n).display()
    ))
}

/// Writes every node's `server.properties` (0600: they hold the super user's password) and the log settings.
fn write_config(paths: &Paths, ports: &Ports, count: u32, admin: &Credentials) -> anyhow::Result<PathBuf> {
    let dir = paths.home.join("kafka");
    crate::paths::private_dir(&dir)?;
    for n in 1..=count {
        std::fs::create_dir_all(data_dir(paths, n))?;
        write_private(&props_path(paths, n), &server_properties(paths, ports, n, count, admin)?)?;
    }
    let log4j = dir.join("log4j2.properties");
    std::fs::write(
        &log4j,
        "status = error\n\
         appender.console.type = Console\n\
         appender.console.name = STDOUT\n\
         appender.console.layout.type = PatternLayout\n\
         appender.console.layout.pattern = [%d] %p %m (%c)%n\n\
         rootLogger.level = info\n\
         rootLogger.appenderRef.stdout.ref = STDOUT\n\
         logger.kafka.name = kafka\nlogger.kafka.level = warn\n\
         logger.apache.name = org.apache.kafka\nlogger.apache.level = warn\n\
         logger.started.name = kafka.server.KafkaRaftServer\nlogger.started.level = info\n",
    )?;
    Ok(log4j)
}

fn java(libs: &Path, log4j: &Path, count: u32) -> Command {
    let mut c = Command::new("java");
    // Every integration test provisions its own prefixed topics, and they stay until `down --clean`: a long-lived
    // dev stack accumulates thousands of partitions, which outgrew a 512 MiB heap. Three nodes share the machine:
    // 512 MiB each.
    let max = if count > 1 { "-Xmx512m" } else { "-Xmx1g" };
    c.arg("-Xms256m")
        .arg(max)
        .arg("-XX:+UseG1GC")
        .arg("-XX:MaxGCPauseMillis=20")
        .arg("-Djava.awt.headless=true")
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(format!("{}/*", libs.display()));
    c
}

/// Readies the storage of a `count`-node cluster: storage formatted for another number of nodes is deleted (the
/// quorum's voters are part of it), configs are written, and every node without storage is formatted with the
/// cluster's id. Returns whether the cluster is new (then it holds no topics).
fn prepare(paths: &Paths, ports: &Ports, count: u32) -> anyhow::Result<bool> {
    crate::java::check()?;
    let libs = ensure_jars(paths)?;
    let principals = kafka_auth::all(paths)?;
    let fingerprint = kafka_auth::fingerprint(&principals);
    let first = data_dir(paths, 1).join("meta.properties");
    let formatted_for = match std::fs::read_to_string(topology_file(paths)) {
        Ok(text) => text.trim().parse::<u32>().ok(),
        Err(_) => first.exists().then_some(1),
    };
    let formatted_with = std::fs::read_to_string(principals_file(paths)).unwrap_or_default();
    let other_principals = first.exists() && formatted_with.trim() != fingerprint;
    if let Some(old) = formatted_for.filter(|&old| old != count || other_principals) {
        let running: Vec<String> =
            (1..=MAX_BROKERS.max(old)).map(|n| ports.kafka_node(n).0).filter(|a| proc::port_open(a)).collect();
        if !running.is_empty() {
            bail!(
                "kafka runs as {old} broker(s) (on {}); stop the stack with `cargo xtask down` before changing --brokers",
                running.join(", ")
            );
        }
        let why = if old != count {
            format!("storage was formatted for {old} broker(s), not {count}")
        } else if formatted_with.is_empty() {
            "storage was formatted without authentication".to_owned()
        } else {
            "storage was formatted with other principals' passwords".to_owned()
        };
        step("kafka", &format!("{why}: deleting it"));
        for n in 1..=MAX_BROKERS.max(old) {
            let dir = data_dir(paths, n);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))?;
            }
        }
    }
    let log4j = write_config(paths, ports, count, &principals[0])?;
    let new_cluster = !first.exists();
    let cluster_id = match std::fs::read_to_string(&first) {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("cluster.id="))
            .map(|id| id.trim().to_owned())
            .with_context(|| format!("no cluster.id in {}", first.display()))?,
        Err(_) => random_cluster_id(&libs, &log4j)?,
    };
    for n in 1..=count {
        if !data_dir(paths, n).join("meta.properties").exists() {
            format_storage(&libs, &log4j, &props_path(paths, n), &cluster_id, count, &principals)?;
        }
    }
    std::fs::write(topology_file(paths), format!("{count}\n"))?;
    std::fs::write(principals_file(paths), format!("{fingerprint}\n"))?;
    Ok(new_cluster)
}

/// Starts node `n` of a `count`-node cluster and waits until it serves; a node whose quorum cannot form yet (the
/// nodes after it are still to be started) is only checked to be running. Returns its record and the wait.
fn start_node(paths: &Paths, ports: &Ports, n: u32, count: u32, log: &Path) -> anyhow::Result<(Record, Duration)> {
    let (address, controller) = ports.kafka_node(n);
    for addr in [&address, &controller] {
        if proc::port_open(addr) {
            let port = crate::ports::port_of(addr).unwrap_or(0);
            bail!(
                "port {addr} is in use by {}, which xtask did not start; stop it, run `cargo xtask up` again to pick \
                 another port, or use that Kafka with KAFKA_BROKERS={address}",
                crate::ports::holder(port)
            );
        }
    }
    let libs = ensure_jars(paths)?;
    let log4j = paths.home.join("kafka").join("log4j2.properties");
    let t = Instant::now();
    let pid = proc::spawn_detached(java(&libs, &log4j, count).arg("kafka.Kafka").arg(props_path(paths, n)), log)?;
    let others_up = (1..=count).filter(|&i| i != n).filter(|&i| proc::port_open(&ports.kafka_node(i).0)).count();
    let others_up = u32::try_from(others_up).unwrap_or(0);
    let name = instance_name("kafka", n);
    if n == count || 2 * (others_up + 1) > count {
        // The last node of a start, or every node up: wait until this one sees all of them; with one missing,
        // until it serves.
        let want = if n == count || others_up + 1 == count { i32::try_from(count).unwrap_or(1) } else { 1 };
        proc::wait_until(&name, Duration::from_secs(120), || {
            // An exited broker ends the wait early; it is reported below.
            !proc::alive(pid, "") || brokers(&address).is_ok_and(|b| b >= want)
        })?;
    } else {
        proc::wait_quietly(Duration::from_secs(1), || !proc::alive(pid, ""));
    }
    if !proc::alive(pid, "") {
        bail!("{name} exited during start; see {}", log.display());
    }
    let record = Record {
        name,
        pid: Some(pid),
        needle: needle(n),
        address,
        log: log.to_path_buf(),
        managed: true,
        started_at: unix_secs(),
    };
    Ok((record, t.elapsed()))
}

fn random_cluster_id(libs: &Path, log4j: &Path) -> anyhow::Result<String> {
    let out = java(libs, log4j, 1).args(["kafka.tools.StorageTool", "random-uuid"]).output()?;
    let cluster_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || cluster_id.is_empty() {
        bail!("kafka storage tool failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(cluster_id)
}

/// Formats one node's storage with the cluster's id and every principal's SCRAM credential.
fn format_storage(
    libs: &Path,
    log4j: &Path,
    props: &Path,
    cluster_id: &str,
    count: u32,
    principals: &[Credentials],
) -> anyhow::Result<()> {
    let mut cmd = java(libs, log4j, count);
    cmd.args(["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c"]).arg(props);
    for c in principals {
        cmd.arg("--add-scram").arg(kafka_auth::add_scram(c)?);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "kafka storage format failed: {}",
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The number of live brokers `host_port` knows of, asked as the super user ([`kafka_auth::probe_credentials`]).
///
/// By hand ([`bank_core::kafka_wire`]) on purpose: a Kafka client (librdkafka through rdkafka) would make xtask a
/// C build and take seconds to give up on a broker that is not there.
pub fn brokers(host_port: &str) -> anyhow::Result<i32> {
    let credentials = kafka_auth::probe_credentials();
    Connection::open(host_port, credentials.as_ref(), Duration::from_secs(3))?.broker_count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Credentials {
        Credentials { username: "admin".into(), password: "0123abcd".into() }
    }

    #[test]
    fn cluster_nodes_have_their_own_ports_storage_and_quorum() {
        let paths = Paths::at(Path::new("/tmp/openbank-kafka-props"));
        let ports = Ports::default();
        let single = server_properties(&paths, &ports, 1, 1, &admin()).unwrap();
        assert!(single.contains("controller.quorum.voters=1@localhost:9093\n"), "{single}");
        assert!(single.contains("min.insync.replicas=1\n") && single.contains("offsets.topic.replication.factor=1\n"));
        let third = server_properties(&paths, &ports, 3, 3, &admin()).unwrap();
        assert!(third.contains("node.id=3\n"));
        assert!(third.contains("controller.quorum.voters=1@localhost:9093,2@localhost:9095,3@localhost:9097\n"));
        assert!(third.contains("listeners=CLIENT://localhost:9096,CONTROLLER://localhost:9097\n"));
        assert!(
            third.contains("min.insync.replicas=2\n") && third.contains("transaction.state.log.replication.factor=3\n")
        );
        assert!(third.contains(&format!("log.dirs={}\n", paths.data().join("kafka-3").display())));
        assert_eq!(ports.kafka_bootstrap(3), "localhost:9092,localhost:9094,localhost:9096");
        assert_eq!(ports.kafka_bootstrap(1), "localhost:9092");
        assert_eq!((needle(1).as_str(), needle(2).as_str()), (NEEDLE, "server-2.properties"));
    }

    #[test]
    fn every_listener_wants_a_password_and_no_acl_means_no() {
        let paths = Paths::at(Path::new("/tmp/openbank-kafka-props"));
        let p = server_properties(&paths, &Ports::default(), 1, 1, &admin()).unwrap();
        for line in [
            "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT\n",
            "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-256\n",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN\n",
            "allow.everyone.if.no.acl.found=false\n",
            "super.users=User:admin\n",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n",
        ] {
            assert!(p.contains(line), "{line} missing from\n{p}");
        }
        assert!(!p.contains("PLAINTEXT:PLAINTEXT"));
        assert!(p.contains(r#"user_admin="0123abcd";"#), "the controller knows admin alone");
        let bad = Credentials { username: "admin".into(), password: "a\";evil".into() };
        assert!(server_properties(&paths, &Ports::default(), 1, 1, &bad).is_err());
    }

    #[test]
    fn picked_ports_reach_the_listeners_the_quorum_and_the_bootstrap_list() {
        let paths = Paths::at(Path::new("/tmp/openbank-kafka-props"));
        let mut ports = Ports::default();
        ports.set("kafka", 9192);
        ports.set("kafka-2-controller", 9195);
        let first = server_properties(&paths, &ports, 1, 3, &admin()).unwrap();
        assert!(first.contains("listeners=CLIENT://localhost:9192,CONTROLLER://localhost:9093\n"), "{first}");
        assert!(first.contains("advertised.listeners=CLIENT://localhost:9192\n"));
        assert!(first.contains("controller.quorum.voters=1@localhost:9093,2@localhost:9195,3@localhost:9097\n"));
        assert_eq!(ports.kafka_bootstrap(2), "localhost:9192,localhost:9094");
    }
}

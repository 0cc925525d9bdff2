//! Apache Kafka 4.x in KRaft mode (one combined broker+controller) from Maven Central jars on the local JDK.

use anyhow::{Context, bail};
use bank_core::ports::{KAFKA_BROKERS as ADDRESS, KAFKA_CONTROLLER as CONTROLLER};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::component::{Component, Ctx, Layer, Started, step};
use crate::env::Endpoints;
use crate::paths::Paths;
use crate::postgres;
use crate::proc;
use crate::state::{Record, State, now_secs};

pub const VERSION: &str = "4.1.1";
const LOG4J_VERSION: &str = "2.24.3";
const NEEDLE: &str = "kafka.Kafka";

/// The broker, or the cluster `KAFKA_BROKERS` names.
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
        step("kafka", &format!("starting Apache Kafka {VERSION} (KRaft)"));
        let (record, took, formatted) = up(ctx.paths, &log)?;
        step("kafka", &format!("ready on {} in {:.1}s (pid {})", record.address, took.as_secs_f64(), pid(&record)));
        // A new cluster has none of the topics the database's offsets, results and accounts refer to.
        if formatted && !ctx.endpoints.external_database && postgres::reset_database(ctx.paths)? {
            step("postgres", &format!("emptied {}: Kafka's storage is new", postgres::database_name(ctx.paths)));
        }
        Ok(Started { record, started: true, took })
    }

    fn probe(&self, record: &Record) -> bool {
        brokers(&record.address).is_ok_and(|n| n > 0)
    }

    fn restart(&self, paths: &Paths, state: &mut State) -> anyhow::Result<()> {
        let c = state.get("kafka").filter(|c| c.managed).context("kafka was not started by `cargo xtask up`")?;
        if let Some(pid) = c.pid {
            proc::stop(pid, &c.needle, Duration::from_secs(30));
        }
        let log = state.run_dir(paths)?.join("kafka.log");
        let (record, took, _) = up(paths, &log)?;
        step("kafka", &format!("restarted, ready in {:.1}s (pid {})", took.as_secs_f64(), pid(&record)));
        state.put(record);
        state.save(&paths.state_file())?;
        Ok(())
    }
}

fn pid(record: &Record) -> u32 {
    record.pid.unwrap_or(0)
}

fn libs(paths: &Paths) -> PathBuf {
    paths.cache.join(format!("kafka-{VERSION}")).join("libs")
}

/// Checks for Java 17+ (Kafka 4 brokers need it).
fn check_java() -> anyhow::Result<()> {
    let out = Command::new("java")
        .arg("-version")
        .output()
        .context("java was not found; Kafka needs a JDK 17 or newer (apt-get install openjdk-17-jre-headless)")?;
    let text = String::from_utf8_lossy(&out.stderr);
    let major = text
        .split('"')
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .context("cannot read the java version")?;
    if major < 17 {
        bail!("java {major} found; Kafka {VERSION} needs Java 17 or newer");
    }
    Ok(())
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

fn write_config(paths: &Paths) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = paths.home.join("kafka");
    std::fs::create_dir_all(&dir)?;
    let data = paths.data().join("kafka");
    std::fs::create_dir_all(&data)?;
    let props = dir.join("server.properties");
    std::fs::write(
        &props,
        format!(
            "# written by `cargo xtask up`: a single combined broker+controller, loopback only\n\
             process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@{CONTROLLER}\n\
             listeners=PLAINTEXT://{ADDRESS},CONTROLLER://{CONTROLLER}\n\
             advertised.listeners=PLAINTEXT://{ADDRESS}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\n\
             num.partitions=1\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=12\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             auto.create.topics.enable=false\n\
             log.retention.check.interval.ms=60000\n",
            data.display()
        ),
    )?;
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
    Ok((props, log4j))
}

fn java(libs: &Path, log4j: &Path) -> Command {
    let mut c = Command::new("java");
    // Every integration test provisions its own prefixed topics, and they stay until `down --clean`: a long-lived
    // dev stack accumulates thousands of partitions, which outgrew a 512 MiB heap.
    c.arg("-Xms256m")
        .arg("-Xmx1g")
        .arg("-XX:+UseG1GC")
        .arg("-XX:MaxGCPauseMillis=20")
        .arg("-Djava.awt.headless=true")
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(format!("{}/*", libs.display()));
    c
}

fn healthy() -> bool {
    brokers(ADDRESS).is_ok_and(|n| n > 0)
}

/// Starts the broker (formatting its storage on first use) and waits until it answers metadata requests.
/// Returns its record, the time until it answered, and whether the storage was formatted by this start (then
/// the cluster is new and holds no topics).
fn up(paths: &Paths, log: &Path) -> anyhow::Result<(Record, Duration, bool)> {
    check_java()?;
    for addr in [ADDRESS, CONTROLLER] {
        if proc::port_open(addr) {
            bail!(
                "port {addr} is in use by a process xtask did not start; stop it, or use it with KAFKA_BROKERS={ADDRESS}"
            );
        }
    }
    let libs = ensure_jars(paths)?;
    let (props, log4j) = write_config(paths)?;
    let formatted = !paths.data().join("kafka").join("meta.properties").exists();
    if formatted {
        format_storage(&libs, &log4j, &props)?;
    }
    let t = Instant::now();
    let pid = proc::spawn_detached(java(&libs, &log4j).arg("kafka.Kafka").arg(&props), log)?;
    proc::wait_until("kafka", Duration::from_secs(90), || {
        // An exited broker ends the wait early; it is reported below.
        !proc::alive(pid, "") || healthy()
    })?;
    if !proc::alive(pid, "") {
        bail!("kafka exited during start; see {}", log.display());
    }
    let record = Record {
        name: "kafka".into(),
        pid: Some(pid),
        needle: NEEDLE.into(),
        address: ADDRESS.into(),
        log: log.to_path_buf(),
        managed: true,
        started_at: now_secs(),
    };
    Ok((record, t.elapsed(), formatted))
}

fn format_storage(libs: &Path, log4j: &Path, props: &Path) -> anyhow::Result<()> {
    let out = java(libs, log4j).args(["kafka.tools.StorageTool", "random-uuid"]).output()?;
    let cluster_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || cluster_id.is_empty() {
        bail!("kafka storage tool failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out =
        java(libs, log4j).args(["kafka.tools.StorageTool", "format", "-t", &cluster_id, "-c"]).arg(props).output()?;
    if !out.status.success() {
        bail!(
            "kafka storage format failed: {}",
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Sends a Kafka Metadata (v1, all topics) request and returns the number of live brokers in the answer.
///
/// Hand-built on purpose: a Kafka client (librdkafka through rdkafka) would make xtask a C build and take
/// seconds to give up on a broker that is not there; this is one 30-byte request and an 8-byte read.
pub fn brokers(host_port: &str) -> anyhow::Result<i32> {
    let a = proc::addr(host_port).with_context(|| format!("cannot resolve {host_port}"))?;
    let mut s = TcpStream::connect_timeout(&a, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(&metadata_request(7))?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size)?;
    let len = usize::try_from(i32::from_be_bytes(size)).context("negative frame size")?;
    if !(8..=64 * 1024 * 1024).contains(&len) {
        bail!("unexpected kafka frame size {len}");
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    parse_metadata_brokers(&body, 7)
}

fn metadata_request(correlation_id: i32) -> Vec<u8> {
    let client = b"xtask";
    let mut body = Vec::new();
    body.extend_from_slice(&3i16.to_be_bytes()); // api key: Metadata
    body.extend_from_slice(&1i16.to_be_bytes()); // api version 1
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&i16::try_from(client.len()).unwrap_or(0).to_be_bytes());
    body.extend_from_slice(client);
    body.extend_from_slice(&(-1i32).to_be_bytes()); // null topic array: all topics
    let mut frame = i32::try_from(body.len()).unwrap_or(0).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// The correlation id and broker count that open a Metadata v1 response.
fn parse_metadata_brokers(body: &[u8], correlation_id: i32) -> anyhow::Result<i32> {
    let field = |at: usize| -> anyhow::Result<i32> {
        let bytes = body.get(at..at + 4).context("short metadata response")?;
        Ok(i32::from_be_bytes(bytes.try_into()?))
    };
    let corr = field(0)?;
    if corr != correlation_id {
        bail!("metadata response for another request ({corr})");
    }
    field(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_request_is_well_formed() {
        let f = metadata_request(7);
        let size = i32::from_be_bytes(f[0..4].try_into().unwrap());
        assert_eq!(usize::try_from(size).unwrap(), f.len() - 4);
        assert_eq!(&f[4..6], &3i16.to_be_bytes());
        assert_eq!(&f[f.len() - 4..], &(-1i32).to_be_bytes());
    }

    #[test]
    fn parses_broker_count() {
        let mut body = 7i32.to_be_bytes().to_vec();
        body.extend_from_slice(&1i32.to_be_bytes());
        assert_eq!(parse_metadata_brokers(&body, 7).unwrap(), 1);
        assert!(parse_metadata_brokers(&body, 8).is_err());
        assert!(parse_metadata_brokers(&body[..5], 7).is_err());
    }
}

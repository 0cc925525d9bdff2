//! Apache Kafka 4.x in KRaft mode (one combined broker+controller) from Maven Central jars on the local JDK.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::paths::Paths;
use crate::proc;
use crate::state::{Component, now_secs};

pub const VERSION: &str = "4.1.1";
const LOG4J_VERSION: &str = "2.24.3";
pub const ADDRESS: &str = "localhost:9092";
const CONTROLLER: &str = "localhost:9093";
const NEEDLE: &str = "kafka.Kafka";

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
    c.arg("-Xms512m")
        .arg("-Xmx512m")
        .arg("-XX:+UseG1GC")
        .arg("-XX:MaxGCPauseMillis=20")
        .arg("-Djava.awt.headless=true")
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(format!("{}/*", libs.display()));
    c
}

pub fn healthy() -> bool {
    proc::kafka_brokers(ADDRESS).is_ok_and(|n| n > 0)
}

/// How a broker start went.
pub struct Started {
    pub component: Component,
    /// Time until the broker answered metadata requests.
    pub ready_in: Duration,
    /// The storage was formatted by this start: the cluster is new and holds no topics.
    pub formatted: bool,
}

/// Starts the broker (formatting its storage on first use) and waits until it answers metadata requests.
pub fn up(paths: &Paths, log: &Path) -> anyhow::Result<Started> {
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
        let out = java(&libs, &log4j).args(["kafka.tools.StorageTool", "random-uuid"]).output()?;
        let cluster_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || cluster_id.is_empty() {
            bail!("kafka storage tool failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let out = java(&libs, &log4j)
            .args(["kafka.tools.StorageTool", "format", "-t", &cluster_id, "-c"])
            .arg(&props)
            .output()?;
        if !out.status.success() {
            bail!(
                "kafka storage format failed: {}",
                String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let pid = proc::spawn_detached(java(&libs, &log4j).arg("kafka.Kafka").arg(&props), log)?;
    let ready = proc::wait_until("kafka", Duration::from_secs(90), || {
        // An exited broker ends the wait early; it is reported below.
        !proc::alive(pid, "") || healthy()
    })?;
    if !proc::alive(pid, "") {
        bail!("kafka exited during start; see {}", log.display());
    }
    Ok(Started {
        component: Component {
            name: "kafka".into(),
            pid: Some(pid),
            needle: NEEDLE.into(),
            address: ADDRESS.into(),
            log: log.to_path_buf(),
            managed: true,
            started_at: now_secs(),
        },
        ready_in: ready,
        formatted,
    })
}

//! What a real run of the compose stack (`cargo xtask compose-up`) cannot show, checked fast against the code:
//! `docker compose config` (Compose v2) of the main file and of the cluster overlay, then
//!
//! - every service of the stack (xtask's components, and the load tester) is a compose service;
//! - every build target is a stage of the Dockerfile, and the Dockerfile's Rust is rust-toolchain.toml's;
//! - every environment variable compose sets for a service (`VAR` or `VAR_FILE`) is one its binary reads
//!   (`--print-config-vars`): a misspelt variable is silently ignored by a running service;
//! - every port (listen settings, `host:port` references, probes, published ports) is the one in
//!   `bank_core::ports`, and only the web UI is published beyond 127.0.0.1;
//! - the Kafka image is the version xtask runs, and the cluster overlay has three voters, replication 3 and
//!   `min.insync.replicas` 2, every client bootstrapping from all three;
//! - no secret is written into the compose files: the services read the generated ones from files.
//!
//! Whether each service's settings are valid, the images build, and the stack starts is the real run's to prove.

use anyhow::{Context, bail};
use bank_core::ports;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::paths::Paths;
use crate::stack;

/// The compose file and the Dockerfile, at the workspace root.
pub const COMPOSE_FILE: &str = "docker-compose.yml";
pub const DOCKERFILE: &str = "Dockerfile";
/// The cluster overlay.
pub const CLUSTER_FILE: &str = "docker-compose.cluster.yml";
/// A service of the stack that xtask does not start but compose runs (in its profile).
const LOAD_TEST: &str = "load-test";
/// The one-shot that makes the secrets: a script stage of the Dockerfile, not a binary of the workspace.
pub const SECRETS: &str = "secrets";
/// The variables that carry a secret: compose may only name their files (`<VAR>_FILE`), never set them.
const SECRET_VARS: [&str; 4] = ["DATABASE_URL", "COMPANY_ACCOUNT_TOKEN", "EMPLOYEE_PASSWORD", "POSTGRES_PASSWORD"];

/// A compose service, as far as the checks look.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Service {
    pub image: Option<String>,
    /// `build.target`: the Dockerfile stage, named after the binary it runs.
    pub target: Option<String>,
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<Published>,
    /// `healthcheck.test`, word by word.
    pub healthcheck: Vec<String>,
    pub profiles: Vec<String>,
}

/// One `ports:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Empty: every interface.
    pub host_ip: String,
    pub container: u16,
}

pub type Services = BTreeMap<String, Service>;

/// The services of a compose file (raw, or as `docker-compose config` prints it); YAML merge keys are applied,
/// `${...}` is left as written.
pub fn parse(yaml: &str) -> anyhow::Result<Services> {
    let mut doc: Value = serde_norway::from_str(yaml).context("not YAML")?;
    doc.apply_merge().context("bad YAML merge key")?;
    let Some(services) = doc.get("services").and_then(Value::as_mapping) else { bail!("no `services:` mapping") };
    let mut out = Services::new();
    for (name, s) in services {
        let name = scalar(name).context("a service name is not a string")?;
        let mut service = Service {
            image: s.get("image").and_then(scalar),
            target: s.get("build").and_then(|b| b.get("target")).and_then(scalar),
            profiles: s.get("profiles").and_then(Value::as_sequence).into_iter().flatten().filter_map(scalar).collect(),
            ..Service::default()
        };
        match s.get("environment") {
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    if let Some(k) = scalar(k) {
                        service.environment.insert(k, scalar(v).unwrap_or_default());
                    }
                }
            }
            Some(Value::Sequence(list)) => {
                for entry in list.iter().filter_map(scalar) {
                    let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
                    service.environment.insert(k.to_owned(), v.to_owned());
                }
            }
            _ => {}
        }
        for p in s.get("ports").and_then(Value::as_sequence).into_iter().flatten() {
            service.ports.push(published(p).with_context(|| format!("{name}: bad ports entry {p:?}"))?);
        }
        match s.get("healthcheck").and_then(|h| h.get("test")) {
            Some(Value::Sequence(words)) => service.healthcheck = words.iter().filter_map(scalar).collect(),
            Some(v) => {
                service.healthcheck = scalar(v).unwrap_or_default().split_whitespace().map(str::to_owned).collect()
            }
            None => {}
        }
        out.insert(name, service);
    }
    Ok(out)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `"[ip:][host:]container[/proto]"` or `{target, published, host_ip}`.
fn published(p: &Value) -> Option<Published> {
    if let Some(target) = p.get("target") {
        let host_ip = p.get("host_ip").and_then(scalar).unwrap_or_default();
        return Some(Published { host_ip, container: scalar(target)?.parse().ok()? });
    }
    let text = scalar(p)?;
    let text = text.split('/').next().unwrap_or_default();
    let parts: Vec<&str> = text.split(':').collect();
    let container = parts.last()?.parse().ok()?;
    let host_ip = if parts.len() == 3 { parts.first().copied().unwrap_or_default().to_owned() } else { String::new() };
    Some(Published { host_ip, container })
}

/// The port of a `host:port` constant of `bank_core::ports`.
fn port_of(address: &str) -> u16 {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0)
}

/// The ports each kind of compose service listens on, from `bank_core::ports`; Kafka nodes are found by image.
pub fn known_ports() -> BTreeMap<&'static str, Vec<u16>> {
    BTreeMap::from([
        ("postgres", vec![port_of(ports::POSTGRES)]),
        ("kafka", vec![port_of(ports::KAFKA_BROKERS), port_of(ports::KAFKA_CONTROLLER)]),
        ("schema-registry", vec![port_of(ports::SCHEMA_REGISTRY_LISTEN)]),
        ("heartbeat", vec![port_of(ports::HEARTBEAT_LISTEN)]),
        ("command-handler", vec![port_of(ports::COMMAND_HANDLER_LISTEN)]),
        ("command-generator", vec![port_of(ports::COMMAND_GENERATOR_LISTEN)]),
        ("graphql-endpoint", vec![port_of(ports::GRAPHQL_LISTEN)]),
    ])
}

/// The ports of compose service `name` (a Kafka node by its image), if it is one whose ports the code knows.
fn ports_of<'a>(known: &'a BTreeMap<&str, Vec<u16>>, services: &Services, name: &str) -> Option<&'a Vec<u16>> {
    let is_kafka = services.get(name).and_then(|s| s.image.as_deref()).is_some_and(|i| i.starts_with("apache/kafka:"));
    known.get(if is_kafka { "kafka" } else { name })
}

/// The stack's services that must be in compose: xtask's Rust services and the load tester.
pub fn workspace_services() -> Vec<String> {
    let mut v: Vec<String> = stack::ALL.iter().filter_map(|c| c.package()).map(str::to_owned).collect();
    v.push(LOAD_TEST.to_owned());
    v
}

/// Every workspace service (and PostgreSQL and Kafka) is a compose service, built from its own target.
pub fn check_services(services: &Services, wanted: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for name in wanted {
        match services.get(name) {
            None => problems.push(format!("service `{name}` is missing from {COMPOSE_FILE}")),
            Some(s) if s.target.as_deref() != Some(name.as_str()) => {
                problems
                    .push(format!("service `{name}` is not built from Dockerfile target `{name}` ({:?})", s.target));
            }
            Some(_) => {}
        }
    }
    for infra in ["postgres", "kafka"] {
        if !services.contains_key(infra) {
            problems.push(format!("service `{infra}` is missing from {COMPOSE_FILE}"));
        }
    }
    problems
}

/// The stage names of a Dockerfile (`FROM image AS name`).
pub fn dockerfile_stages(dockerfile: &str) -> BTreeSet<String> {
    dockerfile
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.as_slice() {
                [from, _, as_, name, ..] if from.eq_ignore_ascii_case("FROM") && as_.eq_ignore_ascii_case("AS") => {
                    Some(name.to_ascii_lowercase())
                }
                _ => None,
            }
        })
        .collect()
}

/// The lines of stage `name` of a Dockerfile (after its `FROM`, up to the next `FROM`).
fn stage_text(dockerfile: &str, name: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            inside = words.len() >= 4 && words.get(3).is_some_and(|n| n.eq_ignore_ascii_case(name));
        } else if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Every `build.target` is a stage of the Dockerfile that runs the binary of its name, which the builder builds
/// (`-p <target>`).
pub fn check_targets(services: &Services, dockerfile: &str) -> Vec<String> {
    let stages = dockerfile_stages(dockerfile);
    let mut problems = Vec::new();
    for (name, t) in services.iter().filter_map(|(name, s)| s.target.as_ref().map(|t| (name, t))) {
        if !stages.contains(&t.to_ascii_lowercase()) {
            problems.push(format!("service `{name}`: build target `{t}` is no stage of the {DOCKERFILE}"));
            continue;
        }
        let stage = stage_text(dockerfile, t);
        if t == SECRETS {
            if !stage.contains("COPY docker/secrets.sh ") {
                problems.push(format!("{DOCKERFILE} stage `{SECRETS}` does not copy docker/secrets.sh"));
            }
            continue;
        }
        if !stage.contains(&format!("/out/{t} ")) || !stage.contains(&format!("ENTRYPOINT [\"{t}\"]")) {
            problems.push(format!("{DOCKERFILE} stage `{t}` does not copy and run the `{t}` binary"));
        }
        if !dockerfile.contains(&format!("-p {t} ")) {
            problems.push(format!("the {DOCKERFILE}'s builder does not build `{t}` (`-p {t}`)"));
        }
    }
    problems
}

/// The Dockerfile's `ARG RUST_VERSION=` is rust-toolchain.toml's `channel`.
pub fn check_toolchain(dockerfile: &str, toolchain_toml: &str) -> Vec<String> {
    let arg = dockerfile.lines().find_map(|l| l.trim().strip_prefix("ARG RUST_VERSION=")).map(str::trim);
    let channel =
        toolchain_toml.lines().find_map(|l| l.trim().strip_prefix("channel")).and_then(|rest| rest.split('"').nth(1));
    match (arg, channel) {
        (Some(a), Some(c)) if a == c => Vec::new(),
        (a, c) => vec![format!("{DOCKERFILE} builds with Rust {a:?}, rust-toolchain.toml pins {c:?}")],
    }
}

/// The `ENV` keys a Dockerfile stage sets, with those of the stages it is built `FROM`.
pub fn dockerfile_env(dockerfile: &str, stage: &str) -> BTreeSet<String> {
    // `FROM parent AS name` for every stage.
    let parents: BTreeMap<String, String> = dockerfile
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
            [from, parent, as_, name, ..] if from.eq_ignore_ascii_case("FROM") && as_.eq_ignore_ascii_case("AS") => {
                Some((name.to_ascii_lowercase(), parent.to_ascii_lowercase()))
            }
            _ => None,
        })
        .collect();
    let mut keys = BTreeSet::new();
    let mut current = Some(stage.to_ascii_lowercase());
    let mut hops = 0;
    while let Some(name) = current.filter(|_| hops < 32) {
        let text = stage_text(dockerfile, &name).replace("\\\n", " ");
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next().is_some_and(|w| w.eq_ignore_ascii_case("ENV")) {
                keys.extend(words.filter_map(|w| w.split_once('=')).map(|(k, _)| k.to_owned()));
            }
        }
        current = parents.get(&name).cloned();
        hops += 1;
    }
    keys
}

/// Every variable compose sets for one of our binaries is one that binary reads (`vars`: target → its variables).
pub fn check_env(services: &Services, dockerfile: &str, vars: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, s) in services {
        for key in s.environment.keys().filter(|k| SECRET_VARS.contains(&k.as_str())) {
            // The `secrets` one-shot takes a .env's override (`${VAR:-}`); nothing else gets a secret in clear.
            if name != SECRETS {
                problems.push(format!("service `{name}` gets the secret {key} in its environment: use {key}_FILE"));
            }
        }
        let Some(target) = s.target.as_ref().filter(|t| *t != SECRETS) else { continue };
        let Some(known) = vars.get(target) else {
            problems.push(format!("service `{name}`: no variables known for binary `{target}`"));
            continue;
        };
        // `VAR_FILE` is read wherever `VAR` is (bank_core::cli).
        let reads =
            |k: &String| known.contains(k) || k.strip_suffix("_FILE").is_some_and(|v| known.iter().any(|x| x == v));
        for key in s.environment.keys().filter(|k| !reads(k)) {
            problems.push(format!("service `{name}` sets {key}, which `{target}` does not read"));
        }
        for key in dockerfile_env(dockerfile, target).into_iter().filter(|k| !known.contains(k)) {
            problems.push(format!("{DOCKERFILE} stage `{target}` sets {key}, which `{target}` does not read"));
        }
    }
    problems
}

/// `name:port` references to compose services in `text` (URLs, broker lists, voter lists, probes).
fn references(text: &str, names: &[&String]) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':')) {
        let mut parts = token.split(':');
        while let Some(host) = parts.next() {
            let host = host.rsplit('@').next().unwrap_or(host);
            if names.iter().any(|n| n.as_str() == host)
                && let Some(port) = parts.clone().next().and_then(|p| p.parse::<u16>().ok())
            {
                out.push((host.to_owned(), port));
            }
        }
    }
    out
}

/// Ports: each service listens (`*_LISTEN`, on every interface) and is probed on its port from `bank_core::ports`;
/// every `service:port` in a setting or a probe names that service's port; only the web UI is published beyond
/// 127.0.0.1.
pub fn check_ports(services: &Services) -> Vec<String> {
    let known = known_ports();
    let names: Vec<&String> = services.keys().collect();
    let mut problems = Vec::new();
    for (name, s) in services {
        let own = ports_of(&known, services, name);
        if let (Some(own), Some(_)) = (own, &s.target) {
            let listen: Vec<(&String, &String)> =
                s.environment.iter().filter(|(k, _)| k.ends_with("_LISTEN")).collect();
            if listen.is_empty() {
                problems.push(format!("service `{name}` sets no *_LISTEN: it would listen on loopback only"));
            }
            for (k, v) in listen {
                let port = v.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
                if !v.starts_with("0.0.0.0:") || !port.is_some_and(|p| own.contains(&p)) {
                    problems.push(format!("service `{name}`: {k}={v}, expected 0.0.0.0:{own:?}"));
                }
            }
            let probe = s.healthcheck.iter().skip_while(|w| *w != "--probe").nth(1);
            match probe.and_then(|u| u.strip_prefix("http://127.0.0.1:")).and_then(|r| r.split('/').next()) {
                Some(p) if p.parse::<u16>().is_ok_and(|p| own.contains(&p)) => {}
                _ => problems
                    .push(format!("service `{name}`: healthcheck {:?} does not probe port {own:?}", s.healthcheck)),
            }
        }
        let texts = s.environment.values().chain(s.healthcheck.iter());
        for (host, port) in texts.flat_map(|t| references(t, &names)) {
            if let Some(theirs) = ports_of(&known, services, &host)
                && !theirs.contains(&port)
            {
                problems.push(format!("service `{name}` reaches `{host}:{port}`, but {host} listens on {theirs:?}"));
            }
        }
        for p in &s.ports {
            if !own.is_some_and(|o| o.contains(&p.container)) {
                problems
                    .push(format!("service `{name}` publishes container port {}, not its own {own:?}", p.container));
            }
            let public = p.host_ip.is_empty() || p.host_ip == "0.0.0.0";
            if public && p.container != port_of(ports::GRAPHQL_LISTEN) {
                problems.push(format!("service `{name}` publishes port {} on every interface", p.container));
            }
        }
    }
    problems
}

/// Every Kafka image is `apache/kafka:<xtask's version>`, and there is one.
pub fn check_kafka(services: &Services, version: &str) -> Vec<String> {
    let images: Vec<(&String, &String)> = services
        .iter()
        .filter_map(|(n, s)| s.image.as_ref().map(|i| (n, i)))
        .filter(|(_, i)| i.contains("kafka"))
        .collect();
    let mut problems: Vec<String> = images
        .iter()
        .filter(|(_, i)| **i != format!("apache/kafka:{version}"))
        .map(|(n, i)| format!("service `{n}` runs {i}, xtask runs apache/kafka:{version}"))
        .collect();
    if images.is_empty() {
        problems.push("no apache/kafka service".into());
    }
    problems
}

/// The resolved `cluster` profile: three nodes, every voter a node, replication 3 and `min.insync.replicas` 2,
/// and every client bootstraps from all three.
pub fn check_cluster(services: &Services) -> Vec<String> {
    let nodes: Vec<(&String, &Service)> =
        services.iter().filter(|(_, s)| s.image.as_deref().is_some_and(|i| i.starts_with("apache/kafka:"))).collect();
    let mut problems = Vec::new();
    if nodes.len() != 3 {
        problems.push(format!("the cluster has {} Kafka nodes, not 3", nodes.len()));
    }
    for (name, s) in &nodes {
        let env = |k: &str| s.environment.get(k).map_or("", String::as_str);
        let voters: BTreeSet<&str> =
            env("KAFKA_CONTROLLER_QUORUM_VOTERS").split(',').filter_map(|v| v.split(['@', ':']).nth(1)).collect();
        let names: BTreeSet<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
        if voters != names {
            problems.push(format!("`{name}`: voters {voters:?} are not the nodes {names:?}"));
        }
        for (k, want) in [
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2"),
        ] {
            if env(k) != want {
                problems.push(format!("`{name}`: {k}={}, the cluster wants {want}", env(k)));
            }
        }
    }
    let node_names: BTreeSet<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
    for (name, s) in services {
        if let Some(brokers) = s.environment.get("KAFKA_BROKERS") {
            let hosts: BTreeSet<&str> = brokers.split(',').filter_map(|b| b.trim().split(':').next()).collect();
            if hosts != node_names {
                problems.push(format!("`{name}`: KAFKA_BROKERS={brokers} is not every node {node_names:?}"));
            }
        }
    }
    problems
}

/// Runs every compose check; each named check passed or failed, for `cargo xtask test`'s summary.
pub fn checks(paths: &Paths) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut record = |name: &str, result: anyhow::Result<Vec<String>>| {
        let ok = match result {
            Ok(problems) if problems.is_empty() => true,
            Ok(problems) => {
                for p in problems {
                    eprintln!("  drift: {p}");
                }
                false
            }
            Err(e) => {
                eprintln!("  error: {e:#}");
                false
            }
        };
        eprintln!("{} compose: {name}", if ok { "ok  " } else { "FAIL" });
        out.push((format!("compose: {name}"), ok));
    };
    let prepared = prepare(paths);
    let (resolved, dockerfile, toolchain) = match prepared {
        Ok(p) => p,
        Err(e) => {
            record("`docker compose config` of the main file (load-test profile) and the cluster overlay", Err(e));
            return out;
        }
    };
    record("`docker compose config` of the main file (load-test profile) and the cluster overlay", Ok(Vec::new()));
    let Resolved { all, cluster } = resolved;
    record("every workspace service is a compose service", Ok(check_services(&all, &workspace_services())));
    record(
        "every build target is a Dockerfile stage; its Rust is rust-toolchain.toml's",
        Ok([check_targets(&all, &dockerfile), check_toolchain(&dockerfile, &toolchain)].concat()),
    );
    record(
        "every variable compose and the Dockerfile set is read by that service",
        config_vars(paths, &all).map(|v| check_env(&all, &dockerfile, &v)),
    );
    record("ports match bank_core::ports; only 8888 published beyond 127.0.0.1", Ok(check_ports(&all)));
    record(
        &format!("Kafka is apache/kafka:{}; cluster: 3 voters, replication 3, min ISR 2", crate::kafka::VERSION),
        Ok([check_kafka(&all, crate::kafka::VERSION), check_cluster(&cluster)].concat()),
    );
    record(
        "every Kafka client has its own principal (bank_core::principals), docker/secrets.sh makes each password",
        std::fs::read_to_string(paths.root.join(SECRETS_SCRIPT))
            .context("cannot read docker/secrets.sh")
            .map(|script| [check_principals(&all, &script), check_principals(&cluster, &script)].concat()),
    );
    out
}

/// The script of the `secrets` one-shot.
pub const SECRETS_SCRIPT: &str = "docker/secrets.sh";

/// Every service with Kafka settings logs in as itself (or, for the synchronizer and the load tester, as the super
/// user) with the password file the secrets script makes, and the script makes exactly the principals of
/// `bank_core::principals`.
pub fn check_principals(services: &Services, secrets_script: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let listed: Vec<String> = secrets_script
        .lines()
        .find_map(|l| l.trim().strip_prefix("kafka_principals=("))
        .map(|rest| rest.trim_end_matches(')').split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let want: Vec<String> = crate::kafka_auth::names().into_iter().map(str::to_owned).collect();
    if listed != want {
        problems
            .push(format!("{SECRETS_SCRIPT} makes Kafka passwords for {listed:?}, bank_core::principals has {want:?}"));
    }
    for (name, s) in services {
        if !s.environment.contains_key("KAFKA_BROKERS") {
            continue;
        }
        let principal = if matches!(name.as_str(), "synchronizer" | LOAD_TEST) { "admin" } else { name.as_str() };
        let user = s.environment.get("KAFKA_SASL_USERNAME").map(String::as_str);
        let file = s.environment.get("KAFKA_SASL_PASSWORD_FILE").map(String::as_str);
        let want_file = format!("/run/openbank/kafka_password_{principal}");
        if user != Some(principal) || file != Some(want_file.as_str()) {
            problems.push(format!(
                "service `{name}` logs in to Kafka as {user:?} with {file:?}, not as `{principal}` with {want_file}"
            ));
        }
        if !want.iter().any(|w| w == principal) {
            problems.push(format!("service `{name}` has no principal in bank_core::principals"));
        }
    }
    problems
}

/// `cargo xtask compose`'s exit code: 0 when every check passed.
pub fn report(checks: &[(String, bool)]) -> i32 {
    let failed = checks.iter().filter(|(_, ok)| !ok).count();
    println!("compose: {} passed, {failed} failed", checks.len() - failed);
    i32::from(failed > 0)
}

/// The resolved compose model: `all` (load-test profile and the default `.env`), `cluster`.
struct Resolved {
    all: Services,
    cluster: Services,
}

/// Compose v2 (built if needed), the resolved models of the main file (with the load-test profile) and of the
/// cluster overlay, with no `.env`; the Dockerfile and rust-toolchain.toml.
fn prepare(paths: &Paths) -> anyhow::Result<(Resolved, String, String)> {
    ensure_compose_v2(paths)?;
    let read = |f: &str| std::fs::read_to_string(paths.root.join(f)).with_context(|| format!("cannot read {f}"));
    let all = parse(&config(&paths.root, &[COMPOSE_FILE], &["load-test"])?)?;
    let cluster = parse(&config(&paths.root, &[COMPOSE_FILE, CLUSTER_FILE], &["load-test"])?)?;
    Ok((Resolved { all, cluster }, read(DOCKERFILE)?, read("rust-toolchain.toml")?))
}

/// `docker compose config` of `files` in `root` with `profiles` active and no `.env` (an empty env file).
pub fn config(root: &Path, files: &[&str], profiles: &[&str]) -> anyhow::Result<String> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let empty = std::env::temp_dir().join(format!("openbank-compose-empty-{}-{n}.env", std::process::id()));
    std::fs::write(&empty, "")?;
    let mut cmd = Command::new("docker");
    cmd.current_dir(root)
        .args(["compose", "--project-name", "openbank-check", "--project-directory"])
        .arg(root)
        .arg("--env-file")
        .arg(&empty)
        .env_remove("COMPOSE_PROFILES")
        .env_remove("COMPOSE_FILE");
    for f in files {
        cmd.arg("-f").arg(f);
    }
    for p in profiles {
        cmd.args(["--profile", p]);
    }
    let out = cmd.arg("config").stderr(Stdio::piped()).output().context("cannot run docker compose");
    let _ = std::fs::remove_file(&empty);
    let out = out?;
    if !out.status.success() {
        bail!("docker compose config {files:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The compose services' binaries (built if needed).
fn build_binaries(paths: &Paths, services: &Services) -> anyhow::Result<BTreeSet<String>> {
    let targets: BTreeSet<String> =
        services.values().filter_map(|s| s.target.clone()).filter(|t| t != SECRETS).collect();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&paths.root).args(["build", "--quiet", "--bins"]);
    for t in &targets {
        cmd.args(["-p", t]);
    }
    if !cmd.status().context("cannot run cargo")?.success() {
        bail!("cannot build {targets:?}");
    }
    Ok(targets)
}

/// Each binary's `--print-config-vars`.
fn config_vars(paths: &Paths, services: &Services) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut vars = BTreeMap::new();
    for target in build_binaries(paths, services)? {
        let out = Command::new(paths.bin(&target))
            .arg("--print-config-vars")
            .output()
            .with_context(|| format!("cannot run {target}"))?;
        if !out.status.success() {
            bail!("{target} --print-config-vars failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        vars.insert(target, String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect());
    }
    Ok(vars)
}

/// Compose v2, built from the Go module proxy when the machine has no `docker compose`.
const COMPOSE_MODULE: &str = "github.com/docker/compose/v2";
const COMPOSE_VERSION: &str = "v2.40.3";

/// `docker compose version` is v2; as root (or for this user), builds Compose v2 from the Go module proxy into
/// `~/.docker/cli-plugins/docker-compose` when it is not.
pub fn ensure_compose_v2(paths: &Paths) -> anyhow::Result<()> {
    let version = || {
        Command::new("docker")
            .args(["compose", "version", "--short"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(v) = version().filter(|v| v.trim_start_matches('v').starts_with('2')) {
        eprintln!("  Docker Compose {v}");
        return Ok(());
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).context("HOME is not set")?;
    let plugins = home.join(".docker").join("cli-plugins");
    std::fs::create_dir_all(&plugins)?;
    eprintln!("  building Docker Compose {COMPOSE_VERSION} from the Go module proxy (once; a few minutes)");
    // Built as the main module: its go.mod has exclude directives, which `go install pkg@version` refuses.
    let out = Command::new("go")
        .args(["mod", "download", "-json", &format!("{COMPOSE_MODULE}@{COMPOSE_VERSION}")])
        .current_dir(std::env::temp_dir())
        .output()
        .context("go was not found: Compose v2 is built from the Go module proxy (install Go 1.24 or newer)")?;
    anyhow::ensure!(out.status.success(), "go mod download failed: {}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let module = std::path::PathBuf::from(info["Dir"].as_str().context("no Dir in go mod download's answer")?);
    let src = paths.cache.join(format!("compose-{COMPOSE_VERSION}"));
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&paths.cache)?;
    anyhow::ensure!(
        Command::new("cp").arg("-r").arg(&module).arg(&src).status()?.success(),
        "cannot copy {}",
        module.display()
    );
    Command::new("chmod").args(["-R", "u+w"]).arg(&src).status()?;
    let built = Command::new("go")
        .current_dir(&src)
        .args(["build", "-trimpath"])
        .arg(format!("-ldflags=-s -w -X {COMPOSE_MODULE}/internal.Version={COMPOSE_VERSION}"))
        .arg("-o")
        .arg(plugins.join("docker-compose"))
        .arg("./cmd")
        .status()?
        .success();
    let _ = std::fs::remove_dir_all(&src);
    anyhow::ensure!(built, "building Docker Compose {COMPOSE_VERSION} failed");
    let v = version().context("docker compose does not run after the build")?;
    eprintln!("  Docker Compose {v} installed in {}", plugins.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    fn committed() -> Services {
        parse(&std::fs::read_to_string(root().join(COMPOSE_FILE)).unwrap()).unwrap()
    }

    fn dockerfile() -> String {
        std::fs::read_to_string(root().join(DOCKERFILE)).unwrap()
    }

    /// The committed file with one edit, which must be there.
    fn drifted(from: &str, to: &str) -> Services {
        let text = std::fs::read_to_string(root().join(COMPOSE_FILE)).unwrap();
        assert!(text.contains(from), "{from:?} is not in {COMPOSE_FILE}");
        parse(&text.replacen(from, to, 1)).unwrap()
    }

    #[test]
    fn the_committed_files_pass_the_static_checks() {
        let s = committed();
        assert_eq!(check_services(&s, &workspace_services()), Vec::<String>::new());
        assert_eq!(check_targets(&s, &dockerfile()), Vec::<String>::new());
        let toolchain = std::fs::read_to_string(root().join("rust-toolchain.toml")).unwrap();
        assert_eq!(check_toolchain(&dockerfile(), &toolchain), Vec::<String>::new());
        assert_eq!(check_ports(&s), Vec::<String>::new());
        assert_eq!(check_kafka(&s, crate::kafka::VERSION), Vec::<String>::new());
        // Merge keys are applied: the services share their settings.
        assert_eq!(s["heartbeat"].environment["KAFKA_BROKERS"], "kafka:9092");
        assert_eq!(s["kafka"].environment["KAFKA_NODE_ID"], "1");
        assert_eq!(s["load-test"].profiles, ["load-test"]);
        assert_eq!(s[SECRETS].target.as_deref(), Some(SECRETS));
    }

    #[test]
    fn a_missing_service_or_a_foreign_target_fails() {
        let text = std::fs::read_to_string(root().join(COMPOSE_FILE)).unwrap();
        let mut s = parse(&text).unwrap();
        s.remove("command-generator");
        assert!(check_services(&s, &workspace_services())[0].contains("command-generator"));
        let s = drifted("target: heartbeat", "target: heart-beat");
        let problems = check_services(&s, &workspace_services());
        assert!(problems.iter().any(|p| p.contains("`heartbeat` is not built from")), "{problems:?}");
        assert!(check_targets(&s, &dockerfile())[0].contains("heart-beat"));
    }

    #[test]
    fn dockerfile_env_follows_the_stage_chain() {
        let d = dockerfile();
        let keys = |s: &str| dockerfile_env(&d, s).into_iter().collect::<Vec<_>>();
        assert_eq!(keys("graphql-endpoint"), ["FRONTEND_DIR", "LOG_FORMAT", "RESULTS_DIR"]);
        assert_eq!(keys("heartbeat"), ["LOG_FORMAT"]);
        assert_eq!(keys("load-test"), ["RESULTS_DIR"]);
    }

    #[test]
    fn a_stage_missing_from_the_dockerfile_or_another_rust_fails() {
        let d = dockerfile().replace("AS command-handler", "AS handler");
        assert!(check_targets(&committed(), &d)[0].contains("command-handler"));
        let unbuilt = dockerfile().replace("-p load-test ", "");
        assert_eq!(
            check_targets(&committed(), &unbuilt),
            ["the Dockerfile's builder does not build `load-test` (`-p load-test`)"]
        );
        let wrong = dockerfile().replace("ENTRYPOINT [\"heartbeat\"]", "ENTRYPOINT [\"synchronizer\"]");
        assert_eq!(
            check_targets(&committed(), &wrong),
            ["Dockerfile stage `heartbeat` does not copy and run the `heartbeat` binary"]
        );
        assert_eq!(check_toolchain(&d, "[toolchain]\nchannel = \"1.95.0\"\n"), Vec::<String>::new());
        assert_eq!(check_toolchain(&d, "[toolchain]\nchannel = \"1.96.0\"\n").len(), 1);
        assert_eq!(check_toolchain("FROM x AS y\n", "channel = \"1.95.0\"").len(), 1);
    }

    #[test]
    fn a_variable_the_binary_does_not_read_fails() {
        let s = committed();
        let vars = |extra: &[&str]| -> BTreeMap<String, Vec<String>> {
            s.values()
                .filter_map(|v| v.target.clone().map(|t| (t, v)))
                .map(|(t, v)| (t, v.environment.keys().cloned().chain(extra.iter().map(|e| (*e).to_owned())).collect()))
                .collect()
        };
        let d = dockerfile();
        assert_eq!(check_env(&s, &d, &vars(&["LOG_FORMAT"])), Vec::<String>::new());
        // The load tester reads no LOG_FORMAT: the Dockerfile sets it for the services only.
        assert_eq!(check_env(&s, &d, &vars(&[])).len(), 6, "{:?}", check_env(&s, &d, &vars(&[])));
        // A secret's file is read where the secret is; a secret itself in a service's environment is refused.
        // The binaries list `DATABASE_URL`, not `DATABASE_URL_FILE`: the file form is read wherever the variable is.
        let mut real = vars(&["LOG_FORMAT"]);
        for list in real.values_mut() {
            for x in list.iter_mut() {
                if let Some(var) = x.strip_suffix("_FILE") {
                    *x = var.to_owned();
                }
            }
        }
        assert_eq!(check_env(&s, &d, &real), Vec::<String>::new());
        let clear = drifted("DATABASE_URL_FILE: /run/openbank/database_url", "DATABASE_URL: postgres://x:y@postgres/z");
        let problems = check_env(&clear, &d, &vars(&["LOG_FORMAT", "DATABASE_URL"]));
        assert!(problems.iter().any(|p| p.contains("gets the secret DATABASE_URL")), "{problems:?}");
        let s = drifted("HEARTBEAT_RATE: 10", "HEARTBEAT_RATE: 10\n      HEARTBEAT_SPEED: 10");
        let problems = check_env(&s, &d, &vars(&["LOG_FORMAT"]));
        assert_eq!(problems, ["service `heartbeat` sets HEARTBEAT_SPEED, which `heartbeat` does not read"]);
        let mut missing = vars(&["LOG_FORMAT"]);
        missing.remove("synchronizer");
        assert!(check_env(&committed(), &d, &missing)[0].contains("no variables known"));
        let d = d.replace("ENV RESULTS_DIR=/results\n", "ENV RESULTS_DIR=/results \\\n    LOAD_TEST_SPEED=1\n");
        let problems = check_env(&committed(), &d, &vars(&["LOG_FORMAT"]));
        assert_eq!(problems, ["Dockerfile stage `load-test` sets LOAD_TEST_SPEED, which `load-test` does not read"]);
    }

    #[test]
    fn ports_that_drift_fail() {
        for (from, to, what) in [
            ("HEARTBEAT_LISTEN: 0.0.0.0:17888", "HEARTBEAT_LISTEN: 0.0.0.0:17889", "HEARTBEAT_LISTEN"),
            ("GRAPHQL_LISTEN: 0.0.0.0:8888", "GRAPHQL_LISTEN: 127.0.0.1:8888", "GRAPHQL_LISTEN"),
            ("http://schema-registry:8081", "http://schema-registry:8082", "schema-registry:8082"),
            ("1@kafka:9093", "1@kafka:9094", "kafka:9094"),
            ("http://127.0.0.1:9103/ready", "http://127.0.0.1:9102/ready", "healthcheck"),
            ("\"127.0.0.1:17888:17888\"", "\"17888:17888\"", "every interface"),
            ("\"8888:8888\"", "\"8888:8889\"", "container port 8889"),
            ("SCHEMA_REGISTRY_LISTEN: 0.0.0.0:8081\n", "\n", "no *_LISTEN"),
        ] {
            let problems = check_ports(&drifted(from, to));
            assert!(problems.iter().any(|p| p.contains(what)), "{from} -> {to}: {problems:?}");
        }
    }

    #[test]
    fn another_kafka_version_fails() {
        let s = drifted("apache/kafka:4.1.1", "apache/kafka:3.9.0");
        assert_eq!(check_kafka(&s, "4.1.1").len(), 1);
        let mut none = committed();
        none.retain(|_, s| !s.image.as_deref().unwrap_or_default().contains("kafka"));
        assert_eq!(check_kafka(&none, "4.1.1"), ["no apache/kafka service"]);
    }

    /// Compose v2 is installed by `cargo xtask test` before the tests run; elsewhere it may be missing.
    fn have_compose_v2() -> bool {
        let have = Command::new("docker").args(["compose", "version", "--short"]).output().is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).trim_start_matches('v').starts_with('2')
        });
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(have || !ci, "Compose v2 (`docker compose`) is missing under CI=true");
        if !have {
            eprintln!("docker compose (v2) is not installed: skipped (`cargo xtask test` installs it)");
        }
        have
    }

    #[test]
    fn the_cluster_overlay_has_three_voters_min_isr_two_and_every_client_on_all_three() {
        if !have_compose_v2() {
            return;
        }
        let cluster = parse(&config(&root(), &[COMPOSE_FILE, CLUSTER_FILE], &["load-test"]).unwrap()).unwrap();
        assert_eq!(check_cluster(&cluster), Vec::<String>::new());
        assert_eq!(check_ports(&cluster), Vec::<String>::new());
        assert_eq!(check_kafka(&cluster, crate::kafka::VERSION), Vec::<String>::new());
        let single = parse(&config(&root(), &[COMPOSE_FILE], &["load-test"]).unwrap()).unwrap();
        assert!(!check_cluster(&single).is_empty(), "the main file is one node");
        // Drift in the overlay is found.
        let dir = std::env::temp_dir().join(format!("openbank-compose-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(root().join(COMPOSE_FILE), dir.join(COMPOSE_FILE)).unwrap();
        let overlay = std::fs::read_to_string(root().join(CLUSTER_FILE)).unwrap();
        for (from, to, what) in [
            (",3@kafka-3:9093", "", "voters"),
            ("KAFKA_MIN_INSYNC_REPLICAS: 2", "KAFKA_MIN_INSYNC_REPLICAS: 1", "KAFKA_MIN_INSYNC_REPLICAS"),
            (
                "KAFKA_BROKERS: kafka:9092,kafka-2:9092,kafka-3:9092",
                "KAFKA_BROKERS: kafka:9092",
                "KAFKA_BROKERS=kafka:9092 ",
            ),
        ] {
            assert!(overlay.contains(from), "{from} is not in {CLUSTER_FILE}");
            std::fs::write(dir.join(CLUSTER_FILE), overlay.replacen(from, to, 1)).unwrap();
            let drifted = parse(&config(&dir, &[COMPOSE_FILE, CLUSTER_FILE], &[]).unwrap()).unwrap();
            let problems = check_cluster(&drifted);
            assert!(problems.iter().any(|p| p.contains(what)), "{from} -> {to}: {problems:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compose_starts_with_no_env_and_rejects_a_broken_file() {
        if !have_compose_v2() {
            return;
        }
        // No .env: nothing is required (the secrets are generated at first start).
        let resolved = parse(&config(&root(), &[COMPOSE_FILE], &[]).unwrap()).unwrap();
        assert!(resolved.contains_key(SECRETS) && !resolved.contains_key(LOAD_TEST), "{:?}", resolved.keys());
        // A misspelt key is not a compose file.
        let dir = std::env::temp_dir().join(format!("openbank-compose-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = std::fs::read_to_string(root().join(COMPOSE_FILE)).unwrap();
        std::fs::write(dir.join(COMPOSE_FILE), text.replacen("healthcheck:", "healthchek:", 1)).unwrap();
        assert!(config(&dir, &[COMPOSE_FILE], &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_kafka_client_logs_in_as_itself() {
        let script = std::fs::read_to_string(root().join(SECRETS_SCRIPT)).unwrap();
        assert_eq!(check_principals(&committed(), &script), Vec::<String>::new());
        let shared = drifted("KAFKA_SASL_USERNAME: command-generator", "KAFKA_SASL_USERNAME: command-handler");
        let problems = check_principals(&shared, &script);
        assert!(problems.iter().any(|p| p.contains("`command-generator`")), "{problems:?}");
        let short = script.replace(" graphql-endpoint)", ")");
        assert!(check_principals(&committed(), &short).iter().any(|p| p.contains("makes Kafka passwords")));
    }

    #[test]
    fn ports_entries_parse_in_every_syntax() {
        let p = |y: &str| published(&serde_norway::from_str(y).unwrap());
        assert_eq!(p("\"8888:8888\""), Some(Published { host_ip: String::new(), container: 8888 }));
        assert_eq!(p("127.0.0.1:17888:17888/tcp"), Some(Published { host_ip: "127.0.0.1".into(), container: 17888 }));
        assert_eq!(p("{published: 8888, target: 8888}"), Some(Published { host_ip: String::new(), container: 8888 }));
        assert_eq!(p("not-a-port"), None);
    }
}

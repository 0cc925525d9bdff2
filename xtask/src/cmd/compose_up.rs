//! `cargo xtask compose-up`: the whole bank in containers, for real, from the checkout's committed
//! `docker-compose.yml` and `Dockerfile`, with no `.env`: what a person who clones and types `docker compose up`
//! gets. Exit 0 only if every check held:
//!
//! - `docker compose up --build -d`: every service healthy, the `secrets` and `synchronizer` one-shots exited 0,
//!   the employee password printed once by `secrets` and readable later with the documented command;
//! - a GraphQL round trip through :8888 (register, deposit, transfer, the balance);
//! - heartbeat `PUT /rate` on 127.0.0.1:17888 changes the rate;
//! - the `load-test` profile writes a run (and `run.json`) the gateway lists;
//! - the browser tests in Chromium against the web UI on :8888 (live updates over the websocket, the employee
//!   login, the results page with that run), screenshots kept with the logs;
//! - `bank-audit` (in the load-test image) passes, and as the heartbeat's Kafka principal it is refused; a `.env`'s
//!   EMPLOYEE_PASSWORD replaces the generated one;
//! - the cluster (docker-compose.cluster.yml), with a .env choosing the heartbeat's Kafka password: three brokers
//!   healthy and the password stored as chosen, one broker stopped and started again while transfers
//!   flow, every confirmed transfer stored once (`load-test chaos verify`), the audit passes;
//! - `docker compose down -v` leaves no container, network or volume of the project.
//!
//! A machine with no image registry gets stand-ins for the base images (`xtask/standins/build.sh`), and builds use
//! host networking through an override file that exists only for this run, so the files under test are the ones
//! users run, unchanged. As root, a missing engine (`docker.io`) or Compose v2 (built from the Go module proxy) is
//! installed and `dockerd` started; under `CI=true` a missing engine is a failure, never a skip.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::Paths;
use crate::{http, postgres, proc, setup};

/// The project name of the run (not the directory's, so a person's own compose stack of this checkout is not it).
const PROJECT: &str = "openbank-ci";
/// What the compose stack publishes on this machine.
const GATEWAY: &str = "127.0.0.1:8888";
const HEARTBEAT: &str = "127.0.0.1:17888";
/// Longest wait for the stack to be healthy after `up` (its build is timed apart).
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(300);

/// What a run measured, for the closing summary.
#[derive(Debug, Default)]
pub struct Outcome {
    pub checks: Vec<(String, bool)>,
    pub build: Option<Duration>,
    pub healthy: Option<Duration>,
}

/// `cargo xtask compose-up`.
pub fn run(paths: &Paths) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    // A dockerd this run started is stopped again at its end (containerd and the shims with it).
    let dockerd = ensure_engine(paths)?;
    let result = run_with_engine(paths, started);
    if let Some(pid) = dockerd {
        eprintln!("  stopping the dockerd this run started (pid {pid})");
        proc::stop(pid, "dockerd", Duration::from_secs(20));
    }
    result
}

fn run_with_engine(paths: &Paths, started: Instant) -> anyhow::Result<Outcome> {
    crate::compose::ensure_compose_v2(paths)?;
    for address in [GATEWAY, HEARTBEAT] {
        if proc::port_open(address) {
            bail!(
                "{address} is in use (the native stack? `cargo xtask down`): the compose stack publishes it; stop \
                 what holds it first"
            );
        }
    }
    standins(paths)?;
    let run = Run::new(paths)?;
    // A stack of an earlier, interrupted run.
    run.compose(&["down", "-v", "--remove-orphans"], &[]).status()?;
    let mut outcome = Outcome::default();
    let result = run.steps(&mut outcome);
    banner("docker compose down -v");
    let down = run.compose(&["down", "-v", "--remove-orphans"], &["cluster"]).status().is_ok_and(|s| s.success());
    let left = run.leftovers();
    if !left.is_empty() {
        eprintln!("FAIL left behind: {}", left.join(", "));
    }
    outcome
        .checks
        .push(("`docker compose down -v` leaves no container, network or volume".into(), down && left.is_empty()));
    if let Err(e) = result {
        eprintln!("FAIL compose: {e:#}");
        outcome.checks.push((format!("compose run: {e:#}"), false));
    }
    eprintln!("compose-up: {:.0} s in all", started.elapsed().as_secs_f64());
    Ok(outcome)
}

fn banner(s: &str) {
    eprintln!("\n==> compose: {s}");
}

/// Records one named check of the run (and prints it); returns whether it held.
fn check(outcome: &mut Outcome, name: &str, ok: bool) -> bool {
    eprintln!("{} compose: {name}", if ok { "ok  " } else { "FAIL" });
    outcome.checks.push((format!("compose: {name}"), ok));
    ok
}

/// The run's compose invocation: the committed files, an empty env file (no `.env`, whatever the checkout holds),
/// the build override, and where its logs go.
struct Run {
    root: PathBuf,
    dir: PathBuf,
    env_file: PathBuf,
    build_override: PathBuf,
    logs: PathBuf,
}

impl Run {
    fn new(paths: &Paths) -> anyhow::Result<Self> {
        paths.ensure_home()?;
        let logs = paths.logs().join("compose");
        std::fs::create_dir_all(&logs)?;
        let dir = std::env::temp_dir().join(format!("openbank-compose-up-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let env_file = dir.join("empty.env");
        std::fs::write(&env_file, "")?;
        let build_override = dir.join("build-network.yml");
        std::fs::write(&build_override, build_override_yaml(&paths.root.join(crate::compose::COMPOSE_FILE))?)?;
        Ok(Self { root: paths.root.clone(), dir, env_file, build_override, logs })
    }

    /// `docker compose` with the files of `overlays` (`cluster`: docker-compose.cluster.yml) and `args`.
    fn compose(&self, args: &[&str], overlays: &[&str]) -> Command {
        self.compose_with(&self.env_file, args, overlays)
    }

    /// [`Run::compose`] with `env_file` as the `.env`.
    fn compose_with(&self, env_file: &Path, args: &[&str], overlays: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.current_dir(&self.root)
            .env("DOCKER_BUILDKIT", "0")
            .env("COMPOSE_PROJECT_NAME", PROJECT)
            .env("DOCKER_GID", docker_gid())
            // The run's own settings only: nothing of the caller's environment may stand in for a missing .env.
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROFILES")
            .env_remove("POSTGRES_PASSWORD")
            .env_remove("EMPLOYEE_PASSWORD")
            .env_remove("COMPANY_ACCOUNT_TOKEN")
            .env_remove("KAFKA_PASSWORD_ADMIN")
            .env_remove("KAFKA_PASSWORD_HEARTBEAT")
            .env_remove("KAFKA_PASSWORD_COMMAND_GENERATOR")
            .env_remove("KAFKA_PASSWORD_COMMAND_HANDLER")
            .env_remove("KAFKA_PASSWORD_GRAPHQL_ENDPOINT")
            .args(["compose", "--env-file"])
            .arg(env_file)
            .args(["-f", crate::compose::COMPOSE_FILE]);
        for o in overlays {
            c.arg("-f").arg(format!("docker-compose.{o}.yml"));
        }
        c.arg("-f").arg(&self.build_override).args(args);
        c
    }

    /// A one-off container of the load-test profile: `docker compose --profile load-test run --rm -T <options>
    /// load-test <args>`, without stdin.
    fn load_test(&self, options: &[&str], args: &[&str], overlays: &[&str]) -> Command {
        let mut a = vec!["--profile", "load-test", "run", "--rm", "-T"];
        a.extend_from_slice(options);
        a.push("load-test");
        a.extend_from_slice(args);
        let mut c = self.compose(&a, overlays);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `args`; stdout (and stderr) captured; Ok(output) on success.
    fn output(&self, args: &[&str], overlays: &[&str]) -> anyhow::Result<String> {
        let out = self.compose(args, overlays).stdin(Stdio::null()).output().context("cannot run docker compose")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "docker compose {} failed: {}{}",
                args.join(" "),
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(text)
    }

    /// The whole sequence; each check is recorded in `outcome` as it ends.
    fn steps(&self, outcome: &mut Outcome) -> anyhow::Result<()> {
        banner("docker compose build (the committed Dockerfile, every target)");
        let t = Instant::now();
        let built = self.compose(&["--profile", "load-test", "build"], &[]).status()?.success();
        let build_time = t.elapsed();
        outcome.build = Some(build_time);
        eprintln!("build: {:.0} s", build_time.as_secs_f64());
        if !check(outcome, "the images build", built) {
            bail!("the images did not build");
        }
        image_sizes();

        banner("docker compose up -d, with no .env");
        let t = Instant::now();
        let up = self.compose(&["up", "-d"], &[]).status()?.success();
        let healthy = up && self.wait_healthy(&[], &[]).inspect_err(|e| eprintln!("  {e:#}")).is_ok();
        let took = t.elapsed();
        self.save_logs("up");
        if healthy {
            outcome.healthy = Some(took);
            eprintln!("first up to healthy: {:.1} s", took.as_secs_f64());
        }
        if !check(outcome, "`up` with no .env: every service healthy, `secrets` and `synchronizer` exited 0", healthy) {
            bail!("the stack did not become healthy (logs: {})", self.logs.display());
        }
        memory("idle");

        let logs = self.output(&["logs", "--no-color", "secrets"], &[]).unwrap_or_default();
        let password = self.output(&["run", "--rm", "-T", "secrets", "employee-password"], &[])?.trim().to_owned();
        let shown = logs.matches(&password).count();
        check(
            outcome,
            "the generated employee password is shown once at first start and by `run --rm secrets employee-password`",
            password.len() >= 24 && shown == 1,
        );
        // Never in an image or in a container's settings.
        let inspected =
            docker_text(&["inspect", &format!("{PROJECT}-graphql-endpoint-1"), "open-bank/graphql-endpoint"]);
        check(
            outcome,
            "no secret in an image's or a container's configuration",
            !inspected.is_empty() && !inspected.contains(&password),
        );

        banner("a GraphQL round trip through :8888");
        let round_trip = crate::http::gateway_check(GATEWAY);
        match &round_trip {
            Ok(line) => eprintln!("  {line}"),
            Err(e) => eprintln!("  {e:#}"),
        }
        check(outcome, "GraphQL round trip through :8888 (register, deposit, transfer, balance)", round_trip.is_ok());

        banner("heartbeat PUT /rate on 127.0.0.1:17888");
        check(outcome, "heartbeat `PUT /rate` on 127.0.0.1:17888 changes the rate", rate_changes());

        banner("the load-test profile");
        let before = load_test_runs();
        let loaded = self
            .load_test(&[], &["run", "--rates", "50,100", "--step-secs", "10", "--users", "50"], &[])
            .status()?
            .success();
        let after = load_test_runs();
        eprintln!("  the gateway lists {before} load-test runs before, {after} after");
        check(outcome, "`--profile load-test run` writes a run the gateway lists", loaded && after == before + 1);
        let sampled = newest_run_components();
        eprintln!("  its CPU and memory samples (the Docker Engine API): {}", sampled.join(", "));
        check(
            outcome,
            "the run sampled the compose project's containers and costed its steps",
            ["graphql-endpoint", "command-handler", "kafka", "postgres"].iter().all(|c| sampled.iter().any(|s| s == c))
                && newest_run_costed(),
        );
        memory("after the load test");

        banner("browser tests in Chromium against the web UI on :8888");
        let screenshots = self.logs.join("screenshots");
        let paths = Paths::new(false)?;
        crate::frontend::build(&paths)?;
        crate::frontend::ensure_chromium()?;
        let counts =
            crate::frontend::browser_tests(&paths, &format!("http://{GATEWAY}"), Some(&password), &screenshots)?;
        eprintln!("  browser tests: {} passed, {} failed", counts.passed, counts.failed);
        check(
            outcome,
            "the browser tests pass against the compose stack's web UI",
            counts.passed > 0 && counts.failed == 0,
        );

        banner("bank-audit in the load-test image");
        check(outcome, "`bank-audit` passes against the compose stack", self.audit(&[]));
        check(
            outcome,
            "Kafka refuses a principal what its ACLs do not allow (`bank-audit` as `heartbeat`)",
            self.audit_refused_as_heartbeat(),
        );
        self.save_logs("single");

        banner("a .env overrides a generated secret");
        check(
            outcome,
            "a .env's EMPLOYEE_PASSWORD replaces the generated one; without it the secret is kept",
            self.env_overrides(&password),
        );

        banner("the cluster: docker-compose.cluster.yml, one broker stopped while transfers flow");
        self.compose(&["down", "-v"], &[]).status()?;
        let cluster = &["cluster"];
        // A fresh stack whose .env chooses one Kafka password (the heartbeat's): the storage is formatted with it.
        let chosen = format!("kafka-chosen-{}", std::process::id());
        let cluster_env = self.dir.join("cluster.env");
        std::fs::write(&cluster_env, format!("KAFKA_PASSWORD_HEARTBEAT={chosen}\n"))?;
        let up = self.compose_with(&cluster_env, &["up", "-d"], cluster).status()?.success();
        let healthy = up && self.wait_healthy(cluster, &["kafka", "kafka-2", "kafka-3"]).is_ok();
        if !check(outcome, "the cluster: three brokers healthy, every service healthy", healthy) {
            self.save_logs("cluster");
            bail!("the cluster did not become healthy (logs: {})", self.logs.display());
        }
        let stored = self
            .output(
                &[
                    "run",
                    "--rm",
                    "-T",
                    "--no-deps",
                    "--entrypoint",
                    "cat",
                    "secrets",
                    "/run/openbank/kafka_password_heartbeat",
                ],
                &[],
            )
            .unwrap_or_default();
        check(
            outcome,
            "a .env's KAFKA_PASSWORD_HEARTBEAT is the heartbeat's Kafka password (stored, and the heartbeat healthy with it)",
            stored.trim() == chosen,
        );
        let held = self.cluster_fault(cluster);
        self.save_logs("cluster");
        check(
            outcome,
            "a broker stopped and started while transfers flow: every confirmed transfer stored once",
            held.is_ok(),
        );
        if let Err(e) = &held {
            eprintln!("  {e:#}");
        }
        let audited = check(outcome, "`bank-audit` passes against the cluster", self.audit(cluster));
        if held.is_err() || !audited {
            self.save_logs("cluster");
            self.print_complaints("cluster");
        }
        Ok(())
    }

    /// Waits until every container of the stack is healthy (or, for the one-shots, exited 0) and `must` are among
    /// the healthy ones.
    fn wait_healthy(&self, overlays: &[&str], must: &[&str]) -> anyhow::Result<()> {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        let mut last = String::new();
        loop {
            let text =
                self.output(&["ps", "-a", "--format", "{{.Service}} {{.State}} {{.Health}} {{.ExitCode}}"], overlays)?;
            let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
            let one_shot = |s: &str| matches!(s, "secrets" | "synchronizer");
            let failed: Vec<String> = rows
                .iter()
                .filter(|r| {
                    r.len() >= 2 && (r[1] == "exited" || r[1] == "dead") && !(one_shot(r[0]) && r.last() == Some(&"0"))
                })
                .map(|r| r.join(" "))
                .collect();
            if !failed.is_empty() {
                bail!("exited: {}", failed.join("; "));
            }
            let ready = |r: &Vec<&str>| {
                if one_shot(r[0]) { r.get(1) == Some(&"exited") } else { r.get(2) == Some(&"healthy") }
            };
            let all = rows.len() >= 8 && rows.iter().all(|r| r.len() >= 2 && ready(r));
            let named = must.iter().all(|m| rows.iter().any(|r| r.first() == Some(m) && r.get(2) == Some(&"healthy")));
            if all && named {
                return Ok(());
            }
            if text != last {
                eprintln!("  {}", text.lines().map(str::trim).collect::<Vec<_>>().join(" | "));
                last = text;
            }
            if Instant::now() > deadline {
                bail!("not healthy after {} s: {}", HEALTHY_TIMEOUT.as_secs(), last.trim());
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// `secrets` run again with a `.env` naming EMPLOYEE_PASSWORD writes that one; run again without, it keeps it.
    fn env_overrides(&self, generated: &str) -> bool {
        let chosen = format!("chosen-{}-{}", std::process::id(), generated.len());
        let env = self.dir.join("override.env");
        if std::fs::write(&env, format!("EMPLOYEE_PASSWORD={chosen}\n")).is_err() {
            return false;
        }
        let read = || self.output(&["run", "--rm", "-T", "secrets", "employee-password"], &[]).unwrap_or_default();
        let set = self.compose_with(&env, &["run", "--rm", "-T", "secrets"], &[]).stdin(Stdio::null()).status();
        let after_set = read();
        let again = self.compose(&["run", "--rm", "-T", "secrets"], &[]).stdin(Stdio::null()).status();
        let kept = read();
        eprintln!("  with the .env: {}; without it again: {}", after_set.trim() == chosen, kept.trim() == chosen);
        set.is_ok_and(|s| s.success())
            && again.is_ok_and(|s| s.success())
            && after_set.trim() == chosen
            && kept.trim() == chosen
    }

    /// `bank-audit` in the load-test image; whether it passed.
    fn audit(&self, overlays: &[&str]) -> bool {
        self.load_test(&["--no-deps", "--entrypoint", "bank-audit"], &[], overlays).status().is_ok_and(|s| s.success())
    }

    /// `bank-audit` as the heartbeat's principal, which may write `heartbeat` and nothing else: whether Kafka
    /// refused it (an authorization error, not a wrong password or a missing broker).
    fn audit_refused_as_heartbeat(&self) -> bool {
        let options = [
            "--no-deps",
            "-e",
            "KAFKA_SASL_USERNAME=heartbeat",
            "-e",
            "KAFKA_SASL_PASSWORD_FILE=/run/openbank/kafka_password_heartbeat",
            "--entrypoint",
            "bank-audit",
        ];
        let out = self.load_test(&options, &[], &[]).output();
        let Ok(out) = out else { return false };
        let text =
            String::from_utf8_lossy(&out.stdout).to_lowercase() + &String::from_utf8_lossy(&out.stderr).to_lowercase();
        let refused = !out.status.success() && text.contains("authorization failed");
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        eprintln!("  bank-audit as heartbeat: {} ({})", out.status, tail.join(" | "));
        refused
    }

    /// Transfers for 40 s through the gateway; kafka-2 stops 10 s in and starts again 15 s later; then every
    /// transfer the client saw CONFIRMED must be stored once.
    fn cluster_fault(&self, overlays: &[&str]) -> anyhow::Result<()> {
        let out = "/results/compose-cluster/transfers.json";
        let lt = |args: &[&str]| self.load_test(&["--no-deps"], args, overlays);
        let mut drive = lt(&[
            "chaos",
            "drive",
            "--duration",
            "40",
            "--rate",
            "20",
            "--users",
            "16",
            "--endpoints",
            "http://graphql-endpoint:8888",
            "--out",
            out,
        ])
        .spawn()
        .context("cannot start the load tester")?;
        std::thread::sleep(Duration::from_secs(10));
        let stopped = self.compose(&["stop", "kafka-2"], overlays).status()?.success();
        eprintln!("  kafka-2 stopped ({stopped}); transfers go on with two brokers (min.insync.replicas 2)");
        std::thread::sleep(Duration::from_secs(15));
        let started = self.compose(&["start", "kafka-2"], overlays).status()?.success();
        eprintln!("  kafka-2 started again ({started})");
        let driven = drive.wait()?.success();
        anyhow::ensure!(stopped && started, "kafka-2 could not be stopped and started");
        anyhow::ensure!(driven, "the transfers' drive failed");
        let verified = lt(&["chaos", "verify", "--transfers", out]).status()?.success();
        anyhow::ensure!(verified, "load-test chaos verify found problems");
        Ok(())
    }

    /// Every container's log of the project into the run's log folder (`<stage>-<service>.log`).
    fn save_logs(&self, stage: &str) {
        let Ok(names) = self.output(&["ps", "-a", "--format", "{{.Service}}"], &["cluster"]) else { return };
        for service in names.lines().map(str::trim).filter(|s| !s.is_empty()) {
            if let Ok(text) = self.output(&["logs", "--no-color", service], &["cluster"]) {
                let _ = std::fs::write(self.logs.join(format!("{stage}-{service}.log")), text);
            }
        }
    }

    /// The last warnings and errors each service of `stage` logged (from the saved logs), for a run whose logs are
    /// gone with its machine.
    fn print_complaints(&self, stage: &str) {
        const SERVICES: [&str; 5] =
            ["command-handler", "graphql-endpoint", "command-generator", "heartbeat", "synchronizer"];
        for service in SERVICES {
            let Ok(text) = std::fs::read_to_string(self.logs.join(format!("{stage}-{service}.log"))) else { continue };
            let complaints: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
                .collect();
            eprintln!("  {service}: {} warnings and errors logged; the last ones:", complaints.len());
            for line in complaints.iter().rev().take(8).rev() {
                eprintln!("    {}", line.chars().take(400).collect::<String>());
            }
        }
    }

    /// Containers, networks and volumes of the project that are still there.
    fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={PROJECT}");
        let mut left = Vec::new();
        for (what, args) in [
            ("container", vec!["ps", "-a", "-q", "--filter", &label]),
            ("network", vec!["network", "ls", "-q", "--filter", &label]),
            ("volume", vec!["volume", "ls", "-q", "--filter", &label]),
        ] {
            let out =
                Command::new("docker").args(&args).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            for id in out.unwrap_or_default().lines().filter(|l| !l.trim().is_empty()) {
                left.push(format!("{what} {id}"));
            }
        }
        left
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The override that gives every built service host networking for its build (the only way out of a container
/// on a machine whose registries are reached through its own name resolution); nothing else.
pub fn build_override_yaml(compose_file: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(compose_file).with_context(|| format!("cannot read {}", compose_file.display()))?;
    let services = crate::compose::parse(&text)?;
    let mut out = String::from("# Written by `cargo xtask compose-up` for its run only.\nservices:\n");
    for (name, s) in &services {
        if s.target.is_some() {
            out.push_str(&format!("  {name}:\n    build:\n      network: host\n"));
        }
    }
    Ok(out)
}

/// The group of the Docker socket (the load tester reads container stats through it).
fn docker_gid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/var/run/docker.sock").map_or_else(|_| "0".to_owned(), |m| m.gid().to_string())
}

/// `docker info` answers; as root, installs `docker.io` and starts `dockerd` when it does not (returning its pid).
fn ensure_engine(paths: &Paths) -> anyhow::Result<Option<u32>> {
    let answers = || {
        Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if answers() {
        return Ok(None);
    }
    if !postgres::is_root() {
        bail!("no Docker engine answers (`docker info`); start dockerd, or run as root and xtask starts it");
    }
    if Command::new("dockerd").arg("--version").output().is_err() {
        setup::install(&[setup::Need {
            package: "docker.io",
            what: "the Docker engine, for `cargo xtask compose-up`".into(),
        }])?;
    }
    let log = paths.logs().join("dockerd.log");
    std::fs::create_dir_all(paths.logs())?;
    eprintln!("  starting dockerd (log: {})", log.display());
    let pid = proc::spawn_detached(&mut Command::new("dockerd"), &log)?;
    proc::wait_until("dockerd", Duration::from_secs(60), answers)?;
    Ok(Some(pid))
}

/// The stand-in base images, where the machine has none of these names (`xtask/standins/build.sh`).
fn standins(paths: &Paths) -> anyhow::Result<()> {
    banner("base images (stand-ins built locally where no registry is reachable)");
    let toolchain = std::fs::read_to_string(paths.root.join("rust-toolchain.toml"))?;
    let rust = toolchain
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("channel")
                .map(|v| v.trim_start_matches([' ', '=']).trim().trim_matches('"').to_owned())
        })
        .context("no channel in rust-toolchain.toml")?;
    // The Debian stand-in is made with debootstrap; as root it is installed when missing (a new machine).
    let has_debootstrap =
        Command::new("sh").args(["-c", "command -v debootstrap"]).output().is_ok_and(|o| o.status.success());
    if !has_debootstrap && postgres::is_root() {
        setup::install(&[setup::Need {
            package: "debootstrap",
            what: "the Debian base image's stand-in, for `cargo xtask compose-up`".into(),
        }])?;
    }
    let ok = Command::new("bash")
        .arg(paths.root.join("xtask/standins/build.sh"))
        .env("RUST_VERSION", &rust)
        .env("KAFKA_VERSION", crate::kafka::VERSION)
        .env("OPENBANK_CACHE", &paths.cache)
        .status()
        .context("cannot run xtask/standins/build.sh")?
        .success();
    anyhow::ensure!(ok, "the stand-in base images could not be built");
    Ok(())
}

/// `docker <args>`'s output (empty when it fails: these lines are information, not checks).
fn docker_text(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Each image of the project with its size, against what the README says.
fn image_sizes() {
    let out = docker_text(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}", "open-bank/*"]);
    eprintln!("  image sizes (the README says: each service image is the Debian slim base plus one binary):");
    out.lines().for_each(|line| eprintln!("    {line}"));
}

/// Memory and CPU of every container of the project, now.
fn memory(when: &str) {
    let out = docker_text(&["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.CPUPerc}}"]);
    eprintln!("  memory and CPU per container, {when}:");
    out.lines().filter(|l| l.starts_with(PROJECT)).for_each(|line| eprintln!("    {line}"));
}

/// Sets the heartbeat's rate and reads it back changed, then restores it.
fn rate_changes() -> bool {
    let read = || http::call(HEARTBEAT, "GET", "/rate", None).map(|(_, b)| b).unwrap_or_default();
    let before = read();
    let set = http::call(HEARTBEAT, "PUT", "/rate", Some(r#"{"beats_per_second": 37}"#)).map(|(s, _)| s);
    let after = read();
    eprintln!("  GET /rate: {before} -> PUT answered {set:?} -> {after}");
    let restored = http::call(HEARTBEAT, "PUT", "/rate", Some(&before)).is_some_and(|(s, _)| s < 300);
    matches!(set, Some(s) if s < 300) && after.contains("37") && !before.contains("37") && restored
}

/// How many load-test runs the gateway lists.
/// The components with CPU and memory samples in the newest run the gateway lists.
fn newest_run_components() -> Vec<String> {
    let id = http::graphql(GATEWAY, None, "{ loadTestRuns { id } }")
        .and_then(|r| r["data"]["loadTestRuns"][0]["id"].as_str().map(str::to_owned));
    let Some(id) = id.filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))) else {
        return Vec::new();
    };
    let query = format!(r#"{{ loadTestResources(id: "{id}") {{ component samples {{ t }} }} }}"#);
    let answer = http::graphql(GATEWAY, None, &query);
    let series = answer.as_ref().and_then(|r| r["data"]["loadTestResources"].as_array());
    series
        .into_iter()
        .flatten()
        .filter(|s| s["samples"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|s| s["component"].as_str().map(str::to_owned))
        .collect()
}

/// Whether every step of the newest run has the bank's CPU per operation.
fn newest_run_costed() -> bool {
    let answer = http::graphql(GATEWAY, None, "{ loadTestRuns { steps { bankCpuUsPerOp } } }");
    let steps = answer.as_ref().and_then(|r| r["data"]["loadTestRuns"][0]["steps"].as_array().cloned());
    steps.is_some_and(|s| !s.is_empty() && s.iter().all(|st| st["bankCpuUsPerOp"].as_f64().is_some_and(|v| v > 0.0)))
}

fn load_test_runs() -> usize {
    http::graphql(GATEWAY, None, "{ loadTestRuns { id } }")
        .and_then(|r| r["data"]["loadTestRuns"].as_array().map(Vec::len))
        .unwrap_or(0)
}

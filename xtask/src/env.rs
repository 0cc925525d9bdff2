//! The settings every service and test gets (`Endpoints`), the stack's generated secrets, and `.openbank/env`.

use std::path::PathBuf;
use std::process::Command;

use bank_core::kafka_wire::Credentials;

use crate::paths::{Paths, write_private};
use crate::ports::Ports;
use crate::state::State;

/// Infrastructure settings handed to every service and test.
pub struct Endpoints {
    pub kafka_brokers: String,
    pub registry_url: String,
    pub database_url: String,
    /// Token of the company account, shared by the handler (which sets it) and the generator (which pays salaries).
    pub company_token: String,
    /// Password of the gateway's bank employee (user `employee`).
    pub employee_password: String,
    /// The built web UI the gateway serves at `/`.
    pub frontend_dir: PathBuf,
    pub external_kafka: bool,
    pub external_registry: bool,
    pub external_database: bool,
    /// The port of every slot of the stack, as `up` picked them (`.openbank/state.json`).
    pub ports: Ports,
    /// The local Kafka's principals, the super user first (`crate::kafka_auth`); empty for an external Kafka,
    /// whose credentials come from the caller's environment.
    pub kafka_principals: Vec<Credentials>,
}

impl Endpoints {
    pub fn resolve(paths: &Paths) -> anyhow::Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let state = State::load(&paths.state_file());
        let ports = state.ports.clone();
        let database = var("DATABASE_URL");
        let database_url = match &database {
            Some(url) => url.clone(),
            None => database_url(paths, &password(paths)?, ports.port("postgres")),
        };
        let external_kafka = var("KAFKA_BROKERS").is_some();
        Ok(Self {
            kafka_principals: if external_kafka { Vec::new() } else { crate::kafka_auth::all(paths)? },
            external_kafka,
            external_registry: var("SCHEMA_REGISTRY_URL").is_some(),
            external_database: database.is_some(),
            // Every node of the cluster `up` runs, so clients bootstrap while one of them is down.
            kafka_brokers: var("KAFKA_BROKERS")
                .unwrap_or_else(|| ports.kafka_bootstrap(crate::state::recorded_instances(&state, "kafka"))),
            registry_url: var("SCHEMA_REGISTRY_URL").unwrap_or_else(|| ports.url("schema-registry")),
            database_url,
            company_token: match var("COMPANY_ACCOUNT_TOKEN") {
                Some(t) => t,
                None => crate::paths::secret(paths, "company-token")?,
            },
            employee_password: match var("EMPLOYEE_PASSWORD") {
                Some(p) => p,
                None => crate::paths::secret(paths, "employee-password")?,
            },
            frontend_dir: paths.root.join("frontend").join("dist"),
            ports,
        })
    }

    /// The web UI and GraphQL API (the first gateway).
    pub fn graphql_url(&self) -> String {
        self.ports.url("graphql-endpoint")
    }

    /// Where a service instance (`heartbeat`, `command-handler-2`) listens: `127.0.0.1:<port>`.
    pub fn address(&self, instance: &str) -> String {
        self.ports.listen(instance)
    }

    /// The settings of a tool or test: the stack's addresses and secrets, and the Kafka super user.
    pub fn apply(&self, cmd: &mut Command) {
        if let Some(admin) = self.kafka_principals.first() {
            Self::kafka_as(cmd, admin);
        }
        cmd.env("KAFKA_BROKERS", &self.kafka_brokers)
            .env("SCHEMA_REGISTRY_URL", &self.registry_url)
            .env("DATABASE_URL", &self.database_url)
            .env("COMPANY_ACCOUNT_TOKEN", &self.company_token)
            .env("EMPLOYEE_PASSWORD", &self.employee_password)
            .env("FRONTEND_DIR", &self.frontend_dir)
            // The gateway's pipeline view reads the other services' metrics where they listen.
            .env("PIPELINE_HEARTBEAT_METRICS_URL", self.metrics_url("heartbeat"))
            .env("PIPELINE_GENERATOR_METRICS_URL", self.metrics_url("command-generator"))
            .env("PIPELINE_HANDLER_METRICS_URL", self.metrics_url("command-handler"));
    }

    /// The settings of the service `name`: as [`Self::apply`], but with its own Kafka principal. The synchronizer
    /// provisions as the super user and creates every principal's ACLs.
    pub fn apply_service(&self, cmd: &mut Command, name: &str) {
        self.apply(cmd);
        if self.kafka_principals.is_empty() {
            return;
        }
        if name == "synchronizer" {
            cmd.env("SYNCHRONIZER_KAFKA_ACLS", "true");
        } else if let Some(c) = self.kafka_principals.iter().find(|c| c.username == name) {
            Self::kafka_as(cmd, c);
        } else {
            // No Kafka for it (the schema registry): no Kafka password either.
            cmd.env_remove("KAFKA_SASL_USERNAME").env_remove("KAFKA_SASL_PASSWORD");
        }
    }

    fn kafka_as(cmd: &mut Command, c: &Credentials) {
        cmd.env("KAFKA_SASL_USERNAME", &c.username)
            .env("KAFKA_SASL_PASSWORD", &c.password)
            .env_remove("KAFKA_SASL_PASSWORD_FILE");
    }

    fn metrics_url(&self, instance: &str) -> String {
        format!("http://{}/metrics", self.address(instance))
    }

    /// `.openbank/env`'s settings: where everything listens, for `source` and for every tool and test (the
    /// integration tests through `bank_core::testing`, the load test, the browser tests).
    pub fn env_pairs(&self) -> Vec<(&'static str, String)> {
        let admin =
            self.kafka_principals.first().into_iter().flat_map(|c| {
                [("KAFKA_SASL_USERNAME", c.username.clone()), ("KAFKA_SASL_PASSWORD", c.password.clone())]
            });
        admin
            .chain([
                ("KAFKA_BROKERS", self.kafka_brokers.clone()),
                ("SCHEMA_REGISTRY_URL", self.registry_url.clone()),
                ("DATABASE_URL", self.database_url.clone()),
                ("COMPANY_ACCOUNT_TOKEN", self.company_token.clone()),
                ("GRAPHQL_URL", self.graphql_url()),
                ("HEARTBEAT_URL", format!("http://{}", self.address("heartbeat"))),
            ])
            .collect()
    }

    /// Writes `.openbank/env` (mode 0600: it holds the database password and the company token).
    pub fn write(&self, paths: &Paths) -> anyhow::Result<()> {
        let pairs = self.env_pairs();
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let text = bank_core::stack_env::render(
            "written by `cargo xtask up`; `source .openbank/env` to point tools at the local stack",
            &pairs,
        );
        write_private(&paths.env_file(), &text)
    }

    pub fn print_urls(&self, paths: &Paths) {
        let ui = self.graphql_url();
        eprintln!("  Web UI           {ui}/");
        eprintln!("  GraphiQL         {ui}/graphiql");
        eprintln!("  Bank employee    user `employee`, password in {}", paths.home.join("employee-password").display());
        if self.kafka_principals.is_empty() {
            eprintln!("  Kafka            {}", self.kafka_brokers);
        } else {
            eprintln!(
                "  Kafka            {} (SASL/SCRAM-SHA-256; user `admin`, password in {})",
                self.kafka_brokers,
                paths.home.join("kafka/credentials/admin").display()
            );
        }
        eprintln!("  Schema registry  {}/subjects", self.registry_url);
        eprintln!("  PostgreSQL       {}", bank_core::redact::redact_url(&self.database_url));
        eprintln!("  Logs             {}", paths.logs().join("latest").display());
        eprintln!("  Settings         source {}", paths.env_file().display());
        let moved: Vec<String> =
            self.ports.moved().iter().map(|(slot, from, to)| format!("{slot} {from} → {to}")).collect();
        if !moved.is_empty() {
            eprintln!("  Ports moved      {} (their defaults are taken)", moved.join(", "));
        }
    }
}

/// The local database password: generated once from the OS CSPRNG, kept in `.openbank/pg-password` (0600).
pub fn password(paths: &Paths) -> anyhow::Result<String> {
    crate::paths::secret(paths, "pg-password")
}

/// The checkout's role and database, `openbank_<hash of the checkout's path>`. Several clones of the repository
/// share the system cluster but each keeps its Kafka data in its own `.openbank/data`, so each needs its own
/// database: offsets and results stored for one clone's topics mean nothing to another's.
pub fn database_name(paths: &Paths) -> String {
    let root = std::fs::canonicalize(&paths.root).unwrap_or_else(|_| paths.root.clone());
    // FNV-1a: stable across Rust releases (std's hasher is not), so a checkout keeps its database.
    let hash = root
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("openbank_{:08x}", hash as u32)
}

pub fn database_url(paths: &Paths, password: &str, port: u16) -> String {
    let name = database_name(paths);
    format!("postgres://{name}:{password}@localhost:{port}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_env_file_carries_the_picked_ports_and_reads_back_unchanged() {
        let base = std::env::temp_dir().join(format!("openbank-env-{}", std::process::id()));
        let paths = Paths::at(&base);
        paths.ensure_home().unwrap();
        let mut ports = Ports::default();
        ports.set("graphql-endpoint", 8890);
        ports.set("heartbeat", 17889);
        ports.set("kafka", 9194);
        ports.set("schema-registry", 8082);
        let endpoints = Endpoints {
            kafka_brokers: ports.kafka_bootstrap(1),
            registry_url: ports.url("schema-registry"),
            database_url: database_url(&paths, "pw'with quote", 5433),
            company_token: "0123abcd".into(),
            employee_password: "not written".into(),
            frontend_dir: base.join("frontend/dist"),
            external_kafka: false,
            external_registry: false,
            external_database: false,
            ports,
            kafka_principals: crate::kafka_auth::all(&paths).unwrap(),
        };
        endpoints.write(&paths).unwrap();
        let file = paths.env_file();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&file).unwrap();
        let back = bank_core::stack_env::parse(&text);
        let pairs = endpoints.env_pairs();
        assert_eq!(back.len(), pairs.len(), "{text}");
        for (k, v) in &pairs {
            assert_eq!(&back[*k], v, "{k}");
        }
        assert_eq!(back["KAFKA_BROKERS"], "localhost:9194");
        assert_eq!(back["KAFKA_SASL_USERNAME"], "admin");
        assert_eq!(back["KAFKA_SASL_PASSWORD"], endpoints.kafka_principals[0].password);
        assert_eq!(back["SCHEMA_REGISTRY_URL"], "http://localhost:8082");
        assert_eq!(back["GRAPHQL_URL"], "http://localhost:8890");
        assert_eq!(back["HEARTBEAT_URL"], "http://127.0.0.1:17889");
        assert!(back["DATABASE_URL"].contains("pw'with quote@localhost:5433/"), "{}", back["DATABASE_URL"]);
        assert!(!text.contains("not written"), "the employee password stays in its own file");
        std::fs::remove_dir_all(&base).unwrap();
    }
}

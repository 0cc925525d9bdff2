//! The settings every service and test gets (`Endpoints`), the stack's generated secrets, and `.openbank/env`.

use bank_core::ports;
use std::path::PathBuf;
use std::process::Command;

use crate::paths::{Paths, write_private};
use crate::postgres;

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
}

impl Endpoints {
    pub fn resolve(paths: &Paths) -> anyhow::Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let database = var("DATABASE_URL");
        let database_url = match &database {
            Some(url) => url.clone(),
            None => postgres::database_url(paths, &password(paths)?),
        };
        Ok(Self {
            external_kafka: var("KAFKA_BROKERS").is_some(),
            external_registry: var("SCHEMA_REGISTRY_URL").is_some(),
            external_database: database.is_some(),
            // Every node of the cluster `up` runs, so clients bootstrap while one of them is down.
            kafka_brokers: var("KAFKA_BROKERS").unwrap_or_else(|| {
                let state = crate::state::State::load(&paths.state_file());
                crate::kafka::bootstrap(crate::component::recorded_instances(&state, "kafka"))
            }),
            registry_url: var("SCHEMA_REGISTRY_URL").unwrap_or_else(|| ports::SCHEMA_REGISTRY_URL.to_owned()),
            database_url,
            company_token: match var("COMPANY_ACCOUNT_TOKEN") {
                Some(t) => t,
                None => secret(paths, "company-token")?,
            },
            employee_password: match var("EMPLOYEE_PASSWORD") {
                Some(p) => p,
                None => secret(paths, "employee-password")?,
            },
            frontend_dir: paths.root.join("frontend").join("dist"),
        })
    }

    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("KAFKA_BROKERS", &self.kafka_brokers)
            .env("SCHEMA_REGISTRY_URL", &self.registry_url)
            .env("DATABASE_URL", &self.database_url)
            .env("COMPANY_ACCOUNT_TOKEN", &self.company_token)
            .env("EMPLOYEE_PASSWORD", &self.employee_password)
            .env("FRONTEND_DIR", &self.frontend_dir);
    }

    /// `.openbank/env`, for `source` and for the integration tests (`bank_core::testing`).
    pub fn write(&self, paths: &Paths) -> anyhow::Result<()> {
        write_private(
            &paths.env_file(),
            &format!(
                "# written by `cargo xtask up`; `source .openbank/env` to point tools at the local stack\n\
                 export KAFKA_BROKERS='{}'\nexport SCHEMA_REGISTRY_URL='{}'\nexport DATABASE_URL='{}'\n\
                 export COMPANY_ACCOUNT_TOKEN='{}'\n",
                self.kafka_brokers, self.registry_url, self.database_url, self.company_token
            ),
        )
    }

    pub fn print_urls(&self, paths: &Paths) {
        eprintln!("  Web UI           {}/", ports::GRAPHQL_URL);
        eprintln!("  GraphiQL         {}/graphiql", ports::GRAPHQL_URL);
        eprintln!("  Bank employee    user `employee`, password in {}", paths.home.join("employee-password").display());
        eprintln!("  Kafka            {}", self.kafka_brokers);
        eprintln!("  Schema registry  {}/subjects", self.registry_url);
        eprintln!("  PostgreSQL       {}", bank_core::redact::redact_url(&self.database_url));
        eprintln!("  Logs             {}", paths.logs().join("latest").display());
        eprintln!("  Settings         source {}", paths.env_file().display());
    }
}

/// The local database password: generated once from the OS CSPRNG, kept in `.openbank/pg-password` (0600).
pub fn password(paths: &Paths) -> anyhow::Result<String> {
    secret(paths, "pg-password")
}

/// A secret generated once from the OS CSPRNG and kept in `.openbank/<name>` (0600).
fn secret(paths: &Paths, name: &str) -> anyhow::Result<String> {
    let file = paths.home.join(name);
    if let Ok(p) = std::fs::read_to_string(&file)
        && !p.trim().is_empty()
    {
        return Ok(p.trim().to_owned());
    }
    let mut buf = [0u8; 18];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let p: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    paths.ensure_home()?;
    write_private(&file, &p)?;
    Ok(p)
}

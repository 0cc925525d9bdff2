//! Fixtures for the command-handler tests: a private topic prefix and database on the real stack of
//! `cargo xtask up`, a producer for commands, and readers for results, topics and the audit.
#![allow(dead_code)]

use bank_audit::{Auditor, Report};
use bank_core::avro::{AvroRecord, ConfirmAccountCreation, ConfirmMoneyTransfer};
use bank_core::config::DatabaseArgs;
use bank_core::kafka::Producer;
use bank_core::provision;
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use bank_core::testing::{DeleteTopicsOnDrop, infra_missing, kafka_brokers, registry_url, unique_prefix};
use bank_core::{CASH, CommandId, topics};
use clap::Parser;
use command_handler::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sqlx::Row;
use sqlx::postgres::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const COMPANY_TOKEN: &str = "0123456789abcdef0123456789abcdef";

pub struct Fixture {
    pub prefix: String,
    pub db_url: String,
    pub pool: PgPool,
    pub codec: Codec,
    pub producer: Producer,
    /// The fixture that provisioned the topics deletes them when it is dropped; attached clients do not.
    _topics: Option<DeleteTopicsOnDrop>,
}

impl Fixture {
    /// Provisions the contract's topics under a new prefix and creates an empty database.
    pub async fn new() -> Self {
        let prefix = unique_prefix();
        provision::sync(&kafka_brokers(), &registry_url(), &prefix, 1, Duration::from_secs(30), topics::TOPICS)
            .await
            .unwrap_or_else(|e| infra_missing("kafka or the schema registry", format!("{e:#}")));
        let (db_url, pool) = bank_core::testing::fresh_database().await;
        Self {
            _topics: Some(DeleteTopicsOnDrop(prefix.clone())),
            prefix,
            db_url,
            pool,
            codec: Codec::new(&registry_url()).unwrap(),
            producer: bank_core::kafka::producer(&kafka_brokers(), "handler-test").unwrap(),
        }
    }

    /// Clients for a fixture another runtime created (see [`shared`]).
    pub async fn attach(prefix: &str, db_url: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            db_url: db_url.to_owned(),
            pool: bank_core::db::connect(db_url, 4).await.unwrap(),
            codec: Codec::new(&registry_url()).unwrap(),
            producer: bank_core::kafka::producer(&kafka_brokers(), "handler-test").unwrap(),
            _topics: None,
        }
    }

    /// Handler configuration for this fixture (environment variables of the caller are overridden).
    pub fn config(&self, batch_size: u32) -> Config {
        let mut c = Config::parse_from(["command-handler"]);
        c.common = bank_core::testing::common_args(&self.prefix);
        c.database = DatabaseArgs { database_url: self.db_url.clone(), database_max_connections: 4 };
        c.batch_size = batch_size;
        c.company_token = Some(COMPANY_TOKEN.into());
        c.listen = "127.0.0.1:0".parse().unwrap();
        c
    }

    /// Environment for running the handler binary against this fixture.
    pub fn env(&self, batch_size: u32, listen: &str) -> Vec<(&'static str, String)> {
        let mut env = bank_core::testing::kafka_env();
        env.extend([
            ("SCHEMA_REGISTRY_URL", registry_url()),
            ("DATABASE_URL", self.db_url.clone()),
            ("TOPIC_PREFIX", self.prefix.clone()),
            ("COMMAND_HANDLER_BATCH_SIZE", batch_size.to_string()),
            ("COMMAND_HANDLER_LISTEN", listen.to_owned()),
            ("COMPANY_ACCOUNT_TOKEN", COMPANY_TOKEN.to_owned()),
            ("DATABASE_MAX_CONNECTIONS", "4".to_owned()),
        ]);
        env
    }

    /// Runs the handler in this process until the returned token is cancelled.
    pub async fn spawn_handler(&self, batch_size: u32) -> CancellationToken {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let token = CancellationToken::new();
        let config = self.config(batch_size);
        let t = token.clone();
        tokio::spawn(async move {
            if let Err(e) = command_handler::run(config, listener, t).await {
                panic!("handler failed: {e:#}");
            }
        });
        token
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn send_raw(&self, topic: &str, key: &[u8], payload: &[u8]) {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key).payload(payload);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("kafka accepted the record");
    }

    pub async fn encode<R: AvroRecord>(&self, topic: &str, r: &R) -> Vec<u8> {
        self.codec.encode(topic, r).await.expect("encode")
    }

    /// Sends a transfer keyed by the debited account, as the contract says.
    pub async fn send_transfer(&self, cmd: &ConfirmMoneyTransfer) {
        let topic = self.topic(topics::CONFIRM_MONEY_TRANSFER);
        let key = if cmd.from == CASH { &cmd.to } else { &cmd.from };
        let bytes = self.encode(&topic, cmd).await;
        self.send_raw(&topic, key.as_bytes(), &bytes).await;
    }

    pub async fn send_creation(&self) -> CommandId {
        let id = CommandId::new();
        let topic = self.topic(topics::CONFIRM_ACCOUNT_CREATION);
        let bytes = self.encode(&topic, &ConfirmAccountCreation { id, a_type: bank_core::avro::Atype::Auto }).await;
        self.send_raw(&topic, id.as_uuid().to_string().as_bytes(), &bytes).await;
        id
    }

    /// Creates `n` accounts and returns (iban, token) of each.
    pub async fn accounts(&self, n: usize) -> Vec<(String, String)> {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(self.send_creation().await);
        }
        let mut out = Vec::new();
        for id in ids {
            let (confirmed, reason) = self.result(id).await;
            assert!(confirmed, "account creation refused: {reason:?}");
            let row = sqlx::query(
                "SELECT a.iban, a.token FROM bank.results r JOIN bank.accounts a ON a.iban = r.iban WHERE r.id = $1",
            )
            .bind(id.as_uuid())
            .fetch_one(&self.pool)
            .await
            .unwrap();
            out.push((row.get(0), row.get(1)));
        }
        out
    }

    /// The stored result of a command, waiting up to 60 s for it.
    pub async fn result(&self, id: CommandId) -> (bool, Option<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let row = sqlx::query("SELECT confirmed, reason FROM bank.results WHERE id = $1")
                .bind(id.as_uuid())
                .fetch_optional(&self.pool)
                .await;
            if let Ok(Some(row)) = row {
                return (row.get(0), row.get(1));
            }
            assert!(Instant::now() < deadline, "no result for command {id:?} after 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn balance(&self, iban: &str) -> i64 {
        sqlx::query_scalar("SELECT balance FROM bank.accounts WHERE iban = $1")
            .bind(iban)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn results_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM bank.results").fetch_one(&self.pool).await.unwrap_or(0)
    }

    /// Waits until `n` results are stored.
    pub async fn wait_results(&self, n: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.results_count().await;
            if have >= n {
                return;
            }
            assert!(Instant::now() < deadline, "only {have} of {n} results after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn audit(&self) -> Report {
        let auditor = Auditor {
            pool: self.pool.clone(),
            brokers: kafka_brokers(),
            codec: Codec::new(&registry_url()).unwrap(),
            prefix: self.prefix.clone(),
        };
        let report = auditor.run(Duration::from_secs(90), &|m: &str| eprintln!("audit: {m}")).await.expect("audit ran");
        eprintln!("{report}");
        report
    }

    /// Every record on `name` (prefixed) so far: key, payload, headers.
    pub fn read_topic(&self, name: &str) -> Vec<Record> {
        let topic = self.topic(name);
        let c: BaseConsumer =
            bank_core::kafka::consumer_config(&kafka_brokers(), &format!("{}reader", self.prefix), "handler-test")
                .create()
                .unwrap();
        let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
        let mut tpl = TopicPartitionList::new();
        let mut remaining: HashMap<i32, i64> = HashMap::new();
        for p in md.topics()[0].partitions() {
            let (low, high) = c.fetch_watermarks(&topic, p.id(), Duration::from_secs(10)).unwrap();
            if high > low {
                tpl.add_partition_offset(&topic, p.id(), Offset::Beginning).unwrap();
                remaining.insert(p.id(), high);
            }
        }
        let mut out = Vec::new();
        if remaining.is_empty() {
            return out;
        }
        c.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !remaining.is_empty() && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (x.key.to_owned(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Record {
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers,
                    partition: m.partition(),
                    offset: m.offset(),
                });
                if remaining.get(&m.partition()).is_some_and(|h| m.offset() + 1 >= *h) {
                    remaining.remove(&m.partition());
                }
            }
        }
        out
    }

    /// Waits until `name` holds at least `n` records and returns them.
    pub async fn wait_topic(&self, name: &str, n: usize) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let records = self.read_topic(name);
            if records.len() >= n || Instant::now() > deadline {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
    pub partition: i32,
    pub offset: i64,
}

pub fn transfer(token: &str, amount: i64, from: &str, to: &str, description: &str) -> ConfirmMoneyTransfer {
    ConfirmMoneyTransfer {
        id: CommandId::new(),
        token: token.into(),
        amount,
        from: from.into(),
        to: to.into(),
        description: description.into(),
    }
}

/// A deterministic stream of `n` commands over `accounts`: deposits, withdrawals and transfers, some of
/// which fail for lack of funds.
pub fn stream(accounts: &[(String, String)], n: usize, seed: u64) -> Vec<ConfirmMoneyTransfer> {
    let mut rng = bank_core::rng::Rng::new(seed);
    let mut next = move || rng.next_u64();
    (0..n)
        .map(|_| {
            let a = &accounts[(next() % accounts.len() as u64) as usize];
            let b = &accounts[(next() % accounts.len() as u64) as usize];
            let amount = 100 + (next() % 40_000) as i64;
            match next() % 3 {
                0 => transfer(&a.1, amount, CASH, &a.0, "deposit"),
                1 => transfer(&a.1, amount, &a.0, CASH, "withdrawal"),
                _ if a.0 != b.0 => transfer(&a.1, amount, &a.0, &b.0, "transfer"),
                _ => transfer(&a.1, amount, CASH, &a.0, "deposit"),
            }
        })
        .collect()
}

/// Produces `cmds` as fast as the producer takes them (keyed by the debited account).
pub async fn produce_all(f: &Fixture, cmds: &[ConfirmMoneyTransfer]) {
    let topic = f.topic(topics::CONFIRM_MONEY_TRANSFER);
    let mut deliveries = Vec::with_capacity(cmds.len());
    for c in cmds {
        let key = if c.from == CASH { c.to.clone() } else { c.from.clone() };
        let bytes = f.encode(&topic, c).await;
        loop {
            let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).key(key.as_bytes()).payload(&bytes);
            match f.producer.send_result(record) {
                Ok(d) => {
                    deliveries.push(d);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    for d in deliveries {
        d.await.expect("delivery future").expect("kafka acknowledged the command");
    }
}

/// One fixture with a running handler for a whole test binary: it lives on its own runtime thread, and every
/// test attaches its own clients. Tests stay independent by using their own accounts.
pub async fn shared() -> Fixture {
    static SHARED: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (prefix, db_url) = SHARED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let f = Fixture::new().await;
                let _handler = f.spawn_handler(1000).await;
                tx.send((f.prefix.clone(), f.db_url.clone())).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("shared fixture started")
    });
    Fixture::attach(prefix, db_url).await
}

/// A command-handler process (the real binary), so a test can kill it with SIGKILL.
pub struct HandlerProcess {
    pub child: std::process::Child,
    pub listen: String,
}

impl HandlerProcess {
    pub fn spawn(f: &Fixture, batch_size: u32, name: &str) -> Self {
        let listen = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}{name}.log", f.prefix));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_command-handler"));
        for (k, v) in f.env(batch_size, &listen) {
            cmd.env(k, v);
        }
        let child = cmd.stdout(out.try_clone().unwrap()).stderr(out).spawn().expect("start command-handler");
        eprintln!("{name}: pid {} on {listen}, log {}", child.id(), log.display());
        Self { child, listen }
    }

    /// SIGKILL: no chance to finish a batch, flush or commit.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.child.wait().unwrap()
    }

    /// Sum of `handler_commands_total` on this process's /metrics.
    pub async fn handled(&self) -> f64 {
        let body = reqwest::get(format!("http://{}/metrics", self.listen))
            .await
            .and_then(|r| r.error_for_status())
            .map(|r| r.text());
        let Ok(body) = body else { return 0.0 };
        let body = body.await.unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with("handler_commands_total{") && !l.contains("skipped"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for HandlerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The load and the checks of `cargo xtask chaos`, which kills and restarts the stack's processes meanwhile:
//! - `drive`: users registered and funded through the API, then transfers between them at a fixed rate (each with
//!   its own idempotency key, spread over every gateway given); afterwards every transfer without a final answer
//!   is sent again with its key until the bank decides it. Writes what the client saw to a JSON file.
//! - `poison`: records the handler must survive, written straight to the command topics.
//! - `evolve`: a BACKWARD-compatible new version of every subject the bank writes, as a newer build would
//!   register it, and a transfer written with the new version that the handler must confirm.
//! - `verify`: every transfer the client saw CONFIRMED is stored once, shows once per account in the history, and
//!   every user's balance is exactly what the decided transfers make it.

use bank_core::rng::Rng;
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use crate::gql::{Api, ApiError};
use crate::stack;
use bank_audit::exactly_once::{self, ClientUser, ClientView, Sent, decided};

#[derive(Args)]
pub struct ChaosArgs {
    #[command(subcommand)]
    cmd: ChaosCmd,
}

#[derive(Subcommand)]
enum ChaosCmd {
    /// Transfers through the API for a while, then every outcome settled
    Drive(DriveArgs),
    /// Poison records on the command topics
    Poison(PoisonArgs),
    /// Checks the outcomes `drive` wrote against the database
    Verify(VerifyArgs),
    /// A new compatible version of every subject the bank writes, and a transfer written with it
    Evolve(EvolveArgs),
    /// Connections that send half a request header and wait: all must be closed by the gateway's header timeout
    Slow(AttackArgs),
    /// Requests of hundreds of aliased 100-row pages: all must be refused before they run, a light query served
    Storm(AttackArgs),
}

#[derive(Args)]
struct AttackArgs {
    /// The gateway; default: GRAPHQL_URL from `.openbank/env`
    #[arg(long)]
    endpoint: Option<String>,
    /// Connections (slow) or requests (storm)
    #[arg(long, default_value_t = 300)]
    count: usize,
    /// Longest wait for the gateway to close every slow connection
    #[arg(long, default_value_t = 20)]
    within_secs: u64,
}

#[derive(Args)]
struct EvolveArgs {
    /// The gateway; default: GRAPHQL_URL from `.openbank/env`
    #[arg(long)]
    endpoint: Option<String>,
}

#[derive(Args)]
struct DriveArgs {
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Transfers per second
    #[arg(long, default_value_t = 20)]
    rate: u32,
    #[arg(long, default_value_t = 16)]
    users: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Gateways, comma-separated; transfers go to them in turn; default: GRAPHQL_URL from `.openbank/env`
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Longest wait, after the load, for every transfer to be decided
    #[arg(long, default_value_t = 180)]
    settle_secs: u64,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum Poison {
    /// Random bytes, an empty and a null value
    Garbage,
    /// The wire format's magic byte with a schema id the registry does not know, or another topic's schema
    UnknownSchema,
    /// Close to the producer's 1 MB limit: random bytes, and a well-formed transfer with a 900 kB description
    Oversized,
    /// Well-formed transfers with NUL bytes, multi-byte characters, huge fields, bad IBANs and extreme amounts,
    /// from an account of its own with its real token (so they get past the token check)
    Hostile,
}

#[derive(Args)]
struct PoisonArgs {
    #[arg(long, value_enum)]
    kind: Poison,
    /// The gateway; default: GRAPHQL_URL from `.openbank/env`
    #[arg(long)]
    endpoint: Option<String>,
}

#[derive(Args)]
struct VerifyArgs {
    #[arg(long)]
    transfers: PathBuf,
    /// Longest wait for the history to show every decided transfer
    #[arg(long, default_value_t = 60)]
    settle_secs: u64,
}

pub async fn main(args: ChaosArgs) -> anyhow::Result<()> {
    match args.cmd {
        ChaosCmd::Drive(a) => drive(a).await,
        ChaosCmd::Poison(a) => poison(a).await,
        ChaosCmd::Verify(a) => verify(a).await,
        ChaosCmd::Evolve(a) => evolve(a).await,
        ChaosCmd::Slow(a) => slow(a).await,
        ChaosCmd::Storm(a) => storm(a).await,
    }
}

const PASSWORD: &str = "chaos password 1";
const FUNDING_CENTS: i64 = 100_000;
/// The company account every stack has (the generator pays salaries from it).
const COMPANY_IBAN: &str = "NL66OPEN0000000000";

/// Registers (or, when an earlier try got through unanswered, logs in) a user, retrying while the gateway is down.
async fn user(api: &Api, name: &str, deadline: Instant) -> anyhow::Result<ClientUser> {
    loop {
        let attempt = match api.register(name, PASSWORD).await {
            Ok(u) => Ok(u),
            Err(ApiError::Graphql(..)) => {
                let q = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token account { iban } } }";
                api.post(None, q, json!({"u": name, "p": PASSWORD})).await.and_then(|d| {
                    let token = d["login"]["token"].as_str().unwrap_or_default().to_owned();
                    let iban = d["login"]["account"]["iban"].as_str().unwrap_or_default().to_owned();
                    if token.is_empty() || iban.is_empty() {
                        Err(ApiError::Transport("login answered without a token or IBAN".into()))
                    } else {
                        Ok(crate::gql::User { name: name.to_owned(), token, iban })
                    }
                })
            }
            Err(e) => Err(e),
        };
        match attempt {
            Ok(u) => return Ok(ClientUser { name: u.name, token: u.token, iban: u.iban }),
            Err(e) if Instant::now() >= deadline => anyhow::bail!("cannot register {name}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Sends one transfer (or deposit) and records the answer.
async fn send_once(api: &Api, users: &[ClientUser], s: &Sent) -> Result<(String, String), ApiError> {
    let to = users.get(s.to).ok_or_else(|| ApiError::Transport("no such user".into()))?;
    match s.from.and_then(|i| users.get(i)) {
        Some(from) => api.transfer(&from.token, &to.iban, s.amount, &s.key).await,
        None => api.deposit(&to.token, s.amount, &s.key).await,
    }
}

/// `(transfer id, status)`, or why there is none.
type Answer = Result<(String, String), ApiError>;

fn record_answer(s: &mut Sent, answer: Answer) {
    s.attempts += 1;
    let (status, error) = match answer {
        Ok((id, status)) => {
            if !id.is_empty() {
                s.id = Some(id);
            }
            (status, None)
        }
        Err(e) => ("ERROR".to_owned(), Some(e.to_string())),
    };
    if s.attempts == 1 {
        s.first = status.clone();
        s.first_error = error;
    }
    s.status = status;
}

/// The stack's first gateway, from `.openbank/env`.
fn gateway() -> String {
    stack::setting(&stack::root(), "GRAPHQL_URL", stack::DEFAULT_GRAPHQL_URL)
}

async fn drive(mut a: DriveArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.users >= 2 && a.rate > 0, "--users 2+ and --rate 1+");
    if a.endpoints.is_empty() {
        a.endpoints.push(gateway());
    }
    let apis: Vec<Api> =
        a.endpoints.iter().map(|e| Api::new(e, Duration::from_secs(10))).collect::<anyhow::Result<_>>()?;
    let first = apis.first().cloned().ok_or_else(|| anyhow::anyhow!("no gateway"))?;
    let tag = format!("{:x}{:x}", a.seed, std::process::id());
    // Registration waits for the handler: a broker that stops (the cluster's fault) moves group coordinators, and
    // the consumer groups can take a minute to settle again (measured: rebalances of 15-22 s, repeated while the
    // stopped broker comes back).
    let setup_deadline = Instant::now() + Duration::from_secs(180);
    let users: Vec<ClientUser> = futures::stream::iter(0..a.users)
        .map(|i| {
            let (api, name) = (&first, format!("chaos{tag}u{i}"));
            async move { user(api, &name, setup_deadline).await }
        })
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let users = Arc::new(users);
    let mut sent: Vec<Sent> = (0..a.users)
        .map(|i| Sent {
            key: format!("chaos-{tag}-fund-{i}"),
            from: None,
            to: i,
            amount: FUNDING_CENTS,
            first: String::new(),
            first_error: None,
            status: String::new(),
            id: None,
            attempts: 0,
        })
        .collect();
    for s in &mut sent {
        let answer = send_once(&first, &users, s).await;
        record_answer(s, answer);
    }
    eprintln!("chaos drive: {} users registered and funded; {} transfers/s for {} s", a.users, a.rate, a.duration);

    let results: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(sent));
    let mut rng = Rng::new(a.seed ^ 0x5EED);
    let period = Duration::from_secs_f64(1.0 / f64::from(a.rate));
    let start = Instant::now();
    let end = start + Duration::from_secs(a.duration);
    let limit = Arc::new(tokio::sync::Semaphore::new(512));
    let mut tasks = tokio::task::JoinSet::new();
    let mut n: u64 = 0;
    let mut skipped = 0u64;
    loop {
        let due = start + period.mul_f64(n as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let users_n = users.len() as u64;
        let from = usize::try_from(rng.below(users_n)).unwrap_or(0);
        let to = (from + 1 + usize::try_from(rng.below(users_n - 1)).unwrap_or(0)) % users.len();
        let amount = i64::try_from(1 + rng.below(500)).unwrap_or(1);
        let api = apis.get(usize::try_from(n).unwrap_or(0) % apis.len()).cloned().unwrap_or_else(|| first.clone());
        n += 1;
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let mut s = Sent {
            key: format!("chaos-{tag}-{n}"),
            from: Some(from),
            to,
            amount,
            first: String::new(),
            first_error: None,
            status: String::new(),
            id: None,
            attempts: 0,
        };
        let (users, results) = (users.clone(), results.clone());
        tasks.spawn(async move {
            let answer = send_once(&api, &users, &s).await;
            record_answer(&mut s, answer);
            if let Ok(mut r) = results.lock() {
                r.push(s);
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut sent = results.lock().map(|r| r.clone()).unwrap_or_default();
    let first_counts = count(&sent, |s| &s.first);
    eprintln!("chaos drive: load done ({skipped} sends skipped: too many open); first answers {first_counts:?}");

    // Every undecided transfer again, with its key, until the bank decides it (the gateway sends a pending one
    // again; a decided one answers its stored result).
    let deadline = Instant::now() + Duration::from_secs(a.settle_secs);
    let mut round = 0usize;
    loop {
        let open: Vec<usize> = (0..sent.len()).filter(|&i| sent.get(i).is_some_and(|s| !decided(&s.status))).collect();
        if open.is_empty() || Instant::now() >= deadline {
            break;
        }
        round += 1;
        eprintln!("chaos drive: settling round {round}: {} transfers undecided", open.len());
        // Concurrently (each may wait for the bank's answer), at most 64 at a time.
        let answers: Vec<(usize, Answer)> = futures::stream::iter(open.into_iter().enumerate())
            .map(|(k, i)| {
                let api = apis.get(k % apis.len()).unwrap_or(&first);
                let (users, s) = (&users, sent.get(i).cloned());
                async move {
                    let answer = match &s {
                        Some(s) => send_once(api, users, s).await,
                        None => Err(ApiError::Transport("no such transfer".into())),
                    };
                    (i, answer)
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        for (i, answer) in answers {
            if let Some(s) = sent.get_mut(i) {
                record_answer(s, answer);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let counts = count(&sent, |s| &s.status);
    let transfers: Vec<&Sent> = sent.iter().filter(|s| s.from.is_some()).collect();
    let out = ClientView { seed: a.seed, users: users.to_vec(), sent: sent.clone() };
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&out)?)?;
    let c = |k: &str| transfers.iter().filter(|s| s.status == k).count();
    println!(
        "drive: sent {} confirmed {} failed {} pending {} (first answers: {} confirmed, {} failed, {} pending, {} errors; deposits {counts:?})",
        transfers.len(),
        c("CONFIRMED"),
        c("FAILED"),
        transfers.len() - c("CONFIRMED") - c("FAILED"),
        transfers.iter().filter(|s| s.first == "CONFIRMED").count(),
        transfers.iter().filter(|s| s.first == "FAILED").count(),
        transfers.iter().filter(|s| s.first == "PENDING").count(),
        transfers.iter().filter(|s| s.first == "ERROR").count(),
    );
    Ok(())
}

fn count(sent: &[Sent], field: impl Fn(&Sent) -> &String) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in sent {
        *m.entry(field(s).clone()).or_insert(0) += 1;
    }
    m
}

fn hostile_transfers(token: &str, from: &str) -> Vec<(String, String, String, i64, String)> {
    let nul = "a\0b\0\0c".to_owned();
    let multibyte = "💸 € ñ 漢字 \u{202e}txet\u{0301} ﷽".to_owned();
    let mut out = vec![
        // (token, from, to, amount, description)
        (token.into(), from.into(), COMPANY_IBAN.into(), 1, nul.clone()),
        (token.into(), from.into(), COMPANY_IBAN.into(), 1, multibyte.clone()),
        (token.into(), from.into(), COMPANY_IBAN.into(), 1, "€".repeat(200)),
        (token.into(), from.into(), COMPANY_IBAN.into(), 1, "😀".repeat(201)),
        (token.into(), from.into(), COMPANY_IBAN.into(), 1, "x".repeat(100_000)),
        (token.into(), from.into(), COMPANY_IBAN.into(), 0, "zero".into()),
        (token.into(), from.into(), COMPANY_IBAN.into(), -1, "negative".into()),
        (token.into(), from.into(), COMPANY_IBAN.into(), i64::MIN, "min".into()),
        (token.into(), from.into(), COMPANY_IBAN.into(), i64::MAX, "max".into()),
        (token.into(), from.into(), from.into(), 1, "to itself".into()),
        (token.into(), "cash".into(), from.into(), 1, "deposit with the sender's token".into()),
    ];
    for bad in ["", "NL00OPEN0000000000", "nl66open0000000000", "NL66OPEN000000000\0", "💸💸💸💸💸💸💸💸💸", "cash\0"]
    {
        out.push((token.into(), from.into(), bad.into(), 1, "bad receiver".into()));
        out.push((token.into(), bad.into(), COMPANY_IBAN.into(), 1, "bad sender".into()));
    }
    let long = "N".repeat(10_000);
    out.push((token.into(), long.clone(), long, 1, multibyte));
    out.push((String::new(), from.into(), COMPANY_IBAN.into(), 1, "no token".into()));
    out.push(("\0".repeat(3), from.into(), COMPANY_IBAN.into(), 1, nul));
    out.push(("t".repeat(10_000), from.into(), COMPANY_IBAN.into(), 1, "huge token".into()));
    out
}

/// The account token the bank issued for `iban` (the API hands out session tokens only), once the account exists.
async fn account_token(iban: &str) -> anyhow::Result<String> {
    let database = stack::setting(&stack::root(), "DATABASE_URL", "");
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&database).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let token: Option<String> = sqlx::query_scalar("SELECT token FROM bank.accounts WHERE iban = $1")
            .bind(iban)
            .fetch_optional(&pool)
            .await?;
        match token {
            Some(t) => return Ok(t),
            None if Instant::now() >= deadline => anyhow::bail!("account {iban} not created within 20 s"),
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn poison(a: PoisonArgs) -> anyhow::Result<()> {
    use bank_core::avro::{ConfirmMoneyTransfer, Heartbeat};
    use bank_core::ids::CommandId;
    use rdkafka::producer::FutureRecord;

    let root = stack::root();
    let brokers = stack::brokers(&root, &stack::setting(&root, "KAFKA_BROKERS", "localhost:9092"));
    let registry = stack::setting(&root, "SCHEMA_REGISTRY_URL", "http://localhost:8081");
    let prefix = stack::setting(&root, "TOPIC_PREFIX", "");
    let names = bank_core::topics::TopicNames::with_prefix(&prefix);
    let producer = bank_core::kafka::producer(&brokers, "chaos-poison")?;
    let codec = bank_core::registry::Codec::new(&registry)?;
    let seed = bank_core::clock::since_epoch().as_nanos() as u64;
    let mut rng = Rng::new(seed);
    let command_topics = [names.confirm_money_transfer.clone(), names.confirm_account_creation.clone()];
    // (topic, key, value)
    let mut records: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut note = String::new();
    match a.kind {
        Poison::Garbage => {
            for topic in &command_topics {
                for len in [1usize, 5, 17, 64, 300] {
                    let key = rng.bytes(8);
                    records.push((topic.clone(), key, Some(rng.bytes(len))));
                }
                records.push((topic.clone(), b"empty".to_vec(), Some(Vec::new())));
                records.push((topic.clone(), b"null".to_vec(), None));
                // A magic byte and a schema id, then nothing.
                records.push((topic.clone(), b"short".to_vec(), Some(vec![0, 0, 0])));
            }
        }
        Poison::UnknownSchema => {
            let heartbeat = codec.encode(&names.heartbeat, &Heartbeat { beat: 42 }).await?;
            for topic in &command_topics {
                for id in [0x7fff_ffffu32, 999_999, 0] {
                    let mut v = vec![0u8];
                    v.extend_from_slice(&id.to_be_bytes());
                    v.extend(rng.bytes(40));
                    records.push((topic.clone(), rng.bytes(8), Some(v)));
                }
                // A registered schema, of another topic's record.
                records.push((topic.clone(), b"heartbeat".to_vec(), Some(heartbeat.clone())));
            }
        }
        Poison::Oversized => {
            for topic in &command_topics {
                records.push((topic.clone(), rng.bytes(8), Some(rng.bytes(990_000))));
            }
            let huge = ConfirmMoneyTransfer {
                id: CommandId::new(),
                token: "t".into(),
                amount: 1,
                from: COMPANY_IBAN.into(),
                to: COMPANY_IBAN.into(),
                description: "d".repeat(900_000),
            };
            let v = codec.encode(&names.confirm_money_transfer, &huge).await?;
            records.push((names.confirm_money_transfer.clone(), COMPANY_IBAN.as_bytes().to_vec(), Some(v)));
        }
        Poison::Hostile => {
            // A real account and token, so hostile contents reach the checks behind the token check too.
            let api = Api::new(&a.endpoint.clone().unwrap_or_else(gateway), Duration::from_secs(10))?;
            let name = format!("poison{seed:x}");
            let own = match user(&api, &name, Instant::now() + Duration::from_secs(20)).await {
                Ok(u) => {
                    let _ = api.deposit(&u.token, 1_000, &format!("poison-fund-{seed:x}")).await;
                    account_token(&u.iban).await.map(|t| (t, u.iban))
                }
                Err(e) => Err(e),
            };
            let (token, from) = own.unwrap_or_else(|e| {
                note = format!(" (no account of its own: {e}; a random token)");
                (format!("{:x}", rng.next_u64()), COMPANY_IBAN.to_owned())
            });
            for (token, from_iban, to, amount, description) in hostile_transfers(&token, &from) {
                let c = ConfirmMoneyTransfer {
                    id: CommandId::new(),
                    token,
                    amount,
                    from: from_iban.clone(),
                    to,
                    description,
                };
                let v = codec.encode(&names.confirm_money_transfer, &c).await?;
                records.push((names.confirm_money_transfer.clone(), from_iban.into_bytes(), Some(v)));
            }
        }
    }
    let total = records.len();
    let mut failed = 0usize;
    for (topic, key, value) in &records {
        let mut r = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic).key(key);
        if let Some(v) = value {
            r = r.payload(v);
        }
        if producer.send(r, Duration::from_secs(30)).await.is_err() {
            failed += 1;
        }
    }
    println!("poison: {total} records written, {failed} not accepted by Kafka{note}");
    anyhow::ensure!(failed == 0, "{failed} poison records were not accepted");
    Ok(())
}

/// The gateway's `host:port`, from its URL.
fn host_port(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// How long a light query (`bankStats`) takes, or why it failed.
async fn light_query(api: &Api) -> Result<Duration, String> {
    let t = Instant::now();
    match api.post(None, "{ bankStats { accounts } }", json!({})).await {
        Ok(_) => Ok(t.elapsed()),
        Err(e) => Err(e.to_string()),
    }
}

async fn slow(a: AttackArgs) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let endpoint = a.endpoint.clone().unwrap_or_else(gateway);
    let addr = host_port(&endpoint);
    let mut open = Vec::with_capacity(a.count);
    for _ in 0..a.count {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(mut s) => {
                // Half a header, never finished.
                let _ = s.write_all(b"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-ty").await;
                open.push(s);
            }
            Err(e) => anyhow::bail!("cannot connect to {addr}: {e}"),
        }
    }
    let api = Api::new(&endpoint, Duration::from_secs(10))?;
    let during = light_query(&api).await.map_err(|e| anyhow::anyhow!("a light query failed meanwhile: {e}"))?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.within_secs);
    let closed = futures::future::join_all(open.iter_mut().map(|s| async move {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }))
    .await;
    let still_open = closed.iter().filter(|c| !**c).count();
    println!(
        "slow: {} half-sent headers, {} closed by the gateway within {:.1} s, {still_open} still open; a light query meanwhile took {} ms",
        a.count,
        a.count - still_open,
        started.elapsed().as_secs_f64(),
        during.as_millis()
    );
    anyhow::ensure!(still_open == 0, "{still_open} slow connections were still open after {} s", a.within_secs);
    Ok(())
}

async fn storm(a: AttackArgs) -> anyhow::Result<()> {
    let endpoint = a.endpoint.clone().unwrap_or_else(gateway);
    let api = Api::new(&endpoint, Duration::from_secs(30))?;
    let pages: String = (0..330)
        .map(|i| format!(r#"t{i}: transactions(iban: "{COMPANY_IBAN}", first: 100) {{ nodes {{ id }} }} "#))
        .collect();
    let runs: String = (0..500).map(|i| format!("r{i}: loadTestRuns {{ id }} ")).collect();
    let storms = (0..a.count).map(|i| {
        let api = api.clone();
        let query = if i % 2 == 0 { format!("{{ {pages} }}") } else { format!("{{ {runs} }}") };
        async move { api.post(None, &query, json!({})).await }
    });
    let started = Instant::now();
    let (answers, light) = tokio::join!(futures::future::join_all(storms), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        light_query(&api).await
    });
    // Refused before running: the root-field cap or the cost limit, nothing else (not a timeout, not OVERLOADED).
    let refused = |r: &Result<serde_json::Value, ApiError>| matches!(r, Err(ApiError::Graphql(code, message)) if code == "TOO_MANY_FIELDS" || message.contains("complex"));
    let ran = answers.iter().filter(|r| !refused(r)).count();
    if let Some(other) = answers.iter().find(|r| !refused(r)) {
        eprintln!("storm: an answer that is not a refusal before running: {other:?}");
    }
    let light = light.map_err(|e| anyhow::anyhow!("a light query failed during the storm: {e}"))?;
    println!(
        "storm: {} alias-storm requests in {:.1} s, {ran} not refused before running; a light query meanwhile took {} ms",
        a.count,
        started.elapsed().as_secs_f64(),
        light.as_millis()
    );
    anyhow::ensure!(ran == 0, "{ran} alias-storm requests were not refused before running");
    Ok(())
}

/// `schema` (a record's schema as JSON text) with one more field, `name`, a string defaulting to "": the spec's
/// rule for a BACKWARD-compatible change.
fn with_defaulted_field(schema: &str, name: &str) -> anyhow::Result<String> {
    let mut v: serde_json::Value = serde_json::from_str(schema)?;
    let fields = v["fields"].as_array_mut().ok_or_else(|| anyhow::anyhow!("not a record schema"))?;
    fields.push(json!({ "name": name, "type": "string", "default": "" }));
    Ok(v.to_string())
}

async fn evolve(a: EvolveArgs) -> anyhow::Result<()> {
    use apache_avro::types::Value;
    use bank_core::avro::{AvroRecord, ConfirmMoneyTransfer};
    use bank_core::ids::CommandId;
    use rdkafka::producer::FutureRecord;

    let root = stack::root();
    let registry_url = stack::setting(&root, "SCHEMA_REGISTRY_URL", "http://localhost:8081");
    let prefix = stack::setting(&root, "TOPIC_PREFIX", "");
    let registry = bank_core::registry::RegistryClient::new(&registry_url)?;
    let stamp = bank_core::clock::unix_secs();
    let field = format!("evolved_{stamp}");
    let mut transfer_version = None;
    let mut subjects = 0;
    for spec in bank_core::topics::TOPICS.iter().filter(|t| t.record.is_some()) {
        let subject = spec.value_subject(&prefix);
        let (_, latest) =
            registry.latest(&subject).await?.ok_or_else(|| anyhow::anyhow!("{subject} has no version"))?;
        let newer = with_defaulted_field(&latest, &field)?;
        let id = registry.register(&subject, &newer).await.map_err(|e| anyhow::anyhow!("{subject}: {e}"))?;
        subjects += 1;
        if spec.name == bank_core::topics::CONFIRM_MONEY_TRANSFER {
            transfer_version = Some((id, newer));
        }
    }
    let (id, text) = transfer_version.ok_or_else(|| anyhow::anyhow!("no confirm_money_transfer subject"))?;

    // A transfer as a newer producer writes it: the new version's id, the new field set.
    let api = Api::new(&a.endpoint.clone().unwrap_or_else(gateway), Duration::from_secs(10))?;
    let u = user(&api, &format!("evolve{stamp:x}"), Instant::now() + Duration::from_secs(30)).await?;
    let (_, status) = api.deposit(&u.token, 1_000, &format!("evolve-fund-{stamp:x}")).await?;
    anyhow::ensure!(status == "CONFIRMED", "the funding deposit answered {status}");
    let token = account_token(&u.iban).await?;
    let transfer = ConfirmMoneyTransfer {
        id: CommandId::new(),
        token,
        amount: 250,
        from: u.iban.clone(),
        to: COMPANY_IBAN.into(),
        description: "written with a newer schema version".into(),
    };
    // Our record resolved to the newer schema (every field it added, by earlier runs too, at its default), then
    // this run's field set as a newer producer would.
    let schema = apache_avro::Schema::parse_str(&text)?;
    let Value::Record(mut fields) = transfer.to_value().resolve(&schema)? else {
        anyhow::bail!("a transfer is a record")
    };
    for (name, value) in &mut fields {
        if *name == field {
            *value = Value::String("set by a newer producer".into());
        }
    }
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&id.to_be_bytes());
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()?
        .write_value(&mut bytes, Value::Record(fields))?;
    let brokers = stack::brokers(&root, &stack::setting(&root, "KAFKA_BROKERS", "localhost:9092"));
    let producer = bank_core::kafka::producer(&brokers, "chaos-evolve")?;
    let topic = bank_core::topics::TopicNames::with_prefix(&prefix).confirm_money_transfer;
    producer
        .send(FutureRecord::to(&topic).key(u.iban.as_bytes()).payload(&bytes), Duration::from_secs(30))
        .await
        .map_err(|(e, _)| anyhow::anyhow!("Kafka refused the transfer: {e}"))?;

    // The handler's answer, in its results table.
    let database = stack::setting(&root, "DATABASE_URL", "");
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&database).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let confirmed = loop {
        let row: Option<bool> = sqlx::query_scalar("SELECT confirmed FROM bank.results WHERE id = $1")
            .bind(transfer.id.as_uuid())
            .fetch_optional(&pool)
            .await?;
        match row {
            Some(c) => break c,
            None if Instant::now() >= deadline => {
                anyhow::bail!("the transfer written with schema id {id} was not decided within 60 s")
            }
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    anyhow::ensure!(confirmed, "the transfer written with schema id {id} was refused");
    println!(
        "evolve: {subjects} subjects have a new version with field {field}; a transfer written with schema id {id} CONFIRMED"
    );
    Ok(())
}

async fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let view: ClientView = serde_json::from_str(&std::fs::read_to_string(&a.transfers)?)?;
    let database = stack::setting(&stack::root(), "DATABASE_URL", "");
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&database).await?;
    let v = exactly_once::verify(&view, &pool, Duration::from_secs(a.settle_secs)).await?;
    for p in v.problems.iter().take(20) {
        eprintln!("FAIL {p}");
    }
    println!(
        "verify: {} confirmed transfers stored once and in the history once per account, {} failed ones moved nothing, {} users' balances checked; {} problems; {}",
        v.confirmed,
        v.failed,
        v.balances_checked,
        v.problems.len(),
        if v.problems.is_empty() { "OK" } else { "FAILED" }
    );
    anyhow::ensure!(v.problems.is_empty(), "{} transfers or balances are wrong", v.problems.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_recorded_first_and_last() {
        let mut s = Sent {
            key: "k".into(),
            from: Some(0),
            to: 1,
            amount: 1,
            first: String::new(),
            first_error: None,
            status: String::new(),
            id: None,
            attempts: 0,
        };
        record_answer(&mut s, Err(ApiError::Timeout));
        assert_eq!((s.first.as_str(), s.status.as_str(), s.id.as_deref()), ("ERROR", "ERROR", None));
        record_answer(&mut s, Ok(("id-1".into(), "CONFIRMED".into())));
        assert_eq!((s.first.as_str(), s.status.as_str(), s.id.as_deref()), ("ERROR", "CONFIRMED", Some("id-1")));
        assert_eq!(s.attempts, 2);
        assert!(decided(&s.status) && !decided("PENDING"));
    }

    #[test]
    fn hostile_records_cover_nul_multibyte_huge_and_bad_ibans() {
        let t = hostile_transfers("tok", "NL01OPEN0000000001");
        assert!(t.iter().any(|(_, _, _, _, d)| d.contains('\0')));
        assert!(t.iter().any(|(_, _, _, _, d)| d.chars().count() == 200 && d.len() > 200));
        assert!(t.iter().any(|(_, _, _, _, d)| d.len() >= 100_000));
        assert!(t.iter().any(|(_, _, to, _, _)| to.is_empty()));
        assert!(t.iter().any(|(_, _, _, a, _)| *a == i64::MIN));
    }
}

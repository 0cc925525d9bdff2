//! The gateway's work behind the schema: who a request is (viewers, sessions) and the Kafka producer every command
//! leaves by; users and their accounts in [`accounts`], transfers and the wait for their results in [`transfers`].

use crate::error::{GatewayError, GatewayResult};
use crate::limits::{HashPool, KeyedSlots, Slots};
use crate::live::Hub;
use crate::results::Results;
use crate::store::{self, User};
use bank_core::Iban;
use bank_core::avro::AvroRecord;
use bank_core::kafka::Producer;
use bank_core::registry::Codec;
use bank_core::topics::TopicNames;
use rdkafka::producer::FutureRecord;
use sqlx::postgres::PgPool;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

mod accounts;
mod transfers;

pub use crate::validate::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, normalise_username};

/// How many more failed logins a user name may have from all client addresses together than from one.
pub const USER_CEILING_FACTOR: u32 = 20;

/// The user's account (its IBAN), or why there is none yet.
pub fn own_account(user: &User) -> GatewayResult<&str> {
    match (&user.iban, &user.account_token) {
        (Some(iban), Some(_)) => Ok(iban),
        _ => Err(match &user.account_error {
            Some(reason) => GatewayError::AccountRefused(reason.clone()),
            None => GatewayError::AccountPending("the account is still being opened; try again in a moment"),
        }),
    }
}

/// The user's account as an [`Iban`]. Stored IBANs are the handler's own and always valid; one that is not is
/// an internal error, never guessed at.
pub fn own_iban(user: &User) -> GatewayResult<Iban> {
    let iban = own_account(user)?;
    Iban::parse(iban).map_err(|e| GatewayError::internal(format!("stored IBAN {iban:?} of user {}: {e}", user.id)))
}

/// The address of the client that sent a request (the TCP peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Who sent a request.
#[derive(Debug, Clone)]
pub enum Viewer {
    /// No token.
    Anonymous,
    /// A token that matches no live session.
    Unknown,
    Signed {
        user: User,
        token: String,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub topics: TopicNames,
    /// Longest wait for the handler's answer before a mutation reports PENDING
    pub result_timeout: Duration,
    pub session_ttl_secs: i64,
    /// Lowest balance of an account (the handler's `DEFAULT_LIMIT_CENTS`)
    pub limit_cents: i64,
    /// The bank employee's user name (stored form), which no client may register
    pub employee_username: String,
    /// How often an open websocket operation re-reads its session, besides the notices of logouts
    pub session_recheck: Duration,
    /// Most operations (subscriptions included) running at once on one websocket
    pub socket_operations: usize,
    /// Folder of load-test results, read by `loadTestRuns`
    pub results_dir: std::path::PathBuf,
    /// The login and registration limits
    pub attempts: AttemptLimits,
    /// Live sessions of one user at most
    pub sessions_per_user: u32,
    /// Seconds a new websocket has to send `connection_init`
    pub ws_init_timeout: Duration,
}

/// Login and registration attempts per window, counted in PostgreSQL for every instance together.
#[derive(Debug, Clone)]
pub struct AttemptLimits {
    pub window: Duration,
    /// Failed logins of one user name from one address
    pub failures_per_user: u32,
    /// Failed logins from one address
    pub failures_per_address: u32,
    /// Logins, right or wrong, from one address
    pub logins_per_address: u32,
    /// Registrations from one address
    pub registrations_per_address: u32,
}

impl Default for AttemptLimits {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            failures_per_user: 5,
            failures_per_address: 30,
            logins_per_address: 600,
            registrations_per_address: 2000,
        }
    }
}

impl Settings {
    pub fn new(prefix: &str, result_timeout: Duration, session_ttl_secs: i64, limit_cents: i64) -> Self {
        Self {
            topics: TopicNames::with_prefix(prefix),
            result_timeout,
            session_ttl_secs,
            limit_cents,
            employee_username: "employee".into(),
            session_recheck: Duration::from_secs(30),
            socket_operations: 32,
            results_dir: "results".into(),
            attempts: AttemptLimits::default(),
            sessions_per_user: 20,
            ws_init_timeout: Duration::from_secs(10),
        }
    }
}

pub struct Gateway {
    pub pool: PgPool,
    /// Transfers recorded under their idempotency keys, batched
    pub claims: crate::claims::Claims,
    pub producer: Producer,
    pub codec: Arc<Codec>,
    /// The live feed of balance changes
    pub hub: Arc<Hub>,
    /// Results announced by the projection
    pub results: Arc<Results>,
    pub settings: Settings,
    /// Password hashes running at once
    pub hashes: HashPool,
    /// Websocket operations running on this instance
    pub subscriptions: Arc<Slots>,
    /// Of those, the ones of anonymous websockets (half the instance's at most)
    pub anonymous_subscriptions: Arc<Slots>,
    /// Operations of anonymous websockets per client address
    pub anonymous_by_address: Arc<KeyedSlots<IpAddr>>,
    /// Operations of signed-in websockets per user
    pub operations_by_user: Arc<KeyedSlots<i64>>,
    /// Websockets open per client address
    pub sockets_by_address: Arc<KeyedSlots<IpAddr>>,
    /// `bankStats`' counters, read at most once per [`crate::cache::STATS_CACHE`]
    pub stats: crate::cache::Cached<std::collections::HashMap<String, i64>>,
    /// `loadTestRuns`, read at most once per [`crate::cache::RUNS_CACHE`]
    pub runs: crate::cache::Cached<Vec<crate::load_tests::LoadTestRun>>,
    /// Attempts counted since the last sweep of expired rows
    pub attempts_since_sweep: std::sync::atomic::AtomicU32,
    /// The live view of the pipeline (`pipeline` query)
    pub pipeline: crate::pipeline::Pipeline,
}

impl Gateway {
    /// Resolves a bearer token to a viewer.
    pub async fn viewer(&self, token: Option<&str>) -> Result<Viewer, sqlx::Error> {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(Viewer::Anonymous) };
        // Tokens are 64 hex characters; anything else cannot match and needs no lookup.
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Viewer::Unknown);
        }
        if let Some((user, expires_at)) = self.results.session_cache.get(token) {
            return Ok(Viewer::Signed { user, token: token.to_owned(), expires_at });
        }
        Ok(match store::user_by_session(&self.pool, token).await? {
            Some((user, expires_at)) => {
                self.results.session_cache.put(token, &user, expires_at);
                Viewer::Signed { user, token: token.to_owned(), expires_at }
            }
            None => Viewer::Unknown,
        })
    }

    /// A new session token (256 bits from the OS CSPRNG); only its hash is stored.
    pub async fn new_session(&self, user_id: i64) -> GatewayResult<String> {
        let token = bank_core::token::random_hex::<32>();
        let (ttl, max) = (self.settings.session_ttl_secs, self.settings.sessions_per_user);
        store::insert_session(&self.pool, user_id, &token, ttl, max).await?;
        metrics::counter!("gateway_logins_total").increment(1);
        Ok(token)
    }

    async fn send<R: AvroRecord>(&self, topic: &str, key: &[u8], record: &R) -> anyhow::Result<()> {
        let payload = self.codec.encode(topic, record).await?;
        self.producer
            .send(FutureRecord::to(topic).key(key).payload(&payload), Duration::from_secs(5))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("kafka: {e}"))?;
        Ok(())
    }
}

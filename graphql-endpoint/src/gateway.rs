//! The gateway's work behind the schema: users and sessions, and sending commands to the command-handler and
//! waiting (bounded) for their results.

use crate::error::{GatewayError, GatewayResult};
use crate::limits::{HashPool, KeyedSlots, Slots, rate_limited};
use crate::live::Hub;
use crate::password::{dummy_hash, hash_password, verify_password};
use crate::results::Results;
use crate::store::attempts::{self, Limit};
use crate::store::{self, EmployeeUpsert, NewTransfer, Role, TransferRow, TransferStatus, User};
use bank_core::avro::{Atype, AvroRecord, ConfirmAccountCreation, ConfirmMoneyTransfer};
use bank_core::kafka::Producer;
use bank_core::movement::Movement;
use bank_core::registry::Codec;
use bank_core::topics::TopicNames;
use bank_core::{CommandId, Iban, Money};
use rdkafka::producer::FutureRecord;
use sqlx::postgres::PgPool;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub use crate::validate::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, normalise_username};

/// How many more failed logins a user name may have from all client addresses together than from one.
pub const USER_CEILING_FACTOR: u32 = 20;

/// Attempts to give back unless [`GiveBack::keep`] is called: when dropped (an early return, a cancelled request)
/// they are given back by a task of their own.
struct GiveBack {
    pool: PgPool,
    keys: Vec<String>,
}

impl GiveBack {
    fn new(pool: PgPool, keys: Vec<String>) -> Self {
        Self { pool, keys }
    }

    /// Gives them back now.
    async fn now(&mut self) -> GatewayResult<()> {
        let keys = std::mem::take(&mut self.keys);
        Ok(attempts::give_back(&self.pool, &keys).await?)
    }

    /// They count (a wrong password).
    fn keep(&mut self) {
        self.keys.clear();
    }
}

impl Drop for GiveBack {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let (pool, keys) = (self.pool.clone(), std::mem::take(&mut self.keys));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = attempts::give_back(&pool, &keys).await {
                    tracing::warn!(error = %e, "cannot give login attempts back");
                }
            });
        }
    }
}

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
        Ok(match store::user_by_session(&self.pool, token).await? {
            Some((user, expires_at)) => Viewer::Signed { user, token: token.to_owned(), expires_at },
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

    /// Counts one attempt of every limit, all or none; RATE_LIMITED when one is used up (`what` names it from its
    /// key). Every so many attempts, rows whose window ended are swept.
    async fn attempt(&self, limits: &[Limit], what: impl Fn(&str) -> &'static str) -> GatewayResult<()> {
        use std::sync::atomic::Ordering;
        let window = self.settings.attempts.window;
        if self.attempts_since_sweep.fetch_add(1, Ordering::Relaxed) >= 1000 {
            self.attempts_since_sweep.store(0, Ordering::Relaxed);
            attempts::expire(&self.pool, window).await?;
        }
        match attempts::take(&self.pool, limits, window).await? {
            None => Ok(()),
            Some((wait, key)) => {
                let what = what(&key);
                metrics::counter!("gateway_rate_limited_total", "what" => what).increment(1);
                Err(rate_limited(what, wait))
            }
        }
    }

    /// `username` in its stored form. Registrations count per client address.
    pub async fn register(&self, username: &str, password: &str, client: Option<IpAddr>) -> GatewayResult<User> {
        // The employee's name is reserved even while no employee is configured, so no client can hold it.
        if username == self.settings.employee_username {
            return Err(GatewayError::UsernameTaken);
        }
        let from = client.map_or_else(|| "?".to_owned(), |a| a.to_string());
        let max = self.settings.attempts.registrations_per_address;
        self.attempt(
            &[Limit { key: format!("register from {from}"), max }],
            |_| "too many registrations from this address",
        )
        .await?;
        let password = password.to_owned();
        let hash = self.hashes.run(move || hash_password(&password)).await?.map_err(GatewayError::internal)?;
        let creation_id = Uuid::new_v4();
        let Some(user_id) = store::insert_client(&self.pool, username, &hash, creation_id).await? else {
            return Err(GatewayError::UsernameTaken);
        };
        if let Err(e) = self.open_account(creation_id).await {
            let _ = store::delete_user(&self.pool, user_id).await;
            tracing::warn!(error = %e, "cannot send an account creation");
            return Err(GatewayError::Unavailable("the bank cannot be reached right now; try again"));
        }
        let user =
            store::user_by_id(&self.pool, user_id).await?.ok_or_else(|| GatewayError::internal("user vanished"))?;
        if let Some(reason) = &user.account_error {
            let _ = store::delete_user(&self.pool, user_id).await;
            return Err(GatewayError::AccountRefused(reason.clone()));
        }
        if user.iban.is_none() {
            return Err(GatewayError::AccountPending(
                "you are registered and your account is still being opened; log in in a moment",
            ));
        }
        metrics::counter!("gateway_registrations_total").increment(1);
        Ok(user)
    }

    /// Checks a password. Every login counts, before any hash is computed, under: the user name from this client
    /// address, the user name from every address together ([`USER_CEILING_FACTOR`] times more), failures from the
    /// address, and logins (right or wrong) from the address. A right password gives its attempt back (and clears
    /// the name-from-address count); past a limit the answer is RATE_LIMITED until the window ends. The counts
    /// live in PostgreSQL, so every instance shares them and a concurrent burst cannot overshoot. Keyed so, an
    /// attacker's wrong guesses from one address do not refuse the owner's right password from another. A user
    /// whose account creation was lost (no IBAN, no refusal) gets the creation command sent again.
    pub async fn login(&self, username: &str, password: &str, client: Option<IpAddr>) -> GatewayResult<User> {
        let wrong = || GatewayError::Unauthenticated("wrong username or password");
        let limits = &self.settings.attempts;
        // A name outside the rule cannot exist: it is checked against nothing and counted under the address only.
        let name = normalise_username(username);
        let from = client.map_or_else(|| "?".to_owned(), |a| a.to_string());
        let logins = Limit { key: format!("logins from {from}"), max: limits.logins_per_address };
        let mut failures = vec![Limit { key: format!("login failures from {from}"), max: limits.failures_per_address }];
        let pair = name.as_ref().map(|n| format!("login {n} from {from}"));
        if let (Some(n), Some(p)) = (&name, &pair) {
            failures.push(Limit { key: p.clone(), max: limits.failures_per_user });
            let ceiling = limits.failures_per_user.saturating_mul(USER_CEILING_FACTOR);
            failures.push(Limit { key: format!("login {n}"), max: ceiling });
        }
        let counted: Vec<Limit> = failures.iter().cloned().chain(std::iter::once(logins)).collect();
        self.attempt(&counted, |key| {
            if key.starts_with("logins from ") { "too many logins from this address" } else { "too many failed logins" }
        })
        .await?;
        // Until a wrong password is seen, the failure counts get their attempt back: on an error, on OVERLOADED,
        // or when the client leaves while its hash waits, as well as on a right password.
        let mut refund = GiveBack::new(self.pool.clone(), failures.into_iter().map(|l| l.key).collect());
        let found = match &name {
            Some(n) if password.chars().count() <= MAX_PASSWORD_CHARS => store::credentials(&self.pool, n).await?,
            _ => None,
        };
        let hash = found.as_ref().map(|(_, h)| h.clone());
        let password = password.to_owned();
        let matches = self
            .hashes
            .run(move || verify_password(&password, hash.as_deref().unwrap_or_else(|| dummy_hash())))
            .await?;
        match found {
            Some((user, _)) if matches => {
                refund.now().await?;
                if let Some(p) = &pair {
                    attempts::clear(&self.pool, p).await?;
                }
                self.resume_account(user).await
            }
            _ => {
                refund.keep();
                metrics::counter!("gateway_failed_logins_total").increment(1);
                Err(wrong())
            }
        }
    }

    /// A user without an account and without a refusal: the creation command may never have reached the bank
    /// (the gateway stopped between storing the user and sending it). Sends it again under the same command id,
    /// which the handler answers as a replay if it did arrive, and waits like `register`.
    async fn resume_account(&self, user: User) -> GatewayResult<User> {
        if user.iban.is_some() || user.account_error.is_some() {
            return Ok(user);
        }
        let Some(creation_id) = store::pending_creation(&self.pool, user.id).await? else {
            return Ok(user);
        };
        if let Err(e) = self.open_account(creation_id).await {
            tracing::warn!(error = %e, "cannot send an account creation again");
            return Err(GatewayError::Unavailable("the bank cannot be reached right now; try again"));
        }
        metrics::counter!("gateway_account_creations_resent_total").increment(1);
        Ok(store::user_by_id(&self.pool, user.id).await?.unwrap_or(user))
    }

    /// Sends the creation command and waits (bounded) for its result to be projected.
    async fn open_account(&self, creation_id: Uuid) -> anyhow::Result<()> {
        let mut waiting = self.results.expect(creation_id);
        if let Err(e) = self.send_creation(creation_id).await {
            self.results.forget(&waiting);
            return Err(e);
        }
        let _ = tokio::time::timeout(self.settings.result_timeout, &mut waiting.result).await;
        self.results.forget(&waiting);
        Ok(())
    }

    /// Creates the configured employee or sets its password, and asks for its account if it has none yet.
    /// Refuses when a client holds the name. A changed password ends the employee's sessions.
    pub async fn ensure_employee(&self, username: &str, password: &str) -> anyhow::Result<()> {
        let hash_error = |e: GatewayError| anyhow::anyhow!("password hash: {e}");
        let existing = store::credentials(&self.pool, username).await?;
        let unchanged = match existing {
            Some((user, _)) if user.role == Role::Client => anyhow::bail!(
                "the user name {username:?} belongs to a client; set EMPLOYEE_USERNAME to a name no client holds"
            ),
            Some((user, hash)) => {
                let p = password.to_owned();
                self.hashes.run(move || verify_password(&p, &hash)).await.map_err(hash_error)?.then_some(user)
            }
            None => None,
        };
        let (user_id, creation_id, account_open) = match unchanged {
            Some(user) => {
                let id = store::pending_creation(&self.pool, user.id).await?;
                (user.id, id, user.iban.is_some())
            }
            None => {
                let p = password.to_owned();
                let hash = self.hashes.run(move || hash_password(&p)).await.map_err(hash_error)??;
                match store::upsert_employee(&self.pool, username, &hash, Uuid::new_v4()).await? {
                    EmployeeUpsert::Ready { user_id, creation_id, account_open } => {
                        let ended = store::delete_sessions_of(&self.pool, user_id).await?;
                        if ended > 0 {
                            tracing::info!(sessions = ended, "the employee's password changed; its sessions ended");
                        }
                        (user_id, Some(creation_id), account_open)
                    }
                    EmployeeUpsert::NameOfAClient => anyhow::bail!(
                        "the user name {username:?} belongs to a client; set EMPLOYEE_USERNAME to a name no client holds"
                    ),
                }
            }
        };
        if let (false, Some(id)) = (account_open, creation_id) {
            // Sending the same command id again is harmless: the handler answers a replay with its stored result.
            self.send_creation(id).await?;
        }
        tracing::debug!(user_id, "employee ensured");
        Ok(())
    }

    async fn send_creation(&self, id: Uuid) -> anyhow::Result<()> {
        let record = ConfirmAccountCreation { id: CommandId::from(id), a_type: Atype::Manual };
        let topic = &self.settings.topics.confirm_account_creation;
        self.send(topic, id.as_bytes(), &record).await
    }

    async fn send<R: AvroRecord>(&self, topic: &str, key: &[u8], record: &R) -> anyhow::Result<()> {
        let payload = self.codec.encode(topic, record).await?;
        self.producer
            .send(FutureRecord::to(topic).key(key).payload(&payload), Duration::from_secs(5))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("kafka: {e}"))?;
        Ok(())
    }

    /// Records the transfer under its idempotency key, sends it (again, while it is pending) and waits for the
    /// result up to the configured timeout.
    pub async fn submit(
        &self,
        user: &User,
        movement: &Movement,
        amount: Money,
        description: &str,
        idempotency_key: Option<String>,
    ) -> GatewayResult<TransferRow> {
        let (from, to) = movement.sides();
        let token = user.account_token.as_deref().ok_or(GatewayError::AccountPending("no account yet"))?;
        let key = idempotency_key.unwrap_or_else(|| Uuid::new_v4().to_string());
        let new = NewTransfer {
            id: Uuid::new_v4(),
            user_id: user.id,
            idempotency_key: &key,
            from_iban: from,
            to_iban: to,
            amount: amount.cents(),
            description,
        };
        let (row, fresh) = store::claim_transfer(&self.pool, &new).await?;
        if !fresh {
            metrics::counter!("gateway_idempotent_repeats_total").increment(1);
            if (row.from_iban.as_str(), row.to_iban.as_str(), row.amount, row.description.as_str())
                != (from, to, amount.cents(), description)
            {
                return Err(GatewayError::invalid(
                    "idempotencyKey",
                    "this key was already used for a different transfer",
                ));
            }
            if row.status != TransferStatus::Pending {
                return Ok(row);
            }
        }
        let mut waiting = self.results.expect(row.id);
        // The debited account keys the command: the sender, or the receiver of a cash deposit.
        let key = movement.authorising().as_str();
        let command = ConfirmMoneyTransfer {
            id: CommandId::from(row.id),
            token: token.to_owned(),
            amount: amount.cents(),
            from: from.to_owned(),
            to: to.to_owned(),
            description: description.to_owned(),
        };
        if let Err(e) = self.send(&self.settings.topics.confirm_money_transfer, key.as_bytes(), &command).await {
            self.results.forget(&waiting);
            tracing::warn!(error = %e, "cannot send a transfer");
            return Err(GatewayError::Unavailable(
                "the bank cannot be reached right now; send again with the same idempotencyKey",
            ));
        }
        metrics::counter!("gateway_transfers_sent_total").increment(1);
        let deadline = Instant::now() + self.settings.result_timeout;
        let answered = tokio::time::timeout(self.settings.result_timeout, &mut waiting.result).await;
        self.results.forget(&waiting);
        match answered {
            Ok(Ok(n)) => {
                let status = n.status.unwrap_or(TransferStatus::Pending);
                if status == TransferStatus::Confirmed {
                    self.await_own_balance(row.id, key, deadline).await;
                }
                Ok(TransferRow { status, reason: n.reason, ..row })
            }
            // No notice (timeout, or the listener reconnected meanwhile): the stored status is the truth.
            _ => Ok(store::transfer(&self.pool, user.id, row.id).await?.unwrap_or(row)),
        }
    }

    /// Read your own writes: a confirmed transfer is answered once the user's own account (`iban`) shows it, within
    /// the same time budget. Its result and its balance changes come on different topics, so the projection can
    /// store the result a batch before the balance (seen as a balance read right after the answer still showing
    /// the old amount). Almost always the balance is already there and this is one indexed read.
    async fn await_own_balance(&self, id: Uuid, iban: &str, deadline: Instant) {
        let mut pause = Duration::from_millis(2);
        loop {
            match store::balance_projected(&self.pool, id, iban).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "cannot check the projection of a confirmed transfer");
                    return;
                }
            }
            if Instant::now() + pause >= deadline {
                return;
            }
            metrics::counter!("gateway_answer_projection_waits_total").increment(1);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

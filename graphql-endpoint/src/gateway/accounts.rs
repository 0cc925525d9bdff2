//! Users and their accounts: registration and login with their attempt limits (counted in PostgreSQL, shared by
//! every instance), the employee, and the account creation command a new user's account is opened by.

use super::{Gateway, USER_CEILING_FACTOR};
use crate::error::{GatewayError, GatewayResult};
use crate::limits::rate_limited;
use crate::password::{dummy_hash, hash_password, verify_password};
use crate::store::attempts::{self, Limit};
use crate::store::{self, EmployeeUpsert, Role, User};
use crate::validate::{MAX_PASSWORD_CHARS, normalise_username};
use bank_core::CommandId;
use bank_core::avro::{Atype, ConfirmAccountCreation};
use sqlx::postgres::PgPool;
use std::net::IpAddr;
use uuid::Uuid;

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

impl Gateway {
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
                        self.results.session_cache.forget_user(user_id);
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
}

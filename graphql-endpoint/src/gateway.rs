//! The gateway's work behind the schema: users and sessions, and sending commands to the command-handler and
//! waiting (bounded) for their results.

use crate::live::Hub;
use crate::schema::{coded, internal};
use crate::store::{self, NewTransfer, TransferRow, User};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use async_graphql::Error;
use bank_core::CommandId;
use bank_core::avro::{Atype, AvroRecord, ConfirmAccountCreation, ConfirmMoneyTransfer};
use bank_core::registry::Codec;
use bank_core::topics::TopicNames;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::postgres::PgPool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use uuid::Uuid;

/// A user name in its stored form (lower case), or `None` unless it is 3 to 32 of `a-z 0-9 . _ -`.
pub fn normalise_username(name: &str) -> Option<String> {
    let n = name.to_ascii_lowercase();
    let ok = (3..=32).contains(&n.len())
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(n)
}

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;

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
}

impl Settings {
    pub fn new(prefix: &str, result_timeout: Duration, session_ttl_secs: i64, limit_cents: i64) -> Self {
        Self { topics: TopicNames::with_prefix(prefix), result_timeout, session_ttl_secs, limit_cents }
    }
}

pub struct Gateway {
    pub pool: PgPool,
    pub producer: FutureProducer,
    pub codec: Arc<Codec>,
    pub hub: Arc<Hub>,
    pub settings: Settings,
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), salt from the OS CSPRNG.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hash: {e}"))?
        .to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the user does not exist, so a login takes as long either way.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(internal)
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
            Some(user) => Viewer::Signed { user, token: token.to_owned() },
            None => Viewer::Unknown,
        })
    }

    /// A new session token (256 bits from the OS CSPRNG); only its hash is stored.
    pub async fn new_session(&self, user_id: i64) -> Result<String, Error> {
        let token = bank_core::token::random_hex::<32>();
        store::insert_session(&self.pool, user_id, &token, self.settings.session_ttl_secs).await.map_err(internal)?;
        metrics::counter!("gateway_logins_total").increment(1);
        Ok(token)
    }

    pub async fn register(&self, username: &str, password: &str) -> Result<User, Error> {
        let password = password.to_owned();
        let hash = blocking(move || hash_password(&password)).await?.map_err(internal)?;
        let creation_id = Uuid::new_v4();
        let Some(user_id) = store::insert_client(&self.pool, username, &hash, creation_id).await.map_err(internal)?
        else {
            return Err(coded("USERNAME_TAKEN", "that username is taken"));
        };
        let waiting = self.hub.expect(creation_id);
        if let Err(e) = self.send_creation(creation_id).await {
            self.hub.forget(creation_id);
            let _ = store::delete_user(&self.pool, user_id).await;
            tracing::warn!(error = %e, "cannot send an account creation");
            return Err(coded("UNAVAILABLE", "the bank cannot be reached right now; try again"));
        }
        let _ = tokio::time::timeout(self.settings.result_timeout, waiting).await;
        self.hub.forget(creation_id);
        let user =
            store::user_by_id(&self.pool, user_id).await.map_err(internal)?.ok_or_else(|| internal("user vanished"))?;
        if let Some(reason) = &user.account_error {
            let _ = store::delete_user(&self.pool, user_id).await;
            return Err(coded("ACCOUNT_REFUSED", format!("the bank refused to open the account: {reason}")));
        }
        if user.iban.is_none() {
            return Err(coded(
                "ACCOUNT_PENDING",
                "you are registered and your account is still being opened; log in in a moment",
            ));
        }
        metrics::counter!("gateway_registrations_total").increment(1);
        Ok(user)
    }

    pub async fn login(&self, username: &str, password: &str) -> Result<User, Error> {
        let wrong = || coded("UNAUTHENTICATED", "wrong username or password");
        if password.chars().count() > MAX_PASSWORD_CHARS {
            return Err(wrong());
        }
        let found = store::credentials(&self.pool, &username.to_ascii_lowercase()).await.map_err(internal)?;
        let hash = found.as_ref().map_or_else(|| dummy_hash().to_owned(), |(_, h)| h.clone());
        let password = password.to_owned();
        let matches = blocking(move || verify_password(&password, &hash)).await?;
        match found {
            Some((user, _)) if matches => Ok(user),
            _ => {
                metrics::counter!("gateway_failed_logins_total").increment(1);
                Err(wrong())
            }
        }
    }

    /// Creates (or updates) the configured employee and asks for its account if it has none yet.
    pub async fn ensure_employee(&self, username: &str, password: &str) -> anyhow::Result<()> {
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
        let (creation_id, has_account) = store::upsert_employee(&self.pool, username, &hash, Uuid::new_v4()).await?;
        if !has_account {
            // Sending the same command id again is harmless: the handler answers a replay with its stored result.
            self.send_creation(creation_id).await?;
        }
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
        from: &str,
        to: &str,
        amount: i64,
        description: &str,
        idempotency_key: Option<String>,
    ) -> Result<TransferRow, Error> {
        let token = user.account_token.as_deref().ok_or_else(|| coded("ACCOUNT_PENDING", "no account yet"))?;
        let key = idempotency_key.unwrap_or_else(|| Uuid::new_v4().to_string());
        let new = NewTransfer {
            id: Uuid::new_v4(),
            user_id: user.id,
            idempotency_key: &key,
            from_iban: from,
            to_iban: to,
            amount,
            description,
        };
        let (row, fresh) = store::claim_transfer(&self.pool, &new).await.map_err(internal)?;
        if !fresh {
            metrics::counter!("gateway_idempotent_repeats_total").increment(1);
            if (row.from_iban.as_str(), row.to_iban.as_str(), row.amount, row.description.as_str())
                != (from, to, amount, description)
            {
                return Err(crate::schema::invalid(
                    "idempotencyKey",
                    "this key was already used for a different transfer",
                ));
            }
            if row.status != "PENDING" {
                return Ok(row);
            }
        }
        let waiting = self.hub.expect(row.id);
        // The debited account keys the command: the sender, or the receiver of a cash deposit.
        let key = if from == bank_core::CASH { to } else { from };
        let command = ConfirmMoneyTransfer {
            id: CommandId::from(row.id),
            token: token.to_owned(),
            amount,
            from: from.to_owned(),
            to: to.to_owned(),
            description: description.to_owned(),
        };
        if let Err(e) = self.send(&self.settings.topics.confirm_money_transfer, key.as_bytes(), &command).await {
            self.hub.forget(row.id);
            tracing::warn!(error = %e, "cannot send a transfer");
            return Err(coded(
                "UNAVAILABLE",
                "the bank cannot be reached right now; send again with the same idempotencyKey",
            ));
        }
        metrics::counter!("gateway_transfers_sent_total").increment(1);
        let answered = tokio::time::timeout(self.settings.result_timeout, waiting).await;
        self.hub.forget(row.id);
        match answered {
            Ok(Ok(n)) => {
                Ok(TransferRow { status: n.status.unwrap_or_else(|| "PENDING".into()), reason: n.reason, ..row })
            }
            // No notice (timeout, or the listener reconnected meanwhile): the stored status is the truth.
            _ => Ok(store::transfer(&self.pool, user.id, row.id).await.map_err(internal)?.unwrap_or(row)),
        }
    }
}

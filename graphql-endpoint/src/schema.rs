//! The GraphQL schema: queries, mutations and subscriptions, with authorisation on every field that reads or
//! moves money. Errors carry a code in `extensions.code` (`UNAUTHENTICATED`, `FORBIDDEN`, `INVALID_INPUT` with
//! `extensions.field`, `USERNAME_TAKEN`, `ACCOUNT_PENDING`, `UNAVAILABLE`, `SLOW_SUBSCRIBER`, `INTERNAL`);
//! refusals by the command-handler come back as a FAILED `TransferResult` with the handler's reason code.

use crate::gateway::{ClientAddr, Gateway, Viewer};
use crate::live::Notice;
use crate::store::{self, Role, TransferRow, User};
use async_graphql::{
    Context, Enum, Error, ErrorExtensions, ID, InputValueError, InputValueResult, Object, Scalar, ScalarType, Schema,
    SimpleObject, Subscription, Value,
};
use bank_core::refusal::{MAX_DESCRIPTION_CHARS, Refusal};
use bank_core::{COMPANY_IBAN, Iban};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::Stream;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

pub type BankSchema = Schema<Query, Mutation, Subscription>;

/// Deepest query accepted (introspection included).
pub const MAX_DEPTH: usize = 16;
/// Most fields one query may select.
pub const MAX_COMPLEXITY: usize = 1000;
/// Largest page of a connection.
pub const MAX_PAGE: i32 = 100;

pub fn build(gateway: Arc<Gateway>) -> BankSchema {
    Schema::build(Query, Mutation, Subscription)
        .data(gateway)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .extension(crate::limits::OneCredentialField)
        .finish()
}

/// The schema in SDL, as committed in `graphql-endpoint/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, Subscription).finish().sdl()
}

// ---- errors -------------------------------------------------------------------------------------------------

pub fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code))
}

pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| {
        e.set("code", "INVALID_INPUT");
        e.set("field", field);
    })
}

/// Logs the cause with a reference and returns only the reference to the client.
pub fn internal(cause: impl std::fmt::Display) -> Error {
    let reference = uuid::Uuid::new_v4();
    tracing::error!(%reference, error = %cause, "internal error");
    coded("INTERNAL", format!("internal error (reference {reference})"))
}

// ---- scalars and types --------------------------------------------------------------------------------------

/// A 64-bit integer (cents, counters), sent as a decimal string so JavaScript keeps every digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BigInt(pub i64);

#[Scalar(name = "BigInt")]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => s.parse().map(BigInt).map_err(|_| InputValueError::custom("not a 64-bit integer")),
            Value::Number(n) => n.as_i64().map(BigInt).ok_or_else(|| InputValueError::custom("not a 64-bit integer")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Account {
    pub iban: String,
    /// Balance in cents
    pub balance_cents: BigInt,
    /// Lowest balance allowed, in cents (negative: an overdraft)
    pub limit_cents: BigInt,
    /// AUTO (made by the command generator) or MANUAL (a registered user), when known
    pub a_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum UserRole {
    Client,
    Employee,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Session {
    /// Opaque bearer token: `Authorization: Bearer <token>` over HTTP, `{"token": "<token>"}` in `connection_init`
    pub token: String,
    pub username: String,
    pub role: UserRole,
    pub account: Account,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum TransferStatus {
    Confirmed,
    Failed,
    /// No answer within the wait; the result follows on `transferResults` and `transfer(id)`
    Pending,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct TransferResult {
    pub id: ID,
    pub status: TransferStatus,
    /// The handler's reason when FAILED, `CODE: message`
    pub reason: Option<String>,
    /// The handler's refusal code when FAILED, e.g. INSUFFICIENT_FUNDS
    pub code: Option<String>,
}

impl TransferResult {
    fn of(id: uuid::Uuid, status: &str, reason: Option<&str>) -> Self {
        let status = match status {
            "CONFIRMED" => TransferStatus::Confirmed,
            "FAILED" => TransferStatus::Failed,
            _ => TransferStatus::Pending,
        };
        let code = reason.and_then(|r| Refusal::parse_reason(r).0).map(|c| c.as_str().to_owned());
        Self { id: ID(id.to_string()), status, reason: reason.map(str::to_owned), code }
    }

    fn from_row(r: &TransferRow) -> Self {
        Self::of(r.id, &r.status, r.reason.as_deref())
    }

    fn from_notice(n: &Notice) -> Self {
        Self::of(n.id, n.status.as_deref().unwrap_or("PENDING"), n.reason.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum Direction {
    /// Money in
    Credit,
    /// Money out
    Debit,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Transaction {
    /// `<transfer id>:<iban>`: the same in queries and subscriptions
    pub id: ID,
    pub transfer_id: Option<ID>,
    pub iban: String,
    pub new_balance_cents: BigInt,
    pub changed_by_cents: BigInt,
    /// The other side: an IBAN, or `cash`
    pub from_to: String,
    pub description: String,
    pub direction: Direction,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl From<&store::BalanceRecord> for Transaction {
    fn from(r: &store::BalanceRecord) -> Self {
        let id = match r.transfer_id {
            Some(t) => format!("{t}:{}", r.iban),
            None => format!("p{}o{}:{}", r.partition, r.offset, r.iban),
        };
        Transaction {
            id: ID(id),
            transfer_id: r.transfer_id.map(|t| ID(t.to_string())),
            iban: r.iban.clone(),
            new_balance_cents: BigInt(r.new_balance),
            changed_by_cents: BigInt(r.changed_by),
            from_to: r.from_to.clone(),
            description: r.description.clone(),
            direction: if r.changed_by < 0 { Direction::Debit } else { Direction::Credit },
            at: r.at,
        }
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct TransactionEdge {
    pub cursor: String,
    pub node: Transaction,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct TransactionConnection {
    pub edges: Vec<TransactionEdge>,
    pub nodes: Vec<Transaction>,
    pub page_info: PageInfo,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct AccountEdge {
    pub cursor: String,
    pub node: Account,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct AccountConnection {
    pub edges: Vec<AccountEdge>,
    pub nodes: Vec<Account>,
    pub page_info: PageInfo,
}

/// Public counters of the whole bank.
#[derive(Debug, Clone, SimpleObject)]
pub struct BankStats {
    /// Accounts known to the gateway's projection
    pub accounts: BigInt,
    /// Balance changes projected
    pub transactions: BigInt,
    /// Confirmed transfers projected (deposits and withdrawals included)
    pub transfers: BigInt,
    /// Confirmed transfers per second over the last ten seconds
    pub transfers_per_second: f64,
}

// ---- authorisation helpers ----------------------------------------------------------------------------------

fn gateway<'a>(ctx: &Context<'a>) -> &'a Arc<Gateway> {
    ctx.data_unchecked::<Arc<Gateway>>()
}

fn viewer<'a>(ctx: &Context<'a>) -> &'a Viewer {
    ctx.data_opt::<Viewer>().unwrap_or(&Viewer::Anonymous)
}

fn signed_in<'a>(ctx: &Context<'a>) -> Result<&'a User, Error> {
    match viewer(ctx) {
        Viewer::Signed { user, .. } => Ok(user),
        Viewer::Anonymous => Err(coded("UNAUTHENTICATED", "sign in first: send `Authorization: Bearer <token>`")),
        Viewer::Unknown => Err(coded("UNAUTHENTICATED", "the session token is unknown or expired; log in again")),
    }
}

/// The user's account: (iban, token), or why there is none yet.
fn own_account(user: &User) -> Result<(&str, &str), Error> {
    match (&user.iban, &user.account_token) {
        (Some(iban), Some(token)) => Ok((iban, token)),
        _ => Err(match &user.account_error {
            Some(reason) => coded("ACCOUNT_REFUSED", format!("the bank refused to open the account: {reason}")),
            None => coded("ACCOUNT_PENDING", "the account is still being opened; try again in a moment"),
        }),
    }
}

/// Longest IBAN input looked at: 34 characters of any country's IBAN and the spaces of its print form.
const MAX_IBAN_INPUT: usize = 64;

/// An IBAN from a client; anything but ASCII up to [`MAX_IBAN_INPUT`] bytes is refused before it is parsed.
fn parse_iban(field: &'static str, iban: &str) -> Result<Iban, Error> {
    if !iban.is_ascii() || iban.len() > MAX_IBAN_INPUT {
        return Err(invalid(field, "an IBAN is letters and digits, like NL66OPEN0000000000"));
    }
    Iban::parse(iban).map_err(|e| invalid(field, e.to_string()))
}

/// Whether the viewer may read `iban`: the company feed is public, a client reads its own, an employee all.
fn may_read(ctx: &Context<'_>, iban: &str) -> Result<(), Error> {
    if iban == COMPANY_IBAN {
        return Ok(());
    }
    parse_iban("iban", iban)?;
    let user = signed_in(ctx)?;
    if user.role == Role::Employee || user.iban.as_deref() == Some(iban) {
        return Ok(());
    }
    Err(coded("FORBIDDEN", "you may only read your own account"))
}

fn page_size(first: Option<i32>) -> Result<i64, Error> {
    match first {
        None => Ok(20),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(i64::from(n)),
        Some(_) => Err(invalid("first", format!("must be between 1 and {MAX_PAGE}"))),
    }
}

fn encode_cursor(kind: &str, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{value}"))
}

fn decode_cursor(kind: &str, cursor: &str) -> Result<String, Error> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(&format!("{kind}:")).map(str::to_owned))
        .ok_or_else(|| invalid("after", "not a cursor of this list"))
}

async fn account(gw: &Gateway, iban: &str, a_type: Option<String>) -> Result<Account, Error> {
    let balance = store::balance(&gw.pool, iban).await.map_err(internal)?;
    Ok(Account {
        iban: iban.to_owned(),
        balance_cents: BigInt(balance),
        limit_cents: BigInt(gw.settings.limit_cents),
        a_type,
    })
}

fn role_of(user: &User) -> UserRole {
    match user.role {
        Role::Client => UserRole::Client,
        Role::Employee => UserRole::Employee,
    }
}

// ---- queries ------------------------------------------------------------------------------------------------

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user's account.
    async fn me(&self, ctx: &Context<'_>) -> Result<Account, Error> {
        let user = signed_in(ctx)?;
        let (iban, _) = own_account(user)?;
        account(gateway(ctx), iban, Some("MANUAL".into())).await
    }

    /// An account's transactions, newest first. Your own account, the company account (public), or any
    /// account for a bank employee.
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        iban: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<TransactionConnection, Error> {
        may_read(ctx, &iban)?;
        let limit = page_size(first)?;
        let before = match after {
            Some(c) => Some(decode_cursor("tx", &c)?.parse::<i64>().map_err(|_| invalid("after", "not a cursor"))?),
            None => None,
        };
        let mut rows = store::history(&gateway(ctx).pool, &iban, before, limit + 1).await.map_err(internal)?;
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        let edges: Vec<TransactionEdge> = rows
            .iter()
            .map(|r| TransactionEdge {
                cursor: encode_cursor("tx", &r.seq.to_string()),
                node: Transaction::from(&r.record),
            })
            .collect();
        Ok(TransactionConnection {
            page_info: PageInfo { has_next_page, end_cursor: edges.last().map(|e| e.cursor.clone()) },
            nodes: edges.iter().map(|e| e.node.clone()).collect(),
            edges,
        })
    }

    /// Every account, by IBAN. Bank employees only.
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AccountConnection, Error> {
        let user = signed_in(ctx)?;
        if user.role != Role::Employee {
            return Err(coded("FORBIDDEN", "only bank employees may list accounts"));
        }
        let limit = page_size(first)?;
        let after = after.map(|c| decode_cursor("acct", &c)).transpose()?;
        let gw = gateway(ctx);
        let mut rows = store::accounts(&gw.pool, after.as_deref(), limit + 1).await.map_err(internal)?;
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        let edges: Vec<AccountEdge> = rows
            .into_iter()
            .map(|r| AccountEdge {
                cursor: encode_cursor("acct", &r.iban),
                node: Account {
                    iban: r.iban,
                    balance_cents: BigInt(r.balance),
                    limit_cents: BigInt(gw.settings.limit_cents),
                    a_type: r.a_type,
                },
            })
            .collect();
        Ok(AccountConnection {
            page_info: PageInfo { has_next_page, end_cursor: edges.last().map(|e| e.cursor.clone()) },
            nodes: edges.iter().map(|e| e.node.clone()).collect(),
            edges,
        })
    }

    /// Public counters.
    async fn bank_stats(&self, ctx: &Context<'_>) -> Result<BankStats, Error> {
        let gw = gateway(ctx);
        let c = store::counters(&gw.pool).await.map_err(internal)?;
        let get = |k: &str| BigInt(c.get(k).copied().unwrap_or(0));
        Ok(BankStats {
            accounts: get("accounts"),
            transactions: get("transactions"),
            transfers: get("transfers"),
            transfers_per_second: gw.hub.transfers_per_second(),
        })
    }

    /// One of your transfers, by the id a mutation returned.
    async fn transfer(&self, ctx: &Context<'_>, id: ID) -> Result<Option<TransferResult>, Error> {
        let user = signed_in(ctx)?;
        let id = uuid::Uuid::parse_str(&id).map_err(|_| invalid("id", "not a transfer id (uuid)"))?;
        let row = store::transfer(&gateway(ctx).pool, user.id, id).await.map_err(internal)?;
        Ok(row.as_ref().map(TransferResult::from_row))
    }
}

// ---- mutations ----------------------------------------------------------------------------------------------

pub struct Mutation;

fn check_username(username: &str) -> Result<String, Error> {
    crate::gateway::normalise_username(username)
        .ok_or_else(|| invalid("username", "3 to 32 characters: letters, digits, '.', '_' or '-'"))
}

/// An idempotency key: 1 to 100 of letters, digits, `.`, `_`, `-`, `:`.
fn check_key(key: Option<ID>) -> Result<Option<String>, Error> {
    let Some(k) = key else { return Ok(None) };
    let ok = (1..=100).contains(&k.len())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if !ok {
        return Err(invalid("idempotencyKey", "1 to 100 characters: letters, digits, '.', '_', '-' or ':'"));
    }
    Ok(Some(k.0))
}

fn check_amount(amount_cents: i32) -> Result<i64, Error> {
    if amount_cents <= 0 {
        return Err(invalid("amountCents", "must be a positive number of cents"));
    }
    Ok(i64::from(amount_cents))
}

#[Object]
impl Mutation {
    /// Creates a user and opens its account; returns once the account exists, signed in.
    async fn register(&self, ctx: &Context<'_>, username: String, password: String) -> Result<Session, Error> {
        let username = check_username(&username)?;
        let chars = password.chars().count();
        if !(crate::gateway::MIN_PASSWORD_CHARS..=crate::gateway::MAX_PASSWORD_CHARS).contains(&chars) {
            return Err(invalid(
                "password",
                format!(
                    "must be {} to {} characters",
                    crate::gateway::MIN_PASSWORD_CHARS,
                    crate::gateway::MAX_PASSWORD_CHARS
                ),
            ));
        }
        let gw = gateway(ctx);
        let user = gw.register(&username, &password).await?;
        session(gw, &user).await
    }

    /// Signs in; returns a new session token. Repeated failures for one user name or from one address are
    /// answered RATE_LIMITED (with `extensions.retryAfterSecs`) for a while.
    async fn login(&self, ctx: &Context<'_>, username: String, password: String) -> Result<Session, Error> {
        let gw = gateway(ctx);
        let client = ctx.data_opt::<ClientAddr>().map(|a| a.0);
        let user = gw.login(&username, &password, client).await?;
        session(gw, &user).await
    }

    /// Ends the current session.
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool, Error> {
        signed_in(ctx)?;
        match viewer(ctx) {
            Viewer::Signed { token, .. } => store::delete_session(&gateway(ctx).pool, token).await.map_err(internal),
            _ => Ok(false),
        }
    }

    /// Pays cash into your account. Sending the same `idempotencyKey` again returns the first result and
    /// moves no money.
    async fn deposit(
        &self,
        ctx: &Context<'_>,
        amount_cents: i32,
        idempotency_key: Option<ID>,
    ) -> Result<TransferResult, Error> {
        let user = signed_in(ctx)?;
        let amount = check_amount(amount_cents)?;
        let key = check_key(idempotency_key)?;
        let (iban, _) = own_account(user)?;
        gateway(ctx).submit(user, bank_core::CASH, iban, amount, "cash deposit", key).await.map(|r| r.into())
    }

    /// Takes cash out of your account. Sending the same `idempotencyKey` again returns the first result and
    /// moves no money.
    async fn withdraw(
        &self,
        ctx: &Context<'_>,
        amount_cents: i32,
        idempotency_key: Option<ID>,
    ) -> Result<TransferResult, Error> {
        let user = signed_in(ctx)?;
        let amount = check_amount(amount_cents)?;
        let key = check_key(idempotency_key)?;
        let (iban, _) = own_account(user)?;
        gateway(ctx).submit(user, iban, bank_core::CASH, amount, "cash withdrawal", key).await.map(|r| r.into())
    }

    /// Moves money from your account to `to`. Waits briefly for the bank's answer, else reports PENDING.
    /// Sending the same `idempotencyKey` again returns the first transfer's result and moves no money.
    async fn transfer_money(
        &self,
        ctx: &Context<'_>,
        to: String,
        amount_cents: i32,
        description: String,
        idempotency_key: Option<ID>,
    ) -> Result<TransferResult, Error> {
        let user = signed_in(ctx)?;
        let amount = check_amount(amount_cents)?;
        let to = parse_iban("to", &to)?;
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(invalid("description", format!("at most {MAX_DESCRIPTION_CHARS} characters")));
        }
        let key = check_key(idempotency_key)?;
        let (iban, _) = own_account(user)?;
        gateway(ctx).submit(user, iban, to.as_str(), amount, &description, key).await.map(|r| r.into())
    }
}

impl From<TransferRow> for TransferResult {
    fn from(r: TransferRow) -> Self {
        TransferResult::from_row(&r)
    }
}

async fn session(gw: &Gateway, user: &User) -> Result<Session, Error> {
    let (iban, _) = own_account(user)?;
    let token = gw.new_session(user.id).await?;
    Ok(Session {
        token,
        username: user.username.clone(),
        role: role_of(user),
        account: account(gw, iban, Some("MANUAL".into())).await?,
    })
}

// ---- subscriptions ------------------------------------------------------------------------------------------

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Live balance changes of one account (same access rules as the `transactions` query), optionally only
    /// those of at least `minAmountCents` (either direction) or of one direction.
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        iban: String,
        min_amount_cents: Option<i32>,
        direction: Option<Direction>,
    ) -> Result<impl Stream<Item = Result<Transaction, Error>> + use<>, Error> {
        may_read(ctx, &iban)?;
        let min = i64::from(min_amount_cents.unwrap_or(0)).max(0);
        let rx = gateway(ctx).hub.transactions.subscribe();
        metrics::counter!("gateway_subscriptions_total", "kind" => "transactions").increment(1);
        Ok(feed(rx, move |r: &store::BalanceRecord| {
            let wanted = r.iban == iban
                && r.changed_by.unsigned_abs() >= min.unsigned_abs()
                && direction.is_none_or(|d| (d == Direction::Debit) == (r.changed_by < 0));
            wanted.then(|| Transaction::from(r))
        }))
    }

    /// Results of your own transfers, deposits and withdrawals as the bank decides them.
    async fn transfer_results(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = Result<TransferResult, Error>> + use<>, Error> {
        let user_id = signed_in(ctx)?.id;
        let rx = gateway(ctx).hub.results.subscribe();
        metrics::counter!("gateway_subscriptions_total", "kind" => "transfer_results").increment(1);
        Ok(feed(rx, move |n: &Notice| (n.user == user_id).then(|| TransferResult::from_notice(n))))
    }
}

/// A subscriber's view of a broadcast: the items `pick` keeps. A subscriber that falls more than the buffer
/// behind gets a SLOW_SUBSCRIBER error and is dropped; it never holds up anyone else.
fn feed<T, O>(
    rx: tokio::sync::broadcast::Receiver<Arc<T>>,
    pick: impl Fn(&T) -> Option<O> + Send + 'static,
) -> impl Stream<Item = Result<O, Error>>
where
    T: Send + Sync + 'static,
    O: Send + 'static,
{
    futures::stream::unfold(Some((rx, pick)), |state| async move {
        let (mut rx, pick) = state?;
        loop {
            match rx.recv().await {
                Ok(item) => {
                    if let Some(o) = pick(&item) {
                        return Some((Ok(o), Some((rx, pick))));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("gateway_slow_subscribers_total").increment(1);
                    let e = coded("SLOW_SUBSCRIBER", format!("the subscriber fell {n} events behind and was dropped"));
                    return Some((Err(e), None));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_slow_subscriber_is_dropped_without_holding_up_others() {
        let (tx, _) = tokio::sync::broadcast::channel::<Arc<i64>>(4);
        let slow = feed(tx.subscribe(), |v: &i64| Some(*v));
        let fast = feed(tx.subscribe(), |v: &i64| (*v % 2 == 0).then_some(*v));
        futures::pin_mut!(slow, fast);
        // The sender never waits: ten events into a buffer of four. One reader keeps up, one never reads.
        let mut seen = Vec::new();
        for v in 0..10 {
            tx.send(Arc::new(v)).unwrap();
            if v % 2 == 0 {
                seen.push(fast.next().await.unwrap().unwrap());
            }
        }
        assert_eq!(seen, [0, 2, 4, 6, 8], "the reader that keeps up gets every event it asked for");
        let e = slow.next().await.unwrap().unwrap_err();
        assert_eq!(e.extensions.as_ref().and_then(|x| x.get("code")), Some(&Value::from("SLOW_SUBSCRIBER")));
        assert!(slow.next().await.is_none(), "a dropped subscriber's stream ends");
        drop(tx);
        assert!(fast.next().await.is_none(), "streams end when the feed closes");
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_ones() {
        let c = encode_cursor("tx", "42");
        assert_eq!(decode_cursor("tx", &c).unwrap(), "42");
        assert!(decode_cursor("acct", &c).is_err());
        assert!(decode_cursor("tx", "%%%").is_err());
    }

    #[test]
    fn big_ints_travel_as_strings() {
        assert_eq!(BigInt(i64::MAX).to_value(), Value::String("9223372036854775807".into()));
        assert_eq!(BigInt::parse(Value::String("-5".into())).unwrap(), BigInt(-5));
        assert!(BigInt::parse(Value::String("1.5".into())).is_err());
    }
}

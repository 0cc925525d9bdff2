//! Mutations.

use super::context::{account, gateway, signed_in, viewer};
use super::errors::ApiResult;
use super::types::{Session, TransferResult, UserRole};
use crate::error::{GatewayError, GatewayResult};
use crate::gateway::{ClientAddr, Gateway, Viewer, own_account, own_iban};
use crate::store::{self, User};
use crate::validate;
use async_graphql::{Context, ID, Object};
use bank_core::movement::Movement;

pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates a user and opens its account; returns once the account exists, signed in. Registrations from one
    /// address are answered RATE_LIMITED past a limit per window.
    async fn register(&self, ctx: &Context<'_>, username: String, password: String) -> ApiResult<Session> {
        let username = validate::username(&username)?;
        validate::password(&password)?;
        let gw = gateway(ctx);
        let client = ctx.data_opt::<ClientAddr>().map(|a| a.0);
        let user = gw.register(&username, &password, client).await?;
        Ok(session(gw, &user).await?)
    }

    /// Signs in; returns a new session token. Repeated failures for one user name or from one address are
    /// answered RATE_LIMITED (with `extensions.retryAfterSecs`) for a while.
    async fn login(&self, ctx: &Context<'_>, username: String, password: String) -> ApiResult<Session> {
        let gw = gateway(ctx);
        let client = ctx.data_opt::<ClientAddr>().map(|a| a.0);
        let user = gw.login(&username, &password, client).await?;
        Ok(session(gw, &user).await?)
    }

    /// Ends the current session.
    async fn logout(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        signed_in(ctx)?;
        match viewer(ctx) {
            Viewer::Signed { token, .. } => {
                let gw = gateway(ctx);
                let ended = store::delete_session(&gw.pool, token).await.map_err(GatewayError::from)?;
                // At once here; the other instances forget it on the notice the deletion sent.
                gw.results.session_cache.forget(token);
                Ok(ended)
            }
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
    ) -> ApiResult<TransferResult> {
        Ok(cash(ctx, Cash::Deposit, amount_cents, idempotency_key).await?)
    }

    /// Takes cash out of your account. Sending the same `idempotencyKey` again returns the first result and
    /// moves no money.
    async fn withdraw(
        &self,
        ctx: &Context<'_>,
        amount_cents: i32,
        idempotency_key: Option<ID>,
    ) -> ApiResult<TransferResult> {
        Ok(cash(ctx, Cash::Withdrawal, amount_cents, idempotency_key).await?)
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
    ) -> ApiResult<TransferResult> {
        let user = signed_in(ctx)?;
        let amount = validate::amount(amount_cents)?;
        let to = validate::iban("to", &to)?;
        validate::description(&description)?;
        let key = validate::idempotency_key(idempotency_key.map(|k| k.0))?;
        let movement = Movement::Transfer { from: own_iban(user)?, to };
        Ok(gateway(ctx).submit(user, &movement, amount, &description, key).await?.into())
    }
}

enum Cash {
    Deposit,
    Withdrawal,
}

/// Pays cash in or takes it out of the signed-in user's account.
async fn cash(ctx: &Context<'_>, kind: Cash, amount_cents: i32, key: Option<ID>) -> GatewayResult<TransferResult> {
    let user = signed_in(ctx)?;
    let amount = validate::amount(amount_cents)?;
    let key = validate::idempotency_key(key.map(|k| k.0))?;
    let iban = own_iban(user)?;
    let (movement, description) = match kind {
        Cash::Deposit => (Movement::Deposit { to: iban }, "cash deposit"),
        Cash::Withdrawal => (Movement::Withdrawal { from: iban }, "cash withdrawal"),
    };
    Ok(gateway(ctx).submit(user, &movement, amount, description, key).await?.into())
}

/// A new session of `user`, with its account.
async fn session(gw: &Gateway, user: &User) -> GatewayResult<Session> {
    let iban = own_account(user)?;
    let token = gw.new_session(user.id).await?;
    Ok(Session {
        token,
        username: user.username.clone(),
        role: UserRole::from(user),
        account: account(gw, iban, Some("MANUAL".into())).await?,
    })
}

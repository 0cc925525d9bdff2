//! What every resolver asks of its context: the gateway, the viewer, whether it is signed in and may read an
//! account, and an account with its projected balance.

use super::types::{Account, BigInt};
use crate::error::{GatewayError, GatewayResult};
use crate::gateway::{Gateway, Viewer};
use crate::store::{Role, User};
use crate::validate;
use async_graphql::Context;
use bank_core::COMPANY_IBAN;
use std::sync::Arc;

pub(super) fn gateway<'a>(ctx: &Context<'a>) -> &'a Arc<Gateway> {
    ctx.data_unchecked::<Arc<Gateway>>()
}

pub(super) fn viewer<'a>(ctx: &Context<'a>) -> &'a Viewer {
    ctx.data_opt::<Viewer>().unwrap_or(&Viewer::Anonymous)
}

pub(super) fn signed_in<'a>(ctx: &Context<'a>) -> GatewayResult<&'a User> {
    match viewer(ctx) {
        Viewer::Signed { user, .. } => Ok(user),
        Viewer::Anonymous => Err(GatewayError::Unauthenticated("sign in first: send `Authorization: Bearer <token>`")),
        Viewer::Unknown => Err(GatewayError::Unauthenticated("the session token is unknown or expired; log in again")),
    }
}

/// Whether the viewer may read `iban`: the company feed is public, a client reads its own, an employee all.
pub(super) fn may_read(ctx: &Context<'_>, iban: &str) -> GatewayResult<()> {
    if iban == COMPANY_IBAN {
        return Ok(());
    }
    validate::iban("iban", iban)?;
    let user = signed_in(ctx)?;
    if user.role == Role::Employee || user.iban.as_deref() == Some(iban) {
        return Ok(());
    }
    Err(GatewayError::Forbidden("you may only read your own account"))
}

/// The account `iban` with its projected balance.
pub(super) async fn account(gw: &Gateway, iban: &str, a_type: Option<String>) -> GatewayResult<Account> {
    let balance = crate::store::balance(&gw.pool, iban).await?;
    Ok(Account {
        iban: iban.to_owned(),
        balance_cents: BigInt(balance),
        limit_cents: BigInt(gw.settings.limit_cents),
        a_type,
    })
}

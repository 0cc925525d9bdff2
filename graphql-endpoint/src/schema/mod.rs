//! The GraphQL schema: queries, mutations and subscriptions, with authorisation on every field that reads or
//! moves money. Errors carry a code in `extensions.code` (`UNAUTHENTICATED`, `FORBIDDEN`, `INVALID_INPUT` with
//! `extensions.field`, `USERNAME_TAKEN`, `ACCOUNT_PENDING`, `UNAVAILABLE`, `SLOW_SUBSCRIBER`, `INTERNAL`);
//! refusals by the command-handler come back as a FAILED `TransferResult` with the handler's reason code.
//!
//! The schema is the only layer that knows GraphQL: it reads arguments, checks them (`crate::validate`), asks
//! the gateway and the store, and maps their [`GatewayError`]s to GraphQL errors ([`errors`]).

pub mod errors;
pub mod extensions;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

pub use errors::{coded, internal, invalid};
pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;
pub use validate::MAX_PAGE;

use crate::error::{GatewayError, GatewayResult};
use crate::gateway::{Gateway, Viewer};
use crate::store::{Role, User};
use crate::validate;
use async_graphql::{Context, Schema};
use bank_core::COMPANY_IBAN;
use std::sync::Arc;
use types::{Account, BigInt};

pub type BankSchema = Schema<Query, Mutation, Subscription>;

/// Deepest query accepted (introspection included).
pub const MAX_DEPTH: usize = 16;
/// The most one request may cost: each field selected costs 1, each row a list field may return costs its
/// selection again, and each root field that reads the database or the disk adds its own cost. A page of 100
/// transactions with every field costs about 1,000; an alias storm of such pages is refused before it runs.
pub const MAX_COMPLEXITY: usize = 2000;
/// Root fields (aliases and fragments included) one operation may select.
pub const MAX_ROOT_FIELDS: usize = 16;
/// What a root field that reads one row or a cached value adds to its selection's cost.
pub const READ_COST: usize = 10;
/// What a root field that reads a page of rows adds, besides its rows.
pub const ROW_QUERY_COST: usize = 50;

/// The rows a list field with `first` may return (its default page when not given).
pub fn rows(first: Option<i32>) -> usize {
    usize::try_from(first.map_or(20, |n| n.clamp(1, MAX_PAGE))).unwrap_or(100)
}

pub fn build(gateway: Arc<Gateway>) -> BankSchema {
    Schema::build(Query, Mutation, Subscription)
        .data(gateway)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .extension(extensions::DocumentLimits { max_root_fields: MAX_ROOT_FIELDS })
        .finish()
}

/// The schema in SDL, as committed in `graphql-endpoint/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, Subscription).finish().sdl()
}

// ---- what every resolver asks of its context ----------------------------------------------------------------

fn gateway<'a>(ctx: &Context<'a>) -> &'a Arc<Gateway> {
    ctx.data_unchecked::<Arc<Gateway>>()
}

fn viewer<'a>(ctx: &Context<'a>) -> &'a Viewer {
    ctx.data_opt::<Viewer>().unwrap_or(&Viewer::Anonymous)
}

fn signed_in<'a>(ctx: &Context<'a>) -> GatewayResult<&'a User> {
    match viewer(ctx) {
        Viewer::Signed { user, .. } => Ok(user),
        Viewer::Anonymous => Err(GatewayError::Unauthenticated("sign in first: send `Authorization: Bearer <token>`")),
        Viewer::Unknown => Err(GatewayError::Unauthenticated("the session token is unknown or expired; log in again")),
    }
}

/// Whether the viewer may read `iban`: the company feed is public, a client reads its own, an employee all.
fn may_read(ctx: &Context<'_>, iban: &str) -> GatewayResult<()> {
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
async fn account(gw: &Gateway, iban: &str, a_type: Option<String>) -> GatewayResult<Account> {
    let balance = crate::store::balance(&gw.pool, iban).await?;
    Ok(Account {
        iban: iban.to_owned(),
        balance_cents: BigInt(balance),
        limit_cents: BigInt(gw.settings.limit_cents),
        a_type,
    })
}

//! The GraphQL schema: queries, mutations and subscriptions, with authorisation on every field that reads or
//! moves money. Errors carry a code in `extensions.code` (`UNAUTHENTICATED`, `FORBIDDEN`, `INVALID_INPUT` with
//! `extensions.field`, `USERNAME_TAKEN`, `ACCOUNT_PENDING`, `UNAVAILABLE`, `SLOW_SUBSCRIBER`, `INTERNAL`);
//! refusals by the command-handler come back as a FAILED `TransferResult` with the handler's reason code.
//!
//! The schema is the only layer that knows GraphQL: it reads arguments, checks them (`crate::validate`), asks
//! the gateway and the store, and maps their [`GatewayError`]s to GraphQL errors ([`errors`]).

mod context;
pub mod cost;
pub mod errors;
pub mod extensions;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

pub use crate::validate::MAX_PAGE;
pub use errors::{coded, internal, invalid};
pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

use crate::gateway::Gateway;
use async_graphql::Schema;
use std::sync::Arc;

pub type BankSchema = Schema<Query, Mutation, Subscription>;

/// Deepest query accepted (introspection included).
pub const MAX_DEPTH: usize = 16;
/// The most one request may cost: each field selected costs 1, each row a list field may return costs its
/// selection again, and each root field that reads the database or the disk adds its own cost. A page of 100
/// transactions with every field costs about 1,000; an alias storm of such pages is refused before it runs.
pub const MAX_COMPLEXITY: usize = 2000;
/// Root fields (aliases and fragments included) one operation may select.
pub const MAX_ROOT_FIELDS: usize = 16;

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

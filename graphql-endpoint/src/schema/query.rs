//! Queries.

use super::context::{account, gateway, may_read, signed_in};
use super::errors::ApiResult;
use super::types::{
    Account, AccountConnection, AccountEdge, BankStats, BigInt, PageInfo, Transaction, TransactionConnection,
    TransactionEdge, TransferResult,
};
use crate::error::GatewayError;
use crate::gateway::own_account;
use crate::store::{self, Role};
use crate::validate;
use async_graphql::{Context, ID, Object};

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user's account.
    #[graphql(complexity = "super::cost::READ_COST + child_complexity")]
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<Account> {
        let user = signed_in(ctx)?;
        let iban = own_account(user)?;
        Ok(account(gateway(ctx), iban, Some("MANUAL".into())).await?)
    }

    /// An account's transactions, newest first. Your own account, the company account (public), or any
    /// account for a bank employee. Costs `ROW_QUERY_COST` plus `first` times its selection.
    #[graphql(complexity = "super::cost::ROW_QUERY_COST + super::cost::rows(first) * child_complexity")]
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        iban: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<TransactionConnection> {
        may_read(ctx, &iban)?;
        let limit = validate::page_size(first)?;
        let before = after.as_deref().map(validate::transaction_cursor).transpose()?;
        let mut rows =
            store::history(&gateway(ctx).pool, &iban, before, limit + 1).await.map_err(GatewayError::from)?;
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        let edges: Vec<TransactionEdge> = rows
            .iter()
            .map(|r| TransactionEdge {
                cursor: validate::encode_cursor("tx", &r.seq.to_string()),
                node: Transaction::from(&r.record),
            })
            .collect();
        Ok(TransactionConnection {
            page_info: PageInfo { has_next_page, end_cursor: edges.last().map(|e| e.cursor.clone()) },
            nodes: edges.iter().map(|e| e.node.clone()).collect(),
            edges,
        })
    }

    /// Every account, by IBAN. Bank employees only. Costs like `transactions`.
    #[graphql(complexity = "super::cost::ROW_QUERY_COST + super::cost::rows(first) * child_complexity")]
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<AccountConnection> {
        let user = signed_in(ctx)?;
        if user.role != Role::Employee {
            return Err(GatewayError::Forbidden("only bank employees may list accounts").into());
        }
        let limit = validate::page_size(first)?;
        let after = after.map(|c| validate::decode_cursor("acct", &c)).transpose()?;
        let gw = gateway(ctx);
        let mut rows = store::accounts(&gw.pool, after.as_deref(), limit + 1).await.map_err(GatewayError::from)?;
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        let edges: Vec<AccountEdge> = rows
            .into_iter()
            .map(|r| AccountEdge {
                cursor: validate::encode_cursor("acct", &r.iban),
                node: Account::of(r, gw.settings.limit_cents),
            })
            .collect();
        Ok(AccountConnection {
            page_info: PageInfo { has_next_page, end_cursor: edges.last().map(|e| e.cursor.clone()) },
            nodes: edges.iter().map(|e| e.node.clone()).collect(),
            edges,
        })
    }

    /// Public counters (read at most once per `STATS_CACHE` by each instance, whatever the number of readers).
    #[graphql(complexity = "super::cost::READ_COST + child_complexity")]
    async fn bank_stats(&self, ctx: &Context<'_>) -> ApiResult<BankStats> {
        let gw = gateway(ctx);
        let c = gw.stats.get(|| store::counters(&gw.pool)).await.map_err(GatewayError::from)?;
        let get = |k: &str| BigInt(c.get(k).copied().unwrap_or(0));
        Ok(BankStats {
            accounts: get("accounts"),
            transactions: get("transactions"),
            transfers: get("transfers"),
            transfers_per_second: gw.hub.transfers_per_second(),
        })
    }

    /// Load-test runs found in the gateway's results folder (`RESULTS_DIR`), newest first (at most 100):
    /// their summaries, steps and the paths of their graphs. Public, like `bankStats`.
    /// Read from disk at most once per `RUNS_CACHE` by each instance.
    #[graphql(complexity = "super::cost::READ_COST + child_complexity")]
    async fn load_test_runs(&self, ctx: &Context<'_>) -> Vec<crate::load_tests::LoadTestRun> {
        let gw = gateway(ctx);
        let dir = gw.settings.results_dir.clone();
        let runs = gw.runs.get(|| async move { Ok::<_, std::convert::Infallible>(crate::load_tests::runs(dir).await) });
        runs.await.unwrap_or_default()
    }

    /// CPU and memory of every component during load-test run `id` (one sample a second, thinned to at most
    /// `MAX_SAMPLES` each), for drawing; empty when there is no such run. Public, like `loadTestRuns`.
    #[graphql(complexity = "super::cost::READ_COST + child_complexity")]
    async fn load_test_resources(&self, ctx: &Context<'_>, id: String) -> Vec<crate::load_tests::ResourceSeries> {
        crate::load_tests::resources(gateway(ctx).settings.results_dir.clone(), id).await
    }

    /// The live view of the pipeline: per stage (heartbeat, generator, handler, projection) its rate and
    /// consumer lag, the age of commands when the handler applies them and the delay of the newest balance
    /// changes. Sampled at most once a second whatever the number of readers. Public, like `bankStats`.
    #[graphql(complexity = "super::cost::READ_COST + child_complexity")]
    async fn pipeline(&self, ctx: &Context<'_>) -> crate::pipeline::PipelineView {
        let gw = gateway(ctx);
        gw.pipeline.view(&gw.hub).await
    }

    /// One of your transfers, by the id a mutation returned.
    #[graphql(complexity = "super::cost::READ_COST + child_complexity")]
    async fn transfer(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<TransferResult>> {
        let user = signed_in(ctx)?;
        let id = validate::transfer_id(&id)?;
        let row = store::transfer(&gateway(ctx).pool, user.id, id).await.map_err(GatewayError::from)?;
        Ok(row.as_ref().map(TransferResult::from))
    }
}

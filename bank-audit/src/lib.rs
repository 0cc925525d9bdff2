//! Invariants of the bank, checked on a running stack: money is conserved, every balance equals its opening
//! balance plus its ledger, no balance is or ever was below its limit, every command on the command topics has
//! exactly one stored result, every published result agrees with the stored one, and (when the graphql-endpoint
//! shares the database) its projection agrees with the balances.
//!
//! The audit reads every service's schema (`bank`, and `gateway` when present) and every topic; it writes nothing.

pub mod exactly_once;
pub mod kafka;

use anyhow::Context;
use bank_core::avro::{
    AccountCreationConfirmed, AccountCreationFailed, ConfirmAccountCreation, ConfirmMoneyTransfer,
    MoneyTransferConfirmed, MoneyTransferFailed,
};
use bank_core::registry::Codec;
use bank_core::topics;
use sqlx::postgres::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    fn add(&mut self, name: &'static str, ok: bool, detail: String) {
        self.checks.push(Check { name, ok, detail });
    }

    pub fn summary(&self) -> String {
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        format!(
            "audit: {} checks passed, {failed} failed; {}",
            self.checks.len() - failed,
            if failed == 0 { "OK" } else { "FAILED" }
        )
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.checks {
            writeln!(f, "{} {}: {}", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail)?;
        }
        write!(f, "{}", self.summary())
    }
}

pub struct Auditor {
    pub pool: PgPool,
    pub brokers: bank_core::kafka::Brokers,
    pub codec: Codec,
    pub prefix: String,
}

type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// Offsets per partition, per topic.
type Offsets = HashMap<String, HashMap<i32, i64>>;

/// A stored result: confirmed or not, and the command's place (topic, partition, offset).
struct Stored {
    confirmed: bool,
    topic: String,
    partition: i32,
    offset: i64,
}

impl Auditor {
    /// Runs every check. Waits up to `settle` for the handler to catch up and the outbox to drain first.
    pub async fn run(&self, settle: Duration, progress: Progress<'_>) -> anyhow::Result<Report> {
        let mut report = Report::default();
        let names = topics::TopicNames::with_prefix(&self.prefix);
        let command_topics = [names.confirm_money_transfer, names.confirm_account_creation];
        let deadline = Instant::now() + settle;
        let settled = self.settle(&mut report, &command_topics, deadline, progress).await?;
        self.money_conserved(&mut report).await?;
        self.balances_match_the_ledger(&mut report).await?;
        self.no_balance_below_its_limit(&mut report).await?;
        let stored = self.one_result_per_command(&mut report, &command_topics, progress).await?;
        self.published_results_agree(&mut report, &stored, &settled, progress).await?;
        if self.has_gateway().await? {
            progress("comparing the gateway's projection");
            self.check_gateway(&mut report, deadline.max(Instant::now() + Duration::from_secs(30)), progress).await?;
        }
        Ok(report)
    }

    /// Every command written before the audit began is handled, and every event of those commands is published
    /// (waiting until `deadline` for it). Commands a live bank keeps receiving meanwhile (the heartbeat, users) are
    /// not waited for: a running pipeline is never empty at one instant. Returns the command topics' ends the
    /// audit settled on, per partition.
    async fn settle(
        &self,
        report: &mut Report,
        command_topics: &[String],
        deadline: Instant,
        progress: Progress<'_>,
    ) -> anyhow::Result<Offsets> {
        let mut target: Offsets = HashMap::new();
        for topic in command_topics {
            let ends = kafka::watermarks(&self.brokers, topic).await?.into_iter().map(|w| (w.partition, w.high));
            target.insert(topic.clone(), ends.collect());
        }
        let behind = loop {
            let behind = self.behind(&target).await?;
            if behind == 0 || Instant::now() >= deadline {
                break behind;
            }
            progress(&format!("waiting for the handler: {behind} commands written before the audit not handled"));
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        // A command's events enter the outbox in the transaction that stores its offset: once the target is handled,
        // every event of those commands has a sequence number at most `last`.
        let last: i64 =
            sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM bank.outbox").fetch_one(&self.pool).await?;
        let waiting = loop {
            let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM bank.outbox WHERE seq <= $1")
                .bind(last)
                .fetch_one(&self.pool)
                .await?;
            if waiting == 0 || Instant::now() >= deadline {
                break waiting;
            }
            progress(&format!("waiting for the handler: {waiting} events not published"));
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        report.add(
            "handler caught up",
            behind == 0,
            format!("{behind} commands written before the audit not yet handled"),
        );
        report.add(
            "outbox drained",
            waiting == 0,
            format!("{waiting} events of those commands waiting to be published"),
        );
        Ok(target)
    }

    /// Commands below `target` the handler has not handled yet.
    async fn behind(&self, target: &Offsets) -> anyhow::Result<i64> {
        let mut behind = 0;
        for (topic, ends) in target {
            let stored = self.stored_offsets(topic).await?;
            let starts: HashMap<i32, i64> =
                kafka::watermarks(&self.brokers, topic).await?.into_iter().map(|w| (w.partition, w.low)).collect();
            for (partition, end) in ends {
                let low = starts.get(partition).copied().unwrap_or(0);
                let next = stored.get(partition).copied().unwrap_or(low).max(low);
                behind += (end - next).max(0);
            }
        }
        Ok(behind)
    }

    /// Money is conserved.
    async fn money_conserved(&self, report: &mut Report) -> anyhow::Result<()> {
        // Sums as text: a sum of BIGINTs is NUMERIC, and can exceed i64.
        let (n, total, opening, deposits, withdrawals): (i64, String, String, String, String) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM bank.accounts), \
                    (SELECT coalesce(sum(balance), 0)::text FROM bank.accounts), \
                    (SELECT coalesce(sum(opening_balance), 0)::text FROM bank.accounts), \
                    (SELECT coalesce(sum(amount), 0)::text FROM bank.results WHERE kind = 'transfer' AND confirmed AND from_iban = 'cash'), \
                    (SELECT coalesce(sum(amount), 0)::text FROM bank.results WHERE kind = 'transfer' AND confirmed AND to_iban = 'cash')",
        )
        .fetch_one(&self.pool)
        .await?;
        let num = |s: String| -> anyhow::Result<i128> { Ok(s.parse()?) };
        let (total, opening, deposits, withdrawals) = (num(total)?, num(opening)?, num(deposits)?, num(withdrawals)?);
        report.add(
            "money conserved",
            total == opening + deposits - withdrawals,
            format!(
                "{n} accounts hold {total} cents = opening {opening} + cash deposits {deposits} - cash withdrawals {withdrawals} (difference {})",
                total - (opening + deposits - withdrawals)
            ),
        );
        Ok(())
    }

    /// Every balance is its opening balance plus its ledger.
    async fn balances_match_the_ledger(&self, report: &mut Report) -> anyhow::Result<()> {
        let mismatched: i64 = sqlx::query_scalar(
            "WITH moves AS ( \
                SELECT from_iban AS iban, -amount AS delta FROM bank.results WHERE kind = 'transfer' AND confirmed AND from_iban <> 'cash' \
                UNION ALL \
                SELECT to_iban, amount FROM bank.results WHERE kind = 'transfer' AND confirmed AND to_iban <> 'cash') \
             SELECT count(*) FROM bank.accounts a LEFT JOIN (SELECT iban, sum(delta) AS d FROM moves GROUP BY iban) m \
             ON m.iban = a.iban WHERE a.balance <> a.opening_balance + coalesce(m.d, 0)",
        )
        .fetch_one(&self.pool)
        .await?;
        report.add(
            "balances match the ledger",
            mismatched == 0,
            format!("{mismatched} accounts differ from their ledger"),
        );
        Ok(())
    }

    /// No balance below its limit, now or after any transfer.
    async fn no_balance_below_its_limit(&self, report: &mut Report) -> anyhow::Result<()> {
        let below_now: i64 = sqlx::query_scalar("SELECT count(*) FROM bank.accounts WHERE balance < limit_cents")
            .fetch_one(&self.pool)
            .await?;
        let below_ever: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bank.results r JOIN bank.accounts a ON a.iban = r.from_iban \
             WHERE r.confirmed AND r.from_balance < a.limit_cents",
        )
        .fetch_one(&self.pool)
        .await?;
        report.add(
            "no balance below its limit",
            below_now == 0 && below_ever == 0,
            format!("{below_now} accounts below their limit now, {below_ever} transfers that left one below"),
        );
        Ok(())
    }

    /// Every command has exactly one result (the primary key forbids two; none may be missing). Returns the
    /// stored results (confirmed or not, by id).
    async fn one_result_per_command(
        &self,
        report: &mut Report,
        command_topics: &[String],
        progress: Progress<'_>,
    ) -> anyhow::Result<HashMap<Uuid, Stored>> {
        progress("reading the command topics");
        // Offsets first, results second: every command below these offsets has its result stored by now.
        let handled = self.handled_offsets(command_topics).await?;
        let stored: HashMap<Uuid, Stored> = sqlx::query_as::<_, (Uuid, bool, String, i32, i64)>(
            "SELECT id, confirmed, source_topic, source_partition, source_offset FROM bank.results",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|(id, confirmed, topic, partition, offset)| (id, Stored { confirmed, topic, partition, offset }))
        .collect();
        let mut commands: HashMap<Uuid, String> = HashMap::new();
        let mut undecodable = 0u64;
        for topic in command_topics {
            let until = handled.get(topic).cloned().unwrap_or_default();
            for (partition, offset, payload) in kafka::read_until(&self.brokers, topic, &until).await? {
                let id = if topic.ends_with(topics::CONFIRM_MONEY_TRANSFER) {
                    self.codec.decode::<ConfirmMoneyTransfer>(payload.as_deref()).await.map(|c| c.id)
                } else {
                    self.codec.decode::<ConfirmAccountCreation>(payload.as_deref()).await.map(|c| c.id)
                };
                match id {
                    Ok(id) => {
                        commands.entry(id.as_uuid()).or_insert_with(|| format!("{topic}/{partition}@{offset}"));
                    }
                    Err(_) => undecodable += 1,
                }
            }
        }
        let missing_at: Vec<&String> =
            commands.iter().filter(|(id, _)| !stored.contains_key(id)).map(|(_, at)| at).collect();
        let missing = missing_at.len();
        report.add(
            "one result per command",
            missing == 0,
            format!(
                "{} distinct command ids, {} stored results, {missing} commands without a result{}, {undecodable} undecodable records (dead-lettered)",
                commands.len(),
                stored.len(),
                if missing_at.is_empty() {
                    String::new()
                } else {
                    format!(" (first at {})", missing_at.iter().take(5).map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
                }
            ),
        );
        Ok(stored)
    }

    /// Published results agree with the stored ones, and every result of a command below `settled` (those whose
    /// events the settling waited for) is published.
    async fn published_results_agree(
        &self,
        report: &mut Report,
        stored: &HashMap<Uuid, Stored>,
        settled: &Offsets,
        progress: Progress<'_>,
    ) -> anyhow::Result<()> {
        progress("reading the result topics");
        let mut published: HashMap<Uuid, bool> = HashMap::new();
        let mut conflicts = 0u64;
        let t = topics::TopicNames::with_prefix(&self.prefix);
        let result_topics: [(String, bool); 5] = [
            (t.money_transfer_confirmed, true),
            (t.money_transfer_failed, false),
            (t.account_creation_confirmed, true),
            (t.account_creation_confirmed_manual, true),
            (t.account_creation_failed, false),
        ];
        for (topic, confirmed) in &result_topics {
            let until: HashMap<i32, i64> =
                kafka::watermarks(&self.brokers, topic).await?.into_iter().map(|w| (w.partition, w.high)).collect();
            for (_, _, payload) in kafka::read_until(&self.brokers, topic, &until).await? {
                let id = self
                    .result_id(topic, payload.as_deref())
                    .await
                    .with_context(|| format!("undecodable record on {topic}"))?;
                if let Some(previous) = published.insert(id, *confirmed)
                    && previous != *confirmed
                {
                    conflicts += 1;
                }
            }
        }
        let disagree = published.iter().filter(|(id, c)| stored.get(*id).is_some_and(|s| s.confirmed != **c)).count();
        let before =
            |s: &Stored| settled.get(&s.topic).and_then(|e| e.get(&s.partition)).is_some_and(|end| s.offset < *end);
        let unpublished = stored.iter().filter(|(id, s)| before(s) && !published.contains_key(*id)).count();
        report.add(
            "published results agree",
            conflicts == 0 && disagree == 0 && unpublished == 0,
            format!(
                "{} ids published, {conflicts} published both ways, {disagree} differ from the stored result, {unpublished} stored results (of commands before the audit) never published",
                published.len()
            ),
        );
        Ok(())
    }

    async fn has_gateway(&self) -> anyhow::Result<bool> {
        Ok(sqlx::query_scalar::<_, bool>("SELECT to_regclass('gateway.accounts') IS NOT NULL")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The graphql-endpoint's projection (same database, schema `gateway`) agrees with the bank: every account's
    /// projected balance is its balance, and every confirmed transfer shows as its balance changes, once.
    async fn check_gateway(
        &self,
        report: &mut Report,
        deadline: Instant,
        progress: Progress<'_>,
    ) -> anyhow::Result<()> {
        loop {
            let (differ, projected, expected): (i64, i64, i64) = sqlx::query_as(
                "SELECT \
                   (SELECT count(*) FROM bank.accounts b LEFT JOIN gateway.accounts g ON g.iban = b.iban \
                    WHERE (g.last_seq > 0 AND g.balance <> b.balance) \
                       OR ((g.iban IS NULL OR g.last_seq = 0) AND b.balance <> b.opening_balance)), \
                   (SELECT count(*) FROM gateway.transactions), \
                   (SELECT coalesce(sum((from_iban <> 'cash')::int + (to_iban <> 'cash')::int), 0) \
                    FROM bank.results WHERE kind = 'transfer' AND confirmed)",
            )
            .fetch_one(&self.pool)
            .await?;
            let ok = differ == 0 && projected == expected;
            if ok || Instant::now() >= deadline {
                report.add(
                    "gateway projection agrees",
                    ok,
                    format!(
                        "{differ} accounts with a different projected balance, {projected} projected balance changes of {expected} expected"
                    ),
                );
                return Ok(());
            }
            progress(&format!("waiting for the gateway's projection: {projected} of {expected} balance changes"));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn result_id(&self, topic: &str, payload: Option<&[u8]>) -> anyhow::Result<Uuid> {
        let id = if topic.ends_with(topics::MONEY_TRANSFER_CONFIRMED) {
            self.codec.decode::<MoneyTransferConfirmed>(payload).await?.id
        } else if topic.ends_with(topics::MONEY_TRANSFER_FAILED) {
            self.codec.decode::<MoneyTransferFailed>(payload).await?.id
        } else if topic.ends_with(topics::ACCOUNT_CREATION_FAILED) {
            self.codec.decode::<AccountCreationFailed>(payload).await?.id
        } else {
            self.codec.decode::<AccountCreationConfirmed>(payload).await?.id
        };
        Ok(id.as_uuid())
    }

    /// Next offset the handler will handle, per partition of each command topic.
    async fn handled_offsets(&self, command_topics: &[String]) -> anyhow::Result<HashMap<String, HashMap<i32, i64>>> {
        let mut out = HashMap::new();
        for topic in command_topics {
            out.insert(topic.clone(), self.stored_offsets(topic).await?);
        }
        Ok(out)
    }

    /// The handler's stored next offsets (`bank.consumed_offsets`) for the partitions of `topic`.
    async fn stored_offsets(&self, topic: &str) -> Result<HashMap<i32, i64>, sqlx::Error> {
        let rows: Vec<(i32, i64)> =
            sqlx::query_as("SELECT partition, next_offset FROM bank.consumed_offsets WHERE topic = $1")
                .bind(topic)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }
}

//! The events of a batch: a result event per command (fresh, replayed or repeated), a balance event per touched
//! account, a dead letter per record that cannot be handled, and the outbox rows they are stored as.

use crate::apply::ResultRows;
use crate::batch::{BatchOutcome, Command, CommandKind, Incoming, OutboxRow};
use crate::plan::{Balances, Plan, Stored, unprocessable};
use anyhow::Context;
use bank_core::CommandId;
use bank_core::avro::{
    AccountCreationConfirmed, AccountCreationFailed, Atype, AvroRecord, BalanceChanged, ConfirmMoneyTransfer,
    MoneyTransferConfirmed, MoneyTransferFailed,
};
use bank_core::kafka::dead_letter_headers;
use bank_core::registry::Codec;
use bank_core::topics::TopicNames;
use sqlx::{Postgres, Transaction};
use std::collections::HashMap;

/// An encoded event before it has an outbox sequence number.
#[derive(Debug, Clone)]
pub struct Event {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

/// What a record's result is, once decided; the source of its result event.
#[derive(Debug, Clone)]
pub enum Decided {
    Transfer { confirmed: bool, reason: Option<String> },
    Account { iban: Option<(String, String, Atype)>, reason: Option<String> },
}

impl Decided {
    /// The result a stored row repeats.
    pub fn of_stored(s: &Stored) -> Self {
        match s.kind {
            CommandKind::Transfer => Self::Transfer { confirmed: s.confirmed, reason: s.reason.clone() },
            CommandKind::Account => {
                let account = match (&s.iban, &s.token, s.a_type.as_deref().and_then(Atype::from_symbol)) {
                    (Some(iban), Some(token), Some(a_type)) => Some((iban.clone(), token.clone(), a_type)),
                    _ => None,
                };
                Self::Account { iban: account, reason: s.reason.clone() }
            }
        }
    }

    /// A failed result of a command of `kind`.
    fn failed(kind: CommandKind, reason: String) -> Self {
        match kind {
            CommandKind::Transfer => Self::Transfer { confirmed: false, reason: Some(reason) },
            CommandKind::Account => Self::Account { iban: None, reason: Some(reason) },
        }
    }
}

/// Turns the final plans of a batch into result rows, events and counts.
pub struct Emitter<'h> {
    codec: &'h Codec,
    topics: &'h TopicNames,
    pub events: Vec<Event>,
    pub results: ResultRows,
    decided: HashMap<usize, Decided>,
}

impl<'h> Emitter<'h> {
    pub fn new(codec: &'h Codec, topics: &'h TopicNames) -> Self {
        Self { codec, topics, events: Vec::new(), results: ResultRows::default(), decided: HashMap::new() }
    }

    /// Records what record `i` became.
    pub async fn record(
        &mut self,
        i: usize,
        r: &Incoming,
        plan: &Plan,
        balances: &HashMap<usize, Balances>,
        out: &mut BatchOutcome,
    ) -> anyhow::Result<()> {
        let decided = match plan {
            Plan::Skip => {
                out.skipped += 1;
                return Ok(());
            }
            Plan::Poison(error) => {
                out.dead_lettered += 1;
                self.dead_letter(r, error);
                return Ok(());
            }
            Plan::Replay(s) => {
                out.replayed += 1;
                self.result_event(r, &Decided::of_stored(s)).await?;
                return Ok(());
            }
            Plan::Repeat(earlier) => {
                out.replayed += 1;
                let d = self.decided.get(earlier).cloned().context("repeated id without an earlier result")?;
                self.result_event(r, &d).await?;
                return Ok(());
            }
            Plan::Unprocessable(error) => {
                out.dead_lettered += 1;
                self.dead_letter(r, error);
                self.refused(r, &unprocessable(), out)
            }
            Plan::Creation { iban, token, a_type } => {
                let Command::Creation(c) = &r.command else { anyhow::bail!("a creation plan for another command") };
                out.accounts_created += 1;
                out.confirmed += 1;
                self.results.push_account(r, c.id, true, None, Some(iban.as_str()));
                Decided::Account {
                    iban: Some((iban.as_str().to_owned(), token.expose().to_owned(), *a_type)),
                    reason: None,
                }
            }
            Plan::Refused(refusal) => self.refused(r, refusal, out),
            Plan::Apply => {
                let Command::Transfer(c) = &r.command else { anyhow::bail!("an apply plan for another command") };
                let b = balances.get(&i).copied().context("an applied transfer without balances")?;
                out.confirmed += 1;
                self.results.push_transfer(r, c, true, None, Some((b.from_balance, b.to_balance)));
                if let Some(balance) = b.from_balance {
                    let seq = b.from_seq.unwrap_or_default();
                    self.balance_event(c, &c.from, (balance, seq), -c.amount, &c.to).await?;
                }
                if let Some(balance) = b.to_balance {
                    let seq = b.to_seq.unwrap_or_default();
                    self.balance_event(c, &c.to, (balance, seq), c.amount, &c.from).await?;
                }
                Decided::Transfer { confirmed: true, reason: None }
            }
        };
        self.result_event(r, &decided).await?;
        self.decided.insert(i, decided);
        Ok(())
    }

    /// Stores a refused command's result; returns it.
    fn refused(&mut self, r: &Incoming, refusal: &bank_core::refusal::Refusal, out: &mut BatchOutcome) -> Decided {
        out.failed += 1;
        *out.refusals.entry(refusal.code.as_str()).or_default() += 1;
        let reason = refusal.reason();
        match &r.command {
            Command::Transfer(c) => self.results.push_transfer(r, c, false, Some(&reason), None),
            Command::Creation(c) => self.results.push_account(r, c.id, false, Some(&reason), None),
            Command::Unprocessable { id, kind, .. } => self.results.push_unprocessable(r, *id, *kind, &reason),
            Command::Poison(_) => {}
        }
        Decided::failed(r.command.kind().unwrap_or(CommandKind::Transfer), reason)
    }

    fn dead_letter(&mut self, r: &Incoming, error: &str) {
        let headers = dead_letter_headers(&r.topic, r.partition, r.offset, error);
        let topic = self.topics.dead_letters.clone();
        self.events.push(Event { topic, key: r.key.clone(), payload: r.payload.clone(), headers });
    }

    async fn result_event(&mut self, r: &Incoming, d: &Decided) -> anyhow::Result<()> {
        let id = r.command.id().context("a result for a record without a command id")?;
        let topics = &self.topics;
        let (topic, payload) = match d {
            Decided::Transfer { confirmed: true, .. } => {
                let t = &topics.money_transfer_confirmed;
                (t, self.encode(t, &MoneyTransferConfirmed { id }).await?)
            }
            Decided::Transfer { confirmed: false, reason } => {
                let t = &topics.money_transfer_failed;
                (t, self.encode(t, &MoneyTransferFailed { id, reason: reason.clone().unwrap_or_default() }).await?)
            }
            Decided::Account { iban: Some((iban, token, a_type)), .. } => {
                // A registered user's token goes where the generator cannot read it.
                let t = match a_type {
                    Atype::Auto => &topics.account_creation_confirmed,
                    Atype::Manual => &topics.account_creation_confirmed_manual,
                };
                let rec = AccountCreationConfirmed { id, iban: iban.clone(), token: token.clone(), a_type: *a_type };
                (t, self.encode(t, &rec).await?)
            }
            Decided::Account { iban: None, reason } => {
                let t = &topics.account_creation_failed;
                (t, self.encode(t, &AccountCreationFailed { id, reason: reason.clone().unwrap_or_default() }).await?)
            }
        };
        let topic = topic.clone();
        self.events.push(Event { topic, key: Some(key(&id)), payload: Some(payload), headers: Vec::new() });
        Ok(())
    }

    async fn balance_event(
        &mut self,
        c: &ConfirmMoneyTransfer,
        iban: &str,
        (new_balance, seq): (i64, i64),
        changed_by: i64,
        from_to: &str,
    ) -> anyhow::Result<()> {
        let topic = self.topics.balance_changed.clone();
        let rec = BalanceChanged {
            iban: iban.to_owned(),
            new_balance,
            changed_by,
            from_to: from_to.to_owned(),
            description: c.description.clone(),
            transfer_id: Some(c.id),
            seq,
        };
        let payload = Some(self.encode(&topic, &rec).await?);
        self.events.push(Event { topic, key: Some(iban.as_bytes().to_vec()), payload, headers: Vec::new() });
        Ok(())
    }

    async fn encode<R: AvroRecord>(&self, topic: &str, record: &R) -> anyhow::Result<Vec<u8>> {
        self.codec.encode(topic, record).await.with_context(|| format!("encode {} for {topic}", R::FULL_NAME))
    }
}

/// Key of a result event: the command id.
fn key(id: &CommandId) -> Vec<u8> {
    id.as_uuid().to_string().into_bytes()
}

/// Stores `events` in the outbox; returns them with their sequence numbers.
pub async fn insert_outbox(tx: &mut Transaction<'_, Postgres>, events: Vec<Event>) -> anyhow::Result<Vec<OutboxRow>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
    let keys: Vec<Option<&[u8]>> = events.iter().map(|e| e.key.as_deref()).collect();
    let payloads: Vec<Option<&[u8]>> = events.iter().map(|e| e.payload.as_deref()).collect();
    let headers: Vec<Option<String>> = events
        .iter()
        .map(|e| if e.headers.is_empty() { None } else { serde_json::to_string(&e.headers).ok() })
        .collect();
    let mut seqs: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO bank.outbox (topic, key, payload, headers) \
         SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bytea[], $4::text[]) RETURNING seq",
    )
    .bind(&topics)
    .bind(&keys)
    .bind(&payloads)
    .bind(&headers)
    .fetch_all(&mut **tx)
    .await
    .context("insert outbox")?;
    seqs.sort_unstable();
    Ok(seqs
        .into_iter()
        .zip(events)
        .map(|(seq, e)| OutboxRow { seq, topic: e.topic, key: e.key, payload: e.payload, headers: e.headers })
        .collect())
}

/// Parses the stored header column.
pub fn parse_headers(stored: Option<&str>) -> Vec<(String, String)> {
    stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
}

//! The pipeline path: the heartbeat's rate is set per step (no API in the path) and latency comes from Kafka
//! record timestamps, command CreateTime → result / `balance_changed` CreateTime, matched by command id.

use bank_core::avro::{
    AccountCreationConfirmed, AccountCreationFailed, BalanceChanged, ConfirmAccountCreation, ConfirmMoneyTransfer,
    MoneyTransferConfirmed, MoneyTransferFailed,
};
use bank_core::registry::Codec;
use bank_core::topics::TopicNames;
use indicatif::ProgressBar;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ctx::{Ctx, step_from};
use crate::heartbeat::Heartbeat;
use crate::record::Shared;
use crate::schedule::Dispatched;
use bank_core::load_test_run::Step;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Command { transfer: bool },
    Result { confirmed: bool },
    Balance,
}

#[derive(Default)]
struct Entry {
    command_ms: Option<i64>,
    transfer: bool,
    result_ms: Option<i64>,
    confirmed: bool,
    balance_ms: Option<i64>,
    result_done: bool,
    balance_done: bool,
    seen: Option<Instant>,
}

/// A step's measured window in Kafka time (epoch ms) and where its numbers go.
#[derive(Clone)]
struct Window {
    from_ms: i64,
    to_ms: i64,
    rec: Shared,
}

type Windows = Arc<Mutex<Vec<Window>>>;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn window_of(windows: &Windows, ms: i64) -> Option<Shared> {
    let w = windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    w.iter().find(|w| ms >= w.from_ms && ms < w.to_ms).map(|w| w.rec.clone())
}

async fn decode(
    codec: &Codec,
    topics: &TopicNames,
    m: &rdkafka::message::BorrowedMessage<'_>,
) -> Option<([u8; 16], Kind)> {
    let t = m.topic();
    let p = m.payload();
    let id = |i: bank_core::ids::CommandId| *i.as_bytes();
    if t == topics.confirm_money_transfer {
        codec.decode::<ConfirmMoneyTransfer>(p).await.ok().map(|r| (id(r.id), Kind::Command { transfer: true }))
    } else if t == topics.confirm_account_creation {
        codec.decode::<ConfirmAccountCreation>(p).await.ok().map(|r| (id(r.id), Kind::Command { transfer: false }))
    } else if t == topics.money_transfer_confirmed {
        codec.decode::<MoneyTransferConfirmed>(p).await.ok().map(|r| (id(r.id), Kind::Result { confirmed: true }))
    } else if t == topics.account_creation_confirmed || t == topics.account_creation_confirmed_manual {
        codec.decode::<AccountCreationConfirmed>(p).await.ok().map(|r| (id(r.id), Kind::Result { confirmed: true }))
    } else if t == topics.money_transfer_failed {
        codec.decode::<MoneyTransferFailed>(p).await.ok().map(|r| (id(r.id), Kind::Result { confirmed: false }))
    } else if t == topics.account_creation_failed {
        codec.decode::<AccountCreationFailed>(p).await.ok().map(|r| (id(r.id), Kind::Result { confirmed: false }))
    } else if t == topics.balance_changed {
        let b = codec.decode::<BalanceChanged>(p).await.ok()?;
        b.transfer_id.map(|i| (id(i), Kind::Balance))
    } else {
        None
    }
}

/// Applies one record; records latencies into the window of the command's CreateTime.
fn apply(map: &mut HashMap<[u8; 16], Entry>, windows: &Windows, id: [u8; 16], kind: Kind, ts: i64) {
    let e = map.entry(id).or_default();
    e.seen.get_or_insert_with(Instant::now);
    match kind {
        Kind::Command { transfer } => {
            e.command_ms = Some(ts);
            e.transfer = transfer;
            if let Some(rec) = window_of(windows, ts) {
                rec.lock().sent += 1;
            }
        }
        Kind::Result { confirmed } => {
            e.result_ms.get_or_insert(ts);
            e.confirmed = confirmed;
            if let Some(rec) = window_of(windows, ts) {
                rec.lock().decided_in_window += 1;
            }
        }
        Kind::Balance => {
            e.balance_ms.get_or_insert(ts);
        }
    }
    let Some(cmd) = e.command_ms else { return };
    let Some(rec) = window_of(windows, cmd) else {
        if e.result_ms.is_some() && (e.balance_ms.is_some() || !e.transfer || !e.confirmed) {
            map.remove(&id);
        }
        return;
    };
    let mut g = rec.lock();
    if let (Some(r), false) = (e.result_ms, e.result_done) {
        e.result_done = true;
        g.record("result", Duration::from_millis(u64::try_from(r - cmd).unwrap_or(0)));
        if e.confirmed {
            g.confirmed += 1;
            if e.transfer {
                g.expect_events += 1;
            }
        } else {
            g.failed += 1;
        }
    }
    if let (Some(b), false) = (e.balance_ms, e.balance_done) {
        e.balance_done = true;
        g.record("balance_changed", Duration::from_millis(u64::try_from(b - cmd).unwrap_or(0)));
    }
    if e.result_done && (e.balance_done || !e.transfer || !e.confirmed) {
        map.remove(&id);
    }
}

/// Reads the command, result and balance topics from their end until `stop`.
async fn consume(
    consumer: Arc<StreamConsumer>,
    codec: Codec,
    topics: TopicNames,
    windows: Windows,
    stop: CancellationToken,
) {
    let mut map: HashMap<[u8; 16], Entry> = HashMap::new();
    let mut pruned = Instant::now();
    while let Some(m) = bank_core::kafka::next_record(&consumer, &stop, "load-test").await {
        let ts = m.timestamp().to_millis().unwrap_or_else(now_ms);
        if let Some((id, kind)) = decode(&codec, &topics, &m).await {
            apply(&mut map, &windows, id, kind, ts);
        }
        if pruned.elapsed() > Duration::from_secs(10) {
            // Commands from before the run or results of others: kept two minutes at most (bounded memory).
            map.retain(|_, e| e.seen.is_some_and(|s| s.elapsed() < Duration::from_secs(120)));
            pruned = Instant::now();
        }
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Step>> {
    let hb = Heartbeat::new(&ctx.heartbeat_url())?;
    let before = hb.rate().await?;
    let topics = TopicNames::with_prefix(&ctx.topic_prefix);
    let group = format!("load-test-{}", uuid::Uuid::new_v4());
    let mut config = bank_core::kafka::consumer_config(&ctx.brokers, &group, "load-test");
    config.set("auto.offset.reset", "latest").set("isolation.level", "read_uncommitted");
    let consumer: Arc<StreamConsumer> = Arc::new(config.create()?);
    let names = [
        &topics.confirm_money_transfer,
        &topics.confirm_account_creation,
        &topics.money_transfer_confirmed,
        &topics.money_transfer_failed,
        &topics.account_creation_confirmed,
        &topics.account_creation_confirmed_manual,
        &topics.account_creation_failed,
        &topics.balance_changed,
    ];
    consumer.subscribe(&names.map(String::as_str))?;
    let windows: Windows = Arc::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        consumer.clone(),
        Codec::new(&ctx.registry)?,
        topics.clone(),
        windows.clone(),
        stop.clone(),
    ));
    // Joining the group takes a few seconds; nothing is measured before every partition is assigned.
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.assignment().map_or(0, |a| a.count()) == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the load test's consumer got no partitions within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut steps = Vec::new();
    let mut result = Ok(());
    for &rate in &ctx.args.rates {
        if ctx.cancel.is_cancelled() {
            break;
        }
        match step(ctx, &hb, &windows, rate).await {
            Ok(s) => {
                eprintln!("{}", crate::output::step_line(&s));
                steps.push(s);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ = hb.set(before).await;
    stop.cancel();
    let _ = task.await;
    result.map(|()| steps)
}

async fn step(ctx: &Ctx, hb: &Heartbeat, windows: &Windows, rate: f64) -> anyhow::Result<Step> {
    let beats = rate.round().max(0.0) as u64;
    hb.set(beats).await?;
    let rec = Shared::default();
    let warmup = Duration::from_secs(ctx.args.warmup_secs);
    let window = Duration::from_secs(ctx.args.step_secs);
    let start = Instant::now();
    let from_ = start + warmup;
    let from_ms = now_ms() + i64::try_from(warmup.as_millis()).unwrap_or(0);
    let to_ms = from_ms + i64::try_from(window.as_millis()).unwrap_or(0);
    windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Window { from_ms, to_ms, rec: rec.clone() });
    let pb = ProgressBar::new((rate * (warmup + window).as_secs_f64()) as u64);
    let ticker = crate::run::progress(pb.clone(), rec.clone(), rate, start, from_, "result");
    let mut d = Dispatched::default();
    tokio::select! {
        () = tokio::time::sleep(warmup + window) => { d.window = window; }
        () = ctx.cancel.cancelled() => {
            d.cancelled = true;
            d.window = Instant::now().saturating_duration_since(from_);
            let cut = from_ms + i64::try_from(d.window.as_millis()).unwrap_or(0);
            let mut w = windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(last) = w.last_mut() { last.to_ms = cut; }
        }
    }
    // Stop the load and let the step's last commands finish (up to the timeout).
    hb.set(0).await?;
    let deadline = Instant::now() + Duration::from_secs(ctx.args.timeout_secs);
    loop {
        let done = {
            let g = rec.lock();
            g.confirmed + g.failed >= g.sent && g.hist.get("balance_changed").map_or(0, |h| h.len()) >= g.expect_events
        };
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ticker.abort();
    pb.finish_and_clear();
    {
        let mut g = rec.lock();
        g.timeouts = g.sent.saturating_sub(g.confirmed + g.failed);
        g.missing_events = g.expect_events.saturating_sub(g.hist.get("balance_changed").map_or(0, |h| h.len()));
    }
    d.sent_measured = rec.lock().sent;
    let start_s = (from_ - ctx.origin).as_secs_f64();
    Ok(step_from(ctx, "pipeline", rate, &d, &rec, start_s, start_s + d.window.as_secs_f64()))
}

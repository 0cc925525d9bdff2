//! The API path: `run` (open-loop `transferMoney` steps) and `anchor` (the reference's method: background
//! heartbeats raised step by step and one probe transfer a second).

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use crate::ctx::{Ctx, step_from};
use crate::gql::{Api, ApiError, User};
use crate::heartbeat;
use crate::record::{Matcher, Shared};
use crate::schedule::{self, Plan};
use bank_core::load_test_run::{Step, WarmUp};

/// Cents every user starts with; transfers move one cent.
const FUNDING_CENTS: i64 = 100_000_000;

pub struct Bank {
    pub api: Api,
    pub users: Arc<Vec<User>>,
    pub matcher: Arc<Matcher>,
}

fn bar(len: u64, prefix: String) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(prefix);
    pb
}

/// Registers and funds `n` users through the API and opens a subscription for each.
pub async fn setup(ctx: &Ctx, n: usize) -> anyhow::Result<Bank> {
    anyhow::ensure!(n >= 2, "--users must be at least 2");
    let api = Api::new(ctx.args.endpoint(), Duration::from_secs(ctx.args.timeout_secs))?;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let password = uuid::Uuid::new_v4().simple().to_string();
    let pb = bar(n as u64, "register".into());
    let registered: Vec<Result<User, ApiError>> = futures::stream::iter(0..n)
        .map(|i| {
            let (api, password, pb) = (api.clone(), password.clone(), pb.clone());
            async move {
                let r = api.register(&format!("lt{tag}u{i}"), &password).await;
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    pb.finish_and_clear();
    let users: Vec<User> = registered.into_iter().collect::<Result<_, _>>()?;
    let pb = bar(n as u64, "fund".into());
    let funded: Vec<Result<(String, String), ApiError>> = futures::stream::iter(users.iter())
        .map(|u| {
            let (api, pb) = (api.clone(), pb.clone());
            async move {
                let r = api.deposit(&u.token, FUNDING_CENTS, &format!("fund-{}", u.name)).await;
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    pb.finish_and_clear();
    for f in funded {
        let (_, status) = f?;
        anyhow::ensure!(status == "CONFIRMED" || status == "PENDING", "funding deposit {status}");
    }
    let matcher = Arc::new(Matcher::default());
    let pb = bar(n as u64, "subscribe".into());
    let opened: Vec<anyhow::Result<()>> = futures::stream::iter(users.iter())
        .map(|u| {
            let (api, pb, m) = (api.clone(), pb.clone(), matcher.clone());
            let stop = ctx.stop_sockets.clone();
            async move {
                let r = crate::gql::subscribe(
                    &api,
                    u,
                    stop,
                    move |id, at| m.event(id, at),
                    |why| eprintln!("a subscription ended early: {why}"),
                )
                .await;
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    pb.finish_and_clear();
    opened.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    // graphql-transport-ws does not acknowledge a subscribe: give the server a moment to start them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(Bank { api, users: Arc::new(users), matcher })
}

/// A sender and a different receiver for send `seq`, spread evenly so no account is a hot row.
pub fn pair(seq: u64, salt: u64, n: usize) -> (usize, usize) {
    let mut z = seq.wrapping_add(salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let n = n.max(2) as u64;
    let from = z % n;
    let to = (from + 1 + (z >> 32) % (n - 1)) % n;
    (usize::try_from(from).unwrap_or(0), usize::try_from(to).unwrap_or(1))
}

/// One open-loop step of `rate` transfers/s through `transferMoney`.
pub async fn step(ctx: &Ctx, bank: &Bank, no: usize, rate: f64, warmup: Duration, window: Duration) -> (Step, Shared) {
    let rec = Shared::default();
    let start = Instant::now() + Duration::from_millis(10);
    let plan = Plan { start, rate, warmup, window, max_in_flight: ctx.args.max_in_flight };
    let (from_, to_) = (start + warmup, start + warmup + window);
    let total = (rate * (warmup + window).as_secs_f64()).floor() as u64;
    let pb = bar(total, format!("{rate}/s"));
    let ticker = progress(pb.clone(), rec.clone(), rate, start, from_, "answer");
    let salt = no as u64 * 1_000_003;
    let d = schedule::drive(plan, Duration::from_secs(ctx.args.timeout_secs + 5), &ctx.cancel, |t| {
        let (api, users, matcher, rec) = (bank.api.clone(), bank.users.clone(), bank.matcher.clone(), rec.clone());
        let (from, to) = pair(t.seq, salt, users.len());
        async move {
            let (Some(s), Some(r)) = (users.get(from), users.get(to)) else { return };
            let key = uuid::Uuid::new_v4().to_string();
            let answer = api.transfer(&s.token, &r.iban, 1, &key).await;
            let now = Instant::now();
            let mut g = rec.lock();
            if let Ok((_, status)) = &answer
                && (status == "CONFIRMED" || status == "FAILED")
                && now >= from_
                && now < to_
            {
                g.decided_in_window += 1;
            }
            if !t.measured {
                return;
            }
            match answer {
                Ok((id, status)) => {
                    // Every answer with a status is timed; anything else is an error, never both.
                    match status.as_str() {
                        "CONFIRMED" => g.confirmed += 1,
                        "FAILED" => g.failed += 1,
                        "PENDING" => g.pending += 1,
                        other => {
                            g.error(format!("status {other}"));
                            return;
                        }
                    }
                    g.record("answer", now - t.intended);
                    if status == "CONFIRMED" || status == "PENDING" {
                        g.expect_events += 1;
                        drop(g);
                        matcher.answered(&id, t.intended, &rec);
                    }
                }
                Err(ApiError::Timeout) => g.timeouts += 1,
                Err(ApiError::Graphql(code, _)) => g.error(code),
                Err(e @ ApiError::Http(_)) => g.error(e.to_string()),
                // The message names the socket's trouble; one kind counts them all.
                Err(ApiError::Transport(_)) => g.error("transport".into()),
            }
        }
    })
    .await;
    // Balance changes still on their way: wait for them a while.
    let deadline = Instant::now() + Duration::from_secs(ctx.args.timeout_secs);
    while bank.matcher.waiting(&rec) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bank.matcher.finish(&rec);
    ticker.abort();
    pb.finish_and_clear();
    let end_s = (from_ + d.window - ctx.origin).as_secs_f64();
    let step = step_from(ctx, "run", rate, &d, &rec, (from_ - ctx.origin).as_secs_f64(), end_s);
    (step, rec)
}

/// Updates `pb` four times a second with the live rate, p99 and error count.
pub fn progress(
    pb: ProgressBar,
    rec: Shared,
    rate: f64,
    start: Instant,
    from_: Instant,
    kind: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = Instant::now();
            pb.set_position((now.saturating_duration_since(start).as_secs_f64() * rate) as u64);
            let g = rec.lock();
            let secs = now.saturating_duration_since(from_).as_secs_f64();
            let live = if secs > 0.0 { g.decided_in_window as f64 / secs } else { 0.0 };
            pb.set_message(format!("{live:.0}/s p99 {:.1} ms errors {}", g.p99(kind), g.errors + g.timeouts));
        }
    })
}

/// Seconds of one warm-up window.
const WARM_WINDOW: Duration = Duration::from_secs(3);

/// Unmeasured windows at `rate` until two in a row have a steady p99 ([`WarmUp::is_steady`]) or `limit` is
/// spent.
async fn warm_up(ctx: &Ctx, bank: &Bank, rate: f64, limit: Duration) -> WarmUp {
    let kind = ctx.args.slo_kind.as_deref().unwrap_or("event");
    let started = Instant::now();
    let mut p99s = Vec::new();
    while started.elapsed() + WARM_WINDOW <= limit && !ctx.cancel.is_cancelled() {
        let (s, _) = step(ctx, bank, 1000 + p99s.len(), rate, Duration::ZERO, WARM_WINDOW).await;
        p99s.push(s.latency.get(kind).map_or(f64::NAN, |l| l.p99_ms));
        if WarmUp::is_steady(&p99s) {
            break;
        }
    }
    let warm = WarmUp {
        rate,
        secs: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        steady: WarmUp::is_steady(&p99s),
        window_p99_ms: p99s,
    };
    let shown: Vec<String> = warm.window_p99_ms.iter().map(|p| format!("{p:.0}")).collect();
    eprintln!(
        "warm-up at {rate}/s: {} s, {kind} p99 of each {} s window {} ms: {}",
        warm.secs,
        WARM_WINDOW.as_secs(),
        shown.join(", "),
        if warm.steady { "steady" } else { "not steady yet (the first step may still pay for a fresh stack)" }
    );
    warm
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Step>> {
    let bank = setup(ctx, ctx.args.users).await?;
    if ctx.args.stack_warmup_secs > 0
        && let Some(&first) = ctx.args.rates.first()
    {
        let warm = warm_up(ctx, &bank, first, Duration::from_secs(ctx.args.stack_warmup_secs)).await;
        *ctx.warm_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(warm);
    }
    let mut steps = Vec::new();
    for (no, &rate) in ctx.args.rates.iter().enumerate() {
        if ctx.cancel.is_cancelled() {
            break;
        }
        let warmup = Duration::from_secs(ctx.args.warmup_secs);
        let (s, _) = step(ctx, &bank, no, rate, warmup, Duration::from_secs(ctx.args.step_secs)).await;
        eprintln!("{}", crate::output::step_line(&s));
        steps.push(s);
    }
    ctx.stop_sockets.cancel();
    Ok(steps)
}

/// The reference's method: background heartbeats raised by `--increment` every `--step-secs`, a probe transfer
/// each second; stops after 3 probes slower than `--slow-ms` within 5 s, or at `--max-rate`.
pub async fn anchor(ctx: &Ctx) -> anyhow::Result<Vec<Step>> {
    let hb = heartbeat::Heartbeat::new(&ctx.heartbeat_url())?;
    let before = hb.rate().await?;
    let bank = setup(ctx, 2).await?;
    let mut steps = Vec::new();
    let mut bg = 0u64;
    let result = loop {
        if ctx.cancel.is_cancelled() || bg > ctx.args.max_rate {
            break Ok(());
        }
        if let Err(e) = hb.set(bg).await {
            break Err(e);
        }
        let (mut s, rec) =
            step(ctx, &bank, steps.len(), 1.0, Duration::ZERO, Duration::from_secs(ctx.args.step_secs)).await;
        s.mode = "anchor".into();
        s.offered_rate = bg as f64;
        if let Some(l) = s.latency.get("event").cloned() {
            s.latency.insert("probe".into(), l);
        }
        eprintln!("{}", crate::output::step_line(&s));
        let slow = slow_burst(&rec, ctx.args.slow_ms);
        steps.push(s);
        if slow {
            break Ok(());
        }
        bg += ctx.args.increment;
    };
    let _ = hb.set(before).await;
    ctx.stop_sockets.cancel();
    result.map(|()| steps)
}

/// Whether 3 probes took longer than `slow_ms` within 5 s (their latency is in the `event` histogram; this
/// re-reads it as a count of values above the threshold, which is enough at one probe a second).
fn slow_burst(rec: &Shared, slow_ms: f64) -> bool {
    let g = rec.lock();
    let slow_us = (slow_ms * 1000.0) as u64;
    let slow_events = g.hist.get("event").map_or(0, |h| {
        h.iter_recorded().filter(|v| v.value_iterated_to() > slow_us).map(|v| v.count_at_value()).sum::<u64>()
    });
    // Missing events and timeouts are slow probes too.
    slow_events + g.missing_events + g.timeouts >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_distinct_and_spread() {
        let n = 50;
        let mut sent = vec![0u32; n];
        for seq in 0..50_000 {
            let (a, b) = pair(seq, 7, n);
            assert_ne!(a, b);
            assert!(a < n && b < n);
            sent[a] += 1;
        }
        // About 1,000 each: no hot account.
        assert!(sent.iter().all(|&c| (800..1200).contains(&c)), "{sent:?}");
        assert_eq!(pair(3, 0, 2).0 + pair(3, 0, 2).1, 1);
    }
}

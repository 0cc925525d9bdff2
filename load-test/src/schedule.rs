//! Open-loop scheduling: the n-th send of a step is due at `start + n / rate`, whatever happened to the ones
//! before it. A slow receiver never delays the schedule (no coordinated omission); every latency is measured
//! from the intended send time, so time spent waiting for a connection or a slot counts.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// When the first send is due.
    pub start: Instant,
    /// Sends per second.
    pub rate: f64,
    /// Sent at the same rate before the measured window, not recorded.
    pub warmup: Duration,
    pub window: Duration,
    /// Sends outstanding at once; a send due while this many are open is counted as an error, not queued.
    pub max_in_flight: usize,
}

/// One send, handed to the sender at (or just after) its intended time.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub seq: u64,
    pub intended: Instant,
    /// In the measured window (after warm-up).
    pub measured: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Dispatched {
    /// Tickets in the measured window that were handed to the sender.
    pub sent_measured: u64,
    /// Tickets in the measured window refused because `max_in_flight` were open.
    pub overflow_measured: u64,
    /// The measured window as it really ran (shorter when cancelled).
    pub window: Duration,
    pub cancelled: bool,
    /// Sends still open when the grace period ended.
    pub abandoned: usize,
}

/// Runs `plan`, calling `send` for each ticket at its intended time and running what it returns as a task.
/// Returns after the last send and once every task finished or `grace` passed. `cancel` ends the sending early.
pub async fn drive<F, Fut>(plan: Plan, grace: Duration, cancel: &CancellationToken, mut send: F) -> Dispatched
where
    F: FnMut(Ticket) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let rate = if plan.rate.is_finite() && plan.rate > 0.0 { plan.rate } else { 1.0 };
    let start = plan.start;
    let measured_from = start + plan.warmup;
    let total = plan.warmup + plan.window;
    let n = (rate * total.as_secs_f64()).floor() as u64;
    let open = Arc::new(AtomicUsize::new(0));
    let mut out = Dispatched::default();
    for seq in 0..n {
        let intended = start + Duration::from_secs_f64(seq as f64 / rate);
        tokio::select! {
            biased;
            () = cancel.cancelled() => { out.cancelled = true; break; }
            () = tokio::time::sleep_until(intended) => {}
        }
        let measured = intended >= measured_from;
        if open.load(Ordering::Acquire) >= plan.max_in_flight {
            if measured {
                out.overflow_measured += 1;
            }
            continue;
        }
        if measured {
            out.sent_measured += 1;
        }
        open.fetch_add(1, Ordering::AcqRel);
        let fut = send(Ticket { seq, intended, measured });
        let open = open.clone();
        tokio::spawn(async move {
            fut.await;
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
    let end = if out.cancelled { Instant::now() } else { start + total };
    out.window = end.saturating_duration_since(measured_from);
    let deadline = Instant::now() + grace;
    while open.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out.abandoned = open.load(Ordering::Acquire);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::sync::Semaphore;

    #[tokio::test(start_paused = true)]
    async fn the_schedule_holds_under_a_slow_receiver_and_latency_includes_the_wait() {
        // 100 sends per second for one second; the receiver serves one at a time, 50 ms each (20/s).
        let plan = Plan {
            start: Instant::now(),
            rate: 100.0,
            warmup: Duration::ZERO,
            window: Duration::from_secs(1),
            max_in_flight: 1000,
        };
        let receiver = Arc::new(Semaphore::new(1));
        let seen: Arc<Mutex<Vec<(u64, Duration, Duration)>>> = Arc::default();
        let start = Instant::now();
        let cancel = CancellationToken::new();
        let d = drive(plan, Duration::from_secs(60), &cancel, |t| {
            let handed_at = Instant::now();
            let (receiver, seen) = (receiver.clone(), seen.clone());
            async move {
                let _slot = receiver.acquire().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let latency = Instant::now() - t.intended;
                seen.lock().unwrap().push((t.seq, handed_at - start, latency));
            }
        })
        .await;
        assert_eq!((d.sent_measured, d.overflow_measured, d.abandoned), (100, 0, 0));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 100);
        for &(seq, handed_at, _) in seen.iter() {
            // Handed over at its intended time (10 ms apart), not when the receiver was free.
            let due = Duration::from_millis(seq * 10);
            assert!(handed_at >= due && handed_at < due + Duration::from_millis(2), "send {seq} at {handed_at:?}");
        }
        // Served in order: the k-th finishes at (k+1)·50 ms, intended at k·10 ms, so its latency is 40·k + 50 ms.
        let (_, _, last) = seen.iter().max_by_key(|s| s.0).copied().unwrap();
        assert!(last >= Duration::from_millis(40 * 99 + 50), "latency {last:?} leaves out the wait");
        let (_, _, first) = seen.iter().min_by_key(|s| s.0).copied().unwrap();
        assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(52), "{first:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn warmup_sends_are_not_measured_and_overflow_is_counted() {
        let plan = Plan {
            start: Instant::now(),
            rate: 10.0,
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(2),
            max_in_flight: 5,
        };
        let cancel = CancellationToken::new();
        let measured = Arc::new(AtomicUsize::new(0));
        let d = drive(plan, Duration::from_secs(1), &cancel, |t| {
            let measured = measured.clone();
            async move {
                if t.measured {
                    measured.fetch_add(1, Ordering::Relaxed);
                }
                // Never answers within the run: the first five fill every slot.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        })
        .await;
        assert_eq!(d.sent_measured, 0, "the five slots were taken during warm-up");
        assert_eq!(d.overflow_measured, 20, "every measured send is accounted for");
        assert_eq!(d.abandoned, 5);
        assert_eq!(d.window, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_ends_the_step_early() {
        let plan = Plan {
            start: Instant::now(),
            rate: 10.0,
            warmup: Duration::ZERO,
            window: Duration::from_secs(100),
            max_in_flight: 100,
        };
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1050)).await;
            c.cancel();
        });
        let d = drive(plan, Duration::from_secs(1), &cancel, |_| async {}).await;
        assert!(d.cancelled);
        assert_eq!(d.sent_measured, 11);
        assert!(d.window >= Duration::from_millis(1050) && d.window < Duration::from_millis(1100), "{:?}", d.window);
    }
}

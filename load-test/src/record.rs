//! What one step collects while it runs, and the matching of transfer answers with their balance events.

use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

use crate::hist;

#[derive(Default)]
pub struct Rec {
    pub hist: BTreeMap<&'static str, Histogram<u64>>,
    /// Sent in the measured window (pipeline: commands whose CreateTime is in it).
    pub sent: u64,
    pub confirmed: u64,
    pub failed: u64,
    pub pending: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Answered transfers whose balance change never arrived.
    pub missing_events: u64,
    /// Balance changes expected (confirmed or pending transfers).
    pub expect_events: u64,
    /// Decided (confirmed or failed) answers that arrived inside the measured window, whenever sent.
    pub decided_in_window: u64,
    /// Error codes and how often they came.
    pub error_kinds: BTreeMap<String, u64>,
}

impl Rec {
    pub fn record(&mut self, kind: &'static str, d: Duration) {
        hist::record(self.hist.entry(kind).or_insert_with(hist::new), d);
    }

    pub fn error(&mut self, kind: String) {
        self.errors += 1;
        if self.error_kinds.len() < 50 || self.error_kinds.contains_key(&kind) {
            *self.error_kinds.entry(kind).or_default() += 1;
        }
    }

    /// p99 in ms of `kind` so far (for the progress bar).
    pub fn p99(&self, kind: &str) -> f64 {
        self.hist.get(kind).filter(|h| !h.is_empty()).map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0)
    }
}

#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Rec>>);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Rec> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn same(&self, other: &Shared) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

enum Slot {
    Arrived(Instant),
    Waiting { intended: Instant, rec: Shared },
}

/// Pairs a transfer's answer (its id) with its balance change on the receiver's socket, whichever comes first.
#[derive(Default)]
pub struct Matcher {
    slots: Mutex<HashMap<String, Slot>>,
}

/// Entries kept at most; beyond it an unmatched event is dropped (its transfer then counts as missing).
const MAX_SLOTS: usize = 2_000_000;

impl Matcher {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn event(&self, id: &str, at: Instant) {
        let mut slots = self.slots();
        match slots.remove(id) {
            Some(Slot::Waiting { intended, rec }) => {
                drop(slots);
                rec.lock().record("event", at.saturating_duration_since(intended));
            }
            Some(arrived @ Slot::Arrived(_)) => {
                slots.insert(id.to_owned(), arrived);
            }
            None if slots.len() < MAX_SLOTS => {
                slots.insert(id.to_owned(), Slot::Arrived(at));
            }
            None => {}
        }
    }

    pub fn answered(&self, id: &str, intended: Instant, rec: &Shared) {
        let mut slots = self.slots();
        match slots.remove(id) {
            Some(Slot::Arrived(at)) => {
                drop(slots);
                rec.lock().record("event", at.saturating_duration_since(intended));
            }
            _ if slots.len() < MAX_SLOTS => {
                slots.insert(id.to_owned(), Slot::Waiting { intended, rec: rec.clone() });
            }
            _ => rec.lock().missing_events += 1,
        }
    }

    pub fn waiting(&self, rec: &Shared) -> u64 {
        self.slots().values().filter(|s| matches!(s, Slot::Waiting { rec: r, .. } if r.same(rec))).count() as u64
    }

    /// Ends a step: its transfers still waiting count as missing events; stale arrivals are dropped.
    pub fn finish(&self, rec: &Shared) {
        let mut missing = 0;
        let now = Instant::now();
        self.slots().retain(|_, s| match s {
            Slot::Waiting { rec: r, .. } if r.same(rec) => {
                missing += 1;
                false
            }
            Slot::Waiting { .. } => true,
            Slot::Arrived(at) => now.saturating_duration_since(*at) < Duration::from_secs(60),
        });
        rec.lock().missing_events += missing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn answer_and_event_match_in_either_order() {
        let m = Matcher::default();
        let rec = Shared::default();
        let t0 = Instant::now();
        tokio::time::advance(Duration::from_millis(30)).await;
        m.event("a", Instant::now());
        m.answered("a", t0, &rec);
        m.answered("b", t0, &rec);
        tokio::time::advance(Duration::from_millis(20)).await;
        m.event("b", Instant::now());
        m.answered("c", t0, &rec);
        assert_eq!(m.waiting(&rec), 1);
        m.finish(&rec);
        let r = rec.lock();
        let h = &r.hist["event"];
        assert_eq!(h.len(), 2);
        assert!(
            (29_900..=30_100).contains(&h.min()) && (49_900..=50_100).contains(&h.max()),
            "{} {}",
            h.min(),
            h.max()
        );
        assert_eq!(r.missing_events, 1);
    }
}

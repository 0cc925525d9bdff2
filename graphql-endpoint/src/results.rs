//! The results channel: the projection announces, through PostgreSQL `pg_notify` on [`CHANNEL`], the results of
//! gateway transfers and account creations and the users whose sessions changed. Every instance listens
//! ([`run_listener`]) and hands each [`Notice`] to the request waiting for it, to `transferResults` subscribers
//! and to the websockets of a user whose sessions changed. The channel's name, payload and SQL are in
//! [`crate::channel`]; this module holds the listener and the delivery.

use crate::channel::{CHANNEL, Notice, NoticeKind};
use crate::fanout::Fanout;
use crate::limits::SUBSCRIBER_BUFFER;
use crate::lock::lock;
use bank_core::retry::Backoff;
use bank_core::shutdown::CancellationToken;
use sqlx::postgres::{PgListener, PgPool};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

/// Where this instance delivers notices.
pub struct Results {
    /// Decided transfers by user, for `transferResults` subscribers
    pub transfers: Fanout<i64, Notice>,
    /// Users whose sessions changed (logout, password or role change), on any instance
    pub sessions: broadcast::Sender<i64>,
    /// Sessions resolved lately; a sessions notice forgets its user's before anyone hears of it
    pub session_cache: crate::session_cache::SessionCache,
    /// Requests waiting for a command's result: several may wait for one id (the same idempotency key sent twice
    /// at once), each under its own number so that one giving up does not take the other's place.
    waiters: Mutex<HashMap<Uuid, Vec<Waiting>>>,
    next_waiter: AtomicU64,
    listening: AtomicBool,
}

/// A waiter's number and where its result goes.
type Waiting = (u64, oneshot::Sender<Notice>);

/// One request's wait for a result: [`Results::forget`] it when done.
pub struct Waiter {
    id: Uuid,
    n: u64,
    pub result: oneshot::Receiver<Notice>,
}

impl Default for Results {
    fn default() -> Self {
        Self {
            transfers: Fanout::new(SUBSCRIBER_BUFFER),
            sessions: broadcast::channel(SUBSCRIBER_BUFFER).0,
            session_cache: crate::session_cache::SessionCache::default(),
            waiters: Mutex::default(),
            next_waiter: AtomicU64::new(0),
            listening: AtomicBool::new(false),
        }
    }
}

impl Results {
    /// Registers interest in the result of command `id`; call before sending the command.
    pub fn expect(&self, id: Uuid) -> Waiter {
        let (tx, rx) = oneshot::channel();
        let n = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        lock(&self.waiters).entry(id).or_default().push((n, tx));
        Waiter { id, n, result: rx }
    }

    /// Ends `waiter`'s interest (answered or not); other waiters of the same id keep theirs.
    pub fn forget(&self, waiter: &Waiter) {
        let mut waiters = lock(&self.waiters);
        if let Some(list) = waiters.get_mut(&waiter.id) {
            list.retain(|(n, _)| *n != waiter.n);
            if list.is_empty() {
                waiters.remove(&waiter.id);
            }
        }
    }

    /// Hands a notice on: to the request waiting for it, and to the subscribers of its kind.
    pub fn deliver(&self, notice: Notice) {
        if notice.kind == NoticeKind::Sessions {
            // Forgotten first, so a websocket that re-checks on this notice reads the store.
            self.session_cache.forget_user(notice.user);
            // No subscriber is not an error.
            let _ = self.sessions.send(notice.user);
            return;
        }
        let waiting = lock(&self.waiters).remove(&notice.id);
        for (_, tx) in waiting.into_iter().flatten() {
            let _ = tx.send(notice.clone());
        }
        if notice.kind == NoticeKind::Transfer {
            let user = notice.user;
            self.transfers.publish(&user, notice);
        }
    }

    /// The listener is connected.
    pub fn ready(&self) -> Result<(), String> {
        if !self.listening.load(Ordering::Relaxed) {
            return Err("not listening for results".into());
        }
        Ok(())
    }
}

/// Listens for the projection's notices (all instances receive all of them) and delivers them, reconnecting
/// with a bounded backoff.
pub async fn run_listener(results: std::sync::Arc<Results>, pool: PgPool, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200));
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let listener = tokio::select! {
            () = shutdown.cancelled() => return,
            l = listener => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for results yet; retrying");
                    backoff.sleep().await;
                    continue;
                }
            },
        };
        // Notices sent while no listener was connected are lost: forget every session resolved before.
        results.session_cache.clear();
        results.listening.store(true, Ordering::Relaxed);
        backoff = Backoff::new(Duration::from_millis(200));
        if listen(&results, listener, &shutdown).await.is_none() {
            return;
        }
        results.listening.store(false, Ordering::Relaxed);
    }
}

/// Delivers notices until the connection fails (`Some`) or shutdown (`None`).
async fn listen(results: &Results, mut listener: PgListener, shutdown: &CancellationToken) -> Option<()> {
    loop {
        let n = tokio::select! {
            () = shutdown.cancelled() => return None,
            n = listener.try_recv() => n,
        };
        match n {
            Ok(Some(n)) => match serde_json::from_str::<Notice>(n.payload()) {
                Ok(notice) => results.deliver(notice),
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed notice"),
            },
            Ok(None) => {
                // The connection dropped; notices sent meanwhile are lost, so waiting requests fall back to
                // reading the stored status when their wait ends.
                tracing::warn!("result listener lost its connection; reconnecting");
                return Some(());
            }
            Err(e) => {
                tracing::warn!(error = %e, "result listener failed; reconnecting");
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::TransferStatus;

    /// User 1's transfer `id`, confirmed.
    fn confirmed(id: Uuid) -> Notice {
        Notice {
            kind: NoticeKind::Transfer,
            id,
            user: 1,
            status: Some(TransferStatus::Confirmed),
            reason: None,
            balance: true,
        }
    }

    #[tokio::test]
    async fn a_notice_reaches_its_waiter_and_transfer_subscribers_only() {
        let results = Results::default();
        let id = Uuid::new_v4();
        let waiting = results.expect(id).result;
        let mut transfers = results.transfers.subscribe(1);
        let mut sessions = results.sessions.subscribe();
        results.deliver(confirmed(id));
        assert_eq!(waiting.await.unwrap().status, Some(TransferStatus::Confirmed));
        assert_eq!(transfers.try_recv().unwrap().id, id);
        assert!(sessions.try_recv().is_err(), "a transfer is no session notice");
        results.deliver(Notice {
            kind: NoticeKind::Sessions,
            id: Uuid::nil(),
            user: 9,
            status: None,
            reason: None,
            balance: false,
        });
        assert_eq!(sessions.try_recv().unwrap(), 9);
        assert!(transfers.try_recv().is_err(), "a session notice is no transfer result");
    }

    #[tokio::test]
    async fn two_requests_waiting_for_one_id_both_get_the_result() {
        let results = Results::default();
        let id = Uuid::new_v4();
        let mut first = results.expect(id);
        let mut second = results.expect(id);
        let third = results.expect(id);
        // One gives up first: the others still wait.
        results.forget(&third);
        results.deliver(confirmed(id));
        assert_eq!((&mut first.result).await.unwrap().status, Some(TransferStatus::Confirmed));
        assert_eq!((&mut second.result).await.unwrap().status, Some(TransferStatus::Confirmed));
        results.forget(&first);
        results.forget(&second);
        assert!(lock(&results.waiters).is_empty(), "nothing is left behind");
    }
}

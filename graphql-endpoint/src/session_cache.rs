//! The sessions this instance resolved lately, so a signed-in request does not read `gateway.sessions` every
//! time. Only users with an open account are kept (their row no longer changes but through a notice), each
//! entry for at most [`TTL`], never past the session's expiry. Entries go when a sessions notice names their
//! user ([`crate::results::Results::deliver`] forgets them before any websocket hears of it), when this instance
//! ends a session itself, and all at once when the notice listener reconnects (notices may have been missed).

use crate::lock::lock;
use crate::store::{User, token_hash};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an entry is trusted without a notice.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; a full cache starts again empty.
pub const MAX_ENTRIES: usize = 50_000;

struct Entry {
    user: User,
    expires_at: chrono::DateTime<chrono::Utc>,
    cached_at: Instant,
}

#[derive(Default)]
pub struct SessionCache {
    /// By the token's hash (the token itself is not kept).
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
}

impl SessionCache {
    /// The user and expiry of `token`'s session, when known and fresh.
    pub fn get(&self, token: &str) -> Option<(User, chrono::DateTime<chrono::Utc>)> {
        let key = token_hash(token);
        let mut entries = lock(&self.entries);
        let e = entries.get(&key)?;
        if e.cached_at.elapsed() < TTL && e.expires_at > chrono::Utc::now() {
            metrics::counter!("gateway_session_cache_total", "outcome" => "hit").increment(1);
            return Some((e.user.clone(), e.expires_at));
        }
        entries.remove(&key);
        None
    }

    /// Keeps what the store said of `token`, for a user whose account is open.
    pub fn put(&self, token: &str, user: &User, expires_at: chrono::DateTime<chrono::Utc>) {
        metrics::counter!("gateway_session_cache_total", "outcome" => "miss").increment(1);
        if user.account_token.is_none() || user.iban.is_none() {
            return;
        }
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(token_hash(token), Entry { user: user.clone(), expires_at, cached_at: Instant::now() });
    }

    /// Forgets every session of `user_id`.
    pub fn forget_user(&self, user_id: i64) {
        lock(&self.entries).retain(|_, e| e.user.id != user_id);
    }

    /// Forgets `token`'s session.
    pub fn forget(&self, token: &str) {
        lock(&self.entries).remove(&token_hash(token));
    }

    /// Forgets everything.
    pub fn clear(&self) {
        lock(&self.entries).clear();
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Role;

    fn user(id: i64, open: bool) -> User {
        User {
            id,
            username: format!("u{id}"),
            role: Role::Client,
            iban: open.then(|| "NL20OPEN0000000001".to_owned()),
            account_token: open.then(|| "t".to_owned()),
            account_error: None,
        }
    }

    #[test]
    fn sessions_are_kept_until_their_user_or_token_is_forgotten() {
        let c = SessionCache::default();
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        c.put(&a, &user(1, true), later);
        c.put(&b, &user(2, true), later);
        assert_eq!(c.get(&a).map(|(u, _)| u.id), Some(1));
        c.forget_user(1);
        assert!(c.get(&a).is_none());
        assert!(c.get(&b).is_some());
        c.forget(&b);
        assert!(c.get(&b).is_none());
        c.put(&a, &user(1, true), later);
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn no_account_or_an_expired_session_is_not_served() {
        let c = SessionCache::default();
        let t = "c".repeat(64);
        c.put(&t, &user(3, false), chrono::Utc::now() + chrono::Duration::hours(1));
        assert!(c.get(&t).is_none(), "a user whose account is pending changes without a notice");
        c.put(&t, &user(3, true), chrono::Utc::now() - chrono::Duration::seconds(1));
        assert!(c.get(&t).is_none(), "expired");
        assert!(c.is_empty(), "an expired entry is dropped when found");
    }

    #[test]
    fn a_full_cache_starts_again() {
        let c = SessionCache::default();
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        for i in 0..=MAX_ENTRIES {
            c.put(&format!("{i:064}"), &user(i as i64, true), later);
        }
        assert_eq!(c.len(), 1);
    }
}

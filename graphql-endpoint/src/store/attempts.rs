//! Attempts per key in a fixed window (`gateway.attempts`), shared by every gateway instance.

use sqlx::postgres::PgPool;
use std::time::Duration;

/// A limit: at most `max` attempts of `key` per window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub key: String,
    pub max: u32,
}

/// Counts one attempt of every key, all or none: `Ok(None)` when every key was within its limit (each now
/// counts one more), `Ok(Some((wait, key)))` when one was not (nothing is counted; `wait` is when the window of
/// `key`, the refused key that waits longest, ends). The row locks order concurrent attempts of one key, so of a
/// burst exactly `max` pass.
pub async fn take(pool: &PgPool, limits: &[Limit], window: Duration) -> sqlx::Result<Option<(Duration, String)>> {
    let mut tx = pool.begin().await?;
    let mut refused: Option<(Duration, String)> = None;
    // A fixed order, so two attempts over the same keys never wait on each other's locks in a cycle.
    let mut sorted: Vec<&Limit> = limits.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    sorted.dedup_by(|a, b| a.key == b.key);
    for limit in sorted {
        let (count, left): (i32, f64) = sqlx::query_as(
            "INSERT INTO gateway.attempts AS a (key, count, since) VALUES ($1, 1, now()) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN a.since <= now() - make_interval(secs => $2) THEN 1 ELSE a.count + 1 END, \
               since = CASE WHEN a.since <= now() - make_interval(secs => $2) THEN now() ELSE a.since END \
             RETURNING count, extract(epoch FROM since + make_interval(secs => $2) - now())::float8",
        )
        .bind(&limit.key)
        .bind(window.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
        if i64::from(count) > i64::from(limit.max) {
            let wait = Duration::from_secs_f64(left.max(0.0));
            if refused.as_ref().is_none_or(|(w, _)| wait > *w) {
                refused = Some((wait, limit.key.clone()));
            }
        }
    }
    if refused.is_some() {
        tx.rollback().await?;
        return Ok(refused);
    }
    tx.commit().await?;
    Ok(None)
}

/// Takes one attempt back from each key (an attempt that turned out not to count, such as a right password), in
/// the same key order as [`take`], so the two never wait on each other's row locks in a cycle.
pub async fn give_back(pool: &PgPool, keys: &[String]) -> sqlx::Result<()> {
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut tx = pool.begin().await?;
    for key in sorted {
        sqlx::query("UPDATE gateway.attempts SET count = GREATEST(count - 1, 0) WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Forgets `key` (a user name from an address, after the right password from there).
pub async fn clear(pool: &PgPool, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM gateway.attempts WHERE key = $1").bind(key).execute(pool).await?;
    Ok(())
}

/// Deletes the rows whose window ended; returns how many.
pub async fn expire(pool: &PgPool, window: Duration) -> sqlx::Result<u64> {
    // Rows an attempt holds right now are left for the next sweep: no lock is waited for.
    let done = sqlx::query(
        "DELETE FROM gateway.attempts WHERE key IN (SELECT key FROM gateway.attempts \
         WHERE since <= now() - make_interval(secs => $1) FOR UPDATE SKIP LOCKED)",
    )
    .bind(window.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Keys tracked now (for tests and metrics).
pub async fn tracked(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM gateway.attempts").fetch_one(pool).await
}

//! The registry's tables in Postgres schema `registry`: `schemas`, `subject_versions`, `config`.

use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

use crate::compat::Level;

pub const MIGRATIONS: &[bank_core::db::Migration] =
    &[(1, include_str!("../migrations/0001_init.sql")), (2, include_str!("../migrations/0002_canonical_hash.sql"))];

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub version: i32,
    pub schema_id: i32,
    pub canonical: String,
}

/// Live (not soft-deleted) versions of a subject, oldest first.
pub async fn live_versions<'e>(exec: impl PgExecutor<'e>, subject: &str) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT v.version, v.schema_id, s.canonical FROM registry.subject_versions v \
         JOIN registry.schemas s ON s.id = v.schema_id WHERE v.subject = $1 AND NOT v.deleted ORDER BY v.version",
    )
    .bind(subject)
    .fetch_all(exec)
    .await
}

pub async fn subjects(pool: &PgPool, include_deleted: bool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT subject FROM registry.subject_versions WHERE $1 OR NOT deleted ORDER BY subject",
    )
    .bind(include_deleted)
    .fetch_all(pool)
    .await
}

pub async fn schema_by_id(pool: &PgPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT canonical FROM registry.schemas WHERE id = $1").bind(id).fetch_optional(pool).await
}

pub async fn subject_versions_of_schema(pool: &PgPool, id: i64) -> Result<Vec<(String, i32)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT subject, version FROM registry.subject_versions WHERE schema_id = $1 AND NOT deleted ORDER BY subject, version",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// Serialises registrations per subject for the rest of the transaction.
pub async fn lock_subject(tx: &mut Transaction<'_, Postgres>, subject: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("subject:{subject}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The id of `canonical`, inserting it if new. Ids are global and never reused. A schema is found by the SHA-256
/// of its canonical text (unique index), then compared in full.
pub async fn schema_id(tx: &mut Transaction<'_, Postgres>, canonical: &str) -> Result<i32, sqlx::Error> {
    let inserted: Option<i32> = sqlx::query_scalar(
        "INSERT INTO registry.schemas (canonical, canonical_sha256) VALUES ($1, sha256(convert_to($1, 'UTF8'))) \
         ON CONFLICT (canonical_sha256) DO NOTHING RETURNING id",
    )
    .bind(canonical)
    .fetch_optional(&mut **tx)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => {
            sqlx::query_scalar(
                "SELECT id FROM registry.schemas WHERE canonical_sha256 = sha256(convert_to($1, 'UTF8')) \
                 AND canonical = $1",
            )
            .bind(canonical)
            .fetch_one(&mut **tx)
            .await
        }
    }
}

/// Appends a version; numbering continues after soft-deleted versions.
pub async fn add_version(
    tx: &mut Transaction<'_, Postgres>,
    subject: &str,
    schema_id: i32,
) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO registry.subject_versions (subject, version, schema_id) \
         SELECT $1, COALESCE(MAX(version), 0) + 1, $2 FROM registry.subject_versions WHERE subject = $1 RETURNING version",
    )
    .bind(subject)
    .bind(schema_id)
    .fetch_one(&mut **tx)
    .await
}

pub async fn soft_delete_subject(pool: &PgPool, subject: &str) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE registry.subject_versions SET deleted = true WHERE subject = $1 AND NOT deleted RETURNING version",
    )
    .bind(subject)
    .fetch_all(pool)
    .await
    .map(sorted)
}

pub async fn soft_delete_version(pool: &PgPool, subject: &str, version: i32) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE registry.subject_versions SET deleted = true WHERE subject = $1 AND version = $2 AND NOT deleted",
    )
    .bind(subject)
    .bind(version)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Removes a subject's soft-deleted versions for good; schema ids stay reserved.
pub async fn hard_delete_subject(pool: &PgPool, subject: &str) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar("DELETE FROM registry.subject_versions WHERE subject = $1 AND deleted RETURNING version")
        .bind(subject)
        .fetch_all(pool)
        .await
        .map(sorted)
}

fn sorted(mut v: Vec<i32>) -> Vec<i32> {
    v.sort_unstable();
    v
}

const GLOBAL: &str = "";

pub async fn subject_level(pool: &PgPool, subject: &str) -> Result<Option<Level>, sqlx::Error> {
    let level: Option<String> = sqlx::query_scalar("SELECT compatibility FROM registry.config WHERE subject = $1")
        .bind(subject)
        .fetch_optional(pool)
        .await?;
    Ok(level.and_then(|l| l.parse().ok()))
}

pub async fn global_level(pool: &PgPool) -> Result<Level, sqlx::Error> {
    Ok(subject_level(pool, GLOBAL).await?.unwrap_or(Level::DEFAULT))
}

/// The level that applies to `subject`: its own, else the global one.
pub async fn effective_level(pool: &PgPool, subject: &str) -> Result<Level, sqlx::Error> {
    match subject_level(pool, subject).await? {
        Some(l) => Ok(l),
        None => global_level(pool).await,
    }
}

pub async fn set_level(pool: &PgPool, subject: Option<&str>, level: Level) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO registry.config (subject, compatibility) VALUES ($1, $2) \
         ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility",
    )
    .bind(subject.unwrap_or(GLOBAL))
    .bind(level.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn delete_subject_level(pool: &PgPool, subject: &str) -> Result<Option<Level>, sqlx::Error> {
    let level: Option<String> =
        sqlx::query_scalar("DELETE FROM registry.config WHERE subject = $1 RETURNING compatibility")
            .bind(subject)
            .fetch_optional(pool)
            .await?;
    Ok(level.and_then(|l| l.parse().ok()))
}

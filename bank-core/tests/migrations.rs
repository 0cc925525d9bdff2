//! The migration runner against the stack's real PostgreSQL: checksums are recorded, an edited migration is
//! refused with its schema and number, and ledgers from before checksums are adopted.

use bank_core::db::{self, MigrateError, Migration};
use bank_core::testing::fresh_database;

const SCHEMA: &str = "ledger_test";
const V1: &str = "CREATE TABLE ledger_test.things (id BIGINT PRIMARY KEY);";
const V2: &str = "ALTER TABLE ledger_test.things ADD COLUMN name TEXT;";

async fn recorded(pool: &sqlx::PgPool) -> Vec<(i64, Option<Vec<u8>>)> {
    sqlx::query_as("SELECT version, checksum FROM ledger_test.schema_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_edited_migration_is_refused_with_its_schema_and_number() {
    let (_, pool) = fresh_database().await;
    db::migrate(&pool, SCHEMA, &[(1, V1), (2, V2)]).await.unwrap();
    assert_eq!(recorded(&pool).await, vec![(1, Some(db::checksum(V1))), (2, Some(db::checksum(V2)))]);
    // Running the same migrations again changes nothing.
    db::migrate(&pool, SCHEMA, &[(1, V1), (2, V2)]).await.unwrap();

    let edited: &[Migration] = &[(1, V1), (2, "ALTER TABLE ledger_test.things ADD COLUMN label TEXT;"), (3, V2)];
    let err = db::migrate(&pool, SCHEMA, edited).await.unwrap_err();
    assert!(matches!(&err, MigrateError::Edited { schema, version: 2, .. } if schema == SCHEMA), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("migration 2 of schema `ledger_test` was edited"), "{message}");
    // Nothing of the refused run was applied: no migration 3, no `label` column.
    assert_eq!(recorded(&pool).await.len(), 2);
    let label: Option<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = 'ledger_test' AND table_name = 'things' AND column_name = 'label'",
    )
    .fetch_optional(&pool)
    .await
    .unwrap();
    assert_eq!(label, None);
}

#[tokio::test]
async fn a_ledger_without_checksums_is_adopted_then_guarded() {
    let (_, pool) = fresh_database().await;
    // The ledger as runners before checksums left it.
    for sql in [
        "CREATE SCHEMA ledger_test",
        "CREATE TABLE ledger_test.schema_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        V1,
        "INSERT INTO ledger_test.schema_migrations (version) VALUES (1)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    db::migrate(&pool, SCHEMA, &[(1, V1), (2, V2)]).await.unwrap();
    assert_eq!(recorded(&pool).await, vec![(1, Some(db::checksum(V1))), (2, Some(db::checksum(V2)))]);

    let err =
        db::migrate(&pool, SCHEMA, &[(1, "CREATE TABLE ledger_test.other (id INT);"), (2, V2)]).await.unwrap_err();
    assert!(matches!(&err, MigrateError::Edited { version: 1, .. }), "{err:?}");
}

#[tokio::test]
async fn schema_names_are_plain_identifiers() {
    let (_, pool) = fresh_database().await;
    let err = db::migrate(&pool, "x; DROP TABLE y", &[(1, V1)]).await.unwrap_err();
    assert!(matches!(err, MigrateError::SchemaName(_)), "{err:?}");
}

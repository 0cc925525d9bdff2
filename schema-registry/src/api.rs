//! The REST endpoints (a subset of Confluent Schema Registry's API).

use apache_avro::Schema;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::compat::{self, Level};
use crate::error::{ApiError, CONTENT_TYPE};
use crate::schema::{MAX_SCHEMA_BYTES, SchemaRequest, parse_schema};
use crate::store;

type ApiResult = Result<Response, ApiError>;

/// Largest request body, in bytes: a schema escaped as a JSON string, and its envelope.
pub const MAX_BODY_BYTES: usize = 2 * MAX_SCHEMA_BYTES + 4096;

/// Schema parses and compatibility checks running at once, each on a blocking thread so the async workers keep
/// serving lookups meanwhile.
static CPU_JOBS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `job` (parsing, compatibility) on a blocking thread, at most two at once.
async fn off_workers<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    // The permit goes with the job: a client that hangs up does not free it while the job still runs.
    let permit = CPU_JOBS.acquire().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job()
    })
    .await
    .map_err(ApiError::internal)?
}

pub fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(get_version).delete(delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(get_version_schema))
        .route("/schemas/ids/{id}", get(get_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(get_schema_versions))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route("/config", get(get_global_config).put(put_global_config))
        .route("/config/{subject}", get(get_subject_config).put(put_subject_config).delete(delete_subject_config))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(check_compatibility))
        .with_state(pool)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // No web page may reach the registry through a rebound domain name (DNS rebinding).
        .layer(axum::middleware::from_fn(bank_core::http::local_hosts_only))
}

fn ok(body: Value) -> Response {
    ([("content-type", CONTENT_TYPE)], body.to_string()).into_response()
}

fn ok_ok(body: Value) -> ApiResult {
    Ok(ok(body))
}

/// Accepts the body whatever content type the client sent (Confluent clients use several).
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(ApiError::bad_request)
}

fn parse_stored(rows: &[store::VersionRow]) -> Result<Vec<(i32, Schema)>, ApiError> {
    rows.iter()
        .map(|r| {
            Schema::parse_str(&r.canonical).map(|s| (r.version, s)).map_err(|e| {
                ApiError::backend(&sqlx::Error::Protocol(format!("stored schema {} unreadable: {e}", r.schema_id)))
            })
        })
        .collect()
}

pub enum VersionRef {
    Latest,
    Number(i32),
}

pub fn parse_version(v: &str) -> Result<VersionRef, ApiError> {
    match v {
        "latest" | "-1" => Ok(VersionRef::Latest),
        _ => match v.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionRef::Number(n)),
            _ => Err(ApiError::invalid_version(v)),
        },
    }
}

/// Finds a live version of `subject`: 40401 when the subject has none, 40402 when that version is absent.
async fn find_version(pool: &PgPool, subject: &str, version: &str) -> Result<store::VersionRow, ApiError> {
    let wanted = parse_version(version)?;
    let rows = store::live_versions(pool, subject).await?;
    let Some(latest) = rows.last().cloned() else {
        return Err(ApiError::subject_not_found(subject));
    };
    match wanted {
        VersionRef::Latest => Ok(latest),
        VersionRef::Number(n) => {
            rows.into_iter().find(|r| r.version == n).ok_or_else(|| ApiError::version_not_found(version))
        }
    }
}

#[derive(Debug, Deserialize)]
struct DeletedParam {
    #[serde(default)]
    deleted: bool,
}

async fn list_subjects(State(pool): State<PgPool>, Query(p): Query<DeletedParam>) -> ApiResult {
    ok_ok(json!(store::subjects(&pool, p.deleted).await?))
}

async fn list_versions(State(pool): State<PgPool>, Path(subject): Path<String>) -> ApiResult {
    let rows = store::live_versions(&pool, &subject).await?;
    if rows.is_empty() {
        return Err(ApiError::subject_not_found(&subject));
    }
    ok_ok(json!(rows.iter().map(|r| r.version).collect::<Vec<_>>()))
}

#[tracing::instrument(skip_all, fields(subject = %subject))]
async fn register(State(pool): State<PgPool>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let req: SchemaRequest = parse_body(&body)?;
    let parsed = off_workers(move || parse_schema(&req)).await?;
    let level = store::effective_level(&pool, &subject).await?;
    let mut tx = pool.begin().await?;
    store::lock_subject(&mut tx, &subject).await?;
    let existing = store::live_versions(&mut *tx, &subject).await?;
    if let Some(same) = existing.iter().find(|r| r.canonical == parsed.canonical) {
        return ok_ok(json!({ "id": same.schema_id }));
    }
    let new = parsed.schema.clone();
    let problems = off_workers(move || Ok(compat::check(level, &new, &parse_stored(&existing)?))).await?;
    if !problems.is_empty() {
        metrics::counter!("registry_registrations_total", "outcome" => "incompatible").increment(1);
        return Err(ApiError::incompatible(&subject, &problems));
    }
    let id = store::schema_id(&mut tx, &parsed.canonical).await?;
    let version = store::add_version(&mut tx, &subject, id).await?;
    tx.commit().await?;
    metrics::counter!("registry_registrations_total", "outcome" => "registered").increment(1);
    tracing::info!(subject = %subject, id, version, "schema registered");
    ok_ok(json!({ "id": id }))
}

async fn lookup(State(pool): State<PgPool>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let req: SchemaRequest = parse_body(&body)?;
    let parsed = off_workers(move || parse_schema(&req)).await?;
    let rows = store::live_versions(&pool, &subject).await?;
    if rows.is_empty() {
        return Err(ApiError::subject_not_found(&subject));
    }
    let found = rows.into_iter().find(|r| r.canonical == parsed.canonical).ok_or_else(ApiError::schema_not_found)?;
    ok_ok(json!({ "subject": subject, "id": found.schema_id, "version": found.version, "schema": found.canonical }))
}

async fn get_version(State(pool): State<PgPool>, Path((subject, version)): Path<(String, String)>) -> ApiResult {
    let row = find_version(&pool, &subject, &version).await?;
    ok_ok(json!({ "subject": subject, "id": row.schema_id, "version": row.version, "schema": row.canonical }))
}

async fn get_version_schema(State(pool): State<PgPool>, Path((subject, version)): Path<(String, String)>) -> ApiResult {
    let row = find_version(&pool, &subject, &version).await?;
    Ok(([("content-type", CONTENT_TYPE)], row.canonical).into_response())
}

#[derive(Debug, Deserialize)]
struct PermanentParam {
    #[serde(default)]
    permanent: bool,
}

async fn delete_subject(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    Query(p): Query<PermanentParam>,
) -> ApiResult {
    if p.permanent {
        if !store::live_versions(&pool, &subject).await?.is_empty() {
            return Err(ApiError::subject_not_soft_deleted(&subject));
        }
        let versions = store::hard_delete_subject(&pool, &subject).await?;
        if versions.is_empty() {
            return Err(ApiError::subject_not_found(&subject));
        }
        return ok_ok(json!(versions));
    }
    let versions = store::soft_delete_subject(&pool, &subject).await?;
    if versions.is_empty() {
        return Err(ApiError::subject_not_found(&subject));
    }
    tracing::info!(subject = %subject, ?versions, "subject deleted");
    ok_ok(json!(versions))
}

async fn delete_version(State(pool): State<PgPool>, Path((subject, version)): Path<(String, String)>) -> ApiResult {
    let row = find_version(&pool, &subject, &version).await?;
    if !store::soft_delete_version(&pool, &subject, row.version).await? {
        return Err(ApiError::version_not_found(&version));
    }
    ok_ok(json!(row.version))
}

async fn get_schema_by_id(State(pool): State<PgPool>, Path(id): Path<i64>) -> ApiResult {
    let schema = store::schema_by_id(&pool, id).await?.ok_or_else(|| ApiError::schema_id_not_found(id))?;
    ok_ok(json!({ "schema": schema }))
}

async fn get_schema_versions(State(pool): State<PgPool>, Path(id): Path<i64>) -> ApiResult {
    if store::schema_by_id(&pool, id).await?.is_none() {
        return Err(ApiError::schema_id_not_found(id));
    }
    let rows = store::subject_versions_of_schema(&pool, id).await?;
    ok_ok(json!(rows.into_iter().map(|(s, v)| json!({ "subject": s, "version": v })).collect::<Vec<_>>()))
}

#[derive(Debug, Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

pub fn parse_level(body: &Bytes) -> Result<Level, ApiError> {
    let req: ConfigRequest = parse_body(body)?;
    req.compatibility.parse().map_err(|()| ApiError::invalid_compatibility(&req.compatibility))
}

async fn get_global_config(State(pool): State<PgPool>) -> ApiResult {
    ok_ok(json!({ "compatibilityLevel": store::global_level(&pool).await?.as_str() }))
}

async fn put_global_config(State(pool): State<PgPool>, body: Bytes) -> ApiResult {
    let level = parse_level(&body)?;
    store::set_level(&pool, None, level).await?;
    ok_ok(json!({ "compatibility": level.as_str() }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefaultToGlobal {
    #[serde(default)]
    default_to_global: bool,
}

async fn get_subject_config(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    Query(q): Query<DefaultToGlobal>,
) -> ApiResult {
    match store::subject_level(&pool, &subject).await? {
        Some(level) => ok_ok(json!({ "compatibilityLevel": level.as_str() })),
        None if q.default_to_global => {
            ok_ok(json!({ "compatibilityLevel": store::global_level(&pool).await?.as_str() }))
        }
        None => Err(ApiError::subject_config_not_found(&subject)),
    }
}

async fn put_subject_config(State(pool): State<PgPool>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let level = parse_level(&body)?;
    store::set_level(&pool, Some(&subject), level).await?;
    ok_ok(json!({ "compatibility": level.as_str() }))
}

async fn delete_subject_config(State(pool): State<PgPool>, Path(subject): Path<String>) -> ApiResult {
    match store::delete_subject_level(&pool, &subject).await? {
        Some(level) => ok_ok(json!({ "compatibilityLevel": level.as_str() })),
        None => Err(ApiError::subject_config_not_found(&subject)),
    }
}

#[derive(Debug, Deserialize)]
struct VerboseParam {
    #[serde(default)]
    verbose: bool,
}

async fn check_compatibility(
    State(pool): State<PgPool>,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Query<VerboseParam>,
    body: Bytes,
) -> ApiResult {
    let req: SchemaRequest = parse_body(&body)?;
    let wanted = parse_version(&version)?;
    let parsed = off_workers(move || parse_schema(&req)).await?;
    let level = store::effective_level(&pool, &subject).await?;
    let rows = store::live_versions(&pool, &subject).await?;
    if rows.is_empty() {
        return Err(ApiError::subject_not_found(&subject));
    }
    // `latest` follows the subject's level (all versions when transitive); a number checks that version alone.
    let against = match wanted {
        VersionRef::Latest => rows,
        VersionRef::Number(n) => {
            vec![rows.into_iter().find(|r| r.version == n).ok_or_else(|| ApiError::version_not_found(&version))?]
        }
    };
    let problems = off_workers(move || Ok(compat::check(level, &parsed.schema, &parse_stored(&against)?))).await?;
    let body = if q.verbose {
        json!({ "is_compatible": problems.is_empty(), "messages": problems })
    } else {
        json!({ "is_compatible": problems.is_empty() })
    };
    ok_ok(body)
}

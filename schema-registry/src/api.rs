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
use crate::store;

type ApiResult = Result<Response, ApiError>;

/// Largest schema text accepted, in bytes (the contract's largest is under 2 kB).
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Most fields one schema may have, over all its records (the compatibility check grows with their square).
pub const MAX_FIELDS: usize = 500;
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

/// Fields of `schema`, over all its records, arrays, maps and unions.
pub fn field_count(schema: &Schema) -> usize {
    match schema {
        Schema::Record(r) => r.fields.iter().map(|f| 1 + field_count(&f.schema)).sum(),
        Schema::Array(a) => field_count(&a.items),
        Schema::Map(m) => field_count(&m.types),
        Schema::Union(u) => u.variants().iter().map(field_count).sum(),
        _ => 0,
    }
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    pub schema: String,
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<Value>,
}

/// Accepts the body whatever content type the client sent (Confluent clients use several).
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(ApiError::bad_request)
}

/// A parsed Avro schema and its canonical text (the identity of a schema, also what the API returns).
pub struct Parsed {
    pub schema: Schema,
    pub canonical: String,
}

/// Canonical form: the parsed schema written back as compact JSON with a stable field order. Unlike Avro's
/// Parsing Canonical Form it keeps defaults and docs, so two schemas that differ only in a default stay distinct.
fn canonical(schema: &Schema) -> Result<String, ApiError> {
    serde_json::to_string(schema).map_err(ApiError::invalid_schema)
}

pub fn parse_schema(req: &SchemaRequest) -> Result<Parsed, ApiError> {
    if req.schema.len() > MAX_SCHEMA_BYTES {
        return Err(ApiError::invalid_schema(format!("longer than {MAX_SCHEMA_BYTES} bytes")));
    }
    match req.schema_type.as_deref() {
        None | Some("AVRO") => {}
        Some(other) => return Err(ApiError::invalid_schema(format!("unsupported schema type {other}, only AVRO"))),
    }
    if !req.references.is_empty() {
        return Err(ApiError::invalid_schema("schema references are not supported"));
    }
    let schema = Schema::parse_str(&req.schema).map_err(ApiError::invalid_schema)?;
    if field_count(&schema) > MAX_FIELDS {
        return Err(ApiError::invalid_schema(format!("more than {MAX_FIELDS} fields")));
    }
    let text = canonical(&schema)?;
    // The canonical text is what is stored and re-read. apache-avro writes some schemas in a form that reads back
    // as another schema (a named type with an explicit empty namespace inside a namespaced record loses it, and
    // its name and aliases move into the record's namespace): those are refused rather than stored as another.
    let reread = Schema::parse_str(&text).map_err(ApiError::invalid_schema)?;
    if canonical(&reread)? != text {
        return Err(ApiError::invalid_schema(
            "it cannot be stored as it is (a named type with an empty namespace inside a namespaced one?)",
        ));
    }
    Ok(Parsed { schema, canonical: text })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(schema: &str) -> SchemaRequest {
        SchemaRequest { schema: schema.to_owned(), schema_type: None, references: Vec::new() }
    }

    #[test]
    fn the_contracts_schemas_have_a_stable_canonical_text() {
        for (name, text) in bank_core::avro::ALL_SCHEMAS {
            let parsed = parse_schema(&request(text)).unwrap_or_else(|e| panic!("{name}: {}", e.message));
            let again = parse_schema(&request(&parsed.canonical)).unwrap();
            assert_eq!(again.canonical, parsed.canonical, "{name}");
        }
    }

    /// Found by the `registry_schema` fuzz target: the enum `r` is in the null namespace, but its canonical text
    /// dropped `"namespace": ""` and read back as `nl.openweb.data.r` (alias `nl.openweb.data.A`).
    #[test]
    fn a_schema_whose_canonical_text_reads_back_as_another_is_refused() {
        let schema = r#"{"type":"record","name":"_z9","namespace":"nl.openweb.data","fields":[{"name":"id","type":
            {"type":"enum","name":"r","namespace":"","aliases":["A"],"symbols":[]}}]}"#;
        let e = parse_schema(&request(schema)).err().expect("refused");
        assert_eq!(e.code, 42201, "{}", e.message);
        // The same enum in the record's namespace is fine.
        let inherited = schema.replace(r#""namespace":"","#, "");
        assert!(parse_schema(&request(&inherited)).is_ok());
    }
}

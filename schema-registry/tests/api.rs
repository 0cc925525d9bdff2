//! End-to-end tests of the registry's REST API against a fresh PostgreSQL database per test, plus Avro
//! round trips through `bank_core::registry::Codec` (the client the services use).

use bank_core::CommandId;
use bank_core::avro::{ALL_SCHEMAS, AvroRecord, BalanceChanged, ConfirmMoneyTransfer, Heartbeat};
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use bank_core::topics::{self, TOPICS};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use tokio::net::TcpListener;

const CT: &str = schema_registry::CONTENT_TYPE;

/// One running registry: its base URL, an HTTP client, and what is needed to start a second one on the same data.
#[derive(Clone)]
struct App {
    base: String,
    http: reqwest::Client,
    db_url: String,
    shutdown: CancellationToken,
}

async fn spawn_app() -> App {
    let (db_url, pool) = bank_core::testing::fresh_database().await;
    start(db_url, pool).await
}

async fn start(db_url: String, pool: sqlx::PgPool) -> App {
    schema_registry::migrate(&pool).await.expect("migrate registry tables");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(bank_core::http::serve(listener, schema_registry::app(pool), shutdown.clone()));
    let http = reqwest::Client::builder().no_proxy().build().expect("http client");
    App { base: format!("http://{addr}"), http, db_url, shutdown }
}

impl App {
    async fn send(&self, method: Method, path: &str, body: Option<String>, content_type: &str) -> reqwest::Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("accept", CT);
        if let Some(body) = body {
            req = req.header("content-type", content_type).body(body);
        }
        req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        read(self.send(method, path, body.map(|b| b.to_string()), CT).await).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    async fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        self.post(&format!("/subjects/{subject}/versions"), json!({ "schema": schema })).await
    }

    async fn register_ok(&self, subject: &str, schema: &str) -> i64 {
        let body = ok(self.register(subject, schema).await);
        body["id"].as_i64().unwrap_or_else(|| panic!("no id in {body}"))
    }

    async fn set_level(&self, subject: &str, level: &str) {
        let body = ok(self.put(&format!("/config/{subject}"), json!({ "compatibility": level })).await);
        assert_eq!(body, json!({ "compatibility": level }));
    }

    async fn versions(&self, subject: &str) -> Value {
        ok(self.get(&format!("/subjects/{subject}/versions")).await)
    }
}

/// Status and body; a body that is not JSON comes back as a JSON string.
async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("response body");
    let body =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, body)
}

#[track_caller]
fn ok((status, body): (u16, Value)) -> Value {
    assert_eq!(status, 200, "{body}");
    body
}

#[track_caller]
fn err((status, body): (u16, Value), http: u16, code: i64) {
    assert_eq!(status, http, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

fn record(fields: &[Value]) -> String {
    json!({ "type": "record", "name": "R", "namespace": "test", "fields": fields }).to_string()
}

fn field(name: &str, ty: &str) -> Value {
    json!({ "name": name, "type": ty })
}

fn defaulted(name: &str, ty: &str, default: Value) -> Value {
    json!({ "name": name, "type": ty, "default": default })
}

/// `{a: long}`, the first version of most subjects below.
fn v1() -> String {
    record(&[field("a", "long")])
}

/// `{a: long, b: string = "x"}`.
fn with_b_default() -> String {
    record(&[field("a", "long"), defaulted("b", "string", json!("x"))])
}

/// `{a: long, b: string}` (no default).
fn with_b_required() -> String {
    record(&[field("a", "long"), field("b", "string")])
}

#[tokio::test]
async fn registering_assigns_global_ids() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health").await, (200, json!("ok")));
    assert_eq!(ok(app.get("/schemas/types").await), json!(["AVRO"]));
    assert_eq!(ok(app.get("/subjects").await), json!([]));

    let id = app.register_ok("a-value", &v1()).await;
    assert_eq!(app.register_ok("a-value", &v1()).await, id, "same schema, same id");
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&v1()).unwrap()).unwrap();
    assert_eq!(app.register_ok("a-value", &pretty).await, id, "whitespace does not matter");
    let reordered =
        r#"{ "fields": [ { "type": "long", "name": "a" } ], "name": "R", "namespace": "test", "type": "record" }"#;
    assert_eq!(app.register_ok("a-value", reordered).await, id, "key order does not matter");
    assert_eq!(app.versions("a-value").await, json!([1]), "re-registering adds no version");
    assert_eq!(app.register_ok("b-value", &v1()).await, id, "ids are global across subjects");

    let id2 = app.register_ok("a-value", &with_b_default()).await;
    assert_ne!(id2, id);
    assert_eq!(app.versions("a-value").await, json!([1, 2]));
    assert_eq!(app.versions("b-value").await, json!([1]));
    assert_eq!(ok(app.get("/subjects").await), json!(["a-value", "b-value"]));

    let by_id = ok(app.get(&format!("/schemas/ids/{id}")).await);
    let schema: Value = serde_json::from_str(by_id["schema"].as_str().expect("schema text")).unwrap();
    assert_eq!((&schema["name"], &schema["fields"][0]["name"]), (&json!("R"), &json!("a")));
    assert_eq!(
        ok(app.get(&format!("/schemas/ids/{id}/versions")).await),
        json!([{ "subject": "a-value", "version": 1 }, { "subject": "b-value", "version": 1 }])
    );
    err(app.get("/schemas/ids/9999").await, 404, 40403);
    err(app.get("/schemas/ids/9999/versions").await, 404, 40403);

    // Responses, successes and errors alike, carry the registry's content type.
    for path in ["/subjects", "/schemas/ids/9999"] {
        let resp = app.send(Method::GET, path, None, CT).await;
        assert_eq!(resp.headers()["content-type"].to_str().unwrap(), CT, "{path}");
    }
}

#[tokio::test]
async fn large_schemas_register_and_keep_their_identity() {
    // A 100-field record is far beyond the ~2.7 kB a b-tree entry can hold; its identity is a hash of the text.
    let app = spawn_app().await;
    // Random names and docs: PostgreSQL compresses index entries, and repetitive text would still fit.
    let fields: Vec<Value> = (0..100)
        .map(|i| {
            let name = format!("f{i:03}_{}", bank_core::token::random_hex::<12>());
            let mut f = defaulted(&name, "string", json!(""));
            f["doc"] = json!(bank_core::token::random_hex::<24>());
            f
        })
        .collect();
    let big = record(&fields);
    assert!(big.len() > 10_000, "schema is {} bytes", big.len());
    let id = app.register_ok("big-value", &big).await;
    assert_eq!(app.register_ok("big-value", &big).await, id, "same large schema, same id");
    assert_eq!(app.register_ok("other-value", &big).await, id, "ids are global for large schemas too");
    let mut more = fields.clone();
    more.push(defaulted("one_more", "string", json!("")));
    let id2 = app.register_ok("big-value", &record(&more)).await;
    assert_ne!(id2, id);
    let by_id = ok(app.get(&format!("/schemas/ids/{id}")).await);
    let schema: Value = serde_json::from_str(by_id["schema"].as_str().expect("schema text")).unwrap();
    assert_eq!(schema["fields"].as_array().map(Vec::len), Some(100));
    let found = ok(app.post("/subjects/big-value", json!({ "schema": big })).await);
    assert_eq!((found["id"].as_i64(), found["version"].as_i64()), (Some(id), Some(1)));
}

#[tokio::test]
async fn oversized_schemas_and_foreign_hosts_are_refused() {
    let app = spawn_app().await;
    let many: Vec<Value> = (0..=schema_registry::schema::MAX_FIELDS).map(|i| field(&format!("f{i}"), "long")).collect();
    let (status, body) = app.register("big-value", &record(&many)).await;
    assert_eq!((status, body["error_code"].as_i64()), (422, Some(42201)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("fields"), "{body}");
    let mut long = json!({ "type": "record", "name": "R", "fields": [field("a", "long")] });
    long["doc"] = json!("d".repeat(schema_registry::schema::MAX_SCHEMA_BYTES));
    err(app.register("big-value", &long.to_string()).await, 422, 42201);
    let huge = json!({ "schema": "x".repeat(3 * schema_registry::schema::MAX_SCHEMA_BYTES) });
    let (status, _) = app.post("/subjects/big-value/versions", huge).await;
    assert_eq!(status, 413, "a body over the limit is not read");
    assert_eq!(ok(app.get("/subjects").await), json!([]), "nothing was registered");

    // DNS rebinding: a request naming a foreign domain as Host changes nothing.
    app.register_ok("kept-value", &v1()).await;
    for host in ["evil.example", "evil.example:8081", "localhost.evil.example"] {
        let resp = app.http.delete(format!("{}/subjects/kept-value", app.base)).header("host", host).send().await;
        let resp = resp.unwrap();
        assert_eq!(resp.status().as_u16(), 421, "{host}");
    }
    assert_eq!(ok(app.get("/subjects").await), json!(["kept-value"]));
    let resp = app.http.delete(format!("{}/subjects/kept-value", app.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "the same request with this machine's address as Host is served");
}

#[tokio::test]
async fn bad_requests_get_confluent_errors() {
    let app = spawn_app().await;
    for schema in ["not json", r#""nope""#, ""] {
        err(app.register("s", schema).await, 422, 42201);
    }
    for ty in ["PROTOBUF", "JSON"] {
        err(app.post("/subjects/s/versions", json!({ "schema": v1(), "schemaType": ty })).await, 422, 42201);
    }
    let reference = json!([{ "name": "x", "subject": "y", "version": 1 }]);
    err(app.post("/subjects/s/versions", json!({ "schema": v1(), "references": reference })).await, 422, 42201);
    err(app.post("/subjects/s", json!({ "schema": "not json" })).await, 422, 42201);
    err(app.post("/subjects/s/versions", json!({ "schemaa": v1() })).await, 400, 400);
    let malformed = app.send(Method::POST, "/subjects/s/versions", Some("{not json".to_owned()), CT).await;
    err(read(malformed).await, 400, 400);
    assert_eq!(ok(app.get("/subjects").await), json!([]), "nothing was registered");

    let id = ok(app.post("/subjects/s/versions", json!({ "schema": v1(), "schemaType": "AVRO" })).await)["id"].clone();
    // Clients send several content types; all are accepted.
    for content_type in ["application/json", "application/octet-stream", CT] {
        let body = json!({ "schema": v1() }).to_string();
        let resp = app.send(Method::POST, "/subjects/s/versions", Some(body), content_type).await;
        assert_eq!(resp.headers()["content-type"].to_str().unwrap(), CT);
        assert_eq!(ok(read(resp).await)["id"], id, "{content_type}");
    }
}

#[tokio::test]
async fn lookup_finds_registered_schemas() {
    let app = spawn_app().await;
    err(app.post("/subjects/s", json!({ "schema": v1() })).await, 404, 40401);
    let id = app.register_ok("s", &v1()).await;
    app.register_ok("s", &with_b_default()).await;

    let found = ok(app.post("/subjects/s", json!({ "schema": v1() })).await);
    assert_eq!((&found["subject"], &found["id"], &found["version"]), (&json!("s"), &json!(id), &json!(1)));
    let schema: Value = serde_json::from_str(found["schema"].as_str().expect("schema text")).unwrap();
    assert_eq!(schema["fields"], json!([{ "name": "a", "type": "long" }]));

    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&with_b_default()).unwrap()).unwrap();
    assert_eq!(ok(app.post("/subjects/s", json!({ "schema": pretty })).await)["version"], 2);
    err(app.post("/subjects/s", json!({ "schema": with_b_required() })).await, 404, 40403);
    err(app.post("/subjects/other", json!({ "schema": v1() })).await, 404, 40401);
}

#[tokio::test]
async fn versions_are_listed_and_fetched() {
    let app = spawn_app().await;
    err(app.get("/subjects/s/versions").await, 404, 40401);
    err(app.get("/subjects/s/versions/1").await, 404, 40401);
    err(app.get("/subjects/s/versions/latest/schema").await, 404, 40401);
    let id1 = app.register_ok("s", &v1()).await;
    let id2 = app.register_ok("s", &with_b_default()).await;
    assert_eq!(app.versions("s").await, json!([1, 2]));

    let first = ok(app.get("/subjects/s/versions/1").await);
    assert_eq!((&first["subject"], &first["id"], &first["version"]), (&json!("s"), &json!(id1), &json!(1)));
    for latest in ["2", "latest", "-1"] {
        let v = ok(app.get(&format!("/subjects/s/versions/{latest}")).await);
        assert_eq!((&v["id"], &v["version"]), (&json!(id2), &json!(2)), "{latest}");
    }
    err(app.get("/subjects/s/versions/3").await, 404, 40402);
    err(app.get("/subjects/s/versions/3/schema").await, 404, 40402);
    for bad in ["abc", "0", "-2"] {
        err(app.get(&format!("/subjects/s/versions/{bad}")).await, 422, 42202);
        err(app.get(&format!("/subjects/s/versions/{bad}/schema")).await, 422, 42202);
    }

    // `/schema` returns the bare schema, the same one the version's `schema` field holds.
    let resp = app.send(Method::GET, "/subjects/s/versions/latest/schema", None, CT).await;
    assert_eq!(resp.headers()["content-type"].to_str().unwrap(), CT);
    let bare = ok(read(resp).await);
    let latest = ok(app.get("/subjects/s/versions/latest").await);
    assert_eq!(bare, serde_json::from_str::<Value>(latest["schema"].as_str().unwrap()).unwrap());
    assert_eq!(bare["fields"][1]["default"], "x", "defaults are kept");

    // Deleting single versions.
    assert_eq!(ok(app.delete("/subjects/s/versions/1").await), json!(1));
    assert_eq!(app.versions("s").await, json!([2]));
    err(app.get("/subjects/s/versions/1").await, 404, 40402);
    err(app.delete("/subjects/s/versions/1").await, 404, 40402);
    assert_eq!(ok(app.delete("/subjects/s/versions/latest").await), json!(2));
    err(app.get("/subjects/s/versions").await, 404, 40401);
}

#[tokio::test]
async fn deleting_subjects_soft_then_permanent() {
    let app = spawn_app().await;
    err(app.delete("/subjects/s").await, 404, 40401);
    err(app.delete("/subjects/s?permanent=true").await, 404, 40401);
    let id = app.register_ok("s", &v1()).await;
    app.register_ok("s", &with_b_default()).await;
    app.register_ok("keep", &v1()).await;

    err(app.delete("/subjects/s?permanent=true").await, 404, 40405);
    assert_eq!(ok(app.delete("/subjects/s").await), json!([1, 2]));
    assert_eq!(ok(app.get("/subjects").await), json!(["keep"]));
    assert_eq!(ok(app.get("/subjects?deleted=true").await), json!(["keep", "s"]));
    err(app.get("/subjects/s/versions").await, 404, 40401);
    err(app.get("/subjects/s/versions/latest").await, 404, 40401);
    err(app.post("/subjects/s", json!({ "schema": v1() })).await, 404, 40401);
    err(app.delete("/subjects/s").await, 404, 40401);

    // Numbering continues after a soft delete; the schema keeps its id.
    assert_eq!(app.register_ok("s", &v1()).await, id);
    assert_eq!(app.versions("s").await, json!([3]));
    assert_eq!(ok(app.delete("/subjects/s").await), json!([3]));
    assert_eq!(ok(app.delete("/subjects/s?permanent=true").await), json!([1, 2, 3]));
    assert_eq!(ok(app.get("/subjects?deleted=true").await), json!(["keep"]));
    err(app.delete("/subjects/s?permanent=true").await, 404, 40401);
    assert!(ok(app.get(&format!("/schemas/ids/{id}")).await)["schema"].is_string(), "ids stay reserved");

    // After a permanent delete the subject starts over.
    assert_eq!(app.register_ok("s", &v1()).await, id);
    assert_eq!(app.versions("s").await, json!([1]));
}

#[tokio::test]
async fn global_and_subject_config() {
    let app = spawn_app().await;
    assert_eq!(ok(app.get("/config").await), json!({ "compatibilityLevel": "BACKWARD" }));
    assert_eq!(ok(app.put("/config", json!({ "compatibility": "FULL" })).await), json!({ "compatibility": "FULL" }));
    assert_eq!(ok(app.get("/config").await), json!({ "compatibilityLevel": "FULL" }));
    err(app.put("/config", json!({ "compatibility": "SIDEWAYS" })).await, 422, 42203);
    err(app.put("/config", json!({ "level": "FULL" })).await, 400, 400);
    assert_eq!(ok(app.get("/config").await), json!({ "compatibilityLevel": "FULL" }));

    err(app.get("/config/s").await, 404, 40408);
    assert_eq!(ok(app.get("/config/s?defaultToGlobal=true").await), json!({ "compatibilityLevel": "FULL" }));
    err(app.delete("/config/s").await, 404, 40408);
    err(app.put("/config/s", json!({ "compatibility": "SIDEWAYS" })).await, 422, 42203);
    app.set_level("s", "NONE").await;
    assert_eq!(ok(app.get("/config/s").await), json!({ "compatibilityLevel": "NONE" }));
    assert_eq!(ok(app.get("/config/s?defaultToGlobal=true").await), json!({ "compatibilityLevel": "NONE" }));
    assert_eq!(ok(app.delete("/config/s").await), json!({ "compatibilityLevel": "NONE" }));
    err(app.get("/config/s").await, 404, 40408);

    // The global level applies to subjects without their own: FULL rejects a required new field.
    app.register_ok("s", &v1()).await;
    err(app.register("s", &with_b_required()).await, 409, 409);
}

#[tokio::test]
async fn compatibility_endpoint() {
    let app = spawn_app().await;
    let check =
        |version: &str, verbose: bool| format!("/compatibility/subjects/s/versions/{version}?verbose={verbose}");
    err(app.post(&check("latest", false), json!({ "schema": v1() })).await, 404, 40401);
    app.register_ok("s", &v1()).await;

    let required = json!({ "schema": with_b_required() });
    assert_eq!(ok(app.post(&check("latest", false), required.clone()).await), json!({ "is_compatible": false }));
    let verbose = ok(app.post(&check("latest", true), required.clone()).await);
    assert_eq!(verbose["is_compatible"], false);
    assert!(!verbose["messages"].as_array().expect("messages").is_empty(), "{verbose}");
    let plain = ok(app.post("/compatibility/subjects/s/versions/latest", required.clone()).await);
    assert!(plain.get("messages").is_none(), "{plain}");

    let optional = json!({ "schema": with_b_default() });
    assert_eq!(ok(app.post(&check("1", false), optional.clone()).await), json!({ "is_compatible": true }));
    assert_eq!(
        ok(app.post(&check("-1", true), optional.clone()).await),
        json!({ "is_compatible": true, "messages": [] })
    );
    err(app.post(&check("2", false), optional.clone()).await, 404, 40402);
    err(app.post(&check("abc", false), optional).await, 422, 42202);
    err(app.post(&check("latest", false), json!({ "schema": "not json" })).await, 422, 42201);
    err(app.post(&check("latest", false), json!({})).await, 400, 400);
    assert_eq!(app.versions("s").await, json!([1]), "checking registers nothing");

    app.set_level("s", "NONE").await;
    assert_eq!(ok(app.post(&check("latest", false), required).await), json!({ "is_compatible": true }));
}

#[tokio::test]
async fn backward_is_the_default() {
    let app = spawn_app().await;
    app.register_ok("s", &v1()).await;
    let (status, body) = app.register("s", &with_b_required()).await;
    err((status, body.clone()), 409, 409);
    assert!(body["message"].as_str().unwrap().contains("incompatible"), "{body}");
    assert_eq!(app.versions("s").await, json!([1]));
    app.register_ok("s", &with_b_default()).await;
    // Removing a field is backward compatible: the new reader ignores it.
    app.register_ok("s", &record(&[defaulted("b", "string", json!("x"))])).await;
    assert_eq!(app.versions("s").await, json!([1, 2, 3]));
}

#[tokio::test]
async fn forward_lets_old_readers_read_new_data() {
    let app = spawn_app().await;
    app.set_level("s", "FORWARD").await;
    app.register_ok("s", &with_b_required()).await;
    // Old readers need `b`, which has no default there.
    err(app.register("s", &v1()).await, 409, 409);
    // Old readers skip a new required field.
    let with_c = record(&[field("a", "long"), field("b", "string"), field("c", "string")]);
    app.register_ok("s", &with_c).await;
    // ...but then `c` may not go away again.
    err(app.register("s", &record(&[field("a", "long"), field("b", "string"), field("d", "string")])).await, 409, 409);
    assert_eq!(app.versions("s").await, json!([1, 2]));
}

#[tokio::test]
async fn full_allows_only_defaulted_changes() {
    let app = spawn_app().await;
    app.set_level("s", "FULL").await;
    app.register_ok("s", &v1()).await;
    err(app.register("s", &with_b_required()).await, 409, 409);
    app.register_ok("s", &with_b_default()).await;
    // Removing required `a` breaks forward compatibility.
    err(app.register("s", &record(&[defaulted("b", "string", json!("x"))])).await, 409, 409);
    // Removing defaulted `b` while adding defaulted `c` is fine both ways.
    app.register_ok("s", &record(&[field("a", "long"), defaulted("c", "long", json!(0))])).await;
    assert_eq!(app.versions("s").await, json!([1, 2, 3]));
}

#[tokio::test]
async fn none_accepts_anything() {
    let app = spawn_app().await;
    app.set_level("s", "NONE").await;
    app.register_ok("s", &v1()).await;
    app.register_ok("s", &record(&[field("a", "string")])).await;
    app.register_ok("s", &record(&[field("x", "boolean"), field("y", "bytes")])).await;
    assert_eq!(app.versions("s").await, json!([1, 2, 3]));
}

#[tokio::test]
async fn transitive_levels_check_every_version() {
    let app = spawn_app().await;
    // v3 is compatible with v2 but not with v1.
    let backward = [v1(), with_b_default(), with_b_required()];
    let forward = [with_b_required(), with_b_default(), v1()];
    let cases = [
        ("BACKWARD", &backward, 200),
        ("BACKWARD_TRANSITIVE", &backward, 409),
        ("FULL", &backward, 200),
        ("FULL_TRANSITIVE", &backward, 409),
        ("FORWARD", &forward, 200),
        ("FORWARD_TRANSITIVE", &forward, 409),
    ];
    for (level, [s1, s2, s3], expected) in cases {
        let subject = format!("t-{level}");
        app.set_level(&subject, level).await;
        app.register_ok(&subject, s1).await;
        app.register_ok(&subject, s2).await;
        let (status, body) = app.register(&subject, s3).await;
        assert_eq!(status, expected, "{level}: {body}");
        let versions = if expected == 200 { json!([1, 2, 3]) } else { json!([1, 2]) };
        assert_eq!(app.versions(&subject).await, versions, "{level}");
        if expected == 409 {
            assert_eq!(body["error_code"], 409);
            // `latest` follows the transitive level; a version number checks that version alone.
            let path = |v: &str| format!("/compatibility/subjects/{subject}/versions/{v}");
            assert_eq!(ok(app.post(&path("latest"), json!({ "schema": s3 })).await)["is_compatible"], false, "{level}");
            assert_eq!(ok(app.post(&path("2"), json!({ "schema": s3 })).await)["is_compatible"], true, "{level}");
            assert_eq!(ok(app.post(&path("1"), json!({ "schema": s3 })).await)["is_compatible"], false, "{level}");
        }
    }
}

#[tokio::test]
async fn data_survives_a_restart() {
    let app = spawn_app().await;
    let id = app.register_ok("s", &v1()).await;
    app.set_level("s", "FULL").await;
    app.shutdown.cancel();

    let pool = bank_core::db::connect(&app.db_url, 2).await.expect("reconnect");
    let again = start(app.db_url.clone(), pool).await;
    assert_ne!(again.base, app.base);
    let latest = ok(again.get("/subjects/s/versions/latest").await);
    assert_eq!((&latest["id"], &latest["version"]), (&json!(id), &json!(1)));
    assert_eq!(ok(again.get("/config/s").await), json!({ "compatibilityLevel": "FULL" }));
    assert_eq!(again.register_ok("s", &v1()).await, id);
    err(again.register("s", &with_b_required()).await, 409, 409);
    let id2 = again.register_ok("s", &with_b_default()).await;
    assert!(id2 > id, "ids keep counting: {id2} after {id}");
    assert_eq!(again.versions("s").await, json!([1, 2]));
}

#[tokio::test]
async fn concurrent_registrations_are_serialised() {
    let app = spawn_app().await;
    let mut same = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let app = app.clone();
        same.spawn(async move { app.register("c", &v1()).await });
    }
    let ids: Vec<Value> = same.join_all().await.into_iter().map(|r| ok(r)["id"].clone()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(app.versions("c").await, json!([1]));

    // Distinct schemas in one subject get distinct ids and gap-free version numbers.
    app.set_level("d", "NONE").await;
    let mut distinct = tokio::task::JoinSet::new();
    for i in 0..8 {
        let app = app.clone();
        distinct.spawn(async move { app.register("d", &record(&[field(&format!("f{i}"), "long")])).await });
    }
    let mut ids: Vec<i64> = distinct.join_all().await.into_iter().map(|r| ok(r)["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8, "{ids:?}");
    assert_eq!(app.versions("d").await, json!((1..=8).collect::<Vec<_>>()));
}

async fn round_trip<R: AvroRecord + PartialEq + std::fmt::Debug>(codec: &Codec, topic: &str, id: i64, record: R) {
    let bytes = codec.encode(topic, &record).await.unwrap_or_else(|e| panic!("encode {topic}: {e}"));
    let header = u32::try_from(id).expect("id fits u32").to_be_bytes();
    assert_eq!(bytes[0], 0, "magic byte");
    assert_eq!(bytes[1..5], header[..], "schema id");
    let back: R = codec.decode(Some(bytes.as_slice())).await.unwrap_or_else(|e| panic!("decode {topic}: {e}"));
    assert_eq!(back, record);
}

#[tokio::test]
async fn codec_round_trips_through_the_registry() {
    let app = spawn_app().await;
    let mut ids = HashMap::new();
    for topic in TOPICS {
        if let Some((name, schema)) = topic.record {
            ids.insert(name, app.register_ok(&topic.value_subject(""), schema).await);
        }
    }
    assert_eq!(ids.len(), ALL_SCHEMAS.len());
    let codec = Codec::new(&app.base).expect("codec");

    round_trip(&codec, topics::HEARTBEAT, ids[Heartbeat::FULL_NAME], Heartbeat { beat: 42 }).await;
    let transfer = ConfirmMoneyTransfer {
        id: CommandId::new(),
        token: "secret-token".into(),
        amount: 12_345,
        from: "NL66OPEN0000000000".into(),
        to: "cash".into(),
        description: "groceries €".into(),
    };
    round_trip(&codec, topics::CONFIRM_MONEY_TRANSFER, ids[ConfirmMoneyTransfer::FULL_NAME], transfer).await;
    let changed = BalanceChanged {
        iban: "NL66OPEN0000000000".into(),
        new_balance: -500,
        changed_by: -12_345,
        from_to: "cash".into(),
        description: "withdrawal".into(),
        transfer_id: Some(CommandId::new()),
        seq: 7,
    };
    let balance_id = ids[BalanceChanged::FULL_NAME];
    round_trip(&codec, topics::BALANCE_CHANGED, balance_id, changed.clone()).await;
    round_trip(&codec, topics::BALANCE_CHANGED, balance_id, BalanceChanged { transfer_id: None, ..changed }).await;

    let beat = codec.encode(topics::HEARTBEAT, &Heartbeat { beat: 1 }).await.expect("encode");
    assert!(codec.decode::<BalanceChanged>(Some(beat.as_slice())).await.is_err(), "wrong record type");
    assert!(codec.decode::<Heartbeat>(Some(&[0u8, 0, 0, 0x7f, 0xff, 2][..])).await.is_err(), "unknown schema id");
    assert!(codec.decode::<Heartbeat>(Some(&b"definitely not avro"[..])).await.is_err(), "garbage");
    assert!(codec.decode::<Heartbeat>(Some(&[0u8, 0][..])).await.is_err(), "truncated");
    assert!(codec.decode::<Heartbeat>(None).await.is_err(), "no value");
}

//! A private bank for each test on the real stack of `cargo xtask up`: the contract's topics under a new
//! prefix, an empty database, a command-handler and one or more gateways running in this process. Requests go
//! through `schema.execute` (with the same token resolution as HTTP), through real HTTP, or a real websocket.
#![allow(dead_code)]

use async_graphql::Request;
use bank_core::config::{CommonArgs, DatabaseArgs};
use bank_core::provision;
use bank_core::shutdown::CancellationToken;
use bank_core::testing::{infra_missing, kafka_brokers, registry_url, unique_prefix};
use bank_core::topics;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use graphql_endpoint::{Config, Service};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const COMPANY_TOKEN: &str = "fedcba9876543210fedcba9876543210";
pub const EMPLOYEE_PASSWORD: &str = "employee-password-for-tests";
pub const PASSWORD: &str = "correct horse battery";

pub struct Gateway {
    pub service: Arc<Service>,
    pub addr: SocketAddr,
}

pub struct Bank {
    pub prefix: String,
    pub db_url: String,
    pub gateways: Vec<Gateway>,
    shutdown: CancellationToken,
}

impl Drop for Bank {
    fn drop(&mut self) {
        self.shutdown.cancel();
        bank_core::testing::delete_topics(&self.prefix);
    }
}

impl Bank {
    /// Topics, database, a command-handler and `instances` gateways.
    pub async fn start(instances: usize) -> Self {
        Self::start_with(instances, |_| {}).await
    }

    /// Like [`Bank::start`], with `tweak` applied to every gateway's configuration.
    pub async fn start_with(instances: usize, tweak: impl Fn(&mut Config)) -> Self {
        let prefix = unique_prefix();
        provision::sync(&kafka_brokers(), &registry_url(), &prefix, 1, Duration::from_secs(30), topics::TOPICS)
            .await
            .unwrap_or_else(|e| infra_missing("kafka or the schema registry", format!("{e:#}")));
        let (db_url, _pool) = bank_core::testing::fresh_database().await;
        let shutdown = CancellationToken::new();
        let common = bank_core::testing::common_args(&prefix);

        let mut handler = command_handler::Config::parse_from(["command-handler"]);
        handler.common = common.clone();
        handler.database = DatabaseArgs { database_url: db_url.clone(), database_max_connections: 4 };
        handler.company_token = Some(COMPANY_TOKEN.into());
        handler.batch_wait_ms = 1;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = command_handler::run(handler, listener, t).await {
                panic!("command-handler failed: {e:#}");
            }
        });

        let mut bank = Self { prefix, db_url, gateways: Vec::new(), shutdown };
        for _ in 0..instances {
            let g = bank.try_gateway(&tweak).await.expect("gateway starts");
            bank.gateways.push(g);
        }
        bank
    }

    pub fn common(&self) -> CommonArgs {
        bank_core::testing::common_args(&self.prefix)
    }

    pub fn config(&self, common: &CommonArgs) -> Config {
        let mut c = Config::parse_from(["graphql-endpoint"]);
        c.common = common.clone();
        c.database = DatabaseArgs { database_url: self.db_url.clone(), database_max_connections: 4 };
        c.employee_password = Some(EMPLOYEE_PASSWORD.into());
        c.result_timeout_ms = 10_000;
        c.frontend_dir = "/nonexistent".into();
        c
    }

    /// One more gateway on this bank, with `tweak` applied to its configuration; `Err` when it refuses to start.
    pub async fn try_gateway(&self, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Gateway> {
        let mut config = self.config(&self.common());
        tweak(&mut config);
        let (service, _tasks) = graphql_endpoint::start(&config, &self.shutdown).await?;
        let router = graphql_endpoint::router(service.clone(), &config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(bank_core::http::serve_with(listener, router, self.shutdown.clone(), config.connection_limits()));
        // Ready once the live feed has its partitions and the result listener listens.
        let gw = &service.gateway;
        wait_for("the gateway's live feed and result listener", Duration::from_secs(30), || {
            gw.hub.ready().and_then(|()| gw.results.ready()).is_ok()
        })
        .await;
        Ok(Gateway { service, addr })
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateways[0]
    }

    /// Executes through the schema, resolving `token` like the HTTP layer does. Returns the JSON response.
    pub async fn exec(&self, token: Option<&str>, query: &str) -> Value {
        exec_on(self.gateway(), token, query).await
    }

    /// `data.<field>` of a response that must have no errors.
    pub async fn ok(&self, token: Option<&str>, query: &str) -> Value {
        let r = self.exec(token, query).await;
        assert!(r.get("errors").is_none(), "unexpected errors for {query}: {r}");
        r["data"].clone()
    }

    /// Registers `name` and returns (token, iban).
    pub async fn register(&self, name: &str) -> (String, String) {
        let d = self
            .ok(
                None,
                &format!(r#"mutation {{ register(username: "{name}", password: "{PASSWORD}") {{ token account {{ iban }} }} }}"#),
            )
            .await;
        (
            d["register"]["token"].as_str().unwrap().to_owned(),
            d["register"]["account"]["iban"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn balance(&self, token: &str) -> i64 {
        let d = self.ok(Some(token), "{ me { balanceCents } }").await;
        d["me"]["balanceCents"].as_str().unwrap().parse().unwrap()
    }

    /// Logs the bank employee in once its account is open (it is opened at start, asynchronously); returns the
    /// session token.
    pub async fn employee(&self) -> String {
        let q =
            format!(r#"mutation {{ login(username: "employee", password: "{EMPLOYEE_PASSWORD}") {{ token role }} }}"#);
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.exec(None, &q).await;
            if r.get("errors").is_none() {
                assert_eq!(r["data"]["login"]["role"], "EMPLOYEE", "{r}");
                return r["data"]["login"]["token"].as_str().unwrap().to_owned();
            }
            assert_eq!(code(&r), "ACCOUNT_PENDING", "only a pending account may delay the employee: {r}");
            assert!(tokio::time::Instant::now() < until, "the employee's account is not open after 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `bankStats` as numbers: (accounts, transactions, transfers), once the counters cached by an earlier read
    /// are stale.
    pub async fn stats(&self) -> (i64, i64, i64) {
        tokio::time::sleep(graphql_endpoint::cache::STATS_CACHE).await;
        let d = self.ok(None, "{ bankStats { accounts transactions transfers } }").await;
        let n = |k: &str| -> i64 {
            d["bankStats"][k].as_str().unwrap_or_else(|| panic!("{k} as a string: {d}")).parse().unwrap()
        };
        (n("accounts"), n("transactions"), n("transfers"))
    }

    /// Waits until the projection shows `n` transactions of `iban`.
    pub async fn wait_history(&self, token: &str, iban: &str, n: usize) -> Value {
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let d = self
                .ok(
                    Some(token),
                    &format!(
                        r#"{{ transactions(iban: "{iban}", first: 50) {{ nodes {{ id transferId iban newBalanceCents changedByCents fromTo description direction at }} }} }}"#
                    ),
                )
                .await;
            let nodes = d["transactions"]["nodes"].as_array().unwrap().clone();
            if nodes.len() >= n {
                return Value::Array(nodes);
            }
            assert!(tokio::time::Instant::now() < until, "{iban} has {} of {n} transactions after 20 s", nodes.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn exec_on(g: &Gateway, token: Option<&str>, query: &str) -> Value {
    let viewer = g.service.gateway.viewer(token).await.expect("session lookup");
    let response = g.service.schema.execute(Request::new(query).data(viewer)).await;
    serde_json::to_value(&response).unwrap()
}

/// The `extensions.code` of the first error.
pub fn code(r: &Value) -> &str {
    r["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("expected an error with a code: {r}"))
}

pub async fn http(g: &Gateway, token: Option<&str>, query: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("http://{}/graphql", g.addr)).json(&json!({ "query": query }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("http request");
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

/// A websocket client speaking `protocol` (`graphql-transport-ws` or the legacy `graphql-ws`).
pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    legacy: bool,
    /// Messages of other subscriptions read while waiting for one.
    held: Vec<Value>,
}

impl Ws {
    /// Connects and sends `connection_init` with `token`; returns the first server message (ack or error).
    pub async fn connect(g: &Gateway, protocol: &str, token: Option<&str>) -> (Self, Value) {
        let mut request = format!("ws://{}/graphql/ws", g.addr).into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", protocol.parse().unwrap());
        let (stream, _) = tokio_tungstenite::connect_async(request).await.expect("websocket connects");
        let mut ws = Self { stream, legacy: protocol == "graphql-ws", held: Vec::new() };
        let payload = token.map_or(json!({}), |t| json!({ "token": t }));
        ws.send(json!({ "type": "connection_init", "payload": payload })).await;
        let first = ws.next_message(Duration::from_secs(10)).await.unwrap_or(Value::Null);
        (ws, first)
    }

    /// Sends a text message as it is.
    pub async fn send_text(&mut self, text: String) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.stream.send(Message::Text(text.into())).await
    }

    /// The next message about operation `id` (`next`, `error` or `complete`), holding back the others; `None`
    /// on timeout or close.
    pub async fn next_for(&mut self, id: &str, timeout: Duration) -> Option<Value> {
        if let Some(i) = self.held.iter().position(|m| m["id"] == id) {
            return Some(self.held.remove(i));
        }
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let m = self.next_message(left).await?;
            if m["id"] == id {
                return Some(m);
            }
            self.held.push(m);
        }
    }

    /// Stops operation `id`.
    pub async fn stop(&mut self, id: &str) {
        let kind = if self.legacy { "stop" } else { "complete" };
        self.send(json!({ "id": id, "type": kind })).await;
    }

    /// Whether the server closed the connection within `timeout` (messages before the close are skipped).
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(until, self.stream.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    async fn send(&mut self, v: Value) {
        self.stream.send(Message::Text(v.to_string().into())).await.expect("websocket send");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str) {
        let kind = if self.legacy { "start" } else { "subscribe" };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query } })).await;
    }

    /// The next JSON message, skipping keep-alives; `None` on timeout or close.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let m = tokio::time::timeout_at(until, self.stream.next()).await.ok()??.ok()?;
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).ok()?;
                    if matches!(v["type"].as_str(), Some("ka" | "ping" | "pong")) {
                        continue;
                    }
                    return Some(v);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next `data` payload of subscription `id`.
    pub async fn next_data(&mut self, id: &str, timeout: Duration) -> Value {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let m = match self.held.iter().position(|m| m["id"] == id) {
                Some(i) => self.held.remove(i),
                None => {
                    let left = until.saturating_duration_since(tokio::time::Instant::now());
                    let m = self.next_message(left).await.unwrap_or_else(|| panic!("no event on subscription {id}"));
                    if m["id"] != id {
                        self.held.push(m);
                        continue;
                    }
                    m
                }
            };
            if m["id"] == id && matches!(m["type"].as_str(), Some("next" | "data")) {
                assert!(m["payload"].get("errors").is_none(), "subscription error: {m}");
                return m["payload"]["data"].clone();
            }
            if m["id"] == id && m["type"] == "error" {
                panic!("subscription {id} failed: {m}");
            }
        }
    }
}

/// Polls `condition` until it holds; fails the test with `what` when it does not within `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(tokio::time::Instant::now() < until, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `n` subscribers listen to the live feed of `g`, so events sent afterwards reach them.
pub async fn wait_subscribers(g: &Gateway, n: usize) {
    let feed = &g.service.gateway.hub.transactions;
    wait_for(&format!("{n} live-feed subscribers"), Duration::from_secs(10), || feed.subscribers() >= n).await;
}

/// Waits until `n` subscribers listen to the transfer results of `g`.
pub async fn wait_result_subscribers(g: &Gateway, n: usize) {
    let results = &g.service.gateway.results.transfers;
    wait_for(&format!("{n} result subscribers"), Duration::from_secs(10), || results.subscribers() >= n).await;
}

/// Waits until no subscriber listens to the live feed of `g` any more.
pub async fn wait_no_subscribers(g: &Gateway) {
    let feed = &g.service.gateway.hub.transactions;
    wait_for("no live-feed subscriber left", Duration::from_secs(5), || feed.subscribers() == 0).await;
}

/// The `extensions.code` of the first error of a websocket message (`error`, or `next` with errors).
pub fn ws_code(m: &Value) -> &str {
    let error = if m["type"] == "error" { &m["payload"][0] } else { &m["payload"]["errors"][0] };
    error["extensions"]["code"].as_str().unwrap_or_else(|| panic!("expected an error with a code: {m}"))
}

/// A GraphQL request over HTTP from the loopback address `from`; returns the whole response.
pub async fn http_from(g: &Gateway, from: std::net::IpAddr, token: Option<&str>, query: &str) -> Value {
    let client = reqwest::Client::builder().local_address(from).build().unwrap();
    let mut req = client.post(format!("http://{}/graphql", g.addr)).json(&json!({ "query": query }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let body = req.send().await.expect("http request").text().await.unwrap();
    serde_json::from_str(&body).unwrap_or(Value::String(body))
}

/// `login` over HTTP from the loopback address `from` (e.g. 127.0.0.2: Linux routes all of 127/8 to lo).
pub async fn http_login_from(g: &Gateway, from: std::net::IpAddr, name: &str, password: &str) -> Value {
    let query = format!(r#"mutation {{ login(username: "{name}", password: "{password}") {{ token role }} }}"#);
    http_from(g, from, None, &query).await
}

pub async fn http_login(g: &Gateway, name: &str, password: &str) -> Value {
    http(
        g,
        None,
        &format!(
            r#"mutation {{ login(username: "{name}", password: "{password}") {{ token role account {{ iban }} }} }}"#
        ),
    )
    .await
    .1
}

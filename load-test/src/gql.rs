//! A small GraphQL client for the gateway: HTTP for mutations (keep-alive, a pool of connections) and a
//! `graphql-transport-ws` websocket per user for the `transactions` subscription.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub enum ApiError {
    Timeout,
    /// A GraphQL error: `extensions.code` and message.
    Graphql(String, String),
    Http(u16),
    Transport(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => write!(f, "timeout"),
            Self::Graphql(code, m) => write!(f, "{code}: {m}"),
            Self::Http(s) => write!(f, "HTTP {s}"),
            Self::Transport(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ApiError {}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub endpoint: String,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub token: String,
    pub iban: String,
}

impl Api {
    pub fn new(endpoint: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(4096)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .no_proxy()
            .build()?;
        Ok(Self { http, endpoint: endpoint.trim_end_matches('/').to_owned() })
    }

    pub async fn health(&self) -> Result<(), ApiError> {
        let r = self.http.get(format!("{}/health", self.endpoint)).send().await.map_err(transport)?;
        if r.status().is_success() { Ok(()) } else { Err(ApiError::Http(r.status().as_u16())) }
    }

    /// Posts one operation; the `data` object, or the first error.
    pub async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> Result<Value, ApiError> {
        let mut req = self.http.post(format!("{}/graphql", self.endpoint)).json(&json!({
            "query": query,
            "variables": variables,
        }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.map_err(transport)?;
        let status = r.status();
        let body: Value = match r.json().await {
            Ok(v) => v,
            Err(e) if e.is_timeout() => return Err(ApiError::Timeout),
            Err(_) => return Err(ApiError::Http(status.as_u16())),
        };
        if let Some(e) = body["errors"].as_array().and_then(|a| a.first()) {
            let code = e["extensions"]["code"].as_str().unwrap_or("NO_CODE").to_owned();
            return Err(ApiError::Graphql(code, e["message"].as_str().unwrap_or_default().to_owned()));
        }
        if !status.is_success() {
            return Err(ApiError::Http(status.as_u16()));
        }
        Ok(body["data"].clone())
    }

    pub async fn register(&self, name: &str, password: &str) -> Result<User, ApiError> {
        let q =
            "mutation($u: String!, $p: String!) { register(username: $u, password: $p) { token account { iban } } }";
        let d = self.post(None, q, json!({"u": name, "p": password})).await?;
        let token = d["register"]["token"].as_str().unwrap_or_default().to_owned();
        let iban = d["register"]["account"]["iban"].as_str().unwrap_or_default().to_owned();
        if token.is_empty() || iban.is_empty() {
            return Err(ApiError::Transport("register answered without a token or IBAN".into()));
        }
        Ok(User { name: name.to_owned(), token, iban })
    }

    /// `(transfer id, status)` of a deposit.
    pub async fn deposit(&self, token: &str, cents: i64, key: &str) -> Result<(String, String), ApiError> {
        let q = "mutation($a: Int!, $k: ID) { deposit(amountCents: $a, idempotencyKey: $k) { id status } }";
        let d = self.post(Some(token), q, json!({"a": cents, "k": key})).await?;
        Ok(result(&d["deposit"]))
    }

    /// `(transfer id, status)` of a transfer.
    pub async fn transfer(&self, token: &str, to: &str, cents: i64, key: &str) -> Result<(String, String), ApiError> {
        let q = "mutation($to: String!, $a: Int!, $k: ID) { transferMoney(to: $to, amountCents: $a, description: \"load test\", idempotencyKey: $k) { id status } }";
        let d = self.post(Some(token), q, json!({"to": to, "a": cents, "k": key})).await?;
        Ok(result(&d["transferMoney"]))
    }

    fn ws_url(&self) -> String {
        let base = if let Some(rest) = self.endpoint.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.endpoint.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.endpoint.clone()
        };
        format!("{base}/graphql/ws")
    }
}

fn result(v: &Value) -> (String, String) {
    (v["id"].as_str().unwrap_or_default().to_owned(), v["status"].as_str().unwrap_or_default().to_owned())
}

fn transport(e: reqwest::Error) -> ApiError {
    if e.is_timeout() { ApiError::Timeout } else { ApiError::Transport(e.to_string()) }
}

/// Subscribes to `transactions(iban)` of `user` and calls `on_event(transfer id, arrival)` for each change,
/// until `stop`. Returns once the subscription is sent; the socket runs in its own task. `on_closed` hears when
/// the socket ends before `stop`.
pub async fn subscribe<F>(
    api: &Api,
    user: &User,
    stop: CancellationToken,
    on_event: F,
    on_closed: impl FnOnce(String) + Send + 'static,
) -> anyhow::Result<()>
where
    F: Fn(&str, Instant) + Send + 'static,
{
    let mut req = api.ws_url().into_client_request()?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(req)).await??;
    let init = json!({"type": "connection_init", "payload": {"token": user.token}});
    ws.send(Message::text(init.to_string())).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await?;
        let Some(m) = m else { anyhow::bail!("socket closed before connection_ack") };
        if let Message::Text(t) = m? {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            match v["type"].as_str() {
                Some("connection_ack") => break,
                Some("ping") => ws.send(Message::text(json!({"type": "pong"}).to_string())).await?,
                other => anyhow::bail!("expected connection_ack, got {other:?}"),
            }
        }
    }
    let sub = json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription($iban: String!) { transactions(iban: $iban) { transferId } }",
        "variables": {"iban": user.iban},
    }});
    ws.send(Message::text(sub.to_string())).await?;
    tokio::spawn(async move {
        let why = loop {
            let m = tokio::select! {
                () = stop.cancelled() => { let _ = ws.close(None).await; return; }
                m = ws.next() => m,
            };
            let text = match m {
                None => break "socket closed".to_owned(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) => break "server closed the socket".to_owned(),
                Some(Ok(_)) => continue,
            };
            let at = Instant::now();
            let v: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            match v["type"].as_str() {
                Some("next") => {
                    if let Some(id) = v["payload"]["data"]["transactions"]["transferId"].as_str() {
                        on_event(id, at);
                    } else if let Some(e) = v["payload"]["errors"].as_array().and_then(|a| a.first()) {
                        break format!("subscription error: {e}");
                    }
                }
                Some("ping") if ws.send(Message::text(json!({"type": "pong"}).to_string())).await.is_err() => {
                    break "socket write failed".to_owned();
                }
                Some("error") => break format!("subscription error: {}", v["payload"]),
                Some("complete") => break "subscription completed".to_owned(),
                _ => {}
            }
        };
        on_closed(why);
    });
    Ok(())
}

//! Against the real Kafka and schema registry of `cargo xtask up`, on a private topic prefix.

use bank_core::avro::Heartbeat;
use bank_core::provision;
use bank_core::registry::Codec;
use bank_core::shutdown::CancellationToken;
use bank_core::testing::{DeleteTopicsOnDrop, kafka_brokers, registry_url, unique_prefix};
use bank_core::{kafka, topics};
use heartbeat::{Config, MAX_RATE, Rate};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::{Value, json};
use std::time::Duration;

struct App {
    base: String,
    http: reqwest::Client,
    prefix: String,
    shutdown: CancellationToken,
    /// Deletes the app's topics when the test ends.
    _topics: DeleteTopicsOnDrop,
}

async fn spawn_app(rate: u64) -> App {
    let prefix = unique_prefix();
    provision::sync(&kafka_brokers(), &registry_url(), &prefix, 1, Duration::from_secs(20), topics::TOPICS)
        .await
        .unwrap_or_else(|e| bank_core::testing::infra_missing("kafka or the schema registry", format!("{e:#}")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config =
        Config { common: bank_core::testing::common_args(&prefix), rate, listen: listener.local_addr().unwrap() };
    let shutdown = CancellationToken::new();
    tokio::spawn(heartbeat::run(config, listener, shutdown.clone()));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    App { base, http, _topics: DeleteTopicsOnDrop(prefix.clone()), prefix, shutdown }
}

impl App {
    async fn put_rate(&self, body: &str) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}/rate", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn rate(&self) -> u64 {
        self.http
            .get(format!("{}/rate", self.base))
            .send()
            .await
            .unwrap()
            .json::<Rate>()
            .await
            .unwrap()
            .beats_per_second
    }

    fn consumer(&self) -> StreamConsumer {
        let c = kafka::consumer(&kafka_brokers(), &format!("{}reader", self.prefix), "heartbeat-test").unwrap();
        c.subscribe(&[&format!("{}{}", self.prefix, topics::HEARTBEAT)]).unwrap();
        c
    }
}

async fn next_beat(consumer: &StreamConsumer, codec: &Codec) -> Option<i64> {
    let msg = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await.ok()?.unwrap();
    Some(codec.decode::<Heartbeat>(msg.payload()).await.unwrap().beat)
}

#[tokio::test]
async fn produces_consecutive_beats_and_follows_rate_changes() {
    let app = spawn_app(0).await;
    let codec = Codec::new(&registry_url()).unwrap();
    let consumer = app.consumer();
    assert_eq!(app.rate().await, 0);
    assert!(next_beat(&consumer, &codec).await.is_none(), "rate 0 must send nothing");

    let (status, body) = app.put_rate(r#"{"beats_per_second": 2000}"#).await;
    assert_eq!((status, body), (200, json!({ "beats_per_second": 2000 })));
    assert_eq!(app.rate().await, 2000);
    // Beats are numbered 0, 1, 2, ... without gaps (one partition, idempotent producer).
    let mut expected = 0;
    while expected < 1000 {
        let beat = tokio::time::timeout(Duration::from_secs(30), next_beat(&consumer, &codec))
            .await
            .expect("beats stopped arriving")
            .expect("beats stopped arriving");
        assert_eq!(beat, expected);
        expected += 1;
    }

    // Pausing: after the in-flight beats drain, nothing more arrives.
    assert_eq!(app.put_rate(r#"{"beats_per_second": 0}"#).await.0, 200);
    while next_beat(&consumer, &codec).await.is_some() {}
    assert!(next_beat(&consumer, &codec).await.is_none());
    app.shutdown.cancel();
}

#[tokio::test]
async fn invalid_rates_are_refused_with_a_message_and_change_nothing() {
    let app = spawn_app(5).await;
    for body in ["", "not json", r#"{"beats_per_second": -1}"#, r#"{"beats_per_second": "fast"}"#, r#"{"rate": 5}"#] {
        let (status, resp) = app.put_rate(body).await;
        assert_eq!(status, 400, "{body}");
        assert!(resp["error"].as_str().unwrap().contains("beats_per_second"), "{resp}");
    }
    let (status, resp) = app.put_rate(&format!(r#"{{"beats_per_second": {}}}"#, MAX_RATE + 1)).await;
    assert_eq!(status, 400);
    assert!(resp["error"].as_str().unwrap().contains("between 0 and"));
    assert_eq!(app.rate().await, 5);

    for probe in ["/health", "/ready", "/metrics"] {
        let r = app.http.get(format!("{}{probe}", app.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{probe}");
    }

    // A web page whose domain was rebound to 127.0.0.1 makes the browser send that domain as Host: refused.
    for host in ["evil.example", "evil.example:17888", "127.0.0.1.nip.io"] {
        let r = app
            .http
            .put(format!("{}/rate", app.base))
            .header("host", host)
            .header("content-type", "application/json")
            .body(r#"{"beats_per_second": 999}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 421, "{host}");
        assert!(r.text().await.unwrap().starts_with("FOREIGN_HOST"), "{host}");
    }
    assert_eq!(app.rate().await, 5, "nothing changed");
    app.shutdown.cancel();
}

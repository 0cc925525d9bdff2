//! The `pipeline` query on the real stack: a private bank (topics, database, a command-handler and a gateway in
//! this process) with deposits flowing. Alone in its test binary: the handler's numbers are read from this
//! process's metrics, which no other handler may move meanwhile.

mod common;

use bank_core::shutdown::CancellationToken;
use common::{Bank, exec_on};
use serde_json::Value;
use std::time::{Duration, Instant};

const QUERY: &str = "{ pipeline { takenAtMs stages { name recordsPerSecond lag error } \
                     commandAge { p50Seconds p99Seconds samples } balanceChangeDelay { p50Seconds p99Seconds samples } } }";

fn stage<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no {name}: {p}"))
}

/// Serves this process's metrics (the in-process command-handler records there) on a port of its own.
async fn metrics_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = bank_core::http::probe_routes(bank_core::http::always_ready(), bank_core::telemetry::metrics());
    tokio::spawn(bank_core::http::serve(listener, routes, CancellationToken::new()));
    format!("http://{addr}/metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_shows_rates_lags_and_delays_while_records_flow() {
    let handler_metrics = metrics_endpoint().await;
    let bank = Bank::start_with(1, |c| {
        c.pipeline_handler_metrics_url = handler_metrics.clone();
        c.pipeline_heartbeat_metrics_url = String::new();
        // Nothing listens on port 1.
        c.pipeline_generator_metrics_url = "http://127.0.0.1:1/metrics".into();
        c.pipeline_cache_ms = 100;
    })
    .await;
    let (token, _) = bank.register("piper").await;

    // Deposits flow until the view shows the handler and the projection at work.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut deposits = 0;
    let view = loop {
        for _ in 0..5 {
            let r = bank.ok(Some(&token), "mutation { deposit(amountCents: 100) { status } }").await;
            assert_eq!(r["deposit"]["status"], "CONFIRMED", "{r}");
            deposits += 1;
        }
        let p = bank.ok(None, QUERY).await["pipeline"].clone();
        let rate = |name: &str| stage(&p, name)["recordsPerSecond"].as_f64().unwrap_or(0.0);
        if rate("handler") > 0.0 && rate("projection") > 0.0 && p["balanceChangeDelay"]["samples"].as_i64() > Some(0) {
            break p;
        }
        assert!(Instant::now() < deadline, "after {deposits} deposits the pipeline shows no work: {p}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    eprintln!("{view:#}");
    let names: Vec<&str> = view["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["heartbeat", "generator", "handler", "projection"]);

    // The handler: rate and command age from its metrics, lag from Kafka.
    let handler = stage(&view, "handler");
    assert!(handler["error"].is_null(), "{handler}");
    assert!(handler["lag"].as_i64().is_some_and(|l| l >= 0), "{handler}");
    let age = &view["commandAge"];
    assert!(age["samples"].as_i64().unwrap() >= deposits, "every deposit's age recorded: {age}");
    let (p50, p99) = (age["p50Seconds"].as_f64().unwrap(), age["p99Seconds"].as_f64().unwrap());
    assert!((0.0..10.0).contains(&p50) && p50 <= p99 && p99 < 30.0, "{age}");
    // The projection: rate and lag from its group's offsets in Kafka; delays from the live feed.
    assert!(stage(&view, "projection")["lag"].as_i64().is_some_and(|l| l >= 0), "{view}");
    let delay = &view["balanceChangeDelay"];
    assert!(delay["p99Seconds"].as_f64().is_some_and(|d| (0.0..30.0).contains(&d)), "{delay}");
    // The sources that are missing say so instead of showing numbers.
    let heartbeat = stage(&view, "heartbeat");
    assert!(heartbeat["recordsPerSecond"].is_null() && heartbeat["lag"].is_null(), "{heartbeat}");
    assert_eq!(heartbeat["error"], "not configured");
    let generator = stage(&view, "generator");
    assert!(generator["recordsPerSecond"].is_null(), "{generator}");
    assert!(generator["error"].as_str().unwrap().contains("metrics endpoint unreachable"), "{generator}");
    assert_eq!(generator["lag"], 0, "no heartbeats on this bank: nothing for the generator to read");

    // Once the deposits stop, the handler's and the projection's committed offsets reach the end: no lag.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = bank.ok(None, QUERY).await["pipeline"].clone();
        if stage(&p, "handler")["lag"] == 0 && stage(&p, "projection")["lag"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "lag stays after the deposits stopped: {p}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Readers within the cache time share one sample.
    let cached = bank.try_gateway(|c| c.pipeline_cache_ms = 60_000).await.unwrap();
    let first = exec_on(&cached, None, QUERY).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = exec_on(&cached, None, QUERY).await;
    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(first["data"]["pipeline"]["takenAtMs"], second["data"]["pipeline"]["takenAtMs"]);
}

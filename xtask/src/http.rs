//! Small HTTP calls to the local stack's services (probes, admin endpoints, GraphQL), over `ureq` with no TLS.

use anyhow::Context;
use std::time::Duration;

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_millis(500)))
        .timeout_global(Some(timeout))
        // A 503 from `/ready` is an answer, not an error.
        .http_status_as_error(false)
        .build()
        .into()
}

/// `method path` on `host_port` with an optional JSON body and bearer token; returns status and body.
fn request(
    host_port: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    timeout: Duration,
) -> Option<(u16, String)> {
    let url = format!("http://{host_port}{path}");
    let agent = agent(timeout);
    let auth = token.map(|t| format!("Bearer {t}"));
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).call(),
        (_, body) => {
            let mut req = match method {
                "PUT" => agent.put(&url),
                _ => agent.post(&url),
            }
            .header("Content-Type", "application/json");
            if let Some(auth) = &auth {
                req = req.header("Authorization", auth);
            }
            req.send(body.unwrap_or(""))
        }
    };
    let mut response = response.ok()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Some((status, body))
}

/// `GET path`; returns the status code.
pub fn status(host_port: &str, path: &str) -> Option<u16> {
    request(host_port, "GET", path, None, None, Duration::from_secs(2)).map(|(s, _)| s)
}

/// A small request (`GET`, `PUT` or `POST`); returns status and body.
pub fn call(host_port: &str, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    request(host_port, method, path, body, None, Duration::from_secs(5))
}

/// A GraphQL request (`token` as a bearer); returns the JSON response.
pub fn graphql(host_port: &str, token: Option<&str>, query: &str) -> Option<serde_json::Value> {
    let body = serde_json::json!({ "query": query }).to_string();
    let (_, body) = request(host_port, "POST", "/graphql", Some(&body), token, Duration::from_secs(15))?;
    serde_json::from_str(&body).ok()
}

/// Sum of the samples of a Prometheus counter in a `/metrics` body.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A user's round trip through the running gateway while the pipeline is loaded: register, deposit, pay the
/// company, and read the balance back. Returns the latencies.
pub fn gateway_check(gateway: &str) -> anyhow::Result<String> {
    let nanos = bank_core::clock::since_epoch().subsec_nanos();
    let name = format!("ci-{}-{nanos}", std::process::id());
    let call = |token: Option<&str>, query: &str| -> anyhow::Result<(serde_json::Value, Duration)> {
        let t = std::time::Instant::now();
        let r = graphql(gateway, token, query).context("the gateway did not answer")?;
        anyhow::ensure!(r.get("errors").is_none(), "{query} failed: {r}");
        Ok((r["data"].clone(), t.elapsed()))
    };
    let (r, register) =
        call(None, &format!(r#"mutation {{ register(username: "{name}", password: "ci password 1") {{ token }} }}"#))?;
    let token = r["register"]["token"].as_str().context("no token")?.to_owned();
    let (r, deposit) = call(Some(&token), "mutation { deposit(amountCents: 10000) { status } }")?;
    anyhow::ensure!(r["deposit"]["status"] == "CONFIRMED", "deposit: {r}");
    let (r, transfer) = call(
        Some(&token),
        r#"mutation { transferMoney(to: "NL66OPEN0000000000", amountCents: 2500, description: "ci") { status } }"#,
    )?;
    anyhow::ensure!(r["transferMoney"]["status"] == "CONFIRMED", "transfer: {r}");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (r, _) = call(Some(&token), "{ me { balanceCents } }")?;
        if r["me"]["balanceCents"] == "7500" {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < until, "balance not 7500 after 10 s: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(format!(
        "register {:.0} ms, deposit {:.0} ms, transfer {:.0} ms (each until the bank's answer); balance 75.00 as expected",
        ms(register),
        ms(deposit),
        ms(transfer)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn sums_counter_samples_by_exact_name() {
        let body = "# TYPE handler_commands_total counter\n\
                    handler_commands_total{kind=\"transfer\"} 3\n\
                    handler_commands_total{kind=\"account\"} 2\n\
                    handler_commands_total_other 100\n";
        assert_eq!(metric_sum(body, "handler_commands_total"), 5.0);
        assert_eq!(metric_sum(body, "missing"), 0.0);
    }

    #[test]
    fn reads_status_and_body_from_a_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 7\r\nConnection: close\r\n\r\nwaiting")
                .unwrap();
            head
        });
        assert_eq!(call(&addr, "GET", "/ready", None), Some((503, "waiting".into())));
        assert!(server.join().unwrap().starts_with("GET /ready HTTP/1.1"));
        // Nobody listening: no answer, no panic.
        assert_eq!(status("127.0.0.1:1", "/ready"), None);
    }
}

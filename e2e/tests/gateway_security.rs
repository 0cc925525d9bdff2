//! What a hostile or unlucky client must not be able to do: crash a request, keep a dead session alive on a
//! websocket, exhaust the server, move money twice on a retry, become the employee, or lose its account.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

// ---- A: external strings never panic a request ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_ascii_iban_is_refused_with_a_code_and_the_server_keeps_serving() {
    let bank = Bank::start(1).await;
    let g = bank.gateway();
    let odd = "Né123456789012345";
    let (status, r) = http(g, None, &format!(r#"{{ transactions(iban: "{odd}") {{ nodes {{ id }} }} }}"#)).await;
    assert_eq!(status, 200, "the request is answered, not dropped: {r}");
    assert_eq!(code(&r), "INVALID_INPUT", "{r}");
    assert_eq!(r["errors"][0]["extensions"]["field"], "iban");

    // The same string as a subscription argument and as a payee.
    let (mut ws, ack) = Ws::connect(g, "graphql-transport-ws", None).await;
    assert_eq!(ack["type"], "connection_ack");
    ws.subscribe("s", &format!(r#"subscription {{ transactions(iban: "{odd}") {{ id }} }}"#)).await;
    let m = ws.next_for("s", WAIT).await.expect("an answer to the subscription");
    assert_eq!(ws_code(&m), "INVALID_INPUT", "{m}");
    let (token, _) = bank.register("alice").await;
    for to in [odd, "NL66OPEN00000000😀0", &"é".repeat(10_000)] {
        let (status, r) = http(
            g,
            Some(&token),
            &format!(r#"mutation {{ transferMoney(to: "{to}", amountCents: 1, description: "x") {{ id }} }}"#),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(code(&r), "INVALID_INPUT", "{r}");
        assert_eq!(r["errors"][0]["extensions"]["field"], "to");
    }

    // Still serving, on HTTP and on the websocket: the employee's account and alice's.
    bank.employee().await;
    let (status, r) = http(g, None, "{ bankStats { accounts } }").await;
    assert_eq!((status, &r["data"]["bankStats"]["accounts"]), (200, &Value::from("2")), "{r}");
    ws.subscribe("q", "{ bankStats { accounts } }").await;
    let m = ws.next_for("q", WAIT).await.expect("the socket still answers");
    assert_eq!(m["payload"]["data"]["bankStats"]["accounts"], "2", "{m}");
}

// ---- D: websockets end with their session -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_on_one_instance_ends_a_websocket_session_on_another() {
    let bank = Bank::start(2).await;
    let (a, b) = (&bank.gateways[0], &bank.gateways[1]);
    let (token, iban) = bank.register("alice").await;

    let (mut ws, ack) = Ws::connect(b, "graphql-transport-ws", Some(&token)).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws.subscribe("tx", &format!(r#"subscription {{ transactions(iban: "{iban}") {{ transferId }} }}"#)).await;
    wait_subscribers(b, 1).await;
    // Money moves over the socket while the session lives: the refusal below is the logout's doing.
    ws.subscribe("m1", "mutation { deposit(amountCents: 500) { id status } }").await;
    let m = ws.next_for("m1", WAIT).await.expect("the deposit is answered");
    assert_eq!(m["payload"]["data"]["deposit"]["status"], "CONFIRMED", "{m}");
    let d = ws.next_data("tx", WAIT).await;
    assert_eq!(d["transactions"]["transferId"], m["payload"]["data"]["deposit"]["id"], "the subscription is live: {d}");

    let (_, r) = http(a, Some(&token), "mutation { logout }").await;
    assert_eq!(r["data"]["logout"], true, "{r}");

    // (2) The subscription ends at once (the logout is announced to every instance), with a coded error.
    let m = ws.next_for("tx", Duration::from_secs(5)).await.expect("the subscription ends within 5 s of the logout");
    assert_eq!(ws_code(&m), "UNAUTHENTICATED", "{m}");
    let m = ws.next_for("tx", Duration::from_secs(5)).await.expect("and completes");
    assert_eq!(m["type"], "complete", "{m}");
    wait_no_subscribers(b).await; // the ended subscription no longer listens

    // (1) A mutation over the same socket is refused and moves nothing.
    ws.subscribe("m2", "mutation { deposit(amountCents: 700) { status } }").await;
    let m = ws.next_for("m2", WAIT).await.expect("the mutation is answered");
    assert_eq!(ws_code(&m), "UNAUTHENTICATED", "{m}");
    assert!(m["payload"]["data"].is_null(), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_an_instance_has_cached_ends_there_at_the_logout_s_notice() {
    let bank = Bank::start(2).await;
    let (a, b) = (&bank.gateways[0], &bank.gateways[1]);
    let (token, _) = bank.register("carol").await;
    // Instance b resolves the session (and keeps it: its account is open) twice.
    for _ in 0..2 {
        let (_, r) = http(b, Some(&token), "{ me { iban } }").await;
        assert!(r["data"]["me"]["iban"].is_string(), "{r}");
    }
    let (_, r) = http(a, Some(&token), "mutation { logout }").await;
    assert_eq!(r["data"]["logout"], true, "{r}");
    // The logout's notice reaches b long before its cache would expire an entry on its own.
    let started = std::time::Instant::now();
    loop {
        let (_, r) = http(b, Some(&token), "{ me { iban } }").await;
        if code(&r) == "UNAUTHENTICATED" {
            break;
        }
        assert!(
            started.elapsed() < graphql_endpoint::session_cache::TTL / 2,
            "b still serves a logged-out session after {:?}: {r}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // On the instance that ended it, at once.
    let (token, _) = bank.register("dave").await;
    let (_, r) = http(a, Some(&token), "{ me { iban } }").await;
    assert!(r["data"]["me"]["iban"].is_string(), "{r}");
    let (_, r) = http(a, Some(&token), "mutation { logout }").await;
    assert_eq!(r["data"]["logout"], true, "{r}");
    let (_, r) = http(a, Some(&token), "{ me { iban } }").await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_lives_no_longer_than_its_session() {
    let bank = Bank::start_with(1, |c| c.session_ttl_secs = 3).await;
    let g = bank.gateway();
    let (token, iban) = bank.register("alice").await;
    let (mut ws, ack) = Ws::connect(g, "graphql-transport-ws", Some(&token)).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws.subscribe("tx", &format!(r#"subscription {{ transactions(iban: "{iban}") {{ transferId }} }}"#)).await;
    wait_subscribers(g, 1).await;
    assert!(!ws.closed_within(Duration::from_millis(500)).await, "open while the session lives");
    assert!(ws.closed_within(Duration::from_secs(10)).await, "closed once the 3 s session expired");
    wait_no_subscribers(g).await; // the subscription does not outlive its socket
}

// ---- E: bounded work for anonymous clients ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_login_or_register_per_request_and_no_batches() {
    let bank = Bank::start(1).await;
    let g = bank.gateway();
    let hashes = || g.service.gateway.hashes.count();
    let before = hashes();
    let many: String = (0..10)
        .map(|i| format!(r#"a{i}: login(username: "nobody{i}", password: "wrong password") {{ token }} "#))
        .collect();
    let (status, r) = http(g, None, &format!("mutation {{ {many} }}")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(code(&r), "TOO_MANY_CREDENTIALS", "{r}");
    let (_, r) = http(
        g,
        None,
        r#"mutation { ...L register(username: "x1y", password: "long enough") { token } }
           fragment L on Mutation { login(username: "nobody", password: "wrong password") { token } }"#,
    )
    .await;
    assert_eq!(code(&r), "TOO_MANY_CREDENTIALS", "fragments count too: {r}");
    assert_eq!(hashes(), before, "refused before any password was hashed");

    // A JSON array of requests (a batch) is not accepted at all.
    let one = serde_json::json!({ "query": r#"mutation { login(username: "nobody", password: "wrong password") { token } }"# });
    let resp = reqwest::Client::new()
        .post(format!("http://{}/graphql", g.addr))
        .json(&Value::Array(vec![one; 20]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "{:?}", resp.text().await);
    assert_eq!(hashes(), before);

    // One login per request still works.
    let r = http_login(g, "nobody", "wrong password").await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    assert_eq!(hashes(), before + 1, "one login, one hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_hashes_run_at_most_the_configured_number_at_once() {
    let bank = Bank::start_with(1, |c| c.hash_concurrency = 2).await;
    let g = bank.gateway();
    let logins = (0..8).map(|i| async move { http_login(g, &format!("nobody{i}"), "wrong password").await });
    for r in futures::future::join_all(logins).await {
        assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    }
    assert_eq!(g.service.gateway.hashes.peak(), 2, "eight logins at once, two hashes at a time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_beyond_the_in_flight_limit_are_refused_at_once_with_overloaded() {
    // Two requests in progress at most, one password hash at a time: of eight logins sent at once, two are
    // admitted and hash one after the other while the rest arrive, so those are shed.
    let bank = Bank::start_with(1, |c| {
        c.max_in_flight = 2;
        c.hash_concurrency = 1;
    })
    .await;
    let g = bank.gateway();
    let query = r#"mutation { login(username: "nobody", password: "wrong password") { token } }"#;
    let logins = (0..8).map(|_| http(g, None, query));
    let (mut shed, mut served) = (0, 0);
    for (status, r) in futures::future::join_all(logins).await {
        match code(&r) {
            "OVERLOADED" => {
                assert_eq!(status, 503, "{r}");
                shed += 1;
            }
            "UNAUTHENTICATED" => {
                assert_eq!(status, 200, "{r}");
                served += 1;
            }
            other => panic!("unexpected code {other}: {r}"),
        }
    }
    assert!(shed >= 1, "eight requests at once over a limit of two: some are shed ({served} served)");
    assert!((1..=7).contains(&served), "requests within the limit are served ({served} served, {shed} shed)");
    // The permits come back: a request afterwards is served.
    let (status, r) = http(g, None, "{ bankStats { accounts } }").await;
    assert_eq!(status, 200, "{r}");
    assert!(r["errors"].is_null(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_queries_and_mutations_share_the_in_flight_limit() {
    // As over HTTP: two operations in progress at most, one hash at a time; eight logins sent at once on one
    // socket, so some are shed with OVERLOADED instead of queueing behind the others.
    let bank = Bank::start_with(1, |c| {
        c.max_in_flight = 2;
        c.hash_concurrency = 1;
    })
    .await;
    let g = bank.gateway();
    let (mut ws, ack) = Ws::connect(g, "graphql-transport-ws", None).await;
    assert_eq!(ack["type"], "connection_ack");
    for i in 0..8 {
        let login = format!(r#"mutation {{ login(username: "nobody{i}", password: "wrong password") {{ token }} }}"#);
        ws.subscribe(&format!("l{i}"), &login).await;
    }
    let (mut shed, mut served) = (0, 0);
    for i in 0..8 {
        let m = ws.next_for(&format!("l{i}"), WAIT).await.expect("every operation is answered");
        match ws_code(&m) {
            "OVERLOADED" => shed += 1,
            "UNAUTHENTICATED" => served += 1,
            other => panic!("unexpected code {other}: {m}"),
        }
    }
    assert!(shed >= 1 && served >= 1, "{served} served, {shed} shed");
    // The permits come back: a query afterwards is served.
    ws.subscribe("after", "{ bankStats { accounts } }").await;
    let m = ws.next_for("after", WAIT).await.expect("answered");
    assert!(m["payload"]["data"]["bankStats"].is_object(), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_are_rate_limited_per_user_name_and_address_per_address_and_per_name_overall() {
    let bank = Bank::start_with(2, |c| {
        c.login_failures_per_user = 3;
        c.login_failures_per_address = 6;
    })
    .await;
    let (a, b) = (&bank.gateways[0], &bank.gateways[1]);
    bank.register("alice").await;
    bank.register("bob").await;

    // Per user name and address (instance a): three failures from 127.0.0.2, then even the right password waits
    // there; the owner from 127.0.0.3 gets in (an attacker cannot lock a user out).
    let (attacker, owner): (std::net::IpAddr, std::net::IpAddr) =
        ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
    for _ in 0..3 {
        assert_eq!(code(&http_login_from(a, attacker, "alice", "wrong password").await), "UNAUTHENTICATED");
    }
    let r = http_login_from(a, attacker, "Alice", PASSWORD).await;
    assert_eq!(code(&r), "RATE_LIMITED", "{r}");
    let retry = r["errors"][0]["extensions"]["retryAfterSecs"].as_u64().expect("retryAfterSecs");
    assert!((1..=300).contains(&retry), "{r}");
    let r = http_login_from(a, owner, "alice", PASSWORD).await;
    assert_eq!(r["data"]["login"]["role"], "CLIENT", "the owner from another address is not locked out: {r}");
    let r = http_login_from(a, attacker, "bob", PASSWORD).await;
    assert_eq!(r["data"]["login"]["role"], "CLIENT", "other users are not affected: {r}");
    // From every address together a name may fail 20 times the per-address budget (60 here), then it waits.
    for i in 0..60u8 {
        let from = std::net::IpAddr::from([127, 0, 1, i + 1]);
        assert_eq!(code(&http_login_from(a, from, "bob", "wrong password").await), "UNAUTHENTICATED");
    }
    assert_eq!(code(&http_login_from(a, owner, "bob", PASSWORD).await), "RATE_LIMITED");

    // Per client address (instance b): six failures over many names, then nobody from there gets in.
    for i in 0..6 {
        assert_eq!(code(&http_login(b, &format!("guess{i}"), "wrong password").await), "UNAUTHENTICATED");
    }
    let r = http_login(b, "bob", PASSWORD).await;
    assert_eq!(code(&r), "RATE_LIMITED", "{r}");
    let retry = r["errors"][0]["extensions"]["retryAfterSecs"].as_u64().expect("retryAfterSecs");
    assert!((1..=300).contains(&retry), "within the 300 s window: {r}");
    // The counts are the bank's, not one instance's: the address is refused on instance a too.
    assert_eq!(code(&http_login(a, "bob", PASSWORD).await), "RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_limits_are_shared_by_instances_and_a_concurrent_burst_cannot_overshoot_them() {
    let bank = Bank::start_with(2, |c| c.login_failures_per_user = 3).await;
    let (a, b) = (&bank.gateways[0], &bank.gateways[1]);
    bank.register("carol").await;
    let from: std::net::IpAddr = "127.0.0.4".parse().unwrap();
    // Twenty wrong guesses at once, split over both instances: exactly three are checked, the rest refused.
    let guesses = (0..20).map(|i| http_login_from(if i % 2 == 0 { a } else { b }, from, "carol", "wrong password"));
    let answers = futures::future::join_all(guesses).await;
    let checked = answers.iter().filter(|r| code(r) == "UNAUTHENTICATED").count();
    let limited = answers.iter().filter(|r| code(r) == "RATE_LIMITED").count();
    assert_eq!((checked, limited), (3, 17), "{answers:?}");
    // A right password is not a failure: it gives its attempt back and clears the name-from-address count.
    let other: std::net::IpAddr = "127.0.0.5".parse().unwrap();
    for _ in 0..2 {
        assert_eq!(code(&http_login_from(a, other, "carol", "wrong password").await), "UNAUTHENTICATED");
    }
    assert_eq!(http_login_from(b, other, "carol", PASSWORD).await["data"]["login"]["role"], "CLIENT");
    for _ in 0..3 {
        assert_eq!(code(&http_login_from(a, other, "carol", "wrong password").await), "UNAUTHENTICATED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registrations_are_limited_per_address_and_sessions_per_user() {
    let bank = Bank::start_with(1, |c| {
        c.registrations_per_address = 2;
        c.sessions_per_user = 2;
    })
    .await;
    let g = bank.gateway();
    let from: std::net::IpAddr = "127.0.0.6".parse().unwrap();
    let register =
        |name: &str| format!(r#"mutation {{ register(username: "{name}", password: "{PASSWORD}") {{ token }} }}"#);
    for name in ["dave", "erin"] {
        let r = http_from(g, from, None, &register(name)).await;
        assert!(r["data"]["register"]["token"].is_string(), "{r}");
    }
    let r = http_from(g, from, None, &register("frank")).await;
    assert_eq!(code(&r), "RATE_LIMITED", "a third registration from one address: {r}");
    let r = http_from(g, "127.0.0.7".parse().unwrap(), None, &register("frank")).await;
    assert!(r["data"]["register"]["token"].is_string(), "another address registers: {r}");

    // Two sessions per user: the third login ends the oldest (the registration's).
    let tokens: Vec<String> = {
        let mut t = Vec::new();
        for _ in 0..2 {
            let r = http_login(g, "dave", PASSWORD).await;
            t.push(r["data"]["login"]["token"].as_str().expect("token").to_owned());
        }
        t
    };
    let me = "{ me { iban } }";
    for t in &tokens {
        let (_, r) = http(g, Some(t), me).await;
        assert!(r["data"]["me"]["iban"].is_string(), "{r}");
    }
    let r = http_login(g, "dave", PASSWORD).await;
    let newest = r["data"]["login"]["token"].as_str().expect("token").to_owned();
    let (_, r) = http(g, Some(&tokens[0]), me).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "the oldest of three sessions ended: {r}");
    for t in [&tokens[1], &newest] {
        let (_, r) = http(g, Some(t), me).await;
        assert!(r["data"]["me"]["iban"].is_string(), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_checks_beyond_the_hash_queue_are_refused_with_overloaded() {
    let bank = Bank::start_with(1, |c| {
        c.hash_concurrency = 1;
        c.hash_queue = 1;
    })
    .await;
    let g = bank.gateway();
    let logins = (0..12).map(|i| {
        let from = std::net::IpAddr::from([127, 0, 2, i + 1]);
        async move { http_login_from(g, from, &format!("nobody{i}"), "wrong password").await }
    });
    let answers = futures::future::join_all(logins).await;
    let overloaded = answers.iter().filter(|r| code(r) == "OVERLOADED").count();
    let checked = answers.iter().filter(|r| code(r) == "UNAUTHENTICATED").count();
    assert_eq!(overloaded + checked, 12, "{answers:?}");
    assert!(overloaded >= 1 && checked >= 2, "one hashing, one waiting, the rest refused: {answers:?}");
    assert_eq!(g.service.gateway.hashes.queued(), 0, "the queue empties");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alias_storms_are_refused_before_they_run_and_a_full_page_still_costs_little_enough() {
    let bank = Bank::start(1).await;
    let g = bank.gateway();
    let company = bank_core::COMPANY_IBAN;
    let page = |alias: usize| format!(r#"t{alias}: transactions(iban: "{company}", first: 100) {{ nodes {{ id }} }} "#);
    // 330 aliased pages of 100 rows: refused at once, whatever the root-field cap (cost by rows).
    let storm: String = (0..330).map(page).collect();
    let (status, r) = http(g, None, &format!("{{ {storm} }}")).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["data"].is_null(), "nothing ran: {r}");
    assert!(
        ["TOO_MANY_FIELDS"].contains(&code(&r))
            || r["errors"][0]["message"].as_str().is_some_and(|m| m.contains("complex")),
        "{r}"
    );
    // Sixteen cheap root fields pass; seventeen are refused (cap on root fields, aliases and fragments counted).
    let stats = |n: usize| (0..n).map(|i| format!("s{i}: bankStats {{ accounts }} ")).collect::<String>();
    let (_, r) = http(g, None, &format!("{{ {} }}", stats(16))).await;
    assert!(r["errors"].is_null(), "{r}");
    let (_, r) = http(g, None, &format!("{{ {} }}", stats(17))).await;
    assert_eq!(code(&r), "TOO_MANY_FIELDS", "{r}");
    let (_, r) = http(g, None, &format!("{{ ...F }} fragment F on Query {{ {} }}", stats(17))).await;
    assert_eq!(code(&r), "TOO_MANY_FIELDS", "fragments count: {r}");
    // Ten pages of 100 rows cost more than a request may.
    let ten: String = (0..10).map(page).collect();
    let (_, r) = http(g, None, &format!("{{ {ten} }}")).await;
    assert!(r["data"].is_null() && r["errors"][0]["message"].as_str().is_some_and(|m| m.contains("complex")), "{r}");
    // What the web UI asks for, a page of 100 transactions with every field, is served.
    let full = format!(
        r#"{{ transactions(iban: "{company}", first: 100) {{ nodes {{ id iban newBalanceCents changedByCents fromTo description direction at }} }} }}"#
    );
    let (_, r) = http(g, None, &full).await;
    assert!(r["errors"].is_null(), "{r}");
    // Many readers of loadTestRuns share one read of the results folder.
    let (_, r) = http(g, None, "{ a: loadTestRuns { id } b: loadTestRuns { id } c: loadTestRuns { id } }").await;
    assert!(r["errors"].is_null(), "{r}");
}

// ---- connections: half-sent headers, idle keep-alives, websockets without connection_init, caps -------------

/// Whether the server closed `socket` within `within` (a read returns end of file or an error).
async fn closed(socket: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, socket.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_sent_headers_and_idle_connections_are_closed_and_connections_are_capped_per_address() {
    let bank = Bank::start_with(1, |c| {
        c.header_timeout_secs = 1;
        c.connections_per_address = 40;
    })
    .await;
    let g = bank.gateway();
    // Thirty connections that send half a request header, and one idle after a whole request.
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut s = tokio::net::TcpStream::connect(g.addr).await.unwrap();
        s.write_all(b"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-ty").await.unwrap();
        slow.push(s);
    }
    let mut idle = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 256];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..n]));
    for s in &mut slow {
        assert!(closed(s, Duration::from_secs(5)).await, "a half-sent header is closed after the header timeout");
    }
    assert!(closed(&mut idle, Duration::from_secs(5)).await, "an idle keep-alive connection is closed");

    // Forty open connections from one address: the forty-first is closed at once, another address is served.
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(tokio::net::TcpStream::connect(g.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    assert!(closed(&mut extra, Duration::from_millis(500)).await, "over the share of one address");
    let r = http_from(g, "127.0.0.8".parse().unwrap(), None, "{ bankStats { accounts } }").await;
    assert!(r["data"]["bankStats"].is_object(), "{r}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = http(g, None, "{ bankStats { accounts } }").await;
    assert_eq!(status, 200, "the share comes back when connections close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_without_connection_init_is_closed_and_sockets_are_capped_per_address() {
    let bank = Bank::start_with(1, |c| {
        c.ws_init_timeout_secs = 1;
        c.ws_per_address = 3;
    })
    .await;
    let g = bank.gateway();
    let url = format!("ws://{}/graphql/ws", g.addr);
    let connect = || async {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.clone().into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        tokio_tungstenite::connect_async(request).await
    };
    let (mut silent, _) = connect().await.expect("upgrade");
    let closed_in_time = tokio::time::timeout(Duration::from_secs(5), async {
        use futures::StreamExt;
        loop {
            match silent.next().await {
                None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(closed_in_time.is_ok(), "a socket that never sends connection_init is closed");

    let mut open = Vec::new();
    for _ in 0..3 {
        let (ws, ack) = Ws::connect(g, "graphql-transport-ws", None).await;
        assert_eq!(ack["type"], "connection_ack");
        open.push(ws);
    }
    match connect().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!("a fourth socket from one address is refused with 429: {:?}", other.map(|_| ())),
    }
    drop(open);
    wait_for("the sockets' shares come back", WAIT, || g.service.gateway.sockets_by_address.keys() == 0).await;
    let (_ws, ack) = Ws::connect(g, "graphql-transport-ws", None).await;
    assert_eq!(ack["type"], "connection_ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_messages_above_the_body_limit_close_the_socket() {
    let bank = Bank::start(1).await;
    let g = bank.gateway();
    let (mut ws, ack) = Ws::connect(g, "graphql-transport-ws", None).await;
    assert_eq!(ack["type"], "connection_ack");
    // A valid operation, padded with 100 KiB of whitespace: answered if the message were accepted.
    let query = format!("{{ bankStats {{ accounts }} {} }}", " ".repeat(100 * 1024));
    let message = serde_json::json!({ "id": "big", "type": "subscribe", "payload": { "query": query } });
    let _ = ws.send_text(message.to_string()).await;
    assert!(ws.next_for("big", Duration::from_secs(5)).await.is_none(), "the oversized message is not executed");
    assert!(ws.closed_within(Duration::from_secs(5)).await, "the socket is closed");

    // A message within the limit is served.
    let (mut ws, _) = Ws::connect(g, "graphql-transport-ws", None).await;
    ws.subscribe("small", &format!("{{ bankStats {{ accounts }} {} }}", " ".repeat(1024))).await;
    let m = ws.next_for("small", WAIT).await.expect("answered");
    assert!(m["payload"]["data"]["bankStats"].is_object(), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_are_capped_per_socket_and_per_instance_and_anonymous_ones_hold_half_at_most() {
    let bank = Bank::start_with(1, |c| {
        c.ws_max_operations = 3;
        c.max_subscriptions = 6;
    })
    .await;
    let g = bank.gateway();
    let feed = format!(r#"subscription {{ transactions(iban: "{}") {{ id }} }}"#, bank_core::COMPANY_IBAN);
    // Anonymous sockets: three subscriptions (half of six), however many sockets they open.
    let (mut first, _) = Ws::connect(g, "graphql-transport-ws", None).await;
    for i in 0..3 {
        first.subscribe(&format!("s{i}"), &feed).await;
        wait_subscribers(g, i + 1).await;
    }
    first.subscribe("s3", &feed).await;
    let m = first.next_for("s3", WAIT).await.expect("the fourth subscription of a socket is refused");
    assert_eq!(ws_code(&m), "TOO_MANY_SUBSCRIPTIONS", "{m}");
    let (mut second, _) = Ws::connect(g, "graphql-ws", None).await;
    second.subscribe("a0", &feed).await;
    let m = second.next_for("a0", WAIT).await.expect("anonymous sockets hold half the slots at most");
    assert_eq!(ws_code(&m), "TOO_MANY_SUBSCRIPTIONS", "{m}");

    // A signed-in user still gets the other half, then the instance is full.
    let (token, _) = bank.register("subscriber").await;
    let (mut signed, ack) = Ws::connect(g, "graphql-transport-ws", Some(&token)).await;
    assert_eq!(ack["type"], "connection_ack");
    for i in 0..3 {
        signed.subscribe(&format!("t{i}"), &feed).await;
        wait_subscribers(g, 4 + i).await;
    }
    let (mut more, _) = Ws::connect(g, "graphql-transport-ws", Some(&token)).await;
    more.subscribe("t3", &feed).await;
    let m = more.next_for("t3", WAIT).await.expect("the seventh subscription of the instance is refused");
    assert_eq!(ws_code(&m), "TOO_MANY_SUBSCRIPTIONS", "{m}");

    // A slot given back can be taken again.
    signed.stop("t0").await;
    let slots = &g.service.gateway.subscriptions;
    wait_for("the stopped subscription gives its slot back", WAIT, || slots.used() <= 5).await;
    more.subscribe("t4", &feed).await;
    wait_subscribers(g, 6).await;
    assert!(more.next_for("t4", Duration::from_millis(500)).await.is_none(), "accepted: no error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_whose_body_never_arrives_times_out() {
    let bank = Bank::start_with(1, |c| c.request_timeout_secs = 1).await;
    let g = bank.gateway();
    let mut socket = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let head = "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(br#"{"query":"#).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("answered within 10 s, not held open")
        .unwrap();
    let answer = String::from_utf8_lossy(answer.get(..n).unwrap_or_default()).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

// ---- B: idempotent deposits and withdrawals -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deposits_and_withdrawals_with_a_repeated_key_move_money_once() {
    let bank = Bank::start(1).await;
    let (token, iban) = bank.register("alice").await;
    let deposit = r#"mutation { deposit(amountCents: 1000, idempotencyKey: "cash-in-1") { id status } }"#;
    let first = bank.ok(Some(&token), deposit).await;
    let second = bank.ok(Some(&token), deposit).await;
    assert_eq!(first["deposit"]["status"], "CONFIRMED", "{first}");
    assert_eq!(first, second, "a repeated key returns the first result");
    let withdraw = r#"mutation { withdraw(amountCents: 300, idempotencyKey: "cash-out-1") { id status } }"#;
    let first = bank.ok(Some(&token), withdraw).await;
    assert_eq!(first["withdraw"]["status"], "CONFIRMED", "{first}");
    assert_eq!(first, bank.ok(Some(&token), withdraw).await);

    // The same key with other arguments, or for the other kind of operation, is refused.
    for q in [
        r#"mutation { withdraw(amountCents: 301, idempotencyKey: "cash-out-1") { id } }"#,
        r#"mutation { withdraw(amountCents: 1000, idempotencyKey: "cash-in-1") { id } }"#,
        r#"mutation { deposit(amountCents: 1, idempotencyKey: "bad key") { id } }"#,
    ] {
        let r = bank.exec(Some(&token), q).await;
        assert_eq!(code(&r), "INVALID_INPUT", "{q}: {r}");
        assert_eq!(r["errors"][0]["extensions"]["field"], "idempotencyKey", "{r}");
    }

    // A last cent with a new key: once it shows, everything before it has been projected.
    bank.ok(Some(&token), r#"mutation { deposit(amountCents: 1, idempotencyKey: "cash-in-2") { id } }"#).await;
    let history = bank.wait_history(&token, &iban, 3).await;
    assert_eq!(history.as_array().map(Vec::len), Some(3), "three movements, no repeats: {history}");
    assert_eq!(bank.balance(&token).await, 1000 - 300 + 1);
}

// ---- F: the employee ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_employee_name_is_reserved_and_never_promotes_a_client() {
    let bank = Bank::start(1).await;
    // The configured name (`employee`), in any case, cannot be registered.
    for name in ["employee", "Employee"] {
        let r = bank
            .exec(None, &format!(r#"mutation {{ register(username: "{name}", password: "{PASSWORD}") {{ token }} }}"#))
            .await;
        assert_eq!(code(&r), "USERNAME_TAKEN", "{r}");
    }

    // Also while no employee of that name exists (no password configured).
    let manager = bank
        .try_gateway(|c| {
            c.employee_username = "Manager".into();
            c.employee_password = None;
        })
        .await
        .expect("a gateway without an employee");
    let r = exec_on(
        &manager,
        None,
        &format!(r#"mutation {{ register(username: "manager", password: "{PASSWORD}") {{ token }} }}"#),
    )
    .await;
    assert_eq!(code(&r), "USERNAME_TAKEN", "{r}");

    // A client's name as EMPLOYEE_USERNAME: the gateway refuses to start and the client stays a client.
    let (boss, _) = bank.register("boss").await;
    let refused = bank.try_gateway(|c| c.employee_username = "boss".into()).await;
    let message = format!("{:#}", refused.err().expect("a gateway must not start with a client's name"));
    assert!(message.contains("belongs to a client"), "{message}");
    let r = bank.exec(Some(&boss), "{ accounts { nodes { iban } } }").await;
    assert_eq!(code(&r), "FORBIDDEN", "still a client: {r}");
    let r =
        bank.ok(None, &format!(r#"mutation {{ login(username: "boss", password: "{PASSWORD}") {{ role }} }}"#)).await;
    assert_eq!(r["login"]["role"], "CLIENT");

    // The employee's sessions survive a restart with the same password and end when it changes.
    let login = |password: &str| {
        format!(r#"mutation {{ login(username: "employee", password: "{password}") {{ token role }} }}"#)
    };
    let r = bank.ok(None, &login(EMPLOYEE_PASSWORD)).await;
    let token = r["login"]["token"].as_str().unwrap().to_owned();
    bank.try_gateway(|_| {}).await.expect("same password");
    bank.ok(Some(&token), "{ accounts { nodes { iban } } }").await;
    let (mut ws, ack) = Ws::connect(bank.gateway(), "graphql-transport-ws", Some(&token)).await;
    assert_eq!(ack["type"], "connection_ack");
    ws.subscribe("c", &format!(r#"subscription {{ transactions(iban: "{}") {{ id }} }}"#, bank_core::COMPANY_IBAN))
        .await;
    wait_subscribers(bank.gateway(), 1).await;
    bank.try_gateway(|c| c.employee_password = Some("a new employee password".into())).await.expect("new password");
    let r = bank.exec(Some(&token), "{ accounts { nodes { iban } } }").await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "the old session ended: {r}");
    let m = ws.next_for("c", Duration::from_secs(5)).await.expect("the employee's subscription ends");
    assert_eq!(ws_code(&m), "UNAUTHENTICATED", "{m}");
    let r = bank.ok(None, &login("a new employee password")).await;
    assert_eq!(r["login"]["role"], "EMPLOYEE");
}

// ---- C: a lost account creation -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_sends_a_lost_account_creation_again() {
    let bank = Bank::start(1).await;
    // The user as `register` stores it, as if the gateway stopped before the creation command was sent.
    let pool = bank_core::db::connect(&bank.db_url, 1).await.unwrap();
    let hash = graphql_endpoint::password::hash_password(PASSWORD).unwrap();
    sqlx::query("INSERT INTO gateway.users (username, password_hash, role, creation_id) VALUES ($1, $2, 'client', $3)")
        .bind("dora")
        .bind(hash)
        .bind(uuid::Uuid::new_v4())
        .execute(&pool)
        .await
        .unwrap();

    let r = bank
        .ok(
            None,
            &format!(
                r#"mutation {{ login(username: "dora", password: "{PASSWORD}") {{ token account {{ iban }} }} }}"#
            ),
        )
        .await;
    let token = r["login"]["token"].as_str().unwrap().to_owned();
    let iban = r["login"]["account"]["iban"].as_str().expect("an account").to_owned();
    bank_core::Iban::parse(&iban).expect("a real IBAN");
    let r = bank.ok(Some(&token), "mutation { deposit(amountCents: 250) { status } }").await;
    assert_eq!(r["deposit"]["status"], "CONFIRMED", "the account works: {r}");

    // Logging in again sends nothing more and keeps the same account.
    let r = bank
        .ok(
            None,
            &format!(r#"mutation {{ login(username: "dora", password: "{PASSWORD}") {{ account {{ iban }} }} }}"#),
        )
        .await;
    assert_eq!(r["login"]["account"]["iban"], iban.as_str());
}

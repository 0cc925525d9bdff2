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
    let many: String = (0..50)
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
    assert!(b.service.gateway.address_failures.tracked() <= graphql_endpoint::MAX_TRACKED_LOGIN_FAILURES);
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
async fn subscriptions_are_capped_per_socket_and_per_instance() {
    let bank = Bank::start_with(1, |c| {
        c.ws_max_operations = 3;
        c.max_subscriptions = 5;
    })
    .await;
    let g = bank.gateway();
    let feed = format!(r#"subscription {{ transactions(iban: "{}") {{ id }} }}"#, bank_core::COMPANY_IBAN);
    let (mut first, _) = Ws::connect(g, "graphql-transport-ws", None).await;
    for i in 0..3 {
        first.subscribe(&format!("s{i}"), &feed).await;
        wait_subscribers(g, i + 1).await;
    }
    first.subscribe("s3", &feed).await;
    let m = first.next_for("s3", WAIT).await.expect("the fourth subscription is refused");
    assert_eq!(ws_code(&m), "TOO_MANY_SUBSCRIPTIONS", "{m}");

    let (mut second, _) = Ws::connect(g, "graphql-ws", None).await;
    for i in 0..2 {
        second.subscribe(&format!("t{i}"), &feed).await;
        wait_subscribers(g, 4 + i).await;
    }
    second.subscribe("t2", &feed).await;
    let m = second.next_for("t2", WAIT).await.expect("the sixth subscription of the instance is refused");
    assert_eq!(ws_code(&m), "TOO_MANY_SUBSCRIPTIONS", "{m}");

    // A slot given back can be taken again.
    first.stop("s0").await;
    let slots = &g.service.gateway.subscriptions;
    wait_for("the stopped subscription gives its slot back", WAIT, || slots.used() <= 4).await;
    second.subscribe("t3", &feed).await;
    wait_subscribers(g, 5).await;
    assert!(second.next_for("t3", Duration::from_millis(500)).await.is_none(), "accepted: no error");
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

//! End-to-end flows over real HTTP and real websockets: register, log in, deposit, transfer, and watch it live.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn cents(v: &Value) -> i64 {
    v.as_str().unwrap_or_else(|| panic!("expected cents as a string: {v}")).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_deposit_transfer_and_both_see_it_live() {
    let bank = Bank::start(1).await;
    let g = bank.gateway();

    // Register over HTTP, then log in again with the password: a second, different session.
    let (status, r) = http(
        g,
        None,
        &format!(r#"mutation {{ register(username: "Alice", password: "{PASSWORD}") {{ token username role account {{ iban balanceCents limitCents }} }} }}"#),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let reg = &r["data"]["register"];
    assert_eq!(reg["username"], "alice", "user names are case-insensitive: {r}");
    assert_eq!(reg["role"], "CLIENT");
    assert_eq!(reg["account"]["balanceCents"], "0");
    assert_eq!(reg["account"]["limitCents"], "-50000");
    let alice_iban = reg["account"]["iban"].as_str().unwrap().to_owned();
    let (_, r) = http(
        g,
        None,
        &format!(r#"mutation {{ login(username: "alice", password: "{PASSWORD}") {{ token account {{ iban }} }} }}"#),
    )
    .await;
    let alice = r["data"]["login"]["token"].as_str().unwrap().to_owned();
    assert_ne!(alice, reg["token"].as_str().unwrap(), "every login gets a new token");
    assert_eq!(r["data"]["login"]["account"]["iban"], alice_iban.as_str());
    let (bob, bob_iban) = bank.register("bob").await;

    // Subscriptions: each on their own account (transport-ws for alice, legacy graphql-ws for bob), plus
    // alice's transfer results.
    let (mut alice_ws, ack) = Ws::connect(g, "graphql-transport-ws", Some(&alice)).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let fields = "id transferId iban newBalanceCents changedByCents fromTo description direction at";
    alice_ws.subscribe("tx", &format!(r#"subscription {{ transactions(iban: "{alice_iban}") {{ {fields} }} }}"#)).await;
    alice_ws.subscribe("results", "subscription { transferResults { id status reason code } }").await;
    let (mut bob_ws, ack) = Ws::connect(g, "graphql-ws", Some(&bob)).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    bob_ws.subscribe("tx", &format!(r#"subscription {{ transactions(iban: "{bob_iban}") {{ {fields} }} }}"#)).await;
    wait_subscribers(g, 2).await;
    wait_result_subscribers(g, 1).await;

    // Deposit 100.00, then pay bob 25.00.
    let (_, r) = http(g, Some(&alice), "mutation { deposit(amountCents: 10000) { id status reason } }").await;
    assert_eq!(r["data"]["deposit"]["status"], "CONFIRMED", "{r}");
    let deposit_id = r["data"]["deposit"]["id"].as_str().unwrap().to_owned();
    let (_, r) = http(
        g,
        Some(&alice),
        &format!(r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: 2500, description: "lunch", idempotencyKey: "lunch-1") {{ id status reason }} }}"#),
    )
    .await;
    assert_eq!(r["data"]["transferMoney"]["status"], "CONFIRMED", "{r}");
    let transfer_id = r["data"]["transferMoney"]["id"].as_str().unwrap().to_owned();

    // Alice sees the deposit and the debit live; bob sees the credit.
    let d = alice_ws.next_data("tx", WAIT).await;
    assert_eq!(d["transactions"]["transferId"], deposit_id.as_str());
    assert_eq!(d["transactions"]["fromTo"], "cash");
    assert_eq!(cents(&d["transactions"]["changedByCents"]), 10_000);
    assert_eq!(d["transactions"]["direction"], "CREDIT");
    let d = alice_ws.next_data("tx", WAIT).await;
    assert_eq!(d["transactions"]["transferId"], transfer_id.as_str());
    assert_eq!(cents(&d["transactions"]["changedByCents"]), -2_500);
    assert_eq!(cents(&d["transactions"]["newBalanceCents"]), 7_500);
    assert_eq!(d["transactions"]["direction"], "DEBIT");
    assert_eq!(d["transactions"]["fromTo"], bob_iban.as_str());
    let d = bob_ws.next_data("tx", WAIT).await;
    assert_eq!(d["transactions"]["transferId"], transfer_id.as_str());
    assert_eq!(cents(&d["transactions"]["changedByCents"]), 2_500);
    assert_eq!(d["transactions"]["fromTo"], alice_iban.as_str());
    assert_eq!(d["transactions"]["description"], "lunch");

    // Her transfer results arrive on her results subscription.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let d = alice_ws.next_data("results", WAIT).await;
        assert_eq!(d["transferResults"]["status"], "CONFIRMED", "{d}");
        seen.push(d["transferResults"]["id"].as_str().unwrap().to_owned());
    }
    seen.sort();
    let mut expected = vec![deposit_id.clone(), transfer_id.clone()];
    expected.sort();
    assert_eq!(seen, expected);

    // History: newest first, the same ids as the live feed, and balances that match `me`.
    let history = bank.wait_history(&alice, &alice_iban, 2).await;
    assert_eq!(history[0]["transferId"], transfer_id.as_str());
    assert_eq!(history[1]["transferId"], deposit_id.as_str());
    assert_eq!(history[0]["id"], format!("{transfer_id}:{alice_iban}").as_str());
    assert_eq!(bank.balance(&alice).await, 7_500);
    let bob_history = bank.wait_history(&bob, &bob_iban, 1).await;
    assert_eq!(cents(&bob_history[0]["newBalanceCents"]), bank.balance(&bob).await);
    assert_eq!(bank.balance(&bob).await, 2_500);

    // Logout ends the session for HTTP and websocket alike.
    let (_, r) = http(g, Some(&alice), "mutation { logout }").await;
    assert_eq!(r["data"]["logout"], true, "{r}");
    let (_, r) = http(g, Some(&alice), "{ me { iban } }").await;
    assert_eq!(code(&r), "UNAUTHENTICATED");
    let (_, first) = Ws::connect(g, "graphql-transport-ws", Some(&alice)).await;
    assert_ne!(first["type"], "connection_ack", "a dead session must not open a websocket: {first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_each_deliver_to_their_own_subscribers() {
    let bank = Bank::start(2).await;
    let (a, b) = (&bank.gateways[0], &bank.gateways[1]);
    let company = bank_core::COMPANY_IBAN;

    // The company account's feed is public: anonymous subscribers on both instances.
    let query = format!(
        r#"subscription {{ transactions(iban: "{company}", direction: CREDIT) {{ transferId changedByCents }} }}"#
    );
    let (mut on_a, ack) = Ws::connect(a, "graphql-transport-ws", None).await;
    assert_eq!(ack["type"], "connection_ack");
    on_a.subscribe("c", &query).await;
    let (mut on_b, ack) = Ws::connect(b, "graphql-transport-ws", None).await;
    assert_eq!(ack["type"], "connection_ack");
    on_b.subscribe("c", &query).await;
    wait_subscribers(a, 1).await;
    wait_subscribers(b, 1).await;

    // A user registered through instance a pays the company through instance b.
    let (token, _) = bank.register("carol").await;
    let r = exec_on(a, Some(&token), "mutation { deposit(amountCents: 5000) { status } }").await;
    assert_eq!(r["data"]["deposit"]["status"], "CONFIRMED", "{r}");
    let r = exec_on(
        b,
        Some(&token),
        &format!(
            r#"mutation {{ transferMoney(to: "{company}", amountCents: 1234, description: "shop") {{ id status }} }}"#
        ),
    )
    .await;
    assert_eq!(r["data"]["transferMoney"]["status"], "CONFIRMED", "{r}");
    let id = r["data"]["transferMoney"]["id"].as_str().unwrap().to_owned();

    for ws in [&mut on_a, &mut on_b] {
        let d = ws.next_data("c", WAIT).await;
        assert_eq!(d["transactions"]["transferId"], id.as_str(), "{d}");
        assert_eq!(d["transactions"]["changedByCents"], "1234");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_surface_limits_and_pages() {
    let bank = Bank::start(1).await;
    let g = bank.gateway();
    let client = reqwest::Client::new();

    let page = client.get(format!("http://{}/graphiql", g.addr)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/graphql/ws"), "GraphiQL is wired to the websocket endpoint");
    let ready = client.get(format!("http://{}/ready", g.addr)).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // A body above the limit is refused before it is parsed.
    let huge =
        format!(r#"{{"query":"{{ bankStats {{ accounts }} }}","variables":{{"x":"{}"}}}}"#, "a".repeat(100 * 1024));
    let r = client
        .post(format!("http://{}/graphql", g.addr))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Public counters need no session and count what the projection saw: the employee's account, then a
    // client's, then one deposit (one balance change, one transfer).
    bank.employee().await;
    let (status, r) = http(g, None, "{ bankStats { accounts transactions transfers transfersPerSecond } }").await;
    assert_eq!(status, 200);
    let stats = &r["data"]["bankStats"];
    assert_eq!(
        (&stats["accounts"], &stats["transactions"], &stats["transfers"]),
        (&"1".into(), &"0".into(), &"0".into()),
        "{r}"
    );
    assert_eq!(stats["transfersPerSecond"].as_f64(), Some(0.0), "nothing moved yet: {r}");
    let (erin, erin_iban) = bank.register("erin").await;
    assert_eq!(bank.stats().await, (2, 0, 0), "one more account");
    let r = bank.ok(Some(&erin), "mutation { deposit(amountCents: 700) { status } }").await;
    assert_eq!(r["deposit"]["status"], "CONFIRMED");
    bank.wait_history(&erin, &erin_iban, 1).await;
    assert_eq!(bank.stats().await, (2, 1, 1), "a deposit is one balance change and one transfer");

    // With a built frontend, `/` and any client-side route serve it; the API keeps its paths.
    let dist = std::env::temp_dir().join(format!("openbank-ui-{}", std::process::id()));
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("index.html"), "<!doctype html><title>Open Bank UI</title>").unwrap();
    let mut config = bank.config(&bank_core::testing::common_args(&bank.prefix));
    config.frontend_dir = dist.clone();
    let router = graphql_endpoint::router(g.service.clone(), &config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ui = listener.local_addr().unwrap();
    tokio::spawn(async move { axum_serve(listener, router).await });
    for path in ["/", "/client", "/results/run-1"] {
        let r = client.get(format!("http://{ui}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.text().await.unwrap().contains("Open Bank UI"), "{path} serves the UI");
    }
    let r = client.get(format!("http://{ui}/graphiql")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("/graphql/ws"));
    // With the bundled GraphiQL page built too, `/graphiql` (and `GET /graphql`) serve it: nothing from a CDN.
    let bundled =
        "<!doctype html><title>Open Bank GraphiQL</title><script type=module src=/assets/graphiql.js></script>";
    std::fs::write(dist.join("graphiql.html"), bundled).unwrap();
    let router = graphql_endpoint::router(g.service.clone(), &config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ui = listener.local_addr().unwrap();
    tokio::spawn(async move { axum_serve(listener, router).await });
    for path in ["/graphiql", "/graphql"] {
        let r = client.get(format!("http://{ui}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap(), bundled, "{path} serves the bundled GraphiQL");
    }
    let (status, r) = http_at(&client, ui, "{ bankStats { accounts } }").await;
    assert_eq!(
        (status, &r["data"]["bankStats"]["accounts"]),
        (200, &serde_json::Value::from("2")),
        "POST /graphql still answers, with the employee's and erin's accounts: {r}"
    );
    std::fs::remove_dir_all(&dist).unwrap();

    // A malformed bearer token is an unknown session, never a crash.
    let (_, r) = http(g, Some("not-a-token"), "{ me { iban } }").await;
    assert_eq!(code(&r), "UNAUTHENTICATED");
}

async fn http_at(client: &reqwest::Client, addr: std::net::SocketAddr, query: &str) -> (u16, serde_json::Value) {
    let r = client
        .post(format!("http://{addr}/graphql"))
        .json(&serde_json::json!({ "query": query }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    bank_core::http::serve(listener, router, bank_core::shutdown::CancellationToken::new()).await.unwrap();
}

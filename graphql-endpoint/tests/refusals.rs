//! Everything the gateway must refuse, with the code a client can act on, and the inputs it must keep literally.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_carry_codes_and_move_no_money() {
    let bank = Bank::start(1).await;
    let (alice, alice_iban) = bank.register("alice").await;
    let (bob, bob_iban) = bank.register("bob").await;
    let r = bank.ok(Some(&alice), "mutation { deposit(amountCents: 10000) { status } }").await;
    assert_eq!(r["deposit"]["status"], "CONFIRMED");

    // No session.
    for q in [
        "{ me { iban } }".to_owned(),
        "mutation { deposit(amountCents: 100) { id } }".to_owned(),
        format!(r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: 1, description: "x") {{ id }} }}"#),
        format!(r#"{{ transactions(iban: "{bob_iban}") {{ nodes {{ id }} }} }}"#),
        "{ accounts { nodes { iban } } }".to_owned(),
        "mutation { logout }".to_owned(),
    ] {
        let r = bank.exec(None, &q).await;
        assert_eq!(code(&r), "UNAUTHENTICATED", "{q}: {r}");
    }

    // Someone else's account, and the employee-only list.
    let r = bank.exec(Some(&alice), &format!(r#"{{ transactions(iban: "{bob_iban}") {{ nodes {{ id }} }} }}"#)).await;
    assert_eq!(code(&r), "FORBIDDEN");
    let r = bank.exec(Some(&alice), "{ accounts { nodes { iban } } }").await;
    assert_eq!(code(&r), "FORBIDDEN");
    let q = format!(r#"subscription {{ transactions(iban: "{bob_iban}") {{ id }} }}"#);
    let (mut ws, ack) = Ws::connect(bank.gateway(), "graphql-transport-ws", Some(&alice)).await;
    assert_eq!(ack["type"], "connection_ack");
    ws.subscribe("s", &q).await;
    let m = ws.next_message(std::time::Duration::from_secs(10)).await.expect("an answer to the subscription");
    let error = if m["type"] == "error" { &m["payload"][0] } else { &m["payload"]["errors"][0] };
    assert_eq!(error["extensions"]["code"], "FORBIDDEN", "{m}");
    assert!(m["payload"]["data"].is_null(), "no data for a refused subscription: {m}");

    // Amounts: zero, negative, and beyond a GraphQL Int.
    for amount in ["0", "-1", "-2147483648"] {
        let r = bank.exec(Some(&alice), &format!("mutation {{ deposit(amountCents: {amount}) {{ id }} }}")).await;
        assert_eq!(code(&r), "INVALID_INPUT", "{amount}: {r}");
        assert_eq!(r["errors"][0]["extensions"]["field"], "amountCents");
    }
    let r = bank.exec(Some(&alice), "mutation { withdraw(amountCents: 4294967296) { id } }").await;
    assert!(r["errors"][0]["message"].as_str().unwrap().contains("Int"), "an overflowing Int is a parse error: {r}");

    // Malformed IBAN, oversized description, malformed idempotency key.
    let r = bank
        .exec(
            Some(&alice),
            r#"mutation { transferMoney(to: "NL00OPEN0000000001", amountCents: 1, description: "x") { id } }"#,
        )
        .await;
    assert_eq!(code(&r), "INVALID_INPUT");
    assert_eq!(r["errors"][0]["extensions"]["field"], "to");
    let long = "x".repeat(10 * 1024);
    let r = bank
        .exec(
            Some(&alice),
            &format!(
                r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: 1, description: "{long}") {{ id }} }}"#
            ),
        )
        .await;
    assert_eq!(code(&r), "INVALID_INPUT");
    assert_eq!(r["errors"][0]["extensions"]["field"], "description");
    let r = bank
        .exec(
            Some(&alice),
            &format!(r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: 1, description: "x", idempotencyKey: "has space") {{ id }} }}"#),
        )
        .await;
    assert_eq!(r["errors"][0]["extensions"]["field"], "idempotencyKey", "{r}");

    // Business refusals come back from the handler as FAILED results with its code.
    let r = bank.ok(Some(&alice), "mutation { withdraw(amountCents: 2000000000) { status code reason } }").await;
    assert_eq!(r["withdraw"]["status"], "FAILED");
    assert_eq!(r["withdraw"]["code"], "AMOUNT_TOO_LARGE", "{r}");
    let r = bank.ok(Some(&alice), "mutation { withdraw(amountCents: 90000000) { status code reason } }").await;
    assert_eq!(r["withdraw"]["code"], "INSUFFICIENT_FUNDS", "{r}");
    assert!(r["withdraw"]["reason"].as_str().unwrap().starts_with("INSUFFICIENT_FUNDS: "));
    let unknown = bank_core::Iban::from_account_number(4_242_424_242);
    let r = bank
        .ok(
            Some(&alice),
            &format!(
                r#"mutation {{ transferMoney(to: "{unknown}", amountCents: 100, description: "x") {{ status code }} }}"#
            ),
        )
        .await;
    assert_eq!(r["transferMoney"]["code"], "UNKNOWN_ACCOUNT", "{r}");
    let r = bank
        .ok(
            Some(&alice),
            &format!(r#"mutation {{ transferMoney(to: "{alice_iban}", amountCents: 100, description: "x") {{ status code }} }}"#),
        )
        .await;
    assert_eq!(r["transferMoney"]["code"], "SAME_ACCOUNT", "{r}");

    // The same idempotency key twice: the first result again, money moved once. Reused for another transfer: refused.
    let pay = format!(
        r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: 1500, description: "rent", idempotencyKey: "rent-2026-11") {{ id status }} }}"#
    );
    let first = bank.ok(Some(&alice), &pay).await;
    let second = bank.ok(Some(&alice), &pay).await;
    assert_eq!(first["transferMoney"]["status"], "CONFIRMED");
    assert_eq!(first, second, "a repeated key returns the first result");
    let other = pay.replace("1500", "1600");
    let r = bank.exec(Some(&alice), &other).await;
    assert_eq!(code(&r), "INVALID_INPUT");
    assert_eq!(r["errors"][0]["extensions"]["field"], "idempotencyKey");

    // Injection strings are data: stored and returned literally.
    let nasty = r#"'); DROP TABLE gateway.transactions; -- <script>alert(1)</script> \" & 😀"#;
    let escaped = nasty.replace('\\', "\\\\").replace('"', "\\\"");
    let r = bank
        .ok(
            Some(&alice),
            &format!(r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: 100, description: "{escaped}") {{ status }} }}"#),
        )
        .await;
    assert_eq!(r["transferMoney"]["status"], "CONFIRMED");
    let history = bank.wait_history(&bob, &bob_iban, 2).await;
    assert_eq!(history[0]["description"], nasty);
    assert_eq!(history[1]["description"], "rent");
    assert_eq!(bank.balance(&bob).await, 1600, "rent once (1500) and the 100 with the odd description");
    assert_eq!(bank.balance(&alice).await, 10000 - 1600);

    // Users and passwords.
    let r =
        bank.exec(None, r#"mutation { register(username: "alice", password: "another password") { token } }"#).await;
    assert_eq!(code(&r), "USERNAME_TAKEN");
    let r = bank.exec(None, r#"mutation { register(username: "dave", password: "short") { token } }"#).await;
    assert_eq!(r["errors"][0]["extensions"]["field"], "password");
    let r = bank.exec(None, r#"mutation { register(username: "a b", password: "long enough") { token } }"#).await;
    assert_eq!(r["errors"][0]["extensions"]["field"], "username");
    let r = bank.exec(None, r#"mutation { login(username: "alice", password: "wrong password") { token } }"#).await;
    assert_eq!(code(&r), "UNAUTHENTICATED");
    let r = bank.exec(None, r#"mutation { login(username: "nobody", password: "wrong password") { token } }"#).await;
    assert_eq!(code(&r), "UNAUTHENTICATED");
    assert!(!r.to_string().contains("nobody"), "the error does not say which part was wrong");

    // The employee reads every account and any history; cursors page through them.
    let r = bank
        .ok(
            None,
            &format!(r#"mutation {{ login(username: "employee", password: "{EMPLOYEE_PASSWORD}") {{ token role }} }}"#),
        )
        .await;
    assert_eq!(r["login"]["role"], "EMPLOYEE");
    let employee = r["login"]["token"].as_str().unwrap().to_owned();
    let page =
        bank.ok(Some(&employee), "{ accounts(first: 1) { nodes { iban } pageInfo { hasNextPage endCursor } } }").await;
    assert_eq!(page["accounts"]["pageInfo"]["hasNextPage"], true);
    let cursor = page["accounts"]["pageInfo"]["endCursor"].as_str().unwrap();
    let next = bank
        .ok(Some(&employee), &format!(r#"{{ accounts(first: 1, after: "{cursor}") {{ nodes {{ iban }} }} }}"#))
        .await;
    assert!(
        next["accounts"]["nodes"][0]["iban"].as_str().unwrap() > page["accounts"]["nodes"][0]["iban"].as_str().unwrap()
    );
    let r = bank.ok(Some(&employee), &format!(r#"{{ transactions(iban: "{bob_iban}", first: 1) {{ nodes {{ description }} pageInfo {{ endCursor }} }} }}"#)).await;
    assert_eq!(r["transactions"]["nodes"][0]["description"], nasty);
    let cursor = r["transactions"]["pageInfo"]["endCursor"].as_str().unwrap();
    let r = bank
        .ok(
            Some(&employee),
            &format!(
                r#"{{ transactions(iban: "{bob_iban}", first: 1, after: "{cursor}") {{ nodes {{ description }} }} }}"#
            ),
        )
        .await;
    assert_eq!(r["transactions"]["nodes"][0]["description"], "rent");
    let r = bank
        .exec(
            Some(&employee),
            &format!(r#"{{ transactions(iban: "{bob_iban}", after: "bogus") {{ nodes {{ id }} }} }}"#),
        )
        .await;
    assert_eq!(r["errors"][0]["extensions"]["field"], "after");
    let r = bank
        .exec(Some(&employee), &format!(r#"{{ transactions(iban: "{bob_iban}", first: 1000) {{ nodes {{ id }} }} }}"#))
        .await;
    assert_eq!(r["errors"][0]["extensions"]["field"], "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_deeper_than_the_limit_are_refused() {
    let bank = Bank::start(1).await;
    let mut deep = String::from("name");
    for _ in 0..graphql_endpoint::schema::MAX_DEPTH {
        deep = format!("ofType {{ {deep} }}");
    }
    let r = bank.exec(None, &format!("{{ __schema {{ types {{ fields {{ type {{ {deep} }} }} }} }} }}")).await;
    let message = r["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too deep") || message.contains("depth"), "{r}");
    assert!(r["data"].is_null(), "nothing is executed: {r}");
    // A normal introspection (what GraphiQL sends) stays within the limits.
    let r = bank
        .exec(
            None,
            "{ __schema { types { name fields { name type { name kind ofType { name kind ofType { name } } } } } } }",
        )
        .await;
    assert!(r.get("errors").is_none(), "{r}");
}

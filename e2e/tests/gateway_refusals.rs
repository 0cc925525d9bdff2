//! Everything the gateway must refuse, with the code a client can act on, and the inputs it must keep literally.
//! One refusal per test; each checks that the refusal moved no money.

mod common;

use common::*;

/// A bank where alice has 100.00 and bob nothing: (bank, alice's token, alice's IBAN, bob's token, bob's IBAN).
async fn funded() -> (Bank, String, String, String, String) {
    let bank = Bank::start(1).await;
    let (alice, alice_iban) = bank.register("alice").await;
    let (bob, bob_iban) = bank.register("bob").await;
    let r = bank.ok(Some(&alice), "mutation { deposit(amountCents: 10000) { status } }").await;
    assert_eq!(r["deposit"]["status"], "CONFIRMED");
    (bank, alice, alice_iban, bob, bob_iban)
}

/// Alice still has 100.00 and bob nothing.
async fn nothing_moved(bank: &Bank, alice: &str, bob: &str) {
    assert_eq!(bank.balance(alice).await, 10_000, "alice's balance is untouched");
    assert_eq!(bank.balance(bob).await, 0, "bob's balance is untouched");
}

/// The `extensions.field` of the first error, with its code INVALID_INPUT.
fn invalid_field(r: &serde_json::Value) -> &str {
    assert_eq!(code(r), "INVALID_INPUT", "{r}");
    r["errors"][0]["extensions"]["field"].as_str().unwrap_or_else(|| panic!("no field: {r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_session_every_private_field_is_unauthenticated() {
    let (bank, alice, _, bob, bob_iban) = funded().await;
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
        assert!(r["data"].is_null(), "{q}: no data: {r}");
    }
    nothing_moved(&bank, &alice, &bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_clients_history_is_forbidden() {
    let (bank, alice, _, _, bob_iban) = funded().await;
    let r = bank.exec(Some(&alice), &format!(r#"{{ transactions(iban: "{bob_iban}") {{ nodes {{ id }} }} }}"#)).await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    assert_eq!(r["errors"][0]["message"], "you may only read your own account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_account_list_is_forbidden_to_clients() {
    let (bank, alice, ..) = funded().await;
    let r = bank.exec(Some(&alice), "{ accounts { nodes { iban } } }").await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    assert_eq!(r["errors"][0]["message"], "only bank employees may list accounts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_to_another_clients_account_is_forbidden() {
    let (bank, alice, _, _, bob_iban) = funded().await;
    let q = format!(r#"subscription {{ transactions(iban: "{bob_iban}") {{ id }} }}"#);
    let (mut ws, ack) = Ws::connect(bank.gateway(), "graphql-transport-ws", Some(&alice)).await;
    assert_eq!(ack["type"], "connection_ack");
    ws.subscribe("s", &q).await;
    let m = ws.next_message(std::time::Duration::from_secs(10)).await.expect("an answer to the subscription");
    assert_eq!(ws_code(&m), "FORBIDDEN", "{m}");
    assert!(m["payload"]["data"].is_null(), "no data for a refused subscription: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amounts_must_be_positive() {
    let (bank, alice, _, bob, _) = funded().await;
    for amount in ["0", "-1", "-2147483648"] {
        let r = bank.exec(Some(&alice), &format!("mutation {{ deposit(amountCents: {amount}) {{ id }} }}")).await;
        assert_eq!(invalid_field(&r), "amountCents", "{amount}: {r}");
        let r = bank.exec(Some(&alice), &format!("mutation {{ withdraw(amountCents: {amount}) {{ id }} }}")).await;
        assert_eq!(invalid_field(&r), "amountCents", "{amount}: {r}");
    }
    nothing_moved(&bank, &alice, &bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_amount_beyond_a_graphql_int_is_a_parse_error() {
    let (bank, alice, _, bob, _) = funded().await;
    let r = bank.exec(Some(&alice), "mutation { withdraw(amountCents: 4294967296) { id } }").await;
    assert!(r["errors"][0]["message"].as_str().unwrap().contains("Int"), "an overflowing Int is a parse error: {r}");
    assert!(r["data"].is_null(), "{r}");
    nothing_moved(&bank, &alice, &bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_iban_is_invalid_input() {
    let (bank, alice, _, bob, _) = funded().await;
    let r = bank
        .exec(
            Some(&alice),
            r#"mutation { transferMoney(to: "NL00OPEN0000000001", amountCents: 1, description: "x") { id } }"#,
        )
        .await;
    assert_eq!(invalid_field(&r), "to");
    nothing_moved(&bank, &alice, &bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_description_is_invalid_input() {
    let (bank, alice, _, bob, bob_iban) = funded().await;
    let long = "x".repeat(10 * 1024);
    let r = bank
        .exec(
            Some(&alice),
            &format!(
                r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: 1, description: "{long}") {{ id }} }}"#
            ),
        )
        .await;
    assert_eq!(invalid_field(&r), "description");
    nothing_moved(&bank, &alice, &bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_idempotency_key_is_invalid_input() {
    let (bank, alice, _, bob, bob_iban) = funded().await;
    let r = bank
        .exec(
            Some(&alice),
            &format!(r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: 1, description: "x", idempotencyKey: "has space") {{ id }} }}"#),
        )
        .await;
    assert_eq!(invalid_field(&r), "idempotencyKey", "{r}");
    nothing_moved(&bank, &alice, &bob).await;
}

/// A withdrawal or transfer the handler refuses: a FAILED result with its code, and no money moved.
async fn refused_by_the_handler(mutation: impl FnOnce(&str, &str) -> String, field: &str, expected: &str) {
    let (bank, alice, alice_iban, bob, bob_iban) = funded().await;
    let r = bank.ok(Some(&alice), &mutation(&alice_iban, &bob_iban)).await;
    assert_eq!(r[field]["status"], "FAILED", "{r}");
    assert_eq!(r[field]["code"], expected, "{r}");
    let reason = r[field]["reason"].as_str().unwrap_or_else(|| panic!("a reason: {r}"));
    assert!(reason.starts_with(&format!("{expected}: ")), "{r}");
    nothing_moved(&bank, &alice, &bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_amount_above_the_handlers_maximum_fails_with_amount_too_large() {
    let q = |_: &str, _: &str| "mutation { withdraw(amountCents: 2000000000) { status code reason } }".to_owned();
    refused_by_the_handler(q, "withdraw", "AMOUNT_TOO_LARGE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawal_beyond_the_limit_fails_with_insufficient_funds() {
    let q = |_: &str, _: &str| "mutation { withdraw(amountCents: 90000000) { status code reason } }".to_owned();
    refused_by_the_handler(q, "withdraw", "INSUFFICIENT_FUNDS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_to_an_unknown_account_fails_with_unknown_account() {
    let unknown = bank_core::Iban::from_account_number(4_242_424_242);
    let q = |_: &str, _: &str| {
        format!(
            r#"mutation {{ transferMoney(to: "{unknown}", amountCents: 100, description: "x") {{ status code reason }} }}"#
        )
    };
    refused_by_the_handler(q, "transferMoney", "UNKNOWN_ACCOUNT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_to_the_same_account_fails_with_same_account() {
    let q = |alice_iban: &str, _: &str| {
        format!(
            r#"mutation {{ transferMoney(to: "{alice_iban}", amountCents: 100, description: "x") {{ status code reason }} }}"#
        )
    };
    refused_by_the_handler(q, "transferMoney", "SAME_ACCOUNT").await;
}

fn rent(bob_iban: &str, amount: i64) -> String {
    format!(
        r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: {amount}, description: "rent", idempotencyKey: "rent-2026-11") {{ id status }} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_idempotency_key_returns_the_first_result_and_moves_money_once() {
    let (bank, alice, _, bob, bob_iban) = funded().await;
    let first = bank.ok(Some(&alice), &rent(&bob_iban, 1500)).await;
    let second = bank.ok(Some(&alice), &rent(&bob_iban, 1500)).await;
    assert_eq!(first["transferMoney"]["status"], "CONFIRMED");
    assert_eq!(first, second, "a repeated key returns the first result");
    assert_eq!(bank.wait_history(&bob, &bob_iban, 1).await.as_array().map(Vec::len), Some(1));
    assert_eq!(bank.balance(&bob).await, 1500, "rent once");
    assert_eq!(bank.balance(&alice).await, 10_000 - 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_reused_for_another_transfer_is_refused() {
    let (bank, alice, _, bob, bob_iban) = funded().await;
    let first = bank.ok(Some(&alice), &rent(&bob_iban, 1500)).await;
    assert_eq!(first["transferMoney"]["status"], "CONFIRMED");
    let r = bank.exec(Some(&alice), &rent(&bob_iban, 1600)).await;
    assert_eq!(invalid_field(&r), "idempotencyKey");
    assert_eq!(r["errors"][0]["message"], "this key was already used for a different transfer");
    assert_eq!(bank.balance(&bob).await, 1500, "only the first transfer moved money");
    assert_eq!(bank.balance(&alice).await, 10_000 - 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn injection_strings_are_data_stored_and_returned_literally() {
    let (bank, alice, _, bob, bob_iban) = funded().await;
    let nasty = r#"'); DROP TABLE gateway.transactions; -- <script>alert(1)</script> \" & 😀"#;
    let escaped = nasty.replace('\\', "\\\\").replace('"', "\\\"");
    let r = bank
        .ok(
            Some(&alice),
            &format!(r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: 100, description: "{escaped}") {{ status }} }}"#),
        )
        .await;
    assert_eq!(r["transferMoney"]["status"], "CONFIRMED");
    let history = bank.wait_history(&bob, &bob_iban, 1).await;
    assert_eq!(history[0]["description"], nasty);
    assert_eq!(bank.balance(&bob).await, 100);
    assert_eq!(bank.balance(&alice).await, 10_000 - 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_taken_username_is_refused() {
    let (bank, ..) = funded().await;
    let r =
        bank.exec(None, r#"mutation { register(username: "alice", password: "another password") { token } }"#).await;
    assert_eq!(code(&r), "USERNAME_TAKEN", "{r}");
    let r =
        bank.exec(None, r#"mutation { register(username: "ALICE", password: "another password") { token } }"#).await;
    assert_eq!(code(&r), "USERNAME_TAKEN", "user names are case-insensitive: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_password_is_invalid_input() {
    let bank = Bank::start(1).await;
    let r = bank.exec(None, r#"mutation { register(username: "dave", password: "short") { token } }"#).await;
    assert_eq!(invalid_field(&r), "password");
    assert_eq!(r["errors"][0]["message"], "must be 8 to 128 characters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_username_is_invalid_input() {
    let bank = Bank::start(1).await;
    let r = bank.exec(None, r#"mutation { register(username: "a b", password: "long enough") { token } }"#).await;
    assert_eq!(invalid_field(&r), "username");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_is_unauthenticated() {
    let (bank, ..) = funded().await;
    let r = bank.exec(None, r#"mutation { login(username: "alice", password: "wrong password") { token } }"#).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    assert_eq!(r["errors"][0]["message"], "wrong username or password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_user_is_unauthenticated_without_saying_which_part_was_wrong() {
    let bank = Bank::start(1).await;
    let r = bank.exec(None, r#"mutation { login(username: "nobody", password: "wrong password") { token } }"#).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    assert_eq!(r["errors"][0]["message"], "wrong username or password");
    assert!(!r.to_string().contains("nobody"), "the error does not say which part was wrong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_employee_pages_through_every_account_and_any_history() {
    let (bank, alice, _, bob, bob_iban) = funded().await;
    for (amount, description) in [(1500, "rent"), (100, "tip")] {
        let q = format!(
            r#"mutation {{ transferMoney(to: "{bob_iban}", amountCents: {amount}, description: "{description}") {{ status }} }}"#
        );
        assert_eq!(bank.ok(Some(&alice), &q).await["transferMoney"]["status"], "CONFIRMED");
    }
    bank.wait_history(&bob, &bob_iban, 2).await;
    let employee = bank.employee().await;
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
    assert_eq!(r["transactions"]["nodes"][0]["description"], "tip");
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cursor_of_another_list_is_invalid_input() {
    let (bank, _, _, _, bob_iban) = funded().await;
    let employee = bank.employee().await;
    let r = bank
        .exec(
            Some(&employee),
            &format!(r#"{{ transactions(iban: "{bob_iban}", after: "bogus") {{ nodes {{ id }} }} }}"#),
        )
        .await;
    assert_eq!(invalid_field(&r), "after");
    let page = bank.ok(Some(&employee), "{ accounts(first: 1) { pageInfo { endCursor } } }").await;
    let account_cursor = page["accounts"]["pageInfo"]["endCursor"].as_str().unwrap();
    let r = bank
        .exec(
            Some(&employee),
            &format!(r#"{{ transactions(iban: "{bob_iban}", after: "{account_cursor}") {{ nodes {{ id }} }} }}"#),
        )
        .await;
    assert_eq!(invalid_field(&r), "after", "an account cursor is no transaction cursor: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_above_the_maximum_is_invalid_input() {
    let (bank, _, _, _, bob_iban) = funded().await;
    let employee = bank.employee().await;
    let r = bank
        .exec(Some(&employee), &format!(r#"{{ transactions(iban: "{bob_iban}", first: 1000) {{ nodes {{ id }} }} }}"#))
        .await;
    assert_eq!(invalid_field(&r), "first");
    assert_eq!(r["errors"][0]["message"], "must be between 1 and 100");
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

//! The committed `schema.graphql` is the contract clients build against; it must match the code.
//! Run with `UPDATE_SCHEMA=1` to rewrite it after an intended change.

#[test]
fn committed_schema_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let sdl = graphql_endpoint::schema::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &sdl).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == sdl,
        "graphql-endpoint/schema.graphql differs from the schema in the code; if the change is intended, run \
         `UPDATE_SCHEMA=1 cargo test -p graphql-endpoint --test sdl` and commit the file"
    );
}

#[test]
fn contract_names_are_in_the_schema() {
    let sdl = graphql_endpoint::schema::sdl();
    for name in [
        "register(username: String!, password: String!): Session!",
        "login(username: String!, password: String!): Session!",
        "logout: Boolean!",
        "deposit(amountCents: Int!, idempotencyKey: ID): TransferResult!",
        "withdraw(amountCents: Int!, idempotencyKey: ID): TransferResult!",
        "transferMoney(to: String!, amountCents: Int!, description: String!, idempotencyKey: ID): TransferResult!",
        "me: Account!",
        "transactions(iban: String!, first: Int, after: String): TransactionConnection!",
        "accounts(first: Int, after: String): AccountConnection!",
        "bankStats: BankStats!",
        "transactions(iban: String!, minAmountCents: Int, direction: Direction): Transaction!",
        "transferResults: TransferResult!",
    ] {
        assert!(sdl.contains(name), "the schema lacks `{name}`:\n{sdl}");
    }
}

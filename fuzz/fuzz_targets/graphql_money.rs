//! The money mutations (`deposit`, `withdraw`, `transferMoney`) executed by the gateway's real GraphQL schema
//! (its depth, complexity and credential limits included) for a signed-in user whose account is still being
//! opened: async-graphql coerces the arguments (as variables, as literals, or as raw text spliced into the
//! document), the resolver validates them with `crate::validate`, and a valid request stops at
//! `ACCOUNT_PENDING` before anything reaches the gateway's store or Kafka (so no gateway data is needed).
//!
//! Invariants: nothing panics; no mutation returns data; every coded error is `INVALID_INPUT` (naming one of
//! the mutation's arguments) or `ACCOUNT_PENDING`; when the arguments reach the resolver, the outcome is the
//! first broken rule of an independent reading of the rules (amount > 0; `to` an ASCII IBAN of this bank of at
//! most 64 bytes; description at most 200 characters, no control characters; key 1 to 100 of `A-Za-z0-9._-:`), or `ACCOUNT_PENDING`.
#![no_main]

use async_graphql::{Request, Schema, Variables};
use bank_core::Iban;
use bank_core::refusal::MAX_DESCRIPTION_CHARS;
use graphql_endpoint::gateway::Viewer;
use graphql_endpoint::schema::{self, BankSchema, Mutation, Query, Subscription, extensions};
use graphql_endpoint::store::{Role, User};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::sync::LazyLock;

/// The gateway's schema as `schema::build` makes it, without the gateway's data (no resolver here needs it).
static SCHEMA: LazyLock<BankSchema> = LazyLock::new(|| {
    Schema::build(Query, Mutation, Subscription)
        .limit_depth(schema::MAX_DEPTH)
        .limit_complexity(schema::MAX_COMPLEXITY)
        .extension(extensions::DocumentLimits { max_root_fields: schema::MAX_ROOT_FIELDS })
        .finish()
});

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Op {
    Deposit,
    Withdraw,
    TransferMoney,
}

#[derive(Arbitrary, Debug)]
enum Arg {
    Int(i64),
    /// An amount near the edges of `Int`.
    Edge(i8),
    Float(f64),
    Str(String),
    /// A valid IBAN of this bank, in one of its print forms.
    Iban(u32, bool),
    Null,
    Absent,
}

impl Arg {
    fn json(&self) -> Option<Value> {
        Some(match self {
            Arg::Int(n) => json!(n),
            Arg::Edge(d) => {
                json!(if *d < 0 { i64::from(i32::MIN) - i64::from(*d) } else { i64::from(i32::MAX) - i64::from(*d) })
            }
            Arg::Float(f) => json!(f),
            Arg::Str(s) => json!(s),
            Arg::Iban(n, spaced) => {
                let iban = Iban::from_account_number(u64::from(*n)).to_string();
                let printed = if *spaced {
                    iban.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c)).collect::<Vec<_>>().join(" ")
                } else {
                    iban.to_lowercase()
                };
                json!(printed)
            }
            Arg::Null => Value::Null,
            Arg::Absent => return None,
        })
    }
}

#[derive(Arbitrary, Debug)]
enum Form {
    Variables,
    Literals,
    /// The argument's text spliced into the document as it is.
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    op: Op,
    form: Form,
    amount: Arg,
    to: Arg,
    description: Arg,
    key: Arg,
}

/// The arguments of `op`, as (GraphQL name, type) pairs.
fn arguments(op: Op) -> &'static [(&'static str, &'static str)] {
    match op {
        Op::Deposit | Op::Withdraw => &[("amountCents", "Int!"), ("idempotencyKey", "ID")],
        Op::TransferMoney => {
            &[("to", "String!"), ("amountCents", "Int!"), ("description", "String!"), ("idempotencyKey", "ID")]
        }
    }
}

fn field(op: Op) -> &'static str {
    match op {
        Op::Deposit => "deposit",
        Op::Withdraw => "withdraw",
        Op::TransferMoney => "transferMoney",
    }
}

/// The first rule the (typed) arguments break, or `ACCOUNT_PENDING`; `None` when an argument has the wrong
/// GraphQL type, which coercion refuses before the resolver.
fn expected(op: Op, args: &[(&str, Option<Value>)]) -> Option<(&'static str, Option<&'static str>)> {
    let get = |name: &str| args.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.clone());
    let amount = i32::try_from(get("amountCents")?.as_i64()?).ok()?;
    let key = match get("idempotencyKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Some(_) => return None,
    };
    let (to, description) = if op == Op::TransferMoney {
        (Some(get("to")?.as_str()?.to_owned()), Some(get("description")?.as_str()?.to_owned()))
    } else {
        (None, None)
    };
    let invalid = |f: &'static str| Some(("INVALID_INPUT", Some(f)));
    if amount <= 0 {
        return invalid("amountCents");
    }
    if let Some(to) = &to
        && !(to.is_ascii() && to.len() <= 64 && Iban::parse(to).is_ok())
    {
        return invalid("to");
    }
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS || d.chars().any(char::is_control)) {
        return invalid("description");
    }
    let key_ok = |k: &str| {
        (1..=100).contains(&k.len())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    };
    if key.is_some_and(|k| !key_ok(&k)) {
        return invalid("idempotencyKey");
    }
    Some(("ACCOUNT_PENDING", None))
}

fn signed_in() -> Viewer {
    let user = User {
        id: 1,
        username: "fuzz".into(),
        role: Role::Client,
        iban: None,
        account_token: None,
        account_error: None,
    };
    Viewer::Signed { user, token: "t".into(), expires_at: chrono::DateTime::<chrono::Utc>::MAX_UTC }
}

fuzz_target!(|input: Input| {
    let op = input.op;
    let values = |name: &str| match name {
        "amountCents" => input.amount.json(),
        "to" => input.to.json(),
        "description" => input.description.json(),
        _ => input.key.json(),
    };
    let args: Vec<(&str, Option<Value>)> = arguments(op).iter().map(|(n, _)| (*n, values(n))).collect();
    let present = || args.iter().filter_map(|(n, v)| v.as_ref().map(|v| (*n, v)));
    let (query, variables, exact) = match &input.form {
        Form::Variables => {
            let decl: Vec<String> = arguments(op).iter().map(|(n, t)| format!("${n}: {t}")).collect();
            let pass: Vec<String> = arguments(op).iter().map(|(n, _)| format!("{n}: ${n}")).collect();
            let vars: serde_json::Map<String, Value> = present().map(|(n, v)| (n.to_owned(), v.clone())).collect();
            let q = format!("mutation({}) {{ {}({}) {{ status }} }}", decl.join(", "), field(op), pass.join(", "));
            (q, Variables::from_json(Value::Object(vars)), true)
        }
        Form::Literals => {
            // JSON's literals are GraphQL's (strings escaped the same way), except that floats must keep a
            // fraction or exponent, which serde_json does.
            let pass: Vec<String> = present().map(|(n, v)| format!("{n}: {v}")).collect();
            (format!("mutation {{ {}({}) {{ status }} }}", field(op), pass.join(", ")), Variables::default(), true)
        }
        Form::Raw(raw) => {
            let pass: Vec<String> = present().map(|(n, v)| format!("{n}: {v}")).collect();
            let q = format!("mutation {{ {}({}, {raw}) {{ status }} }}", field(op), pass.join(", "));
            (q, Variables::default(), false)
        }
    };
    let request = Request::new(query.clone()).variables(variables).data(signed_in());
    let response = futures::executor::block_on(SCHEMA.execute(request));
    let data = serde_json::to_value(&response.data).expect("data serialises");
    assert!(
        data.as_object().is_none_or(|o| o.values().all(Value::is_null)),
        "{query}: a mutation returned data: {data}"
    );
    assert!(!response.errors.is_empty(), "{query}: no error, yet the account is pending");
    let coded: Vec<(String, Option<String>)> = response
        .errors
        .iter()
        .filter_map(|e| {
            let ext = serde_json::to_value(e.extensions.as_ref()?).ok()?;
            let text = |k: &str| ext.get(k).and_then(Value::as_str).map(str::to_owned);
            Some((text("code")?, text("field")))
        })
        .collect();
    let names: Vec<&str> = arguments(op).iter().map(|(n, _)| *n).collect();
    for (code, field) in &coded {
        match (code.as_str(), field.as_deref()) {
            ("ACCOUNT_PENDING", None) => {}
            ("INVALID_INPUT", Some(f)) if names.contains(&f) => {}
            other => panic!("{query}: unexpected error {other:?}"),
        }
    }
    assert!(coded.len() <= 1, "{query}: one field, yet errors {coded:?}");
    if let (true, Some((code, field))) = (exact, coded.first()) {
        let want = expected(op, &args);
        assert_eq!(want, Some((code.as_str(), field.as_deref())), "{query} with {:?}", args);
    }
});

//! Every rule a client's input must meet, in one place. Each check returns the value in the form the gateway
//! works with, or an [`GatewayError::Invalid`] naming the argument.

use crate::error::{GatewayError, GatewayResult};
use bank_core::refusal::MAX_DESCRIPTION_CHARS;
use bank_core::{Iban, Money};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Largest page of a connection.
pub const MAX_PAGE: i32 = 100;
/// Page size when none is asked for.
const DEFAULT_PAGE: i64 = 20;
/// Longest IBAN input looked at: 34 characters of any country's IBAN and the spaces of its print form.
const MAX_IBAN_INPUT: usize = 64;

/// A user name in its stored form (lower case), or `None` unless it is 3 to 32 of `a-z 0-9 . _ -`.
pub fn normalise_username(name: &str) -> Option<String> {
    let n = name.to_ascii_lowercase();
    let ok = (3..=32).contains(&n.len())
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(n)
}

/// A user name to register, in its stored form.
pub fn username(username: &str) -> GatewayResult<String> {
    normalise_username(username)
        .ok_or_else(|| GatewayError::invalid("username", "3 to 32 characters: letters, digits, '.', '_' or '-'"))
}

/// A password to register.
pub fn password(password: &str) -> GatewayResult<()> {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(GatewayError::invalid(
            "password",
            format!("must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// An idempotency key: 1 to 100 of letters, digits, `.`, `_`, `-`, `:`.
pub fn idempotency_key(key: Option<String>) -> GatewayResult<Option<String>> {
    let Some(k) = key else { return Ok(None) };
    let ok = (1..=100).contains(&k.len())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if !ok {
        return Err(GatewayError::invalid(
            "idempotencyKey",
            "1 to 100 characters: letters, digits, '.', '_', '-' or ':'",
        ));
    }
    Ok(Some(k))
}

/// An amount of money to move, in cents.
pub fn amount(amount_cents: i32) -> GatewayResult<Money> {
    if amount_cents <= 0 {
        return Err(GatewayError::invalid("amountCents", "must be a positive number of cents"));
    }
    Ok(Money::from_cents(i64::from(amount_cents)))
}

/// A transfer's description: one line of text, without control characters (PostgreSQL cannot store a NUL byte
/// in text, and a line break or escape code in someone's history is never wanted).
pub fn description(description: &str) -> GatewayResult<()> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(GatewayError::invalid("description", format!("at most {MAX_DESCRIPTION_CHARS} characters")));
    }
    if description.chars().any(char::is_control) {
        return Err(GatewayError::invalid("description", "no control characters (line breaks, tabs, NUL, ...)"));
    }
    Ok(())
}

/// An IBAN from a client; anything but ASCII up to [`MAX_IBAN_INPUT`] bytes is refused before it is parsed.
pub fn iban(field: &'static str, iban: &str) -> GatewayResult<Iban> {
    if !iban.is_ascii() || iban.len() > MAX_IBAN_INPUT {
        return Err(GatewayError::invalid(field, "an IBAN is letters and digits, like NL66OPEN0000000000"));
    }
    Iban::parse(iban).map_err(|e| GatewayError::invalid(field, e.to_string()))
}

/// A transfer id (a uuid).
pub fn transfer_id(id: &str) -> GatewayResult<uuid::Uuid> {
    uuid::Uuid::parse_str(id).map_err(|_| GatewayError::invalid("id", "not a transfer id (uuid)"))
}

/// The page size of a connection.
pub fn page_size(first: Option<i32>) -> GatewayResult<i64> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(i64::from(n)),
        Some(_) => Err(GatewayError::invalid("first", format!("must be between 1 and {MAX_PAGE}"))),
    }
}

/// The cursor of an item of the list `kind`.
pub fn encode_cursor(kind: &str, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{value}"))
}

/// The value in a cursor of the list `kind`.
pub fn decode_cursor(kind: &str, cursor: &str) -> GatewayResult<String> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(&format!("{kind}:")).map(str::to_owned))
        .ok_or_else(|| GatewayError::invalid("after", "not a cursor of this list"))
}

/// The position in a cursor of the transactions list.
pub fn transaction_cursor(cursor: &str) -> GatewayResult<i64> {
    decode_cursor("tx", cursor)?.parse::<i64>().map_err(|_| GatewayError::invalid("after", "not a cursor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: GatewayError) -> &'static str {
        match e {
            GatewayError::Invalid { field, .. } => field,
            other => panic!("not an input error: {other:?}"),
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_ones() {
        let c = encode_cursor("tx", "42");
        assert_eq!(decode_cursor("tx", &c).unwrap(), "42");
        assert_eq!(transaction_cursor(&c).unwrap(), 42);
        assert_eq!(field(decode_cursor("acct", &c).unwrap_err()), "after");
        assert_eq!(field(decode_cursor("tx", "%%%").unwrap_err()), "after");
        assert_eq!(field(transaction_cursor(&encode_cursor("tx", "x")).unwrap_err()), "after");
    }

    #[test]
    fn each_rule_names_its_argument() {
        assert_eq!(username("Alice.B").unwrap(), "alice.b");
        assert_eq!(field(username("a b").unwrap_err()), "username");
        assert_eq!(field(username("ab").unwrap_err()), "username");
        assert!(password("eight ch").is_ok());
        assert_eq!(field(password("short").unwrap_err()), "password");
        assert_eq!(field(password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).unwrap_err()), "password");
        assert_eq!(amount(1).unwrap(), Money::from_cents(1));
        assert_eq!(field(amount(0).unwrap_err()), "amountCents");
        assert_eq!(field(amount(i32::MIN).unwrap_err()), "amountCents");
        assert_eq!(idempotency_key(None).unwrap(), None);
        assert_eq!(idempotency_key(Some("rent-2026:11".into())).unwrap().as_deref(), Some("rent-2026:11"));
        assert_eq!(field(idempotency_key(Some("has space".into())).unwrap_err()), "idempotencyKey");
        assert_eq!(field(idempotency_key(Some(String::new())).unwrap_err()), "idempotencyKey");
        assert_eq!(field(idempotency_key(Some("k".repeat(101))).unwrap_err()), "idempotencyKey");
        assert_eq!(field(description(&"x".repeat(MAX_DESCRIPTION_CHARS + 1)).unwrap_err()), "description");
        for bad in ["a\0b", "two\nlines", "tab\there", "esc\u{1b}[31m", "c1\u{85}"] {
            assert_eq!(field(description(bad).unwrap_err()), "description", "{bad:?}");
        }
        description("Café ☕ — 12,50 € für Kaffee").unwrap();
        assert_eq!(field(iban("to", "NL00OPEN0000000001").unwrap_err()), "to");
        assert_eq!(field(iban("iban", "NL66OPEN000000000é").unwrap_err()), "iban");
        assert_eq!(field(iban("iban", &"N".repeat(65)).unwrap_err()), "iban");
        assert_eq!(field(transfer_id("nope").unwrap_err()), "id");
        assert_eq!(page_size(None).unwrap(), 20);
        assert_eq!(page_size(Some(MAX_PAGE)).unwrap(), 100);
        assert_eq!(field(page_size(Some(0)).unwrap_err()), "first");
        assert_eq!(field(page_size(Some(MAX_PAGE + 1)).unwrap_err()), "first");
    }
}

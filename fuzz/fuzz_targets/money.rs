//! `Money::parse` on any string and `Display` of any amount: parsing never panics and accepts exactly
//! `[+-]digits[.d[d]]` (surrounding whitespace trimmed) whose cents fit an `i64`, with the error the rules name;
//! whatever it accepts prints and parses back to the same cents; every `i64` but `i64::MIN` survives
//! print-then-parse.
#![no_main]

use bank_core::{Money, MoneyError};
use libfuzzer_sys::fuzz_target;

/// The expected answer, computed on `i128` from the definition.
fn reference(input: &str) -> Result<i64, MoneyError> {
    let s = input.trim();
    let (negative, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(MoneyError::Format);
    }
    let fraction = fraction.unwrap_or("");
    if fraction.len() > 2 {
        return Err(MoneyError::Precision);
    }
    let significant = whole.trim_start_matches('0');
    if significant.len() > 20 {
        return Err(MoneyError::Overflow);
    }
    let whole: i128 = if significant.is_empty() { 0 } else { significant.parse().expect("at most 20 digits") };
    let fraction: i128 = format!("{fraction:0<2}").parse().expect("two digits");
    let cents = whole * 100 + fraction;
    // The magnitude must fit an i64 before the sign is applied.
    let cents = i64::try_from(cents).map_err(|_| MoneyError::Overflow)?;
    Ok(if negative { -cents } else { cents })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        let parsed = Money::parse(input);
        assert_eq!(parsed.clone().map(Money::cents), reference(input), "input {input:?}");
        if let Ok(m) = parsed {
            assert_eq!(Money::parse(&m.to_string()), Ok(m), "round trip of {m}");
        }
    }
    if let Some(bytes) = data.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        let m = Money::from_cents(i64::from_le_bytes(bytes));
        let printed = m.to_string();
        let expected = if m == Money::MIN { Err(MoneyError::Overflow) } else { Ok(m) };
        assert_eq!(Money::parse(&printed), expected, "print-then-parse of {printed}");
    }
});

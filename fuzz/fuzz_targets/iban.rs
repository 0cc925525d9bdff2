//! `Iban::parse` on any string: it never panics, and it accepts exactly what an independent reading of the
//! format accepts (whitespace dropped, upper-cased, `NL` + 2 digits + `OPEN` + 10 digits, ISO 7064 mod 97 = 1,
//! computed here on a `u128`). What it accepts prints as its compact form and parses back to itself.
#![no_main]

use bank_core::Iban;
use libfuzzer_sys::fuzz_target;

/// The accepted compact form of `input`, or `None`, by the definition rather than by the parser's steps.
fn reference(input: &str) -> Option<String> {
    let compact: String = input.chars().filter(|c| !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect();
    let chars: Vec<char> = compact.chars().collect();
    if chars.len() != 18 {
        return None;
    }
    let shape = chars.iter().enumerate().all(|(i, c)| match i {
        0 => *c == 'N',
        1 => *c == 'L',
        4..=7 => "OPEN".chars().nth(i - 4) == Some(*c),
        _ => c.is_ascii_digit(),
    });
    if !shape {
        return None;
    }
    // Move the first four characters to the end, letters as 10..35: at most 24 digits, well inside a u128.
    let rotated = chars[4..].iter().chain(&chars[..4]);
    let mut number: u128 = 0;
    for c in rotated {
        let v = u128::from(c.to_digit(36)?);
        number = if v < 10 { number * 10 + v } else { number * 100 + v };
    }
    (number % 97 == 1).then_some(compact)
}

fuzz_target!(|input: &str| {
    let parsed = Iban::parse(input);
    let expected = reference(input);
    assert_eq!(parsed.as_ref().ok().map(Iban::as_str), expected.as_deref(), "input {input:?}: {parsed:?}");
    if let Ok(iban) = parsed {
        assert_eq!(iban.to_string(), iban.as_str());
        assert_eq!(Iban::parse(iban.as_str()), Ok(iban.clone()), "round trip of {iban}");
        // The account number rebuilds the same IBAN (the check digits are a function of it).
        let account: u64 = iban.as_str()[8..].parse().expect("ten digits");
        assert_eq!(Iban::from_account_number(account), iban);
    }
});

//! International Bank Account Numbers (ISO 13616) of Open Bank: `NL` + 2 check digits + `OPEN` + 10 digits.

use std::fmt;
use std::str::FromStr;

/// The bank's own company account; it exists from the start.
pub const COMPANY_IBAN: &str = "NL66OPEN0000000000";
/// The outside world in `from`/`to` of a transfer: cash deposits come from it, withdrawals go to it.
pub const CASH: &str = "cash";

const BANK_CODE: &str = "OPEN";
const ACCOUNT_DIGITS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IbanError {
    #[error("iban must be {expected} characters, got {actual}")]
    Length { expected: usize, actual: usize },
    #[error("iban must start with country code NL")]
    Country,
    #[error("iban must carry bank code OPEN after the check digits")]
    BankCode,
    #[error("iban contains an invalid character at position {0}")]
    Character(usize),
    #[error("iban check digits do not match (mod-97 check failed)")]
    Checksum,
}

/// A valid Open Bank IBAN. Once parsed it is valid everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iban(String);

impl Iban {
    pub const LEN: usize = 4 + BANK_CODE.len() + ACCOUNT_DIGITS;

    /// Parses an IBAN, accepting the usual print form with spaces (`NL66 OPEN 0000 0000 00`) and lower case.
    pub fn parse(input: &str) -> Result<Self, IbanError> {
        let compact: String = input.chars().filter(|c| !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect();
        // Positions are counted in characters, and every check below works on characters, never on byte
        // offsets: the input comes from outside and may hold any Unicode.
        let chars: Vec<char> = compact.chars().collect();
        if chars.len() != Self::LEN {
            return Err(IbanError::Length { expected: Self::LEN, actual: chars.len() });
        }
        if let Some(i) = chars.iter().position(|c| !c.is_ascii_alphanumeric()) {
            return Err(IbanError::Character(i));
        }
        if !compact.starts_with("NL") {
            return Err(IbanError::Country);
        }
        if let Some(i) = (2..4).chain(8..Self::LEN).find(|&i| chars.get(i).is_none_or(|c| !c.is_ascii_digit())) {
            return Err(IbanError::Character(i));
        }
        if compact.get(4..8) != Some(BANK_CODE) {
            return Err(IbanError::BankCode);
        }
        if !is_mod97_valid(&compact) {
            return Err(IbanError::Checksum);
        }
        Ok(Self(compact))
    }

    /// Builds the IBAN for a 10-digit account number, computing the check digits.
    pub fn from_account_number(account: u64) -> Self {
        let digits = format!("{account:0ACCOUNT_DIGITS$}");
        assert!(digits.len() == ACCOUNT_DIGITS, "account number has more than 10 digits");
        // Only digits and the literal bank code and country: mod97 always has a value here.
        let check = 98 - mod97(&format!("{BANK_CODE}{digits}NL00")).unwrap_or(0);
        Self(format!("NL{check:02}{BANK_CODE}{digits}"))
    }

    /// A new random IBAN whose account number comes from the operating system's CSPRNG.
    // A failing OS random source is no input: nothing can go on safely without it.
    #[allow(clippy::expect_used)]
    pub fn generate() -> Self {
        let mut buf = [0u8; 8];
        getrandom::fill(&mut buf).expect("operating system random source failed");
        // 10 decimal digits; the bias of reducing a 64-bit number is ~1e-9 and harmless here.
        Self::from_account_number(u64::from_le_bytes(buf) % 10_000_000_000)
    }

    pub fn company() -> Self {
        Self(COMPANY_IBAN.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Remainder of the IBAN number (letters as 10..35) modulo 97, computed piecewise. Characters that are not
/// ASCII alphanumeric make the number invalid (`None`).
fn mod97(s: &str) -> Option<u32> {
    s.chars().try_fold(0u32, |acc, c| {
        let value = c.to_digit(36)?;
        Some(if value < 10 { (acc * 10 + value) % 97 } else { (acc * 100 + value) % 97 })
    })
}

fn is_mod97_valid(compact: &str) -> bool {
    match (compact.get(4..), compact.get(..4)) {
        (Some(rest), Some(head)) => mod97(&format!("{rest}{head}")) == Some(1),
        _ => false,
    }
}

impl fmt::Display for Iban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Iban {
    type Err = IbanError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Iban {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_account_is_valid() {
        assert_eq!(Iban::parse(COMPANY_IBAN).unwrap().as_str(), COMPANY_IBAN);
        assert_eq!(Iban::from_account_number(0), Iban::company());
    }

    #[test]
    fn real_world_checksum_algorithm_vectors() {
        // Published Dutch example IBANs validate with the same mod-97 routine.
        for valid in ["NL91ABNA0417164300", "NL02ABNA0123456789", "NL20INGB0001234567"] {
            assert!(is_mod97_valid(valid), "{valid}");
        }
        for invalid in ["NL91ABNA0417164301", "NL00ABNA0417164300", "NL20INGB0001234576"] {
            assert!(!is_mod97_valid(invalid), "{invalid}");
        }
    }

    #[test]
    fn parses_print_form_and_lower_case() {
        assert_eq!(Iban::parse("nl66 open 0000 0000 00").unwrap(), Iban::company());
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Iban::parse("NL66OPEN000000000"), Err(IbanError::Length { expected: 18, actual: 17 }));
        assert_eq!(Iban::parse("DE66OPEN0000000000"), Err(IbanError::Country));
        assert_eq!(Iban::parse("NL91ABNA0417164300"), Err(IbanError::BankCode));
        assert_eq!(Iban::parse("NL65OPEN0000000000"), Err(IbanError::Checksum));
        assert_eq!(Iban::parse("NL66OPEN00000000X0"), Err(IbanError::Character(16)));
        assert_eq!(Iban::parse("NLX6OPEN0000000000"), Err(IbanError::Character(2)));
        assert!(Iban::parse("").is_err());
        assert!(Iban::parse("NL66OPEN0000000000'; DROP TABLE x;--").is_err());
    }

    #[test]
    fn non_ascii_input_is_an_error_not_a_panic() {
        // 18 bytes with a two-byte character at byte 1: byte-index slicing would panic here.
        assert_eq!(Iban::parse("Né123456789012345"), Err(IbanError::Length { expected: 18, actual: 17 }));
        assert_eq!(Iban::parse("Né1234567890123456"), Err(IbanError::Character(1)));
        assert_eq!(Iban::parse("NL66OPEN000000000é"), Err(IbanError::Character(17)));
        assert_eq!(Iban::parse("ÑL66OPEN0000000000"), Err(IbanError::Character(0)));
        assert_eq!(Iban::parse("NL66OPEN0000000000\0"), Err(IbanError::Length { expected: 18, actual: 19 }));
        assert_eq!(Iban::parse("NL66OPEN00000000\u{0}0"), Err(IbanError::Character(16)));
        assert!(Iban::parse("🏦🏦🏦🏦🏦🏦🏦🏦🏦🏦🏦🏦🏦🏦🏦🏦🏦🏦").is_err());
    }

    #[test]
    fn parse_is_total_over_arbitrary_strings() {
        // Three characters from a mix of ASCII, multi-byte and control characters, put at the start and at the
        // end of 18-character strings: parse answers without panicking, and whatever it accepts is a valid IBAN.
        let alphabet = ['N', 'L', '6', 'O', 'é', '€', '🏦', '\0', ' ', 'ß', 'İ'];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for base in [COMPANY_IBAN, "NL91ABNA0417164300"] {
                        let tail: String = base.chars().skip(3).collect();
                        let head: String = base.chars().take(15).collect();
                        for s in [format!("{a}{b}{c}{tail}"), format!("{head}{a}{b}{c}")] {
                            if let Ok(iban) = Iban::parse(&s) {
                                assert!(iban.as_str().is_ascii());
                                assert_eq!(Iban::parse(iban.as_str()), Ok(iban.clone()));
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn generated_ibans_are_valid_and_distinct() {
        let a = Iban::generate();
        let b = Iban::generate();
        assert_ne!(a, b);
        for iban in [a, b] {
            assert_eq!(Iban::parse(iban.as_str()).unwrap(), iban);
            assert!(iban.as_str().starts_with("NL") && &iban.as_str()[4..8] == "OPEN");
        }
    }

    #[test]
    fn every_single_digit_error_is_detected() {
        let good = Iban::from_account_number(1_234_567_890);
        let s = good.as_str();
        for pos in (2..4).chain(8..18) {
            for d in b'0'..=b'9' {
                if s.as_bytes()[pos] == d {
                    continue;
                }
                let mut bad = s.as_bytes().to_vec();
                bad[pos] = d;
                let bad = String::from_utf8(bad).unwrap();
                assert_eq!(Iban::parse(&bad), Err(IbanError::Checksum), "{bad}");
            }
        }
    }
}

//! Money as whole cents in an `i64`, with checked arithmetic. Never floats, never formatted text in storage.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount is not a number of the form 12.34")]
    Format,
    #[error("amount has more than two decimals")]
    Precision,
    #[error("amount is out of range")]
    Overflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);
    pub const MAX: Money = Money(i64::MAX);
    pub const MIN: Money = Money(i64::MIN);

    pub const fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.0.checked_add(other.0).map(Money).ok_or(MoneyError::Overflow)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.0.checked_sub(other.0).map(Money).ok_or(MoneyError::Overflow)
    }

    pub fn checked_neg(self) -> Result<Money, MoneyError> {
        self.0.checked_neg().map(Money).ok_or(MoneyError::Overflow)
    }

    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Parses `12`, `12.3`, `12.34`, `-0.50` (a leading `+` or `-`, at most two decimals).
    pub fn parse(input: &str) -> Result<Self, MoneyError> {
        let s = input.trim();
        let (negative, unsigned) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (unsigned.contains('.') && !digits(fraction)) {
            return Err(MoneyError::Format);
        }
        if fraction.len() > 2 {
            return Err(MoneyError::Precision);
        }
        let whole: i64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
        let fraction_cents: i64 = match fraction.len() {
            0 => 0,
            1 => fraction.parse::<i64>().map_err(|_| MoneyError::Format)? * 10,
            _ => fraction.parse::<i64>().map_err(|_| MoneyError::Format)?,
        };
        let cents = whole.checked_mul(100).and_then(|c| c.checked_add(fraction_cents)).ok_or(MoneyError::Overflow)?;
        Ok(Money(if negative { -cents } else { cents }))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cents() {
        assert_eq!(Money::from_cents(0).to_string(), "0.00");
        assert_eq!(Money::from_cents(5).to_string(), "0.05");
        assert_eq!(Money::from_cents(-50).to_string(), "-0.50");
        assert_eq!(Money::from_cents(123_456).to_string(), "1234.56");
        assert_eq!(Money::MIN.to_string(), "-92233720368547758.08");
        assert_eq!(Money::MAX.to_string(), "92233720368547758.07");
    }

    #[test]
    fn parses_amounts() {
        assert_eq!(Money::parse("12").unwrap().cents(), 1200);
        assert_eq!(Money::parse("12.3").unwrap().cents(), 1230);
        assert_eq!(Money::parse(" 12.34 ").unwrap().cents(), 1234);
        assert_eq!(Money::parse("-0.50").unwrap().cents(), -50);
        assert_eq!(Money::parse("+7.05").unwrap().cents(), 705);
        assert_eq!(Money::parse("92233720368547758.07").unwrap(), Money::MAX);
    }

    #[test]
    fn round_trips_display() {
        for cents in [0, 1, -1, 99, -100, 123_456_789, i64::MAX, i64::MIN + 1] {
            let m = Money::from_cents(cents);
            assert_eq!(Money::parse(&m.to_string()).unwrap(), m);
        }
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "-", ".5", "5.", "1,00", "1e3", "abc", "1.2.3", "--1", "NaN", "12 34"] {
            assert_eq!(Money::parse(bad), Err(MoneyError::Format), "{bad:?}");
        }
        assert_eq!(Money::parse("1.234"), Err(MoneyError::Precision));
        assert_eq!(Money::parse("92233720368547758.08"), Err(MoneyError::Overflow));
        assert_eq!(Money::parse("99999999999999999999"), Err(MoneyError::Overflow));
    }

    #[test]
    fn checked_arithmetic_overflows_cleanly() {
        assert_eq!(Money::MAX.checked_add(Money::from_cents(1)), Err(MoneyError::Overflow));
        assert_eq!(Money::MIN.checked_sub(Money::from_cents(1)), Err(MoneyError::Overflow));
        assert_eq!(Money::MIN.checked_neg(), Err(MoneyError::Overflow));
        assert_eq!(Money::from_cents(150).checked_sub(Money::from_cents(200)).unwrap().cents(), -50);
        assert!(Money::from_cents(1).is_positive() && !Money::ZERO.is_positive());
    }
}

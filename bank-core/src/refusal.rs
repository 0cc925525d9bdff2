//! Why the command-handler refuses a command: a stable code (part of the contract, parsed by the gateway)
//! plus a human message. On the wire the reason reads `CODE: message`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    /// Amount is zero or negative.
    InvalidAmount,
    /// Amount is above the per-transfer maximum.
    AmountTooLarge,
    /// `from` and `to` are the same account.
    SameAccount,
    /// `from` or `to` is neither `cash` nor a valid IBAN of this bank.
    InvalidIban,
    /// The token does not belong to the account it must authorise.
    InvalidToken,
    /// The debit would take the balance below the account's limit.
    InsufficientFunds,
    /// `from` or `to` is a well-formed IBAN that has no account.
    UnknownAccount,
    /// The description is longer than [`MAX_DESCRIPTION_CHARS`].
    DescriptionTooLong,
    /// The credit would overflow the receiving balance.
    BalanceOverflow,
    /// No free IBAN could be found for a new account.
    NoIbanAvailable,
    /// The command could not be handled (it makes its batch fail); it was dead-lettered.
    Unprocessable,
}

/// Longest accepted transfer description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 200;

impl RefusalCode {
    pub const ALL: [RefusalCode; 11] = [
        Self::InvalidAmount,
        Self::AmountTooLarge,
        Self::SameAccount,
        Self::InvalidIban,
        Self::InvalidToken,
        Self::InsufficientFunds,
        Self::UnknownAccount,
        Self::DescriptionTooLong,
        Self::BalanceOverflow,
        Self::NoIbanAvailable,
        Self::Unprocessable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidAmount => "INVALID_AMOUNT",
            Self::AmountTooLarge => "AMOUNT_TOO_LARGE",
            Self::SameAccount => "SAME_ACCOUNT",
            Self::InvalidIban => "INVALID_IBAN",
            Self::InvalidToken => "INVALID_TOKEN",
            Self::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Self::UnknownAccount => "UNKNOWN_ACCOUNT",
            Self::DescriptionTooLong => "DESCRIPTION_TOO_LONG",
            Self::BalanceOverflow => "BALANCE_OVERFLOW",
            Self::NoIbanAvailable => "NO_IBAN_AVAILABLE",
            Self::Unprocessable => "UNPROCESSABLE",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: its code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The wire form: `CODE: message`.
    pub fn reason(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }

    /// Parses a wire reason; reasons written by other implementations keep their text with no code.
    pub fn parse_reason(reason: &str) -> (Option<RefusalCode>, &str) {
        match reason.split_once(": ") {
            Some((code, message)) => match RefusalCode::parse(code) {
                Some(c) => (Some(c), message),
                None => (None, reason),
            },
            None => (None, reason),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_the_wire_form() {
        for code in RefusalCode::ALL {
            let r = Refusal::new(code, "some detail: with a colon");
            let wire = r.reason();
            assert!(wire.starts_with(code.as_str()));
            assert_eq!(Refusal::parse_reason(&wire), (Some(code), "some detail: with a colon"));
        }
        assert_eq!(Refusal::parse_reason("insufficient funds"), (None, "insufficient funds"));
        assert_eq!(Refusal::parse_reason("NOPE: x"), (None, "NOPE: x"));
    }

    #[test]
    fn codes_are_distinct() {
        let set: std::collections::HashSet<_> = RefusalCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(set.len(), RefusalCode::ALL.len());
    }
}

//! Per-account secrets: 128 bits from the operating system's CSPRNG, compared in constant time.

use std::fmt;
use subtle::ConstantTimeEq;

/// A secret that authorises debits (and cash deposits) on one account. `Debug` never shows it.
#[derive(Clone)]
pub struct AccountToken(String);

impl AccountToken {
    pub const BYTES: usize = 16;

    pub fn generate() -> Self {
        Self(random_hex::<{ Self::BYTES }>())
    }

    /// Wraps a token received on the wire; no format is imposed so wrong tokens are refused by comparison.
    pub fn from_wire(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison: the time taken does not depend on where the tokens differ.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for AccountToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountToken(<redacted>)")
    }
}

/// `N` random bytes from the operating system's CSPRNG, hex encoded.
// A failing OS random source is no input: nothing can go on safely without it.
#[allow(clippy::expect_used)]
pub fn random_hex<const N: usize>() -> String {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("operating system random source failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_distinct_and_match_themselves() {
        let a = AccountToken::generate();
        let b = AccountToken::generate();
        assert_eq!(a.expose().len(), 32);
        assert_ne!(a.expose(), b.expose());
        assert!(a.matches(a.expose()));
        assert!(!a.matches(b.expose()));
        assert!(!a.matches(""));
        assert!(!a.matches(&a.expose()[..31]));
    }

    #[test]
    fn debug_does_not_leak() {
        let t = AccountToken::generate();
        assert!(!format!("{t:?}").contains(t.expose()));
    }
}

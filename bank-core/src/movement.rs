//! What a money transfer moves, once its sides are valid: a deposit (cash into an account), a withdrawal (an
//! account out to cash) or a transfer between two accounts. The gateway builds one from a mutation, the handler
//! from a command; on the wire and in tables the sides are `from`/`to` strings ([`Movement::sides`]).

use crate::{CASH, Iban};

/// The shape of a transfer once its fields are valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Movement {
    /// `cash` → account; authorised by the receiving account's token.
    Deposit { to: Iban },
    /// account → `cash`; authorised by the sender's token.
    Withdrawal { from: Iban },
    /// account → account; authorised by the sender's token.
    Transfer { from: Iban, to: Iban },
}

impl Movement {
    /// The account whose token must be presented.
    pub fn authorising(&self) -> &Iban {
        match self {
            Self::Deposit { to } => to,
            Self::Withdrawal { from } | Self::Transfer { from, .. } => from,
        }
    }

    /// Every account of this bank the movement touches.
    pub fn accounts(&self) -> Vec<&Iban> {
        match self {
            Self::Deposit { to } => vec![to],
            Self::Withdrawal { from } => vec![from],
            Self::Transfer { from, to } => vec![from, to],
        }
    }

    /// `from` and `to` as stored (`cash` for the outside world).
    pub fn sides(&self) -> (&str, &str) {
        match self {
            Self::Deposit { to } => (CASH, to.as_str()),
            Self::Withdrawal { from } => (from.as_str(), CASH),
            Self::Transfer { from, to } => (from.as_str(), to.as_str()),
        }
    }
}

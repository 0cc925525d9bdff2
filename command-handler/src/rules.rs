//! The banking rules of a money transfer that need no database: amount, description, IBAN shape, `from != to`.
//! Account existence, tokens, limits and overflow are decided with the stored accounts (see `handler`).

use bank_core::avro::ConfirmMoneyTransfer;
use bank_core::movement::Movement;
use bank_core::refusal::{MAX_DESCRIPTION_CHARS, Refusal, RefusalCode};
use bank_core::{CASH, Iban, Money};

/// Checks everything that does not need the accounts table.
pub fn check(cmd: &ConfirmMoneyTransfer, max_amount: Money) -> Result<Movement, Refusal> {
    if cmd.amount <= 0 {
        return Err(Refusal::new(
            RefusalCode::InvalidAmount,
            format!("amount must be positive, got {}", Money::from_cents(cmd.amount)),
        ));
    }
    if cmd.amount > max_amount.cents() {
        return Err(Refusal::new(
            RefusalCode::AmountTooLarge,
            format!("amount {} is above the per-transfer maximum of {max_amount}", Money::from_cents(cmd.amount)),
        ));
    }
    let chars = cmd.description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(Refusal::new(
            RefusalCode::DescriptionTooLong,
            format!("description has {chars} characters, at most {MAX_DESCRIPTION_CHARS} are allowed"),
        ));
    }
    if cmd.from == cmd.to {
        return Err(Refusal::new(RefusalCode::SameAccount, "from and to are the same account"));
    }
    let side = |value: &str, name: &str| -> Result<Option<Iban>, Refusal> {
        if value == CASH {
            return Ok(None);
        }
        // Stored IBANs are compact upper case ASCII; anything else on the wire is refused rather than
        // normalised, so the key the command was partitioned by is the account it debits.
        if !value.is_ascii() {
            return Err(Refusal::new(RefusalCode::InvalidIban, format!("{name} must be a compact upper-case IBAN")));
        }
        match Iban::parse(value) {
            Ok(iban) if iban.as_str() == value => Ok(Some(iban)),
            Ok(_) => Err(Refusal::new(RefusalCode::InvalidIban, format!("{name} must be a compact upper-case IBAN"))),
            Err(e) => Err(Refusal::new(RefusalCode::InvalidIban, format!("{name}: {e}"))),
        }
    };
    match (side(&cmd.from, "from")?, side(&cmd.to, "to")?) {
        (None, Some(to)) => Ok(Movement::Deposit { to }),
        (Some(from), None) => Ok(Movement::Withdrawal { from }),
        (Some(from), Some(to)) => Ok(Movement::Transfer { from, to }),
        (None, None) => Err(Refusal::new(RefusalCode::SameAccount, "from and to are the same account")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bank_core::{COMPANY_IBAN, CommandId};

    const MAX: Money = Money::from_cents(100_000_000);

    fn cmd(amount: i64, from: &str, to: &str, description: &str) -> ConfirmMoneyTransfer {
        ConfirmMoneyTransfer {
            id: CommandId::new(),
            token: "t".into(),
            amount,
            from: from.into(),
            to: to.into(),
            description: description.into(),
        }
    }

    fn code(r: Result<Movement, Refusal>) -> RefusalCode {
        r.expect_err("expected a refusal").code
    }

    #[test]
    fn valid_shapes() {
        let a = Iban::from_account_number(1).as_str().to_owned();
        assert_eq!(check(&cmd(1, CASH, &a, ""), MAX), Ok(Movement::Deposit { to: Iban::parse(&a).unwrap() }));
        assert_eq!(check(&cmd(1, &a, CASH, ""), MAX), Ok(Movement::Withdrawal { from: Iban::parse(&a).unwrap() }));
        let t = check(&cmd(MAX.cents(), &a, COMPANY_IBAN, &"x".repeat(200)), MAX).unwrap();
        assert_eq!(t.authorising().as_str(), a);
        assert_eq!(t.sides(), (a.as_str(), COMPANY_IBAN));
    }

    #[test]
    fn refusals() {
        let a = Iban::from_account_number(1).as_str().to_owned();
        assert_eq!(code(check(&cmd(0, CASH, &a, ""), MAX)), RefusalCode::InvalidAmount);
        assert_eq!(code(check(&cmd(-5, &a, COMPANY_IBAN, ""), MAX)), RefusalCode::InvalidAmount);
        assert_eq!(code(check(&cmd(MAX.cents() + 1, &a, COMPANY_IBAN, ""), MAX)), RefusalCode::AmountTooLarge);
        assert_eq!(code(check(&cmd(1, &a, &a, ""), MAX)), RefusalCode::SameAccount);
        assert_eq!(code(check(&cmd(1, CASH, CASH, ""), MAX)), RefusalCode::SameAccount);
        assert_eq!(code(check(&cmd(1, "NL00OPEN0000000001", CASH, ""), MAX)), RefusalCode::InvalidIban);
        assert_eq!(code(check(&cmd(1, CASH, "garbage", ""), MAX)), RefusalCode::InvalidIban);
        assert_eq!(code(check(&cmd(1, CASH, &a.to_lowercase(), ""), MAX)), RefusalCode::InvalidIban);
        assert_eq!(code(check(&cmd(1, &a, CASH, &"é".repeat(201)), MAX)), RefusalCode::DescriptionTooLong);
        // Multi-byte characters where an IBAN has ASCII: refused, never sliced.
        assert_eq!(code(check(&cmd(1, "Né123456789012345", CASH, ""), MAX)), RefusalCode::InvalidIban);
        assert_eq!(code(check(&cmd(1, CASH, "NL€OPEN000000000", ""), MAX)), RefusalCode::InvalidIban);
        assert_eq!(code(check(&cmd(1, "NL66OPEN00000000\u{0}0", CASH, ""), MAX)), RefusalCode::InvalidIban);
    }
}

//! What command a heartbeat becomes. Everything is a pure function of the seed, the heartbeat's position and
//! the known accounts, so a re-delivered heartbeat yields the same command id (and the handler replays it).

use bank_core::avro::{Atype, ConfirmAccountCreation, ConfirmMoneyTransfer};
use bank_core::rng::Rng;
use bank_core::{CASH, COMPANY_IBAN, CommandId};

/// An account the generator can spend from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub iban: String,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Generated {
    Creation(ConfirmAccountCreation),
    Transfer(ConfirmMoneyTransfer),
}

impl Generated {
    /// The record key: the command id for creations, the debited account for transfers.
    pub fn key(&self) -> String {
        match self {
            Self::Creation(c) => c.id.as_uuid().to_string(),
            Self::Transfer(t) if t.from == CASH => t.to.clone(),
            Self::Transfer(t) => t.from.clone(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Creation(_) => "account_creation",
            Self::Transfer(t) if t.from == CASH => "cash_deposit",
            Self::Transfer(t) if t.to == CASH => "cash_withdrawal",
            Self::Transfer(t) if t.from == COMPANY_IBAN => "salary",
            Self::Transfer(t) if t.to == COMPANY_IBAN => "shop_payment",
            Self::Transfer(_) => "transfer",
        }
    }
}

/// The generator for one heartbeat: seeded by the run's seed and the heartbeat's position (`stream`), one draw
/// skipped (as it always was, so a heartbeat's command is what it was before).
fn rng_for(seed: u64, stream: u64) -> Rng {
    let mut r = Rng::new(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    r.next_u64();
    r
}

/// The command for the heartbeat at `beat` (its position on the heartbeat topic), written at `written_ms` (the
/// record's timestamp, kept by Kafka with it). The timestamp is the heartbeat topic's epoch: the same record read
/// again (after a restart) gives the same command id, while a record at the same position of a recreated topic
/// gives a new one, so the bank does not take the new topic's commands for replays of the old one's.
pub fn command(seed: u64, written_ms: u64, beat: u64, accounts: &[Known], company_token: Option<&str>) -> Generated {
    let mut rng = rng_for(seed ^ written_ms.wrapping_mul(0xD6E8_FEB8_6659_FD93), beat);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    id[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    let id = CommandId::from_bytes(*uuid::Builder::from_random_bytes(id).into_uuid().as_bytes());
    let creation = || Generated::Creation(ConfirmAccountCreation { id, a_type: Atype::Auto });
    if beat < 20 || beat.is_multiple_of(200) || accounts.len() < 2 {
        return creation();
    }
    let roll = rng.next_u64() % 100;
    let Some(a) = rng.pick(accounts).cloned() else { return creation() };
    let transfer = |token: &str, amount: i64, from: &str, to: &str, description: &str| {
        Generated::Transfer(ConfirmMoneyTransfer {
            id,
            token: token.to_owned(),
            amount,
            from: from.to_owned(),
            to: to.to_owned(),
            description: description.to_owned(),
        })
    };
    match (roll, company_token) {
        (0..4, Some(company)) => transfer(company, rng.range(150_000, 350_000), COMPANY_IBAN, &a.iban, "Salary"),
        (0..24, _) => transfer(&a.token, rng.range(1_000, 50_000), CASH, &a.iban, "Cash deposit"),
        (24..44, _) => transfer(&a.token, rng.range(1_000, 50_000), &a.iban, CASH, "Cash withdrawal"),
        (44..79, _) => transfer(&a.token, rng.range(500, 50_000), &a.iban, COMPANY_IBAN, "Shop payment"),
        _ => {
            // Accounts are distinct IBANs and there are at least two, so this ends.
            let mut b = rng.pick(accounts).cloned();
            while b.as_ref().is_some_and(|b| b.iban == a.iban) {
                b = rng.pick(accounts).cloned();
            }
            match b {
                Some(b) => transfer(&a.token, rng.range(500, 30_000), &a.iban, &b.iban, "Transfer"),
                None => creation(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bank_core::Iban;
    use std::collections::HashMap;

    fn accounts(n: u64) -> Vec<Known> {
        (1..=n)
            .map(|i| Known { iban: Iban::from_account_number(i).as_str().to_owned(), token: format!("tok{i}") })
            .collect()
    }

    #[test]
    fn same_seed_and_beat_give_the_same_command() {
        let acc = accounts(10);
        for beat in [0, 5, 21, 199, 200, 12_345] {
            assert_eq!(
                command(7, 1_700_000_000_000, beat, &acc, Some("c")),
                command(7, 1_700_000_000_000, beat, &acc, Some("c"))
            );
        }
        assert_ne!(
            command(7, 1_700_000_000_000, 21, &acc, Some("c")),
            command(8, 1_700_000_000_000, 21, &acc, Some("c"))
        );
        // The same position of a recreated heartbeat topic (another record, written at another time): a new id.
        let id = |g: Generated| match g {
            Generated::Creation(c) => c.id,
            Generated::Transfer(t) => t.id,
        };
        for beat in [0, 5, 21, 400] {
            assert_ne!(
                id(command(7, 1_700_000_000_000, beat, &acc, Some("c"))),
                id(command(7, 1_700_000_000_001, beat, &acc, Some("c"))),
                "beat {beat}"
            );
        }
    }

    #[test]
    fn first_beats_and_every_200th_create_accounts() {
        let acc = accounts(10);
        for beat in (0..20).chain([200, 400, 1000]) {
            assert_eq!(command(1, 1_700_000_000_000, beat, &acc, None).kind(), "account_creation", "beat {beat}");
        }
        assert_eq!(command(1, 1_700_000_000_000, 21, &[], None).kind(), "account_creation");
    }

    #[test]
    fn the_mix_is_realistic_and_keyed_by_the_debited_account() {
        let acc = accounts(50);
        let mut kinds: HashMap<&str, u32> = HashMap::new();
        for beat in 20..20_020 {
            let g = command(3, 1_700_000_000_000, beat, &acc, Some("company"));
            *kinds.entry(g.kind()).or_default() += 1;
            if let Generated::Transfer(t) = &g {
                assert!(t.amount > 0);
                assert_ne!(t.from, t.to);
                let debited = if t.from == CASH { &t.to } else { &t.from };
                assert_eq!(&g.key(), debited);
                if t.from == COMPANY_IBAN {
                    assert_eq!(t.token, "company");
                } else {
                    let owner = acc.iter().find(|k| &k.iban == debited).expect("known account");
                    assert_eq!(t.token, owner.token, "the debited account's token");
                }
            }
        }
        for kind in ["salary", "cash_deposit", "cash_withdrawal", "shop_payment", "transfer", "account_creation"] {
            assert!(kinds.get(kind).copied().unwrap_or(0) > 50, "{kind} missing from {kinds:?}");
        }
        // Without the company token there are no salaries.
        assert!((20..2_000).all(|b| command(3, 1_700_000_000_000, b, &acc, None).kind() != "salary"));
    }
}

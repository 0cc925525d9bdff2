//! The command-handler's decisions that need no database, on arbitrary batches: `rules::check` for one
//! transfer, and `plan::plan` + `plan::authorise` for a batch of transfers, account creations, repeats,
//! replays, unprocessable and poison records.
//!
//! Invariants: nothing panics; `check` accepts exactly what the rules (checked here independently, in their
//! order) accept and refuses with the code of the first broken rule; an accepted movement has the command's
//! sides and valid compact IBANs; a batch gets one plan per record, `Apply` exactly for the pending transfers,
//! repeats point back to an earlier record with the same id, and every refusal code is one this stage can give
//! and reads back from the refusal's wire form.
#![no_main]

use bank_core::avro::{Atype, ConfirmAccountCreation, ConfirmMoneyTransfer};
use bank_core::refusal::{MAX_DESCRIPTION_CHARS, Refusal, RefusalCode};
use bank_core::{AccountToken, CASH, COMPANY_IBAN, CommandId, Iban, Money};
use command_handler::batch::{Command, CommandKind, Incoming};
use command_handler::plan::{self, Plan, Stored};
use command_handler::rules;
use bank_core::movement::Movement;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::cell::Cell;
use std::collections::HashMap;

const MAX: Money = Money::from_cents(100_000_000);

#[derive(Arbitrary, Debug)]
enum Side {
    Cash,
    /// One of a few accounts (0 is the company's), so batches touch the same ones.
    Account(u8),
    Lower(u8),
    Raw(String),
}

impl Side {
    fn wire(&self) -> String {
        match self {
            Side::Cash => CASH.to_owned(),
            Side::Account(n) => Iban::from_account_number(u64::from(n % 6)).to_string(),
            Side::Lower(n) => Iban::from_account_number(u64::from(*n)).as_str().to_lowercase(),
            Side::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Amount {
    Raw(i64),
    /// `MAX` plus a small offset: the boundary.
    NearMax(i8),
    Small(i16),
}

#[derive(Arbitrary, Debug)]
enum Description {
    Raw(String),
    /// `n` copies of one character: around the 200-character limit with multi-byte characters too.
    Repeat(char, u8),
}

#[derive(Arbitrary, Debug)]
struct Transfer {
    id: u8,
    /// Index of the account token presented, or a random string.
    token: Result<u8, String>,
    amount: Amount,
    from: Side,
    to: Side,
    description: Description,
}

impl Transfer {
    fn command(&self) -> ConfirmMoneyTransfer {
        ConfirmMoneyTransfer {
            id: id(self.id),
            token: match &self.token {
                Ok(n) => token(u64::from(n % 6)).expose().to_owned(),
                Err(s) => s.clone(),
            },
            amount: match self.amount {
                Amount::Raw(a) => a,
                Amount::NearMax(d) => MAX.cents() + i64::from(d),
                Amount::Small(a) => i64::from(a),
            },
            from: self.from.wire(),
            to: self.to.wire(),
            description: match &self.description {
                Description::Raw(s) => s.clone(),
                Description::Repeat(c, n) => std::iter::repeat_n(*c, usize::from(*n) + 100).collect(),
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Record {
    Transfer(Transfer),
    Creation { id: u8, manual: bool },
    Unprocessable { id: u8, error: String },
    Poison(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    records: Vec<(Record, bool)>,
    /// Ids that already have a stored result.
    stored: Vec<u8>,
}

/// Few distinct ids, so repeats and replays happen.
fn id(n: u8) -> CommandId {
    CommandId::from_bytes([n % 8; 16])
}

fn token(account: u64) -> AccountToken {
    AccountToken::from_wire(format!("{account:032x}"))
}

/// The code of the first broken rule, in the handler's order, or `None` when the transfer is valid.
fn expected_refusal(c: &ConfirmMoneyTransfer) -> Option<RefusalCode> {
    let valid_side = |s: &str| s == CASH || Iban::parse(s).is_ok_and(|i| i.as_str() == s);
    if c.amount <= 0 {
        Some(RefusalCode::InvalidAmount)
    } else if c.amount > MAX.cents() {
        Some(RefusalCode::AmountTooLarge)
    } else if c.description.chars().count() > MAX_DESCRIPTION_CHARS {
        Some(RefusalCode::DescriptionTooLong)
    } else if c.from == c.to {
        Some(RefusalCode::SameAccount)
    } else if !valid_side(&c.from) || !valid_side(&c.to) {
        Some(RefusalCode::InvalidIban)
    } else {
        None
    }
}

fn check_rules(c: &ConfirmMoneyTransfer) {
    let result = rules::check(c, MAX);
    assert_eq!(result.as_ref().err().map(|r| r.code), expected_refusal(c), "{c:?}: {result:?}");
    if let Ok(m) = result {
        assert_eq!(m.sides(), (c.from.as_str(), c.to.as_str()));
        assert!(m.accounts().iter().all(|a| Iban::parse(a.as_str()).as_ref() == Ok(*a)));
        let authorising = if c.from == CASH { &c.to } else { &c.from };
        assert_eq!(m.authorising().as_str(), authorising);
    }
}

fuzz_target!(|input: Input| {
    let records: Vec<_> = input.records.into_iter().take(32).collect();
    let batch: Vec<Incoming> = records
        .iter()
        .enumerate()
        .map(|(i, (record, _))| Incoming {
            topic: "confirm_money_transfer".into(),
            partition: 0,
            offset: i as i64,
            key: None,
            payload: None,
            command: match record {
                Record::Transfer(t) => {
                    let c = t.command();
                    check_rules(&c);
                    Command::Transfer(c)
                }
                Record::Creation { id: n, manual } => Command::Creation(ConfirmAccountCreation {
                    id: id(*n),
                    a_type: if *manual { Atype::Manual } else { Atype::Auto },
                }),
                Record::Unprocessable { id: n, error } => {
                    Command::Unprocessable { id: id(*n), kind: CommandKind::Transfer, error: error.clone() }
                }
                Record::Poison(e) => Command::Poison(e.clone()),
            },
        })
        .collect();
    let fresh: Vec<bool> = records.iter().map(|(_, fresh)| *fresh).collect();
    let stored: HashMap<_, _> = input
        .stored
        .iter()
        .map(|n| {
            let uuid = id(*n).as_uuid();
            let s = Stored {
                id: uuid,
                kind: CommandKind::Transfer,
                confirmed: true,
                reason: None,
                iban: None,
                token: None,
                a_type: None,
            };
            (uuid, s)
        })
        .collect();
    let next_account = Cell::new(1000u64);
    let new_iban = || {
        next_account.set(next_account.get() + 1);
        Iban::from_account_number(next_account.get())
    };
    let planned = plan::plan(&batch, &fresh, &stored, MAX, &new_iban);
    let mut plans = planned.plans;
    assert_eq!(plans.len(), batch.len());

    let pending: HashMap<usize, &Movement> = planned.pending.iter().map(|(i, m)| (*i, m)).collect();
    assert_eq!(pending.len(), planned.pending.len(), "a record is pending twice");
    let mut decided: HashMap<CommandId, usize> = HashMap::new();
    for (i, (plan, record)) in plans.iter().zip(&batch).enumerate() {
        assert_eq!(matches!(plan, Plan::Apply), pending.contains_key(&i), "record {i}: {plan:?}");
        let id = record.command.id();
        if !fresh[i] {
            assert!(matches!(plan, Plan::Skip), "record {i} is not fresh: {plan:?}");
            continue;
        }
        match plan {
            Plan::Skip => panic!("fresh record {i} skipped"),
            Plan::Poison(_) => assert!(matches!(record.command, Command::Poison(_) | Command::Unprocessable { .. })),
            Plan::Replay(s) => assert_eq!(Some(s.id), id.map(|i| i.as_uuid())),
            Plan::Repeat(j) => {
                assert!(*j < i, "record {i} repeats a later record {j}");
                assert_eq!(batch[*j].command.id(), id, "record {i} repeats another id");
                assert!(!stored.contains_key(&id.expect("has an id").as_uuid()), "a stored id is replayed");
                assert_eq!(decided.get(&id.expect("has an id")), Some(j));
            }
            Plan::Unprocessable(_) | Plan::Creation { .. } | Plan::Apply | Plan::Refused(_) => {
                let id = id.expect("a decided record has an id");
                assert!(!stored.contains_key(&id.as_uuid()), "record {i}: a stored id is decided again");
                assert!(decided.insert(id, i).is_none(), "record {i}: id decided twice in one batch");
            }
        }
        if let (Plan::Refused(r), Command::Transfer(c)) = (plan, &record.command) {
            assert_eq!(Some(r.code), expected_refusal(c), "record {i}");
        }
        if let (Plan::Apply, Command::Transfer(c)) = (plan, &record.command) {
            assert_eq!(rules::check(c, MAX).as_ref().ok(), pending.get(&i).copied());
        }
    }

    // Accounts 0..4 exist (0 is the company's), each with its own token.
    let known: HashMap<String, AccountToken> =
        (0..4).map(|n| (Iban::from_account_number(n).to_string(), token(n))).collect();
    assert!(known.contains_key(COMPANY_IBAN));
    let apply = plan::authorise(&batch, &planned.pending, &known, &mut plans);
    for t in &apply {
        let Command::Transfer(c) = &batch[t.index].command else { panic!("record {} is no transfer", t.index) };
        assert!(matches!(plans[t.index], Plan::Apply));
        assert!(t.movement.accounts().iter().all(|a| known.contains_key(a.as_str())));
        assert!(known[t.movement.authorising().as_str()].matches(&c.token));
        assert_eq!(t.amount.cents(), c.amount);
    }
    for (i, plan) in plans.iter().enumerate() {
        if let Plan::Refused(r) = plan {
            let allowed = [
                RefusalCode::InvalidAmount,
                RefusalCode::AmountTooLarge,
                RefusalCode::DescriptionTooLong,
                RefusalCode::SameAccount,
                RefusalCode::InvalidIban,
                RefusalCode::UnknownAccount,
                RefusalCode::InvalidToken,
            ];
            assert!(allowed.contains(&r.code), "record {i}: {r:?}");
            assert_eq!(RefusalCode::parse(r.code.as_str()), Some(r.code));
            // The gateway reads the code back from the wire form of the failed result.
            assert_eq!(Refusal::parse_reason(&r.reason()), (Some(r.code), r.message.as_str()));
        }
        if matches!(plan, Plan::Apply) {
            assert!(apply.iter().any(|t| t.index == i), "record {i} still Apply but not authorised");
        }
    }
});

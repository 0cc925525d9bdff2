//! Table-driven cases of the planning rules.

use super::*;
use bank_core::avro::{ConfirmAccountCreation, ConfirmMoneyTransfer};
use bank_core::{CASH, CommandId};

const MAX: Money = Money::from_cents(100_000_000);

fn account(n: u64) -> String {
    Iban::from_account_number(n).as_str().to_owned()
}

fn transfer(id: CommandId, amount: i64, from: &str, to: &str) -> Command {
    Command::Transfer(ConfirmMoneyTransfer {
        id,
        token: "t".into(),
        amount,
        from: from.into(),
        to: to.into(),
        description: String::new(),
    })
}

fn at(offset: i64, command: Command) -> Incoming {
    Incoming { topic: "t".into(), partition: 0, offset, key: None, payload: None, command }
}

/// The plan's name, with what distinguishes it.
fn name(p: &Plan) -> String {
    match p {
        Plan::Skip => "skip".into(),
        Plan::Poison(_) => "poison".into(),
        Plan::Unprocessable(_) => "unprocessable".into(),
        Plan::Replay(s) => format!("replay {}", s.confirmed),
        Plan::Repeat(i) => format!("repeat {i}"),
        Plan::Creation { .. } => "creation".into(),
        Plan::Refused(r) => format!("refused {}", r.code),
        Plan::Apply => "apply".into(),
    }
}

fn stored(id: CommandId, confirmed: bool) -> Stored {
    Stored {
        id: id.as_uuid(),
        kind: CommandKind::Transfer,
        confirmed,
        reason: None,
        iban: None,
        token: None,
        a_type: None,
    }
}

#[test]
fn records_are_planned_by_the_rules_that_need_no_account() {
    let (a, b) = (account(1), account(2));
    let (x, y, z, old) = (CommandId::new(), CommandId::new(), CommandId::new(), CommandId::new());
    let unprocessable = |id| Command::Unprocessable { id, kind: CommandKind::Transfer, error: "e".into() };
    // (record, already handled by an earlier batch, expected plan)
    let cases: Vec<(Command, bool, &str)> = vec![
        (transfer(CommandId::new(), 5, CASH, &a), true, "skip"),
        (Command::Poison("bad bytes".into()), false, "poison"),
        (transfer(old, 5, CASH, &a), false, "replay true"),
        (transfer(x, 5, &a, &b), false, "apply"),
        (transfer(x, 5, &a, &b), false, "repeat 3"),
        (transfer(y, 0, &a, &b), false, "refused INVALID_AMOUNT"),
        (transfer(y, 5, &a, &b), false, "repeat 5"),
        (transfer(CommandId::new(), MAX.cents() + 1, &a, &b), false, "refused AMOUNT_TOO_LARGE"),
        (transfer(CommandId::new(), 5, &a, &a), false, "refused SAME_ACCOUNT"),
        (transfer(CommandId::new(), 5, "garbage", &a), false, "refused INVALID_IBAN"),
        (Command::Creation(ConfirmAccountCreation { id: z, a_type: Atype::Auto }), false, "creation"),
        (unprocessable(CommandId::new()), false, "unprocessable"),
        // An unprocessable record whose id already has a result (stored, or earlier in the batch): only
        // dead-lettered, so the id keeps one result.
        (unprocessable(old), false, "poison"),
        (unprocessable(z), false, "poison"),
    ];
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut want = Vec::new();
    let mut batch = Vec::new();
    for (i, (command, handled, plan)) in cases.into_iter().enumerate() {
        let i = i32::try_from(i).unwrap();
        // Each record on its own partition at offset 5, so a stored next offset applies to it alone.
        let mut r = at(5, command);
        r.partition = i;
        if handled {
            next.insert(("t".into(), i), 6);
        }
        batch.push(r);
        want.push(plan);
    }
    let fresh = fresh(&batch, &next);
    let stored: HashMap<Uuid, Stored> = [(old.as_uuid(), stored(old, true))].into();
    let planned = plan(&batch, &fresh, &stored, MAX, &|| Iban::from_account_number(9));
    let got: Vec<String> = planned.plans.iter().map(name).collect();
    assert_eq!(got, want);
    let pending: Vec<usize> = planned.pending.iter().map(|(i, _)| *i).collect();
    assert_eq!(pending, vec![3], "only the valid transfer waits for the accounts");
    assert_eq!(ids(&batch, &fresh).len(), batch.len() - 2, "every fresh decoded record's id is looked up");
}

#[test]
fn transfers_are_refused_for_unknown_accounts_and_wrong_tokens() {
    let (a, b, c) = (account(1), account(2), account(3));
    let known: HashMap<String, AccountToken> =
        [(a.clone(), AccountToken::from_wire("ta".to_owned())), (b.clone(), AccountToken::from_wire("tb".to_owned()))]
            .into();
    let with_token = |token: &str, from: &str, to: &str| {
        Command::Transfer(ConfirmMoneyTransfer {
            id: CommandId::new(),
            token: token.into(),
            amount: 5,
            from: from.into(),
            to: to.into(),
            description: String::new(),
        })
    };
    // (command, expected plan after the check)
    let cases = [
        (with_token("ta", &a, &b), "apply"),
        (with_token("tb", CASH, &b), "apply"),
        (with_token("tb", &a, &b), "refused INVALID_TOKEN"),
        (with_token("ta", &a, &c), "refused UNKNOWN_ACCOUNT"),
        (with_token("x", &c, CASH), "refused UNKNOWN_ACCOUNT"),
    ];
    let want: Vec<&str> = cases.iter().map(|c| c.1).collect();
    let batch: Vec<Incoming> = cases.into_iter().zip(0..).map(|((c, _), o)| at(o, c)).collect();
    let mut planned = plan(&batch, &vec![true; batch.len()], &HashMap::new(), MAX, &|| Iban::from_account_number(9));
    let transfers = authorise(&batch, &planned.pending, &known, &mut planned.plans);
    let got: Vec<String> = planned.plans.iter().map(name).collect();
    assert_eq!(got, want);
    assert_eq!(transfers.iter().map(|t| t.index).collect::<Vec<_>>(), vec![0, 1]);
}

#[test]
fn rows_of_apply_transfers_confirm_or_refuse() {
    let (a, b) = (account(1), account(2));
    let batch: Vec<Incoming> = (0..3).map(|o| at(o, transfer(CommandId::new(), 7, &a, &b))).collect();
    let mut planned = plan(&batch, &[true, true, true], &HashMap::new(), MAX, &|| Iban::from_account_number(9));
    let transfers: Vec<Transfer<'_>> = planned
        .pending
        .iter()
        .map(|(index, movement)| Transfer { index: *index, movement, amount: Money::from_cents(7) })
        .collect();
    let ok = AppliedRow {
        ok: true,
        from_balance: Some(3),
        to_balance: Some(17),
        from_seq: Some(1),
        to_seq: Some(2),
        ..Default::default()
    };
    let code = |c: &str| AppliedRow { ok: false, code: Some(c.into()), ..Default::default() };
    let rows = [ok, code("INSUFFICIENT_FUNDS"), code("BALANCE_OVERFLOW")];
    let balances = applied(&transfers, &rows, &mut planned.plans).unwrap();
    let got: Vec<String> = planned.plans.iter().map(name).collect();
    assert_eq!(got, ["apply", "refused INSUFFICIENT_FUNDS", "refused BALANCE_OVERFLOW"]);
    let want = Balances { from_balance: Some(3), to_balance: Some(17), from_seq: Some(1), to_seq: Some(2) };
    assert_eq!(balances, HashMap::from([(0, want)]));
    assert!(applied(&transfers, &rows[..2], &mut planned.plans).is_err(), "a missing row is an error");
}

#[test]
fn kinds_round_trip_through_their_column() {
    for kind in [CommandKind::Transfer, CommandKind::Account] {
        assert_eq!(CommandKind::try_from(kind.as_str().to_owned()).unwrap(), kind);
    }
    assert!(CommandKind::try_from("transfers".to_owned()).is_err());
}

#[test]
fn the_unprocessable_reason_names_no_value() {
    let r = unprocessable();
    assert_eq!(r.code, RefusalCode::Unprocessable);
    assert!(r.reason().starts_with("UNPROCESSABLE: "));
}

//! Every banking rule of the command-handler against the real stack: success paths, one test per refusal,
//! replays and poison records. One handler serves the whole file; each test works on its own accounts.

mod common;

use bank_core::avro::{AccountCreationConfirmed, BalanceChanged, MoneyTransferConfirmed, MoneyTransferFailed};
use bank_core::refusal::{Refusal, RefusalCode};
use bank_core::topics::{self, dead_letter_headers};
use bank_core::{CASH, COMPANY_IBAN, Iban};
use common::{COMPANY_TOKEN, Fixture, shared, transfer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

async fn refused(f: &Fixture, cmd: bank_core::avro::ConfirmMoneyTransfer, code: RefusalCode) -> String {
    f.send_transfer(&cmd).await;
    let (confirmed, reason) = f.result(cmd.id).await;
    assert!(!confirmed, "expected {code} for {cmd:?}");
    let reason = reason.expect("a refusal has a reason");
    assert_eq!(Refusal::parse_reason(&reason).0, Some(code), "reason was {reason}");
    reason
}

async fn confirmed(f: &Fixture, cmd: bank_core::avro::ConfirmMoneyTransfer) {
    f.send_transfer(&cmd).await;
    let (ok, reason) = f.result(cmd.id).await;
    assert!(ok, "expected {cmd:?} to be confirmed, got {reason:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_creation_confirms_a_new_account_with_a_token() {
    let f = shared().await;
    let id = f.send_creation().await;
    assert_eq!(f.result(id).await, (true, None));
    let records = f.wait_topic(topics::ACCOUNT_CREATION_CONFIRMED, 1).await;
    let mut found = None;
    for r in &records {
        let c: AccountCreationConfirmed = f.codec.decode(r.payload.as_deref()).await.unwrap();
        if c.id == id {
            assert_eq!(r.key.as_deref(), Some(id.as_uuid().to_string().as_bytes()), "keyed by command id");
            found = Some(c);
        }
    }
    let c = found.expect("AccountCreationConfirmed published");
    Iban::parse(&c.iban).expect("a valid IBAN");
    assert_eq!(c.token.len(), 32);
    assert_eq!(f.balance(&c.iban).await, 0);
    let limit: i64 = sqlx::query_scalar("SELECT limit_cents FROM bank.accounts WHERE iban = $1")
        .bind(&c.iban)
        .fetch_one(&f.pool)
        .await
        .unwrap();
    assert_eq!(limit, -50_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_withdrawal_and_transfer_move_money_and_publish_balances() {
    let f = shared().await;
    let acc = f.accounts(2).await;
    let ((a, ta), (b, _)) = (&acc[0], &acc[1]);
    confirmed(&f, transfer(ta, 10_000, CASH, a, "cash in")).await;
    assert_eq!(f.balance(a).await, 10_000);
    confirmed(&f, transfer(ta, 3_000, a, CASH, "cash out")).await;
    assert_eq!(f.balance(a).await, 7_000);
    let t = transfer(ta, 2_000, a, b, "rent");
    confirmed(&f, t.clone()).await;
    assert_eq!((f.balance(a).await, f.balance(b).await), (5_000, 2_000));

    let changes = f.wait_topic(topics::BALANCE_CHANGED, 4).await;
    let mut mine = Vec::new();
    for r in &changes {
        let c: BalanceChanged = f.codec.decode(r.payload.as_deref()).await.unwrap();
        if c.transfer_id == Some(t.id) {
            assert_eq!(r.key.as_deref(), Some(c.iban.as_bytes()), "keyed by iban");
            mine.push((c.iban, c.new_balance, c.changed_by, c.from_to, c.description));
        }
    }
    mine.sort();
    let mut want = vec![
        (a.clone(), 5_000, -2_000, b.clone(), "rent".to_owned()),
        (b.clone(), 2_000, 2_000, a.clone(), "rent".to_owned()),
    ];
    want.sort();
    assert_eq!(mine, want);
    let confirmations = f.wait_topic(topics::MONEY_TRANSFER_CONFIRMED, 3).await;
    let mut ids = Vec::new();
    for r in &confirmations {
        ids.push(f.codec.decode::<MoneyTransferConfirmed>(r.payload.as_deref()).await.unwrap().id);
    }
    assert!(ids.contains(&t.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salary_from_the_company_account_needs_the_company_token() {
    let f = shared().await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    confirmed(&f, transfer(COMPANY_TOKEN, 250_000, COMPANY_IBAN, a, "salary")).await;
    assert_eq!(f.balance(a).await, 250_000);
    refused(&f, transfer(ta, 250_000, COMPANY_IBAN, a, "salary"), RefusalCode::InvalidToken).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_zero_and_negative_amounts() {
    let f = shared().await;
    let acc = f.accounts(2).await;
    let ((a, ta), (b, _)) = (&acc[0], &acc[1]);
    refused(&f, transfer(ta, 0, CASH, a, ""), RefusalCode::InvalidAmount).await;
    // The reference accepted this: a negative transfer that pulls money out of someone else's account.
    refused(&f, transfer(ta, -10_000, a, b, "gimme"), RefusalCode::InvalidAmount).await;
    assert_eq!((f.balance(a).await, f.balance(b).await), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_amounts_above_the_maximum() {
    let f = shared().await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    refused(&f, transfer(ta, 100_000_001, CASH, a, ""), RefusalCode::AmountTooLarge).await;
    refused(&f, transfer(ta, i64::MAX, CASH, a, ""), RefusalCode::AmountTooLarge).await;
    confirmed(&f, transfer(ta, 100_000_000, CASH, a, "")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_transfer_to_the_same_account() {
    let f = shared().await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    refused(&f, transfer(ta, 100, a, a, ""), RefusalCode::SameAccount).await;
    refused(&f, transfer(ta, 100, CASH, CASH, ""), RefusalCode::SameAccount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_malformed_ibans() {
    let f = shared().await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    let mut bad_check = a.clone();
    bad_check.replace_range(2..4, if &a[2..4] == "00" { "01" } else { "00" });
    for to in [bad_check.as_str(), "NL91ABNA0417164300", "not an iban", ""] {
        refused(&f, transfer(ta, 100, a, to, ""), RefusalCode::InvalidIban).await;
    }
    refused(&f, transfer(ta, 100, "NL00OPEN", a, ""), RefusalCode::InvalidIban).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_wrong_tokens_and_cash_deposits_without_the_owners_token() {
    let f = shared().await;
    let acc = f.accounts(2).await;
    let ((a, ta), (b, tb)) = (&acc[0], &acc[1]);
    // Minting money: a deposit into someone else's account needs that account's token.
    refused(&f, transfer(ta, 100_000, CASH, b, "mint"), RefusalCode::InvalidToken).await;
    refused(&f, transfer("", 100_000, CASH, b, "mint"), RefusalCode::InvalidToken).await;
    refused(&f, transfer(tb, 100, a, b, "steal"), RefusalCode::InvalidToken).await;
    refused(&f, transfer(tb, 100, a, CASH, "steal"), RefusalCode::InvalidToken).await;
    refused(&f, transfer(&ta[..31], 100, a, CASH, "almost"), RefusalCode::InvalidToken).await;
    assert_eq!((f.balance(a).await, f.balance(b).await), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_transfers_that_would_go_below_the_limit() {
    let f = shared().await;
    let acc = f.accounts(2).await;
    let ((a, ta), (b, _)) = (&acc[0], &acc[1]);
    let reason = refused(&f, transfer(ta, 50_001, a, CASH, ""), RefusalCode::InsufficientFunds).await;
    assert!(reason.contains("500.01"), "{reason}");
    confirmed(&f, transfer(ta, 50_000, a, b, "down to the limit")).await;
    assert_eq!(f.balance(a).await, -50_000);
    refused(&f, transfer(ta, 1, a, b, ""), RefusalCode::InsufficientFunds).await;
    assert_eq!((f.balance(a).await, f.balance(b).await), (-50_000, 50_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_unknown_accounts_on_either_side() {
    let f = shared().await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    let nobody = Iban::from_account_number(9_999_999_999).as_str().to_owned();
    refused(&f, transfer(ta, 100, a, &nobody, ""), RefusalCode::UnknownAccount).await;
    refused(&f, transfer(ta, 100, &nobody, a, ""), RefusalCode::UnknownAccount).await;
    refused(&f, transfer(ta, 100, CASH, &nobody, ""), RefusalCode::UnknownAccount).await;
    assert_eq!(f.balance(a).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_descriptions_longer_than_200_characters() {
    let f = shared().await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    refused(&f, transfer(ta, 100, CASH, a, &"€".repeat(201)), RefusalCode::DescriptionTooLong).await;
    confirmed(&f, transfer(ta, 100, CASH, a, &"€".repeat(200))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_command_changes_no_balance_and_repeats_its_result() {
    let f = shared().await;
    let acc = f.accounts(2).await;
    let ((a, ta), (b, _)) = (&acc[0], &acc[1]);
    let t = transfer(ta, 1_000, a, b, "once");
    let bad = transfer(ta, 1_000_000, a, b, "too much");
    for _ in 0..2 {
        f.send_transfer(&t).await;
        f.send_transfer(&bad).await;
    }
    // and twice more back to back, likely in one batch
    f.send_transfer(&t).await;
    f.send_transfer(&t).await;
    let confirmations = {
        let mut n = 0;
        for _ in 0..100 {
            n = 0;
            for r in f.read_topic(topics::MONEY_TRANSFER_CONFIRMED) {
                if f.codec.decode::<MoneyTransferConfirmed>(r.payload.as_deref()).await.unwrap().id == t.id {
                    n += 1;
                }
            }
            if n >= 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        n
    };
    assert_eq!(confirmations, 4, "every delivery of the command gets its result");
    assert_eq!((f.balance(a).await, f.balance(b).await), (-1_000, 1_000), "applied once");
    let mut reasons = Vec::new();
    for r in f.read_topic(topics::MONEY_TRANSFER_FAILED) {
        let failed: MoneyTransferFailed = f.codec.decode(r.payload.as_deref()).await.unwrap();
        if failed.id == bad.id {
            reasons.push(failed.reason);
        }
    }
    assert_eq!(reasons.len(), 2);
    assert_eq!(reasons[0], reasons[1], "the same stored result both times");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM bank.results WHERE id = ANY($1)")
        .bind(vec![t.id.as_uuid(), bad.id.as_uuid()])
        .fetch_one(&f.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_dead_letters_and_processing_continues() {
    let f = shared().await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    let topic = f.topic(topics::CONFIRM_MONEY_TRANSFER);
    f.send_raw(&topic, a.as_bytes(), b"\xde\xad\xbe\xef not avro").await;
    // Confluent framing with a schema id the registry never issued.
    f.send_raw(&topic, a.as_bytes(), &[0, 0x7f, 0xff, 0xff, 0xf0, 2, 4, 6, 8]).await;
    let next = transfer(ta, 4_200, CASH, a, "after the poison");
    confirmed(&f, next).await;
    assert_eq!(f.balance(a).await, 4_200);

    let dead = f.wait_topic(topics::DEAD_LETTERS, 2).await;
    let mine: Vec<_> = dead.iter().filter(|r| r.key.as_deref() == Some(a.as_bytes())).collect();
    assert_eq!(mine.len(), 2, "both poison records dead-lettered: {dead:?}");
    assert_eq!(mine[0].payload.as_deref(), Some(&b"\xde\xad\xbe\xef not avro"[..]), "original bytes kept");
    for r in &mine {
        assert_eq!(r.headers.get(dead_letter_headers::SOURCE_TOPIC), Some(&topic));
        assert!(r.headers.get(dead_letter_headers::SOURCE_PARTITION).is_some_and(|p| p.parse::<i32>().is_ok()));
        assert!(r.headers.get(dead_letter_headers::SOURCE_OFFSET).is_some_and(|o| o.parse::<i64>().is_ok()));
        assert!(r.headers.get(dead_letter_headers::ERROR).is_some_and(|e| !e.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_byte_character_in_an_iban_is_refused_and_the_handler_goes_on() {
    let f = shared().await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    // 18 bytes like an IBAN, with a two-byte character at byte 1: slicing it by bytes panicked the handler.
    let bad = "Né123456789012345";
    assert_eq!(bad.len(), Iban::LEN);
    refused(&f, transfer(ta, 100, bad, a, "multi-byte from"), RefusalCode::InvalidIban).await;
    refused(&f, transfer(ta, 100, a, bad, "multi-byte to"), RefusalCode::InvalidIban).await;
    refused(&f, transfer(ta, 100, CASH, "NL€OPEN000000000", "multi-byte to"), RefusalCode::InvalidIban).await;
    confirmed(&f, transfer(ta, 100, CASH, a, "after the multi-byte ibans")).await;
    assert_eq!(f.balance(a).await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_in_text_fields_do_not_stop_the_handler() {
    let f = shared().await;
    let acc = f.accounts(2).await;
    let ((a, ta), (b, _)) = (&acc[0], &acc[1]);
    // PostgreSQL cannot store a NUL byte in text: a refused command used to store its `from`/`to` as given,
    // and the failing INSERT was retried forever. Only valid IBANs (or `cash`) are stored now.
    let nul_from = format!("{}\0", &a[..17]);
    let nul_to = format!("NL\0{}", &b[3..]);
    let r1 = transfer(ta, 100, &nul_from, b, "nul in from");
    let r2 = transfer(ta, 100, a, &nul_to, "nul in to");
    let r3 = transfer(ta, 100, "ca\0sh", a, "nul in cash");
    for cmd in [&r1, &r2, &r3] {
        refused(&f, cmd.clone(), RefusalCode::InvalidIban).await;
    }
    let stored: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT from_iban, to_iban FROM bank.results WHERE id = ANY($1) ORDER BY from_iban NULLS FIRST")
            .bind(vec![r1.id.as_uuid(), r2.id.as_uuid(), r3.id.as_uuid()])
            .fetch_all(&f.pool)
            .await
            .unwrap();
    assert!(stored.contains(&(None, Some(b.clone()))), "{stored:?}");
    assert!(stored.contains(&(Some(a.clone()), None)), "{stored:?}");
    assert!(stored.contains(&(None, Some(a.clone()))), "{stored:?}");
    // A NUL in the description is not stored by the handler: the transfer is confirmed and published.
    confirmed(&f, transfer(ta, 250, CASH, a, "nul \0 in the description")).await;
    confirmed(&f, transfer(ta, 50, a, b, "after the nul bytes")).await;
    assert_eq!((f.balance(a).await, f.balance(b).await), (200, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_kafka_is_published_truncated_and_publishing_goes_on() {
    use sha2::{Digest, Sha256};
    let f = shared().await;
    let acc = f.accounts(1).await;
    let (a, ta) = &acc[0];
    // Larger than the handler's producer takes (message.max.bytes 1,000,000), small enough for the broker.
    let big: FutureProducer = bank_core::kafka::producer_config(&bank_core::testing::kafka_brokers(), "handler-test")
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    let topic = f.topic(topics::CONFIRM_MONEY_TRANSFER);
    let payload: Vec<u8> = std::iter::repeat_n(b"not avro ".as_slice(), 115_000).flatten().copied().collect();
    assert!(payload.len() > 1_000_000);
    big.send(FutureRecord::<[u8], [u8]>::to(&topic).key(a.as_bytes()).payload(&payload), Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .expect("the broker took the large record");
    let next = transfer(ta, 4_200, CASH, a, "after the large poison");
    confirmed(&f, next.clone()).await;

    // Events after it are still published ...
    let mut published = false;
    for _ in 0..100 {
        for r in f.read_topic(topics::MONEY_TRANSFER_CONFIRMED) {
            published |= f.codec.decode::<MoneyTransferConfirmed>(r.payload.as_deref()).await.unwrap().id == next.id;
        }
        if published {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(published, "the confirmation after the large dead letter was published");
    // ... and the dead letter itself, truncated, with the original's size and hash.
    let mut mine = Vec::new();
    for _ in 0..100 {
        mine =
            f.read_topic(topics::DEAD_LETTERS).into_iter().filter(|r| r.key.as_deref() == Some(a.as_bytes())).collect();
        if !mine.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(mine.len(), 1, "one dead letter: {:?}", mine.iter().map(|r| &r.headers).collect::<Vec<_>>());
    let r = &mine[0];
    let hash: String = Sha256::digest(&payload).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r.headers.get(command_handler::outbox::ORIGINAL_SIZE), Some(&payload.len().to_string()));
    assert_eq!(r.headers.get(command_handler::outbox::ORIGINAL_SHA256), Some(&hash));
    assert_eq!(r.headers.get(dead_letter_headers::SOURCE_TOPIC), Some(&topic));
    let kept = r.payload.as_deref().unwrap_or_default();
    assert_eq!(kept.len(), command_handler::outbox::TRUNCATED_BYTES);
    assert!(payload.starts_with(kept), "the kept bytes are the original's first bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_changes_carry_the_accounts_sequence() {
    let f = shared().await;
    let acc = f.accounts(2).await;
    let ((a, ta), (b, _)) = (&acc[0], &acc[1]);
    let cmds = [
        transfer(ta, 10_000, CASH, a, "seq 1 of a"),
        transfer(ta, 1_000, a, CASH, "seq 2 of a"),
        transfer(ta, 5_000_000, a, b, "refused: no change"),
        transfer(ta, 2_000, a, b, "seq 3 of a, 1 of b"),
    ];
    for c in &cmds {
        f.send_transfer(c).await;
    }
    for c in &cmds {
        f.result(c.id).await;
    }
    let ids: Vec<_> = cmds.iter().map(|c| c.id).collect();
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen.clear();
        for r in f.read_topic(topics::BALANCE_CHANGED) {
            let c: BalanceChanged = f.codec.decode(r.payload.as_deref()).await.unwrap();
            if c.transfer_id.is_some_and(|id| ids.contains(&id)) {
                seen.push((c.iban, c.seq, c.new_balance));
            }
        }
        if seen.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen.sort();
    let mut want = vec![(a.clone(), 1, 10_000), (a.clone(), 2, 9_000), (a.clone(), 3, 7_000), (b.clone(), 1, 2_000)];
    want.sort();
    assert_eq!(seen, want);
    let stored: i64 =
        sqlx::query_scalar("SELECT seq FROM bank.accounts WHERE iban = $1").bind(a).fetch_one(&f.pool).await.unwrap();
    assert_eq!(stored, 3);
}

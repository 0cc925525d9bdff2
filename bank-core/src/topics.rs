//! Every Kafka topic of the wire contract in one table, used by the synchronizer and the services.

#[cfg(feature = "kafka")]
use crate::avro::{
    AccountCreationConfirmed, AccountCreationFailed, AvroRecord, BalanceChanged, ConfirmAccountCreation,
    ConfirmMoneyTransfer, Heartbeat, MoneyTransferConfirmed, MoneyTransferFailed,
};

pub const HEARTBEAT: &str = "heartbeat";
pub const CONFIRM_ACCOUNT_CREATION: &str = "confirm_account_creation";
pub const ACCOUNT_CREATION_CONFIRMED: &str = "account_creation_confirmed";
/// Confirmations of `MANUAL` accounts (registered users), with their tokens: a topic of their own, so that only the
/// handler (which writes it) and the gateway (which reads it) can see those tokens; the generator reads
/// [`ACCOUNT_CREATION_CONFIRMED`], where only `AUTO` accounts are confirmed.
pub const ACCOUNT_CREATION_CONFIRMED_MANUAL: &str = "account_creation_confirmed_manual";
pub const ACCOUNT_CREATION_FAILED: &str = "account_creation_failed";
pub const CONFIRM_MONEY_TRANSFER: &str = "confirm_money_transfer";
pub const MONEY_TRANSFER_CONFIRMED: &str = "money_transfer_confirmed";
pub const MONEY_TRANSFER_FAILED: &str = "money_transfer_failed";
pub const BALANCE_CHANGED: &str = "balance_changed";
pub const DEAD_LETTERS: &str = "dead_letters";

/// Every topic's name with a prefix in front (empty in normal use; tests isolate themselves with one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    pub heartbeat: String,
    pub confirm_account_creation: String,
    pub account_creation_confirmed: String,
    pub account_creation_confirmed_manual: String,
    pub account_creation_failed: String,
    pub confirm_money_transfer: String,
    pub money_transfer_confirmed: String,
    pub money_transfer_failed: String,
    pub balance_changed: String,
    pub dead_letters: String,
}

impl TopicNames {
    pub fn with_prefix(p: &str) -> Self {
        Self {
            heartbeat: format!("{p}{HEARTBEAT}"),
            confirm_account_creation: format!("{p}{CONFIRM_ACCOUNT_CREATION}"),
            account_creation_confirmed: format!("{p}{ACCOUNT_CREATION_CONFIRMED}"),
            account_creation_confirmed_manual: format!("{p}{ACCOUNT_CREATION_CONFIRMED_MANUAL}"),
            account_creation_failed: format!("{p}{ACCOUNT_CREATION_FAILED}"),
            confirm_money_transfer: format!("{p}{CONFIRM_MONEY_TRANSFER}"),
            money_transfer_confirmed: format!("{p}{MONEY_TRANSFER_CONFIRMED}"),
            money_transfer_failed: format!("{p}{MONEY_TRANSFER_FAILED}"),
            balance_changed: format!("{p}{BALANCE_CHANGED}"),
            dead_letters: format!("{p}{DEAD_LETTERS}"),
        }
    }
}

/// Header names on `dead_letters` records.
pub mod dead_letter_headers {
    pub const SOURCE_TOPIC: &str = "dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "dlq.source.offset";
    pub const ERROR: &str = "dlq.error";
}

#[cfg(feature = "kafka")]
const WEEK_MS: &str = "604800000";
#[cfg(feature = "kafka")]
const HOUR_MS: &str = "3600000";

/// One topic of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: &'static str,
    pub partitions: i32,
    /// What the record key means.
    pub key: &'static str,
    /// The value's record type (full Avro name) and schema; `None` for raw payloads (dead letters).
    pub record: Option<(&'static str, &'static str)>,
    /// Topic configs the synchronizer enforces.
    pub configs: &'static [(&'static str, &'static str)],
}

impl TopicSpec {
    /// The topic name with a deployment prefix (empty in production; tests use a random one).
    pub fn name_with(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.name)
    }

    /// The registry subject of the value schema (TopicNameStrategy).
    pub fn value_subject(&self, prefix: &str) -> String {
        format!("{}-value", self.name_with(prefix))
    }
}

#[cfg(feature = "kafka")]
const fn record<R: AvroRecord>() -> Option<(&'static str, &'static str)> {
    Some((R::FULL_NAME, R::SCHEMA))
}

#[cfg(feature = "kafka")]
/// Accounts are permanent facts: the generator (and later the gateway) rebuild their view of them from here.
const FOREVER: &[(&str, &str)] =
    &[("cleanup.policy", "delete"), ("retention.ms", "-1"), ("compression.type", "producer")];

#[cfg(feature = "kafka")]
const EVENTS: &[(&str, &str)] =
    &[("cleanup.policy", "delete"), ("retention.ms", WEEK_MS), ("compression.type", "producer")];

#[cfg(feature = "kafka")]
pub const TOPICS: &[TopicSpec] = &[
    TopicSpec {
        name: HEARTBEAT,
        partitions: 1,
        key: "none",
        record: record::<Heartbeat>(),
        configs: &[("cleanup.policy", "delete"), ("retention.ms", HOUR_MS), ("compression.type", "producer")],
    },
    TopicSpec {
        name: CONFIRM_ACCOUNT_CREATION,
        partitions: 3,
        key: "command id",
        record: record::<ConfirmAccountCreation>(),
        configs: EVENTS,
    },
    TopicSpec {
        name: ACCOUNT_CREATION_CONFIRMED,
        partitions: 3,
        key: "command id",
        record: record::<AccountCreationConfirmed>(),
        configs: FOREVER,
    },
    TopicSpec {
        name: ACCOUNT_CREATION_CONFIRMED_MANUAL,
        partitions: 3,
        key: "command id",
        record: record::<AccountCreationConfirmed>(),
        configs: FOREVER,
    },
    TopicSpec {
        name: ACCOUNT_CREATION_FAILED,
        partitions: 3,
        key: "command id",
        record: record::<AccountCreationFailed>(),
        configs: EVENTS,
    },
    TopicSpec {
        name: CONFIRM_MONEY_TRANSFER,
        partitions: 12,
        key: "the debited account: `from`, or `to` for cash deposits",
        record: record::<ConfirmMoneyTransfer>(),
        configs: EVENTS,
    },
    TopicSpec {
        name: MONEY_TRANSFER_CONFIRMED,
        partitions: 12,
        key: "command id",
        record: record::<MoneyTransferConfirmed>(),
        configs: EVENTS,
    },
    TopicSpec {
        name: MONEY_TRANSFER_FAILED,
        partitions: 12,
        key: "command id",
        record: record::<MoneyTransferFailed>(),
        configs: EVENTS,
    },
    TopicSpec {
        name: BALANCE_CHANGED,
        partitions: 12,
        key: "iban",
        record: record::<BalanceChanged>(),
        configs: EVENTS,
    },
    TopicSpec {
        name: DEAD_LETTERS,
        partitions: 3,
        key: "the original key",
        record: None,
        configs: &[("cleanup.policy", "delete"), ("retention.ms", "2592000000"), ("compression.type", "producer")],
    },
];

#[cfg(feature = "kafka")]
pub fn spec(name: &str) -> Option<&'static TopicSpec> {
    TOPICS.iter().find(|t| t.name == name)
}

#[cfg(all(test, feature = "kafka"))]
mod tests {
    use super::*;

    #[test]
    fn every_record_type_has_one_topic_and_account_confirmations_two() {
        for (name, _) in crate::avro::ALL_SCHEMAS {
            let want = if *name == AccountCreationConfirmed::FULL_NAME { 2 } else { 1 };
            assert_eq!(TOPICS.iter().filter(|t| t.record.map(|r| r.0) == Some(*name)).count(), want, "{name}");
        }
        assert_eq!(spec(DEAD_LETTERS).unwrap().record, None);
    }

    #[test]
    fn subjects_use_topic_name_strategy() {
        assert_eq!(spec(HEARTBEAT).unwrap().value_subject(""), "heartbeat-value");
        assert_eq!(spec(HEARTBEAT).unwrap().value_subject("t1_"), "t1_heartbeat-value");
    }
}

//! Records routed by their topic once: a consumer asks [`TopicNames::kind_of`] which contract topic a record
//! came from and [`Inbound::decode`] turns its bytes into the matching typed record.

use crate::avro::{
    AccountCreationConfirmed, AccountCreationFailed, BalanceChanged, ConfirmAccountCreation, ConfirmMoneyTransfer,
    Heartbeat, MoneyTransferConfirmed, MoneyTransferFailed,
};
use crate::registry::{Codec, CodecError};
use crate::topics::TopicNames;

/// The contract topics that carry Avro records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Heartbeat,
    ConfirmAccountCreation,
    AccountCreationConfirmed,
    AccountCreationFailed,
    ConfirmMoneyTransfer,
    MoneyTransferConfirmed,
    MoneyTransferFailed,
    BalanceChanged,
}

impl TopicNames {
    /// Which contract topic `topic` is under these names; `None` for `dead_letters` or a foreign topic.
    pub fn kind_of(&self, topic: &str) -> Option<TopicKind> {
        let table = [
            (&self.heartbeat, TopicKind::Heartbeat),
            (&self.confirm_account_creation, TopicKind::ConfirmAccountCreation),
            (&self.account_creation_confirmed, TopicKind::AccountCreationConfirmed),
            (&self.account_creation_confirmed_manual, TopicKind::AccountCreationConfirmed),
            (&self.account_creation_failed, TopicKind::AccountCreationFailed),
            (&self.confirm_money_transfer, TopicKind::ConfirmMoneyTransfer),
            (&self.money_transfer_confirmed, TopicKind::MoneyTransferConfirmed),
            (&self.money_transfer_failed, TopicKind::MoneyTransferFailed),
            (&self.balance_changed, TopicKind::BalanceChanged),
        ];
        table.into_iter().find(|(name, _)| name.as_str() == topic).map(|(_, kind)| kind)
    }
}

/// A decoded record, typed by the topic it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Heartbeat(Heartbeat),
    ConfirmAccountCreation(ConfirmAccountCreation),
    AccountCreationConfirmed(AccountCreationConfirmed),
    AccountCreationFailed(AccountCreationFailed),
    ConfirmMoneyTransfer(ConfirmMoneyTransfer),
    MoneyTransferConfirmed(MoneyTransferConfirmed),
    MoneyTransferFailed(MoneyTransferFailed),
    BalanceChanged(BalanceChanged),
}

impl Inbound {
    /// Decodes `payload` as the record type of the topic `kind`.
    pub async fn decode(codec: &Codec, kind: TopicKind, payload: Option<&[u8]>) -> Result<Self, CodecError> {
        Ok(match kind {
            TopicKind::Heartbeat => Self::Heartbeat(codec.decode(payload).await?),
            TopicKind::ConfirmAccountCreation => Self::ConfirmAccountCreation(codec.decode(payload).await?),
            TopicKind::AccountCreationConfirmed => Self::AccountCreationConfirmed(codec.decode(payload).await?),
            TopicKind::AccountCreationFailed => Self::AccountCreationFailed(codec.decode(payload).await?),
            TopicKind::ConfirmMoneyTransfer => Self::ConfirmMoneyTransfer(codec.decode(payload).await?),
            TopicKind::MoneyTransferConfirmed => Self::MoneyTransferConfirmed(codec.decode(payload).await?),
            TopicKind::MoneyTransferFailed => Self::MoneyTransferFailed(codec.decode(payload).await?),
            TopicKind::BalanceChanged => Self::BalanceChanged(codec.decode(payload).await?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_topic_has_its_kind_and_prefixes_are_respected() {
        let t = TopicNames::with_prefix("t1_");
        assert_eq!(t.kind_of("t1_heartbeat"), Some(TopicKind::Heartbeat));
        assert_eq!(t.kind_of("t1_confirm_account_creation"), Some(TopicKind::ConfirmAccountCreation));
        assert_eq!(t.kind_of("t1_account_creation_confirmed"), Some(TopicKind::AccountCreationConfirmed));
        assert_eq!(t.kind_of("t1_account_creation_failed"), Some(TopicKind::AccountCreationFailed));
        assert_eq!(t.kind_of("t1_confirm_money_transfer"), Some(TopicKind::ConfirmMoneyTransfer));
        assert_eq!(t.kind_of("t1_money_transfer_confirmed"), Some(TopicKind::MoneyTransferConfirmed));
        assert_eq!(t.kind_of("t1_money_transfer_failed"), Some(TopicKind::MoneyTransferFailed));
        assert_eq!(t.kind_of("t1_balance_changed"), Some(TopicKind::BalanceChanged));
        assert_eq!(t.kind_of("t1_dead_letters"), None);
        assert_eq!(t.kind_of("heartbeat"), None);
        assert_eq!(t.kind_of(""), None);
    }
}

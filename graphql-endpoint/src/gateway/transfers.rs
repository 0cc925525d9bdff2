//! Transfers: claimed under their idempotency key, sent as a command keyed by the debited account, and answered
//! when the bank's result arrives (bounded), once the user's own balance shows it.

use super::Gateway;
use crate::error::{GatewayError, GatewayResult};
use crate::store::{self, NewTransfer, TransferRow, TransferStatus, User};
use bank_core::avro::ConfirmMoneyTransfer;
use bank_core::movement::Movement;
use bank_core::{CommandId, Money};
use std::time::{Duration, Instant};
use uuid::Uuid;

impl Gateway {
    /// Records the transfer under its idempotency key, sends it (again, while it is pending) and waits for the
    /// result up to the configured timeout.
    pub async fn submit(
        &self,
        user: &User,
        movement: &Movement,
        amount: Money,
        description: &str,
        idempotency_key: Option<String>,
    ) -> GatewayResult<TransferRow> {
        let (from, to) = movement.sides();
        let token = user.account_token.as_deref().ok_or(GatewayError::AccountPending("no account yet"))?;
        let key = idempotency_key.unwrap_or_else(|| Uuid::new_v4().to_string());
        let new = NewTransfer {
            id: Uuid::new_v4(),
            user_id: user.id,
            idempotency_key: key,
            from_iban: from.to_owned(),
            to_iban: to.to_owned(),
            amount: amount.cents(),
            description: description.to_owned(),
        };
        let (row, fresh) = self.claims.claim(new).await?;
        if !fresh {
            metrics::counter!("gateway_idempotent_repeats_total").increment(1);
            if (row.from_iban.as_str(), row.to_iban.as_str(), row.amount, row.description.as_str())
                != (from, to, amount.cents(), description)
            {
                return Err(GatewayError::invalid(
                    "idempotencyKey",
                    "this key was already used for a different transfer",
                ));
            }
            if row.status != TransferStatus::Pending {
                return Ok(row);
            }
        }
        let mut waiting = self.results.expect(row.id);
        // The debited account keys the command: the sender, or the receiver of a cash deposit.
        let key = movement.authorising().as_str();
        let command = ConfirmMoneyTransfer {
            id: CommandId::from(row.id),
            token: token.to_owned(),
            amount: amount.cents(),
            from: from.to_owned(),
            to: to.to_owned(),
            description: description.to_owned(),
        };
        if let Err(e) = self.send(&self.settings.topics.confirm_money_transfer, key.as_bytes(), &command).await {
            self.results.forget(&waiting);
            tracing::warn!(error = %e, "cannot send a transfer");
            return Err(GatewayError::Unavailable(
                "the bank cannot be reached right now; send again with the same idempotencyKey",
            ));
        }
        metrics::counter!("gateway_transfers_sent_total").increment(1);
        let deadline = Instant::now() + self.settings.result_timeout;
        let answered = tokio::time::timeout(self.settings.result_timeout, &mut waiting.result).await;
        self.results.forget(&waiting);
        match answered {
            Ok(Ok(n)) => {
                let status = n.status.unwrap_or(TransferStatus::Pending);
                // The notice says whether the balance was stored with the result (almost always): if not, it
                // comes in a later projection batch.
                if status == TransferStatus::Confirmed && !n.balance {
                    self.await_own_balance(row.id, key, deadline).await;
                }
                Ok(TransferRow { status, reason: n.reason, ..row })
            }
            // No notice (timeout, or the listener reconnected meanwhile): the stored status is the truth.
            _ => Ok(store::transfer(&self.pool, user.id, row.id).await?.unwrap_or(row)),
        }
    }

    /// Read your own writes: a confirmed transfer is answered once the user's own account (`iban`) shows it, within
    /// the same time budget. Its result and its balance changes come on different topics, so the projection can
    /// store the result a batch before the balance (seen as a balance read right after the answer still showing
    /// the old amount). Almost always the balance is already there and this is one indexed read.
    async fn await_own_balance(&self, id: Uuid, iban: &str, deadline: Instant) {
        let mut pause = Duration::from_millis(2);
        loop {
            match store::balance_projected(&self.pool, id, iban).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "cannot check the projection of a confirmed transfer");
                    return;
                }
            }
            if Instant::now() + pause >= deadline {
                return;
            }
            metrics::counter!("gateway_answer_projection_waits_total").increment(1);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

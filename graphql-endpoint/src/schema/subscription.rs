//! Subscriptions: each subscriber's view of an instance-wide broadcast.

use super::errors::{ApiError, coded};
use super::types::{Direction, Transaction, TransferResult};
use super::{gateway, may_read, signed_in};
use crate::results::Notice;
use crate::store::BalanceRecord;
use async_graphql::{Context, Error, Subscription};
use futures::Stream;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Live balance changes of one account (same access rules as the `transactions` query), optionally only
    /// those of at least `minAmountCents` (either direction) or of one direction.
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        iban: String,
        min_amount_cents: Option<i32>,
        direction: Option<Direction>,
    ) -> Result<impl Stream<Item = Result<Transaction, Error>> + use<>, ApiError> {
        may_read(ctx, &iban)?;
        let min = i64::from(min_amount_cents.unwrap_or(0)).max(0);
        let rx = gateway(ctx).hub.transactions.subscribe();
        metrics::counter!("gateway_subscriptions_total", "kind" => "transactions").increment(1);
        Ok(feed(rx, move |r: &BalanceRecord| {
            let wanted = r.iban == iban
                && r.changed_by.unsigned_abs() >= min.unsigned_abs()
                && direction.is_none_or(|d| (d == Direction::Debit) == (r.changed_by < 0));
            wanted.then(|| Transaction::from(r))
        }))
    }

    /// Results of your own transfers, deposits and withdrawals as the bank decides them.
    async fn transfer_results(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = Result<TransferResult, Error>> + use<>, ApiError> {
        let user_id = signed_in(ctx)?.id;
        let rx = gateway(ctx).results.transfers.subscribe();
        metrics::counter!("gateway_subscriptions_total", "kind" => "transfer_results").increment(1);
        Ok(feed(rx, move |n: &Notice| (n.user == user_id).then(|| TransferResult::from_notice(n))))
    }
}

/// A subscriber's view of a broadcast: the items `pick` keeps. A subscriber that falls more than the buffer
/// behind gets a SLOW_SUBSCRIBER error and is dropped; it never holds up anyone else.
fn feed<T, O>(
    rx: tokio::sync::broadcast::Receiver<Arc<T>>,
    pick: impl Fn(&T) -> Option<O> + Send + 'static,
) -> impl Stream<Item = Result<O, Error>>
where
    T: Send + Sync + 'static,
    O: Send + 'static,
{
    futures::stream::unfold(Some((rx, pick)), |state| async move {
        let (mut rx, pick) = state?;
        loop {
            match rx.recv().await {
                Ok(item) => {
                    if let Some(o) = pick(&item) {
                        return Some((Ok(o), Some((rx, pick))));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("gateway_slow_subscribers_total").increment(1);
                    let e = coded("SLOW_SUBSCRIBER", format!("the subscriber fell {n} events behind and was dropped"));
                    return Some((Err(e), None));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::Value;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_slow_subscriber_is_dropped_without_holding_up_others() {
        let (tx, _) = tokio::sync::broadcast::channel::<Arc<i64>>(4);
        let slow = feed(tx.subscribe(), |v: &i64| Some(*v));
        let fast = feed(tx.subscribe(), |v: &i64| (*v % 2 == 0).then_some(*v));
        futures::pin_mut!(slow, fast);
        // The sender never waits: ten events into a buffer of four. One reader keeps up, one never reads.
        let mut seen = Vec::new();
        for v in 0..10 {
            tx.send(Arc::new(v)).unwrap();
            if v % 2 == 0 {
                seen.push(fast.next().await.unwrap().unwrap());
            }
        }
        assert_eq!(seen, [0, 2, 4, 6, 8], "the reader that keeps up gets every event it asked for");
        let e = slow.next().await.unwrap().unwrap_err();
        assert_eq!(e.extensions.as_ref().and_then(|x| x.get("code")), Some(&Value::from("SLOW_SUBSCRIBER")));
        assert!(slow.next().await.is_none(), "a dropped subscriber's stream ends");
        drop(tx);
        assert!(fast.next().await.is_none(), "streams end when the feed closes");
    }
}

//! Subscriptions: each subscriber listens to its own key (an IBAN, a user) of an instance-wide [`Fanout`].

use super::context::{gateway, may_read, signed_in};
use super::errors::{ApiError, coded};
use super::types::{Direction, Transaction, TransferResult};
use crate::channel::Notice;
use crate::fanout::Subscriber;
use crate::store::BalanceRecord;
use async_graphql::{Context, Error, Subscription};
use futures::Stream;
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
        let rx = gateway(ctx).hub.transactions.subscribe(iban);
        metrics::counter!("gateway_subscriptions_total", "kind" => "transactions").increment(1);
        Ok(feed(rx, move |r: &BalanceRecord| {
            let wanted = r.changed_by.unsigned_abs() >= min.unsigned_abs()
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
        let rx = gateway(ctx).results.transfers.subscribe(user_id);
        metrics::counter!("gateway_subscriptions_total", "kind" => "transfer_results").increment(1);
        Ok(feed(rx, |n: &Notice| Some(TransferResult::from_notice(n))))
    }
}

/// A subscriber's view of its key's events: the items `pick` keeps. A subscriber that falls more than the buffer
/// behind gets a SLOW_SUBSCRIBER error and is dropped; it never holds up anyone else.
fn feed<K, T, O>(
    rx: Subscriber<K, T>,
    pick: impl Fn(&T) -> Option<O> + Send + 'static,
) -> impl Stream<Item = Result<O, Error>>
where
    K: std::hash::Hash + Eq + Send + 'static,
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
        let tx = crate::fanout::Fanout::<u8, i64>::new(4);
        let slow = feed(tx.subscribe(1), |v: &i64| Some(*v));
        let fast = feed(tx.subscribe(1), |v: &i64| (*v % 2 == 0).then_some(*v));
        futures::pin_mut!(slow, fast);
        // The sender never waits: ten events into a buffer of four. One reader keeps up, one never reads.
        let mut seen = Vec::new();
        for v in 0..10 {
            tx.publish(&1, v);
            if v % 2 == 0 {
                seen.push(fast.next().await.unwrap().unwrap());
            }
        }
        assert_eq!(seen, [0, 2, 4, 6, 8], "the reader that keeps up gets every event it asked for");
        let e = slow.next().await.unwrap().unwrap_err();
        assert_eq!(e.extensions.as_ref().and_then(|x| x.get("code")), Some(&Value::from("SLOW_SUBSCRIBER")));
        assert!(slow.next().await.is_none(), "a dropped subscriber's stream ends");
        assert_eq!(tx.subscribers(), 1, "the dropped subscriber no longer counts");
        drop(tx);
        assert!(fast.next().await.is_none(), "streams end when the feed closes");
    }
}

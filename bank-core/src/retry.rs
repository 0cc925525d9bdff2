//! One exponential backoff for every retry loop: the first pause, then doubling up to [`MAX`].

use crate::shutdown::CancellationToken;
use std::time::Duration;

/// The longest pause between two attempts.
pub const MAX: Duration = Duration::from_secs(5);

/// Pauses that start at `first` and double up to [`MAX`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration) -> Self {
        Self { next: first.min(MAX) }
    }

    /// The pause to wait now; the one after is twice as long (at most [`MAX`]).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(MAX);
        d
    }

    /// The pause the next [`Backoff::sleep`] would wait, without advancing.
    pub fn peek(&self) -> Duration {
        self.next
    }

    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Sleeps the next pause; `false` if `shutdown` fired first.
    pub async fn sleep_or_cancelled(&mut self, shutdown: &CancellationToken) -> bool {
        let d = self.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_five_seconds() {
        let mut b = Backoff::new(Duration::from_millis(100));
        let got: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        let mut b = Backoff::new(Duration::from_millis(200));
        let got: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [200, 400, 800, 1600, 3200, 5000]);
        assert_eq!(Backoff::new(Duration::from_secs(9)).peek(), MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_or_cancelled_stops_on_shutdown() {
        let shutdown = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_millis(100));
        let start = tokio::time::Instant::now();
        assert!(b.sleep_or_cancelled(&shutdown).await);
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        shutdown.cancel();
        assert!(!b.sleep_or_cancelled(&shutdown).await);
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }
}

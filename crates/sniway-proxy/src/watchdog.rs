//! The deadlines of a relayed connection (idle, half-close, maximum lifetime) and the drain cut,
//! watched by one timer per connection.
//!
//! Moving the timer on every byte would touch the timer wheel on every read. Instead the relay
//! notes the time of its last activity, and the timer is left armed at the deadline computed
//! earlier: when it fires, the deadline is computed again from the latest activity and the timer
//! re-armed if it has not really passed. So a busy connection costs one clock read per wake-up
//! and one timer event per idle period, and a quiet one exactly the timer it needs. Only an event
//! that brings a deadline forward (a direction ending starts the half-close clock) moves the
//! timer at once.
//!
//! A connection with no deadline configured allocates no timer. The drain cut is a
//! `watch` wait boxed once per connection; it also serves the phases before the relay.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::error::ConnError;

/// When a relayed connection ends on its own account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deadlines {
    /// No byte either way for this long ends the connection.
    pub idle: Option<Duration>,
    /// Once one direction has ended, silence this long from the other ends the connection.
    pub half_close: Option<Duration>,
    /// The connection ends at this instant whatever it is doing (maximum lifetime).
    pub end: Option<Instant>,
}

impl Deadlines {
    /// Deadlines from durations where zero means "none", the maximum lifetime counted from
    /// `start`.
    pub fn new(
        idle: Duration,
        half_close: Duration,
        max_lifetime: Duration,
        start: Instant,
    ) -> Deadlines {
        let some = |d: Duration| (!d.is_zero()).then_some(d);
        Deadlines {
            idle: some(idle),
            half_close: some(half_close),
            end: some(max_lifetime).map(|d| start + d),
        }
    }
}

/// Resolves once the drain deadline has passed (never, if the proxy is gone).
pub type Cut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A future that resolves when `rx` turns true.
pub fn cut_signal(mut rx: watch::Receiver<bool>) -> Cut {
    Box::pin(async move {
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}

/// One connection's deadlines and cut signal, polled by its relay.
pub struct Watchdog {
    deadlines: Deadlines,
    timer: Option<Pin<Box<Sleep>>>,
    cut: Option<Cut>,
    last_activity: Instant,
    half_closed_at: Option<Instant>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("deadlines", &self.deadlines)
            .field("last_activity", &self.last_activity)
            .field("half_closed_at", &self.half_closed_at)
            .finish_non_exhaustive()
    }
}

impl Watchdog {
    /// Watches `deadlines` from now, and `cut` when given.
    pub fn new(deadlines: Deadlines, cut: Option<Cut>) -> Watchdog {
        Watchdog {
            deadlines,
            timer: None,
            cut,
            last_activity: Instant::now(),
            half_closed_at: None,
        }
    }

    /// A watchdog that never fires.
    pub fn none() -> Watchdog {
        Watchdog::new(Deadlines::default(), None)
    }

    /// Called by the relay at each of its polls: `moved` says whether bytes moved in this poll,
    /// `half_closed` whether a direction has ended. `Ready` with the error that ends the
    /// connection once a deadline has passed or the cut has come; otherwise a wake-up is
    /// registered for the next deadline.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        moved: bool,
        half_closed: bool,
    ) -> Poll<ConnError> {
        if moved {
            self.last_activity = Instant::now();
        }
        if half_closed && self.half_closed_at.is_none() {
            self.half_closed_at = Some(if moved { self.last_activity } else { Instant::now() });
        }
        if let Some(cut) = &mut self.cut
            && cut.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(ConnError::Drained);
        }
        let Some((mut deadline, _)) = self.next() else { return Poll::Pending };
        let timer = match &mut self.timer {
            Some(t) => {
                if deadline < t.deadline() {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired at the deadline it was armed with; activity since may have moved
            // the real one.
            let now = Instant::now();
            let (next, expired) =
                match next_of(&self.deadlines, self.last_activity, self.half_closed_at) {
                    Some(n) => n,
                    None => return Poll::Pending,
                };
            if next <= now {
                return Poll::Ready(expired);
            }
            deadline = next;
            timer.as_mut().reset(deadline);
        }
    }

    fn next(&self) -> Option<(Instant, ConnError)> {
        next_of(&self.deadlines, self.last_activity, self.half_closed_at)
    }
}

/// The earliest deadline and the error it ends the connection with.
fn next_of(
    d: &Deadlines,
    last_activity: Instant,
    half_closed_at: Option<Instant>,
) -> Option<(Instant, ConnError)> {
    let idle = d.idle.map(|i| (last_activity + i, ConnError::IdleTimeout(i)));
    let half = match (d.half_close, half_closed_at) {
        (Some(h), Some(at)) => Some((at.max(last_activity) + h, ConnError::HalfCloseTimeout(h))),
        _ => None,
    };
    let end = d.end.map(|e| (e, ConnError::MaxLifetime));
    [idle, half, end].into_iter().flatten().min_by_key(|(at, _)| *at)
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    /// Polls `w` once with the given activity.
    async fn once(w: &mut Watchdog, moved: bool, half: bool) -> Option<&'static str> {
        poll_fn(|cx| {
            Poll::Ready(match w.poll(cx, moved, half) {
                Poll::Ready(e) => Some(e.reason()),
                Poll::Pending => None,
            })
        })
        .await
    }

    /// Waits until `w` fires.
    async fn fired(w: &mut Watchdog) -> &'static str {
        poll_fn(|cx| w.poll(cx, false, false)).await.reason()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_ends_after_the_idle_timeout_counted_from_its_last_byte() {
        let start = Instant::now();
        let d = Deadlines::new(Duration::from_secs(60), Duration::ZERO, Duration::ZERO, start);
        let mut w = Watchdog::new(d, None);
        assert_eq!(once(&mut w, false, false).await, None);
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(once(&mut w, true, false).await, None, "activity at 50 s");
        assert_eq!(fired(&mut w).await, "idle_timeout");
        assert_eq!(Instant::now() - start, Duration::from_secs(110));
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_closed_connection_ends_after_the_half_close_timeout_of_silence() {
        let start = Instant::now();
        let d = Deadlines::new(
            Duration::from_secs(3600),
            Duration::from_secs(30),
            Duration::ZERO,
            start,
        );
        let mut w = Watchdog::new(d, None);
        assert_eq!(once(&mut w, false, false).await, None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(once(&mut w, true, true).await, None, "one direction ends at 10 s");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(once(&mut w, true, true).await, None, "the other still talks at 30 s");
        assert_eq!(fired(&mut w).await, "half_close_timeout");
        assert_eq!(Instant::now() - start, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn the_maximum_lifetime_ends_even_a_busy_connection() {
        let start = Instant::now();
        let d =
            Deadlines::new(Duration::from_secs(5), Duration::ZERO, Duration::from_secs(12), start);
        let mut w = Watchdog::new(d, None);
        for _ in 0..5 {
            assert_eq!(once(&mut w, true, false).await, None);
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        assert_eq!(fired(&mut w).await, "max_lifetime");
        assert_eq!(Instant::now() - start, Duration::from_secs(12));
    }

    #[tokio::test(start_paused = true)]
    async fn the_cut_ends_the_connection_and_no_deadline_means_no_timer() {
        let (tx, rx) = watch::channel(false);
        let mut w = Watchdog::new(Deadlines::default(), Some(cut_signal(rx)));
        assert_eq!(once(&mut w, false, false).await, None);
        assert!(w.timer.is_none(), "a timer was allocated without a deadline");
        tx.send_replace(true);
        assert_eq!(fired(&mut w).await, "drained");
    }
}

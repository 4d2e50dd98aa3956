//! The reconnect policy and the application-level heartbeat of a client socket: plain data
//! and pure decisions, shared by both backends (which do the waiting and the reconnecting).

use std::time::Duration;

use crate::CloseEvent;

/// How a client socket reconnects after losing its connection (opt in with
/// [`crate::WebSocket::set_reconnect`]); the same on both targets.
///
/// After an abnormal end (1006: the network or the server went away; 1001, 1011, 1012,
/// 1013, 1014; or a failed reconnect attempt) the socket waits, with exponential backoff
/// and jitter, and opens the same URL with the same subprotocols again. Meanwhile
/// [`crate::WebSocket::ready_state`] is `Connecting`, `on_reconnecting(attempt, delay)` is
/// called before each wait, and `on_open` again on success; the socket keeps its `id`.
/// `on_close` is called once, when the socket is closed for good: after a local
/// [`crate::WebSocket::close`], a close the policy does not retry (by default a normal
/// 1000 close, protocol and policy errors, and application codes), or when the attempts
/// run out.
///
/// Messages sent while disconnected are queued, up to [`Reconnect::buffer`] payload bytes,
/// and sent in order once the connection is back; beyond it a send fails with
/// [`crate::Error::Capacity`] (with no buffer, with [`crate::Error::NotOpen`]). Messages
/// that were queued on the connection that broke may have been lost with it: delivery
/// across a reconnect is at most once.
///
/// ```
/// use std::time::Duration;
/// use unisock::Reconnect;
/// let policy = Reconnect::default()
///     .delays(Duration::from_millis(100), Duration::from_secs(10))
///     .max_attempts(Some(20))
///     .buffer(64 * 1024);
/// assert_eq!(policy.max_attempts, Some(20));
/// assert_eq!(policy.buffer, 64 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Reconnect {
    /// The wait before the first attempt (default 500 ms).
    pub initial_delay: Duration,
    /// The longest wait between attempts (default 30 s).
    pub max_delay: Duration,
    /// The factor between one wait and the next (default 2).
    pub multiplier: f64,
    /// Up to this fraction of each wait is taken off at random, so that many clients
    /// dropped at once do not come back at once (default 0.5; 0 for none).
    pub jitter: f64,
    /// How many attempts in a row before giving up (`None`, the default: never give up).
    pub max_attempts: Option<u32>,
    /// Whether a normal close (1000) from the server is retried too (default false).
    pub on_normal_close: bool,
    /// Payload bytes of messages that may wait while disconnected (default 0: none).
    pub buffer: usize,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
            on_normal_close: false,
            buffer: 0,
        }
    }
}

impl Reconnect {
    /// Sets the first and the longest wait.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = unisock::Reconnect::default().delays(Duration::from_millis(10), Duration::from_secs(1));
    /// assert_eq!(p.max_delay, Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn delays(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_delay = initial;
        self.max_delay = max;
        self
    }

    /// Sets [`Reconnect::jitter`] (clamped to 0..=1).
    ///
    /// ```
    /// assert_eq!(unisock::Reconnect::default().jitter(0.0).jitter, 0.0);
    /// ```
    #[must_use]
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// Sets [`Reconnect::max_attempts`].
    ///
    /// ```
    /// assert_eq!(unisock::Reconnect::default().max_attempts(Some(3)).max_attempts, Some(3));
    /// ```
    #[must_use]
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets [`Reconnect::on_normal_close`].
    ///
    /// ```
    /// assert!(unisock::Reconnect::default().on_normal_close(true).on_normal_close);
    /// ```
    #[must_use]
    pub fn on_normal_close(mut self, retry: bool) -> Self {
        self.on_normal_close = retry;
        self
    }

    /// Sets [`Reconnect::buffer`].
    ///
    /// ```
    /// assert_eq!(unisock::Reconnect::default().buffer(1024).buffer, 1024);
    /// ```
    #[must_use]
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// Whether a connection that ended with `ev` (not closed by us) is retried.
    ///
    /// ```
    /// use unisock::{CloseEvent, Reconnect};
    /// let ev = |code| CloseEvent { code, reason: String::new(), was_clean: code != 1006 };
    /// let p = Reconnect::default();
    /// assert!(p.retries(&ev(1006)) && p.retries(&ev(1001)) && p.retries(&ev(1012)));
    /// assert!(!p.retries(&ev(1000)) && !p.retries(&ev(1002)) && !p.retries(&ev(4000)));
    /// assert!(p.on_normal_close(true).retries(&ev(1000)));
    /// ```
    #[must_use]
    pub fn retries(&self, ev: &CloseEvent) -> bool {
        match ev.code {
            1000 => self.on_normal_close,
            1001 | 1006 | 1011 | 1012 | 1013 | 1014 => true,
            _ => false,
        }
    }

    /// The wait before attempt `attempt` (1 for the first), given `random` in `[0, 1)`:
    /// `initial * multiplier^(attempt-1)`, at most `max_delay`, less `jitter * random` of it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = unisock::Reconnect::default().jitter(0.0);
    /// assert_eq!(p.delay(1, 0.9), Duration::from_millis(500));
    /// assert_eq!(p.delay(3, 0.9), Duration::from_secs(2));
    /// assert_eq!(p.delay(100, 0.9), Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial_delay.as_secs_f64() * self.multiplier.max(1.0).powi(exp);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0));
        Duration::try_from_secs_f64(jittered).unwrap_or(self.max_delay)
    }

    /// Whether another attempt is allowed after `attempts` failed ones in a row.
    ///
    /// ```
    /// let p = unisock::Reconnect::default().max_attempts(Some(2));
    /// assert!(p.allows(1) && !p.allows(2));
    /// ```
    #[must_use]
    pub fn allows(&self, attempts: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempts < max)
    }
}

/// An application-level heartbeat (opt in with [`crate::WebSocket::set_heartbeat`]), for
/// the browser, which does not let pages send pings: when nothing has arrived for
/// [`Heartbeat::interval`], [`Heartbeat::message`] is sent as text; if still nothing arrives
/// within [`Heartbeat::timeout`], the connection counts as dead and ends with 1006 (and
/// with a [`Reconnect`] policy, a reconnect follows). The server is expected to answer
/// the message (an echo will do). Natively it works the same; there, protocol pings
/// (`WebSocketExt::set_keepalive`) need no help from the server.
///
/// ```
/// use std::time::Duration;
/// let hb = unisock::Heartbeat::new(Duration::from_secs(20), Duration::from_secs(5), "ping");
/// assert_eq!(hb.message, "ping");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Heartbeat {
    /// Quiet time after which the message is sent.
    pub interval: Duration,
    /// How long to wait, after sending it, for anything from the server.
    pub timeout: Duration,
    /// The text sent.
    pub message: String,
}

impl Heartbeat {
    /// A heartbeat sending `message` after `interval` of quiet, dead `timeout` later.
    ///
    /// ```
    /// use std::time::Duration;
    /// let hb = unisock::Heartbeat::new(Duration::from_secs(1), Duration::from_secs(2), "hb");
    /// assert_eq!(hb.timeout, Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn new(interval: Duration, timeout: Duration, message: &str) -> Self {
        Self {
            interval,
            timeout,
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_jitter_only_shortens() {
        let p = Reconnect::default();
        let mut last = Duration::ZERO;
        for attempt in 1..40 {
            let top = p.delay(attempt, 0.0);
            assert!(top >= last && top <= p.max_delay);
            let low = p.delay(attempt, 0.999_999);
            assert!(low <= top && low >= top / 2, "{low:?} {top:?}");
            last = top;
        }
        assert_eq!(last, p.max_delay);
        assert_eq!(p.delay(u32::MAX, 0.0), p.max_delay);
    }

    #[test]
    fn attempts_are_counted_against_the_maximum() {
        let p = Reconnect::default().max_attempts(Some(2));
        assert!(p.allows(0) && p.allows(1) && !p.allows(2));
        assert!(Reconnect::default().allows(u32::MAX));
    }
}

//! Limits and options shared by both roles.

/// Size limits that protect a socket from a peer that sends too much.
///
/// A peer can never make a socket allocate more than these limits: a frame or message
/// whose announced length is over the limit is refused (close code 1009) before its payload
/// is read.
///
/// ```
/// let limits = unisock::Limits::default().max_message_size(1 << 20);
/// assert_eq!(limits.max_message_size, 1 << 20);
/// assert_eq!(limits.max_frame_size, 16 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest single frame payload accepted, in bytes. Default 16 MiB.
    pub max_frame_size: usize,
    /// The largest whole (reassembled) message accepted, in bytes. Default 64 MiB.
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
        }
    }
}

impl Limits {
    /// No limits at all (up to `usize::MAX`). Only for trusted peers.
    ///
    /// ```
    /// assert_eq!(unisock::Limits::unlimited().max_frame_size, usize::MAX);
    /// ```
    #[must_use]
    pub fn unlimited() -> Self {
        Self {
            max_frame_size: usize::MAX,
            max_message_size: usize::MAX,
        }
    }

    /// Sets [`Limits::max_frame_size`].
    ///
    /// ```
    /// assert_eq!(unisock::Limits::default().max_frame_size(1024).max_frame_size, 1024);
    /// ```
    #[must_use]
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Limits::max_message_size`].
    ///
    /// ```
    /// assert_eq!(unisock::Limits::default().max_message_size(1024).max_message_size, 1024);
    /// ```
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }
}

/// Keep-alive pings: find a peer that vanished without closing (a pulled cable, a sleeping
/// laptop, a NAT that forgot the connection), which TCP alone may not notice for hours.
///
/// When nothing has arrived from the peer for [`KeepAlive::interval`], a ping is sent; if
/// still nothing (not its pong, nor anything else) arrives within [`KeepAlive::timeout`],
/// the connection is dropped as dead: `on_close` gets 1006 (not clean) and `on_error` gets
/// [`crate::Error::Timeout`]. Natively, server sockets ping every 30 s by default and
/// clients not at all; set it with `WebSocketExt::set_keepalive`.
///
/// ```
/// use std::time::Duration;
/// use unisock::KeepAlive;
/// let ka = KeepAlive::every(Duration::from_secs(20)).timeout(Duration::from_secs(5));
/// assert_eq!(ka.interval, Duration::from_secs(20));
/// assert_eq!(ka.timeout, Duration::from_secs(5));
/// assert_eq!(KeepAlive::SERVER_DEFAULT.interval, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeepAlive {
    /// Quiet time after which a ping is sent.
    pub interval: std::time::Duration,
    /// How long to wait, after the ping, for anything from the peer.
    pub timeout: std::time::Duration,
}

impl KeepAlive {
    /// The server default: a ping after 30 s of quiet, dead 30 s later.
    pub const SERVER_DEFAULT: Self = Self {
        interval: std::time::Duration::from_secs(30),
        timeout: std::time::Duration::from_secs(30),
    };

    /// Pings after `interval` of quiet, and waits as long again for an answer.
    ///
    /// ```
    /// let ka = unisock::KeepAlive::every(std::time::Duration::from_secs(10));
    /// assert_eq!(ka.timeout, ka.interval);
    /// ```
    #[must_use]
    pub fn every(interval: std::time::Duration) -> Self {
        Self {
            interval,
            timeout: interval,
        }
    }

    /// Sets [`KeepAlive::timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let ka = unisock::KeepAlive::every(Duration::from_secs(10)).timeout(Duration::from_secs(1));
    /// assert_eq!(ka.timeout, Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

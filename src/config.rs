//! Limits and options shared by both roles.

/// Size limits that protect a socket from a peer that sends too much.
///
/// A peer can never make a socket allocate more than these limits: a frame or message
/// whose announced length is over the limit is refused (close code 1009) before its payload
/// is read. Within them, a message's memory grows with the bytes that arrive (at most twice
/// them, or 64 KiB past them), not with the length a frame's header announces. (While big
/// messages arrive, the next may be received into the buffer of a big message already
/// sent: memory the socket held anyway, see
/// [`Connection::recycle_written`](crate::protocol::Connection::recycle_written).)
///
/// ```
/// let limits = unisock::Limits::default().max_message_size(1 << 20);
/// assert_eq!(limits.max_message_size, 1 << 20);
/// assert_eq!(limits.max_frame_size, 16 << 20);
/// assert_eq!(limits.max_fragments, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest single frame payload accepted, in bytes. Default 16 MiB.
    pub max_frame_size: usize,
    /// The largest whole (reassembled) message accepted, in bytes. Default 64 MiB.
    pub max_message_size: usize,
    /// The most frames one message may come in, empty ones included; a message in more is
    /// refused with close code 1009 when its next frame's header arrives (0 refuses every
    /// message). Default 1,048,576 (`1 << 20`).
    ///
    /// Without it a peer could keep a message open forever with empty fragments, which
    /// no size limit catches. The default lets a message of the default 64 MiB limit come
    /// in 64-byte fragments, the smallest the Autobahn testsuite sends (cases 9.3.1 and
    /// 9.4.1: 4 MiB in 65,536 fragments); browsers send a message in one frame.
    pub max_fragments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Limits {
    /// What `default()` gives.
    pub(crate) const DEFAULT: Self = Self {
        max_frame_size: 16 << 20,
        max_message_size: 64 << 20,
        max_fragments: 1 << 20,
    };

    /// No limits at all (up to `usize::MAX`). Only for trusted peers.
    ///
    /// ```
    /// assert_eq!(unisock::Limits::unlimited().max_frame_size, usize::MAX);
    /// assert_eq!(unisock::Limits::unlimited().max_fragments, usize::MAX);
    /// ```
    #[must_use]
    pub fn unlimited() -> Self {
        Self {
            max_frame_size: usize::MAX,
            max_message_size: usize::MAX,
            max_fragments: usize::MAX,
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

    /// Sets [`Limits::max_fragments`].
    ///
    /// ```
    /// assert_eq!(unisock::Limits::default().max_fragments(64).max_fragments, 64);
    /// ```
    #[must_use]
    pub fn max_fragments(mut self, frames: usize) -> Self {
        self.max_fragments = frames;
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

/// permessage-deflate (RFC 7692) options: whether a socket offers (client) or accepts
/// (server) compression, and how. Natively only: in the browser, the browser negotiates and
/// compresses by itself.
///
/// Compression is used only when both sides agree during the opening handshake; the
/// negotiated extension is reported by [`WebSocket::extensions`](crate::WebSocket::extensions).
///
/// ```
/// let deflate = unisock::DeflateConfig::default()
///     .min_size(256)
///     .server_no_context_takeover(true);
/// assert!(deflate.enabled);
/// assert_eq!(deflate.server_max_window_bits, 15);
/// assert!(!unisock::DeflateConfig::disabled().enabled);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Offer (client) or accept (server) permessage-deflate. Default `true`.
    pub enabled: bool,
    /// Messages shorter than this many bytes are sent uncompressed. Default 32.
    pub min_size: usize,
    /// Compression level, 0 (none) to 9 (smallest, slowest). Default 1: the fastest level
    /// already removes most of the redundancy of JSON-like text.
    pub level: u32,
    /// The server resets its compressor after every message (less memory, worse ratio).
    /// A server requests it from itself; a client asks it of the server. Default `false`.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message. A server requests it of the
    /// client; a client announces it. Default `false`.
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window (as a power of two, 9 to 15) the server compresses with.
    /// Default 15 (32 KiB).
    pub server_max_window_bits: u8,
    /// The largest LZ77 window (9 to 15) the client compresses with. Default 15.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_size: 32,
            level: 1,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateConfig {
    /// Neither offers nor accepts compression.
    ///
    /// ```
    /// assert!(!unisock::DeflateConfig::disabled().enabled);
    /// ```
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Sets [`DeflateConfig::min_size`].
    ///
    /// ```
    /// assert_eq!(unisock::DeflateConfig::default().min_size(0).min_size, 0);
    /// ```
    #[must_use]
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    /// Sets [`DeflateConfig::level`] (clamped to 0..=9).
    ///
    /// ```
    /// assert_eq!(unisock::DeflateConfig::default().level(12).level, 9);
    /// ```
    #[must_use]
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets [`DeflateConfig::server_no_context_takeover`].
    ///
    /// ```
    /// assert!(unisock::DeflateConfig::default().server_no_context_takeover(true).server_no_context_takeover);
    /// ```
    #[must_use]
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets [`DeflateConfig::client_no_context_takeover`].
    ///
    /// ```
    /// assert!(unisock::DeflateConfig::default().client_no_context_takeover(true).client_no_context_takeover);
    /// ```
    #[must_use]
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets [`DeflateConfig::server_max_window_bits`] (clamped to 9..=15).
    ///
    /// ```
    /// assert_eq!(unisock::DeflateConfig::default().server_max_window_bits(8).server_max_window_bits, 9);
    /// ```
    #[must_use]
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// Sets [`DeflateConfig::client_max_window_bits`] (clamped to 9..=15).
    ///
    /// ```
    /// assert_eq!(unisock::DeflateConfig::default().client_max_window_bits(10).client_max_window_bits, 10);
    /// ```
    #[must_use]
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(9, 15);
        self
    }
}

//! Resumable delivery: rooms whose every message reaches a client once and in order, or is
//! reported missing in a [`Gap`] with its exact range. Never silence.
//!
//! It is opt-in, through the `unisock.v1` subprotocol ([`SUBPROTOCOL`]). A server room
//! (natively, `Rooms`) gives each published message a [`Position`]: the room's epoch and a
//! dense offset. A [`RoomClient`] (both targets) keeps the last position of each room it
//! joined and presents it on every (re)connection; the server answers with the messages
//! it missed, in order, then live ones, or with a gap when some are gone: trimmed from a
//! bounded history, expired, or from another epoch (the server restarted). The client
//! drops anything at or below what it holds, so a replay never shows twice, and a hole on
//! the live feed makes it ask for a resume at once.
//!
//! Peers that do not offer the subprotocol are untouched: their sockets behave as
//! without it.
//!
//! The parts with no I/O are public for other drivers and for tests: [`wire`] (the frames),
//! [`History`] (one process's rings) and [`Tracker`] (the client's positions).

mod client;
mod history;
mod merge;
mod tracker;
pub mod wire;

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
mod redis;
#[cfg(not(target_arch = "wasm32"))]
mod rooms;

pub use client::RoomClient;
pub use history::{History, HistoryLimits, Replay};
pub use merge::{Handover, HistoryRead, Merged};
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
pub use redis::RedisRooms;
#[cfg(not(target_arch = "wasm32"))]
pub use rooms::Rooms;
pub use tracker::{Delivery, Tracker};

/// The subprotocol that turns resumable delivery on, offered by the client and selected
/// by the server.
///
/// ```
/// assert_eq!(unisock::resume::SUBPROTOCOL, "unisock.v1");
/// ```
pub const SUBPROTOCOL: &str = "unisock.v1";

/// Where a message sits in its room: the room history's epoch and a dense offset from 1.
/// Offset 0 is "before the first message".
///
/// ```
/// use unisock::resume::Position;
/// let at = Position { epoch: 1, offset: 42 };
/// assert_eq!(at.to_string(), "1:42");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The life of the room's history: a new one starts when history is lost.
    pub epoch: u64,
    /// The message's offset in the room, from 1.
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

/// Why messages a client missed are gone.
///
/// ```
/// use unisock::resume::GapReason;
/// assert_eq!(GapReason::Expired.as_str(), "expired");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// Dropped to keep the history within its count or byte bounds.
    Trimmed,
    /// Older than the history keeps messages.
    Expired,
    /// The history was lost (a server restart, a flushed store): a new epoch began.
    NewEpoch,
}

impl GapReason {
    /// Its name on the wire and in logs.
    ///
    /// ```
    /// assert_eq!(unisock::resume::GapReason::NewEpoch.as_str(), "epoch");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Trimmed => "trimmed",
            GapReason::Expired => "expired",
            GapReason::NewEpoch => "epoch",
        }
    }

    fn parse(word: &str) -> Option<GapReason> {
        match word {
            "trimmed" => Some(GapReason::Trimmed),
            "expired" => Some(GapReason::Expired),
            "epoch" => Some(GapReason::NewEpoch),
            _ => None,
        }
    }
}

/// Messages of a room that will never be delivered: offsets `from..=to` of `epoch`, or,
/// with `to: None`, every offset from `from` on in an epoch that has ended (how many is
/// unknown).
///
/// ```
/// use unisock::resume::{Gap, GapReason};
/// let gap = Gap { room: "lobby".into(), reason: GapReason::Trimmed, epoch: 1, from: 4, to: Some(9) };
/// assert_eq!(gap.missed(), Some(6));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The room.
    pub room: String,
    /// Why they are gone.
    pub reason: GapReason,
    /// The epoch the offsets belong to.
    pub epoch: u64,
    /// The first missing offset.
    pub from: u64,
    /// The last missing offset, if known.
    pub to: Option<u64>,
}

impl Gap {
    /// How many messages are missing, if known.
    ///
    /// ```
    /// use unisock::resume::{Gap, GapReason};
    /// let gap = Gap { room: "r".into(), reason: GapReason::NewEpoch, epoch: 1, from: 4, to: None };
    /// assert_eq!(gap.missed(), None);
    /// ```
    #[must_use]
    pub fn missed(&self) -> Option<u64> {
        self.to.map(|to| to + 1 - self.from)
    }
}

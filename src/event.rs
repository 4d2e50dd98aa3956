//! The events a socket reports: [`MsgEvent`], [`CloseEvent`], and its [`ReadyState`].
//! Shared by both backends.

use std::fmt;

/// One whole message received from the peer: text or binary.
///
/// Fragmented messages are reassembled first, so a handler sees one event per message.
///
/// ```
/// use unisock::MsgEvent;
/// let m = MsgEvent::Text("hi".into());
/// assert_eq!(m.txt(), Some("hi"));
/// assert_eq!(m.buf(), None);
/// assert_eq!(m.to_string(), "Text - hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgEvent {
    /// A text message (valid UTF-8, checked).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl MsgEvent {
    /// The text, if this is a text message.
    ///
    /// ```
    /// assert_eq!(unisock::MsgEvent::Binary(vec![1]).txt(), None);
    /// ```
    pub fn txt(&self) -> Option<&str> {
        match self {
            MsgEvent::Text(t) => Some(t),
            MsgEvent::Binary(_) => None,
        }
    }

    /// The bytes, if this is a binary message.
    ///
    /// ```
    /// assert_eq!(unisock::MsgEvent::Binary(vec![1]).buf(), Some(&[1u8][..]));
    /// ```
    pub fn buf(&self) -> Option<&[u8]> {
        match self {
            MsgEvent::Text(_) => None,
            MsgEvent::Binary(b) => Some(b),
        }
    }

    /// The payload length in bytes.
    ///
    /// ```
    /// assert_eq!(unisock::MsgEvent::Text("héllo".into()).len(), 6);
    /// ```
    pub fn len(&self) -> usize {
        match self {
            MsgEvent::Text(t) => t.len(),
            MsgEvent::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    ///
    /// ```
    /// assert!(unisock::MsgEvent::Text(String::new()).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for MsgEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgEvent::Text(t) => write!(f, "Text - {t}"),
            MsgEvent::Binary(b) => write!(f, "Binary - {} bytes", b.len()),
        }
    }
}

/// How a connection ended, as the W3C `CloseEvent` reports it.
///
/// `code` is the peer's close code (1005 when its close frame had none, 1006 when the
/// connection dropped without a close frame).
///
/// ```
/// use unisock::CloseEvent;
/// let e = CloseEvent { code: 1000, reason: "bye".into(), was_clean: true };
/// assert_eq!(e.to_string(), "Clean close - 1000: bye");
/// let e = CloseEvent { code: 1006, reason: String::new(), was_clean: false };
/// assert_eq!(e.to_string(), "Unclean close - 1006");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseEvent {
    /// The close code.
    pub code: u16,
    /// The close reason (may be empty).
    pub reason: String,
    /// Whether the closing handshake completed.
    pub was_clean: bool,
}

impl fmt::Display for CloseEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.was_clean {
            "Clean close"
        } else {
            "Unclean close"
        })?;
        write!(f, " - {}", self.code)?;
        let reason = self.reason.trim();
        // Browsers stringify a missing reason as "null" (the original suppressed it too).
        if !reason.is_empty() && reason != "null" {
            write!(f, ": {reason}")?;
        }
        Ok(())
    }
}

/// The state of a connection. The order matters: `Connecting < Open < Closing < Closed`.
///
/// ```
/// use unisock::ReadyState;
/// assert!(ReadyState::Open < ReadyState::Closing);
/// assert_eq!(ReadyState::from_u16(3), Some(ReadyState::Closed));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ReadyState {
    /// Not yet connected (before `open`/`upgrade` completed).
    Connecting = 0,
    /// Connected; messages can be sent and received.
    Open = 1,
    /// A close frame was sent or received; the closing handshake is under way.
    Closing = 2,
    /// The connection is closed.
    Closed = 3,
}

impl ReadyState {
    /// Maps the W3C numeric `readyState` (0..=3) to the enum.
    ///
    /// ```
    /// assert_eq!(unisock::ReadyState::from_u16(9), None);
    /// ```
    pub fn from_u16(v: u16) -> Option<Self> {
        match v {
            0 => Some(Self::Connecting),
            1 => Some(Self::Open),
            2 => Some(Self::Closing),
            3 => Some(Self::Closed),
            _ => None,
        }
    }
}

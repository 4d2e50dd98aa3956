//! The `unisock.v1` frames: one WebSocket message each, an ASCII header line, then the
//! payload.
//!
//! | from | header | meaning |
//! |---|---|---|
//! | server | `m ROOM EPOCH OFFSET` | a room message; the payload follows the newline |
//! | server | `p ROOM EPOCH OFFSET` | joined with no position: live starts after OFFSET |
//! | server | `g ROOM REASON EPOCH OFFSET` | continue at (EPOCH, OFFSET): what lies between the client's position and it is lost |
//! | client | `j ROOM` / `j ROOM EPOCH OFFSET` | join live / resume after (EPOCH, OFFSET) |
//! | client | `l ROOM` | leave |
//! | client | `s` | an application message to the server; the payload follows |
//!
//! A payload keeps its message's kind: a binary message carries binary data after its
//! header line, a text message text, and a frame without a payload is a text message.
//! Numbers are decimal `u64` without leading zeros; a room is 1 to [`MAX_ROOM_LEN`] bytes
//! of UTF-8 without whitespace or control characters.

use std::fmt::Write as _;

use crate::MsgEvent;

use super::{GapReason, Position};

/// The longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 200;

/// One `unisock.v1` frame, either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Server: a room message at `at`.
    Message {
        /// The room.
        room: String,
        /// Where it sits in the room's history.
        at: Position,
        /// The application's message.
        payload: MsgEvent,
    },
    /// Server: the answer to a join with no position; live messages follow `at`.
    Joined {
        /// The room.
        room: String,
        /// The room's head when the socket joined.
        at: Position,
    },
    /// Server: the client continues at `at`; what lies between its position and `at` is
    /// lost, for `reason`.
    Gap {
        /// The room.
        room: String,
        /// Why the messages are gone.
        reason: GapReason,
        /// The position the client continues from.
        at: Position,
    },
    /// Client: join a room, live only (`since: None`) or resuming after `since`.
    Join {
        /// The room.
        room: String,
        /// The last position the client holds, if any.
        since: Option<Position>,
    },
    /// Client: leave a room.
    Leave {
        /// The room.
        room: String,
    },
    /// Client: an application message for the server.
    Send {
        /// The message.
        payload: MsgEvent,
    },
}

/// Why a message is not a `unisock.v1` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub &'static str);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a unisock.v1 frame: {}", self.0)
    }
}

impl std::error::Error for FrameError {}

/// Whether `room` is a valid room name.
///
/// ```
/// use unisock::resume::wire::valid_room;
/// assert!(valid_room("lobby"));
/// assert!(!valid_room("two words"));
/// assert!(!valid_room(""));
/// ```
#[must_use]
pub fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && !room.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Frame {
    /// The message that carries this frame.
    ///
    /// ```
    /// use unisock::resume::wire::Frame;
    /// use unisock::resume::Position;
    /// use unisock::MsgEvent;
    ///
    /// let frame = Frame::Message {
    ///     room: "lobby".into(),
    ///     at: Position { epoch: 7, offset: 3 },
    ///     payload: MsgEvent::Text("hi".into()),
    /// };
    /// assert_eq!(frame.encode(), MsgEvent::Text("m lobby 7 3\nhi".into()));
    /// assert_eq!(Frame::decode(frame.encode())?, frame);
    /// # Ok::<(), unisock::resume::wire::FrameError>(())
    /// ```
    #[must_use]
    pub fn encode(&self) -> MsgEvent {
        let mut head = String::new();
        // Writing to a String cannot fail.
        let _ = match self {
            Frame::Message { room, at, .. } => write!(head, "m {room} {} {}", at.epoch, at.offset),
            Frame::Joined { room, at } => write!(head, "p {room} {} {}", at.epoch, at.offset),
            Frame::Gap { room, reason, at } => {
                write!(
                    head,
                    "g {room} {} {} {}",
                    reason.as_str(),
                    at.epoch,
                    at.offset
                )
            }
            Frame::Join { room, since: None } => write!(head, "j {room}"),
            Frame::Join {
                room,
                since: Some(at),
            } => write!(head, "j {room} {} {}", at.epoch, at.offset),
            Frame::Leave { room } => write!(head, "l {room}"),
            Frame::Send { .. } => write!(head, "s"),
        };
        head.push('\n');
        match self {
            Frame::Message { payload, .. } | Frame::Send { payload } => with_payload(head, payload),
            _ => MsgEvent::Text(head),
        }
    }

    /// The message carrying room message `payload` at `at` in `room`: what
    /// `Frame::Message { .. }.encode()` gives, without taking the payload.
    ///
    /// ```
    /// use unisock::resume::{wire::Frame, Position};
    /// use unisock::MsgEvent;
    /// let at = Position { epoch: 1, offset: 2 };
    /// let bytes = MsgEvent::Binary(vec![1, 2]);
    /// assert_eq!(Frame::message("r", at, &bytes), MsgEvent::Binary(b"m r 1 2\n\x01\x02".to_vec()));
    /// ```
    #[must_use]
    pub fn message(room: &str, at: Position, payload: &MsgEvent) -> MsgEvent {
        with_payload(format!("m {room} {} {}\n", at.epoch, at.offset), payload)
    }

    /// Reads a frame from a received message.
    ///
    /// # Errors
    /// [`FrameError`] when the message is not a well-formed frame: an unknown kind, a bad
    /// room or number, a missing newline, or a payload on a frame that has none.
    ///
    /// ```
    /// use unisock::resume::wire::Frame;
    /// use unisock::MsgEvent;
    /// assert!(Frame::decode(MsgEvent::Text("hello".into())).is_err());
    /// ```
    pub fn decode(msg: MsgEvent) -> Result<Frame, FrameError> {
        let bytes: &[u8] = match &msg {
            MsgEvent::Text(t) => t.as_bytes(),
            MsgEvent::Binary(b) => b,
        };
        let newline = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(FrameError("no header line"))?;
        let head = std::str::from_utf8(&bytes[..newline])
            .map_err(|_| FrameError("header is not UTF-8"))?;
        let mut words = head.split(' ');
        let kind = words.next().unwrap_or_default();
        let words: Vec<&str> = words.collect();
        let has_payload = matches!(kind, "m" | "s");
        if !has_payload && newline + 1 != bytes.len() {
            return Err(FrameError("a payload after a frame that has none"));
        }
        // One encoding per frame: only a payload may make it binary.
        if !has_payload && matches!(msg, MsgEvent::Binary(_)) {
            return Err(FrameError("a frame without a payload in a binary message"));
        }
        let frame = match (kind, words.as_slice()) {
            ("m", [room, epoch, offset]) => Frame::Message {
                room: room_name(room)?,
                at: position(epoch, offset)?,
                payload: MsgEvent::Text(String::new()), // replaced below
            },
            ("p", [room, epoch, offset]) => Frame::Joined {
                room: room_name(room)?,
                at: position(epoch, offset)?,
            },
            ("g", [room, reason, epoch, offset]) => Frame::Gap {
                room: room_name(room)?,
                reason: GapReason::parse(reason).ok_or(FrameError("unknown gap reason"))?,
                at: position(epoch, offset)?,
            },
            ("j", [room]) => Frame::Join {
                room: room_name(room)?,
                since: None,
            },
            ("j", [room, epoch, offset]) => Frame::Join {
                room: room_name(room)?,
                since: Some(position(epoch, offset)?),
            },
            ("l", [room]) => Frame::Leave {
                room: room_name(room)?,
            },
            ("s", []) => Frame::Send {
                payload: MsgEvent::Text(String::new()), // replaced below
            },
            _ => return Err(FrameError("unknown frame or wrong number of fields")),
        };
        Ok(match frame {
            Frame::Message { room, at, .. } => Frame::Message {
                room,
                at,
                payload: payload_after(msg, newline + 1),
            },
            Frame::Send { .. } => Frame::Send {
                payload: payload_after(msg, newline + 1),
            },
            other => other,
        })
    }
}

/// `head` followed by the payload, as a message of the payload's kind.
fn with_payload(head: String, payload: &MsgEvent) -> MsgEvent {
    match payload {
        MsgEvent::Text(t) => MsgEvent::Text(head + t),
        MsgEvent::Binary(b) => {
            let mut out = Vec::with_capacity(head.len() + b.len());
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(b);
            MsgEvent::Binary(out)
        }
    }
}

/// The payload of `msg` from byte `start` on (just after the header's ASCII newline, so a
/// text message splits on a character boundary).
fn payload_after(msg: MsgEvent, start: usize) -> MsgEvent {
    match msg {
        MsgEvent::Text(mut t) => MsgEvent::Text(t.split_off(start)),
        MsgEvent::Binary(mut b) => MsgEvent::Binary(b.split_off(start)),
    }
}

fn room_name(word: &str) -> Result<String, FrameError> {
    if valid_room(word) {
        Ok(word.to_string())
    } else {
        Err(FrameError("bad room name"))
    }
}

fn position(epoch: &str, offset: &str) -> Result<Position, FrameError> {
    Ok(Position {
        epoch: number(epoch)?,
        offset: number(offset)?,
    })
}

fn number(word: &str) -> Result<u64, FrameError> {
    // Plain digits, no leading zero (one encoding per number): `u64::from_str` would also
    // take a leading `+` or `0`.
    let leading_zero = word.len() > 1 && word.starts_with('0');
    if word.is_empty()
        || word.len() > 20
        || leading_zero
        || !word.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(FrameError("bad number"));
    }
    word.parse().map_err(|_| FrameError("number out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, offset: u64) -> Position {
        Position { epoch, offset }
    }

    #[test]
    fn every_frame_round_trips() {
        let frames = [
            Frame::Message {
                room: "lobby".into(),
                at: at(1, 2),
                payload: MsgEvent::Binary(vec![0, b'\n', 255]),
            },
            Frame::Message {
                room: "пт".into(),
                at: at(u64::MAX, 0),
                payload: MsgEvent::Text("a\nb é".into()),
            },
            Frame::Joined {
                room: "r".into(),
                at: at(3, 0),
            },
            Frame::Gap {
                room: "r".into(),
                reason: GapReason::Expired,
                at: at(3, 9),
            },
            Frame::Gap {
                room: "r".into(),
                reason: GapReason::NewEpoch,
                at: at(4, 0),
            },
            Frame::Join {
                room: "r".into(),
                since: None,
            },
            Frame::Join {
                room: "r".into(),
                since: Some(at(5, 6)),
            },
            Frame::Leave { room: "r".into() },
            Frame::Send {
                payload: MsgEvent::Text(String::new()),
            },
        ];
        for frame in frames {
            assert_eq!(
                Frame::decode(frame.encode()),
                Ok(frame.clone()),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        for text in [
            "",
            "m lobby 1 2",                      // no newline
            "m lobby 1\nx",                     // missing offset
            "m lobby 1 2 3\nx",                 // one field too many
            "m lobby +1 2\n",                   // sign
            "m lobby 1 99999999999999999999\n", // over u64
            "m  1 2\n",                         // empty room
            "p lobby 1 2\nextra",               // payload where none belongs
            "g lobby lost 1 2\n",               // unknown reason
            "j\n",
            "x lobby\n",
            "s extra\n",
        ] {
            assert!(
                Frame::decode(MsgEvent::Text(text.into())).is_err(),
                "{text:?}"
            );
        }
        assert!(Frame::decode(MsgEvent::Binary(vec![b'm', 0xff, b'\n'])).is_err());
        assert!(Frame::decode(MsgEvent::Binary(b"l lobby\n".to_vec())).is_err());
        let long = format!("l {}\n", "r".repeat(MAX_ROOM_LEN + 1));
        assert!(Frame::decode(MsgEvent::Text(long)).is_err());
    }
}

//! The client's side of resumable delivery, with no I/O: the position held in each joined
//! room, what to deliver, what to drop as already seen, and when to ask for a resume.

use std::collections::BTreeMap;

use crate::MsgEvent;

use super::wire::Frame;
use super::{Gap, GapReason, Position};

/// What the application is told, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A room message, exactly once and in order.
    Message {
        /// The room.
        room: String,
        /// Its position.
        at: Position,
        /// The application's message.
        payload: MsgEvent,
    },
    /// Messages that will never come.
    Gap(Gap),
}

#[derive(Debug, Clone, Default)]
struct RoomState {
    /// The last position delivered (or skipped by a gap); `None` until the server says
    /// where a fresh join starts.
    at: Option<Position>,
    /// A resume was asked for and not yet answered: messages out of order are dropped
    /// (the replay brings them).
    resuming: bool,
}

/// Positions per joined room; turns received frames into deliveries, exactly once and in
/// order, or gaps with their exact range.
///
/// ```
/// use unisock::resume::{wire::Frame, Delivery, Position, Tracker};
/// use unisock::MsgEvent;
///
/// let mut tracker = Tracker::default();
/// let join = tracker.join("lobby");
/// assert_eq!(join, Frame::Join { room: "lobby".into(), since: None });
/// let at = |offset| Position { epoch: 1, offset };
/// tracker.receive(Frame::Joined { room: "lobby".into(), at: at(4) });
/// let msg = |offset| Frame::Message { room: "lobby".into(), at: at(offset), payload: MsgEvent::Text("hi".into()) };
/// let (delivered, ask) = tracker.receive(msg(5));
/// assert_eq!(delivered.len(), 1);
/// let (again, _) = tracker.receive(msg(5));
/// assert!(again.is_empty()); // a duplicate
/// let (held, ask) = tracker.receive(msg(7)); // 6 is missing: resume at once
/// assert!(held.is_empty());
/// assert_eq!(ask, Some(Frame::Join { room: "lobby".into(), since: Some(at(5)) }));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    rooms: BTreeMap<String, RoomState>,
    inbox: Inbox,
}

/// The client's own room, which only the server names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Inbox {
    #[default]
    None,
    /// Asked for, not named yet.
    Asked,
    Named(String),
}

/// The room name that asks the server for an inbox: the answer names it (`@` and 32 hex
/// digits).
pub(super) const NEW_INBOX: &str = "@";

impl Tracker {
    /// Joins `room` (keeping a position already held) and returns the frame to send.
    ///
    /// ```
    /// let mut tracker = unisock::resume::Tracker::default();
    /// tracker.join("r");
    /// assert_eq!(tracker.rooms(), ["r"]);
    /// ```
    pub fn join(&mut self, room: &str) -> Frame {
        let state = self.rooms.entry(room.to_string()).or_default();
        state.resuming = false;
        Frame::Join {
            room: room.to_string(),
            since: state.at,
        }
    }

    /// Joins `room` holding `at` (a position kept across a page reload, say).
    ///
    /// ```
    /// use unisock::resume::{wire::Frame, Position, Tracker};
    /// let mut tracker = Tracker::default();
    /// let at = Position { epoch: 3, offset: 10 };
    /// assert_eq!(tracker.join_at("r", at), Frame::Join { room: "r".into(), since: Some(at) });
    /// ```
    pub fn join_at(&mut self, room: &str, at: Position) -> Frame {
        self.rooms.insert(
            room.to_string(),
            RoomState {
                at: Some(at),
                resuming: false,
            },
        );
        self.join(room)
    }

    /// Asks the server for an inbox: a room of this client's own, which the server names
    /// and sends to ([`Rooms::send_to`](super::Rooms::send_to)), kept across reconnects
    /// like any room. Returns the frame to send; nothing if it has one already.
    ///
    /// ```
    /// use unisock::resume::{wire::Frame, Position, Tracker};
    /// let mut tracker = Tracker::default();
    /// assert_eq!(tracker.join_inbox(), Some(Frame::Join { room: "@".into(), since: None }));
    /// let name = format!("@{}", "0".repeat(32));
    /// tracker.receive(Frame::Joined { room: name.clone(), at: Position { epoch: 1, offset: 0 } });
    /// assert_eq!(tracker.inbox(), Some(name.as_str()));
    /// assert_eq!(tracker.join_inbox(), None);
    /// ```
    pub fn join_inbox(&mut self) -> Option<Frame> {
        match self.inbox {
            Inbox::Named(_) => None,
            Inbox::None | Inbox::Asked => {
                self.inbox = Inbox::Asked;
                Some(Frame::Join {
                    room: NEW_INBOX.to_string(),
                    since: None,
                })
            }
        }
    }

    /// The inbox's name, once the server gave it.
    ///
    /// ```
    /// assert_eq!(unisock::resume::Tracker::default().inbox(), None);
    /// ```
    #[must_use]
    pub fn inbox(&self) -> Option<&str> {
        match &self.inbox {
            Inbox::Named(name) => Some(name),
            _ => None,
        }
    }

    /// Leaves `room`, forgetting its position; the frame to send if it was joined.
    ///
    /// ```
    /// let mut tracker = unisock::resume::Tracker::default();
    /// assert!(tracker.leave("r").is_none());
    /// ```
    pub fn leave(&mut self, room: &str) -> Option<Frame> {
        if self.inbox() == Some(room) {
            self.inbox = Inbox::None;
        }
        self.rooms.remove(room).map(|_| Frame::Leave {
            room: room.to_string(),
        })
    }

    /// The joined rooms.
    ///
    /// ```
    /// assert!(unisock::resume::Tracker::default().rooms().is_empty());
    /// ```
    #[must_use]
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// The position held in `room`.
    ///
    /// ```
    /// assert_eq!(unisock::resume::Tracker::default().position("r"), None);
    /// ```
    #[must_use]
    pub fn position(&self, room: &str) -> Option<Position> {
        self.rooms.get(room).and_then(|s| s.at)
    }

    /// The joins to send on every (re)connection: each room with the position held.
    ///
    /// ```
    /// let mut tracker = unisock::resume::Tracker::default();
    /// tracker.join("a");
    /// assert_eq!(tracker.rejoin().len(), 1);
    /// ```
    pub fn rejoin(&mut self) -> Vec<Frame> {
        let rooms = self.rooms();
        let mut frames: Vec<Frame> = rooms.iter().map(|room| self.join(room)).collect();
        if self.inbox == Inbox::Asked {
            frames.extend(self.join_inbox()); // the answer was lost with the connection
        }
        frames
    }

    /// Takes a frame from the server: what to deliver, in order, and a frame to send back
    /// (a resume, when a hole shows on the live feed).
    ///
    /// ```
    /// use unisock::resume::{wire::Frame, Tracker};
    /// let mut tracker = Tracker::default();
    /// let (delivered, ask) = tracker.receive(Frame::Leave { room: "r".into() });
    /// assert!(delivered.is_empty() && ask.is_none()); // not a server frame
    /// ```
    pub fn receive(&mut self, frame: Frame) -> (Vec<Delivery>, Option<Frame>) {
        match frame {
            Frame::Message { room, at, payload } => self.message(room, at, payload),
            Frame::Joined { room, at } => {
                if let Some(state) = self.rooms.get_mut(&room) {
                    state.at.get_or_insert(at);
                } else if self.inbox == Inbox::Asked && room.starts_with('@') {
                    self.rooms.insert(
                        room.clone(),
                        RoomState {
                            at: Some(at),
                            resuming: false,
                        },
                    );
                    self.inbox = Inbox::Named(room);
                }
                (Vec::new(), None)
            }
            Frame::Gap { room, reason, at } => (self.gap(&room, reason, at), None),
            Frame::Join { .. } | Frame::Leave { .. } | Frame::Send { .. } => (Vec::new(), None),
        }
    }

    fn message(
        &mut self,
        room: String,
        at: Position,
        payload: MsgEvent,
    ) -> (Vec<Delivery>, Option<Frame>) {
        let Some(state) = self.rooms.get_mut(&room) else {
            return (Vec::new(), None);
        };
        let next = match state.at {
            None => true, // no baseline yet: this message is one
            Some(held) => held.epoch == at.epoch && held.offset.checked_add(1) == Some(at.offset),
        };
        if next {
            state.at = Some(at);
            state.resuming = false;
            return (vec![Delivery::Message { room, at, payload }], None);
        }
        let seen = state
            .at
            .is_some_and(|held| held.epoch == at.epoch && at.offset <= held.offset);
        if seen || state.resuming {
            return (Vec::new(), None);
        }
        state.resuming = true;
        let since = state.at;
        (Vec::new(), Some(Frame::Join { room, since }))
    }

    fn gap(&mut self, room: &str, reason: GapReason, at: Position) -> Vec<Delivery> {
        let Some(state) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let Some(held) = state.at else {
            state.at = Some(at); // a fresh client has lost nothing
            return Vec::new();
        };
        let gap = |epoch, from, to| {
            Delivery::Gap(Gap {
                room: room.to_string(),
                reason,
                epoch,
                from,
                to,
            })
        };
        let mut out = Vec::new();
        if held.epoch == at.epoch {
            if at.offset <= held.offset {
                return out; // already past it
            }
            out.push(gap(at.epoch, held.offset + 1, Some(at.offset)));
        } else {
            out.push(gap(held.epoch, held.offset.saturating_add(1), None));
            if at.offset > 0 {
                out.push(gap(at.epoch, 1, Some(at.offset)));
            }
        }
        state.at = Some(at);
        state.resuming = false;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "r";

    fn msg(epoch: u64, offset: u64) -> Frame {
        Frame::Message {
            room: ROOM.into(),
            at: Position { epoch, offset },
            payload: MsgEvent::Binary(offset.to_be_bytes().to_vec()),
        }
    }

    // proptest is a native dev-dependency; the wasm build runs the plain tests below.
    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn server_frame() -> impl Strategy<Value = Frame> {
            let at = (0u64..3, 0u64..12).prop_map(|(epoch, offset)| Position { epoch, offset });
            prop_oneof![
                6 => at.clone().prop_map(|at| msg(at.epoch, at.offset)),
                1 => at.clone().prop_map(|at| Frame::Joined { room: ROOM.into(), at }),
                1 => (at, prop_oneof![Just(GapReason::Trimmed), Just(GapReason::NewEpoch)])
                    .prop_map(|(at, reason)| Frame::Gap { room: ROOM.into(), reason, at }),
            ]
        }

        proptest! {
            /// Whatever the server sends, in whatever order and however often, the application
            /// sees each position at most once, in order, and every position it skips inside
            /// an epoch in exactly one gap.
            #[test]
            fn deliveries_are_in_order_once_and_gaps_cover_the_rest(
                frames in proptest::collection::vec(server_frame(), 0..60),
                start in proptest::option::of((0u64..3, 0u64..12)),
            ) {
                let mut tracker = Tracker::default();
                match start {
                    Some((epoch, offset)) => { tracker.join_at(ROOM, Position { epoch, offset }); }
                    None => { tracker.join(ROOM); }
                }
                // The last position accounted for (delivered or covered by a gap).
                let mut last: Option<Position> = start.map(|(epoch, offset)| Position { epoch, offset });
                for frame in frames {
                    let (delivered, _) = tracker.receive(frame);
                    for d in delivered {
                        match d {
                            Delivery::Message { at, payload, .. } => {
                                prop_assert_eq!(payload, MsgEvent::Binary(at.offset.to_be_bytes().to_vec()));
                                if let Some(prev) = last {
                                    prop_assert_eq!((at.epoch, at.offset), (prev.epoch, prev.offset + 1));
                                }
                                last = Some(at);
                            }
                            Delivery::Gap(gap) => {
                                let prev = last.expect("a gap only follows a position");
                                match gap.to {
                                    Some(to) => {
                                        prop_assert!(gap.from <= to);
                                        if gap.epoch == prev.epoch {
                                            prop_assert_eq!(gap.from, prev.offset + 1);
                                        } else {
                                            prop_assert_eq!(gap.from, 1);
                                        }
                                        last = Some(Position { epoch: gap.epoch, offset: to });
                                    }
                                    None => {
                                        // The rest of the old epoch; the new one starts at 0.
                                        prop_assert_eq!((gap.epoch, gap.from), (prev.epoch, prev.offset + 1));
                                        last = tracker.position(ROOM).map(|p| Position { epoch: p.epoch, offset: 0 });
                                    }
                                }
                            }
                        }
                    }
                    if last.is_none() {
                        last = tracker.position(ROOM); // a fresh join's starting point
                    }
                    if let (Some(held), Some(l)) = (tracker.position(ROOM), last) {
                        prop_assert_eq!(held, l);
                    }
                }
            }
        }
    }

    #[test]
    fn a_hole_asks_for_one_resume_and_the_replay_fills_it() {
        let mut tracker = Tracker::default();
        tracker.join_at(
            ROOM,
            Position {
                epoch: 1,
                offset: 2,
            },
        );
        let (d, ask) = tracker.receive(msg(1, 4));
        assert!(d.is_empty());
        assert!(matches!(
            ask,
            Some(Frame::Join {
                since: Some(Position {
                    epoch: 1,
                    offset: 2
                }),
                ..
            })
        ));
        // More live messages while the resume is on its way: dropped, not asked again.
        assert_eq!(tracker.receive(msg(1, 5)), (vec![], None));
        for offset in 3..=5 {
            assert_eq!(tracker.receive(msg(1, offset)).0.len(), 1);
        }
        assert_eq!(tracker.receive(msg(1, 6)).0.len(), 1);
    }

    #[test]
    fn a_new_epoch_reports_the_unknown_rest_and_the_lost_start() {
        let mut tracker = Tracker::default();
        tracker.join_at(
            ROOM,
            Position {
                epoch: 1,
                offset: 9,
            },
        );
        let (d, _) = tracker.receive(Frame::Gap {
            room: ROOM.into(),
            reason: GapReason::NewEpoch,
            at: Position {
                epoch: 2,
                offset: 3,
            },
        });
        let gaps: Vec<_> = d
            .into_iter()
            .map(|d| match d {
                Delivery::Gap(g) => (g.epoch, g.from, g.to),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(gaps, [(1, 10, None), (2, 1, Some(3))]);
        assert_eq!(tracker.receive(msg(2, 4)).0.len(), 1);
    }

    #[test]
    fn the_inbox_is_named_by_the_server_and_rejoined_like_a_room() {
        let mut tracker = Tracker::default();
        tracker.join_inbox();
        // A Joined for a room nobody asked for is not an inbox.
        let stray = Frame::Joined {
            room: "lobby".into(),
            at: Position {
                epoch: 1,
                offset: 0,
            },
        };
        tracker.receive(stray);
        assert_eq!(tracker.inbox(), None);
        // Lost with the connection: asked again on the next.
        assert_eq!(
            tracker.rejoin(),
            [Frame::Join {
                room: NEW_INBOX.into(),
                since: None
            }]
        );
        tracker.receive(Frame::Joined {
            room: "@ab".into(),
            at: Position {
                epoch: 1,
                offset: 0,
            },
        });
        assert_eq!(tracker.inbox(), Some("@ab"));
        let m = Frame::Message {
            room: "@ab".into(),
            at: Position {
                epoch: 1,
                offset: 1,
            },
            payload: MsgEvent::Text("psst".into()),
        };
        assert_eq!(tracker.receive(m).0.len(), 1);
        assert_eq!(
            tracker.rejoin(),
            [Frame::Join {
                room: "@ab".into(),
                since: Some(Position {
                    epoch: 1,
                    offset: 1
                })
            }]
        );
    }

    #[test]
    fn rooms_not_joined_are_ignored() {
        let mut tracker = Tracker::default();
        assert_eq!(tracker.receive(msg(1, 1)), (vec![], None));
        tracker.join(ROOM);
        tracker.leave(ROOM);
        assert_eq!(tracker.receive(msg(1, 1)), (vec![], None));
    }
}

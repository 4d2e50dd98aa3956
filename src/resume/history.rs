//! One process's room history: a ring per room, bounded by count, bytes and age, under one
//! byte cap for all rooms; and the replay a resuming client is owed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::MsgEvent;

use super::{GapReason, Position};

/// How much history a [`History`] keeps. A message goes when any bound is passed, oldest
/// first; a client resuming from before it gets a [`GapReason::Trimmed`] or
/// [`GapReason::Expired`] gap instead.
///
/// ```
/// use std::time::Duration;
/// use unisock::resume::HistoryLimits;
///
/// let limits = HistoryLimits { max_age: Duration::from_secs(30), ..HistoryLimits::default() };
/// assert_eq!(limits.max_messages, 1_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Messages kept per room (default 1,000).
    pub max_messages: usize,
    /// Payload bytes kept per room (default 1 MiB).
    pub max_bytes: usize,
    /// How long a message is kept (default 2 minutes, as Socket.IO's recovery).
    pub max_age: Duration,
    /// Payload bytes kept over all rooms (default 64 MiB); the oldest message of any room
    /// goes first.
    pub max_total_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_messages: 1_000,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(120),
            max_total_bytes: 64 << 20,
        }
    }
}

/// What a client resuming after a position is owed: a gap if some of what it missed is
/// gone, then the messages after that, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Where the client continues, and why, when messages it missed are gone.
    pub gap: Option<(GapReason, Position)>,
    /// The kept messages after the client's position (or after the gap), in order.
    pub messages: Vec<(Position, Arc<MsgEvent>)>,
    /// The room's head: the position of its last message.
    pub head: Position,
}

#[derive(Debug)]
struct Entry {
    offset: u64,
    at: Duration,
    payload: Arc<MsgEvent>,
}

#[derive(Debug)]
struct Log {
    /// The room's epoch: the history's own, or the store's for positions it assigned.
    epoch: u64,
    /// The offset of the room's last message (0 before the first).
    head: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Why the message just before the first kept one went.
    evicted: Option<GapReason>,
    /// In [`History::emptied`] (once, however often it empties).
    listed: bool,
}

impl Log {
    fn new(epoch: u64) -> Self {
        Log {
            epoch,
            head: 0,
            entries: VecDeque::new(),
            bytes: 0,
            evicted: None,
            listed: false,
        }
    }

    fn pop_front(&mut self, reason: GapReason) -> usize {
        let Some(entry) = self.entries.pop_front() else {
            return 0;
        };
        self.bytes -= entry.payload.len();
        self.evicted = Some(reason);
        entry.payload.len()
    }
}

/// The history of every room in one process, with no I/O and no clock: times are
/// durations since an origin the caller picks.
///
/// Offsets are dense per room and start at 1; the epoch names this history's life, so a
/// client holding a position from another life (a restarted process) is told so.
///
/// ```
/// use std::time::Duration;
/// use unisock::resume::{History, HistoryLimits, Position};
/// use unisock::MsgEvent;
///
/// let mut history = History::new(7, HistoryLimits::default());
/// let now = Duration::ZERO;
/// assert_eq!(history.append("lobby", MsgEvent::Text("a".into()), now), Position { epoch: 7, offset: 1 });
/// history.append("lobby", MsgEvent::Text("b".into()), now);
/// let replay = history.replay("lobby", Some(Position { epoch: 7, offset: 1 }), now);
/// assert_eq!(replay.gap, None);
/// assert_eq!(*replay.messages[0].1, MsgEvent::Text("b".into()));
/// ```
#[derive(Debug)]
pub struct History {
    epoch: u64,
    limits: HistoryLimits,
    rooms: HashMap<Arc<str>, Log>,
    /// Every kept message in append order, for the global cap and expiry, and some that
    /// their room's own bounds dropped since (`stale` of them), compacted when they are
    /// half: an idle room's old message at the front must not let a busy room's trimmed
    /// ones pile up behind it.
    order: VecDeque<(Arc<str>, u64)>,
    stale: usize,
    total_bytes: usize,
    /// Rooms left with no kept message since [`History::forget_emptied`] last ran.
    emptied: Vec<Arc<str>>,
    /// The epoch a room made now starts, by a hash of its name (empty until a room is
    /// forgotten: then all `epoch`): a room forgotten and made again must not give its
    /// offsets again in an epoch a client may hold.
    epochs: Vec<u64>,
}

/// Buckets of room names for the epochs of rooms made again (32 KiB once any is).
const EPOCH_BUCKETS: usize = 4096;

fn bucket(room: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    room.hash(&mut hasher);
    (hasher.finish() % EPOCH_BUCKETS as u64) as usize
}

impl History {
    /// An empty history for epoch `epoch`.
    ///
    /// ```
    /// let history = unisock::resume::History::new(1, Default::default());
    /// assert_eq!(history.bytes(), 0);
    /// ```
    #[must_use]
    pub fn new(epoch: u64, limits: HistoryLimits) -> Self {
        History {
            epoch,
            limits,
            rooms: HashMap::new(),
            order: VecDeque::new(),
            stale: 0,
            total_bytes: 0,
            emptied: Vec::new(),
            epochs: Vec::new(),
        }
    }

    /// This history's epoch.
    ///
    /// ```
    /// assert_eq!(unisock::resume::History::new(9, Default::default()).epoch(), 9);
    /// ```
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Payload bytes kept over all rooms.
    ///
    /// ```
    /// let mut history = unisock::resume::History::new(1, Default::default());
    /// history.append("r", unisock::MsgEvent::Binary(vec![0; 10]), Default::default());
    /// assert_eq!(history.bytes(), 10);
    /// ```
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.total_bytes
    }

    /// The position of `room`'s last message (offset 0 if it has none): for a room not
    /// kept, the epoch it starts when its first message comes.
    ///
    /// ```
    /// let history = unisock::resume::History::new(1, Default::default());
    /// assert_eq!(history.head("r").offset, 0);
    /// ```
    #[must_use]
    pub fn head(&self, room: &str) -> Position {
        match self.rooms.get(room) {
            Some(log) => Position {
                epoch: log.epoch,
                offset: log.head,
            },
            None => Position {
                epoch: self.new_epoch(room),
                offset: 0,
            },
        }
    }

    /// The epoch `room` starts if made now.
    fn new_epoch(&self, room: &str) -> u64 {
        match self.epochs.is_empty() {
            true => self.epoch,
            false => self.epochs[bucket(room)],
        }
    }

    /// Appends `payload` to `room` at time `now` and returns its position, dropping what
    /// the limits no longer allow.
    ///
    /// ```
    /// let mut history = unisock::resume::History::new(1, Default::default());
    /// let at = history.append("r", unisock::MsgEvent::Text("x".into()), Default::default());
    /// assert_eq!(at.offset, 1);
    /// ```
    pub fn append(
        &mut self,
        room: &str,
        payload: impl Into<Arc<MsgEvent>>,
        now: Duration,
    ) -> Position {
        let payload = payload.into();
        self.expire(now);
        let name = self.room(room);
        let at = self.head(room);
        let at = Position {
            epoch: at.epoch,
            offset: at.offset + 1,
        };
        self.push(name, at, payload, now);
        at
    }

    /// Keeps a message whose position a shared store assigned (a node's copy of a room's
    /// recent history). The next offset of the room's epoch is appended; a message from
    /// another epoch, or one past a hole, starts the room's copy again from it (what lay
    /// before is then not here: a replay from there reports a gap). Returns false for a
    /// position already kept or passed.
    ///
    /// ```
    /// use unisock::resume::{History, Position};
    /// let mut copy = History::new(0, Default::default());
    /// let at = Position { epoch: 5, offset: 40 };
    /// assert!(copy.insert("r", at, unisock::MsgEvent::Text("x".into()), Default::default()));
    /// assert_eq!(copy.head("r"), at);
    /// assert!(!copy.insert("r", at, unisock::MsgEvent::Text("x".into()), Default::default()));
    /// ```
    pub fn insert(
        &mut self,
        room: &str,
        at: Position,
        payload: impl Into<Arc<MsgEvent>>,
        now: Duration,
    ) -> bool {
        self.expire(now);
        let name = self.room(room);
        let Some(log) = self.rooms.get_mut(room) else {
            return false;
        };
        if log.epoch == at.epoch && at.offset <= log.head {
            return false;
        }
        if log.epoch != at.epoch || at.offset != log.head + 1 {
            // What lay before is not known here: a replay from there reports a gap, for the
            // caller to fill from the store.
            self.start(
                room,
                Position {
                    epoch: at.epoch,
                    offset: at.offset.saturating_sub(1),
                },
            );
        }
        self.push(name, at, payload.into(), now);
        true
    }

    /// Starts `room` again, empty, at `head` (where a store says it stands), unless that
    /// is already its head.
    ///
    /// ```
    /// use unisock::resume::{History, Position};
    /// let mut copy = History::new(0, Default::default());
    /// copy.start("r", Position { epoch: 4, offset: 9 });
    /// assert_eq!(copy.head("r"), Position { epoch: 4, offset: 9 });
    /// ```
    pub fn start(&mut self, room: &str, head: Position) {
        if self.head(room) == head && self.rooms.contains_key(room) {
            return;
        }
        self.room(room);
        if let Some(log) = self.rooms.get_mut(room) {
            self.total_bytes -= log.bytes;
            self.stale += log.entries.len();
            let listed = log.listed;
            *log = Log::new(head.epoch);
            log.head = head.offset;
            log.evicted = Some(GapReason::Trimmed);
            log.listed = listed;
        }
        self.list_if_empty(room);
    }

    /// The message kept at `at`, if it is.
    ///
    /// ```
    /// let mut history = unisock::resume::History::new(1, Default::default());
    /// let at = history.append("r", unisock::MsgEvent::Text("x".into()), Default::default());
    /// assert!(history.get("r", at).is_some());
    /// ```
    #[must_use]
    pub fn get(&self, room: &str, at: Position) -> Option<Arc<MsgEvent>> {
        let log = self.rooms.get(room).filter(|log| log.epoch == at.epoch)?;
        let first = log.entries.front()?.offset;
        let index = usize::try_from(at.offset.checked_sub(first)?).ok()?;
        log.entries.get(index).map(|e| e.payload.clone())
    }

    /// Forgets `room`, head and all (its copy here can no longer be trusted to be
    /// complete, or nobody needs it). Made again, the room starts another epoch, so a
    /// client holding a position in this one is told of a gap rather than given offsets
    /// it already had.
    ///
    /// ```
    /// let mut history = unisock::resume::History::new(1, Default::default());
    /// let at = history.append("r", unisock::MsgEvent::Text("x".into()), Default::default());
    /// history.forget("r");
    /// assert_eq!(history.bytes(), 0);
    /// assert_ne!(history.head("r").epoch, at.epoch);
    /// ```
    pub fn forget(&mut self, room: &str) {
        if let Some(log) = self.rooms.remove(room) {
            self.total_bytes -= log.bytes;
            self.stale += log.entries.len();
            if self.epochs.is_empty() {
                self.epochs = vec![self.epoch; EPOCH_BUCKETS];
            }
            let next = &mut self.epochs[bucket(room)];
            *next = (*next).max(log.epoch) + 1;
        }
    }

    /// Forgets each room left with no kept message (its messages trimmed or expired)
    /// since the last call, unless `keep` says it is still needed (e.g. it has members,
    /// which must go on from its head). Rooms kept are not asked about again until they
    /// empty again; [`forget_if_empty`](History::forget_if_empty) is for when their last
    /// member leaves. So the history holds no room that is empty and unneeded for long.
    ///
    /// ```
    /// use std::time::Duration;
    /// use unisock::resume::{History, HistoryLimits};
    /// let limits = HistoryLimits { max_age: Duration::from_secs(1), ..Default::default() };
    /// let mut history = History::new(1, limits);
    /// history.append("old", unisock::MsgEvent::Text("x".into()), Duration::ZERO);
    /// history.append("new", unisock::MsgEvent::Text("y".into()), Duration::from_secs(5));
    /// history.forget_emptied(|_| false); // "old" expired
    /// assert_eq!(history.rooms(), 1);
    /// ```
    pub fn forget_emptied(&mut self, mut keep: impl FnMut(&str) -> bool) {
        for room in std::mem::take(&mut self.emptied) {
            let Some(log) = self.rooms.get_mut(&room) else {
                continue;
            };
            log.listed = false;
            if log.entries.is_empty() && !keep(&room) {
                self.forget(&room);
            }
        }
    }

    /// Forgets `room` if it keeps no message; whether it did.
    ///
    /// ```
    /// let mut history = unisock::resume::History::new(1, Default::default());
    /// history.append("r", unisock::MsgEvent::Text("x".into()), Default::default());
    /// assert!(!history.forget_if_empty("r"));
    /// ```
    pub fn forget_if_empty(&mut self, room: &str) -> bool {
        let empty = self
            .rooms
            .get(room)
            .is_some_and(|log| log.entries.is_empty());
        if empty {
            self.forget(room);
        }
        empty
    }

    /// How many rooms the history holds (with messages, or a head to go on from).
    ///
    /// ```
    /// let mut history = unisock::resume::History::new(1, Default::default());
    /// history.append("r", unisock::MsgEvent::Text("x".into()), Default::default());
    /// assert_eq!(history.rooms(), 1);
    /// ```
    #[must_use]
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Lists `room` for [`forget_emptied`](History::forget_emptied) if it keeps nothing.
    fn list_if_empty(&mut self, room: &str) {
        if let Some((name, log)) = self.rooms.get_key_value(room) {
            if log.entries.is_empty() && !log.listed {
                let name = name.clone();
                self.emptied.push(name);
                if let Some(log) = self.rooms.get_mut(room) {
                    log.listed = true;
                }
            }
        }
    }

    /// The room's shared name, made on first use.
    fn room(&mut self, room: &str) -> Arc<str> {
        match self.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => {
                let name: Arc<str> = room.into();
                let epoch = self.new_epoch(room);
                self.rooms.insert(name.clone(), Log::new(epoch));
                name
            }
        }
    }

    /// Appends the message at `at` (the room's next offset) and drops what the limits no
    /// longer allow.
    fn push(&mut self, name: Arc<str>, at: Position, payload: Arc<MsgEvent>, now: Duration) {
        let Some(log) = self.rooms.get_mut(&name) else {
            return;
        };
        log.head = at.offset;
        let len = payload.len();
        log.bytes += len;
        log.entries.push_back(Entry {
            offset: at.offset,
            at: now,
            payload,
        });
        let mut freed = 0;
        while log.entries.len() > self.limits.max_messages
            || (log.bytes > self.limits.max_bytes && !log.entries.is_empty())
        {
            freed += log.pop_front(GapReason::Trimmed);
            self.stale += 1;
        }
        self.total_bytes = self.total_bytes + len - freed;
        self.list_if_empty(&name);
        self.order.push_back((name, at.offset));
        if self.stale > self.order.len() / 2 {
            self.compact();
        }
        while self.total_bytes > self.limits.max_total_bytes && self.pop_oldest(GapReason::Trimmed)
        {
        }
    }

    /// What a client joining `room` and holding `since` is owed at time `now`: nothing but
    /// the head for a fresh join (`since: None`); otherwise the messages after `since`,
    /// preceded by a gap if some are gone or `since` is from another epoch.
    ///
    /// ```
    /// use unisock::resume::{GapReason, History, Position};
    /// let mut history = History::new(2, Default::default());
    /// history.append("r", unisock::MsgEvent::Text("x".into()), Default::default());
    /// let replay = history.replay("r", Some(Position { epoch: 1, offset: 5 }), Default::default());
    /// assert_eq!(replay.gap, Some((GapReason::NewEpoch, Position { epoch: 2, offset: 0 })));
    /// assert_eq!(replay.messages.len(), 1);
    /// ```
    pub fn replay(&mut self, room: &str, since: Option<Position>, now: Duration) -> Replay {
        self.expire(now);
        let head = self.head(room);
        let Some(since) = since else {
            return Replay {
                gap: None,
                messages: Vec::new(),
                head,
            };
        };
        let at = |offset| Position {
            epoch: head.epoch,
            offset,
        };
        // A position from another life, or one this life never reached, cannot be trusted.
        let (mut gap, after) = if since.epoch != head.epoch || since.offset > head.offset {
            (Some((GapReason::NewEpoch, at(0))), 0)
        } else {
            (None, since.offset)
        };
        let Some(log) = self.rooms.get(room) else {
            return Replay {
                gap,
                messages: Vec::new(),
                head,
            };
        };
        let first_kept = log.entries.front().map_or(log.head + 1, |e| e.offset);
        if after + 1 < first_kept {
            let reason = log.evicted.unwrap_or(GapReason::Trimmed);
            // A new epoch with its start gone is one gap: the client continues after it.
            let reason = gap.map_or(reason, |(r, _)| r);
            gap = Some((reason, at(first_kept - 1)));
        }
        let skip = log.entries.iter().take_while(|e| e.offset <= after).count();
        let messages = log
            .entries
            .iter()
            .skip(skip)
            .map(|e| (at(e.offset), e.payload.clone()))
            .collect();
        Replay {
            gap,
            messages,
            head,
        }
    }

    /// Drops every message older than the age limit.
    fn expire(&mut self, now: Duration) {
        while let Some((room, offset)) = self.order.front() {
            let expired = self
                .rooms
                .get(room)
                .and_then(|log| log.entries.front())
                .is_none_or(|e| {
                    e.offset != *offset || now.saturating_sub(e.at) > self.limits.max_age
                });
            if !expired || !self.pop_oldest(GapReason::Expired) {
                break;
            }
        }
    }

    /// Drops the oldest kept message of any room; false when none is left.
    fn pop_oldest(&mut self, reason: GapReason) -> bool {
        let Some((room, offset)) = self.order.pop_front() else {
            return false;
        };
        match self.rooms.get_mut(&room) {
            Some(log) if log.entries.front().is_some_and(|e| e.offset == offset) => {
                self.total_bytes -= log.pop_front(reason);
                self.list_if_empty(&room);
            }
            // Already gone: its room's own bounds dropped it.
            _ => self.stale = self.stale.saturating_sub(1),
        }
        true
    }

    /// Drops from `order` the messages no room keeps any more.
    fn compact(&mut self) {
        let rooms = &self.rooms;
        self.order.retain(|(room, offset)| {
            rooms.get(room).is_some_and(|log| {
                log.entries
                    .front()
                    .is_some_and(|first| first.offset <= *offset && *offset <= log.head)
            })
        });
        self.stale = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl History {
        fn at(&self, offset: u64) -> Position {
            Position {
                epoch: self.epoch,
                offset,
            }
        }
    }

    fn text(s: &str) -> MsgEvent {
        MsgEvent::Text(s.into())
    }

    fn offsets(replay: &Replay) -> Vec<u64> {
        replay.messages.iter().map(|(p, _)| p.offset).collect()
    }

    const T0: Duration = Duration::ZERO;

    #[test]
    fn resume_gets_exactly_what_it_missed() {
        let mut h = History::new(1, HistoryLimits::default());
        for i in 0..5 {
            h.append("r", text(&i.to_string()), T0);
        }
        let replay = h.replay("r", Some(h.at(2)), T0);
        assert_eq!(replay.gap, None);
        assert_eq!(offsets(&replay), [3, 4, 5]);
        assert_eq!(replay.head, h.at(5));
        assert!(h.replay("r", Some(h.at(5)), T0).messages.is_empty());
        let fresh = h.replay("r", None, T0);
        assert!(fresh.messages.is_empty() && fresh.gap.is_none());
        assert_eq!(fresh.head, h.at(5));
    }

    #[test]
    fn trimmed_by_count_gives_the_exact_gap() {
        let limits = HistoryLimits {
            max_messages: 3,
            ..HistoryLimits::default()
        };
        let mut h = History::new(1, limits);
        for i in 0..10 {
            h.append("r", text(&i.to_string()), T0);
        }
        let replay = h.replay("r", Some(h.at(2)), T0);
        assert_eq!(replay.gap, Some((GapReason::Trimmed, h.at(7))));
        assert_eq!(offsets(&replay), [8, 9, 10]);
        assert_eq!(h.replay("r", Some(h.at(7)), T0).gap, None);
    }

    #[test]
    fn bytes_are_bounded_per_room_and_overall() {
        let limits = HistoryLimits {
            max_bytes: 100,
            max_total_bytes: 150,
            ..HistoryLimits::default()
        };
        let mut h = History::new(1, limits);
        for _ in 0..20 {
            h.append("a", MsgEvent::Binary(vec![0; 30]), T0);
            assert!(h.rooms["a"].bytes <= 100);
        }
        for _ in 0..3 {
            h.append("b", MsgEvent::Binary(vec![0; 30]), T0);
            assert!(h.bytes() <= 150);
        }
        assert_eq!(h.bytes(), 150);
        // The oldest went first: room a lost two more, room b kept all three.
        assert_eq!(h.rooms["a"].entries.len(), 2);
        assert_eq!(h.replay("b", Some(h.at(0)), T0).gap, None);
        // A message bigger than the room's bound is not kept at all.
        h.append("c", MsgEvent::Binary(vec![0; 101]), T0);
        assert_eq!(
            h.replay("c", Some(h.at(0)), T0).gap,
            Some((GapReason::Trimmed, h.at(1)))
        );
    }

    #[test]
    fn a_busy_room_s_trimmed_messages_do_not_pile_up_behind_an_idle_one() {
        let limits = HistoryLimits {
            max_messages: 10,
            ..HistoryLimits::default()
        };
        let mut h = History::new(1, limits);
        h.append("idle", text("old"), T0);
        for i in 0..10_000 {
            h.append("busy", text(&i.to_string()), T0);
            assert!(h.order.len() <= 2 * 11 + 2, "{} in order", h.order.len());
        }
        // Still right: the idle room's message, and the busy room's last ten.
        assert_eq!(h.replay("idle", Some(h.at(0)), T0).messages.len(), 1);
        assert_eq!(
            offsets(&h.replay("busy", Some(h.at(9_990)), T0)),
            (9_991..=10_000).collect::<Vec<_>>()
        );
    }

    #[test]
    fn old_messages_expire() {
        let limits = HistoryLimits {
            max_age: Duration::from_secs(10),
            ..HistoryLimits::default()
        };
        let mut h = History::new(1, limits);
        h.append("r", text("old"), T0);
        h.append("r", text("new"), Duration::from_secs(5));
        let later = Duration::from_secs(12);
        let replay = h.replay("r", Some(h.at(0)), later);
        assert_eq!(replay.gap, Some((GapReason::Expired, h.at(1))));
        assert_eq!(offsets(&replay), [2]);
        assert_eq!(h.bytes(), 3);
        let replay = h.replay("r", Some(h.at(0)), Duration::from_secs(20));
        assert_eq!(replay.gap, Some((GapReason::Expired, h.at(2))));
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn a_copy_of_store_positions_keeps_runs_and_restarts_after_holes() {
        let mut copy = History::new(0, HistoryLimits::default());
        let at = |epoch, offset| Position { epoch, offset };
        for offset in 10..=12 {
            assert!(copy.insert("r", at(3, offset), text("x"), T0));
        }
        assert!(!copy.insert("r", at(3, 11), text("x"), T0), "already kept");
        let replay = copy.replay("r", Some(at(3, 10)), T0);
        assert_eq!((replay.gap, offsets(&replay)), (None, vec![11, 12]));
        // Before the copy began: not here, so a gap the caller fills from the store.
        assert!(copy.replay("r", Some(at(3, 5)), T0).gap.is_some());
        // A hole restarts the copy at the new message.
        assert!(copy.insert("r", at(3, 20), text("x"), T0));
        assert_eq!(copy.bytes(), 1);
        assert!(copy.replay("r", Some(at(3, 12)), T0).gap.is_some());
        assert_eq!(offsets(&copy.replay("r", Some(at(3, 19)), T0)), [20]);
        // So does another epoch.
        assert!(copy.insert("r", at(4, 1), text("x"), T0));
        assert_eq!(copy.head("r"), at(4, 1));
        let stale = copy.replay("r", Some(at(3, 20)), T0);
        assert_eq!(stale.gap, Some((GapReason::NewEpoch, at(4, 0))));
        copy.forget("r");
        assert_eq!((copy.bytes(), copy.head("r").offset), (0, 0));
    }

    #[test]
    fn another_epoch_or_an_unknown_offset_is_a_new_epoch_gap() {
        let mut h = History::new(2, HistoryLimits::default());
        h.append("r", text("a"), T0);
        let stale = h.replay(
            "r",
            Some(Position {
                epoch: 1,
                offset: 40,
            }),
            T0,
        );
        assert_eq!(stale.gap, Some((GapReason::NewEpoch, h.at(0))));
        assert_eq!(offsets(&stale), [1]);
        let ahead = h.replay("r", Some(h.at(9)), T0);
        assert_eq!(ahead.gap, Some((GapReason::NewEpoch, h.at(0))));
        // A room this life has never seen: nothing to replay, but the client is told.
        let unknown = h.replay(
            "q",
            Some(Position {
                epoch: 1,
                offset: 3,
            }),
            T0,
        );
        assert_eq!(unknown.gap, Some((GapReason::NewEpoch, h.at(0))));
        assert!(unknown.messages.is_empty());
    }

    #[test]
    fn a_room_made_again_starts_another_epoch() {
        let mut h = History::new(2, HistoryLimits::default());
        h.append("r", text("a"), T0);
        let old = h.append("r", text("b"), T0);
        h.forget("r");
        let unknown = h.head("r");
        assert_eq!(unknown.offset, 0);
        assert_ne!(unknown.epoch, old.epoch);
        // It is made in the epoch its head promised, which joins were answered with.
        let again = h.append("r", text("c"), T0);
        assert_eq!((again.epoch, again.offset), (unknown.epoch, 1));
        // A client from the room's first life is told, not handed offset 1 as had.
        let replay = h.replay("r", Some(old), T0);
        assert_eq!(replay.gap.map(|(r, _)| r), Some(GapReason::NewEpoch));
        assert_eq!(offsets(&replay), [1]);
        // And a third life differs from both.
        h.forget("r");
        let third = h.append("r", text("d"), T0);
        assert!(third.epoch != again.epoch && third.epoch != old.epoch);
        // Another room keeps the history's epoch unless its bucket was bumped.
        let other = (0..)
            .map(|i| format!("o{i}"))
            .find(|o| bucket(o) != bucket("r"))
            .unwrap();
        assert_eq!(h.append(&other, text("e"), T0).epoch, 2);
    }

    #[test]
    fn rooms_left_empty_and_unneeded_are_forgotten() {
        // Each room gets one message, as a client's inbox might; the global cap drops the
        // oldest, and an emptied room with nobody in it goes with it.
        let limits = HistoryLimits {
            max_total_bytes: 100,
            ..HistoryLimits::default()
        };
        let mut h = History::new(1, limits);
        for i in 0..10_000 {
            h.append(&format!("@{i}"), MsgEvent::Binary(vec![0; 10]), T0);
            h.forget_emptied(|_| false);
            assert!(h.rooms() <= 10, "{} rooms held", h.rooms());
        }
        assert_eq!(h.rooms.len(), 10);
        assert!(h.emptied.is_empty());
    }

    #[test]
    fn a_needed_room_keeps_its_head_until_it_is_not() {
        let limits = HistoryLimits {
            max_age: Duration::from_secs(1),
            ..HistoryLimits::default()
        };
        let mut h = History::new(1, limits);
        let last = h.append("lobby", text("a"), T0);
        h.append("other", text("b"), Duration::from_secs(5)); // "lobby" expired
        h.forget_emptied(|room| room == "lobby"); // it still has members
        assert_eq!(h.head("lobby"), last);
        h.forget_emptied(|_| false); // not asked again until it empties again
        assert_eq!(h.head("lobby"), last);
        assert!(!h.forget_if_empty("other"));
        assert!(h.forget_if_empty("lobby")); // its last member left
        assert_ne!(h.head("lobby").epoch, last.epoch);
        assert_eq!(h.rooms(), 1);
    }

    #[test]
    fn a_room_restarted_empty_is_listed() {
        let mut copy = History::new(0, HistoryLimits::default());
        copy.start(
            "r",
            Position {
                epoch: 4,
                offset: 9,
            },
        );
        copy.forget_emptied(|_| false);
        assert_eq!(copy.rooms(), 0);
    }
}

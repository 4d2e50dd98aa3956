//! Rooms shared by server processes through Redis Streams (feature `redis`).
//!
//! Redis holds, for prefix `P` and room `R`:
//! - `P:room:R:epoch`: the room's epoch, made when first needed and again whenever its
//!   history was lost (a flushed or new Redis) or its counter went back;
//! - `P:room:R:seq`: the last offset given;
//! - `P:room:R:log`: a stream of the kept messages, entry id `OFFSET-0`, trimmed with
//!   `MAXLEN ~` and expiring when the room is quiet;
//! - `P:publisher:ID`, one per node: the number of the last message its publisher
//!   published, so a publish retried after a lost answer is not published twice;
//! - the channel `P:rooms`: every published message, as it goes to clients.
//!
//! A publish is one script (next offset, `XADD`, expiry, `PUBLISH`), so the stream and
//! the channel agree on every offset. Each node keeps a copy of recent history per room,
//! fed by the channel, and answers resumes from it when it can; otherwise, and to repair
//! a hole in the channel's feed, it reads the stream once per room, however many clients
//! wait on it, and merges that read with what the channel brings meanwhile.
//!
//! Rules between the tasks (the subscription, the reads, the publisher, the sockets'
//! handlers), all under one lock on [`State`]:
//!
//! | event | room followed here (`position` set) | room not followed |
//! |---|---|---|
//! | live message, next offset | kept, sent to members | followed from it |
//! | live message past a hole | held; one read from `position` | held (a read is due) |
//! | join the copy can answer | answered, then a member | - |
//! | other join | waits; one read for the room | waits; one read |
//! | read done | gap + messages to members; waiting joins answered | followed from the read |
//! | subscription back after loss | one read per room with members | forgotten |

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, PubSub};
use tokio::sync::mpsc;

use crate::backplane::redis::{self as backplane, redis_error};
use crate::{Error, MsgEvent, Result, WebSocket};

use super::history::{History, HistoryLimits};
use super::merge::{Handover, HistoryRead};
use super::rooms::{
    attach, call, new_inbox_name, opening, random_id, send, set_hook, unix_millis, Departed,
    JoinHook, Members, Serve,
};
use super::tracker::NEW_INBOX;
use super::wire::Frame;
use super::{GapReason, Position};

/// Retry waits after a Redis error: from this, doubling, up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Messages waiting to be published, at most.
const PUBLISH_QUEUE: usize = 16 * 1024;
/// How long a room's epoch and counter outlive its last publish.
const ROOM_TTL: Duration = Duration::from_secs(24 * 3600);

/// Next offset, keep, expire, publish; a new epoch first if the history was lost or the
/// counter went back (so no offset is given twice in one epoch). Nothing if this node's
/// publisher already published its message number `ARGV[9]` (a retry whose first try ran
/// but lost its answer).
const PUBLISH: &str = r"
if tonumber(ARGV[9]) <= tonumber(redis.call('GET', KEYS[4]) or '0') then return 0 end
local now = tonumber(ARGV[1])
local epoch = redis.call('GET', KEYS[1])
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local last = 0
if top[1] then last = tonumber(string.match(top[1][1], '^(%d+)')) end
if (not epoch) or last > seq then
  local e = now
  if epoch and tonumber(epoch) >= e then e = tonumber(epoch) + 1 end
  epoch = string.format('%.0f', e)
  redis.call('SET', KEYS[1], epoch)
  redis.call('DEL', KEYS[3])
  seq = 0
end
seq = seq + 1
local offset = string.format('%.0f', seq)
redis.call('SET', KEYS[2], offset)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], offset .. '-0', 'k', ARGV[5], 'p', ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('SET', KEYS[4], ARGV[9], 'PX', ARGV[7])
redis.call('PUBLISH', ARGV[4], ARGV[5] .. 'm ' .. ARGV[8] .. ' ' .. epoch .. ' ' .. offset .. '\n' .. ARGV[6])
return 1
";

/// The room's epoch (made if missing), its counter, and the kept messages after
/// `ARGV[2]` if `ARGV[1]` is still the epoch, else all kept messages.
const READ: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[1], epoch, 'PX', ARGV[5])
  redis.call('DEL', KEYS[2], KEYS[3])
end
local seq = redis.call('GET', KEYS[2]) or '0'
local start = '-'
if epoch == ARGV[1] then start = '(' .. ARGV[2] .. '-0' end
return {epoch, seq, redis.call('XRANGE', KEYS[3], start, '+', 'COUNT', ARGV[3])}
";

/// A new epoch for a room whose offsets were given twice (a failover to a replica that
/// lagged), if its epoch is still `ARGV[2]`.
const ROTATE: &str = r"
local epoch = redis.call('GET', KEYS[1])
if epoch == ARGV[2] then
  local e = tonumber(ARGV[1])
  if tonumber(epoch) >= e then e = tonumber(epoch) + 1 end
  redis.call('SET', KEYS[1], string.format('%.0f', e), 'PX', ARGV[3])
  redis.call('DEL', KEYS[2], KEYS[3])
end
return 1
";

/// What [`RedisRooms::on_error`] calls.
type ErrorHook = Arc<dyn Fn(&Error) + Send + Sync>;

/// A join waiting for the history read that lets it go out.
struct Waiting {
    ws: WebSocket,
    since: Option<Position>,
    /// Live messages that arrived since it asked.
    live: Vec<(Position, Arc<MsgEvent>)>,
}

/// What this node knows of one room.
#[derive(Default)]
struct Room {
    /// The last position sent to the room's members (and kept in the copy): set while
    /// the room is followed here.
    position: Option<Position>,
    /// Live messages past a hole, until a read fills it.
    held: BTreeMap<(u64, u64), Arc<MsgEvent>>,
    /// Joins waiting for a read.
    waiting: Vec<Waiting>,
    /// A read of the room's stream is in flight.
    reading: bool,
}

struct State {
    copy: History,
    members: Members,
    rooms: HashMap<String, Room>,
}

impl Room {
    /// A join or a read waits on it, or live messages wait for a read.
    fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.reading || !self.held.is_empty()
    }
}

impl State {
    /// Forgets the rooms this node no longer needs: nothing left in the copy, no members,
    /// nothing waiting. A later join reads Redis; a later live message is followed from
    /// itself.
    fn forget_unneeded(&mut self) {
        let State {
            copy,
            members,
            rooms,
        } = self;
        copy.forget_emptied(|room| {
            let needed = members.count(room) > 0 || rooms.get(room).is_some_and(Room::busy);
            if !needed {
                rooms.remove(room);
            }
            needed
        });
    }

    /// Takes socket `id` out of its rooms, forgetting those left empty and unneeded.
    fn detach(&mut self, id: &str) {
        for room in self.members.detach(id) {
            self.left(&room);
        }
    }

    /// After `room`'s last member left: forgets it if nothing else needs it.
    fn left(&mut self, room: &str) {
        if !self.rooms.get(room).is_some_and(Room::busy) && self.copy.forget_if_empty(room) {
            self.rooms.remove(room);
        }
    }
}

struct Inner {
    state: Mutex<State>,
    departed: Departed,
    /// Time zero of the copy's clock.
    origin: Instant,
    conn: ConnectionManager,
    prefix: String,
    limits: HistoryLimits,
    publish: mpsc::Sender<(String, MsgEvent)>,
    /// `P:publisher:ID`, ID random per [`RedisRooms`]: the number of the last message its
    /// publisher published, so a retry of one that ran is not published twice.
    publisher_key: String,
    errors: AtomicU64,
    reads: AtomicU64,
    on_error: Mutex<Option<ErrorHook>>,
    /// The scripts, hashed once (`EVALSHA`, loaded on first use).
    scripts: [redis::Script; 3],
    on_join: Mutex<Option<JoinHook>>,
    /// Dropped with the rooms: tells the subscription task to end.
    _alive: tokio::sync::watch::Sender<()>,
}

/// Rooms with resumable delivery shared by server processes through Redis (feature
/// `redis`): the same guarantee as [`Rooms`](super::Rooms), with the history in Redis
/// Streams, so a client may resume on any node, and a node that restarts loses nothing.
///
/// A lost or flushed Redis begins a new epoch (clients are told with a
/// [`GapReason::NewEpoch`] gap); so does an offset given twice (a failover to a replica
/// that lagged), once a node sees it. While Redis is down, publishes wait in a queue
/// (16 Ki messages; [`publish`](RedisRooms::publish) fails beyond) and go out in order
/// once it is back.
///
/// ```no_run
/// # async fn run() -> unisock::Result<()> {
/// use unisock::resume::{HistoryLimits, RedisRooms, Rooms};
/// use unisock::{WebSocket, WebSockets};
///
/// let rooms = RedisRooms::connect("redis://127.0.0.1:6379/", "chat", HistoryLimits::default()).await?;
/// rooms.on_error(|e| eprintln!("rooms: {e}"));
/// let sockets = WebSockets::new();
/// sockets.on_upgrade(|pending| {
///     Rooms::select(pending);
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// sockets
///     .serve(listener, move |_| {
///         let ws = WebSocket::new();
///         let lobby = rooms.clone();
///         rooms.attach(&ws, move |_ws, msg| {
///             let _ = lobby.publish("lobby", msg);
///         });
///         Some(ws)
///     })
///     .await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRooms {
    inner: Arc<Inner>,
}

impl RedisRooms {
    /// Connects to Redis at `url` with key prefix `prefix` (nodes with the same prefix share
    /// rooms) and subscribes to the rooms' channel; history is kept within `limits`
    /// (`max_messages` per room, as `MAXLEN ~`, and `max_age` in Redis; all of them in
    /// this node's copy).
    ///
    /// # Errors
    /// [`Error::Backplane`] when Redis cannot be reached now (later outages are survived).
    ///
    /// ```no_run
    /// # async fn run() -> unisock::Result<()> {
    /// let rooms = unisock::resume::RedisRooms::connect("redis://127.0.0.1:6379/", "app", Default::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str, prefix: &str, limits: HistoryLimits) -> Result<Self> {
        let (client, conn) = backplane::connect(url).await?;
        let channel = format!("{prefix}:rooms");
        let first = backplane::subscribe_to(&client, std::slice::from_ref(&channel)).await?;
        let (publish, queue) = mpsc::channel(PUBLISH_QUEUE);
        let (alive, dropped) = tokio::sync::watch::channel(());
        let rooms = RedisRooms {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    copy: History::new(0, limits),
                    members: Members::default(),
                    rooms: HashMap::new(),
                }),
                departed: Departed::default(),
                origin: Instant::now(),
                conn,
                prefix: prefix.to_string(),
                limits,
                publish,
                publisher_key: format!("{prefix}:publisher:{}", random_id()),
                errors: AtomicU64::new(0),
                reads: AtomicU64::new(0),
                on_error: Mutex::new(None),
                scripts: [PUBLISH, READ, ROTATE].map(redis::Script::new),
                on_join: Mutex::new(None),
                _alive: alive,
            }),
        };
        let weak = Arc::downgrade(&rooms.inner);
        tokio::spawn(subscription(
            client,
            channel,
            Some(first),
            weak.clone(),
            dropped,
        ));
        tokio::spawn(publisher(queue, weak));
        Ok(rooms)
    }

    /// Called with each Redis error (a failed publish is retried; a failed read too).
    ///
    /// ```no_run
    /// # async fn run(rooms: unisock::resume::RedisRooms) {
    /// rooms.on_error(|e| eprintln!("{e}"));
    /// # }
    /// ```
    pub fn on_error(&self, f: impl Fn(&Error) + Send + Sync + 'static) {
        *self
            .inner
            .on_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(f));
    }

    /// Redis errors so far.
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms) {
    /// assert_eq!(rooms.errors(), 0);
    /// # }
    /// ```
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.inner.errors.load(Ordering::Relaxed)
    }

    /// History reads this node made from Redis (resumes it could not answer from its own
    /// copy, and repairs): at most one per room at a time, however many clients wait.
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms) {
    /// println!("{} reads", rooms.history_reads());
    /// # }
    /// ```
    #[must_use]
    pub fn history_reads(&self) -> u64 {
        self.inner.reads.load(Ordering::Relaxed)
    }

    /// Serves the rooms to `ws`, as [`Rooms::attach`](super::Rooms::attach) does.
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms) {
    /// rooms.attach(&unisock::WebSocket::new(), |_ws, msg| println!("{msg}"));
    /// # }
    /// ```
    pub fn attach(
        &self,
        ws: &WebSocket,
        on_message: impl Fn(&WebSocket, MsgEvent) + Send + Sync + 'static,
    ) {
        attach(self, ws, on_message);
    }

    /// Called after a socket joined a room on this node, as
    /// [`Rooms::on_join`](super::Rooms::on_join).
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms) {
    /// rooms.on_join(|ws, room| println!("{} joined {room}", ws.id()));
    /// # }
    /// ```
    pub fn on_join(&self, f: impl Fn(&WebSocket, &str) + Send + Sync + 'static) {
        set_hook(&self.inner.on_join, f);
    }

    /// Removes `ws` from every room now (an attached socket leaves them by itself once it
    /// has closed).
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms, ws: unisock::WebSocket) {
    /// rooms.detach(&ws);
    /// # }
    /// ```
    pub fn detach(&self, ws: &WebSocket) {
        self.state().detach(ws.id());
    }

    /// Queues `msg` for `room`: published in the order queued, from this node, once Redis
    /// answers; every node then sends it to its members.
    ///
    /// # Errors
    /// [`Error::Backplane`] when 16 Ki messages already wait (Redis is down or slow).
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms) -> unisock::Result<()> {
    /// rooms.publish("lobby", unisock::MsgEvent::Text("hi".into()))?;
    /// # Ok(()) }
    /// ```
    pub fn publish(&self, room: &str, msg: MsgEvent) -> Result<()> {
        self.inner
            .publish
            .try_send((room.to_string(), msg))
            .map_err(|_| Error::Backplane("the publish queue is full".into()))
    }

    /// Queues `msg` for `ws`'s inbox, as [`Rooms::send_to`](super::Rooms::send_to) does:
    /// `Ok(false)` when the socket has no inbox.
    ///
    /// # Errors
    /// As [`publish`](RedisRooms::publish).
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms, ws: unisock::WebSocket) -> unisock::Result<()> {
    /// rooms.send_to(&ws, unisock::MsgEvent::Text("psst".into()))?;
    /// # Ok(()) }
    /// ```
    pub fn send_to(&self, ws: &WebSocket, msg: MsgEvent) -> Result<bool> {
        match self.inbox_of(ws) {
            Some(inbox) => self.publish(&inbox, msg).map(|()| true),
            None => Ok(false),
        }
    }

    /// The name of `ws`'s inbox on this node, if its client asked for one.
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms, ws: unisock::WebSocket) {
    /// println!("{:?}", rooms.inbox_of(&ws));
    /// # }
    /// ```
    #[must_use]
    pub fn inbox_of(&self, ws: &WebSocket) -> Option<String> {
        self.state().members.inbox(ws.id())
    }

    /// How many sockets on this node are in `room`.
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms) {
    /// assert_eq!(rooms.members("lobby"), 0);
    /// # }
    /// ```
    #[must_use]
    pub fn members(&self, room: &str) -> usize {
        self.state().members.count(room)
    }

    /// Payload bytes this node's copy of the history keeps.
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms) {
    /// println!("{} bytes", rooms.history_bytes());
    /// # }
    /// ```
    #[must_use]
    pub fn history_bytes(&self) -> usize {
        self.state().copy.bytes()
    }

    /// How many rooms this node's copy of the history holds. A room goes once its
    /// messages all went from the copy and no socket here is in it or waits on it (its
    /// history stays in Redis).
    ///
    /// ```no_run
    /// # fn run(rooms: unisock::resume::RedisRooms) {
    /// println!("{} rooms", rooms.history_rooms());
    /// # }
    /// ```
    #[must_use]
    pub fn history_rooms(&self) -> usize {
        self.state().copy.rooms()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
    }

    fn join(&self, ws: &WebSocket, room: &str, since: Option<Position>) {
        if room == NEW_INBOX {
            return self.join(ws, &new_inbox_name(), None);
        }
        let now = self.inner.origin.elapsed();
        let mut state = self.state();
        let followed = state
            .rooms
            .get(room)
            .is_some_and(|r| r.position.is_some() && r.held.is_empty() && !r.reading);
        if followed {
            let replay = state.copy.replay(room, since, now);
            // A gap in this node's copy may not be one in Redis: only a full answer here.
            if replay.gap.is_none() || since.is_none() {
                let mut frames = Vec::with_capacity(replay.messages.len() + 1);
                frames.extend(opening(room, since, replay.head, None));
                frames.extend(
                    replay
                        .messages
                        .iter()
                        .map(|(at, payload)| Frame::message(room, *at, payload)),
                );
                if frames.iter().all(|frame| send(ws, frame)) {
                    state.members.add(ws, room);
                    drop(state);
                    call(&self.inner.on_join, ws, room);
                }
                return;
            }
        }
        let entry = state.rooms.entry(room.to_string()).or_default();
        entry.waiting.push(Waiting {
            ws: ws.clone(),
            since,
            live: Vec::new(),
        });
        self.inner.start_read(&mut state, room);
    }
}

impl Serve for RedisRooms {
    fn join(&self, ws: &WebSocket, room: &str, since: Option<Position>) {
        RedisRooms::join(self, ws, room, since);
    }

    fn leave(&self, ws: &WebSocket, room: &str) {
        let mut state = self.state();
        if state.members.remove(ws.id(), room) {
            state.left(room);
        }
    }

    fn departed(&self) -> &Departed {
        &self.inner.departed
    }
}

impl Inner {
    /// The state, with the sockets closed since the last look taken out of their rooms and
    /// the rooms nobody needs any more forgotten (nothing to do on most calls).
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing that can panic runs under this lock: sends only queue.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for id in self.departed.take() {
            state.detach(&id);
        }
        state.forget_unneeded();
        state
    }

    fn report(&self, e: &Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let hook = self
            .on_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            hook(e);
        }
    }

    fn keys(&self, room: &str) -> [String; 3] {
        let p = &self.prefix;
        [
            format!("{p}:room:{room}:epoch"),
            format!("{p}:room:{room}:seq"),
            format!("{p}:room:{room}:log"),
        ]
    }

    /// Starts the room's read if none is in flight (called under the lock).
    fn start_read(self: &Arc<Self>, state: &mut State, room: &str) {
        let Some(entry) = state.rooms.get_mut(room) else {
            return;
        };
        if entry.reading {
            return;
        }
        entry.reading = true;
        // From the earliest position anyone here needs; any other epoch reads it all.
        let mut from = entry.position;
        for w in &entry.waiting {
            from = match (from, w.since) {
                (_, None) => from,
                (None, Some(s)) => Some(s),
                (Some(f), Some(s)) if f.epoch == s.epoch => {
                    Some(if s.offset < f.offset { s } else { f })
                }
                (Some(_), Some(_)) => Some(Position {
                    epoch: 0,
                    offset: 0,
                }),
            };
        }
        // Weak between tries, so rooms dropped while Redis is down stop retrying.
        let weak = Arc::downgrade(self);
        let room = room.to_string();
        tokio::spawn(async move {
            let mut backoff = MIN_BACKOFF;
            loop {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                match inner.read(&room, from).await {
                    Ok(read) => return inner.read_done(&room, read),
                    Err(e) => inner.report(&e),
                }
                drop(inner);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
    }

    async fn read(&self, room: &str, from: Option<Position>) -> Result<HistoryRead> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let [epoch_key, seq_key, log_key] = self.keys(room);
        let from = from.unwrap_or(Position {
            epoch: 0,
            offset: 0,
        });
        let count = self.limits.max_messages.saturating_mul(2).max(1);
        let mut conn = self.conn.clone();
        let value: redis::Value = self.scripts[1]
            .key(epoch_key)
            .key(seq_key)
            .key(log_key)
            .arg(from.epoch.to_string())
            .arg(from.offset)
            .arg(count)
            .arg(unix_millis())
            .arg(u64::try_from(ROOM_TTL.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        parse_read(value)
            .ok_or_else(|| Error::Backplane("unexpected answer to a history read".into()))
    }

    /// Applies a finished read: repairs the members' feed, answers the waiting joins.
    fn read_done(self: &Arc<Self>, room: &str, read: HistoryRead) {
        let now = self.origin.elapsed();
        let mut state = self.state();
        let State {
            copy,
            members,
            rooms,
        } = &mut *state;
        let Some(entry) = rooms.get_mut(room) else {
            return;
        };
        entry.reading = false;
        let mut again = false;
        // The members: from where they stand, with what the feed held past the hole.
        let base = entry.position.unwrap_or(Position {
            epoch: read.epoch,
            offset: read.head,
        });
        let mut handover = Handover::new(base);
        for ((epoch, offset), payload) in &entry.held {
            handover.live(
                Position {
                    epoch: *epoch,
                    offset: *offset,
                },
                payload.clone(),
            );
        }
        let merged = handover.finish(read.clone());
        let mut frames = Vec::new();
        if let Some((reason, at)) = merged.gap {
            frames.push(
                Frame::Gap {
                    room: room.to_string(),
                    reason,
                    at,
                }
                .encode(),
            );
        }
        if entry.position.is_none() {
            // Not followed here until now: the copy starts with the read.
            let first = read.messages.first().map_or(read.head, |(o, _)| o - 1);
            copy.start(
                room,
                Position {
                    epoch: read.epoch,
                    offset: first,
                },
            );
            for (offset, payload) in &read.messages {
                let at = Position {
                    epoch: read.epoch,
                    offset: *offset,
                };
                copy.insert(room, at, payload.clone(), now);
            }
        }
        for (at, payload) in &merged.messages {
            copy.insert(room, *at, payload.clone(), now);
            frames.push(Frame::message(room, *at, payload));
        }
        // The copy always ends where the members stand.
        copy.start(room, merged.position);
        members.send_all(room, &frames);
        entry.position = Some(merged.position);
        let position = merged.position;
        // What is left is past a hole in this epoch; other epochs' messages are over.
        entry
            .held
            .retain(|&(e, o), _| e == position.epoch && o > position.offset);
        again |= merged.read_again;
        // The joins that waited for it.
        let mut joined = Vec::new();
        for w in std::mem::take(&mut entry.waiting) {
            let since = w.since.unwrap_or(Position {
                epoch: read.epoch,
                offset: read.head,
            });
            let mut handover = Handover::new(since);
            for (at, payload) in &w.live {
                handover.live(*at, payload.clone());
            }
            let merged = handover.finish(read.clone());
            if merged.read_again {
                again = true;
                entry.waiting.push(w);
                continue;
            }
            let head = Position {
                epoch: read.epoch,
                offset: read.head,
            };
            let mut frames: Vec<MsgEvent> = opening(room, w.since, head, merged.gap)
                .into_iter()
                .collect();
            frames.extend(
                merged
                    .messages
                    .iter()
                    .map(|(at, payload)| Frame::message(room, *at, payload)),
            );
            if frames.iter().all(|frame| send(&w.ws, frame)) {
                members.add(&w.ws, room);
                joined.push(w.ws);
            }
        }
        if again || !entry.held.is_empty() {
            self.start_read(&mut state, room);
        }
        drop(state);
        for ws in joined {
            call(&self.on_join, &ws, room);
        }
    }

    /// A message from the channel.
    fn live(self: &Arc<Self>, room: &str, at: Position, payload: MsgEvent) {
        let now = self.origin.elapsed();
        let payload = Arc::new(payload);
        let mut state = self.state();
        let State {
            copy,
            members,
            rooms,
        } = &mut *state;
        // Looked up before inserting: no allocation per message for a room already known.
        if !rooms.contains_key(room) {
            rooms.insert(room.to_string(), Room::default());
        }
        let Some(entry) = rooms.get_mut(room) else {
            return;
        };
        for w in &mut entry.waiting {
            w.live.push((at, payload.clone()));
        }
        let Some(position) = entry.position else {
            if entry.waiting.is_empty() && !entry.reading {
                // Nobody here waits on the room: follow it from this message.
                copy.insert(room, at, payload, now);
                entry.position = Some(at);
            } else {
                entry.held.insert((at.epoch, at.offset), payload);
            }
            return;
        };
        if at.epoch == position.epoch && at.offset <= position.offset {
            // Already here (a read overlapping the feed), unless it is another message at
            // the same offset: Redis gave it twice (a failover to a replica that lagged).
            if copy.get(room, at).is_some_and(|kept| *kept != *payload) {
                let (inner, room) = (self.clone(), room.to_string());
                tokio::spawn(async move {
                    if let Err(e) = inner.rotate(&room, at.epoch).await {
                        inner.report(&e);
                    }
                });
            }
            return;
        }
        let next = at.epoch == position.epoch && at.offset == position.offset + 1;
        if !next || entry.reading || !entry.held.is_empty() {
            entry.held.insert((at.epoch, at.offset), payload);
            self.start_read(&mut state, room);
            return;
        }
        copy.insert(room, at, payload.clone(), now);
        members.send_all(room, &[Frame::message(room, at, &payload)]);
        entry.position = Some(at);
    }

    /// The subscription was lost and is back: what came meanwhile is not known here.
    fn resubscribed(self: &Arc<Self>) {
        let mut state = self.state();
        let rooms: Vec<String> = state.rooms.keys().cloned().collect();
        for room in rooms {
            if state.members.count(&room) > 0
                || state
                    .rooms
                    .get(&room)
                    .is_some_and(|r| !r.waiting.is_empty())
            {
                self.start_read(&mut state, &room);
            } else {
                state.rooms.remove(&room);
                state.copy.forget(&room);
            }
        }
    }

    /// Publishes the publisher's message number `n`; retried by the caller until Redis
    /// answers.
    async fn publish(&self, room: &str, msg: &MsgEvent, n: u64) -> Result<()> {
        let [epoch_key, seq_key, log_key] = self.keys(room);
        let (kind, payload): (&str, &[u8]) = match msg {
            MsgEvent::Text(t) => ("t", t.as_bytes()),
            MsgEvent::Binary(b) => ("b", b),
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn.clone();
        self.scripts[0]
            .key(epoch_key)
            .key(seq_key)
            .key(log_key)
            .key(&self.publisher_key)
            .arg(unix_millis())
            .arg(self.limits.max_messages)
            .arg(ms(self.limits.max_age).max(1))
            .arg(format!("{}:rooms", self.prefix))
            .arg(kind)
            .arg(payload)
            .arg(ms(ROOM_TTL))
            .arg(room)
            .arg(n)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(redis_error)
    }

    /// An offset given twice in one epoch: begins a new epoch for the room.
    async fn rotate(&self, room: &str, epoch: u64) -> Result<()> {
        let [epoch_key, seq_key, log_key] = self.keys(room);
        let mut conn = self.conn.clone();
        self.scripts[2]
            .key(epoch_key)
            .key(seq_key)
            .key(log_key)
            .arg(unix_millis())
            .arg(epoch.to_string())
            .arg(u64::try_from(ROOM_TTL.as_millis()).unwrap_or(u64::MAX))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(redis_error)
    }
}

/// Publishes the queued messages in order, retrying each until Redis answers.
async fn publisher(mut queue: mpsc::Receiver<(String, MsgEvent)>, inner: std::sync::Weak<Inner>) {
    let mut n = 0;
    while let Some((room, msg)) = queue.recv().await {
        n += 1;
        let mut backoff = MIN_BACKOFF;
        loop {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            match inner.publish(&room, &msg, n).await {
                Ok(_) => break,
                Err(e) => inner.report(&e),
            }
            drop(inner);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Follows the channel, resubscribing with backoff when it is lost; ends when the rooms
/// are dropped.
async fn subscription(
    client: redis::Client,
    channel: String,
    mut first: Option<PubSub>,
    inner: std::sync::Weak<Inner>,
    mut dropped: tokio::sync::watch::Receiver<()>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut lost = false;
    loop {
        let subscribed = match first.take() {
            Some(pubsub) => Ok(pubsub),
            None => backplane::subscribe_to(&client, std::slice::from_ref(&channel)).await,
        };
        let Some(rooms) = inner.upgrade() else {
            return;
        };
        match subscribed {
            Ok(pubsub) => {
                backoff = MIN_BACKOFF;
                if lost {
                    rooms.resubscribed();
                }
                drop(rooms);
                match follow(pubsub, &inner, &mut dropped).await {
                    Some(e) => {
                        if let Some(rooms) = inner.upgrade() {
                            rooms.report(&e);
                        }
                    }
                    None => return,
                }
            }
            Err(e) => rooms.report(&e),
        }
        lost = true;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Hands the channel's messages to the rooms until the subscription is lost (returns
/// why) or the rooms are dropped (`None`).
async fn follow(
    pubsub: PubSub,
    inner: &std::sync::Weak<Inner>,
    dropped: &mut tokio::sync::watch::Receiver<()>,
) -> Option<Error> {
    // The sender lives in the rooms: `changed` fails once they are dropped.
    let gone = async { while dropped.changed().await.is_ok() {} };
    backplane::read_subscription(pubsub, gone, |msg| {
        let Some(rooms) = inner.upgrade() else {
            return false;
        };
        if let Some((room, at, payload)) = decode_live(msg.get_payload_bytes()) {
            rooms.live(&room, at, payload);
        }
        true
    })
    .await
}

/// A message on the channel: its kind (`t` or `b`), then the `m` frame.
fn decode_live(bytes: &[u8]) -> Option<(String, Position, MsgEvent)> {
    let (&kind, frame) = bytes.split_first()?;
    let msg = match kind {
        b't' => MsgEvent::Text(String::from_utf8(frame.to_vec()).ok()?),
        b'b' => MsgEvent::Binary(frame.to_vec()),
        _ => return None,
    };
    match Frame::decode(msg).ok()? {
        Frame::Message { room, at, payload } => Some((room, at, payload)),
        _ => None,
    }
}

/// `{epoch, seq, [[id, [k, kind, p, payload]], ...]}` from the read script.
fn parse_read(value: redis::Value) -> Option<HistoryRead> {
    use redis::Value;
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    };
    let Value::Array(parts) = value else {
        return None;
    };
    let [epoch, seq, entries] = parts.as_slice() else {
        return None;
    };
    let epoch: u64 = text(epoch)?.parse().ok()?;
    let head: u64 = text(seq)?.parse().ok()?;
    let Value::Array(entries) = entries else {
        return None;
    };
    let mut messages = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(pair) = entry else {
            return None;
        };
        let [id, fields] = pair.as_slice() else {
            return None;
        };
        let offset: u64 = text(id)?.split('-').next()?.parse().ok()?;
        let Value::Array(fields) = fields else {
            return None;
        };
        let [_, kind, _, Value::BulkString(payload)] = fields.as_slice() else {
            return None;
        };
        let msg = match text(kind)?.as_str() {
            "t" => MsgEvent::Text(String::from_utf8(payload.clone()).ok()?),
            _ => MsgEvent::Binary(payload.clone()),
        };
        messages.push((offset, Arc::new(msg)));
    }
    Some(HistoryRead {
        epoch,
        head,
        messages,
        // The stream's start goes by MAXLEN or by age; age is the likelier for a client
        // that was away, but the store cannot tell which.
        missing: GapReason::Trimmed,
    })
}

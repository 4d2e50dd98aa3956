//! The read loop of one connection (run by `read()`): reads, feeds the protocol core,
//! calls the handlers, carries out the session's actions, and reports how the connection
//! ended.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::time::{Instant, Sleep};

use super::read_size::ReadSize;
use super::scratch::{self, Scratch};
use crate::native::{instant, lock, now, Reader, Reading, SharedWriter, Socket};
use crate::protocol::{CloseCode, Connection, ConnectionState, DirectRead, Event, Role};
use crate::session::{abnormal, Action, Probe};
use crate::{CloseEvent, Error, ReadyState};

/// A frame with at least this much payload still to come is read straight into its message
/// (`Connection::begin_direct_read`) instead of through the read buffer.
const DIRECT_READ_MIN: usize = 8 * 1024;
/// The most one direct read takes: as much as a core's L2 cache holds (1 MiB on the machine
/// of BENCHMARKS.md), so the unmasking that follows still finds the bytes in cache, and a
/// 16 MiB message takes a quarter of the reads (and wake-ups) that 256 KiB reads took.
const DIRECT_READ_MAX: usize = 1024 * 1024;
/// The reason of a connection that ended without a close frame.
pub(in crate::native) const ABNORMAL: &str = "Abnormal Closure: No close control frame received";

/// What the read loop does after a batch of events.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Stop,
}

/// The read loop's state across rounds, in one struct and in this order, what every round
/// uses first: with many connections, each message's first touch of a cache line of its
/// connection's state misses the cache, and loose locals (or a `select!`'s futures) would
/// be spread over the whole of the event loop's future.
#[repr(C)]
struct Looping {
    next: Next,
    /// Whether the closing handshake was seen to start (and the session told).
    closing_seen: bool,
    /// Whether a message has begun and is not complete: the session times it.
    in_message: bool,
    ended: EndState,
    size: ReadSize,
    /// The session's next timeout. Reads only move its clocks (reported when the timer
    /// goes off), so it is asked again only then, when woken, and when the closing starts.
    due: Option<Instant>,
    /// When the round that read last began: a Tokio instant, turned into session time only
    /// when the timer goes off.
    last_received: Instant,
    /// Kept across rounds: a round then registers no timer and no waiter (see `Alarm`).
    alarm: Alarm,
    /// The waker the last round was polled with: the wake-up signal holds it, and the timer
    /// too while `alarm.registered`.
    waker: Option<Waker>,
    /// The rest of a big frame, lent for a read straight onto its message. Boxed: only big
    /// frames have one, and this state is every connection's for life.
    direct: Option<Box<DirectRead>>,
}

/// What woke a round of the read loop.
enum Woke {
    Signal,
    Timer,
    Read(std::io::Result<Input>),
}

impl Looping {
    /// Polls, in this order, the wake-up, the timer and (unless `paused`) the read: the
    /// wake-up and the timer, cheap to poll while pending, cannot be starved by a busy
    /// peer, and a fixed order costs no random number per round (as `select!`'s does).
    fn poll_round(
        &mut self,
        cx: &mut Context<'_>,
        sock: &Socket,
        reader: &mut Reader,
        paused: bool,
    ) -> Poll<Woke> {
        let same = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if !same {
            self.waker = Some(cx.waker().clone());
            self.alarm.registered = false;
        }
        if sock.0.handoff.wake_reader.poll_stored(cx, same).is_ready() {
            return Poll::Ready(Woke::Signal);
        }
        let now = Instant::now();
        if self.alarm.poll_due(cx, self.due, now).is_ready() {
            return Poll::Ready(Woke::Timer);
        }
        if paused {
            return Poll::Pending;
        }
        let read = poll_read_some(
            sock,
            reader,
            cx,
            self.size.len(),
            &mut self.direct,
            &mut self.ended.unwritten,
        );
        if read.is_ready() {
            self.last_received = now;
        }
        read.map(Woke::Read)
    }
}

/// Runs the event loop: reads, feeds the protocol core, calls the handlers, until closed.
pub(in crate::native) async fn read_loop(sock: &Socket, reader: &mut Reader) -> EndState {
    let shared = &sock.0;
    let mut st = Looping {
        next: Next::Continue,
        closing_seen: false,
        in_message: false,
        ended: EndState::default(),
        size: ReadSize::default(),
        due: None,
        last_received: Instant::now(),
        alarm: Alarm::new(Box::pin(unarmed())),
        waker: None,
        direct: None,
    };
    // `on_open`, first of all.
    st.next = run_actions(sock, &mut st.ended);

    if !reader.leftover.is_empty() && st.next == Next::Continue {
        let leftover = std::mem::take(&mut reader.leftover);
        st.next = process(sock, &reader.wr, &leftover, &mut st.ended, true);
    }
    st.due = session_due(sock);
    while st.next == Next::Continue {
        if shared.handoff.reader_done.load(Ordering::Acquire) {
            if shared.handoff.write_stalled.load(Ordering::Acquire) {
                let secs = lock(&shared.config)
                    .write_timeout
                    .unwrap_or_default()
                    .as_secs_f32();
                st.ended.outcome().close.get_or_insert_with(|| {
                    abnormal(format!(
                        "Abnormal Closure: the peer stopped reading (nothing could be written for {secs} s)"
                    ))
                });
                st.ended
                    .outcome()
                    .error
                    .get_or_insert(Error::Timeout("the peer stopped reading"));
                abort(sock);
            }
            // The writer failed: the connection is gone.
            st.ended
                .outcome()
                .close
                .get_or_insert_with(|| abnormal("the connection failed while writing"));
            break;
        }
        // Backpressure: while the stream is full nothing more is read (or dispatched).
        let paused = st.ended.stream_paused(sock);
        if !paused && st.ended.held {
            st.ended.held = false;
            st.next = process_with(sock, &reader.wr, |_| {}, &mut st.ended, true);
            continue;
        }
        // Nothing is read while paused, so answers held for the next read go now.
        if paused && std::mem::take(&mut st.ended.unwritten) {
            super::writer::write_through(sock, &reader.wr);
        }
        // Whether we wait for the end of a closing handshake, and the rest of a big frame
        // to read straight into the message (no copy, big reads). What the last round's
        // dispatch saw holds unless a frame or message is under way: only this task feeds
        // the core, and a close (from a handler or elsewhere) raises the wake-up, whose round
        // dispatches nothing, so the round after it looks again.
        let (closing, receiving) = match st.ended.seen.take() {
            Some(seen) if !seen.mid_frame && !seen.receiving => (seen.closing, false),
            _ => match lock(&shared.proto).as_mut() {
                Some(p) => {
                    st.direct = p.conn.begin_direct_read(DIRECT_READ_MIN).map(Box::new);
                    (
                        p.conn.state() != ConnectionState::Open,
                        p.conn.is_receiving_message(),
                    )
                }
                None => (false, false),
            },
        };
        // Only a message that spans reads changes this between rounds: small ones cost nothing.
        if receiving != st.in_message {
            st.in_message = receiving;
            let mut session = lock(&shared.session);
            if receiving {
                session.message_started(now());
            } else {
                session.message_ended();
            }
            drop(session);
            st.due = session_due(sock);
        }
        if closing && !st.closing_seen {
            st.closing_seen = true;
            lock(&shared.session).closing(now());
            st.due = session_due(sock);
        }
        let woke = std::future::poll_fn(|cx| st.poll_round(cx, sock, reader, paused)).await;
        match woke {
            Woke::Signal => st.due = session_due(sock),
            Woke::Timer => {
                {
                    let mut session = lock(&shared.session);
                    session.received(session_time(st.last_received));
                    session.handle_timeout(now());
                }
                st.next = run_actions(sock, &mut st.ended);
                st.due = session_due(sock);
            }
            Woke::Read(read) => st.next = st.received(sock, reader, read),
        }
        // A direct read that did not complete (another branch won, the peer left) hands
        // the message back unchanged.
        if let Some(read) = st.direct.take() {
            if let Some(p) = lock(&shared.proto).as_mut() {
                p.conn.end_direct_read(*read);
            }
        }
    }
    st.ended
}

impl Looping {
    /// Takes in what a read brought; `Stop` once the connection is to end.
    fn received(&mut self, sock: &Socket, reader: &Reader, read: std::io::Result<Input>) -> Next {
        let ended = &mut self.ended;
        match read {
            Ok(input) if input.is_end() => {
                ended
                    .outcome()
                    .close
                    .get_or_insert_with(|| abnormal(ABNORMAL));
                Next::Stop
            }
            Ok(Input::Buffer(read)) => {
                // A read that took less than it could drained the socket.
                let n = read.bytes().len();
                let next = process(sock, &reader.wr, read.bytes(), ended, n < self.size.len());
                self.size.adapt(n);
                next
            }
            Ok(Input::Direct(_)) => {
                // Answered at once, however much is waiting (see `process_with`).
                self.size.read_direct();
                match self.direct.take() {
                    Some(read) => process_with(
                        sock,
                        &reader.wr,
                        |conn| conn.end_direct_read(*read),
                        ended,
                        true,
                    ),
                    None => Next::Continue,
                }
            }
            Err(e) => {
                ended
                    .outcome()
                    .close
                    .get_or_insert_with(|| abnormal(format!("Abnormal Closure: {e}")));
                Next::Stop
            }
        }
    }
}

/// What a read brought.
enum Input {
    /// Bytes in the thread's read buffer.
    Buffer(Scratch),
    /// This many bytes straight onto the message.
    Direct(usize),
}

impl Input {
    /// Whether the read found the end of the input: the peer ended TCP.
    fn is_end(&self) -> bool {
        match self {
            Input::Buffer(read) => read.bytes().is_empty(),
            Input::Direct(n) => *n == 0,
        }
    }
}

/// Reads at most `max` bytes into the thread's read buffer, or straight onto the message
/// when a direct read is lent (at most `DIRECT_READ_MAX` bytes, so the unmasking that follows finds them in cache).
/// A read that finds nothing to read first writes the answers held for it (`unwritten`,
/// see `process_with`).
///
/// A poll function, not a future the event loop keeps: every connection keeps its event
/// loop's state for life. The direct read's future is made afresh at each poll; it keeps
/// nothing between polls (what a poll read is on the message).
fn poll_read_some(
    sock: &Socket,
    reader: &mut Reader,
    cx: &mut Context<'_>,
    max: usize,
    direct: &mut Option<Box<DirectRead>>,
    unwritten: &mut bool,
) -> Poll<std::io::Result<Input>> {
    let polled = poll_read_into(&mut reader.rd, cx, max, direct);
    if polled.is_pending() && std::mem::take(unwritten) {
        super::writer::write_through(sock, &reader.wr);
    }
    polled
}

/// `poll_read_some`'s read.
fn poll_read_into(
    rd: &mut Reading,
    cx: &mut Context<'_>,
    max: usize,
    direct: &mut Option<Box<DirectRead>>,
) -> Poll<std::io::Result<Input>> {
    match direct {
        Some(read) => {
            let want = read.want().min(DIRECT_READ_MAX) as u64;
            let mut limited = rd.take(want);
            let mut reading = std::pin::pin!(limited.read_buf(read.buf()));
            reading.as_mut().poll(cx).map_ok(Input::Direct)
        }
        None => scratch::poll_read(rd, cx, max).map_ok(Input::Buffer),
    }
}

/// The session time of Tokio instant `at`.
fn session_time(at: Instant) -> crate::session::Time {
    at.saturating_duration_since(crate::native::instant(Default::default()))
}

/// The session's next timeout, as a Tokio instant.
fn session_due(sock: &Socket) -> Option<Instant> {
    lock(&sock.0.session).poll_timeout().map(instant)
}

/// Carries out what the session asks of the open connection (`on_open`, probes, dropping
/// it); `Stop` once the connection is to end.
fn run_actions(sock: &Socket, ended: &mut EndState) -> Next {
    let mut next = Next::Continue;
    loop {
        let action = lock(&sock.0.session).poll_action();
        let Some(action) = action else { return next };
        match action {
            Action::Opened => {
                let on_open = lock(&sock.0.handlers).on_open.clone();
                if let Some(h) = on_open {
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| h(()))) {
                        ended.handler_panicked(sock, panic);
                    }
                }
            }
            Action::Probe(probe) => {
                tracing::trace!(id = %sock.0.id, "probing a quiet connection");
                // Quiet for a while: what a burst grew goes now.
                if let Some(p) = lock(&sock.0.proto).as_mut() {
                    p.conn.release_idle_buffers();
                }
                let _ = match probe {
                    Probe::Text(text) => sock.send_text(&text),
                    Probe::Ping => sock.send_with(crate::native::Outgoing::Ping(b"")),
                };
            }
            Action::Drop {
                farewell,
                event,
                error,
            } => {
                match farewell {
                    Some((code, reason)) => {
                        let _ = sock.close(code, reason);
                    }
                    None => abort(sock),
                }
                ended.outcome().close.get_or_insert(event);
                if let Some(error) = error {
                    ended.outcome().error.get_or_insert(error);
                }
                next = Next::Stop;
            }
            // The rest comes only once the connection has ended.
            Action::Reconnecting { .. } | Action::Connect { .. } | Action::Closed { .. } => {
                tracing::debug!(id = %sock.0.id, "{action:?} while open: ignored");
            }
        }
    }
}

/// A timer that never goes off: `alarm` arms it when there is a deadline.
fn unarmed() -> Sleep {
    // Not registered with the runtime until first polled (by `alarm`, for a deadline).
    const FAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);
    tokio::time::sleep_until(Instant::now() + FAR)
}

/// The read loop's one timer, kept across rounds, for the earliest of its deadlines
/// (closing handshake, keep-alive, read timeout), and the waker it was last polled with.
#[repr(C)]
struct Alarm {
    /// The timer's deadline: a round compares the time with this copy, and touches the
    /// timer itself (another cache line) only when it may have gone off.
    armed: Instant,
    /// Set while the timer is registered at its current deadline with the waker of the
    /// read loop's last round (`Looping::waker`; a new waker clears it).
    registered: bool,
    /// Boxed: it is touched only when it may have gone off, and inline it would sit between
    /// the fields every round uses.
    timer: Pin<Box<Sleep>>,
}

impl Alarm {
    fn new(timer: Pin<Box<Sleep>>) -> Self {
        Self {
            armed: timer.deadline(),
            registered: false,
            timer,
        }
    }

    /// Ready once `due` has passed (never when there is none); `now` is the time.
    ///
    /// Most rounds move a deadline later (every read restarts the keep-alive and
    /// read-timeout clocks), and moving a registered timer, or registering a new one each
    /// round, costs a trip through the runtime's timer wheel per message. The timer instead
    /// stays armed where it is when the deadline moves later; when it goes off early it is
    /// re-armed for the deadline of that moment. It is moved at once only when the deadline
    /// comes nearer. While it is registered with this task's waker and its deadline has not
    /// come (a timer never goes off before it), it is not polled again: it will wake the task.
    fn poll_due(&mut self, cx: &mut Context<'_>, due: Option<Instant>, now: Instant) -> Poll<()> {
        let Some(due) = due else {
            return Poll::Pending;
        };
        loop {
            if self.armed > due {
                self.arm(due);
            }
            if self.registered && now < self.armed {
                return Poll::Pending;
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                self.registered = true;
                return Poll::Pending;
            }
            self.registered = false;
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            self.arm(due);
        }
    }

    fn arm(&mut self, at: Instant) {
        self.timer.as_mut().reset(at);
        self.armed = at;
        self.registered = false;
    }
}

/// The peer is gone: send nothing more (no close frame either), and let the writer end TCP.
fn abort(sock: &Socket) {
    if let Some(p) = lock(&sock.0.proto).as_mut() {
        p.conn.abort();
    }
    super::writer::wake_writer(sock);
}

/// How the connection ended, collected while it runs. What every message uses first (see
/// `Looping`).
#[derive(Default)]
#[repr(C)]
pub(in crate::native) struct EndState {
    /// Dispatching stopped with events left in the protocol core: the stream was full.
    held: bool,
    /// A message as big as a direct read's was delivered by the events being dispatched.
    big_message: bool,
    /// Answers wait in the core's output for the read that drains the socket or finds
    /// nothing (`poll_read_some`): answers to input read together leave together.
    unwritten: bool,
    /// What the last look into the protocol core saw, for the next round (taken by it).
    seen: Option<Seen>,
    /// Where messages go: the read loop's copies.
    routes: Routes,
    /// How it ended, once that is known. Boxed: every connection keeps its read loop's
    /// state for life, and this is set only at the end.
    outcome: Option<Box<Outcome>>,
}

/// The protocol core as the read loop last saw it, kept so that a round of the loop need
/// not lock it again. Every lock of the core costs two atomic operations, and on a busy
/// server a first touch of a cold cache line.
#[derive(Clone, Copy)]
struct Seen {
    closing: bool,
    receiving: bool,
    mid_frame: bool,
    /// Decoded events wait: without any, dispatching needs no second look.
    events: bool,
}

impl Seen {
    fn of(conn: &Connection) -> Self {
        Self {
            closing: conn.state() != ConnectionState::Open,
            receiving: conn.is_receiving_message(),
            mid_frame: conn.is_mid_frame(),
            events: conn.has_events(),
        }
    }
}

/// The read loop's copies of where messages go (the stream sender, else the message
/// handler), refreshed when `Shared::routes` says they changed: a message then takes an
/// atomic load instead of two locks and a reference count.
#[derive(Default)]
#[repr(C)]
struct Routes {
    /// The `Shared::routes` count these were taken at (`None`: not yet taken).
    taken: Option<u64>,
    on_message: Option<crate::send_sync::Handler<crate::MsgEvent>>,
    stream: Option<crate::native::messages::StreamTx>,
}

impl Routes {
    /// Refreshes the copies if they changed; returns the messages a dropped stream left
    /// untaken, to be delivered before any other.
    #[inline]
    fn update(&mut self, shared: &crate::native::Shared) -> VecDeque<crate::MsgEvent> {
        let now = shared.routes.load(Ordering::Acquire);
        if self.taken == Some(now) {
            return VecDeque::new();
        }
        self.retake(shared, now)
    }

    /// Whether messages go to `on_message` (no stream) and that has not changed since the
    /// copies were taken.
    fn unchanged_handler_only(&self, shared: &crate::native::Shared) -> bool {
        self.stream.is_none() && self.taken == Some(shared.routes.load(Ordering::Acquire))
    }

    #[cold]
    fn retake(&mut self, shared: &crate::native::Shared, now: u64) -> VecDeque<crate::MsgEvent> {
        // Taken after the count: a change after this load bumps it again.
        let untaken = {
            let mut ending = lock(&shared.ending);
            self.stream = ending.stream_tx.clone();
            ending
                .untaken
                .take()
                .map(|untaken| *untaken)
                .unwrap_or_default()
        };
        self.on_message = lock(&shared.handlers).on_message.clone();
        self.taken = Some(now);
        untaken
    }
}

/// How a connection ended: its close event, and the error to report after it.
#[derive(Default)]
struct Outcome {
    close: Option<CloseEvent>,
    error: Option<Error>,
}

impl EndState {
    fn outcome(&mut self) -> &mut Outcome {
        self.outcome.get_or_insert_default()
    }

    /// The close event and error it ended with (if it said).
    pub(in crate::native) fn into_outcome(self) -> (Option<CloseEvent>, Option<Error>) {
        self.outcome.map_or((None, None), |o| (o.close, o.error))
    }

    /// Whether the stream (if messages go to one) holds all it may, on an open socket (a
    /// closing one delivers what is left, so that its closing handshake completes).
    fn held_back(&self, sock: &Socket) -> bool {
        self.routes
            .stream
            .as_ref()
            .is_some_and(crate::native::messages::StreamTx::is_full)
            && sock.ready_state() == ReadyState::Open
    }

    /// Whether the loop is to read nothing for now: the stream is full. The stream wakes the
    /// loop (`wake_reader`) once it has taken enough. A closing socket reads on, so that
    /// its closing handshake completes.
    fn stream_paused(&mut self, sock: &Socket) -> bool {
        for untaken in self.routes.update(&sock.0) {
            self.deliver(sock, untaken);
        }
        sock.ready_state() == ReadyState::Open
            && self
                .routes
                .stream
                .as_ref()
                .is_some_and(|s| s.is_full() && s.pause())
    }

    /// Hands a message to the stream, else to `on_message`.
    fn deliver(&mut self, sock: &Socket, msg: crate::MsgEvent) {
        let msg = match &self.routes.stream {
            Some(tx) => match tx.send(msg) {
                Ok(()) => return,
                Err(back) => back,
            },
            None => msg,
        };
        let panicked = self
            .routes
            .on_message
            .as_ref()
            .and_then(|h| catch_unwind(AssertUnwindSafe(|| h(msg))).err());
        if let Some(panic) = panicked {
            self.handler_panicked(sock, panic);
        }
    }

    /// A handler panicked: close with 1011 and report the panic through `on_error`.
    fn handler_panicked(&mut self, sock: &Socket, panic: Box<dyn std::any::Any + Send>) {
        let what = panic_message(panic.as_ref());
        close_after_panic(sock, &what);
        self.outcome()
            .error
            .get_or_insert(Error::HandlerPanicked(what));
    }
}

/// What a handler's panic said.
pub(in crate::native) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A handler panicked: close with 1011, the panic's message as the reason.
pub(in crate::native) fn close_after_panic(sock: &Socket, what: &str) {
    tracing::warn!(id = %sock.0.id, "event handler panicked: {what}");
    let mut reason = format!("Internal Error: {what}");
    truncate_utf8(&mut reason, 123);
    let _ = sock.close(CloseCode::INTERNAL_ERROR, &reason);
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Feeds bytes to the protocol core and dispatches the resulting events.
fn process(
    sock: &Socket,
    wr: &SharedWriter,
    data: &[u8],
    ended: &mut EndState,
    drained: bool,
) -> Next {
    process_with(sock, wr, |conn| conn.receive_data(data), ended, drained)
}

/// Gives the protocol core its input with `feed`, dispatches the resulting events, then
/// writes what they queued (`write_through`).
///
/// `drained`: the read that brought the input did not fill its buffer, so the peer has
/// likely sent nothing more yet. After a read that filled it, more input is probably
/// waiting: the answers are held (`EndState::unwritten`) until a read drains the socket or
/// finds nothing, and then written together. A direct read (the rest of a
/// big frame, read onto its message), or input that completed a message as big, is always
/// followed by a write-through: one big answer is worth a write of its own, and held back
/// it would wait for the next message's reads.
fn process_with(
    sock: &Socket,
    wr: &SharedWriter,
    feed: impl FnOnce(&mut Connection),
    ended: &mut EndState,
    drained: bool,
) -> Next {
    sock.0.handoff.dispatching.store(true, Ordering::Release);
    let next = dispatch(sock, feed, ended);
    sock.0.handoff.dispatching.store(false, Ordering::Release);
    if drained || std::mem::take(&mut ended.big_message) {
        ended.unwritten = false;
        super::writer::write_through(sock, wr);
    } else {
        ended.unwritten = true;
    }
    next
}

/// The most messages dispatch takes from the protocol core under one lock.
const BATCH_MAX: usize = 64;

thread_local! {
    /// The messages dispatch took from a protocol core ahead (see `dispatch`): one queue per
    /// thread, reused, as a dispatch hands all it took to the handlers before it returns.
    static BATCH: Cell<VecDeque<crate::MsgEvent>> = const { Cell::new(VecDeque::new()) };
}

fn dispatch(sock: &Socket, feed: impl FnOnce(&mut Connection), ended: &mut EndState) -> Next {
    let mut batch = BATCH.with(Cell::take);
    let next = dispatch_with(sock, feed, ended, &mut batch);
    // Not empty only when the connection went away during the handlers.
    batch.clear();
    BATCH.with(|kept| kept.set(batch));
    next
}

/// Takes the next event from the protocol core (under its lock), and with a message the
/// messages right behind it, up to `BATCH_MAX`, onto `batch`: one lock for a run of
/// pipelined messages instead of one each. Only while messages go to `on_message`, without
/// a memory budget: a stream takes them only as it has room, and a budget counts them
/// until taken.
fn take_event(
    shared: &crate::native::Shared,
    conn: &mut Connection,
    ended: &mut EndState,
    batch: &mut VecDeque<crate::MsgEvent>,
) -> (Option<Event>, bool) {
    let event = conn.next_event();
    if matches!(event, Some(Event::Message(_)))
        && ended.routes.unchanged_handler_only(shared)
        && conn.memory_budget().is_none()
    {
        conn.take_messages(batch, BATCH_MAX);
    }
    ended.seen = Some(Seen::of(conn));
    (event, conn.has_data_to_send())
}

fn dispatch_with(
    sock: &Socket,
    feed: impl FnOnce(&mut Connection),
    ended: &mut EndState,
    batch: &mut VecDeque<crate::MsgEvent>,
) -> Next {
    let shared = &sock.0;
    let held = ended.held_back(sock);
    // The input and the first event under one lock.
    let mut first = {
        let mut guard = lock(&shared.proto);
        let Some(proto) = guard.as_mut() else {
            return Next::Stop;
        };
        feed(&mut proto.conn);
        if held {
            // The stream is full: what was decoded waits in the core (see `stream_paused`).
            ended.held = true;
            return Next::Continue;
        }
        Some(take_event(shared, &mut proto.conn, ended, batch))
    };
    let mut next = Next::Continue;
    // One event at a time, so that handlers answer messages before a close or an error
    // that arrived after them takes effect.
    loop {
        let (ev, wake) = match first.take() {
            Some(first) => first,
            None => match batch.pop_front() {
                Some(msg) => (Some(Event::Message(msg)), false),
                // Only this task feeds the core, so the handlers added no event.
                None if ended.seen.is_some_and(|seen| !seen.events) => break,
                None if ended.held_back(sock) => {
                    ended.held = true;
                    break;
                }
                None => {
                    let mut guard = lock(&shared.proto);
                    let Some(proto) = guard.as_mut() else {
                        return Next::Stop;
                    };
                    take_event(shared, &mut proto.conn, ended, batch)
                }
            },
        };
        if wake && !shared.handoff.dispatching.load(Ordering::Acquire) {
            super::writer::wake_writer(sock);
        }
        let Some(ev) = ev else { break };
        match ev {
            Event::Message(msg) => {
                // What a dropped stream left untaken goes first.
                for untaken in ended.routes.update(shared) {
                    ended.deliver(sock, untaken);
                }
                ended.big_message |= msg.len() >= DIRECT_READ_MIN;
                ended.deliver(sock, msg);
                if !batch.is_empty() && !ended.routes.unchanged_handler_only(shared) {
                    // A handler changed where messages go (a stream takes them only as it
                    // has room): the ones taken ahead go back to the core.
                    if let Some(proto) = lock(&shared.proto).as_mut() {
                        proto.conn.put_back_messages(batch);
                    }
                    batch.clear();
                    ended.seen = None;
                }
            }
            Event::Ping(_) | Event::Pong(_) => {}
            Event::Close { code, reason } => {
                sock.set_state(ReadyState::Closing);
                ended.outcome().close = Some(CloseEvent {
                    code: code.map_or(1005, |c| c.as_u16()),
                    reason,
                    was_clean: true,
                });
                // The server ends TCP after the handshake; the client waits for it to.
                if lock(&shared.proto).as_ref().map(|p| p.conn.role()) == Some(Role::Server) {
                    next = Next::Stop;
                }
            }
            Event::Error(err) => {
                tracing::debug!(id = %shared.id, "failing the connection: {err}");
                sock.set_state(ReadyState::Closing);
                ended.outcome().close = Some(CloseEvent {
                    code: err.close_code().as_u16(),
                    reason: err.to_string(),
                    was_clean: false,
                });
                next = Next::Stop;
            }
        }
    }
    next
}

/// Ends the connection: stop the writer, report the close (then any handler error), and
/// drop the handlers so closures that hold a clone of the socket do not keep it alive.
pub(in crate::native) fn finish(sock: &Socket, close: CloseEvent, error: Option<Error>) {
    let shared = &sock.0;
    if let Some(p) = lock(&shared.proto).as_mut() {
        // Closed for good: later sends fail with `Closed` instead of waiting for a reconnect.
        p.reconnecting = false;
    }
    shared.handoff.reader_done.store(true, Ordering::Release);
    super::writer::wake_writer(sock);
    sock.set_state(ReadyState::Closed);
    // A `send_async` waiting for room fails with `Closed` (a reconnect's writer, aborted,
    // may never have said it ended).
    shared.handoff.written.notify_waiters();
    let handlers = std::mem::take(&mut *lock(&shared.handlers));
    {
        let mut ending = lock(&shared.ending);
        ending.close_event = Some(close.clone());
        ending.stream_tx.take();
    }
    shared.driving.closed();
    if let Some(h) = handlers.on_close {
        if catch_unwind(AssertUnwindSafe(|| h(close))).is_err() {
            tracing::warn!(id = %shared.id, "Err in on_close() handler");
        }
    }
    if let (Some(err), Some(h)) = (error, handlers.on_error) {
        if catch_unwind(AssertUnwindSafe(|| h(err))).is_err() {
            tracing::warn!(id = %shared.id, "Err in on_error() handler");
        }
    }
}

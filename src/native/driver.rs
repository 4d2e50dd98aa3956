//! The read loop (run by `read()`) and the writer task of one connection.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::{Instant, Sleep};

use super::{instant, lock, now, BoxIo, Reader, SharedWriter, Socket};
use crate::protocol::{CloseCode, Connection, ConnectionState, DirectRead, Event, Role};
use crate::session::{abnormal, Action, Probe};
use crate::{CloseEvent, Error, ReadyState};

/// Size of the reusable read buffer of a busy connection.
const READ_BUFFER: usize = 16 * 1024;
/// Size of the read buffer of a connection whose reads fill `READ_BUFFER` one after another:
/// many small frames wait, and a bigger read takes more of them per syscall (half a window
/// of 1 KiB messages took three receive calls with 16 KiB).
const BUSY_READ_BUFFER: usize = 64 * 1024;
/// Size of the read buffer of a quiet connection: an idle or lightly used connection holds
/// only this much, and moves to `READ_BUFFER` when a read fills it.
const SMALL_READ_BUFFER: usize = 256;
/// A frame with at least this much payload still to come is read straight into its message
/// (`Connection::begin_direct_read`) instead of through the read buffer.
const DIRECT_READ_MIN: usize = 8 * 1024;
/// The most one direct read takes: as much as a core's L2 cache holds (1 MiB on the machine
/// of BENCHMARKS.md), so the unmasking that follows still finds the bytes in cache, and a
/// 16 MiB message takes a quarter of the reads (and wake-ups) that 256 KiB reads took.
const DIRECT_READ_MAX: usize = 1024 * 1024;
/// After this many reads in a row that would have fit the next smaller read buffer, go back
/// to that one.
const SHRINK_AFTER: u32 = 64;
pub(super) const ABNORMAL: &str = "Abnormal Closure: No close control frame received";

/// Drains the connection's output to the stream until the connection is over.
///
/// The write half is locked before output is taken from the connection and until it is
/// written, so the read task's `write_through` (which takes the lock only when it is free)
/// never sends newer bytes ahead of older ones.
pub(super) async fn write_loop(sock: Socket, wr: SharedWriter, role: Role) {
    let shared = &sock.0;
    // Swapped with the connection's output buffer each round, so both allocations are reused;
    // `more` takes the segments after it (handed-over payloads), written in the same write.
    let mut out = Vec::new();
    let mut more = VecDeque::new();
    let write_timeout = *lock(&shared.write_timeout);
    loop {
        let mut half = wr.lock().await;
        let (queued, ended, failed) = {
            let mut guard = lock(&shared.proto);
            let Some(proto) = guard.as_mut() else { break };
            proto.conn.swap_all_data_to_send(&mut out, &mut more);
            // What was queued counts as buffered until its last segment has been taken.
            let queued = if proto.conn.has_data_to_send() {
                0
            } else {
                std::mem::take(&mut proto.queued)
            };
            let failed = proto.conn.state() == ConnectionState::Failed;
            let ended =
                proto.conn.is_closed() || failed || shared.reader_done.load(Ordering::Acquire);
            (queued, ended, failed)
        };
        let idle = out.is_empty() && more.is_empty();
        let result = if idle {
            if shared.unflushed.swap(false, Ordering::AcqRel) {
                flush(&mut half, write_timeout).await
            } else {
                Ok(())
            }
        } else if more.is_empty() {
            write_all(&mut half, &mut [IoSlice::new(&out)], write_timeout).await
        } else {
            let mut bufs: Vec<IoSlice<'_>> = std::iter::once(&out)
                .chain(&more)
                .map(|b| IoSlice::new(b))
                .collect();
            // Boxed: only big handed-over messages take this path, and the writer task's
            // state (kept by every idle connection) stays as small as without it.
            Box::pin(write_all(&mut half, &mut bufs, write_timeout)).await
        };
        more.clear();
        if let Err(e) = result {
            if e.kind() == std::io::ErrorKind::TimedOut {
                shared.write_stalled.store(true, Ordering::Release);
            }
            tracing::debug!(id = %shared.id, "write failed: {e}");
            shared.reader_done.store(true, Ordering::Release);
            shared.wake_reader.notify_one();
            break;
        }
        if idle {
            if ended {
                // RFC 6455 §7.1.1: the server ends TCP first; a failed connection is dropped.
                if role == Role::Server || failed {
                    let _ = half.shutdown().await;
                }
                break;
            }
            drop(half);
            shared.wake_writer.notified().await;
            continue;
        }
        drop(half);
        shared.buffered.fetch_sub(queued, Ordering::AcqRel);
        shared.written.notify_waiters();
    }
    shared.writer_done.store(true, Ordering::Release);
    shared.written.notify_waiters();
}

/// Writes what the events of a read queued, from the read task, at once: when the writer
/// task is idle (the write half is free) and as far as the socket takes it without
/// waiting. The rest, and any error, is left to the writer task.
///
/// Each connection's answer then leaves as soon as its read is handled, not after the
/// other connections that became readable at the same time (their read tasks run before
/// any writer task that the first one woke).
///
/// While the read task handles events (`Shared::dispatching`), sends do not wake the writer
/// task, as this follows: it wakes the writer task itself for what it leaves, and once the
/// connection is closing (the writer task then ends TCP).
fn write_through(sock: &Socket, wr: &SharedWriter) {
    let shared = &sock.0;
    let Ok(mut half) = wr.try_lock() else {
        // The writer task holds the half: it may be about to wait, so wake it for the rest.
        shared.wake_writer.notify_one();
        return;
    };
    let mut guard = lock(&shared.proto);
    let Some(proto) = guard.as_mut() else { return };
    if proto.conn.state() != ConnectionState::Open {
        drop(guard);
        shared.wake_writer.notify_one(); // closing: the writer task writes and ends TCP
        return;
    }
    let mut cx = Context::from_waker(Waker::noop());
    let mut wrote = false;
    while proto.conn.has_data_to_send() {
        let mut slices = [IoSlice::new(&[]); 4];
        let k = proto.conn.data_to_send_vectored(&mut slices);
        let written = match slices.get(..k).unwrap_or_default() {
            [one] => Pin::new(&mut *half).poll_write(&mut cx, one),
            more => Pin::new(&mut *half).poll_write_vectored(&mut cx, more),
        };
        match written {
            Poll::Ready(Ok(n)) if n > 0 => {
                proto.conn.consume(n);
                wrote = true;
            }
            _ => break, // would block, or an error the writer task will meet and report
        }
    }
    if proto.conn.has_data_to_send() {
        shared.wake_writer.notify_one(); // the socket would block: the writer task waits
    }
    if !wrote {
        return;
    }
    if !matches!(
        Pin::new(&mut *half).poll_flush(&mut cx),
        Poll::Ready(Ok(()))
    ) {
        shared.unflushed.store(true, Ordering::Release);
        shared.wake_writer.notify_one();
    }
    if !proto.conn.has_data_to_send() {
        let queued = std::mem::take(&mut proto.queued);
        drop(guard);
        shared.buffered.fetch_sub(queued, Ordering::AcqRel);
        shared.written.notify_waiters();
    }
}

/// Runs one write-side step (`op`), failing with `TimedOut` when it makes no progress for
/// `timeout`.
async fn within<T>(
    timeout: Option<Duration>,
    op: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match timeout {
        Some(t) => tokio::time::timeout(t, op).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer stopped reading")
        })?,
        None => op.await,
    }
}

/// Flushes the write half; fails with `TimedOut` after `timeout`.
async fn flush(wr: &mut WriteHalf<BoxIo>, timeout: Option<Duration>) -> std::io::Result<()> {
    within(timeout, wr.flush()).await
}

/// Writes all of `bufs`, in order, with vectored writes (a handed-over payload leaves in the
/// same write as its header); fails with `TimedOut` when one write makes no progress for
/// `timeout`.
async fn write_all(
    wr: &mut WriteHalf<BoxIo>,
    mut bufs: &mut [IoSlice<'_>],
    timeout: Option<Duration>,
) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0); // skip empty slices
    while !bufs.is_empty() {
        let n = within(timeout, wr.write_vectored(bufs)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    flush(wr, timeout).await
}

/// What the read loop does after a batch of events.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Stop,
}

/// Runs the event loop: reads, feeds the protocol core, calls the handlers, until closed.
pub(super) async fn read_loop(sock: &Socket, mut reader: Reader) -> EndState {
    let shared = &sock.0;
    let mut ended = EndState::default();
    // `on_open`, first of all.
    let mut next = run_actions(sock, &mut ended);

    let leftover = std::mem::take(&mut reader.leftover);
    if !leftover.is_empty() && next == Next::Continue {
        next = process(sock, &reader.wr, &leftover, &mut ended, true);
    }
    let mut buf = ReadBuffer::default();
    // The session's next timeout. Reads only move its clocks (reported when the timer goes
    // off), so it is asked again only then, when woken, and when the closing starts.
    let mut due = session_due(sock);
    let mut closing_seen = false;
    let mut last_received = now();
    // Kept across rounds: a round then registers no timer and no waiter (see `alarm`).
    let mut timer = std::pin::pin!(unarmed());
    let mut woken = std::pin::pin!(shared.wake_reader.notified());
    while next == Next::Continue {
        if shared.reader_done.load(Ordering::Acquire) {
            if shared.write_stalled.load(Ordering::Acquire) {
                let secs = lock(&shared.write_timeout)
                    .unwrap_or_default()
                    .as_secs_f32();
                ended.close.get_or_insert_with(|| {
                    abnormal(format!(
                        "Abnormal Closure: the peer stopped reading (nothing could be written for {secs} s)"
                    ))
                });
                ended
                    .error
                    .get_or_insert(Error::Timeout("the peer stopped reading"));
                abort(sock);
            }
            // The writer failed: the connection is gone.
            ended
                .close
                .get_or_insert_with(|| abnormal("the connection failed while writing"));
            break;
        }
        // Whether we wait for the end of a closing handshake, and the rest of a big frame
        // to read straight into the message (no copy, big reads).
        let (closing, mut direct) = match lock(&shared.proto).as_mut() {
            Some(p) => (
                p.conn.state() != ConnectionState::Open,
                p.conn.begin_direct_read(DIRECT_READ_MIN),
            ),
            None => (false, None),
        };
        if closing && !closing_seen {
            closing_seen = true;
            lock(&shared.session).closing(now());
            due = session_due(sock);
        }
        // What a read into the buffer may take: one that takes less drained the socket.
        let capacity = buf.as_mut().len();
        tokio::select! {
            read = read_some(&mut reader.rd, &mut buf, &mut direct) => match read {
                Ok(0) => {
                    ended.close.get_or_insert_with(|| abnormal(ABNORMAL));
                    next = Next::Stop;
                }
                Ok(n) => {
                    last_received = now();
                    next = match direct.take() {
                        // Answered at once, however much is waiting (see `process_with`).
                        Some(read) => {
                            buf.read_direct();
                            process_with(sock, &reader.wr, |conn| conn.end_direct_read(read), &mut ended, true)
                        }
                        None => {
                            let next = process(sock, &reader.wr, buf.as_mut().get(..n).unwrap_or_default(), &mut ended, n < capacity);
                            buf.adapt(n);
                            next
                        }
                    };
                }
                Err(e) => {
                    ended.close.get_or_insert_with(|| abnormal(format!("Abnormal Closure: {e}")));
                    next = Next::Stop;
                }
            },
            () = &mut woken => {
                woken.set(shared.wake_reader.notified());
                due = session_due(sock);
            }
            () = alarm(timer.as_mut(), due) => {
                {
                    let mut session = lock(&shared.session);
                    session.received(last_received);
                    session.handle_timeout(now());
                }
                next = run_actions(sock, &mut ended);
                due = session_due(sock);
            }
        }
        // A direct read that did not complete (another branch won, the peer left) hands
        // the message back unchanged.
        if let Some(read) = direct.take() {
            if let Some(p) = lock(&shared.proto).as_mut() {
                p.conn.end_direct_read(read);
            }
        }
    }
    ended
}

/// Reads into the read buffer, or straight onto the message when a direct read is lent
/// (at most `DIRECT_READ_MAX` bytes, so the unmasking that follows finds them in cache).
async fn read_some(
    rd: &mut ReadHalf<BoxIo>,
    buf: &mut ReadBuffer,
    direct: &mut Option<DirectRead>,
) -> std::io::Result<usize> {
    match direct {
        Some(read) => {
            let want = read.want().min(DIRECT_READ_MAX) as u64;
            rd.take(want).read_buf(read.buf()).await
        }
        None => rd.read(buf.as_mut()).await,
    }
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
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| h())) {
                        ended.handler_panicked(sock, panic);
                    }
                }
            }
            Action::Probe(probe) => {
                tracing::trace!(id = %sock.0.id, "probing a quiet connection");
                let _ = match probe {
                    Probe::Text(text) => sock.send_text(&text),
                    Probe::Ping => sock.send_with(super::Outgoing::Ping(b"")),
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
                ended.close.get_or_insert(event);
                if let Some(error) = error {
                    ended.error.get_or_insert(error);
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

/// The read buffer: small while the connection is quiet, so idle connections cost little;
/// `READ_BUFFER` once a read fills it; `BUSY_READ_BUFFER` once two reads in a row fill that
/// (many small frames waiting: each read takes more of them). A direct read breaks the row,
/// so a stream of big frames, whose payloads are read straight onto their messages, keeps
/// `READ_BUFFER`. After `SHRINK_AFTER` reads in a row that would have fit the next smaller
/// size, it goes back to that size.
struct ReadBuffer {
    buf: Vec<u8>,
    /// Reads in a row that would have fit the next smaller size.
    small_reads: u32,
    /// Reads in a row that filled the buffer.
    full_reads: u32,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        Self::sized(SMALL_READ_BUFFER)
    }
}

impl ReadBuffer {
    fn sized(len: usize) -> Self {
        Self {
            buf: vec![0; len],
            small_reads: 0,
            full_reads: 0,
        }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// After a read of `n` bytes into the buffer: grows when reads fill it; shrinks after
    /// many small reads.
    fn adapt(&mut self, n: usize) {
        let len = self.buf.len();
        if n == len {
            self.full_reads += 1;
            self.small_reads = 0;
            match len {
                SMALL_READ_BUFFER => *self = Self::sized(READ_BUFFER),
                READ_BUFFER if self.full_reads >= 2 => *self = Self::sized(BUSY_READ_BUFFER),
                _ => {}
            }
            return;
        }
        self.full_reads = 0;
        let below = if len > READ_BUFFER {
            READ_BUFFER
        } else {
            SMALL_READ_BUFFER
        };
        if len > SMALL_READ_BUFFER && n <= below {
            self.small_reads += 1;
            if self.small_reads >= SHRINK_AFTER {
                *self = Self::sized(below);
            }
        } else {
            self.small_reads = 0;
        }
    }

    /// A read straight onto a message breaks a row of reads that filled the buffer, so big
    /// frames keep `READ_BUFFER`.
    fn read_direct(&mut self) {
        self.full_reads = 0;
    }
}

/// A timer that never goes off: `alarm` arms it when there is a deadline.
fn unarmed() -> Sleep {
    // Not registered with the runtime until first polled (by `alarm`, for a deadline).
    const FAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);
    tokio::time::sleep_until(Instant::now() + FAR)
}

/// Completes once `due` has passed (never when there is none), with the read loop's one
/// timer, kept across rounds, for the earliest of its deadlines (closing handshake,
/// keep-alive, read timeout).
///
/// Most rounds move a deadline later (every read restarts the keep-alive and read-timeout
/// clocks), and moving a registered timer, or registering a new one each round, costs a
/// trip through the runtime's timer wheel per message. The timer instead stays armed where
/// it is when the deadline moves later; when it goes off early it is re-armed for the
/// deadline of that moment. It is moved at once only when the deadline comes nearer.
async fn alarm(mut timer: Pin<&mut Sleep>, due: Option<Instant>) {
    let Some(due) = due else {
        return std::future::pending().await;
    };
    loop {
        if timer.deadline() > due {
            timer.as_mut().reset(due);
        }
        timer.as_mut().await;
        if Instant::now() >= due {
            return;
        }
        timer.as_mut().reset(due);
    }
}

/// The peer is gone: send nothing more (no close frame either), and let the writer end TCP.
fn abort(sock: &Socket) {
    if let Some(p) = lock(&sock.0.proto).as_mut() {
        p.conn.abort();
    }
    sock.0.wake_writer.notify_one();
}

/// How the connection ended, collected while it runs.
#[derive(Default)]
pub(super) struct EndState {
    pub(super) close: Option<CloseEvent>,
    pub(super) error: Option<Error>,
}

impl EndState {
    /// A handler panicked: close with 1011 and report the panic through `on_error`.
    fn handler_panicked(&mut self, sock: &Socket, panic: Box<dyn std::any::Any + Send>) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::warn!(id = %sock.0.id, "event handler panicked: {what}");
        let mut reason = format!("Internal Error: {what}");
        truncate_utf8(&mut reason, 123);
        let _ = sock.close(CloseCode::INTERNAL_ERROR, &reason);
        self.error.get_or_insert(Error::HandlerPanicked(what));
    }
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
/// waiting: the answers are left to the writer task, which runs once the read task has
/// read what is there, and writes all the answers together. A direct read (the rest of a
/// big frame, read onto its message) is always followed by a write-through: one big answer
/// is worth a write of its own, and held back it would wait for the next message's reads.
fn process_with(
    sock: &Socket,
    wr: &SharedWriter,
    feed: impl FnOnce(&mut Connection),
    ended: &mut EndState,
    drained: bool,
) -> Next {
    sock.0.dispatching.store(true, Ordering::Release);
    let next = dispatch(sock, feed, ended);
    sock.0.dispatching.store(false, Ordering::Release);
    if drained {
        write_through(sock, wr);
    } else {
        sock.0.wake_writer.notify_one();
    }
    next
}

fn dispatch(sock: &Socket, feed: impl FnOnce(&mut Connection), ended: &mut EndState) -> Next {
    let shared = &sock.0;
    {
        let mut guard = lock(&shared.proto);
        let Some(proto) = guard.as_mut() else {
            return Next::Stop;
        };
        feed(&mut proto.conn);
    }
    let mut next = Next::Continue;
    // One event at a time, so that handlers answer messages before a close or an error
    // that arrived after them takes effect.
    loop {
        let (ev, wake) = {
            let mut guard = lock(&shared.proto);
            let Some(proto) = guard.as_mut() else {
                return Next::Stop;
            };
            (proto.conn.next_event(), proto.conn.has_data_to_send())
        };
        if wake && !shared.dispatching.load(Ordering::Acquire) {
            shared.wake_writer.notify_one();
        }
        let Some(ev) = ev else { break };
        match ev {
            Event::Message(msg) => {
                let msg = match &*lock(&shared.stream_tx) {
                    Some(tx) => match tx.send(msg) {
                        Ok(()) => continue,
                        Err(back) => back.0,
                    },
                    None => msg,
                };
                let handler = lock(&shared.handlers).on_message.clone();
                if let Some(h) = handler {
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| h(msg))) {
                        ended.handler_panicked(sock, panic);
                    }
                }
            }
            Event::Ping(_) | Event::Pong(_) => {}
            Event::Close { code, reason } => {
                sock.set_state(ReadyState::Closing);
                ended.close = Some(CloseEvent {
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
                ended.close = Some(CloseEvent {
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
pub(super) fn finish(sock: &Socket, close: CloseEvent, error: Option<Error>) {
    let shared = &sock.0;
    if let Some(p) = lock(&shared.proto).as_mut() {
        // Closed for good: later sends fail with `Closed` instead of waiting for a reconnect.
        p.reconnecting = false;
    }
    shared.reader_done.store(true, Ordering::Release);
    shared.wake_writer.notify_one();
    sock.set_state(ReadyState::Closed);
    let handlers = std::mem::take(&mut *lock(&shared.handlers));
    *lock(&shared.close_event) = Some(close.clone());
    lock(&shared.stream_tx).take();
    shared.closed_notify.notify_waiters();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffer_is_small_until_a_read_fills_it_and_shrinks_when_reads_stay_small() {
        let mut buf = ReadBuffer::default();
        assert_eq!(buf.as_mut().len(), SMALL_READ_BUFFER);
        buf.adapt(100);
        assert_eq!(buf.as_mut().len(), SMALL_READ_BUFFER);
        buf.adapt(SMALL_READ_BUFFER);
        assert_eq!(buf.as_mut().len(), READ_BUFFER);
        // Busy: big reads interleaved with small ones keep the big buffer.
        for _ in 0..10 * SHRINK_AFTER {
            buf.adapt(10);
            buf.adapt(4000);
        }
        assert_eq!(buf.as_mut().len(), READ_BUFFER);
        for _ in 1..SHRINK_AFTER {
            buf.adapt(10);
        }
        assert_eq!(buf.as_mut().len(), READ_BUFFER);
        buf.adapt(10);
        assert_eq!(buf.as_mut().len(), SMALL_READ_BUFFER);
    }

    #[test]
    fn read_buffer_grows_for_many_small_frames_but_not_for_big_frames_read_directly() {
        let mut buf = ReadBuffer::sized(READ_BUFFER);
        // Big frames: each full read is followed by a direct read of the frame's rest.
        for _ in 0..10 {
            buf.adapt(READ_BUFFER);
            buf.read_direct();
        }
        assert_eq!(buf.as_mut().len(), READ_BUFFER);
        // Small frames filling two reads in a row: more of them per read.
        buf.adapt(READ_BUFFER);
        assert_eq!(buf.as_mut().len(), READ_BUFFER);
        buf.adapt(READ_BUFFER);
        assert_eq!(buf.as_mut().len(), BUSY_READ_BUFFER);
        // Reads that would fit the 16 KiB buffer: back to it, then on to the small one.
        for _ in 1..SHRINK_AFTER {
            buf.adapt(READ_BUFFER);
        }
        buf.adapt(READ_BUFFER + 1); // one that would not have fit breaks the row
        for _ in 1..SHRINK_AFTER {
            buf.adapt(1000);
        }
        assert_eq!(buf.as_mut().len(), BUSY_READ_BUFFER);
        buf.adapt(1000);
        assert_eq!(buf.as_mut().len(), READ_BUFFER);
        for _ in 0..SHRINK_AFTER {
            buf.adapt(10);
        }
        assert_eq!(buf.as_mut().len(), SMALL_READ_BUFFER);
    }
}

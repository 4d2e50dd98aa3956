//! The writer task of one connection, and the read task's write of what its events
//! queued (`write_through`).
//!
//! A writer task runs only while output waits for it: `wake_writer` starts one unless one
//! runs, and it ends once it finds nothing to write (an idle connection keeps no task for
//! its writes). Most answers never need one: the read task writes them through.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::native::{lock, SharedWriter, Socket, Writing};
use crate::protocol::{ConnectionState, Role};

/// Output waits, or the connection ends: makes sure a writer task sees to it. Starts one
/// unless one runs; a running one looks again before it ends, so no wake-up is lost.
pub(in crate::native) fn wake_writer(sock: &Socket) {
    let handoff = &sock.0.handoff;
    // SeqCst with the writer's store of `writer_running` and load of `writer_wanted`:
    // either the ending writer sees this, or this sees it gone and starts the next one.
    handoff.writer_wanted.store(true, Ordering::SeqCst);
    if handoff.writer_running.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut link = lock(&sock.0.link);
    let (Some(wr), Some(runtime)) = (link.half.clone(), link.runtime.as_ref()) else {
        // No connection to write to: between connections, or before the first.
        handoff.writer_running.store(false, Ordering::SeqCst);
        return;
    };
    link.writer = Some(runtime.spawn(write_loop(sock.clone(), wr)));
}

/// Drains the connection's output to the stream until there is nothing to write (the task
/// then ends), or the connection is over.
///
/// The writer takes the write half out of its slot before it takes output from the
/// connection, and puts it back once that is written; the read task's `write_through`
/// writes only while the half is in its slot (holding the slot's lock, without waiting),
/// so newer bytes never leave ahead of older ones. A plain mutex held for moments, not an
/// async one held across writes: this is taken and released for every message.
async fn write_loop(sock: Socket, wr: SharedWriter) {
    let shared = &sock.0;
    // Swapped with the connection's output buffer each round, so both allocations are reused;
    // `more` takes the segments after it (handed-over payloads), written in the same write.
    let mut out = Vec::new();
    let mut more = VecDeque::new();
    // The biggest segment of the last write, handed back to the connection at the next
    // round (`Connection::recycle_written`): an echo of big messages reuses its buffers.
    let mut written_segment = Vec::new();
    let write_timeout = lock(&shared.config).write_timeout;
    loop {
        // Asked from here on: this round's look at the output sees it.
        shared.handoff.writer_wanted.store(false, Ordering::SeqCst);
        let Some(mut half) = lock(&wr).take() else {
            break;
        };
        let (written, queued, ended, failed, role) = {
            let mut guard = lock(&shared.proto);
            let Some(proto) = guard.as_mut() else {
                *lock(&wr) = Some(half);
                break;
            };
            // What the last write took off the queue goes back to the memory budget.
            proto.settle_send(shared.buffered.load(Ordering::Acquire));
            if written_segment.capacity() != 0 {
                proto
                    .conn
                    .recycle_written(std::mem::take(&mut written_segment));
            }
            let written = proto.conn.swap_all_data_to_send(&mut out, &mut more);
            // What was queued counts as buffered until its last segment has been taken.
            let queued = if proto.conn.has_data_to_send() {
                0
            } else {
                std::mem::take(&mut proto.queued)
            };
            let failed = proto.conn.state() == ConnectionState::Failed;
            let ended = proto.conn.is_closed()
                || failed
                || shared.handoff.reader_done.load(Ordering::Acquire);
            (written, queued, ended, failed, proto.conn.role())
        };
        // Written by the read task already (a partial write-through).
        let first = out.get(written..).unwrap_or_default();
        let idle = out.is_empty() && more.is_empty();
        // The writes are boxed: they hold a timer and a write in progress, and the task,
        // started for each burst of output, is then as small to make as it can be.
        let result = if idle {
            if shared.handoff.unflushed.swap(false, Ordering::AcqRel) {
                Box::pin(flush(&mut half, write_timeout)).await
            } else {
                Ok(())
            }
        } else if more.is_empty() {
            Box::pin(write_all(
                &mut half,
                &mut [IoSlice::new(first)],
                write_timeout,
            ))
            .await
        } else {
            let mut bufs: Vec<IoSlice<'_>> = std::iter::once(first)
                .chain(more.iter().map(Vec::as_slice))
                .map(IoSlice::new)
                .collect();
            Box::pin(write_all(&mut half, &mut bufs, write_timeout)).await
        };
        for segment in more.drain(..) {
            if segment.capacity() > written_segment.capacity() {
                written_segment = segment;
            }
        }
        if let Err(e) = result {
            if e.kind() == std::io::ErrorKind::TimedOut {
                shared.handoff.write_stalled.store(true, Ordering::Release);
            }
            tracing::debug!(id = %shared.id, "write failed: {e}");
            *lock(&wr) = Some(half);
            shared.handoff.reader_done.store(true, Ordering::Release);
            shared.handoff.wake_reader.raise();
            break;
        }
        if idle {
            if ended {
                // RFC 6455 §7.1.1: the server ends TCP first; a failed connection is dropped.
                if role == Role::Server || failed {
                    let _ = half.shutdown().await;
                }
                *lock(&wr) = Some(half);
                break;
            }
            *lock(&wr) = Some(half);
            // Nothing to write: the task ends, unless more was asked meanwhile (then it goes
            // on, or the writer task started for it does).
            shared.handoff.writer_running.store(false, Ordering::SeqCst);
            if shared.handoff.writer_wanted.load(Ordering::SeqCst)
                && !shared.handoff.writer_running.swap(true, Ordering::SeqCst)
            {
                continue;
            }
            forget_own_handle(shared);
            return;
        }
        *lock(&wr) = Some(half);
        if queued > 0 {
            release_buffered(shared, &lock(&shared.proto), queued);
        }
        notify_written(shared);
    }
    shared.handoff.writer_done.store(true, Ordering::Release);
    shared.handoff.written.notify_waiters();
}

/// Drops the running task's own handle from the socket, unless a newer writer task's
/// replaced it: a handle keeps its finished task's memory.
fn forget_own_handle(shared: &crate::native::Shared) {
    let own = tokio::task::try_id();
    let mut link = lock(&shared.link);
    if own.is_some() && link.writer.as_ref().map(tokio::task::JoinHandle::id) == own {
        let handle = link.writer.take();
        drop(link);
        drop(handle);
    }
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
pub(super) fn write_through(sock: &Socket, wr: &SharedWriter) {
    // Started once the locks are let go: a new writer task's first step takes them.
    if write_what_goes(sock, wr) {
        wake_writer(sock);
    }
}

/// `write_through`'s writes; `true` when a writer task is needed for the rest.
fn write_what_goes(sock: &Socket, wr: &SharedWriter) -> bool {
    let shared = &sock.0;
    let mut slot = match wr.try_lock() {
        Ok(slot) => slot,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        // The writer task is taking or returning the half: it sees to the rest.
        Err(std::sync::TryLockError::WouldBlock) => return true,
    };
    let Some(half) = slot.as_mut() else {
        return true; // the writer task is writing: it may be about to end
    };
    let mut guard = lock(&shared.proto);
    let Some(proto) = guard.as_mut() else {
        return false;
    };
    if proto.conn.state() != ConnectionState::Open {
        return true; // closing: the writer task writes and ends TCP
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
    // The socket would block: the writer task waits for it.
    let mut needed = proto.conn.has_data_to_send();
    if !wrote {
        return needed;
    }
    if !matches!(
        Pin::new(&mut *half).poll_flush(&mut cx),
        Poll::Ready(Ok(()))
    ) {
        shared.handoff.unflushed.store(true, Ordering::Release);
        needed = true;
    }
    if !proto.conn.has_data_to_send() {
        let queued = std::mem::take(&mut proto.queued);
        release_buffered(shared, &guard, queued);
        drop(guard);
        notify_written(shared);
    }
    needed
}

/// `queued` payload bytes were written: `buffered_amount` goes down. Only under the lock of
/// the protocol core (`_core`, its guard), as every change of `Shared::buffered` is: a send
/// then adds to it with a plain store, not a locked instruction per message.
fn release_buffered(
    shared: &crate::native::Shared,
    _core: &std::sync::MutexGuard<'_, Option<crate::native::Proto>>,
    queued: usize,
) {
    // SeqCst: see `Socket::flush`.
    shared.buffered.fetch_sub(queued, Ordering::SeqCst);
}

/// A write took queued bytes: a `flush` waiting for it is told (none usually is, and then
/// no lock is taken).
fn notify_written(shared: &crate::native::Shared) {
    // SeqCst: see `Socket::flush`.
    if shared.handoff.flushing.load(Ordering::SeqCst) > 0 {
        shared.handoff.written.notify_waiters();
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
async fn flush(wr: &mut Writing, timeout: Option<Duration>) -> std::io::Result<()> {
    within(timeout, wr.flush()).await
}

/// Writes all of `bufs`, in order, with vectored writes (a handed-over payload leaves in the
/// same write as its header); fails with `TimedOut` when one write makes no progress for
/// `timeout`.
async fn write_all(
    wr: &mut Writing,
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

//! The read buffer: one per thread, shared by the connections that thread runs, not one
//! per connection. A read's bytes are fed to the protocol core before the read task next
//! awaits (the core keeps what it still needs), so a buffer is in use only between a read
//! and the end of its processing, never while a connection waits. Idle connections then
//! hold no read buffer at all, busy ones no 16-64 KiB buffer each, and the bytes of every
//! read land in the same few cache lines.

use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The size of a thread's read buffer: the most one read takes (see `read_size`).
pub(super) const LEN: usize = 64 * 1024;

thread_local! {
    static BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The bytes of one read, in the thread's buffer, which goes back to the thread on drop.
pub(super) struct Scratch {
    buf: Vec<u8>,
    len: usize,
}

impl Scratch {
    pub(super) fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.buf));
    }
}

/// Returns a buffer to the thread (a handler that drove another socket's read meanwhile
/// made a second one: one is kept).
fn give_back(buf: Vec<u8>) {
    let _ = BUFFER.try_with(|cell| {
        let kept = cell.take();
        cell.set(if kept.len() >= buf.len() { kept } else { buf });
    });
}

/// Reads at most `max` bytes (at most `LEN`) from `rd` into the thread's buffer.
pub(super) fn poll_read<R: AsyncRead + Unpin>(
    rd: &mut R,
    cx: &mut Context<'_>,
    max: usize,
) -> Poll<std::io::Result<Scratch>> {
    let mut buf = BUFFER.try_with(Cell::take).unwrap_or_default();
    if buf.len() < LEN {
        buf = vec![0; LEN];
    }
    let mut read = ReadBuf::new(buf.get_mut(..max).unwrap_or_default());
    let polled = Pin::new(rd).poll_read(cx, &mut read);
    let len = read.filled().len();
    match polled {
        Poll::Ready(Ok(())) => Poll::Ready(Ok(Scratch { buf, len })),
        Poll::Ready(Err(e)) => {
            give_back(buf);
            Poll::Ready(Err(e))
        }
        Poll::Pending => {
            give_back(buf);
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read's buffer goes back to the thread, and the next read reuses it: one
    /// allocation per thread, however many reads and connections.
    #[test]
    fn the_buffer_is_reused_by_the_next_read() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut a: &[u8] = b"first";
        let Poll::Ready(Ok(first)) = poll_read(&mut a, &mut cx, LEN) else {
            panic!("a slice is always ready");
        };
        assert_eq!(first.bytes(), b"first");
        let ptr = first.buf.as_ptr();
        drop(first);
        let mut b: &[u8] = b"second";
        let Poll::Ready(Ok(second)) = poll_read(&mut b, &mut cx, LEN) else {
            panic!("a slice is always ready");
        };
        assert_eq!(second.bytes(), b"second");
        assert_eq!(second.buf.as_ptr(), ptr);
        // While one read's bytes are held, another read gets a buffer of its own.
        let mut c: &[u8] = b"third";
        let Poll::Ready(Ok(third)) = poll_read(&mut c, &mut cx, 3) else {
            panic!("a slice is always ready");
        };
        assert_ne!(third.buf.as_ptr(), ptr);
        // It takes at most what it was asked for.
        assert_eq!(
            (second.bytes(), third.bytes()),
            (&b"second"[..], &b"thi"[..])
        );
    }
}

//! Small payload buffers kept per thread from a message sent to the next one received.
//!
//! A message handed to [`Connection::send_message`](super::Connection::send_message) is
//! copied into the output when it is small, and its buffer is free again. An echo, a relay
//! or a broadcast receives the next message right after, of much the same size. Kept here,
//! the buffer holds that message instead of a fresh allocation: a run of pipelined
//! messages is otherwise allocated whole before the first is sent and freed, more than the
//! allocator's per-thread cache keeps, and each takes its slower path. Bounded per thread
//! ([`KEEP`] buffers of at most [`CAP_MAX`] bytes), not per connection: an idle connection
//! keeps nothing here.

use std::cell::RefCell;

/// The most buffers a thread keeps.
const KEEP: usize = 64;
/// The biggest buffer kept: small messages are the ones an allocation costs most for.
const CAP_MAX: usize = 1024;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for `len` bytes and at most twice that (a message's buffer
/// is not much bigger than the message), if the thread keeps one; else `None`.
pub(crate) fn take(len: usize) -> Option<Vec<u8>> {
    if len == 0 || len > CAP_MAX {
        return None;
    }
    FREE.try_with(|free| {
        let mut free = free.try_borrow_mut().ok()?;
        let fits = free
            .last()
            .is_some_and(|buf| (len..=len.saturating_mul(2)).contains(&buf.capacity()));
        if fits {
            free.pop()
        } else {
            None
        }
    })
    .ok()
    .flatten()
}

/// Keeps `buf` (emptied) for a later [`take`], if it is small and the thread has room.
pub(crate) fn give(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > CAP_MAX {
        return;
    }
    buf.clear();
    let _ = FREE.try_with(|free| {
        if let Ok(mut free) = free.try_borrow_mut() {
            if free.len() < KEEP {
                free.push(buf);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_holds_the_next_message_of_its_size() {
        let buf = Vec::with_capacity(100);
        let ptr = buf.as_ptr();
        give(buf);
        assert!(take(300).is_none(), "a buffer too small is not handed out");
        assert!(take(40).is_none(), "nor one more than twice the message");
        let again = take(100).unwrap();
        assert_eq!((again.as_ptr(), again.len()), (ptr, 0));
        assert!(take(100).is_none(), "taken once");
    }

    #[test]
    fn big_and_empty_buffers_are_not_kept_nor_more_than_keep() {
        give(Vec::with_capacity(CAP_MAX + 1));
        assert!(take(CAP_MAX).is_none());
        give(Vec::new());
        assert!(take(1).is_none());
        for _ in 0..KEEP + 10 {
            give(Vec::with_capacity(8));
        }
        let kept = std::iter::from_fn(|| take(8)).count();
        assert_eq!(kept, KEEP);
    }
}

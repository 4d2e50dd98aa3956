//! The read buffer of one connection: small while it is quiet, bigger while it is busy.

/// Size of the reusable read buffer of a busy connection.
const READ_BUFFER: usize = 16 * 1024;
/// Size of the read buffer of a connection whose reads fill `READ_BUFFER` one after another:
/// many small frames wait, and a bigger read takes more of them per syscall (half a window
/// of 1 KiB messages took three receive calls with 16 KiB).
const BUSY_READ_BUFFER: usize = 64 * 1024;
/// Size of the read buffer of a quiet connection: an idle or lightly used connection holds
/// only this much, and moves to `READ_BUFFER` when a read fills it.
const SMALL_READ_BUFFER: usize = 256;
/// After this many reads in a row that would have fit the next smaller read buffer, go back
/// to that one.
const SHRINK_AFTER: u32 = 64;
/// The read buffer: small while the connection is quiet, so idle connections cost little;
/// `READ_BUFFER` once a read fills it; `BUSY_READ_BUFFER` once two reads in a row fill that
/// (many small frames waiting: each read takes more of them). A direct read breaks the row,
/// so a stream of big frames, whose payloads are read straight onto their messages, keeps
/// `READ_BUFFER`. After `SHRINK_AFTER` reads in a row that would have fit the next smaller
/// size, it goes back to that size.
pub(super) struct ReadBuffer {
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

    pub(super) fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// After a read of `n` bytes into the buffer: grows when reads fill it; shrinks after
    /// many small reads.
    pub(super) fn adapt(&mut self, n: usize) {
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
    pub(super) fn read_direct(&mut self) {
        self.full_reads = 0;
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

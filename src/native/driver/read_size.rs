//! How much one read of a connection takes: 16 KiB, or 64 KiB while many small frames
//! wait. The bytes land in the thread's read buffer (`scratch`), so this is only a size.

/// What a read takes.
const READ_SIZE: usize = 16 * 1024;
/// What a read of a connection whose reads fill `READ_SIZE` one after another takes: many
/// small frames wait, and a bigger read takes more of them per syscall (half a window of
/// 1 KiB messages took three receive calls with 16 KiB).
const BUSY_READ_SIZE: usize = super::scratch::LEN;
/// After this many reads in a row that would have fit `READ_SIZE`, go back to it.
const SHRINK_AFTER: u32 = 64;

/// `BUSY_READ_SIZE` once two reads in a row fill `READ_SIZE`. A direct read breaks the row,
/// so a stream of big frames, whose payloads are read straight onto their messages (and
/// answered at once), keeps `READ_SIZE`: a bigger read would take a whole big frame and the
/// next, and hold back the first one's answer until both were read. After `SHRINK_AFTER`
/// reads in a row that would have fit `READ_SIZE`, it goes back to that size.
pub(super) struct ReadSize {
    len: usize,
    /// Reads in a row that would have fit `READ_SIZE`.
    small_reads: u32,
    /// Reads in a row that filled the size.
    full_reads: u32,
}

impl Default for ReadSize {
    fn default() -> Self {
        Self::sized(READ_SIZE)
    }
}

impl ReadSize {
    fn sized(len: usize) -> Self {
        Self {
            len,
            small_reads: 0,
            full_reads: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// After a read of `n` bytes: grows when reads fill it; shrinks after many small reads.
    pub(super) fn adapt(&mut self, n: usize) {
        if n >= self.len {
            self.full_reads += 1;
            self.small_reads = 0;
            if self.len == READ_SIZE && self.full_reads >= 2 {
                *self = Self::sized(BUSY_READ_SIZE);
            }
            return;
        }
        self.full_reads = 0;
        if self.len > READ_SIZE && n <= READ_SIZE {
            self.small_reads += 1;
            if self.small_reads >= SHRINK_AFTER {
                *self = Self::sized(READ_SIZE);
            }
        } else {
            self.small_reads = 0;
        }
    }

    /// A read straight onto a message breaks a row of reads that filled the size, so big
    /// frames keep `READ_SIZE`.
    pub(super) fn read_direct(&mut self) {
        self.full_reads = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grow_for_many_small_frames_but_not_for_big_frames_read_directly() {
        let mut size = ReadSize::default();
        assert_eq!(size.len(), READ_SIZE);
        // Big frames: each full read is followed by a direct read of the frame's rest.
        for _ in 0..10 {
            size.adapt(READ_SIZE);
            size.read_direct();
        }
        assert_eq!(size.len(), READ_SIZE);
        // Small frames filling two reads in a row: more of them per read.
        size.adapt(READ_SIZE);
        assert_eq!(size.len(), READ_SIZE);
        size.adapt(READ_SIZE);
        assert_eq!(size.len(), BUSY_READ_SIZE);
        // Busy: big reads interleaved with small ones keep the bigger size.
        for _ in 0..10 * SHRINK_AFTER {
            size.adapt(10);
            size.adapt(BUSY_READ_SIZE);
        }
        assert_eq!(size.len(), BUSY_READ_SIZE);
        // Reads that would fit 16 KiB: back to it after `SHRINK_AFTER` in a row.
        for _ in 1..SHRINK_AFTER {
            size.adapt(READ_SIZE);
        }
        size.adapt(READ_SIZE + 1); // one that would not have fit breaks the row
        for _ in 1..SHRINK_AFTER {
            size.adapt(1000);
        }
        assert_eq!(size.len(), BUSY_READ_SIZE);
        size.adapt(1000);
        assert_eq!(size.len(), READ_SIZE);
    }
}

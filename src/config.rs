//! Limits and options shared by both roles.

/// Size limits that protect a socket from a peer that sends too much.
///
/// A peer can never make a socket allocate more than these limits: a frame or message
/// whose announced length is over the limit is refused (close code 1009) before its payload
/// is read.
///
/// ```
/// let limits = unisock::Limits::default().max_message_size(1 << 20);
/// assert_eq!(limits.max_message_size, 1 << 20);
/// assert_eq!(limits.max_frame_size, 16 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest single frame payload accepted, in bytes. Default 16 MiB.
    pub max_frame_size: usize,
    /// The largest whole (reassembled) message accepted, in bytes. Default 64 MiB.
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
        }
    }
}

impl Limits {
    /// No limits at all (up to `usize::MAX`). Only for trusted peers.
    ///
    /// ```
    /// assert_eq!(unisock::Limits::unlimited().max_frame_size, usize::MAX);
    /// ```
    #[must_use]
    pub fn unlimited() -> Self {
        Self {
            max_frame_size: usize::MAX,
            max_message_size: usize::MAX,
        }
    }

    /// Sets [`Limits::max_frame_size`].
    ///
    /// ```
    /// assert_eq!(unisock::Limits::default().max_frame_size(1024).max_frame_size, 1024);
    /// ```
    #[must_use]
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Limits::max_message_size`].
    ///
    /// ```
    /// assert_eq!(unisock::Limits::default().max_message_size(1024).max_message_size, 1024);
    /// ```
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }
}

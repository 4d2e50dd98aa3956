//! [`ProtocolError`]: every way a peer (or a caller) can break RFC 6455, and the close
//! code each one is answered with.

use super::close::CloseCode;

/// A violation of RFC 6455, by the peer (reported as [`Event::Error`](super::Event::Error),
/// after which the connection is failed) or by the caller (returned from a `send_*` method).
///
/// Each message names the rule that was broken. [`ProtocolError::close_code`] gives the
/// close code the connection is failed with.
///
/// ```
/// use unisock::protocol::{CloseCode, ProtocolError};
///
/// let err = ProtocolError::InvalidUtf8;
/// assert_eq!(err.close_code(), CloseCode::INVALID_FRAME_PAYLOAD_DATA);
/// assert!(err.to_string().contains("§8.1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame had RSV1, RSV2 or RSV3 set, but no extension was negotiated.
    #[error("reserved bits set without a negotiated extension (RFC 6455 §5.2)")]
    ReservedBitsSet,
    /// A frame used a reserved opcode (0x3-0x7 or 0xB-0xF).
    #[error("unknown opcode {0:#x}: 0x3-0x7 and 0xB-0xF are reserved (RFC 6455 §5.2)")]
    UnknownOpcode(u8),
    /// A control frame (close, ping, pong) carried more than 125 bytes.
    #[error("control frame payload of {0} bytes; at most 125 are allowed (RFC 6455 §5.5)")]
    ControlFrameTooLong(u64),
    /// A control frame had FIN clear.
    #[error("fragmented control frame: control frames must have FIN set (RFC 6455 §5.5)")]
    FragmentedControlFrame,
    /// A server received a frame without a mask.
    #[error("unmasked frame from a client: clients must mask every frame (RFC 6455 §5.1)")]
    UnmaskedClientFrame,
    /// A client received a masked frame.
    #[error("masked frame from a server: servers must not mask frames (RFC 6455 §5.1)")]
    MaskedServerFrame,
    /// A 64-bit payload length had its most significant bit set.
    #[error("64-bit payload length with the most significant bit set (RFC 6455 §5.2)")]
    InvalidLength,
    /// A continuation frame arrived while no fragmented message was open.
    #[error("continuation frame without a message to continue (RFC 6455 §5.4)")]
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was still open.
    #[error("new data frame while a fragmented message is open; expected a continuation frame (RFC 6455 §5.4)")]
    ExpectedContinuation,
    /// A text message or a close reason was not valid UTF-8.
    #[error("invalid UTF-8 in a text message or close reason (RFC 6455 §8.1)")]
    InvalidUtf8,
    /// A close code that may not be sent: received from the peer, or passed to `send_close`.
    #[error("invalid close code {0}: use 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 §7.4)")]
    InvalidCloseCode(u16),
    /// A close frame payload of exactly one byte (a code needs two).
    #[error("close frame payload of 1 byte; a status code needs 2 (RFC 6455 §5.5.1)")]
    InvalidClosePayload,
    /// A close reason longer than 123 bytes (the payload would exceed 125).
    #[error("close reason of {0} bytes; at most 123 are allowed (RFC 6455 §5.5)")]
    CloseReasonTooLong(usize),
    /// A close reason was given without a close code.
    #[error("close reason without a status code: a reason must follow a code (RFC 6455 §5.5.1)")]
    CloseReasonWithoutCode,
    /// A frame announced a payload over [`Limits::max_frame_size`](crate::Limits::max_frame_size).
    #[error("frame of {size} bytes exceeds the limit of {max} (close code 1009, RFC 6455 §7.4.1)")]
    FrameTooLarge {
        /// The announced payload length.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message grew over [`Limits::max_message_size`](crate::Limits::max_message_size).
    #[error(
        "message of {size} bytes exceeds the limit of {max} (close code 1009, RFC 6455 §7.4.1)"
    )]
    MessageTooLarge {
        /// The message length including the frame that would exceed the limit.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message came in more frames than [`Limits::max_fragments`](crate::Limits::max_fragments)
    /// (empty ones included): closed with 1009, as the other limits on what a message may be.
    #[error(
        "message in more than {max} fragments exceeds the limit (close code 1009, RFC 6455 §7.4.1)"
    )]
    TooManyFragments {
        /// The configured limit.
        max: usize,
    },
    /// The message would take more memory than the budget its server shares among its
    /// connections has left (`MemoryBudget`): close code 1013, try again later.
    #[error("the server's memory budget of {limit} bytes for incoming messages is used up")]
    MemoryBudgetExhausted {
        /// The budget's limit.
        limit: usize,
    },
    /// A compressed message (permessage-deflate) did not inflate: corrupt deflate data.
    #[error("invalid compressed data in a permessage-deflate message (RFC 7692 §7.2.2)")]
    InvalidCompressedData,
    /// The caller tried to send data after a close frame was sent or the connection failed.
    #[error("cannot send after the close frame was sent (RFC 6455 §5.5.1)")]
    SendAfterClose,
}

impl ProtocolError {
    /// The close code a connection failed by this error is closed with: 1007 for invalid
    /// UTF-8, 1009 for the size and fragment limits, 1002 for everything else.
    ///
    /// ```
    /// use unisock::protocol::{CloseCode, ProtocolError};
    /// assert_eq!(ProtocolError::ReservedBitsSet.close_code(), CloseCode::PROTOCOL_ERROR);
    /// let big = ProtocolError::FrameTooLarge { size: 1 << 40, max: 1 << 24 };
    /// assert_eq!(big.close_code(), CloseCode::MESSAGE_TOO_BIG);
    /// ```
    #[must_use]
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 => CloseCode::INVALID_FRAME_PAYLOAD_DATA,
            Self::FrameTooLarge { .. }
            | Self::MessageTooLarge { .. }
            | Self::TooManyFragments { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::MemoryBudgetExhausted { .. } => CloseCode::TRY_AGAIN_LATER,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code().as_u16(), 1007);
        let e = ProtocolError::MessageTooLarge { size: 10, max: 5 };
        assert_eq!(e.close_code().as_u16(), 1009);
        let e = ProtocolError::TooManyFragments { max: 5 };
        assert_eq!(e.close_code().as_u16(), 1009);
        let e = ProtocolError::MemoryBudgetExhausted { limit: 5 };
        assert_eq!(e.close_code().as_u16(), 1013);
        for e in [
            ProtocolError::ReservedBitsSet,
            ProtocolError::UnknownOpcode(3),
            ProtocolError::ControlFrameTooLong(126),
            ProtocolError::InvalidCloseCode(1005),
            ProtocolError::InvalidClosePayload,
        ] {
            assert_eq!(e.close_code().as_u16(), 1002, "{e}");
        }
    }

    #[test]
    fn messages_name_the_rule() {
        assert_eq!(
            ProtocolError::ReservedBitsSet.to_string(),
            "reserved bits set without a negotiated extension (RFC 6455 §5.2)"
        );
        assert_eq!(
            ProtocolError::UnknownOpcode(0xb).to_string(),
            "unknown opcode 0xb: 0x3-0x7 and 0xB-0xF are reserved (RFC 6455 §5.2)"
        );
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<ProtocolError>() <= 24);
    }
}

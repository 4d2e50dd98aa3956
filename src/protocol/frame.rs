//! Frame headers (RFC 6455 §5.2): [`Opcode`] and [`FrameHeader`] decode and encode.

use super::error::ProtocolError;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// What a frame carries (RFC 6455 §5.2).
///
/// ```
/// use unisock::protocol::{Opcode, ProtocolError};
/// assert_eq!(Opcode::try_from(0x9), Ok(Opcode::Ping));
/// assert!(Opcode::Ping.is_control());
/// assert_eq!(Opcode::try_from(0x3), Err(ProtocolError::UnknownOpcode(0x3)));
/// assert_eq!(u8::from(Opcode::Binary), 0x2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: a continuation of a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: a close frame.
    Close,
    /// 0x9: a ping.
    Ping,
    /// 0xA: a pong.
    Pong,
}

impl Opcode {
    /// Whether this is a control opcode (close, ping, pong).
    ///
    /// ```
    /// assert!(!unisock::protocol::Opcode::Text.is_control());
    /// ```
    #[must_use]
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }

    /// The 4-bit wire value.
    ///
    /// ```
    /// assert_eq!(unisock::protocol::Opcode::Pong.as_u8(), 0xA);
    /// ```
    #[must_use]
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }
}

impl TryFrom<u8> for Opcode {
    type Error = ProtocolError;

    /// Maps a 4-bit wire value; reserved values are [`ProtocolError::UnknownOpcode`].
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0x0 => Ok(Self::Continuation),
            0x1 => Ok(Self::Text),
            0x2 => Ok(Self::Binary),
            0x8 => Ok(Self::Close),
            0x9 => Ok(Self::Ping),
            0xA => Ok(Self::Pong),
            other => Err(ProtocolError::UnknownOpcode(other)),
        }
    }
}

impl From<Opcode> for u8 {
    fn from(opcode: Opcode) -> u8 {
        opcode.as_u8()
    }
}

/// A frame header (RFC 6455 §5.2): everything before the payload.
///
/// ```
/// use unisock::protocol::{FrameHeader, Opcode};
///
/// // The masked "Hello" of RFC 6455 §5.7.
/// let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (header, len) = FrameHeader::decode(&wire).unwrap().unwrap();
/// assert_eq!(len, 6);
/// assert_eq!(header.opcode, Opcode::Text);
/// assert_eq!(header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
/// assert_eq!(header.payload_len, 5);
///
/// let mut out = Vec::new();
/// header.encode(&mut out);
/// assert_eq!(out, wire[..6]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the final fragment of a message.
    pub fin: bool,
    /// RSV1-RSV3 as the low three bits (RSV1 = 0b100); zero unless an extension uses them.
    pub rsv: u8,
    /// What the frame carries.
    pub opcode: Opcode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// The longest possible header: 2 bytes, a 64-bit length and a masking key.
    pub const MAX_LEN: usize = 14;

    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a header, and otherwise the header
    /// and how many bytes it took. Checks what holds for every frame whatever the role and
    /// extensions: known opcode, control frames unfragmented and at most 125 bytes, 64-bit
    /// length below 2^63. Errors are reported as soon as the bytes that show them are present.
    ///
    /// # Errors
    /// [`ProtocolError::UnknownOpcode`], [`ProtocolError::FragmentedControlFrame`],
    /// [`ProtocolError::ControlFrameTooLong`] or [`ProtocolError::InvalidLength`].
    ///
    /// ```
    /// use unisock::protocol::FrameHeader;
    /// assert_eq!(FrameHeader::decode(&[0x82, 0x7e, 0x01]), Ok(None));
    /// let (header, len) = FrameHeader::decode(&[0x82, 0x7e, 0x01, 0x00]).unwrap().unwrap();
    /// assert_eq!((header.payload_len, len), (256, 4));
    /// ```
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        let fin = b0 & 0x80 != 0;
        let opcode = Opcode::try_from(b0 & 0x0F)?;
        let len7 = b1 & 0x7F;
        if opcode.is_control() && !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
        let masked = b1 & 0x80 != 0;
        let len_bytes = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + len_bytes + if masked { 4 } else { 0 };
        let rest = buf.get(2..).unwrap_or_default();
        let payload_len = match len7 {
            126 => match rest {
                [a, b, ..] => u64::from(u16::from_be_bytes([*a, *b])),
                _ => return Ok(None),
            },
            127 => match rest.first_chunk::<8>() {
                Some(bytes) => {
                    let len = u64::from_be_bytes(*bytes);
                    if len >> 63 != 0 {
                        return Err(ProtocolError::InvalidLength);
                    }
                    len
                }
                // Fail fast on the top bit even before the other seven bytes arrive.
                None if rest.first().is_some_and(|b| b & 0x80 != 0) => {
                    return Err(ProtocolError::InvalidLength)
                }
                None => return Ok(None),
            },
            short => u64::from(short),
        };
        if opcode.is_control() && payload_len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(ProtocolError::ControlFrameTooLong(payload_len));
        }
        let mask = if masked {
            match rest.get(len_bytes..).and_then(<[u8]>::first_chunk::<4>) {
                Some(key) => Some(*key),
                None => return Ok(None),
            }
        } else {
            None
        };
        let header = FrameHeader {
            fin,
            rsv: (b0 >> 4) & 0x07,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, header_len)))
    }

    /// Appends the encoded header to `out`, with the shortest length encoding (RFC 6455
    /// §5.2 requires it of senders).
    ///
    /// ```
    /// use unisock::protocol::{FrameHeader, Opcode};
    /// let header = FrameHeader { fin: true, rsv: 0, opcode: Opcode::Binary, mask: None, payload_len: 65536 };
    /// let mut out = Vec::new();
    /// header.encode(&mut out);
    /// assert_eq!(out, [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; Self::MAX_LEN];
        let len = self.encode_into(&mut buf);
        out.extend_from_slice(buf.get(..len).unwrap_or_default());
    }

    /// Writes the header into a fixed buffer and returns its length.
    pub(crate) fn encode_into(&self, buf: &mut [u8; Self::MAX_LEN]) -> usize {
        let fin = if self.fin { 0x80 } else { 0 };
        buf[0] = fin | ((self.rsv & 0x07) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = 2;
        if let Ok(len @ 0..=125) = u8::try_from(self.payload_len) {
            buf[1] = mask_bit | len;
        } else if let Ok(len) = u16::try_from(self.payload_len) {
            buf[1] = mask_bit | 126;
            at = put(buf, at, &len.to_be_bytes());
        } else {
            buf[1] = mask_bit | 127;
            at = put(buf, at, &self.payload_len.to_be_bytes());
        }
        if let Some(key) = self.mask {
            at = put(buf, at, &key);
        }
        at
    }
}

/// Copies `bytes` into `buf` at `at` and returns the position after them. The callers'
/// offsets never exceed [`FrameHeader::MAX_LEN`].
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let end = at + bytes.len();
    if let Some(dst) = buf.get_mut(at..end) {
        dst.copy_from_slice(bytes);
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(buf: &[u8]) -> (FrameHeader, usize) {
        FrameHeader::decode(buf).unwrap().unwrap()
    }

    fn encoded(header: &FrameHeader) -> Vec<u8> {
        let mut out = Vec::new();
        header.encode(&mut out);
        out
    }

    #[test]
    fn rfc_unmasked_hello() {
        let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = decode_all(&wire);
        assert_eq!(n, 2);
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                rsv: 0,
                opcode: Opcode::Text,
                mask: None,
                payload_len: 5
            }
        );
        assert_eq!(encoded(&h), wire[..2]);
    }

    #[test]
    fn rfc_masked_hello() {
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = decode_all(&wire);
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(encoded(&h), wire[..6]);
    }

    #[test]
    fn rfc_fragments() {
        let (h, _) = decode_all(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        let (h, _) = decode_all(&[0x80, 0x02, 0x6c, 0x6f]);
        assert!(h.fin);
        assert_eq!(h.opcode, Opcode::Continuation);
        assert_eq!(encoded(&h), [0x80, 0x02]);
    }

    #[test]
    fn rfc_ping_pong() {
        let (h, _) = decode_all(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(h.opcode, Opcode::Ping);
        let (h, n) = decode_all(&[
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!((h.opcode, n, h.payload_len), (Opcode::Pong, 6, 5));
    }

    #[test]
    fn rfc_256_and_64k() {
        let wire = [0x82, 0x7e, 0x01, 0x00];
        let (h, n) = decode_all(&wire);
        assert_eq!((h.payload_len, n), (256, 4));
        assert_eq!(encoded(&h), wire);
        let wire = [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
        let (h, n) = decode_all(&wire);
        assert_eq!((h.payload_len, n), (65536, 10));
        assert_eq!(encoded(&h), wire);
    }

    #[test]
    fn minimal_length_encoding() {
        for (len, size) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (u64::MAX >> 1, 10),
        ] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = FrameHeader {
                    fin: true,
                    rsv: 0,
                    opcode: Opcode::Binary,
                    mask,
                    payload_len: len,
                };
                let out = encoded(&h);
                assert_eq!(out.len(), size + if mask.is_some() { 4 } else { 0 });
                assert_eq!(decode_all(&out), (h, out.len()));
            }
        }
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let (h, n) = decode_all(&[0x82, 0x7e, 0x00, 0x05]);
        assert_eq!((h.payload_len, n), (5, 4));
        let (h, n) = decode_all(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!((h.payload_len, n), (5, 10));
    }

    #[test]
    fn partial_headers_need_more() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 9, 8, 7, 6];
        for end in 0..full.len() {
            assert_eq!(FrameHeader::decode(&full[..end]), Ok(None), "{end}");
        }
        assert_eq!(decode_all(&full).1, 14);
    }

    #[test]
    fn rsv_bits_are_reported() {
        let (h, _) = decode_all(&[0xc1, 0x00]);
        assert_eq!(h.rsv, 0b100);
        let (h, _) = decode_all(&[0x91, 0x00]);
        assert_eq!(h.rsv, 0b001);
        assert_eq!(encoded(&h), [0x91, 0x00]);
    }

    #[test]
    fn unknown_opcodes() {
        for op in (3..=7).chain(0xb..=0xf) {
            assert_eq!(
                FrameHeader::decode(&[0x80 | op, 0]),
                Err(ProtocolError::UnknownOpcode(op))
            );
        }
    }

    #[test]
    fn control_frame_rules() {
        assert_eq!(
            FrameHeader::decode(&[0x09, 0x00]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(FrameHeader::decode(&[0x89, 0x7e, 0x00]), Ok(None));
        assert_eq!(
            FrameHeader::decode(&[0x89, 0x7e, 0x00, 0x7e]),
            Err(ProtocolError::ControlFrameTooLong(126))
        );
        assert_eq!(
            FrameHeader::decode(&[0x88, 0x7e, 0x01, 0x00]),
            Err(ProtocolError::ControlFrameTooLong(256))
        );
        assert!(FrameHeader::decode(&[0x8a, 0x7d]).unwrap().is_some());
    }

    #[test]
    fn top_bit_length() {
        assert_eq!(
            FrameHeader::decode(&[0x82, 0x7f, 0x80]),
            Err(ProtocolError::InvalidLength)
        );
        let wire = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            FrameHeader::decode(&wire),
            Err(ProtocolError::InvalidLength)
        );
    }
}

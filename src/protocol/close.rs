//! Close codes (RFC 6455 §7.4) and close frame payloads (§5.5.1).

use std::fmt;
use std::num::NonZeroU16;

use super::error::ProtocolError;

/// The most a close reason may take: a control frame payload is at most 125 bytes, and the
/// code takes two.
pub(crate) const MAX_REASON_LEN: usize = 123;

/// A WebSocket close status code (RFC 6455 §7.4).
///
/// [`CloseCode::try_from`] accepts only codes an endpoint may put in a close frame
/// (1000-1003, 1007-1014, 3000-4999); [`CloseCode::new_reported`] builds any non-zero code,
/// such as 1005 or 1006, for reporting.
///
/// ```
/// use unisock::protocol::{CloseCode, ProtocolError};
///
/// let code = CloseCode::try_from(4000).unwrap();
/// assert_eq!(code.as_u16(), 4000);
/// assert_eq!(CloseCode::try_from(1005), Err(ProtocolError::InvalidCloseCode(1005)));
/// assert_eq!(u16::from(CloseCode::NORMAL_CLOSURE), 1000);
/// assert_eq!(CloseCode::GOING_AWAY.to_string(), "1001");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(NonZeroU16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL_CLOSURE: Self = Self::known(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self::known(1001);
    /// 1002: the connection is closed because of a protocol error.
    pub const PROTOCOL_ERROR: Self = Self::known(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self::known(1003);
    /// 1005: no status code was present (reported only, never sent).
    pub const NO_STATUS_RECEIVED: Self = Self::known(1005);
    /// 1006: the connection dropped without a close frame (reported only, never sent).
    pub const ABNORMAL_CLOSURE: Self = Self::known(1006);
    /// 1007: a message's data was inconsistent with its type (e.g. invalid UTF-8 in text).
    pub const INVALID_FRAME_PAYLOAD_DATA: Self = Self::known(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self::known(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self::known(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self::known(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self::known(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self::known(1012);
    /// 1013: try again later (temporary overload).
    pub const TRY_AGAIN_LATER: Self = Self::known(1013);
    /// 1014: a gateway or proxy received an invalid response from upstream.
    pub const BAD_GATEWAY: Self = Self::known(1014);
    /// 1015: the TLS handshake failed (reported only, never sent).
    pub const TLS_HANDSHAKE: Self = Self::known(1015);

    /// Builds a constant; only ever evaluated at compile time with a non-zero value.
    #[expect(
        clippy::panic,
        reason = "only evaluated in constants: a zero code fails the build, never a run"
    )]
    const fn known(code: u16) -> Self {
        match NonZeroU16::new(code) {
            Some(code) => Self(code),
            None => panic!("close code constants are non-zero"),
        }
    }

    /// Any non-zero code, including those that may not be sent (1005, 1006, 1015), for
    /// reporting how a connection ended. `None` for 0.
    ///
    /// ```
    /// use unisock::protocol::CloseCode;
    /// assert_eq!(CloseCode::new_reported(1006), Some(CloseCode::ABNORMAL_CLOSURE));
    /// assert_eq!(CloseCode::new_reported(0), None);
    /// ```
    #[must_use]
    pub fn new_reported(code: u16) -> Option<Self> {
        NonZeroU16::new(code).map(Self)
    }

    /// The numeric code.
    ///
    /// ```
    /// assert_eq!(unisock::protocol::CloseCode::MESSAGE_TOO_BIG.as_u16(), 1009);
    /// ```
    #[must_use]
    pub fn as_u16(self) -> u16 {
        self.0.get()
    }

    /// Whether an endpoint may put this code in a close frame: 1000-1003, 1007-1014
    /// (IANA-registered) and 3000-4999 (libraries and applications).
    ///
    /// ```
    /// use unisock::protocol::CloseCode;
    /// assert!(CloseCode::NORMAL_CLOSURE.is_sendable());
    /// assert!(!CloseCode::NO_STATUS_RECEIVED.is_sendable());
    /// ```
    #[must_use]
    pub fn is_sendable(self) -> bool {
        matches!(self.as_u16(), 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl TryFrom<u16> for CloseCode {
    type Error = ProtocolError;

    /// Accepts only sendable codes (see [`CloseCode::is_sendable`]).
    fn try_from(code: u16) -> Result<Self, Self::Error> {
        match Self::new_reported(code) {
            Some(c) if c.is_sendable() => Ok(c),
            _ => Err(ProtocolError::InvalidCloseCode(code)),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.as_u16()
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Parses a received close frame payload: empty, or a sendable code followed by a UTF-8
/// reason.
pub(crate) fn parse_payload(payload: &[u8]) -> Result<(Option<CloseCode>, &str), ProtocolError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode::try_from(u16::from_be_bytes([*hi, *lo]))?;
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok((Some(code), reason))
        }
    }
}

/// Validates what the caller wants to send and writes the close payload into `out`,
/// returning its length (at most 125).
pub(crate) fn encode_payload(
    code: Option<CloseCode>,
    reason: &str,
    out: &mut [u8; 125],
) -> Result<usize, ProtocolError> {
    let Some(code) = code else {
        return if reason.is_empty() {
            Ok(0)
        } else {
            Err(ProtocolError::CloseReasonWithoutCode)
        };
    };
    if !code.is_sendable() {
        return Err(ProtocolError::InvalidCloseCode(code.as_u16()));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(ProtocolError::CloseReasonTooLong(reason.len()));
    }
    let len = 2 + reason.len();
    let (head, tail) = out.split_at_mut(2);
    head.copy_from_slice(&code.as_u16().to_be_bytes());
    if let Some(dst) = tail.get_mut(..reason.len()) {
        dst.copy_from_slice(reason.as_bytes());
    }
    Ok(len)
}

/// `reason` cut to at most [`MAX_REASON_LEN`] bytes on a character boundary.
pub(crate) fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_boundaries() {
        let cases = [
            (0, false),
            (999, false),
            (1000, true),
            (1001, true),
            (1002, true),
            (1003, true),
            (1004, false),
            (1005, false),
            (1006, false),
            (1007, true),
            (1011, true),
            (1014, true),
            (1015, false),
            (1016, false),
            (2999, false),
            (3000, true),
            (4999, true),
            (5000, false),
            (u16::MAX, false),
        ];
        for (code, ok) in cases {
            assert_eq!(CloseCode::try_from(code).is_ok(), ok, "{code}");
            if !ok {
                assert_eq!(
                    CloseCode::try_from(code),
                    Err(ProtocolError::InvalidCloseCode(code))
                );
            }
        }
    }

    #[test]
    fn constants() {
        assert_eq!(CloseCode::NORMAL_CLOSURE.as_u16(), 1000);
        assert_eq!(CloseCode::TLS_HANDSHAKE.as_u16(), 1015);
        assert_eq!(CloseCode::BAD_GATEWAY.as_u16(), 1014);
        assert!(!CloseCode::ABNORMAL_CLOSURE.is_sendable());
        assert_eq!(
            CloseCode::new_reported(1005),
            Some(CloseCode::NO_STATUS_RECEIVED)
        );
        assert_eq!(std::mem::size_of::<Option<CloseCode>>(), 2);
    }

    #[test]
    fn parse() {
        assert_eq!(parse_payload(&[]), Ok((None, "")));
        assert_eq!(
            parse_payload(&[0x03]),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            parse_payload(&[0x03, 0xe8]),
            Ok((Some(CloseCode::NORMAL_CLOSURE), ""))
        );
        assert_eq!(
            parse_payload(&[0x03, 0xe8, b'o', b'k']),
            Ok((Some(CloseCode::NORMAL_CLOSURE), "ok"))
        );
        assert_eq!(
            parse_payload(&[0x03, 0xed]),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_payload(&[0x03, 0xe8, 0xff]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn encode() {
        let mut out = [0; 125];
        assert_eq!(encode_payload(None, "", &mut out), Ok(0));
        assert_eq!(
            encode_payload(None, "x", &mut out),
            Err(ProtocolError::CloseReasonWithoutCode)
        );
        let code = Some(CloseCode::GOING_AWAY);
        assert_eq!(encode_payload(code, "bye", &mut out), Ok(5));
        assert_eq!(&out[..5], &[0x03, 0xe9, b'b', b'y', b'e']);
        assert_eq!(encode_payload(code, &"a".repeat(123), &mut out), Ok(125));
        assert_eq!(
            encode_payload(code, &"a".repeat(124), &mut out),
            Err(ProtocolError::CloseReasonTooLong(124))
        );
        assert_eq!(
            encode_payload(Some(CloseCode::ABNORMAL_CLOSURE), "", &mut out),
            Err(ProtocolError::InvalidCloseCode(1006))
        );
    }

    #[test]
    fn truncate() {
        assert_eq!(truncate_reason("short"), "short");
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_REASON_LEN && cut.len() >= MAX_REASON_LEN - 1);
    }
}

//! The bytes of an [`Envelope`] on a shared channel (Redis pub/sub), with the publishing
//! member's origin so a member can skip its own echo.
//!
//! ```text
//! "us1" | origin: 8 bytes | kind: b'B' (broadcast) or b'D' (direct) | payload kind: b't' or b'b'
//!   broadcast: id count as u32 BE (u32::MAX for "every socket"), then each id as len u32 BE + bytes
//!   direct:    the id as len u32 BE + bytes
//! then the payload, to the end.
//! ```
//! Decoding never panics, refuses input over a size cap before looking at it, and
//! allocates only for bytes that are there: what arrives on the channel may come from
//! anyone.

use super::Envelope;
use crate::MsgEvent;

const MAGIC: &[u8; 3] = b"us1";
const ALL: u32 = u32::MAX;
/// At most this many ids are reserved for before they are read.
const PREALLOCATED_IDS: usize = 64;

/// Identifies one backplane member on the wire.
pub(crate) type Origin = [u8; 8];

pub(crate) fn encode(origin: &Origin, envelope: &Envelope) -> Vec<u8> {
    let (kind, payload) = match envelope {
        Envelope::Broadcast { payload, .. } => (b'B', payload),
        Envelope::Direct { payload, .. } => (b'D', payload),
    };
    let (payload_kind, bytes) = match payload {
        MsgEvent::Text(t) => (b't', t.as_bytes()),
        MsgEvent::Binary(b) => (b'b', b.as_slice()),
    };
    let mut out = Vec::with_capacity(16 + bytes.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(origin);
    out.push(kind);
    out.push(payload_kind);
    match envelope {
        Envelope::Broadcast { ids: None, .. } => out.extend_from_slice(&ALL.to_be_bytes()),
        Envelope::Broadcast { ids: Some(ids), .. } => {
            put_len(&mut out, ids.len());
            for id in ids {
                put_str(&mut out, id);
            }
        }
        Envelope::Direct { id, .. } => put_str(&mut out, id),
    }
    out.extend_from_slice(bytes);
    out
}

/// Lengths over `u32::MAX - 1` never occur (ids are short; counts are of live sockets).
fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(ALL - 1).min(ALL - 1);
    out.extend_from_slice(&len.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Why [`decode`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Longer than the cap it was given.
    TooLarge,
    /// Not an envelope.
    Malformed,
}

/// The origin and envelope in `bytes`, refusing more than `max_len` bytes (the cap is
/// checked first, so an oversized envelope costs no decoding and no copy).
pub(crate) fn decode(bytes: &[u8], max_len: usize) -> Result<(Origin, Envelope), Refused> {
    if bytes.len() > max_len {
        return Err(Refused::TooLarge);
    }
    envelope(bytes).ok_or(Refused::Malformed)
}

fn envelope(bytes: &[u8]) -> Option<(Origin, Envelope)> {
    let mut r = Reader(bytes);
    if r.take(3)? != MAGIC {
        return None;
    }
    let origin: Origin = r.take(8)?.try_into().ok()?;
    let kind = r.byte()?;
    let payload_kind = r.byte()?;
    let envelope = match kind {
        b'B' => {
            let count = r.u32()?;
            let ids = if count == ALL {
                None
            } else {
                // Each id needs at least its 4 length bytes: a count the input cannot hold
                // is refused, and the vector grows with the ids actually read (a `String`
                // is 24 bytes: reserving `count` would be 6 times the input up front).
                let count = usize::try_from(count).ok()?;
                if count > r.0.len() / 4 {
                    return None;
                }
                let mut ids = Vec::with_capacity(count.min(PREALLOCATED_IDS));
                for _ in 0..count {
                    ids.push(r.string()?);
                }
                Some(ids)
            };
            Envelope::Broadcast {
                payload: payload(payload_kind, r.0)?,
                ids,
            }
        }
        b'D' => {
            let id = r.string()?;
            Envelope::Direct {
                id,
                payload: payload(payload_kind, r.0)?,
            }
        }
        _ => return None,
    };
    Some((origin, envelope))
}

fn payload(kind: u8, bytes: &[u8]) -> Option<MsgEvent> {
    match kind {
        b't' => Some(MsgEvent::Text(String::from_utf8(bytes.to_vec()).ok()?)),
        b'b' => Some(MsgEvent::Binary(bytes.to_vec())),
        _ => None,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.u32()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelopes() -> Vec<Envelope> {
        vec![
            Envelope::Broadcast {
                payload: MsgEvent::Text("héllo".into()),
                ids: None,
            },
            Envelope::Broadcast {
                payload: MsgEvent::Binary(vec![0, 1, 255]),
                ids: Some(vec!["unisock:a:0001".into(), "unisock:0002".into()]),
            },
            Envelope::Broadcast {
                payload: MsgEvent::Text(String::new()),
                ids: Some(vec![]),
            },
            Envelope::Direct {
                id: "unisock:b:0003".into(),
                payload: MsgEvent::Text("psst".into()),
            },
            Envelope::Direct {
                id: String::new(),
                payload: MsgEvent::Binary(vec![]),
            },
        ]
    }

    #[test]
    fn encode_then_decode_is_the_identity() {
        let origin = [1, 2, 3, 4, 5, 6, 7, 8];
        for envelope in envelopes() {
            let bytes = encode(&origin, &envelope);
            assert_eq!(decode(&bytes, bytes.len()), Ok((origin, envelope)));
        }
    }

    #[test]
    fn every_truncation_and_foreign_bytes_are_refused() {
        for envelope in envelopes() {
            let bytes = encode(&[9; 8], &envelope);
            // The payload is last, so only cuts inside the header can be detected.
            let header = bytes.len()
                - match &envelope {
                    Envelope::Broadcast { payload, .. } | Envelope::Direct { payload, .. } => {
                        payload.len()
                    }
                };
            for cut in 0..header {
                assert_eq!(
                    decode(&bytes[..cut], usize::MAX),
                    Err(Refused::Malformed),
                    "cut at {cut} of {envelope:?}"
                );
            }
        }
        assert_eq!(
            decode(b"PUBLISH from someone else", usize::MAX),
            Err(Refused::Malformed)
        );
        let mut huge_count = encode(
            &[0; 8],
            &Envelope::Broadcast {
                payload: MsgEvent::Binary(vec![]),
                ids: Some(vec![]),
            },
        );
        huge_count[13..17].copy_from_slice(&(ALL - 1).to_be_bytes());
        assert_eq!(decode(&huge_count, usize::MAX), Err(Refused::Malformed));
        let mut bad_utf8 = encode(
            &[0; 8],
            &Envelope::Direct {
                id: "x".into(),
                payload: MsgEvent::Text("ab".into()),
            },
        );
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert_eq!(decode(&bad_utf8, usize::MAX), Err(Refused::Malformed));
    }

    #[test]
    fn input_over_the_cap_is_refused_whatever_it_is() {
        for envelope in envelopes() {
            let bytes = encode(&[3; 8], &envelope);
            assert!(decode(&bytes, bytes.len()).is_ok());
            assert_eq!(decode(&bytes, bytes.len() - 1), Err(Refused::TooLarge));
        }
        assert_eq!(decode(&[0xff; 100], 99), Err(Refused::TooLarge));
    }
}

//! The backplane's wire decoder (what arrives on a Redis channel may come from anyone):
//! arbitrary bytes never panic or over-allocate, input over the cap is refused, whatever
//! decodes re-encodes to exactly the same bytes (the format has one encoding), and
//! envelopes built from the input encode and decode back to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unisock::backplane::fuzzing::{decode, decode_capped, encode};
use unisock::backplane::Envelope;
use unisock::MsgEvent;

/// An envelope made from `data`: its first byte picks the kind, then ids (split at 0xff,
/// up to the first 0x00) and a payload (what follows).
fn envelope(data: &[u8]) -> Option<Envelope> {
    let (&sel, rest) = data.split_first()?;
    let (ids, payload) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&rest[..0], rest),
    };
    let payload = if sel & 1 == 0 {
        MsgEvent::Text(String::from_utf8_lossy(payload).into_owned())
    } else {
        MsgEvent::Binary(payload.to_vec())
    };
    let mut ids = ids
        .split(|&b| b == 0xff)
        .map(|id| String::from_utf8_lossy(id).into_owned());
    Some(match (sel >> 1) & 3 {
        0 => Envelope::Broadcast { payload, ids: None },
        1 => Envelope::Broadcast {
            payload,
            ids: Some(ids.collect()),
        },
        2 => Envelope::Broadcast {
            payload,
            ids: Some(Vec::new()),
        },
        _ => Envelope::Direct {
            id: ids.next().unwrap_or_default(),
            payload,
        },
    })
}

fuzz_target!(|data: &[u8]| {
    if let Some((origin, envelope)) = decode(data) {
        assert_eq!(encode(&origin, &envelope), data);
        assert_eq!(decode_capped(data, data.len()), Some((origin, envelope)));
        assert_eq!(decode_capped(data, data.len() - 1), None);
    }
    if let Some(envelope) = envelope(data) {
        let origin = [data.len() as u8; 8];
        let bytes = encode(&origin, &envelope);
        assert_eq!(decode(&bytes), Some((origin, envelope)));
    }
});

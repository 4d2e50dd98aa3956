//! The `unisock.v1` frames (what a peer sends may come from anyone) and the client's
//! tracker: arbitrary messages never panic, whatever decodes re-encodes to the same
//! message (one encoding per frame), and frames fed to a tracker in any order give
//! deliveries once and in order, each following the last position held.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unisock::resume::wire::Frame;
use unisock::resume::{Delivery, Position, Tracker};
use unisock::MsgEvent;

/// The message `data` stands for: its first byte's low bit picks text (when the rest is
/// UTF-8) or binary.
fn message(data: &[u8]) -> Option<MsgEvent> {
    let (&sel, rest) = data.split_first()?;
    if sel & 1 == 0 {
        Some(MsgEvent::Text(String::from_utf8(rest.to_vec()).ok()?))
    } else {
        Some(MsgEvent::Binary(rest.to_vec()))
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(msg) = message(data) {
        if let Ok(frame) = Frame::decode(msg.clone()) {
            assert_eq!(frame.encode(), msg);
        }
    }
    // The input as a run of messages split at 0xfe, each decoded and given to a tracker
    // that joined the rooms they name.
    let mut tracker = Tracker::default();
    let mut held: std::collections::HashMap<String, Position> = Default::default();
    for part in data.split(|&b| b == 0xfe) {
        let Some(Ok(frame)) = message(part).map(Frame::decode) else {
            continue;
        };
        if let Frame::Message { room, .. } | Frame::Gap { room, .. } | Frame::Joined { room, .. } =
            &frame
        {
            if !tracker.rooms().contains(room) {
                tracker.join(room);
            }
        }
        let (delivered, _) = tracker.receive(frame);
        for d in delivered {
            if let Delivery::Message { room, at, .. } = d {
                if let Some(prev) = held.get(&room) {
                    assert!(at.epoch == prev.epoch && at.offset == prev.offset + 1);
                }
                held.insert(room, at);
            }
        }
        for (room, at) in held.iter_mut() {
            if let Some(now) = tracker.position(room) {
                *at = now; // gaps and joins move the position too
            }
        }
    }
});

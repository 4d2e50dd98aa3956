//! The frame codec alone, in memory: unisock's receive path (header parse, copy into the
//! message, unmask) and send path (header encode, copy into the output, mask), against a
//! plain memcpy of the same payload bytes, the physical limit of any path that copies once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use unisock::protocol::{Connection, Event, Role};
use unisock::Limits;

/// Frames per round: a round moves 16 payloads.
const FRAMES: usize = 16;

/// Runs `round` (which moves `bytes` payload bytes) repeatedly for about `time`; GB/s.
fn gbps(bytes: usize, time: Duration, mut round: impl FnMut()) -> f64 {
    round(); // warm caches and buffers
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < time {
        for _ in 0..16 {
            round();
        }
        rounds += 16;
    }
    (rounds as f64 * bytes as f64) / start.elapsed().as_secs_f64() / 1e9
}

/// The codec workloads by name, for `unisock-bench codec`.
pub const WORKLOADS: [&str; 4] = ["parse", "parsetext", "encode", "memcpy"];

/// One round of workload `what` (one of [`WORKLOADS`]) on `len`-byte payloads: it moves
/// `FRAMES` payloads.
pub fn round(what: &str, len: usize) -> Option<Box<dyn FnMut()>> {
    Some(match what {
        "parse" => parse(&crate::load::masked_frame(false, len)),
        "parsetext" => parse(&masked_text_frame(&mixed_text(len))),
        "encode" => encode(len),
        "memcpy" => copy(len),
        _ => return None,
    })
}

/// Runs exactly `rounds` rounds of a workload (a fixed amount of work to profile, e.g.
/// under callgrind, whose instruction counts compare builds on a noisy machine).
pub fn run_rounds(what: &str, len: usize, rounds: u64) -> Option<()> {
    let mut round = round(what, len)?;
    for _ in 0..rounds {
        round();
    }
    Some(())
}

/// Parse + unmask: a server connection takes `FRAMES` masked binary frames of `len` bytes.
pub fn parse_unmask(len: usize, time: Duration) -> f64 {
    gbps(
        len * FRAMES,
        time,
        parse(&crate::load::masked_frame(false, len)),
    )
}

/// Parse + unmask + validate: as [`parse_unmask`], with text frames of `len` bytes of
/// mixed ASCII and multibyte UTF-8 (see [`mixed_text`]).
pub fn parse_unmask_text(len: usize, time: Duration) -> f64 {
    gbps(
        len * FRAMES,
        time,
        parse(&masked_text_frame(&mixed_text(len))),
    )
}

/// Encode + mask: a client connection queues `FRAMES` binary messages of `len` bytes,
/// and the output buffer is taken (and reused) as a writer would.
pub fn encode_mask(len: usize, time: Duration) -> f64 {
    gbps(len * FRAMES, time, encode(len))
}

/// memcpy of the same bytes: `FRAMES` copies of `len` bytes into a reused buffer.
pub fn memcpy(len: usize, time: Duration) -> f64 {
    gbps(len * FRAMES, time, copy(len))
}

/// Chat-like JSON with accented Latin, CJK and an emoji: about half of its bytes are in
/// multibyte characters, so validation cannot stay on an ASCII fast path throughout.
const SAMPLE: &str = "{\"user\":\"Zoë\",\"text\":\"Grüße aus Köln, 東京で会いましょう 🎉\"}\n";

/// `len` bytes of valid UTF-8: [`SAMPLE`] repeated, padded with spaces where the next
/// character would not fit.
pub fn mixed_text(len: usize) -> String {
    let mut text = String::with_capacity(len);
    for c in SAMPLE.chars().cycle() {
        if text.len() + c.len_utf8() > len {
            break;
        }
        text.push(c);
    }
    while text.len() < len {
        text.push(' ');
    }
    text
}

/// One masked client text frame (FIN) carrying `text`.
fn masked_text_frame(text: &str) -> Vec<u8> {
    let mut client = Connection::new(Role::Client, Limits::default());
    let _ = client.send_text(text);
    client.take_data_to_send()
}

/// A round: a server connection takes `FRAMES` copies of `frame` and its events.
fn parse(frame: &[u8]) -> Box<dyn FnMut()> {
    let input = frame.repeat(FRAMES);
    let mut server = Connection::new(Role::Server, Limits::default());
    Box::new(move || {
        server.receive_data(black_box(&input));
        while let Some(ev) = server.next_event() {
            if let Event::Message(msg) = ev {
                black_box(msg);
            }
        }
    })
}

/// A round: a client connection queues `FRAMES` binary messages of `len` bytes, and the
/// output buffer is taken (and reused) as a writer would.
fn encode(len: usize) -> Box<dyn FnMut()> {
    let payload = vec![0x5au8; len];
    let mut client = Connection::new(Role::Client, Limits::default());
    let mut out = Vec::new();
    Box::new(move || {
        for _ in 0..FRAMES {
            let _ = client.send_binary(black_box(&payload));
        }
        client.swap_data_to_send(&mut out);
        black_box(&out);
    })
}

/// A round: `FRAMES` copies of `len` bytes into a reused buffer.
fn copy(len: usize) -> Box<dyn FnMut()> {
    let src = vec![0x5au8; len];
    let mut dst = vec![0u8; len * FRAMES];
    Box::new(move || {
        for chunk in dst.chunks_exact_mut(len) {
            chunk.copy_from_slice(black_box(&src));
        }
        black_box(&dst);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_text_is_exactly_len_bytes_and_half_multibyte() {
        for len in [0, 1, 5, 1024, 64 << 10] {
            assert_eq!(mixed_text(len).len(), len);
        }
        let text = mixed_text(1024);
        let multibyte = text
            .chars()
            .filter(|c| !c.is_ascii())
            .map(char::len_utf8)
            .sum::<usize>();
        assert!((400..600).contains(&multibyte), "{multibyte}");
    }

    #[test]
    fn text_frames_parse_to_the_text() {
        let text = mixed_text(1024);
        let mut server = Connection::new(Role::Server, Limits::default());
        server.receive_data(&masked_text_frame(&text));
        assert_eq!(
            server.next_event(),
            Some(Event::Message(unisock::MsgEvent::Text(text)))
        );
    }
}

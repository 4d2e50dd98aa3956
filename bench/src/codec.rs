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

/// Parse + unmask: a server connection takes `FRAMES` masked binary frames of `len` bytes.
pub fn parse_unmask(len: usize, time: Duration) -> f64 {
    let input = crate::load::masked_frame(false, len).repeat(FRAMES);
    let mut server = Connection::new(Role::Server, Limits::default());
    gbps(len * FRAMES, time, || {
        server.receive_data(black_box(&input));
        while let Some(ev) = server.next_event() {
            if let Event::Message(msg) = ev {
                black_box(msg);
            }
        }
    })
}

/// Encode + mask: a client connection queues `FRAMES` binary messages of `len` bytes,
/// and the output buffer is taken (and reused) as a writer would.
pub fn encode_mask(len: usize, time: Duration) -> f64 {
    let payload = vec![0x5au8; len];
    let mut client = Connection::new(Role::Client, Limits::default());
    let mut out = Vec::new();
    gbps(len * FRAMES, time, || {
        for _ in 0..FRAMES {
            let _ = client.send_binary(black_box(&payload));
        }
        client.swap_data_to_send(&mut out);
        black_box(&out);
    })
}

/// memcpy of the same bytes: `FRAMES` copies of `len` bytes into a reused buffer.
pub fn memcpy(len: usize, time: Duration) -> f64 {
    let src = vec![0x5au8; len];
    let mut dst = vec![0u8; len * FRAMES];
    gbps(len * FRAMES, time, || {
        for chunk in dst.chunks_exact_mut(len) {
            chunk.copy_from_slice(black_box(&src));
        }
        black_box(&dst);
    })
}

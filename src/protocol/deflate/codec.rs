//! The per-message compressor and decompressor of permessage-deflate (native only), on
//! flate2's zlib-rs backend: raw deflate, sync-flushed, the `00 00 ff ff` tail stripped
//! on send and put back on receive (RFC 7692 §7.2), contexts kept or reset per message
//! as negotiated, and inflation in bounded steps so that a message can never inflate past
//! the message size limit.
//!
//! Memory: a zlib compressor with a 32 KiB window holds about 300 KiB, a decompressor
//! about 40 KiB. Both are created on first use, so an idle connection holds none. A
//! context that is reset after every message (`no_context_takeover`) carries nothing from
//! one message to the next, so the connection does not keep it: it is borrowed from a
//! small per-thread pool for one message and given back. A server with
//! `server_no_context_takeover` (its default) holds no compressor per connection.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::DeflateParams;
use crate::protocol::{ProtocolError, Role};
use crate::DeflateConfig;

/// What a sync flush ends with, removed from each compressed message (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How much output one inflate step may produce.
const INFLATE_STEP: usize = 32 * 1024;

/// Reset contexts kept per thread, per kind (level and window bits): at most this many.
const POOL_PER_KIND: usize = 2;

thread_local! {
    /// Where inflated bytes land before they are appended to the message: reused, so no
    /// step zeroes fresh memory.
    static INFLATE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static COMPRESSORS: RefCell<Vec<(u32, u8, Compress)>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSORS: RefCell<Vec<(u8, Decompress)>> = const { RefCell::new(Vec::new()) };
}

/// A reset compressor for `level` and `bits`: from this thread's pool, or a new one.
fn pooled_compressor(level: Compression, bits: u8) -> Compress {
    let found = COMPRESSORS.with(|pool| {
        let mut pool = pool.borrow_mut();
        let at = pool
            .iter()
            .position(|(l, b, _)| *l == level.level() && *b == bits)?;
        Some(pool.swap_remove(at).2)
    });
    found.unwrap_or_else(|| Compress::new_with_window_bits(level, false, bits))
}

/// Resets a compressor and gives it back to this thread's pool, unless that is full.
fn return_compressor(level: Compression, bits: u8, mut c: Compress) {
    c.reset();
    COMPRESSORS.with(|pool| {
        let mut pool = pool.borrow_mut();
        let same = pool
            .iter()
            .filter(|(l, b, _)| *l == level.level() && *b == bits)
            .count();
        if same < POOL_PER_KIND {
            pool.push((level.level(), bits, c));
        }
    });
}

/// A reset decompressor for `bits`: from this thread's pool, or a new one.
fn pooled_decompressor(bits: u8) -> Decompress {
    let found = DECOMPRESSORS.with(|pool| {
        let mut pool = pool.borrow_mut();
        let at = pool.iter().position(|(b, _)| *b == bits)?;
        Some(pool.swap_remove(at).1)
    });
    found.unwrap_or_else(|| Decompress::new_with_window_bits(false, bits))
}

/// Resets a decompressor and gives it back to this thread's pool, unless that is full.
fn return_decompressor(bits: u8, mut d: Decompress) {
    d.reset(false);
    DECOMPRESSORS.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.iter().filter(|(b, _)| *b == bits).count() < POOL_PER_KIND {
            pool.push((bits, d));
        }
    });
}

/// One connection's compression state, for the role it plays.
pub(crate) struct Codec {
    /// Our compressor while we keep its context (created on first use).
    compress: Option<Compress>,
    level: Compression,
    /// Our window bits (9-15).
    compress_bits: u8,
    /// Reset the compressor after each message (our `*_no_context_takeover`): it is then
    /// borrowed from the pool for each message.
    reset_compress: bool,
    /// The decompressor while its context is kept or a message is being inflated.
    decompress: Option<Decompress>,
    /// The peer's window bits, at least 9: a larger window decodes a smaller one.
    decompress_bits: u8,
    /// Reset the decompressor after each message (the peer's `*_no_context_takeover`).
    reset_decompress: bool,
    /// The message being inflated ended its deflate stream (a final block): nothing
    /// more may follow in it.
    stream_ended: bool,
    min_size: usize,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("compress_bits", &self.compress_bits)
            .field("reset_compress", &self.reset_compress)
            .field("decompress_bits", &self.decompress_bits)
            .field("reset_decompress", &self.reset_decompress)
            .field("min_size", &self.min_size)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// The codec for `role` under the negotiated `params`.
    pub(crate) fn new(role: Role, params: &DeflateParams, config: &DeflateConfig) -> Option<Self> {
        let (ours, theirs, reset_ours, reset_theirs) = match role {
            Role::Server => (
                params.server_max_window_bits,
                params.client_max_window_bits,
                params.server_no_context_takeover,
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.server_max_window_bits,
                params.client_no_context_takeover,
                params.server_no_context_takeover,
            ),
        };
        // zlib cannot compress with an 8-bit window (madler/zlib#171). When the peer
        // insists on one (a server may answer our value-less client_max_window_bits with
        // 8), send stored blocks: they hold no back-references, so any window decodes them.
        let level = if ours < 9 {
            Compression::none()
        } else {
            Compression::new(config.level.min(9))
        };
        Some(Self {
            compress: None,
            level,
            compress_bits: ours.clamp(9, 15),
            reset_compress: reset_ours,
            decompress: None,
            decompress_bits: theirs.clamp(9, 15),
            reset_decompress: reset_theirs,
            stream_ended: false,
            min_size: config.min_size,
        })
    }

    /// Compresses one whole message, or `None` to send it uncompressed (shorter than the
    /// minimum size, or the compressor failed).
    pub(crate) fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < self.min_size {
            return None;
        }
        let (level, bits) = (self.level, self.compress_bits);
        let mut compress = match self.compress.take() {
            Some(c) => c,
            None if self.reset_compress => pooled_compressor(level, bits),
            None => Compress::new_with_window_bits(level, false, bits),
        };
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let start = compress.total_in();
        let result = loop {
            let consumed = usize::try_from(compress.total_in() - start).unwrap_or(usize::MAX);
            let input = data.get(consumed..).unwrap_or_default();
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            if let Err(e) = compress.compress_vec(input, &mut out, FlushCompress::Sync) {
                break Err(e);
            }
            let consumed = usize::try_from(compress.total_in() - start).unwrap_or(usize::MAX);
            // A sync flush is complete once all input is taken and the output has room left.
            if consumed >= data.len() && out.len() < out.capacity() {
                break Ok(());
            }
        };
        if self.reset_compress {
            return_compressor(level, bits, compress);
        } else {
            if result.is_err() {
                // The peer saw nothing of this message: start over without a context.
                compress.reset();
            }
            self.compress = Some(compress);
        }
        if let Err(e) = result {
            tracing::warn!("deflate failed, sending uncompressed: {e}");
            return None;
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        Some(out)
    }

    /// Inflates compressed payload bytes of the message being received onto `out`, which
    /// may not grow past `max` bytes (the message size limit): the output is produced in
    /// bounded steps and checked as it grows.
    pub(crate) fn decompress(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
        cover: &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        if self.stream_ended {
            return if input.is_empty() {
                Ok(())
            } else {
                Err(ProtocolError::InvalidCompressedData)
            };
        }
        let (bits, reset) = (self.decompress_bits, self.reset_decompress);
        let stream_ended = &mut self.stream_ended;
        let decompress = self.decompress.get_or_insert_with(|| {
            if reset {
                pooled_decompressor(bits)
            } else {
                Decompress::new_with_window_bits(false, bits)
            }
        });
        INFLATE_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() < INFLATE_STEP {
                scratch.resize(INFLATE_STEP, 0);
            }
            loop {
                let room = max
                    .saturating_sub(out.len())
                    .saturating_add(1)
                    .min(INFLATE_STEP);
                let (in_before, out_before) = (decompress.total_in(), decompress.total_out());
                let status = decompress.decompress(
                    input,
                    scratch.get_mut(..room).unwrap_or_default(),
                    FlushDecompress::None,
                );
                let consumed =
                    usize::try_from(decompress.total_in() - in_before).unwrap_or(usize::MAX);
                let produced =
                    usize::try_from(decompress.total_out() - out_before).unwrap_or(usize::MAX);
                let needed = out.len() + produced;
                if needed > out.capacity() {
                    // The memory budget covers the room before it is taken.
                    let grown = needed.max(out.capacity().saturating_mul(2));
                    cover(grown)?;
                    out.reserve_exact(grown - out.len());
                }
                out.extend_from_slice(scratch.get(..produced).unwrap_or_default());
                // The limit before the data's validity: one step may both pass the limit and
                // reach corrupt input, which a message split into more frames reaches only
                // in a later step; either way the limit is what the peer broke first.
                if out.len() > max {
                    return Err(ProtocolError::MessageTooLarge {
                        size: out.len() as u64,
                        max,
                    });
                }
                let status = status.map_err(|_| ProtocolError::InvalidCompressedData)?;
                input = input.get(consumed..).unwrap_or_default();
                if status == Status::StreamEnd {
                    // The peer ended the deflate stream (a final block): nothing may follow
                    // in this message (the tail is not appended then); the next message
                    // starts a new stream.
                    decompress.reset(false);
                    *stream_ended = true;
                    return if input.is_empty() {
                        Ok(())
                    } else {
                        Err(ProtocolError::InvalidCompressedData)
                    };
                }
                if input.is_empty() && produced < room {
                    return Ok(());
                }
                if consumed == 0 && produced == 0 {
                    // Output that exactly filled the last step leaves nothing for this one;
                    // input that cannot be decoded any further is corrupt.
                    return if input.is_empty() {
                        Ok(())
                    } else {
                        Err(ProtocolError::InvalidCompressedData)
                    };
                }
            }
        })
    }

    /// Ends a compressed message: inflates the stripped tail; a decompressor whose context
    /// is not taken over goes back to the pool.
    pub(crate) fn finish_message(
        &mut self,
        out: &mut Vec<u8>,
        max: usize,
        cover: &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let result = if std::mem::take(&mut self.stream_ended) {
            Ok(())
        } else {
            self.decompress(&TAIL, out, max, cover)
        };
        if self.reset_decompress {
            if let Some(d) = self.decompress.take() {
                return_decompressor(self.decompress_bits, d);
            }
        } else if result.is_err() {
            // The connection is failed: nothing more will be inflated.
            self.decompress = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(params: DeflateParams, config: DeflateConfig) -> (Codec, Codec) {
        (
            Codec::new(Role::Client, &params, &config).unwrap(),
            Codec::new(Role::Server, &params, &config).unwrap(),
        )
    }

    fn round_trip(from: &mut Codec, to: &mut Codec, msg: &[u8]) -> Vec<u8> {
        let wire = from.compress(msg).expect("compressed");
        let mut out = Vec::new();
        // Any split of the compressed payload (fragments, reads) inflates the same.
        let (a, b) = wire.split_at(wire.len() / 3);
        to.decompress(a, &mut out, usize::MAX, &mut |_| Ok(()))
            .unwrap();
        to.decompress(b, &mut out, usize::MAX, &mut |_| Ok(()))
            .unwrap();
        to.finish_message(&mut out, usize::MAX, &mut |_| Ok(()))
            .unwrap();
        out
    }

    #[test]
    fn rfc_7692_hello_example() {
        // RFC 7692 §7.2.3.1: "Hello" compressed, tail stripped.
        let wire = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let (_, mut server) = pair(DeflateParams::default(), DeflateConfig::default());
        let mut out = Vec::new();
        server
            .decompress(&wire, &mut out, 100, &mut |_| Ok(()))
            .unwrap();
        server
            .finish_message(&mut out, 100, &mut |_| Ok(()))
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: with context takeover, the second "Hello" refers back to the first.
        server
            .decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100, &mut |_| {
                Ok(())
            })
            .unwrap();
        server
            .finish_message(&mut out, 100, &mut |_| Ok(()))
            .unwrap();
        assert_eq!(out, b"HelloHello");
        // What we send for "Hello" decodes the same and ends without the tail.
        let (mut client, _) = pair(
            DeflateParams::default(),
            DeflateConfig::default().min_size(0),
        );
        let sent = client.compress(b"Hello").unwrap();
        assert!(!sent.ends_with(&TAIL));
    }

    #[test]
    fn context_takeover_shrinks_repeats_and_no_takeover_does_not() {
        let msg = br#"{"user":"alice","action":"move","x":12,"y":34,"room":"lobby"}"#;
        let (mut c, mut s) = pair(DeflateParams::default(), DeflateConfig::default());
        let first = c.compress(msg).unwrap().len();
        let second = c.compress(msg).unwrap().len();
        assert!(second < first / 2, "{first} then {second}");
        let reset = DeflateParams {
            client_no_context_takeover: true,
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let (mut c2, mut s2) = pair(reset, DeflateConfig::default());
        assert_eq!(c2.compress(msg).unwrap().len(), first);
        assert_eq!(c2.compress(msg).unwrap().len(), first);
        for _ in 0..3 {
            assert_eq!(round_trip(&mut s, &mut c, msg), msg);
            assert_eq!(round_trip(&mut c2, &mut s2, msg), msg);
        }
    }

    #[test]
    fn every_window_size_round_trips() {
        let text: Vec<u8> = (0..200_000u64)
            .map(|i| b"abcdefghij"[(i * i % 7) as usize])
            .collect();
        for bits in 8..=15 {
            let params = DeflateParams {
                server_max_window_bits: bits,
                client_max_window_bits: bits,
                ..DeflateParams::default()
            };
            let (mut c, mut s) = pair(params, DeflateConfig::default());
            assert_eq!(round_trip(&mut c, &mut s, &text), text, "{bits}");
            assert_eq!(round_trip(&mut s, &mut c, &text), text, "{bits}");
        }
    }

    #[test]
    fn contexts_are_created_on_use_and_reset_ones_are_not_kept() {
        let msg = [b'x'; 1000];
        let (mut c, mut s) = pair(DeflateParams::default(), DeflateConfig::default());
        assert!(c.compress.is_none() && c.decompress.is_none());
        round_trip(&mut c, &mut s, &msg);
        assert!(c.compress.is_some() && s.decompress.is_some());
        let reset = DeflateParams {
            client_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let (mut c, mut s) = pair(reset, DeflateConfig::default());
        for _ in 0..3 {
            assert_eq!(round_trip(&mut c, &mut s, &msg), msg);
            // Between messages neither side holds the client-to-server context.
            assert!(c.compress.is_none() && s.decompress.is_none());
        }
    }

    #[test]
    fn short_messages_stay_uncompressed() {
        let (mut c, _) = pair(
            DeflateParams::default(),
            DeflateConfig::default().min_size(10),
        );
        assert!(c.compress(b"123456789").is_none());
        assert!(c.compress(b"1234567890").is_some());
    }

    #[test]
    fn empty_message_is_one_zero_byte() {
        let (mut c, mut s) = pair(
            DeflateParams::default(),
            DeflateConfig::default().min_size(0),
        );
        assert_eq!(c.compress(b"").unwrap(), [0x00]);
        assert_eq!(round_trip(&mut c, &mut s, b""), b"");
    }

    #[test]
    fn inflate_stops_at_the_limit() {
        let (mut c, mut s) = pair(DeflateParams::default(), DeflateConfig::default().level(9));
        let wire = c.compress(&vec![0u8; 1 << 20]).unwrap();
        assert!(wire.len() < 2048, "{}", wire.len());
        let mut out = Vec::new();
        let err = s
            .decompress(&wire, &mut out, 1000, &mut |_| Ok(()))
            .unwrap_err();
        assert_eq!(
            err,
            ProtocolError::MessageTooLarge {
                size: 1001,
                max: 1000
            }
        );
        assert!(out.capacity() < 64 * 1024, "{}", out.capacity());
    }

    #[test]
    fn garbage_is_an_error() {
        let (_, mut s) = pair(DeflateParams::default(), DeflateConfig::default());
        let mut out = Vec::new();
        // BTYPE 11 is reserved.
        assert_eq!(
            s.decompress(&[0xff, 0xff, 0xff], &mut out, 1000, &mut |_| Ok(())),
            Err(ProtocolError::InvalidCompressedData)
        );
    }

    // The codec inside the connection: RSV1 rules, fragments, limits, both directions.

    use crate::protocol::{Connection, ConnectionState, Event, FrameHeader, Opcode};
    use crate::{Limits, MsgEvent};

    fn deflate_conn(role: Role, limits: Limits) -> Connection {
        let mut conn = Connection::new(role, limits);
        assert!(conn.set_deflate(
            &DeflateParams::default(),
            &DeflateConfig::default().min_size(0)
        ));
        conn
    }

    /// A masked client frame with the first header byte `first`.
    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x11, 0x22, 0x33, 0x44];
        let header = FrameHeader {
            fin: first & 0x80 != 0,
            rsv: (first >> 4) & 7,
            opcode: Opcode::try_from(first & 0xf).unwrap(),
            mask: Some(key),
            payload_len: payload.len() as u64,
        };
        let mut out = Vec::new();
        header.encode(&mut out);
        let start = out.len();
        out.extend_from_slice(payload);
        crate::protocol::apply_mask(&mut out[start..], key, 0);
        out
    }

    fn events(conn: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| conn.next_event()).collect()
    }

    fn failed_with(conn: &mut Connection, err: ProtocolError) {
        assert_eq!(events(conn).last(), Some(&Event::Error(err)));
        assert_eq!(conn.state(), ConnectionState::Failed);
    }

    #[test]
    fn fragmented_compressed_message_rfc_7692_7_2_3_3() {
        // "Hello" compressed, in two fragments: RSV1 only on the first.
        let mut wire = masked(0x41, &[0xf2, 0x48, 0xcd]);
        wire.extend(masked(0x89, b"ping"));
        wire.extend(masked(0x80, &[0xc9, 0xc9, 0x07, 0x00]));
        for step in [1, 3, wire.len()] {
            let mut s = deflate_conn(Role::Server, Limits::default());
            for piece in wire.chunks(step) {
                s.receive_data(piece);
            }
            assert_eq!(
                events(&mut s),
                [
                    Event::Ping(b"ping".to_vec()),
                    Event::Message(MsgEvent::Text("Hello".into()))
                ]
            );
        }
    }

    #[test]
    fn rsv1_rules() {
        // Without the extension, RSV1 is still a protocol error.
        let mut plain = Connection::new(Role::Server, Limits::default());
        plain.receive_data(&masked(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]));
        failed_with(&mut plain, ProtocolError::ReservedBitsSet);
        // With it: never on a continuation, a control frame, or RSV2/RSV3.
        for wire in [
            [masked(0x01, b"a"), masked(0xc0, b"b")].concat(),
            masked(0xc9, b""),
            masked(0xa1, b"x"),
            masked(0xe1, b"x"),
        ] {
            let mut s = deflate_conn(Role::Server, Limits::default());
            s.receive_data(&wire);
            failed_with(&mut s, ProtocolError::ReservedBitsSet);
        }
        // Uncompressed messages still pass when it is negotiated.
        let mut s = deflate_conn(Role::Server, Limits::default());
        s.receive_data(&masked(0x81, b"plain"));
        assert_eq!(
            events(&mut s),
            [Event::Message(MsgEvent::Text("plain".into()))]
        );
    }

    #[test]
    fn both_directions_through_two_connections() {
        let mut client = deflate_conn(Role::Client, Limits::default());
        let mut server = deflate_conn(Role::Server, Limits::default());
        let text = "{\"id\":1,\"name\":\"unisock\",\"tags\":[\"a\",\"b\"]}".repeat(500);
        for _ in 0..3 {
            client.send_text(&text).unwrap();
            client.send_binary(text.as_bytes()).unwrap();
            client.send_ping(b"p").unwrap();
            let wire = client.take_data_to_send();
            // Compressed: far smaller than the two messages.
            assert!(wire.len() < text.len() / 4, "{}", wire.len());
            // RSV1 on data frames only.
            assert_eq!(wire[0], 0xc1);
            server.receive_data(&wire);
            assert_eq!(
                events(&mut server),
                [
                    Event::Message(MsgEvent::Text(text.clone())),
                    Event::Message(MsgEvent::Binary(text.clone().into_bytes())),
                    Event::Ping(b"p".to_vec()),
                ]
            );
            let pong = server.take_data_to_send();
            assert_eq!(pong, [0x8a, 0x01, b'p']);
            server.send_text(&text).unwrap();
            client.receive_data(&server.take_data_to_send());
            assert_eq!(
                events(&mut client),
                [Event::Message(MsgEvent::Text(text.clone()))]
            );
        }
        // Close frames are never compressed.
        server.send_close(None, "").unwrap();
        assert_eq!(server.data_to_send(), [0x88, 0x00]);
    }

    #[test]
    fn compressed_invalid_utf8_is_1007() {
        let (mut c, _) = pair(
            DeflateParams::default(),
            DeflateConfig::default().min_size(0),
        );
        let wire = c.compress(b"valid then \xff invalid").unwrap();
        let mut s = deflate_conn(Role::Server, Limits::default());
        s.receive_data(&masked(0xc1, &wire));
        failed_with(&mut s, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn inflated_size_is_limited_across_fragments() {
        let (mut c, _) = pair(DeflateParams::default(), DeflateConfig::default().level(9));
        let wire = c.compress(&vec![b'a'; 1 << 20]).unwrap();
        let (a, b) = wire.split_at(wire.len() / 2);
        let mut input = masked(0x42, a);
        input.extend(masked(0x80, b));
        let mut s = deflate_conn(Role::Server, Limits::default().max_message_size(100_000));
        s.receive_data(&input);
        failed_with(
            &mut s,
            ProtocolError::MessageTooLarge {
                size: 100_001,
                max: 100_000,
            },
        );
        // The same message fits under a larger limit.
        let mut s = deflate_conn(Role::Server, Limits::default().max_message_size(1 << 20));
        s.receive_data(&input);
        assert_eq!(
            events(&mut s),
            [Event::Message(MsgEvent::Binary(vec![b'a'; 1 << 20]))]
        );
    }

    #[test]
    fn the_error_does_not_depend_on_the_split() {
        // Invalid UTF-8 inflated before corrupt data: 1007 whether the frame arrives whole
        // or a byte at a time (found by the inflate fuzz target).
        let (mut c, _) = pair(
            DeflateParams::default(),
            DeflateConfig::default().min_size(0),
        );
        let mut payload = c.compress(b"abc\xff\xfe").unwrap();
        payload.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let wire = masked(0xc1, &payload);
        let mut whole = deflate_conn(Role::Server, Limits::default());
        whole.receive_data(&wire);
        failed_with(&mut whole, ProtocolError::InvalidUtf8);
        let mut bytewise = deflate_conn(Role::Server, Limits::default());
        for b in &wire {
            bytewise.receive_data(std::slice::from_ref(b));
        }
        failed_with(&mut bytewise, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn a_final_block_ends_the_message_and_nothing_may_follow_it() {
        // A peer may end a message with a final block (BFINAL): it inflates, and the
        // next message starts a new stream.
        let mut raw = Compress::new(Compression::default(), false);
        let mut hello = Vec::with_capacity(64);
        raw.compress_vec(b"Hello", &mut hello, FlushCompress::Finish)
            .unwrap();
        let mut s = deflate_conn(Role::Server, Limits::default());
        s.receive_data(&masked(0xc1, &hello));
        s.receive_data(&masked(0xc1, &hello));
        let hello_event = Event::Message(MsgEvent::Text("Hello".into()));
        assert_eq!(events(&mut s), [hello_event.clone(), hello_event]);
        // Bytes after the final block fail the message, however the frames are split
        // (found by the inflate fuzz target).
        let mut wire = masked(0x42, &[0x03, 0x00]);
        wire.extend(masked(0x80, &[0x00, 0x09]));
        for step in [1, 7, wire.len()] {
            let mut s = deflate_conn(Role::Server, Limits::default());
            for piece in wire.chunks(step) {
                s.receive_data(piece);
            }
            failed_with(&mut s, ProtocolError::InvalidCompressedData);
        }
    }

    #[test]
    fn corrupt_compressed_data_fails_the_connection() {
        let mut s = deflate_conn(Role::Server, Limits::default());
        s.receive_data(&masked(0xc2, &[0xff, 0xff, 0xff, 0xff]));
        failed_with(&mut s, ProtocolError::InvalidCompressedData);
    }
}

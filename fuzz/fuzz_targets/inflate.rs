//! permessage-deflate's receive path: arbitrary bytes as compressed messages (RSV1
//! frames, any negotiated window and context takeover) never panic, never inflate past
//! the message limit, and give the same events whole or split; and whatever our own
//! compressor sends inflates back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unisock::protocol::deflate::DeflateParams;
use unisock::protocol::{Connection, Event, FrameHeader, Opcode, Role};
use unisock::{DeflateConfig, Limits, MsgEvent};

const MAX_MESSAGE: usize = 1 << 16;

fn params(sel: u8) -> DeflateParams {
    let mut p = DeflateParams::default();
    p.server_max_window_bits = 8 + sel % 8;
    p.client_max_window_bits = 8 + (sel >> 3) % 8;
    p.client_no_context_takeover = sel & 0x40 != 0;
    p.server_no_context_takeover = sel & 0x80 != 0;
    p
}

fn conn(role: Role, sel: u8) -> Connection {
    let limits = Limits::default().max_message_size(MAX_MESSAGE);
    let mut c = Connection::new(role, limits);
    assert!(c.set_deflate(&params(sel), &DeflateConfig::default().min_size(0)));
    c
}

/// `data` as a run of masked client frames: [first byte][len][len bytes]...
fn frames(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [first, len, rest @ ..] = data {
        let len = usize::from(*len).min(rest.len());
        let (payload, tail) = rest.split_at(len);
        // Data frames with RSV1 on text/binary; FIN and continuation from the byte.
        let opcode = match first & 3 {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            _ => Opcode::Binary,
        };
        let header = FrameHeader {
            fin: first & 0x80 != 0,
            rsv: if opcode == Opcode::Continuation { 0 } else { 0b100 },
            opcode,
            mask: Some([1, 2, 3, 4]),
            payload_len: len as u64,
        };
        header.encode(&mut out);
        let start = out.len();
        out.extend_from_slice(payload);
        unisock::protocol::apply_mask(&mut out[start..], [1, 2, 3, 4], 0);
        data = tail;
    }
    out
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.next_event()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let wire = frames(rest);
    let mut whole = conn(Role::Server, sel);
    whole.receive_data(&wire);
    let got = events(&mut whole);
    for ev in &got {
        if let Event::Message(m) = ev {
            assert!(m.len() <= MAX_MESSAGE);
        }
    }
    let mut split = conn(Role::Server, sel);
    for piece in wire.chunks(7) {
        split.receive_data(piece);
    }
    assert_eq!(got, events(&mut split));

    // Our compressor: the raw bytes, sent by a client, arrive unchanged.
    let mut client = conn(Role::Client, sel);
    let mut server = conn(Role::Server, sel);
    for _ in 0..2 {
        client.send_binary(rest).unwrap();
        server.receive_data(&client.take_data_to_send());
        let msg = rest.len() <= MAX_MESSAGE;
        let evs = events(&mut server);
        if msg {
            assert_eq!(evs, [Event::Message(MsgEvent::Binary(rest.to_vec()))]);
        }
    }
});

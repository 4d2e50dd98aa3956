//! Property tests of the sans-io core: for arbitrary messages, fragmentations, masks and
//! ways of splitting the byte stream, decoding what was encoded gives back the messages,
//! in both roles.
#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use unisock::protocol::{apply_mask, Connection, Event, FrameHeader, Opcode, Role};
use unisock::{Limits, MsgEvent};

/// One message and how to send it.
#[derive(Debug, Clone)]
struct Planned {
    msg: MsgEvent,
    /// Fragment boundaries, as fractions of the payload (sorted, deduplicated).
    cuts: Vec<usize>,
    /// A ping between the first and second fragment.
    ping: bool,
}

fn message() -> impl Strategy<Value = MsgEvent> {
    prop_oneof![
        ".{0,300}".prop_map(MsgEvent::Text),
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(MsgEvent::Binary),
    ]
}

fn planned() -> impl Strategy<Value = Planned> {
    (
        message(),
        proptest::collection::vec(0usize..=100, 0..4),
        any::<bool>(),
    )
        .prop_map(|(msg, mut cuts, ping)| {
            cuts.sort_unstable();
            cuts.dedup();
            Planned { msg, cuts, ping }
        })
}

fn payload(msg: &MsgEvent) -> &[u8] {
    match msg {
        MsgEvent::Text(t) => t.as_bytes(),
        MsgEvent::Binary(b) => b,
    }
}

/// Encodes one frame as a peer in `sender` role would (masked iff the sender is a client).
fn frame(out: &mut Vec<u8>, fin: bool, opcode: Opcode, data: &[u8], sender: Role, key: [u8; 4]) {
    let mask = (sender == Role::Client).then_some(key);
    FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask,
        payload_len: data.len() as u64,
    }
    .encode(out);
    let start = out.len();
    out.extend_from_slice(data);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

fn receiver_of(sender: Role) -> Role {
    match sender {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Hand-built fragmented frames with random masks and pings between fragments, fed in
    /// random chunks, decode to exactly the planned messages and pings.
    #[test]
    fn fragmented_frames_decode_to_the_messages(
        plan in proptest::collection::vec(planned(), 0..6),
        client_sends in any::<bool>(),
        key in any::<[u8; 4]>(),
        chunks in proptest::collection::vec(1usize..700, 1..20),
    ) {
        let sender = if client_sends { Role::Client } else { Role::Server };
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for p in &plan {
            let data = payload(&p.msg);
            let mut bounds: Vec<usize> = p.cuts.iter().map(|c| c * data.len() / 100).collect();
            bounds.push(data.len());
            bounds.dedup();
            let opcode = match p.msg { MsgEvent::Text(_) => Opcode::Text, MsgEvent::Binary(_) => Opcode::Binary };
            let mut start = 0;
            for (i, end) in bounds.iter().enumerate() {
                let last = i + 1 == bounds.len();
                let op = if i == 0 { opcode } else { Opcode::Continuation };
                frame(&mut wire, last, op, &data[start..*end], sender, key);
                if i == 0 && p.ping && !last {
                    frame(&mut wire, true, Opcode::Ping, b"ping", sender, key);
                    expected.push(Event::Ping(b"ping".to_vec()));
                }
                start = *end;
            }
            expected.push(Event::Message(p.msg.clone()));
        }
        let mut conn = Connection::new(receiver_of(sender), Limits::default());
        let mut got = Vec::new();
        let mut rest = &wire[..];
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            conn.receive_data(&rest[..n]);
            rest = &rest[n..];
            got.extend(std::iter::from_fn(|| conn.next_event()));
        }
        prop_assert_eq!(got, expected);
    }

    /// What a Connection sends, another Connection of the other role receives intact.
    #[test]
    fn connection_to_connection_is_the_identity(
        msgs in proptest::collection::vec(message(), 0..10),
        client_sends in any::<bool>(),
        chunk in 1usize..4096,
    ) {
        let sender_role = if client_sends { Role::Client } else { Role::Server };
        let mut sender = Connection::new(sender_role, Limits::default());
        for m in &msgs {
            match m {
                MsgEvent::Text(t) => sender.send_text(t).unwrap(),
                MsgEvent::Binary(b) => sender.send_binary(b).unwrap(),
            }
        }
        let wire = sender.take_data_to_send();
        let mut receiver = Connection::new(receiver_of(sender_role), Limits::default());
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            receiver.receive_data(piece);
            got.extend(std::iter::from_fn(|| receiver.next_event()));
        }
        let expected: Vec<Event> = msgs.into_iter().map(Event::Message).collect();
        prop_assert_eq!(got, expected);
    }
}

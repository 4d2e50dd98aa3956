//! The whole receive path (frames, reassembly, incremental UTF-8, close codes, limits) in
//! both roles: arbitrary input never panics, and feeding it in two pieces, or in small
//! pieces read straight into the message (`begin_direct_read`) wherever the connection
//! allows, gives exactly the same events and output as feeding it whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unisock::protocol::{Connection, Event, Role};
use unisock::Limits;

fn connection(role: Role) -> Connection {
    // Small enough that inputs reach every limit, the fragment count too.
    let limits = Limits::default()
        .max_frame_size(1 << 16)
        .max_message_size(1 << 18)
        .max_fragments(64);
    Connection::new(role, limits)
}

/// Takes the events, answering each message (handed over, as an echo server does).
fn drain(conn: &mut Connection, events: &mut Vec<Event>) {
    while let Some(ev) = conn.next_event() {
        if let Event::Message(msg) = &ev {
            // Answering a message must work until a close or an error is taken.
            let _ = conn.send_message(msg.clone());
        }
        events.push(ev);
    }
}

fn run(role: Role, pieces: &[&[u8]]) -> (Vec<Event>, Vec<u8>) {
    let mut conn = connection(role);
    let mut events = Vec::new();
    for piece in pieces {
        conn.receive_data(piece);
        drain(&mut conn, &mut events);
    }
    (events, conn.take_data_to_send())
}

/// Feeds `input` in pieces of `step` bytes, each read straight into the message when
/// `begin_direct_read` allows.
fn run_direct(role: Role, mut input: &[u8], step: usize) -> (Vec<Event>, Vec<u8>) {
    let mut conn = connection(role);
    let mut events = Vec::new();
    while !input.is_empty() {
        let n = step.min(input.len());
        match conn.begin_direct_read(1) {
            Some(mut read) => {
                let n = n.min(read.want());
                read.buf().extend_from_slice(&input[..n]);
                conn.end_direct_read(read);
                input = &input[n..];
            }
            None => {
                conn.receive_data(&input[..n]);
                input = &input[n..];
            }
        }
        drain(&mut conn, &mut events);
    }
    (events, conn.take_data_to_send())
}

fuzz_target!(|data: &[u8]| {
    let Some((&split_byte, rest)) = data.split_first() else { return };
    let at = usize::from(split_byte).min(rest.len());
    let (a, b) = rest.split_at(at);
    for role in [Role::Server, Role::Client] {
        let whole = run(role, &[rest]);
        let split = run(role, &[a, b]);
        let direct = run_direct(role, rest, usize::from(split_byte % 64) + 1);
        assert_eq!(whole.0, split.0);
        assert_eq!(whole.0, direct.0);
        if role == Role::Server {
            // The server's output does not depend on random masks: it must match too.
            assert_eq!(whole.1, split.1);
            assert_eq!(whole.1, direct.1);
        }
    }
});

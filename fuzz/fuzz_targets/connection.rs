//! The whole receive path (frames, reassembly, incremental UTF-8, close codes, limits) in
//! both roles: arbitrary input never panics, and feeding it in two pieces gives exactly the
//! same events and output as feeding it whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unisock::protocol::{Connection, Event, Role};
use unisock::Limits;

fn run(role: Role, pieces: &[&[u8]]) -> (Vec<Event>, Vec<u8>) {
    let limits = Limits::default().max_frame_size(1 << 16).max_message_size(1 << 18);
    let mut conn = Connection::new(role, limits);
    let mut events = Vec::new();
    for piece in pieces {
        conn.receive_data(piece);
        while let Some(ev) = conn.next_event() {
            if let Event::Message(msg) = &ev {
                // Answering a message must work until a close or an error is taken.
                let _ = match msg {
                    unisock::MsgEvent::Text(t) => conn.send_text(t),
                    unisock::MsgEvent::Binary(b) => conn.send_binary(b),
                };
            }
            events.push(ev);
        }
    }
    (events, conn.data_to_send().to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let at = usize::from(split).min(rest.len());
    let (a, b) = rest.split_at(at);
    for role in [Role::Server, Role::Client] {
        let whole = run(role, &[rest]);
        let split = run(role, &[a, b]);
        assert_eq!(whole.0, split.0);
        if role == Role::Server {
            // The server's output does not depend on random masks: it must match too.
            assert_eq!(whole.1, split.1);
        }
    }
});

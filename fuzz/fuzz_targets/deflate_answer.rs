//! The client side of permessage-deflate's negotiation: arbitrary `Sec-WebSocket-Extensions`
//! answers (one header line per input line) to our offer never panic, whether checked
//! alone or in a whole 101 response; an accepted answer is within what we offered and
//! reads back the same when written out in full; and the agreed parameters work: a
//! compressed message crosses both ways.
#![no_main]

mod common;

use common::config;
use libfuzzer_sys::fuzz_target;
use unisock::protocol::deflate::{accept_response, DeflateParams};
use unisock::protocol::handshake::{check_response, parse_response};
use unisock::protocol::{Connection, Event, Role};
use unisock::{DeflateConfig, Limits, MsgEvent};


/// `params` as an answer that spells out every parameter.
fn answer(params: &DeflateParams) -> String {
    let mut out = String::from("permessage-deflate");
    if params.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    out.push_str(&format!(
        "; server_max_window_bits={}; client_max_window_bits={}",
        params.server_max_window_bits, params.client_max_window_bits
    ));
    out
}

/// Sends a compressible message from `from` to `to`, both set up with `params`.
fn crosses(params: &DeflateParams, from: Role, to: Role) {
    let config = DeflateConfig::default().min_size(0);
    let (mut tx, mut rx) = (
        Connection::new(from, Limits::default()),
        Connection::new(to, Limits::default()),
    );
    assert!(tx.set_deflate(params, &config) && rx.set_deflate(params, &config));
    let text = "permessage-deflate ".repeat(8);
    for _ in 0..2 {
        tx.send_text(&text).unwrap();
        rx.receive_data(&tx.take_data_to_send());
        assert_eq!(
            rx.next_event(),
            Some(Event::Message(MsgEvent::Text(text.clone())))
        );
    }
}

fn check_accepted(params: &DeflateParams, config: &DeflateConfig) {
    if config.server_max_window_bits < 15 {
        assert!(params.server_max_window_bits <= config.server_max_window_bits);
    }
    assert!((8..=15).contains(&params.server_max_window_bits));
    assert!((8..=config.client_max_window_bits).contains(&params.client_max_window_bits));
    assert!(params.server_no_context_takeover >= config.server_no_context_takeover);
    assert!(params.client_no_context_takeover >= config.client_no_context_takeover);
    let full = answer(params);
    assert_eq!(
        accept_response(&full, config).as_ref(),
        Ok(params),
        "{full}"
    );
    crosses(params, Role::Server, Role::Client);
    crosses(params, Role::Client, Role::Server);
}

fuzz_target!(|data: &[u8]| {
    let [flags, bits, rest @ ..] = data else {
        return;
    };
    let config = config(*flags, *bits);
    let lines: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
    if let [line] = lines[..] {
        if let Ok(Ok(params)) = std::str::from_utf8(line).map(|a| accept_response(a, &config)) {
            check_accepted(&params, &config);
        }
    }

    // The same lines in a 101 response, as the client reads them off the wire.
    let mut head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n".to_vec();
    for line in &lines {
        head.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        head.extend_from_slice(line);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let Ok(Some((response, _))) = parse_response(&head) else {
        return;
    };
    let answers: Vec<_> = response
        .headers()
        .get_all("Sec-WebSocket-Extensions")
        .iter()
        .collect();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let checked = check_response(&response, key, &[], Some(&config));
    match answers[..] {
        [] => assert_eq!(checked.map(|c| c.deflate), Ok(None)),
        [value] => {
            let alone = value.to_str().map(|a| accept_response(a, &config));
            match (checked, alone) {
                // The answer alone was checked in full above, if it was the input's one line.
                (Ok(c), Ok(Ok(params))) => {
                    let (agreed, echoed) = c.deflate.unwrap();
                    assert_eq!(agreed, params);
                    assert_eq!(echoed, value.to_str().unwrap().trim());
                }
                (Err(_), Ok(Err(_)) | Err(_)) => {}
                (checked, alone) => panic!("101 check {checked:?}, answer alone {alone:?}"),
            }
        }
        // One permessage-deflate at most, on one line.
        _ => assert!(checked.is_err()),
    }
    // A client that offered nothing accepts no extension at all.
    assert_eq!(
        check_response(&response, key, &[], None).is_ok(),
        answers.is_empty()
    );
});

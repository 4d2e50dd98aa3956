//! The server side of permessage-deflate's negotiation: arbitrary `Sec-WebSocket-Extensions`
//! offers (one header line per input line) never panic; an accepted offer gives parameters
//! within the server's config, and an answer that a client reads back as exactly those
//! parameters; and an offer from our own client (any config) is accepted and agreed on by
//! both ends.
#![no_main]

mod common;

use common::config;
use libfuzzer_sys::fuzz_target;
use unisock::protocol::deflate::{accept_response, client_offer, negotiate, DeflateParams};
use unisock::DeflateConfig;


fn check_accepted(params: &DeflateParams, answer: &str, config: &DeflateConfig) {
    // Never a window our compressor cannot make, nor larger than the config allows.
    assert!((9..=config.server_max_window_bits).contains(&params.server_max_window_bits));
    assert!((8..=15).contains(&params.client_max_window_bits));
    assert!(params.server_no_context_takeover >= config.server_no_context_takeover);
    assert!(params.client_no_context_takeover >= config.client_no_context_takeover);
    // The answer says exactly what the server agreed to: a client that offered the
    // agreed client window reads the same parameters back.
    let mut client = DeflateConfig::default();
    client.client_max_window_bits = params.client_max_window_bits;
    assert_eq!(
        accept_response(answer, &client).as_ref(),
        Ok(params),
        "{answer}"
    );
}

fuzz_target!(|data: &[u8]| {
    let [flags, bits, rest @ ..] = data else {
        return;
    };
    let server = config(*flags, *bits);
    // Header values that are not UTF-8 never get here (`HeaderValue::to_str`).
    let offers: Vec<&str> = rest
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .collect();
    if let Some((params, answer)) = negotiate(&offers, &server) {
        check_accepted(&params, &answer, &server);
    }
    assert_eq!(negotiate(&offers, &DeflateConfig::disabled()), None);

    // Our own client's offer, for a config from the next two bytes.
    if let [cflags, cbits, ..] = rest {
        let ours = config(*cflags, *cbits);
        let (params, answer) =
            negotiate(&[&client_offer(&ours)], &server).expect("our client's offer is declined");
        check_accepted(&params, &answer, &server);
        assert_eq!(accept_response(&answer, &ours), Ok(params), "{answer}");
    }
});

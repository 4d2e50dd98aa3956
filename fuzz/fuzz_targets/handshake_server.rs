//! The server side of the opening handshake: parsing and validating arbitrary request
//! heads never panics, and every refusal has an answer with its status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unisock::protocol::handshake;

fuzz_target!(|data: &[u8]| {
    let origins = vec!["http://example.*".to_string(), "http://localhost:80?9".to_string()];
    match handshake::parse_request(data) {
        Ok(Some((request, len))) => {
            assert!(len <= data.len());
            for allowed in [None, Some(&origins[..])] {
                match handshake::validate_request(&request, allowed) {
                    Ok(accept) => {
                        let head = handshake::response_101(&accept.accept, None, &[]);
                        assert!(head.starts_with(b"HTTP/1.1 101 "));
                    }
                    Err(e) => {
                        let head = handshake::error_response(&e);
                        let status = format!("HTTP/1.1 {} ", e.status().as_u16());
                        assert!(head.starts_with(status.as_bytes()));
                    }
                }
            }
        }
        Ok(None) => assert!(data.len() <= handshake::MAX_HEAD_SIZE),
        Err(e) => {
            let _ = handshake::error_response(&e);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let mut mid = text.len() / 2;
        while !text.is_char_boundary(mid) {
            mid -= 1;
        }
        let (glob, origin) = text.split_at(mid);
        let _ = handshake::origin_matches(glob, origin);
    }
});

//! The client side of the opening handshake: parsing and validating arbitrary response
//! heads never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unisock::protocol::handshake;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((response, len))) = handshake::parse_response(data) {
        assert!(len <= data.len());
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let _ = handshake::validate_response(&response, key, &[]);
        let _ = handshake::validate_response(&response, key, &["chat", "superchat"]);
    }
});

//! Frame headers: decoding arbitrary bytes never panics, never claims more bytes than it
//! was given, and what it decodes re-encodes to a header that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unisock::protocol::FrameHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((header, len))) = FrameHeader::decode(data) {
        assert!(len <= data.len() && len <= FrameHeader::MAX_LEN);
        let mut out = Vec::new();
        header.encode(&mut out);
        let again = FrameHeader::decode(&out).unwrap().unwrap();
        assert_eq!(again.0.fin, header.fin);
        assert_eq!(again.0.rsv, header.rsv);
        assert_eq!(u8::from(again.0.opcode), u8::from(header.opcode));
        assert_eq!(again.0.mask, header.mask);
        assert_eq!(again.0.payload_len, header.payload_len);
        assert_eq!(again.1, out.len());
    }
});

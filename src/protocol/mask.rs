//! Payload masking (RFC 6455 §5.3), eight bytes at a time in safe code.

/// XORs `buf` in place with the masking `key` (masking and unmasking are the same).
///
/// `offset` is how many payload bytes of the same frame came before `buf`, so a frame
/// can be (un)masked piece by piece as it arrives.
///
/// Works on 64-bit words (the compiler vectorises the loop) and byte by byte only for the
/// last few bytes.
///
/// ```
/// use unisock::protocol::apply_mask;
///
/// // The masked "Hello" of RFC 6455 §5.7, unmasked in two pieces.
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (head, tail) = payload.split_at_mut(2);
/// apply_mask(head, key, 0);
/// apply_mask(tail, key, 2);
/// assert_eq!(&payload, b"Hello");
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // The key as it lines up with buf[0]: key[(offset + i) % 4] masks buf[i].
    let mut key = key;
    key.rotate_left(offset % 4);
    let [k0, k1, k2, k3] = key;
    let word = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);

    // 32 bytes at a time, as four words: a shape the compiler turns into SIMD XORs.
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        for chunk in block.chunks_exact_mut(8) {
            if let Ok(bytes) = <&mut [u8; 8]>::try_from(chunk) {
                *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
            }
        }
    }
    let mut chunks = blocks.into_remainder().chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(bytes) = <&mut [u8; 8]>::try_from(chunk) {
            *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
        }
    }
    // Each block and chunk is a multiple of 4 long, so the tail starts in phase with `key`.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte ^= key[(offset + i) % 4];
        }
    }

    /// A tiny deterministic generator so the tests need no `rand`.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The fast mask gives the same bytes as the byte loop.
    fn assert_matches_reference(data: &[u8], key: [u8; 4], offset: usize) {
        let mut fast = data.to_vec();
        let mut slow = data.to_vec();
        apply_mask(&mut fast, key, offset);
        reference(&mut slow, key, offset);
        assert_eq!(fast, slow, "len {} offset {offset}", data.len());
    }

    #[test]
    fn matches_reference_for_small_lengths_and_offsets() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..100 {
            for offset in 0..4 {
                assert_matches_reference(&bytes(len as u64 * 7 + offset as u64, len), key, offset);
            }
        }
    }

    #[test]
    fn matches_reference_for_big_buffers_and_any_offset() {
        for (i, len) in [1000, 4096, 65_536 + 13, 1 << 20].into_iter().enumerate() {
            let data = bytes(i as u64 + 99, len);
            let key: [u8; 4] = bytes(i as u64 + 5, 4).try_into().unwrap();
            for offset in [0, 1, 2, 3, 5, 1 << 30] {
                assert_matches_reference(&data, key, offset);
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 4];
        let data = bytes(42, 777);
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let mut at = 0;
        for step in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 99, 70] {
            let end = (at + step).min(pieces.len());
            apply_mask(&mut pieces[at..end], key, at);
            at = end;
        }
        assert_eq!(at, data.len());
        assert_eq!(pieces, whole);
    }

    #[test]
    fn rfc_hello() {
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}

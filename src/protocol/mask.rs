//! Payload masking (RFC 6455 §5.3): in place, and fused with the copy that moves a payload
//! between the wire and a message (one pass over the bytes instead of a copy and a mask).

use std::mem::MaybeUninit;

/// XORs `buf` in place with the masking `key` (masking and unmasking are the same).
///
/// `offset` is how many payload bytes of the same frame came before `buf`, so a frame
/// can be (un)masked piece by piece as it arrives.
///
/// Works on 64-bit words (the compiler vectorises the loop, with AVX2 where the CPU has it)
/// and byte by byte only for the last few bytes.
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
    #[cfg(all(target_arch = "x86_64", not(target_feature = "avx2")))]
    if buf.len() >= AVX2_FROM && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above), which is all that calling a
        // function compiled for AVX2 requires.
        #[allow(unsafe_code)]
        return unsafe { avx2::apply_mask(buf, key, offset) };
    }
    apply_mask_words(buf, key, offset);
}

/// From this length on, an x86-64 CPU with AVX2 (un)masks with 32-byte vectors, twice
/// as fast on data in cache as the 16-byte ones (SSE2) of baseline x86-64, for which Rust
/// builds by default. Below it, the check costs more than it saves.
#[cfg(all(target_arch = "x86_64", not(target_feature = "avx2")))]
const AVX2_FROM: usize = 256;

/// The (un)masking loops compiled for AVX2, chosen at run time when the CPU has it.
#[cfg(all(target_arch = "x86_64", not(target_feature = "avx2")))]
#[allow(unsafe_code)]
mod avx2 {
    use std::mem::MaybeUninit;

    /// [`super::apply_mask`], compiled for AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
        super::apply_mask_words(buf, key, offset);
    }

    /// `super::mask_into`, compiled for AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mask_into(
        dst: &mut [MaybeUninit<u8>],
        src: &[u8],
        key: [u8; 4],
        offset: usize,
    ) {
        super::mask_into_blocks(dst, src, key, offset);
    }
}

/// The body of [`apply_mask`], inlined into each variant so each is compiled for its CPU.
#[inline(always)]
fn apply_mask_words(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // The key as it lines up with buf[0]: key[(offset + i) % 4] masks buf[i].
    let key = aligned_key(key, offset);
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

/// The key as it lines up with payload byte `offset`: `key` rotated left by `offset % 4`.
/// (A rotate of the word: `<[u8]>::rotate_left` is a call, per frame.)
#[inline(always)]
fn aligned_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let shift = 8 * (offset % 4) as u32;
    u32::from_le_bytes(key).rotate_right(shift).to_le_bytes()
}

/// The key as it lines up with the first byte, repeated over a 32-byte block.
#[inline(always)]
fn block_key(key: [u8; 4], offset: usize) -> [u8; 32] {
    let key = aligned_key(key, offset);
    let mut block = [0; 32];
    for (b, k) in block.iter_mut().zip(key.iter().cycle()) {
        *b = *k;
    }
    block
}

/// Writes `src` XOR the key into `dst` (the same length), 32 bytes at a time: fixed-size
/// blocks the compiler turns into SIMD loads, XORs and stores.
fn mask_into(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], offset: usize) {
    #[cfg(all(target_arch = "x86_64", not(target_feature = "avx2")))]
    if src.len() >= AVX2_FROM && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above), which is all that calling a
        // function compiled for AVX2 requires.
        #[allow(unsafe_code)]
        return unsafe { avx2::mask_into(dst, src, key, offset) };
    }
    mask_into_blocks(dst, src, key, offset);
}

/// A destination and a source chunk of `chunks_exact(N)` as arrays, so that the loops over
/// them have fixed bounds.
#[inline(always)]
fn arrays<'d, 's, const N: usize>(
    d: &'d mut [MaybeUninit<u8>],
    s: &'s [u8],
) -> Option<(&'d mut [MaybeUninit<u8>; N], &'s [u8; N])> {
    Some((d.try_into().ok()?, s.try_into().ok()?))
}

/// The body of [`mask_into`], inlined into each variant so each is compiled for its CPU.
#[inline(always)]
fn mask_into_blocks(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], offset: usize) {
    let block = block_key(key, offset);
    // 128 bytes a turn, four vectors: fewer loop instructions per byte than one at a time.
    let mut dst_wide = dst.chunks_exact_mut(128);
    let mut src_wide = src.chunks_exact(128);
    for (d, s) in (&mut dst_wide).zip(&mut src_wide) {
        if let Some((d, s)) = arrays::<128>(d, s) {
            for (d, s) in d.chunks_exact_mut(32).zip(s.chunks_exact(32)) {
                for ((d, s), k) in d.iter_mut().zip(s).zip(block) {
                    *d = MaybeUninit::new(s ^ k);
                }
            }
        }
    }
    let mut dst_blocks = dst_wide.into_remainder().chunks_exact_mut(32);
    let mut src_blocks = src_wide.remainder().chunks_exact(32);
    for (d, s) in (&mut dst_blocks).zip(&mut src_blocks) {
        if let Some((d, s)) = arrays::<32>(d, s) {
            for i in 0..32 {
                d[i] = MaybeUninit::new(s[i] ^ block[i]);
            }
        }
    }
    // Then words: a short message (most chat messages) is mostly its tail, which a byte
    // at a time took more instructions than all the rest of its parse.
    let [k0, k1, k2, k3, ..] = block;
    let word = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let mut dst_words = dst_blocks.into_remainder().chunks_exact_mut(8);
    let mut src_words = src_blocks.remainder().chunks_exact(8);
    for (d, s) in (&mut dst_words).zip(&mut src_words) {
        if let Some((d, s)) = arrays::<8>(d, s) {
            let masked = (u64::from_ne_bytes(*s) ^ word).to_ne_bytes();
            for (d, m) in d.iter_mut().zip(masked) {
                *d = MaybeUninit::new(m);
            }
        }
    }
    // Each block and word is a multiple of 4 long, so the tail starts in phase with `block`.
    for ((d, s), k) in dst_words
        .into_remainder()
        .iter_mut()
        .zip(src_words.remainder())
        .zip(block)
    {
        *d = MaybeUninit::new(s ^ k);
    }
}

/// Appends `src` to `dst`, masked (or unmasked) with `key` from payload position
/// `offset`: the copy and the XOR in one pass, writing each byte once.
///
/// ```
/// use unisock::protocol::extend_masked;
///
/// // The masked "Hello" of RFC 6455 §5.7, unmasked in two pieces onto a buffer.
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut text = b">".to_vec();
/// extend_masked(&mut text, &[0x7f, 0x9f], key, 0);
/// extend_masked(&mut text, &[0x4d, 0x51, 0x58], key, 2);
/// assert_eq!(&text, b">Hello");
/// ```
#[allow(unsafe_code)]
pub fn extend_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], offset: usize) {
    dst.reserve(src.len());
    let len = dst.len();
    let Some(spare) = dst.spare_capacity_mut().get_mut(..src.len()) else {
        return; // unreachable: `reserve` made room for `src`
    };
    mask_into(spare, src, key, offset);
    // SAFETY: `reserve` made the capacity at least `len + src.len()`, and `mask_into`
    // initialised every one of the `src.len()` bytes after `len` (its 128-, 32- and 8-byte
    // and tail loops together cover the whole of `spare`, which is exactly `src.len()` long;
    // `extend_masked_initialises_every_byte` checks this, and can run under Miri).
    unsafe { dst.set_len(len + src.len()) };
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
    fn extend_masked_initialises_every_byte() {
        // Every length around the 8-, 32- and 128-byte blocks, every phase, onto empty and non-empty
        // buffers with and without spare room. Under Miri (`cargo +nightly miri test --lib
        // extend_masked`, a short list of lengths) it also checks no byte is left uninitialised.
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let lens: Vec<usize> = if cfg!(miri) {
            vec![0, 1, 3, 4, 8, 15, 31, 32, 33, 47, 64, 67, 100, 128, 161]
        } else {
            (0..300).chain([4096, 65_536 + 13]).collect() // across AVX2_FROM too
        };
        for len in lens {
            for offset in 0..4 {
                let data = bytes(len as u64 * 3 + offset as u64, len);
                for prefix in [0, 5] {
                    let mut fast = vec![9u8; prefix];
                    if prefix > 0 {
                        fast.reserve_exact(len / 2);
                    }
                    extend_masked(&mut fast, &data, key, offset);
                    let mut slow = data.clone();
                    reference(&mut slow, key, offset);
                    assert_eq!(fast.len(), prefix + len);
                    assert!(fast[..prefix].iter().all(|&b| b == 9));
                    assert_eq!(&fast[prefix..], &slow[..], "len {len} offset {offset}");
                }
            }
        }
    }

    /// The AVX2 variant of `apply_mask` (run only if this machine's CPU has AVX2) gives the
    /// baseline loop's bytes for every length around `AVX2_FROM` and every phase. (The
    /// AVX2 `mask_into` is checked through `extend_masked`, whose test covers those lengths.)
    #[cfg(all(target_arch = "x86_64", not(target_feature = "avx2")))]
    #[test]
    #[allow(unsafe_code)]
    fn avx2_apply_mask_agrees_with_the_baseline_loop() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in (AVX2_FROM - 40..AVX2_FROM + 100).chain([65_536 + 13]) {
            for offset in 0..4 {
                let data = bytes(len as u64 + offset as u64, len);
                let (mut fast, mut slow) = (data.clone(), data);
                // SAFETY: the CPU has AVX2, checked at the top of the test.
                unsafe { avx2::apply_mask(&mut fast, key, offset) };
                apply_mask_words(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn rfc_hello() {
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}

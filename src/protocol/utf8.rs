//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split anywhere, even inside a character, across frames and
//! across reads. The validator keeps the (at most 3) bytes of a character that is not
//! complete yet and fails as soon as a byte that cannot be valid arrives, so a peer
//! sending garbage is stopped at once rather than at the end of a long message
//! (Autobahn 6.x "fail fast").

use std::str;

use super::error::ProtocolError;

/// Validates UTF-8 fed chunk by chunk, without allocating.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utf8Validator {
    /// The start of a character whose remaining bytes have not arrived yet.
    partial: [u8; 4],
    /// How many bytes of `partial` are in use (0 to 3).
    partial_len: u8,
}

impl Utf8Validator {
    /// Checks the next chunk of the text.
    ///
    /// Errors as soon as the text so far cannot be the start of valid UTF-8; an
    /// incomplete character at the end of `chunk` is kept for the next call.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let mut chunk = chunk;
        if self.partial_len > 0 {
            let have = usize::from(self.partial_len);
            let need = sequence_len(self.partial[0]);
            let take = need.saturating_sub(have).min(chunk.len());
            let (head, rest) = chunk.split_at(take);
            let filled = have + take;
            if let Some(dst) = self.partial.get_mut(have..filled) {
                dst.copy_from_slice(head);
            }
            let pending = self.partial.get(..filled).unwrap_or_default();
            match str::from_utf8(pending) {
                Ok(_) => {
                    self.partial_len = 0;
                    chunk = rest;
                }
                // Still a valid prefix; `rest` is empty since the character needs more.
                Err(e) if e.error_len().is_none() => {
                    self.partial_len = len_u8(filled);
                    return Ok(());
                }
                Err(_) => return Err(ProtocolError::InvalidUtf8),
            }
        }
        // The bulk up to the last character that starts in the chunk is checked with SIMD;
        // UTF-8 is valid piecewise at character boundaries, so the rest (that character,
        // perhaps incomplete) is then checked alone. Any error in the bulk is found again
        // by the exact path below, which tells an invalid byte from a cut character.
        let cut = last_char_start(chunk);
        if let (Some(bulk), Some(tail)) = (chunk.get(..cut), chunk.get(cut..)) {
            if simdutf8::basic::from_utf8(bulk).is_ok() {
                chunk = tail;
            }
        }
        match str::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // The chunk ends inside a character: keep its first bytes (at most 3).
                let tail = chunk.get(e.valid_up_to()..).unwrap_or_default();
                if let Some(dst) = self.partial.get_mut(..tail.len()) {
                    dst.copy_from_slice(tail);
                }
                self.partial_len = len_u8(tail.len());
                Ok(())
            }
            Err(_) => Err(ProtocolError::InvalidUtf8),
        }
    }

    /// Whether the text fed so far ends on a character boundary (a message may end here).
    /// The connection does not need it: the final `String` conversion checks the end.
    #[cfg(test)]
    pub(crate) fn is_complete(&self) -> bool {
        self.partial_len == 0
    }
}

/// Where the last character of `chunk` starts (the last byte that is not a continuation
/// byte, among the last 4); 0 when there is none.
fn last_char_start(chunk: &[u8]) -> usize {
    let from = chunk.len().saturating_sub(4);
    chunk
        .iter()
        .enumerate()
        .skip(from)
        .rev()
        .find(|(_, &b)| b & 0xC0 != 0x80)
        .map_or(0, |(i, _)| i)
}

/// Takes a message's payload as text: validated with SIMD (simdutf8), several times
/// faster than `String::from_utf8` on text that is not all ASCII.
///
/// # Errors
/// [`ProtocolError::InvalidUtf8`] unless `data` is valid UTF-8.
#[allow(unsafe_code)]
pub(crate) fn into_string(data: Vec<u8>) -> Result<String, ProtocolError> {
    if !is_short_ascii(&data) && simdutf8::basic::from_utf8(&data).is_err() {
        return Err(ProtocolError::InvalidUtf8);
    }
    // SAFETY: all of `data` is ASCII, or simdutf8 just found it valid UTF-8 (both are
    // checked against std on valid and invalid text by `into_string_agrees_with_std` and
    // `short_ascii_is_exactly_ascii`).
    Ok(unsafe { String::from_utf8_unchecked(data) })
}

/// Whether `data` is ASCII and at most 16 bytes long: two word loads, where a validator's
/// call and setup cost several times the check on such short text (a chat line, a ping).
fn is_short_ascii(data: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |bytes: Option<&[u8]>| {
        bytes
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(HIGH, u64::from_ne_bytes)
    };
    match data.len() {
        // The first and the last 8 bytes, overlapping below 16.
        n @ 8..=16 => (word(data.get(..8)) | word(data.get(n - 8..))) & HIGH == 0,
        0..8 => data.iter().fold(0, |all, b| all | b) < 0x80,
        _ => false,
    }
}

/// The length of the character a (valid) lead byte starts.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// A partial character's length, which is below 4.
fn len_u8(len: usize) -> u8 {
    u8::try_from(len).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> Result<bool, ProtocolError> {
        let mut v = Utf8Validator::default();
        for chunk in chunks {
            v.feed(chunk)?;
        }
        Ok(v.is_complete())
    }

    /// Texts long enough for simdutf8's SIMD blocks (64 bytes and more), valid and broken
    /// in each way: an invalid byte, a stray continuation, a surrogate, a cut character.
    fn samples() -> Vec<Vec<u8>> {
        let valid = "aé€😀z, Grüße 東京 🎉 ".repeat(6).into_bytes();
        let mut samples = vec![valid.clone(), b"plain ascii ".repeat(10)];
        for at in [0, 1, 63, 64, 65, valid.len() / 2, valid.len() - 1] {
            for bad in [&[0xff][..], &[0x80], &[0xed, 0xa0, 0x80], &[0xe2, 0x82]] {
                let mut broken = valid.clone();
                broken.splice(at..at, bad.iter().copied());
                samples.push(broken);
            }
        }
        samples.push([&valid[..], &"😀".as_bytes()[..3]].concat());
        samples
    }

    /// std's verdict: `Ok(true)` valid, `Ok(false)` a valid prefix, `Err` invalid; and
    /// for invalid text, where the bad sequence starts and the byte by which it is bad
    /// whatever follows.
    fn expected(text: &[u8]) -> (Result<bool, ProtocolError>, usize, usize) {
        match str::from_utf8(text) {
            Ok(_) => (Ok(true), 0, 0),
            Err(e) => match e.error_len() {
                None => (Ok(false), 0, 0),
                // The bad sequence is known bad at its last byte, or at the byte after it
                // when that is what breaks it; either way by `valid_up_to + error_len`.
                Some(n) => (
                    Err(ProtocolError::InvalidUtf8),
                    e.valid_up_to(),
                    (e.valid_up_to() + n).min(text.len() - 1),
                ),
            },
        }
    }

    #[test]
    fn agrees_with_std_and_fails_fast_for_any_split() {
        for text in samples() {
            let (want, bad_from, bad_at) = expected(&text);
            for a in 0..=text.len() {
                for b in [a, a + 1, a + 7, a + 64, text.len()] {
                    let b = b.min(text.len());
                    let chunks = [&text[..a], &text[a..b], &text[b..]];
                    assert_eq!(feed_all(&chunks), want, "split {a} {b} of {text:?}");
                    if want.is_err() {
                        // It fails once the bad byte has arrived, in the chunk that holds it.
                        let mut v = Utf8Validator::default();
                        let mut fed = 0;
                        let mut failed_at = None;
                        for c in chunks {
                            fed += c.len();
                            if v.feed(c).is_err() {
                                failed_at = Some(fed);
                                break;
                            }
                        }
                        let failed_at = failed_at.expect("invalid text fails");
                        assert!(
                            failed_at > bad_from,
                            "failed early: {failed_at} <= {bad_from}"
                        );
                        let first_holding_bad = [a, b, text.len()]
                            .into_iter()
                            .find(|&end| end > bad_at)
                            .unwrap_or(text.len());
                        assert!(
                            failed_at <= first_holding_bad,
                            "not fail-fast: at {failed_at}, bad byte {bad_at}, split {a} {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn into_string_agrees_with_std() {
        for text in samples() {
            assert_eq!(into_string(text.clone()).ok(), String::from_utf8(text).ok());
        }
        assert_eq!(into_string(Vec::new()), Ok(String::new()));
    }

    #[test]
    fn short_ascii_is_exactly_ascii() {
        for len in 0..=20 {
            let ascii: Vec<u8> = (0..len).map(|i| b'a' + i).collect();
            assert_eq!(is_short_ascii(&ascii), len <= 16, "len {len}");
            // One byte with its high bit set anywhere makes it not ASCII.
            for at in 0..ascii.len() {
                let mut other = ascii.clone();
                other[at] = 0xC3;
                assert!(!is_short_ascii(&other), "len {len}, at {at}");
                assert_eq!(
                    into_string(other.clone()).ok(),
                    String::from_utf8(other).ok()
                );
            }
            assert_eq!(
                into_string(ascii.clone()).ok(),
                String::from_utf8(ascii).ok()
            );
        }
    }

    #[test]
    fn whole_and_split_characters() {
        let text = "aé€😀z".as_bytes();
        assert_eq!(feed_all(&[text]), Ok(true));
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(feed_all(&[a, b]), Ok(true), "split at {split}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(feed_all(&bytes), Ok(true));
    }

    #[test]
    fn four_byte_sequence_in_pieces() {
        let smile = "😀".as_bytes();
        assert_eq!(
            feed_all(&[&smile[..1], &smile[1..2], &smile[2..3], &smile[3..]]),
            Ok(true)
        );
        assert_eq!(feed_all(&[&smile[..1], &[], &smile[1..]]), Ok(true));
        assert_eq!(feed_all(&[&smile[..3]]), Ok(false));
    }

    #[test]
    fn fails_on_the_first_bad_byte() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xff]), Err(ProtocolError::InvalidUtf8));
        // A lead byte waiting for continuation bytes, then a bad one.
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[b'a', 0xe2]), Ok(()));
        assert_eq!(v.feed(&[0x82]), Ok(()));
        assert_eq!(v.feed(&[0x41]), Err(ProtocolError::InvalidUtf8));
        // Above U+10FFFF: known bad after the second byte.
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xf4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(ProtocolError::InvalidUtf8));
        // A UTF-16 surrogate (Autobahn 6.4.1's "\xed\xa0\x80").
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xce, 0xba, 0xed]), Ok(()));
        assert_eq!(v.feed(&[0xa0]), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn overlong_and_stray_continuations() {
        assert_eq!(feed_all(&[&[0xc0, 0x80]]), Err(ProtocolError::InvalidUtf8));
        assert_eq!(
            feed_all(&[&[0xc0], &[0x80]]),
            Err(ProtocolError::InvalidUtf8)
        );
        assert_eq!(feed_all(&[&[0x80]]), Err(ProtocolError::InvalidUtf8));
        assert_eq!(
            feed_all(&[&[0xe0], &[0x80]]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn truncated_at_end_is_incomplete() {
        assert_eq!(feed_all(&[b"ok", &[0xe2, 0x82]]), Ok(false));
    }
}

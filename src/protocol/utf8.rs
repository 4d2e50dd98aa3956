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

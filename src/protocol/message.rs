//! Reassembly of fragmented messages (RFC 6455 §5.4): the fragmentation rules, the
//! message size limit, and fail-fast UTF-8 validation of text.

use std::mem;

use super::error::ProtocolError;
use super::frame::{FrameHeader, Opcode};
use super::mask::{apply_mask, extend_masked};
use super::utf8::{self, Utf8Validator};
use crate::budget::{Grant, MemoryBudget};
use crate::{Limits, MsgEvent};

/// The message being received: its type, the payload so far (already unmasked) and the
/// UTF-8 state of a text message.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct MessageBuffer {
    // What a message sent as one frame uses come first (see `Connection`).
    data: Vec<u8>,
    /// What the payload (and the finished messages not yet taken) hold of the memory
    /// budget, if there is one.
    grant: Grant,
    /// `Some(true)` for text, `Some(false)` for binary, `None` between messages.
    text: Option<bool>,
    /// The last message received was bigger than [`RESERVE_AHEAD`]: only then is a spare
    /// kept.
    receiving_big: bool,
    /// The message is compressed (permessage-deflate): `data` holds the inflated bytes.
    compressed: bool,
    utf8: Utf8Validator,
    /// Compressed payload bytes received so far (when `compressed`).
    wire_len: u64,
    /// Data frames of the message so far, empty ones included.
    fragments: usize,
    /// The length of the whole payload once the message's last frame (FIN set) has begun
    /// (uncompressed messages); 0 before (a plain `usize`: the socket state is kept small).
    message_end: usize,
    /// A written payload's buffer, empty, for the next message as big (see
    /// [`MessageBuffer::keep_spare`]): an echo or a relay of big messages then reuses two
    /// buffers instead of allocating, growing and faulting in fresh memory for each. Boxed:
    /// most connections never keep one, and every connection keeps this state for life.
    #[expect(
        clippy::box_collection,
        reason = "8 bytes of state for life instead of 24, for a buffer few connections keep"
    )]
    spare: Option<Box<Vec<u8>>>,
}

/// The most room reserved ahead of the bytes received: a frame's header announces its
/// length, but only bytes that arrived make the payload grow past this. 64 KiB holds a
/// typical message whole (one reservation, as when the header's length was reserved) and
/// is the most a peer can make a connection hold for a header alone.
pub(crate) const RESERVE_AHEAD: usize = 64 * 1024;

impl MessageBuffer {
    /// Starts a data frame (text, binary or continuation): checks it fits the message in
    /// progress, if any, the fragment and message size limits, and reserves room for the
    /// start of its payload (at most [`RESERVE_AHEAD`]; see [`MessageBuffer::make_room`]).
    ///
    /// `compressed` (RSV1 on the first frame, permessage-deflate negotiated) marks the
    /// message compressed: then nothing is reserved, the compressed size is what is
    /// checked here, and the inflated size is checked as it grows.
    pub(crate) fn begin_frame(
        &mut self,
        header: &FrameHeader,
        limits: &Limits,
        compressed: bool,
    ) -> Result<(), ProtocolError> {
        let text = match (header.opcode, self.text) {
            (Opcode::Continuation, Some(text)) => text,
            (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (opcode, None) => {
                self.compressed = compressed;
                self.wire_len = 0;
                self.fragments = 0;
                opcode == Opcode::Text
            }
        };
        // Every frame counts, empty ones too: they are what keeps a message open forever
        // without growing it.
        self.fragments = self.fragments.saturating_add(1);
        if self.fragments > limits.max_fragments {
            return Err(ProtocolError::TooManyFragments {
                max: limits.max_fragments,
            });
        }
        let so_far = if self.compressed {
            self.wire_len
        } else {
            u64::try_from(self.data.len()).unwrap_or(u64::MAX)
        };
        let size = so_far.saturating_add(header.payload_len);
        let max = limits.max_message_size;
        if size > u64::try_from(max).unwrap_or(u64::MAX) {
            return Err(ProtocolError::MessageTooLarge { size, max });
        }
        if self.compressed {
            self.wire_len = size;
        } else {
            let additional = usize::try_from(header.payload_len)
                .map_err(|_| ProtocolError::MessageTooLarge { size, max })?;
            self.message_end = if header.fin {
                self.data.len() + additional
            } else {
                0
            };
            self.make_room(additional.min(RESERVE_AHEAD))?;
        }
        self.text = Some(text);
        Ok(())
    }

    /// Takes a whole message that arrived as one frame (final, uncompressed, no message in
    /// progress, within the limits): what [`MessageBuffer::begin_frame`],
    /// [`MessageBuffer::append`] and [`MessageBuffer::finish`] would do, in one step with
    /// one allocation of exactly the payload's size.
    ///
    /// # Errors
    /// [`ProtocolError::MemoryBudgetExhausted`] or [`ProtocolError::InvalidUtf8`].
    pub(crate) fn whole(
        &mut self,
        text: bool,
        payload: &[u8],
        mask: Option<[u8; 4]>,
    ) -> Result<MsgEvent, ProtocolError> {
        let len = payload.len();
        let spare = if self.receiving_big || len > RESERVE_AHEAD {
            self.received_size(len);
            self.spare_for(len, self.data.capacity())
        } else {
            None
        };
        let mut data = match spare {
            Some(spare) => spare,
            None => {
                let kept = super::pool::take(len);
                let room = kept.as_ref().map_or(len, Vec::capacity);
                if let Err(err) = self.grant.cover(self.data.capacity().saturating_add(room)) {
                    if let Some(kept) = kept {
                        super::pool::give(kept);
                    }
                    return Err(err);
                }
                kept.unwrap_or_else(|| Vec::with_capacity(len))
            }
        };
        match mask {
            Some(key) => extend_masked(&mut data, payload, key, 0),
            None => data.extend_from_slice(payload),
        }
        // Still covered until the event loop takes it (`events_taken`).
        self.grant.hand_over(data.capacity());
        if text {
            utf8::into_string(data).map(MsgEvent::Text)
        } else {
            Ok(MsgEvent::Binary(data))
        }
    }

    /// Whether a message has begun and is not complete yet.
    pub(crate) fn in_progress(&self) -> bool {
        self.text.is_some()
    }

    /// Whether the message being received is compressed.
    pub(crate) fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Appends inflated bytes: `inflate` writes them onto the payload (and checks its
    /// limit); the text is validated as with [`MessageBuffer::append`], also the part
    /// inflated before an error.
    pub(crate) fn append_inflated(
        &mut self,
        inflate: impl FnOnce(
            &mut Vec<u8>,
            &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
        ) -> Result<(), ProtocolError>,
        completes_message: bool,
    ) -> Result<(), ProtocolError> {
        let start = self.data.len();
        let grant = &mut self.grant;
        let inflated = inflate(&mut self.data, &mut |capacity| grant.cover(capacity));
        // What was inflated before an error is validated too, so the error reported does
        // not depend on how the input was split (invalid text before corrupt data is 1007
        // however the frames arrived).
        if self.text == Some(true) && (!completes_message || inflated.is_err()) {
            self.utf8.feed(self.data.get(start..).unwrap_or_default())?;
        }
        inflated
    }

    /// Appends payload bytes of the current frame, unmasking them in place with `mask`
    /// from payload position `offset`. `completes_message` says these are the last bytes
    /// of the message.
    ///
    /// Text is validated as it arrives, except the piece that completes the message: the
    /// final conversion to `String` checks the whole text anyway.
    pub(crate) fn append(
        &mut self,
        chunk: &[u8],
        mask: Option<[u8; 4]>,
        offset: usize,
        completes_message: bool,
    ) -> Result<(), ProtocolError> {
        let start = self.data.len();
        self.make_room(chunk.len())?;
        match mask {
            Some(key) => extend_masked(&mut self.data, chunk, key, offset),
            None => self.data.extend_from_slice(chunk),
        }
        self.check_text(start, completes_message)
    }

    /// Takes in payload bytes that were written straight onto the payload (see
    /// [`MessageBuffer::lend_data`]) from `start` on: unmasks them in place and validates
    /// them as [`MessageBuffer::append`] does.
    pub(crate) fn appended_in_place(
        &mut self,
        start: usize,
        mask: Option<[u8; 4]>,
        offset: usize,
        completes_message: bool,
    ) -> Result<(), ProtocolError> {
        if let (Some(key), Some(added)) = (mask, self.data.get_mut(start..)) {
            apply_mask(added, key, offset);
        }
        self.check_text(start, completes_message)
    }

    /// Validates text from `start` on as it arrives (see [`MessageBuffer::append`]).
    fn check_text(&mut self, start: usize, completes_message: bool) -> Result<(), ProtocolError> {
        if self.text == Some(true) && !completes_message {
            self.utf8.feed(self.data.get(start..).unwrap_or_default())?;
        }
        Ok(())
    }

    /// Makes room for `needed` more payload bytes of the current frame (at most what it
    /// still has to come), growing the payload geometrically.
    ///
    /// The capacity at most doubles what arrived (or holds `needed` past it): each byte is
    /// copied about once more on average, and a peer makes a connection hold no more than
    /// it sent (or `needed` more). On the message's last frame the room stops at the
    /// message's end, so a message sent in one frame ends up exactly its size.
    ///
    /// A kept spare buffer (see [`MessageBuffer::keep_spare`]) that holds the whole
    /// message, and at most twice it, is taken instead of growing.
    ///
    /// # Errors
    /// [`ProtocolError::MemoryBudgetExhausted`] when the memory budget cannot cover it.
    fn make_room(&mut self, needed: usize) -> Result<(), ProtocolError> {
        let len = self.data.len();
        if self.data.capacity() - len >= needed {
            return Ok(());
        }
        if self.spare.is_some() {
            if let Some(mut spare) = self.spare_for(self.message_end, 0) {
                spare.extend_from_slice(&self.data);
                self.data = spare;
                return Ok(());
            }
        }
        let mut grow = len.max(needed);
        if self.message_end != 0 {
            grow = grow.min(self.message_end.saturating_sub(len)).max(needed);
        }
        self.grant.cover(len.saturating_add(grow))?;
        self.data.reserve_exact(grow);
        Ok(())
    }

    /// The spare buffer, if there is one for a message of `len` bytes (`len` up to the
    /// buffer's size, at least half of it; 0: not known yet) and the memory budget covers it
    /// beside `held` bytes.
    #[cold]
    fn spare_for(&mut self, len: usize, held: usize) -> Option<Vec<u8>> {
        let room = self.spare_room();
        if len == 0 || room < len || room / 2 > len {
            return None;
        }
        self.grant.cover(held.saturating_add(room)).ok()?;
        self.spare.take().map(|spare| *spare)
    }

    /// Keeps `buf`, a written payload's buffer, for the next message to arrive as big: while
    /// the messages received are bigger than [`RESERVE_AHEAD`], one such buffer (the
    /// biggest) is kept; a smaller message, [`MessageBuffer::release_spare`] or the
    /// connection's end frees it. So a connection holds a written buffer beyond its
    /// message only while it receives big messages itself.
    pub(crate) fn keep_spare(&mut self, mut buf: Vec<u8>) {
        if self.receiving_big && buf.capacity() > self.spare_room() {
            buf.clear();
            self.spare = Some(Box::new(buf));
        }
    }

    /// The size of the spare buffer (0 without one).
    fn spare_room(&self) -> usize {
        self.spare.as_ref().map_or(0, |spare| spare.capacity())
    }

    /// Frees the spare buffer, if one is kept.
    pub(crate) fn release_spare(&mut self) {
        self.spare = None;
    }

    /// A message of `len` bytes was received: one no bigger than [`RESERVE_AHEAD`] ends a
    /// run of big ones, and the spare buffer goes.
    #[cold]
    fn received_size(&mut self, len: usize) {
        self.receiving_big = len > RESERVE_AHEAD;
        if !self.receiving_big {
            self.release_spare();
        }
    }

    /// Lends out the payload so far, for a read straight onto its end, with room for at
    /// least `min` bytes (at most what the frame still has to come, and [`RESERVE_AHEAD`]),
    /// grown as [`MessageBuffer::make_room`] does; [`MessageBuffer::restore_data`] gives
    /// it back.
    ///
    /// `None` when the memory budget cannot cover the room: the bytes then come through
    /// [`MessageBuffer::append`], which reports it.
    pub(crate) fn lend_data(&mut self, min: usize) -> Option<Vec<u8>> {
        self.make_room(min.min(RESERVE_AHEAD)).ok()?;
        Some(mem::take(&mut self.data))
    }

    /// Takes back the payload lent out by [`MessageBuffer::lend_data`].
    pub(crate) fn restore_data(&mut self, data: Vec<u8>) {
        self.data = data;
    }

    /// Ends the message after its final frame and hands over its payload.
    pub(crate) fn finish(&mut self) -> Result<MsgEvent, ProtocolError> {
        let text = self.text.take();
        self.utf8 = Utf8Validator::default();
        self.compressed = false;
        self.wire_len = 0;
        self.fragments = 0;
        self.message_end = 0;
        let data = mem::take(&mut self.data);
        if self.receiving_big != (data.len() > RESERVE_AHEAD) {
            self.received_size(data.len());
        }
        // Still covered until the event loop takes it (`events_taken`).
        self.grant.hand_over(data.capacity());
        match text {
            Some(true) => utf8::into_string(data).map(MsgEvent::Text),
            _ => Ok(MsgEvent::Binary(data)),
        }
    }

    /// The bytes reserved for the message in progress.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// Drops any message in progress and frees its memory (and its part of the budget).
    pub(crate) fn clear(&mut self) {
        let budget = self.grant.take_budget();
        *self = Self::default();
        self.grant.set_budget(budget);
    }

    /// The memory budget drawn on, if any.
    pub(crate) fn budget(&self) -> Option<&MemoryBudget> {
        self.grant.budget()
    }

    /// Draws the memory of messages (and of finished messages not yet taken) from `budget`.
    pub(crate) fn set_budget(&mut self, budget: Option<MemoryBudget>) {
        self.grant.set_budget(budget);
    }

    /// Every finished message was taken: the budget keeps only what the payload holds.
    pub(crate) fn events_taken(&mut self) {
        self.grant.events_taken(self.data.capacity());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_message_size: usize) -> Limits {
        Limits::default().max_message_size(max_message_size)
    }

    fn header(opcode: Opcode, fin: bool, len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: len,
        }
    }

    #[test]
    fn reassembles_text() {
        let mut m = MessageBuffer::default();
        m.begin_frame(&header(Opcode::Text, false, 3), &limits(100), false)
            .unwrap();
        m.append(b"Hel", None, 0, false).unwrap();
        m.begin_frame(&header(Opcode::Continuation, true, 2), &limits(100), false)
            .unwrap();
        m.append(b"lo", None, 0, true).unwrap();
        assert_eq!(m.finish(), Ok(MsgEvent::Text("Hello".into())));
        assert_eq!(m.text, None);
    }

    #[test]
    fn fragmentation_rules() {
        let mut m = MessageBuffer::default();
        assert_eq!(
            m.begin_frame(&header(Opcode::Continuation, true, 1), &limits(100), false),
            Err(ProtocolError::UnexpectedContinuation)
        );
        m.begin_frame(&header(Opcode::Binary, false, 1), &limits(100), false)
            .unwrap();
        assert_eq!(
            m.begin_frame(&header(Opcode::Text, true, 1), &limits(100), false),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn message_limit_across_fragments() {
        let mut m = MessageBuffer::default();
        m.begin_frame(&header(Opcode::Binary, false, 6), &limits(10), false)
            .unwrap();
        m.append(&[0; 6], None, 0, false).unwrap();
        assert_eq!(
            m.begin_frame(&header(Opcode::Continuation, true, 5), &limits(10), false),
            Err(ProtocolError::MessageTooLarge { size: 11, max: 10 })
        );
    }

    #[test]
    fn unmasks_in_place_from_an_offset() {
        let mut m = MessageBuffer::default();
        let key = [0x37, 0xfa, 0x21, 0x3d];
        m.begin_frame(&header(Opcode::Text, true, 5), &limits(100), false)
            .unwrap();
        m.append(&[0x7f, 0x9f], Some(key), 0, false).unwrap();
        m.append(&[0x4d, 0x51, 0x58], Some(key), 2, true).unwrap();
        assert_eq!(m.finish(), Ok(MsgEvent::Text("Hello".into())));
    }

    #[test]
    fn invalid_text_fails_before_the_end() {
        let mut m = MessageBuffer::default();
        m.begin_frame(&header(Opcode::Text, true, 100), &limits(1000), false)
            .unwrap();
        assert_eq!(
            m.append(&[b'a', 0xff], None, 0, false),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn truncated_text_fails_at_the_end() {
        let mut m = MessageBuffer::default();
        m.begin_frame(&header(Opcode::Text, false, 2), &limits(100), false)
            .unwrap();
        m.append(&[b'a', 0xe2], None, 0, false).unwrap();
        m.begin_frame(&header(Opcode::Continuation, true, 1), &limits(100), false)
            .unwrap();
        m.append(&[0x82], None, 0, true).unwrap();
        assert_eq!(m.finish(), Err(ProtocolError::InvalidUtf8));
    }

    /// Begins a binary frame of `len` bytes (`fin`: the message's last).
    fn begin_binary(m: &mut MessageBuffer, len: usize, fin: bool) {
        m.begin_frame(
            &header(Opcode::Binary, fin, len as u64),
            &limits(1 << 30),
            false,
        )
        .unwrap();
    }

    /// Receives a binary message of `len` bytes in one final frame, in pieces of at most
    /// 64 KiB (as reads bring them); returns its payload.
    fn receive(m: &mut MessageBuffer, len: usize) -> Vec<u8> {
        begin_binary(m, len, true);
        let mut left = len;
        while left > 0 {
            let piece = left.min(RESERVE_AHEAD);
            left -= piece;
            m.append(&vec![7; piece], None, 0, left == 0).unwrap();
        }
        match m.finish() {
            Ok(MsgEvent::Binary(data)) => data,
            other => panic!("{other:?}"),
        }
    }

    const BIG: usize = 1 << 20;

    #[test]
    fn a_written_buffer_is_reused_while_big_messages_arrive() {
        let mut m = MessageBuffer::default();
        let first = receive(&mut m, BIG);
        let at = first.as_ptr();
        m.keep_spare(first);
        assert_eq!(m.spare_room(), BIG);
        // The next message as big (or down to half its size) is received into it, whole.
        let next = receive(&mut m, BIG / 2 + 1);
        assert_eq!((next.as_ptr(), next.capacity()), (at, BIG));
        assert_eq!(next, vec![7; BIG / 2 + 1]);
        assert_eq!(m.spare_room(), 0);
        // A message that would use less than half of it is not.
        m.keep_spare(next);
        let small = receive(&mut m, BIG / 2 - 1);
        assert_eq!(small.capacity(), BIG / 2 - 1);
        assert_eq!(m.spare_room(), BIG, "kept: big messages still arrive");
        // Nor one bigger than it.
        let bigger = receive(&mut m, BIG + 1);
        assert_eq!(bigger.capacity(), BIG + 1);
        // Nor while the message's length is not known (its last frame has not begun).
        begin_binary(&mut m, BIG, false);
        m.append(&vec![7; RESERVE_AHEAD + 1], None, 0, false)
            .unwrap();
        assert_eq!(m.spare_room(), BIG);
        assert!(m.capacity() < BIG);
    }

    #[test]
    fn the_spare_buffer_goes_when_a_small_message_arrives() {
        for whole in [false, true] {
            let mut m = MessageBuffer::default();
            let big = receive(&mut m, BIG);
            m.keep_spare(big);
            if whole {
                m.whole(false, &[1; 16], None).unwrap();
            } else {
                receive(&mut m, 16);
            }
            assert_eq!(m.spare_room(), 0, "whole: {whole}");
            // And none is kept until big messages arrive again.
            m.keep_spare(vec![0; BIG]);
            assert_eq!(m.spare_room(), 0, "whole: {whole}");
        }
        // A message received whole (all its bytes in one read) takes the spare as well.
        let mut m = MessageBuffer::default();
        let big = receive(&mut m, BIG);
        let at = big.as_ptr();
        m.keep_spare(big);
        match m.whole(false, &vec![1; BIG - 1], None) {
            Ok(MsgEvent::Binary(data)) => assert_eq!(data.as_ptr(), at),
            other => panic!("{other:?}"),
        }
        // Nothing kept before the first big message, and none after `release_spare`.
        let mut m = MessageBuffer::default();
        m.keep_spare(vec![0; BIG]);
        assert_eq!(m.spare_room(), 0);
        let big = receive(&mut m, BIG);
        m.keep_spare(big);
        m.release_spare();
        assert_eq!(m.spare_room(), 0);
    }

    #[test]
    fn the_spare_buffer_is_drawn_from_the_memory_budget() {
        // The budget covers the spare's whole size once a message takes it, as it would a
        // buffer grown to that size.
        let budget = MemoryBudget::new(4 * BIG);
        let mut m = MessageBuffer::default();
        m.set_budget(Some(budget.clone()));
        let big = receive(&mut m, BIG);
        m.events_taken();
        m.keep_spare(big);
        begin_binary(&mut m, BIG, true);
        assert_eq!(m.capacity(), BIG);
        // The first step is the connection's own.
        assert_eq!(budget.used(), BIG - crate::budget::STEP);
        // When the budget cannot cover it, the message grows as the bytes arrive instead.
        let budget = MemoryBudget::new(BIG / 2);
        let mut m = MessageBuffer::default();
        let big = receive(&mut m, BIG);
        m.keep_spare(big);
        m.set_budget(Some(budget.clone()));
        begin_binary(&mut m, BIG, true);
        assert_eq!(m.capacity(), RESERVE_AHEAD);
        assert_eq!(m.spare_room(), BIG);
    }
}

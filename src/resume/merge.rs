//! The hand-over from history to live for a room whose history lives in a shared store
//! (Redis Streams) and whose live feed comes from a subscription: join the live feed and
//! buffer it, read the history, merge the two by offset, and check that what goes out is
//! contiguous. Nothing is dropped or doubled, whichever order the two arrive in.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::MsgEvent;

use super::{GapReason, Position};

/// What one read of a room's history in the store gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRead {
    /// The store's epoch when read.
    pub epoch: u64,
    /// The offset of the room's last message in the store (0 if none).
    pub head: u64,
    /// The kept messages after the requested offset, in order, up to `head`.
    pub messages: Vec<(u64, Arc<MsgEvent>)>,
    /// Why messages before the first kept one are gone (trimmed or expired).
    pub missing: GapReason,
}

/// What a hand-over sends the client, in order, and where it leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// A gap first, when some of what the client missed is gone.
    pub gap: Option<(GapReason, Position)>,
    /// Then these messages, contiguous after the client's position (or the gap).
    pub messages: Vec<(Position, Arc<MsgEvent>)>,
    /// The client's position afterwards: live messages from here on go straight out.
    pub position: Position,
    /// A buffered live message lies beyond a hole that neither the read nor the feed
    /// filled: read the store again from `position` (the feed lost something).
    pub read_again: bool,
}

/// One client's hand-over: created when it asks to resume after `since`, fed the live
/// messages that arrive meanwhile, finished with the history read.
///
/// ```
/// use std::sync::Arc;
/// use unisock::resume::{GapReason, Handover, HistoryRead, Position};
/// use unisock::MsgEvent;
///
/// let msg = |s: &str| Arc::new(MsgEvent::Text(s.into()));
/// let mut handover = Handover::new(Position { epoch: 1, offset: 2 });
/// handover.live(Position { epoch: 1, offset: 5 }, msg("e")); // arrives during the read
/// let read = HistoryRead {
///     epoch: 1,
///     head: 4,
///     messages: vec![(3, msg("c")), (4, msg("d"))],
///     missing: GapReason::Trimmed,
/// };
/// let merged = handover.finish(read);
/// let offsets: Vec<u64> = merged.messages.iter().map(|(at, _)| at.offset).collect();
/// assert_eq!(offsets, [3, 4, 5]);
/// assert_eq!(merged.gap, None);
/// assert!(!merged.read_again);
/// ```
#[derive(Debug, Clone)]
pub struct Handover {
    since: Position,
    /// Live messages buffered during the read, by epoch and offset.
    live: BTreeMap<(u64, u64), Arc<MsgEvent>>,
}

impl Handover {
    /// A hand-over for a client holding `since`.
    ///
    /// ```
    /// let h = unisock::resume::Handover::new(unisock::resume::Position { epoch: 1, offset: 0 });
    /// # let _ = h;
    /// ```
    #[must_use]
    pub fn new(since: Position) -> Self {
        Handover {
            since,
            live: BTreeMap::new(),
        }
    }

    /// Buffers a live message that arrived while the history is read.
    ///
    /// ```
    /// use unisock::resume::{Handover, Position};
    /// let mut h = Handover::new(Position { epoch: 1, offset: 0 });
    /// h.live(Position { epoch: 1, offset: 1 }, std::sync::Arc::new(unisock::MsgEvent::Text("a".into())));
    /// ```
    pub fn live(&mut self, at: Position, payload: Arc<MsgEvent>) {
        self.live.insert((at.epoch, at.offset), payload);
    }

    /// Merges the history read with the buffered live messages.
    ///
    /// ```
    /// use unisock::resume::{GapReason, Handover, HistoryRead, Position};
    /// // The client holds 1:7, but the store is in epoch 2 now.
    /// let merged = Handover::new(Position { epoch: 1, offset: 7 }).finish(HistoryRead {
    ///     epoch: 2,
    ///     head: 0,
    ///     messages: vec![],
    ///     missing: GapReason::Trimmed,
    /// });
    /// assert_eq!(merged.gap, Some((GapReason::NewEpoch, Position { epoch: 2, offset: 0 })));
    /// ```
    #[must_use]
    pub fn finish(self, read: HistoryRead) -> Merged {
        let epoch = read.epoch;
        let at = |offset| Position { epoch, offset };
        // Where the client stands in this epoch, and what is owed from there.
        let (mut gap, mut position) = if self.since.epoch != epoch || self.since.offset > read.head
        {
            (Some((GapReason::NewEpoch, at(0))), at(0))
        } else {
            (None, self.since)
        };
        let mut all: BTreeMap<u64, Arc<MsgEvent>> = read
            .messages
            .into_iter()
            .filter(|(offset, _)| *offset <= read.head)
            .collect();
        for ((e, offset), payload) in self.live {
            if e == epoch {
                all.entry(offset).or_insert(payload);
            }
        }
        all.retain(|offset, _| *offset > position.offset);
        // Messages after the client that neither the store nor the feed holds, up to the
        // store's head, are gone from the store: one gap up to the first still held.
        let first = all.keys().next().copied().unwrap_or(u64::MAX);
        if read.head > position.offset && first > position.offset + 1 {
            let to = read.head.min(first - 1);
            let reason = gap.map_or(read.missing, |(r, _)| r);
            gap = Some((reason, at(to)));
            position = at(to);
        }
        let mut messages = Vec::new();
        let mut read_again = false;
        for (offset, payload) in all {
            if offset != position.offset + 1 {
                read_again = true; // a hole only the store can fill
                break;
            }
            position = at(offset);
            messages.push((position, payload));
        }
        Merged {
            gap,
            messages,
            position,
            read_again,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offset `offset` of epoch 1.
    fn at(offset: u64) -> Position {
        Position { epoch: 1, offset }
    }

    fn msg(offset: u64) -> Arc<MsgEvent> {
        Arc::new(MsgEvent::Binary(offset.to_be_bytes().to_vec()))
    }

    fn offsets(merged: &Merged) -> Vec<u64> {
        merged.messages.iter().map(|(at, _)| at.offset).collect()
    }

    /// A read of a store whose head is `head` and that keeps `first..=head`.
    fn read(epoch: u64, head: u64, first: u64) -> HistoryRead {
        HistoryRead {
            epoch,
            head,
            messages: (first..=head).map(|o| (o, msg(o))).collect(),
            missing: GapReason::Expired,
        }
    }

    #[test]
    fn live_overlapping_the_read_is_not_doubled() {
        let mut h = Handover::new(at(2));
        for o in 4..=6 {
            h.live(at(o), msg(o));
        }
        let merged = h.finish(read(1, 5, 3));
        assert_eq!(offsets(&merged), [3, 4, 5, 6]);
        assert_eq!(merged.position.offset, 6);
        assert!(merged.gap.is_none() && !merged.read_again);
    }

    #[test]
    fn a_trimmed_start_is_one_gap() {
        let merged = Handover::new(at(2)).finish(read(1, 9, 7));
        assert_eq!(merged.gap, Some((GapReason::Expired, at(6))));
        assert_eq!(offsets(&merged), [7, 8, 9]);
    }

    #[test]
    fn a_hole_between_the_read_and_the_feed_asks_for_another_read() {
        let mut h = Handover::new(at(0));
        h.live(at(8), msg(8));
        let merged = h.finish(read(1, 5, 1));
        assert_eq!(offsets(&merged), [1, 2, 3, 4, 5]);
        assert!(merged.read_again);
    }

    #[test]
    fn everything_gone_moves_the_client_to_the_head() {
        let merged = Handover::new(at(2)).finish(read(1, 9, 10));
        assert_eq!(merged.gap, Some((GapReason::Expired, at(9))));
        assert!(merged.messages.is_empty());
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the store kept and whatever the feed delivered during the read (any
        /// subset, in any order, with repeats), the merge sends each offset at most once, in
        /// order and contiguous after the gap; everything after the client's position is
        /// either sent, covered by the gap, or left for another read.
        #[test]
        fn merged_output_is_contiguous_once_and_covers_what_was_missed(
            since in 0u64..20,
            head in 0u64..30,
            first_kept in 1u64..32,
            live in proptest::collection::vec(0u64..40, 0..30),
        ) {
            let epoch = 1;
            let kept: Vec<(u64, Arc<MsgEvent>)> = (first_kept..=head)
                .map(|o| (o, Arc::new(MsgEvent::Text(o.to_string()))))
                .collect();
            let mut h = Handover::new(Position { epoch, offset: since });
            for &o in &live {
                h.live(Position { epoch, offset: o }, Arc::new(MsgEvent::Text(o.to_string())));
            }
            let merged = h.finish(HistoryRead { epoch, head, messages: kept, missing: GapReason::Trimmed });
            let mut next = match merged.gap {
                Some((_, at)) => at.offset + 1,
                None => since + 1,
            };
            if since > head {
                prop_assert_eq!(merged.gap.map(|(r, _)| r), Some(GapReason::NewEpoch));
            } else if let Some((_, at)) = merged.gap {
                // A gap covers only what neither the store nor the feed held.
                let held = |o: &u64| *o > since && *o <= at.offset;
                prop_assert!(!live.iter().any(held) && !(first_kept..=head).any(|o| held(&o)));
            }
            for (at, payload) in &merged.messages {
                prop_assert_eq!(at.offset, next);
                prop_assert_eq!(payload.txt().map(str::to_string), Some(at.offset.to_string()));
                next += 1;
            }
            prop_assert_eq!(merged.position.offset, next - 1);
            // Nothing the store or the feed had past the client was skipped silently.
            let had_more = live.iter().any(|&o| o > merged.position.offset)
                || (first_kept..=head).any(|o| o > merged.position.offset);
            prop_assert_eq!(merged.read_again, had_more);
        }
    }
}

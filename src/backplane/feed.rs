//! A subscription's queue, bounded in bytes: between a backplane's reader (the Redis
//! connection, or an [`InProcess`](super::InProcess) publisher) and the registry that
//! delivers what it reads.
//!
//! The reader never waits: an envelope that does not fit is dropped (the newest, as a
//! ZeroMQ publisher at its high-water mark does, and as the registry's publish queue
//! does), so what was queued is delivered in order, followed by a gap. Drops are counted
//! and reported as one [`BackplaneEvent::Dropped`] per pass through the queue, not one
//! per envelope.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::mpsc;

use super::{BackplaneEvent, Envelope, Subscription};
use crate::Error;

/// The default bound: 64 MiB, the largest message a socket accepts by default
/// ([`Limits`](crate::Limits)), so that one such message always fits an empty queue.
pub(crate) const DEFAULT_MAX_QUEUED_BYTES: usize = 64 << 20;

struct Shared {
    /// The bytes of the envelopes queued now ([`Envelope::queued_size`]).
    queued: AtomicUsize,
    /// Envelopes dropped since the last report.
    dropped: AtomicU64,
    max: usize,
}

/// What travels in the channel: an event and the bytes it holds of the bound, or (`None`)
/// a wake-up telling the receiver to report the drops.
struct Item {
    event: Option<BackplaneEvent>,
    size: usize,
}

/// The reader's end of a subscription queue.
pub(crate) struct Feed {
    tx: mpsc::UnboundedSender<Item>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("max_bytes", &self.shared.max)
            .finish_non_exhaustive()
    }
}

/// A queue holding at most `max_bytes` of envelopes (control events are not counted:
/// there is one per reconnection).
pub(crate) fn feed(max_bytes: usize) -> (Feed, Subscription) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
        max: max_bytes,
    });
    let receiver = Receiver {
        rx,
        shared: shared.clone(),
    };
    (Feed { tx, shared }, Box::pin(receiver))
}

impl Feed {
    /// Queues `envelope` if it fits, drops and counts it otherwise. False once the
    /// subscription is gone.
    pub(crate) fn message(&self, envelope: Envelope) -> bool {
        let size = envelope.queued_size();
        let max = self.shared.max;
        let fits = self
            .shared
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued.checked_add(size).filter(|&total| total <= max)
            })
            .is_ok();
        if fits {
            return self
                .tx
                .send(Item {
                    event: Some(BackplaneEvent::Message(envelope)),
                    size,
                })
                .is_ok();
        }
        // The first drop since the last report queues a wake-up behind what is queued:
        // one report per pass through the queue, however many are dropped meanwhile.
        if self.shared.dropped.fetch_add(1, Ordering::AcqRel) == 0 {
            return self
                .tx
                .send(Item {
                    event: None,
                    size: 0,
                })
                .is_ok();
        }
        !self.tx.is_closed()
    }

    /// Queues a control event (`Up`, `Down`, a refused envelope): never dropped.
    pub(crate) fn event(&self, event: BackplaneEvent) -> bool {
        self.tx
            .send(Item {
                event: Some(event),
                size: 0,
            })
            .is_ok()
    }

    /// Resolves once the subscription is dropped.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }
}

struct Receiver {
    rx: mpsc::UnboundedReceiver<Item>,
    shared: Arc<Shared>,
}

impl futures_core::Stream for Receiver {
    type Item = BackplaneEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let Some(item) = ready!(self.rx.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            self.shared.queued.fetch_sub(item.size, Ordering::AcqRel);
            if let Some(event) = item.event {
                return Poll::Ready(Some(event));
            }
            let count = self.shared.dropped.swap(0, Ordering::AcqRel);
            if count > 0 {
                let error = Error::Backplane(
                    format!(
                        "the subscription's queue was full ({} bytes): {count} envelopes dropped",
                        self.shared.max
                    )
                    .into(),
                );
                return Poll::Ready(Some(BackplaneEvent::Dropped { count, error }));
            }
        }
    }
}

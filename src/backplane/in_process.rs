//! [`InProcess`]: registries in one process share broadcasts and direct sends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::feed::{self, Feed, DEFAULT_MAX_QUEUED_BYTES};
use super::{Backplane, BackplaneEvent, BoxFuture, Envelope, Subscription};
use crate::Result;

type Members = Mutex<Vec<(u64, Feed)>>;

/// A backplane for registries in one process: no setup, no network. Each clone is one
/// member of the same hub; give each registry its own clone.
/// Each member's subscription is a queue bounded in bytes
/// ([`with_max_queued_bytes`](InProcess::with_max_queued_bytes)): publishing never waits
/// for a slow member.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use unisock::backplane::InProcess;
/// use unisock::WebSockets;
///
/// let hub = InProcess::new();
/// let east = WebSockets::with_backplane(hub.clone());
/// let west = WebSockets::with_backplane(hub.clone());
/// // A broadcast on `east` reaches the sockets registered in `west` too.
/// east.broadcast_text("to both rooms", None);
/// # drop(west); }
/// ```
#[derive(Debug)]
pub struct InProcess {
    hub: Arc<Members>,
    member: u64,
    max_queued_bytes: usize,
}

fn next_member() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl InProcess {
    /// A new hub, and its first member.
    ///
    /// ```
    /// let alone = unisock::backplane::InProcess::new();
    /// # drop(alone);
    /// ```
    pub fn new() -> Self {
        Self {
            hub: Arc::new(Mutex::new(Vec::new())),
            member: next_member(),
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }

    /// Bounds this member's subscription: what other members publish waits for its
    /// registry in a queue of at most `bytes` (each envelope counts its payload and ids
    /// plus about 128 bytes). An envelope that does not fit is dropped (the newest: what
    /// was queued is delivered, in order), counted in
    /// [`WebSockets::backplane_dropped`](crate::WebSockets::backplane_dropped), and
    /// reported once per burst through
    /// [`on_backplane_error`](crate::WebSockets::on_backplane_error); the publisher never
    /// waits. Default: 64 MiB, so one message of the largest size a socket accepts by
    /// default fits. Clones made from this member get the same bound; set it before
    /// [`WebSockets::with_backplane`](crate::WebSockets::with_backplane).
    ///
    /// ```
    /// let member = unisock::backplane::InProcess::new().with_max_queued_bytes(1 << 20);
    /// assert_eq!(member.max_queued_bytes(), 1 << 20);
    /// assert_eq!(member.clone().max_queued_bytes(), 1 << 20);
    /// ```
    #[must_use]
    pub fn with_max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// The bound of this member's subscription queue, in bytes (see
    /// [`with_max_queued_bytes`](InProcess::with_max_queued_bytes)).
    ///
    /// ```
    /// assert_eq!(unisock::backplane::InProcess::new().max_queued_bytes(), 64 << 20);
    /// ```
    pub fn max_queued_bytes(&self) -> usize {
        self.max_queued_bytes
    }
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for InProcess {
    /// Another member of the same hub, with the same queue bound.
    fn clone(&self) -> Self {
        Self {
            hub: self.hub.clone(),
            member: next_member(),
            max_queued_bytes: self.max_queued_bytes,
        }
    }
}

impl Backplane for InProcess {
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<()>> {
        let mut members = self.hub.lock().unwrap_or_else(PoisonError::into_inner);
        // Members whose registry is gone are dropped here.
        members.retain(|(member, feed)| *member == self.member || feed.message(envelope.clone()));
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self) -> Subscription {
        let (feed, subscription) = feed::feed(self.max_queued_bytes);
        feed.event(BackplaneEvent::Up);
        self.hub
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((self.member, feed));
        subscription
    }
}

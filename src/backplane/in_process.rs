//! [`InProcess`]: registries in one process share broadcasts and direct sends.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::{Backplane, BackplaneEvent, BoxFuture, Envelope, Subscription};
use crate::Result;

type Members = Mutex<Vec<(u64, mpsc::UnboundedSender<BackplaneEvent>)>>;

/// A backplane for registries in one process: no setup, no network. Each clone is one
/// member of the same hub; give each registry its own clone.
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
        }
    }
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for InProcess {
    /// Another member of the same hub.
    fn clone(&self) -> Self {
        Self {
            hub: self.hub.clone(),
            member: next_member(),
        }
    }
}

impl Backplane for InProcess {
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<()>> {
        let mut members = self.hub.lock().unwrap_or_else(PoisonError::into_inner);
        // Members whose registry is gone are dropped here.
        members.retain(|(member, tx)| {
            *member == self.member || tx.send(BackplaneEvent::Message(envelope.clone())).is_ok()
        });
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(BackplaneEvent::Up);
        self.hub
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((self.member, tx));
        Box::pin(Receiver(rx))
    }
}

/// An mpsc receiver as a stream.
pub(crate) struct Receiver(pub(crate) mpsc::UnboundedReceiver<BackplaneEvent>);

impl futures_core::Stream for Receiver {
    type Item = BackplaneEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

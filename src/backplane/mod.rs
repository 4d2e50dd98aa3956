//! Backplanes: one [`WebSockets`](crate::WebSockets) registry across many server processes.
//!
//! A registry made with [`WebSockets::with_backplane`](crate::WebSockets::with_backplane)
//! publishes every broadcast once on its backplane, and every other registry on the
//! backplane delivers it to the sockets it holds; [`WebSockets::send_to`](crate::WebSockets::send_to)
//! reaches a socket on whichever node holds it.
//!
//! Two backplanes come with unisock:
//! - [`InProcess`]: registries in one process (no setup; each clone is one member). A
//!   registry made with [`WebSockets::new`](crate::WebSockets::new) has no backplane at
//!   all, which behaves as a lone `InProcess` member.
//! - `RedisBackplane` (feature `redis`): Redis pub/sub, for many processes behind a load
//!   balancer.
//!
//! ## Delivery semantics
//! - **Local first.** A registry delivers its own broadcasts to its own sockets at once
//!   (so local delivery keeps working while the backplane is down) and never again: a
//!   backplane's subscription does not yield what that same backplane published.
//! - **At most once across nodes.** While the backplane is down (a Redis outage), what is
//!   published is dropped and counted in [`WebSockets::backplane_errors`](crate::WebSockets::backplane_errors); nothing is
//!   replayed after the reconnection. Messages published after a node has (re)subscribed
//!   reach it exactly once.
//! - **Order.** Messages from one registry reach every other node in the order they were
//!   published; messages from different nodes may interleave differently on each node.
//! - **Bounded queues.** What waits to be published (16 Ki envelopes or 64 MiB per
//!   registry) and what waits to be delivered (64 MiB per subscription, see
//!   [`InProcess::with_max_queued_bytes`]) is bounded: when a queue is full the newest
//!   envelope is dropped, counted in [`WebSockets::backplane_dropped`](crate::WebSockets::backplane_dropped)
//!   and reported once per burst through
//!   [`on_backplane_error`](crate::WebSockets::on_backplane_error). A dropped envelope is
//!   never retried (at most once).
//!
//! ## Node ids
//! Socket ids must be unique across processes, so once a process has a node id (set with
//! [`set_node_id`], or a random one picked by the first cross-process backplane created),
//! new ids carry it: `unisock:web-1:0001` instead of `unisock:0001`. The node part tells
//! [`send_to`](crate::WebSockets::send_to) which node to address. Sockets made before the
//! node id was set keep their short ids and are still reachable (every node is asked).

mod feed;
mod in_process;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(any(feature = "redis", feature = "fuzzing", test))]
mod wire;

/// The backplane's wire format, for the fuzz targets (feature `fuzzing`): what arrives
/// on a shared channel may come from anyone. Not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use super::{wire, Envelope};

    /// The bytes member `origin` publishes for `envelope`.
    #[must_use]
    pub fn encode(origin: &[u8; 8], envelope: &Envelope) -> Vec<u8> {
        wire::encode(origin, envelope)
    }

    /// The origin and envelope in `bytes`, or `None` if they are not an envelope.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<([u8; 8], Envelope)> {
        wire::decode(bytes, usize::MAX).ok()
    }

    /// As [`decode`], refusing more than `max_len` bytes.
    #[must_use]
    pub fn decode_capped(bytes: &[u8], max_len: usize) -> Option<([u8; 8], Envelope)> {
        wire::decode(bytes, max_len).ok()
    }
}

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

#[cfg(feature = "redis")]
pub use self::redis::RedisBackplane;
pub use in_process::InProcess;

use crate::{Error, MsgEvent, Result};

/// A boxed, `Send` future, as [`Backplane::publish`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`Backplane::subscribe`] returns: a stream of [`BackplaneEvent`]s, ending when the
/// backplane is gone for good.
pub type Subscription = Pin<Box<dyn futures_core::Stream<Item = BackplaneEvent> + Send>>;

/// A message travelling between registries.
///
/// ```
/// use unisock::backplane::Envelope;
/// use unisock::MsgEvent;
///
/// let to_all = Envelope::Broadcast { payload: MsgEvent::Text("hi".into()), ids: None };
/// let to_one = Envelope::Direct { id: "unisock:web-1:0001".into(), payload: MsgEvent::Binary(vec![1]) };
/// assert_ne!(to_all, to_one);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Envelope {
    /// To every socket of every registry, or only to the listed ids (wherever they live).
    Broadcast {
        /// The message.
        payload: MsgEvent,
        /// `None` for every socket; otherwise the target ids.
        ids: Option<Vec<String>>,
    },
    /// To the one socket with this id, on whichever node holds it.
    Direct {
        /// The target socket's id.
        id: String,
        /// The message.
        payload: MsgEvent,
    },
}

/// What a [`Subscription`] yields.
///
/// ```
/// use unisock::backplane::BackplaneEvent;
/// let up = BackplaneEvent::Up;
/// assert!(matches!(up, BackplaneEvent::Up));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum BackplaneEvent {
    /// Another member published this.
    Message(Envelope),
    /// The subscription is (again) live: what is published from now on arrives.
    Up,
    /// The subscription was lost (or could not be made); the backplane keeps trying.
    Down(Error),
    /// `count` envelopes that other members published were dropped here, before
    /// delivery: the subscription's queue was full, or an envelope was over the size cap.
    /// The subscription is still live.
    Dropped {
        /// How many envelopes (since the previous `Dropped`, for a full queue).
        count: u64,
        /// Why, as reported to [`on_backplane_error`](crate::WebSockets::on_backplane_error).
        error: Error,
    },
}

/// What one queued envelope counts for against a queue's bound in bytes: the event and
/// the channel's slot, roughly.
const ENVELOPE_OVERHEAD: usize = 128;

impl Envelope {
    /// The bytes this envelope holds while queued: its payload and ids, plus
    /// bookkeeping. What the queues' bounds in bytes count.
    pub(crate) fn queued_size(&self) -> usize {
        let (payload, ids) = match self {
            Envelope::Broadcast { payload, ids } => (
                payload,
                ids.iter()
                    .flatten()
                    .map(|id| std::mem::size_of::<String>() + id.len())
                    .sum(),
            ),
            Envelope::Direct { id, payload } => (payload, id.len()),
        };
        ENVELOPE_OVERHEAD + payload.len() + ids
    }
}

/// How registries in different places reach each other's sockets.
///
/// Implementations: [`InProcess`] and, with the `redis` feature, `RedisBackplane`. The
/// contract: [`publish`](Backplane::publish) hands an envelope to every *other* member's
/// subscription (never to this member's own), and [`subscribe`](Backplane::subscribe)
/// is called once, by the registry that owns the backplane.
/// The subscription should hold a bounded queue and never make the publisher or the
/// network reader wait: drop what does not fit and say so with
/// [`BackplaneEvent::Dropped`], as the bundled backplanes do.
///
/// ```
/// use unisock::backplane::{Backplane, BackplaneEvent, BoxFuture, Envelope, Subscription};
///
/// /// A backplane with no other members: publishing goes nowhere.
/// struct Alone;
///
/// impl Backplane for Alone {
///     fn publish(&self, _envelope: Envelope) -> BoxFuture<'_, unisock::Result<()>> {
///         Box::pin(async { Ok(()) })
///     }
///     fn subscribe(&self) -> Subscription {
///         struct Never;
///         impl futures_core::Stream for Never {
///             type Item = BackplaneEvent;
///             fn poll_next(
///                 self: std::pin::Pin<&mut Self>,
///                 _: &mut std::task::Context<'_>,
///             ) -> std::task::Poll<Option<BackplaneEvent>> {
///                 std::task::Poll::Pending
///             }
///         }
///         Box::pin(Never)
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sockets = unisock::WebSockets::with_backplane(Alone);
/// assert_eq!(sockets.broadcast_text("hi", None), 0);
/// # }
/// ```
pub trait Backplane: Send + Sync + 'static {
    /// Publishes `envelope` to the other members. An error means it was not published
    /// (and will not be: at most once).
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<()>>;

    /// Publishes several envelopes, in order; the default publishes them one by one.
    /// Returns how many could not be published, and the last error.
    fn publish_all(&self, envelopes: Vec<Envelope>) -> BoxFuture<'_, (usize, Option<Error>)> {
        Box::pin(async move {
            let mut failed = (0, None);
            for envelope in envelopes {
                if let Err(e) = self.publish(envelope).await {
                    failed = (failed.0 + 1, Some(e));
                }
            }
            failed
        })
    }

    /// What the other members publish, with the subscription's ups and downs.
    fn subscribe(&self) -> Subscription;
}

static NODE_ID: OnceLock<String> = OnceLock::new();

/// Sets this process's node id, which prefixes the ids of sockets made from now on
/// (`unisock:<node>:0001`). Call it once, early, before sockets are made; letters, digits,
/// `-` and `_`, at most 32.
///
/// # Errors
/// [`Error::InvalidNodeId`] when `node` has other characters or a node id was already
/// set to something else.
///
/// ```
/// unisock::backplane::set_node_id("web-1").unwrap();
/// assert_eq!(unisock::backplane::node_id(), Some("web-1"));
/// assert!(unisock::WebSocket::new().id().starts_with("unisock:web-1:"));
/// assert!(unisock::backplane::set_node_id("web-2").is_err());
/// ```
pub fn set_node_id(node: &str) -> Result<()> {
    let valid = !node.is_empty()
        && node.len() <= 32
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(Error::InvalidNodeId(node.to_string()));
    }
    if NODE_ID.get_or_init(|| node.to_string()) == node {
        Ok(())
    } else {
        Err(Error::InvalidNodeId(node.to_string()))
    }
}

/// This process's node id, if one was set.
///
/// ```
/// // No backplane and no `set_node_id` in this process: short ids.
/// assert_eq!(unisock::backplane::node_id(), None);
/// assert!(unisock::WebSocket::new().id().starts_with("unisock:0"));
/// ```
pub fn node_id() -> Option<&'static str> {
    NODE_ID.get().map(String::as_str)
}

/// This process's node id, picking a random one (6 hex digits) if none was set.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn ensure_node_id() -> &'static str {
    NODE_ID.get_or_init(|| {
        let mut bytes = [0u8; 3];
        crate::native::rng::fill(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// The node part of a socket id (`unisock:<node>:<n>`), if it has one.
///
/// ```
/// use unisock::backplane::node_of;
/// assert_eq!(node_of("unisock:web-1:0007"), Some("web-1"));
/// assert_eq!(node_of("unisock:0007"), None);
/// ```
pub fn node_of(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("unisock:")?;
    let (node, _) = rest.rsplit_once(':')?;
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_checked() {
        for bad in ["", "a:b", "a b", "é", &"x".repeat(33)] {
            assert!(
                matches!(set_node_id(bad), Err(Error::InvalidNodeId(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn the_bookkeeping_charged_per_envelope_covers_the_event() {
        assert!(std::mem::size_of::<BackplaneEvent>() <= ENVELOPE_OVERHEAD);
        let empty = Envelope::Direct {
            id: String::new(),
            payload: MsgEvent::Binary(Vec::new()),
        };
        assert_eq!(empty.queued_size(), ENVELOPE_OVERHEAD);
    }

    #[test]
    fn ids_parse_back_to_their_node() {
        assert_eq!(node_of("unisock:a-1:0001"), Some("a-1"));
        assert_eq!(node_of("unisock:0001"), None);
        assert_eq!(node_of("other:a:0001"), None);
    }
}

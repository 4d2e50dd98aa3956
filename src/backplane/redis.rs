//! [`RedisBackplane`]: registries in many processes, over Redis pub/sub (feature `redis`).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use tokio::sync::mpsc;

use super::in_process::Receiver;
use super::wire::{self, Origin};
use super::{node_of, Backplane, BackplaneEvent, BoxFuture, Envelope, Subscription};
use crate::{Error, Result};

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a publish (or a ping on the subscription) may wait for Redis's answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The subscription is pinged this often, so a silent dead connection is noticed.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Resubscription backoff: from this, doubling, up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A backplane over Redis pub/sub, for registries in many processes (behind a load
/// balancer). Needs the `redis` feature.
///
/// Every member subscribes to two channels: `<prefix>:all` (broadcasts, and direct sends
/// to short ids) and `<prefix>:node:<node id>` (direct sends to the sockets of this
/// process, see [`crate::backplane`]). Each envelope is published once, with one
/// `PUBLISH`; queued envelopes go in one pipeline.
///
/// Publishing goes through a [`ConnectionManager`], which reconnects by itself; the
/// subscription runs in a task that reconnects with backoff (50 ms doubling to 2 s) and
/// resubscribes, and pings Redis every 5 s to notice a dead connection. During an outage
/// what is published is dropped and counted (at most once, see [`crate::backplane`]).
///
/// ```no_run
/// # async fn run() -> unisock::Result<()> {
/// use unisock::backplane::{self, RedisBackplane};
/// use unisock::WebSockets;
///
/// backplane::set_node_id("web-1")?; // optional: a random id otherwise
/// let redis = RedisBackplane::connect("redis://127.0.0.1:6379/").await?;
/// let room = WebSockets::with_backplane(redis);
/// room.on_backplane_error(|e| eprintln!("{e} (local delivery goes on)"));
/// // Reaches the sockets of every process subscribed to this Redis.
/// room.broadcast_text("hello, everyone", None);
/// # Ok(()) }
/// ```
pub struct RedisBackplane {
    client: redis::Client,
    publisher: ConnectionManager,
    channels: [String; 2],
    prefix: String,
    origin: Origin,
    /// The subscription made by `connect`, handed to the first `subscribe`.
    first: Mutex<Option<PubSub>>,
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

fn redis_error(e: redis::RedisError) -> Error {
    Error::Backplane(Box::new(e))
}

impl RedisBackplane {
    /// Connects to Redis at `url` (`redis://host:port/`) with the channel prefix
    /// `unisock`, and subscribes: once this returns, what other members publish is
    /// received. Gives this process a node id if it had none
    /// ([`set_node_id`](crate::backplane::set_node_id)).
    ///
    /// # Errors
    /// [`Error::Backplane`] when Redis cannot be reached now (later outages are survived).
    ///
    /// ```no_run
    /// # async fn run() -> unisock::Result<()> {
    /// let redis = unisock::backplane::RedisBackplane::connect("redis://127.0.0.1:6379/").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_prefix(url, "unisock").await
    }

    /// As [`connect`](RedisBackplane::connect), with another channel prefix: registries
    /// only hear those with the same prefix (one Redis, several independent rooms).
    ///
    /// # Errors
    /// As [`connect`](RedisBackplane::connect).
    ///
    /// ```no_run
    /// # async fn run() -> unisock::Result<()> {
    /// use unisock::backplane::RedisBackplane;
    /// let chat = RedisBackplane::connect_with_prefix("redis://127.0.0.1:6379/", "chat").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self> {
        let node = super::ensure_node_id();
        let client = redis::Client::open(url).map_err(redis_error)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_min_delay(MIN_BACKOFF)
            .set_max_delay(MAX_BACKOFF)
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let publisher = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(redis_error)?;
        let channels = [format!("{prefix}:all"), format!("{prefix}:node:{node}")];
        let first = subscribe_to(&client, &channels).await?;
        let mut origin = [0; 8];
        crate::native::rng::fill(&mut origin);
        Ok(Self {
            client,
            publisher,
            channels,
            prefix: prefix.to_string(),
            origin,
            first: Mutex::new(Some(first)),
        })
    }

    /// The channel an envelope goes to: a direct send to the node named in its id, the
    /// rest to every member.
    fn channel(&self, envelope: &Envelope) -> String {
        match envelope {
            Envelope::Direct { id, .. } => match node_of(id) {
                Some(node) => format!("{}:node:{node}", self.prefix),
                None => self.channels[0].clone(),
            },
            Envelope::Broadcast { .. } => self.channels[0].clone(),
        }
    }
}

async fn subscribe_to(client: &redis::Client, channels: &[String; 2]) -> Result<PubSub> {
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        for channel in channels {
            pubsub.subscribe(channel).await?;
        }
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT + RESPONSE_TIMEOUT, subscribe).await {
        Ok(subscribed) => subscribed.map_err(redis_error),
        Err(_) => Err(Error::Backplane("subscribing to Redis timed out".into())),
    }
}

impl Backplane for RedisBackplane {
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<()>> {
        let channel = self.channel(&envelope);
        let bytes = wire::encode(&self.origin, &envelope);
        let mut publisher = self.publisher.clone();
        Box::pin(async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(bytes)
                .exec_async(&mut publisher)
                .await
                .map_err(redis_error)
        })
    }

    fn publish_all(&self, envelopes: Vec<Envelope>) -> BoxFuture<'_, (usize, Option<Error>)> {
        let count = envelopes.len();
        let mut pipe = redis::pipe();
        for envelope in &envelopes {
            pipe.cmd("PUBLISH")
                .arg(self.channel(envelope))
                .arg(wire::encode(&self.origin, envelope))
                .ignore();
        }
        let mut publisher = self.publisher.clone();
        Box::pin(async move {
            match pipe.exec_async(&mut publisher).await {
                Ok(()) => (0, None),
                // Some may have been published: not retried, so at most once.
                Err(e) => (count, Some(redis_error(e))),
            }
        })
    }

    fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let first = self
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        tokio::spawn(subscription(
            self.client.clone(),
            self.channels.clone(),
            self.origin,
            first,
            tx,
        ));
        Box::pin(Receiver(rx))
    }
}

/// Keeps a subscription: forwards the other members' envelopes, reports `Up`/`Down`,
/// reconnects with backoff. Ends when the receiving side is dropped.
async fn subscription(
    client: redis::Client,
    channels: [String; 2],
    origin: Origin,
    mut first: Option<PubSub>,
    tx: mpsc::UnboundedSender<BackplaneEvent>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let subscribed = match first.take() {
            Some(pubsub) => Ok(pubsub),
            None => tokio::select! {
                () = tx.closed() => return,
                subscribed = subscribe_to(&client, &channels) => subscribed,
            },
        };
        let lost = match subscribed {
            Ok(pubsub) => {
                backoff = MIN_BACKOFF;
                if tx.send(BackplaneEvent::Up).is_err() {
                    return;
                }
                match forward(pubsub, origin, &tx).await {
                    Some(lost) => lost,
                    None => return,
                }
            }
            Err(e) => e,
        };
        if tx.send(BackplaneEvent::Down(lost)).is_err() {
            return;
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Forwards one subscription's envelopes until it is lost (returns why) or nobody
/// listens any more (returns `None`).
async fn forward(
    pubsub: PubSub,
    origin: Origin,
    tx: &mpsc::UnboundedSender<BackplaneEvent>,
) -> Option<Error> {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let next = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut messages), cx)
        });
        tokio::select! {
            () = tx.closed() => return None,
            msg = next => {
                let Some(msg) = msg else {
                    return Some(Error::Backplane("Redis closed the subscription".into()));
                };
                match wire::decode(msg.get_payload_bytes()) {
                    Some((from, _)) if from == origin => {}
                    Some((_, envelope)) => {
                        if tx.send(BackplaneEvent::Message(envelope)).is_err() {
                            return None;
                        }
                    }
                    None => tracing::debug!(
                        channel = msg.get_channel_name(),
                        "ignored a message that is not a unisock envelope"
                    ),
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Some(redis_error(e)),
                    Err(_) => return Some(Error::Backplane("Redis did not answer a ping".into())),
                }
            }
        }
    }
}

//! [`RedisBackplane`]: registries in many processes, over Redis pub/sub (feature `redis`).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};

use super::feed::{self, Feed, DEFAULT_MAX_QUEUED_BYTES};
use super::wire::{self, Origin, Refused};
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
/// The default cap on an envelope's bytes on the wire: under Redis's default hard limit
/// on a subscriber's output buffer (32 MiB), past which Redis drops the subscriber.
const DEFAULT_MAX_ENVELOPE: usize = 16 << 20;

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
/// Limits: an envelope over 16 MiB on the wire is neither published nor, from another
/// member, decoded ([`with_max_envelope_size`](RedisBackplane::with_max_envelope_size));
/// what is received waits for the registry in a queue of at most 64 MiB
/// ([`with_max_queued_bytes`](RedisBackplane::with_max_queued_bytes)), so a flood
/// drops envelopes (counted and reported) instead of growing memory or stalling the
/// connection.
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
    max_envelope: usize,
    max_queued_bytes: usize,
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

pub(crate) fn redis_error(e: redis::RedisError) -> Error {
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
        let (client, publisher) = connect(url).await?;
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
            max_envelope: DEFAULT_MAX_ENVELOPE,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            first: Mutex::new(Some(first)),
        })
    }

    /// Caps an envelope's size on the wire (its payload, ids and 16 to 20 bytes of
    /// header): a bigger one is not published (the publish fails, counted in
    /// [`backplane_errors`](crate::WebSockets::backplane_errors)) and one received from
    /// another member is refused before it is decoded (counted in
    /// [`backplane_dropped`](crate::WebSockets::backplane_dropped) and reported). Give
    /// every member the same cap. Default: 16 MiB, under the 32 MiB Redis lets a
    /// subscriber fall behind by default (`client-output-buffer-limit pubsub`).
    ///
    /// ```no_run
    /// # async fn run() -> unisock::Result<()> {
    /// use unisock::backplane::RedisBackplane;
    /// let redis = RedisBackplane::connect("redis://127.0.0.1:6379/")
    ///     .await?
    ///     .with_max_envelope_size(1 << 20);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_max_envelope_size(mut self, bytes: usize) -> Self {
        self.max_envelope = bytes;
        self
    }

    /// Bounds the subscription's queue, as
    /// [`InProcess::with_max_queued_bytes`](crate::backplane::InProcess::with_max_queued_bytes)
    /// does: at most `bytes` of received envelopes wait for the registry; the newest that
    /// does not fit is dropped, counted and reported, and the Redis connection is read on
    /// regardless. Default: 64 MiB. Set it before
    /// [`WebSockets::with_backplane`](crate::WebSockets::with_backplane).
    ///
    /// ```no_run
    /// # async fn run() -> unisock::Result<()> {
    /// use unisock::backplane::RedisBackplane;
    /// let redis = RedisBackplane::connect("redis://127.0.0.1:6379/")
    ///     .await?
    ///     .with_max_queued_bytes(8 << 20);
    /// let sockets = unisock::WebSockets::with_backplane(redis);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// The envelope's bytes on the wire, or why it is not published.
    fn encode(&self, envelope: &Envelope) -> Result<Vec<u8>> {
        let bytes = wire::encode(&self.origin, envelope);
        if bytes.len() > self.max_envelope {
            return Err(Error::Backplane(
                format!(
                    "an envelope of {} bytes is over the {}-byte cap: not published",
                    bytes.len(),
                    self.max_envelope
                )
                .into(),
            ));
        }
        Ok(bytes)
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

/// A client for `url` and a connection to it that reconnects by itself (50 ms doubling to
/// 2 s between tries, 2 s to connect and to answer).
pub(crate) async fn connect(url: &str) -> Result<(redis::Client, ConnectionManager)> {
    let client = redis::Client::open(url).map_err(redis_error)?;
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_min_delay(MIN_BACKOFF)
        .set_max_delay(MAX_BACKOFF)
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let manager = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(redis_error)?;
    Ok((client, manager))
}

/// A new pub/sub connection subscribed to `channels`.
pub(crate) async fn subscribe_to(client: &redis::Client, channels: &[String]) -> Result<PubSub> {
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
        let encoded = self.encode(&envelope);
        let mut publisher = self.publisher.clone();
        Box::pin(async move {
            let bytes = encoded?;
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(bytes)
                .exec_async(&mut publisher)
                .await
                .map_err(redis_error)
        })
    }

    fn publish_all(&self, envelopes: Vec<Envelope>) -> BoxFuture<'_, (usize, Option<Error>)> {
        let mut pipe = redis::pipe();
        let (mut count, mut refused) = (0, (0, None));
        for envelope in &envelopes {
            match self.encode(envelope) {
                Ok(bytes) => {
                    pipe.cmd("PUBLISH")
                        .arg(self.channel(envelope))
                        .arg(bytes)
                        .ignore();
                    count += 1;
                }
                Err(e) => refused = (refused.0 + 1, Some(e)),
            }
        }
        let mut publisher = self.publisher.clone();
        Box::pin(async move {
            if count == 0 {
                return refused;
            }
            match pipe.exec_async(&mut publisher).await {
                Ok(()) => refused,
                // Some may have been published: not retried, so at most once.
                Err(e) => (count + refused.0, Some(redis_error(e))),
            }
        })
    }

    fn subscribe(&self) -> Subscription {
        let (feed, received) = feed::feed(self.max_queued_bytes);
        let first = self
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        tokio::spawn(subscription(
            self.client.clone(),
            self.channels.clone(),
            self.origin,
            self.max_envelope,
            first,
            feed,
        ));
        received
    }
}

/// Keeps a subscription: forwards the other members' envelopes, reports `Up`/`Down`,
/// reconnects with backoff. Ends when the receiving side is dropped.
async fn subscription(
    client: redis::Client,
    channels: [String; 2],
    origin: Origin,
    max_envelope: usize,
    mut first: Option<PubSub>,
    feed: Feed,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let subscribed = match first.take() {
            Some(pubsub) => Ok(pubsub),
            None => tokio::select! {
                () = feed.closed() => return,
                subscribed = subscribe_to(&client, &channels) => subscribed,
            },
        };
        let lost = match subscribed {
            Ok(pubsub) => {
                backoff = MIN_BACKOFF;
                if !feed.event(BackplaneEvent::Up) {
                    return;
                }
                match forward(pubsub, origin, max_envelope, &feed).await {
                    Some(lost) => lost,
                    None => return,
                }
            }
            Err(e) => e,
        };
        if !feed.event(BackplaneEvent::Down(lost)) {
            return;
        }
        tokio::select! {
            () = feed.closed() => return,
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
    max_envelope: usize,
    feed: &Feed,
) -> Option<Error> {
    read_subscription(pubsub, feed.closed(), |msg| {
        let bytes = msg.get_payload_bytes();
        match wire::decode(bytes, max_envelope) {
            Ok((from, _)) if from == origin => true,
            // Full queue: dropped and counted there, so this loop never waits.
            Ok((_, envelope)) => feed.message(envelope),
            Err(Refused::TooLarge) => feed.event(BackplaneEvent::Dropped {
                count: 1,
                error: Error::Backplane(
                    format!(
                        "refused an envelope of {} bytes on {}: over the {max_envelope}-byte cap",
                        bytes.len(),
                        msg.get_channel_name()
                    )
                    .into(),
                ),
            }),
            Err(Refused::Malformed) => {
                tracing::debug!(
                    channel = msg.get_channel_name(),
                    "ignored a message that is not a unisock envelope"
                );
                true
            }
        }
    })
    .await
}

/// Hands each message of `pubsub` to `on_message` until the subscription is lost (returns
/// why), or `stop` completes or `on_message` returns false (returns `None`); pings Redis
/// every 5 s so a silent dead connection is noticed.
pub(crate) async fn read_subscription(
    pubsub: PubSub,
    stop: impl std::future::Future<Output = ()>,
    mut on_message: impl FnMut(&redis::Msg) -> bool,
) -> Option<Error> {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    tokio::pin!(stop);
    loop {
        let next = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut messages), cx)
        });
        tokio::select! {
            () = &mut stop => return None,
            msg = next => {
                let Some(msg) = msg else {
                    return Some(Error::Backplane("Redis closed the subscription".into()));
                };
                if !on_message(&msg) {
                    return None;
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

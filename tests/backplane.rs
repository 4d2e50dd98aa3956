//! The registry over a backplane, in one process (the `InProcess` hub and hand-made failing
//! backplanes): broadcasts reach every registry's sockets exactly once, targeted sends
//! cross registries, and backplane failures are counted while local delivery goes on.
//! Both queues between a registry and its backplane are bounded: a flood is dropped,
//! counted and reported once per burst instead of growing memory.
//! The same over Redis, across processes, is tests/redis.rs.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};

use common::{open_client, serve_registry, until_len, with_timeout, Events};
use unisock::backplane::{Backplane, BackplaneEvent, BoxFuture, Envelope, InProcess, Subscription};
use unisock::{Error, MsgEvent, WebSockets};

fn text(s: &str) -> Option<MsgEvent> {
    Some(MsgEvent::Text(s.into()))
}

/// Two registries on one hub, each with one client: (a, b, a's client events, b's).
async fn two_rooms() -> (WebSockets, WebSockets, Events, Events) {
    let hub = InProcess::new();
    let a = WebSockets::with_backplane(hub.clone());
    let b = WebSockets::with_backplane(hub);
    let (_ca, a_events) = open_client(&serve_registry(&a).await).await;
    let (_cb, b_events) = open_client(&serve_registry(&b).await).await;
    until_len(&a, 1).await;
    until_len(&b, 1).await;
    (a, b, a_events, b_events)
}

#[tokio::test]
async fn a_broadcast_reaches_the_sockets_of_every_registry_exactly_once() {
    let (a, b, mut a_events, mut b_events) = two_rooms().await;
    assert!(a.backplane_up() && b.backplane_up());
    assert_eq!(a.broadcast_text("from a", None), 1, "delivered locally");
    assert_eq!(with_timeout(a_events.messages.recv()).await, text("from a"));
    assert_eq!(with_timeout(b_events.messages.recv()).await, text("from a"));
    // `b` answers only once its client saw a's message, so an echo of "from a" on `a`
    // would arrive before this: a's client must see "from b" next.
    assert_eq!(b.broadcast_binary(&[1, 2], None), 1);
    assert_eq!(
        with_timeout(a_events.messages.recv()).await,
        Some(MsgEvent::Binary(vec![1, 2]))
    );
    assert_eq!(
        with_timeout(b_events.messages.recv()).await,
        Some(MsgEvent::Binary(vec![1, 2]))
    );
    assert_eq!(a.backplane_errors() + b.backplane_errors(), 0);
}

#[tokio::test]
async fn a_msg_event_broadcast_crosses_registries_as_text_or_binary() {
    let (a, b, mut a_events, mut b_events) = two_rooms().await;
    let b_id = b.ids().remove(0);
    let hello = MsgEvent::Text("from a".into());
    assert_eq!(a.broadcast(hello.clone(), None), 1, "delivered locally");
    let binary = MsgEvent::Binary(vec![9, 8]);
    assert_eq!(
        a.broadcast(binary.clone(), Some(&[&b_id])),
        0,
        "b's is remote"
    );
    assert_eq!(
        with_timeout(a_events.messages.recv()).await,
        Some(hello.clone())
    );
    assert_eq!(with_timeout(b_events.messages.recv()).await, Some(hello));
    assert_eq!(with_timeout(b_events.messages.recv()).await, Some(binary));
    // a's client was sent "from a" only: its next message is the one b sends now.
    assert_eq!(b.broadcast(MsgEvent::Text("from b".into()), None), 1);
    assert_eq!(with_timeout(a_events.messages.recv()).await, text("from b"));
}

#[tokio::test]
async fn targeted_sends_cross_registries() {
    let (a, b, mut a_events, mut b_events) = two_rooms().await;
    let b_id = b.ids().remove(0);
    let a_id = a.ids().remove(0);

    a.send_to(&b_id, MsgEvent::Text("psst, b".into())).unwrap();
    assert_eq!(
        with_timeout(b_events.messages.recv()).await,
        text("psst, b")
    );

    // A broadcast to listed ids: the local one at once, the other through the hub.
    assert_eq!(a.broadcast_text("you two", Some(&[&a_id, &b_id])), 1);
    assert_eq!(
        with_timeout(a_events.messages.recv()).await,
        text("you two")
    );
    assert_eq!(
        with_timeout(b_events.messages.recv()).await,
        text("you two")
    );

    // Only b's id: nothing for a's client. b's reply proves nothing was on its way to a.
    assert_eq!(a.broadcast_text("only b", Some(&[&b_id])), 0);
    assert_eq!(with_timeout(b_events.messages.recv()).await, text("only b"));
    b.send_to(&a_id, MsgEvent::Text("back to a".into()))
        .unwrap();
    assert_eq!(
        with_timeout(a_events.messages.recv()).await,
        text("back to a")
    );
}

#[tokio::test]
async fn without_a_backplane_an_unknown_id_is_an_error() {
    let lone = WebSockets::new();
    let err = lone
        .send_to("unisock:9999", MsgEvent::Text("x".into()))
        .unwrap_err();
    assert!(
        matches!(err, Error::NoSuchSocket(ref id) if id == "unisock:9999"),
        "{err}"
    );
}

/// A backplane that is down: every publish fails; its subscription reports `Down`.
struct Broken {
    publishes: Arc<AtomicUsize>,
}

impl Backplane for Broken {
    fn publish(&self, _envelope: Envelope) -> BoxFuture<'_, unisock::Result<()>> {
        self.publishes.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(Error::Backplane("the backplane is down".into())) })
    }

    fn subscribe(&self) -> Subscription {
        use futures_util::StreamExt;
        let down = BackplaneEvent::Down(Error::Backplane("no subscription".into()));
        // Down once, then nothing, without ending.
        Box::pin(futures_util::stream::once(async { down }).chain(futures_util::stream::pending()))
    }
}

#[tokio::test]
async fn an_outage_is_counted_and_reported_while_local_delivery_goes_on() {
    let publishes = Arc::new(AtomicUsize::new(0));
    let sockets = WebSockets::with_backplane(Broken {
        publishes: publishes.clone(),
    });
    let (tx, mut reported) = tokio::sync::mpsc::unbounded_channel();
    sockets.on_backplane_error(move |e| {
        let _ = tx.send(e.to_string());
    });
    let (_client, mut events) = open_client(&serve_registry(&sockets).await).await;
    until_len(&sockets, 1).await;

    for i in 0..3 {
        assert_eq!(sockets.broadcast_text(&format!("m{i}"), None), 1);
    }
    for i in 0..3 {
        assert_eq!(
            with_timeout(events.messages.recv()).await,
            text(&format!("m{i}"))
        );
    }
    // The subscription's Down and the 3 failed publishes (in one or more batches).
    let mut seen: Vec<String> = Vec::new();
    let has = |seen: &[String], what: &str| seen.iter().any(|e| e.contains(what));
    with_timeout(async {
        // The hook runs after the count is raised: once both kinds were reported and the
        // count is 4, every report is in.
        while !(has(&seen, "the backplane is down")
            && has(&seen, "no subscription")
            && sockets.backplane_errors() == 4)
        {
            seen.push(reported.recv().await.unwrap());
        }
    })
    .await;
    assert_eq!(sockets.backplane_errors(), 4);
    assert_eq!(publishes.load(Ordering::SeqCst), 3);
    assert!(!sockets.backplane_up());
    assert!(seen.len() >= 2 && seen.len() <= 4, "{seen:?}");
}

#[tokio::test]
async fn a_registry_that_joins_late_gets_what_is_published_after_and_one_leaving_harms_none() {
    let hub = InProcess::new();
    let a = WebSockets::with_backplane(hub.clone());
    let (_ca, mut a_events) = open_client(&serve_registry(&a).await).await;
    until_len(&a, 1).await;
    a.broadcast_text("before c joined", None);
    assert_eq!(
        with_timeout(a_events.messages.recv()).await,
        text("before c joined")
    );

    // `c` joins: from now on it hears `a`.
    let c = WebSockets::with_backplane(hub.clone());
    let (_cc, mut c_events) = open_client(&serve_registry(&c).await).await;
    until_len(&c, 1).await;
    a.broadcast_text("after c joined", None);
    assert_eq!(
        with_timeout(c_events.messages.recv()).await,
        text("after c joined")
    );

    // `d` joins and leaves (dropped with its sockets' registry handles gone).
    let d = WebSockets::with_backplane(hub);
    drop(d);
    c.broadcast_text("after d left", None);
    assert_eq!(
        with_timeout(a_events.messages.recv()).await,
        text("after c joined")
    );
    assert_eq!(
        with_timeout(a_events.messages.recv()).await,
        text("after d left")
    );
    assert_eq!(
        with_timeout(c_events.messages.recv()).await,
        text("after d left")
    );
    assert_eq!(a.backplane_errors() + c.backplane_errors(), 0);
}

/// A broadcast to every socket of `len` bytes of text, numbered `i`.
fn numbered(i: usize, len: usize) -> Envelope {
    let mut text = format!("{i:06}");
    text.extend(std::iter::repeat_n('.', len - text.len()));
    Envelope::Broadcast {
        payload: MsgEvent::Text(text),
        ids: None,
    }
}

/// The start of what a subscription yielded (a payload of 4000 dots says little).
fn brief(event: &Option<Option<BackplaneEvent>>) -> String {
    format!("{event:?}").chars().take(100).collect()
}

/// Room for 10 of `numbered(_, 4000)`: each counts as its payload plus under 200 bytes of
/// bookkeeping, so an 11th never fits.
const TEN_ENVELOPES: usize = 10 * 4200;

#[tokio::test]
async fn a_flooded_subscription_keeps_the_oldest_that_fit_and_counts_the_rest() {
    let slow = InProcess::new().with_max_queued_bytes(TEN_ENVELOPES);
    assert_eq!(slow.max_queued_bytes(), TEN_ENVELOPES);
    let publisher = slow.clone();
    let mut subscription = slow.subscribe();
    // Nothing reads the subscription while 100 envelopes are published.
    for i in 0..100 {
        publisher.publish(numbered(i, 4000)).await.unwrap();
    }
    let mut next = || subscription.next().now_or_never();
    assert!(matches!(next(), Some(Some(BackplaneEvent::Up))));
    for i in 0..10 {
        match next() {
            Some(Some(BackplaneEvent::Message(envelope))) => {
                assert_eq!(envelope, numbered(i, 4000))
            }
            other => panic!("expected envelope {i}, got {}", brief(&other)),
        }
    }
    match next() {
        Some(Some(BackplaneEvent::Dropped { count, error })) => {
            assert_eq!(count, 90);
            assert!(error.to_string().contains("90 envelopes"), "{error}");
        }
        other => panic!("expected the drops to be reported, got {}", brief(&other)),
    }
    assert!(next().is_none(), "more was queued than fits");

    // Drained, the queue takes envelopes again.
    publisher.publish(numbered(100, 4000)).await.unwrap();
    assert!(matches!(next(), Some(Some(BackplaneEvent::Message(e))) if e == numbered(100, 4000)));
}

#[tokio::test]
async fn a_flood_from_the_backplane_is_dropped_counted_and_reported_once_per_burst() {
    let slow = InProcess::new().with_max_queued_bytes(TEN_ENVELOPES);
    let publisher = slow.clone();
    let sockets = WebSockets::with_backplane(slow);
    let (tx, mut reported) = tokio::sync::mpsc::unbounded_channel();
    sockets.on_backplane_error(move |e| {
        let _ = tx.send(e.to_string());
    });
    for burst in 1..=2 {
        // A current-thread runtime: the registry's subscriber runs only once this test
        // awaits something pending, so the whole burst arrives before any is delivered.
        for i in 0..100 {
            publisher.publish(numbered(i, 4000)).await.unwrap();
        }
        let report = with_timeout(reported.recv()).await.unwrap();
        assert!(report.contains("90 envelopes"), "{report}");
        assert_eq!(sockets.backplane_dropped(), 90 * burst);
        assert_eq!(sockets.backplane_errors(), 90 * burst);
        // The subscriber ran until it had nothing left: one report for the burst.
        assert!(
            reported.try_recv().is_err(),
            "more than one report per burst"
        );
    }
    assert!(sockets.backplane_up());
}

/// A backplane that counts what it publishes; its subscription stays silent.
struct Recording {
    published: tokio::sync::mpsc::UnboundedSender<usize>,
}

impl Backplane for Recording {
    fn publish(&self, _envelope: Envelope) -> BoxFuture<'_, unisock::Result<()>> {
        let _ = self.published.send(1);
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self) -> Subscription {
        Box::pin(futures_util::stream::pending())
    }
}

#[tokio::test]
async fn a_flood_of_broadcasts_is_bounded_on_the_way_out_too() {
    let (published, mut counts) = tokio::sync::mpsc::unbounded_channel();
    let sockets = WebSockets::with_backplane(Recording { published });
    let (tx, mut reported) = tokio::sync::mpsc::unbounded_channel();
    sockets.on_backplane_error(move |e| {
        let _ = tx.send(e.to_string());
    });
    // 100 broadcasts of 1 MiB, before the publisher task runs: 63 fit in 64 MiB with
    // their bookkeeping.
    let mib = vec![7u8; 1 << 20];
    for _ in 0..100 {
        sockets.broadcast_binary(&mib, None);
    }
    assert_eq!(sockets.backplane_dropped(), 37);
    let mut total = 0;
    while total < 63 {
        total += with_timeout(counts.recv()).await.unwrap();
    }
    let report = with_timeout(reported.recv()).await.unwrap();
    assert!(report.contains("37 envelopes"), "{report}");
    // Reported before the publisher's first batch: once, not once per drop.
    assert!(reported.try_recv().is_err(), "more than one report");
    assert_eq!(sockets.backplane_errors(), 37);

    // Many small ones: the count bound (16 Ki envelopes) is reached first.
    for _ in 0..20_000 {
        sockets.broadcast_text("x", None);
    }
    assert_eq!(sockets.backplane_dropped(), 37 + 20_000 - 16 * 1024);
    let mut total = 0;
    while total < 16 * 1024 {
        total += with_timeout(counts.recv()).await.unwrap();
    }
    let report = with_timeout(reported.recv()).await.unwrap();
    assert!(
        report.contains(&format!("{} envelopes", 20_000 - 16 * 1024)),
        "{report}"
    );
    assert!(reported.try_recv().is_err(), "more than one report");
}

//! Resumable delivery over real sockets, in one process: a reconnecting client gets what it
//! missed once and in order, or one gap with the exact range; a restarted server (a new
//! epoch) says so; a hole on the live feed is resumed at once; peers without the
//! subprotocol keep plain messages.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{free_addr, with_timeout};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use unisock::resume::{Gap, GapReason, HistoryLimits, Position, RoomClient, Rooms, SUBPROTOCOL};
use unisock::{CloseEvent, MsgEvent, Reconnect, WebSocket, WebSocketExt, WebSockets};

/// A server whose sockets get `rooms`; every application message is published to "lobby"
/// and also reported on `app`.
struct Server;

impl Server {
    async fn start(
        addr: SocketAddr,
        rooms: &Rooms,
        app: mpsc::UnboundedSender<MsgEvent>,
    ) -> common::Server {
        let sockets = WebSockets::new();
        sockets.on_upgrade(|pending| {
            Rooms::select(pending);
        });
        let rooms = rooms.clone();
        common::Server::start(addr, sockets, move |_| {
            let ws = WebSocket::new();
            let (publish, app) = (rooms.clone(), app.clone());
            rooms.attach(&ws, move |_, msg| {
                let _ = app.send(msg.clone());
                publish.publish("lobby", msg);
            });
            Some(ws)
        })
        .await
    }
}

#[derive(Debug, PartialEq)]
enum Seen {
    Message(Position, String),
    Gap(Gap),
    Open,
}

/// A reconnecting room client in "lobby", its events on the returned channel.
async fn client(url: &str) -> (RoomClient, mpsc::UnboundedReceiver<Seen>) {
    let ws = WebSocket::new();
    ws.set_reconnect(Some(
        Reconnect::default().delays(Duration::from_millis(10), Duration::from_millis(50)),
    ));
    let rooms = RoomClient::new(&ws);
    let (tx, rx) = mpsc::unbounded_channel();
    let (on_msg, on_gap) = (tx.clone(), tx.clone());
    rooms.on_message(move |room, at, msg| {
        assert!(room == "lobby" || room.starts_with('@'), "{room}");
        let _ = on_msg.send(Seen::Message(at, msg.txt().unwrap().to_string()));
    });
    rooms.on_gap(move |gap| {
        let _ = on_gap.send(Seen::Gap(gap));
    });
    rooms.on_open(move || {
        let _ = tx.send(Seen::Open);
    });
    rooms.join("lobby").unwrap();
    ws.open(url, &[SUBPROTOCOL]).await.unwrap();
    let reader = ws.clone();
    tokio::spawn(async move { reader.read().await });
    (rooms, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    with_timeout(rx.recv()).await.unwrap()
}

async fn expect_messages(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    epoch: u64,
    offsets: std::ops::RangeInclusive<u64>,
) {
    for offset in offsets {
        assert_eq!(
            next(rx).await,
            Seen::Message(Position { epoch, offset }, format!("m{offset}"))
        );
    }
}

/// Waits until `n` sockets joined "lobby" (each step is driven by the server's tasks).
async fn until_members(rooms: &Rooms, n: usize) {
    with_timeout(async {
        while rooms.members("lobby") != n {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

fn publish(rooms: &Rooms, offsets: std::ops::RangeInclusive<u64>) {
    for offset in offsets {
        let at = rooms.publish("lobby", MsgEvent::Text(format!("m{offset}")));
        assert_eq!(at.offset, offset);
    }
}

#[tokio::test]
async fn what_was_published_while_away_arrives_once_and_in_order() {
    let addr = free_addr().await;
    let rooms = Rooms::with_epoch(5, HistoryLimits::default());
    let (app, _) = mpsc::unbounded_channel();
    let server = Server::start(addr, &rooms, app.clone()).await;
    let (client, mut seen) = client(&format!("ws://{addr}/")).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    until_members(&rooms, 1).await;
    publish(&rooms, 1..=3);
    expect_messages(&mut seen, 5, 1..=3).await;

    server.stop().await;
    publish(&rooms, 4..=6);
    let server = Server::start(addr, &rooms, app).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    expect_messages(&mut seen, 5, 4..=6).await;
    until_members(&rooms, 1).await;
    publish(&rooms, 7..=7);
    expect_messages(&mut seen, 5, 7..=7).await;
    assert_eq!(
        client.position("lobby"),
        Some(Position {
            epoch: 5,
            offset: 7
        })
    );
    assert!(seen.try_recv().is_err(), "nothing twice");
    server.stop().await;
}

#[tokio::test]
async fn a_trimmed_history_is_one_gap_with_the_exact_range() {
    let addr = free_addr().await;
    let limits = HistoryLimits {
        max_messages: 2,
        ..HistoryLimits::default()
    };
    let rooms = Rooms::with_epoch(9, limits);
    let (app, _) = mpsc::unbounded_channel();
    let server = Server::start(addr, &rooms, app.clone()).await;
    let (_client, mut seen) = client(&format!("ws://{addr}/")).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    until_members(&rooms, 1).await;
    publish(&rooms, 1..=3);
    expect_messages(&mut seen, 9, 1..=3).await;

    server.stop().await;
    publish(&rooms, 4..=8);
    let server = Server::start(addr, &rooms, app).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    let gap = Gap {
        room: "lobby".into(),
        reason: GapReason::Trimmed,
        epoch: 9,
        from: 4,
        to: Some(6),
    };
    assert_eq!(next(&mut seen).await, Seen::Gap(gap));
    expect_messages(&mut seen, 9, 7..=8).await;
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_is_a_new_epoch_and_its_history_is_replayed() {
    let addr = free_addr().await;
    let first = Rooms::with_epoch(1, HistoryLimits::default());
    let (app, _) = mpsc::unbounded_channel();
    let server = Server::start(addr, &first, app.clone()).await;
    let (_client, mut seen) = client(&format!("ws://{addr}/")).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    until_members(&first, 1).await;
    publish(&first, 1..=2);
    expect_messages(&mut seen, 1, 1..=2).await;

    server.stop().await;
    publish(&first, 3..=3); // lost with the process
    let second = Rooms::with_epoch(2, HistoryLimits::default());
    publish(&second, 1..=2);
    let server = Server::start(addr, &second, app).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    let gap = Gap {
        room: "lobby".into(),
        reason: GapReason::NewEpoch,
        epoch: 1,
        from: 3,
        to: None,
    };
    assert_eq!(next(&mut seen).await, Seen::Gap(gap));
    expect_messages(&mut seen, 2, 1..=2).await;
    server.stop().await;
}

#[tokio::test]
async fn application_messages_reach_the_server_and_plain_peers_keep_plain_messages() {
    let addr = free_addr().await;
    let rooms = Rooms::new(HistoryLimits::default());
    let (app, mut received) = mpsc::unbounded_channel();
    let server = Server::start(addr, &rooms, app).await;
    let (client, mut seen) = client(&format!("ws://{addr}/")).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    client.send(MsgEvent::Text("m1".into())).unwrap();
    assert_eq!(
        with_timeout(received.recv()).await,
        Some(MsgEvent::Text("m1".into()))
    );
    // The server published it to the lobby, which the client is in.
    assert!(
        matches!(next(&mut seen).await, Seen::Message(at, text) if at.offset == 1 && text == "m1")
    );

    let (plain, _) = common::open_client(&format!("ws://{addr}/")).await;
    assert_eq!(plain.protocol(), "");
    plain.send_text("j lobby\n").unwrap(); // a frame's shape, but not spoken here
    assert_eq!(
        with_timeout(received.recv()).await,
        Some(MsgEvent::Text("j lobby\n".into()))
    );
    assert_eq!(rooms.members("lobby"), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_frame_that_is_not_unisock_v1_closes_with_1008() {
    let addr = free_addr().await;
    let rooms = Rooms::new(HistoryLimits::default());
    let (app, _) = mpsc::unbounded_channel();
    let server = Server::start(addr, &rooms, app).await;
    let ws = WebSocket::new();
    let (tx, mut closes) = mpsc::unbounded_channel::<CloseEvent>();
    ws.on_close(move |e| {
        let _ = tx.send(e);
    });
    ws.open(&format!("ws://{addr}/"), &[SUBPROTOCOL])
        .await
        .unwrap();
    assert_eq!(ws.protocol(), SUBPROTOCOL);
    let reader = ws.clone();
    tokio::spawn(async move { reader.read().await });
    ws.send_text("hello").unwrap();
    assert_eq!(with_timeout(closes.recv()).await.unwrap().code, 1008);
    server.stop().await;
}

/// A hand-written `unisock.v1` server that skips offset 2 on the live feed: the client
/// asks to resume after 1 at once, and gets 2 and 3 once each.
#[tokio::test]
async fn a_hole_on_the_live_feed_is_resumed_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (asked_tx, mut asked) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = WebSocket::new();
        let mut pending = ws.upgrade_pending(tcp).await.unwrap();
        assert!(Rooms::select(&mut pending));
        let ws = pending.commit().await.unwrap();
        let server = ws.clone();
        ws.on_message(move |msg| {
            let text = msg.txt().unwrap().to_string();
            let _ = asked_tx.send(text.clone());
            let send = |offset: u64| {
                server
                    .send_text(&format!("m lobby 4 {offset}\nm{offset}"))
                    .unwrap()
            };
            match text.as_str() {
                "j lobby\n" => {
                    server.send_text("p lobby 4 0\n").unwrap();
                    send(1);
                    send(3); // 2 went missing
                    send(4);
                }
                "j lobby 4 1\n" => (2..=4).for_each(send),
                other => panic!("unexpected {other:?}"),
            }
        });
        ws.read().await;
    });
    let (_client, mut seen) = client(&format!("ws://{addr}/")).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    expect_messages(&mut seen, 4, 1..=4).await;
    assert_eq!(with_timeout(asked.recv()).await.unwrap(), "j lobby\n");
    assert_eq!(with_timeout(asked.recv()).await.unwrap(), "j lobby 4 1\n");
    assert!(seen.try_recv().is_err(), "nothing twice");
}

#[tokio::test]
async fn an_inbox_is_one_client_s_room_across_reconnects() {
    let addr = free_addr().await;
    let rooms = Rooms::with_epoch(3, HistoryLimits::default());
    let (app, _) = mpsc::unbounded_channel();
    let server = Server::start(addr, &rooms, app.clone()).await;
    let (client, mut seen) = client(&format!("ws://{addr}/")).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    client.join_inbox().unwrap();
    let inbox = with_timeout(async {
        loop {
            if let Some(name) = client.inbox() {
                return name;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(inbox.starts_with('@') && inbox.len() == 33, "{inbox}");
    let socket = server.sockets.ids();
    let ws = server.sockets.get(&socket[0]).unwrap();
    assert_eq!(rooms.inbox_of(&ws).as_deref(), Some(inbox.as_str()));
    let at = rooms.send_to(&ws, MsgEvent::Text("m1".into())).unwrap();
    assert_eq!(
        at,
        Position {
            epoch: 3,
            offset: 1
        }
    );
    // Delivered with the inbox as its room (the client helper reports it as any message).
    assert_eq!(next(&mut seen).await, Seen::Message(at, "m1".into()));

    // Away: what is sent to the inbox waits in its history.
    server.stop().await;
    rooms.publish(&inbox, MsgEvent::Text("m2".into()));
    let server = Server::start(addr, &rooms, app).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    expect_messages(&mut seen, 3, 2..=2).await;
    assert_eq!(client.inbox().as_deref(), Some(inbox.as_str()));
    server.stop().await;
}

#[tokio::test]
async fn rooms_nobody_needs_go_and_a_quiet_room_s_members_miss_nothing() {
    let addr = free_addr().await;
    let limits = HistoryLimits {
        max_total_bytes: 100,
        ..HistoryLimits::default()
    };
    let rooms = Rooms::with_epoch(3, limits);
    let (app, _) = mpsc::unbounded_channel();
    let server = Server::start(addr, &rooms, app).await;
    let (_client, mut seen) = client(&format!("ws://{addr}/")).await;
    assert_eq!(next(&mut seen).await, Seen::Open);
    until_members(&rooms, 1).await;
    publish(&rooms, 1..=1);
    expect_messages(&mut seen, 3, 1..=1).await;
    // A room per client, as inboxes are, each with a message nobody is there to get: the
    // cap drops the oldest messages, the lobby's too, and the rooms left empty go.
    for i in 0..10_000 {
        rooms.publish(&format!("@{i}"), MsgEvent::Binary(vec![0; 10]));
        assert!(
            rooms.history_rooms() <= 12,
            "{} rooms",
            rooms.history_rooms()
        );
    }
    // The lobby kept its head for its member: the next message follows on, no gap.
    publish(&rooms, 2..=2);
    expect_messages(&mut seen, 3, 2..=2).await;
    assert!(seen.try_recv().is_err(), "no gap");
    server.stop().await;
}

#[tokio::test]
async fn a_closed_socket_leaves_its_rooms_by_itself() {
    let addr = free_addr().await;
    let rooms = Rooms::with_epoch(3, HistoryLimits::default());
    let (app, _) = mpsc::unbounded_channel();
    let server = Server::start(addr, &rooms, app).await;
    let ws = WebSocket::new();
    let client = RoomClient::new(&ws);
    client.join("lobby").unwrap();
    ws.open(&format!("ws://{addr}/"), &[SUBPROTOCOL])
        .await
        .unwrap();
    let reader = ws.clone();
    tokio::spawn(async move { reader.read().await });
    until_members(&rooms, 1).await;
    // The client goes for good; nothing is published to the lobby and nobody calls
    // `detach`: the server's socket closes and takes itself out of its rooms.
    ws.close(1000, "bye").unwrap();
    assert_eq!(with_timeout(ws.closed()).await.code, 1000);
    until_members(&rooms, 0).await;
    server.stop().await;
}

//! Resumable rooms across nodes over a real redis-server (on a free port): a client
//! resumes on another node with nothing lost or doubled, a restarted node loses nothing,
//! a flushed Redis is a new epoch reported as a gap, many clients resuming on a node cost
//! one history read per room, not one per client, and a publish retried after its answer
//! was lost is kept once.
//!
//! Needs redis-server (REDIS_SERVER_BIN, or on PATH). `./build.sh test` runs it (its
//! `redis_test` step); by hand:
//! `cargo test --features redis --test resume_redis -- --ignored`.
#![cfg(feature = "redis")]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{free_addr, free_port, start_redis, until, with_timeout};
use tokio::sync::mpsc;
use unisock::resume::{
    Gap, GapReason, HistoryLimits, Position, RedisRooms, RoomClient, Rooms, SUBPROTOCOL,
};
use unisock::{MsgEvent, Reconnect, WebSocket, WebSockets};

/// One server process's worth: rooms over Redis, served on `addr`.
struct Node {
    rooms: RedisRooms,
    server: common::Server,
}

impl Node {
    async fn start(addr: SocketAddr, redis: &str, prefix: &str) -> Node {
        Node::start_with(addr, redis, prefix, HistoryLimits::default()).await
    }

    /// As [`Node::start`], with history `limits`.
    async fn start_with(
        addr: SocketAddr,
        redis: &str,
        prefix: &str,
        limits: HistoryLimits,
    ) -> Node {
        let rooms = RedisRooms::connect(redis, prefix, limits).await.unwrap();
        let sockets = WebSockets::new();
        sockets.on_upgrade(|pending| {
            Rooms::select(pending);
        });
        let serving = rooms.clone();
        let server = common::Server::start(addr, sockets, move |_| {
            let ws = WebSocket::new();
            serving.attach(&ws, |_, _| {});
            Some(ws)
        })
        .await;
        Node { rooms, server }
    }

    /// Closes its sockets with 1001 (clients reconnect) and stops listening.
    async fn stop(self) {
        self.server.stop().await;
    }

    /// Publishes `m{offset}` for each offset (in order: one node's queue keeps it).
    fn publish(&self, room: &str, offsets: std::ops::RangeInclusive<u64>) {
        for offset in offsets {
            self.rooms
                .publish(room, MsgEvent::Text(format!("m{offset}")))
                .unwrap();
        }
    }

    async fn until_members(&self, room: &str, n: usize) {
        until(10, "members to join", || self.rooms.members(room) == n).await;
    }
}

#[derive(Debug, PartialEq)]
enum Seen {
    Message(u64, String),
    Gap(Gap),
}

/// A reconnecting room client in `room` on `url`, from `since` if given.
async fn client(
    url: &str,
    room: &str,
    since: Option<Position>,
) -> (RoomClient, mpsc::UnboundedReceiver<Seen>) {
    let (_, client, rx) = client_and_socket(url, room, since).await;
    (client, rx)
}

/// As [`client`], with its socket.
async fn client_and_socket(
    url: &str,
    room: &str,
    since: Option<Position>,
) -> (WebSocket, RoomClient, mpsc::UnboundedReceiver<Seen>) {
    let ws = WebSocket::new();
    ws.set_reconnect(Some(
        Reconnect::default().delays(Duration::from_millis(10), Duration::from_millis(50)),
    ));
    let client = RoomClient::new(&ws);
    let (tx, rx) = mpsc::unbounded_channel();
    let gaps = tx.clone();
    client.on_message(move |_, at, msg| {
        let _ = tx.send(Seen::Message(at.offset, msg.txt().unwrap().to_string()));
    });
    client.on_gap(move |gap| {
        let _ = gaps.send(Seen::Gap(gap));
    });
    match since {
        Some(at) => client.join_at(room, at).unwrap(),
        None => client.join(room).unwrap(),
    }
    ws.open(url, &[SUBPROTOCOL]).await.unwrap();
    let reader = ws.clone();
    tokio::spawn(async move { reader.read().await });
    (ws, client, rx)
}

async fn expect(rx: &mut mpsc::UnboundedReceiver<Seen>, offsets: std::ops::RangeInclusive<u64>) {
    for offset in offsets {
        let seen = with_timeout(rx.recv()).await.unwrap();
        assert_eq!(seen, Seen::Message(offset, format!("m{offset}")));
    }
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

#[tokio::test]
#[ignore = "needs redis-server: ./build.sh redis_test"]
async fn a_client_resumes_on_another_node_with_nothing_lost_or_doubled() {
    let port = free_port();
    let _redis = start_redis(port).await;
    let redis = format!("redis://127.0.0.1:{port}/");
    let (a_addr, b_addr) = (free_addr().await, free_addr().await);
    let a = Node::start(a_addr, &redis, "t1").await;
    let b = Node::start(b_addr, &redis, "t1").await;

    let (page, first, mut seen) = client_and_socket(&url(a_addr), "lobby", None).await;
    a.until_members("lobby", 1).await;
    b.publish("lobby", 1..=3); // through the other node
    expect(&mut seen, 1..=3).await;
    let held = first.position("lobby").unwrap();
    assert_eq!(held.offset, 3);

    // The page goes away; meanwhile both nodes publish, and node B keeps a copy.
    page.close(1000, "reload").unwrap();
    a.publish("lobby", 4..=5);
    until(10, "five messages in node B's copy", || {
        b.rooms.history_bytes() == 5 * 2
    })
    .await;
    b.publish("lobby", 6..=6);
    until(10, "six messages in node B's copy", || {
        b.rooms.history_bytes() == 6 * 2
    })
    .await;

    // It comes back on the other node with the position it kept.
    let (_second, mut seen) = client(&url(b_addr), "lobby", Some(held)).await;
    expect(&mut seen, 4..=6).await;
    b.until_members("lobby", 1).await;
    a.publish("lobby", 7..=7);
    expect(&mut seen, 7..=7).await;
    assert!(seen.try_recv().is_err(), "nothing twice, no gap");
    assert_eq!(b.rooms.history_reads(), 0, "answered from node B's copy");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server: ./build.sh redis_test"]
async fn a_restarted_node_loses_nothing() {
    let port = free_port();
    let _redis = start_redis(port).await;
    let redis = format!("redis://127.0.0.1:{port}/");
    let (a_addr, b_addr) = (free_addr().await, free_addr().await);
    let a = Node::start(a_addr, &redis, "t2").await;
    let b = Node::start(b_addr, &redis, "t2").await;
    let (_client, mut seen) = client(&url(a_addr), "news", None).await;
    a.until_members("news", 1).await;
    b.publish("news", 1..=2);
    expect(&mut seen, 1..=2).await;

    a.stop().await; // the process dies: its copy of the history with it
    b.publish("news", 3..=5);
    let a = Node::start(a_addr, &redis, "t2").await; // a new process, nothing followed yet
    expect(&mut seen, 3..=5).await;
    a.until_members("news", 1).await;
    assert!(a.rooms.history_reads() >= 1, "answered from Redis");
    b.publish("news", 6..=6);
    expect(&mut seen, 6..=6).await;
    assert!(seen.try_recv().is_err(), "nothing twice, no gap");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server: ./build.sh redis_test"]
async fn a_flushed_redis_is_a_new_epoch_and_the_client_is_told() {
    let port = free_port();
    let _redis = start_redis(port).await;
    let redis = format!("redis://127.0.0.1:{port}/");
    let a_addr = free_addr().await;
    let a = Node::start(a_addr, &redis, "t3").await;
    let (held, mut seen) = client(&url(a_addr), "r", None).await;
    a.until_members("r", 1).await;
    a.publish("r", 1..=2);
    expect(&mut seen, 1..=2).await;
    let old = held.position("r").unwrap();

    let mut conn = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("FLUSHALL").exec_async(&mut conn).await.unwrap();
    a.publish("r", 1..=1); // the first of a new epoch
    let gap = Gap {
        room: "r".into(),
        reason: GapReason::NewEpoch,
        epoch: old.epoch,
        from: 3,
        to: None,
    };
    assert_eq!(with_timeout(seen.recv()).await.unwrap(), Seen::Gap(gap));
    expect(&mut seen, 1..=1).await;
    assert_ne!(held.position("r").unwrap().epoch, old.epoch);
    a.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server: ./build.sh redis_test"]
async fn many_clients_resuming_on_a_node_cost_one_read_per_room() {
    let port = free_port();
    let _redis = start_redis(port).await;
    let redis = format!("redis://127.0.0.1:{port}/");
    let (a_addr, b_addr) = (free_addr().await, free_addr().await);
    let a = Node::start(a_addr, &redis, "t4").await;
    let (first, mut seen) = client(&url(a_addr), "busy", None).await;
    a.until_members("busy", 1).await;
    a.publish("busy", 1..=10);
    expect(&mut seen, 1..=10).await;
    let from = Position {
        epoch: first.position("busy").unwrap().epoch,
        offset: 4,
    };

    // A node that never followed the room; 20 clients resume there from offset 4.
    let b = Node::start(b_addr, &redis, "t4").await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(client(&url(b_addr), "busy", Some(from)).await);
    }
    for (_, seen) in &mut clients {
        expect(seen, 5..=10).await;
    }
    b.until_members("busy", 20).await;
    assert_eq!(
        b.rooms.history_reads(),
        1,
        "one read for the room, then its copy"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server: ./build.sh redis_test"]
async fn an_inbox_is_reached_from_any_node_and_resumed() {
    let port = free_port();
    let _redis = start_redis(port).await;
    let redis = format!("redis://127.0.0.1:{port}/");
    let (a_addr, b_addr) = (free_addr().await, free_addr().await);
    let a = Node::start(a_addr, &redis, "t5").await;
    let b = Node::start(b_addr, &redis, "t5").await;
    let (client, mut seen) = client(&url(a_addr), "lobby", None).await;
    client.join_inbox().unwrap();
    until(10, "the inbox", || client.inbox().is_some()).await;
    let inbox = client.inbox().unwrap();
    let ws = a.server.sockets.get(&a.server.sockets.ids()[0]).unwrap();
    assert_eq!(a.rooms.inbox_of(&ws).as_deref(), Some(inbox.as_str()));
    assert!(a.rooms.send_to(&ws, MsgEvent::Text("m1".into())).unwrap());
    expect(&mut seen, 1..=1).await;
    // Another node reaches it by name, also while its client is away.
    a.stop().await;
    b.publish(&inbox, 2..=3);
    let a = Node::start(a_addr, &redis, "t5").await;
    expect(&mut seen, 2..=3).await;
    assert!(seen.try_recv().is_err(), "nothing twice, no gap");
    a.stop().await;
    b.stop().await;
}

/// A TCP relay to Redis that, once armed, lets the next script call through (`EVALSHA`)
/// but loses its answer: it closes both connections instead of passing the reply on.
struct AnswerLosingRelay {
    addr: SocketAddr,
    armed: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
}

impl AnswerLosingRelay {
    async fn start(redis: SocketAddr) -> AnswerLosingRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (armed, lost) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (arm, losing) = (armed.clone(), lost.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (armed, lost) = (arm.clone(), losing.clone());
                tokio::spawn(async move {
                    let _ = relay(client, redis, &armed, &lost).await;
                });
            }
        });
        AnswerLosingRelay { addr, armed, lost }
    }
}

async fn relay(
    mut client: tokio::net::TcpStream,
    redis: SocketAddr,
    armed: &AtomicBool,
    lost: &AtomicBool,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut server = tokio::net::TcpStream::connect(redis).await?;
    let (mut up, mut down) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    let mut losing = false;
    loop {
        tokio::select! {
            n = client.read(&mut up) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                let call = up[..n].windows(7).any(|w| w == b"EVALSHA");
                if call && armed.swap(false, Ordering::SeqCst) {
                    losing = true;
                }
                server.write_all(&up[..n]).await?;
            }
            n = server.read(&mut down) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                if losing {
                    lost.store(true, Ordering::SeqCst);
                    return Ok(()); // both connections close, the answer unsent
                }
                client.write_all(&down[..n]).await?;
            }
        }
    }
}

/// A stream entry as XRANGE gives it: its id and its fields.
type Entry = (String, Vec<(String, Vec<u8>)>);

/// The payloads of a room's kept messages in Redis, by offset.
async fn kept(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<(String, String)> {
    let entries: Vec<Entry> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(id, fields)| {
            let payload = fields.into_iter().find(|(k, _)| k == "p").unwrap().1;
            (id, String::from_utf8(payload).unwrap())
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs redis-server: ./build.sh redis_test"]
async fn a_publish_retried_after_its_answer_was_lost_is_kept_once() {
    let port = free_port();
    let _redis = start_redis(port).await;
    let redis = format!("redis://127.0.0.1:{port}/");
    let relay = AnswerLosingRelay::start(([127, 0, 0, 1], port).into()).await;
    let rooms = RedisRooms::connect(
        &format!("redis://{}/", relay.addr),
        "t6",
        HistoryLimits::default(),
    )
    .await
    .unwrap();
    let mut conn = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = "t6:room:r:log";
    let publish = |text: &str| rooms.publish("r", MsgEvent::Text(text.into())).unwrap();
    // The first publish loads the script; then one whose answer is lost, and one more.
    publish("m1");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while kept(&mut conn, key).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "m1 was not published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    relay.armed.store(true, Ordering::SeqCst);
    publish("m2");
    publish("m3");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = kept(&mut conn, key).await;
        if log.last().is_some_and(|(_, p)| p == "m3") {
            assert!(relay.lost.load(Ordering::SeqCst), "an answer was lost");
            let want =
                [("1-0", "m1"), ("2-0", "m2"), ("3-0", "m3")].map(|(i, p)| (i.into(), p.into()));
            assert_eq!(log, want, "each message once, at one offset");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "m3 was not published: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends on a channel when dropped.
struct Dropped(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.0.take().map(|tx| tx.send(()));
    }
}

#[tokio::test]
#[ignore = "needs redis-server: ./build.sh redis_test"]
async fn rooms_dropped_while_redis_is_down_stop_retrying() {
    let port = free_port();
    let redis_server = start_redis(port).await;
    let redis = format!("redis://127.0.0.1:{port}/");
    let addr = free_addr().await;
    let a = Node::start(addr, &redis, "t7").await;
    let (failed, mut failing) = mpsc::unbounded_channel();
    let (gone, dropped) = tokio::sync::oneshot::channel();
    let guard = Dropped(Some(gone));
    a.rooms.on_error(move |_| {
        let _ = &guard; // lives as long as the hook
        let _ = failed.send(());
    });
    drop(redis_server);
    // A join the node must read Redis for: the read fails, and is retried.
    let (client, _seen) = client(
        &url(addr),
        "r",
        Some(Position {
            epoch: 1,
            offset: 1,
        }),
    )
    .await;
    with_timeout(failing.recv()).await.unwrap();
    drop(client);
    a.stop().await; // the last handle on the rooms goes
    with_timeout(dropped)
        .await
        .expect("the rooms and their hook were dropped, retries and all");
}

#[tokio::test]
#[ignore = "needs redis-server: ./build.sh redis_test"]
async fn a_node_forgets_rooms_nobody_there_needs() {
    let port = free_port();
    let _redis = start_redis(port).await;
    let redis = format!("redis://127.0.0.1:{port}/");
    let addr = free_addr().await;
    let limits = HistoryLimits {
        max_total_bytes: 100,
        ..HistoryLimits::default()
    };
    let node = Node::start_with(addr, &redis, "t8", limits).await;
    let rooms = &node.rooms;
    let (_client, mut seen) = client(&url(addr), "last", None).await;
    node.until_members("last", 1).await;
    for i in 0..2_000 {
        rooms
            .publish(&format!("@{i}"), MsgEvent::Binary(vec![0; 10]))
            .unwrap();
    }
    node.publish("last", 1..=1);
    // The node heard every room's message before this one (one channel, in order).
    expect(&mut seen, 1..=1).await;
    assert!(
        rooms.history_rooms() <= 12,
        "{} rooms held",
        rooms.history_rooms()
    );
    node.stop().await;
}

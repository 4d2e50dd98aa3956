//! Scale-out over Redis: two chat_server processes sharing one room through a real
//! redis-server on a free port, two native clients on each. Every broadcast reaches every
//! client exactly once, a whisper (`send_to`) crosses nodes, and after redis-server is
//! killed and restarted every message sent after the reconnection arrives exactly once;
//! the messages sent during the outage are counted (at most once: lost or delivered once).
//! And, with the backplane in this process, an envelope over a member's size cap is
//! neither published nor decoded by that member.
//!
//! Needs redis-server (REDIS_SERVER_BIN, or on PATH) and the chat server built with the
//! redis feature (CHAT_SERVER, or built here with cargo). `./build.sh test` runs it (its
//! `redis_test` step); by hand:
//! `cargo test --features redis --test redis -- --ignored --nocapture`.
#![cfg(feature = "redis")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, start_redis, until, Process};
use tokio::sync::mpsc;
use unisock::{MsgEvent, WebSocket};

/// The chat server binary: CHAT_SERVER, or the example built here with the redis feature.
fn chat_server_bin() -> String {
    common::example_bin("chat_server", &["redis"], "CHAT_SERVER")
}

/// A chat server process on a free port sharing the room over `redis_url`.
struct Node {
    _process: Process,
    ws_url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn start_node(bin: &str, redis_url: &str) -> Node {
    let www = concat!(env!("CARGO_MANIFEST_DIR"), "/www");
    let mut child = Command::new(bin)
        .args(["127.0.0.1:0", www, "--redis", redis_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let process = Process(child);
    let lines = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn({
        let lines = lines.clone();
        move || {
            for line in stderr.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        }
    });
    // `listening on http://ADDR` comes once the backplane is subscribed and the port bound.
    let rx = common::announced_address(stdout);
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("chat server did not start: {:?}", lines.lock().unwrap()));
    Node {
        _process: process,
        ws_url: format!("ws://{addr}/ws"),
        stderr: lines,
    }
}

/// A chat participant: its id, and every text line it received, in order.
struct Client {
    name: &'static str,
    ws: WebSocket,
    id: String,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Client {
    async fn join(name: &'static str, node: &Node) -> Client {
        let ws = WebSocket::new();
        let (tx, mut lines) = mpsc::unbounded_channel();
        ws.on_message(move |msg| {
            if let MsgEvent::Text(t) = msg {
                let _ = tx.send(t);
            }
        });
        common::with_timeout(ws.open(&node.ws_url, &[]))
            .await
            .unwrap();
        tokio::spawn({
            let ws = ws.clone();
            async move { ws.read().await }
        });
        let welcome = common::with_timeout(lines.recv()).await.unwrap();
        let id = welcome
            .strip_prefix("welcome, you are ")
            .unwrap_or_else(|| panic!("first line was {welcome:?}"))
            .to_string();
        Client {
            name,
            ws,
            id,
            lines,
            seen: Vec::new(),
        }
    }

    fn say(&self, text: &str) {
        self.ws.send_text(text).unwrap();
    }

    /// Takes in what arrived so far (without waiting).
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Receives until `line` arrives, failing after `secs` seconds.
    async fn wait_for(&mut self, line: &str, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !self.seen.iter().any(|l| l == line) {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(l)) => self.seen.push(l),
                _ => panic!("{} never received {line:?}", self.name),
            }
        }
    }

    /// Whether `line` arrived within `within` (receiving meanwhile).
    async fn got_within(&mut self, pred: impl Fn(&str) -> bool, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.seen.iter().any(|l| pred(l)) {
                return true;
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(l)) => self.seen.push(l),
                _ => return false,
            }
        }
    }

    fn count(&self, line: &str) -> usize {
        self.seen.iter().filter(|l| *l == line).count()
    }
}

fn said(from: &Client, text: &str) -> String {
    format!("{} says, '{text}'", from.id)
}

/// Every client says `n` numbered lines tagged `phase`; every client then receives all of
/// them. To prove nothing is duplicated, each client then says `phase-end` and everyone
/// waits for all the ends: a duplicate (an echo through Redis) would have been published
/// before those and arrived first.
async fn everyone_hears_everyone(clients: &mut [Client], phase: &str, n: usize) {
    for c in clients.iter() {
        for i in 0..n {
            c.say(&format!("{phase}-{}-{i}", c.name));
        }
    }
    let expected: Vec<String> = clients
        .iter()
        .flat_map(|c| (0..n).map(move |i| said(c, &format!("{phase}-{}-{i}", c.name))))
        .collect();
    for c in clients.iter_mut() {
        for line in &expected {
            c.wait_for(line, 20).await;
        }
    }
    let ends: Vec<String> = clients
        .iter()
        .map(|c| said(c, &format!("{phase}-end")))
        .collect();
    for c in clients.iter() {
        c.say(&format!("{phase}-end"));
    }
    for c in clients.iter_mut() {
        for end in &ends {
            c.wait_for(end, 20).await;
        }
        for line in expected.iter().chain(&ends) {
            assert_eq!(
                c.count(line),
                1,
                "{} received {line:?} {} times",
                c.name,
                c.count(line)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: run by ./build.sh test (redis_test), or with --ignored"]
async fn two_chat_servers_share_one_room_and_survive_a_redis_restart() {
    let started = Instant::now();
    let bin = chat_server_bin();
    let port = free_port();
    let redis_url = format!("redis://127.0.0.1:{port}/");
    let redis = start_redis(port).await;
    let node_a = start_node(&bin, &redis_url);
    let node_b = start_node(&bin, &redis_url);

    let mut clients = vec![
        Client::join("a1", &node_a).await,
        Client::join("a2", &node_a).await,
        Client::join("b1", &node_b).await,
        Client::join("b2", &node_b).await,
    ];
    let ids: Vec<&str> = clients.iter().map(|c| c.id.as_str()).collect();
    let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        4,
        "ids are not unique across nodes: {ids:?}"
    );
    let node_of = |id: &str| unisock::backplane::node_of(id).map(str::to_string);
    assert!(ids.iter().all(|id| node_of(id).is_some()), "{ids:?}");
    assert_eq!(node_of(ids[0]), node_of(ids[1]));
    assert_ne!(node_of(ids[0]), node_of(ids[2]), "two nodes, one node id");

    // 1. Broadcasts: every line said on either node reaches all 4 clients exactly once.
    everyone_hears_everyone(&mut clients, "p1", 25).await;

    // 2. A whisper from a1 (node A) to b2 (node B) crosses nodes, and reaches b2 only.
    let whisper = format!("{} whispers, 'psst'", clients[0].id);
    clients[0].say(&format!("/msg {} psst", clients[3].id));
    clients[3].wait_for(&whisper, 10).await;
    clients[3].say("p2-end");
    let end = said(&clients[3], "p2-end");
    for c in clients.iter_mut() {
        c.wait_for(&end, 10).await;
    }
    let heard: Vec<usize> = clients.iter().map(|c| c.count(&whisper)).collect();
    assert_eq!(heard, [0, 0, 0, 1], "who heard the whisper");

    // 3. Outage: kill redis-server. Lines said meanwhile still reach the local room.
    drop(redis);
    let outage_n = 20;
    for i in 0..outage_n {
        clients[0].say(&format!("out-{i}"));
    }
    let outage: Vec<String> = (0..outage_n)
        .map(|i| said(&clients[0], &format!("out-{i}")))
        .collect();
    for c in clients[..2].iter_mut() {
        for line in &outage {
            c.wait_for(line, 10).await;
        }
    }
    // Both servers report it (a failed publish, a lost subscription).
    for (name, node) in [("A", &node_a), ("B", &node_b)] {
        until(20, &format!("node {name} to report the outage"), || {
            node.stderr
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with("backplane error:"))
        })
        .await;
    }

    // 4. Restart redis-server on the same port; probe until both directions work again.
    let _redis = start_redis(port).await;
    for (from, to) in [(0, 2), (2, 0)] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let tag = format!("probe-{}", clients[from].name);
        for k in 0.. {
            assert!(
                Instant::now() < deadline,
                "the backplane never came back ({tag})"
            );
            clients[from].say(&format!("{tag}-{k}"));
            let prefix = format!("{} says, '{tag}-", clients[from].id);
            let (before, after) = clients.split_at_mut(from.max(to));
            let receiver = if to < from {
                &mut before[to]
            } else {
                &mut after[0]
            };
            if receiver
                .got_within(|l| l.starts_with(&prefix), Duration::from_millis(200))
                .await
            {
                break;
            }
        }
    }

    // 5. After the reconnection nothing is lost or duplicated.
    everyone_hears_everyone(&mut clients, "p3", 25).await;
    for c in clients.iter_mut() {
        c.drain();
    }
    for c in &clients {
        for line in &outage {
            assert!(c.count(line) <= 1, "{} got {line:?} twice", c.name);
        }
    }
    let delivered = |c: &Client| outage.iter().filter(|l| c.count(l) == 1).count();
    let (b1, b2) = (delivered(&clients[2]), delivered(&clients[3]));
    println!(
        "redis outage: {outage_n} lines said on node A while redis-server was down; \
         node B's clients got {b1} and {b2}, so {} and {} were lost (at most once); \
         node A's clients got all {outage_n}. Test took {:.1} s.",
        outage_n - b1,
        outage_n - b2,
        started.elapsed().as_secs_f64()
    );
}

/// A broadcast of `len` bytes of text.
fn sized(len: usize) -> unisock::backplane::Envelope {
    unisock::backplane::Envelope::Broadcast {
        payload: MsgEvent::Text("x".repeat(len)),
        ids: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: run by ./build.sh test (redis_test), or with --ignored"]
async fn an_envelope_over_the_cap_is_refused_and_the_subscription_goes_on() {
    use futures_util::StreamExt;
    use unisock::backplane::{Backplane, BackplaneEvent, RedisBackplane};

    let port = free_port();
    let _redis = start_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}/");
    let sender = RedisBackplane::connect_with_prefix(&url, "caps")
        .await
        .unwrap();
    let capped = RedisBackplane::connect_with_prefix(&url, "caps")
        .await
        .unwrap()
        .with_max_envelope_size(1024);
    let mut received = capped.subscribe();
    assert!(matches!(
        common::with_timeout(received.next()).await,
        Some(BackplaneEvent::Up)
    ));

    // Redis hands them over in order: the refusal is reported before the next one.
    sender.publish(sized(2000)).await.unwrap();
    sender.publish(sized(10)).await.unwrap();
    match common::with_timeout(received.next()).await {
        Some(BackplaneEvent::Dropped { count: 1, error }) => {
            assert!(
                error.to_string().contains("over the 1024-byte cap"),
                "{error}"
            );
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    match common::with_timeout(received.next()).await {
        Some(BackplaneEvent::Message(envelope)) => assert_eq!(envelope, sized(10)),
        other => panic!("expected the small envelope, got {other:?}"),
    }

    // Nor does the capped member publish what its cap refuses.
    let err = capped.publish(sized(2000)).await.unwrap_err();
    assert!(err.to_string().contains("not published"), "{err}");
}

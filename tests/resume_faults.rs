//! The resumable-delivery guarantee under faults: 3 `rooms_node` processes sharing a real
//! redis-server, room clients spread over them (each behind a TCP relay the test can cut;
//! some in headless-Chromium pages when `ROOMS_PAGE_PKG` is set),
//! messages published through random nodes into 10 rooms, while one node is killed with
//! SIGKILL and restarted, Redis is restarted with persistence on and then with it off,
//! a third of the clients lose their connection every second, and two clients stay away
//! past the history's retention.
//!
//! Passes when, for every client and room, the messages seen are in order and once, every
//! offset skipped is in exactly one gap with its exact range, only the clients kept away
//! see gaps other than the new epoch of the Redis that lost its data, every client ends at
//! the room's head, and history reads stay a small multiple of rooms x nodes.
//!
//! Needs redis-server (REDIS_SERVER_BIN, or on PATH); `./build.sh redis_test` runs it, and
//! `./build.sh soak` at full size. `RESUME_FAULTS_SECS` (default 12) sets how long messages
//! are published, `RESUME_FAULTS_CLIENTS` (12) and `RESUME_FAULTS_RATE` (400 a second);
//! `RESUME_FAULTS_PAGES` (2) how many pages, with `ROOMS_PAGE_PKG` the directory holding
//! examples/rooms_page bound by wasm-bindgen (`./build.sh redis_test` builds it).
#![cfg(feature = "redis")]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{example_bin, free_port, start_redis_with, Process};
use tokio::net::{TcpListener, TcpStream};
use unisock::resume::{Gap, GapReason, Position, RoomClient, SUBPROTOCOL};
use unisock::{ReadyState, Reconnect, WebSocket};

const NODES: usize = 3;
const ROOMS: usize = 10;
/// Clients (`RESUME_FAULTS_CLIENTS`, default 12).
fn clients_count() -> usize {
    env_or("RESUME_FAULTS_CLIENTS", 12)
}
/// Messages a room keeps in Redis (`MAXLEN ~`, fine-grained by the test's
/// `stream-node-max-entries`) and in each node's copy.
const KEEP: usize = 100;
/// Payload bytes each node's copy of the history keeps over all rooms: about 40 of the
/// test's messages per room, so the cap binds while a room keeps `KEEP` in Redis.
const NODE_CAP: usize = 2_000;
/// Messages published per second over all rooms (`RESUME_FAULTS_RATE`, default 400).
fn rate() -> u64 {
    env_or("RESUME_FAULTS_RATE", 400)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const PREFIX: &str = "faults";

fn room(i: usize) -> String {
    format!("room-{i}")
}

/// A `rooms_node` process on a fixed port.
struct Node {
    process: Option<Process>,
    addr: SocketAddr,
}

impl Node {
    fn start(addr: SocketAddr, redis: &str) -> Node {
        let bin = example_bin("rooms_node", &["redis"], "ROOMS_NODE");
        let mut child = Command::new(bin)
            .args([
                &addr.to_string(),
                redis,
                "--prefix",
                PREFIX,
                "--max-messages",
                &KEEP.to_string(),
                "--max-total-bytes",
                &NODE_CAP.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let announced = common::announced_address(child.stdout.take().unwrap());
        let process = Process(child);
        announced
            .recv_timeout(Duration::from_secs(20))
            .expect("rooms_node did not start");
        Node {
            process: Some(process),
            addr,
        }
    }

    /// SIGKILL, then a new process on the same port.
    fn kill_and_restart(&mut self, redis: &str) {
        drop(self.process.take());
        *self = Node::start(self.addr, redis);
    }
}

/// Redis on a fixed port: persistent (append-only file, synced on every write) in `dir`,
/// or not at all.
async fn redis(port: u16, dir: Option<&std::path::Path>) -> Process {
    // Small stream nodes, so MAXLEN ~ trims close to KEEP.
    let mut args = vec!["--stream-node-max-entries", "10"];
    let dir = dir.map(|d| d.to_str().unwrap().to_string());
    match &dir {
        Some(dir) => args.extend([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--dir",
            dir,
        ]),
        None => args.extend(["--appendonly", "no", "--save", ""]),
    }
    start_redis_with(port, &args).await
}

/// A TCP relay in front of one node for one client: cut its connection, or keep it out.
struct Relay {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    closed_until: Arc<Mutex<Option<Instant>>>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links = Arc::new(Mutex::new(Vec::new()));
        let closed_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let (all, closed) = (links.clone(), closed_until.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if closed.lock().unwrap().is_some_and(|t| Instant::now() < t) {
                    continue; // dropped: the client tries again later
                }
                all.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Relay {
            addr,
            links,
            closed_until,
        }
    }

    /// Cuts the client's connection (both TCP halves drop at once).
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Cuts it and refuses to relay for `away`.
    fn keep_out(&self, away: Duration) {
        *self.closed_until.lock().unwrap() = Some(Instant::now() + away);
        self.cut();
    }
}

/// One client's view of one room, checked as events arrive (nothing is kept per event, so
/// the soak's million deliveries cost no memory): in order, once, gaps exact.
#[derive(Default)]
struct Checker {
    /// The last position accounted for (delivered, or the end of a gap).
    at: Option<Position>,
    /// After a gap to the end of an epoch: the next event starts another epoch at 1.
    new_epoch: bool,
    reasons: Vec<GapReason>,
    events: u64,
    /// The first violation.
    error: Option<String>,
}

impl Checker {
    fn fail(&mut self, why: String) {
        self.error.get_or_insert(why);
    }

    fn message(&mut self, p: Position) {
        self.events += 1;
        match self.at {
            Some(prev) if self.new_epoch && (p.epoch == prev.epoch || p.offset != 1) => {
                self.fail(format!("{p} after the end of {prev}"));
            }
            Some(prev)
                if !self.new_epoch && (p.epoch, p.offset) != (prev.epoch, prev.offset + 1) =>
            {
                self.fail(format!("{p} after {prev}"));
            }
            _ => {}
        }
        self.new_epoch = false;
        self.at = Some(p);
    }

    fn gap(&mut self, gap: &Gap) {
        self.events += 1;
        self.reasons.push(gap.reason);
        let Some(prev) = self.at else {
            return self.fail(format!("{gap:?} before any position"));
        };
        let starts_right = if self.new_epoch && gap.to.is_some() {
            gap.epoch != prev.epoch && gap.from == 1
        } else {
            !self.new_epoch && (gap.epoch, gap.from) == (prev.epoch, prev.offset + 1)
        };
        if !starts_right || gap.to.is_some_and(|to| to < gap.from) {
            self.fail(format!("{gap:?} after {prev}"));
        }
        match gap.to {
            Some(to) => {
                self.at = Some(Position {
                    epoch: gap.epoch,
                    offset: to,
                });
                self.new_epoch = false;
            }
            None => self.new_epoch = true,
        }
    }
}

/// Each client's checkers, by room.
type Log = Arc<Mutex<HashMap<String, Checker>>>;

async fn client(relay: &Relay) -> (RoomClient, Log) {
    let ws = WebSocket::new();
    ws.set_reconnect(Some(
        Reconnect::default()
            .delays(Duration::from_millis(10), Duration::from_millis(200))
            .max_attempts(None),
    ));
    let rooms = RoomClient::new(&ws);
    let log: Log = Arc::default();
    let (messages, gaps) = (log.clone(), log.clone());
    rooms.on_message(move |room, at, _| {
        messages
            .lock()
            .unwrap()
            .entry(room.to_string())
            .or_default()
            .message(at);
    });
    rooms.on_gap(move |gap| {
        gaps.lock()
            .unwrap()
            .entry(gap.room.clone())
            .or_default()
            .gap(&gap);
    });
    for i in 0..ROOMS {
        rooms.join(&room(i)).unwrap();
    }
    ws.open(&format!("ws://{}/", relay.addr), &[SUBPROTOCOL])
        .await
        .unwrap();
    tokio::spawn(async move { ws.read().await });
    (rooms, log)
}

/// Room clients in headless-Chromium pages (examples/rooms_page, through
/// tests/e2e/rooms_pages.mjs), each behind its own relay like the native clients.
struct Pages {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: std::io::BufReader<std::process::ChildStdout>,
    /// Each page's checkers, filled from its log by [`Pages::collect`].
    logs: Vec<Log>,
}

impl Pages {
    /// `RESUME_FAULTS_PAGES` pages (default 2) when `ROOMS_PAGE_PKG` names the bound page
    /// module (`./build.sh redis_test` sets both), otherwise none.
    fn count() -> usize {
        match std::env::var_os("ROOMS_PAGE_PKG") {
            Some(_) => env_or("RESUME_FAULTS_PAGES", 2),
            None => 0,
        }
    }

    /// Opens a page per relay; returns once each page's first connection opened.
    fn start(relays: &[Relay]) -> Pages {
        let pkg = std::env::var("ROOMS_PAGE_PKG").unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/rooms_pages.mjs");
        let rooms: Vec<String> = (0..ROOMS).map(room).collect();
        let mut child = Command::new("node")
            .arg(script)
            .arg(pkg)
            .arg(rooms.join(","))
            .args(relays.iter().map(|r| format!("ws://{}/", r.addr)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs tests/e2e/rooms_pages.mjs");
        let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        let mut pages = Pages {
            child,
            stdin,
            out: std::io::BufReader::new(stdout),
            logs: (0..relays.len()).map(|_| Log::default()).collect(),
        };
        assert_eq!(pages.line(), "ready", "the pages opened");
        pages
    }

    fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        let n = tokio::task::block_in_place(|| self.out.read_line(&mut line)).unwrap();
        assert!(n > 0, "rooms_pages.mjs ended (its reason is above)");
        line.trim_end().to_string()
    }

    /// The script's answer to `command`: its lines up to `END`, split into words.
    fn ask(&mut self, command: &str) -> Vec<Vec<String>> {
        use std::io::Write;
        writeln!(self.stdin, "{command}").unwrap();
        let mut answer = Vec::new();
        loop {
            let line = self.line();
            if line == "END" {
                return answer;
            }
            answer.push(line.split(' ').map(str::to_string).collect());
        }
    }

    /// Each page's position in each room it holds one in.
    fn positions(&mut self) -> Vec<HashMap<String, Position>> {
        let mut out = vec![HashMap::new(); self.logs.len()];
        for w in self.ask("positions") {
            let (page, epoch, offset) = (w[1].parse::<usize>(), w[3].parse(), w[4].parse());
            let at = Position {
                epoch: epoch.unwrap(),
                offset: offset.unwrap(),
            };
            out[page.unwrap()].insert(w[2].clone(), at);
        }
        out
    }

    /// Feeds what the pages logged since the last call to their checkers.
    fn collect(&mut self) {
        for w in self.ask("events") {
            let n = |i: usize| w[i].parse::<u64>().unwrap();
            let mut log = self.logs[w[1].parse::<usize>().unwrap()].lock().unwrap();
            let checker = log.entry(w[3].clone()).or_default();
            match w[2].as_str() {
                "m" => checker.message(Position {
                    epoch: n(4),
                    offset: n(5),
                }),
                "g" => checker.gap(&Gap {
                    room: w[3].clone(),
                    reason: match w[4].as_str() {
                        "trimmed" => GapReason::Trimmed,
                        "expired" => GapReason::Expired,
                        "epoch" => GapReason::NewEpoch,
                        other => panic!("gap reason {other}"),
                    },
                    epoch: n(5),
                    from: n(6),
                    to: (w[7] != "-").then(|| n(7)),
                }),
                other => panic!("page event {other}"),
            }
        }
    }
}

impl Drop for Pages {
    /// Asks the script to close the browser (killed, it would leave Chromium running), and
    /// kills it if it has not ended within 10 s.
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each room's head in Redis: (epoch, last offset).
async fn heads(redis: &str) -> HashMap<String, Position> {
    let mut conn = redis::Client::open(redis)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut out = HashMap::new();
    for i in 0..ROOMS {
        let r = room(i);
        let epoch: Option<u64> = redis::cmd("GET")
            .arg(format!("{PREFIX}:room:{r}:epoch"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let seq: Option<u64> = redis::cmd("GET")
            .arg(format!("{PREFIX}:room:{r}:seq"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if let (Some(epoch), Some(offset)) = (epoch, seq) {
            out.insert(r, Position { epoch, offset });
        }
    }
    out
}

/// Asks a node for `history_bytes=N reads=N errors=N`.
async fn stats(node: SocketAddr) -> HashMap<String, u64> {
    try_stats(node).await.expect("the node answers `stats`")
}

/// [`stats`], or `None` if the node cannot be reached (while it restarts).
async fn try_stats(node: SocketAddr) -> Option<HashMap<String, u64>> {
    let ws = WebSocket::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    ws.on_message(move |m| {
        let _ = tx.send(m);
    });
    ws.open(&format!("ws://{node}/"), &[]).await.ok()?;
    let reader = ws.clone();
    tokio::spawn(async move { reader.read().await });
    ws.send_text("stats").ok()?;
    let answer = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .ok()??;
    let _ = ws.close(1000, "");
    Some(
        answer
            .txt()?
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect(),
    )
}

/// Samples every node's history bytes every 100 ms into the peak it returns.
fn watch_history(nodes: Vec<SocketAddr>) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(0));
    let seen = peak.clone();
    let watcher = tokio::spawn(async move {
        loop {
            for &node in &nodes {
                if let Some(s) = try_stats(node).await {
                    seen.fetch_max(s["history_bytes"], Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (peak, watcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./build.sh redis_test"]
async fn every_message_is_delivered_once_in_order_or_reported_in_a_gap() {
    let (secs, clients_n, rate) = (env_or("RESUME_FAULTS_SECS", 12u64), clients_count(), rate());
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let dir = std::env::temp_dir().join(format!("unisock-resume-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis_server = Some(redis(port, Some(&dir)).await);
    let mut nodes: Vec<Node> = (0..NODES)
        .map(|_| Node::start(format!("127.0.0.1:{}", free_port()).parse().unwrap(), &url))
        .collect();
    let mut relays = Vec::new();
    let mut clients = Vec::new();
    for i in 0..clients_n {
        let relay = Relay::start(nodes[i % NODES].addr).await;
        clients.push(client(&relay).await);
        relays.push(relay);
    }
    // The pages: after the native clients, on the nodes in turn, cut like them.
    let pages_n = Pages::count();
    let page_relays = relays.len()..relays.len() + pages_n;
    for i in 0..pages_n {
        relays.push(Relay::start(nodes[i % NODES].addr).await);
    }
    let mut pages = (pages_n > 0).then(|| Pages::start(&relays[page_relays]));
    // Publishers: one plain socket per node, reconnecting, with a buffer while it is down.
    let mut publishers = Vec::new();
    for node in &nodes {
        let ws = WebSocket::new();
        ws.set_reconnect(Some(
            Reconnect::default()
                .delays(Duration::from_millis(10), Duration::from_millis(100))
                .max_attempts(None)
                .buffer(1 << 20),
        ));
        ws.open(&format!("ws://{}/", node.addr), &[]).await.unwrap();
        let reader = ws.clone();
        tokio::spawn(async move { reader.read().await });
        publishers.push(ws);
    }

    let (history_peak, watcher) = watch_history(nodes.iter().map(|n| n.addr).collect());
    let started = Instant::now();
    let mut sent = 0u64;
    let mut step = 0;
    let mut last_cuts = 0;
    let kept_out = [0usize, 1];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while started.elapsed() < Duration::from_secs(secs) {
        // Publish at the rate through random nodes, into rooms in turn.
        let due = started.elapsed().as_millis() as u64 * rate / 1000;
        while sent < due {
            let node = (next() % NODES as u64) as usize;
            let publisher = &publishers[node];
            if publisher.ready_state() != ReadyState::Closed {
                let _ =
                    publisher.send_text(&format!("pub {} m{sent}", room(sent as usize % ROOMS)));
            }
            sent += 1;
        }
        let t = started.elapsed().as_secs_f64() / secs as f64; // 0..1 of the run
        match step {
            0 if t > 0.15 => {
                nodes[0].kill_and_restart(&url);
                step += 1;
            }
            1 if t > 0.3 => {
                for &i in &kept_out {
                    relays[i].keep_out(Duration::from_secs_f64(secs as f64 * 0.3));
                }
                step += 1;
            }
            2 if t > 0.45 => {
                // Redis restarts with its data (append-only file, synced on every write).
                drop(redis_server.take());
                redis_server = Some(redis(port, Some(&dir)).await);
                step += 1;
            }
            3 if t > 0.7 => {
                // Redis restarts without its data: every room begins a new epoch.
                drop(redis_server.take());
                redis_server = Some(redis(port, None).await);
                step += 1;
            }
            _ => {}
        }
        // A third of the clients (never the ones kept out) lose their connection each second.
        let second = started.elapsed().as_secs();
        if second > last_cuts {
            last_cuts = second;
            for (i, relay) in relays.iter().enumerate() {
                if !kept_out.contains(&i) && next() % 3 == 0 {
                    relay.cut();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(step, 4, "every fault happened");

    // Everyone catches up with every room's head (read again each time: the nodes'
    // publish queues may still be draining when publishing stops).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let heads = heads(&url).await;
        assert_eq!(
            heads.len(),
            ROOMS,
            "every room was published to after the last restart"
        );
        let mut positions: Vec<HashMap<String, Position>> = clients
            .iter()
            .map(|(c, _)| {
                heads
                    .keys()
                    .filter_map(|r| Some((r.clone(), c.position(r)?)))
                    .collect()
            })
            .collect();
        if let Some(pages) = &mut pages {
            positions.extend(pages.positions());
        }
        let behind: Vec<(usize, String)> = positions
            .iter()
            .enumerate()
            .flat_map(|(i, at)| {
                heads
                    .iter()
                    .filter(move |(r, h)| at.get(*r) != Some(*h))
                    .map(move |(r, _)| (i, r.clone()))
            })
            .collect();
        if behind.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let positions: Vec<_> = behind
                .iter()
                .take(5)
                .map(|(i, r)| (i, r, positions[*i].get(r), heads[r]))
                .collect();
            panic!(
                "{} client rooms behind the heads, e.g. {positions:?}",
                behind.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut logs: Vec<Log> = clients.iter().map(|(_, log)| log.clone()).collect();
    if let Some(pages) = &mut pages {
        pages.collect();
        logs.extend(pages.logs.iter().cloned());
    }
    let (mut gaps_of_kept_out, mut new_epochs, mut delivered) = (0, 0, 0);
    for (i, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        for r in 0..ROOMS {
            let room = room(r);
            let Some(checker) = log.get(&room) else {
                continue; // nothing arrived: the final positions say whether that is right
            };
            assert_eq!(checker.error, None, "client {i} in {room}");
            delivered += checker.events;
            let reasons = &checker.reasons;
            new_epochs += reasons
                .iter()
                .filter(|r| **r == GapReason::NewEpoch)
                .count();
            if kept_out.contains(&i) {
                gaps_of_kept_out += reasons
                    .iter()
                    .filter(|r| **r != GapReason::NewEpoch)
                    .count();
            } else {
                assert!(
                    reasons.iter().all(|r| *r == GapReason::NewEpoch),
                    "client {i} in {room}: {reasons:?}"
                );
            }
        }
    }
    assert!(
        gaps_of_kept_out > 0,
        "the clients kept out past the retention were told of gaps"
    );
    // Every client in every room was told once that Redis lost its data.
    assert_eq!(new_epochs, logs.len() * ROOMS, "new-epoch gaps");

    watcher.abort();
    let mut reads = 0;
    for node in &nodes {
        reads += stats(node.addr).await["reads"];
    }
    let history_peak = history_peak.load(Ordering::Relaxed) as usize;
    assert!(
        history_peak <= NODE_CAP,
        "a node's history held {history_peak} B, over its cap of {NODE_CAP}"
    );
    assert!(
        history_peak >= NODE_CAP / 2,
        "the nodes' history never came near the cap ({history_peak} B of {NODE_CAP})"
    );
    let joins = (logs.len() * ROOMS) as u64 * (secs + 4);
    println!(
        "resume faults: {sent} messages published in {secs} s, {delivered} events seen by \
         {clients_n} clients and {pages_n} pages; {reads} history reads on {NODES} nodes for {ROOMS} rooms; \
         {new_epochs} new-epoch gaps; {gaps_of_kept_out} other gaps, all for the clients kept out; \
         history per node at most {history_peak} B (cap {NODE_CAP})"
    );
    assert!(
        reads < joins / 4,
        "{reads} history reads: not one per client"
    );
    drop(redis_server);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Broadcast fan-out throughput: how many broadcasts per second reach every one of 1,000
//! sockets, in one registry (in process), across 2 registries sharing a Redis backplane,
//! and the same two with resumable delivery on (`unisock::resume::Rooms` in one process,
//! `RedisRooms` on two nodes: every message gets a position and is kept in the room's
//! history; the clients are `RoomClient`s). Prints one JSON line.
//!
//! `cargo run --release --features redis --example fanout_bench -- [--sockets 1000]
//! [--messages 5000] [--redis redis://127.0.0.1:6379/]`
//!
//! Without `--redis` it starts `redis-server` (REDIS_SERVER_BIN, or on PATH) on a free port
//! and stops it after. Both "nodes" are registries in this process, each with its own
//! Redis connections, so every cross-node broadcast goes through Redis: node A delivers to
//! its half of the sockets at once and publishes once; node B receives it from Redis and
//! delivers to its half. The clients (native unisock sockets over 127.0.0.1) run in the
//! same process too. Broadcasts are sent in windows of 1,000 ahead of the slowest receiver,
//! so queues stay bounded. Needs `ulimit -n` above twice the socket count.
// Native only. `cargo test --target wasm32-unknown-unknown` (what `wasm-pack test` runs)
// builds every example, so on wasm32 this one is an empty module, without a `main`.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use unisock::backplane::RedisBackplane;
use unisock::resume::{HistoryLimits, RedisRooms, RoomClient, Rooms, SUBPROTOCOL};
use unisock::{MsgEvent, WebSocket, WebSockets};

/// How many broadcasts may be in flight ahead of the receivers.
const WINDOW: u64 = 1000;

struct Args {
    sockets: usize,
    messages: u64,
    redis: Option<String>,
}

fn args() -> Result<Args, String> {
    let usage = "usage: fanout_bench [--sockets N] [--messages M] [--redis URL]";
    let mut out = Args {
        sockets: 1000,
        messages: 5_000,
        redis: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        match flag.as_str() {
            "--sockets" => out.sockets = value.parse().map_err(|_| usage)?,
            "--messages" => out.messages = value.parse().map_err(|_| usage)?,
            "--redis" => out.redis = Some(value),
            _ => return Err(usage.into()),
        }
    }
    Ok(out)
}

/// Kills the redis-server this bench started.
struct Redis(std::process::Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_redis() -> Result<(Redis, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
    let child = std::process::Command::new(&bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {bin}: {e} (install redis-server or pass --redis URL)"))?;
    let redis = Redis(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((redis, format!("redis://127.0.0.1:{port}/")))
}

/// Serves `room` on a free port; returns its ws:// URL.
async fn serve(room: &WebSockets) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let room = room.clone();
    tokio::spawn(async move {
        room.serve(listener, |req| {
            (req.uri().path() == "/ws").then(WebSocket::new)
        })
        .await
    });
    Ok(format!("ws://{addr}/ws"))
}

/// Serves rooms on a free port to clients that offer the subprotocol (`attach` hands each
/// socket to them); returns the URL and the registry holding the sockets.
async fn serve_rooms(
    attach: impl Fn(&WebSocket) + Send + Sync + 'static,
) -> Result<(String, WebSockets), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let registry = WebSockets::new();
    registry.on_upgrade(|pending| {
        Rooms::select(pending);
    });
    let serving = registry.clone();
    tokio::spawn(async move {
        serving
            .serve(listener, move |_| {
                let ws = WebSocket::new();
                attach(&ws);
                Some(ws)
            })
            .await
    });
    Ok((format!("ws://{addr}/ws"), registry))
}

/// Opens `n` room clients in "lobby" to `url`, all counting into `received`.
async fn room_clients(
    url: &str,
    n: usize,
    received: &Arc<Received>,
) -> Result<Vec<RoomClient>, String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let ws = WebSocket::new();
        let client = RoomClient::new(&ws);
        let received = received.clone();
        client.on_message(move |_, _, _| {
            received.total.fetch_add(1, Ordering::Relaxed);
            received.changed.notify_one();
        });
        client.join("lobby").map_err(|e| e.to_string())?;
        ws.open(url, &[SUBPROTOCOL])
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move { ws.read().await });
        out.push(client);
    }
    Ok(out)
}

/// Counts every message every client receives.
#[derive(Default)]
struct Received {
    total: AtomicU64,
    changed: Notify,
}

/// Opens `n` clients to `url`, all counting into `received`.
async fn clients(url: &str, n: usize, received: &Arc<Received>) -> Result<Vec<WebSocket>, String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let ws = WebSocket::new();
        let received = received.clone();
        ws.on_message(move |_| {
            received.total.fetch_add(1, Ordering::Relaxed);
            received.changed.notify_one();
        });
        ws.open(url, &[]).await.map_err(|e| e.to_string())?;
        tokio::spawn({
            let ws = ws.clone();
            async move { ws.read().await }
        });
        out.push(ws);
    }
    Ok(out)
}

async fn until_len(room: &WebSockets, n: usize) {
    while room.len() < n {
        tokio::task::yield_now().await;
    }
}

/// Broadcasts `messages` texts from `from` and returns broadcasts per second, counted until
/// all `sockets` receivers have every message.
async fn run(from: &WebSockets, sockets: usize, messages: u64, received: &Received) -> f64 {
    let send = |text: &str| {
        from.broadcast_text(text, None);
    };
    run_with(send, sockets, messages, received).await
}

/// As [`run`], with `send` sending each message to every receiver.
async fn run_with(send: impl Fn(&str), sockets: usize, messages: u64, received: &Received) -> f64 {
    let sockets = sockets as u64;
    received.total.store(0, Ordering::Relaxed);
    let payload = "x".repeat(48);
    let started = Instant::now();
    for i in 0..messages {
        if i >= WINDOW {
            let behind = (i - WINDOW) * sockets;
            while received.total.load(Ordering::Relaxed) < behind {
                received.changed.notified().await;
            }
        }
        send(&format!("{i:08} {payload}"));
    }
    while received.total.load(Ordering::Relaxed) < messages * sockets {
        // Checked again after a timeout: notify_one may coalesce wake-ups.
        let _ = tokio::time::timeout(Duration::from_millis(50), received.changed.notified()).await;
    }
    messages as f64 / started.elapsed().as_secs_f64()
}

async fn bench(args: Args) -> Result<String, String> {
    let (n, m) = (args.sockets, args.messages);

    // In process: one registry, every socket.
    let received = Arc::new(Received::default());
    let room = WebSockets::new();
    let _local = clients(&serve(&room).await?, n, &received).await?;
    until_len(&room, n).await;
    let in_process = run(&room, n, m, &received).await;
    room.shutdown().await;

    // In process with resumable delivery: the same fan-out through rooms.
    let received = Arc::new(Received::default());
    let rooms = Rooms::new(HistoryLimits::default());
    let serving = rooms.clone();
    let (url, registry) = serve_rooms(move |ws| serving.attach(ws, |_, _| {})).await?;
    let _room_clients = room_clients(&url, n, &received).await?;
    while rooms.members("lobby") < n {
        tokio::task::yield_now().await;
    }
    let publish = |text: &str| {
        rooms.publish("lobby", MsgEvent::Text(text.into()));
    };
    let resumable = run_with(publish, n, m, &received).await;
    let history_bytes = rooms.history_bytes();
    registry.shutdown().await;

    // Two registries over Redis, half the sockets on each.
    let (_redis, url) = match args.redis {
        Some(url) => (None, url),
        None => {
            let (redis, url) = start_redis().await?;
            (Some(redis), url)
        }
    };
    let prefix = format!("fanout-bench-{}", std::process::id());
    let connect = || async {
        RedisBackplane::connect_with_prefix(&url, &prefix)
            .await
            .map(WebSockets::with_backplane)
            .map_err(|e| e.to_string())
    };
    let (node_a, node_b) = (connect().await?, connect().await?);
    let received = Arc::new(Received::default());
    let _a = clients(&serve(&node_a).await?, n / 2, &received).await?;
    let _b = clients(&serve(&node_b).await?, n - n / 2, &received).await?;
    until_len(&node_a, n / 2).await;
    until_len(&node_b, n - n / 2).await;
    let cross_node = run(&node_a, n, m, &received).await;
    let errors = node_a.backplane_errors() + node_b.backplane_errors();
    node_a.shutdown().await;
    node_b.shutdown().await;

    // Two nodes with resumable rooms over Redis Streams, half the sockets on each.
    let received = Arc::new(Received::default());
    let limits = HistoryLimits::default();
    let rooms_prefix = format!("{prefix}-rooms");
    let connect_rooms = || async {
        RedisRooms::connect(&url, &rooms_prefix, limits)
            .await
            .map_err(|e| e.to_string())
    };
    let (rooms_a, rooms_b) = (connect_rooms().await?, connect_rooms().await?);
    let mut registries = Vec::new();
    for (rooms, count) in [(&rooms_a, n / 2), (&rooms_b, n - n / 2)] {
        let serving = rooms.clone();
        let (url, registry) = serve_rooms(move |ws| serving.attach(ws, |_, _| {})).await?;
        room_clients(&url, count, &received).await?;
        while rooms.members("lobby") < count {
            tokio::task::yield_now().await;
        }
        registries.push(registry);
    }
    let publish = |text: &str| {
        // The queue holds 16 Ki messages, far more than the bench's window.
        let _ = rooms_a.publish("lobby", MsgEvent::Text(text.into()));
    };
    let resumable_redis = run_with(publish, n, m, &received).await;
    let rooms_errors = rooms_a.errors() + rooms_b.errors();
    for registry in registries {
        registry.shutdown().await;
    }

    Ok(format!(
        concat!(
            "{{\"bench\":\"fanout\",\"sockets\":{},\"messages\":{},",
            "\"in_process_msgs_per_s\":{:.0},\"in_process_deliveries_per_s\":{:.0},",
            "\"redis_2_nodes_msgs_per_s\":{:.0},\"redis_2_nodes_deliveries_per_s\":{:.0},",
            "\"backplane_errors\":{},",
            "\"resume_msgs_per_s\":{:.0},\"resume_deliveries_per_s\":{:.0},",
            "\"resume_vs_plain\":{:.2},\"resume_history_bytes\":{},",
            "\"resume_redis_2_nodes_msgs_per_s\":{:.0},\"resume_redis_2_nodes_deliveries_per_s\":{:.0},",
            "\"resume_redis_vs_plain_redis\":{:.2},\"resume_redis_errors\":{}}}"
        ),
        n,
        m,
        in_process,
        in_process * n as f64,
        cross_node,
        cross_node * n as f64,
        errors,
        resumable,
        resumable * n as f64,
        resumable / in_process,
        history_bytes,
        resumable_redis,
        resumable_redis * n as f64,
        resumable_redis / cross_node,
        rooms_errors
    ))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match args() {
        Ok(args) => bench(args).await,
        Err(usage) => Err(usage),
    };
    match result {
        Ok(json) => {
            println!("{json}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fanout_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! The load generator: a lean raw-frame WebSocket client. Frames are built and masked once
//! up front; the hot loop only writes those bytes and counts the echoed frames' headers,
//! so the client does much less work per message than any server under test.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One client frame (FIN, masked) of `len` payload bytes, text or binary.
pub fn masked_frame(text: bool, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 14);
    out.push(if text { 0x81 } else { 0x82 });
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&KEY);
    out.extend((0..len).map(|i| (b'a' + (i % 26) as u8) ^ KEY[i % 4]));
    out
}

/// Opens a TCP connection and completes the opening handshake.
pub async fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    // Read the response byte by byte up to its blank line, so no frame byte is consumed.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 || head.len() > 8192 {
            return Err(io::Error::other("handshake: connection closed"));
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(io::Error::other(format!(
            "handshake refused: {}",
            String::from_utf8_lossy(&head).lines().next().unwrap_or("")
        )));
    }
    Ok(tcp)
}

/// Counts the server's (unmasked) frames in a byte stream, however it is split.
#[derive(Default)]
pub struct FrameCounter {
    head: [u8; 14],
    head_len: usize,
    skip: u64,
    /// Frames completed so far.
    pub frames: u64,
}

impl FrameCounter {
    fn head_needed(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        2 + mask
            + match self.head[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            }
    }

    /// How many header bytes to read next; 0 inside a payload.
    fn header_wanted(&self) -> usize {
        if self.skip > 0 {
            0
        } else {
            self.head_needed() - self.head_len
        }
    }

    /// Payload bytes that were discarded unread (at most the rest of the payload).
    fn discarded(&mut self, n: usize) {
        self.skip -= (n as u64).min(self.skip);
        if self.skip == 0 {
            self.frames += 1;
        }
    }

    /// Feeds bytes; returns an error for a close frame (the server gave up).
    pub fn feed(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0 {
                    self.frames += 1;
                }
                continue;
            }
            let need = self.head_needed();
            let take = (need - self.head_len).min(data.len());
            self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
            self.head_len += take;
            data = &data[take..];
            if self.head_len < 2 || self.head_len < self.head_needed() {
                continue;
            }
            if self.head[0] & 0x0f == 0x8 {
                return Err(io::Error::other("the server sent a close frame"));
            }
            let len = match self.head[1] & 0x7f {
                126 => u16::from_be_bytes([self.head[2], self.head[3]]) as u64,
                127 => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or_default()),
                n => n as u64,
            };
            self.head_len = 0;
            if len == 0 {
                self.frames += 1;
            } else {
                self.skip = len;
            }
        }
        Ok(())
    }
}

/// Opens `n` connections, at most 200 handshakes at a time.
pub async fn connect_many(addr: &str, n: usize) -> io::Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = (n - conns.len()).min(200);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let addr = addr.to_string();
            set.spawn(async move { connect(&addr).await });
        }
        while let Some(r) = set.join_next().await {
            conns.push(r.map_err(io::Error::other)??);
        }
    }
    Ok(conns)
}

/// What an echo throughput run measured.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Messages echoed per second.
    pub rate: f64,
    /// The share of one core the server process ran meanwhile (its threads' CPU time over
    /// the wall time), if the system reports it: near 1 the row measures the server; well
    /// below, the round trip between load generator and server sets the pace.
    pub busy: Option<f64>,
    /// The server's CPU time per echoed message over the measuring time, in µs: what the
    /// server spent on a message, whether or not it was the limit.
    pub cpu_per_msg_us: Option<f64>,
    /// The share of one core the load generator (this process) ran meanwhile.
    pub load_busy: Option<f64>,
}

/// How many messages each connection of an echo workload keeps in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InFlight {
    /// Up to this many (pipelined echo), sent in batches of at least half of it.
    Window(usize),
    /// One: a connection sends its next message once the echo of the last one arrived.
    One,
    /// One, at a fixed total rate: each of the `conns` connections sends a message every
    /// `conns / rate` seconds (their sends spread evenly over that period), if the echo of
    /// its last one has arrived by then.
    Paced { rate: f64 },
}

/// An echo workload: `conns` connections each keep `in_flight` messages of `len` bytes
/// (text or binary) in flight.
#[derive(Debug, Clone, Copy)]
pub struct Echo {
    pub conns: usize,
    pub text: bool,
    pub len: usize,
    pub in_flight: InFlight,
}

impl Echo {
    /// The time between two sends of one connection of a paced workload.
    pub fn period(&self) -> Option<Duration> {
        match self.in_flight {
            InFlight::Paced { rate } => Some(Duration::from_secs_f64(self.conns as f64 / rate)),
            _ => None,
        }
    }

    /// When connection `i` of a paced workload sends: the connections' first sends are
    /// spread evenly over the period from `start` on.
    fn pace(&self, start: tokio::time::Instant, i: usize) -> Option<Pace> {
        let period = self.period()?;
        Some(Pace {
            first: start + period.mul_f64(i as f64 / self.conns as f64),
            period,
        })
    }
}

/// When a paced connection sends: in the slots `first`, `first + period`, `first + 2 *
/// period` and so on, one message a slot.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    first: tokio::time::Instant,
    period: Duration,
}

impl Pace {
    /// The slot of the next send, given the slot of the last one (`None` before the first)
    /// and that it is `now`: the slot after the last one; if that has passed (the echo came
    /// late), at once, in the latest slot that has passed: the ones before it are skipped,
    /// not made up. (What `tokio::time::MissedTickBehavior::Skip` does.)
    fn next(
        &self,
        last: Option<tokio::time::Instant>,
        now: tokio::time::Instant,
    ) -> tokio::time::Instant {
        let slot = last.map_or(self.first, |last| last + self.period);
        if now <= slot {
            return slot;
        }
        let missed = (now - slot).as_nanos() / self.period.as_nanos().max(1);
        slot + self.period.mul_f64(missed as f64)
    }
}

/// Echo throughput against the server process `pid`: `load.conns` connections, each with
/// `load.in_flight` messages in flight. Measures over `measure`, after `warmup` (and, for a
/// paced workload, one period more, so every connection has sent before it starts).
pub async fn throughput(
    addr: &str,
    pid: u32,
    load: Echo,
    warmup: Duration,
    measure: Duration,
) -> io::Result<Throughput> {
    let frame = Arc::new(masked_frame(load.text, load.len));
    let done = Arc::new(AtomicU64::new(0));
    let streams = connect_many(addr, load.conns).await?;
    let mut set = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    // A window of frames, shared by all connections.
    let window = match load.in_flight {
        InFlight::Window(window) => Some(Window::new(&frame, window)),
        _ => None,
    };
    for (i, tcp) in streams.into_iter().enumerate() {
        let (frame, done) = (frame.clone(), done.clone());
        match &window {
            Some(window) => {
                set.spawn(windowed(tcp, window.clone(), load.len, done));
            }
            None => {
                let pace = load.pace(start, i);
                set.spawn(async move { one_in_flight(tcp, &frame, pace, &done).await });
            }
        }
    }
    let sample = measured(
        pid,
        &done,
        warmup + load.period().unwrap_or_default(),
        measure,
    );
    let failed = async {
        match set.join_next().await {
            Some(Ok(Err(e))) => e,
            Some(Err(e)) => io::Error::other(e),
            _ => io::Error::other("a connection ended"),
        }
    };
    let result = tokio::select! {
        rate = sample => Ok(rate),
        e = failed => Err(e),
    };
    set.abort_all();
    while set.join_next().await.is_some() {}
    let measured = result?;
    if measured.rate == 0.0 {
        return Err(io::Error::other("no message was echoed"));
    }
    Ok(measured)
}

/// Counts the echoes `done` counts over `measure`, after `warmup`, with the CPU time the
/// server `pid` and this process ran meanwhile.
async fn measured(pid: u32, done: &AtomicU64, warmup: Duration, measure: Duration) -> Throughput {
    let me = std::process::id();
    tokio::time::sleep(warmup).await;
    let (cpu0, load0) = (cpu_ns(pid).ok(), cpu_ns(me).ok());
    let (c0, t0) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(measure).await;
    let (c1, t1) = (done.load(Ordering::Relaxed), Instant::now());
    let (cpu1, load1) = (cpu_ns(pid).ok(), cpu_ns(me).ok());
    let secs = (t1 - t0).as_secs_f64();
    let ran = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    let (server_ns, load_ns) = (ran(cpu0, cpu1), ran(load0, load1));
    Throughput {
        rate: (c1 - c0) as f64 / secs,
        busy: server_ns.map(|ns| ns as f64 / 1e9 / secs),
        cpu_per_msg_us: server_ns.and_then(|ns| cpu_per_message_us(ns, c1 - c0)),
        load_busy: load_ns.map(|ns| ns as f64 / 1e9 / secs),
    }
}

/// CPU time per message in µs: `cpu_ns` nanoseconds spent on `msgs` messages (none if no
/// message was echoed).
pub fn cpu_per_message_us(cpu_ns: u64, msgs: u64) -> Option<f64> {
    (msgs > 0).then(|| cpu_ns as f64 / 1e3 / msgs as f64)
}

/// A window of frames in flight, sent in batches of at least `per_batch`.
#[derive(Clone)]
struct Window {
    frames: Arc<Vec<u8>>,
    frame_len: usize,
    per_batch: usize,
}

impl Window {
    fn new(frame: &[u8], window: usize) -> Self {
        let per_batch = (window / 2).max(1);
        Self {
            frames: Arc::new(frame.repeat(window.max(per_batch))),
            frame_len: frame.len(),
            per_batch,
        }
    }
}

/// One pipelined connection: keeps a window of frames in flight (written in batches of at
/// least half a window, so the pipe never drains) and counts their echoes in `done`.
async fn windowed(tcp: TcpStream, w: Window, len: usize, done: Arc<AtomicU64>) -> io::Result<()> {
    let Window {
        frames,
        frame_len,
        per_batch,
    } = w;
    let (mut rd, mut wr) = tcp.into_split();
    let permits = Semaphore::new(frames.len() / frame_len);
    let writer = async {
        if len >= DISCARD_FROM {
            // Half-window batches: the big rows were measured that way.
            let batch = &frames[..per_batch * frame_len];
            write_batches_spliced(wr.as_ref(), batch, &permits, per_batch).await
        } else {
            write_batches(&mut wr, &frames, &permits, per_batch, frame_len).await
        }
    };
    let reader = async {
        if len >= DISCARD_FROM {
            count_echoes_discarding(&rd, &done, &permits).await
        } else {
            count_echoes(&mut rd, &done, &permits).await
        }
    };
    tokio::try_join!(writer, reader).map(|_| ())
}

/// One connection with one message in flight: writes `frame`, waits for its echo, counts it
/// in `done`, and again; paced, each send waits for its slot (`Pace::next`).
pub async fn one_in_flight<S: AsyncRead + AsyncWrite + Unpin>(
    mut tcp: S,
    frame: &[u8],
    pace: Option<Pace>,
    done: &AtomicU64,
) -> io::Result<()> {
    let mut buf = [0u8; 256];
    let mut counter = FrameCounter::default();
    let mut last = None;
    loop {
        if let Some(pace) = &pace {
            let slot = pace.next(last, tokio::time::Instant::now());
            tokio::time::sleep_until(slot).await;
            last = Some(slot);
        }
        round_trip(&mut tcp, frame, &mut counter, &mut buf).await?;
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes `frame` and reads until its echo has arrived (`counter` counted one more frame).
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    tcp: &mut S,
    frame: &[u8],
    counter: &mut FrameCounter,
    buf: &mut [u8],
) -> io::Result<()> {
    tcp.write_all(frame).await?;
    let want = counter.frames + 1;
    while counter.frames < want {
        let n = tcp.read(buf).await?;
        if n == 0 {
            return Err(io::Error::other("the server closed the connection"));
        }
        counter.feed(&buf[..n])?;
    }
    Ok(())
}

/// Sends `frames` (a window of `frame_len`-byte frames) in batches: each as many frames as
/// echoes have given permits back for, at least `per_batch`. Sending what is permitted at
/// once, not a fixed half window, keeps the load generator's sends (the costliest part of
/// its work: on loopback a send also runs the receiving socket's TCP processing) to about
/// one per batch of echoes the server wrote.
async fn write_batches(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    frames: &[u8],
    permits: &Semaphore,
    per_batch: usize,
    frame_len: usize,
) -> io::Result<()> {
    let most = frames.len() / frame_len;
    loop {
        let n = batch_permitted(permits, per_batch, most).await?;
        wr.write_all(&frames[..n * frame_len]).await?;
    }
}

/// Waits until the next batch may go, and returns how many messages it may hold: at least
/// `least`, and as many more up to `most` as are permitted now. One permit per message,
/// given back as echoes arrive.
async fn batch_permitted(permits: &Semaphore, least: usize, most: usize) -> io::Result<usize> {
    permits
        .acquire_many(least as u32)
        .await
        .map_err(io::Error::other)?
        .forget();
    let more = permits.available_permits().min(most.saturating_sub(least));
    if more > 0 {
        permits
            .try_acquire_many(more as u32)
            .map_err(io::Error::other)?
            .forget();
    }
    Ok(least + more)
}

/// As `write_batches`, without copying the batch into the socket: it is mapped into a pipe
/// (`vmsplice`, which takes references to its pages) and spliced from there into the socket,
/// which sends those pages as they are. The batch is never written to while referenced.
async fn write_batches_spliced(
    tcp: &TcpStream,
    batch: &[u8],
    permits: &Semaphore,
    per_batch: usize,
) -> io::Result<()> {
    use nix::fcntl::{fcntl, splice, vmsplice, FcntlArg, SpliceFFlags};
    let (pipe_out, pipe_in) = nix::unistd::pipe()?;
    // Best effort: a bigger pipe takes more of the batch per splice.
    let _ = fcntl(&pipe_in, FcntlArg::F_SETPIPE_SZ(1 << 20));
    let nonblock = SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        batch_permitted(permits, per_batch, per_batch).await?;
        let mut sent = 0;
        while sent < batch.len() {
            // The pipe is empty here, so this takes as much of the rest as fits at once.
            let mut in_pipe = vmsplice(&pipe_in, &[io::IoSlice::new(&batch[sent..])], nonblock)?;
            sent += in_pipe;
            while in_pipe > 0 {
                let to_socket = || Ok(splice(&pipe_out, None, tcp, None, in_pipe, nonblock)?);
                in_pipe -= tcp
                    .async_io(tokio::io::Interest::WRITABLE, to_socket)
                    .await?;
            }
        }
    }
}

async fn count_echoes(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    done: &AtomicU64,
    permits: &Semaphore,
) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut counter = FrameCounter::default();
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::other("the server closed the connection"));
        }
        let before = counter.frames;
        counter.feed(&buf[..n])?;
        let got = counter.frames - before;
        if got > 0 {
            done.fetch_add(got, Ordering::Relaxed);
            permits.add_permits(got as usize);
        }
    }
}

/// From this message size on the load generator reads only the echoes' headers and
/// discards their payloads in the kernel, uncopied: copying them out would make it, not the
/// server, the limit of the big-message rows (it moves as many bytes as the server).
const DISCARD_FROM: usize = 16 * 1024;

/// As `count_echoes`, reading each frame's header (exactly its bytes) and discarding its
/// payload with `recv(MSG_TRUNC)`, which on a TCP socket drops the bytes without copying.
async fn count_echoes_discarding(
    rd: &tokio::net::tcp::OwnedReadHalf,
    done: &AtomicU64,
    permits: &Semaphore,
) -> io::Result<()> {
    let tcp: &TcpStream = rd.as_ref();
    let sock = socket2::SockRef::from(tcp);
    let mut head = [0u8; 14];
    // Never written to: MSG_TRUNC only needs its length.
    let mut sink = vec![std::mem::MaybeUninit::<u8>::uninit(); 1 << 20];
    let mut counter = FrameCounter::default();
    loop {
        tcp.readable().await?;
        let before = counter.frames;
        let read = match counter.header_wanted() {
            0 => {
                let want = (counter.skip.min(sink.len() as u64)) as usize;
                let discard = || sock.recv_with_flags(&mut sink[..want], libc::MSG_TRUNC);
                tcp.try_io(tokio::io::Interest::READABLE, discard)
                    .map(|n| (n, counter.discarded(n)))
            }
            want => tcp
                .try_read(&mut head[..want])
                .and_then(|n| counter.feed(&head[..n]).map(|()| (n, ()))),
        };
        match read {
            Ok((0, ())) => return Err(io::Error::other("the server closed the connection")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        let got = counter.frames - before;
        if got > 0 {
            done.fetch_add(got, Ordering::Relaxed);
            permits.add_permits(got as usize);
        }
    }
}

/// Round-trip latency of 16-byte text messages: `conns` connections each send one message
/// every `period` and wait for its echo. Returns the sorted round-trip times (µs).
pub async fn latency(
    addr: &str,
    conns: usize,
    period: Duration,
    warmup: Duration,
    measure: Duration,
) -> io::Result<Vec<f64>> {
    let frame = Arc::new(masked_frame(true, 16));
    let streams = connect_many(addr, conns).await?;
    let start = Instant::now();
    let (measure_from, measure_to) = (start + warmup, start + warmup + measure);
    let mut set = tokio::task::JoinSet::new();
    let n = streams.len() as u32;
    for (i, mut tcp) in (0..n).zip(streams) {
        let frame = frame.clone();
        // The connections' sends are spread evenly over the period: were they sent
        // together, each round trip would also count the load generator writing the
        // others' messages before it reads any answer.
        let first = tokio::time::Instant::from_std(start) + period * i / n;
        set.spawn(async move {
            let mut samples = Vec::new();
            let mut buf = vec![0u8; 4096];
            let mut counter = FrameCounter::default();
            let mut tick = tokio::time::interval_at(first, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let sent = Instant::now();
                if sent >= measure_to {
                    return Ok::<_, io::Error>(samples);
                }
                round_trip(&mut tcp, &frame, &mut counter, &mut buf).await?;
                if sent >= measure_from {
                    samples.push(sent.elapsed().as_secs_f64() * 1e6);
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.map_err(io::Error::other)??);
    }
    if all.is_empty() {
        return Err(io::Error::other("no round trip measured"));
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

/// The value at quantile `q` of sorted samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The CPU time all threads of process `pid` have run so far, in nanoseconds (the first
/// field of each thread's `schedstat`).
pub fn cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other("no run time in schedstat"))?;
    }
    Ok(total)
}

/// The resident memory of process `pid` in kB (VmRSS).
pub fn rss_kb(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

/// Resident memory of the server per idle open connection, in bytes: open `n` connections,
/// echo one 16-byte message on each (so every lazily made buffer exists), then leave them
/// idle and compare the server's RSS with its RSS before.
pub async fn idle_memory(addr: &str, pid: u32, n: usize, settle: Duration) -> io::Result<f64> {
    // One connection first, so the server's one-time allocations are in the baseline.
    drop(echo_once(connect(addr).await?).await?);
    tokio::time::sleep(settle).await;
    let before = rss_kb(pid)?;
    let streams = connect_many(addr, n).await?;
    let mut set = tokio::task::JoinSet::new();
    for tcp in streams {
        set.spawn(echo_once(tcp));
    }
    let mut open = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        open.push(r.map_err(io::Error::other)??);
    }
    tokio::time::sleep(settle).await;
    let after = rss_kb(pid)?;
    drop(open);
    Ok(after.saturating_sub(before) as f64 * 1024.0 / n as f64)
}

async fn echo_once(mut tcp: TcpStream) -> io::Result<TcpStream> {
    let mut buf = [0u8; 256];
    let frame = masked_frame(true, 16);
    round_trip(&mut tcp, &frame, &mut FrameCounter::default(), &mut buf).await?;
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_frames_split_anywhere() {
        // Two unmasked server frames: 3 bytes, then 300 bytes (16-bit length).
        let mut stream = vec![0x81, 3, b'a', b'b', b'c', 0x82, 126, 1, 44];
        stream.extend(std::iter::repeat_n(7u8, 300));
        for split in 0..stream.len() {
            let mut c = FrameCounter::default();
            c.feed(&stream[..split]).unwrap();
            c.feed(&stream[split..]).unwrap();
            assert_eq!(c.frames, 2, "split at {split}");
        }
    }

    #[test]
    fn headers_read_exactly_and_payloads_discarded_count_the_same_frames() {
        let mut stream = vec![0x81, 3, b'a', b'b', b'c', 0x82, 126, 1, 44];
        stream.extend(std::iter::repeat_n(7u8, 300));
        stream.extend([0x82, 0]); // an empty frame: no payload to discard
        for piece in 1..40 {
            let (mut c, mut at) = (FrameCounter::default(), 0);
            while at < stream.len() {
                let n = match c.header_wanted() {
                    0 => (c.skip as usize).min(piece), // discarded, as recv(MSG_TRUNC) would
                    want => want.min(piece),
                };
                if c.header_wanted() == 0 {
                    c.discarded(n);
                } else {
                    c.feed(&stream[at..at + n]).unwrap();
                }
                at += n;
            }
            assert_eq!(c.frames, 3, "pieces of {piece}");
        }
    }

    /// The spliced sender puts the batch on the wire exactly, once per batch of permits,
    /// also when the batch is bigger than the pipe (so it is mapped in several turns).
    #[tokio::test]
    async fn spliced_batches_arrive_as_they_are() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut receiver, _) = listener.accept().await.unwrap();
        let batch: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        let permits = Semaphore::new(0);
        let writer = write_batches_spliced(&sender, &batch, &permits, 2);
        let reader = async {
            for _ in 0..3 {
                permits.add_permits(2);
                let mut got = vec![0; batch.len()];
                receiver.read_exact(&mut got).await.unwrap();
                assert!(got == batch, "the batch arrived changed");
            }
        };
        tokio::select! {
            r = writer => panic!("the writer stopped: {r:?}"),
            () = reader => {}
        }
        // Three batches' permits, three batches: nothing more was sent.
        let mut more = [0u8; 1];
        assert!(receiver
            .try_read(&mut more)
            .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock));
    }

    /// A batch takes every permit there is, up to `most`, and waits for at least `least`.
    #[tokio::test]
    async fn a_batch_takes_what_is_permitted_from_half_a_window_on() {
        let permits = Semaphore::new(5);
        assert_eq!(batch_permitted(&permits, 4, 8).await.unwrap(), 5);
        assert_eq!(permits.available_permits(), 0);
        permits.add_permits(11);
        assert_eq!(batch_permitted(&permits, 4, 8).await.unwrap(), 8);
        assert_eq!(permits.available_permits(), 3);
        let waiting = batch_permitted(&permits, 4, 8);
        tokio::pin!(waiting);
        assert!(futures_util::poll!(waiting.as_mut()).is_pending());
        permits.add_permits(1);
        assert_eq!(waiting.await.unwrap(), 4);
        assert_eq!(permits.available_permits(), 0);
    }

    /// An echo server in memory for one connection: it answers each whole frame written
    /// to it (taken `piece` bytes a write) with an unmasked frame of the same length (handed
    /// out `piece` bytes a read), the first `answers` of them; then it reads as closed. It
    /// counts the frames in flight: written, their echo not yet read whole.
    struct MockEcho {
        frame_len: usize,
        echo: Vec<u8>,
        piece: usize,
        answers: u64,
        written: usize,
        unread: std::collections::VecDeque<u8>,
        read: usize,
        in_flight: usize,
        most_in_flight: usize,
    }

    impl MockEcho {
        fn new(frame_len: usize, answers: u64, piece: usize) -> Self {
            let len = frame_len - 6; // a masked frame of a short message
            let mut echo = vec![0x81, len as u8];
            echo.resize(2 + len, b'x');
            Self {
                frame_len,
                echo,
                piece,
                answers,
                written: 0,
                unread: Default::default(),
                read: 0,
                in_flight: 0,
                most_in_flight: 0,
            }
        }

        fn frames_written(&self) -> u64 {
            (self.written / self.frame_len) as u64
        }
    }

    impl AsyncWrite for MockEcho {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.piece);
            let before = self.frames_written();
            self.written += n;
            for frame in before + 1..=self.frames_written() {
                self.in_flight += 1;
                self.most_in_flight = self.most_in_flight.max(self.in_flight);
                if frame <= self.answers {
                    let echo = self.echo.clone();
                    self.unread.extend(echo);
                }
            }
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for MockEcho {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if self.unread.is_empty() {
                // Closed once it stopped answering; a read with nothing to answer would wait
                // for ever on a real socket.
                return std::task::Poll::Ready(if self.frames_written() > self.answers {
                    Ok(())
                } else {
                    Err(io::Error::other("a read while no echo was due"))
                });
            }
            let n = self.piece.min(self.unread.len()).min(buf.remaining());
            let bytes: Vec<u8> = self.unread.drain(..n).collect();
            buf.put_slice(&bytes);
            let before = self.read / self.echo.len();
            self.read += n;
            self.in_flight -= self.read / self.echo.len() - before;
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// One in flight: the next message goes only once the whole echo of the last arrived
    /// (the echoes arrive in pieces), one message per echo.
    #[tokio::test]
    async fn one_in_flight_sends_one_message_per_echo() {
        let frame = masked_frame(true, 16);
        let mut server = MockEcho::new(frame.len(), 100, 5);
        let done = AtomicU64::new(0);
        let end = one_in_flight(&mut server, &frame, None, &done).await;
        assert!(end.is_err_and(|e| e.to_string().contains("closed")));
        assert_eq!(done.load(Ordering::Relaxed), 100);
        // The 101st message, whose echo never came, and none after it.
        assert_eq!(server.frames_written(), 101);
        assert_eq!(server.most_in_flight, 1);
    }

    /// The slots a paced connection sends in when each echo takes `echo`: the send times
    /// from `Pace::next` up to `until`.
    fn sends(pace: Pace, echo: Duration, until: tokio::time::Instant) -> Vec<tokio::time::Instant> {
        let (mut sent, mut last, mut now) = (Vec::new(), None, pace.first);
        loop {
            let slot = pace.next(last, now);
            let at = slot.max(now); // a slot that has passed: sent at once
            if at >= until {
                return sent;
            }
            sent.push(at);
            (last, now) = (Some(slot), at + echo);
        }
    }

    /// Paced connections whose echoes come at once send at the workload's rate in all,
    /// each once a period, their first sends spread evenly over the first period.
    #[test]
    fn paced_connections_send_at_the_total_rate() {
        let load = Echo {
            conns: 8,
            text: true,
            len: 16,
            in_flight: InFlight::Paced { rate: 800.0 },
        };
        let period = Duration::from_millis(10);
        assert_eq!(load.period(), Some(period));
        let start = tokio::time::Instant::now();
        let (from, to) = (
            start + Duration::from_millis(500),
            start + Duration::from_millis(2500),
        );
        let mut firsts = Vec::new();
        let mut in_window = 0;
        for i in 0..load.conns {
            let pace = load.pace(start, i).unwrap();
            let sent = sends(pace, Duration::from_micros(100), to);
            assert!(sent.windows(2).all(|w| w[1] - w[0] == period));
            firsts.push(sent[0] - start);
            in_window += sent.iter().filter(|t| **t >= from).count();
        }
        // 800 a second over 2 s.
        assert_eq!(in_window, 1600);
        let spread: Vec<Duration> = (0..8).map(|i| Duration::from_micros(1250) * i).collect();
        assert_eq!(firsts, spread);
    }

    /// A late echo does not make the connection catch up with a burst: the send whose slot
    /// passed goes at once, the slots missed before it are skipped, and the next keeps to
    /// the slots.
    #[test]
    fn a_late_echo_skips_the_slots_it_missed() {
        let period = Duration::from_millis(10);
        let first = tokio::time::Instant::now();
        let pace = Pace { first, period };
        let ms = |n: u64| first + Duration::from_millis(n);
        // Echoes take 25 ms: sent at 0, then at once on each echo, in the slot just passed.
        assert_eq!(
            sends(pace, Duration::from_millis(25), ms(100)),
            [ms(0), ms(25), ms(50), ms(75)]
        );
        // Slots 10 and 20 passed while the first echo was awaited: 20, at once.
        assert_eq!(pace.next(Some(ms(0)), ms(25)), ms(20));
        // On time again: the next slot, not at once.
        assert_eq!(pace.next(Some(ms(70)), ms(75)), ms(80));
    }

    #[test]
    fn cpu_per_message_is_cpu_time_over_messages() {
        assert_eq!(cpu_per_message_us(3_000_000, 1_500), Some(2.0));
        assert_eq!(cpu_per_message_us(250, 1_000), Some(0.00025));
        assert_eq!(cpu_per_message_us(1_000, 0), None);
    }

    #[test]
    fn masked_frame_unmasks_to_the_alphabet() {
        let f = masked_frame(true, 300);
        assert_eq!(&f[..4], &[0x81, 0x80 | 126, 1, 44]);
        let payload: Vec<u8> = f[8..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ KEY[i % 4])
            .collect();
        assert!(payload
            .iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + (i % 26) as u8));
    }
}

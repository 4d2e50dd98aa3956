//! The harness: runs every row against every crate, then writes BENCHMARKS.md and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::load::InFlight;
use crate::servers::{crate_of, variant_of, CRATES, SERVERS};
use crate::{codec, load};

/// Above this spread (half the range over the median) a row is too noisy to call.
const NOISY: f64 = 0.15;

/// How long every row may take beyond its own measuring time before it counts as failed.
const ROW_GRACE: Duration = Duration::from_secs(60);

/// Below this share of a core over the measuring time, a server was not the limit of a
/// throughput row: the load generator or the round trip set its pace.
const SATURATED: f64 = 0.9;

/// The total rate of the fixed-rate row, msg/s over all its connections: every server
/// sustains it on the 2-core machine with room to spare (in a trial run at 10,000
/// connections each held it to 0.1%, its process at most a third busy), so the row compares
/// the servers' CPU per message at one load.
const PACED_RATE: f64 = 20_000.0;

struct Settings {
    quick: bool,
    pin: bool,
    reps: usize,
    warmup: Duration,
    measure: Duration,
    many: usize,
    idle: usize,
    /// The total rate of the fixed-rate row (`--rate`), msg/s.
    rate: f64,
    codec_time: Duration,
    /// The echo servers to run (`SERVERS`, or those `--only` names).
    servers: Vec<String>,
    /// The crates of those servers, one column each.
    crates: Vec<String>,
    /// Only the rows whose id contains this (`--rows`), for profiling one workload.
    rows: Option<String>,
    /// A line on the conditions of the run (`--note`), written under the machine.
    note: Option<String>,
    out: String,
    json: String,
}

impl Settings {
    fn parse(args: &[String]) -> io::Result<Self> {
        let quick = args.iter().any(|a| a == "--quick");
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let servers = match value("--only") {
            Some(list) => only(&list)?,
            None => SERVERS.iter().map(|c| c.to_string()).collect(),
        };
        let crates = CRATES
            .iter()
            .filter(|c| servers.iter().any(|srv| crate_of(srv) == **c))
            .map(|c| c.to_string())
            .collect();
        let (out, json) = if quick {
            (
                "target/bench/BENCHMARKS.quick.md",
                "target/bench/results.quick.json",
            )
        } else {
            ("BENCHMARKS.md", "target/bench/results.json")
        };
        Ok(Self {
            quick,
            pin: args.iter().any(|a| a == "--pin"),
            reps: match value("--reps") {
                Some(n) => n.parse().map_err(io::Error::other)?,
                None if quick => 1,
                None => 5,
            },
            warmup: Duration::from_millis(if quick { 20 } else { 300 }),
            measure: Duration::from_millis(match value("--measure") {
                Some(ms) => ms.parse().map_err(io::Error::other)?,
                None if quick => 60,
                None => 1000,
            }),
            many: if quick { 50 } else { 1000 },
            idle: match value("--idle") {
                Some(n) => n.parse().map_err(io::Error::other)?,
                None if quick => 100,
                None => 10_000,
            },
            rate: match value("--rate") {
                Some(r) => r.parse().map_err(io::Error::other)?,
                None => PACED_RATE,
            },
            codec_time: Duration::from_millis(if quick { 20 } else { 400 }),
            servers,
            crates,
            rows: value("--rows"),
            note: value("--note"),
            out: value("--out").unwrap_or_else(|| out.into()),
            json: value("--json").unwrap_or_else(|| json.into()),
        })
    }
}

/// The servers `--only` names: a crate stands for all its servers (`CRATE` and
/// `CRATE+batched`), a server for itself.
fn only(list: &str) -> io::Result<Vec<String>> {
    let named: Vec<&str> = list.split(',').collect();
    if let Some(bad) = named
        .iter()
        .find(|n| !SERVERS.contains(n) && !CRATES.contains(n))
    {
        return Err(io::Error::other(format!("unknown crate or server {bad}")));
    }
    Ok(SERVERS
        .iter()
        .filter(|srv| named.iter().any(|n| n == *srv || *n == crate_of(srv)))
        .map(|srv| srv.to_string())
        .collect())
}

/// One line of the table.
struct Row {
    id: String,
    title: String,
    unit: &'static str,
    higher_is_better: bool,
    /// What the "unisock vs best peer" verdict compares.
    verdict_on: VerdictOn,
}

/// What a row's verdict compares.
#[derive(Debug, Clone, Copy, PartialEq)]
enum VerdictOn {
    /// The row's own value.
    Value,
    /// A throughput row: the servers' CPU per message when unisock's server or the best
    /// peer's was busy less than `SATURATED` of the time (then the throughput did not
    /// measure the server), else the throughput.
    CpuIfUnsaturated,
    /// The servers' CPU per message (the fixed-rate row: its throughput is set).
    Cpu,
}

/// Measured values: row id -> its values.
type Results = BTreeMap<String, ByCrate>;
/// One row's values: crate -> one entry per repetition.
type ByCrate = BTreeMap<String, Vec<Result<f64, String>>>;

pub fn run(args: &[String]) -> io::Result<()> {
    let s = Settings::parse(args)?;
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut results = Results::new();
    let rows = network_rows(&s);
    for rep in 0..s.reps {
        for server in &s.servers {
            eprintln!(
                "[{:>5.1}s] rep {}/{} {server}",
                started.elapsed().as_secs_f64(),
                rep + 1,
                s.reps
            );
            rt.block_on(run_server(&s, server, &mut results));
        }
    }
    let codec_rows = codec_rows(&s, &mut results);
    let md = markdown(&s, &rows, &codec_rows, &results, started.elapsed());
    write(&s.out, &md)?;
    write(&s.json, &json(&s, &results))?;
    eprintln!("wrote {} and {}", s.out, s.json);
    print!("{md}");
    Ok(())
}

fn write(path: &str, text: &str) -> io::Result<()> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

/// The echo throughput rows: id, title and workload.
fn echo_rows(s: &Settings) -> Vec<(String, String, load::Echo)> {
    let echo = |conns, text, len, in_flight| load::Echo {
        conns,
        text,
        len,
        in_flight,
    };
    let conns_title = |conns: usize| format!("{conns} conn{}", if conns == 1 { "" } else { "s" });
    let mut v = Vec::new();
    for (len, name) in [(16, "16 B"), (1024, "1 KiB")] {
        for conns in [1, 64, s.many] {
            v.push((
                format!("text_{len}_c{conns}"),
                format!("{name} text echo, {}", conns_title(conns)),
                echo(conns, true, len, InFlight::Window(32)),
            ));
        }
    }
    // A chat or notification server's load: one message in flight per connection.
    for conns in [1, s.many] {
        v.push((
            format!("inflight1_16_c{conns}"),
            format!("16 B text echo, one in flight, {}", conns_title(conns)),
            echo(conns, true, 16, InFlight::One),
        ));
    }
    v.push((
        format!("inflight1_16_c{}_paced", s.idle),
        format!(
            "16 B text echo, one in flight, {}, {} msg/s in all",
            conns_title(s.idle),
            fmt_value(s.rate)
        ),
        echo(s.idle, true, 16, InFlight::Paced { rate: s.rate }),
    ));
    v.push((
        "binary_64k".into(),
        "64 KiB binary echo, 1 conn".into(),
        echo(1, false, 64 << 10, InFlight::Window(8)),
    ));
    v.push((
        "binary_16m".into(),
        "16 MiB binary echo, 1 conn".into(),
        echo(1, false, 16 << 20, InFlight::Window(2)),
    ));
    v
}

fn network_rows(s: &Settings) -> Vec<Row> {
    let mut rows: Vec<Row> = echo_rows(s)
        .into_iter()
        .map(|(id, title, echo)| Row {
            id,
            title,
            unit: if echo.text { "msg/s" } else { "MB/s" },
            higher_is_better: true,
            verdict_on: match echo.in_flight {
                InFlight::Paced { .. } => VerdictOn::Cpu,
                _ => VerdictOn::CpuIfUnsaturated,
            },
        })
        .collect();
    for (q, name) in [("p50", "50th"), ("p99", "99th")] {
        rows.push(Row {
            id: format!("latency_{q}"),
            title: format!("16 B round trip, {name} percentile, 10 conns x 1000 msg/s"),
            unit: "µs",
            higher_is_better: false,
            verdict_on: VerdictOn::Value,
        });
    }
    rows.push(Row {
        id: "idle_memory".into(),
        title: format!("server RSS per idle connection, {} conns", s.idle),
        unit: "bytes",
        higher_is_better: false,
        verdict_on: VerdictOn::Value,
    });
    rows
}

/// Whether `server` runs `row`: the batched servers run only the echo throughput rows
/// (idle memory and latency are the example-style servers').
fn runs(s: &Settings, server: &str, row: &str) -> bool {
    s.wants(row) && (variant_of(server).is_none() || echo_rows(s).iter().any(|(id, ..)| id == row))
}

/// A running echo server.
struct Server {
    child: Child,
    addr: String,
    pid: u32,
}

async fn start_server(s: &Settings, krate: &str) -> io::Result<Server> {
    let exe = std::env::current_exe()?;
    let mut cmd = if s.pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(["server", krate, "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("server exited"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| io::Error::other("server did not start in 10 s"))??
        .ok_or_else(|| io::Error::other("server exited before listening"))?;
    let addr = line
        .strip_prefix("listening on ")
        .ok_or_else(|| io::Error::other(format!("unexpected server output {line:?}")))?
        .to_string();
    Ok(Server { child, addr, pid })
}

impl Server {
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Settings {
    fn wants(&self, row: &str) -> bool {
        self.rows
            .as_ref()
            .is_none_or(|r| match r.strip_suffix('$') {
                Some(exact) => row == exact,
                None => row.contains(r.as_str()),
            })
    }
}

/// Where a throughput row's server CPU share is kept.
fn busy_id(row: &str) -> String {
    format!("{row}_server_busy")
}

/// Where a throughput row's server CPU time per message (µs) is kept.
fn cpu_id(row: &str) -> String {
    format!("{row}_server_us_per_msg")
}

/// Where a throughput row's load generator CPU share is kept.
fn load_busy_id(row: &str) -> String {
    format!("{row}_load_busy")
}

fn record(results: &mut Results, row: &str, krate: &str, value: Result<f64, String>) {
    if let Err(e) = &value {
        eprintln!("    {row} {krate}: FAILED: {e}");
    }
    results
        .entry(row.to_string())
        .or_default()
        .entry(krate.to_string())
        .or_default()
        .push(value);
}

/// Runs a row with a deadline; a failed row is recorded as failed, never aborts the run.
async fn timed<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit + ROW_GRACE, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {:?}", limit + ROW_GRACE)),
    }
}

/// Every network row `name` (a server of `SERVERS`) runs, on one server process
/// (restarted if it dies). Idle memory goes first, on the fresh process.
async fn run_server(s: &Settings, name: &str, results: &mut Results) {
    let mut server = match start_server(s, name).await {
        Ok(srv) => srv,
        Err(e) => {
            for row in network_rows(s) {
                if runs(s, name, &row.id) {
                    record(results, &row.id, name, Err(format!("server: {e}")));
                }
            }
            return;
        }
    };
    let settle = Duration::from_millis(if s.quick { 50 } else { 500 });
    if runs(s, name, "idle_memory") {
        let idle = timed(
            settle * 2,
            load::idle_memory(&server.addr, server.pid, s.idle, settle),
        )
        .await;
        record(results, "idle_memory", name, idle);
    }

    for (id, _, echo) in echo_rows(s) {
        if !s.wants(&id) {
            continue;
        }
        if !server.alive() {
            match start_server(s, name).await {
                Ok(srv) => server = srv,
                Err(e) => {
                    record(results, &id, name, Err(format!("server restart: {e}")));
                    continue;
                }
            }
        }
        // The 16 MiB row echoes few messages a second; the fixed-rate row's rate is low. The
        // one-in-flight rows compare CPU time per message, whose 1 s samples moved by a
        // fifth from run to run: 3 s windows.
        let measure = if echo.in_flight == load::InFlight::One {
            s.measure * 3
        } else if echo.len >= 16 << 20 || echo.period().is_some() {
            s.measure * 2
        } else {
            s.measure
        };
        let measured = timed(
            s.warmup + echo.period().unwrap_or_default() + measure,
            load::throughput(&server.addr, server.pid, echo, s.warmup, measure),
        )
        .await;
        if let Ok(m) = &measured {
            for (at, v) in [
                (busy_id(&id), m.busy),
                (cpu_id(&id), m.cpu_per_msg_us),
                (load_busy_id(&id), m.load_busy),
            ] {
                if let Some(v) = v {
                    record(results, &at, name, Ok(v));
                }
            }
        }
        let value = measured.map(|m| {
            if echo.text {
                m.rate
            } else {
                m.rate * echo.len as f64 / 1e6
            }
        });
        record(results, &id, name, value);
    }

    if !runs(s, name, "latency_p50") {
        server.stop().await;
        return;
    }
    let measure = s.measure + s.measure / 2;
    let lat = timed(
        s.warmup + measure,
        load::latency(
            &server.addr,
            10,
            Duration::from_millis(1),
            s.warmup,
            measure,
        ),
    )
    .await;
    record(
        results,
        "latency_p50",
        name,
        lat.as_ref()
            .map(|v| load::quantile(v, 0.50))
            .map_err(Clone::clone),
    );
    record(
        results,
        "latency_p99",
        name,
        lat.map(|v| load::quantile(&v, 0.99)),
    );
    server.stop().await;
}

/// The codec rows (unisock only), each against memcpy of the same bytes.
fn codec_rows(s: &Settings, results: &mut Results) -> Vec<Row> {
    let mut rows = Vec::new();
    for (len, name) in [(64 << 10, "64 KiB"), (1 << 10, "1 KiB")] {
        for (tag, what, f) in [
            (
                "parse",
                "parse + unmask",
                codec::parse_unmask as fn(usize, Duration) -> f64,
            ),
            (
                "parsetext",
                "parse + unmask + validate, text",
                codec::parse_unmask_text,
            ),
            ("encode", "encode + mask", codec::encode_mask),
            ("memcpy", "memcpy", codec::memcpy),
        ] {
            let id = format!("codec_{tag}_{len}");
            if !s.wants(&id) {
                continue;
            }
            for _ in 0..s.reps {
                record(results, &id, "unisock", Ok(f(len, s.codec_time)));
            }
            rows.push(Row {
                id,
                title: format!("{name} frames: {what}"),
                unit: "GB/s",
                higher_is_better: true,
                verdict_on: VerdictOn::Value,
            });
        }
    }
    rows
}

/// Median and relative half-range (spread) of the successful samples.
fn stats(samples: &[Result<f64, String>]) -> Option<(f64, f64, usize)> {
    let mut ok: Vec<f64> = samples
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    if ok.is_empty() {
        return None;
    }
    ok.sort_by(f64::total_cmp);
    let n = ok.len();
    let median = if n % 2 == 1 {
        ok[n / 2]
    } else {
        (ok[n / 2 - 1] + ok[n / 2]) / 2.0
    };
    let spread = if median > 0.0 {
        (ok[n - 1] - ok[0]) / 2.0 / median
    } else {
        0.0
    };
    Some((median, spread, n))
}

fn fmt_value(v: f64) -> String {
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    // Thousands separators for the integer part.
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

fn machine() -> String {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let lscpu = run("lscpu", &[]);
    let field = |name: &str| {
        lscpu
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "{} ({} CPUs online: {}), `{}`, {}",
        field("Model name:"),
        field("CPU(s):"),
        field("On-line CPU(s) list:"),
        run("uname", &["-srm"]),
        run("rustc", &["--version"]),
    )
}

fn markdown(
    s: &Settings,
    rows: &[Row],
    codec: &[Row],
    results: &Results,
    took: Duration,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `./build.sh bench{}` (bench/, see its README). Each cell: the median of \
         {} run{} ± half the range as a share of the median; a peer's cell also gives its ratio \
         to unisock (peer / unisock: above 1 is better than unisock for msg/s, MB/s and GB/s, \
         worse for µs and bytes). The last column compares unisock with the best peer (>1 is \
         unisock ahead): ✅ ahead or at least equal within noise (the larger spread, at least \
         3%), ❔ behind but within a noise above 15% (no verdict), ❌ behind.\n",
        if s.quick { " --quick" } else { "" },
        s.reps,
        if s.reps == 1 { "" } else { "s" }
    );
    let _ = writeln!(md, "- Machine: {}", machine());
    let _ = writeln!(
        md,
        "- Servers: one current-thread Tokio runtime per process{}; load generator: one \
         current-thread runtime{}, raw pre-masked frames, TCP_NODELAY on both sides.",
        if s.pin {
            ", pinned to CPU 0"
        } else {
            " (not pinned)"
        },
        if s.pin { " on CPU 1" } else { "" }
    );
    let _ = writeln!(
        md,
        "- Pipelined rows: 32 messages in flight per connection (8 for 64 KiB, 2 for 16 MiB) \
         sent in batches of at least half of that. One-in-flight rows (a chat or notification \
         server's load): a connection sends its next message only once the echo of the last \
         one arrived; the fixed-rate row paces {} such connections to {} msg/s in all (each \
         sends every {:.2} s, their sends spread evenly): its msg/s only shows the rate was \
         held, the servers' CPU per message compares them.",
        fmt_value(s.idle as f64),
        fmt_value(s.rate),
        s.idle as f64 / s.rate
    );
    let _ = writeln!(
        md,
        "- Peers at their best: fastwebsockets, tokio-websockets and yawc also run a batched \
         echo on the echo rows (`+batched`: what was echoed is written only when nothing more \
         is ready to read, where their examples write every message on its own); a peer's \
         cell gives the better of its two echoes (\"batched\" when that one), the JSON both. \
         tokio-tungstenite's example (`forward`) batches already."
    );
    let _ = writeln!(
        md,
        "- Server CPU per message: the server process's CPU time over the measuring time \
         divided by the messages echoed in it (lower is better; its own table below). The \
         throughput rows' verdict compares it (\"CPU/msg\") where unisock's or the best \
         peer's server was busy less than {:.0}% of the measuring time (then the load \
         generator or the round trip set the pace, not the server), and on the fixed-rate \
         row; elsewhere msg/s or MB/s.",
        SATURATED * 100.0
    );
    if let Some(note) = &s.note {
        let _ = writeln!(md, "- Conditions: {note}");
    }
    let _ = writeln!(md, "- Whole run: {:.0} s.\n", took.as_secs_f64());
    let crates: Vec<&str> = s.crates.iter().map(String::as_str).collect();
    let _ = write!(md, "| Workload | Unit |");
    for c in &crates {
        let _ = write!(md, " {c} |");
    }
    let _ = writeln!(md, " unisock vs best peer |");
    let _ = writeln!(md, "|---|---|{}---|", "---:|".repeat(crates.len()));
    let mut behind = Vec::new();
    // The rows whose verdict compared CPU per message: the CPU table adds no line for them.
    let mut on_cpu_rows = Vec::new();
    for row in rows {
        let Some(by_server) = results.get(&row.id) else {
            continue; // not run (--rows)
        };
        let better = |a: f64, b: f64| if row.higher_is_better { a > b } else { a < b };
        let ours = by_server.get("unisock").and_then(|v| stats(v));
        let _ = write!(md, "| {} | {} |", row.title, row.unit);
        for c in &crates {
            let cell = best_of(by_server, c, better).map(|b| cell(s, b, ours));
            let _ = write!(md, " {} |", cell.as_deref().unwrap_or("failed"));
        }
        let best = best_peer(by_server, &crates, better);
        let on_cpu = match row.verdict_on {
            VerdictOn::Value => false,
            VerdictOn::Cpu => true,
            VerdictOn::CpuIfUnsaturated => unsaturated(results, &row.id, best.map(|b| b.0)),
        };
        let (mark, late) = if on_cpu {
            on_cpu_rows.push(row.id.as_str());
            let (ours, best) = cpu_inputs(results, &row.id, &crates);
            verdict(&row.title, CPU_UNIT, false, ours, best, " (CPU/msg)")
        } else {
            verdict(&row.title, row.unit, row.higher_is_better, ours, best, "")
        };
        behind.extend(late);
        let _ = writeln!(md, " {mark} |");
    }
    let late = cpu_table(&mut md, s, rows, &crates, results);
    behind.extend(
        late.into_iter()
            .filter_map(|(row, line)| (!on_cpu_rows.contains(&row)).then_some(line)),
    );
    busy_table(&mut md, s, rows, results);
    let _ = writeln!(
        md,
        "\nThe frame codec alone (unisock, in memory, one core):\n"
    );
    let _ = writeln!(md, "| Workload | GB/s | share of memcpy |\n|---|---:|---:|");
    for row in codec {
        let st = results
            .get(&row.id)
            .and_then(|m| m.get("unisock"))
            .and_then(|v| stats(v));
        let len_tag = row.id.rsplit('_').next().unwrap_or("");
        let copy = results
            .get(&format!("codec_memcpy_{len_tag}"))
            .and_then(|m| m.get("unisock"))
            .and_then(|v| stats(v));
        if let (Some((m, sp, _)), Some((c, ..))) = (st, copy) {
            let _ = writeln!(
                md,
                "| {} | {:.2} ±{:.0}% | {:.0}% |",
                row.title,
                m,
                sp * 100.0,
                m / c * 100.0
            );
        }
    }
    let _ = writeln!(md, "\n## Where unisock is behind\n");
    if behind.is_empty() {
        let _ = writeln!(md, "Nowhere beyond noise in this run.");
    } else {
        for b in behind {
            let _ = writeln!(md, "{b}");
        }
    }
    let notes = std::fs::read_to_string("bench/NOTES.md").unwrap_or_default();
    if !notes.is_empty() {
        let _ = writeln!(md, "\n{}", notes.trim_end());
    }
    md
}

/// The unit of server CPU per message.
const CPU_UNIT: &str = "µs CPU/msg";

/// A row's median for one server, its spread and how many runs gave a value.
type Stat = (f64, f64, usize);

/// The best of `krate`'s servers (its example-style echo and its batched one) in a row's
/// values, by `better` (of two medians): that server and its figures.
fn best_of<'a>(
    by_server: &'a ByCrate,
    krate: &str,
    better: impl Fn(f64, f64) -> bool,
) -> Option<(&'a str, Stat)> {
    let mut best: Option<(&str, Stat)> = None;
    for (server, samples) in by_server {
        if crate_of(server) != krate {
            continue;
        }
        if let Some(st) = stats(samples) {
            if best.is_none_or(|(_, (b, ..))| better(st.0, b)) {
                best = Some((server, st));
            }
        }
    }
    best
}

/// The best peer of a row: the best of every peer crate's best server.
fn best_peer<'a>(
    by_server: &'a ByCrate,
    crates: &[&str],
    better: impl Fn(f64, f64) -> bool + Copy,
) -> Option<(&'a str, Stat)> {
    crates
        .iter()
        .filter(|c| **c != "unisock")
        .filter_map(|c| best_of(by_server, c, better))
        .fold(None, |best, b| match best {
            Some((_, (v, ..))) if !better(b.1 .0, v) => best,
            _ => Some(b),
        })
}

/// One crate's cell: its best server's median ± spread, its ratio to unisock, "batched"
/// if that server is the batched echo, and how many runs gave a value if not all.
fn cell(s: &Settings, (server, (m, sp, n)): (&str, Stat), ours: Option<Stat>) -> String {
    let mut notes = Vec::new();
    if let Some((u, ..)) = ours.filter(|(u, ..)| *u > 0.0 && server != "unisock") {
        notes.push(format!("{:.2}x", m / u));
    }
    if let Some(variant) = variant_of(server) {
        notes.push(variant.to_string());
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    let reps = if n < s.reps {
        format!(" [{n}/{} ok]", s.reps)
    } else {
        String::new()
    };
    format!("{} ±{:.0}%{notes}{reps}", fmt_value(m), sp * 100.0)
}

/// Whether a throughput row did not measure the servers: unisock's server or `best` (the
/// best peer's server by throughput) was busy less than `SATURATED` of the time.
fn unsaturated(results: &Results, row: &str, best: Option<&str>) -> bool {
    let Some(busy) = results.get(&busy_id(row)) else {
        return false;
    };
    let busy_of = |server: &str| busy.get(server).and_then(|v| stats(v)).map(|st| st.0);
    ["unisock"]
        .into_iter()
        .chain(best)
        .any(|server| busy_of(server).is_some_and(|b| b < SATURATED))
}

/// unisock's server CPU per message on a row and the best peer's (lowest).
fn cpu_inputs<'a>(
    results: &'a Results,
    row: &str,
    crates: &[&str],
) -> (Option<Stat>, Option<(&'a str, Stat)>) {
    match results.get(&cpu_id(row)) {
        Some(cpu) => (
            cpu.get("unisock").and_then(|v| stats(v)),
            best_peer(cpu, crates, |a, b| a < b),
        ),
        None => (None, None),
    }
}

/// The verdict cell comparing unisock (`ours`) with the best peer, and, if unisock is
/// behind beyond a modest noise, the line for "Where unisock is behind".
fn verdict(
    title: &str,
    unit: &str,
    higher_is_better: bool,
    ours: Option<Stat>,
    best: Option<(&str, Stat)>,
    basis: &str,
) -> (String, Option<String>) {
    match (ours, best) {
        (Some((u, usp, _)), Some((bc, (b, bsp, _)))) => {
            let noise = usp.max(bsp).max(0.03);
            let (within, gap) = if higher_is_better {
                (u >= b * (1.0 - noise), u / b)
            } else {
                (u <= b * (1.0 + noise), b / u)
            };
            // Ahead, or behind by less than a modest noise: a pass. Behind within a
            // noise above NOISY says nothing either way, and is shown as such.
            let mark = if gap >= 1.0 || (within && noise <= NOISY) {
                "✅"
            } else if within {
                "❔"
            } else {
                "❌"
            };
            let late = (gap < 1.0 && mark != "✅").then(|| {
                format!(
                    "- {title}: unisock {} {unit} vs {bc} {} ({:.0}% behind{}).",
                    fmt_value(u),
                    fmt_value(b),
                    (1.0 - gap) * 100.0,
                    if within {
                        format!(", within this run's noise of ±{:.0}%", noise * 100.0)
                    } else {
                        String::new()
                    }
                )
            });
            (format!("{mark} {gap:.2}x {bc}{basis}"), late)
        }
        (None, _) => ("❌ unisock failed".into(), None),
        (_, None) => ("no peer".into(), None),
    }
}

/// The servers' CPU time per echoed message on every throughput row, with its own verdict;
/// returns its lines for "Where unisock is behind", each with its row's id.
fn cpu_table<'a>(
    md: &mut String,
    s: &Settings,
    rows: &'a [Row],
    crates: &[&str],
    results: &Results,
) -> Vec<(&'a str, String)> {
    let measured: Vec<(&Row, &ByCrate)> = rows
        .iter()
        .filter_map(|r| results.get(&cpu_id(&r.id)).map(|m| (r, m)))
        .collect();
    let mut behind = Vec::new();
    if measured.is_empty() {
        return behind;
    }
    let _ = writeln!(
        md,
        "\nServer CPU per echoed message, µs (the server process's CPU time over the measuring \
         time divided by the messages echoed in it; lower is better, and a peer's ratio above 1 \
         is worse than unisock). On this 2-core machine the load generator has one core and \
         is the limit of many rows; what a server spends per message is measured on every \
         row.\n"
    );
    let _ = write!(md, "| Workload |");
    for c in crates {
        let _ = write!(md, " {c} |");
    }
    let _ = writeln!(md, " unisock vs best peer |");
    let _ = writeln!(md, "|---|{}---|", "---:|".repeat(crates.len()));
    for (row, by_server) in measured {
        let (ours, best) = cpu_inputs(results, &row.id, crates);
        let _ = write!(md, "| {} |", row.title);
        for c in crates {
            let cell = best_of(by_server, c, |a, b| a < b).map(|b| cell(s, b, ours));
            let _ = write!(md, " {} |", cell.as_deref().unwrap_or("–"));
        }
        let title = format!("{}, server CPU per message", row.title);
        let (mark, late) = verdict(&title, CPU_UNIT, false, ours, best, "");
        behind.extend(late.map(|line| (row.id.as_str(), line)));
        let _ = writeln!(md, " {mark} |");
    }
    behind
}

/// The servers' and the load generator's CPU share during the throughput rows, to show
/// which rows measure the servers (near 100%) and which the load generator or the round
/// trip.
fn busy_table(md: &mut String, s: &Settings, rows: &[Row], results: &Results) {
    let measured: Vec<(&Row, &ByCrate)> = rows
        .iter()
        .filter_map(|r| results.get(&busy_id(&r.id)).map(|m| (r, m)))
        .collect();
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nCPU during the throughput rows, server / load generator (each process's CPU time \
         over the measuring time, median of the runs), for every server: near 100% a row \
         measures the server; well below, the load generator (near 100%) or the round trip \
         between them sets the pace.\n"
    );
    let _ = write!(md, "| Workload |");
    for srv in &s.servers {
        let _ = write!(md, " {srv} |");
    }
    let _ = writeln!(md, "\n|---|{}", "---:|".repeat(s.servers.len()));
    for (row, by_server) in measured {
        let _ = write!(md, "| {} |", row.title);
        let load = results.get(&load_busy_id(&row.id));
        for srv in &s.servers {
            let share = |m: Option<&ByCrate>| {
                m.and_then(|m| m.get(srv.as_str()))
                    .and_then(|v| stats(v))
                    .map_or("–".to_string(), |(m, ..)| format!("{:.0}%", m * 100.0))
            };
            let _ = write!(md, " {} / {} |", share(Some(by_server)), share(load));
        }
        let _ = writeln!(md);
    }
}

fn json(s: &Settings, results: &Results) -> String {
    let mut j = String::from("{\n");
    let _ = writeln!(
        j,
        "  \"quick\": {},\n  \"pinned\": {},\n  \"paced_rate\": {},\n  \"machine\": {:?},",
        s.quick,
        s.pin,
        s.rate,
        machine()
    );
    j.push_str("  \"rows\": {\n");
    let rows: Vec<String> = results
        .iter()
        .map(|(row, by_crate)| {
            let crates: Vec<String> = by_crate
                .iter()
                .map(|(c, samples)| {
                    let vals: Vec<String> = samples
                        .iter()
                        .map(|r| match r {
                            Ok(v) => format!("{v}"),
                            Err(e) => format!("{{\"failed\": {e:?}}}"),
                        })
                        .collect();
                    format!("      {c:?}: [{}]", vals.join(", "))
                })
                .collect();
            format!("    {row:?}: {{\n{}\n    }}", crates.join(",\n"))
        })
        .collect();
    j.push_str(&rows.join(",\n"));
    j.push_str("\n  }\n}\n");
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[(&str, f64)]) -> ByCrate {
        values
            .iter()
            .map(|(server, v)| (server.to_string(), vec![Ok(*v)]))
            .collect()
    }

    #[test]
    fn only_takes_a_crate_for_all_its_servers_and_a_server_for_itself() {
        assert_eq!(
            only("yawc,unisock").unwrap(),
            ["unisock", "yawc", "yawc+batched"]
        );
        assert_eq!(
            only("fastwebsockets+batched").unwrap(),
            ["fastwebsockets+batched"]
        );
        assert!(only("unisock,websocket").is_err());
    }

    /// `--rows ID` runs the rows whose id contains ID; `--rows ID$` only the row with that id.
    #[test]
    fn rows_match_by_part_or_exactly_with_a_dollar() {
        let with = |rows: &str| Settings::parse(&["--rows".into(), rows.into()]).unwrap();
        let part = with("inflight1_16_c1");
        assert!(part.wants("inflight1_16_c1") && part.wants("inflight1_16_c1000"));
        let exact = with("inflight1_16_c1$");
        assert!(exact.wants("inflight1_16_c1"));
        assert!(!exact.wants("inflight1_16_c1000"));
    }

    /// A peer's cell and the verdict take the better of its two echoes, by the row's
    /// measure: the higher throughput, the lower CPU per message.
    #[test]
    fn a_peer_is_compared_at_its_best() {
        let rate = row(&[
            ("unisock", 100.0),
            ("fastwebsockets", 80.0),
            ("fastwebsockets+batched", 120.0),
            ("yawc", 90.0),
        ]);
        let higher = |a: f64, b: f64| a > b;
        let lower = |a: f64, b: f64| a < b;
        assert_eq!(
            best_of(&rate, "fastwebsockets", higher).unwrap().0,
            "fastwebsockets+batched"
        );
        assert_eq!(
            best_of(&rate, "fastwebsockets", lower).unwrap().0,
            "fastwebsockets"
        );
        let crates = ["unisock", "fastwebsockets", "yawc"];
        let best = best_peer(&rate, &crates, higher);
        assert_eq!(
            best.map(|b| (b.0, b.1 .0)),
            Some(("fastwebsockets+batched", 120.0))
        );
        let ours = rate.get("unisock").and_then(|v| stats(v));
        let (mark, late) = verdict("16 B", "msg/s", true, ours, best, "");
        assert_eq!(mark, "❌ 0.83x fastwebsockets+batched");
        assert!(late.is_some_and(|l| l.contains("17% behind")));
        let s = Settings::parse(&[]).unwrap();
        let peer = best_of(&rate, "fastwebsockets", higher).unwrap();
        assert_eq!(cell(&s, peer, ours), "120 ±0% (1.20x, batched) [1/5 ok]");
    }

    /// The throughput rows' verdict compares CPU per message where a server was not the
    /// limit, and tells so; a missing unisock figure fails the row.
    #[test]
    fn the_verdict_is_on_cpu_per_message_where_a_server_was_not_saturated() {
        let mut results = Results::new();
        results.insert(
            "r".into(),
            row(&[("unisock", 100.0), ("yawc", 90.0), ("yawc+batched", 110.0)]),
        );
        results.insert(
            cpu_id("r"),
            row(&[("unisock", 1.0), ("yawc", 2.0), ("yawc+batched", 1.25)]),
        );
        let busy = |u, y| row(&[("unisock", u), ("yawc", 0.2), ("yawc+batched", y)]);
        results.insert(busy_id("r"), busy(0.99, 0.95));
        // Both servers busy: the yawc echo at 20% is not the best one and does not count.
        assert!(!unsaturated(&results, "r", Some("yawc+batched")));
        results.insert(busy_id("r"), busy(0.99, 0.6));
        assert!(unsaturated(&results, "r", Some("yawc+batched")));
        results.insert(busy_id("r"), busy(0.6, 0.99));
        assert!(unsaturated(&results, "r", Some("yawc+batched")));

        let (ours, best) = cpu_inputs(&results, "r", &["unisock", "yawc"]);
        let (mark, late) = verdict("r", CPU_UNIT, false, ours, best, " (CPU/msg)");
        assert_eq!(mark, "✅ 1.25x yawc+batched (CPU/msg)");
        assert!(late.is_none());
        let (mark, _) = verdict("r", CPU_UNIT, false, None, best, "");
        assert_eq!(mark, "❌ unisock failed");
    }
}

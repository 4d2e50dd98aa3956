//! The harness: runs every row against every crate, then writes BENCHMARKS.md and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{codec, load, servers::CRATES};

/// Above this spread (half the range over the median) a row is too noisy to call.
const NOISY: f64 = 0.15;

/// How long every row may take beyond its own measuring time before it counts as failed.
const ROW_GRACE: Duration = Duration::from_secs(60);

struct Settings {
    quick: bool,
    pin: bool,
    reps: usize,
    warmup: Duration,
    measure: Duration,
    many: usize,
    idle: usize,
    codec_time: Duration,
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
        let crates = match value("--only") {
            Some(list) => list.split(',').map(str::to_string).collect(),
            None => CRATES.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        };
        if let Some(bad) = crates.iter().find(|c| !CRATES.contains(&c.as_str())) {
            return Err(io::Error::other(format!("unknown crate {bad}")));
        }
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
            reps: if quick { 1 } else { 5 },
            warmup: Duration::from_millis(if quick { 20 } else { 300 }),
            measure: Duration::from_millis(if quick { 60 } else { 1000 }),
            many: if quick { 50 } else { 1000 },
            idle: match value("--idle") {
                Some(n) => n.parse().map_err(io::Error::other)?,
                None if quick => 100,
                None => 10_000,
            },
            codec_time: Duration::from_millis(if quick { 20 } else { 400 }),
            crates,
            rows: value("--rows"),
            note: value("--note"),
            out: value("--out").unwrap_or_else(|| out.into()),
            json: value("--json").unwrap_or_else(|| json.into()),
        })
    }
}

/// One line of the table.
struct Row {
    id: String,
    title: String,
    unit: &'static str,
    higher_is_better: bool,
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
        for krate in &s.crates {
            eprintln!(
                "[{:>5.1}s] rep {}/{} {krate}",
                started.elapsed().as_secs_f64(),
                rep + 1,
                s.reps
            );
            rt.block_on(run_crate(&s, krate, &mut results));
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
    let echo = |conns, text, len, window| load::Echo {
        conns,
        text,
        len,
        window,
    };
    let mut v = Vec::new();
    for (len, name) in [(16, "16 B"), (1024, "1 KiB")] {
        for conns in [1, 64, s.many] {
            v.push((
                format!("text_{len}_c{conns}"),
                format!(
                    "{name} text echo, {conns} conn{}",
                    if conns == 1 { "" } else { "s" }
                ),
                echo(conns, true, len, 32),
            ));
        }
    }
    v.push((
        "binary_64k".into(),
        "64 KiB binary echo, 1 conn".into(),
        echo(1, false, 64 << 10, 8),
    ));
    v.push((
        "binary_16m".into(),
        "16 MiB binary echo, 1 conn".into(),
        echo(1, false, 16 << 20, 2),
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
        })
        .collect();
    for (q, name) in [("p50", "50th"), ("p99", "99th")] {
        rows.push(Row {
            id: format!("latency_{q}"),
            title: format!("16 B round trip, {name} percentile, 10 conns x 1000 msg/s"),
            unit: "µs",
            higher_is_better: false,
        });
    }
    rows.push(Row {
        id: "idle_memory".into(),
        title: format!("server RSS per idle connection, {} conns", s.idle),
        unit: "bytes",
        higher_is_better: false,
    });
    rows
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
        self.rows.as_ref().is_none_or(|r| row.contains(r.as_str()))
    }
}

/// Where a throughput row's server CPU share is kept.
fn busy_id(row: &str) -> String {
    format!("{row}_server_busy")
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

/// Every network row for one crate, on one server process (restarted if it dies). Idle
/// memory goes first, on the fresh process.
async fn run_crate(s: &Settings, krate: &str, results: &mut Results) {
    let mut server = match start_server(s, krate).await {
        Ok(srv) => srv,
        Err(e) => {
            for row in network_rows(s) {
                record(results, &row.id, krate, Err(format!("server: {e}")));
            }
            return;
        }
    };
    let settle = Duration::from_millis(if s.quick { 50 } else { 500 });
    if s.wants("idle_memory") {
        let idle = timed(
            settle * 2,
            load::idle_memory(&server.addr, server.pid, s.idle, settle),
        )
        .await;
        record(results, "idle_memory", krate, idle);
    }

    for (id, _, echo) in echo_rows(s) {
        if !s.wants(&id) {
            continue;
        }
        if !server.alive() {
            match start_server(s, krate).await {
                Ok(srv) => server = srv,
                Err(e) => {
                    record(results, &id, krate, Err(format!("server restart: {e}")));
                    continue;
                }
            }
        }
        let measure = if echo.len >= 16 << 20 {
            s.measure * 2
        } else {
            s.measure
        };
        let measured = timed(
            s.warmup + measure,
            load::throughput(&server.addr, server.pid, echo, s.warmup, measure),
        )
        .await;
        if let Some(busy) = measured.as_ref().ok().and_then(|m| m.busy) {
            record(results, &busy_id(&id), krate, Ok(busy));
        }
        let value = measured.map(|m| {
            if echo.text {
                m.rate
            } else {
                m.rate * echo.len as f64 / 1e6
            }
        });
        record(results, &id, krate, value);
    }

    if !s.wants("latency") {
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
        krate,
        lat.as_ref()
            .map(|v| load::quantile(v, 0.50))
            .map_err(Clone::clone),
    );
    record(
        results,
        "latency_p99",
        krate,
        lat.map(|v| load::quantile(&v, 0.99)),
    );
    server.stop().await;
}

/// The codec rows (unisock only), each against memcpy of the same bytes.
fn codec_rows(s: &Settings, results: &mut Results) -> Vec<Row> {
    let mut rows = Vec::new();
    for (len, name) in [(64 << 10, "64 KiB"), (1 << 10, "1 KiB")] {
        for (what, f) in [
            (
                "parse + unmask",
                codec::parse_unmask as fn(usize, Duration) -> f64,
            ),
            ("encode + mask", codec::encode_mask),
            ("memcpy", codec::memcpy),
        ] {
            let id = format!("codec_{}_{len}", what.split(' ').next().unwrap_or(what));
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
         current-thread runtime{}, raw pre-masked frames, 32 messages in flight per \
         connection (8 for 64 KiB, 2 for 16 MiB) sent in batches of at least half of that, \
         TCP_NODELAY on both sides.",
        if s.pin {
            ", pinned to CPU 0"
        } else {
            " (not pinned)"
        },
        if s.pin { " on CPU 1" } else { "" }
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
    for row in rows {
        let Some(by_crate) = results.get(&row.id) else {
            continue; // not run (--rows)
        };
        let by_crate = Some(by_crate);
        let get = |c: &str| by_crate.and_then(|m| m.get(c)).and_then(|v| stats(v));
        let ours = get("unisock");
        let _ = write!(md, "| {} | {} |", row.title, row.unit);
        let mut best: Option<(&str, f64, f64)> = None;
        for c in &crates {
            match get(c) {
                Some((m, sp, n)) => {
                    let reps = if n < s.reps {
                        format!(" [{n}/{} ok]", s.reps)
                    } else {
                        String::new()
                    };
                    let ratio = match (ours, *c) {
                        (_, "unisock") | (None, _) => String::new(),
                        (Some((u, ..)), _) if u > 0.0 => format!(" ({:.2}x)", m / u),
                        _ => String::new(),
                    };
                    let _ = write!(md, " {} ±{:.0}%{ratio}{reps} |", fmt_value(m), sp * 100.0);
                    let better = |b: f64| if row.higher_is_better { m > b } else { m < b };
                    if *c != "unisock" && best.is_none_or(|(_, b, _)| better(b)) {
                        best = Some((c, m, sp));
                    }
                }
                None => {
                    let _ = write!(md, " failed |");
                }
            }
        }
        let verdict = match (ours, best) {
            (Some((u, usp, _)), Some((bc, b, bsp))) => {
                let noise = usp.max(bsp).max(0.03);
                let (within, gap) = if row.higher_is_better {
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
                if gap < 1.0 && mark != "✅" {
                    behind.push(format!(
                        "- {}: unisock {} {} vs {bc} {} ({:.0}% behind{}).",
                        row.title,
                        fmt_value(u),
                        row.unit,
                        fmt_value(b),
                        (1.0 - gap) * 100.0,
                        if within {
                            format!(", within this run's noise of ±{:.0}%", noise * 100.0)
                        } else {
                            String::new()
                        }
                    ));
                }
                format!("{mark} {gap:.2}x {bc}")
            }
            (None, _) => "❌ unisock failed".into(),
            (_, None) => "no peer".into(),
        };
        let _ = writeln!(md, " {verdict} |");
    }
    busy_table(&mut md, rows, &crates, results);
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

/// The servers' CPU share during the throughput rows, to show which rows measure the
/// servers (near 100%) and which the round trip between load generator and server.
fn busy_table(md: &mut String, rows: &[Row], crates: &[&str], results: &Results) {
    let measured: Vec<(&Row, &ByCrate)> = rows
        .iter()
        .filter_map(|r| results.get(&busy_id(&r.id)).map(|m| (r, m)))
        .collect();
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nServer CPU during the throughput rows (the server process's CPU time over the \
         measuring time, median of the runs): near 100% a row measures the server; well below, \
         the round trip between load generator and server sets the pace.\n"
    );
    let _ = write!(md, "| Workload |");
    for c in crates {
        let _ = write!(md, " {c} |");
    }
    let _ = writeln!(md, "\n|---|{}", "---:|".repeat(crates.len()));
    for (row, by_crate) in measured {
        let _ = write!(md, "| {} |", row.title);
        for c in crates {
            match by_crate.get(*c).and_then(|v| stats(v)) {
                Some((m, ..)) => {
                    let _ = write!(md, " {:.0}% |", m * 100.0);
                }
                None => {
                    let _ = write!(md, " – |");
                }
            }
        }
        let _ = writeln!(md);
    }
}

fn json(s: &Settings, results: &Results) -> String {
    let mut j = String::from("{\n");
    let _ = writeln!(
        j,
        "  \"quick\": {},\n  \"pinned\": {},\n  \"machine\": {:?},",
        s.quick,
        s.pin,
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

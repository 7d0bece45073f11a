//! `localsock bench`: the library against raw `std::os::unix::net` sockets, in the same run.
//!
//! The server runs in a separate process (this binary, `bench-server`), one per
//! implementation, started afresh for every repetition; both serve connections one at a time.
//! The client alternates the two implementations within every scenario and repetition, and
//! reports medians over repetitions.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use localsock::{LocalListener, LocalStream, Name};
use serde_json::json;

use crate::cli::{BenchArgs, BenchServerArgs, Imp, Pin};
use crate::{pin, BAD, BOLD, DIM, GOOD};

const MESSAGE: usize = 64;
const SINK: u8 = b'S';
const HEADER: usize = 9;
const BUF: usize = 64 * 1024;

/// Targets from the issue: library / raw, in the same run.
const LATENCY_MAX: f64 = 1.05;
const THROUGHPUT_MIN: f64 = 0.95;
const CONNECT_MIN: f64 = 0.85;

#[derive(Clone, Copy, Debug)]
struct Plan {
    repetitions: u32,
    warmup: u32,
    round_trips: u32,
    stream_bytes: u64,
    connections: u32,
}

impl Plan {
    fn new(args: &BenchArgs) -> Plan {
        // Many short repetitions rather than a few long ones: on small VMs the cost of a round
        // trip flips between two levels (about 10% apart) for seconds at a time, and the median
        // of many back-to-back pairs sees through that where a few long runs cannot.
        let mut plan = if args.quick {
            Plan {
                repetitions: 5,
                warmup: 1_000,
                round_trips: 10_000,
                stream_bytes: 128 << 20,
                connections: 2_000,
            }
        } else {
            Plan {
                repetitions: 20,
                warmup: 2_500,
                round_trips: 25_000,
                stream_bytes: 256 << 20,
                connections: 5_000,
            }
        };
        if let Some(n) = args.repetitions {
            plan.repetitions = n;
        }
        plan
    }
}

/// What one implementation measured, each metric a list over repetitions.
#[derive(Debug, Default)]
struct Samples {
    latency_median_us: Vec<f64>,
    latency_p99_us: Vec<f64>,
    throughput_64k: Vec<f64>,
    throughput_4k: Vec<f64>,
    connect_rate: Vec<f64>,
    fds_before: Option<u64>,
    fds_after: Option<u64>,
}

#[derive(Debug)]
struct Summary {
    latency_median_us: f64,
    latency_p99_us: f64,
    throughput_64k: f64,
    throughput_4k: f64,
    connect_rate: f64,
    fds_before: Option<u64>,
    fds_after: Option<u64>,
}

impl Samples {
    /// Keeps the repetition whose server gained the most descriptors.
    fn record_fds(&mut self, before: Option<u64>, after: Option<u64>) {
        let (Some(before), Some(after)) = (before, after) else {
            return;
        };
        let gain = |b: u64, a: u64| a as i64 - b as i64;
        let worse = match (self.fds_before, self.fds_after) {
            (Some(b), Some(a)) => gain(before, after) > gain(b, a),
            _ => true,
        };
        if worse {
            self.fds_before = Some(before);
            self.fds_after = Some(after);
        }
    }

    fn summary(&self) -> Summary {
        Summary {
            latency_median_us: median(&self.latency_median_us),
            latency_p99_us: median(&self.latency_p99_us),
            throughput_64k: median(&self.throughput_64k),
            throughput_4k: median(&self.throughput_4k),
            connect_rate: median(&self.connect_rate),
            fds_before: self.fds_before,
            fds_after: self.fds_after,
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Where client and server run.
#[derive(Clone, Copy, Debug)]
struct Placement {
    client: Option<usize>,
    server: Option<usize>,
}

fn placement(pin: Pin) -> io::Result<Placement> {
    if pin == Pin::None {
        return Ok(Placement {
            client: None,
            server: None,
        });
    }
    let cpus = match pin::allowed_cpus() {
        Ok(cpus) => cpus,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            crate::warn(&format!("--pin {}: {e}; running unpinned", pin.as_str()));
            return Ok(Placement {
                client: None,
                server: None,
            });
        }
        Err(e) => return Err(e),
    };
    match (pin, cpus.as_slice()) {
        (Pin::Same, [first, ..]) => Ok(Placement {
            client: Some(*first),
            server: Some(*first),
        }),
        (Pin::Split, [first, second, ..]) => Ok(Placement {
            client: Some(*first),
            server: Some(*second),
        }),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "--pin {} needs {} CPUs, and this process may run on {:?}",
                pin.as_str(),
                if pin == Pin::Split { "two" } else { "a CPU" },
                cpus
            ),
        )),
    }
}

pub(crate) fn run(args: BenchArgs) -> io::Result<()> {
    let plan = Plan::new(&args);
    let place = placement(args.pin).map_err(|e| io::Error::new(e.kind(), format!("bench: {e}")))?;
    if let Some(cpu) = place.client {
        pin::pin_to(cpu).map_err(|e| io::Error::new(e.kind(), format!("bench: {e}")))?;
    }
    if cfg!(debug_assertions) && !args.json {
        crate::warn("this is a debug build: build with --release for meaningful figures");
    }

    let id = std::process::id();
    // The bench's own names always use the default rule (never `--qt`): the server process is
    // started without that flag and must resolve the same endpoint.
    let lib_name = Name::new(format!("localsock-bench-{id}"))?;
    let raw_path = match lib_name.fs_path() {
        Some(path) => path.with_file_name(format!("localsock-bench-{id}-raw")),
        None => {
            return Err(io::Error::other(
                "bench: the library's default name is not a path on this OS",
            ))
        }
    };
    let lib_server_name = lib_name.to_string();
    let raw_server_name = raw_path.display().to_string();
    let lib = Endpoint::Lib(lib_name);
    let raw = Endpoint::Raw(raw_path);

    let steps = u64::from(plan.repetitions) * 8;
    let bar = progress_bar(steps);
    let mut samples = [Samples::default(), Samples::default()];
    let endpoints = [&lib, &raw];
    let started = Instant::now();
    for rep in 0..plan.repetitions {
        // Fresh server processes every repetition: on this kind of VM a process can sit in a
        // slower state (about 10% on a round trip) for its whole life, which would otherwise
        // bias one implementation for the entire run.
        let servers = [
            Server::start(Imp::Localsock, lib_server_name.clone(), place.server)?,
            Server::start(Imp::Raw, raw_server_name.clone(), place.server)?,
        ];
        let mut fds_before = [None, None];
        for (i, endpoint) in endpoints.iter().enumerate() {
            fds_before[i] = servers[i].fd_count(endpoint)?;
        }
        // Alternate which implementation goes first, so drift hits both alike.
        let order: [usize; 2] = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
        let label = |what: &str, i: usize| {
            format!(
                "{}/{} {what}: {}",
                rep + 1,
                plan.repetitions,
                endpoints[i].label()
            )
        };
        for i in order {
            bar.set_message(label("latency", i));
            let (med, p99) = latency(endpoints[i], plan.warmup, plan.round_trips)?;
            samples[i].latency_median_us.push(med);
            samples[i].latency_p99_us.push(p99);
            bar.inc(1);
        }
        for i in order {
            bar.set_message(label("64 KiB stream", i));
            let rate = throughput(endpoints[i], plan.stream_bytes, 64 * 1024)?;
            samples[i].throughput_64k.push(rate);
            bar.inc(1);
        }
        for i in order {
            bar.set_message(label("4 KiB stream", i));
            // 4 KiB writes are slower; a quarter of the bytes keeps the time alike.
            let rate = throughput(endpoints[i], plan.stream_bytes / 4, 4 * 1024)?;
            samples[i].throughput_4k.push(rate);
            bar.inc(1);
        }
        for i in order {
            bar.set_message(label("connect-echo-close", i));
            let rate = connect_rate(endpoints[i], plan.connections)?;
            samples[i].connect_rate.push(rate);
            bar.inc(1);
        }
        for (i, endpoint) in endpoints.iter().enumerate() {
            let after = servers[i].fd_count(endpoint)?;
            samples[i].record_fds(fds_before[i], after);
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    if args.json {
        outln!("{}", to_json(&args, &plan, place, elapsed, &samples));
    } else {
        outln!(
            "{}",
            table(&args, &plan, place, elapsed, &samples).trim_end()
        );
    }
    Ok(())
}

fn progress_bar(steps: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// label, localsock, raw, ratio, target (met, text), decimals.
type Row<'a> = (&'a str, f64, f64, f64, Option<(bool, String)>, usize);

struct Ratios {
    latency_median: f64,
    latency_p99: f64,
    throughput_64k: f64,
    throughput_4k: f64,
    connect_rate: f64,
}

/// Each ratio is the median over repetitions of localsock / raw, the two measured back to
/// back: pairs share the machine's state of the moment, so a load that drifts during the run
/// (other processes, the host) cancels out instead of widening the gap between two medians.
fn ratios(samples: &[Samples; 2]) -> Ratios {
    let [lib, raw] = samples;
    let paired = |l: &[f64], r: &[f64]| {
        let each: Vec<f64> = l.iter().zip(r).map(|(l, r)| l / r).collect();
        median(&each)
    };
    Ratios {
        latency_median: paired(&lib.latency_median_us, &raw.latency_median_us),
        latency_p99: paired(&lib.latency_p99_us, &raw.latency_p99_us),
        throughput_64k: paired(&lib.throughput_64k, &raw.throughput_64k),
        throughput_4k: paired(&lib.throughput_4k, &raw.throughput_4k),
        connect_rate: paired(&lib.connect_rate, &raw.connect_rate),
    }
}

fn describe_placement(pin: Pin, place: Placement) -> String {
    match (place.client, place.server) {
        (Some(c), Some(s)) if c == s => format!("client and server pinned to CPU {c} (--pin same)"),
        (Some(c), Some(s)) => format!("client on CPU {c}, server on CPU {s} (--pin split)"),
        _ => format!("unpinned (--pin {})", pin.as_str()),
    }
}

fn table(
    args: &BenchArgs,
    plan: &Plan,
    place: Placement,
    elapsed: Duration,
    samples: &[Samples; 2],
) -> String {
    let (lib, raw) = (&samples[0].summary(), &samples[1].summary());
    let r = ratios(samples);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{BOLD}localsock bench{BOLD:#}: localsock vs raw std UnixStream, {} repetition{} \
         alternated, medians; {}",
        plan.repetitions,
        if plan.repetitions == 1 { "" } else { "s" },
        describe_placement(args.pin, place)
    );
    let _ = writeln!(
        out,
        "{DIM}{} x 64 B round trips; {} MiB in 64 KiB writes, {} MiB in 4 KiB writes; {} \
         connections; {:.1} s{DIM:#}",
        plan.round_trips,
        plan.stream_bytes >> 20,
        (plan.stream_bytes / 4) >> 20,
        plan.connections,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{BOLD}{:<28} {:>11} {:>11} {:>7}   {:<8}{BOLD:#}",
        "", "localsock", "raw", "ratio", "target"
    );
    let rows: [Row<'_>; 5] = [
        (
            "latency median (µs)",
            lib.latency_median_us,
            raw.latency_median_us,
            r.latency_median,
            Some((r.latency_median <= LATENCY_MAX, format!("<= {LATENCY_MAX}"))),
            2,
        ),
        (
            "latency p99 (µs)",
            lib.latency_p99_us,
            raw.latency_p99_us,
            r.latency_p99,
            None,
            2,
        ),
        (
            "throughput 64 KiB (GiB/s)",
            lib.throughput_64k,
            raw.throughput_64k,
            r.throughput_64k,
            Some((
                r.throughput_64k >= THROUGHPUT_MIN,
                format!(">= {THROUGHPUT_MIN}"),
            )),
            2,
        ),
        (
            "throughput 4 KiB (GiB/s)",
            lib.throughput_4k,
            raw.throughput_4k,
            r.throughput_4k,
            None,
            2,
        ),
        (
            "connect-echo-close (conn/s)",
            lib.connect_rate,
            raw.connect_rate,
            r.connect_rate,
            Some((r.connect_rate >= CONNECT_MIN, format!(">= {CONNECT_MIN}"))),
            0,
        ),
    ];
    for (label, l, w, ratio, target, digits) in rows {
        let _ = write!(
            out,
            "{label:<28} {l:>11.digits$} {w:>11.digits$} {ratio:>7.2}   "
        );
        match target {
            Some((true, text)) => {
                let _ = writeln!(out, "{text:<8} {GOOD}met{GOOD:#}");
            }
            Some((false, text)) => {
                let _ = writeln!(out, "{text:<8} {BAD}missed{BAD:#}");
            }
            None => {
                let _ = writeln!(out);
            }
        }
    }
    let fds = |s: &Summary| match (s.fds_before, s.fds_after) {
        (Some(b), Some(a)) => format!("{b}->{a}"),
        _ => "n/a".to_owned(),
    };
    let leak = |s: &Summary| match (s.fds_before, s.fds_after) {
        (Some(b), Some(a)) if a > b => format!(" {BAD}leak{BAD:#}"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "{:<28} {:>11} {:>11}{}{}",
        "server fds before->after*",
        fds(lib),
        fds(raw),
        leak(lib),
        leak(raw)
    );
    let _ = writeln!(
        out,
        "{DIM}ratio: median over repetitions of localsock/raw, each pair measured back to back\n\
         *: fresh servers every repetition; the one that gained the most descriptors{DIM:#}"
    );
    out
}

fn to_json(
    args: &BenchArgs,
    plan: &Plan,
    place: Placement,
    elapsed: Duration,
    samples: &[Samples; 2],
) -> serde_json::Value {
    let (lib, raw) = (&samples[0].summary(), &samples[1].summary());
    let r = ratios(samples);
    let metrics = |s: &Summary, samples: &Samples| {
        json!({
            "latency_median_us": s.latency_median_us,
            "latency_p99_us": s.latency_p99_us,
            "throughput_64k_gib_s": s.throughput_64k,
            "throughput_4k_gib_s": s.throughput_4k,
            "connect_per_s": s.connect_rate,
            "server_fds_before": s.fds_before,
            "server_fds_after": s.fds_after,
            "repetitions": {
                "latency_median_us": samples.latency_median_us,
                "latency_p99_us": samples.latency_p99_us,
                "throughput_64k_gib_s": samples.throughput_64k,
                "throughput_4k_gib_s": samples.throughput_4k,
                "connect_per_s": samples.connect_rate,
            },
        })
    };
    json!({
        "localsock_version": env!("CARGO_PKG_VERSION"),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "quick": args.quick,
        "pin": args.pin.as_str(),
        "client_cpu": place.client,
        "server_cpu": place.server,
        "repetitions": plan.repetitions,
        "elapsed_s": elapsed.as_secs_f64(),
        "parameters": {
            "message_bytes": MESSAGE,
            "latency_warmup": plan.warmup,
            "latency_round_trips": plan.round_trips,
            "stream_bytes_64k": plan.stream_bytes,
            "stream_bytes_4k": plan.stream_bytes / 4,
            "connections": plan.connections,
        },
        "localsock": metrics(lib, &samples[0]),
        "raw": metrics(raw, &samples[1]),
        "ratio": {
            "latency_median": r.latency_median,
            "latency_p99": r.latency_p99,
            "throughput_64k": r.throughput_64k,
            "throughput_4k": r.throughput_4k,
            "connect_rate": r.connect_rate,
        },
        "targets": {
            "latency_median": { "max": LATENCY_MAX, "met": r.latency_median <= LATENCY_MAX },
            "throughput_64k": { "min": THROUGHPUT_MIN, "met": r.throughput_64k >= THROUGHPUT_MIN },
            "connect_rate": { "min": CONNECT_MIN, "met": r.connect_rate >= CONNECT_MIN },
        },
    })
}

/// One implementation's client side.
enum Endpoint {
    Lib(Name),
    Raw(PathBuf),
}

/// A connected client of either implementation, without dynamic dispatch in the hot loops.
enum Client {
    Lib(LocalStream),
    Raw(UnixStream),
}

impl Endpoint {
    fn label(&self) -> &'static str {
        match self {
            Endpoint::Lib(_) => "localsock",
            Endpoint::Raw(_) => "raw",
        }
    }

    fn connect(&self) -> io::Result<Client> {
        match self {
            Endpoint::Lib(name) => LocalStream::connect(name).map(Client::Lib),
            Endpoint::Raw(path) => UnixStream::connect(path).map(Client::Raw).map_err(|e| {
                io::Error::new(e.kind(), format!("connect to {}: {e}", path.display()))
            }),
        }
    }
}

/// Runs `f` with the concrete stream type, so each loop is monomorphic.
macro_rules! with_stream {
    ($client:expr, $s:ident => $body:expr) => {
        match $client {
            Client::Lib(mut $s) => $body,
            Client::Raw(mut $s) => $body,
        }
    };
}

/// 64-byte ping-pong on one connection: median and p99 of single round trips, in µs.
fn latency(endpoint: &Endpoint, warmup: u32, round_trips: u32) -> io::Result<(f64, f64)> {
    let client = endpoint.connect()?;
    with_stream!(client, s => ping_pong(&mut s, warmup, round_trips))
}

fn ping_pong<S: Read + Write>(s: &mut S, warmup: u32, round_trips: u32) -> io::Result<(f64, f64)> {
    let message = [b'p'; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    for _ in 0..warmup {
        s.write_all(&message)?;
        s.read_exact(&mut reply)?;
    }
    let mut times: Vec<u64> = Vec::with_capacity(round_trips as usize);
    let mut before = Instant::now();
    for _ in 0..round_trips {
        s.write_all(&message)?;
        s.read_exact(&mut reply)?;
        let after = Instant::now();
        times.push((after - before).as_nanos() as u64);
        before = after;
    }
    if reply != message {
        return Err(io::Error::other(
            "bench: the echo server answered wrong bytes",
        ));
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    Ok((at(0.5), at(0.99)))
}

/// Streams `bytes` in `chunk`-sized writes; GiB/s from the first byte to the server's ack.
fn throughput(endpoint: &Endpoint, bytes: u64, chunk: usize) -> io::Result<f64> {
    let client = endpoint.connect()?;
    with_stream!(client, s => stream_to_sink(&mut s, bytes, chunk))
}

fn stream_to_sink<S: Read + Write>(s: &mut S, bytes: u64, chunk: usize) -> io::Result<f64> {
    let data = vec![0xa5u8; chunk];
    let mut header = [0u8; HEADER];
    header[0] = SINK;
    header[1..].copy_from_slice(&bytes.to_le_bytes());
    let start = Instant::now();
    s.write_all(&header)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        s.write_all(&data[..n])?;
        left -= n as u64;
    }
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack)?;
    let secs = start.elapsed().as_secs_f64();
    if u64::from_le_bytes(ack) != bytes {
        return Err(io::Error::other(
            "bench: the sink acknowledged a wrong byte count",
        ));
    }
    Ok(bytes as f64 / secs / f64::from(1u32 << 30))
}

/// `connections` x (connect, write 1 byte, read its echo, close), sequential: conn/s.
fn connect_rate(endpoint: &Endpoint, connections: u32) -> io::Result<f64> {
    let start = Instant::now();
    for _ in 0..connections {
        let client = endpoint.connect()?;
        with_stream!(client, s => {
            let mut byte = [b'c'];
            s.write_all(&byte)?;
            s.read_exact(&mut byte)?;
        });
    }
    Ok(f64::from(connections) / start.elapsed().as_secs_f64())
}

/// A bench server process; killed and its socket file removed on drop.
struct Server {
    child: Child,
    _stdin: Option<ChildStdin>,
    path: Option<PathBuf>,
}

impl Server {
    fn start(imp: Imp, name: String, cpu: Option<usize>) -> io::Result<Server> {
        let exe = std::env::current_exe()
            .map_err(|e| io::Error::new(e.kind(), format!("bench: finding this program: {e}")))?;
        let mut command = Command::new(exe);
        command
            .arg("bench-server")
            .arg("--imp")
            .arg(match imp {
                Imp::Localsock => "localsock",
                Imp::Raw => "raw",
            })
            .arg("--name")
            .arg(&name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(cpu) = cpu {
            command.arg("--cpu").arg(cpu.to_string());
        }
        let mut child = command.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("bench: starting the server process: {e}"))
        })?;
        let stdin = child.stdin.take();
        let path = match imp {
            Imp::Localsock => Name::new(&name)
                .ok()
                .and_then(|n| n.fs_path().map(PathBuf::from)),
            Imp::Raw => Some(PathBuf::from(&name)),
        };
        let mut server = Server {
            child,
            _stdin: stdin,
            path,
        };
        let mut line = String::new();
        if let Some(out) = server.child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        if line.trim() != "ready" {
            return Err(io::Error::other(format!(
                "bench: the {} server process did not start (see the message above)",
                match imp {
                    Imp::Localsock => "localsock",
                    Imp::Raw => "raw",
                }
            )));
        }
        Ok(server)
    }

    /// The server's open descriptors (Linux), counted while one benchmark connection is open
    /// and answered, so that the server has finished with every earlier one (it serves one at
    /// a time): the same state before and after, whatever the timing.
    fn fd_count(&self, endpoint: &Endpoint) -> io::Result<Option<u64>> {
        let client = endpoint.connect()?;
        with_stream!(client, s => {
            let mut byte = [b'f'];
            s.write_all(&byte)?;
            s.read_exact(&mut byte)?;
            Ok(count_fds(self.child.id()))
        })
    }
}

#[cfg(target_os = "linux")]
fn count_fds(pid: u32) -> Option<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.count() as u64)
}

#[cfg(not(target_os = "linux"))]
fn count_fds(_pid: u32) -> Option<u64> {
    None
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The hidden `bench-server` subcommand: serve connections one at a time until stdin closes.
pub(crate) fn serve(args: BenchServerArgs) -> io::Result<()> {
    if let Some(cpu) = args.cpu {
        pin::pin_to(cpu)?;
    }
    // Exit when the parent goes away (its end of our stdin closes), even if it was killed.
    thread::Builder::new()
        .name("parent-watch".into())
        .stack_size(64 * 1024)
        .spawn(|| {
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            std::process::exit(0);
        })?;
    let mut buf = vec![0u8; BUF];
    match args.imp {
        Imp::Localsock => {
            let name = Name::new(&args.name)?;
            let listener = LocalListener::bind(&name)?;
            ready()?;
            loop {
                let stream = listener.accept()?;
                serve_one(stream, &mut buf)?;
            }
        }
        Imp::Raw => {
            remove_stale_socket(std::path::Path::new(&args.name))?;
            let listener = UnixListener::bind(&args.name)
                .map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", args.name)))?;
            ready()?;
            loop {
                let (stream, _) = listener.accept()?;
                serve_one(stream, &mut buf)?;
            }
        }
    }
}

/// Removes a socket file left at `path` by an earlier run; anything that is not a socket is
/// refused, never deleted (`bench-server --name` must not become `rm`).
fn remove_stale_socket(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to remove it",
                path.display()
            ),
        )),
    }
}

fn ready() -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()
}

/// Echo until EOF, or, if the first byte is [`SINK`], read a byte count, discard that many
/// bytes and answer the count.
fn serve_one<S: Read + Write>(mut s: S, buf: &mut [u8]) -> io::Result<()> {
    let result = (|| -> io::Result<()> {
        let mut have = 0;
        loop {
            let n = s.read(&mut buf[have..])?;
            if n == 0 {
                return Ok(());
            }
            have += n;
            if buf[0] != SINK {
                s.write_all(&buf[..have])?;
                break;
            }
            if have >= HEADER {
                break;
            }
        }
        if buf[0] != SINK {
            loop {
                let n = s.read(buf)?;
                if n == 0 {
                    return Ok(());
                }
                s.write_all(&buf[..n])?;
            }
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&buf[1..HEADER]);
        let total = u64::from_le_bytes(count);
        let mut got = (have - HEADER) as u64;
        while got < total {
            let n = s.read(buf)?;
            if n == 0 {
                return Ok(());
            }
            got += n as u64;
        }
        s.write_all(&total.to_le_bytes())
    })();
    match result {
        // A client that went away mid-way is the client's business.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn ratios_pair_each_repetition() {
        // The load swings between repetitions and one localsock sample is hit by a spike: the
        // pairs keep the true 1.1x, a ratio of medians would say 22/30.
        let lib = Samples {
            connect_rate: vec![11.0, 22.0, 33.0, 2.0, 55.0],
            ..Samples::default()
        };
        let raw = Samples {
            connect_rate: vec![10.0, 20.0, 30.0, 40.0, 50.0],
            ..Samples::default()
        };
        assert_eq!(
            median(&lib.connect_rate) / median(&raw.connect_rate),
            22.0 / 30.0
        );
        let r = ratios(&[lib, raw]);
        assert!((r.connect_rate - 1.1).abs() < 1e-9, "{}", r.connect_rate);
    }
}

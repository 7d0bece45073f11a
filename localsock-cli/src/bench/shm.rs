//! `localsock bench --shm`: the shared-memory data path (`ShmStream`) against the raw socket
//! (std's `UnixStream` on both sides), in the same run.
//!
//! Like the default bench: the servers are separate processes (`bench-server --imp shm` and
//! `--imp raw`), started afresh for every repetition and placement; the two implementations
//! alternate within every scenario, and the report gives medians over repetitions and the
//! median of the paired ratios. Each repetition runs every placement the CPUs allow: the server
//! on another CPU than the client, and on the client's CPU.

use std::fmt::Write as _;
use std::io;
use std::time::{Duration, Instant};

use localsock::ShmOptions;

use super::report::progress_bar;
use super::server::Server;
use super::stats::{median, paired};
use super::workload::{latency, throughput, with_stream, Client, Endpoint};
use super::{bench_names, MESSAGE};
use crate::cli::{BenchArgs, Imp};
use crate::pin;
use crate::{BAD, BOLD, DIM, GOOD};

/// The servers read into buffers this large, so a 1 MiB write can arrive in one read.
const SERVER_BUFFER: usize = 1 << 20;
/// How long after its last round trip an idle connection is left before its CPU use is
/// measured: far past the spin window (50 µs by default).
const SETTLE: Duration = Duration::from_millis(100);

/// Targets from the issue, shm / raw in the same run (round trips: at most; streams: at least).
const ROUND_TRIP_MAX_SPLIT: f64 = 0.15;
const ROUND_TRIP_MAX_SAME: f64 = 1.1;
const STREAM_64K_MIN_SPLIT: f64 = 2.0;
const STREAM_64K_MIN_SAME: f64 = 1.5;
const STREAM_1M_MIN_SPLIT: f64 = 3.0;

#[derive(Clone, Copy, Debug)]
struct Plan {
    repetitions: u32,
    warmup: u32,
    round_trips: u32,
    stream_bytes: u64,
    idle: Duration,
}

impl Plan {
    fn new(args: &BenchArgs) -> Plan {
        let mut plan = if args.quick {
            Plan {
                repetitions: 3,
                warmup: 200,
                round_trips: 2_000,
                stream_bytes: 32 << 20,
                idle: Duration::from_millis(500),
            }
        } else {
            Plan {
                repetitions: 10,
                warmup: 2_000,
                round_trips: 20_000,
                stream_bytes: 256 << 20,
                idle: Duration::from_secs(2),
            }
        };
        if let Some(n) = args.repetitions {
            plan.repetitions = n;
        }
        plan
    }
}

/// Where the server runs relative to the client.
#[derive(Debug)]
struct Placement {
    label: String,
    server_cpu: usize,
    split: bool,
}

/// One placement's samples, per implementation (0: shm, 1: raw), each a list over repetitions.
#[derive(Debug, Default)]
struct Samples {
    round_trip: [Vec<f64>; 2],
    round_trip_p99: [Vec<f64>; 2],
    stream_64k: [Vec<f64>; 2],
    stream_1m: [Vec<f64>; 2],
    /// Idle server CPU, percent: from /proc/PID/stat ticks, and from /proc/PID/schedstat.
    idle_stat: [f64; 2],
    idle_schedstat: [f64; 2],
}

pub(super) fn run(args: BenchArgs) -> io::Result<()> {
    let plan = Plan::new(&args);
    let fail = |e: io::Error| io::Error::new(e.kind(), format!("bench --shm: {e}"));
    let cpus = pin::allowed_cpus().map_err(fail)?;
    let client_cpu = cpus[0];
    pin::pin_to(client_cpu).map_err(fail)?;
    let mut placements = Vec::new();
    if let Some(&other) = cpus.get(1) {
        placements.push(Placement {
            label: format!("different CPUs (client on CPU {client_cpu}, server on CPU {other})"),
            server_cpu: other,
            split: true,
        });
    } else {
        crate::warn(&format!(
            "bench --shm: this process may run on CPU {client_cpu} only: measuring the same-CPU \
             placement only"
        ));
    }
    placements.push(Placement {
        label: format!("same CPU (client and server on CPU {client_cpu})"),
        server_cpu: client_cpu,
        split: false,
    });
    if cfg!(debug_assertions) {
        crate::warn("this is a debug build: build with --release for meaningful figures");
    }

    let (shm_name, raw_path) = bench_names()?;
    let shm_server_name = shm_name.to_string();
    let raw_server_name = raw_path.display().to_string();
    let endpoints = [Endpoint::Shm(shm_name), Endpoint::Raw(raw_path)];
    let imps = [Imp::Shm, Imp::Raw];
    let names = [shm_server_name, raw_server_name];
    let start_servers = |cpu: usize| -> io::Result<[Server; 2]> {
        Ok([
            Server::start(imps[0], names[0].clone(), Some(cpu), SERVER_BUFFER)?,
            Server::start(imps[1], names[1].clone(), Some(cpu), SERVER_BUFFER)?,
        ])
    };

    let load_before = load_average();
    let steps = (u64::from(plan.repetitions) * 6 + 2) * placements.len() as u64;
    let bar = progress_bar(steps);
    let mut samples: Vec<Samples> = placements.iter().map(|_| Samples::default()).collect();
    let started = Instant::now();
    for rep in 0..plan.repetitions {
        for (place, samples) in placements.iter().zip(samples.iter_mut()) {
            let _servers = start_servers(place.server_cpu)?;
            // Alternate which implementation goes first, so drift hits both alike.
            let order: [usize; 2] = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
            let step = |what: &str, i: usize| {
                bar.set_message(format!(
                    "{}/{} {}, {what}: {}",
                    rep + 1,
                    plan.repetitions,
                    if place.split {
                        "different CPUs"
                    } else {
                        "same CPU"
                    },
                    endpoints[i].label()
                ));
            };
            for i in order {
                step("64 B round trips", i);
                let (med, p99) = latency(&endpoints[i], plan.warmup, plan.round_trips)?;
                samples.round_trip[i].push(med);
                samples.round_trip_p99[i].push(p99);
                bar.inc(1);
            }
            for i in order {
                step("64 KiB writes", i);
                let rate = throughput(&endpoints[i], plan.stream_bytes, 64 << 10)?;
                samples.stream_64k[i].push(rate);
                bar.inc(1);
            }
            for i in order {
                step("1 MiB writes", i);
                let rate = throughput(&endpoints[i], plan.stream_bytes, 1 << 20)?;
                samples.stream_1m[i].push(rate);
                bar.inc(1);
            }
        }
    }
    for (place, samples) in placements.iter().zip(samples.iter_mut()) {
        let servers = start_servers(place.server_cpu)?;
        for i in 0..2 {
            bar.set_message(format!("idle connection: {}", endpoints[i].label()));
            let (stat, schedstat) = idle_cpu(&endpoints[i], &servers[i], plan.idle)?;
            samples.idle_stat[i] = stat;
            samples.idle_schedstat[i] = schedstat;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let load_after = load_average();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "{BOLD}localsock bench --shm{BOLD:#}: shared memory (ShmStream) vs raw std UnixStream, \
         {} repetition{} alternated, medians",
        plan.repetitions,
        if plan.repetitions == 1 { "" } else { "s" },
    );
    let _ = writeln!(
        out,
        "{DIM}{} x 64 B round trips; {} MiB in 64 KiB writes and in 1 MiB writes; idle \
         window {:.1} s; {:?}; load average {} -> {}; {:.1} s{DIM:#}",
        plan.round_trips,
        plan.stream_bytes >> 20,
        plan.idle.as_secs_f64(),
        ShmOptions::new(),
        load_before,
        load_after,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{BOLD}{:<32} {:>10} {:>10} {:>7}   {:<8}{BOLD:#}",
        "", "shm", "raw", "ratio", "target"
    );
    for (place, s) in placements.iter().zip(&samples) {
        let _ = writeln!(out, "{BOLD}{}{BOLD:#}", place.label);
        let (rt_max, s64_min, s1m_min) = if place.split {
            (
                ROUND_TRIP_MAX_SPLIT,
                STREAM_64K_MIN_SPLIT,
                Some(STREAM_1M_MIN_SPLIT),
            )
        } else {
            (ROUND_TRIP_MAX_SAME, STREAM_64K_MIN_SAME, None)
        };
        let rows: [Row<'_>; 4] = [
            (
                "64 B round trip median (µs)",
                &s.round_trip,
                Some(Target::AtMost(rt_max)),
            ),
            ("64 B round trip p99 (µs)", &s.round_trip_p99, None),
            (
                "64 KiB writes (GiB/s)",
                &s.stream_64k,
                Some(Target::AtLeast(s64_min)),
            ),
            (
                "1 MiB writes (GiB/s)",
                &s.stream_1m,
                s1m_min.map(Target::AtLeast),
            ),
        ];
        for (label, values, target) in rows {
            let ratio = paired(&values[0], &values[1]);
            let _ = write!(
                out,
                "  {label:<30} {:>10.2} {:>10.2} {ratio:>7.3}   ",
                median(&values[0]),
                median(&values[1])
            );
            write_target(&mut out, target.map(|t| t.check(ratio)));
        }
        let _ = write!(
            out,
            "  {:<30} {:>10.2} {:>10.2} {:>7}   ",
            "idle server CPU (%)", s.idle_stat[0], s.idle_stat[1], "-"
        );
        write_target(&mut out, Some((s.idle_stat[0] == 0.0, "= 0".to_owned())));
        let _ = writeln!(
            out,
            "  {:<30} {:>10.3} {:>10.3}",
            "idle server CPU, schedstat (%)", s.idle_schedstat[0], s.idle_schedstat[1]
        );
    }
    let _ = writeln!(
        out,
        "{DIM}ratio: median over repetitions of shm/raw, each pair measured back to back; idle: \
         the server's utime+stime (/proc/PID/stat) and run time (/proc/PID/schedstat) over the \
         idle window, {} ms after the connection's last round trip{DIM:#}",
        SETTLE.as_millis()
    );
    outln!("{}", out.trim_end());
    Ok(())
}

/// A row of the table: its label, the samples (shm, raw), its target.
type Row<'a> = (&'a str, &'a [Vec<f64>; 2], Option<Target>);

#[derive(Clone, Copy, Debug)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn check(self, ratio: f64) -> (bool, String) {
        match self {
            Target::AtMost(max) => (ratio <= max, format!("<= {max}")),
            Target::AtLeast(min) => (ratio >= min, format!(">= {min}")),
        }
    }
}

fn write_target(out: &mut String, target: Option<(bool, String)>) {
    match target {
        Some((true, text)) => {
            let _ = writeln!(out, "{text:<8} {GOOD}met{GOOD:#}");
        }
        Some((false, text)) => {
            let _ = writeln!(out, "{text:<8} {BAD}missed{BAD:#}");
        }
        None => {
            out.truncate(out.trim_end_matches(' ').len());
            let _ = writeln!(out);
        }
    }
}

/// The server's CPU use while one of its connections is open and idle, in percent: from the
/// ticks in /proc/PID/stat (the measure; 1 tick is 1/CLK_TCK s) and from the
/// nanoseconds in /proc/PID/schedstat (finer).
fn idle_cpu(endpoint: &Endpoint, server: &Server, window: Duration) -> io::Result<(f64, f64)> {
    let client = endpoint.connect()?;
    with_stream!(client, s => {
        use std::io::{Read, Write};
        // One round trip (as `latency` does), so the server has run its read path and waits.
        let mut message = [b'i'; MESSAGE];
        s.write_all(&message)?;
        s.read_exact(&mut message)?;
        std::thread::sleep(SETTLE);
        let before = cpu_time(server.pid())?;
        let at = Instant::now();
        std::thread::sleep(window);
        let after = cpu_time(server.pid())?;
        let secs = at.elapsed().as_secs_f64();
        let ticks = (after.0 - before.0) as f64 / rustix::param::clock_ticks_per_second() as f64;
        let ns = (after.1 - before.1) as f64 / 1e9;
        Ok((ticks / secs * 100.0, ns / secs * 100.0))
    })
}

/// A process's CPU time: utime + stime in ticks (/proc/PID/stat), run time in ns
/// (/proc/PID/schedstat).
fn cpu_time(pid: u32) -> io::Result<(u64, u64)> {
    let bad = || io::Error::other(format!("bench: unexpected /proc/{pid}/stat or schedstat"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold anything: count from the last
    // ')'. After it come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').ok_or_else(bad)?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(bad)
    };
    let ticks = field(14)? + field(15)?;
    let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    let ns = schedstat
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    Ok((ticks, ns))
}

/// The 1-minute load average, as /proc/loadavg gives it ("?" if unreadable).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

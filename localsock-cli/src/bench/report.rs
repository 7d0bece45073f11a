//! How the bench reports: the progress bar, the table and the JSON document, with the targets.

use std::fmt::Write as _;
use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::plan::{Placement, Plan};
use super::stats::{ratios, Samples, Summary};
use super::MESSAGE;
use crate::cli::{BenchArgs, Pin};
use crate::{BAD, BOLD, DIM, GOOD};

/// Targets from the issue: library / raw, in the same run.
const LATENCY_MAX: f64 = 1.05;
const THROUGHPUT_MIN: f64 = 0.95;
const CONNECT_MIN: f64 = 0.85;
pub(super) fn progress_bar(steps: u64) -> ProgressBar {
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

fn describe_placement(pin: Pin, place: Placement) -> String {
    match (place.client, place.server) {
        (Some(c), Some(s)) if c == s => format!("client and server pinned to CPU {c} (--pin same)"),
        (Some(c), Some(s)) => format!("client on CPU {c}, server on CPU {s} (--pin split)"),
        _ => format!("unpinned (--pin {})", pin.as_str()),
    }
}
pub(super) fn table(
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

pub(super) fn to_json(
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

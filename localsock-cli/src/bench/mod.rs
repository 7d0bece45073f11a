//! `localsock bench`: the library against raw `std::os::unix::net` sockets, in the same run.
//!
//! The server runs in a separate process (this binary, `bench-server`), one per
//! implementation, started afresh for every repetition; both serve connections one at a time.
//! The client alternates the two implementations within every scenario and repetition, and
//! reports medians over repetitions.

mod plan;
mod report;
mod server;
#[cfg(all(feature = "shm", target_os = "linux"))]
mod shm;
mod stats;
mod workload;

use std::io;
use std::path::PathBuf;
use std::time::Instant;

use localsock::Name;

use crate::cli::{BenchArgs, Imp};
use crate::pin;
use plan::{placement, Plan};
use report::{progress_bar, table, to_json};
use server::Server;
use stats::Samples;
use workload::{connect_rate, latency, throughput, Endpoint};

pub(crate) use server::serve;

const MESSAGE: usize = 64;
const SINK: u8 = b'S';
const HEADER: usize = 9;
const BUF: usize = 64 * 1024;

pub(crate) fn run(args: BenchArgs) -> io::Result<()> {
    if args.shm {
        return run_shm(args);
    }
    let plan = Plan::new(&args);
    let place = placement(args.pin).map_err(|e| io::Error::new(e.kind(), format!("bench: {e}")))?;
    if let Some(cpu) = place.client {
        pin::pin_to(cpu).map_err(|e| io::Error::new(e.kind(), format!("bench: {e}")))?;
    }
    if cfg!(debug_assertions) && !args.json {
        crate::warn("this is a debug build: build with --release for meaningful figures");
    }

    let (lib_name, raw_path) = bench_names()?;
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
            Server::start(Imp::Localsock, lib_server_name.clone(), place.server, BUF)?,
            Server::start(Imp::Raw, raw_server_name.clone(), place.server, BUF)?,
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

/// The library server's name and the raw server's socket path, both in the per-user directory.
fn bench_names() -> io::Result<(Name, PathBuf)> {
    let id = std::process::id();
    // The bench's own names always use the default rule (never `--qt`): the server process is
    // started without that flag and must resolve the same endpoint.
    let lib_name = Name::new(format!("localsock-bench-{id}"))?;
    match lib_name.fs_path() {
        Some(path) => {
            let raw_path = path.with_file_name(format!("localsock-bench-{id}-raw"));
            Ok((lib_name, raw_path))
        }
        None => Err(io::Error::other(
            "bench: the library's default name is not a path on this OS",
        )),
    }
}

#[cfg(all(feature = "shm", target_os = "linux"))]
fn run_shm(args: BenchArgs) -> io::Result<()> {
    shm::run(args)
}

#[cfg(not(all(feature = "shm", target_os = "linux")))]
fn run_shm(_args: BenchArgs) -> io::Result<()> {
    Err(shm_unsupported())
}

/// `bench --shm` where it cannot run.
#[cfg(not(all(feature = "shm", target_os = "linux")))]
fn shm_unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        if cfg!(target_os = "linux") {
            "bench --shm: this localsock was built without the `shm` feature"
        } else {
            "bench --shm: the shared-memory benchmark runs on Linux only (it pins CPUs and reads /proc)"
        },
    )
}

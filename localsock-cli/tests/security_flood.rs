//! `localsock echo` under attack and fault (SECURITY.md): a flood of idle connections does not
//! starve a well-behaved client, and running out of descriptors neither kills the server nor
//! makes it spin. The library-level versions of these tests are in localsock/tests/security.rs.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use localsock::{ConnectOptions, LocalStream, Name};

/// Kills the child on drop; its output is drained by threads so it never blocks on a pipe.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `localsock echo` with `args` and waits for it to say it listens.
fn echo_server(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_localsock"))
        .arg("echo")
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start localsock echo");
    let (tx, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining so the server never blocks.
                    continue;
                }
            }
        });
    }
    let server = Server { child, lines };
    let first = server
        .lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the echo server started");
    assert!(first.starts_with("listening on"), "{first}");
    server
}

/// Fails the test binary if it is still running after `secs`.
fn watchdog(what: &'static str, secs: u64) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
            eprintln!("WATCHDOG: `{what}` still running after {secs} s: aborting");
            std::process::exit(99);
        }
    });
    tx
}

fn round_trip(name: &Name, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = ConnectOptions::new()
        .timeout(Duration::from_secs(10))
        .connect(name)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(payload)?;
    let mut back = vec![0; payload.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// CPU time (user + system) a process has used, in clock ticks, from `/proc/PID/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Raises this process's soft descriptor limit to the hard one; returns the limit.
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
    limit.maximum.unwrap_or(u64::MAX)
}

/// 10,000 clients connect to `localsock echo` and never send a byte; a well-behaved client is
/// still served. The echo server serves each client on its own thread, up to `--max-clients`;
/// the flood stays under that bound (clients beyond it wait in the backlog by design: a server
/// that caps its clients can always be filled by idle ones, see SECURITY.md).
#[test]
fn echo_serves_a_well_behaved_client_during_an_idle_flood() {
    let _w = watchdog(
        "echo_serves_a_well_behaved_client_during_an_idle_flood",
        120,
    );
    let limit = raise_nofile();
    let n = 10_000.min(limit.saturating_sub(200) as usize);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flood.sock");
    let max = (n + 100).to_string();
    let server = echo_server(&["--max-clients", &max, path.to_str().unwrap()]);
    let name = Name::path(&path).unwrap();
    let flood: Vec<LocalStream> = (0..n)
        .map(|i| {
            ConnectOptions::new()
                .timeout(Duration::from_secs(30))
                .connect(&name)
                .unwrap_or_else(|e| panic!("flood connect #{i}: {e}"))
        })
        .collect();
    let back = round_trip(&name, b"well-behaved").expect("served despite the flood");
    assert_eq!(back, b"well-behaved");
    let held = fd_count(server.child.id());
    println!("{n} idle clients; the echo server holds {held} descriptors");
    assert!(
        held >= n,
        "the server did not accept the flood ({held} fds)"
    );
    drop(flood);
}

/// `localsock echo` out of descriptors: it stays up, pauses instead of spinning on the
/// connections queued behind the shortage, and serves again once clients leave.
#[test]
fn echo_survives_descriptor_exhaustion_without_spinning() {
    let _w = watchdog("echo_survives_descriptor_exhaustion_without_spinning", 60);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("starved.sock");
    let mut server = echo_server(&[path.to_str().unwrap()]);
    // Starve the running server: room for what it has open plus a few clients.
    let pid = rustix::process::Pid::from_child(&server.child);
    let open = fd_count(server.child.id()) as u64;
    // The child inherited this process's limits; keep its hard limit.
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    rustix::process::prlimit(
        Some(pid),
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(open + 6),
            maximum: hard,
        },
    )
    .expect("prlimit on the echo server");
    let name = Name::path(&path).unwrap();
    let flood: Vec<LocalStream> = (0..100)
        .map(|_| LocalStream::connect(&name).expect("queued while the server is starved"))
        .collect();
    // It says so (at most once a second).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = server
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server reported the shortage");
        if line.contains("pausing before accepting again") {
            assert!(line.contains(&path.display().to_string()), "{line}");
            break;
        }
    }
    let before = cpu_ticks(server.child.id());
    let start = Instant::now();
    thread::sleep(Duration::from_secs(2));
    let used = (cpu_ticks(server.child.id()) - before) as f64 / clock_ticks_per_second() as f64;
    let share = used / start.elapsed().as_secs_f64();
    println!("starved echo server used {:.1}% of a CPU", share * 100.0);
    assert!(
        share < 0.25,
        "the starved server spins: {:.0}%",
        share * 100.0
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the echo server died when it ran out of descriptors"
    );
    drop(flood);
    let back = round_trip(&name, b"after").expect("served again once descriptors are free");
    assert_eq!(back, b"after");
}

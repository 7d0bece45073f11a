//! A peer killed (SIGKILL) mid-write or mid-read, at random points, over many rounds, with the
//! killed process as the client or as the server: the survivor (this process, with the
//! blocking API and, with the `tokio` feature, the async one) never hangs or panics, sees EOF or
//! `BrokenPipe`/`ConnectionReset`, a surviving server keeps accepting, and this process's
//! descriptor count is back at its baseline afterwards.
//!
//! One test in this binary, so that no other test opens descriptors while it counts. The
//! random delays come from a seed that is printed; set `LOCALSOCK_TEST_SEED` to replay it.
#![cfg(target_os = "linux")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{child, fd_count, is_child, read_line, watchdog};
use localsock::{LocalListener, LocalStream, Name};

const ROUNDS_PER_CASE: usize = 100;

/// The longest a survivor may wait for the outcome: a hang fails here, not at CI's limit.
const BOUND: Duration = Duration::from_secs(10);

/// xorshift64: enough to scatter kill times, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Clone, Copy, Debug)]
enum Side {
    /// The child connects; this process accepts.
    ChildIsClient,
    /// The child listens; this process connects.
    ChildIsServer,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    /// The child writes without end (this process reads) when it is killed.
    ChildWrites,
    /// The child reads without end (this process writes) when it is killed.
    ChildReads,
}

impl Action {
    /// What `LOCALSOCK_TEST_ACTION` tells the child to do.
    fn child_arg(self) -> &'static str {
        match self {
            Action::ChildWrites => "write",
            Action::ChildReads => "read",
        }
    }
}

#[test]
fn a_peer_killed_at_random_points_never_hangs_or_leaks_the_survivor() {
    let _w = watchdog(
        "a_peer_killed_at_random_points_never_hangs_or_leaks_the_survivor",
        240,
    );
    let seed = std::env::var("LOCALSOCK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("seed {seed} (LOCALSOCK_TEST_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    #[cfg(feature = "tokio")]
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Warm up once so that anything opened lazily (none expected) is in the baseline.
    round(
        &dir.path().join("warm.sock"),
        Side::ChildIsClient,
        Action::ChildWrites,
        0,
    );
    #[cfg(feature = "tokio")]
    rt.block_on(async_round(
        &dir.path().join("warm-async.sock"),
        Side::ChildIsClient,
        Action::ChildWrites,
        0,
    ));
    let baseline = fd_count(me);

    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..ROUNDS_PER_CASE {
        for side in [Side::ChildIsClient, Side::ChildIsServer] {
            for action in [Action::ChildWrites, Action::ChildReads] {
                // Kill at once in some rounds (before the child reaches its loop), else after
                // up to 20 ms of traffic.
                let delay_us = match rng.next() % 4 {
                    0 => 0,
                    _ => rng.next() % 20_000,
                };
                let path = dir.path().join(format!("k{i}.sock"));
                let outcome = round(&path, side, action, delay_us);
                *outcomes
                    .entry(format!("blocking {side:?}/{action:?}: {outcome}"))
                    .or_default() += 1;
                #[cfg(feature = "tokio")]
                {
                    let path = dir.path().join(format!("a{i}.sock"));
                    let outcome = rt.block_on(async_round(&path, side, action, delay_us));
                    *outcomes
                        .entry(format!("async    {side:?}/{action:?}: {outcome}"))
                        .or_default() += 1;
                }
            }
        }
    }
    for (what, n) in &outcomes {
        println!("{n:4} x {what}");
    }
    let after = fd_count(me);
    assert_eq!(
        after, baseline,
        "descriptors leaked: {baseline} before, {after} after"
    );
}

/// One round: start the child, get a connection with it, kill it after `delay_us` while
/// traffic flows, and check what this side sees. Returns the outcome seen, for the summary.
fn round(path: &std::path::Path, side: Side, action: Action, delay_us: u64) -> String {
    let name = Name::path(path).unwrap();
    let envs = [
        ("LOCALSOCK_TEST_PATH", path.to_str().unwrap()),
        ("LOCALSOCK_TEST_ACTION", action.child_arg()),
    ];
    let (mut victim, stream, listener) = match side {
        Side::ChildIsClient => {
            let listener = LocalListener::bind(&name).unwrap();
            let victim = child("child_client", &envs).spawn().unwrap();
            let stream = listener.accept().unwrap();
            (victim, stream, Some(listener))
        }
        Side::ChildIsServer => {
            let mut victim = child("child_server", &envs).spawn().unwrap();
            assert_eq!(read_line(&mut victim), "listening");
            (victim, LocalStream::connect(&name).unwrap(), None)
        }
    };
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream.set_write_timeout(Some(BOUND)).unwrap();
    let killed = AtomicBool::new(false);
    let outcome = thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_micros(delay_us));
            victim.kill().unwrap();
            victim.wait().unwrap();
            killed.store(true, Ordering::SeqCst);
        });
        match action {
            Action::ChildWrites => read_until_the_end(&stream),
            Action::ChildReads => write_until_the_end(&stream),
        }
    });
    assert!(killed.load(Ordering::SeqCst));
    let outcome =
        outcome.unwrap_or_else(|e| panic!("{side:?}/{action:?} after {delay_us} us: {e}"));
    drop(stream);
    // A surviving server keeps serving after its client was killed.
    if let Some(listener) = listener {
        let _fresh = LocalStream::connect(&name).unwrap();
        listener.accept().expect("the listener still accepts");
    }
    outcome
}

/// [`round`] with this side on the async API.
#[cfg(feature = "tokio")]
async fn async_round(path: &std::path::Path, side: Side, action: Action, delay_us: u64) -> String {
    use localsock::tokio::{LocalListener, LocalStream};
    let name = Name::path(path).unwrap();
    let envs = [
        ("LOCALSOCK_TEST_PATH", path.to_str().unwrap()),
        ("LOCALSOCK_TEST_ACTION", action.child_arg()),
    ];
    let (mut victim, mut stream, listener) = match side {
        Side::ChildIsClient => {
            let listener = LocalListener::bind(&name).unwrap();
            let victim = child("child_client", &envs).spawn().unwrap();
            let stream = listener.accept().await.unwrap();
            (victim, stream, Some(listener))
        }
        Side::ChildIsServer => {
            let mut victim = child("child_server", &envs).spawn().unwrap();
            assert_eq!(read_line(&mut victim), "listening");
            (victim, LocalStream::connect(&name).await.unwrap(), None)
        }
    };
    let killer = thread::spawn(move || {
        thread::sleep(Duration::from_micros(delay_us));
        victim.kill().unwrap();
        victim.wait().unwrap();
    });
    let outcome = tokio::time::timeout(BOUND, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0x5au8; 64 * 1024];
        let mut total = 0usize;
        loop {
            let r = match action {
                Action::ChildWrites => stream.read(&mut buf).await,
                Action::ChildReads => stream.write(&buf).await,
            };
            match (action, r) {
                (Action::ChildWrites, Ok(0)) => return Ok("EOF".to_owned()),
                (Action::ChildReads, Ok(0)) => return Err("write returned 0".to_owned()),
                (_, Ok(n)) => total += n,
                (_, Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                (Action::ChildReads, Err(e)) if e.kind() == ErrorKind::BrokenPipe => {
                    return Ok("BrokenPipe".to_owned())
                }
                (_, Err(e)) if e.kind() == ErrorKind::ConnectionReset => {
                    return Ok(format!("ConnectionReset after {action:?}"))
                }
                (_, Err(e)) => return Err(format!("failed after {total} bytes: {e:?}")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no outcome within {BOUND:?}")));
    killer.join().unwrap();
    let outcome =
        outcome.unwrap_or_else(|e| panic!("async {side:?}/{action:?} after {delay_us} us: {e}"));
    drop(stream);
    if let Some(listener) = listener {
        let (fresh, accepted) = tokio::join!(LocalStream::connect(&name), listener.accept());
        fresh.unwrap();
        accepted.expect("the async listener still accepts");
    }
    outcome
}

/// Reads until the end; the end must be EOF or a reset, never a timeout or another error.
fn read_until_the_end(mut stream: &LocalStream) -> Result<String, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok("EOF".into()),
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Ok("ConnectionReset on read".into())
            }
            Err(e) => return Err(format!("read failed after {total} bytes: {e:?}")),
        }
    }
}

/// Writes until the end; the end must be `BrokenPipe` or a reset (and no SIGPIPE).
fn write_until_the_end(mut stream: &LocalStream) -> Result<String, String> {
    let buf = vec![0x5au8; 64 * 1024];
    let mut total = 0usize;
    loop {
        match stream.write(&buf) {
            Ok(0) => return Err("write returned 0".into()),
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok("BrokenPipe".into()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Ok("ConnectionReset on write".into())
            }
            Err(e) => return Err(format!("write failed after {total} bytes: {e:?}")),
        }
    }
}

/// The child's side of the traffic, until it is killed.
fn child_traffic(mut stream: LocalStream) -> ! {
    let mut buf = vec![0u8; 64 * 1024];
    let write = std::env::var("LOCALSOCK_TEST_ACTION").unwrap() == "write";
    loop {
        let r = if write {
            stream.write(&buf)
        } else {
            stream.read(&mut buf)
        };
        if let Err(e) = r {
            // The test kills this process; any earlier end is reported and waits for the kill.
            eprintln!("child: {e}");
            thread::sleep(Duration::from_secs(60));
        }
    }
}

#[test]
#[ignore = "child process entry point"]
fn child_client() {
    if !is_child("child_client") {
        return;
    }
    let path = std::env::var("LOCALSOCK_TEST_PATH").unwrap();
    let stream = LocalStream::connect(&Name::path(path).unwrap()).unwrap();
    child_traffic(stream);
}

#[test]
#[ignore = "child process entry point"]
fn child_server() {
    if !is_child("child_server") {
        return;
    }
    let path = std::env::var("LOCALSOCK_TEST_PATH").unwrap();
    let listener = LocalListener::bind(&Name::path(path).unwrap()).unwrap();
    println!("CHILD listening");
    let stream = listener.accept().unwrap();
    child_traffic(stream);
}

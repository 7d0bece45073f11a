//! The shared-memory data path (feature `shm`, Linux and Windows): integrity in both
//! directions at once (copying and zero-copy APIs), peer death (a real child process killed,
//! both roles), refusal, and a hostile peer that speaks the negotiation and then scribbles over
//! the shared control words (on Linux a Python process; on Windows raw Win32 calls in this
//! process, in `mod win_hostile`). The Windows leg runs under Wine (`ci/windows.sh`).
#![cfg(all(feature = "shm", any(target_os = "linux", windows)))]
// Windows: raw Win32 calls (the hostile peer, counting handles and views) need `unsafe`; the
// crate's `unsafe_code = "deny"` is for the library, and every block here has its SAFETY note.
#![cfg_attr(windows, allow(unsafe_code))]

mod common;

use std::io::{self, Read, Write};
use std::net::Shutdown;
#[cfg(target_os = "linux")]
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{child, is_child, read_line, watchdog};
use localsock::{LocalListener, LocalStream, Name, ShmOptions, ShmStream};

/// Tests that count this process's descriptors and mappings run one at a time (each takes
/// this lock; the others take it too, so that no connection of theirs is counted).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connected pair negotiated with the given options: (offering client, answering server).
fn shm_pair(tag: &str, offer: ShmOptions, answer: ShmOptions) -> (ShmStream, ShmStream) {
    let (client, server) = common::pair(tag);
    let offering = thread::spawn(move || offer.offer(client).unwrap());
    let answered = answer.answer(server).unwrap();
    (offering.join().unwrap(), answered)
}

fn small() -> ShmOptions {
    let mut o = ShmOptions::new();
    o.capacity(4096);
    o
}

/// Mappings of our shared memory objects in this process (`/proc/self/maps`).
#[cfg(unix)]
fn shm_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:localsock-shm"))
        .count()
}

/// Read/write views of sections (`MEM_MAPPED`, committed, `PAGE_READWRITE`) in this process,
/// found by walking the address space with `VirtualQuery`: what a shared-memory stream maps.
#[cfg(windows)]
fn shm_mappings() -> usize {
    use windows_sys::Win32::System::Memory::{
        VirtualQuery, MEMORY_BASIC_INFORMATION, MEM_COMMIT, MEM_MAPPED, PAGE_READWRITE,
    };
    let mut count = 0;
    let mut at = 0usize;
    loop {
        let mut info = MEMORY_BASIC_INFORMATION::default();
        // SAFETY: `info` is valid for writes of its size; VirtualQuery only reads our process's
        // memory map, and any address may be asked about.
        let got = unsafe {
            VirtualQuery(
                at as *const _,
                &mut info,
                std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        if got == 0 || info.RegionSize == 0 {
            return count;
        }
        if info.Type == MEM_MAPPED && info.State == MEM_COMMIT && info.Protect == PAGE_READWRITE {
            count += 1;
        }
        match (info.BaseAddress as usize).checked_add(info.RegionSize) {
            Some(next) if next > at => at = next,
            _ => return count,
        }
    }
}

/// This process's handles, as well as Windows lets us count them (`common::handle_measure`:
/// `GetProcessHandleCount`, which Wine 8.0 stubs to 0, else the lowest free handle slot, which a
/// leaked handle pushes up). Checked once to see handles held on purpose, so that a comparison
/// with a baseline cannot pass for want of a measure.
#[cfg(windows)]
fn fds() -> (usize, &'static str) {
    static SEES_LEAKS: std::sync::Once = std::sync::Once::new();
    SEES_LEAKS.call_once(common::assert_handle_measure_sees_leaks);
    common::handle_measure()
}

/// How far the Windows measure may move without a leak: the test harness's own threads come
/// and go (their handles), and under Wine the measure is the lowest free slot, which such a
/// handle can take. Every leak the tests look for is more handles than this at once (an
/// offer's 5, a stream's wake-up events and pipe duplicate: 6; a refused frame's: 5 to 253).
#[cfg(windows)]
const HANDLE_SLACK: usize = 4;

/// Asserts that this process holds what it held at `before` (its descriptors, the same
/// list; on Windows its handle measure, within [`HANDLE_SLACK`]).
#[cfg(windows)]
fn assert_fds_back(before: &(usize, &'static str), what: &str) {
    let (now, how) = fds();
    assert!(
        now <= before.0 + HANDLE_SLACK,
        "{what}: handles leaked: {how} {} -> {now}",
        before.0
    );
}

/// Asserts that this process holds what it held at `before` (its descriptors, the same
/// list; on Windows its handle measure, within a slack).
#[cfg(unix)]
fn assert_fds_back(before: &[String], what: &str) {
    assert_eq!(fds(), before, "{what}: descriptors leaked");
}

/// This process's open descriptors, as their `/proc/self/fd` links (for a readable diff).
#[cfg(unix)]
fn fds() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            std::fs::read_link(e.path())
                .ok()
                .map(|l| format!("{} -> {}", e.file_name().to_string_lossy(), l.display()))
        })
        .collect();
    out.sort();
    out
}

/// xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The byte at stream position `i` of the direction seeded `seed`: the receiver checks every
/// byte against it, which is a stronger check than a checksum.
fn pattern(seed: u64, i: u64) -> u8 {
    let x = (i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

#[test]
fn bytes_flow_both_ways_then_eof() {
    let _serial = serial();
    let _dog = watchdog("bytes_flow_both_ways_then_eof", 30);
    let maps = shm_mappings();
    let (mut client, mut server) = shm_pair("flow", ShmOptions::new(), ShmOptions::new());
    assert!(client.is_shared_memory() && server.is_shared_memory());
    assert_eq!(shm_mappings(), maps + 2);
    client.write_all(b"hello").unwrap();
    let mut buf = [0; 5];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    server.write_all(b"world").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"world");

    // Bytes still in the ring when the writer goes are read, then end-of-file.
    client.write_all(b"last words").unwrap();
    drop(client);
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"last words");
    assert_eq!(server.read(&mut buf).unwrap(), 0);
    // Writing to the gone peer fails (at the latest when its ring is full), never hangs.
    let err = loop {
        if let Err(e) = server.write(&[0; 4096]) {
            break e;
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    drop(server);
    assert_eq!(shm_mappings(), maps);
}

#[test]
fn shutdown_write_is_eof_for_the_peer_only_that_way() {
    let _serial = serial();
    let _dog = watchdog("shutdown_write", 30);
    let (client, mut server) = shm_pair("shutdown", ShmOptions::new(), ShmOptions::new());
    (&client).write_all(b"abc").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"abc");
    assert_eq!(
        (&client).write(b"x").unwrap_err().kind(),
        io::ErrorKind::BrokenPipe
    );
    // The other direction still works.
    server.write_all(b"reply").unwrap();
    let mut reply = [0; 5];
    (&client).read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"reply");
}

#[test]
fn refused_by_the_answer_stays_a_socket() {
    let _serial = serial();
    let _dog = watchdog("refused_by_the_answer", 30);
    let mut off = ShmOptions::new();
    off.enabled(false);
    let before = fds();
    let maps = shm_mappings();
    let (mut client, mut server) = shm_pair("refused", ShmOptions::new(), off);
    assert!(!client.is_shared_memory() && !server.is_shared_memory());
    assert_eq!(shm_mappings(), maps, "the refused offer is unmapped");
    client.write_all(b"over the socket").unwrap();
    let mut buf = [0; 15];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"over the socket");
    server.write_all(b"ok").unwrap();
    client.read_exact(&mut buf[..2]).unwrap();
    assert_eq!(
        client.read_in_place(|v| (v.len(), ())).unwrap_err().kind(),
        io::ErrorKind::Unsupported
    );
    drop(client);
    assert_eq!(server.read(&mut buf).unwrap(), 0);
    drop(server);
    assert_fds_back(&before, "at the end");
}

#[test]
fn not_offered_stays_a_socket() {
    let _serial = serial();
    let _dog = watchdog("not_offered", 30);
    let mut off = ShmOptions::new();
    off.enabled(false);
    let (mut client, mut server) = shm_pair("not-offered", off, ShmOptions::new());
    assert!(!client.is_shared_memory() && !server.is_shared_memory());
    client.write_all(b"plain").unwrap();
    let mut buf = [0; 5];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"plain");
}

#[test]
fn a_peer_that_does_not_negotiate_is_invalid_data() {
    let _serial = serial();
    let _dog = watchdog("not_negotiating", 30);
    let (mut client, server) = common::pair("garbage");
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let err = ShmOptions::new().answer(server).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
}

/// Moves `total` bytes each way at once in random sizes, half of the operations through the
/// zero-copy API, and checks every byte.
fn bulk(total: u64, capacity: usize) {
    let mut opts = ShmOptions::new();
    opts.capacity(capacity);
    let (client, server) = shm_pair("bulk", opts.clone(), opts);
    let client = std::sync::Arc::new(client);
    let server = std::sync::Arc::new(server);
    let mut threads = Vec::new();
    for (stream, seed) in [(client.clone(), 1u64), (server.clone(), 2u64)] {
        // Writer of direction `seed`.
        let s = stream.clone();
        threads.push(thread::spawn(move || {
            let mut rng = Rng(seed * 7919);
            let mut sent = 0u64;
            let mut chunk = vec![0u8; 256 * 1024];
            while sent < total {
                let r = rng.next();
                let len = ((r >> 8) % (chunk.len() as u64) + 1).min(total - sent) as usize;
                if r & 1 == 0 {
                    for (k, b) in chunk[..len].iter_mut().enumerate() {
                        *b = pattern(seed, sent + k as u64);
                    }
                    (&*s).write_all(&chunk[..len]).unwrap();
                    sent += len as u64;
                } else {
                    let n = s
                        .write_in_place(|view| {
                            let n = view.len().min(len);
                            for (k, b) in chunk[..n].iter_mut().enumerate() {
                                *b = pattern(seed, sent + k as u64);
                            }
                            view.copy_from(0, &chunk[..n]);
                            (n, n)
                        })
                        .unwrap();
                    sent += n as u64;
                }
            }
            s.shutdown(Shutdown::Write).unwrap();
        }));
        // Reader of the other direction.
        let peer_seed = 3 - seed;
        threads.push(thread::spawn(move || {
            let mut rng = Rng(seed * 104_729);
            let mut got = 0u64;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let r = rng.next();
                let len = ((r >> 8) % (buf.len() as u64) + 1) as usize;
                let n = if r & 1 == 0 {
                    (&*stream).read(&mut buf[..len]).unwrap()
                } else {
                    stream
                        .read_in_place(|view| {
                            let n = view.len().min(len);
                            view.copy_to(0, &mut buf[..n]);
                            (n, n)
                        })
                        .unwrap()
                };
                if n == 0 {
                    break;
                }
                for (k, b) in buf[..n].iter().enumerate() {
                    assert_eq!(
                        *b,
                        pattern(peer_seed, got + k as u64),
                        "at byte {}",
                        got + k as u64
                    );
                }
                got += n as u64;
            }
            assert_eq!(got, total);
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
}

/// How many bytes the bulk test moves each way: `LOCALSOCK_SHM_TEST_BYTES`, else 1 GiB in a
/// release build and 64 MiB in a debug build (whose per-byte pattern check runs at tens of
/// MB/s; CI runs the release size with `cargo test --release --features shm --test shm`).
fn bulk_bytes() -> u64 {
    if let Ok(v) = std::env::var("LOCALSOCK_SHM_TEST_BYTES") {
        return v.parse().expect("LOCALSOCK_SHM_TEST_BYTES is a number");
    }
    if cfg!(debug_assertions) {
        64 << 20
    } else {
        1 << 30
    }
}

#[test]
fn bulk_both_directions_random_sizes_checked() {
    let _serial = serial();
    let _dog = watchdog("bulk", 600);
    bulk(bulk_bytes(), 1 << 20);
}

#[test]
fn bulk_through_a_small_ring_wraps_often() {
    let _serial = serial();
    let _dog = watchdog("bulk_small", 300);
    bulk(bulk_bytes() / 16, 4096);
}

/// Sets off the violation a hostile peer prepared — a read (`reader`), else writes until the
/// ring's check trips — and checks that it is `InvalidData` and that every later read and write
/// fails the same way.
fn assert_violation(what: &str, stream: &ShmStream, reader: bool) {
    let err = if reader {
        let mut buf = [0u8; 64];
        (&*stream).read(&mut buf).unwrap_err()
    } else {
        loop {
            if let Err(e) = (&*stream).write(&[7u8; 1000]) {
                break e;
            }
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
    let mut buf = [0u8; 8];
    assert_eq!(
        (&*stream).read(&mut buf).unwrap_err().kind(),
        io::ErrorKind::InvalidData,
        "{what}: every later read fails the same way"
    );
    assert_eq!(
        (&*stream).write(&buf).unwrap_err().kind(),
        io::ErrorKind::InvalidData,
        "{what}: every later write fails the same way"
    );
}

// ---- peer death: a real child process, SIGKILLed mid-transfer ----

#[derive(Clone, Copy, Debug)]
enum Role {
    /// The child connects and offers.
    ChildOffers,
    /// The child listens and answers.
    ChildAnswers,
}

fn child_traffic(stream: ShmStream) {
    // Write and read without end, until killed.
    let reader = {
        let s = std::sync::Arc::new(stream);
        let r = s.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while (&*r).read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
        });
        s
    };
    println!("CHILD ready");
    let mut i = 0u64;
    let buf = vec![0x5au8; 8192];
    loop {
        if (&*reader)
            .write_all(&buf[..(i % 8191 + 1) as usize])
            .is_err()
        {
            break;
        }
        i += 1;
    }
    thread::sleep(Duration::from_secs(60));
}

#[test]
#[ignore = "child process entry point"]
fn child_shm_client() {
    if !is_child("child_shm_client") {
        return;
    }
    let stream = LocalStream::connect(&child_name()).unwrap();
    let stream = small().offer(stream).unwrap();
    assert!(stream.is_shared_memory());
    child_traffic(stream);
}

#[test]
#[ignore = "child process entry point"]
fn child_shm_server() {
    if !is_child("child_shm_server") {
        return;
    }
    let listener = LocalListener::bind(&child_name()).unwrap();
    println!("CHILD listening");
    let stream = small().answer(listener.accept().unwrap()).unwrap();
    assert!(stream.is_shared_memory());
    child_traffic(stream);
}

/// The name the parent passes to a child entry point (`LOCALSOCK_TEST_NAME`): a socket path
/// on Unix, a short name (a pipe) on Windows.
fn child_name() -> Name {
    name_of(&std::env::var("LOCALSOCK_TEST_NAME").unwrap())
}

fn name_of(name: &str) -> Name {
    if cfg!(windows) {
        Name::new(name).unwrap()
    } else {
        Name::path(name).unwrap()
    }
}

/// One round: the child and this process stream both ways; after a random number of bytes the
/// child is killed (SIGKILL; `TerminateProcess` on Windows). This process must then see
/// end-of-file on reads and `BrokenPipe` on writes, within a bound, and get its descriptors
/// (handles) and mappings back.
///
/// With `stranger` (Unix, as root), the child runs as that user: shared memory is offered and
/// accepted across users on Unix (descriptors go to whoever the connection reaches).
fn kill_round(role: Role, seed: u64, reader_stops: bool, stranger: Option<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let path = if cfg!(windows) {
        common::unique_str("kill")
    } else {
        dir.path().join("s.sock").to_str().unwrap().to_owned()
    };
    let name = name_of(&path);
    let baseline_fds = fds();
    let baseline_maps = shm_mappings();
    let entry = match role {
        Role::ChildOffers => "child_shm_client",
        Role::ChildAnswers => "child_shm_server",
    };
    let listener = match role {
        Role::ChildOffers => Some(
            localsock::ListenerOptions::new()
                .access(if stranger.is_some() {
                    localsock::Access::Everyone
                } else {
                    localsock::Access::Owner
                })
                .bind(&name)
                .unwrap(),
        ),
        Role::ChildAnswers => None,
    };
    let envs = [("LOCALSOCK_TEST_NAME", path.as_str())];
    #[cfg(unix)]
    let mut kid = match stranger {
        Some(uid) => {
            // The stranger enters the directory, and binds in it when it answers.
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
            common::child_as(entry, &envs, uid, uid).spawn().unwrap()
        }
        None => child(entry, &envs).spawn().unwrap(),
    };
    #[cfg(windows)]
    let mut kid = child(entry, &envs).spawn().unwrap();
    let stream = match role {
        Role::ChildOffers => small()
            .answer(listener.as_ref().unwrap().accept().unwrap())
            .unwrap(),
        Role::ChildAnswers => {
            assert_eq!(read_line(&mut kid), "listening");
            small().offer(LocalStream::connect(&name).unwrap()).unwrap()
        }
    };
    drop(listener);
    assert!(stream.is_shared_memory());
    #[cfg(unix)]
    if let Some(uid) = stranger {
        assert_eq!(
            stream.socket().peer_credentials().unwrap().uid(),
            Some(uid),
            "the peer runs as the stranger"
        );
    }
    assert_eq!(read_line(&mut kid), "ready");
    let stream = std::sync::Arc::new(stream);
    let mut rng = Rng(seed);
    let kill_after = rng.next() % (256 * 1024) + 1;

    // Our writer: it blocks on the full ring when the child stops reading, and must fail
    // with BrokenPipe once the child dies.
    let w = stream.clone();
    let writer = thread::spawn(move || {
        let buf = vec![0xa5u8; 4096];
        loop {
            if let Err(e) = (&*w).write(&buf) {
                return e;
            }
        }
    });
    let mut buf = vec![0u8; 4096];
    let mut got = 0u64;
    let mut killed = false;
    let started = Instant::now();
    loop {
        if !killed && (got >= kill_after || reader_stops) {
            kid.kill().unwrap();
            kid.wait().unwrap();
            killed = true;
        }
        if reader_stops && killed {
            break;
        }
        match (&*stream).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) => panic!("read after the peer's death: {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no end-of-file"
        );
    }
    assert!(killed, "end-of-file before the child was killed");
    if reader_stops {
        // Drain what is left: then end-of-file, no hang.
        while (&*stream).read(&mut buf).unwrap() > 0 {}
    }
    let err = writer.join().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    drop(stream);
    drop(kid);
    assert_eq!(shm_mappings(), baseline_maps);
    assert_fds_back(&baseline_fds, "after the peer's death");
}

#[test]
fn peer_killed_mid_transfer_child_offers() {
    let _serial = serial();
    let _dog = watchdog("peer_killed_child_offers", 120);
    for seed in 1..=6u64 {
        kill_round(Role::ChildOffers, seed * 0x9E37_79B9, seed % 3 == 0, None);
    }
}

#[test]
fn peer_killed_mid_transfer_child_answers() {
    let _serial = serial();
    let _dog = watchdog("peer_killed_child_answers", 120);
    for seed in 1..=6u64 {
        kill_round(Role::ChildAnswers, seed * 0x85EB_CA6B, seed % 3 == 0, None);
    }
}

/// A peer of another user, in both roles: on Unix descriptors go to whoever the connection
/// reaches, so shared memory is offered and accepted across users (who may connect is the
/// listener's `Access` and `require_same_user`, and the client's `ServerIdentity`, decided
/// before any offer), and works as between two processes of one user, up to the peer's death.
/// (On Windows the offer needs a peer of the same user, `can_share`; Wine has a single user,
/// so that is not tested.)
#[cfg(target_os = "linux")]
#[test]
#[ignore = "needs root to play another user — run as root: cargo test -p localsock --features shm --test shm -- --ignored (CI: ci/ignored.sh)"]
fn a_peer_of_another_user_shares_memory_in_both_roles_on_linux() {
    let _dog = common::root_test("a_peer_of_another_user_shares_memory", 120);
    let _serial = serial();
    for seed in 1..=2u64 {
        kill_round(
            Role::ChildOffers,
            seed * 0x9E37_79B9,
            seed == 2,
            Some(65534),
        );
        kill_round(
            Role::ChildAnswers,
            seed * 0x85EB_CA6B,
            seed == 2,
            Some(65534),
        );
    }
}

// ---- a hostile peer (Linux): Python speaks the negotiation, then scribbles over the control words ----

/// A Python offerer: connects, sends the offer (a sealed memfd of the right size and one end of
/// a socket pair), reads the answer, applies `attack` to the mapping, writes one wake-up byte
/// on each socket and waits for the connection to close. `attack` is Python code over `m` (the
/// mmap), `struct` and `cap`.
#[cfg(target_os = "linux")]
const PY_OFFERER: &str = r#"
import mmap, os, socket, struct, sys, fcntl
path, cap, seals, size_delta, attack = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
size = 4096 + 2 * cap + size_delta
fd = os.memfd_create("hostile", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
os.ftruncate(fd, size)
if seals:
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
m = mmap.mmap(fd, size)
a, b = socket.socketpair()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
hello = b"LSHM" + bytes([1, 1, 0, 0]) + struct.pack("<I", cap) + bytes(4)
header = bytes([0]) + struct.pack("<IH", len(hello), 2)
socket.send_fds(s, [header + hello], [fd, b.fileno()])
b.close()
answer = s.recv(7 + 16)
print("ANSWER", answer[12] if len(answer) > 12 else -1, flush=True)
exec(attack)
print("ATTACKED", flush=True)
for sock in (s, a):
    try:
        sock.send(b"\x01")
    except OSError:
        pass
s.settimeout(20)
try:
    while s.recv(4096):
        pass
except OSError:
    pass
"#;

#[cfg(target_os = "linux")]
fn python() -> Option<&'static str> {
    Command::new("python3")
        .arg("-c")
        .arg("import os; os.memfd_create")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "python3")
}

/// Runs the Python offerer against our answer; returns our stream (or the answer's error) and
/// the child.
#[cfg(target_os = "linux")]
fn hostile(
    tag: &str,
    seals: bool,
    size_delta: i64,
    attack: &str,
) -> (io::Result<ShmStream>, std::process::Child) {
    let py = python().expect("python3 with os.memfd_create (3.8+) is needed: install python3");
    let name = common::unique(tag);
    let listener = LocalListener::bind(&name).unwrap();
    let path = name.fs_path().unwrap().to_str().unwrap().to_owned();
    let kid = Command::new(py)
        .args([
            "-c",
            PY_OFFERER,
            &path,
            "4096",
            if seals { "1" } else { "0" },
            &size_delta.to_string(),
            attack,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stream = listener.accept().unwrap();
    (ShmOptions::new().answer(stream), kid)
}

#[cfg(target_os = "linux")]
fn py_line(kid: &mut std::process::Child) -> String {
    let out = kid.stdout.as_mut().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn hostile_unsealed_memory_is_refused_as_invalid_data() {
    let _serial = serial();
    let _dog = watchdog("hostile_unsealed", 30);
    let before = fds();
    let (res, mut kid) = hostile("unsealed", false, 0, "pass");
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidData);
    let _ = kid.kill();
    kid.wait().unwrap();
    drop(kid);
    assert_eq!(shm_mappings(), 0);
    assert_fds_back(&before, "at the end");
}

#[cfg(target_os = "linux")]
#[test]
fn hostile_wrong_size_is_refused_as_invalid_data() {
    let _serial = serial();
    let _dog = watchdog("hostile_size", 30);
    let before = fds();
    let (res, mut kid) = hostile("size", true, -4096, "pass");
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidData);
    let _ = kid.kill();
    kid.wait().unwrap();
    drop(kid);
    assert_fds_back(&before, "at the end");
}

/// The peer's control words, as offsets into the mapping: ring 0 (the offerer's, which we
/// read) tail at 0, closed at 8; ring 1 (ours) head at 256 + 128.
#[cfg(target_os = "linux")]
#[test]
fn hostile_indices_are_invalid_data_never_a_crash_or_hang() {
    let attacks = [
        // A write index far beyond the ring: we would read out of bounds.
        ("tail-huge", "struct.pack_into('<Q', m, 0, 1 << 40)", true),
        // A write index just one past the capacity.
        (
            "tail-cap-plus-one",
            "struct.pack_into('<Q', m, 0, cap + 1)",
            true,
        ),
        // Negative (wrapped) write index.
        (
            "tail-wrapped",
            "struct.pack_into('<Q', m, 0, (1 << 64) - 1)",
            true,
        ),
        // A read index that claims more was read than we ever wrote: our writer must not trust it.
        (
            "head-ahead",
            "struct.pack_into('<Q', m, 256 + 128, 1 << 33)",
            false,
        ),
    ];
    let _serial = serial();
    for (what, attack, reader) in attacks {
        let _dog = watchdog("hostile_indices", 30);
        let before = fds();
        let (res, mut kid) = hostile(what, true, 0, attack);
        let stream = res.unwrap();
        assert!(stream.is_shared_memory());
        assert_eq!(py_line(&mut kid), "ANSWER 3");
        assert_eq!(py_line(&mut kid), "ATTACKED");
        // Closed: the peer sees end-of-file, and every later call fails the same way.
        assert_violation(what, &stream, reader);
        kid.wait().unwrap();
        drop(stream);
        assert_eq!(shm_mappings(), 0, "{what}");
        drop(kid);
        assert_fds_back(&before, what);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn hostile_data_and_flags_are_only_data() {
    // Garbage data and a consistent index: the bytes are delivered (as a socket delivers
    // garbage), the "closed" flag is end-of-file; nothing else happens.
    let _serial = serial();
    let _dog = watchdog("hostile_data", 30);
    let attack = "m[4096:4096+5] = b'\\xff\\x00\\xfe\\x01\\x02'; struct.pack_into('<Q', m, 0, 5); struct.pack_into('<I', m, 8, 0xdeadbeef)";
    let (res, mut kid) = hostile("data", true, 0, attack);
    let mut stream = res.unwrap();
    assert_eq!(py_line(&mut kid), "ANSWER 3");
    assert_eq!(py_line(&mut kid), "ATTACKED");
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    assert_eq!(got, [0xff, 0x00, 0xfe, 0x01, 0x02]);
    drop(stream);
    kid.wait().unwrap();
}

// ---- a hostile peer in either role (Linux): the negotiation itself, and our offering end ----

/// Helpers both Python peers below share: a memory object, the hello, a frame header.
#[cfg(target_os = "linux")]
const PY_COMMON: &str = r#"
import mmap, os, socket, struct, sys, fcntl
def memfd(size, sealed=True):
    fd = os.memfd_create("hostile", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    if sealed:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return fd
def hello(kind, cap=0):
    return b"LSHM" + bytes([1, kind, 0, 0]) + struct.pack("<I", cap) + bytes(4)
def frame(body, count=0):
    return bytes([0]) + struct.pack("<IH", len(body), count) + body
def step():
    sys.stdin.readline()
def wait_eof(s):
    s.settimeout(20)
    try:
        while s.recv(4096):
            pass
        print("EOF", flush=True)
    except ConnectionResetError:
        # Closed with our wake-up bytes unread: the end too.
        print("EOF", flush=True)
    except OSError as e:
        print("ERROR", e, flush=True)
"#;

/// A Python offerer that sends what `code` sends on `s` (a connected socket), then says `SENT`
/// and waits for the connection to end (`EOF`).
#[cfg(target_os = "linux")]
const PY_RAW_OFFERER: &str = r#"
path, code = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
exec(code)
print("SENT", flush=True)
wait_eof(s)
"#;

/// A Python answerer: listens on `path`, takes the offer (the memory object, mapped as `m`,
/// and the writers' wake-up socket), runs `code` (which answers on `s` and attacks `m`), says
/// `ATTACKED`, wakes both of our waiters and waits for the connection to end (`EOF`).
#[cfg(target_os = "linux")]
const PY_ANSWERER: &str = r#"
path, code = sys.argv[1], sys.argv[2]
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind(path)
l.listen(1)
print("LISTENING", flush=True)
s, _ = l.accept()
data, fds, _, _ = socket.recv_fds(s, 23, 8)
while len(data) < 23:
    data += s.recv(23 - len(data))
cap = struct.unpack_from("<I", data, 7 + 8)[0]
m = mmap.mmap(fds[0], 4096 + 2 * cap)
wake = socket.socket(fileno=fds[1])
exec(code)
print("ATTACKED", flush=True)
for sock in (s, wake):
    try:
        sock.send(b"\x01")
    except OSError:
        pass
wait_eof(s)
"#;

/// Starts `python3 -c PY_COMMON + script path code`, stdin and stdout piped.
#[cfg(target_os = "linux")]
fn py_peer(script: &str, path: &str, code: &str, uid: Option<u32>) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let py = python().expect("python3 with os.memfd_create (3.8+) is needed: install python3");
    let mut cmd = Command::new(py);
    cmd.args(["-c", &format!("{PY_COMMON}{script}"), path, code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid).current_dir("/");
    }
    cmd.spawn().unwrap()
}

/// Our answer to what a hostile offerer sends (`code`, Python on the socket `s`, with the
/// helpers of `PY_COMMON`): it must be `InvalidData`, the peer must see the end, and every
/// descriptor that came with the offer must be closed and nothing left mapped.
#[cfg(target_os = "linux")]
fn refused_offer(what: &str, code: &str) {
    let _dog = watchdog("refused_offer", 30);
    let before = fds();
    let name = common::unique(what);
    let listener = LocalListener::bind(&name).unwrap();
    let path = name.fs_path().unwrap().to_str().unwrap().to_owned();
    let mut kid = py_peer(PY_RAW_OFFERER, &path, code, None);
    let stream = listener.accept().unwrap();
    assert_eq!(py_line(&mut kid), "SENT", "{what}");
    let err = ShmOptions::new().answer(stream).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
    assert_eq!(py_line(&mut kid), "EOF", "{what}: the offerer sees the end");
    assert_eq!(shm_mappings(), 0, "{what}");
    kid.wait().unwrap();
    drop((kid, listener));
    assert_fds_back(
        &before,
        &format!("{what}: every descriptor of the offer is closed"),
    );
}

#[cfg(target_os = "linux")]
#[test]
fn hostile_offers_are_invalid_data_and_their_descriptors_closed() {
    let sound = "mem = memfd(4096 + 2 * 4096); a, b = socket.socketpair()";
    let offers = [
        // More descriptors on the frame than its header announces (3 extra, closed by us).
        (
            "extra-fds",
            "socket.send_fds(s, [frame(hello(1, 4096), 2)], [mem, b.fileno(), memfd(4096), a.fileno(), b.fileno()])",
        ),
        // The announced two on the header, and a stray one on the hello's bytes.
        (
            "stray-fd",
            "socket.send_fds(s, [frame(hello(1, 4096), 2)[:7]], [mem, b.fileno()]); socket.send_fds(s, [hello(1, 4096)], [memfd(4096)])",
        ),
        // A header announcing more handles than any frame may carry.
        (
            "too-many-announced",
            "socket.send_fds(s, [frame(hello(1, 4096), 300)], [mem, b.fileno()])",
        ),
        // "No offer", with descriptors anyway.
        (
            "no-offer-with-fds",
            "socket.send_fds(s, [frame(hello(2), 2)], [mem, b.fileno()])",
        ),
        // An offer with only the memory.
        (
            "one-fd",
            "socket.send_fds(s, [frame(hello(1, 4096), 1)], [mem])",
        ),
        // Capacities out of range: not a power of two, too small, too large.
        (
            "cap-odd",
            "socket.send_fds(s, [frame(hello(1, 5000), 2)], [mem, b.fileno()])",
        ),
        (
            "cap-small",
            "socket.send_fds(s, [frame(hello(1, 1024), 2)], [mem, b.fileno()])",
        ),
        (
            "cap-huge",
            "socket.send_fds(s, [frame(hello(1, 1 << 30), 2)], [mem, b.fileno()])",
        ),
        // A wake-up channel that is not a socket (a pipe).
        (
            "wake-pipe",
            "r, w = os.pipe(); socket.send_fds(s, [frame(hello(1, 4096), 2)], [mem, r])",
        ),
        // A regular file (which the peer could truncate) instead of a memory object.
        (
            "file",
            "import tempfile; f = tempfile.TemporaryFile(); f.truncate(4096 * 3); socket.send_fds(s, [frame(hello(1, 4096), 2)], [f.fileno(), b.fileno()])",
        ),
        // Another version of the negotiation.
        (
            "version",
            "h = bytearray(hello(1, 4096)); h[4] = 2; socket.send_fds(s, [frame(bytes(h), 2)], [mem, b.fileno()])",
        ),
    ];
    let _serial = serial();
    for (what, offer) in offers {
        refused_offer(what, &format!("{sound}\n{offer}"));
    }
}

/// Runs the Python answerer (with `code`) against our offer; returns our stream and the
/// Python process (which said `LISTENING`).
#[cfg(target_os = "linux")]
fn hostile_answerer(
    dir: &std::path::Path,
    code: &str,
) -> (io::Result<ShmStream>, std::process::Child) {
    let path = dir.join("py.sock");
    let mut kid = py_peer(PY_ANSWERER, path.to_str().unwrap(), code, None);
    assert_eq!(py_line(&mut kid), "LISTENING");
    let stream = LocalStream::connect(&Name::path(&path).unwrap()).unwrap();
    (small().offer(stream), kid)
}

#[cfg(target_os = "linux")]
#[test]
fn hostile_answers_are_invalid_data_and_leave_nothing_mapped() {
    let answers = [
        // An answer with descriptors attached (an answer carries none).
        (
            "answer-with-fds",
            "socket.send_fds(s, [frame(hello(3), 1)], [memfd(4096)])",
        ),
        // A kind that is no answer.
        ("answer-kind", "s.send(frame(hello(1, 4096)))"),
        // Not the negotiation at all.
        ("not-a-frame", "s.send(b'HTTP/1.1 200 OK\\r\\n\\r\\n')"),
    ];
    let _serial = serial();
    for (what, code) in answers {
        let _dog = watchdog("hostile_answers", 30);
        let before = fds();
        let dir = tempfile::tempdir().unwrap();
        let (res, mut kid) = hostile_answerer(dir.path(), code);
        let err = res.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        assert_eq!(py_line(&mut kid), "ATTACKED", "{what}");
        assert_eq!(
            py_line(&mut kid),
            "EOF",
            "{what}: the answerer sees the end"
        );
        assert_eq!(shm_mappings(), 0, "{what}: the offered memory is unmapped");
        kid.wait().unwrap();
        drop((kid, dir));
        assert_fds_back(&before, what);
    }
}

/// Our offering (client) end against an answerer that accepts and then breaks the rings: the
/// control words of the ring we read (ring 1: tail at 256, closed at 264) and of the ring we
/// write (ring 0: the peer's read index at 128). Each violation is `InvalidData` on the
/// offering end too, closes the connection (the answerer sees end-of-file), and leaves
/// nothing mapped or open.
#[cfg(target_os = "linux")]
#[test]
fn hostile_answerer_indices_are_invalid_data_on_the_offering_end() {
    let accept = "s.send(frame(hello(3)))";
    let attacks = [
        ("tail-huge", "struct.pack_into('<Q', m, 256, 1 << 40)", true),
        (
            "tail-cap-plus-one",
            "struct.pack_into('<Q', m, 256, cap + 1)",
            true,
        ),
        (
            "tail-wrapped",
            "struct.pack_into('<Q', m, 256, (1 << 64) - 1)",
            true,
        ),
        ("head-ahead", "struct.pack_into('<Q', m, 128, 1 << 33)", false),
        // Ahead of what we wrote by one byte, once we wrote 100 (see below).
        (
            "head-one-ahead",
            "step(); struct.pack_into('<Q', m, 128, 101)",
            false,
        ),
        // A read index that moves backwards: it took 100 bytes, then gives 50 back.
        (
            "head-backwards",
            "step(); struct.pack_into('<Q', m, 128, 100); print('STEP', flush=True); step(); struct.pack_into('<Q', m, 128, 50)",
            false,
        ),
    ];
    let _serial = serial();
    for (what, attack, reader) in attacks {
        let _dog = watchdog("hostile_answerer_indices", 30);
        let before = fds();
        let dir = tempfile::tempdir().unwrap();
        let (res, mut kid) = hostile_answerer(dir.path(), &format!("{accept}\n{attack}"));
        let stream = res.unwrap();
        assert!(stream.is_shared_memory(), "{what}");
        let mut input = kid.stdin.take().unwrap();
        if attack.starts_with("step()") {
            (&stream).write_all(&[1u8; 100]).unwrap();
            input.write_all(b"\n").unwrap();
        }
        if attack.contains("'STEP'") {
            assert_eq!(py_line(&mut kid), "STEP", "{what}");
            // The index it took is valid: this write sees it and goes through.
            (&stream).write_all(&[2u8; 10]).unwrap();
            input.write_all(b"\n").unwrap();
        }
        assert_eq!(py_line(&mut kid), "ATTACKED", "{what}");
        assert_violation(what, &stream, reader);
        // Closed for the peer at once, not only when we drop the stream.
        assert_eq!(
            py_line(&mut kid),
            "EOF",
            "{what}: the answerer sees the end"
        );
        drop(stream);
        assert_eq!(shm_mappings(), 0, "{what}");
        kid.wait().unwrap();
        drop((kid, input, dir));
        assert_fds_back(&before, what);
    }
}

/// Garbage in the answerer's ring and flags (its "closed" flag, both "waiting" flags) reach
/// our offering end as data and end-of-file only.
#[cfg(target_os = "linux")]
#[test]
fn hostile_answerer_data_and_flags_are_only_data() {
    let _serial = serial();
    let _dog = watchdog("hostile_answerer_data", 30);
    let code = "s.send(frame(hello(3)))
data = 4096 + cap
m[data:data + 5] = b'\\xff\\x00\\xfe\\x01\\x02'
struct.pack_into('<Q', m, 256, 5)
struct.pack_into('<I', m, 256 + 8, 0xdeadbeef)
struct.pack_into('<I', m, 256 + 12, 0xffffffff)
struct.pack_into('<I', m, 136, 0x12345678)";
    let dir = tempfile::tempdir().unwrap();
    let (res, mut kid) = hostile_answerer(dir.path(), code);
    let mut stream = res.unwrap();
    assert_eq!(py_line(&mut kid), "ATTACKED");
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    assert_eq!(got, [0xff, 0x00, 0xfe, 0x01, 0x02]);
    // Our direction still works: the lying "waiting" flag costs a wake-up byte at most.
    stream.write_all(b"still fine").unwrap();
    drop(stream);
    assert_eq!(py_line(&mut kid), "EOF");
    kid.wait().unwrap();
}

// ---- a hostile peer (Windows): raw Win32 calls in this process speak the negotiation ----

/// The offering side written by hand, as a hostile peer would: a section, four events and the
/// offer frame (their handle values, duplicated within this process, which is the peer), then
/// our own view of the section to scribble on. The byte layout is the one `sys/windows/shm.rs`
/// documents: tag 0, the length (`u32` LE), the handle count (`u16` LE), the handle values
/// (`u64` LE), then the 16-byte hello.
#[cfg(windows)]
mod win_hostile {
    use super::*;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, IntoRawHandle, OwnedHandle};
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Memory::{
        CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, FILE_MAP_READ, FILE_MAP_WRITE,
        MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READWRITE, SEC_RESERVE,
    };
    use windows_sys::Win32::System::Threading::CreateEventW;

    const CAP: usize = 4096;
    const LEN: usize = 4096 + 2 * CAP;

    fn owned(handle: HANDLE) -> OwnedHandle {
        assert!(
            !handle.is_null() && handle != INVALID_HANDLE_VALUE,
            "{}",
            io::Error::last_os_error()
        );
        // SAFETY: a handle just created for us alone (checked valid above).
        unsafe { OwnedHandle::from_raw_handle(handle as _) }
    }

    /// Our own view of the section we offered: the hostile peer's pen.
    struct View(*mut u8);

    impl View {
        fn u64_at(&self, offset: usize) -> &AtomicU64 {
            assert!(offset % 8 == 0 && offset + 8 <= LEN);
            // SAFETY: in bounds and aligned in a live view of LEN bytes; shared words are only
            // ever accessed atomically.
            unsafe { &*self.0.add(offset).cast::<AtomicU64>() }
        }

        fn u32_at(&self, offset: usize) -> &AtomicU32 {
            assert!(offset % 4 == 0 && offset + 4 <= LEN);
            // SAFETY: as in `u64_at`.
            unsafe { &*self.0.add(offset).cast::<AtomicU32>() }
        }

        fn put(&self, offset: usize, bytes: &[u8]) {
            assert!(offset + bytes.len() <= LEN);
            // SAFETY: in bounds of a live read/write view; the other side reads these bytes
            // only with raw copies.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.0.add(offset), bytes.len())
            };
        }
    }

    impl Drop for View {
        fn drop(&mut self) {
            // SAFETY: the base of a view we mapped; no reference into it outlives `self`.
            unsafe {
                UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                    Value: self.0.cast(),
                })
            };
        }
    }

    /// How the offer is wrong (or not).
    #[derive(Clone, Copy)]
    enum Offer {
        Sound,
        /// A section one page smaller than the capacity needs.
        Small,
        /// A section whose pages are reserved, not committed (`SEC_RESERVE`).
        Reserved,
        /// The section handle again where the events should be.
        NoEvents,
        /// A section of a file (which could fault with an in-page error), not the pagefile.
        File,
    }

    struct Peer {
        /// The offering end of the connection, kept open.
        _stream: LocalStream,
        view: Option<View>,
    }

    /// Sends `offer` on a fresh connection and returns our answer to it.
    fn hostile(tag: &str, offer: Offer) -> (io::Result<ShmStream>, Peer) {
        let (client, server) = common::pair(tag);
        let (size, flags) = match offer {
            Offer::Small => (LEN - 4096, PAGE_READWRITE),
            Offer::Reserved => (LEN, PAGE_READWRITE | SEC_RESERVE),
            _ => (LEN, PAGE_READWRITE),
        };
        let file = matches!(offer, Offer::File).then(|| {
            let file = tempfile::tempfile().unwrap();
            file.set_len(LEN as u64).unwrap();
            file
        });
        let backing = file
            .as_ref()
            .map_or(INVALID_HANDLE_VALUE, |f| f.as_raw_handle() as HANDLE);
        // SAFETY: pagefile-backed (INVALID_HANDLE_VALUE) or a file we hold open for the call;
        // default security, unnamed.
        let section = owned(unsafe {
            CreateFileMappingW(
                backing,
                std::ptr::null(),
                flags,
                0,
                size as u32,
                std::ptr::null(),
            )
        });
        let view = matches!(offer, Offer::Sound | Offer::NoEvents).then(|| {
            // SAFETY: a section of LEN bytes we hold; the system picks the address.
            let at = unsafe {
                MapViewOfFile(
                    section.as_raw_handle() as HANDLE,
                    FILE_MAP_READ | FILE_MAP_WRITE,
                    0,
                    0,
                    LEN,
                )
            };
            assert!(!at.Value.is_null(), "{}", io::Error::last_os_error());
            View(at.Value.cast())
        });
        // The handles the answer adopts: duplicates within this process, given away.
        let mut values = vec![section.try_clone().unwrap().into_raw_handle() as u64];
        for _ in 0..4 {
            let given = match offer {
                Offer::NoEvents => section.try_clone().unwrap(),
                _ => event(),
            };
            values.push(given.into_raw_handle() as u64);
        }
        (&client).write_all(&frame(16, &values, &hello(1))).unwrap();
        let answer = ShmOptions::new().answer(server);
        (
            answer,
            Peer {
                _stream: client,
                view,
            },
        )
    }

    fn refused(tag: &'static str, offer: Offer) {
        let _serial = serial();
        let _dog = watchdog(tag, 30);
        let before = fds();
        let maps = shm_mappings();
        let (res, peer) = hostile(tag, offer);
        let err = res.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{tag}: {err}");
        drop(peer);
        assert_eq!(shm_mappings(), maps, "{tag}");
        assert_fds_back(&before, &format!("{tag}: every handle adopted is closed"));
    }

    #[test]
    fn hostile_small_section_is_refused_as_invalid_data() {
        refused("hostile_small", Offer::Small);
    }

    #[test]
    fn hostile_reserved_section_is_refused_as_invalid_data() {
        refused("hostile_reserved", Offer::Reserved);
    }

    #[test]
    fn hostile_file_section_is_refused_as_invalid_data() {
        refused("hostile_file", Offer::File);
    }

    #[test]
    fn hostile_wake_handles_that_are_not_events_are_invalid_data() {
        refused("hostile_no_events", Offer::NoEvents);
    }

    /// The control words, as offsets into the section: ring 0 (the offerer's, which we read)
    /// tail at 0, closed at 8; ring 1 (ours) head at 256 + 128.
    #[test]
    fn hostile_indices_are_invalid_data_never_a_crash_or_hang() {
        let attacks: [(&str, usize, u64, bool); 4] = [
            ("tail-huge", 0, 1 << 40, true),
            ("tail-cap-plus-one", 0, CAP as u64 + 1, true),
            ("tail-wrapped", 0, u64::MAX, true),
            ("head-ahead", 256 + 128, 1 << 33, false),
        ];
        let _serial = serial();
        for (what, offset, value, reader) in attacks {
            let _dog = watchdog("hostile_indices", 30);
            let before = fds();
            let maps = shm_mappings();
            let (res, peer) = hostile(what, Offer::Sound);
            let stream = res.unwrap();
            assert!(stream.is_shared_memory());
            peer.view
                .as_ref()
                .unwrap()
                .u64_at(offset)
                .store(value, Ordering::SeqCst);
            assert_violation(what, &stream, reader);
            drop(stream);
            drop(peer);
            assert_eq!(shm_mappings(), maps, "{what}");
            assert_fds_back(&before, what);
        }
    }

    /// A frame: tag 0, the bytes' length, the handle count, the handle values, the bytes.
    fn frame(len: u32, values: &[u64], bytes: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8];
        frame.extend(len.to_le_bytes());
        frame.extend((values.len() as u16).to_le_bytes());
        for value in values {
            frame.extend(value.to_le_bytes());
        }
        frame.extend(bytes);
        frame
    }

    fn hello(kind: u8) -> Vec<u8> {
        let mut hello = b"LSHM".to_vec();
        hello.extend([1, kind, 0, 0]);
        hello.extend((CAP as u32).to_le_bytes());
        hello.extend([0; 4]);
        hello
    }

    /// A new unnamed auto-reset event.
    fn event() -> OwnedHandle {
        // SAFETY: null attributes and name: an unnamed auto-reset event.
        owned(unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) })
    }

    /// Whether `handle` is still an open event of ours.
    fn is_open_event(handle: &OwnedHandle) -> bool {
        use windows_sys::Win32::System::Threading::SetEvent;
        // SAFETY: a handle we own and hold open; no memory is passed.
        unsafe { SetEvent(handle.as_raw_handle() as HANDLE) != 0 }
    }

    /// A negotiation frame that is refused must close every handle its sender duplicated into
    /// us and named in it — also when the frame announces more handles than any frame may
    /// carry (it named `MAX_HANDLES` real ones first), or more bytes than a hello has — and
    /// must not close a value past the `MAX_HANDLES` it reads: here an event this test holds
    /// and keeps using.
    #[test]
    fn refused_frames_close_the_handles_they_named_and_no_others() {
        let _serial = serial();
        let _dog = watchdog("refused_frames_close", 60);
        let ours = event();
        let cases: [(&str, usize, u32, bool); 3] = [
            ("more-than-max-handles", localsock::MAX_HANDLES, 16, true),
            ("too-long", 5, 1000, false),
            ("too-many-for-an-offer", 7, 16, false),
        ];
        for (what, real, len, name_ours) in cases {
            let before = fds();
            let (client, server) = common::pair(what);
            // Duplicates within this process (the peer), given away to the answering side.
            let mut values: Vec<u64> = (0..real)
                .map(|_| event().into_raw_handle() as u64)
                .collect();
            if name_ours {
                values.push(ours.as_raw_handle() as u64);
            }
            (&client)
                .write_all(&frame(len, &values, &hello(1)))
                .unwrap();
            let err = ShmOptions::new().answer(server).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
            drop(client);
            assert_fds_back(
                &before,
                &format!("{what}: the {real} handles named are closed"),
            );
            assert!(
                is_open_event(&ours),
                "{what}: a value past the limit is left alone"
            );
        }
    }

    /// The answering side written by hand: takes our offer (adopting the handles duplicated
    /// into this process, which is the peer), maps the section, sends `answer`.
    struct Answerer {
        server: LocalStream,
        view: View,
        _handles: Vec<OwnedHandle>,
    }

    fn hostile_answer(tag: &str, answer: &[u8]) -> (io::Result<ShmStream>, Answerer) {
        let (client, server) = common::pair(tag);
        let mut opts = ShmOptions::new();
        opts.capacity(CAP);
        let offering = thread::spawn(move || opts.offer(client));
        let mut header = [0u8; 7];
        (&server).read_exact(&mut header).unwrap();
        let count = u16::from_le_bytes([header[5], header[6]]) as usize;
        assert_eq!(count, 5, "a section and four events");
        let mut raw = vec![0u8; count * 8 + 16];
        (&server).read_exact(&mut raw).unwrap();
        let handles: Vec<OwnedHandle> = raw[..count * 8]
            .chunks_exact(8)
            .map(|c| {
                let value = u64::from_le_bytes(c.try_into().unwrap());
                // SAFETY: the offering side duplicated these handles into this process for
                // this frame and gave them up: nothing else here owns them.
                unsafe { OwnedHandle::from_raw_handle(value as usize as _) }
            })
            .collect();
        // SAFETY: the section we were offered, held open; the system picks the address.
        let at = unsafe {
            MapViewOfFile(
                handles[0].as_raw_handle() as HANDLE,
                FILE_MAP_READ | FILE_MAP_WRITE,
                0,
                0,
                LEN,
            )
        };
        assert!(!at.Value.is_null(), "{}", io::Error::last_os_error());
        let view = View(at.Value.cast());
        (&server).write_all(answer).unwrap();
        let stream = offering.join().unwrap();
        (
            stream,
            Answerer {
                server,
                view,
                _handles: handles,
            },
        )
    }

    /// An answer with handles attached (an answer carries none): `InvalidData`, the handles
    /// closed, the offered section unmapped.
    #[test]
    fn hostile_answer_with_handles_is_invalid_data() {
        let _serial = serial();
        let _dog = watchdog("hostile_answer_handles", 30);
        let before = fds();
        let maps = shm_mappings();
        let given = [
            event().into_raw_handle() as u64,
            event().into_raw_handle() as u64,
        ];
        let (res, peer) = hostile_answer("answer_handles", &frame(16, &given, &hello(3)));
        let err = res.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        drop(peer);
        assert_eq!(shm_mappings(), maps);
        assert_fds_back(&before, "the answer's handles and the offer's are closed");
    }

    /// Our offering end — the pipe's client — against an answerer that accepts and then
    /// breaks the rings: ring 1 (which we read: tail at 256) and ring 0 (which we write: the
    /// peer's read index at 128). `InvalidData`, every later call the same; a client end
    /// cannot disconnect the pipe, so the answerer sees the end when the stream is dropped.
    #[test]
    fn hostile_answerer_indices_are_invalid_data_on_the_offering_end() {
        let attacks: [(&str, usize, u64, bool); 4] = [
            ("tail-huge", 256, 1 << 40, true),
            ("tail-cap-plus-one", 256, CAP as u64 + 1, true),
            ("tail-wrapped", 256, u64::MAX, true),
            ("head-ahead", 128, 1 << 33, false),
        ];
        let _serial = serial();
        for (what, offset, value, reader) in attacks {
            let _dog = watchdog("hostile_answerer_indices", 30);
            let before = fds();
            let maps = shm_mappings();
            let (res, peer) = hostile_answer(what, &frame(16, &[], &hello(3)));
            let stream = res.unwrap();
            assert!(stream.is_shared_memory(), "{what}");
            peer.view.u64_at(offset).store(value, Ordering::SeqCst);
            assert_violation(what, &stream, reader);
            drop(stream);
            let mut buf = [0u8; 8];
            assert_eq!(
                (&peer.server).read(&mut buf).unwrap(),
                0,
                "{what}: the answerer sees the end once the stream is dropped"
            );
            drop(peer);
            assert_eq!(shm_mappings(), maps, "{what}");
            assert_fds_back(&before, what);
        }
    }

    #[test]
    fn hostile_data_and_flags_are_only_data() {
        // Garbage data and a consistent index: the bytes are delivered (as a socket delivers
        // garbage), the "closed" flag is end-of-file; nothing else happens.
        let _serial = serial();
        let _dog = watchdog("hostile_data", 30);
        let (res, peer) = hostile("data", Offer::Sound);
        let mut stream = res.unwrap();
        let view = peer.view.as_ref().unwrap();
        view.put(4096, &[0xff, 0x00, 0xfe, 0x01, 0x02]);
        view.u64_at(0).store(5, Ordering::SeqCst);
        view.u32_at(8).store(0xdead_beef, Ordering::SeqCst);
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        assert_eq!(got, [0xff, 0x00, 0xfe, 0x01, 0x02]);
    }
}

// ---- the async API (localsock::tokio::ShmStream) ----

#[cfg(all(feature = "tokio", target_os = "linux"))]
// Each test has its own runtime, and the guard serialises whole tests (as in the blocking
// tests): holding it across awaits blocks nothing but other tests.
#[allow(clippy::await_holding_lock)]
mod async_api {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type AsyncShm = localsock::tokio::ShmStream;

    async fn async_pair(offer: ShmOptions, answer: ShmOptions) -> (AsyncShm, AsyncShm) {
        let dir = tempfile::tempdir().unwrap();
        let name = Name::path(dir.path().join("a.sock")).unwrap();
        let listener = localsock::tokio::LocalListener::bind(&name).unwrap();
        let server = tokio::spawn(async move {
            let stream = listener.accept().await.unwrap();
            AsyncShm::answer(&answer, stream).await.unwrap()
        });
        let client = localsock::tokio::LocalStream::connect(&name).await.unwrap();
        let client = AsyncShm::offer(&offer, client).await.unwrap();
        (client, server.await.unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_bulk_both_directions_checked() {
        let _serial = serial();
        let _dog = watchdog("async_bulk", 300);
        let total = bulk_bytes() / 4;
        let mut opts = ShmOptions::new();
        opts.capacity(64 * 1024);
        let (client, server) = async_pair(opts.clone(), opts).await;
        assert!(client.is_shared_memory() && server.is_shared_memory());
        let mut tasks = Vec::new();
        for (stream, seed) in [(client, 1u64), (server, 2u64)] {
            let (mut rd, mut wr) = tokio::io::split(stream);
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(seed);
                let mut sent = 0u64;
                let mut chunk = vec![0u8; 100_000];
                while sent < total {
                    let len = ((rng.next() % chunk.len() as u64) + 1).min(total - sent) as usize;
                    for (k, b) in chunk[..len].iter_mut().enumerate() {
                        *b = pattern(seed, sent + k as u64);
                    }
                    wr.write_all(&chunk[..len]).await.unwrap();
                    sent += len as u64;
                }
                wr.shutdown().await.unwrap();
            }));
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(seed * 31);
                let mut got = 0u64;
                let mut buf = vec![0u8; 100_000];
                loop {
                    let len = ((rng.next() % buf.len() as u64) + 1) as usize;
                    let n = rd.read(&mut buf[..len]).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    for (k, b) in buf[..n].iter().enumerate() {
                        assert_eq!(*b, pattern(3 - seed, got + k as u64));
                    }
                    got += n as u64;
                }
                assert_eq!(got, total);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test]
    async fn async_offer_blocking_answer_interoperate() {
        let _serial = serial();
        let _dog = watchdog("async_blocking_interop", 30);
        let (client, server) = common::pair("async-interop");
        let blocking = thread::spawn(move || {
            let mut s = ShmOptions::new().answer(server).unwrap();
            assert!(s.is_shared_memory());
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let client = localsock::tokio::LocalStream::from_std(client).unwrap();
        let mut client = AsyncShm::offer(&ShmOptions::new(), client).await.unwrap();
        assert!(client.is_shared_memory());
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        blocking.join().unwrap();
        // The peer is gone: end-of-file, then BrokenPipe on writing.
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        let err = loop {
            if let Err(e) = client.write(&[0u8; 4096]).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn async_refused_stays_a_socket() {
        let _serial = serial();
        let _dog = watchdog("async_refused", 30);
        let mut off = ShmOptions::new();
        off.enabled(false);
        let (mut client, mut server) = async_pair(ShmOptions::new(), off).await;
        assert!(!client.is_shared_memory() && !server.is_shared_memory());
        client.write_all(b"socket").await.unwrap();
        let mut buf = [0u8; 6];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"socket");
        drop(client);
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
    }
}

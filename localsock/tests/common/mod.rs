//! Helpers shared by the integration tests: unique names, watchdogs, child processes, fd counts.
#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use localsock::{LocalListener, LocalStream, Name};

/// A short name no other test (or test run) uses.
pub fn unique(tag: &str) -> Name {
    Name::new(unique_str(tag)).expect("a valid unique name")
}

pub fn unique_str(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("lst-{}-{n}-{nanos:x}-{tag}", std::process::id())
}

/// A connected (client, server) pair.
pub fn pair(tag: &str) -> (LocalStream, LocalStream) {
    let name = unique(tag);
    let listener = LocalListener::bind(&name).unwrap();
    let client = thread::spawn(move || LocalStream::connect(&name).unwrap());
    let server = listener.accept().unwrap();
    (client.join().unwrap(), server)
}

/// Fails the whole test binary if the guard is not dropped within `secs`: a hang becomes a
/// failure in seconds, not at CI's limit.
pub struct Watchdog(Option<mpsc::Sender<()>>);

pub fn watchdog(what: &'static str, secs: u64) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
            // Straight to the stderr descriptor: the harness captures `eprintln!` and would
            // lose the message when the process exits.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "WATCHDOG: test `{what}` still running after {secs} s: aborting"
            );
            std::process::exit(99);
        }
    });
    Watchdog(Some(tx))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// The environment variable that tells a re-executed test binary which child role to play.
pub const ROLE: &str = "LOCALSOCK_TEST_ROLE";

/// Re-executes this test binary to run the `#[ignore]`d test `entry` as a child process,
/// with `LOCALSOCK_TEST_ROLE` and the given environment. The child's stdout is piped so its
/// own harness summary does not mix into the parent's.
pub fn child(entry: &str, envs: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        entry,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, entry)
    .stdin(Stdio::null())
    .stdout(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// In a child entry point: true when this process was started by [`child`] for `entry`.
pub fn is_child(entry: &str) -> bool {
    std::env::var(ROLE).map(|r| r == entry).unwrap_or(false)
}

/// Waits for a child with a bound, killing it if it overstays.
pub fn wait_bounded(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not exit within {secs} s", child.id());
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// [`wait_bounded`], then reads what is left of the child's piped stdout: its exit status and
/// its output (`CHILD ...` lines and its harness's), for the caller's assertions.
pub fn wait_and_read_stdout(child: &mut Child, secs: u64) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let status = wait_bounded(child, secs);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status, out)
}

/// Number of open file descriptors of a process (Linux).
#[cfg(target_os = "linux")]
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Whether the tests run as root (they then play other users through child processes).
#[cfg(unix)]
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Reads one `CHILD ...` line from a child's stdout (the protocol between a test and its
/// child), byte by byte so nothing after the line is swallowed by a buffer.
pub fn read_line(child: &mut Child) -> String {
    use std::io::Read;
    let out = child.stdout.as_mut().expect("piped stdout");
    loop {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            let n = out.read(&mut byte).expect("read child stdout");
            assert!(n > 0, "child closed stdout before saying anything");
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&line);
        // Skip the harness's own lines ("running 1 test", ...).
        // The harness may print "test name ... " on the same line first.
        if let Some(at) = line.find("CHILD ") {
            return line[at + "CHILD ".len()..].trim_end().to_owned();
        }
    }
}

/// Asserts that none of `fds` (sockets of this process) is inherited by a spawned program.
/// Sockets are identified by inode ("socket:[123]"), since fd numbers are reused; a shell
/// lists what it inherited: its own /proc/PID/fd links (Linux).
#[cfg(target_os = "linux")]
pub fn assert_no_fd_leaks_into_child(fds: &[std::os::fd::RawFd]) {
    let ours: Vec<String> = fds
        .iter()
        .map(|fd| {
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert!(ours.iter().all(|l| l.starts_with("socket:")), "{ours:?}");
    let out = Command::new("/bin/sh")
        .args(["-c", "for f in /proc/$$/fd/*; do readlink \"$f\"; done"])
        .output()
        .unwrap();
    let theirs = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!theirs.is_empty());
    for link in ours {
        assert!(
            !theirs.lines().any(|l| l == link),
            "{link} leaked into a child: {theirs}"
        );
    }
}

/// Leaves a stale socket file at `path` (bound by std, which does not unlink it, then closed)
/// and waits until it really refuses connections. Another test thread may fork at the moment
/// the socket exists; the child then holds the listening socket until it execs, and a probe in
/// that window rightly finds a live server.
#[cfg(unix)]
pub fn make_stale_socket(path: &std::path::Path) {
    drop(std::os::unix::net::UnixListener::bind(path).expect("bind the soon-stale socket"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::os::unix::net::UnixStream::connect(path) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} never became stale",
                    path.display()
                );
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// How many handles this process holds, as well as Windows lets us tell: `GetProcessHandleCount`,
/// or where that is a stub (Wine 8.0 answers 0) the lowest free handle slot, which every leaked
/// handle pushes up (Wine hands out the lowest free slot). The name of the measure comes with
/// it. Callers check first that the measure sees handles held on purpose
/// ([`assert_handle_measure_sees_leaks`]).
#[cfg(windows)]
pub fn handle_measure() -> (usize, &'static str) {
    #[allow(unsafe_code)]
    let count = {
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessHandleCount};
        let mut count = 0u32;
        // SAFETY: the current-process pseudo-handle is always valid; `count` is valid for
        // writes.
        let ok = unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut count) };
        if ok == 0 {
            0
        } else {
            count
        }
    };
    if count > 0 {
        return (count as usize, "GetProcessHandleCount");
    }
    let probe = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let slot = std::os::windows::io::AsRawHandle::as_raw_handle(&probe) as usize / 4;
    (
        slot,
        "lowest free handle slot (GetProcessHandleCount is a stub here)",
    )
}

/// Panics unless [`handle_measure`] sees 16 handles held on purpose.
#[cfg(windows)]
pub fn assert_handle_measure_sees_leaks() {
    let (base, what) = handle_measure();
    let held: Vec<std::fs::File> = (0..16)
        .map(|_| std::fs::File::open(std::env::current_exe().unwrap()).unwrap())
        .collect();
    let (with_held, _) = handle_measure();
    drop(held);
    assert!(
        with_held >= base + 16,
        "{what} does not see 16 extra handles ({base} -> {with_held})"
    );
}

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

/// A full pipe name (`\\.\pipe\...`) no other test (or test run) uses. An explicit name: no
/// default check applies to it, where a short name requires a server of this user (foreign
/// servers, as tokio's or interprocess's pipes under Wine, may show no owner).
#[cfg(windows)]
pub fn unique_pipe(tag: &str) -> Name {
    Name::new(format!(r"\\.\pipe\{}", unique_str(tag))).expect("a valid pipe name")
}

/// A connected (client, server) pair.
pub fn pair(tag: &str) -> (LocalStream, LocalStream) {
    let name = unique(tag);
    let listener = LocalListener::bind(&name).unwrap();
    let client = thread::spawn(move || LocalStream::connect(&name).unwrap());
    let server = listener.accept().unwrap();
    (client.join().unwrap(), server)
}

/// One echo round trip on a fresh connection (bounded connect and read): what came back.
pub fn echo_round_trip(name: &Name, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = localsock::ConnectOptions::new()
        .timeout(Duration::from_secs(10))
        .connect(name)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(payload)?;
    let mut back = vec![0; payload.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

/// Fails the whole test binary if the guard is not dropped within `secs`: a hang becomes a
/// failure in seconds, not at CI's limit.
pub struct Watchdog(Option<mpsc::Sender<()>>);

pub fn watchdog(what: &'static str, secs: u64) -> Watchdog {
    watchdog_with(what, secs, || {})
}

/// [`watchdog`] that runs `on_timeout` (say, killing the test's other processes) before it
/// ends the test binary.
pub fn watchdog_with(
    what: &'static str,
    secs: u64,
    on_timeout: impl FnOnce() + Send + 'static,
) -> Watchdog {
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
            on_timeout();
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

/// Runs `body` on a fresh multi-threaded runtime (two workers); a hang fails after `secs`
/// seconds.
#[cfg(feature = "tokio")]
pub fn run<F: std::future::Future<Output = ()>>(secs: u64, body: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(secs), body)
            .await
            .expect("watchdog: the test hung");
    });
}

/// The environment variable that tells a re-executed test binary which child role to play.
pub const ROLE: &str = "LOCALSOCK_TEST_ROLE";

/// Re-executes this test binary to run the `#[ignore]`d test `entry` as a child process,
/// with `LOCALSOCK_TEST_ROLE` and the given environment. Entry points are named `child_*`:
/// `ci/ignored.sh`, which runs every other ignored test, leaves them to their parent tests. The child's stdout is piped so its
/// own harness summary does not mix into the parent's.
pub fn child(entry: &str, envs: &[(&str, &str)]) -> Command {
    child_from(&std::env::current_exe().expect("current_exe"), entry, envs)
}

/// [`child`] from `exe`, a copy of this test binary (one another user can reach, say).
pub fn child_from(exe: &std::path::Path, entry: &str, envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(exe);
    configure_child(&mut cmd, entry, envs);
    cmd
}

/// The arguments and environment that make a test binary run `entry` as a child.
fn configure_child(cmd: &mut Command, entry: &str, envs: &[(&str, &str)]) {
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

/// Kills a child process when dropped, so a failed assertion leaves nothing running.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

/// Starts a root-only (`#[ignore]`d) test: fails it at once when not root, because a test that
/// was asked to run must not pass without having checked anything; returns its watchdog.
#[cfg(unix)]
pub fn root_test(test: &'static str, secs: u64) -> Watchdog {
    require_root(test);
    watchdog(test, secs)
}

/// Fails a root-only (`#[ignore]`d) test at once when not root (see [`root_test`]).
#[cfg(unix)]
pub fn require_root(test: &str) {
    assert!(
        is_root(),
        "`{test}` plays another user and needs root; run it as root with -- --ignored \
         (CI does: ci/ignored.sh)"
    );
}

/// A copy of the executable `exe` that any user can run, for a child process that plays another
/// user: that user may not be able to enter the checkout (a clone in a 0700 home directory).
/// The copy lives in a fresh directory of mode 0755 under the system's temporary directory
/// and is removed when the returned guard is dropped — once the child has been spawned is
/// enough, since a running program does not need its file.
#[cfg(unix)]
pub struct ReachableCopy {
    dir: tempfile::TempDir,
    exe: std::path::PathBuf,
}

#[cfg(unix)]
impl ReachableCopy {
    pub fn of(exe: &std::path::Path) -> ReachableCopy {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("localsock-test-exe-")
            .tempdir_in(reachable_tmp())
            .expect("a directory for the other user's copy");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.path().join(exe.file_name().expect("a file name"));
        std::fs::copy(exe, &copy)
            .unwrap_or_else(|e| panic!("copy {} for another user: {e}", exe.display()));
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        ReachableCopy { dir, exe: copy }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.exe
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// `/tmp` (sticky and world-searchable) unless `TMPDIR` names a directory everyone can enter.
#[cfg(unix)]
fn reachable_tmp() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir();
    let everyone_enters = |p: &std::path::Path| {
        p.ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .all(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
    };
    if everyone_enters(&tmp) {
        tmp
    } else {
        std::path::PathBuf::from("/tmp")
    }
}

/// A process that runs as another user (`uid`, `gid`): `program` is copied to a place that
/// user can reach (see [`ReachableCopy`]) and run from there, in `/` as working directory.
/// The copy is deleted once the process has started.
#[cfg(unix)]
pub struct AsOtherUser {
    cmd: Command,
    copy: ReachableCopy,
}

#[cfg(unix)]
impl AsOtherUser {
    /// `program`, to be run as `uid`/`gid`; the caller adds arguments and environment with
    /// [`AsOtherUser::command`].
    pub fn new(program: &std::path::Path, uid: u32, gid: u32) -> AsOtherUser {
        use std::os::unix::process::CommandExt;
        let copy = ReachableCopy::of(program);
        let mut cmd = Command::new(copy.path());
        cmd.uid(uid).gid(gid).current_dir("/");
        AsOtherUser { cmd, copy }
    }

    /// The command, for arguments, environment, stdio and group changes.
    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Starts it; the copy of the program is gone when this returns.
    pub fn spawn(mut self) -> std::io::Result<Child> {
        let child = self.cmd.spawn_copied();
        drop(self.copy);
        child
    }
}

/// `spawn` for a command whose program was just copied ([`ReachableCopy`], or a test's own
/// copy). While the copy is being written, another test thread may fork: its child holds the
/// copy's write descriptor until it execs (close-on-exec closes it only then), and exec of the
/// copy meanwhile fails with `ETXTBSY` ("text file busy"). That ends by itself within
/// microseconds, so the spawn is retried on exactly that error, for at most 10 s.
#[cfg(unix)]
pub trait SpawnCopied {
    fn spawn_copied(&mut self) -> std::io::Result<Child>;
}

#[cfg(unix)]
impl SpawnCopied for Command {
    fn spawn_copied(&mut self) -> std::io::Result<Child> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Err(e)
                    if e.raw_os_error() == Some(libc::ETXTBSY)
                        && std::time::Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(2));
                }
                result => return result,
            }
        }
    }
}

/// [`child`], run as another user (`uid`, `gid`) from a copy of this test binary that user can
/// reach, so the test works from any checkout location.
#[cfg(unix)]
pub fn child_as(entry: &str, envs: &[(&str, &str)], uid: u32, gid: u32) -> AsOtherUser {
    let exe = std::env::current_exe().expect("current_exe");
    let mut other = AsOtherUser::new(&exe, uid, gid);
    configure_child(other.command(), entry, envs);
    other
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

/// Waits (polling, bounded) until a thread of process `pid` is blocked in `nanosleep` or
/// `clock_nanosleep` (its `/proc/PID/task/TID/syscall`): the thread named `thread` (its
/// `comm`, at most 15 bytes), or any of them with `None`. For a client told to wait for a
/// server, this is the event "it tried, found no server and is pausing before the next try":
/// a server started after this returns really did start later. Linux.
#[cfg(target_os = "linux")]
pub fn wait_until_sleeping(pid: u32, thread_name: Option<&str>) {
    let sleeps = [libc::SYS_nanosleep, libc::SYS_clock_nanosleep];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/PID/task");
        for task in tasks.flatten() {
            let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
            if thread_name.is_some_and(|want| read("comm").trim_end() != want) {
                continue;
            }
            // "NR args..." while blocked in a system call; "running" or "-1 ..." otherwise.
            let nr = read("syscall")
                .split_whitespace()
                .next()
                .map(str::parse::<libc::c_long>);
            if let Some(Ok(nr)) = nr {
                if sleeps.contains(&nr) {
                    return;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no thread {thread_name:?} of process {pid} paused in a sleep within 20 s"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `connect` (a client that will have to wait: for a server that does not exist yet, or
/// for room in a full backlog) on a new thread and returns once that client is waiting, so what
/// the caller does next really happens later. On Linux "waiting" is observed: the thread is
/// paused between attempts ([`wait_until_sleeping`]), which it can only be after an attempt
/// failed. Elsewhere it is the thread's signal that it is about to connect.
pub fn spawn_waiting_client<T: Send + 'static>(
    connect: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    // A name of its own (at most 15 bytes, the kernel's limit): tests run in parallel.
    static N: AtomicU32 = AtomicU32::new(0);
    let thread_name = format!("waiting-{}", N.fetch_add(1, Ordering::Relaxed));
    let (started, is_started) = mpsc::channel();
    let client = thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            started.send(()).unwrap();
            connect()
        })
        .unwrap();
    is_started.recv().expect("the client thread started");
    #[cfg(target_os = "linux")]
    wait_until_sleeping(std::process::id(), Some(&thread_name));
    #[cfg(not(target_os = "linux"))]
    let _ = thread_name;
    client
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat` (Linux).
#[cfg(target_os = "linux")]
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of stat(5) (utime, stime), counted from 3 (state) here.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(ticks > 0);
    ticks as u64
}

/// The share of one CPU a process used over `window` (a measurement window, not a wait for
/// anything) (Linux).
#[cfg(target_os = "linux")]
pub fn cpu_share(pid: u32, window: Duration) -> f64 {
    let before = cpu_time(pid);
    let start = std::time::Instant::now();
    thread::sleep(window);
    let used = cpu_time(pid) - before;
    used.as_secs_f64() / start.elapsed().as_secs_f64()
}

/// Raises this process's soft descriptor limit to the hard one (for floods); returns it.
#[cfg(unix)]
pub fn raise_nofile() -> u64 {
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

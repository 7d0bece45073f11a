//! The `localsock` binary, driven as users drive it: real processes, real sockets.
//!
//! Every test uses names in its own temporary directory, and every child process is killed
//! when its test ends or when a wait exceeds its bound, so a hang fails in seconds.
#![cfg(unix)]

/// The CLI's test helpers, with the library's (one home: localsock/tests/common).
mod common;

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use localsock::{ConnectOptions, Name};

const BOUND: Duration = Duration::from_secs(30);

fn localsock() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_localsock"));
    command.env("NO_COLOR", "1").env_remove("RUST_BACKTRACE");
    command
}

/// A child process whose output is collected by threads, killed on drop (the watchdog).
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl Proc {
    fn spawn(command: &mut Command) -> Proc {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start localsock");
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // Collect stdout, and hand out complete lines as they come for the tests that wait
        // for one.
        let stdout = thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            let mut start = 0;
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                // Look for newlines only in what just arrived: rescanning a long line from its
                // start on every read is quadratic, slow enough to stall the child on a
                // full pipe.
                let mut scan = all.len();
                all.extend_from_slice(&buf[..n]);
                while let Some(pos) = all[scan..].iter().position(|b| *b == b'\n') {
                    let end = scan + pos;
                    let line = String::from_utf8_lossy(&all[start..end]).into_owned();
                    let _ = tx.send(line);
                    start = end + 1;
                    scan = start;
                }
            }
            String::from_utf8_lossy(&all).into_owned()
        });
        let stderr = thread::spawn(move || {
            let mut all = String::new();
            let _ = BufReader::new(&mut err).read_to_string(&mut all);
            all
        });
        Proc {
            child,
            stdin,
            lines,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Writes `data` to the child's stdin from a thread, then closes it.
    fn feed(&mut self, data: Vec<u8>) -> JoinHandle<()> {
        let mut stdin = self.stdin.take().expect("stdin already closed");
        thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    }

    fn close_stdin(&mut self) {
        self.stdin.take();
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(BOUND)
            .expect("a line from the child within the bound")
    }

    /// Waits for the exit within `bound`, else kills the child and fails the test.
    fn finish_within(mut self, bound: Duration) -> (ExitStatus, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > bound {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().unwrap().join().unwrap();
                panic!("localsock did not exit within {bound:?}; stderr: {err}");
            }
            thread::sleep(Duration::from_millis(10));
        };
        let out = self.stdout.take().unwrap().join().unwrap();
        let err = self.stderr.take().unwrap().join().unwrap();
        (status, out, err)
    }

    fn finish(self) -> (ExitStatus, String, String) {
        self.finish_within(BOUND)
    }

    fn kill(mut self) -> (ExitStatus, String, String) {
        let _ = self.child.kill();
        self.finish()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a short command to completion with no stdin.
fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let mut command = localsock();
    command.args(args);
    let mut proc = Proc::spawn(&mut command);
    proc.close_stdin();
    proc.finish()
}

fn sock(dir: &tempfile::TempDir, file: &str) -> PathBuf {
    dir.path().join(file)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Waits until something accepts connections at `path` (the probe connection is closed at once).
fn wait_listening(path: &Path) {
    ConnectOptions::new()
        .timeout(BOUND)
        .wait_for_server(true)
        .connect(&Name::path(path).unwrap())
        .expect("server came up");
}

/// Asserts a user mistake was reported as exactly one line naming `what`, without a panic.
fn assert_one_line_error(stderr: &str, what: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got: {stderr:?}"
    );
    assert!(lines[0].starts_with("localsock: error: "), "{stderr:?}");
    assert!(lines[0].contains(what), "{stderr:?} should name {what:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

/// Printable bytes (stdout is compared as text), different for every seed and offset.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b'!' + ((i as u32 * 31 + u32::from(seed) * 7) % 90) as u8)
        .collect()
}

/// A 0700 directory, as the library requires of `XDG_RUNTIME_DIR`.
fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

#[test]
fn listen_and_connect_pipe_both_directions_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "pipe.sock");
    // Large enough that neither side could finish sending before the other reads.
    let to_client = pattern(1, 3 << 20);
    let to_server = pattern(2, 3 << 20);

    let mut server = Proc::spawn(localsock().args(["listen", s(&path)]));
    let mut client = Proc::spawn(localsock().args(["connect", "--wait", "-t", "20s", s(&path)]));
    let fed_server = server.feed(to_client.clone());
    let fed_client = client.feed(to_server.clone());

    let (client_status, client_out, client_err) = client.finish();
    let (server_status, server_out, server_err) = server.finish();
    fed_server.join().unwrap();
    fed_client.join().unwrap();
    assert!(client_status.success(), "connect: {client_err}");
    assert!(server_status.success(), "listen: {server_err}");
    assert_eq!(client_out.len(), to_client.len());
    assert!(
        client_out.as_bytes() == to_client,
        "the client got other bytes"
    );
    assert!(
        server_out.as_bytes() == to_server,
        "the server got other bytes"
    );
    assert!(!path.exists(), "listen removes its socket file on exit");
}

#[test]
fn listen_half_close_keeps_the_other_direction_open() {
    // The client's stdin ends at once; the server answers afterwards, and the client still
    // gets the answer before it exits.
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "half.sock");
    let mut server = Proc::spawn(localsock().args(["listen", s(&path)]));
    let mut client = Proc::spawn(localsock().args(["connect", "--wait", "-t", "20s", s(&path)]));
    client.feed(b"question\n".to_vec()).join().unwrap();
    // The client's stdin has ended, so it has shut down its sending side; once the server has
    // printed the question, the server answers and ends its own stdin.
    assert_eq!(server.next_line(), "question");
    server.feed(b"answer".to_vec()).join().unwrap();
    let (status, out, err) = client.finish();
    assert!(status.success(), "{err}");
    assert_eq!(out, "answer");
    let (status, out, err) = server.finish();
    assert!(status.success(), "{err}");
    assert_eq!(out, "question\n");
}

/// Waits for the socket file. It appears at `bind(2)`, before `listen(2)`: it has its mode, but
/// a connect right then may be refused, so a client of `listen` (which serves one connection,
/// so no probe may take it) waits for the server itself (`--wait`, `wait_for_server`).
fn wait_for_socket_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < BOUND, "{} never appeared", path.display());
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn listen_keep_open_serves_connections_one_after_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "keep.sock");
    let mut server = Proc::spawn(localsock().args(["listen", "--keep-open", s(&path)]));
    server.close_stdin();
    for word in ["first\n", "second\n", "third\n"] {
        let mut client =
            Proc::spawn(localsock().args(["connect", "--wait", "--timeout", "20s", s(&path)]));
        client.feed(word.as_bytes().to_vec()).join().unwrap();
        let (status, out, err) = client.finish();
        assert!(status.success(), "{err}");
        assert_eq!(out, "", "the server's stdin is empty");
        assert_eq!(server.next_line(), word.trim_end());
    }
    let (status, _, _) = server.kill();
    assert!(!status.success(), "only a kill stops --keep-open");
}

#[test]
fn connect_prints_the_echo_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "hi.sock");
    let server = Proc::spawn(localsock().args(["echo", s(&path)]));
    assert!(server.next_line().starts_with("listening on "));
    let mut client = Proc::spawn(localsock().args(["connect", s(&path)]));
    client.feed(b"hi".to_vec()).join().unwrap();
    let (status, out, err) = client.finish();
    assert!(status.success(), "{err}");
    assert_eq!(out, "hi");
    assert_eq!(err, "");
}

#[test]
fn echo_serves_twenty_concurrent_clients() {
    const CLIENTS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "echo.sock");
    let server = Proc::spawn(localsock().args(["echo", "--max-clients", "32", s(&path)]));
    assert!(server.next_line().starts_with("listening on "));
    let name = Name::path(&path).unwrap();
    let all_connected = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let name = name.clone();
            let all_connected = Arc::clone(&all_connected);
            thread::spawn(move || {
                let mut stream = ConnectOptions::new().timeout(BOUND).connect(&name).unwrap();
                stream.set_read_timeout(Some(BOUND)).unwrap();
                // Every client is connected before any sends: all twenty are served at once.
                all_connected.wait();
                let mine = pattern(i as u8, 100_000 + i * 1000);
                let mut writer = stream.try_clone().unwrap();
                let sent = mine.clone();
                let sender = thread::spawn(move || {
                    writer.write_all(&sent).unwrap();
                    writer.shutdown(std::net::Shutdown::Write).unwrap();
                });
                let mut back = Vec::new();
                stream.read_to_end(&mut back).unwrap();
                sender.join().unwrap();
                assert!(
                    back == mine,
                    "client {i} got someone else's bytes or too few"
                );
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let me = std::process::id();
    let mut seen = 0;
    while seen < CLIENTS {
        let line = server.next_line();
        assert!(
            line.starts_with(&format!("#{} connected (pid {me}, uid ", seen + 1)),
            "{line}"
        );
        seen += 1;
    }
    let (_, _, err) = server.kill();
    assert_eq!(err, "", "no warnings for well-behaved clients");
}

#[test]
fn probe_tells_listening_stale_and_absent() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "probe.sock");

    let (status, out, _) = run(&["probe", s(&path)]);
    assert_eq!(status.code(), Some(1), "absent: {out}");
    assert!(
        out.starts_with("absent ") && out.contains(s(&path)),
        "{out}"
    );

    let listener = Proc::spawn(localsock().args(["listen", "--keep-open", s(&path)]));
    wait_listening(&path);
    let pid = listener.child.id();
    let (status, out, err) = run(&["probe", s(&path)]);
    assert_eq!(status.code(), Some(0), "listening: {out} {err}");
    assert!(
        out.starts_with("listening ") && out.contains(s(&path)),
        "{out}"
    );
    assert!(out.contains(&format!("server pid {pid}, uid ")), "{out}");

    // SIGKILL: the server cannot remove its socket file.
    let _ = listener.kill();
    assert!(path.exists());
    let (status, out, _) = run(&["probe", s(&path)]);
    assert_eq!(status.code(), Some(2), "stale: {out}");
    assert!(out.starts_with("stale ") && out.contains(s(&path)), "{out}");
}

#[test]
fn probe_resolves_short_names() {
    let dir = private_tempdir();
    let mut command = localsock();
    command
        .env("XDG_RUNTIME_DIR", dir.path())
        .args(["probe", "short-name"]);
    let mut proc = Proc::spawn(&mut command);
    proc.close_stdin();
    let (status, out, _) = proc.finish();
    assert_eq!(status.code(), Some(1));
    assert!(out.contains(s(&dir.path().join("short-name"))), "{out}");
}

/// Probing a short name creates nothing: with no private directory yet, the name is absent
/// (it used to create `localsock-<uid>` under TMPDIR, and under the current directory for an
/// empty TMPDIR).
#[test]
fn probe_creates_no_directory() {
    let dir = private_tempdir();
    let mut command = localsock();
    command
        .env("TMPDIR", dir.path())
        .env_remove("XDG_RUNTIME_DIR")
        .current_dir(dir.path())
        .args(["probe", "short-name"]);
    let mut proc = Proc::spawn(&mut command);
    proc.close_stdin();
    let (status, out, _) = proc.finish();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("absent"), "{out}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `--qt` resolves NAME as Qt does: under the temp dir (`$TMPDIR`, symlinks resolved), not in
/// the private directory.
#[test]
fn qt_flag_resolves_names_with_qts_rule() {
    let dir = private_tempdir();
    let canonical = dir.path().canonicalize().unwrap();
    let mut command = localsock();
    command
        .env("TMPDIR", dir.path())
        .env_remove("XDG_RUNTIME_DIR")
        .args(["probe", "--qt", "qt-style-name"]);
    let mut proc = Proc::spawn(&mut command);
    proc.close_stdin();
    let (status, out, _) = proc.finish();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains(s(&canonical.join("qt-style-name"))), "{out}");
    // Without --qt the same string goes to the private directory instead.
    assert!(!canonical.join("qt-style-name").exists());
}

#[test]
fn probe_errors_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, err) = run(&["probe", ""]);
    assert_eq!(status.code(), Some(3));
    assert_one_line_error(&err, "invalid name");
    // A directory is not a socket.
    let (status, _, err) = run(&["probe", s(dir.path())]);
    assert_eq!(status.code(), Some(3));
    assert_one_line_error(&err, s(dir.path()));
}

#[test]
fn connect_wait_started_before_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "late.sock");
    let mut client =
        Proc::spawn(localsock().args(["connect", "--wait", "--timeout", "15s", s(&path)]));
    // The client has tried, found nothing and is pausing before its next try.
    #[cfg(target_os = "linux")]
    common::wait_until_sleeping(client.child.id(), Some("localsock"));
    assert!(
        client.child.try_wait().unwrap().is_none(),
        "connect --wait gave up early"
    );
    let server = Proc::spawn(localsock().args(["echo", s(&path)]));
    client.feed(b"early bird".to_vec()).join().unwrap();
    let (status, out, err) = client.finish();
    assert!(status.success(), "{err}");
    assert_eq!(out, "early bird");
    drop(server);
}

#[test]
fn connect_wait_gives_up_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "never.sock");
    let start = Instant::now();
    let (status, _, err) = run(&["connect", "--wait", "--timeout", "300ms", s(&path)]);
    assert_eq!(status.code(), Some(1));
    assert!(start.elapsed() < BOUND);
    assert_one_line_error(&err, s(&path));
    assert!(err.contains("timed out"), "{err}");
}

#[test]
fn errors_are_one_line_with_a_nonzero_status() {
    let dir = tempfile::tempdir().unwrap();
    let absent = sock(&dir, "absent.sock");

    let (status, out, err) = run(&["connect", s(&absent)]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, "");
    assert_one_line_error(&err, s(&absent));
    assert!(err.contains("does not exist"), "{err}");

    let (status, _, err) = run(&["connect", "--timeout", "soon", "x"]);
    assert_eq!(status.code(), Some(2));
    assert_one_line_error(&err, "--timeout");

    let (status, _, err) = run(&["connect"]);
    assert_eq!(status.code(), Some(2));
    assert_one_line_error(&err, "NAME");

    let (status, _, err) = run(&["listen", ""]);
    assert_eq!(status.code(), Some(1));
    assert_one_line_error(&err, "invalid name");

    let long = format!("/{}", "x".repeat(200));
    let (status, _, err) = run(&["connect", &long]);
    assert_eq!(status.code(), Some(1));
    assert_one_line_error(&err, "invalid name");

    // A live server's name is not taken over.
    let busy = sock(&dir, "busy.sock");
    let server = Proc::spawn(localsock().args(["echo", s(&busy)]));
    assert!(server.next_line().starts_with("listening on "));
    let (status, _, err) = run(&["listen", s(&busy)]);
    assert_eq!(status.code(), Some(1));
    assert_one_line_error(&err, s(&busy));
    assert!(err.contains("in use"), "{err}");

    let (status, _, err) = run(&["bench", "--pin", "sideways"]);
    assert_eq!(status.code(), Some(2));
    assert_one_line_error(&err, "--pin");

    // bench --shm runs its own placements and prints a table only.
    for other in [&["--pin", "split"][..], &["--json"][..]] {
        let mut args = vec!["bench", "--shm"];
        args.extend_from_slice(other);
        let (status, _, err) = run(&args);
        assert_eq!(status.code(), Some(2), "{args:?}");
        assert_one_line_error(&err, other[0]);
    }
}

#[test]
fn help_describes_every_subcommand() {
    let (status, out, _) = run(&["--help"]);
    assert!(status.success());
    for word in ["listen", "connect", "echo", "probe", "bench"] {
        assert!(out.contains(word), "{out}");
    }
    assert!(
        !out.contains("bench-server"),
        "the internal server stays hidden"
    );
    let (status, out, _) = run(&["probe", "--help"]);
    assert!(status.success());
    assert!(out.contains("0 listening, 1 absent, 2 stale"), "{out}");
}

#[test]
fn bench_quick_json_has_every_field() {
    // Short names resolve under XDG_RUNTIME_DIR: the bench's servers live there.
    let dir = private_tempdir();
    let mut command = localsock();
    command.env("XDG_RUNTIME_DIR", dir.path()).args([
        "bench",
        "--quick",
        "--json",
        "--repetitions",
        "1",
    ]);
    let mut proc = Proc::spawn(&mut command);
    proc.close_stdin();
    let (status, out, err) = proc.finish_within(Duration::from_secs(60));
    assert!(status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("bench --json prints JSON");
    for side in ["localsock", "raw"] {
        for field in [
            "latency_median_us",
            "latency_p99_us",
            "throughput_64k_gib_s",
            "throughput_4k_gib_s",
            "connect_per_s",
        ] {
            let value = v[side][field].as_f64();
            assert!(
                value.is_some_and(|x| x > 0.0),
                "{side}.{field} = {:?}",
                v[side][field]
            );
        }
        // Descriptor counts come from /proc (Linux); elsewhere they are null.
        let before = v[side]["server_fds_before"].as_u64();
        let after = v[side]["server_fds_after"].as_u64();
        if cfg!(target_os = "linux") {
            assert!(before.is_some_and(|n| n > 0), "{side}: {before:?}");
            assert_eq!(before, after, "{side}: the server leaked descriptors");
        } else {
            assert!(v[side]["server_fds_before"].is_null());
        }
    }
    for field in [
        "latency_median",
        "latency_p99",
        "throughput_64k",
        "throughput_4k",
        "connect_rate",
    ] {
        assert!(
            v["ratio"][field].as_f64().is_some_and(|x| x > 0.0),
            "ratio.{field}"
        );
    }
    for target in ["latency_median", "throughput_64k", "connect_rate"] {
        assert!(v["targets"][target]["met"].is_boolean(), "targets.{target}");
    }
    assert_eq!(v["quick"], true);
    assert_eq!(v["pin"], "same");
    assert!(v["repetitions"].as_u64() == Some(1));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "the bench left files behind: {left:?}");
}

/// `bench --shm` prints every scenario for every placement this process's CPUs allow (both
/// with two or more, only "same CPU" under `taskset -c 0`), each figure a number: the table's
/// shape, not its speed (speed targets are the bench's own business).
#[cfg(all(target_os = "linux", feature = "shm"))]
#[test]
fn bench_shm_quick_prints_every_row_for_each_placement() {
    let dir = private_tempdir();
    let mut command = localsock();
    command.env("XDG_RUNTIME_DIR", dir.path()).args([
        "bench",
        "--shm",
        "--quick",
        "--repetitions",
        "1",
    ]);
    let mut proc = Proc::spawn(&mut command);
    proc.close_stdin();
    let (status, out, err) = proc.finish_within(Duration::from_secs(120));
    assert!(status.success(), "{err}");
    let cpus = thread::available_parallelism().unwrap().get();
    let mut placements = vec!["same CPU"];
    if cpus > 1 {
        placements.insert(0, "different CPUs");
    } else {
        assert!(err.contains("same-CPU placement only"), "{err}");
    }
    let lines: Vec<&str> = out.lines().collect();
    let headers: Vec<usize> = (0..lines.len())
        .filter(|i| placements.iter().any(|p| lines[*i].starts_with(p)))
        .collect();
    assert_eq!(headers.len(), placements.len(), "{out}");
    // label, whether a ratio follows, whether a target follows.
    let rows = [
        ("64 B round trip median (µs)", true, true),
        ("64 B round trip p99 (µs)", true, false),
        ("64 KiB writes (GiB/s)", true, true),
        ("1 MiB writes (GiB/s)", true, false),
        ("idle server CPU (%)", false, true),
        ("idle server CPU, schedstat (%)", false, false),
    ];
    for (placement, start) in placements.iter().zip(&headers) {
        assert!(lines[*start].starts_with(placement), "{out}");
        let section = &lines[start + 1..start + 1 + rows.len()];
        for ((label, has_ratio, has_target), line) in rows.iter().zip(section) {
            let rest = line
                .trim_start()
                .strip_prefix(label)
                .unwrap_or_else(|| panic!("{placement}: no row {label:?} in {out}"));
            let words: Vec<&str> = rest.split_whitespace().collect();
            let number = |i: usize| -> f64 {
                words
                    .get(i)
                    .and_then(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("{placement}, {label}: {rest:?}"))
            };
            let (shm, raw) = (number(0), number(1));
            if label.starts_with("idle") {
                assert!(shm >= 0.0 && raw >= 0.0, "{placement}, {label}: {rest:?}");
            } else {
                assert!(shm > 0.0 && raw > 0.0, "{placement}, {label}: {rest:?}");
            }
            if *has_ratio {
                assert!(number(2) >= 0.0, "{placement}, {label}: {rest:?}");
            }
            // 1 MiB writes carry a target across CPUs only.
            let target = *has_target || (label.starts_with("1 MiB") && *placement != "same CPU");
            let verdict = rest.ends_with("met") || rest.ends_with("missed");
            assert_eq!(verdict, target, "{placement}, {label}: {rest:?}");
        }
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "the bench left files behind: {left:?}");
}

#[test]
fn listen_access_sets_the_socket_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (access, mode) in [("owner", 0o600), ("group", 0o660), ("everyone", 0o666)] {
        let path = sock(&dir, &format!("{access}.sock"));
        let server = Proc::spawn(localsock().args(["listen", "--access", access, s(&path)]));
        wait_for_socket_file(&path);
        let actual = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(actual, mode, "--access {access}: mode {actual:o}");
        drop(server);
    }
    let (status, _, err) = run(&["listen", "--access", "world", s(&sock(&dir, "x.sock"))]);
    assert_eq!(status.code(), Some(2));
    assert_one_line_error(&err, "--access");
}

#[test]
fn echo_max_clients_holds_further_clients_in_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "max.sock");
    let server = Proc::spawn(localsock().args(["echo", "--max-clients", "1", s(&path)]));
    assert!(server.next_line().starts_with("listening on "));
    let name = Name::path(&path).unwrap();
    let connect = || {
        let stream = ConnectOptions::new().timeout(BOUND).connect(&name).unwrap();
        stream.set_read_timeout(Some(BOUND)).unwrap();
        stream
    };
    let mut first = connect();
    let mut byte = [0u8; 1];
    first.write_all(b"a").unwrap();
    first.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"a");

    // The kernel completes the second connect (backlog), but the server does not serve it
    // while the first client holds the only slot.
    let mut second = connect();
    second.write_all(b"b").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = second.read_exact(&mut byte).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );

    drop(first);
    second.set_read_timeout(Some(BOUND)).unwrap();
    second.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"b", "served once the first client left");
    drop(server);
}

#[test]
fn listen_ends_when_the_peer_closes_even_if_stdin_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "hup.sock");
    // The test keeps the server's stdin open (as a terminal would be) for the whole test.
    let server = Proc::spawn(localsock().args(["listen", s(&path)]));
    let mut client = ConnectOptions::new()
        .timeout(BOUND)
        .wait_for_server(true)
        .connect(&Name::path(&path).unwrap())
        .unwrap();
    client.write_all(b"last words\n").unwrap();
    assert_eq!(server.next_line(), "last words");
    drop(client);
    let (status, out, err) = server.finish();
    assert!(status.success(), "{err}");
    assert_eq!(out, "last words\n");
}

/// `connect --server-user`: a server of another uid than required is refused before anything
/// is sent (the echo server receives nothing, so nothing comes back), with one line naming the
/// endpoint; `me` and the server's real uid pass.
#[test]
fn connect_server_user_refuses_a_server_of_another_uid() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "who.sock");
    let server = Proc::spawn(localsock().args(["echo", s(&path)]));
    assert!(server.next_line().starts_with("listening on "));
    let me = rustix::process::geteuid().as_raw();
    let other = me.wrapping_add(4242).to_string();
    let (status, out, err) = run(&["connect", "--server-user", &other, s(&path)]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(out, "");
    assert_one_line_error(&err, s(&path));
    assert!(err.contains("refused"), "{err}");
    assert!(err.contains(&format!("uid {me}")), "the uid found: {err}");
    for who in ["me".to_string(), me.to_string(), "me-or-admin".to_string()] {
        let mut client =
            Proc::spawn(localsock().args(["connect", "--server-user", &who, s(&path)]));
        client.feed(b"hi".to_vec()).join().unwrap();
        let (status, out, err) = client.finish();
        assert!(status.success(), "{who}: {err}");
        assert_eq!(out, "hi", "{who}");
    }
    let (status, _, err) = run(&["connect", "--server-user", "nobody?", s(&path)]);
    assert_eq!(
        status.code(),
        Some(2),
        "a bad value is a usage error: {err}"
    );
}

/// A refused connect says what is at the path: a socket file nobody accepts on (a server that
/// is gone, or one that bound but does not listen) is not a regular file or a directory, and
/// only the former is called a socket.
#[test]
fn refused_connect_hints_match_what_is_at_the_path() {
    let dir = tempfile::tempdir().unwrap();

    let stale = sock(&dir, "stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let (status, _, err) = run(&["connect", s(&stale)]);
    assert_eq!(status.code(), Some(1));
    assert_one_line_error(&err, s(&stale));
    assert!(
        err.contains("the socket file is there but nothing accepts on it"),
        "{err}"
    );

    // Bound by a live process that never calls listen(2): also a socket nobody accepts on.
    let bound = sock(&dir, "bound.sock");
    let holder = {
        use rustix::net::{bind, socket, AddressFamily, SocketAddrUnix, SocketType};
        let fd = socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        bind(&fd, &SocketAddrUnix::new(&bound).unwrap()).unwrap();
        fd
    };
    let (_, _, err) = run(&["connect", s(&bound)]);
    assert!(
        err.contains("or the process that bound it does not listen"),
        "{err}"
    );
    drop(holder);

    let regular = sock(&dir, "regular-file");
    std::fs::write(&regular, b"data").unwrap();
    let (status, _, err) = run(&["connect", s(&regular)]);
    assert_eq!(status.code(), Some(1));
    assert_one_line_error(&err, s(&regular));
    assert!(err.contains("not a socket (a regular file"), "{err}");
    assert!(
        !err.contains("stale") && !err.contains("socket file"),
        "{err}"
    );
    assert_eq!(std::fs::read(&regular).unwrap(), b"data");
}

/// `--quit-after`: the sending side stays open after stdin ends (the peer reads no EOF), and
/// connect exits once the peer has been quiet that long.
#[test]
fn quit_after_keeps_the_sending_side_open_and_exits_when_the_peer_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "quiet.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut client = Proc::spawn(localsock().args(["connect", "--quit-after", "300ms", s(&path)]));
    let (mut server, _) = listener.accept().unwrap();
    client.feed(b"request".to_vec()).join().unwrap();
    let mut got = [0u8; 7];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"request");
    // No EOF while connect waits out the quiet period: the reply still arrives.
    server
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8; 1];
    let e = server.read(&mut byte).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
    server.write_all(b"reply").unwrap();
    let start = Instant::now();
    let (status, out, err) = client.finish();
    assert!(status.success(), "{err}");
    assert_eq!(out, "reply");
    assert!(start.elapsed() < BOUND);
    // It closed after the quiet period: now the server reads EOF.
    server.set_read_timeout(Some(BOUND)).unwrap();
    assert_eq!(server.read(&mut byte).unwrap(), 0);
}

/// `listen --quit-after`: after stdin ends the listener keeps its sending side open (no
/// half-close, which a Qt peer would take for a close), so the client's reply still arrives;
/// it exits once the client has been quiet for the period.
#[test]
fn listen_quit_after_keeps_the_sending_side_open_and_exits_when_the_peer_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "quiet-listen.sock");
    let mut server = Proc::spawn(localsock().args(["listen", "--quit-after", "300ms", s(&path)]));
    let mut client = ConnectOptions::new()
        .timeout(BOUND)
        .wait_for_server(true)
        .connect(&Name::path(&path).unwrap())
        .unwrap();
    server.feed(b"greeting".to_vec()).join().unwrap();
    let mut got = [0u8; 8];
    client.set_read_timeout(Some(BOUND)).unwrap();
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"greeting");
    // No EOF although the listener's stdin has ended.
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8; 1];
    let e = client.read(&mut byte).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    client.write_all(b"reply").unwrap();
    let (status, out, err) = server.finish();
    assert!(status.success(), "{err}");
    assert_eq!(out, "reply");
    // It closed after the quiet period: now the client reads EOF.
    client.set_read_timeout(Some(BOUND)).unwrap();
    assert_eq!(client.read(&mut byte).unwrap(), 0);
}

/// `--group` is for Windows pipes: on Unix it is refused with how the group is chosen there,
/// and nothing is bound.
#[test]
fn group_flag_is_refused_on_unix_saying_how_the_group_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "group.sock");
    for command in ["listen", "echo"] {
        let (status, _, err) = run(&[command, "--access", "group", "--group", "staff", s(&path)]);
        assert_eq!(status.code(), Some(1), "{err}");
        assert_one_line_error(&err, "set-group-ID");
        assert!(!path.exists(), "{command} bound {path:?}");
    }
}

/// `--read-timeout`: a server that accepts and never answers does not keep connect forever.
#[test]
fn read_timeout_gives_up_on_a_silent_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir, "silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut client =
        Proc::spawn(localsock().args(["connect", "--read-timeout", "300ms", s(&path)]));
    let (_server, _) = listener.accept().unwrap();
    // stdin stays open, as on a terminal.
    let (status, _, err) = client_finish_keep_stdin(&mut client);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_one_line_error(&err, "sent nothing for 300ms (--read-timeout)");
}

fn client_finish_keep_stdin(proc: &mut Proc) -> (ExitStatus, String, String) {
    let stdin = proc.stdin.take();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < BOUND, "localsock did not exit");
        thread::sleep(Duration::from_millis(10));
    };
    drop(stdin);
    let out = proc.stdout.take().unwrap().join().unwrap();
    let err = proc.stderr.take().unwrap().join().unwrap();
    (status, out, err)
}

/// The hidden bench server removes a leftover socket at --name, and nothing else.
#[test]
fn bench_server_refuses_to_delete_what_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let precious = sock(&dir, "precious.txt");
    std::fs::write(&precious, b"keep me").unwrap();
    // Its stdin stays open: the bench server exits quietly when its parent closes it.
    let mut proc =
        Proc::spawn(localsock().args(["bench-server", "--imp", "raw", "--name", s(&precious)]));
    let (status, _, err) = client_finish_keep_stdin(&mut proc);
    assert_eq!(status.code(), Some(1));
    assert_one_line_error(&err, "is not a socket; refusing to remove it");
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
}

#[test]
fn help_shows_forward_and_socket_activation_with_examples() {
    let (status, out, _) = run(&["--help"]);
    assert!(status.success());
    assert!(
        out.contains("localsock forward tcp:127.0.0.1:8080 svc"),
        "{out}"
    );
    assert!(out.contains("systemd-socket-activate -l"), "{out}");
    assert!(out.contains("LISTEN_FDS"), "{out}");
    let (status, out, _) = run(&["forward", "--help"]);
    assert!(status.success());
    for word in [
        "tcp:HOST:PORT",
        "--allow-remote",
        "--max-clients",
        "--wait",
        "--timeout",
    ] {
        assert!(out.contains(word), "{word}: {out}");
    }
}

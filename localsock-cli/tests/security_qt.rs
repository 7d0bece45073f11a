//! `--qt` names live in the shared temp directory (issue 16): a server found there that runs
//! as another user is refused by `connect`, and a client of another user by `listen`, unless
//! `--allow-other-user` is given. The other user is `nobody`, played with `setpriv` and
//! `/usr/bin/python3` (system programs: the test works from any checkout location).
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{is_root, Reaper};

/// `python3` as uid 65534 running `script` with `args`; returns once it printed `ready`, with
/// the rest of its output.
fn as_nobody(script: &str, args: &[&str]) -> (Reaper, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run setpriv (util-linux) and /usr/bin/python3");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "ready");
    (Reaper(child), out)
}

/// A sticky, world-writable directory like /tmp, to be `TMPDIR`.
fn shared_tmp() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

fn localsock(tmp: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_localsock"));
    command
        .env("NO_COLOR", "1")
        .env("TMPDIR", tmp)
        .args(args)
        .stdin(Stdio::null());
    command
}

fn run(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("localsock did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

const SQUATTER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(b"from nobody\n")
    except OSError:
        pass
    c.close()
"#;

#[test]
#[ignore = "plays another uid (nobody): needs root — run as root with \
            `cargo test -p localsock-cli --test security_qt -- --include-ignored`"]
fn qt_connect_refuses_a_server_of_another_user_unless_allowed() {
    assert!(
        is_root(),
        "plays uid 65534: run as root (CI does, with --include-ignored)"
    );
    let tmp = shared_tmp();
    let path = tmp.path().join("qt-service");
    let _squatter = as_nobody(SQUATTER, &[path.to_str().unwrap()]);

    let out = run(localsock(tmp.path(), &["--qt", "connect", "qt-service"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing from the other user's server is printed"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("the server runs as uid 65534"), "{err}");
    assert!(err.contains("--allow-other-user"), "{err}");

    let out = run(localsock(
        tmp.path(),
        &["--qt", "connect", "--allow-other-user", "qt-service"],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from nobody\n");
}

/// Connects to the socket at `argv[1]`, waiting for its server: the file appears at `bind(2)`,
/// before `listen(2)`, and a connect in between is refused (as `wait_for_server` retries).
const CLIENT: &str = r#"
import socket, sys, time
deadline = time.monotonic() + 20
while True:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sys.argv[1])
        break
    except ConnectionRefusedError:
        s.close()
        if time.monotonic() > deadline:
            raise
        time.sleep(0.005)
print("ready", flush=True)
try:
    s.sendall(b"from nobody\n")
    data = s.recv(100)
except (ConnectionResetError, BrokenPipeError):
    data = b""
print("got", repr(data), flush=True)
"#;

#[test]
#[ignore = "plays another uid (nobody): needs root — run as root with \
            `cargo test -p localsock-cli --test security_qt -- --include-ignored`"]
fn qt_listen_refuses_a_client_of_another_user_unless_allowed() {
    assert!(
        is_root(),
        "plays uid 65534: run as root (CI does, with --include-ignored)"
    );
    let tmp = shared_tmp();
    let path = tmp.path().join("qt-listen");
    let mut listen = Reaper(
        localsock(
            tmp.path(),
            &["--qt", "listen", "--access", "everyone", "qt-listen"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "listen never bound"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_intruder, mut rest) = as_nobody(CLIENT, &[path.to_str().unwrap()]);
    // The client of another user is refused (closed): it reads EOF, not our stdin.
    let mut out = String::new();
    rest.read_to_string(&mut out).unwrap();
    assert_eq!(out.trim(), "got b''", "{out}");
    // listen says why on stderr and keeps waiting for another client.
    let mut err = BufReader::new(listen.0.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("the client runs as uid 65534"), "{line}");
    assert!(line.contains("waiting for another client"), "{line}");
    assert!(
        listen.0.try_wait().unwrap().is_none(),
        "listen kept waiting"
    );
    drop(listen);

    // With --allow-other-user the same client is served.
    let path = tmp.path().join("qt-allowed");
    let mut listen = localsock(
        tmp.path(),
        &[
            "--qt",
            "listen",
            "--access",
            "everyone",
            "--allow-other-user",
            "qt-allowed",
        ],
    );
    let listen = Reaper(
        listen
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "listen never bound"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _client = as_nobody(CLIENT, &[path.to_str().unwrap()]);
    let mut listen = listen;
    let mut got = String::new();
    BufReader::new(listen.0.stdout.take().unwrap())
        .read_line(&mut got)
        .unwrap();
    assert_eq!(got, "from nobody\n");
}

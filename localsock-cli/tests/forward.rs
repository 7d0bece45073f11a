//! `localsock forward` driven with programs we did not write (curl, Python's http.server on a
//! Unix socket), 100 concurrent checksummed clients, the faults (TO absent, either side killed
//! mid-stream, out of descriptors), and socket activation with `systemd-socket-activate`.
//!
//! Needs curl, python3 and systemd-socket-activate (Debian: curl, python3, systemd); .ci/run
//! installs them.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{fd_count, Proc};
use localsock::{ConnectOptions, LocalStream, Name};

const BOUND: Duration = Duration::from_secs(30);

fn localsock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_localsock"))
}

/// Starts `localsock forward FROM TO ARGS` and returns it with the address it listens on (the
/// first line names it: `forwarding FROM -> TO (...)`).
fn forward(from: &str, to: &str, args: &[&str]) -> (Proc, String) {
    let proc = Proc::spawn(localsock().arg("forward").args(args).args([from, to]));
    let first = proc.line_with("forwarding ");
    let listening = first
        .strip_prefix("forwarding ")
        .and_then(|rest| rest.split(" -> ").next())
        .unwrap()
        .to_owned();
    (proc, listening)
}

fn tcp_port(listening: &str) -> u16 {
    listening.rsplit(':').next().unwrap().parse().unwrap()
}

/// `localsock echo PATH`, waited for.
fn echo_server(path: &Path) -> Proc {
    let proc = Proc::spawn(localsock().args(["echo", s(path)]));
    proc.line_with("listening on");
    proc
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Python's http.server serving `root` on a Unix socket at `path`.
fn python_http_on_unix_socket(path: &Path, root: &Path) -> Proc {
    let script = r#"
import http.server, socketserver, sys, os
class Handler(http.server.SimpleHTTPRequestHandler):
    def address_string(self):
        return "unix-client"
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
os.chdir(sys.argv[2])
with Server(sys.argv[1], Handler) as server:
    print("ready", flush=True)
    server.serve_forever()
"#;
    let proc = Proc::spawn(
        Command::new("python3")
            .args(["-c", script])
            .arg(path)
            .arg(root),
    );
    proc.line_with("ready");
    proc
}

/// Python's http.server on 127.0.0.1 at a free port; returns it and the port.
fn python_http_on_tcp(root: &Path) -> (Proc, u16) {
    let script = r#"
import http.server, socketserver, sys, os
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
os.chdir(sys.argv[1])
with Server(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler) as server:
    print("port", server.server_address[1], flush=True)
    server.serve_forever()
"#;
    let proc = Proc::spawn(Command::new("python3").args(["-c", script]).arg(root));
    let line = proc.line_with("port ");
    let port = line.trim_start_matches("port ").trim().parse().unwrap();
    (proc, port)
}

fn site() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    // Larger than any socket buffer, so the copy really streams.
    let body = pattern(7, 3 << 20);
    std::fs::write(dir.path().join("big.bin"), &body).unwrap();
    (dir, body)
}

fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl (Debian package curl)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    // xorshift: every client's bytes differ, so a mix-up cannot go unnoticed.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a: the checksum the clients compare.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Polls `condition` every 10 ms until it holds, failing after the bound.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < BOUND, "{what}: not within {BOUND:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn curl_through_tcp_to_a_python_http_server_on_a_unix_socket() {
    let (root, body) = site();
    let dir = tempfile::tempdir().unwrap();
    let http = dir.path().join("http.sock");
    let _server = python_http_on_unix_socket(&http, root.path());
    let (fw, listening) = forward("tcp:127.0.0.1:0", s(&http), &[]);
    let url = format!("http://127.0.0.1:{}/big.bin", tcp_port(&listening));
    let got = curl(&[&url]);
    assert!(got == body, "curl got {} bytes, not the file", got.len());
    // One line for the connection: the TCP peer's address, bytes each way, how it ended.
    let line = fw.line_with("#1 127.0.0.1:");
    assert!(line.contains(&format!("-> {}", s(&http))), "{line}");
    assert!(line.contains("server sent 3.0 MiB"), "{line}");
    assert!(line.contains("ended: both sides closed"), "{line}");
}

#[test]
fn curl_unix_socket_through_forward_to_a_python_http_server_on_tcp() {
    let (root, body) = site();
    let (_server, port) = python_http_on_tcp(root.path());
    let dir = tempfile::tempdir().unwrap();
    let front = dir.path().join("front.sock");
    let (fw, _) = forward(s(&front), &format!("tcp:127.0.0.1:{port}"), &[]);
    let got = curl(&["--unix-socket", s(&front), "http://localhost/big.bin"]);
    assert!(got == body, "curl got {} bytes, not the file", got.len());
    // The local peer is named by pid and uid: curl's.
    let line = fw.line_with("#1 pid ");
    assert!(line.contains(", uid "), "{line}");
    assert!(line.contains(&format!("-> tcp:127.0.0.1:{port}")), "{line}");
}

/// 100 TCP clients at once, 1 MiB each, through `forward` to `localsock echo`: every client
/// gets exactly its own bytes back (checksummed), with half-close passed through (each client
/// shuts down its sending side and reads the echo to EOF).
#[test]
fn a_hundred_concurrent_clients_get_their_own_mebibyte_back() {
    const CLIENTS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let echo = dir.path().join("echo.sock");
    let echo_proc = echo_server(&echo);
    let (fw, listening) = forward(
        "tcp:127.0.0.1:0",
        s(&echo),
        &["--max-clients", "128", "--idle-timeout", "60s"],
    );
    let port = tcp_port(&listening);
    let fds_before = fd_count(fw.pid());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            thread::spawn(move || {
                let data = pattern(i as u64 + 1, 1 << 20);
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_read_timeout(Some(BOUND)).unwrap();
                let mut writer = stream.try_clone().unwrap();
                let sent = data.clone();
                let sender = thread::spawn(move || {
                    writer.write_all(&sent).unwrap();
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let mut back = Vec::with_capacity(data.len());
                stream.read_to_end(&mut back).unwrap();
                sender.join().unwrap();
                (checksum(&data), checksum(&back), back.len())
            })
        })
        .collect();
    for (i, client) in clients.into_iter().enumerate() {
        let (sent, got, len) = client.join().unwrap();
        assert_eq!(len, 1 << 20, "client {i} got {len} bytes");
        assert_eq!(sent, got, "client {i} got other bytes back");
    }
    let mut ended = 0;
    while ended < CLIENTS {
        let line = fw.line_with(" -> ");
        assert!(
            line.contains("client sent 1.0 MiB, server sent 1.0 MiB"),
            "{line}"
        );
        assert!(line.contains("ended: both sides closed"), "{line}");
        ended += 1;
    }
    wait_until("forward closed every connection", || {
        fd_count(fw.pid()) == fds_before
    });
    drop(echo_proc);
}

/// TO absent: the client is closed with a one-line reason and the forwarder keeps serving;
/// with --wait, a client that arrives first is served once TO appears.
#[test]
fn an_absent_target_closes_that_client_and_forward_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let echo = dir.path().join("later.sock");
    let (fw, listening) = forward("tcp:127.0.0.1:0", s(&echo), &[]);
    let port = tcp_port(&listening);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = Vec::new();
    client.read_to_end(&mut buf).unwrap();
    assert!(buf.is_empty(), "closed without data");
    let line = fw.line_with("#1 ");
    assert!(line.contains("not forwarded: connect to"), "{line}");
    assert!(line.contains("does not exist"), "{line}");

    // A regular file is not called a stale socket.
    std::fs::write(&echo, b"not a socket").unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    client.read_to_end(&mut buf).unwrap();
    let line = fw.line_with("#2 ");
    assert!(line.contains("not a socket (a regular file"), "{line}");
    std::fs::remove_file(&echo).unwrap();

    let _echo = echo_server(&echo);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    client.write_all(b"still serving").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"still serving");
}

#[test]
fn wait_holds_the_client_until_the_target_appears_and_timeout_bounds_it() {
    let dir = tempfile::tempdir().unwrap();
    let echo = dir.path().join("late.sock");
    let (fw, listening) = forward("tcp:127.0.0.1:0", s(&echo), &["--wait", "--timeout", "20s"]);
    let port = tcp_port(&listening);
    let fds_idle = fd_count(fw.pid());
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    client.write_all(b"early").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    // Once the forwarder holds the client (and waits for TO), start TO.
    wait_until("forward accepted the client", || {
        fd_count(fw.pid()) > fds_idle
    });
    let _echo = echo_server(&echo);
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"early");
    drop(fw);

    let absent = dir.path().join("never.sock");
    let (fw, listening) = forward(
        "tcp:127.0.0.1:0",
        s(&absent),
        &["--wait", "--timeout", "300ms"],
    );
    let start = Instant::now();
    let mut client = TcpStream::connect(("127.0.0.1", tcp_port(&listening))).unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = Vec::new();
    client.read_to_end(&mut buf).unwrap();
    assert!(start.elapsed() < BOUND);
    let line = fw.line_with("#1 ");
    assert!(line.contains("not forwarded"), "{line}");
    assert!(line.contains("timed out"), "{line}");
}

/// A client killed mid-stream: TO reads EOF (the server closes its side), forward leaks no
/// descriptor and keeps serving. TO killed mid-stream: the client reads EOF, no hang.
#[test]
fn either_side_killed_mid_stream_ends_the_other_without_leaks() {
    let dir = tempfile::tempdir().unwrap();
    // TO: a `localsock listen` whose stdout we watch; it ends when its peer closes.
    let to = dir.path().join("to.sock");
    let listen = Proc::spawn(localsock().args(["listen", s(&to)]));
    // The file appears at bind, a moment before listen: `--wait` covers that gap.
    wait_until("listen has bound", || to.exists());
    let (fw, listening) = forward("tcp:127.0.0.1:0", s(&to), &["--wait"]);
    let port = tcp_port(&listening);
    let fds_before = fd_count(fw.pid());

    // The client is a separate process (python), killed with SIGKILL mid-stream.
    let script = format!(
        "import socket, time\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         s.sendall(b'partial line\\n')\n\
         print('sent', flush=True)\n\
         time.sleep(300)\n"
    );
    let mut client = Proc::spawn(Command::new("python3").args(["-c", &script]));
    client.line_with("sent");
    listen.line_with("partial line");
    client.child.kill().unwrap();
    client.child.wait().unwrap();
    // `listen` sees EOF and exits; forward logs the connection.
    let line = fw.line_with("#1 ");
    assert!(line.contains("client sent 13 B"), "{line}");
    let mut listen = listen;
    wait_until("listen exited after its peer's EOF", || {
        listen.child.try_wait().unwrap().is_some()
    });
    wait_until("forward released the connection's descriptors", || {
        fd_count(fw.pid()) == fds_before
    });

    // TO killed mid-stream: an echo server killed after it answered once.
    let to2 = dir.path().join("to2.sock");
    let (fw2, listening2) = forward("tcp:127.0.0.1:0", s(&to2), &[]);
    let fds_before = fd_count(fw2.pid());
    let mut server = echo_server(&to2);
    let mut client = TcpStream::connect(("127.0.0.1", tcp_port(&listening2))).unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    client.write_all(b"hello\n").unwrap();
    let mut hello = [0u8; 6];
    client.read_exact(&mut hello).unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // The client reads EOF (or a reset), not a hang.
    let mut buf = Vec::new();
    match client.read_to_end(&mut buf) {
        Ok(_) => assert!(buf.is_empty()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    // The server's EOF was passed on as a half-close; the connection ends when the client
    // closes too.
    drop(client);
    let line = fw2.line_with("#1 ");
    assert!(line.contains("client sent 6 B, server sent 6 B"), "{line}");
    wait_until("forward released the connection's descriptors", || {
        fd_count(fw2.pid()) == fds_before
    });
}

/// `--max-clients`: further clients wait in the backlog (connected, not served) until one
/// leaves, as with `echo`.
#[test]
fn forward_max_clients_holds_further_clients_in_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let echo = dir.path().join("echo.sock");
    let _echo = echo_server(&echo);
    let front = dir.path().join("front.sock");
    let (fw, _) = forward(s(&front), s(&echo), &["--max-clients", "2"]);
    let name = Name::path(&front).unwrap();
    let connect = || {
        let stream = ConnectOptions::new().timeout(BOUND).connect(&name).unwrap();
        stream.set_read_timeout(Some(BOUND)).unwrap();
        stream
    };
    let mut byte = [0u8; 1];
    let mut served: Vec<LocalStream> = (0..2).map(|_| connect()).collect();
    for client in &mut served {
        client.write_all(b"a").unwrap();
        client.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"a");
    }
    let mut third = connect();
    third.write_all(b"c").unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let e = third.read_exact(&mut byte).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "the third client was served while two held both slots: {e}"
    );
    drop(served.pop());
    fw.line_with("#");
    third.set_read_timeout(Some(BOUND)).unwrap();
    third.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"c", "served once a slot was free");
}

/// Out of descriptors: forward says so, pauses instead of spinning or exiting, and serves
/// again once clients leave.
#[test]
fn forward_pauses_when_out_of_descriptors_and_recovers() {
    use rustix::process::{getrlimit, prlimit, Pid, Resource, Rlimit};
    let dir = tempfile::tempdir().unwrap();
    let echo = dir.path().join("echo.sock");
    let _echo = echo_server(&echo);
    let front = dir.path().join("front.sock");
    let (fw, _) = forward(s(&front), s(&echo), &[]);
    let open = fd_count(fw.pid()) as u64;
    let hard = getrlimit(Resource::Nofile).maximum;
    prlimit(
        Some(Pid::from_child(&fw.child)),
        Resource::Nofile,
        Rlimit {
            current: Some(open + 6),
            maximum: hard,
        },
    )
    .unwrap();
    let name = Name::path(&front).unwrap();
    // Each served client costs two descriptors (client and TO): a few fit, the rest queue.
    let flood: Vec<LocalStream> = (0..50)
        .map(|_| LocalStream::connect(&name).expect("queued in the backlog"))
        .collect();
    let line = fw.line_with("pausing before accepting again");
    assert!(line.contains(s(&front)), "{line}");
    drop(flood);
    // Every flooding client is taken from the backlog and logged (forwarded, or closed for
    // lack of a descriptor) well within the bound: clients that found no descriptor for TO
    // do not hold all of them until their timeouts.
    fw.connections_logged(50);
    let mut c = ConnectOptions::new().timeout(BOUND).connect(&name).unwrap();
    c.set_read_timeout(Some(BOUND)).unwrap();
    c.write_all(b"after").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    if back != b"after" {
        let mut log = Vec::new();
        while let Ok(line) = fw.lines.try_recv() {
            log.push(line);
        }
        panic!("not served again once descriptors were free; forward said: {log:#?}");
    }
    assert!(
        fw.child.id() > 0 && fd_count(fw.pid()) > 0,
        "forward is still running"
    );
}

/// The same over TCP: an `accept` that fails for lack of descriptors pauses forward (it used
/// to lose the OS code in its message and exit).
#[test]
fn forward_on_tcp_pauses_when_out_of_descriptors_and_recovers() {
    use rustix::process::{getrlimit, prlimit, Pid, Resource, Rlimit};
    let dir = tempfile::tempdir().unwrap();
    let echo = dir.path().join("echo.sock");
    let _echo = echo_server(&echo);
    let (fw, listening) = forward("tcp:127.0.0.1:0", s(&echo), &[]);
    let port = tcp_port(&listening);
    let open = fd_count(fw.pid()) as u64;
    let hard = getrlimit(Resource::Nofile).maximum;
    prlimit(
        Some(Pid::from_child(&fw.child)),
        Resource::Nofile,
        Rlimit {
            current: Some(open + 6),
            maximum: hard,
        },
    )
    .unwrap();
    // (A forward that exited refuses the rest: the line below is then missing.)
    let flood: Vec<TcpStream> = (0..50)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    let line = fw.line_with("pausing before accepting again");
    assert!(line.contains(&listening["tcp:".len()..]), "{line}");
    let flooded = flood.len();
    drop(flood);
    fw.connections_logged(flooded);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(BOUND)).unwrap();
    c.write_all(b"after").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(
        back, b"after",
        "not served again once descriptors were free"
    );
}

#[test]
fn listening_on_a_non_loopback_address_needs_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("x.sock");
    let out = localsock()
        .env("NO_COLOR", "1")
        .args(["forward", "tcp:0.0.0.0:0", s(&to)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("--allow-remote"), "{err}");
    // With the flag it listens.
    let (_fw, listening) = forward("tcp:0.0.0.0:0", s(&to), &["--allow-remote"]);
    assert!(listening.starts_with("tcp:0.0.0.0:"), "{listening}");
}

/// Idle and write timeouts close stuck connections with a line that says which.
#[test]
fn idle_and_write_timeouts_end_stuck_connections() {
    let dir = tempfile::tempdir().unwrap();
    let echo = dir.path().join("echo.sock");
    let _echo = echo_server(&echo);
    let (fw, listening) = forward(
        "tcp:127.0.0.1:0",
        s(&echo),
        &["--idle-timeout", "300ms", "--write-timeout", "300ms"],
    );
    let port = tcp_port(&listening);
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = Vec::new();
    idle.read_to_end(&mut buf).unwrap();
    let line = fw.line_with("#1 ");
    assert!(line.contains("idle for 300ms (--idle-timeout)"), "{line}");

    // A client that sends and never reads: the echo comes back until its buffers are full,
    // then forward's write to it stalls.
    let mut greedy = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let sender = thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        while greedy.write_all(&chunk).is_ok() {
            sent += chunk.len();
            assert!(
                sent < 1 << 30,
                "forward never gave up on a client that does not read"
            );
        }
        sent
    });
    let line = fw.line_with("#2 ");
    // Which side stalls first is a race: the client does not read, so forward's writes to
    // it stall; the echo server then stops reading while it cannot write, so forward's
    // writes to it stall too.
    assert!(
        line.contains("did not read for 300ms (--write-timeout)"),
        "{line}"
    );
    sender.join().unwrap();
}

// ---- socket activation ----

fn socket_activate(socket: &Path, command: &[&str]) -> Proc {
    let bin = env!("CARGO_BIN_EXE_localsock");
    Proc::spawn(
        Command::new("systemd-socket-activate")
            .arg("-l")
            .arg(socket)
            .arg(bin)
            .args(command),
    )
}

fn connect_wait(path: &Path) -> LocalStream {
    let s = ConnectOptions::new()
        .timeout(BOUND)
        .wait_for_server(true)
        .connect(&Name::path(path).unwrap())
        .unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    s
}

/// `systemd-socket-activate -l PATH localsock echo PATH`: echo serves the inherited socket
/// (before the fix it tried to bind PATH itself and failed with "the name is in use").
#[test]
fn echo_serves_the_socket_systemd_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activated.sock");
    let activator = socket_activate(&path, &["echo", s(&path)]);
    activator.line_with("Listening on");
    let mut c = connect_wait(&path);
    c.write_all(b"activated").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let first = activator.line_with("listening on");
    assert!(
        first.contains("socket activation: descriptor 3 from the service manager"),
        "{first}"
    );
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"activated");
}

#[test]
fn listen_and_forward_serve_the_socket_systemd_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listen.sock");
    let activator = socket_activate(&path, &["listen", s(&path)]);
    activator.line_with("Listening on");
    let mut c = connect_wait(&path);
    c.write_all(b"to listen\n").unwrap();
    let first = activator.line_with("listening on");
    assert!(first.contains("socket activation: descriptor 3"), "{first}");
    activator.line_with("to listen");
    drop(c);

    let echo = dir.path().join("echo.sock");
    let _echo = echo_server(&echo);
    let front = dir.path().join("front.sock");
    let activator = socket_activate(&front, &["forward", s(&front), s(&echo)]);
    activator.line_with("Listening on");
    let mut c = connect_wait(&front);
    let first = activator.line_with("forwarding ");
    assert!(first.contains("socket activation: descriptor 3"), "{first}");
    c.write_all(b"forwarded").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"forwarded");
}

/// A TCP socket passed to `echo` (which serves local sockets) is refused, saying what it is.
#[test]
fn an_inherited_socket_of_the_wrong_kind_is_refused_with_what_it_is() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap().to_string();
    drop(probe);
    let bin = env!("CARGO_BIN_EXE_localsock");
    let activator = Proc::spawn(Command::new("systemd-socket-activate").args([
        "-l",
        &addr,
        bin,
        "echo",
        "/nonexistent/x.sock",
    ]));
    activator.line_with("Listening on");
    // systemd-socket-activate starts the program at the first connection.
    let _c = TcpStream::connect(&addr).unwrap();
    let line = activator.line_with("localsock: error:");
    assert!(line.contains("socket activation"), "{line}");
    assert!(line.contains("an IPv4 (AF_INET) socket"), "{line}");
    assert!(
        line.contains("not a listening AF_UNIX stream socket"),
        "{line}"
    );
}

/// Several sockets: the argument picks one by its `LISTEN_FDNAMES` name; an argument that
/// names none of them is an error that lists the names.
#[test]
fn the_argument_picks_one_of_several_sockets_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.sock");
    let b = dir.path().join("b.sock");
    let bin = env!("CARGO_BIN_EXE_localsock");
    let activate = |arg: &str| {
        Proc::spawn(
            Command::new("systemd-socket-activate")
                .arg("-l")
                .arg(&a)
                .arg("-l")
                .arg(&b)
                .arg("--fdname=first:second")
                .args([bin, "echo", arg]),
        )
    };
    let activator = activate("second");
    activator.line_with("Listening on");
    let mut c = connect_wait(&b);
    let first = activator.line_with("listening on");
    assert!(
        first.contains(&format!("listening on {}", s(&b))),
        "{first}"
    );
    assert!(first.contains("descriptor 4 \"second\""), "{first}");
    c.write_all(b"b").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"b");
    drop(activator);

    let activator = activate("third");
    activator.line_with("Listening on");
    let _c = connect_wait(&a);
    let line = activator.line_with("localsock: error:");
    assert!(
        line.contains("passed 2 sockets (named first, second)"),
        "{line}"
    );
}

/// `forward tcp:...` takes an inherited TCP listener too (checked to be a listening TCP
/// socket).
#[test]
fn forward_serves_an_inherited_tcp_socket() {
    let dir = tempfile::tempdir().unwrap();
    let echo = dir.path().join("echo.sock");
    let _echo = echo_server(&echo);
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap().to_string();
    drop(probe);
    let bin = env!("CARGO_BIN_EXE_localsock");
    let from = format!("tcp:{addr}");
    let activator = Proc::spawn(Command::new("systemd-socket-activate").args([
        "-l",
        &addr,
        bin,
        "forward",
        &from,
        s(&echo),
    ]));
    activator.line_with("Listening on");
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(BOUND)).unwrap();
    c.write_all(b"over inherited tcp").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let first = activator.line_with("forwarding ");
    assert!(
        first.contains(&format!("forwarding tcp:{addr} -> ")),
        "{first}"
    );
    assert!(first.contains("socket activation: descriptor 3"), "{first}");
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"over inherited tcp");
}

/// An inherited TCP socket on every interface (systemd's `ListenStream=PORT`) exposes TO to
/// the network just as `forward tcp:0.0.0.0:PORT` would: refused without --allow-remote,
/// whatever FROM says.
#[test]
fn an_inherited_tcp_socket_that_is_not_loopback_needs_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let echo = dir.path().join("echo.sock");
    let _echo = echo_server(&echo);
    let probe = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let bin = env!("CARGO_BIN_EXE_localsock");
    let activate = |extra: &[&str]| {
        Proc::spawn(
            Command::new("systemd-socket-activate")
                .arg("-l")
                .arg(format!("0.0.0.0:{port}"))
                .args([bin, "forward"])
                .args(extra)
                .arg(format!("tcp:127.0.0.1:{port}"))
                .arg(s(&echo)),
        )
    };
    let activator = activate(&[]);
    activator.line_with("Listening on");
    // systemd-socket-activate starts the program at the first connection.
    let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let line = activator.line_with("localsock: error:");
    assert!(line.contains("not a loopback address"), "{line}");
    assert!(line.contains("--allow-remote"), "{line}");
    drop(activator);

    let activator = activate(&["--allow-remote"]);
    activator.line_with("Listening on");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(BOUND)).unwrap();
    c.write_all(b"allowed").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"allowed");
}

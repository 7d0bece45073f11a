//! `localsock forward` on Windows (run under Wine by ci/windows.sh): a named pipe to TCP and
//! TCP to a named pipe, with `localsock echo` on a pipe and a std TCP echo server.
#![cfg(windows)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::Proc;
use localsock::{ConnectOptions, Name};

const BOUND: Duration = Duration::from_secs(60);

/// `localsock ARGS`, its output lines waited for within [`BOUND`].
fn localsock(args: &[&str]) -> Proc {
    Proc::spawn(Command::new(env!("CARGO_BIN_EXE_localsock")).args(args)).with_bound(BOUND)
}

fn unique(tag: &str) -> String {
    format!(r"\\.\pipe\localsock-fwd-{}-{tag}", std::process::id())
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 * 31 + u32::from(seed) * 7) as u8)
        .collect()
}

/// TCP client -> forward -> `localsock echo` on a pipe. Pipes have no half-close, so the
/// client reads its echo by length, then closes.
#[test]
fn tcp_to_a_named_pipe_echo_server() {
    let pipe = unique("echo");
    let echo = localsock(&["echo", &pipe]);
    echo.line_with("listening on");
    let fw = localsock(&["forward", "tcp:127.0.0.1:0", &pipe]);
    let first = fw.line_with("forwarding ");
    let port: u16 = first
        .split(" -> ")
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for round in 0..3u8 {
        let data = pattern(round, 300_000);
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.set_read_timeout(Some(BOUND)).unwrap();
        let mut writer = client.try_clone().unwrap();
        let sent = data.clone();
        let sender = thread::spawn(move || writer.write_all(&sent).unwrap());
        let mut back = vec![0u8; data.len()];
        client.read_exact(&mut back).unwrap();
        sender.join().unwrap();
        assert!(back == data, "round {round}: other bytes came back");
        drop(client);
        let line = fw.line_with(&format!("#{} ", round + 1));
        assert!(
            line.contains("client sent 293.0 KiB, server sent 293.0 KiB"),
            "{line}"
        );
        // A pipe cannot pass the client's EOF on: the quiet pipe server is closed after 0.5 s.
        assert!(line.contains("was then quiet for 500ms"), "{line}");
    }
}

/// Pipe client -> forward -> a TCP echo server (std, in this process).
#[test]
fn a_named_pipe_to_a_tcp_echo_server() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in server.incoming() {
            let Ok(mut stream) = stream else { break };
            thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut stream);
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    let pipe = unique("front");
    let fw = localsock(&["forward", &pipe, &format!("tcp:127.0.0.1:{port}")]);
    fw.line_with("forwarding ");
    let name = Name::new(&pipe).unwrap();
    let data = pattern(9, 200_000);
    let mut client = ConnectOptions::new()
        .timeout(BOUND)
        .wait_for_server(true)
        .connect(&name)
        .unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let sender = thread::spawn(move || writer.write_all(&sent).unwrap());
    let mut back = vec![0u8; data.len()];
    client.read_exact(&mut back).unwrap();
    sender.join().unwrap();
    assert!(back == data, "other bytes came back");
    drop(client);
    let line = fw.line_with("#1 ");
    assert!(
        line.contains("pid "),
        "the pipe client is named by pid: {line}"
    );
    assert!(line.contains(&format!("-> tcp:127.0.0.1:{port}")), "{line}");
}

/// `--access group` needs `--group` on Windows (a pipe has no owner's group); with a group
/// (BUILTIN\Users by SID) `echo` binds and serves, and `--group` without `--access group` is
/// refused.
#[test]
fn access_group_takes_its_group_from_the_group_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_localsock"))
        .args(["echo", "--access", "group", &unique("nogroup")])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--group"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_localsock"))
        .args(["echo", "--group", "S-1-5-32-545", &unique("groupalone")])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--access group"), "{err}");

    let pipe = unique("group");
    let echo = localsock(&[
        "echo",
        "--access",
        "group",
        "--group",
        "S-1-5-32-545",
        &pipe,
    ]);
    echo.line_with("listening on");
    let mut client = ConnectOptions::new()
        .timeout(BOUND)
        .connect(&Name::new(&pipe).unwrap())
        .unwrap();
    client.write_all(b"members").unwrap();
    let mut back = [0u8; 7];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"members");
}

//! Message connections against code we did not write: Python's `socket.send_fds` /
//! `socket.recv_fds` over `AF_UNIX` `SOCK_SEQPACKET`, both ways (Linux). Python is required:
//! these tests fail, not skip, when `python3` is missing.
#![cfg(target_os = "linux")]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use common::watchdog;
use localsock::{MessageListener, MessageStream, Name};

fn python(script: &str, args: &[&str]) -> std::process::Child {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the interop tests")
}

/// Python connects to our listener and sends a message with a file it opened, an empty
/// message, and closes: we get the text and a usable file, the empty message, then EOF.
#[test]
fn python_send_fds_reaches_a_message_listener() {
    let _w = watchdog("python_send_fds_reaches_a_message_listener", 60);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("py-send.sock");
    let data = dir.path().join("from-python.txt");
    std::fs::write(&data, "a file Python opened").unwrap();
    let listener = MessageListener::bind(&Name::path(&sock).unwrap()).unwrap();
    let mut child = python(
        r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
fd = os.open(sys.argv[2], os.O_RDONLY)
socket.send_fds(s, [b"\x00hello from python"], [fd])
s.send(b"\x00")
s.close()
"#,
        &[sock.to_str().unwrap(), data.to_str().unwrap()],
    );
    let stream = listener.accept().unwrap();
    let mut message = stream.recv_message().unwrap().unwrap();
    assert_eq!(message.bytes, b"hello from python");
    assert_eq!(message.handles.len(), 1);
    let mut text = String::new();
    File::from(message.handles.pop().unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "a file Python opened");
    let empty = stream.recv_message().unwrap().unwrap();
    assert!(empty.bytes.is_empty() && empty.handles.is_empty());
    assert!(
        stream.recv_message().unwrap().is_none(),
        "EOF after the empty message"
    );
    assert!(common::wait_bounded(&mut child, 30).success());
}

/// Python listens; we connect and send a file and an empty message: Python's `recv_fds` gets
/// the tag byte and our text, one descriptor it reads, then the one-byte empty message.
#[test]
fn a_message_stream_reaches_python_recv_fds() {
    let _w = watchdog("a_message_stream_reaches_python_recv_fds", 60);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("py-recv.sock");
    let (_d, file) = {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("from-rust.txt");
        std::fs::write(&p, "a file Rust opened").unwrap();
        let f = File::open(&p).unwrap();
        (d, f)
    };
    let mut child = python(
        r#"
import os, socket, sys
l = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
l.bind(sys.argv[1])
l.listen(1)
print("ready", flush=True)
s, _ = l.accept()
data, fds, flags, _ = socket.recv_fds(s, 65537, 253)
print(repr(data), len(fds), flags, flush=True)
print(os.read(fds[0], 100).decode(), flush=True)
data, fds, flags, _ = socket.recv_fds(s, 65537, 253)
print(repr(data), len(fds), flush=True)
print(repr(s.recv(10)), flush=True)
"#,
        &[sock.to_str().unwrap()],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let stream = MessageStream::connect(&Name::path(&sock).unwrap()).unwrap();
    stream
        .send_with_files(b"hello from rust", &[&file])
        .unwrap();
    stream.send(b"").unwrap();
    drop(stream);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(common::wait_bounded(&mut child, 30).success(), "{rest}");
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(
        lines,
        [
            r"b'\x00hello from rust' 1 0",
            "a file Rust opened",
            r"b'\x00' 0",
            "b''"
        ]
    );
}

//! The examples run as real processes: `recv_file NAME` and `send_file NAME FILE` (issue 13)
//! pass a file between two processes, the receiver reading it through the handle it got.
//!
//! The example binaries are the ones `cargo test` builds next to the test binaries
//! (`target/<profile>/examples`); with `cargo test --test examples` alone they are not built,
//! so build them first (`cargo build --examples`, same profile and target), or the test fails
//! saying so.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{unique_str, wait_bounded, watchdog};

/// The path of the example binary `name`, built by `cargo test` beside this test binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps")
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "example binary {} is missing: `cargo test` builds it; after `cargo test --test \
         examples` alone, run `cargo build --examples` (same profile and target) first",
        path.display()
    );
    path
}

#[test]
fn send_file_to_recv_file_passes_the_file_through_its_handle() {
    let _guard = watchdog("send_file_to_recv_file", 120);
    let (recv, send) = (example("recv_file"), example("send_file"));
    let name = unique_str("exfile");
    // Bytes no text conversion would keep, and more than one pipe buffer.
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    // The sender names the file relative to its own working directory: the receiver, started
    // elsewhere, could not open that path itself, only read the handle it was given.
    let sender_dir = tempfile::tempdir().unwrap();
    let receiver_dir = tempfile::tempdir().unwrap();
    std::fs::write(sender_dir.path().join("data.bin"), &content).unwrap();

    let mut receiver = Command::new(&recv)
        .arg(&name)
        .current_dir(receiver_dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recv_file");
    // Drain both pipes while the receiver runs, so it never blocks on a full one.
    let mut out = receiver.stdout.take().unwrap();
    let mut err = receiver.stderr.take().unwrap();
    let stdout = thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).map(|_| v)
    });
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });

    // The receiver prints nothing when it is ready: the sender is retried until its connect
    // finds the listener (a failed attempt exits non-zero having sent nothing), bounded.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempts = 0;
    let sender_stderr = loop {
        attempts += 1;
        let sent = Command::new(&send)
            .args([name.as_str(), "data.bin"])
            .current_dir(sender_dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run send_file");
        let text = String::from_utf8_lossy(&sent.stderr).into_owned();
        if sent.status.success() {
            break text;
        }
        if let Some(status) = receiver.try_wait().unwrap() {
            panic!(
                "recv_file exited ({status}) before send_file got through; send_file said: {text}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "send_file never reached recv_file in {attempts} attempts; last: {text}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        sender_stderr.contains("sent data.bin to"),
        "send_file stderr: {sender_stderr:?}"
    );

    let status = wait_bounded(&mut receiver, 60);
    let received = stdout.join().unwrap().unwrap();
    let receiver_stderr = stderr.join().unwrap().unwrap();
    assert!(
        status.success(),
        "recv_file: {status}; stderr: {receiver_stderr}"
    );
    assert_eq!(
        receiver_stderr.trim_end(),
        "received data.bin",
        "recv_file prints the message's text on stderr"
    );
    assert_eq!(received.len(), content.len(), "bytes on recv_file's stdout");
    assert!(
        received == content,
        "recv_file's stdout differs from the file"
    );
}

#[test]
fn examples_refuse_missing_arguments_with_usage() {
    let _guard = watchdog("examples_usage", 60);
    for (exe, usage) in [
        (example("recv_file"), "usage: recv_file NAME"),
        (example("send_file"), "usage: send_file NAME FILE"),
    ] {
        let out = Command::new(&exe).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", exe.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains(usage));
    }
}

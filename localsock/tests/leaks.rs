//! Rapid connect/disconnect releases every descriptor: 20,000 connect/echo/close cycles leave
//! both sides' fd counts where they started. One test per binary, so no other test opens
//! descriptors in this process while it counts.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::thread;

use common::{child, fd_count, is_child, read_line, unique_str, wait_bounded, watchdog};
use localsock::{LocalListener, LocalStream, Name};

const CYCLES: usize = 20_000;

#[test]
fn twenty_thousand_cycles_leave_fd_counts_at_baseline() {
    let _w = watchdog("twenty_thousand_cycles_leave_fd_counts_at_baseline", 240);
    let me = std::process::id();

    // Server in another process: its fd count is read from /proc/PID/fd.
    let name_str = unique_str("leak");
    let mut server = child("child_echo_server", &[("LOCALSOCK_TEST_NAME", &name_str)])
        .spawn()
        .unwrap();
    assert_eq!(read_line(&mut server), "listening");
    let name = Name::new(&name_str).unwrap();
    // One warm-up cycle so lazily opened things (none expected) are counted in the baseline.
    cycle(&name);
    thread::sleep(std::time::Duration::from_millis(50));
    let client_before = fd_count(me);
    let server_before = fd_count(server.id());
    for _ in 0..CYCLES {
        cycle(&name);
    }
    // The server closes its side after the echo; give its last close a moment.
    let mut server_after = fd_count(server.id());
    for _ in 0..100 {
        if server_after <= server_before {
            break;
        }
        thread::sleep(std::time::Duration::from_millis(10));
        server_after = fd_count(server.id());
    }
    let client_after = fd_count(me);
    println!(
        "fds after {CYCLES} cycles: client {client_before} -> {client_after}, server {server_before} -> {server_after}"
    );
    server.kill().unwrap();
    wait_bounded(&mut server, 10);
    assert_eq!(client_after, client_before, "client leaked descriptors");
    assert_eq!(server_after, server_before, "server leaked descriptors");
}

fn cycle(name: &Name) {
    let mut s = LocalStream::connect(name).unwrap();
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
}

#[test]
#[ignore = "child process entry point"]
fn child_echo_server() {
    if !is_child("child_echo_server") {
        return;
    }
    let name = Name::new(std::env::var("LOCALSOCK_TEST_NAME").unwrap()).unwrap();
    let listener = LocalListener::bind(&name).unwrap();
    println!("CHILD listening");
    loop {
        let Ok(mut s) = listener.accept() else {
            continue;
        };
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).is_ok() {
            let _ = s.write_all(&b);
        }
    }
}

//! `require_same_user` inside a user namespace (issue 16): users the namespace does not map all
//! show as the overflow uid (65534), so a server running as that uid must not take them for
//! itself.
//!
//! Needs user namespaces (`unshare(CLONE_NEWUSER)`; root, or unprivileged user namespaces
//! enabled); run with
//! `cargo test -p localsock --all-features --test user_namespace -- --ignored`.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::{child, is_child, read_line, unique_str, wait_bounded, watchdog};
use localsock::{ConnectOptions, ListenerOptions, Name};

/// A server in a new user namespace that maps no uid (so it runs as the overflow uid, and so
/// does every peer it sees) binds an abstract name with `require_same_user(true)`. A client of
/// another user (this test process, outside) connects: the server must drop it, although the
/// kernel shows it the client's uid as 65534, equal to its own. The old comparison of uids
/// admitted it.
#[test]
#[ignore = "needs user namespaces (unshare -U) — run with: cargo test -p localsock --all-features --test user_namespace -- --ignored"]
fn require_same_user_refuses_the_overflow_uid_in_a_user_namespace() {
    let _w = watchdog(
        "require_same_user_refuses_the_overflow_uid_in_a_user_namespace",
        60,
    );
    let raw = unique_str("userns");
    let mut cmd = child("child_userns_server", &[("LOCALSOCK_TEST_ABSTRACT", &raw)]);
    cmd.stdin(std::process::Stdio::piped());
    // SAFETY: between fork and exec the closure only makes one async-signal-safe syscall.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = cmd
        .spawn()
        .expect("a child in a new user namespace (are user namespaces allowed here?)");
    let overflow: u32 = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        read_line(&mut server),
        format!("listening as uid {overflow}"),
        "the server runs unmapped, as the overflow uid"
    );

    let name = Name::abstract_name(&raw).unwrap();
    let _client = ConnectOptions::new()
        .timeout(Duration::from_secs(10))
        .connect(&name)
        .expect("the kernel takes the connection into the backlog");
    server.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let verdict = read_line(&mut server);
    assert!(wait_bounded(&mut server, 20).success());
    assert_eq!(verdict, "nobody admitted");
}

/// The server of the test above: listens on `LOCALSOCK_TEST_ABSTRACT` with
/// `require_same_user(true)`, says its uid; after a line on stdin accepts what is queued
/// (non-blocking) and says whom it admitted.
#[test]
#[ignore = "child process entry point"]
fn child_userns_server() {
    if !is_child("child_userns_server") {
        return;
    }
    let name = Name::abstract_name(std::env::var("LOCALSOCK_TEST_ABSTRACT").unwrap()).unwrap();
    let listener = ListenerOptions::new()
        .require_same_user(true)
        .bind(&name)
        .unwrap();
    println!(
        "CHILD listening as uid {}",
        rustix::process::geteuid().as_raw()
    );
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Ok(s) => println!(
            "CHILD admitted uid {:?}",
            s.peer_credentials().unwrap().uid()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            println!("CHILD nobody admitted")
        }
        Err(e) => println!("CHILD accept error {e}"),
    }
}

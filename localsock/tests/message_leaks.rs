//! Every descriptor that arrives with a message is handed out or closed: a hostile peer's flood
//! of refused descriptors, and 10,000 messages with one descriptor each, leave both processes'
//! fd counts at their baselines. One test per binary, so nothing else opens descriptors in this
//! process while it counts (Linux: /proc/PID/fd). On Windows: 10,000 messages with a handle
//! each, both processes' handle counts flat.

mod common;

#[cfg(windows)]
mod windows {
    use super::common::{
        assert_handle_measure_sees_leaks, child, handle_measure, is_child, read_line, unique_str,
        wait_bounded, watchdog,
    };
    use localsock::{MessageListener, MessageStream, Name};
    use std::fs::File;

    const ONE_EACH: usize = 10_000;

    #[test]
    fn ten_thousand_messages_with_a_handle_each_keep_handle_counts_flat() {
        let _w = watchdog("ten_thousand_messages_with_a_handle_each", 300);
        assert_handle_measure_sees_leaks();
        let name_str = unique_str("each");
        let name = Name::new(&name_str).unwrap();
        let listener = MessageListener::bind(&name).unwrap();
        let mut receiver = child(
            "windows::child_receives_and_drops",
            &[("LOCALSOCK_TEST_NAME", &name_str)],
        )
        .spawn()
        .unwrap();
        let stream = listener.accept().unwrap();
        let file = File::open(std::env::current_exe().unwrap()).unwrap();
        stream.send_with_files(b"warm-up", &[&file]).unwrap();
        assert_eq!(read_line(&mut receiver), "warm");
        let (ours_before, what) = handle_measure();
        for i in 0..ONE_EACH {
            stream
                .send_with_files(&(i as u32).to_le_bytes(), &[&file])
                .unwrap();
        }
        let line = read_line(&mut receiver);
        let (ours_after, _) = handle_measure();
        println!("{ONE_EACH} messages: {line}; sender's {what}: {ours_before} -> {ours_after}");
        assert!(
            line.starts_with("flat"),
            "the receiving process leaked: {line}"
        );
        assert!(
            ours_after <= ours_before + 8,
            "the sending process leaked: {what} {ours_before} -> {ours_after}"
        );
        drop(stream);
        assert!(wait_bounded(&mut receiver, 60).success());
    }

    #[test]
    #[ignore = "child process entry point"]
    fn child_receives_and_drops() {
        if !is_child("windows::child_receives_and_drops") {
            return;
        }
        assert_handle_measure_sees_leaks();
        let name = Name::new(std::env::var("LOCALSOCK_TEST_NAME").unwrap()).unwrap();
        let stream = MessageStream::connect(&name).unwrap();
        let mut buf = [0u8; 16];
        let mut handles = Vec::new();
        stream
            .recv_with_handles(&mut buf, &mut handles, 1)
            .unwrap()
            .unwrap();
        handles.clear();
        let (before, what) = handle_measure();
        println!("CHILD warm");
        for i in 0..ONE_EACH {
            let len = stream
                .recv_with_handles(&mut buf, &mut handles, 1)
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..len], &(i as u32).to_le_bytes());
            assert_eq!(handles.len(), 1);
            handles.clear();
        }
        let (after, _) = handle_measure();
        let verdict = if after <= before + 8 {
            "flat"
        } else {
            "LEAKED"
        };
        println!("CHILD {verdict}: receiver's {what} {before} -> {after}");
        assert!(stream.recv(&mut buf).unwrap().is_none());
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::common;

    use std::fs::File;
    use std::io::ErrorKind;
    use std::process::{Command, Stdio};
    use std::thread;
    use std::time::Duration;

    use common::{child, fd_count, is_child, read_line, unique_str, wait_bounded, watchdog};
    use localsock::{MessageListener, MessageStream, Name};

    const FLOOD: usize = 1000;
    const FDS_PER_MESSAGE: usize = 250;
    const ONE_EACH: usize = 10_000;

    /// Polls until the count of `pid`'s descriptors is `want` (the peer may still be closing).
    fn settle(pid: u32, want: usize) -> usize {
        let mut now = fd_count(pid);
        for _ in 0..200 {
            if now == want {
                break;
            }
            thread::sleep(Duration::from_millis(10));
            now = fd_count(pid);
        }
        now
    }

    #[test]
    fn refused_and_received_descriptors_leave_fd_counts_at_baseline() {
        let _w = watchdog("refused_and_received_descriptors", 300);
        let me = std::process::id();
        hostile_python_flood(me);
        ten_thousand_messages_with_a_descriptor_each(me);
    }

    /// Python (not our code) sends 1,000 messages with 250 descriptors each to a receiver that
    /// accepts at most 1, then one message longer than the limit and one in a foreign format, both
    /// with 250 descriptors: each is refused with `InvalidData`, and our fd count does not move.
    fn hostile_python_flood(me: u32) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("flood.sock");
        let listener = MessageListener::bind(&Name::path(&sock).unwrap()).unwrap();
        let mut python = Command::new("python3")
            .arg("-c")
            .arg(
                r#"
import errno, os, socket, sys, time
n, per = int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
s.connect(sys.argv[1])
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(per)]
def send(data):
    while True:
        try:
            return socket.send_fds(s, [data], fds)
        except OSError as e:  # ETOOMANYREFS: too many descriptors in flight for this user
            if e.errno != errno.ETOOMANYREFS:
                raise
            time.sleep(0.001)
for i in range(n):
    send(b"\x00flood")
send(b"\x00" + b"L" * 70000)
send(b"\x07foreign")
s.send(b"\x00end")
s.close()
"#,
            )
            .args([
                sock.to_str().unwrap(),
                &FLOOD.to_string(),
                &FDS_PER_MESSAGE.to_string(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 is needed for this test");
        let stream = listener.accept().unwrap();
        let before = fd_count(me);
        let mut buf = [0u8; 128];
        let mut handles = Vec::new();
        let mut refused = 0;
        loop {
            match stream.recv_with_handles(&mut buf, &mut handles, 1) {
                Ok(Some(len)) => {
                    assert_eq!(&buf[..len], b"end");
                    break;
                }
                Ok(None) => panic!("EOF before the last message"),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
                    refused += 1;
                }
            }
        }
        assert!(handles.is_empty());
        assert_eq!(refused, FLOOD + 2);
        let after = fd_count(me);
        println!("flood: {refused} messages refused; fds {before} -> {after}");
        assert_eq!(after, before, "refused descriptors were not all closed");
        assert!(wait_bounded(&mut python, 60).success());
    }

    /// 10,000 messages with one file each to a child process that takes and drops each one:
    /// the child's fd count returns to its baseline, and ours never moved.
    fn ten_thousand_messages_with_a_descriptor_each(me: u32) {
        let name_str = unique_str("each");
        let name = Name::new(&name_str).unwrap();
        let listener = MessageListener::bind(&name).unwrap();
        let mut receiver = child(
            "linux::child_receives_and_drops",
            &[("LOCALSOCK_TEST_NAME", &name_str)],
        )
        .spawn()
        .unwrap();
        let stream = listener.accept().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("each.txt");
        std::fs::write(&path, "x").unwrap();
        let file = File::open(&path).unwrap();
        // Warm-up: one message, so whatever the child opens once is in its baseline.
        stream.send_with_files(b"warm-up", &[&file]).unwrap();
        assert_eq!(read_line(&mut receiver), "warm");
        let child_before = fd_count(receiver.id());
        let ours_before = fd_count(me);
        for i in 0..ONE_EACH {
            stream
                .send_with_files(&(i as u32).to_le_bytes(), &[&file])
                .unwrap();
        }
        assert_eq!(read_line(&mut receiver), "received all");
        let child_after = settle(receiver.id(), child_before);
        let ours_after = fd_count(me);
        println!(
        "{ONE_EACH} messages: child fds {child_before} -> {child_after}, ours {ours_before} -> {ours_after}"
    );
        assert_eq!(child_after, child_before, "the receiving process leaked");
        assert_eq!(ours_after, ours_before, "the sending process leaked");
        drop(stream);
        assert!(wait_bounded(&mut receiver, 30).success());
    }

    #[test]
    #[ignore = "child process entry point"]
    fn child_receives_and_drops() {
        if !is_child("linux::child_receives_and_drops") {
            return;
        }
        let name = Name::new(std::env::var("LOCALSOCK_TEST_NAME").unwrap()).unwrap();
        let stream = MessageStream::connect(&name).unwrap();
        let mut buf = [0u8; 16];
        let mut handles = Vec::new();
        stream
            .recv_with_handles(&mut buf, &mut handles, 1)
            .unwrap()
            .unwrap();
        handles.clear();
        println!("CHILD warm");
        for i in 0..ONE_EACH {
            let len = stream
                .recv_with_handles(&mut buf, &mut handles, 1)
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..len], &(i as u32).to_le_bytes());
            assert_eq!(handles.len(), 1);
            handles.clear();
        }
        println!("CHILD received all");
        assert!(stream.recv(&mut buf).unwrap().is_none());
    }
}

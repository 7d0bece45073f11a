//! Fuzzes the framed message transport (the one `MessageStream` uses on Apple platforms, where
//! `AF_UNIX` has no `SOCK_SEQPACKET`) through a real `SOCK_STREAM` socket pair, on Linux.
//!
//! The input is a script for the sending side: chunks of `[control, length, bytes...]`. The
//! control byte's low 3 bits attach that many descriptors, bit 3 sends the bytes as a valid
//! frame (else raw, unframed: arbitrary headers, lengths, cut frames, descriptors on payload
//! bytes). The sender then closes, and the receiver takes messages until end-of-file or an
//! error it cannot get past, with a buffer size, a handle limit and `check_fit` from the input.
//! Checked on every input:
//! - no panic, no unbounded allocation (run with `-malloc_limit_mb`), no hang;
//! - every message fits its buffer and carries at most the handles allowed;
//! - errors are only `InvalidInput` (short buffer: the message stays queued, and is then taken
//!   with a large buffer), `InvalidData` (the peer broke the rules) or `UnexpectedEof`;
//! - every descriptor that arrived is returned or closed: once all is dropped, this process has
//!   exactly the descriptors it had before the input.
#![no_main]

use std::fs::File;
use std::io::ErrorKind;
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use localsock::__fuzz::{recv_frame, send_frame, send_raw};
use localsock::{MAX_HANDLES, MAX_MESSAGE_LEN};

fn dev_null() -> &'static File {
    static NULL: OnceLock<File> = OnceLock::new();
    NULL.get_or_init(|| File::open("/dev/null").expect("/dev/null"))
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

/// Takes messages until end-of-file (or 10,000 steps), checking each outcome.
fn receive(rx: &UnixStream, setup: u8) {
    let small = usize::from(setup & 0x1f);
    let max_handles = usize::from(setup >> 6) * 3; // 0, 3, 6, 9
    let check_fit = setup & 0x20 != 0;
    let mut buf = vec![0u8; small];
    let mut handles = Vec::new();
    for _ in 0..10_000 {
        match recv_frame(rx.as_fd(), &mut buf, &mut handles, max_handles, check_fit) {
            Ok(None) => break,
            Ok(Some(len)) => {
                assert!(len <= buf.len() && len <= MAX_MESSAGE_LEN);
                assert!(handles.len() <= max_handles.min(MAX_HANDLES));
                handles.clear();
            }
            Err(e) => match e.kind() {
                ErrorKind::InvalidInput => {
                    assert!(check_fit, "a short buffer without check_fit: {e}");
                    assert!(handles.is_empty());
                    buf = vec![0u8; MAX_MESSAGE_LEN];
                }
                ErrorKind::InvalidData | ErrorKind::UnexpectedEof => {
                    assert!(handles.is_empty(), "handles handed out with an error");
                }
                _ => panic!("unexpected error kind: {e:?}"),
            },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, mut script)) = data.split_first() else {
        return;
    };
    let null = dev_null();
    let before = fd_count();
    {
        let (tx, rx) = UnixStream::pair().expect("socketpair");
        let fds: Vec<BorrowedFd<'_>> = vec![null.as_fd(); 7];
        // At most 100 sends, so that everything fits the socket's buffer (about 200 KiB,
        // counting each send's overhead) and the sender never blocks: one thread does both
        // sides.
        let mut sends = 0;
        while let [control, len, rest @ ..] = script {
            if sends == 100 {
                break;
            }
            sends += 1;
            let len = usize::from(*len).min(rest.len());
            let (bytes, next) = rest.split_at(len);
            script = next;
            let attach = &fds[..usize::from(control & 7)];
            if control & 8 != 0 {
                send_frame(tx.as_fd(), bytes, attach).expect("a valid frame is sent");
            } else if !bytes.is_empty() {
                send_raw(tx.as_fd(), bytes, attach).expect("raw bytes are sent");
            }
        }
        tx.shutdown(Shutdown::Write).expect("shutdown");
        receive(&rx, setup);
    }
    assert_eq!(fd_count(), before, "a descriptor leaked");
});

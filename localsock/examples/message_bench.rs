//! Benchmark of `MessageStream` against raw `sendmsg`/`recvmsg` on an `AF_UNIX`
//! `SOCK_SEQPACKET` socket pair (through rustix's thin syscall layer), in the same run,
//! alternating, medians of 11 rounds. Linux and the BSDs (Apple platforms have no seqpacket).
//!
//! ```text
//! cargo run --release --example message_bench            # 11 rounds
//! cargo run --release --example message_bench -- quick   # 5 rounds, smaller counts
//! ```
//!
//! For 64-byte messages, without and with one descriptor attached:
//! - throughput: one thread sends, another receives (and closes the descriptor), messages/s;
//! - latency: ping-pong round trips (each message with its descriptor both ways), µs.
//!
//! Both sides receive into a `MAX_MESSAGE_LEN` buffer, localsock's one-syscall path (a smaller
//! buffer costs a peek first, so that a message that does not fit stays queued).

#[cfg(all(unix, not(target_vendor = "apple")))]
fn main() -> std::io::Result<()> {
    bench::main()
}

#[cfg(not(all(unix, not(target_vendor = "apple"))))]
fn main() {
    eprintln!("message_bench compares with raw SOCK_SEQPACKET: Linux and the BSDs only");
}

#[cfg(all(unix, not(target_vendor = "apple")))]
mod bench {
    use std::io::{self, IoSlice, IoSliceMut};
    use std::mem::MaybeUninit;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::thread;
    use std::time::Instant;

    use localsock::{MessageListener, MessageStream, Name, MAX_MESSAGE_LEN};
    use rustix::net::{
        recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage,
        RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
    };

    const MSG: usize = 64;

    /// One end of a connection under test.
    trait End: Send + Sync {
        fn send(&self, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()>;
        /// Receives one message, closes its descriptor; returns its length.
        fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    }

    impl End for MessageStream {
        fn send(&self, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
            match fd {
                None => MessageStream::send(self, bytes),
                Some(fd) => self.send_with_handles(bytes, &[fd]),
            }
        }
        fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            let mut handles = Vec::new();
            let len = self.recv_with_handles(buf, &mut handles, 1)?.expect("EOF");
            drop(handles);
            Ok(len)
        }
    }

    struct Raw(OwnedFd);

    impl End for Raw {
        fn send(&self, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
            let iov = [IoSlice::new(bytes)];
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            let fds;
            if let Some(fd) = fd {
                fds = [fd];
                control.push(SendAncillaryMessage::ScmRights(&fds));
            }
            sendmsg(&self.0, &iov, &mut control, SendFlags::NOSIGNAL)?;
            Ok(())
        }
        fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            let mut iov = [IoSliceMut::new(buf)];
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let got = recvmsg(&self.0, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = message {
                    drop(fds.collect::<Vec<OwnedFd>>());
                }
            }
            Ok(got.bytes)
        }
    }

    fn raw_pair() -> io::Result<(Raw, Raw)> {
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok((Raw(a), Raw(b)))
    }

    fn localsock_pair(name: &Name) -> io::Result<(MessageStream, MessageStream)> {
        let listener = MessageListener::bind(name)?;
        let client = MessageStream::connect(name)?;
        let server = listener.accept()?;
        Ok((client, server))
    }

    /// Messages per second, one sender thread and one receiver thread.
    fn throughput<E: End>(tx: &E, rx: &E, count: usize, fd: Option<BorrowedFd<'_>>) -> f64 {
        let start = Instant::now();
        thread::scope(|s| {
            s.spawn(|| {
                let bytes = [7u8; MSG];
                for _ in 0..count {
                    tx.send(&bytes, fd).unwrap();
                }
            });
            let mut buf = vec![0u8; MAX_MESSAGE_LEN + 1];
            for _ in 0..count {
                assert_eq!(rx.recv(&mut buf).unwrap(), MSG);
            }
        });
        count as f64 / start.elapsed().as_secs_f64()
    }

    /// Mean round-trip time in µs of `count` ping-pongs.
    fn latency<E: End>(a: &E, b: &E, count: usize, fd: Option<BorrowedFd<'_>>) -> f64 {
        thread::scope(|s| {
            s.spawn(|| {
                let mut buf = vec![0u8; MAX_MESSAGE_LEN + 1];
                for _ in 0..count {
                    let n = b.recv(&mut buf).unwrap();
                    b.send(&buf[..n], fd).unwrap();
                }
            });
            let bytes = [7u8; MSG];
            let mut buf = vec![0u8; MAX_MESSAGE_LEN + 1];
            let start = Instant::now();
            for _ in 0..count {
                a.send(&bytes, fd).unwrap();
                assert_eq!(a.recv(&mut buf).unwrap(), MSG);
            }
            start.elapsed().as_secs_f64() * 1e6 / count as f64
        })
    }

    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }

    pub(crate) fn main() -> io::Result<()> {
        let quick = std::env::args().nth(1).as_deref() == Some("quick");
        let (rounds, tput_count, lat_count) = if quick {
            (5, 20_000, 5_000)
        } else {
            (11, 100_000, 20_000)
        };
        let dir = std::env::temp_dir().join(format!("localsock-mbench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let name = Name::path(dir.join("m.sock"))?;
        let (client, server) = localsock_pair(&name)?;
        let (raw_a, raw_b) = raw_pair()?;
        let null = std::fs::File::open("/dev/null")?;
        println!(
            "64-byte messages, medians of {rounds} alternating rounds \
             ({tput_count} messages for throughput, {lat_count} round trips for latency)"
        );
        println!(
            "{:<22} {:>14} {:>14} {:>7}",
            "", "raw seqpacket", "localsock", "ratio"
        );
        for with_fd in [false, true] {
            let fd = with_fd.then(|| null.as_fd());
            let mut tput = (Vec::new(), Vec::new());
            let mut lat = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                tput.0.push(throughput(&raw_a, &raw_b, tput_count, fd));
                tput.1.push(throughput(&client, &server, tput_count, fd));
                lat.0.push(latency(&raw_a, &raw_b, lat_count, fd));
                lat.1.push(latency(&client, &server, lat_count, fd));
            }
            let what = if with_fd { "1 fd" } else { "no fd" };
            let (raw_t, ls_t) = (median(&mut tput.0), median(&mut tput.1));
            let (raw_l, ls_l) = (median(&mut lat.0), median(&mut lat.1));
            println!(
                "{:<22} {:>14.0} {:>14.0} {:>6.3}x",
                format!("msgs/s, {what}"),
                raw_t,
                ls_t,
                ls_t / raw_t
            );
            println!(
                "{:<22} {:>14.2} {:>14.2} {:>6.3}x",
                format!("round trip µs, {what}"),
                raw_l,
                ls_l,
                raw_l / ls_l
            );
        }
        println!("(ratio: localsock relative to raw; above 1 is faster)");
        drop((client, server));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}

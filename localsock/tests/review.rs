//! Regression tests from the correctness review: each failed before its fix.

mod common;

use std::io::{Read, Write};
#[cfg(all(windows, feature = "tokio"))]
use std::thread;

use common::{pair, unique, watchdog};
#[cfg(all(windows, feature = "tokio"))]
use localsock::LocalStream;

/// A peer that closes without reading what we sent is EOF for our reads, not an error (Linux
/// reports `ECONNRESET` once in that case): the contract is "a vanished peer reads as EOF".
#[test]
fn peer_closing_with_unread_data_reads_as_eof() {
    let _w = watchdog("peer_closing_with_unread_data_reads_as_eof", 20);
    let (mut client, server) = pair("unread-eof");
    client.write_all(b"never read").unwrap();
    drop(server);
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
    assert_eq!(client.read(&mut buf).unwrap(), 0);
}

/// The same through the async stream and its owned read half.
#[cfg(feature = "tokio")]
#[test]
fn async_peer_closing_with_unread_data_reads_as_eof() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _w = watchdog("async_peer_closing_with_unread_data_reads_as_eof", 20);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let name = unique("async-unread-eof");
        let listener = localsock::tokio::LocalListener::bind(&name).unwrap();
        for split in [false, true] {
            let connect = localsock::tokio::LocalStream::connect(&name);
            let (client, server) = tokio::join!(connect, listener.accept());
            let (mut client, server) = (client.unwrap(), server.unwrap());
            client.write_all(b"never read").await.unwrap();
            drop(server);
            let mut buf = [0u8; 16];
            if split {
                let (mut read, _write) = client.into_split();
                assert_eq!(read.read(&mut buf).await.unwrap(), 0);
            } else {
                assert_eq!(client.read(&mut buf).await.unwrap(), 0);
            }
        }
    });
}

/// More buffers than the OS takes in one call (`IOV_MAX`, 1024) are a short vectored read or
/// write, as with std's sockets, not `EINVAL`/`EMSGSIZE`.
#[cfg(unix)]
#[test]
fn vectored_io_with_more_buffers_than_iov_max_is_a_short_transfer() {
    use std::io::{IoSlice, IoSliceMut};
    let _w = watchdog(
        "vectored_io_with_more_buffers_than_iov_max_is_a_short_transfer",
        20,
    );
    let (mut client, mut server) = pair("iov-max");
    let data = [7u8; 2000];
    let slices: Vec<IoSlice<'_>> = data.chunks(1).map(IoSlice::new).collect();
    let written = client.write_vectored(&slices).unwrap();
    assert!(written > 0 && written <= 2000, "{written}");
    let mut into = [[0u8; 1]; 2000];
    let mut bufs: Vec<IoSliceMut<'_>> = into.iter_mut().map(|b| IoSliceMut::new(b)).collect();
    let read = server.read_vectored(&mut bufs).unwrap();
    assert!(read > 0 && read <= written, "{read} of {written}");
}

/// A huge backoff is capped by the deadline; doubling it must not overflow (it panicked).
#[test]
fn huge_backoff_times_out_instead_of_panicking() {
    use std::time::Duration;
    let _w = watchdog("huge_backoff_times_out_instead_of_panicking", 20);
    let name = unique("huge-backoff");
    let err = localsock::ConnectOptions::new()
        .timeout(Duration::from_millis(50))
        .wait_for_server(true)
        .backoff(Duration::MAX, Duration::MAX)
        .connect(&name)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
}

/// Windows: blocking I/O on a duplicate of a handle that tokio registered with its completion
/// port (safe code: `AsHandle` + `try_clone_to_owned` + `LocalStream::from`) must not queue
/// completions of our stack `OVERLAPPED`s to that port, where mio would read them as its own
/// and call through a dangling function pointer. Run in a child, because the failure is a crash.
#[cfg(all(windows, feature = "tokio"))]
#[test]
fn blocking_io_on_a_duplicate_of_an_async_pipe_queues_no_completions() {
    let _w = watchdog(
        "blocking_io_on_a_duplicate_of_an_async_pipe_queues_no_completions",
        60,
    );
    let mut proc = common::child("child_blocking_io_on_async_duplicate", &[])
        .spawn()
        .expect("spawn the test binary");
    let (status, out) = common::wait_and_read_stdout(&mut proc, 45);
    assert!(status.success(), "child failed: {status:?}\n{out}");
    assert!(out.contains("CHILD ok"), "{out}");
}

/// Child half of `blocking_io_on_a_duplicate_of_an_async_pipe_queues_no_completions`.
#[cfg(all(windows, feature = "tokio"))]
#[test]
#[ignore]
fn child_blocking_io_on_async_duplicate() {
    use std::os::windows::io::AsHandle;
    use std::time::Duration;
    if !common::is_child("child_blocking_io_on_async_duplicate") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let name = unique("async-dup");
        let listener = localsock::tokio::LocalListener::bind(&name).unwrap();
        let (client, server) = tokio::join!(
            localsock::tokio::LocalStream::connect(&name),
            listener.accept()
        );
        let (client, server) = (client.unwrap(), server.unwrap());
        let blocking = LocalStream::from(client.as_handle().try_clone_to_owned().unwrap());
        let reader = thread::spawn(move || {
            blocking
                .set_read_timeout(Some(Duration::from_millis(10)))
                .unwrap();
            for _ in 0..30 {
                let mut buf = [0u8; 8];
                match (&blocking).read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    other => panic!("expected a timeout: {other:?}"),
                }
                // Reuse the stack where the OVERLAPPED was.
                std::hint::black_box([0xA5u8; 512]);
            }
        });
        tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        // Give the runtime time to dequeue anything that was queued to its port.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop((client, server));
    });
    println!("CHILD ok");
}

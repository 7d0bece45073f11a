//! Regression tests from the correctness review: each failed before its fix.

mod common;

use std::io::{Read, Write};
use std::thread;

use common::{unique, watchdog};
use localsock::{LocalListener, LocalStream};

/// A connected (client, server) pair.
fn pair(tag: &str) -> (LocalStream, LocalStream) {
    let name = unique(tag);
    let listener = LocalListener::bind(&name).unwrap();
    let client = thread::spawn(move || LocalStream::connect(&name).unwrap());
    let server = listener.accept().unwrap();
    (client.join().unwrap(), server)
}

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

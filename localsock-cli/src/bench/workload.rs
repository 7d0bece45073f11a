//! The workloads, run by the client against either implementation: ping-pong latency,
//! streaming throughput and the connect rate.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use localsock::{LocalStream, Name};

use super::{HEADER, MESSAGE, SINK};

/// One implementation's client side.
pub(super) enum Endpoint {
    Lib(Name),
    Raw(PathBuf),
    /// A `LocalStream` that offers shared memory right after connecting.
    #[cfg(all(feature = "shm", target_os = "linux"))]
    Shm(Name),
}

/// A connected client of either implementation, without dynamic dispatch in the hot loops.
pub(super) enum Client {
    Lib(LocalStream),
    Raw(UnixStream),
    #[cfg(all(feature = "shm", target_os = "linux"))]
    Shm(localsock::ShmStream),
}

impl Endpoint {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Endpoint::Lib(_) => "localsock",
            Endpoint::Raw(_) => "raw",
            #[cfg(all(feature = "shm", target_os = "linux"))]
            Endpoint::Shm(_) => "shm",
        }
    }

    pub(super) fn connect(&self) -> io::Result<Client> {
        match self {
            Endpoint::Lib(name) => LocalStream::connect(name).map(Client::Lib),
            Endpoint::Raw(path) => UnixStream::connect(path).map(Client::Raw).map_err(|e| {
                io::Error::new(e.kind(), format!("connect to {}: {e}", path.display()))
            }),
            #[cfg(all(feature = "shm", target_os = "linux"))]
            Endpoint::Shm(name) => {
                let stream = localsock::ShmOptions::new().offer(LocalStream::connect(name)?)?;
                if !stream.is_shared_memory() {
                    return Err(io::Error::other("bench: the server refused shared memory"));
                }
                Ok(Client::Shm(stream))
            }
        }
    }
}

/// Runs `f` with the concrete stream type, so each loop is monomorphic.
macro_rules! with_stream {
    ($client:expr, $s:ident => $body:expr) => {
        match $client {
            Client::Lib(mut $s) => $body,
            Client::Raw(mut $s) => $body,
            #[cfg(all(feature = "shm", target_os = "linux"))]
            Client::Shm(mut $s) => $body,
        }
    };
}
pub(super) use with_stream;

/// 64-byte ping-pong on one connection: median and p99 of single round trips, in µs.
pub(super) fn latency(
    endpoint: &Endpoint,
    warmup: u32,
    round_trips: u32,
) -> io::Result<(f64, f64)> {
    let client = endpoint.connect()?;
    with_stream!(client, s => ping_pong(&mut s, warmup, round_trips))
}

fn ping_pong<S: Read + Write>(s: &mut S, warmup: u32, round_trips: u32) -> io::Result<(f64, f64)> {
    let message = [b'p'; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    for _ in 0..warmup {
        s.write_all(&message)?;
        s.read_exact(&mut reply)?;
    }
    let mut times: Vec<u64> = Vec::with_capacity(round_trips as usize);
    let mut before = Instant::now();
    for _ in 0..round_trips {
        s.write_all(&message)?;
        s.read_exact(&mut reply)?;
        let after = Instant::now();
        times.push((after - before).as_nanos() as u64);
        before = after;
    }
    if reply != message {
        return Err(io::Error::other(
            "bench: the echo server answered wrong bytes",
        ));
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    Ok((at(0.5), at(0.99)))
}

/// Streams `bytes` in `chunk`-sized writes; GiB/s from the first byte to the server's ack.
pub(super) fn throughput(endpoint: &Endpoint, bytes: u64, chunk: usize) -> io::Result<f64> {
    let client = endpoint.connect()?;
    with_stream!(client, s => stream_to_sink(&mut s, bytes, chunk))
}

fn stream_to_sink<S: Read + Write>(s: &mut S, bytes: u64, chunk: usize) -> io::Result<f64> {
    let data = vec![0xa5u8; chunk];
    let mut header = [0u8; HEADER];
    header[0] = SINK;
    header[1..].copy_from_slice(&bytes.to_le_bytes());
    let start = Instant::now();
    s.write_all(&header)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        s.write_all(&data[..n])?;
        left -= n as u64;
    }
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack)?;
    let secs = start.elapsed().as_secs_f64();
    if u64::from_le_bytes(ack) != bytes {
        return Err(io::Error::other(
            "bench: the sink acknowledged a wrong byte count",
        ));
    }
    Ok(bytes as f64 / secs / f64::from(1u32 << 30))
}

/// `connections` x (connect, write 1 byte, read its echo, close), sequential: conn/s.
pub(super) fn connect_rate(endpoint: &Endpoint, connections: u32) -> io::Result<f64> {
    let start = Instant::now();
    for _ in 0..connections {
        let client = endpoint.connect()?;
        with_stream!(client, s => {
            let mut byte = [b'c'];
            s.write_all(&byte)?;
            s.read_exact(&mut byte)?;
        });
    }
    Ok(f64::from(connections) / start.elapsed().as_secs_f64())
}

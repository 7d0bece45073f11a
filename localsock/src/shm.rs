//! A shared-memory data path between the two ends of a connection (feature `shm`: Linux and
//! Windows, with macOS and FreeBSD backends that are compile-checked only).
//!
//! [`ShmOptions::offer`] (one side) and [`ShmOptions::answer`] (the other side) turn an
//! established [`LocalStream`] into a [`ShmStream`]. If both sides agree, the bytes then travel
//! through memory shared by exactly these two processes — one single-producer/single-consumer
//! ring per direction — and the socket stays for wake-ups and liveness. If either side refuses
//! ([`ShmOptions::enabled`]`(false)`), the `ShmStream` simply keeps using the socket;
//! [`ShmStream::is_shared_memory`] tells which.
//!
//! # When to use it, and what it costs
//!
//! Use it between two processes that move a lot of data (frames, tensors, pages, logs) or that
//! ping-pong small messages while both are busy on different CPUs. While the peer is active it
//! saves the syscall and the inter-processor wake-up per message. `Read`/`Write` copy each byte
//! twice, as a socket does (into the ring, out of it); [`ShmStream::write_in_place`] and
//! [`ShmStream::read_in_place`] each save one of those copies.
//!
//! It costs:
//! - memory: `4 KiB + 2 × capacity` per connection ([`ShmOptions::capacity`], default 1 MiB per
//!   direction), charged to the offering process;
//! - CPU while waiting: a reader with an empty ring (or a writer with a full one) spins for up
//!   to [`ShmOptions::spin`] (default 50 µs) before it sleeps on the socket. It does not spin
//!   on a machine with one CPU online, nor when the peer last ran on the CPU it runs on
//!   (spinning would only delay the peer: each side publishes its CPU, from `sched_getcpu`, in
//!   the shared control page). An idle connection sleeps in the kernel: 0 % CPU;
//! - a wake-up through the socket when the other side was asleep: about the cost of a socket
//!   round trip, so a sleepy, rarely used connection gains nothing.
//!
//! # Liveness
//!
//! Dropping a `ShmStream` (or [`shutdown`](ShmStream::shutdown) of the write side) is
//! end-of-file for the peer after the bytes already in the ring. If the peer process dies, the
//! socket reports it: reads return the bytes still in the ring, then end-of-file; writes fail
//! with `BrokenPipe` once the ring is full or the peer would have to be woken (as with a socket,
//! a write that fits the buffer may succeed before the death is noticed). Nothing hangs.
//!
//! # A hostile peer
//!
//! The peer can write anything into the shared memory at any moment. Every index and flag read
//! from it is validated before use; a violation is an `InvalidData` error, and the connection is
//! closed (both directions). Data bytes are copied out with raw copies, never seen through Rust
//! references, and are untrusted input as with a socket. The memory object (a sealed
//! `memfd_create` object on Linux and FreeBSD, an unlinked `shm_open` object on macOS, an
//! unnamed section on Windows) is passed over the connection as a descriptor or handle: it has
//! no name any other process could open, it cannot be resized under us, and it is unmapped
//! when the stream is dropped. See SECURITY.md.
//!
//! # Platform-specific behavior
//!
//! - **Linux**: the memory is a sealed `memfd_create` object; a reader is woken by a byte on
//!   the connection's socket, a writer by a byte on a socket pair made for the stream; the CPU
//!   hint is `sched_getcpu`. Descriptors go to any peer, so shared memory is offered to a peer
//!   of another user too: who may be the peer is decided before (the listener's `Access` and
//!   `require_same_user`, the client's `ServerIdentity`).
//! - **FreeBSD** (13 or later) and **macOS**: as on Linux, except that macOS has no
//!   `memfd_create` and no seals: the memory is a POSIX `shm_open` object under a random name,
//!   unlinked at once, which the macOS kernel sizes once (so it cannot shrink under us either);
//!   and macOS has no `sched_getcpu`, so a waiting side always spins for the spin window. These
//!   two backends are type-checked in CI but have never run: treat them as untested.
//! - **Windows**: the memory is an unnamed, pagefile-backed section (`CreateFileMappingW` with
//!   no name), its handle duplicated into the peer over the pipe as message attachments are;
//!   the answering side maps it and refuses (`InvalidData`) a section that is smaller than
//!   offered, not committed read/write memory, or a mapped file. Readers and writers sleep on
//!   four unnamed events, duplicated the same way, and after the negotiation nothing travels
//!   on the pipe: one pending 1-byte read on it (issued by a helper thread that lives as long
//!   as the process) reports the peer's end. Shared memory is only offered to a peer of the
//!   same user (the rule for handles, see `MessageStream`); with another user's peer the offer
//!   becomes "no offer" and the stream stays on the pipe. [`ShmStream::socket`] is then not a
//!   readiness source, and the async `localsock::tokio::ShmStream` is not available on
//!   Windows yet. A reader's wait for data gives `TimedOut` after the pipe's read timeout (on
//!   Linux the socket's `SO_RCVTIMEO` shows as `WouldBlock`). On the client end, a protocol
//!   violation cannot disconnect the pipe: the peer sees the end when the stream is dropped.
//!
//! # Examples
//!
//! The async twin is `localsock::tokio::ShmStream` (features `tokio` and `shm`): the same
//! negotiation (either side may be blocking or async) and rings, waiting on tokio's reactor.
//!
//! ```
//! use std::io::{Read, Write};
//! use localsock::{LocalListener, LocalStream, Name, ShmOptions};
//!
//! # fn main() -> std::io::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("localsock-doc-shm-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # #[cfg(unix)]
//! # let name = Name::path(dir.join("shm.sock"))?;
//! # #[cfg(windows)]
//! # let name = Name::new(format!("localsock-doc-shm-{}", std::process::id()))?;
//! let listener = LocalListener::bind(&name)?;
//! let server = std::thread::spawn(move || -> std::io::Result<()> {
//!     let mut stream = ShmOptions::new().answer(listener.accept()?)?;
//!     let mut buf = [0; 4];
//!     stream.read_exact(&mut buf)?;
//!     stream.write_all(&buf)
//! });
//! let mut client = ShmOptions::new().offer(LocalStream::connect(&name)?)?;
//! assert!(client.is_shared_memory());
//! client.write_all(b"ping")?;
//! let mut reply = [0; 4];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"ping");
//! # server.join().unwrap()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
#[cfg(all(feature = "tokio", unix))]
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::sys::shm::{self as os, Mapping, OsHandle, Wakes};
use crate::sys::Waiter;
use crate::LocalStream;

/// The smallest ring capacity, in bytes, per direction.
pub const MIN_CAPACITY: usize = 4096;
/// The largest ring capacity, in bytes, per direction (an offer of more is refused as invalid).
pub const MAX_CAPACITY: usize = 256 << 20;

const DEFAULT_CAPACITY: usize = 1 << 20;
const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// Reads and writes publish their index at least every this many bytes (see `Shared::read`).
const PIECE: usize = 64 * 1024;
/// With the peer on our CPU, a writer runs at most this far ahead of the reader before it
/// sleeps and lets the reader run (see `Shared::room`).
const SAME_CPU_WINDOW: usize = 256 * 1024;

// The shared layout: one 4 KiB page of control words, then ring 0 (written by the offering
// side), then ring 1 (written by the answering side), `capacity` bytes each.
const CONTROL_LEN: usize = 4096;
/// Per ring, the producer's cache line: its write index, its "closed" and "waiting" flags.
const RING_STRIDE: usize = 256;
const TAIL: usize = 0;
const CLOSED: usize = 8;
const WRITER_WAITING: usize = 12;
/// Per ring, the consumer's cache line: its read index and "waiting" flag.
const HEAD: usize = 128;
const READER_WAITING: usize = 136;
/// Per side, the CPU it last ran on (a hint), each on its own cache line.
const CPU_HINTS: usize = 1024;

// The negotiation, in two frames on the socket (the framed transport of `sys::frame`).
const MAGIC: &[u8; 4] = b"LSHM";
const VERSION: u8 = 1;
const HELLO_LEN: usize = 16;
const KIND_OFFER: u8 = 1;
const KIND_NO_OFFER: u8 = 2;
const KIND_ACCEPT: u8 = 3;
const KIND_REFUSE: u8 = 4;

fn hello(kind: u8, capacity: u32) -> [u8; HELLO_LEN] {
    let mut out = [0; HELLO_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4] = VERSION;
    out[5] = kind;
    out[8..12].copy_from_slice(&capacity.to_le_bytes());
    out
}

fn parse_hello(bytes: &[u8]) -> io::Result<(u8, u32)> {
    if bytes.len() != HELLO_LEN || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(invalid(
            "the peer did not answer the shared-memory negotiation",
        ));
    }
    let capacity = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    Ok((bytes[5], capacity))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// How a connection negotiates the shared-memory data path: whether it takes part, the ring
/// size it offers and how long a waiting side spins.
///
/// # Examples
///
/// ```no_run
/// use localsock::{LocalStream, Name, ShmOptions};
/// use std::time::Duration;
///
/// # fn main() -> std::io::Result<()> {
/// let stream = LocalStream::connect(&Name::new("example-frames")?)?;
/// let stream = ShmOptions::new()
///     .capacity(4 << 20)
///     .spin(Duration::from_micros(20))
///     .offer(stream)?;
/// println!("shared memory: {}", stream.is_shared_memory());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ShmOptions {
    enabled: bool,
    capacity: usize,
    spin: Duration,
}

impl Default for ShmOptions {
    fn default() -> ShmOptions {
        ShmOptions::new()
    }
}

impl ShmOptions {
    /// Shared memory enabled, 1 MiB per direction, 50 µs of spinning.
    pub fn new() -> ShmOptions {
        ShmOptions {
            enabled: true,
            capacity: DEFAULT_CAPACITY,
            spin: DEFAULT_SPIN,
        }
    }

    /// Whether this side takes shared memory (default `true`). With `false` it refuses (or does
    /// not offer) and the connection stays a socket; the negotiation still takes place, so the
    /// other side learns it.
    pub fn enabled(&mut self, enabled: bool) -> &mut Self {
        self.enabled = enabled;
        self
    }

    /// The ring size the offering side creates, in bytes per direction, rounded up to a power
    /// of two and clamped to [`MIN_CAPACITY`]..=[`MAX_CAPACITY`]. The answering side takes what
    /// is offered. Larger rings let a writer run further ahead; smaller ones stay in cache.
    pub fn capacity(&mut self, bytes: usize) -> &mut Self {
        self.capacity = bytes
            .clamp(MIN_CAPACITY, MAX_CAPACITY)
            .next_power_of_two()
            .min(MAX_CAPACITY);
        self
    }

    /// How long a reader with nothing to read, or a writer with no room, polls the ring before
    /// it sleeps (default 50 µs; zero never spins). Spinning is skipped anyway on a machine with
    /// one CPU online, and whenever the peer last ran on the CPU this thread runs on.
    pub fn spin(&mut self, spin: Duration) -> &mut Self {
        self.spin = spin;
        self
    }

    /// Offers shared memory to the peer, which must call [`answer`](Self::answer), and returns
    /// the stream, on shared memory if the peer accepted.
    ///
    /// Creates the memory object and the wake-up channel (a sealed memfd and a socket pair on
    /// Linux; a section and four events on Windows), sends them over `stream` and waits for
    /// the peer's answer (for as long as `stream`'s read timeout allows; `stream` must be
    /// blocking). If this side is not [`enabled`](Self::enabled) (or, on Windows, the peer runs
    /// as another user) it tells the peer so and keeps the socket.
    ///
    /// # Errors
    ///
    /// `InvalidData` if the peer answers something else than the negotiation (it does not run
    /// it), `UnexpectedEof` if it closes the connection, `WouldBlock`/`TimedOut` after the read
    /// timeout, or the OS error (e.g. `memfd_create` failing for lack of memory).
    pub fn offer(&self, stream: LocalStream) -> io::Result<ShmStream> {
        let pending = self.send_offer(&stream)?;
        let accepted = read_answer(&stream)?;
        Ok(pending.finish(stream, accepted))
    }

    /// The first half of [`offer`](Self::offer): creates the memory (if enabled) and sends the
    /// offer. Never waits for the peer (the offer is the first thing on the connection).
    pub(crate) fn send_offer(&self, stream: &LocalStream) -> io::Result<Pending> {
        if !self.enabled || !os::can_share(&stream.inner)? {
            os::send_hello(&stream.inner, &hello(KIND_NO_OFFER, 0), &[])?;
            return Ok(Pending(None));
        }
        let capacity = self.capacity;
        let (memfd, map) = os::create(CONTROL_LEN + 2 * capacity)?;
        for side in 0..2 {
            // No CPU known yet (0 would be a real CPU).
            map.u32_at(CPU_HINTS + 64 * side)
                .store(u32::MAX, Ordering::Relaxed);
        }
        let (aux, aux_peer) = os::wakes(&stream.inner)?;
        let mut handles = vec![&memfd];
        handles.extend(&aux_peer);
        os::send_hello(&stream.inner, &hello(KIND_OFFER, capacity as u32), &handles)?;
        // The handles sent close here: the peer has its own, the mapping stays.
        Ok(Pending(Some((aux, map, capacity, self.spin))))
    }

    /// Answers the peer's [`offer`](Self::offer): accepts shared memory if this side is
    /// [`enabled`](Self::enabled) and the offer is sound, else refuses and keeps the socket.
    ///
    /// # Errors
    ///
    /// `InvalidData` if the peer sends something else than an offer, or an offer that is not
    /// sound (memory that is not sealed, of the wrong size, a capacity out of range) — then
    /// the connection is closed; `UnexpectedEof` if it closes the connection; the OS error.
    pub fn answer(&self, stream: LocalStream) -> io::Result<ShmStream> {
        let offer = recv_offer(&stream)?;
        self.reply(stream, offer)
    }

    /// The second half of [`answer`](Self::answer): maps an offer and accepts it, or refuses.
    /// Never waits for the peer.
    pub(crate) fn reply(&self, stream: LocalStream, offer: Offer) -> io::Result<ShmStream> {
        let refuse = |stream: LocalStream| -> io::Result<ShmStream> {
            os::send_hello(&stream.inner, &hello(KIND_REFUSE, 0), &[])?;
            Ok(ShmStream::on_socket(stream))
        };
        let Offer(Some((memfd, aux, capacity))) = offer else {
            return refuse(stream);
        };
        if !self.enabled {
            return refuse(stream);
        }
        let map = match os::open_handle(&memfd, CONTROL_LEN + 2 * capacity) {
            Ok(map) => map,
            Err(e) => {
                let _ = stream.shutdown(Shutdown::Both);
                return Err(e);
            }
        };
        drop(memfd);
        os::send_hello(&stream.inner, &hello(KIND_ACCEPT, 0), &[])?;
        Ok(ShmStream::shared(stream, aux, map, capacity, 1, self.spin))
    }
}

/// An offer sent, its answer not read yet: the mapping and our end of the wake-up pair.
pub(crate) struct Pending(Option<(Wakes, Mapping, usize, Duration)>);

impl Pending {
    /// The stream after the answer: on shared memory if it was accepted (and offered).
    pub(crate) fn finish(self, stream: LocalStream, accepted: bool) -> ShmStream {
        match self.0 {
            Some((aux, map, capacity, spin)) if accepted => {
                ShmStream::shared(stream, aux, map, capacity, 0, spin)
            }
            _ => ShmStream::on_socket(stream),
        }
    }
}

/// A received offer, checked: the memory object, the wake-up channel and the capacity, or none.
pub(crate) struct Offer(Option<(OsHandle, Wakes, usize)>);

/// Receives and checks the peer's offer (`WouldBlock` on a non-blocking socket until it has
/// arrived whole).
pub(crate) fn recv_offer(stream: &LocalStream) -> io::Result<Offer> {
    let mut buf = [0u8; HELLO_LEN];
    let mut handles: Vec<OsHandle> = Vec::new();
    let got = os::recv_hello(&stream.inner, &mut buf, &mut handles, 1 + os::WAKE_HANDLES)?;
    let Some(len) = got else {
        return Err(io::ErrorKind::UnexpectedEof.into());
    };
    let (kind, capacity) = parse_hello(&buf[..len])?;
    match kind {
        KIND_NO_OFFER if handles.is_empty() => return Ok(Offer(None)),
        KIND_OFFER if handles.len() == 1 + os::WAKE_HANDLES => {}
        _ => {
            return Err(violation_at_start(
                stream,
                "a malformed shared-memory offer",
            ))
        }
    }
    let capacity = capacity as usize;
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) || !capacity.is_power_of_two() {
        return Err(violation_at_start(
            stream,
            "a shared-memory capacity out of range",
        ));
    }
    let wake_handles = handles.split_off(1);
    let memfd = handles.pop().expect("the memory object");
    let Some(aux) = os::wakes_from_peer(&stream.inner, wake_handles)? else {
        return Err(violation_at_start(
            stream,
            "a wake-up channel of the wrong kind",
        ));
    };
    Ok(Offer(Some((memfd, aux, capacity))))
}

fn violation_at_start(stream: &LocalStream, what: &str) -> io::Error {
    let _ = stream.shutdown(Shutdown::Both);
    invalid(&format!("shared-memory negotiation: the peer sent {what}"))
}

/// Reads the answer to an offer: `true` if accepted (`WouldBlock` on a non-blocking socket
/// until it has arrived whole).
pub(crate) fn read_answer(stream: &LocalStream) -> io::Result<bool> {
    let mut buf = [0u8; HELLO_LEN];
    let mut handles = Vec::new();
    let Some(len) = os::recv_hello(&stream.inner, &mut buf, &mut handles, 0)? else {
        return Err(io::ErrorKind::UnexpectedEof.into());
    };
    match parse_hello(&buf[..len])? {
        (KIND_ACCEPT, _) => Ok(true),
        (KIND_REFUSE, _) => Ok(false),
        _ => Err(violation_at_start(stream, "a malformed answer")),
    }
}

/// A connection whose bytes travel through shared memory (or, if the negotiation was refused,
/// through its socket): [`Read`] and [`Write`] as for a [`LocalStream`], plus the zero-copy
/// [`read_in_place`](Self::read_in_place) and [`write_in_place`](Self::write_in_place).
///
/// Made by [`ShmOptions::offer`] / [`ShmOptions::answer`]. `Send + Sync`: one thread may read
/// while another writes (`Read`/`Write` are implemented for `&ShmStream` too). See the
/// [module docs](crate::shm) for costs, liveness and the hostile-peer rules.
pub struct ShmStream {
    inner: Inner,
}

enum Inner {
    Socket(LocalStream),
    Shared(Box<Shared>),
}

struct Shared {
    socket: LocalStream,
    /// Our end of the wake-up channel: on Unix the socket pair that carries wake-ups for
    /// writers (readers are woken through the connection's socket); on Windows events.
    aux: Wakes,
    map: Mapping,
    capacity: usize,
    /// 0: the offering side (writes ring 0, reads ring 1); 1: the answering side.
    side: usize,
    spin: Duration,
    multi_cpu: bool,
    nonblocking: AtomicBool,
    /// The socket reported end-of-file or a reset: the peer is gone.
    peer_gone: AtomicBool,
    /// The peer broke the protocol; every call fails with `InvalidData`.
    poisoned: AtomicBool,
    reader: Mutex<ReadState>,
    writer: Mutex<WriteState>,
}

#[derive(Debug)]
struct ReadState {
    /// Our read index (the shared copy is only for the peer to see).
    head: u64,
    shut: bool,
}

#[derive(Debug)]
struct WriteState {
    /// Our write index.
    tail: u64,
    /// The peer's read index as last validated: it never moves backwards.
    head_seen: u64,
    shut: bool,
}

impl fmt::Debug for ShmStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Socket(s) => f.debug_struct("ShmStream").field("socket", s).finish(),
            Inner::Shared(s) => f
                .debug_struct("ShmStream")
                .field("socket", &s.socket)
                .field("capacity", &s.capacity)
                .field("side", &s.side)
                .finish_non_exhaustive(),
        }
    }
}

impl ShmStream {
    fn on_socket(stream: LocalStream) -> ShmStream {
        ShmStream {
            inner: Inner::Socket(stream),
        }
    }

    fn shared(
        socket: LocalStream,
        aux: Wakes,
        map: Mapping,
        capacity: usize,
        side: usize,
        spin: Duration,
    ) -> ShmStream {
        // From here on the connection carries nothing but wake-ups (and, on Windows, nothing
        // at all): the OS layer may watch it for the peer's end.
        os::watch(&socket.inner, &aux);
        ShmStream {
            inner: Inner::Shared(Box::new(Shared {
                socket,
                aux,
                map,
                capacity,
                side,
                spin,
                multi_cpu: os::online_cpus() > 1,
                nonblocking: AtomicBool::new(false),
                peer_gone: AtomicBool::new(false),
                poisoned: AtomicBool::new(false),
                reader: Mutex::new(ReadState {
                    head: 0,
                    shut: false,
                }),
                writer: Mutex::new(WriteState {
                    tail: 0,
                    head_seen: 0,
                    shut: false,
                }),
            })),
        }
    }

    /// Whether the bytes travel through shared memory (`false`: the negotiation was refused and
    /// this is the socket).
    pub fn is_shared_memory(&self) -> bool {
        matches!(self.inner, Inner::Shared(_))
    }

    /// The underlying socket (for peer credentials, or, on Linux, to wait on it in an event
    /// loop: it becomes readable when a wake-up or end-of-file arrives; on Windows nothing
    /// travels on it after the negotiation). Do not read or write it while on shared memory.
    pub fn socket(&self) -> &LocalStream {
        match &self.inner {
            Inner::Socket(s) => s,
            Inner::Shared(s) => &s.socket,
        }
    }

    /// Moves reads and writes into or out of non-blocking mode: `WouldBlock` instead of waiting
    /// (after no spinning). On shared memory on Linux, the socket then becomes readable when it
    /// is worth trying again (Windows has no such readiness source yet).
    ///
    /// # Errors
    ///
    /// The OS error from the socket.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match &self.inner {
            Inner::Socket(s) => s.set_nonblocking(nonblocking),
            Inner::Shared(s) => {
                s.nonblocking.store(nonblocking, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Shuts down the read side, the write side or both. Shutting down writing is end-of-file
    /// for the peer after the bytes already sent; reads after shutting down reading return
    /// end-of-file.
    ///
    /// # Errors
    ///
    /// The OS error from the socket (on the socket path).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match &self.inner {
            Inner::Socket(s) => s.shutdown(how),
            Inner::Shared(s) => {
                if matches!(how, Shutdown::Read | Shutdown::Both) {
                    s.lock_reader().shut = true;
                }
                if matches!(how, Shutdown::Write | Shutdown::Both) {
                    s.lock_writer().shut = true;
                    s.close_tx();
                }
                Ok(())
            }
        }
    }

    /// Zero-copy read: waits until bytes are available (or end-of-file), then calls `f` with a
    /// view of the readable bytes in the ring (one contiguous piece; empty at end-of-file). `f`
    /// returns how many of them it consumed (at most the view's length) and a value that is
    /// returned.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the connection is not on shared memory; `InvalidData` if the peer
    /// broke the protocol; `WouldBlock` in non-blocking mode.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # fn demo(stream: &localsock::ShmStream) -> std::io::Result<()> {
    /// // Sum the bytes without copying them out.
    /// let sum = stream.read_in_place(|view| {
    ///     let sum: u64 = (0..view.len()).map(|i| u64::from(view.get(i))).sum();
    ///     (view.len(), sum)
    /// })?;
    /// # let _ = sum; Ok(()) }
    /// ```
    pub fn read_in_place<R>(&self, f: impl FnOnce(&ShmSlice<'_>) -> (usize, R)) -> io::Result<R> {
        let shared = self.require_shared()?;
        let mut state = shared.lock_reader();
        let avail = shared.wait_data(&mut state)?;
        let (offset, len) = shared.rx_piece(&state, avail);
        let view = ShmSlice {
            map: &shared.map,
            offset,
            len,
        };
        let (used, value) = f(&view);
        shared.consume(&mut state, used.min(len), true);
        Ok(value)
    }

    /// Zero-copy write: waits until the ring has room, then calls `f` with a view of the free
    /// space (one contiguous piece). `f` fills a prefix of it and returns its length (at most
    /// the view's length; the rest is not sent) and a value that is returned.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the connection is not on shared memory; `BrokenPipe` if the peer is
    /// gone or this side shut down writing; `InvalidData` if the peer broke the protocol;
    /// `WouldBlock` in non-blocking mode.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # fn demo(stream: &localsock::ShmStream) -> std::io::Result<()> {
    /// let header = *b"HDR1";
    /// stream.write_in_place(|view| {
    ///     let n = view.len().min(header.len());
    ///     view.copy_from(0, &header[..n]);
    ///     (n, ())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn write_in_place<R>(&self, f: impl FnOnce(&ShmSlice<'_>) -> (usize, R)) -> io::Result<R> {
        let shared = self.require_shared()?;
        let mut state = shared.lock_writer();
        let free = shared.wait_space(&mut state, shared.capacity)?;
        let (offset, len) = shared.tx_piece(&state, free);
        let view = ShmSlice {
            map: &shared.map,
            offset,
            len,
        };
        let (used, value) = f(&view);
        shared.commit(&mut state, used.min(len), true)?;
        Ok(value)
    }

    fn require_shared(&self) -> io::Result<&Shared> {
        match &self.inner {
            Inner::Shared(s) => Ok(s),
            Inner::Socket(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the connection is not on shared memory (the negotiation was refused)",
            )),
        }
    }

    fn read_impl(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.inner {
            Inner::Socket(s) => (&*s).read(buf),
            Inner::Shared(s) => s.read(buf),
        }
    }

    fn write_impl(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.inner {
            Inner::Socket(s) => (&*s).write(buf),
            Inner::Shared(s) => s.write(buf),
        }
    }

    /// The sockets that become readable when a read (the first) or a write (the second) is
    /// worth retrying, on shared memory.
    #[cfg(all(feature = "tokio", unix))]
    pub(crate) fn wake_fds(&self) -> Option<(BorrowedFd<'_>, BorrowedFd<'_>)> {
        match &self.inner {
            Inner::Shared(s) => Some((s.socket.inner.as_fd(), s.aux.as_fd())),
            Inner::Socket(_) => None,
        }
    }

    /// The socket, if the negotiation was refused.
    #[cfg(all(feature = "tokio", unix))]
    pub(crate) fn into_socket(self) -> Result<LocalStream, ShmStream> {
        match self.inner {
            Inner::Socket(s) => Ok(s),
            inner => Err(ShmStream { inner }),
        }
    }

    /// Test hook for the fuzz target: the whole shared mapping as atomics.
    #[cfg(fuzzing)]
    pub(crate) fn shared_bytes(&self) -> Option<&[AtomicU8]> {
        match &self.inner {
            Inner::Shared(s) => Some(s.map.bytes_at(0, s.map.len())),
            Inner::Socket(_) => None,
        }
    }
}

impl Read for ShmStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_impl(buf)
    }
}

impl Read for &ShmStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_impl(buf)
    }
}

impl Write for ShmStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_impl(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &ShmStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_impl(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A view of bytes in the shared ring, for [`ShmStream::read_in_place`] and
/// [`ShmStream::write_in_place`].
///
/// The peer process can change shared memory at any time, so this is not a `&[u8]`: bytes are
/// copied in and out ([`copy_to`](Self::copy_to), [`copy_from`](Self::copy_from)), read and
/// written one at a time ([`get`](Self::get), [`set`](Self::set)), or seen as atomics
/// ([`as_atomic`](Self::as_atomic)). Treat what you read as untrusted input.
pub struct ShmSlice<'a> {
    map: &'a Mapping,
    offset: usize,
    len: usize,
}

impl fmt::Debug for ShmSlice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmSlice").field("len", &self.len).finish()
    }
}

impl ShmSlice<'_> {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (end-of-file, for a read).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn range(&self, start: usize, len: usize) -> usize {
        assert!(
            start <= self.len && len <= self.len - start,
            "ShmSlice range {start}..{} out of bounds (len {})",
            start.wrapping_add(len),
            self.len
        );
        self.offset + start
    }

    /// Copies `dst.len()` bytes starting at `start` into `dst`.
    ///
    /// # Panics
    ///
    /// If the range is not inside the view.
    pub fn copy_to(&self, start: usize, dst: &mut [u8]) {
        let at = self.range(start, dst.len());
        self.map.copy_out(at, dst);
    }

    /// Copies `src` into the view at `start`.
    ///
    /// # Panics
    ///
    /// If the range is not inside the view.
    pub fn copy_from(&self, start: usize, src: &[u8]) {
        let at = self.range(start, src.len());
        self.map.copy_in(at, src);
    }

    /// The byte at `index`.
    ///
    /// # Panics
    ///
    /// If `index` is not inside the view.
    pub fn get(&self, index: usize) -> u8 {
        self.as_atomic()[index].load(Ordering::Relaxed)
    }

    /// Sets the byte at `index`.
    ///
    /// # Panics
    ///
    /// If `index` is not inside the view.
    pub fn set(&self, index: usize, value: u8) {
        self.as_atomic()[index].store(value, Ordering::Relaxed)
    }

    /// The bytes as atomics (which the peer may change at any moment).
    pub fn as_atomic(&self) -> &[AtomicU8] {
        self.map.bytes_at(self.offset, self.len)
    }
}

impl Shared {
    fn lock_reader(&self) -> MutexGuard<'_, ReadState> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriteState> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tx(&self) -> usize {
        self.side
    }

    fn rx(&self) -> usize {
        1 - self.side
    }

    fn ctl(ring: usize, field: usize) -> usize {
        ring * RING_STRIDE + field
    }

    fn data(&self, ring: usize) -> usize {
        CONTROL_LEN + ring * self.capacity
    }

    fn mask(&self) -> u64 {
        self.capacity as u64 - 1
    }

    /// The peer broke the protocol: close the connection and fail from now on.
    fn violation(&self, what: &str) -> io::Error {
        self.poisoned.store(true, Ordering::Relaxed);
        self.peer_gone.store(true, Ordering::Relaxed);
        os::close_path(&self.socket.inner, &self.aux);
        invalid(&format!("shared memory: {what}; the connection is closed"))
    }

    fn check_poisoned(&self) -> io::Result<()> {
        if self.poisoned.load(Ordering::Relaxed) {
            return Err(invalid(
                "shared memory: the peer broke the protocol; the connection is closed",
            ));
        }
        Ok(())
    }

    /// How many bytes the peer has published and we have not read, validated.
    fn available(&self, state: &ReadState) -> io::Result<usize> {
        let tail = self
            .map
            .u64_at(Self::ctl(self.rx(), TAIL))
            .load(Ordering::Acquire);
        let avail = tail.wrapping_sub(state.head);
        if avail > self.capacity as u64 {
            return Err(self.violation("the peer's write index is out of range"));
        }
        Ok(avail as usize)
    }

    fn rx_closed(&self) -> bool {
        self.map
            .u32_at(Self::ctl(self.rx(), CLOSED))
            .load(Ordering::Acquire)
            != 0
    }

    /// Whether to keep polling: spinning is enabled, the machine has several CPUs online, the
    /// peer did not last run on the CPU we run on (then spinning would only keep it from
    /// running: the case of two processes pinned to one CPU, or a single-CPU affinity shared
    /// by both), and the spin window has not passed.
    fn keep_spinning(&self, started: &mut Option<Instant>, rounds: &mut u32) -> bool {
        if self.spin.is_zero() || !self.multi_cpu {
            return false;
        }
        match started {
            None => {
                let me = os::current_cpu();
                self.map
                    .u32_at(CPU_HINTS + 64 * self.side)
                    .store(me, Ordering::Relaxed);
                let peer = self
                    .map
                    .u32_at(CPU_HINTS + 64 * (1 - self.side))
                    .load(Ordering::Relaxed);
                // Same CPU: spinning would only keep the peer from running. Unknown CPUs
                // (macOS has no `sched_getcpu`) are not taken for the same one.
                if peer == me && me != os::UNKNOWN_CPU {
                    return false;
                }
                *started = Some(Instant::now());
                true
            }
            Some(at) => {
                *rounds = rounds.wrapping_add(1);
                std::hint::spin_loop();
                *rounds % 32 != 0 || at.elapsed() < self.spin
            }
        }
    }

    fn publish_cpu(&self) {
        if self.multi_cpu && !self.spin.is_zero() {
            self.map
                .u32_at(CPU_HINTS + 64 * self.side)
                .store(os::current_cpu(), Ordering::Relaxed);
        }
    }

    /// Waits for bytes to read; `Ok(0)` is end-of-file.
    fn wait_data(&self, state: &mut ReadState) -> io::Result<usize> {
        self.check_poisoned()?;
        if state.shut {
            return Ok(0);
        }
        let mut started = None;
        let mut rounds = 0;
        let nonblocking = self.nonblocking.load(Ordering::Relaxed);
        loop {
            let avail = self.available(state)?;
            if avail > 0 {
                return Ok(avail);
            }
            if self.rx_closed() || self.peer_gone.load(Ordering::Relaxed) {
                // The peer published its last bytes before closing: look once more.
                return self.available(state);
            }
            if !nonblocking && self.keep_spinning(&mut started, &mut rounds) {
                continue;
            }
            let waiting = self.map.u32_at(Self::ctl(self.rx(), READER_WAITING));
            waiting.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.available(state)? > 0 || self.rx_closed() {
                waiting.store(0, Ordering::Relaxed);
                continue;
            }
            if nonblocking {
                // The peer wakes the socket when it publishes: poll it then.
                if !os::drain(&self.socket.inner, &self.aux, Waiter::Reader)? {
                    self.peer_gone.store(true, Ordering::Relaxed);
                    continue;
                }
                if self.available(state)? > 0 || self.rx_closed() {
                    continue;
                }
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if !os::wait(&self.socket.inner, &self.aux, Waiter::Reader)? {
                self.peer_gone.store(true, Ordering::Relaxed);
            }
            started = None;
        }
    }

    /// Where the next `avail` readable bytes start, as one contiguous piece.
    fn rx_piece(&self, state: &ReadState, avail: usize) -> (usize, usize) {
        let at = (state.head & self.mask()) as usize;
        (self.data(self.rx()) + at, avail.min(self.capacity - at))
    }

    /// Hands `n` bytes back to the writer; with `wake`, wakes it if it sleeps.
    fn consume(&self, state: &mut ReadState, n: usize, wake: bool) {
        if n > 0 {
            state.head = state.head.wrapping_add(n as u64);
            self.map
                .u64_at(Self::ctl(self.rx(), HEAD))
                .store(state.head, Ordering::Release);
        }
        if !wake {
            return;
        }
        fence(Ordering::SeqCst);
        let waiting = self.map.u32_at(Self::ctl(self.rx(), WRITER_WAITING));
        if waiting.load(Ordering::Relaxed) != 0
            && waiting.swap(0, Ordering::SeqCst) != 0
            && os::wake(&self.socket.inner, &self.aux, Waiter::Writer).is_err()
        {
            self.peer_gone.store(true, Ordering::Relaxed);
        }
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut state = self.lock_reader();
        let avail = self.wait_data(&mut state)?;
        let n = avail.min(buf.len());
        // Copy in pieces and hand each back at once, so that a writer on another CPU refills
        // the ring while we copy the rest (a pipeline, not a stop-and-go).
        let mut done = 0;
        while done < n {
            let step = (n - done).min(self.piece());
            let (offset, first) = self.rx_piece(&state, step);
            self.map.copy_out(offset, &mut buf[done..done + first]);
            done += first;
            // One wake-up at the end: waking a sleeping writer on our CPU mid-copy would let
            // it preempt us for every piece. A spinning writer sees each piece at once.
            self.consume(&mut state, first, done == n);
        }
        Ok(n)
    }

    /// The most bytes copied before the index is published.
    fn piece(&self) -> usize {
        (self.capacity / 4).min(PIECE)
    }

    /// How much room the ring has, from the peer's read index, validated.
    fn free(&self, state: &mut WriteState) -> io::Result<usize> {
        let head = self
            .map
            .u64_at(Self::ctl(self.tx(), HEAD))
            .load(Ordering::Acquire);
        let used = state.tail.wrapping_sub(head);
        let moved = head.wrapping_sub(state.head_seen);
        if used > self.capacity as u64 || moved > state.tail.wrapping_sub(state.head_seen) {
            return Err(self.violation("the peer's read index is out of range"));
        }
        state.head_seen = head;
        Ok(self.capacity - used as usize)
    }

    fn broken_pipe() -> io::Error {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "shared memory: the peer closed the connection",
        )
    }

    /// How much a writer that wants to write `want` bytes may write now: the free space, but
    /// with the peer's reader on our CPU at most [`SAME_CPU_WINDOW`] bytes ahead of it.
    ///
    /// The two cannot run at once there, so filling the whole ring (1 MiB by default) before
    /// the reader runs only pushes the bytes out of the CPU's caches before they are read; the
    /// socket hands over about 200 KiB at a time. A window of 256 KiB hands them over while
    /// they are still in cache, at the price of a sleep and a wake-up per window. Measured with
    /// `taskset -c 0 localsock bench --shm --quick --repetitions 7`, 6 runs each on a loaded
    /// 2-vCPU VM, median shm/raw ratios: 64 KiB writes 0.94 -> 1.14, 1 MiB writes 0.76 -> 0.84
    /// (128 KiB: 0.99 and 0.75). The CPU is only looked up when a write would go past the
    /// window, so small writes never pay for it.
    fn room(&self, state: &mut WriteState, want: usize) -> io::Result<usize> {
        let free = self.free(state)?;
        let used = self.capacity - free;
        if free == 0 || used.saturating_add(want) <= SAME_CPU_WINDOW || !self.peer_on_my_cpu() {
            return Ok(free);
        }
        Ok(free.min(SAME_CPU_WINDOW.saturating_sub(used)))
    }

    /// Whether the peer last ran on the CPU we run on (always, with one CPU online).
    fn peer_on_my_cpu(&self) -> bool {
        if !self.multi_cpu {
            return true;
        }
        let me = os::current_cpu();
        let peer = self
            .map
            .u32_at(CPU_HINTS + 64 * (1 - self.side))
            .load(Ordering::Relaxed);
        me != os::UNKNOWN_CPU && peer == me
    }

    /// Waits for room to write `want` bytes (see [`room`](Self::room)); returns how many may
    /// be written now.
    fn wait_space(&self, state: &mut WriteState, want: usize) -> io::Result<usize> {
        self.check_poisoned()?;
        let mut started = None;
        let mut rounds = 0;
        let nonblocking = self.nonblocking.load(Ordering::Relaxed);
        loop {
            if state.shut || self.peer_gone.load(Ordering::Relaxed) {
                return Err(Self::broken_pipe());
            }
            let free = self.room(state, want)?;
            if free > 0 {
                return Ok(free);
            }
            if !nonblocking && self.keep_spinning(&mut started, &mut rounds) {
                continue;
            }
            let waiting = self.map.u32_at(Self::ctl(self.tx(), WRITER_WAITING));
            waiting.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.room(state, want)? > 0 {
                waiting.store(0, Ordering::Relaxed);
                continue;
            }
            let alive = if nonblocking {
                let alive = os::drain(&self.socket.inner, &self.aux, Waiter::Writer)?;
                if alive && self.room(state, want)? == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                alive
            } else {
                os::wait(&self.socket.inner, &self.aux, Waiter::Writer)?
            };
            if !alive {
                self.peer_gone.store(true, Ordering::Relaxed);
            }
            started = None;
        }
    }

    /// Where the free space starts, as one contiguous piece of at most `free` bytes.
    fn tx_piece(&self, state: &WriteState, free: usize) -> (usize, usize) {
        let at = (state.tail & self.mask()) as usize;
        (self.data(self.tx()) + at, free.min(self.capacity - at))
    }

    /// Publishes `n` more bytes; with `wake`, wakes the peer's reader if it sleeps.
    fn commit(&self, state: &mut WriteState, n: usize, wake: bool) -> io::Result<()> {
        if n > 0 {
            state.tail = state.tail.wrapping_add(n as u64);
            self.map
                .u64_at(Self::ctl(self.tx(), TAIL))
                .store(state.tail, Ordering::Release);
        }
        if !wake {
            return Ok(());
        }
        fence(Ordering::SeqCst);
        self.wake_reader()
    }

    fn wake_reader(&self) -> io::Result<()> {
        let waiting = self.map.u32_at(Self::ctl(self.tx(), READER_WAITING));
        if waiting.load(Ordering::Relaxed) != 0 && waiting.swap(0, Ordering::SeqCst) != 0 {
            if let Err(e) = os::wake(&self.socket.inner, &self.aux, Waiter::Reader) {
                self.peer_gone.store(true, Ordering::Relaxed);
                return Err(if e.kind() == io::ErrorKind::BrokenPipe {
                    Self::broken_pipe()
                } else {
                    e
                });
            }
        }
        Ok(())
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut state = self.lock_writer();
        let free = self.wait_space(&mut state, buf.len())?;
        let n = free.min(buf.len());
        // Publish piece by piece, so that a reader on another CPU starts copying early.
        let mut done = 0;
        while done < n {
            let step = (n - done).min(self.piece());
            let (offset, first) = self.tx_piece(&state, step);
            self.map.copy_in(offset, &buf[done..done + first]);
            done += first;
            self.commit(&mut state, first, done == n)?;
        }
        self.publish_cpu();
        Ok(n)
    }

    /// End-of-file for the peer: set our ring's "closed" flag and wake its reader.
    fn close_tx(&self) {
        self.map
            .u32_at(Self::ctl(self.tx(), CLOSED))
            .store(1, Ordering::Release);
        fence(Ordering::SeqCst);
        let _ = self.wake_reader();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The mapping is unmapped and the descriptors closed by their own drops.
        self.close_tx();
    }
}

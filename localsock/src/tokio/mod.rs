//! Async local sockets for [tokio](https://docs.rs/tokio) (feature `tokio`, off by default).
//!
//! The same names, options and guarantees as the blocking API — [`LocalListener`],
//! [`LocalStream`], [`ConnectOptions`] — built on tokio's own `UnixStream`/`UnixListener` and
//! `tokio::net::windows::named_pipe`, so they run on tokio's reactor (there is no second one):
//!
//! - every connect is bounded, and retries a busy server with backoff using
//!   `tokio::time::sleep` (never a blocking wait on a runtime thread); dropping the future
//!   cancels it;
//! - [`LocalListener::accept`] is cancel safe: used in `tokio::select!`, it loses no
//!   connection;
//! - binding is the blocking API's secure bind (owner-only mode, safe stale-file reclaim,
//!   removal of the socket file on drop) on Unix; on Windows the first pipe instance is created
//!   with `FILE_FLAG_FIRST_PIPE_INSTANCE`, remote clients are rejected, and spare instances
//!   keep the name taken and clients rarely busy;
//! - [`LocalStream`] implements `AsyncRead` and `AsyncWrite`, and splits into borrowed
//!   ([`LocalStream::split`]) or owned ([`LocalStream::into_split`]) halves.
//!
//! # HTTP and gRPC
//!
//! With opt-in features, the listener serves axum, tonic and hyper, and every request carries
//! its caller's [`PeerCredentials`](crate::PeerCredentials) (pid and uid/gid on Unix, pid
//! and user SID on Windows), read by the OS when the client connected:
//!
//! | feature | server | client |
//! |---|---|---|
//! | `axum` (axum 0.8) | `axum::serve(listener, app)`; handlers take `ConnectInfo<PeerCredentials>` | |
//! | `tonic` (tonic 0.14) | `serve_with_incoming(listener.incoming())` ([`LocalListener::incoming`]); `request.extensions().get::<PeerCredentials>()` | `Endpoint::connect_with_connector(Connector::new(name))` |
//! | `hyper` (hyper 1, hyper-util 0.1) | `hyper_util::server::conn::auto::Builder` on `TokioIo::new(stream)`, see below | hyper-util's `Client::builder(..).build(Connector::new(name))` ([`Connector`]) |
//!
//! These features need a newer Rust than the core crate (rust-version 1.77): `axum` 1.80
//! (hyper-util 0.1.21 needs 1.85), `hyper` 1.85, `tonic` 1.88.
//!
//! With hyper alone, serve each accepted stream with hyper-util's `auto::Builder` (HTTP/1
//! and HTTP/2), handing it the stream's credentials:
//!
//! ```no_run
//! # #[cfg(feature = "hyper")]
//! # mod hyper_server {
//! use hyper::{body::Incoming, service::service_fn, Request, Response};
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto::Builder;
//! use localsock::{tokio::LocalListener, Name};
//!
//! pub async fn serve() -> std::io::Result<()> {
//!     let listener = LocalListener::bind(&Name::new("example-hyper")?)?;
//!     loop {
//!         let stream = listener.accept().await?;
//!         let Ok(peer) = stream.peer_credentials() else { continue }; // already gone
//!         tokio::spawn(async move {
//!             let service = service_fn(move |_: Request<Incoming>| {
//!                 let body = format!("hello, pid {:?}\n", peer.pid());
//!                 async move { Ok::<_, std::convert::Infallible>(Response::new(body)) }
//!             });
//!             let _ = Builder::new(TokioExecutor::new())
//!                 .serve_connection(TokioIo::new(stream), service)
//!                 .await;
//!         });
//!     }
//! }
//! # }
//! # fn main() {
//! #     #[cfg(feature = "hyper")]
//! #     let _ = hyper_server::serve;
//! # }
//! ```
//!
//! Objects can be dropped anywhere, also outside the runtime. Creating or connecting one needs
//! a runtime with the I/O driver (and the time driver for connects): `enable_all()`, as
//! `#[tokio::main]` does.
//!
//! On Unix, `LocalStream::from_std`/`into_std` and `LocalListener::from_std`/`into_std` convert
//! between the blocking and the async types. Windows has no such conversions: a pipe handle
//! joined to tokio's I/O completion port (and every duplicate of it, see
//! [`crate::LocalStream::try_clone`]) can no longer be used safely for the blocking backend's
//! overlapped I/O.
//!
//! # Examples
//!
//! ```
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use localsock::tokio::{LocalListener, LocalStream};
//! use localsock::Name;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("localsock-doc-tokio-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # #[cfg(unix)]
//! # let name = Name::path(dir.join("echo.sock"))?;
//! # #[cfg(windows)]
//! let name = Name::new("localsock-tokio-example")?;
//! let listener = LocalListener::bind(&name)?;
//! let server = tokio::spawn(async move {
//!     let mut stream = listener.accept().await?;
//!     let mut buf = [0; 4];
//!     stream.read_exact(&mut buf).await?;
//!     stream.write_all(&buf).await?;
//!     std::io::Result::Ok(())
//! });
//! let mut client = LocalStream::connect(&name).await?;
//! client.write_all(b"ping").await?;
//! let mut reply = [0; 4];
//! client.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"ping");
//! # server.await.unwrap()?;
//! # Ok(()) }
//! ```

#[cfg(feature = "hyper")]
mod connector;
mod listener;
mod message;
#[cfg(any(feature = "axum", feature = "tonic"))]
mod serve;
#[cfg(all(
    feature = "shm",
    any(target_os = "linux", target_os = "freebsd", target_os = "macos")
))]
mod shm;
mod stream;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use self::unix as imp;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use self::windows as imp;

#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub use self::connector::{Connecting, Connector};
pub use self::listener::LocalListener;
pub use self::message::{MessageListener, MessageStream};
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub use self::serve::{Accepted, Incoming};
#[cfg(all(
    feature = "shm",
    any(target_os = "linux", target_os = "freebsd", target_os = "macos")
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "shm",
        any(target_os = "linux", target_os = "freebsd", target_os = "macos")
    )))
)]
pub use self::shm::ShmStream;
pub use self::stream::{
    ConnectOptions, LocalStream, OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf,
};

// The public types can move between and be shared by tasks on a multi-threaded runtime:
// checked at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<LocalStream>();
    send_sync::<LocalListener>();
    send_sync::<ConnectOptions>();
    send_sync::<OwnedReadHalf>();
    send_sync::<OwnedWriteHalf>();
    send_sync::<ReuniteError>();
    send_sync::<MessageStream>();
    send_sync::<MessageListener>();
    #[cfg(all(
        feature = "shm",
        any(target_os = "linux", target_os = "freebsd", target_os = "macos")
    ))]
    send_sync::<ShmStream>();
};

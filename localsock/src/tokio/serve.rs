//! Serving HTTP and gRPC on a [`LocalListener`]: axum's `Listener` (feature `axum`), tonic's
//! incoming-connection stream (feature `tonic`), and the accept policy they share.
//!
//! Both give every connection its peer's [`PeerCredentials`], read once at accept: a handler
//! sees who called without another system call, and a client that has already vanished (its
//! credentials unreadable, which can happen on Windows) is dropped there and then.

use std::io;
use std::time::Duration;

use super::{LocalListener, LocalStream};
use crate::PeerCredentials;

/// How long a serving loop pauses after an accept error that is neither about one connection
/// (retried at once) nor a resource shortage (already paused for by `accept` itself), so that
/// it does not spin on an error that repeats.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

impl LocalListener {
    /// Accepts a client together with its credentials. A client whose credentials cannot be
    /// read is gone already: it is dropped and the next one is awaited. Cancel safe, as
    /// [`LocalListener::accept`].
    async fn accept_with_peer(&self) -> io::Result<(LocalStream, PeerCredentials)> {
        loop {
            let stream = self.accept().await?;
            if let Ok(peer) = stream.peer_credentials() {
                return Ok((stream, peer));
            }
        }
    }
}

/// How long to wait after accept failed with `e` before accepting again. Running out of
/// descriptors or memory is not paused for here: [`LocalListener::accept`] has already waited
/// before returning it (the one accept policy, `listener::pause_after_accept_error`), so
/// pausing again would only double the wait. What is left is an error this code does not know,
/// which may repeat at once; a serving loop that cannot return it (axum) must not spin on it.
fn pause_after(e: &io::Error) -> Option<Duration> {
    if crate::listener::pause_after_accept_error(e).is_some() {
        return None;
    }
    match e.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected
        | io::ErrorKind::Interrupted => None,
        _ => Some(ACCEPT_ERROR_PAUSE),
    }
}

#[cfg(feature = "axum")]
mod axum_impl {
    use std::io;

    use axum::extract::connect_info::Connected;
    use axum::serve::{IncomingStream, Listener};

    use super::pause_after;
    use crate::tokio::{LocalListener, LocalStream};
    use crate::PeerCredentials;

    /// `axum::serve(listener, app)` serves on a local socket or named pipe (feature `axum`).
    ///
    /// Each connection's address is its peer's [`PeerCredentials`], so handlers extract the
    /// caller with `ConnectInfo<PeerCredentials>` when the app is served with
    /// `into_make_service_with_connect_info::<PeerCredentials>()`. Accept errors are retried,
    /// after a short pause when they are not about one connection (`EMFILE`): axum's
    /// `Listener::accept` cannot fail. `local_addr` gives this process's own credentials
    /// ([`PeerCredentials::current`]), what the server's clients see as their peer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use axum::{extract::ConnectInfo, routing::get, Router};
    /// use localsock::{tokio::LocalListener, Name, PeerCredentials};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> std::io::Result<()> {
    /// let app = Router::new().route(
    ///     "/whoami",
    ///     get(|ConnectInfo(peer): ConnectInfo<PeerCredentials>| async move {
    ///         format!("pid {:?} uid {:?} sid {:?}", peer.pid(), peer.uid(), peer.user_sid())
    ///     }),
    /// );
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>(); // stop.send(()) stops it
    /// # drop(stop);
    /// let listener = LocalListener::bind(&Name::new("example-http")?)?;
    /// axum::serve(listener, app.into_make_service_with_connect_info::<PeerCredentials>())
    ///     .with_graceful_shutdown(async { stopped.await.unwrap_or(()) })
    ///     .await
    /// # }
    /// ```
    impl Listener for LocalListener {
        type Io = LocalStream;
        type Addr = PeerCredentials;

        async fn accept(&mut self) -> (LocalStream, PeerCredentials) {
            loop {
                match self.accept_with_peer().await {
                    Ok(accepted) => return accepted,
                    Err(e) => {
                        if let Some(pause) = pause_after(&e) {
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
            }
        }

        fn local_addr(&self) -> io::Result<PeerCredentials> {
            PeerCredentials::current()
        }
    }

    /// `ConnectInfo<PeerCredentials>`: the caller of an axum handler served on a
    /// [`LocalListener`] (feature `axum`).
    impl Connected<IncomingStream<'_, LocalListener>> for PeerCredentials {
        fn connect_info(stream: IncomingStream<'_, LocalListener>) -> PeerCredentials {
            stream.remote_addr().clone()
        }
    }
}

#[cfg(feature = "tonic")]
pub use self::tonic_impl::{Accepted, Incoming};

#[cfg(feature = "tonic")]
mod tonic_impl {
    use std::fmt;
    use std::future::Future;
    use std::io::{self, IoSlice};
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{ready, Context, Poll};

    use futures_core::Stream;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use super::pause_after;
    use crate::tokio::{LocalListener, LocalStream};
    use crate::PeerCredentials;

    type AcceptFuture =
        Pin<Box<dyn Future<Output = io::Result<(LocalStream, PeerCredentials)>> + Send>>;

    impl LocalListener {
        /// Turns the listener into a stream of accepted connections, each with its peer's
        /// credentials: what tonic's `Server::serve_with_incoming` takes (feature `tonic`).
        ///
        /// A request's caller is then `request.extensions().get::<PeerCredentials>()`. When
        /// the server stops, the stream is dropped and with it the listener, which removes
        /// its socket file (Unix).
        ///
        /// Clients must send a valid HTTP/2 `:authority`, such as `localhost` (what
        /// [`Connector`](crate::tokio::Connector) users, grpc-go and grpcurl send): grpc-core
        /// (Python, C++, Ruby grpcio) sends the socket path by default, which hyper's h2
        /// rejects with `PROTOCOL_ERROR` (hyperium/h2#487); set its
        /// `grpc.default_authority` channel option to `localhost`.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// use localsock::{tokio::LocalListener, Name};
        ///
        /// # #[tokio::main]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// # let greeter = tonic::service::Routes::default();
        /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>(); // stop.send(()) stops it
        /// # drop(stop);
        /// let listener = LocalListener::bind(&Name::new("example-grpc")?)?;
        /// tonic::transport::Server::builder()
        ///     .add_routes(greeter) // your services, as with TCP
        ///     .serve_with_incoming_shutdown(listener.incoming(), async {
        ///         stopped.await.unwrap_or(())
        ///     })
        ///     .await?;
        /// # Ok(()) }
        /// ```
        pub fn incoming(self) -> Incoming {
            Incoming {
                listener: Arc::new(self),
                accept: None,
                pause: None,
            }
        }
    }

    /// The connections a [`LocalListener`] accepts, as a `Stream` (made by
    /// [`LocalListener::incoming`]; feature `tonic`).
    ///
    /// An accept error is yielded (tonic logs it and carries on); when it is not about one
    /// connection (`EMFILE`), the next accept waits a short pause first, so a consumer that
    /// just carries on does not spin. Clients that are gone before their credentials could be
    /// read are skipped.
    pub struct Incoming {
        listener: Arc<LocalListener>,
        accept: Option<AcceptFuture>,
        pause: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl Incoming {
        /// The listener whose connections these are.
        pub fn listener(&self) -> &LocalListener {
            &self.listener
        }
    }

    impl Stream for Incoming {
        type Item = io::Result<Accepted>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = &mut *self;
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            let listener = &this.listener;
            let accept = this.accept.get_or_insert_with(|| {
                let listener = Arc::clone(listener);
                Box::pin(async move { listener.accept_with_peer().await })
            });
            let result = ready!(accept.as_mut().poll(cx));
            this.accept = None;
            Poll::Ready(Some(match result {
                Ok((stream, peer)) => Ok(Accepted { stream, peer }),
                Err(e) => {
                    this.pause = pause_after(&e).map(|d| Box::pin(tokio::time::sleep(d)));
                    Err(e)
                }
            }))
        }
    }

    impl fmt::Debug for Incoming {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Incoming")
                .field("listener", &self.listener)
                .field("accepting", &self.accept.is_some())
                .field("pausing", &self.pause.is_some())
                .finish()
        }
    }

    /// A connection accepted by [`Incoming`]: the stream and its peer's credentials, read at
    /// accept (feature `tonic`).
    ///
    /// It is tonic's connection type: its `Connected::ConnectInfo` is [`PeerCredentials`], so
    /// every request served on it carries them in its extensions.
    #[derive(Debug)]
    pub struct Accepted {
        stream: LocalStream,
        peer: PeerCredentials,
    }

    impl Accepted {
        /// Who connected.
        pub fn peer_credentials(&self) -> &PeerCredentials {
            &self.peer
        }

        /// The stream and the peer's credentials.
        pub fn into_parts(self) -> (LocalStream, PeerCredentials) {
            (self.stream, self.peer)
        }
    }

    /// `request.extensions().get::<PeerCredentials>()` in a tonic handler.
    impl tonic::transport::server::Connected for Accepted {
        type ConnectInfo = PeerCredentials;

        fn connect_info(&self) -> PeerCredentials {
            self.peer.clone()
        }
    }

    impl AsyncRead for Accepted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.stream).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Accepted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.stream).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.stream.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.stream).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.stream).poll_shutdown(cx)
        }
    }
}

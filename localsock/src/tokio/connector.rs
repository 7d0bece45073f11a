//! [`Connector`]: HTTP and gRPC clients (hyper-util, tonic) reaching a [`Name`] (feature
//! `hyper`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;

use super::{ConnectOptions, LocalStream};
use crate::Name;

/// A connector for HTTP clients: a tower `Service<Uri>` that connects to one [`Name`], for
/// hyper-util's pooled `Client` and tonic's `Endpoint::connect_with_connector` (feature
/// `hyper`).
///
/// **The URI's host is ignored**: every connection goes to the connector's name, whatever the
/// request's URI says. Write URIs as `http://localhost/path` (the `Host` header and gRPC's
/// `:authority` are then `localhost`, as curl and grpc-core send over Unix sockets). One
/// connector, and so one client, reaches one name; a pooled client keeps the connections
/// alive and reuses them as over TCP. Only `http` (clear text) makes sense: the OS already
/// keeps the bytes local and tells each side who the other is.
///
/// Each connect is bounded and retried like [`ConnectOptions::connect`] (by default up to
/// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT)); with
/// [`ConnectOptions::wait_for_server`] a client started before its server connects as soon as
/// the server is up. Errors are localsock's `io::Error`s (`NotFound`, `ConnectionRefused`,
/// `PermissionDenied`, `TimedOut`, naming the endpoint); the clients wrap them, and
/// `std::error::Error::source` leads back to them.
///
/// # Examples
///
/// A hyper-util client:
///
/// ```no_run
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
/// use localsock::{tokio::Connector, Name};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder(TokioExecutor::new())
///     .build::<_, String>(Connector::new(Name::new("example-http")?)); // String: the request body
/// let response = client.get("http://localhost/".parse()?).await?;
/// println!("{}", response.status());
/// # Ok(()) }
/// ```
///
/// A tonic channel, for any generated client (`GreeterClient::new(channel)`), that waits up to
/// five seconds for the server to come up:
///
/// ```no_run
/// # #![allow(unused_imports, dead_code)] // without feature "tonic" the example is not compiled
/// use std::time::Duration;
/// use localsock::{tokio::{ConnectOptions, Connector}, Name};
///
/// # #[cfg(feature = "tonic")]
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let mut options = ConnectOptions::new();
/// options.timeout(Duration::from_secs(5)).wait_for_server(true);
/// let connector = Connector::with_options(Name::new("example-grpc")?, options);
/// let channel = tonic::transport::Endpoint::from_static("http://localhost")
///     .connect_with_connector(connector)
///     .await?;
/// # drop(channel);
/// # Ok(()) }
/// # fn main() {}
/// ```
#[derive(Clone, Debug)]
pub struct Connector {
    name: Name,
    options: ConnectOptions,
}

impl Connector {
    /// Connects to `name` with the default [`ConnectOptions`].
    pub fn new(name: Name) -> Connector {
        Connector::with_options(name, ConnectOptions::new())
    }

    /// Connects to `name` with `options` (deadline, backoff, waiting for the server).
    pub fn with_options(name: Name, options: ConnectOptions) -> Connector {
        Connector { name, options }
    }

    /// The name every connection goes to.
    pub fn name(&self) -> &Name {
        &self.name
    }
}

/// The future of [`Connector`]'s `call`: a connected stream, wrapped for hyper.
pub type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<LocalStream>>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<LocalStream>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Connects to the connector's name; `uri` is not looked at.
    fn call(&mut self, _uri: Uri) -> Connecting {
        let name = self.name.clone();
        let options = self.options.clone();
        Box::pin(async move { options.connect(&name).await.map(TokioIo::new) })
    }
}

/// What hyper-util's pooled client asks of a connection: nothing special (not proxied, no
/// ALPN); HTTP/2 is chosen by the client's settings (`http2_only`), as tonic does.
impl Connection for LocalStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

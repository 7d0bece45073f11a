//! gRPC over localsock with tonic: the canonical `helloworld.Greeter`, whose server knows who
//! calls it (pid and uid on Unix, pid and user SID on Windows) and serves only its own user.
//!
//! ```text
//! cargo run --features tonic --example grpc_greeter -- server greeter
//! cargo run --features tonic --example grpc_greeter -- client greeter [WHO] [COUNT]
//! ```
//!
//! `NAME` (`greeter` above) is a localsock name: a socket in your private runtime directory or
//! a path on Unix, `\\.\pipe\greeter` on Windows. The same service also runs on TCP, the
//! one-line switch for going beyond one machine: give `tcp:127.0.0.1:50051` as the name to
//! both server and client.
//!
//! The server prints one line per call, stops when its standard input ends (Enter, Ctrl-D),
//! and then removes its socket file. The client waits up to 10 s for the server to come up,
//! so it can be started first. Other gRPC clients can call the server too, e.g. Python's
//! grpcio (see `tests/http.rs`), told to send `localhost` as the HTTP/2 authority (by default
//! it sends the socket path, which hyper's h2 rejects with `PROTOCOL_ERROR`):
//! `grpc.insecure_channel("unix:PATH", options=[("grpc.default_authority", "localhost")])`.

mod helloworld;

use std::time::Duration;

use helloworld::{Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest};
use localsock::tokio::{ConnectOptions, Connector, LocalListener};
use localsock::{Name, PeerCredentials};
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct MyGreeter {
    me: PeerCredentials,
}

impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        // Over localsock every request carries its caller's credentials, read by the OS.
        match request.extensions().get::<PeerCredentials>() {
            Some(peer) => {
                println!(
                    "SayHello from pid {} {} name {:?}",
                    show(peer.pid()),
                    user(peer),
                    request.get_ref().name
                );
                // Authorisation by identity, no tokens: only this server's own user.
                if !peer.same_user(&self.me) {
                    return Err(Status::permission_denied("only my own user may call"));
                }
            }
            // On TCP there is an address but no identity.
            None => println!(
                "SayHello from tcp {} name {:?}",
                request.remote_addr().map_or("?".into(), |a| a.to_string()),
                request.get_ref().name
            ),
        }
        let message = format!("Hello {}!", request.into_inner().name);
        Ok(Response::new(HelloReply { message }))
    }
}

fn show(v: Option<u32>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

fn user(peer: &PeerCredentials) -> String {
    match (peer.uid(), peer.user_sid()) {
        (Some(uid), _) => format!("uid {uid}"),
        (None, Some(sid)) => format!("sid {sid}"),
        (None, None) => "user ?".into(),
    }
}

async fn server(name: &str) -> Result<(), Error> {
    let greeter = GreeterServer::new(MyGreeter {
        me: PeerCredentials::current()?,
    });
    let stop = stdin_closed();
    let mut builder = Server::builder();
    let router = builder.add_service(greeter);
    if let Some(addr) = name.strip_prefix("tcp:") {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on tcp:{}", listener.local_addr()?);
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        router.serve_with_incoming_shutdown(incoming, stop).await?;
    } else {
        // The localsock lines: bind a name, serve its connections.
        let listener = LocalListener::bind(&Name::new(name)?)?;
        println!("listening on {}", listener.name());
        router
            .serve_with_incoming_shutdown(listener.incoming(), stop)
            .await?;
    }
    println!("stopped");
    Ok(())
}

async fn client(name: &str, who: &str, count: usize) -> Result<(), Error> {
    let channel = if let Some(addr) = name.strip_prefix("tcp:") {
        Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?
    } else {
        // The localsock lines: a connector for the name; the URI's host is not used.
        let mut options = ConnectOptions::new();
        options
            .timeout(Duration::from_secs(10))
            .wait_for_server(true);
        let connector = Connector::with_options(Name::new(name)?, options);
        Endpoint::from_static("http://localhost")
            .connect_with_connector(connector)
            .await?
    };
    let mut client = GreeterClient::new(channel);
    for _ in 0..count {
        let reply = client.say_hello(HelloRequest { name: who.into() }).await?;
        println!("{}", reply.into_inner().message);
    }
    Ok(())
}

/// Completes when standard input ends (or a line is entered).
fn stdin_closed() -> impl std::future::Future<Output = ()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_line(&mut String::new());
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: grpc_greeter server NAME | client NAME [WHO] [COUNT]  (NAME: a localsock name or tcp:HOST:PORT)";
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("server"), Some(name)) => server(name).await,
        (Some("client"), Some(name)) => {
            let who = args.get(2).map_or("world", String::as_str);
            let count = match args.get(3) {
                Some(n) => n.parse()?,
                None => 1,
            };
            client(name, who, count).await
        }
        _ => Err(usage.into()),
    }
}

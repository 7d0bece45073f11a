//! gRPC and HTTP over localsock against TCP loopback, in one run: the same tonic unary
//! `SayHello` (client concurrency 1 and 32: calls/s, p50 and p99 latency) and HTTP/1.1
//! `GET /` with keep-alive (hyper-util's pooled client against axum, requests/s).
//!
//! ```text
//! cargo run --release --features tonic,axum --example grpc_bench            # ~20 s
//! cargo run --release --features tonic,axum --example grpc_bench -- --quick
//! cargo run --release --features tonic,axum --example grpc_bench -- --rounds 9 --calls 5000
//! ```
//!
//! Servers and clients share one tokio runtime (multi-threaded, one worker per core) in one
//! process; both transports are served at once and the rounds alternate between them
//! (localsock, TCP, localsock, ...), so both see the same machine load. Each figure is the
//! median over the rounds. `--calls N` is the calls per round at concurrency 1 (concurrency
//! 32 makes 8 N).

mod helloworld;

use std::future::{Future, IntoFuture};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::serve::ListenerExt;
use helloworld::{Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use localsock::tokio::{Connector, LocalListener};
use localsock::Name;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Hello;

impl Greeter for Hello {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let message = format!("Hello {}!", request.into_inner().name);
        Ok(Response::new(HelloReply { message }))
    }
}

/// One measurement: how many calls in how long, and each call's latency.
struct Run {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `calls` calls of `call` spread over `concurrency` tasks, each with its own clone of
/// the client.
async fn measure<C, F, Fut>(client: &C, concurrency: usize, calls: usize, call: F) -> Run
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = C> + Send,
{
    let per_task = calls / concurrency;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut client = client.clone();
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                client = call(client).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::with_capacity(calls);
    for t in tasks {
        lat.extend(t.await.expect("bench task panicked"));
    }
    let elapsed = start.elapsed();
    lat.sort();
    Run {
        rate: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: lat[lat.len() / 2],
        p99: lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
    }
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median_d(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn grpc_call(mut client: GreeterClient) -> GreeterClient {
    client
        .say_hello(HelloRequest {
            name: "bench".into(),
        })
        .await
        .expect("SayHello failed");
    client
}

type LocalHttp = Client<Connector, Body>;
type TcpHttp = Client<HttpConnector, Body>;

async fn get_and_read<C>(client: Client<C, Body>, uri: &'static str) -> Client<C, Body>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let response = client.get(uri.parse().unwrap()).await.expect("GET failed");
    let body = axum::body::to_bytes(Body::new(response.into_body()), 1 << 20)
        .await
        .expect("reading the body failed");
    assert_eq!(&body[..], b"hello");
    client
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>())
            .transpose()
    };
    let quick = args.iter().any(|a| a == "--quick");
    let rounds = opt("--rounds")?.unwrap_or(if quick { 3 } else { 5 });
    let calls = opt("--calls")?.unwrap_or(if quick { 500 } else { 2000 });

    // Servers: gRPC and HTTP, each on a localsock name and on TCP loopback.
    let dir = std::env::temp_dir().join(format!("localsock-grpc-bench-{}", std::process::id()));
    #[cfg(unix)]
    let (grpc_name, http_name) = {
        std::fs::create_dir_all(&dir)?;
        (
            Name::path(dir.join("grpc.sock"))?,
            Name::path(dir.join("http.sock"))?,
        )
    };
    #[cfg(windows)]
    let (grpc_name, http_name) = {
        let id = std::process::id();
        (
            Name::new(format!("localsock-grpc-bench-{id}"))?,
            Name::new(format!("localsock-http-bench-{id}"))?,
        )
    };
    let grpc_local = LocalListener::bind(&grpc_name)?;
    tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(Hello))
            .serve_with_incoming(grpc_local.incoming()),
    );
    let grpc_tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let grpc_addr = grpc_tcp.local_addr()?;
    tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(Hello))
            // TCP_NODELAY, as `Server::serve(addr)` sets it.
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(grpc_tcp).with_nodelay(Some(true)),
            ),
    );
    let app = axum::Router::new().route("/", get(|| async { "hello" }));
    let http_local = LocalListener::bind(&http_name)?;
    tokio::spawn(axum::serve(http_local, app.clone()).into_future());
    let http_tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http_addr = http_tcp.local_addr()?;
    let http_tcp = http_tcp.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(axum::serve(http_tcp, app).into_future());

    // Clients: one channel (HTTP/2, multiplexed) or one pooled client per transport.
    let local_channel: Channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(Connector::new(grpc_name.clone()))
        .await?;
    let tcp_channel: Channel = Endpoint::from_shared(format!("http://{grpc_addr}"))?
        .connect()
        .await?;
    let local_grpc = GreeterClient::new(local_channel);
    let tcp_grpc = GreeterClient::new(tcp_channel);
    let local_http: LocalHttp =
        Client::builder(TokioExecutor::new()).build(Connector::new(http_name.clone()));
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let tcp_http: TcpHttp = Client::builder(TokioExecutor::new()).build(http);
    let tcp_uri: &'static str = Box::leak(format!("http://{http_addr}/").into_boxed_str());

    println!(
        "grpc_bench: {rounds} rounds, alternating localsock/TCP; {calls} calls per round at concurrency 1, {} at 32",
        calls * 8
    );
    let workloads: [(&str, usize); 4] = [("grpc", 1), ("grpc", 32), ("http", 1), ("http", 32)];
    let mut results = Vec::new();
    for (kind, conc) in workloads {
        let n = if conc == 1 { calls } else { calls * 8 };
        // Warm-up: connections made, code paths paged in.
        let warm = n / 10 + conc;
        let mut local = Vec::new();
        let mut tcp = Vec::new();
        for round in 0..=rounds {
            for transport in ["localsock", "tcp"] {
                let count = if round == 0 { warm } else { n };
                let run = match (kind, transport) {
                    ("grpc", "localsock") => measure(&local_grpc, conc, count, grpc_call).await,
                    ("grpc", _) => measure(&tcp_grpc, conc, count, grpc_call).await,
                    ("http", "localsock") => {
                        measure(&local_http, conc, count, |c| {
                            get_and_read(c, "http://localhost/")
                        })
                        .await
                    }
                    _ => measure(&tcp_http, conc, count, move |c| get_and_read(c, tcp_uri)).await,
                };
                if round > 0 {
                    if transport == "tcp" {
                        &mut tcp
                    } else {
                        &mut local
                    }
                    .push(run);
                }
            }
        }
        results.push((kind, conc, summarise(local), summarise(tcp)));
    }

    println!();
    println!("| workload | concurrency | transport | calls/s | p50 µs | p99 µs |");
    println!("|---|---:|---|---:|---:|---:|");
    for (kind, conc, local, tcp) in &results {
        let what = if *kind == "grpc" {
            "gRPC SayHello (tonic)"
        } else {
            "HTTP/1.1 GET / keep-alive (axum)"
        };
        for (transport, r) in [("localsock", local), ("TCP loopback", tcp)] {
            println!(
                "| {what} | {conc} | {transport} | {:.0} | {:.1} | {:.1} |",
                r.rate,
                r.p50.as_secs_f64() * 1e6,
                r.p99.as_secs_f64() * 1e6
            );
        }
    }
    println!();
    for (kind, conc, local, tcp) in &results {
        println!(
            "{kind} c={conc}: localsock/TCP rate {:.2}x, p50 {:.2}x, p99 {:.2}x",
            local.rate / tcp.rate,
            local.p50.as_secs_f64() / tcp.p50.as_secs_f64(),
            local.p99.as_secs_f64() / tcp.p99.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn summarise(runs: Vec<Run>) -> Run {
    Run {
        rate: median_f(runs.iter().map(|r| r.rate).collect()),
        p50: median_d(runs.iter().map(|r| r.p50).collect()),
        p99: median_d(runs.iter().map(|r| r.p99).collect()),
    }
}

//! HTTP over localsock with axum: `GET /` says hello, `GET /whoami` tells the caller who it
//! is, as the OS saw it (pid and uid/gid on Unix, pid and user SID on Windows).
//!
//! ```text
//! cargo run --features axum --example axum_hello -- hello
//! curl --unix-socket "$XDG_RUNTIME_DIR/hello" http://localhost/whoami
//! ```
//!
//! `NAME` (`hello` above) is a localsock name: a socket in your private runtime directory
//! (`$XDG_RUNTIME_DIR`, else `/tmp/localsock-<uid>`) or a path on Unix, `\\.\pipe\hello` on
//! Windows. The server stops when its standard input ends (Enter, Ctrl-D), letting requests
//! in flight finish, and then removes its socket file.

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use localsock::tokio::LocalListener;
use localsock::{Name, PeerCredentials};

/// `{"pid":1234,"uid":1000,"gid":1000,"sid":null}`; a field Windows or Unix does not have is
/// `null`.
async fn whoami(
    ConnectInfo(peer): ConnectInfo<PeerCredentials>,
) -> ([(&'static str, &'static str); 1], String) {
    let num = |v: Option<u32>| v.map_or("null".to_string(), |v| v.to_string());
    // SIDs are `S-1-5-...`: nothing in them needs JSON escaping.
    let sid = peer
        .user_sid()
        .map_or("null".to_string(), |s| format!("\"{s}\""));
    let body = format!(
        "{{\"pid\":{},\"uid\":{},\"gid\":{},\"sid\":{}}}\n",
        num(peer.pid()),
        num(peer.uid()),
        num(peer.gid()),
        sid
    );
    ([("content-type", "application/json")], body)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).ok_or("usage: axum_hello NAME")?;
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/whoami", get(whoami));

    let listener = LocalListener::bind(&Name::new(&name)?)?;
    println!("listening on {}", listener.name());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<PeerCredentials>(),
    )
    .with_graceful_shutdown(stdin_closed())
    .await?;
    println!("stopped");
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

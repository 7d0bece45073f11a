//! An async echo server and client with `localsock::tokio`.
//!
//! Try it in one terminal:
//!
//! ```text
//! cargo run --features tokio --example tokio_echo            # server and 3 clients in one go
//! ```
//!
//! or in two:
//!
//! ```text
//! cargo run --features tokio --example tokio_echo -- server
//! cargo run --features tokio --example tokio_echo -- client "hello there"
//! ```
//!
//! A third argument picks the name (default `localsock-tokio-echo`: a socket in your private
//! runtime directory on Unix, `\\.\pipe\localsock-tokio-echo` on Windows).

use std::io;
use std::time::Duration;

use localsock::tokio::{ConnectOptions, LocalListener, LocalStream};
use localsock::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("demo");
    let name = Name::new(args.get(2).map_or("localsock-tokio-echo", String::as_str))?;
    match mode {
        "server" => {
            let listener = LocalListener::bind(&name)?;
            println!("echo server listening at {name} (Ctrl-C to stop)");
            serve(listener).await
        }
        "client" => {
            let message = args.get(1).map_or("hello", String::as_str);
            let reply = ask(&name, message).await?;
            println!("{reply}");
            Ok(())
        }
        "demo" => {
            let listener = LocalListener::bind(&name)?;
            println!("echo server listening at {name}");
            let server = tokio::spawn(serve(listener));
            for word in ["one", "two", "three"] {
                println!("sent {word:?}, got back {:?}", ask(&name, word).await?);
            }
            server.abort(); // dropping the listener removes its socket file
            Ok(())
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown mode {other:?}: use server, client or nothing"),
        )),
    }
}

/// Accepts clients forever; each one gets its own task that echoes until the client is done.
async fn serve(listener: LocalListener) -> io::Result<()> {
    loop {
        let mut stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                // E.g. out of file descriptors: say so, pause, keep serving.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let (mut reader, mut writer) = stream.split();
            if let Err(e) = tokio::io::copy(&mut reader, &mut writer).await {
                eprintln!("client: {e}");
            }
        });
    }
}

/// Connects (waiting up to 2 s for a server that is starting), sends `message` and reads
/// its echo. Dropping the stream at the end closes the connection, which ends the server's
/// copy for this client.
async fn ask(name: &Name, message: &str) -> io::Result<String> {
    let mut stream: LocalStream = ConnectOptions::new()
        .timeout(Duration::from_secs(2))
        .wait_for_server(true)
        .connect(name)
        .await?;
    stream.write_all(message.as_bytes()).await?;
    let mut reply = vec![0; message.len()];
    stream.read_exact(&mut reply).await?;
    String::from_utf8(reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

//! Plain TCP backends in one process: echo, sink and source on three consecutive ports.
//!
//! Each first skips one TLS record (the ClientHello the gateway replays: a 5-byte header and its
//! length), then:
//! - echo: writes back every byte until the client's end of stream, then closes;
//! - sink: reads frames of a flag byte and, while the flag is 1, [`CHUNK`] bytes; at flag 0 it
//!   writes the byte count (u64, big-endian) and closes;
//! - source: writes a fixed pattern until the client sends any byte (or ends), then closes;
//! - plain echo: echo without skipping a record, for a gateway that terminates TLS.
//!
//! Neither bulk protocol needs half-close: some proxies close both directions on the first FIN.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Backend kinds, in port order from the base port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Echo, at the base port.
    Echo = 0,
    /// Sink, at base + 1.
    Sink = 1,
    /// Source, at base + 2.
    Source = 2,
    /// Plain echo (no TLS record to skip: behind a gateway that terminates TLS), at base + 3.
    Plain = 3,
}

/// Bytes per write of the source, and per read everywhere.
pub const CHUNK: usize = 256 * 1024;

/// Serves until SIGTERM/SIGINT or `max` passes.
pub async fn serve(ip: IpAddr, base: u16, max: Duration) -> io::Result<()> {
    let mut tasks = Vec::new();
    for kind in [Kind::Echo, Kind::Sink, Kind::Source, Kind::Plain] {
        let addr = SocketAddr::new(ip, base + kind as u16);
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(addr)?;
        let l = sock.listen(4096)?;
        tasks.push(tokio::spawn(accept(l, kind)));
    }
    eprintln!(
        "backends: echo {ip}:{base}, sink :{}, source :{}, plain echo :{}",
        base + 1,
        base + 2,
        base + 3
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = tokio::time::sleep(max) => eprintln!("backends: --max-seconds passed"),
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

async fn accept(l: TcpListener, kind: Kind) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                tokio::spawn(async move {
                    let _ = s.set_nodelay(true);
                    let _ = handle(s, kind).await;
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn skip_record(s: &mut TcpStream) -> io::Result<()> {
    let mut h = [0u8; 5];
    s.read_exact(&mut h).await?;
    let mut left = usize::from(u16::from_be_bytes([h[3], h[4]]));
    let mut buf = [0u8; 2048];
    while left > 0 {
        let n = s.read(&mut buf[..left.min(2048)]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
    }
    Ok(())
}

async fn handle(mut s: TcpStream, kind: Kind) -> io::Result<()> {
    if kind != Kind::Plain {
        skip_record(&mut s).await?;
    }
    match kind {
        Kind::Echo | Kind::Plain => {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await?;
            }
        }
        Kind::Sink => {
            let mut buf = vec![0u8; CHUNK + 1];
            let mut total = 0u64;
            loop {
                s.read_exact(&mut buf[..1]).await?;
                if buf[0] == 0 {
                    break;
                }
                s.read_exact(&mut buf[1..]).await?;
                total += CHUNK as u64;
            }
            s.write_all(&total.to_be_bytes()).await?;
        }
        Kind::Source => {
            let (mut r, mut w) = s.into_split();
            let done = Arc::new(AtomicBool::new(false));
            let d = Arc::clone(&done);
            let reader = tokio::spawn(async move {
                let mut b = [0u8; 1];
                let _ = r.read(&mut b).await;
                d.store(true, Ordering::Relaxed);
            });
            let data = pattern();
            while !done.load(Ordering::Relaxed) {
                tokio::select! {
                    r = w.write_all(&data) => r?,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            let _ = reader.await;
        }
    }
    Ok(())
}

/// The source's bytes.
pub fn pattern() -> Vec<u8> {
    (0..CHUNK).map(|i| (i % 251) as u8).collect()
}

//! The relay on its own, between two pairs of connected loopback sockets.

use std::time::Duration;

use sniway_proxy::relay::{self, Replay};
use sniway_proxy::watchdog::{Deadlines, Watchdog};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// Two connected sockets: (the one that connected, the one accepted).
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let near = TcpStream::connect(l.local_addr().expect("addr")).await.expect("connect");
    let (far, _) = l.accept().await.expect("accept");
    (near, far)
}

/// Everything `s` reads until end of stream.
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got)).await.expect("in time").expect("read");
    got
}

#[tokio::test]
async fn the_unsent_part_of_the_replay_goes_first_and_counts_with_the_sent_part() {
    let (mut client, proxy_client) = pair().await;
    let (proxy_backend, mut backend) = pair().await;
    // The first 6 bytes reached the backend while connecting; the relay writes the rest.
    let replay = Replay { buf: b"HELLO:replay-tail|".to_vec(), sent: 6 };
    let relaying = tokio::spawn(async move {
        let mut metered = (0, 0);
        let mut w = Watchdog::none();
        let r = relay::relay(&proxy_client, &proxy_backend, replay, &mut w, |u, d| {
            metered.0 += u;
            metered.1 += d;
        })
        .await;
        assert_eq!(metered, (r.0.client_to_backend, r.0.backend_to_client), "every byte metered");
        drop((proxy_client, proxy_backend));
        r
    });
    client.write_all(b"after").await.expect("write");
    client.shutdown().await.expect("shutdown");
    assert_eq!(read_all(&mut backend).await, b"replay-tail|after");
    backend.write_all(b"back").await.expect("write back");
    backend.shutdown().await.expect("shutdown");
    assert_eq!(read_all(&mut client).await, b"back");
    let (t, result) = tokio::time::timeout(WAIT, relaying).await.expect("ended").expect("task");
    result.expect("clean end");
    assert_eq!(t.client_to_backend, 18 + 5, "the whole replay and what followed");
    assert_eq!(t.backend_to_client, 4);
}

#[tokio::test]
async fn a_replay_sent_whole_while_connecting_is_not_written_again() {
    let (mut client, proxy_client) = pair().await;
    let (proxy_backend, mut backend) = pair().await;
    let replay = Replay { buf: b"HELLO".to_vec(), sent: 5 };
    let relaying = tokio::spawn(async move {
        let mut w = Watchdog::none();
        relay::relay(&proxy_client, &proxy_backend, replay, &mut w, |_, _| {}).await
    });
    client.write_all(b"x").await.expect("write");
    client.shutdown().await.expect("shutdown");
    assert_eq!(read_all(&mut backend).await, b"x");
    backend.shutdown().await.expect("shutdown");
    let (t, result) = tokio::time::timeout(WAIT, relaying).await.expect("ended").expect("task");
    result.expect("clean end");
    assert_eq!(t.client_to_backend, 6);
}

#[tokio::test(start_paused = true)]
async fn an_idle_relay_ends_at_its_idle_timeout_with_a_reset_to_both_sides() {
    let (mut client, proxy_client) = pair().await;
    let (proxy_backend, mut backend) = pair().await;
    let idle = Duration::from_secs(3600);
    let d = Deadlines::new(idle, Duration::ZERO, Duration::ZERO, tokio::time::Instant::now());
    let relaying = tokio::spawn(async move {
        let mut w = Watchdog::new(d, None);
        relay::relay(
            &proxy_client,
            &proxy_backend,
            Replay { buf: Vec::new(), sent: 0 },
            &mut w,
            |_, _| {},
        )
        .await
    });
    client.write_all(b"ping").await.expect("write");
    let mut got = [0u8; 4];
    backend.read_exact(&mut got).await.expect("read");
    // Paused time jumps to the timer once every task is idle.
    let (t, result) = relaying.await.expect("task");
    assert_eq!(result.expect_err("idle").reason(), "idle_timeout");
    assert_eq!(t.client_to_backend, 4);
    for s in [&mut client, &mut backend] {
        let mut rest = Vec::new();
        let e = s.read_to_end(&mut rest).await.expect_err("a reset, not an end of stream");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    }
}

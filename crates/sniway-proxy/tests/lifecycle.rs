//! Balancing, relay semantics (half-close, bulk transfer), table swaps and the server lifecycle
//! (connection limit, drain, bind errors), on loopback.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sniway_model::{Backend, RoutingTable};
use sniway_proxy::{Proxy, ProxyConfig};
use sniway_testkit::hello;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_connections_within_statistical_bounds() {
    let heavy = echo_backend("heavy").await;
    let light = echo_backend("light").await;
    let never = echo_backend("never").await;
    let route = mk_route(
        "split",
        vec![
            mk_weighted(3, Backend::endpoints("heavy", vec![heavy])),
            mk_weighted(0, Backend::endpoints("never", vec![never])),
            mk_weighted(1, Backend::endpoints("light", vec![light])),
        ],
    );
    let p = start(mk_table(vec![(None, route)])).await;

    const N: usize = 2000;
    const CONCURRENCY: usize = 32;
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut done = 0;
    while done < N {
        let batch = CONCURRENCY.min(N - done);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            set.spawn(which_backend(p.addr, "split.example.com"));
        }
        while let Some(name) = set.join_next().await {
            *counts.entry(name.expect("client task")).or_default() += 1;
        }
        done += batch;
    }
    // Binomial(N, 3/4): mean 1500, sigma ~19.4; 6 sigma either side.
    let heavy = counts.get("heavy").copied().unwrap_or(0);
    let sigma = (N as f64 * 0.75 * 0.25).sqrt();
    let mean = N as f64 * 0.75;
    assert!(
        (heavy as f64 - mean).abs() <= 6.0 * sigma,
        "heavy got {heavy} of {N} (expected {mean} +- {:.0}): {counts:?}",
        6.0 * sigma
    );
    assert_eq!(counts.get("never"), None, "weight 0 got traffic: {counts:?}");
    assert_eq!(counts.values().sum::<usize>(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_backend_share_is_refused_in_proportion_to_its_weight() {
    let good = echo_backend("good").await;
    let route = mk_route(
        "half",
        vec![mk_weighted(1, Backend::endpoints("good", vec![good])), mk_invalid("missing", 1)],
    );
    let p = start(mk_table(vec![(None, route)])).await;
    const N: usize = 400;
    let mut served = 0;
    for _ in 0..N {
        let mut s = connect(p.addr).await;
        s.write_all(&hello("x.example.com")).await.expect("write");
        let mut b = [0u8; 5];
        match tokio::time::timeout(WAIT, s.read(&mut b)).await.expect("answer in time") {
            Ok(n) if n > 0 => {
                assert_eq!(&b[..n], &b"good\n"[..n]);
                served += 1;
            }
            _ => {}
        }
    }
    // Binomial(400, 1/2): sigma 10; 6 sigma either side of 200.
    assert!((140..=260).contains(&served), "served {served} of {N}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_taken_round_robin() {
    let e1 = echo_backend("e1").await;
    let e2 = echo_backend("e2").await;
    let p =
        start(mk_table(vec![(None, mk_route("rr", vec![mk_endpoints("svc", &[e1, e2])]))])).await;
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(which_backend(p.addr, "rr.example.com").await);
    }
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {seen:?}");
    }
    assert_eq!(seen.iter().filter(|n| *n == "e1").count(), 5, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_half_close_still_delivers_the_backend_reply() {
    // A backend that reads to end of stream, then answers with the byte count and closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.expect("read to end");
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(format!("got {} bytes\n", all.len()).as_bytes()).await.expect("reply");
        s.shutdown().await.expect("shutdown");
    });
    let p = start(mk_table(vec![(None, mk_route("r", vec![mk_endpoints("b", &[backend])]))])).await;

    let mut s = connect(p.addr).await;
    let h = hello("a.example.com");
    s.write_all(&h).await.expect("write hello");
    s.write_all(b"request").await.expect("write request");
    s.shutdown().await.expect("half-close");
    let mut reply = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut reply))
        .await
        .expect("reply in time")
        .expect("read reply");
    assert_eq!(reply, format!("got {} bytes\n", h.len() + 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_half_close_lets_the_client_keep_sending() {
    // A backend that greets, half-closes, then counts what the client still sends.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.write_all(b"hi\n").await.expect("greet");
        s.shutdown().await.expect("half-close");
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.expect("read to end");
        let _ = tx.send(all);
    });
    let p = start(mk_table(vec![(None, mk_route("r", vec![mk_endpoints("b", &[backend])]))])).await;

    let mut s = connect(p.addr).await;
    let h = hello("a.example.com");
    s.write_all(&h).await.expect("write hello");
    assert_eq!(read_line(&mut s).await, "hi");
    let mut rest = [0u8; 1];
    let n =
        tokio::time::timeout(WAIT, s.read(&mut rest)).await.expect("eof in time").expect("read");
    assert_eq!(n, 0, "backend's FIN reaches the client");
    s.write_all(b"still talking").await.expect("write after the backend's FIN");
    s.shutdown().await.expect("half-close");
    let got = tokio::time::timeout(WAIT, rx).await.expect("backend done").expect("result");
    assert_eq!(got.len(), h.len() + 13);
    assert!(got.ends_with(b"still talking"));
}

/// FNV-1a, 64-bit, fed incrementally.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Chunk `i` of a deterministic pseudo-random stream (xorshift64).
fn chunk(i: u64, out: &mut [u8]) {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ i.wrapping_mul(0xff51_afd7_ed55_8ccd) | 1;
    for word in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_round_trip_is_byte_exact() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: u64 = 1024; // 64 MiB
    let e = echo_backend("echo").await;
    let p = start(mk_table(vec![(None, mk_route("bulk", vec![mk_endpoints("echo", &[e])]))])).await;
    let s = connect(p.addr).await;
    let (mut r, mut w) = s.into_split();
    let h = hello("bulk.example.com");
    let started = Instant::now();

    let writer = tokio::spawn({
        let h = h.clone();
        async move {
            let mut sum = Fnv::new();
            w.write_all(&h).await.expect("write hello");
            sum.update(&h);
            let mut buf = vec![0u8; CHUNK];
            for i in 0..CHUNKS {
                chunk(i, &mut buf);
                w.write_all(&buf).await.expect("write chunk");
                sum.update(&buf);
            }
            w.shutdown().await.expect("half-close");
            sum.0
        }
    });

    let mut name = [0u8; 5];
    r.read_exact(&mut name).await.expect("backend name");
    assert_eq!(&name, b"echo\n");
    let mut sum = Fnv::new();
    let mut total = 0usize;
    let mut buf = vec![0u8; CHUNK];
    let expected_len = h.len() + CHUNK * CHUNKS as usize;
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let n = r.read(&mut buf).await.expect("read echo");
            if n == 0 {
                break;
            }
            sum.update(&buf[..n]);
            total += n;
            assert!(total <= expected_len, "more bytes than sent");
        }
    })
    .await
    .expect("echo within 120 s");
    let sent = writer.await.expect("writer");
    assert_eq!(total, expected_len);
    assert_eq!(sum.0, sent, "checksum of the echoed stream");
    eprintln!("64 MiB each way through the proxy in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_table_serves_new_connections_while_old_ones_keep_working() {
    let old = echo_backend("old").await;
    let new = echo_backend("new").await;
    let p = start(mk_table(vec![(None, mk_route("r", vec![mk_endpoints("old", &[old])]))])).await;

    let mut early = connect(p.addr).await;
    let h = hello("swap.example.com");
    early.write_all(&h).await.expect("write");
    assert_eq!(read_line(&mut early).await, "old");
    assert_eq!(read_exact(&mut early, h.len()).await, h);

    // Same socket address as configured (port 0): the socket is kept, the route changes.
    let states =
        p.proxy.install(mk_table(vec![(None, mk_route("r", vec![mk_endpoints("new", &[new])]))]));
    assert_eq!(states[0].bound, Ok(p.addr), "the unchanged socket was not rebound");
    assert_eq!(which_backend(p.addr, "swap.example.com").await, "new");

    early.write_all(b"still here").await.expect("write on the early connection");
    assert_eq!(read_exact(&mut early, 10).await, b"still here");

    // A table without this socket stops accepting on it; the early connection goes on.
    assert!(p.proxy.install(Arc::new(RoutingTable::default())).is_empty());
    wait_refused(p.addr).await;
    early.write_all(b"and here").await.expect("write");
    assert_eq!(read_exact(&mut early, 8).await, b"and here");
}

/// On one thread the accept loop cannot run between `install` and the connect, so without
/// `settle` the connect below would land in the removed socket's backlog.
#[tokio::test(flavor = "current_thread")]
async fn a_removed_socket_refuses_connections_once_settle_returns() {
    let e = echo_backend("e").await;
    let p = start(mk_table(vec![(None, mk_route("r", vec![mk_endpoints("e", &[e])]))])).await;
    assert_eq!(which_backend(p.addr, "x.example.com").await, "e");
    assert!(p.proxy.install(Arc::new(RoutingTable::default())).is_empty());
    p.proxy.settle().await;
    let refused = std::net::TcpStream::connect(p.addr);
    assert_eq!(
        refused.as_ref().err().map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{refused:?}"
    );
}

/// Waits until connecting to `addr` is refused (its listening socket closed), within a bound.
async fn wait_refused(addr: std::net::SocketAddr) {
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{addr} still accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_a_table_binds_new_sockets_and_keeps_the_others() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let route = |name: &str, addr| mk_route("r", vec![mk_endpoints(name, &[addr])]);
    let one = Arc::new(RoutingTable {
        sockets: vec![mk_socket(
            "127.0.0.1:0",
            vec![mk_listener(None, vec![(None, route("a", a))])],
        )],
    });
    let p = start(one).await;
    // The same configured socket and a second one on another loopback address.
    let two = Arc::new(RoutingTable {
        sockets: vec![
            mk_socket("127.0.0.1:0", vec![mk_listener(None, vec![(None, route("a", a))])]),
            mk_socket("127.0.0.2:0", vec![mk_listener(None, vec![(None, route("b", b))])]),
        ],
    });
    let states = p.proxy.install(two);
    assert_eq!(states.len(), 2);
    assert_eq!(states[0].bound, Ok(p.addr), "kept, not rebound");
    let second = states[1].bound.clone().expect("127.0.0.2 bound");
    assert_eq!(second.ip().to_string(), "127.0.0.2");
    assert_ne!(second.port(), 0);
    assert_eq!(which_backend(p.addr, "x.example.com").await, "a");
    assert_eq!(which_backend(second, "x.example.com").await, "b");
    assert_eq!(p.proxy.ready(), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_fails_only_its_socket_and_readiness_says_which() {
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let busy = taken.local_addr().expect("addr");
    let e = echo_backend("e").await;
    let table = Arc::new(RoutingTable {
        sockets: vec![
            mk_socket(
                "127.0.0.1:0",
                vec![mk_listener(None, vec![(None, mk_route("r", vec![mk_endpoints("e", &[e])]))])],
            ),
            mk_socket(&busy.to_string(), vec![]),
        ],
    });
    let proxy = Proxy::new(ProxyConfig::default(), None);
    let states = proxy.install(table.clone());
    let good = states.iter().find(|s| s.configured != busy).expect("the free socket");
    let bad = states.iter().find(|s| s.configured == busy).expect("the busy socket");
    let err = bad.bound.clone().expect_err("address in use");
    assert!(err.contains(&busy.to_string()), "{err}");
    let addr = good.bound.clone().expect("the other socket serves");
    assert_eq!(which_backend(addr, "x.example.com").await, "e");
    let not_ready = proxy.ready().expect_err("not ready with a socket unbound");
    assert!(not_ready.contains(&busy.to_string()), "{not_ready}");

    // Freed, the port is bound at the next install.
    drop(taken);
    let states = proxy.install(table);
    assert!(states.iter().all(|s| s.bound.is_ok()), "{states:?}");
    assert_eq!(proxy.ready(), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_waits_for_live_connections() {
    let e = echo_backend("e").await;
    let table = mk_table(vec![(None, mk_route("r", vec![mk_endpoints("e", &[e])]))]);
    // A one-hour drain deadline: the shutdown returning within the bounded wait below can only
    // be because the last connection ended.
    let mut p = start_with(table, ProxyConfig::default(), Duration::from_secs(3600)).await;
    let mut live = connect(p.addr).await;
    let h = hello("d.example.com");
    live.write_all(&h).await.expect("write");
    assert_eq!(read_line(&mut live).await, "e");

    p.shutdown();
    // The listening socket closes: new connections are refused.
    wait_refused(p.addr).await;
    assert!(p.proxy.ready().is_err(), "ready while draining");
    // The live connection keeps working while the shutdown waits for it.
    assert_eq!(read_exact(&mut live, h.len()).await, h);
    live.write_all(b"draining").await.expect("write while draining");
    assert_eq!(read_exact(&mut live, 8).await, b"draining");
    assert!(!p.task.is_finished(), "shutdown returned with a connection open");

    drop(live);
    let drained = tokio::time::timeout(WAIT, &mut p.task)
        .await
        .expect("shutdown returns once drained")
        .expect("shutdown task");
    // Open when accepting stopped: the live one, and any probe of `wait_refused` accepted before.
    assert!(drained.open >= 1, "{drained:?}");
    assert_eq!(drained.cut, 0, "{drained:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_cuts_connections_still_open_with_a_reset() {
    let e = echo_backend("e").await;
    let table = mk_table(vec![(None, mk_route("r", vec![mk_endpoints("e", &[e])]))]);
    let mut p = start_with(table, ProxyConfig::default(), Duration::from_millis(300)).await;
    let mut relaying = connect(p.addr).await;
    let h = hello("d.example.com");
    relaying.write_all(&h).await.expect("write");
    assert_eq!(read_line(&mut relaying).await, "e");
    assert_eq!(read_exact(&mut relaying, h.len()).await, h);
    // A connection still in detection is cut too.
    let mut detecting = connect(p.addr).await;
    detecting.write_all(&[0x16, 0x03]).await.expect("write");
    wait_open(&p.proxy, 2).await;

    p.shutdown();
    let drained =
        tokio::time::timeout(WAIT, &mut p.task).await.expect("shutdown returns").expect("task");
    assert_eq!(drained, sniway_proxy::Drained { open: 2, cut: 2 });
    assert_closed_silently(&mut detecting).await;
    // The relayed connection is reset, never ended cleanly: a cut stream must not look complete.
    let mut rest = Vec::new();
    let r = tokio::time::timeout(WAIT, relaying.read_to_end(&mut rest)).await.expect("closed");
    let e = r.expect_err("the cut stream ended with a clean end of stream");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
}

/// Waits until the proxy counts `n` open connections, within a bound.
async fn wait_open(proxy: &Proxy, n: usize) {
    for _ in 0..2000 {
        if proxy.open_connections() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{} connections open, not {n}", proxy.open_connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_new_clients_are_closed_at_once_and_no_socket_starves() {
    let e = echo_backend("e").await;
    let listener = || mk_listener(None, vec![(None, mk_route("r", vec![mk_endpoints("e", &[e])]))]);
    let table = Arc::new(RoutingTable {
        sockets: vec![
            mk_socket("127.0.0.1:0", vec![listener()]),
            mk_socket("127.0.0.2:0", vec![listener()]),
        ],
    });
    let config = ProxyConfig { max_connections: 1, ..Default::default() };
    let p = start_with(table, config, Duration::from_secs(1)).await;
    let second_socket = p.proxy.sockets()[1].bound.clone().expect("bound");
    let h = hello("m.example.com");

    let mut first = connect(p.addr).await;
    first.write_all(&h).await.expect("write");
    assert_eq!(read_line(&mut first).await, "e");

    // Beyond the limit, on either socket: closed at once, nothing written.
    for addr in [p.addr, second_socket] {
        let mut s = connect(addr).await;
        let _ = s.write_all(&h).await;
        assert_closed_silently(&mut s).await;
    }
    let text = p.proxy.metrics_text();
    for addr in ["127.0.0.1:0", "127.0.0.2:0"] {
        let line = format!(
            "sniway_connections_limited_total{{address=\"{addr}\",listener=\"\",limit=\"global\"}} 1"
        );
        assert!(text.contains(&line), "{line} not in:\n{text}");
    }

    // Once the first ends, both sockets serve again: neither waits on the other.
    drop(first);
    wait_open(&p.proxy, 0).await;
    assert_eq!(which_backend(second_socket, "m.example.com").await, "e");
    // The connection just used holds the only permit until the proxy has closed it.
    wait_open(&p.proxy, 0).await;
    assert_eq!(which_backend(p.addr, "m.example.com").await, "e");
}

//! Balancing, relay semantics (half-close, bulk transfer), table swaps and the server lifecycle
//! (connection limit, drain, bind errors), on loopback.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sniway_model::{Backend, RoutingTable};
use sniway_proxy::{Proxy, ProxyConfig, ProxyError};
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
async fn a_swapped_table_serves_new_connections_while_old_ones_keep_working() {
    let old = echo_backend("old").await;
    let new = echo_backend("new").await;
    let p = start(mk_table(vec![(None, mk_route("r", vec![mk_endpoints("old", &[old])]))])).await;

    let mut early = connect(p.addr).await;
    let h = hello("swap.example.com");
    early.write_all(&h).await.expect("write");
    assert_eq!(read_line(&mut early).await, "old");
    assert_eq!(read_exact(&mut early, h.len()).await, h);

    // Same socket address as configured at bind time (port 0), new route.
    p.table.store(mk_table(vec![(None, mk_route("r", vec![mk_endpoints("new", &[new])]))]));
    assert_eq!(which_backend(p.addr, "swap.example.com").await, "new");

    early.write_all(b"still here").await.expect("write on the early connection");
    assert_eq!(read_exact(&mut early, 10).await, b"still here");

    // A table that no longer serves this socket refuses new connections.
    p.table.store(Arc::new(RoutingTable::default()));
    let mut s = connect(p.addr).await;
    s.write_all(&h).await.expect("write");
    assert_closed_silently(&mut s).await;
    early.write_all(b"and here").await.expect("write");
    assert_eq!(read_exact(&mut early, 8).await, b"and here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_waits_for_live_connections() {
    let e = echo_backend("e").await;
    let table = mk_table(vec![(None, mk_route("r", vec![mk_endpoints("e", &[e])]))]);
    // A one-hour drain deadline: run() returning within the bounded wait below can only be
    // because the last connection ended.
    let mut p = start_with(table, ProxyConfig::default(), Duration::from_secs(3600)).await;
    let mut live = connect(p.addr).await;
    let h = hello("d.example.com");
    live.write_all(&h).await.expect("write");
    assert_eq!(read_line(&mut live).await, "e");

    p.shutdown();
    // The listening socket closes: new connections are refused.
    let refused = async {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(p.addr).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    };
    assert!(refused.await, "listener still accepting after shutdown");
    // The live connection keeps working while run() waits for it.
    assert_eq!(read_exact(&mut live, h.len()).await, h);
    live.write_all(b"draining").await.expect("write while draining");
    assert_eq!(read_exact(&mut live, 8).await, b"draining");
    assert!(!p.task.is_finished(), "run returned with a connection open");

    drop(live);
    tokio::time::timeout(WAIT, &mut p.task)
        .await
        .expect("run returns once drained")
        .expect("run task")
        .expect("run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_cuts_connections_still_open() {
    let e = echo_backend("e").await;
    let table = mk_table(vec![(None, mk_route("r", vec![mk_endpoints("e", &[e])]))]);
    let mut p = start_with(table, ProxyConfig::default(), Duration::from_millis(300)).await;
    let mut relaying = connect(p.addr).await;
    relaying.write_all(&hello("d.example.com")).await.expect("write");
    assert_eq!(read_line(&mut relaying).await, "e");
    // A connection still in detection is cut too.
    let mut detecting = connect(p.addr).await;
    detecting.write_all(&[0x16, 0x03]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;

    let t = Instant::now();
    p.shutdown();
    tokio::time::timeout(WAIT, &mut p.task)
        .await
        .expect("run returns")
        .expect("task")
        .expect("run");
    let e = t.elapsed();
    assert!(e >= Duration::from_millis(250), "returned before the drain deadline, after {e:?}");
    assert_closed_silently(&mut detecting).await;
    // The relayed connection ends: its remaining echo, then end of stream or reset.
    let mut rest = Vec::new();
    let r = tokio::time::timeout(WAIT, relaying.read_to_end(&mut rest)).await.expect("closed");
    assert!(r.is_ok() || rest.len() <= 1024, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_new_clients_wait_for_a_permit() {
    let e = echo_backend("e").await;
    let table = mk_table(vec![(None, mk_route("r", vec![mk_endpoints("e", &[e])]))]);
    let config = ProxyConfig { max_connections: 1, ..Default::default() };
    let p = start_with(table, config, Duration::from_secs(1)).await;
    let h = hello("m.example.com");

    let mut first = connect(p.addr).await;
    first.write_all(&h).await.expect("write");
    assert_eq!(read_line(&mut first).await, "e");

    // Connects (kernel backlog) but is not served while the first holds the only permit.
    let mut second = connect(p.addr).await;
    second.write_all(&h).await.expect("write");
    let mut b = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut b)).await;
    assert!(waited.is_err(), "second connection served beyond max_connections");

    drop(first);
    assert_eq!(read_line(&mut second).await, "e");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_error_names_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = taken.local_addr().expect("addr");
    let table = Arc::new(RoutingTable { sockets: vec![mk_socket(&addr.to_string(), vec![])] });
    let err = Proxy::bind(table, ProxyConfig::default()).await.expect_err("address in use");
    assert!(matches!(err, ProxyError::Bind { addr: a, .. } if a == addr));
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_addrs_pair_configured_and_bound_addresses() {
    let table = Arc::new(RoutingTable {
        sockets: vec![mk_socket("127.0.0.1:0", vec![]), mk_socket("127.0.0.2:0", vec![])],
    });
    let Ok(proxy) = Proxy::bind(table, ProxyConfig::default()).await else {
        // 127.0.0.2 is not configured on every host.
        return;
    };
    let addrs = proxy.local_addrs();
    assert_eq!(addrs.len(), 2);
    assert_eq!(addrs[0].0, "127.0.0.1:0".parse().unwrap());
    assert_eq!(addrs[1].1.ip().to_string(), "127.0.0.2");
    assert!(addrs.iter().all(|(_, bound)| bound.port() != 0));
}

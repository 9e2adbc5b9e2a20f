//! The data plane end to end on loopback: raw TCP clients sending ClientHello bytes, TCP echo
//! backends that name themselves.

mod support;

use std::time::{Duration, Instant};

use sniway_proxy::ProxyConfig;
use sniway_testkit::{HelloBuilder, hello};
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_sni_case_insensitively_ignoring_a_trailing_dot() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let table = mk_table(vec![
        (Some("a.example.com"), mk_route("ra", vec![mk_endpoints("a", &[a])])),
        (Some("*.example.com"), mk_route("rb", vec![mk_endpoints("b", &[b])])),
    ]);
    let p = start(table).await;
    assert_eq!(which_backend(p.addr, "a.example.com").await, "a");
    assert_eq!(which_backend(p.addr, "A.Example.COM.").await, "a");
    assert_eq!(which_backend(p.addr, "x.y.example.com").await, "b");
    assert_eq!(which_backend(p.addr, "Other.Example.com.").await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_sni_is_closed_without_a_byte_written() {
    let a = echo_backend("a").await;
    let p = start(mk_table(vec![(
        Some("a.example.com"),
        mk_route("r", vec![mk_endpoints("a", &[a])]),
    )]))
    .await;
    for sni in ["b.example.com", "example.com", "a.example.org", "127.0.0.1"] {
        let mut s = connect(p.addr).await;
        s.write_all(&hello(sni)).await.expect("write");
        assert_closed_silently(&mut s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_more_specific_listener_without_route_refuses_instead_of_falling_through() {
    let a = echo_backend("a").await;
    let table = std::sync::Arc::new(sniway_model::RoutingTable {
        sockets: vec![mk_socket(
            "127.0.0.1:0",
            vec![
                mk_listener(Some("foo.example.com"), vec![]),
                mk_listener(
                    Some("*.example.com"),
                    vec![(None, mk_route("r", vec![mk_endpoints("a", &[a])]))],
                ),
            ],
        )],
    });
    let p = start(table).await;
    assert_eq!(which_backend(p.addr, "bar.example.com").await, "a");
    let mut s = connect(p.addr).await;
    s.write_all(&hello("foo.example.com")).await.expect("write");
    assert_closed_silently(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_closed_quickly_with_nothing_written() {
    let a = echo_backend("a").await;
    let table = mk_table(vec![(None, mk_route("r", vec![mk_endpoints("a", &[a])]))]);
    // With a one-hour hello deadline, a close within the bounded wait can only be the early
    // rejection of bytes that are not a ClientHello.
    let config = ProxyConfig { hello_timeout: Duration::from_secs(3600), ..ProxyConfig::default() };
    let p = start_with(table, config, Duration::from_secs(5)).await;
    for garbage in
        [&b"GET / HTTP/1.1\r\n"[..], b"SSH-2.0-OpenSSH_9.6\r\n", &[0x80, 0x2e, 0x01, 0x03, 0x01]]
    {
        let mut s = connect(p.addr).await;
        s.write_all(garbage).await.expect("write");
        assert_closed_silently(&mut s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_sent_one_byte_per_segment_routes() {
    let a = echo_backend("a").await;
    let p = start(mk_table(vec![(
        Some("a.example.com"),
        mk_route("r", vec![mk_endpoints("a", &[a])]),
    )]))
    .await;
    let mut s = connect(p.addr).await;
    let h = hello("a.example.com");
    for b in &h {
        s.write_all(std::slice::from_ref(b)).await.expect("write byte");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(read_line(&mut s).await, "a");
    assert_eq!(read_exact(&mut s, h.len()).await, h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_spread_over_many_records_routes_and_is_replayed_unchanged() {
    let a = echo_backend("a").await;
    let p = start(mk_table(vec![(
        Some("a.example.com"),
        mk_route("r", vec![mk_endpoints("a", &[a])]),
    )]))
    .await;
    // A 17 KiB hello (post-quantum sized and beyond) in 7-byte records.
    let h = HelloBuilder::minimal().sni(b"a.example.com").padding(17 * 1024).records_of(7);
    assert!(h.len() > 25_000);
    let mut s = connect(p.addr).await;
    s.write_all(&h).await.expect("write");
    s.write_all(b"after the hello").await.expect("write");
    assert_eq!(read_line(&mut s).await, "a");
    assert_eq!(read_exact(&mut s, h.len()).await, h);
    assert_eq!(read_exact(&mut s, 15).await, b"after the hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_hello_is_closed_at_the_deadline() {
    let a = echo_backend("a").await;
    let config = ProxyConfig { hello_timeout: Duration::from_millis(300), ..Default::default() };
    let table = mk_table(vec![(None, mk_route("r", vec![mk_endpoints("a", &[a])]))]);
    let p = start_with(table, config, Duration::from_secs(1)).await;
    let h = hello("a.example.com");

    // A silent client.
    let mut s = connect(p.addr).await;
    let t = Instant::now();
    s.write_all(&h[..10]).await.expect("write");
    assert_closed_silently(&mut s).await;
    let e = t.elapsed();
    assert!(e >= Duration::from_millis(250), "closed before the deadline, after {e:?}");

    // A client trickling a byte every 50 ms for up to 3 s: the deadline covers the whole hello,
    // not each read, so the proxy closes at about 300 ms and the writes start failing long
    // before the trickle is over (with a per-read deadline it would never close meanwhile).
    let mut s = connect(p.addr).await;
    let t = Instant::now();
    let mut cut_off = false;
    for b in &h[..60] {
        if s.write_all(std::slice::from_ref(b)).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cut_off, "the proxy let a trickling client go on past the hello deadline");
    assert_closed_silently(&mut s).await;
    let e = t.elapsed();
    assert!(e >= Duration::from_millis(250), "closed before the deadline, after {e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_without_sni_or_with_an_invalid_name_is_closed() {
    let a = echo_backend("a").await;
    let p = start(mk_table(vec![(None, mk_route("r", vec![mk_endpoints("a", &[a])]))])).await;
    let no_sni = HelloBuilder::minimal().records();
    let bad_name = HelloBuilder::minimal().sni(b"bad name!").records();
    for h in [&no_sni, &bad_name] {
        let mut s = connect(p.addr).await;
        s.write_all(h).await.expect("write");
        assert_closed_silently(&mut s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_backend_and_all_zero_weights_are_refused() {
    let table = mk_table(vec![
        (Some("invalid.example.com"), mk_route("inv", vec![mk_invalid("missing", 1)])),
        (
            Some("zero.example.com"),
            mk_route(
                "zero",
                vec![mk_weighted(
                    0,
                    sniway_model::Backend::endpoints("z", vec![echo_backend("z").await]),
                )],
            ),
        ),
        (Some("empty.example.com"), mk_route("empty", vec![mk_endpoints("e", &[])])),
        (Some("none.example.com"), mk_route("none", vec![])),
    ]);
    let p = start(table).await;
    for sni in ["invalid.example.com", "zero.example.com", "empty.example.com", "none.example.com"]
    {
        let mut s = connect(p.addr).await;
        s.write_all(&hello(sni)).await.expect("write");
        assert_closed_silently(&mut s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_closes_the_client_without_writing() {
    let dead = dead_addr().await;
    let p = start(mk_table(vec![(None, mk_route("r", vec![mk_endpoints("dead", &[dead])]))])).await;
    let mut s = connect(p.addr).await;
    s.write_all(&hello("a.example.com")).await.expect("write");
    assert_closed_silently(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_endpoint_is_skipped_for_the_next_one_of_the_same_backend() {
    let dead = dead_addr().await;
    let live = echo_backend("live").await;
    let p =
        start(mk_table(vec![(None, mk_route("r", vec![mk_endpoints("b", &[dead, live])]))])).await;
    for _ in 0..4 {
        assert_eq!(which_backend(p.addr, "a.example.com").await, "live");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_backend_is_resolved_when_connecting() {
    let a = echo_backend("by-name").await;
    let dns = |host: &str| {
        mk_weighted(
            1,
            sniway_model::Backend::Dns {
                name: format!("{host}:{}", a.port()),
                host: host.into(),
                port: a.port(),
            },
        )
    };
    let table = mk_table(vec![
        (Some("ok.example.com"), mk_route("ok", vec![dns("localhost")])),
        (Some("nx.example.com"), mk_route("nx", vec![dns("nonexistent.invalid")])),
    ]);
    let config = ProxyConfig { connect_timeout: Duration::from_secs(2), ..Default::default() };
    let p = start_with(table, config, Duration::from_secs(1)).await;
    assert_eq!(which_backend(p.addr, "ok.example.com").await, "by-name");
    let mut s = connect(p.addr).await;
    s.write_all(&hello("nx.example.com")).await.expect("write");
    assert_closed_silently(&mut s).await;
}

/// The ClientHellos captured from real clients, kept as fixtures by `sniway-wire`: those sent to
/// `capture.example.com` route; the one without SNI and the one with an IP literal are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_client_hellos_route_by_their_sni() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sniway-wire/tests/data");
    let a = echo_backend("capture").await;
    let table = mk_table(vec![(
        Some("capture.example.com"),
        mk_route("r", vec![mk_endpoints("capture", &[a])]),
    )]);
    let p = start(table).await;
    let mut routed = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).expect("read fixture");
        let mut s = connect(p.addr).await;
        s.write_all(&bytes).await.expect("write");
        if name.contains("sni-capture.example.com") {
            assert_eq!(read_line(&mut s).await, "capture", "{name}");
            assert_eq!(read_exact(&mut s, bytes.len()).await, bytes, "{name} replayed");
            routed += 1;
        } else if name.contains("no-sni") || name.contains("ip-literal") {
            assert_closed_silently(&mut s).await;
        }
    }
    assert!(routed >= 3, "expected captured hellos in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_hello_to_a_slow_backend_is_replayed_whole_and_in_order() {
    // A 60 KiB hello (the replay starts while connecting) to a backend with a 4 KiB receive
    // buffer that reads nothing for the first 300 ms, then the bytes the client sent after it.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).expect("bind");
    socket.listen(8).expect("listen");
    socket.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(socket.into()).expect("listener");
    let backend = listener.local_addr().expect("addr");
    let h = HelloBuilder::minimal().sni(b"a.example.com").padding(60 * 1024).records_of(16 * 1024);
    let tail = b"and what came after";
    let expected = [h.as_slice(), tail].concat();
    let received = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut got = vec![0u8; expected.len()];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut got).await.expect("read all");
        assert!(got == expected, "the backend received the replay and the rest whole, in order");
    });
    let p = start(mk_table(vec![(
        Some("a.example.com"),
        mk_route("r", vec![mk_endpoints("b", &[backend])]),
    )]))
    .await;
    let mut s = connect(p.addr).await;
    s.write_all(&h).await.expect("write hello");
    s.write_all(tail).await.expect("write tail");
    tokio::time::timeout(WAIT, received).await.expect("received in time").expect("backend");
}

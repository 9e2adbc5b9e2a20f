//! What an idle relayed connection costs the proxy in heap memory, counted by an instrumented
//! global allocator: requested sizes, so the figure does not depend on the allocator's pages.
//! An idle passthrough connection keeps its task, its two socket registrations and the relay
//! state, and no buffer (`relay.rs`: "holding no userspace buffer while the connection is
//! idle"). The bound is on bytes, not time: nothing here is timed.

mod support;

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use sniway_proxy::access_log::{AccessLog, Format};
use sniway_testkit::hello;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use support::*;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Connections in the measured batch.
const N: usize = 200;

/// Most heap bytes one idle relayed connection may hold: its task, two socket registrations, the
/// relay state (boxed apart from the setup's), the idle timer (tokio's `Sleep`, 112 bytes), the
/// drain cut's wait, and the guards that count it against its limits and metrics; 1,576 bytes
/// when this was written (1,281 before the timer and the guards). The budget comes from the
/// benchmark's target of at most half HAProxy's RSS per idle connection (3.3 KiB, so 1.65 KiB),
/// most of which is this heap. A buffer kept for the connection's life, or a future grown by a
/// step, fails here.
const MAX_BYTES_PER_CONN: usize = 1664;

/// Most heap bytes the access log may add to an idle connection: the fields it writes that the
/// connection does not keep anyway (client and gateway addresses, server name, ALPN offer,
/// endpoint, hello and connect times), in one allocation, plus the server name's and the ALPN
/// offer's own.
const MAX_ACCESS_LOG_BYTES: usize = 256;

/// Opens `n` connections through the proxy at `proxy`, each sending `hello`. Each returns once the
/// backend behind `backend` has received the hello whole and its answer has come back through
/// the proxy, so the connection is relaying (the setup before the relay is freed by then).
/// Nothing here allocates per connection: the vectors are sized before.
fn open_relayed(
    proxy: SocketAddr,
    backend: &TcpListener,
    hello: &[u8],
    clients: &mut Vec<TcpStream>,
    accepted: &mut Vec<TcpStream>,
    n: usize,
) {
    let mut buf = [0u8; 1024];
    for _ in 0..n {
        let mut c = TcpStream::connect(proxy).expect("connect");
        c.write_all(hello).expect("write hello");
        let (mut b, _) = backend.accept().expect("accept");
        b.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        b.read_exact(&mut buf[..hello.len()]).expect("backend reads the hello");
        assert_eq!(&buf[..hello.len()], hello);
        b.write_all(b"!").expect("backend answers");
        c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        c.read_exact(&mut buf[..1]).expect("the answer reaches the client");
        assert_eq!(&buf[..1], b"!");
        clients.push(c);
        accepted.push(b);
    }
}

/// Heap bytes per idle relayed connection through a proxy with or without an access log.
fn idle_bytes_per_connection(access_log: bool) -> usize {
    // The allocator's counts are global: one measurement at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let backend_addr = backend.local_addr().expect("addr");
    let table = mk_table(vec![(
        Some("a.example.com"),
        mk_route("r", vec![mk_endpoints("b", &[backend_addr])]),
    )]);
    let log = access_log.then(|| AccessLog::start(Format::Json, Box::new(std::io::sink())));
    let proxy = rt.block_on(start_logged(
        table,
        sniway_proxy::ProxyConfig::default(),
        Duration::from_secs(1),
        log,
    ));
    let h = hello("a.example.com");
    assert!(h.len() <= 1024);

    let mut clients = Vec::with_capacity(2 * N);
    let mut accepted = Vec::with_capacity(2 * N);
    // A first batch grows what grows once (the runtime's slabs and queues, the relay's scratch
    // buffer) before anything is counted.
    open_relayed(proxy.addr, &backend, &h, &mut clients, &mut accepted, N);
    let region = Region::new(GLOBAL);
    open_relayed(proxy.addr, &backend, &h, &mut clients, &mut accepted, N);
    let change = region.change();

    let live = change.bytes_allocated as isize - change.bytes_deallocated as isize
        + change.bytes_reallocated;
    let per_conn = usize::try_from(live).unwrap_or(0) / N;
    eprintln!("an idle relayed connection holds {per_conn} heap bytes (access log: {access_log})");
    assert!(per_conn > 0, "the measured batch allocated nothing: the count does not work");
    drop((clients, accepted));
    drop(proxy);
    rt.shutdown_timeout(Duration::from_secs(1));
    per_conn
}

#[test]
fn an_idle_relayed_connection_holds_no_buffer() {
    let per_conn = idle_bytes_per_connection(false);
    assert!(
        per_conn <= MAX_BYTES_PER_CONN,
        "an idle relayed connection holds {per_conn} heap bytes (at most {MAX_BYTES_PER_CONN})"
    );
}

#[test]
fn the_access_log_adds_only_the_fields_it_writes() {
    let without = idle_bytes_per_connection(false);
    let with = idle_bytes_per_connection(true);
    assert!(
        with <= without + MAX_ACCESS_LOG_BYTES,
        "with the access log on, an idle connection holds {with} heap bytes, {} more than \
         without (at most {MAX_ACCESS_LOG_BYTES})",
        with.saturating_sub(without)
    );
}

//! Test helpers: routing tables built by hand (`mk_*`), loopback backends and a proxy running on
//! an ephemeral port. ClientHello bytes come from `sniway-testkit`.

#![allow(dead_code)]

pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sniway_model::{
    Backend, HostIndex, HostPattern, ListenerId, ListenerMode, ListenerTable, Route, RouteId,
    RoutingTable, SocketTable, WeightedBackend,
};
use sniway_proxy::{AccessLog, Drained, Proxy, ProxyConfig};
use sniway_testkit::hello;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound on any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(10);

// === routing tables ===

/// A backend with fixed endpoints and weight 1.
pub fn mk_endpoints(name: &str, addrs: &[SocketAddr]) -> WeightedBackend {
    mk_weighted(1, Backend::endpoints(name, addrs.to_vec()))
}

/// A backend with the given weight.
pub fn mk_weighted(weight: u32, backend: Backend) -> WeightedBackend {
    WeightedBackend::new(weight, backend)
}

/// An unresolvable backend.
pub fn mk_invalid(name: &str, weight: u32) -> WeightedBackend {
    mk_weighted(weight, Backend::Invalid { name: name.into(), reason: "BackendNotFound".into() })
}

/// A route rule.
pub fn mk_route(name: &str, backends: Vec<WeightedBackend>) -> Arc<Route> {
    let id = RouteId { namespace: "default".into(), name: name.into(), rule: 0 };
    Arc::new(Route::new(id, backends))
}

/// A passthrough listener with routes by hostname (`None` = any name the listener allows).
pub fn mk_listener(
    hostname: Option<&str>,
    routes: Vec<(Option<&str>, Arc<Route>)>,
) -> Arc<ListenerTable> {
    mk_listener_with(hostname, routes, Default::default(), Default::default())
}

/// A passthrough listener with routes, policy settings and default routes.
pub fn mk_listener_with(
    hostname: Option<&str>,
    routes: Vec<(Option<&str>, Arc<Route>)>,
    settings: sniway_model::ListenerSettings,
    defaults: sniway_model::DefaultRoutes,
) -> Arc<ListenerTable> {
    let mut idx = HostIndex::new();
    for (h, r) in routes {
        assert!(idx.insert_first(h.map(HostPattern::parse).as_ref(), r), "duplicate route host");
    }
    Arc::new(ListenerTable {
        id: ListenerId {
            namespace: "default".into(),
            gateway: "gw".into(),
            listener: hostname.unwrap_or("any").into(),
        },
        hostname: hostname.map(HostPattern::parse),
        mode: ListenerMode::Passthrough,
        settings,
        routes: idx,
        defaults,
    })
}

/// A socket on `addr` with the given listeners.
pub fn mk_socket(addr: &str, listeners: Vec<Arc<ListenerTable>>) -> SocketTable {
    let mut idx = HostIndex::new();
    for l in listeners {
        let h = l.hostname.clone();
        assert!(idx.insert_first(h.as_ref(), l), "duplicate listener host");
    }
    SocketTable { addr: addr.parse().expect("socket address"), listeners: idx }
}

/// A table with one socket on an ephemeral loopback port and one listener without hostname.
pub fn mk_table(routes: Vec<(Option<&str>, Arc<Route>)>) -> Arc<RoutingTable> {
    Arc::new(RoutingTable {
        sockets: vec![mk_socket("127.0.0.1:0", vec![mk_listener(None, routes)])],
    })
}

// === backends ===

/// Serves `echo_backend`'s protocol on `listener` until the returned task is aborted (which
/// closes the listening socket).
pub fn serve_echo(listener: TcpListener, name: &str) -> JoinHandle<()> {
    let name = format!("{name}\n");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let name = name.clone();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                if w.write_all(name.as_bytes()).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    })
}

/// A TCP backend that writes `NAME\n` on accept, then echoes everything back and, at end of
/// stream, shuts down its write half.
pub async fn echo_backend(name: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    serve_echo(listener, name);
    addr
}

/// An address where nothing listens (connect is refused).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

// === the proxy ===

/// A running proxy.
pub struct Running {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The proxy, to install new tables.
    pub proxy: Proxy,
    /// Fires the shutdown.
    pub shutdown: Option<oneshot::Sender<()>>,
    /// The shutdown's task: waits for the signal, then drains.
    pub task: JoinHandle<Drained>,
}

impl Running {
    /// Triggers shutdown.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Installs `table` in a new proxy with `config`, draining for `drain` on shutdown; `addr` is the
/// first socket's bound address.
pub async fn start_with(table: Arc<RoutingTable>, config: ProxyConfig, drain: Duration) -> Running {
    start_logged(table, config, drain, None).await
}

/// As [`start_with`], with an access log.
pub async fn start_logged(
    table: Arc<RoutingTable>,
    config: ProxyConfig,
    drain: Duration,
    access_log: Option<AccessLog>,
) -> Running {
    let proxy = Proxy::new(config, access_log);
    let sockets = proxy.install(table);
    let addr = sockets[0].bound.clone().expect("bound");
    let (tx, rx) = oneshot::channel::<()>();
    let p = proxy.clone();
    let task = tokio::spawn(async move {
        let _ = rx.await;
        p.shutdown(drain).await
    });
    Running { addr, proxy, shutdown: Some(tx), task }
}

/// Starts a proxy with the default configuration.
pub async fn start(table: Arc<RoutingTable>) -> Running {
    start_with(table, ProxyConfig::default(), Duration::from_secs(5)).await
}

// === clients ===

/// Connects to the proxy with TCP_NODELAY.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads one `\n`-terminated line (at most 256 bytes) from a TCP or TLS stream.
pub async fn read_line<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(WAIT, async {
        while line.len() < 256 {
            let n = s.read(&mut byte).await.expect("read line");
            assert_eq!(n, 1, "end of stream after {:?}", String::from_utf8_lossy(&line));
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
    })
    .await
    .expect("line in time");
    String::from_utf8(line).expect("utf-8 line")
}

/// Reads exactly `n` bytes.
pub async fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf))
        .await
        .expect("read in time")
        .expect("read_exact");
    buf
}

/// Sends `hello` for `sni` and returns the name of the backend that answered, checking that the
/// backend received the hello byte for byte.
pub async fn which_backend(addr: SocketAddr, sni: &str) -> String {
    let mut s = connect(addr).await;
    let h = hello(sni);
    s.write_all(&h).await.expect("write hello");
    let name = read_line(&mut s).await;
    assert_eq!(read_exact(&mut s, h.len()).await, h, "backend received the hello unchanged");
    name
}

/// Asserts that the proxy closes `s` (end of stream or reset) without writing a byte.
pub async fn assert_closed_silently(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(WAIT, s.read(&mut buf)).await.expect("closed in time");
    match r {
        Ok(0) => {}
        Ok(n) => panic!("proxy wrote {n} bytes: {:?}", &buf[..n]),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
            "unexpected error {e}"
        ),
    }
}

//! Operating the gateway through the real binary: every deadline ends its connection with a reset
//! and is counted, every limit refuses only what it should, the metrics and the access log add up
//! exactly, the accept loop backs off when descriptors run out, and keep-alive is on.
//!
//! Waits are on the gateway's own signals (the ready line, `/metrics` counters) and on what the
//! sockets see, each bounded; the timeouts under test are short (1 s) and every upper wait
//! generous, so nothing here asserts how fast anything is.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc};

use crate::support::*;

/// Upper bound for anything the gateway should do within a second or two.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Metrics

/// The labels of an exposition line `name{k="v",...} value`, and its value, when the line is a
/// sample of `name`.
fn parse_sample(line: &str, name: &str) -> Option<(Vec<(String, String)>, f64)> {
    let rest = line.strip_prefix(name)?;
    let (labels, value) = match rest.strip_prefix('{') {
        Some(r) => {
            let end = r.rfind('}')?;
            (parse_labels(&r[..end]), r[end + 1..].trim())
        }
        None if rest.starts_with(' ') => (Vec::new(), rest.trim()),
        None => return None,
    };
    let value = value.split_whitespace().next()?.parse().ok()?;
    Some((labels, value))
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('"'), "label {key} in {s}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

/// The sum of every sample of `name` whose labels include all of `want`.
fn metric(body: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    body.lines()
        .filter_map(|l| parse_sample(l, name))
        .filter(|(labels, _)| {
            want.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// `/metrics`, asserting it answers.
fn metrics(gw: &Gateway) -> String {
    let (code, body) = gw.get("/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// Polls `/metrics` (bounded) until the sum of `name{want}` is `value`; returns that exposition.
fn wait_metric(gw: &Gateway, name: &str, want: &[(&str, &str)], value: f64) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = metrics(gw);
        if metric(&body, name, want) == value {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{want:?} is {} after {WAIT:?}, not {value}\n{body}\n{}",
            metric(&body, name, want),
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until no connection is open in the gateway (every task ended, every permit back).
fn wait_idle(gw: &Gateway) -> String {
    wait_metric(gw, "sniway_connections_open", &[], 0.0)
}

// ---------------------------------------------------------------------------------------------
// Backends and clients

/// How a backend connection ended, as the backend saw it.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// A clean end of stream from the gateway.
    Eof,
    /// `ECONNRESET`.
    Reset,
    /// Another error.
    Other(ErrorKind),
    /// After an end of stream, a write the test asked for: whether it failed (the gateway
    /// reset the connection meanwhile).
    LateWriteFailed(bool),
}

/// A plain TCP echo backend that reports how each connection ended. With `hold`, a connection
/// whose client finished stays open and silent (its write side too) until `poke`d, then writes
/// once and reports whether that failed.
struct EchoBackend {
    addr: SocketAddr,
    ends: mpsc::UnboundedReceiver<End>,
    poke: Arc<Notify>,
}

impl EchoBackend {
    async fn start(hold: bool) -> EchoBackend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, ends) = mpsc::unbounded_channel();
        let poke = Arc::new(Notify::new());
        let poked = poke.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (tx, poked) = (tx.clone(), poked.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let end = loop {
                        match s.read(&mut buf).await {
                            Ok(0) => break End::Eof,
                            Ok(n) => {
                                if let Err(e) = s.write_all(&buf[..n]).await {
                                    break kind_end(e.kind());
                                }
                            }
                            Err(e) => break kind_end(e.kind()),
                        }
                    };
                    let eof = end == End::Eof;
                    let _ = tx.send(end);
                    if !eof {
                        return;
                    }
                    if !hold {
                        let _ = s.shutdown().await;
                        return;
                    }
                    poked.notified().await;
                    let failed = s.write_all(b"late").await.is_err();
                    let _ = tx.send(End::LateWriteFailed(failed));
                });
            }
        });
        EchoBackend { addr, ends, poke }
    }

    /// The next connection's end, waiting at most [`WAIT`].
    async fn next_end(&mut self) -> End {
        tokio::time::timeout(WAIT, self.ends.recv())
            .await
            .expect("no backend connection ended")
            .expect("backend gone")
    }
}

fn kind_end(kind: ErrorKind) -> End {
    match kind {
        ErrorKind::ConnectionReset => End::Reset,
        k => End::Other(k),
    }
}

/// Connects to `addr`, sends `hello` and reads its echo back: a connection relayed to an echo
/// backend, established on both sides.
async fn echoed(addr: SocketAddr, hello: &[u8]) -> TcpStream {
    echoed_from(None, addr, hello).await
}

/// As [`echoed`], from the local address `from`.
async fn echoed_from(from: Option<[u8; 4]>, addr: SocketAddr, hello: &[u8]) -> TcpStream {
    let mut s = connect_from(from, addr).await;
    s.write_all(hello).await.unwrap();
    let mut back = vec![0u8; hello.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut back))
        .await
        .expect("no echo in time")
        .unwrap_or_else(|e| panic!("no echo through {addr}: {e}"));
    assert_eq!(back, hello);
    s
}

/// A connection to `addr`, from the address `from` (any port) when given.
async fn connect_from(from: Option<[u8; 4]>, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        sock.bind(SocketAddr::from((ip, 0))).unwrap();
    }
    tokio::time::timeout(WAIT, sock.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

/// How a stream ended for the reader: `Ok(bytes)` at a clean end of stream, or the error kind.
async fn read_to_end_or_error(s: &mut TcpStream) -> Result<Vec<u8>, (ErrorKind, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err((e.kind(), got)),
            }
        }
    })
    .await
    .expect("the connection was not ended in time")
}

/// Reads until the stream ends and asserts it ended with a reset (never a clean end of stream).
async fn assert_reset(s: &mut TcpStream, gw: &Gateway, what: &str) -> Vec<u8> {
    match read_to_end_or_error(s).await {
        Err((ErrorKind::ConnectionReset, got)) => got,
        Ok(got) => panic!("{what}: a clean end of stream after {got:?}, not a reset\n{}", gw.log()),
        Err((kind, _)) => panic!("{what}: {kind:?}, not a reset\n{}", gw.log()),
    }
}

/// A Gateway named `name` with a passthrough listener per (section name, port).
fn listeners(name: &str, sections: &[(&str, u16)]) -> String {
    let mut out = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\nspec:\n  gatewayClassName: sniway\n  listeners:\n"
    );
    for (section, port) in sections {
        out.push_str(&format!(
            "  - name: {section}\n    protocol: TLS\n    port: {port}\n    tls:\n      mode: Passthrough\n"
        ));
    }
    out
}

/// A ListenerPolicy on `gateway`'s listener `section` with `spec` (YAML lines at spec level).
fn listener_policy(name: &str, gateway: &str, section: &str, spec: &str) -> String {
    format!(
        r#"---
apiVersion: sniway.io/v1alpha1
kind: ListenerPolicy
metadata:
  name: {name}
spec:
  targetRefs:
  - {{group: gateway.networking.k8s.io, kind: Gateway, name: {gateway}, sectionName: {section}}}
{spec}"#
    )
}

/// The `Accepted` condition of the ListenerPolicy `name` in `/status`.
fn policy_accepted(gw: &Gateway, name: &str) -> serde_json::Value {
    let (code, body) = gw.get("/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let item = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "ListenerPolicy" && i["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no ListenerPolicy {name} in /status: {body}"))
        .clone();
    let conditions = item["status"]["ancestors"][0]["conditions"].as_array().cloned();
    conditions
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Accepted")
        .unwrap_or_else(|| panic!("no Accepted condition: {item}"))
}

const FOO: &str = "foo.example.com";
const LISTENER_A: &str = "default/gw/a";
const LISTENER_B: &str = "default/gw/b";

/// A Gateway `gw` with a passthrough listener per name in `sections`, each on its own port, all
/// routing `foo.example.com` to `backend`, with the manifests in `more`. Returns the gateway (its
/// `addr` is the first listener's) and every listener's address.
async fn gateway_with(
    sections: &[&str],
    backend: SocketAddr,
    more: &str,
    extra: &[&str],
) -> (Gateway, Vec<SocketAddr>) {
    let ports: Vec<(&str, u16)> = sections.iter().map(|s| (*s, free_port())).collect();
    let manifests = [
        listeners("gw", &ports),
        route("foo", "gw", &[FOO], &[("foo", 1)]),
        service("foo", 443, backend),
        more.to_string(),
    ]
    .concat();
    let gw = Gateway::start(&manifests, ports[0].1, extra);
    let addrs = ports.iter().map(|(_, p)| gw.at([127, 0, 0, 1], *p)).collect();
    (gw, addrs)
}

/// Listeners `a` and `b`: the gateway and b's address.
async fn two_listener_gateway(
    backend: SocketAddr,
    more: &str,
    extra: &[&str],
) -> (Gateway, SocketAddr) {
    let (gw, addrs) = gateway_with(&["a", "b"], backend, more, extra).await;
    (gw, addrs[1])
}

// ---------------------------------------------------------------------------------------------
// Timeouts

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_policy_idle_timeout_resets_its_listener_only_and_is_counted() {
    let tls = Tls::new();
    let mut backend = EchoBackend::start(false).await;
    let policy = listener_policy("quick", "gw", "a", "  timeouts:\n    idle: 1s\n");
    let (gw, addr_b) = two_listener_gateway(backend.addr, &policy, &[]).await;
    let accepted = policy_accepted(&gw, "quick");
    assert_eq!(accepted["status"], "True", "{accepted}");

    let hello = tls.client_hello(FOO);
    let mut on_b = echoed(addr_b, &hello).await;
    let mut on_a = echoed(gw.addr, &hello).await;
    assert_reset(&mut on_a, &gw, "idle on listener a").await;
    assert_eq!(backend.next_end().await, End::Reset, "the backend of the idle connection");
    // Listener b has no policy: its connection, idle since before a's, is still relayed.
    on_b.write_all(b"still there?").await.unwrap();
    let mut back = [0u8; 12];
    tokio::time::timeout(WAIT, on_b.read_exact(&mut back)).await.unwrap().unwrap();
    assert_eq!(&back, b"still there?");
    let body = wait_metric(
        &gw,
        "sniway_connections_closed_total",
        &[("listener", LISTENER_A), ("reason", "idle_timeout")],
        1.0,
    );
    let on_b_closed = metric(&body, "sniway_connections_closed_total", &[("listener", LISTENER_B)]);
    assert_eq!(on_b_closed, 0.0, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_backend_after_the_client_finished_is_reset_at_the_half_close_timeout() {
    let tls = Tls::new();
    let mut backend = EchoBackend::start(true).await;
    let (gw, _) = two_listener_gateway(backend.addr, "", &["--half-close-timeout", "1s"]).await;
    let mut s = echoed(gw.addr, &tls.client_hello(FOO)).await;
    s.shutdown().await.unwrap();
    assert_eq!(backend.next_end().await, End::Eof, "the client's FIN is passed on");
    assert_reset(&mut s, &gw, "half-closed").await;
    wait_metric(
        &gw,
        "sniway_connections_closed_total",
        &[("listener", LISTENER_A), ("reason", "half_close_timeout")],
        1.0,
    );
    backend.poke.notify_one();
    assert_eq!(backend.next_end().await, End::LateWriteFailed(true), "the backend was reset");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_maximum_lifetime_cuts_a_busy_stream_with_a_reset() {
    let tls = Tls::new();
    let mut backend = EchoBackend::start(false).await;
    let (gw, _) = two_listener_gateway(backend.addr, "", &["--max-lifetime", "1s"]).await;
    let mut s = echoed(gw.addr, &tls.client_hello(FOO)).await;
    // Ping-pong without pause until the gateway cuts the stream.
    let chunk = vec![0x5au8; 4096];
    let mut back = vec![0u8; chunk.len()];
    let started = Instant::now();
    let mut rounds = 0u64;
    let error = loop {
        assert!(started.elapsed() < WAIT, "still relaying after {rounds} rounds\n{}", gw.log());
        if let Err(e) = s.write_all(&chunk).await {
            break e;
        }
        match s.read_exact(&mut back).await {
            Ok(_) => rounds += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "after {rounds} rounds: {error}");
    assert!(rounds > 0);
    assert_eq!(backend.next_end().await, End::Reset, "the backend of the cut connection");
    wait_metric(
        &gw,
        "sniway_connections_closed_total",
        &[("listener", LISTENER_A), ("reason", "max_lifetime")],
        1.0,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_hello_not_complete_at_the_hello_timeout_is_reset_and_counted() {
    let tls = Tls::new();
    let backend = EchoBackend::start(false).await;
    let (gw, _) = two_listener_gateway(backend.addr, "", &["--hello-timeout", "1s"]).await;
    let mut s = connect_from(None, gw.addr).await;
    s.write_all(&tls.client_hello(FOO)[..10]).await.unwrap();
    let got = assert_reset(&mut s, &gw, "hello timeout").await;
    assert!(got.is_empty(), "{got:?}");
    let address = gw.addr.to_string();
    wait_metric(
        &gw,
        "sniway_hello_failures_total",
        &[("address", &address), ("reason", "timeout")],
        1.0,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_handshake_not_complete_at_the_handshake_timeout_is_reset_and_counted() {
    let tls = Tls::new();
    let backend = EchoBackend::start(false).await;
    let leaf = tls.pki.leaf(&["tls.example.com"]).unwrap();
    let port = free_port();
    let manifests = [
        tls_gateway("gw", port, &[("term", "tls.example.com", "Terminate", Some("cert"))]),
        tls_secret("cert", &leaf, false),
        route("term", "gw", &["tls.example.com"], &[("plain", 1)]),
        service("plain", 443, backend.addr),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &["--handshake-timeout", "1s"]);
    let mut s = connect_from(None, gw.addr).await;
    // The ClientHello, then nothing: the gateway answers with its flight and waits.
    s.write_all(&tls.client_hello("tls.example.com")).await.unwrap();
    let got = assert_reset(&mut s, &gw, "handshake timeout").await;
    assert_eq!(got.first(), Some(&0x16), "the server's flight: {got:?}");
    wait_metric(
        &gw,
        "sniway_tls_handshake_failures_total",
        &[("listener", "default/gw/term"), ("reason", "timeout")],
        1.0,
    );
}

// ---------------------------------------------------------------------------------------------
// Limits

/// Asserts the gateway closed `s` with nothing written (a FIN, or a reset when it left bytes
/// unread).
async fn assert_refused(s: &mut TcpStream, gw: &Gateway, what: &str) {
    let got = match read_to_end_or_error(s).await {
        Ok(got) | Err((_, got)) => got,
    };
    assert!(got.is_empty(), "{what}: the gateway wrote {got:?}\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_global_limit_every_port_closes_new_connections_until_one_ends() {
    let tls = Tls::new();
    let backend = EchoBackend::start(false).await;
    let (gw, addr_b) = two_listener_gateway(backend.addr, "", &["--max-connections", "2"]).await;
    let hello = tls.client_hello(FOO);
    let held_a = echoed(gw.addr, &hello).await;
    let held_b = echoed(addr_b, &hello).await;
    for addr in [gw.addr, addr_b] {
        let mut s = connect_from(None, addr).await;
        assert_refused(&mut s, &gw, &format!("over the global limit on {addr}")).await;
    }
    let body = metrics(&gw);
    for addr in [gw.addr, addr_b] {
        let address = addr.to_string();
        let limited = [("address", address.as_str()), ("listener", ""), ("limit", "global")];
        assert_eq!(metric(&body, "sniway_connections_limited_total", &limited), 1.0, "{body}");
        let accepted = metric(&body, "sniway_connections_accepted_total", &[("address", &address)]);
        assert_eq!(accepted, 2.0, "{body}");
    }
    assert_eq!(metric(&body, "sniway_connections_max", &[]), 2.0, "{body}");
    // One ends: each port serves again, in turn.
    drop(held_a);
    for addr in [gw.addr, addr_b] {
        wait_metric(&gw, "sniway_connections_open", &[], 1.0);
        let s = echoed(addr, &hello).await;
        drop(s);
    }
    drop(held_b);
    let body = wait_metric(&gw, "sniway_connections_open", &[], 0.0);
    assert_eq!(metric(&body, "sniway_connections_limited_total", &[]), 2.0, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn listener_policy_limits_refuse_on_their_listener_only() {
    let tls = Tls::new();
    let backend = EchoBackend::start(false).await;
    let policies = [
        listener_policy("cap", "gw", "a", "  limits:\n    connections: 1\n"),
        listener_policy("per-client", "gw", "b", "  limits:\n    connectionsPerClient: 1\n"),
    ]
    .concat();
    let (gw, addrs) = gateway_with(&["a", "b", "c"], backend.addr, &policies, &[]).await;
    for name in ["cap", "per-client"] {
        let accepted = policy_accepted(&gw, name);
        assert_eq!(accepted["status"], "True", "{name}: {accepted}");
    }
    let (a, b, c) = (addrs[0], addrs[1], addrs[2]);
    let hello = tls.client_hello(FOO);
    let local = Some([127, 0, 0, 1]);
    let other = Some([127, 0, 0, 2]);

    // Listener a: one connection at a time.
    let held_a = echoed(a, &hello).await;
    let mut s = connect_from(local, a).await;
    s.write_all(&hello).await.unwrap();
    assert_refused(&mut s, &gw, "the second connection on listener a").await;
    // Listener b: one connection per client address.
    let held_b = echoed_from(local, b, &hello).await;
    let mut s = connect_from(local, b).await;
    s.write_all(&hello).await.unwrap();
    assert_refused(&mut s, &gw, "a second connection from 127.0.0.1 on listener b").await;
    let from_other = echoed_from(other, b, &hello).await;
    // Listener c, without limits, serves several at once meanwhile.
    let mut on_c = Vec::new();
    for _ in 0..3 {
        on_c.push(echoed(c, &hello).await);
    }

    let body = metrics(&gw);
    let limited = |listener: &str, limit: &str| {
        metric(
            &body,
            "sniway_connections_limited_total",
            &[("listener", listener), ("limit", limit)],
        )
    };
    assert_eq!(limited(LISTENER_A, "listener"), 1.0, "{body}");
    assert_eq!(limited(LISTENER_B, "client"), 1.0, "{body}");
    assert_eq!(metric(&body, "sniway_connections_limited_total", &[]), 2.0, "{body}");
    let active =
        |listener: &str| metric(&body, "sniway_connections_active", &[("listener", listener)]);
    assert_eq!((active(LISTENER_A), active(LISTENER_B), active("default/gw/c")), (1.0, 2.0, 3.0));

    // Once the connections held end, each listener takes a new one again.
    drop(held_a);
    wait_metric(&gw, "sniway_connections_active", &[("listener", LISTENER_A)], 0.0);
    drop(echoed(a, &hello).await);
    drop(held_b);
    wait_metric(&gw, "sniway_connections_active", &[("listener", LISTENER_B)], 1.0);
    drop(echoed_from(local, b, &hello).await);
    drop((from_other, on_c));
    let body = wait_metric(&gw, "sniway_connections_open", &[], 0.0);
    assert_eq!(metric(&body, "sniway_connections_limited_total", &[]), 2.0, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_backend_limit_its_connections_are_refused_and_other_backends_serve() {
    let tls = Tls::new();
    let backend = EchoBackend::start(false).await;
    let more = [
        route("bar", "gw", &["bar.example.com"], &[("bar", 1)]),
        service("bar", 443, backend.addr),
    ]
    .concat();
    let (gw, _) =
        gateway_with(&["a"], backend.addr, &more, &["--max-backend-connections", "1"]).await;
    let (foo, bar) = (tls.client_hello(FOO), tls.client_hello("bar.example.com"));
    let held = echoed(gw.addr, &foo).await;
    let mut s = connect_from(None, gw.addr).await;
    s.write_all(&foo).await.unwrap();
    assert_refused(&mut s, &gw, "a second connection to foo").await;
    let on_bar = echoed(gw.addr, &bar).await;
    let body = metrics(&gw);
    let limited = [("listener", LISTENER_A), ("limit", "backend")];
    assert_eq!(metric(&body, "sniway_connections_limited_total", &limited), 1.0, "{body}");
    let closed = [("backend", "default/foo:443"), ("reason", "limit_backend")];
    assert_eq!(metric(&body, "sniway_connections_closed_total", &closed), 1.0, "{body}");
    // foo serves again once its connection ended.
    drop(held);
    wait_metric(&gw, "sniway_connections_active", &[("backend", "default/foo:443")], 0.0);
    drop(echoed(gw.addr, &foo).await);
    drop(on_bar);
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// `len` bytes of a repeating pattern.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Sends `first` then `extra` bytes through `s` (to an echo backend), half-closes, and reads
/// the echo to its end, writing and reading at once; returns the bytes echoed.
async fn echo_through(s: TcpStream, first: &[u8], extra: usize) -> Vec<u8> {
    let (mut rd, mut wr) = s.into_split();
    let mut data = first.to_vec();
    data.extend(payload(extra));
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, rd.read_to_end(&mut got)).await.expect("echo in time").unwrap();
    let _wr = writer.await.unwrap();
    got
}

/// Connects, sends `bytes`, and waits until the gateway closed the connection.
async fn refused(gw: &Gateway, bytes: &[u8]) -> SocketAddr {
    let mut s = connect_from(None, gw.addr).await;
    let local = s.local_addr().unwrap();
    s.write_all(bytes).await.unwrap();
    assert_refused(&mut s, gw, &format!("{bytes:?}")).await;
    local
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_count_a_known_mix_of_connections_exactly() {
    let tls = Tls::new();
    let backend = EchoBackend::start(false).await;
    let (gw, _) = gateway_with(&["a"], backend.addr, "", &["--max-connections", "1"]).await;
    let address = gw.addr.to_string();
    let hello = tls.client_hello(FOO);
    let mut clients = Vec::new();
    // With one connection allowed at a time, each waits for the previous one to be gone.
    for _ in 0..2 {
        clients.push(refused(&gw, &tls.client_hello("127.0.0.1")).await);
        wait_idle(&gw);
    }
    for i in 0..3 {
        clients.push(refused(&gw, &tls.client_hello(&format!("unknown-{i}.example.com"))).await);
        wait_idle(&gw);
    }
    clients.push(refused(&gw, b"GET / HTTP/1.1\r\nhost: foo.example.com\r\n\r\n").await);
    wait_idle(&gw);
    let extras = [0usize, 1, 1000, 70_000, 300_000];
    let mut total = 0u64;
    for extra in &extras[..4] {
        let s = connect_from(None, gw.addr).await;
        clients.push(s.local_addr().unwrap());
        let echoed = echo_through(s, &hello, *extra).await;
        assert_eq!(echoed.len(), hello.len() + extra, "{}", gw.log());
        total += echoed.len() as u64;
        wait_idle(&gw);
    }
    // The fifth is open while one more is refused by the global limit.
    let last = echoed(gw.addr, &hello).await;
    clients.push(last.local_addr().unwrap());
    let mut over = connect_from(None, gw.addr).await;
    clients.push(over.local_addr().unwrap());
    assert_refused(&mut over, &gw, "over the global limit").await;
    let extra = payload(extras[4]);
    let echoed = echo_through(last, &extra, 0).await;
    assert_eq!(echoed, extra);
    total += (hello.len() + extra.len()) as u64;
    let body = wait_idle(&gw);

    let at = [("address", address.as_str())];
    let path =
        [("listener", LISTENER_A), ("route", "default/foo#0"), ("backend", "default/foo:443")];
    let reason = |r| [("address", address.as_str()), ("reason", r)];
    let closed = |r| [("listener", LISTENER_A), ("reason", r)];
    let counts = [
        (
            "sniway_connections_accepted_total",
            metric(&body, "sniway_connections_accepted_total", &at),
            12.0,
        ),
        ("hello no_sni", metric(&body, "sniway_hello_failures_total", &reason("no_sni")), 2.0),
        ("hello no_route", metric(&body, "sniway_hello_failures_total", &reason("no_route")), 3.0),
        ("hello not_tls", metric(&body, "sniway_hello_failures_total", &reason("not_tls")), 1.0),
        ("every hello failure", metric(&body, "sniway_hello_failures_total", &[]), 6.0),
        (
            "limited global",
            metric(&body, "sniway_connections_limited_total", &[("limit", "global")]),
            1.0,
        ),
        ("every limit", metric(&body, "sniway_connections_limited_total", &[]), 1.0),
        ("sniway_connections_total", metric(&body, "sniway_connections_total", &path), 5.0),
        ("every routed connection", metric(&body, "sniway_connections_total", &[]), 5.0),
        (
            "closed completed",
            metric(&body, "sniway_connections_closed_total", &closed("completed")),
            5.0,
        ),
        ("every close", metric(&body, "sniway_connections_closed_total", &[]), 5.0),
        ("received bytes", metric(&body, "sniway_received_bytes_total", &path), total as f64),
        ("sent bytes", metric(&body, "sniway_sent_bytes_total", &path), total as f64),
        (
            "connect attempts",
            metric(
                &body,
                "sniway_backend_connect_attempts_total",
                &[("backend", "default/foo:443")],
            ),
            5.0,
        ),
        ("connect failures", metric(&body, "sniway_backend_connect_failures_total", &[]), 0.0),
        ("active", metric(&body, "sniway_connections_active", &path), 0.0),
        ("open", metric(&body, "sniway_connections_open", &[]), 0.0),
        ("hello durations", metric(&body, "sniway_hello_duration_seconds_count", &at), 10.0),
        (
            "connection durations",
            metric(&body, "sniway_connection_duration_seconds_count", &[("listener", LISTENER_A)]),
            5.0,
        ),
        (
            "connect durations",
            metric(
                &body,
                "sniway_backend_connect_duration_seconds_count",
                &[("backend", "default/foo:443")],
            ),
            5.0,
        ),
        ("build info", metric(&body, "sniway_build_info", &[]), 1.0),
    ];
    let wrong: Vec<_> = counts.iter().filter(|(_, got, want)| got != want).collect();
    assert!(wrong.is_empty(), "(what, got, expected): {wrong:?}\n{body}");

    // No label names a server name or a client address.
    let clients: Vec<String> = clients.iter().map(|c| c.to_string()).collect();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, _)) = line.split_once('{') else { continue };
        let (labels, _) = parse_sample(line, name).unwrap();
        for (k, v) in labels {
            assert!(!v.contains("example.com"), "a server name in {k}: {line}");
            assert!(!clients.contains(&v), "a client address in {k}: {line}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Access log

/// The client addresses of the connections [`logged_mix`] made, and the bytes of the routed one.
struct Mix {
    routed: SocketAddr,
    limited: SocketAddr,
    unknown: SocketAddr,
    bytes: u64,
    backend: SocketAddr,
}

/// A gateway with an access log (`extra`) and a global limit of one connection serves a routed
/// connection whose client offers ALPN (one more refused by the limit meanwhile) and one for an
/// unknown name, then is stopped with SIGTERM and has exited.
async fn logged_mix(extra: &[&str]) -> (Gateway, Mix) {
    let tls = Tls::new();
    let backend = EchoBackend::start(false).await;
    let mut args = vec!["--max-connections", "1"];
    args.extend_from_slice(extra);
    let (mut gw, _) = gateway_with(&["a"], backend.addr, "", &args).await;
    let mut config = (*tls.client).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let hello = sniway_testkit::rustls_client_hello(&Arc::new(config), FOO);
    let routed = echoed(gw.addr, &hello).await;
    let routed_addr = routed.local_addr().unwrap();
    let mut over = connect_from(None, gw.addr).await;
    let limited = over.local_addr().unwrap();
    assert_refused(&mut over, &gw, "over the global limit").await;
    let echoed = echo_through(routed, b"some bytes after the hello", 0).await;
    assert_eq!(echoed, b"some bytes after the hello");
    let bytes = (hello.len() + echoed.len()) as u64;
    wait_idle(&gw);
    let unknown = refused(&gw, &tls.client_hello("unknown.example.com")).await;
    wait_idle(&gw);
    gw.signal("TERM");
    let status = gw.wait_exit(WAIT);
    assert!(status.success(), "{status}\n{}", gw.log());
    let mix = Mix { routed: routed_addr, limited, unknown, bytes, backend: backend.addr };
    (gw, mix)
}

/// A text access log line as the JSON object the JSON format would have written.
fn text_line_as_json(line: &str) -> serde_json::Value {
    use serde_json::Value;
    let mut map = serde_json::Map::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let mut value = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            assert!(matches!(chars.next(), None | Some(' ')), "{line}");
        } else {
            value = chars.by_ref().take_while(|&c| c != ' ').collect();
        }
        let v = match (key.as_str(), value.as_str()) {
            (_, "-") if !quoted => Value::Null,
            ("alpn", list) => Value::from(list.split(',').collect::<Vec<_>>()),
            ("bytes_in" | "bytes_out" | "hello_ms" | "connect_ms" | "duration_ms", n) => {
                serde_json::from_str(n).unwrap_or_else(|_| panic!("{key}={n} in {line}"))
            }
            _ => Value::from(value),
        };
        map.insert(key, v);
    }
    Value::Object(map)
}

/// Checks the three lines of [`logged_mix`].
fn check_access_log(lines: &[serde_json::Value], mix: &Mix, gw: &Gateway) {
    use serde_json::json;
    assert_eq!(lines.len(), 3, "one line per connection: {lines:#?}\n{}", gw.log());
    let keys = [
        "time",
        "client",
        "local",
        "listener",
        "sni",
        "alpn",
        "route",
        "backend",
        "endpoint",
        "bytes_in",
        "bytes_out",
        "hello_ms",
        "connect_ms",
        "duration_ms",
        "reason",
        "ended_by",
    ];
    let by_client = |c: SocketAddr| {
        lines
            .iter()
            .find(|l| l["client"] == c.to_string())
            .unwrap_or_else(|| panic!("no line for {c}: {lines:#?}"))
    };
    for line in lines {
        let mut have: Vec<&str> = line.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = keys.to_vec();
        want.sort();
        have.sort();
        assert_eq!(have, want, "{line}");
        let time = line["time"].as_str().unwrap();
        let t = time.as_bytes();
        assert!(
            t.len() == 24 && t[4] == b'-' && t[10] == b'T' && t[19] == b'.' && t[23] == b'Z',
            "{time}"
        );
        assert_eq!(line["local"], gw.addr.to_string(), "{line}");
        assert!(line["duration_ms"].as_f64().is_some(), "{line}");
    }
    let routed = by_client(mix.routed);
    let expect = json!({
        "listener": LISTENER_A, "sni": FOO, "alpn": ["h2", "http/1.1"], "route": "default/foo#0",
        "backend": "default/foo:443", "endpoint": mix.backend.to_string(),
        "bytes_in": mix.bytes, "bytes_out": mix.bytes, "reason": "completed", "ended_by": "client",
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&routed[k], v, "{k} in {routed}");
    }
    for k in ["hello_ms", "connect_ms"] {
        assert!(routed[k].as_f64().is_some(), "{k} in {routed}");
    }
    let limited = by_client(mix.limited);
    let expect = json!({
        "listener": null, "sni": null, "alpn": null, "route": null, "backend": null,
        "endpoint": null, "bytes_in": 0, "bytes_out": 0, "hello_ms": null, "connect_ms": null,
        "reason": "limit_global", "ended_by": "gateway",
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&limited[k], v, "{k} in {limited}");
    }
    let unknown = by_client(mix.unknown);
    let expect = json!({
        "listener": LISTENER_A, "sni": "unknown.example.com", "alpn": null, "route": null,
        "backend": null, "endpoint": null, "bytes_in": 0, "bytes_out": 0, "connect_ms": null,
        "reason": "no_route", "ended_by": "gateway",
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&unknown[k], v, "{k} in {unknown}");
    }
    assert!(unknown["hello_ms"].as_f64().is_some(), "{unknown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_access_log_on_stdout_has_a_line_per_connection_by_the_end_of_a_graceful_stop() {
    let (mut gw, mix) = logged_mix(&["--access-log", "json"]).await;
    let lines: Vec<serde_json::Value> = gw
        .stdout_to_end(WAIT)
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("reason").is_some())
        .collect();
    check_access_log(&lines, &mix, &gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_access_log_file_has_a_line_per_connection_by_the_end_of_a_graceful_stop() {
    let dir = TempDir::new("access-log");
    let path = dir.0.join("access.log");
    let path = path.to_str().unwrap();
    let (gw, mix) = logged_mix(&["--access-log", "text", "--access-log-path", path]).await;
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(text_line_as_json).collect();
    check_access_log(&lines, &mix, &gw);
}

// ---------------------------------------------------------------------------------------------
// Descriptors and sockets

/// Descriptors below `limit` the process `pid` has open: the ones its open-file limit counts
/// (one inherited above it, such as a jobserver pipe, does not take a number below it).
fn open_descriptors(pid: u32, limit: usize) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
        .filter(|&fd| fd < limit)
        .count()
}

/// User plus system CPU time of `pid`, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may contain spaces; the fields after it do not.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second.
fn clock_ticks() -> u64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_descriptors_the_accept_loop_backs_off_without_spinning_and_recovers() {
    const LIMIT: usize = 64;
    const CLIENTS: usize = 100;
    let tls = Tls::new();
    let backend = EchoBackend::start(false).await;
    let port = free_port();
    let manifests = [
        listeners("gw", &[("a", port)]),
        route("foo", "gw", &[FOO], &[("foo", 1)]),
        service("foo", 443, backend.addr),
    ]
    .concat();
    // `ulimit -n` lowers both limits: sniway's raise to the hard limit then changes nothing.
    let wrapper = ["sh", "-c", &format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\"")];
    let gw = Gateway::start_wrapped(&manifests, port, &["--hello-timeout", "5m"], &wrapper);
    let pid = gw.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let nofile: Vec<&str> = nofile.split_whitespace().collect();
    assert_eq!(nofile[3..5], [LIMIT.to_string(), LIMIT.to_string()], "{limits}");

    // Silent connections: each accepted one holds a descriptor until its hello deadline. The
    // kernel completes the rest and queues them.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        match TcpStream::connect(gw.addr).await {
            Ok(s) => clients.push(s),
            Err(e) => panic!("connection {i} to {}: {e}\n{}", gw.addr, gw.log()),
        }
    }
    let deadline = Instant::now() + WAIT;
    while open_descriptors(pid, LIMIT) < LIMIT {
        let open = open_descriptors(pid, LIMIT);
        assert!(Instant::now() < deadline, "{open} descriptors open\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Exhausted, with connections waiting: the accept loop fails with EMFILE and must wait.
    let window = Duration::from_secs(2);
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    let used = cpu_ticks(pid) - before;
    let per_second = clock_ticks();
    assert_eq!(open_descriptors(pid, LIMIT), LIMIT);
    // A loop retrying accept at once would use about a whole core (2 s of ticks); backing off,
    // a few wake-ups a second cost next to nothing. A tenth of the window is the bound.
    assert!(
        used * 10 <= per_second * window.as_secs(),
        "{used} ticks of CPU in {window:?} ({per_second}/s) while out of descriptors\n{}",
        gw.log()
    );
    let log = gw.log();
    assert!(
        log.contains("accept failed; backing off") && log.contains("os error 24"),
        "no back-off warning with EMFILE:\n{log}"
    );

    // The clients leave: every queued connection is accepted and ends, and serving resumes on
    // its own.
    drop(clients);
    wait_metric(&gw, "sniway_hello_failures_total", &[("reason", "closed")], CLIENTS as f64);
    let s = echoed(gw.addr, &tls.client_hello(FOO)).await;
    drop(s);
    let body = wait_idle(&gw);
    assert_eq!(metric(&body, "sniway_connections_total", &[]), 1.0, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_client_sockets_have_keep_alive_with_the_configured_timing() {
    let tls = Tls::new();
    let backend = EchoBackend::start(false).await;
    let args = ["--keepalive-idle", "7s", "--keepalive-interval", "3s"];
    let (gw, _) = gateway_with(&["a"], backend.addr, "", &args).await;
    let s = echoed(gw.addr, &tls.client_hello(FOO)).await;
    let client = s.local_addr().unwrap();
    let filter = format!("( sport = :{} and dport = :{} )", gw.addr.port(), client.port());
    let out = std::process::Command::new("ss")
        .args(["-tnoe", "state", "established", &filter])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(&client.to_string()))
        .unwrap_or_else(|| panic!("the gateway's socket for {client} is not listed:\n{text}"));
    // timer:(keepalive,6.996ms,0): the first probe is due within the 7 s idle time.
    let timer = line
        .split("timer:(keepalive,")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .unwrap_or_else(|| panic!("no keep-alive timer: {line}"));
    let secs = ss_seconds(timer).unwrap_or_else(|| panic!("{timer} in {line}"));
    assert!(secs > 0.0 && secs <= 7.0, "{line}");
    drop(s);
}

/// A timer as `ss` prints it (`[Nmin][S.|Ssec][MMMms]`: `6.996ms` is 6.996 s, `7sec`, `340ms`),
/// in seconds.
fn ss_seconds(t: &str) -> Option<f64> {
    let (minutes, rest) = match t.split_once("min") {
        Some((m, r)) => (m.parse::<f64>().ok()?, r),
        None => (0.0, t),
    };
    let secs = if let Some(s) = rest.strip_suffix("sec") {
        s.parse::<f64>().ok()?
    } else if let Some(ms) = rest.strip_suffix("ms") {
        match ms.split_once('.') {
            Some((s, ms)) => s.parse::<f64>().ok()? + ms.parse::<f64>().ok()? / 1000.0,
            None => ms.parse::<f64>().ok()? / 1000.0,
        }
    } else if rest.is_empty() {
        0.0
    } else {
        return None;
    };
    Some(minutes * 60.0 + secs)
}

//! Reloads, drain and signals through the real binary, under load. Long-lived streams carry
//! checksummed traffic (every chunk's echo compared byte for byte) and short connections keep
//! arriving while the configuration changes under them: no reload may break one, whatever it
//! changes, and each must take effect. An invalid edit keeps the table being served; a port
//! held by another program fails only its listener; SIGTERM drains and cuts what is left with a
//! reset, and a second SIGTERM exits at once.
//!
//! Every wait is on the gateway's own signals (the `reloaded` line, `/readyz`, `/status`,
//! `/metrics`) or on the streams' progress, and bounded in count and time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::*;

/// Pause between two chunks of a stream.
const PAUSE: Duration = Duration::from_millis(20);
/// Largest chunk a stream sends at once.
const CHUNK_MAX: u64 = 16 * 1024;
/// Bound of any single network step (connect, handshake, one echo, the end of a stream).
const IO: Duration = Duration::from_secs(10);
/// Longest life of a stream: a test whose reloads take longer fails rather than hangs.
const STREAM_BOUND: Duration = Duration::from_secs(50);
/// Bound of a poll on the gateway's state (readiness, the streams' progress).
const POLL: Duration = Duration::from_secs(15);

/// Blocking calls on the harness (event lines, admin requests, signals) off the runtime's
/// worker threads, so the streams keep running meanwhile.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// xorshift64*: pseudo-random chunk lengths and bytes, so a lost, duplicated or reordered block
/// changes what comes back.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chunk(&mut self) -> Vec<u8> {
        let len = 1 + (self.next() % CHUNK_MAX) as usize;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Writes one chunk and reads its echo: the number of bytes, or why not (an echo that differs
/// is an error too).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, rng: &mut Rng) -> io::Result<u64> {
    let out = rng.chunk();
    let mut back = vec![0u8; out.len()];
    tokio::time::timeout(IO, async {
        s.write_all(&out).await?;
        s.read_exact(&mut back).await?;
        Ok::<_, io::Error>(())
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no echo in time"))??;
    if back != out {
        return Err(io::Error::other("the echo differs from what was sent"));
    }
    Ok(out.len() as u64)
}

/// Half-closes and reads the echo's end: it must end cleanly, with nothing more.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> io::Result<()> {
    let rest = tokio::time::timeout(IO, async {
        s.shutdown().await?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        Ok::<_, io::Error>(rest)
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the echo did not end in time"))??;
    if rest.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{} bytes after the end", rest.len())))
    }
}

/// A long-lived stream: echoes chunks until told to stop, then ends cleanly.
struct Stream {
    name: String,
    /// Chunks echoed so far.
    progress: Arc<AtomicU64>,
    /// Bytes echoed and verified, or why the stream broke.
    task: JoinHandle<Result<u64, String>>,
}

fn spawn_stream<S>(name: String, mut s: S, seed: u64, mut stop: watch::Receiver<bool>) -> Stream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let progress = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&progress);
    let task = tokio::spawn(async move {
        let mut rng = Rng::new(seed);
        let give_up = Instant::now() + STREAM_BOUND;
        let mut bytes = 0u64;
        while !*stop.borrow() {
            if Instant::now() > give_up {
                return Err(format!("still running after {STREAM_BOUND:?}"));
            }
            bytes += exchange(&mut s, &mut rng)
                .await
                .map_err(|e| format!("broken after {bytes} bytes: {e} ({:?})", e.kind()))?;
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                () = tokio::time::sleep(PAUSE) => {}
                _ = stop.changed() => {}
            }
        }
        finish(&mut s).await.map_err(|e| format!("after {bytes} bytes, at the end: {e}"))?;
        Ok(bytes)
    });
    Stream { name, progress, task }
}

fn progress(streams: &[Stream]) -> Vec<u64> {
    streams.iter().map(|s| s.progress.load(Ordering::Relaxed)).collect()
}

/// Waits until every stream has echoed `by` more chunks than in `since`: all of them are alive
/// now.
async fn wait_progress(streams: &[Stream], since: &[u64], by: u64, log: impl Fn() -> String) {
    let deadline = Instant::now() + POLL;
    loop {
        let late: Vec<&Stream> = streams
            .iter()
            .zip(since)
            .filter(|(s, n)| s.progress.load(Ordering::Relaxed) < *n + by)
            .map(|(s, _)| s)
            .collect();
        let Some(first) = late.first() else { return };
        if first.task.is_finished() || Instant::now() > deadline {
            panic!(
                "{} streams stalled, first {} (ended: {})\n{}",
                late.len(),
                first.name,
                first.task.is_finished(),
                log()
            );
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Stops the streams and checks that every one ended cleanly with every byte verified; the
/// total.
async fn join(streams: Vec<Stream>, stop: &watch::Sender<bool>, log: impl Fn() -> String) -> u64 {
    stop.send_replace(true);
    let mut total = 0;
    for s in streams {
        match tokio::time::timeout(IO * 2, s.task).await {
            Ok(Ok(Ok(bytes))) => total += bytes,
            Ok(Ok(Err(e))) => panic!("stream {}: {e}\n{}", s.name, log()),
            Ok(Err(e)) => panic!("stream {}: {e}", s.name),
            Err(_) => panic!("stream {} did not end\n{}", s.name, log()),
        }
    }
    total
}

/// A client configuration that never resumes a session, so every handshake shows the
/// certificate the gateway presents now.
fn no_resumption(tls: &Tls) -> Arc<rustls::ClientConfig> {
    let mut c = (*tls.client).clone();
    c.resumption = rustls::client::Resumption::disabled();
    Arc::new(c)
}

async fn tls_connect(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    sni: &str,
) -> TlsStream<TcpStream> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(IO, async {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(Arc::clone(client)).connect(name, tcp).await
    })
    .await
    .unwrap_or_else(|_| panic!("handshake for {sni} at {addr} timed out"))
    .unwrap_or_else(|e| panic!("handshake for {sni} at {addr}: {e}"))
}

fn leaf_of(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

/// A connection to a plain echo backend through a passthrough listener: a real ClientHello for
/// `sni`, whose echo is read back before the stream is handed over.
async fn raw_stream(tls: &Tls, addr: SocketAddr, sni: &str) -> io::Result<TcpStream> {
    let hello = tls.client_hello(sni);
    tokio::time::timeout(IO, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(&hello).await?;
        let mut back = vec![0u8; hello.len()];
        s.read_exact(&mut back).await?;
        if back != hello {
            return Err(io::Error::other("the ClientHello's echo differs"));
        }
        Ok(s)
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no echo of the ClientHello in time"))?
}

/// What a name backend answers through the gateway for `sni`; empty when the gateway closed the
/// connection without a byte (no route).
async fn answer(tls: &Tls, addr: SocketAddr, sni: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.write_all(&tls.client_hello(sni)).await.unwrap();
    let (got, closed) = read_all_until_closed(&mut s, IO).await;
    assert!(closed, "the connection for {sni} was not closed");
    String::from_utf8(got).unwrap()
}

/// A steady flow of short connections to a passthrough listener in front of a plain echo
/// backend, until stopped: (connections that worked, failures).
fn spawn_short(
    tls: &Tls,
    addr: SocketAddr,
    sni: &str,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<(u64, Vec<String>)> {
    let hello = tls.client_hello(sni);
    tokio::spawn(async move {
        let give_up = Instant::now() + STREAM_BOUND;
        let (mut ok, mut failures) = (0u64, Vec::new());
        while !*stop.borrow() && Instant::now() < give_up {
            let one = tokio::time::timeout(IO, async {
                let mut s = TcpStream::connect(addr).await?;
                s.write_all(&hello).await?;
                let mut back = vec![0u8; hello.len()];
                s.read_exact(&mut back).await?;
                if back != hello {
                    return Err(io::Error::other("echo differs"));
                }
                Ok::<_, io::Error>(())
            })
            .await;
            match one {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => failures.push(format!("{e} ({:?})", e.kind())),
                Err(_) => failures.push("timed out".into()),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = stop.changed() => {}
            }
        }
        (ok, failures)
    })
}

/// Waits for the next `reloaded` line and checks it is attempt `n` with `result`.
fn reloaded(gw: &mut Gateway, n: u64, result: &str) -> Value {
    let ev = blocking(|| gw.wait_event("reloaded"));
    let log = gw.log_reader();
    assert_eq!(ev["reloaded"]["attempt"], n, "{ev}\n{}", log());
    assert_eq!(ev["reloaded"]["result"], result, "{ev}\n{}", log());
    ev
}

/// The value of one series (`name{labels}` exactly as exposed) in `/metrics`.
fn metric(gw: &Gateway, series: &str) -> Option<f64> {
    let (code, body) = blocking(|| gw.get("/metrics"));
    assert_eq!(code, 200, "{body}");
    body.lines().find_map(|l| {
        l.strip_prefix(series)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok()
    })
}

/// Polls `/readyz` until it answers `code`; its body.
async fn wait_readyz(gw: &Gateway, code: u16) -> String {
    let deadline = Instant::now() + POLL;
    loop {
        let (got, body) = blocking(|| gw.get("/readyz"));
        if got == code {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz still {got}: {body}\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replaces the manifest file in place (truncate and write, as `>` does).
fn write_in_place(gw: &Gateway, text: &str) {
    std::fs::write(&gw.file, text).unwrap();
}

/// Replaces the manifest file by writing a temporary file beside it and renaming it over (as
/// editors and `kubectl`-style tools do).
fn write_and_rename(gw: &Gateway, text: &str) {
    let tmp = gw.file.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &gw.file).unwrap();
}

/// Whether `sockets` (from a ready or reloaded line) has `addr` bound.
fn bound(sockets: &Value, addr: SocketAddr) -> bool {
    sockets
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["address"] == addr.to_string() && s["bound"].is_string())
}

/// Seven reloads while 36 long-lived streams (passthrough and terminated) and a flow of short
/// connections run: routes, backends and weights added, changed and removed, a certificate
/// rotated, a port added then removed; by in-place writes, renames and SIGHUP. Not a
/// connection breaks, not a byte differs, and each reload is visible at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chain_of_reloads_under_load_breaks_nothing_and_each_takes_effect_at_once() {
    let tls = Tls::new();
    let client = no_resumption(&tls);
    let echo =
        tls.backend("echo", &["stream.example.com", "extra.example.com"], BackendReply::Echo).await;
    let plain = plain_backend(None).await;
    let (a, b) = (name_backend("a").await, name_backend("b").await);
    let cert1 = tls.pki.leaf(&["term.example.com"]).unwrap();
    let cert2 = tls.pki.leaf(&["term.example.com"]).unwrap();

    // The Terminate listener's Secret is read through an absolute symlink to a directory the
    // gateway does not watch: a change there is taken by SIGHUP alone.
    let secret_dir = TempDir::new("reload-secret");
    let secret = secret_dir.write("secret.yaml", &tls_secret("term-cert", &cert1, false));
    let link_dir = TempDir::new("reload-link");
    let link = link_dir.0.join("secret.yaml");
    std::os::unix::fs::symlink(&secret, &link).unwrap();

    let manifests = |port: u16, new: Option<&[(&str, u32)]>, port_b: Option<u16>| {
        let mut m = [
            tls_gateway(
                "gw",
                port,
                &[
                    ("pass", "*.example.com", "Passthrough", None),
                    ("term", "term.example.com", "Terminate", Some("term-cert")),
                ],
            ),
            route("stream", "gw", &["stream.example.com"], &[("echo", 1)]),
            route("term", "gw", &["term.example.com"], &[("plain", 1)]),
            route("short", "gw", &["short.example.com"], &[("plain", 1)]),
            service("echo", 443, echo.addr),
            service("plain", 443, plain.addr),
        ]
        .concat();
        if let Some(backends) = new {
            m.push_str(&route("new", "gw", &["new.example.com"], backends));
            m.push_str(&service("new-a", 443, a));
            m.push_str(&service("new-b", 443, b));
        }
        if let Some(p) = port_b {
            m.push_str(&passthrough_gateway("gw2", p));
            m.push_str(&route("extra", "gw2", &["extra.example.com"], &[("echo", 1)]));
        }
        m
    };
    let asked = free_port();
    let mut gw =
        Gateway::start(&manifests(asked, None, None), asked, &["-f", link.to_str().unwrap()]);
    let port = gw.port(asked);
    let addr = gw.addr;
    let log = gw.log_reader();

    let (stop_tx, stop) = watch::channel(false);
    let mut streams = Vec::new();
    for i in 0..24 {
        let s = tls_connect(addr, &client, "stream.example.com").await;
        streams.push(spawn_stream(format!("passthrough {i}"), s, i, stop.clone()));
    }
    for i in 0..8 {
        let s = tls_connect(addr, &client, "term.example.com").await;
        assert_eq!(leaf_of(&s), cert1.cert.to_vec(), "terminated {i}: the first certificate");
        streams.push(spawn_stream(format!("terminated {i}"), s, 100 + i, stop.clone()));
    }
    let short = spawn_short(&tls, addr, "short.example.com", stop.clone());
    wait_progress(&streams, &progress(&streams), 1, &log).await;
    assert_eq!(answer(&tls, addr, "new.example.com").await, "", "no route yet");
    let mut n = 0;

    // 1. In place: a route with a new backend.
    write_in_place(&gw, &manifests(port, Some(&[("new-a", 1)]), None));
    n += 1;
    reloaded(&mut gw, n, "success");
    assert_eq!(answer(&tls, addr, "new.example.com").await, "a", "{}", gw.log());

    // 2. Renamed over: the route gets a second backend, and all the weight moves to it.
    write_and_rename(&gw, &manifests(port, Some(&[("new-a", 0), ("new-b", 1)]), None));
    n += 1;
    reloaded(&mut gw, n, "success");
    for _ in 0..4 {
        assert_eq!(answer(&tls, addr, "new.example.com").await, "b", "{}", gw.log());
    }

    // 3. SIGHUP: the Terminate listener's certificate rotates. New handshakes get the new one;
    // the terminated sessions go on (their progress is checked below).
    std::fs::write(&secret, tls_secret("term-cert", &cert2, false)).unwrap();
    blocking(|| gw.signal("HUP"));
    n += 1;
    reloaded(&mut gw, n, "success");
    let mut fresh = tls_connect(addr, &client, "term.example.com").await;
    assert_eq!(leaf_of(&fresh), cert2.cert.to_vec(), "a new handshake gets the new certificate");
    exchange(&mut fresh, &mut Rng::new(7)).await.unwrap();
    finish(&mut fresh).await.unwrap();

    // 4. In place: a second Gateway on a new port; streams start on it. (Another program may
    // take the free port first: the reload then reports it unbound, and another is tried.)
    let mut port_b = free_port();
    for attempt in 1.. {
        write_in_place(&gw, &manifests(port, Some(&[("new-a", 0), ("new-b", 1)]), Some(port_b)));
        n += 1;
        let ev = reloaded(&mut gw, n, "success");
        if bound(&ev["reloaded"]["sockets"], SocketAddr::from(([127, 0, 0, 1], port_b))) {
            break;
        }
        assert!(attempt < 3, "no free port for the second Gateway: {ev}");
        port_b = free_port();
    }
    let addr_b = SocketAddr::from(([127, 0, 0, 1], port_b));
    for i in 0..4 {
        let s = tls_connect(addr_b, &client, "extra.example.com").await;
        streams.push(spawn_stream(format!("on the new port {i}"), s, 200 + i, stop.clone()));
    }

    // 5. Renamed over: the route and its backends are removed.
    write_and_rename(&gw, &manifests(port, None, Some(port_b)));
    n += 1;
    reloaded(&mut gw, n, "success");
    assert_eq!(answer(&tls, addr, "new.example.com").await, "", "{}", gw.log());

    // 6. In place: the second Gateway and its port are removed. New connections to the port are
    // refused; the streams established on it go on.
    let before = progress(&streams);
    write_in_place(&gw, &manifests(port, None, None));
    n += 1;
    let ev = reloaded(&mut gw, n, "success");
    assert!(!ev["reloaded"]["sockets"].to_string().contains(&addr_b.to_string()), "{ev}");
    let refused = TcpStream::connect(addr_b).await;
    assert_eq!(
        refused.as_ref().err().map(io::Error::kind),
        Some(io::ErrorKind::ConnectionRefused),
        "a connection to the removed port: {refused:?}\n{}",
        gw.log()
    );
    wait_progress(&streams, &before, 2, &log).await;

    // 7. SIGHUP with nothing changed.
    blocking(|| gw.signal("HUP"));
    n += 1;
    reloaded(&mut gw, n, "success");
    wait_progress(&streams, &progress(&streams), 1, &log).await;

    let count = streams.len();
    let total = join(streams, &stop_tx, &log).await;
    let (ok, failures) = tokio::time::timeout(IO, short).await.expect("short flow ended").unwrap();
    assert!(failures.is_empty(), "{} short connections failed: {failures:?}", failures.len());
    assert!(ok >= 20, "only {ok} short connections");
    eprintln!("{count} streams echoed {total} bytes; {ok} short connections");
    assert_eq!(metric(&gw, "sniway_reloads_total{result=\"success\"}"), Some(n as f64));
    assert_eq!(metric(&gw, "sniway_reloads_total{result=\"failure\"}").unwrap_or(0.0), 0.0);
}

/// An edit the API server would reject (an uppercase hostname), then broken YAML: each keeps the
/// table being served and is reported; a valid edit then recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_edit_keeps_the_old_table_serving_and_a_valid_one_recovers() {
    let tls = Tls::new();
    let plain = plain_backend(None).await;
    let manifests = |port: u16, hosts: &[&str]| {
        [
            passthrough_gateway("gw", port),
            route("r", "gw", hosts, &[("plain", 1)]),
            service("plain", 443, plain.addr),
        ]
        .concat()
    };
    let asked = free_port();
    let mut gw = Gateway::start(&manifests(asked, &["r.example.com"]), asked, &[]);
    let port = gw.port(asked);
    let addr = gw.addr;
    let log = gw.log_reader();
    let (stop_tx, stop) = watch::channel(false);
    let s = raw_stream(&tls, addr, "r.example.com").await.unwrap();
    let streams = vec![spawn_stream("r".into(), s, 1, stop)];
    wait_progress(&streams, &[0], 1, &log).await;

    // The API server's validation: hostnames are lowercase.
    write_in_place(&gw, &manifests(port, &["r.example.com", "Upper.example.com"]));
    reloaded(&mut gw, 1, "failure");
    let (_, status) = blocking(|| gw.get("/status"));
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["reload"]["result"], "failure", "{status:#}");
    let errors = status["reload"]["errors"].to_string();
    assert!(errors.contains("Upper.example.com") && errors.contains("lowercase"), "{errors}");
    assert_eq!(metric(&gw, "sniway_reloads_total{result=\"failure\"}"), Some(1.0));
    assert_eq!(metric(&gw, "sniway_config_last_reload_successful"), Some(0.0));
    // The old table serves: the stream goes on, a new connection is routed.
    wait_progress(&streams, &progress(&streams), 2, &log).await;
    let mut s = raw_stream(&tls, addr, "r.example.com").await.unwrap();
    exchange(&mut s, &mut Rng::new(2)).await.unwrap();

    // Broken YAML.
    write_and_rename(&gw, "apiVersion: v1\nkind: [Service\n");
    reloaded(&mut gw, 2, "failure");
    assert_eq!(metric(&gw, "sniway_reloads_total{result=\"failure\"}"), Some(2.0));
    let mut s = raw_stream(&tls, addr, "r.example.com").await.unwrap();
    exchange(&mut s, &mut Rng::new(3)).await.unwrap();

    // A valid edit recovers, with a name the old table did not have.
    assert!(raw_stream(&tls, addr, "s.example.com").await.is_err(), "no route for s yet");
    write_in_place(&gw, &manifests(port, &["r.example.com", "s.example.com"]));
    reloaded(&mut gw, 3, "success");
    let mut s = raw_stream(&tls, addr, "s.example.com").await.unwrap();
    exchange(&mut s, &mut Rng::new(4)).await.unwrap();
    let (_, status) = blocking(|| gw.get("/status"));
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["reload"]["result"], "success", "{status:#}");
    assert_eq!(metric(&gw, "sniway_reloads_total{result=\"success\"}"), Some(1.0));
    assert_eq!(metric(&gw, "sniway_reloads_total{result=\"failure\"}"), Some(2.0));
    assert_eq!(metric(&gw, "sniway_config_last_reload_successful"), Some(1.0));
    join(streams, &stop_tx, &log).await;
}

/// The conditions of listener `name` of Gateway `gw` in `/status`: type -> (status, reason).
fn listener_conditions(gw: &Gateway, gateway: &str, name: &str) -> Vec<(String, String, String)> {
    let (_, status) = blocking(|| gw.get("/status"));
    let status: Value = serde_json::from_str(&status).unwrap();
    let item = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "Gateway" && i["metadata"]["name"] == gateway)
        .unwrap_or_else(|| panic!("no Gateway {gateway}: {status:#}"));
    let listener = item["status"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no listener {name}: {item:#}"));
    listener["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("type"), s("status"), s("reason"))
        })
        .collect()
}

fn has(conditions: &[(String, String, String)], ty: &str, status: &str, reason: &str) -> bool {
    conditions.iter().any(|(t, s, r)| t == ty && s == status && r == reason)
}

/// A port another process holds fails its listener alone: the other port serves, readiness and
/// status say which; once the port is free, SIGHUP binds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_port_held_by_another_process_fails_only_its_listener_until_sighup_after_release() {
    let tls = Tls::new();
    let plain = plain_backend(None).await;
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap();
    let port = free_port();
    let manifests = [
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n\
             spec:\n  gatewayClassName: sniway\n  listeners:\n\
             \x20 - name: open\n    protocol: TLS\n    port: {port}\n    tls:\n      mode: Passthrough\n\
             \x20 - name: held\n    protocol: TLS\n    port: {}\n    tls:\n      mode: Passthrough\n",
            busy.port()
        ),
        route("r", "gw", &["r.example.com"], &[("plain", 1)]),
        service("plain", 443, plain.addr),
    ]
    .concat();
    let mut gw = Gateway::start_as_is(&manifests, port, &[]);
    let ready = blocking(|| gw.wait_event("ready"));
    let sockets = &ready["ready"]["sockets"];
    assert!(bound(sockets, gw.addr), "the free port is bound: {ready}\n{}", gw.log());
    assert!(!bound(sockets, busy), "{ready}");

    let mut s = raw_stream(&tls, gw.addr, "r.example.com").await.unwrap();
    exchange(&mut s, &mut Rng::new(1)).await.unwrap();
    let (code, body) = blocking(|| gw.get("/readyz"));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(&busy.to_string()), "/readyz names the address: {body}");
    let held_listener = listener_conditions(&gw, "gw", "held");
    assert!(has(&held_listener, "Accepted", "False", "PortUnavailable"), "{held_listener:?}");
    assert!(has(&held_listener, "Programmed", "False", "Pending"), "{held_listener:?}");
    let open = listener_conditions(&gw, "gw", "open");
    assert!(has(&open, "Programmed", "True", "Programmed"), "{open:?}");

    drop(held);
    blocking(|| gw.signal("HUP"));
    let ev = reloaded(&mut gw, 1, "success");
    assert!(bound(&ev["reloaded"]["sockets"], busy), "bound once free: {ev}\n{}", gw.log());
    let (code, body) = blocking(|| gw.get("/readyz"));
    assert_eq!(code, 200, "{body}");
    let mut t = raw_stream(&tls, busy, "r.example.com").await.unwrap();
    exchange(&mut t, &mut Rng::new(2)).await.unwrap();
    let held_listener = listener_conditions(&gw, "gw", "held");
    assert!(has(&held_listener, "Accepted", "True", "Accepted"), "{held_listener:?}");
    assert!(has(&held_listener, "Programmed", "True", "Programmed"), "{held_listener:?}");
    // The stream opened before the reload is still served.
    exchange(&mut s, &mut Rng::new(3)).await.unwrap();
    finish(&mut s).await.unwrap();
}

/// Waits until a connection to `addr` is refused. Readiness turns false as the drain starts,
/// just before the sockets close: a probe in between may still connect, and is closed at once.
async fn wait_refused(addr: SocketAddr) {
    let deadline = Instant::now() + POLL;
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("connecting to {addr}: {e}"),
            Ok(s) => drop(s),
        }
        assert!(Instant::now() < deadline, "{addr} still accepts connections");
        tokio::time::sleep(PAUSE).await;
    }
}

/// How a stream in the drain test ended.
#[derive(Debug)]
enum Ended {
    /// Finished on its own within the drain period, every byte verified.
    Finished(u64),
    /// Cut: the error the client saw, and how long after SIGTERM.
    Cut(io::ErrorKind, Duration),
}

/// `n` drain streams to `addr` (stream `i` holds when `hold(i)`), returned once each has moved
/// bytes: their tasks and their progress counters.
async fn start_drain_streams(
    tls: &Tls,
    addr: SocketAddr,
    n: u64,
    hold: impl Fn(u64) -> bool,
    term: &watch::Receiver<bool>,
) -> (Vec<JoinHandle<Result<Ended, String>>>, Vec<Arc<AtomicU64>>) {
    let mut tasks = Vec::new();
    let mut counters = Vec::new();
    for i in 0..n {
        let s = raw_stream(tls, addr, "r.example.com").await.unwrap();
        let p = Arc::new(AtomicU64::new(0));
        counters.push(Arc::clone(&p));
        tasks.push(spawn_drain_stream(s, i, hold(i), term.clone(), p));
    }
    let deadline = Instant::now() + POLL;
    while counters.iter().any(|c| c.load(Ordering::Relaxed) == 0) {
        assert!(Instant::now() < deadline, "streams did not start");
        tokio::time::sleep(PAUSE).await;
    }
    (tasks, counters)
}

/// A stream that echoes chunks until `term` turns true, then either finishes after a few more
/// (`hold` false) or keeps going until the gateway ends it (`hold` true).
fn spawn_drain_stream(
    mut s: TcpStream,
    seed: u64,
    hold: bool,
    mut term: watch::Receiver<bool>,
    progress: Arc<AtomicU64>,
) -> JoinHandle<Result<Ended, String>> {
    tokio::spawn(async move {
        let mut rng = Rng::new(seed);
        let mut bytes = 0u64;
        let give_up = Instant::now() + STREAM_BOUND;
        while !*term.borrow() {
            if Instant::now() > give_up {
                return Err("no SIGTERM".into());
            }
            bytes +=
                exchange(&mut s, &mut rng).await.map_err(|e| format!("before SIGTERM: {e}"))?;
            progress.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                () = tokio::time::sleep(PAUSE) => {}
                _ = term.changed() => {}
            }
        }
        let since = Instant::now();
        if !hold {
            for _ in 0..5 {
                bytes += exchange(&mut s, &mut rng).await.map_err(|e| format!("draining: {e}"))?;
                tokio::time::sleep(PAUSE).await;
            }
            finish(&mut s).await.map_err(|e| format!("at the end of the drain: {e}"))?;
            return Ok(Ended::Finished(bytes));
        }
        while since.elapsed() < POLL {
            match exchange(&mut s, &mut rng).await {
                Ok(_) => {
                    progress.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(PAUSE).await;
                }
                Err(e) => return Ok(Ended::Cut(e.kind(), since.elapsed())),
            }
        }
        Err("never cut".into())
    })
}

/// SIGTERM while streams run: not ready, no new connection, the streams that end within the
/// drain period do so with every byte, those still open at its end are reset; exit 0, and the
/// log counts what was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_what_finishes_in_time_and_resets_the_rest() {
    const DRAIN: Duration = Duration::from_secs(3);
    let tls = Tls::new();
    let plain = plain_backend(None).await;
    let asked = free_port();
    let manifests = one_route(asked, "r", "r.example.com", "plain", plain.addr);
    let mut gw = Gateway::start(&manifests, asked, &["--drain-timeout", "3s"]);
    let (term_tx, term) = watch::channel(false);
    let (finishing, holding) = (6, 4);
    let (tasks, _progress) =
        start_drain_streams(&tls, gw.addr, finishing + holding, |i| i >= finishing, &term).await;

    blocking(|| gw.signal("TERM"));
    term_tx.send_replace(true);
    let body = wait_readyz(&gw, 503).await;
    assert!(body.contains("draining"), "{body}");
    wait_refused(gw.addr).await;

    for (i, t) in (0u64..).zip(tasks) {
        let ended = tokio::time::timeout(POLL + IO, t)
            .await
            .unwrap_or_else(|_| panic!("stream {i} did not end"))
            .unwrap()
            .unwrap_or_else(|e| panic!("stream {i}: {e}\n{}", gw.log()));
        match ended {
            Ended::Finished(bytes) if i < finishing => assert!(bytes > 0),
            Ended::Cut(kind, after) if i >= finishing => {
                assert_eq!(kind, io::ErrorKind::ConnectionReset, "stream {i} after {after:?}");
                assert!(after + Duration::from_millis(500) >= DRAIN, "cut after {after:?}");
            }
            other => panic!("stream {i}: {other:?}\n{}", gw.log()),
        }
    }
    let status = blocking(|| gw.wait_exit(POLL));
    assert_eq!(status.code(), Some(0), "{}", gw.log());
    // The last lines may still be on their way through the pipe.
    let deadline = Instant::now() + IO;
    let stopped = loop {
        let log = gw.log();
        if let Some(line) = log.lines().find(|l| l.contains("stopped open=")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no stopped line:\n{log}");
        tokio::time::sleep(PAUSE).await;
    };
    let field = |name: &str| -> u64 {
        let at = stopped.find(&format!("{name}=")).unwrap_or_else(|| panic!("{stopped}"));
        let digits: String =
            stopped[at + name.len() + 1..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap()
    };
    assert_eq!(field("cut"), holding, "{stopped}");
    // A probe of `wait_refused` may have been accepted just before the sockets closed.
    assert!(field("open") >= finishing + holding, "{stopped}");
}

/// A second SIGTERM during the drain exits at once with 130, while streams are still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_sigterm_during_the_drain_exits_at_once_with_130() {
    let tls = Tls::new();
    let plain = plain_backend(None).await;
    let asked = free_port();
    let manifests = one_route(asked, "r", "r.example.com", "plain", plain.addr);
    let mut gw = Gateway::start(&manifests, asked, &["--drain-timeout", "60s"]);
    let (term_tx, term) = watch::channel(false);
    let (tasks, counters) = start_drain_streams(&tls, gw.addr, 4, |_| true, &term).await;
    blocking(|| gw.signal("TERM"));
    term_tx.send_replace(true);
    wait_readyz(&gw, 503).await;
    // Still draining: the streams are served.
    let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let deadline = Instant::now() + POLL;
    while counters.iter().zip(&before).any(|(c, b)| c.load(Ordering::Relaxed) <= *b) {
        assert!(Instant::now() < deadline, "streams stalled while draining");
        tokio::time::sleep(PAUSE).await;
    }
    let at = Instant::now();
    blocking(|| gw.signal("TERM"));
    let status = blocking(|| gw.wait_exit(Duration::from_secs(5)));
    assert_eq!(status.code(), Some(130), "{}", gw.log());
    assert!(at.elapsed() < Duration::from_secs(5));
    for t in tasks {
        // The process is gone: every stream ends, whichever way.
        tokio::time::timeout(POLL + IO, t)
            .await
            .expect("a stream outlived the gateway")
            .unwrap()
            .ok();
    }
}

/// SIGHUP while streams run: they all go on, byte for byte; the process keeps running and says
/// it reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_with_live_streams_reloads_and_every_stream_survives() {
    let tls = Tls::new();
    let client = no_resumption(&tls);
    let echo = tls.backend("echo", &["echo.example.com"], BackendReply::Echo).await;
    let asked = free_port();
    let manifests = one_route(asked, "echo", "echo.example.com", "echo", echo.addr);
    let mut gw = Gateway::start(&manifests, asked, &[]);
    let log = gw.log_reader();
    let (stop_tx, stop) = watch::channel(false);
    let mut streams = Vec::new();
    for i in 0..8 {
        let s = tls_connect(gw.addr, &client, "echo.example.com").await;
        streams.push(spawn_stream(format!("stream {i}"), s, i, stop.clone()));
    }
    wait_progress(&streams, &progress(&streams), 1, &log).await;
    for n in 1..=3 {
        let before = progress(&streams);
        blocking(|| gw.signal("HUP"));
        reloaded(&mut gw, n, "success");
        // By the time the line is out, /status shows the same reload.
        let (_, status) = blocking(|| gw.get("/status"));
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["reload"]["attempt"], n, "{:#}", status["reload"]);
        assert_eq!(status["reload"]["cause"], "SIGHUP", "{:#}", status["reload"]);
        assert_eq!(status["reload"]["result"], "success", "{:#}", status["reload"]);
        wait_progress(&streams, &before, 2, &log).await;
    }
    join(streams, &stop_tx, &log).await;
    assert!(gw.running(), "SIGHUP ended the gateway:\n{}", gw.log());
    assert_eq!(blocking(|| gw.get("/healthz")).0, 200);
    assert_eq!(metric(&gw, "sniway_reloads_total{result=\"success\"}"), Some(3.0));
}

/// The ready line means the manifests are watched: an edit made right after it is reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_right_after_the_ready_line_is_reloaded() {
    let plain = plain_backend(None).await;
    let manifests = |port: u16, host: &str| {
        [
            passthrough_gateway("gw", port),
            route("r", "gw", &[host], &[("plain", 1)]),
            service("plain", 443, plain.addr),
        ]
        .concat()
    };
    for _ in 0..10 {
        let asked = free_port();
        let mut gw = Gateway::start(&manifests(asked, "r.example.com"), asked, &[]);
        write_in_place(&gw, &manifests(gw.port(asked), "s.example.com"));
        reloaded(&mut gw, 1, "success");
    }
}

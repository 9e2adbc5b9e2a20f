//! The client side of each scenario. Every scenario is bounded by a count and by `--seconds`,
//! and returns one JSON object.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backends::{CHUNK, Kind};
use crate::hello::{HelloKind, PQ_SPLIT, client_hello};
use crate::procstat;

/// Options every client scenario takes.
#[derive(Clone, Debug, clap::Args)]
pub struct Common {
    /// The proxy's listening address; with `--direct`, the backends' base port.
    #[arg(long, default_value = "127.0.0.1:18444")]
    pub target: SocketAddr,
    /// Connect straight to the backends (echo at the base port, sink +1, source +2): the
    /// no-proxy reference.
    #[arg(long)]
    pub direct: bool,
    /// Name of the target in the output.
    #[arg(long, default_value = "sniway")]
    pub label: String,
    /// PIDs of the proxy's processes (comma-separated) whose CPU time and memory are read.
    #[arg(long, value_delimiter = ',')]
    pub proxy_pid: Vec<u32>,
    /// Which ClientHello to send.
    #[arg(long, value_enum, default_value = "classic")]
    pub hello: HelloKind,
    /// Time bound of the measured part.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Server name for echo connections (comma-separated names are used in turn).
    #[arg(long, value_delimiter = ',', default_value = "echo.bench.test")]
    pub sni: Vec<String>,
}

/// Per-operation deadline, so a stuck connection cannot hang a run.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

impl Common {
    fn addr(&self, kind: Kind) -> SocketAddr {
        let mut a = self.target;
        if self.direct {
            a.set_port(a.port() + kind as u16);
        }
        a
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs_f64(self.seconds)
    }

    fn base(&self, scenario: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("scenario".into(), scenario.into());
        m.insert("target".into(), self.label.clone().into());
        m
    }
}

/// Connects and sends the hello (the post-quantum one in two writes).
async fn open(c: &Common, kind: Kind, hello: &[u8]) -> io::Result<TcpStream> {
    let s = TcpStream::connect(c.addr(kind)).await?;
    s.set_nodelay(true)?;
    let mut s = s;
    if hello.len() > PQ_SPLIT && c.hello == HelloKind::PostQuantum {
        s.write_all(&hello[..PQ_SPLIT]).await?;
        s.write_all(&hello[PQ_SPLIT..]).await?;
    } else {
        s.write_all(hello).await?;
    }
    Ok(s)
}

async fn echo_once(s: &mut TcpStream, out: &[u8], back: &mut [u8]) -> io::Result<()> {
    s.write_all(out).await?;
    s.read_exact(back).await?;
    if back != out {
        return Err(io::Error::other("echo mismatch"));
    }
    Ok(())
}

fn bounded<T>(r: Result<io::Result<T>, tokio::time::error::Elapsed>) -> io::Result<T> {
    r.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// What [`drive`] measured: one latency (ns) per successful operation, the failures, the time.
pub(crate) struct Driven {
    pub latencies_ns: Vec<u64>,
    pub errors: u64,
    pub seconds: f64,
}

impl Driven {
    /// Adds `connections`, `errors`, `seconds`, `per_second` and `latency_us` to `m`; returns
    /// the number of operations that succeeded.
    pub(crate) fn record(self, m: &mut serde_json::Map<String, Value>) -> u64 {
        let done = self.latencies_ns.len() as u64;
        m.insert("connections".into(), done.into());
        m.insert("errors".into(), self.errors.into());
        m.insert("seconds".into(), round3(self.seconds).into());
        m.insert("per_second".into(), round1(done as f64 / self.seconds).into());
        m.insert("latency_us".into(), percentiles(self.latencies_ns));
        done
    }
}

/// Runs `op(i)` for i = 0, 1, ... on `concurrency` workers until `count` operations have started
/// or `deadline` passes; each operation is bounded by [`OP_TIMEOUT`].
pub(crate) async fn drive<F, Fut>(
    concurrency: usize,
    count: u64,
    deadline: Instant,
    op: F,
) -> Driven
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = io::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, errors, op) = (Arc::clone(&next), Arc::clone(&errors), op.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || Instant::now() >= deadline {
                        break;
                    }
                    let t0 = Instant::now();
                    match bounded(tokio::time::timeout(OP_TIMEOUT, op(i)).await) {
                        Ok(()) => lat.push(t0.elapsed().as_nanos() as u64),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut latencies_ns = Vec::new();
    for w in workers {
        latencies_ns.extend(w.await.unwrap_or_default());
    }
    Driven {
        latencies_ns,
        errors: errors.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Latency summary in microseconds.
pub(crate) fn percentiles(mut ns: Vec<u64>) -> Value {
    if ns.is_empty() {
        return Value::Null;
    }
    ns.sort_unstable();
    let at = |q: f64| {
        let i = ((ns.len() as f64 * q).ceil() as usize).clamp(1, ns.len()) - 1;
        round1(ns[i] as f64 / 1000.0)
    };
    let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0;
    json!({"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": at(1.0), "mean": round1(mean)})
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn hello_names(c: &Common) -> Vec<Arc<Vec<u8>>> {
    c.sni.iter().map(|n| Arc::new(client_hello(n, c.hello))).collect()
}

/// New connections: hello, 64 B echo, close; `concurrency` at a time, up to `connections`.
pub async fn connections(c: Common, concurrency: usize, connections: u64) -> Value {
    let scenario = if concurrency > 1 { "conn-rate" } else { "conn-latency" };
    let hellos = Arc::new(hello_names(&c));
    let c = Arc::new(c);
    let cpu0 = procstat::cpu_us(&c.proxy_pid);
    let op = {
        let (c, hellos) = (Arc::clone(&c), Arc::clone(&hellos));
        move |i: u64| {
            let (c, hellos) = (Arc::clone(&c), Arc::clone(&hellos));
            async move {
                let hello = &hellos[i as usize % hellos.len()];
                let mut s = open(&c, Kind::Echo, hello).await?;
                echo_once(&mut s, &[0x5au8; 64], &mut [0u8; 64]).await
            }
        }
    };
    let driven = drive(concurrency, connections, c.deadline(), op).await;
    let cpu = procstat::cpu_us(&c.proxy_pid).saturating_sub(cpu0);
    let mut m = c.base(scenario);
    m.insert("hello_bytes".into(), hellos[0].len().into());
    m.insert("concurrency".into(), concurrency.into());
    let done = driven.record(&mut m);
    cpu_fields(&mut m, &c, cpu, "conn", done as f64);
    Value::Object(m)
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn cpu_fields(
    m: &mut serde_json::Map<String, Value>,
    c: &Common,
    cpu: u64,
    unit: &str,
    n: f64,
) {
    if c.proxy_pid.is_empty() {
        return;
    }
    m.insert("proxy_cpu_us".into(), cpu.into());
    if n > 0.0 {
        m.insert(format!("proxy_cpu_us_per_{unit}"), round3(cpu as f64 / n).into());
    }
}

/// 64-byte round trips on one established connection.
pub async fn pingpong(c: Common, round_trips: u64, size: usize) -> Value {
    let hello = client_hello(&c.sni[0], c.hello);
    let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut back = vec![0u8; size];
    let mut m = c.base("pingpong");
    let r = tokio::time::timeout(OP_TIMEOUT, open(&c, Kind::Echo, &hello)).await;
    let mut s = match bounded(r) {
        Ok(s) => s,
        Err(e) => {
            m.insert("error".into(), e.to_string().into());
            return Value::Object(m);
        }
    };
    // Warm-up, not measured.
    for _ in 0..200 {
        if bounded(tokio::time::timeout(OP_TIMEOUT, echo_once(&mut s, &payload, &mut back)).await)
            .is_err()
        {
            m.insert("error".into(), "warm-up failed".into());
            return Value::Object(m);
        }
    }
    let deadline = c.deadline();
    let cpu0 = procstat::cpu_us(&c.proxy_pid);
    let start = Instant::now();
    let mut lat = Vec::with_capacity(round_trips.min(1 << 22) as usize);
    let mut errors = 0u64;
    while (lat.len() as u64) < round_trips && Instant::now() < deadline {
        let t0 = Instant::now();
        match bounded(
            tokio::time::timeout(OP_TIMEOUT, echo_once(&mut s, &payload, &mut back)).await,
        ) {
            Ok(()) => lat.push(t0.elapsed().as_nanos() as u64),
            Err(_) => {
                errors += 1;
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = procstat::cpu_us(&c.proxy_pid).saturating_sub(cpu0);
    let n = lat.len() as f64;
    m.insert("size".into(), size.into());
    m.insert("round_trips".into(), lat.len().into());
    m.insert("errors".into(), errors.into());
    m.insert("seconds".into(), round3(secs).into());
    m.insert("per_second".into(), round1(n / secs).into());
    m.insert("latency_us".into(), percentiles(lat));
    cpu_fields(&mut m, &c, cpu, "round_trip", n);
    Value::Object(m)
}

/// Which way bulk data flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// Client to backend (sink).
    Up,
    /// Backend to client (source).
    Down,
}

/// `streams` bulk streams for `--seconds`, then a clean close; bytes counted at the receiver.
pub async fn bulk(c: Common, streams: usize, dir: Direction, max_bytes: u64) -> Value {
    let (kind, sni) = match dir {
        Direction::Up => (Kind::Sink, "sink.bench.test"),
        Direction::Down => (Kind::Source, "source.bench.test"),
    };
    let hello = Arc::new(client_hello(sni, c.hello));
    let c = Arc::new(c);
    let deadline = c.deadline();
    let per_stream = max_bytes / streams as u64;
    let errors = Arc::new(AtomicUsize::new(0));
    let cpu0 = procstat::cpu_us(&c.proxy_pid);
    let start = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let (c, hello, errors) = (Arc::clone(&c), Arc::clone(&hello), Arc::clone(&errors));
            tokio::spawn(async move {
                let r = match dir {
                    Direction::Up => upload(&c, kind, &hello, deadline, per_stream).await,
                    Direction::Down => download(&c, kind, &hello, deadline, per_stream).await,
                };
                r.unwrap_or_else(|_| {
                    errors.fetch_add(1, Ordering::Relaxed);
                    0
                })
            })
        })
        .collect();
    let mut bytes = 0u64;
    for t in tasks {
        bytes += t.await.unwrap_or(0);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = procstat::cpu_us(&c.proxy_pid).saturating_sub(cpu0);
    let name = match dir {
        Direction::Up => "bulk-up",
        Direction::Down => "bulk-down",
    };
    let mut m = c.base(name);
    m.insert("streams".into(), streams.into());
    m.insert("bytes".into(), bytes.into());
    m.insert("errors".into(), errors.load(Ordering::Relaxed).into());
    m.insert("seconds".into(), round3(secs).into());
    m.insert("gbit_per_s".into(), round3(bytes as f64 * 8.0 / secs / 1e9).into());
    cpu_fields(&mut m, &c, cpu, "gb", bytes as f64 / 1e9);
    Value::Object(m)
}

async fn upload(
    c: &Common,
    kind: Kind,
    hello: &[u8],
    deadline: Instant,
    max: u64,
) -> io::Result<u64> {
    let mut s = open(c, kind, hello).await?;
    // Frames: flag 1 and CHUNK bytes; flag 0 ends (see backends.rs).
    let mut data = vec![1u8];
    data.extend(crate::backends::pattern());
    let mut sent = 0u64;
    while Instant::now() < deadline && sent < max {
        bounded(tokio::time::timeout(OP_TIMEOUT, s.write_all(&data)).await)?;
        sent += CHUNK as u64;
    }
    s.write_all(&[0]).await?;
    let mut count = [0u8; 8];
    bounded(tokio::time::timeout(OP_TIMEOUT, s.read_exact(&mut count)).await)?;
    let got = u64::from_be_bytes(count);
    if got != sent {
        return Err(io::Error::other(format!("sink counted {got} of {sent} bytes")));
    }
    Ok(got)
}

async fn download(
    c: &Common,
    kind: Kind,
    hello: &[u8],
    deadline: Instant,
    max: u64,
) -> io::Result<u64> {
    let mut s = open(c, kind, hello).await?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while Instant::now() < deadline && got < max {
        let n = bounded(tokio::time::timeout(OP_TIMEOUT, s.read(&mut buf)).await)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n as u64;
    }
    // Ask the source to stop, then count what was already in flight until it closes.
    s.write_all(&[0]).await?;
    loop {
        let n = bounded(tokio::time::timeout(OP_TIMEOUT, s.read(&mut buf)).await)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    Ok(got)
}

/// Opens up to `connections` relayed connections (each proved by a 64 B echo), holds them idle,
/// and reports the proxy's RSS/PSS growth and the machine's MemAvailable drop per connection.
pub async fn idle(c: Common, connections: usize, settle: Duration) -> Value {
    let limit = procstat::raise_nofile();
    let hellos = Arc::new(hello_names(&c));
    let c = Arc::new(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, pss0) = procstat::rss_pss_kib(&c.proxy_pid);
    let avail0 = procstat::mem_available_kib();
    let tcp0 = procstat::tcp_mem_kib();
    let deadline = c.deadline();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (c, hellos, next) = (Arc::clone(&c), Arc::clone(&hellos), Arc::clone(&next));
            tokio::spawn(async move {
                let mut held = Vec::new();
                let mut errors = 0usize;
                let payload = [0xa5u8; 64];
                let mut back = [0u8; 64];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= connections || Instant::now() >= deadline {
                        break;
                    }
                    let hello = &hellos[i % hellos.len()];
                    let r = tokio::time::timeout(OP_TIMEOUT, async {
                        let mut s = open(&c, Kind::Echo, hello).await?;
                        echo_once(&mut s, &payload, &mut back).await?;
                        Ok::<_, io::Error>(s)
                    })
                    .await;
                    match bounded(r) {
                        Ok(s) => held.push(s),
                        Err(_) => errors += 1,
                    }
                }
                (held, errors)
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((h, e)) = w.await {
            held.extend(h);
            errors += e;
        }
    }
    let open_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let (rss1, pss1) = procstat::rss_pss_kib(&c.proxy_pid);
    let avail1 = procstat::mem_available_kib();
    let tcp1 = procstat::tcp_mem_kib();
    let n = held.len();
    drop(held);
    let per = |a: u64, b: u64| {
        if n == 0 { Value::Null } else { round3((b as f64 - a as f64) / n as f64).into() }
    };
    let mut m = c.base("idle");
    m.insert("nofile_limit".into(), limit.into());
    m.insert("connections".into(), n.into());
    m.insert("errors".into(), errors.into());
    m.insert("open_seconds".into(), round3(open_secs).into());
    if !c.proxy_pid.is_empty() {
        m.insert("proxy_rss_kib_before".into(), rss0.into());
        m.insert("proxy_rss_kib_after".into(), rss1.into());
        m.insert("proxy_pss_kib_before".into(), pss0.into());
        m.insert("proxy_pss_kib_after".into(), pss1.into());
        m.insert("rss_kib_per_conn".into(), per(rss0, rss1));
        m.insert("pss_kib_per_conn".into(), per(pss0, pss1));
    }
    // MemAvailable counts everything on the machine (noisy when other work runs); sockstat
    // counts only TCP socket buffers.
    m.insert("sys_kib_per_conn".into(), per(avail1, avail0));
    m.insert("tcp_buffers_kib_per_conn".into(), per(tcp0, tcp1));
    // Let the peers see the closes before the next run measures anything.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Value::Object(m)
}

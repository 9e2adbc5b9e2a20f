//! Shared helpers: run the real `sniway` binary on manifests, pick loopback ports, make real
//! ClientHello bytes, plain TCP backends.

// Shared by every test module; not every module uses every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sniway::demo::backend::{self, Reply, TlsBackend};
use sniway::demo::pki::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sniway")
}

/// `program` to be run in a network namespace of its own (loopback only, up), so that fixed
/// ports cannot collide with anything else on the machine. Uses util-linux `unshare` with a user
/// namespace (no privilege needed where user namespaces are enabled) and iproute2 `ip`; both are
/// installed by `scripts/test.sh`. Where neither works the command fails, and so does the test.
pub fn in_own_network(program: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--net",
        "--map-root-user",
        "--",
        "sh",
        "-c",
        "ip link set lo up && exec \"$@\"",
        "sh",
    ]);
    c.arg(program);
    c
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sniway-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago. Another program may take it before the gateway
/// binds it; [`Gateway::start`] then moves the listener to another one.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// How long the gateway may take to report ready.
const READY: Duration = Duration::from_secs(30);

/// A running `sniway run`; killed on drop.
pub struct Gateway {
    child: Child,
    /// The first listener's address (127.0.0.1 and the port asked for, or the one it moved to).
    pub addr: SocketAddr,
    /// The admin endpoint.
    pub admin: SocketAddr,
    /// Ports asked for in the manifests -> ports served (they differ when one was taken).
    ports: Vec<(u16, u16)>,
    /// The manifest file, for edits.
    pub file: PathBuf,
    log: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<String>>>,
    lines: std::sync::mpsc::Receiver<String>,
    pending: Option<serde_json::Value>,
    pub dir: TempDir,
}

impl Gateway {
    /// Writes `manifests` to a file and serves them on 127.0.0.1 with an ephemeral admin port,
    /// waiting for the gateway's ready line. `port` is the listener port `addr` names. A port
    /// another program took in the meantime is moved to a free one (every `port: N` line of the
    /// manifests), and the gateway started again.
    pub fn start(manifests: &str, port: u16, extra: &[&str]) -> Gateway {
        Self::start_with_env(manifests, port, extra, &[])
    }

    /// As [`Gateway::start`], with extra environment variables for the gateway process.
    pub fn start_with_env(
        manifests: &str,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        Self::start_inner(manifests, port, extra, env, &[])
    }

    /// As [`Gateway::start`], with the gateway's command line appended to `wrapper` (a program
    /// and its arguments), e.g. `["sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\""]`. The
    /// wrapper must `exec` the gateway, so that [`Gateway::pid`] is the gateway's.
    pub fn start_wrapped(manifests: &str, port: u16, extra: &[&str], wrapper: &[&str]) -> Gateway {
        Self::start_inner(manifests, port, extra, &[], wrapper)
    }

    fn start_inner(
        manifests: &str,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Gateway {
        let mut manifests = manifests.to_string();
        let mut ports: Vec<(u16, u16)> = Vec::new();
        for _attempt in 0..5 {
            let dir = TempDir::new("gw");
            let file = dir.write("manifests.yaml", &manifests);
            let mut gw = Self::spawn(&file, extra, env, wrapper, dir, port, ports.clone());
            let ready = gw.wait_event("ready");
            let taken: Vec<u16> = ready["ready"]["sockets"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["error"].as_str().is_some_and(|e| e.contains("in use")))
                .map(|s| s["address"].as_str().unwrap().parse::<SocketAddr>().unwrap().port())
                .collect();
            if taken.is_empty() {
                gw.addr = SocketAddr::from(([127, 0, 0, 1], gw.port(port)));
                return gw;
            }
            drop(gw);
            for old in taken {
                let new = free_port();
                eprintln!("port {old} is taken by another program; the listener moves to {new}");
                manifests = manifests.replace(&format!("port: {old}\n"), &format!("port: {new}\n"));
                let asked = ports.iter().find(|(_, served)| *served == old).map_or(old, |p| p.0);
                ports.retain(|(a, _)| *a != asked);
                ports.push((asked, new));
            }
        }
        panic!("no free ports for the gateway after 5 attempts");
    }

    /// As [`Gateway::start`], but the ports are served as asked, never moved: for tests in which
    /// a port held by another program is the point. Waits for the ready line.
    pub fn start_as_is(manifests: &str, port: u16, extra: &[&str]) -> Gateway {
        let dir = TempDir::new("gw");
        let file = dir.write("manifests.yaml", manifests);
        let mut gw = Self::spawn(&file, extra, &[], &[], dir, port, Vec::new());
        gw.peek_event("ready");
        gw
    }

    fn spawn(
        file: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
        wrapper: &[&str],
        dir: TempDir,
        port: u16,
        ports: Vec<(u16, u16)>,
    ) -> Gateway {
        let mut command = match wrapper.split_first() {
            None => Command::new(bin()),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin());
                c
            }
        };
        command
            .arg("run")
            .arg("-f")
            .arg(file)
            .args(["--bind-address", "127.0.0.1", "--admin-address", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied());
        Self::from_command(command, file.to_path_buf(), dir, port, ports)
    }

    /// Starts the gateway binary with exactly `args` (a command other than `run`, such as
    /// `controller`), waiting for its ready line. `port` is the listener port `addr` names.
    pub fn start_command(args: &[&str], port: u16) -> Gateway {
        let dir = TempDir::new("gw");
        let mut command = Command::new(bin());
        // As outside a pod, whatever runs the tests.
        command.args(args).env_remove("POD_NAMESPACE").env_remove("POD_NAME");
        let file = dir.0.clone();
        let mut gw = Self::from_command(command, file, dir, port, Vec::new());
        gw.addr = SocketAddr::from(([127, 0, 0, 1], port));
        gw
    }

    fn from_command(
        mut command: Command,
        file: PathBuf,
        dir: TempDir,
        port: u16,
        ports: Vec<(u16, u16)>,
    ) -> Gateway {
        let mut child = command
            .env("SNIWAY_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sniway");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let keep = stdout_lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let admin = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut gw = Gateway {
            child,
            addr,
            admin,
            ports,
            file,
            log,
            stdout: stdout_lines,
            lines,
            pending: None,
            dir,
        };
        gw.admin = gw.admin_from_ready();
        gw
    }

    /// Reads the admin address from the ready line (kept for `wait_event`).
    fn admin_from_ready(&mut self) -> SocketAddr {
        let ready = self.peek_event("ready");
        ready["ready"]["admin"].as_str().expect("an admin address").parse().unwrap()
    }

    /// Waits for the next event line `{"<kind>": ...}` on standard output, skipping others.
    pub fn wait_event(&mut self, kind: &str) -> serde_json::Value {
        if let Some(v) = self.pending.take_if(|v| v.get(kind).is_some()) {
            return v;
        }
        let deadline = Instant::now() + READY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && v.get(kind).is_some()
                    {
                        return v;
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("sniway exited with {status}:\n{}", self.log());
                    }
                    panic!("no {kind} line from sniway within {READY:?}:\n{}", self.log());
                }
            }
        }
    }

    /// Waits for an event and keeps it for the next `wait_event` of its kind.
    fn peek_event(&mut self, kind: &str) -> serde_json::Value {
        let v = self.wait_event(kind);
        self.pending = Some(v.clone());
        v
    }

    /// The port served for a port asked for in the manifests.
    pub fn port(&self, asked: u16) -> u16 {
        self.ports.iter().find(|(a, _)| *a == asked).map_or(asked, |p| p.1)
    }

    /// `ip` and the port served for `asked`.
    pub fn at(&self, ip: [u8; 4], asked: u16) -> SocketAddr {
        SocketAddr::from((ip, self.port(asked)))
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it satisfies `pred`: standard error is read by its own thread, so a line
    /// logged before the ready line may reach the test after it. Panics after 10 s.
    pub fn log_when(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if pred(&log) {
                return log;
            }
            assert!(Instant::now() < deadline, "the log never showed what was expected:\n{log}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Reads the log later without borrowing the gateway (for failure messages of tasks and
    /// helpers that run while the gateway is waited on).
    pub fn log_reader(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let log = Arc::clone(&self.log);
        move || log.lock().unwrap().clone()
    }

    /// Every line the gateway wrote to standard output so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits (bounded) until the gateway has closed its standard output (it exited) and every
    /// line was read; returns every line it wrote.
    pub fn stdout_to_end(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return self.stdout(),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("sniway's standard output still open after {within:?}:\n{}", self.log())
                }
            }
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`HUP`, `TERM`, `INT`) to the gateway.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Whether the gateway process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (bounded) for the gateway to exit and returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "sniway still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path` on the admin endpoint: (status code, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path)
    }
}

/// A plain HTTP/1.1 GET with `Connection: close`, bounded in time: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: sniway\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    // Bodies here are short and sent with Content-Length (no chunking).
    (code, body.to_string())
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Service and EndpointSlice pointing at one loopback address, as file-mode manifests.
pub fn service(name: &str, service_port: u16, endpoint: SocketAddr) -> String {
    service_endpoints(name, service_port, endpoint.port(), &[endpoint.ip()])
}

/// A Service on `service_port` whose EndpointSlice lists `ips`, all on port `target`.
pub fn service_endpoints(
    name: &str,
    service_port: u16,
    target: u16,
    ips: &[std::net::IpAddr],
) -> String {
    let endpoints: String = ips.iter().map(|ip| format!("- addresses: [\"{ip}\"]\n")).collect();
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  ports:
  - name: tls
    port: {service_port}
    targetPort: {target}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
- name: tls
  port: {target}
endpoints:
{endpoints}"#
    )
}

/// Gateway `gw` with one passthrough listener on `port`, and TLSRoute `name` for `host` to the
/// Service `svc` whose endpoint is `backend`.
pub fn one_route(port: u16, name: &str, host: &str, svc: &str, backend: SocketAddr) -> String {
    [
        passthrough_gateway("gw", port),
        route(name, "gw", &[host], &[(svc, 1)]),
        service(svc, 443, backend),
    ]
    .concat()
}

/// A Gateway with one TLS passthrough listener on `port`.
pub fn passthrough_gateway(name: &str, port: u16) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}
spec:
  gatewayClassName: sniway
  listeners:
  - name: tls
    protocol: TLS
    port: {port}
    tls:
      mode: Passthrough
"#
    )
}

/// A v1 TLSRoute on `gateway` for `hostnames` with weighted Service backends (name, weight).
pub fn route(name: &str, gateway: &str, hostnames: &[&str], backends: &[(&str, u32)]) -> String {
    let hosts: Vec<String> = hostnames.iter().map(|h| format!("\"{h}\"")).collect();
    let mut refs = String::new();
    for (b, w) in backends {
        refs.push_str(&format!("    - name: {b}\n      port: 443\n      weight: {w}\n"));
    }
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata:
  name: {name}
spec:
  parentRefs:
  - name: {gateway}
  hostnames: [{hosts}]
  rules:
  - backendRefs:
{refs}"#,
        hosts = hosts.join(", ")
    )
}

/// The test PKI and its client configuration.
pub struct Tls {
    pub pki: Pki,
    pub client: Arc<rustls::ClientConfig>,
}

impl Tls {
    pub fn new() -> Tls {
        let pki = Pki::new("sniway e2e CA").unwrap();
        let client = sniway::demo::client::client_config(pki.ca_der()).unwrap();
        Tls { pki, client }
    }

    /// A built-in TLS backend named `name` with a certificate for `names`.
    pub async fn backend(&self, name: &str, names: &[&str], reply: Reply) -> TlsBackend {
        let leaf = self.pki.leaf(names).unwrap();
        backend::start(name, "127.0.0.1:0".parse().unwrap(), &leaf, reply).await.unwrap()
    }

    /// The exact bytes a rustls client sends first for `sni`: its real ClientHello.
    pub fn client_hello(&self, sni: &str) -> Vec<u8> {
        sniway_testkit::rustls_client_hello(&self.client, sni)
    }

    /// Writes the CA certificate to `dir` for openssl and curl.
    pub fn ca_file(&self, dir: &TempDir) -> PathBuf {
        dir.write("ca.pem", &self.pki.ca_pem())
    }
}

/// A plain TCP backend that answers every connection with its name once it has read a few
/// bytes, then closes; enough to tell which backend a connection reached.
pub async fn name_backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if s.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = s.write_all(name.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Reads until EOF (or error) with a deadline; returns what arrived and whether it ended.
pub async fn read_all_until_closed(
    s: &mut tokio::net::TcpStream,
    within: Duration,
) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let r = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (got, r.is_ok())
}

pub use backend::Reply as BackendReply;

/// A `kubernetes.io/tls` Secret holding `leaf`, with its data base64-encoded under `data` (as
/// `kubectl create secret tls --dry-run=client -o yaml` writes it) or as plain `stringData`.
pub fn tls_secret(name: &str, leaf: &sniway::demo::pki::Leaf, string_data: bool) -> String {
    use base64::Engine;
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    if string_data {
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&leaf.cert_pem),
            indent(&leaf.key_pem)
        )
    } else {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
            b64(&leaf.cert_pem),
            b64(&leaf.key_pem)
        )
    }
}

/// A Gateway with TLS listeners on one port: (listener name, hostname, mode, certificate Secret).
pub fn tls_gateway(
    name: &str,
    port: u16,
    listeners: &[(&str, &str, &str, Option<&str>)],
) -> String {
    let mut out = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\nspec:\n  gatewayClassName: sniway\n  listeners:\n"
    );
    for (lname, host, mode, secret) in listeners {
        out.push_str(&format!(
            "  - name: {lname}\n    protocol: TLS\n    port: {port}\n    hostname: \"{host}\"\n    tls:\n      mode: {mode}\n"
        ));
        if let Some(s) = secret {
            out.push_str(&format!("      certificateRefs:\n      - name: {s}\n"));
        }
    }
    out
}

/// A plain TCP backend that records the first bytes of each connection it receives, optionally
/// greets first (a server-speaks-first protocol), then echoes everything and half-closes after
/// the client does.
pub struct PlainBackend {
    pub addr: SocketAddr,
    pub first_bytes: Arc<Mutex<Vec<Vec<u8>>>>,
}

pub async fn plain_backend(greeting: Option<&'static str>) -> PlainBackend {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let first_bytes = Arc::new(Mutex::new(Vec::new()));
    let seen = first_bytes.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let (mut rd, mut wr) = s.into_split();
                if let Some(g) = greeting {
                    let _ = wr.write_all(g.as_bytes()).await;
                }
                let mut buf = vec![0u8; 64 * 1024];
                let mut first = true;
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if first {
                                seen.lock().unwrap().push(buf[..n.min(16)].to_vec());
                                first = false;
                            }
                            if wr.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = wr.shutdown().await;
            });
        }
    });
    PlainBackend { addr, first_bytes }
}

/// What an `openssl s_client` session printed, and whether the expected reply line came back.
pub struct OpensslSession {
    pub replied: bool,
    pub output: String,
}

/// Runs `openssl s_client` to `addr` with `sni` (verifying against `ca` when given), writes
/// `line`, waits for `reply` on stdout, then closes stdin and collects the rest (certificate
/// summary, verify result).
pub async fn openssl_exchange(
    addr: SocketAddr,
    sni: &str,
    ca: Option<&std::path::Path>,
    line: &str,
    reply: &str,
) -> OpensslSession {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string(), "-servername", sni]);
    if let Some(ca) = ca {
        cmd.args(["-verify_return_error", "-verify_hostname", sni, "-CAfile"]).arg(ca);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_client (install openssl)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut output = String::new();
    let replied = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(l)) = lines.next_line().await {
            output.push_str(&l);
            output.push('\n');
            if l == reply {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(l)) = lines.next_line().await {
            output.push_str(&l);
            output.push('\n');
        }
    })
    .await;
    let _ = child.wait().await;
    OpensslSession { replied, output }
}

/// Writes `len` pseudo-random bytes (xorshift64*, so a lost or reordered block changes the hash)
/// through `stream`, half-closes, reads the echo to the end; returns (bytes echoed, SHA-256 sent,
/// SHA-256 received).
pub async fn echo_checksum<S>(stream: S, len: usize) -> (usize, Vec<u8>, Vec<u8>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use sha2::{Digest, Sha256};
    let mut x: u64 = 0x5eed;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        data.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    data.truncate(len);
    let sent = Sha256::digest(&data).to_vec();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(256 * 1024) {
            wr.write_all(chunk).await.unwrap();
        }
        // FIN (and close_notify on TLS): the echo server sees the end and finishes.
        wr.shutdown().await.unwrap();
    });
    let reader = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    total += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("read after {total} bytes: {e}"),
            }
        }
        (total, hasher.finalize().to_vec())
    });
    tokio::time::timeout(Duration::from_secs(240), async {
        writer.await.unwrap();
        let (total, got) = reader.await.unwrap();
        (total, sent, got)
    })
    .await
    .expect("the echo did not finish")
}

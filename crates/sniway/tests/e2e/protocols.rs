//! Databases through Passthrough listeners with their stock clients: PostgreSQL (Debian's
//! `postgresql`, `ssl=on` with its own certificate) with `psql ... sslmode=verify-full`, whose
//! libpq sends `SSLRequest` before its ClientHello; Redis (`redis-server --tls-port`) with
//! `redis-cli --tls --sni`.
//!
//! Ports: PostgreSQL and Redis cannot be told to bind port 0 and report the port, so each gets a
//! loopback port found free by binding 0 first; a server that then fails to start (another
//! program took the port in between) is started again on another one, at most 5 times.
//! Readiness is a bounded poll with the server's own client (`pg_isready`, `redis-cli PING`),
//! never a fixed sleep. PostgreSQL refuses to run as root: its programs run as the `postgres`
//! user the package creates, on a data directory made for the test, listening on 127.0.0.1 only
//! and without a Unix socket.
//!
//! The tools come from `scripts/test.sh` (packages `postgresql`, `redis-server`, `redis-tools`).
//! Without them a test fails in CI (`CI=true`) and is skipped elsewhere, saying so.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// How long a database server may take to become ready.
const SERVER_READY: Duration = Duration::from_secs(30);

/// How long one client command may take.
const CLIENT: Duration = Duration::from_secs(30);

/// `program` on the PATH or at one of `paths`; `None` (the test is skipped) outside CI, a
/// failure in CI.
fn tool(program: &str, paths: &[PathBuf]) -> Option<PathBuf> {
    let found = paths.iter().find(|p| p.is_file()).cloned().or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
        })
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "{program} is not installed (scripts/test.sh installs it)");
        eprintln!("SKIPPED: {program} is not installed (scripts/test.sh installs it)");
    }
    found
}

/// The newest installed PostgreSQL server program `name` (`/usr/lib/postgresql/N/bin`).
fn postgres_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    dirs.sort();
    let candidates: Vec<PathBuf> =
        dirs.iter().rev().map(|(_, d)| d.join("bin").join(name)).collect();
    tool(name, &candidates)
}

/// The uid and gid of `user`, from `id`.
fn ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, user]).output().expect("id");
        assert!(out.status.success(), "no user {user}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// Runs `command` to its end within [`CLIENT`]; its stdout, or a panic with what it said.
fn run(command: Command, what: &str) -> String {
    run_or(command, what).unwrap_or_else(|e| panic!("{e}"))
}

/// As [`run`], the failure as an error.
fn run_or(mut command: Command, what: &str) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let deadline = Instant::now() + CLIENT;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what}: still running after {CLIENT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("{what}: {}\nstdout: {stdout}\nstderr: {stderr}", out.status));
    }
    Ok(stdout.into_owned())
}

/// A server process, killed on drop.
struct Server {
    child: Child,
    port: u16,
    name: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Polls `ready` (a real client) until it succeeds, the server exits, or [`SERVER_READY`]
    /// passes. `false` when the server exited (its port was taken, typically).
    fn wait_ready(&mut self, mut ready: impl FnMut(u16) -> bool) -> bool {
        let deadline = Instant::now() + SERVER_READY;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                eprintln!("{} exited at start ({status}); trying another port", self.name);
                return false;
            }
            if ready(self.port) {
                return true;
            }
            assert!(Instant::now() < deadline, "{} not ready after {SERVER_READY:?}", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts a server with `start(port)` on a free port, again on another port when it exits
/// before `ready`, at most 5 times.
fn start_on_free_port(
    name: &str,
    mut start: impl FnMut(u16) -> Child,
    mut ready: impl FnMut(u16) -> bool,
) -> Server {
    for _ in 0..5 {
        let port = free_port();
        let mut server = Server { child: start(port), port, name: name.into() };
        if server.wait_ready(&mut ready) {
            return server;
        }
    }
    panic!("{name} could not start on a free port after 5 attempts");
}

// === PostgreSQL ===

/// A PostgreSQL cluster made for the test: `ssl=on` with a certificate for `host`, its
/// `cluster_name` set to `name` so a query tells which server answered.
fn postgres(tls: &Tls, dir: &TempDir, name: &str, host: &str) -> Option<Server> {
    let (initdb, server, isready) = (
        postgres_program("initdb")?,
        postgres_program("postgres")?,
        postgres_program("pg_isready")?,
    );
    let (uid, gid) = ids("postgres");
    let data = dir.0.join(name);
    std::fs::create_dir_all(&data).expect("data dir");
    let chown = |p: &Path| {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to postgres");
    };
    chown(&dir.0);
    chown(&data);
    let as_postgres = |program: &Path| {
        let mut c = Command::new(program);
        c.uid(uid).gid(gid).env("HOME", &data).env("LC_ALL", "C.UTF-8").current_dir(&data);
        c
    };
    let mut init = as_postgres(&initdb);
    init.arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "--no-sync"]);
    run(init, "initdb");
    let leaf = tls.pki.leaf(&[host]).expect("leaf");
    for (file, pem) in [("server.crt", &leaf.cert_pem), ("server.key", &leaf.key_pem)] {
        let path = data.join(file);
        std::fs::write(&path, pem).expect("write key");
        chown(&path);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
    }
    let start = |port: u16| {
        let mut c = as_postgres(&server);
        c.arg("-D").arg(&data).args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            &format!("port={port}"),
            "-c",
            "unix_socket_directories=",
            "-c",
            "ssl=on",
            "-c",
            &format!("cluster_name={name}"),
            "-c",
            "fsync=off",
            "-c",
            "max_connections=10",
        ]);
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        c.spawn().expect("start postgres")
    };
    let ready = |port: u16| {
        Command::new(&isready)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    Some(start_on_free_port(name, start, ready))
}

/// `psql` connecting as a user would through the gateway at `port`, verifying the server's
/// certificate for `host`; the query's single-row answer.
fn psql(psql: &Path, host: &str, port: u16, ca: &Path, query: &str) -> Result<String, String> {
    let conninfo = format!(
        "host={host} hostaddr=127.0.0.1 port={port} sslmode=verify-full sslrootcert={} \
         user=postgres dbname=postgres connect_timeout=10",
        ca.display()
    );
    let mut c = Command::new(psql);
    c.arg(conninfo).args(["-AtX", "-c", query]);
    run_or(c, "psql").map(|out| out.trim().to_string())
}

#[test]
fn psql_runs_a_query_through_a_passthrough_listener_routed_by_sni() {
    let Some(psql_bin) = tool("psql", &[]) else { return };
    let tls = Tls::new();
    let dir = TempDir::new("pg");
    let Some(one) = postgres(&tls, &dir, "db-one", "db.example.test") else { return };
    let Some(two) = postgres(&tls, &dir, "db-two", "db2.example.test") else { return };
    let port = free_port();
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let manifests = [
        passthrough_gateway("gw", port),
        route("db", "gw", &["db.example.test"], &[("db-one", 1)]),
        route("db2", "gw", &["db2.example.test"], &[("db-two", 1)]),
        service("db-one", 443, at(one.port)),
        service("db-two", 443, at(two.port)),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &[]);
    let ca = tls.ca_file(&dir);
    let query = "select current_setting('cluster_name') || ' ' || ssl::text || ' ' || \
                 (select count(*) from generate_series(1, 1000))::text \
                 from pg_stat_ssl where pid = pg_backend_pid()";
    for (host, answer) in
        [("db.example.test", "db-one true 1000"), ("db2.example.test", "db-two true 1000")]
    {
        let got = psql(&psql_bin, host, gw.addr.port(), &ca, query);
        assert_eq!(got.as_deref(), Ok(answer), "{}", gw.log());
    }
    let (_, metrics) = gw.get("/metrics");
    assert!(metrics.contains("sniway_postgres_requests_total{"), "{metrics}");
    assert!(metrics.contains("request=\"ssl\"} 2"), "{metrics}");
}

// === Redis ===

fn redis_cli(cli: &Path, ca: &Path, sni: &str, port: u16, args: &[&str]) -> String {
    let mut c = Command::new(cli);
    c.args(["--tls", "--cacert"])
        .arg(ca)
        .args(["--sni", sni, "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    run(c, "redis-cli").trim().to_string()
}

#[test]
fn redis_cli_pings_sets_and_gets_through_a_passthrough_listener() {
    let Some(server) = tool("redis-server", &[]) else { return };
    let Some(cli) = tool("redis-cli", &[]) else { return };
    let tls = Tls::new();
    let dir = TempDir::new("redis");
    let ca = tls.ca_file(&dir);
    let leaf = tls.pki.leaf(&["cache.example.test"]).expect("leaf");
    let cert = dir.write("redis.crt", &leaf.cert_pem);
    let key = dir.write("redis.key", &leaf.key_pem);
    let start = |port: u16| {
        let mut c = Command::new(&server);
        c.args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&ca)
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().expect("start redis-server")
    };
    let ready = |port: u16| {
        Command::new(&cli)
            .args(["--tls", "--cacert"])
            .arg(&ca)
            .args(["--sni", "cache.example.test", "-h", "127.0.0.1", "-p", &port.to_string()])
            .arg("PING")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
    };
    let redis = start_on_free_port("redis-server", start, ready);
    let port = free_port();
    let manifests = one_route(
        port,
        "cache",
        "cache.example.test",
        "cache",
        SocketAddr::from(([127, 0, 0, 1], redis.port)),
    );
    let gw = Gateway::start(&manifests, port, &[]);
    let p = gw.addr.port();
    let sni = "cache.example.test";
    assert_eq!(redis_cli(&cli, &ca, sni, p, &["PING"]), "PONG", "{}", gw.log());
    assert_eq!(redis_cli(&cli, &ca, sni, p, &["SET", "greeting", "through sniway"]), "OK");
    assert_eq!(redis_cli(&cli, &ca, sni, p, &["GET", "greeting"]), "through sniway");
    // Another name is not routed: the client fails instead of reaching the server.
    let mut c = Command::new(&cli);
    c.args(["--tls", "--cacert"]).arg(&ca).args([
        "--sni",
        "other.example.test",
        "-h",
        "127.0.0.1",
        "-p",
        &p.to_string(),
        "PING",
    ]);
    let out = c.output().expect("redis-cli");
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
}

// === PROXY protocol and unmatched clients, configured by policy ===

/// A `ListenerPolicy` on Gateway `gateway` with the given `spec` lines (indented by 2).
fn listener_policy(name: &str, gateway: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: sniway.io/v1alpha1\nkind: ListenerPolicy\nmetadata:\n  name: {name}\nspec:\n  targetRefs:\n  - {{group: gateway.networking.k8s.io, kind: Gateway, name: {gateway}}}\n{spec}"
    )
}

/// A `BackendPolicy` on Service `service` sending PROXY protocol `version`.
fn proxy_protocol_policy(service: &str, version: &str) -> String {
    format!(
        "---\napiVersion: sniway.io/v1alpha1\nkind: BackendPolicy\nmetadata:\n  name: {service}\nspec:\n  targetRefs:\n  - {{group: \"\", kind: Service, name: {service}}}\n  proxyProtocol: {{version: {version}}}\n"
    )
}

/// A backend that parses the PROXY header it receives (v1 or v2, with `ppp`), answers
/// `NAME src=CLIENT authority=SNI\n` and closes.
async fn proxy_echo_backend(name: &'static str) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let (src, authority) = loop {
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_err() || buf.len() > 1024 {
                        return;
                    }
                    buf.push(b[0]);
                    if buf[0] == b'P' && b[0] != b'\n' {
                        continue;
                    }
                    let parsed = ppp::HeaderResult::parse(&buf);
                    if ppp::PartialResult::is_incomplete(&parsed) {
                        continue;
                    }
                    break match parsed {
                        ppp::HeaderResult::V1(Ok(h)) => match h.addresses {
                            ppp::v1::Addresses::Tcp4(a) => {
                                (format!("{}:{}", a.source_address, a.source_port), "-".into())
                            }
                            other => (format!("{other:?}"), "-".into()),
                        },
                        ppp::HeaderResult::V2(Ok(h)) => {
                            let src = match h.addresses {
                                ppp::v2::Addresses::IPv4(a) => {
                                    format!("{}:{}", a.source_address, a.source_port)
                                }
                                other => format!("{other:?}"),
                            };
                            let authority = h
                                .tlvs()
                                .filter_map(Result::ok)
                                .find(|t| t.kind == u8::from(ppp::v2::Type::Authority))
                                .map(|t| String::from_utf8_lossy(&t.value).into_owned())
                                .unwrap_or_else(|| "-".into());
                            (src, authority)
                        }
                        _ => ("bad-header".into(), "-".into()),
                    };
                };
                let line = format!("{name} src={src} authority={authority}\n");
                let _ = s.write_all(line.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Sends `before` and the hello for `sni` to `gw`; what came back before the gateway or the
/// backend closed.
async fn exchange(gw: SocketAddr, before: &[u8], hello: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    let _ = s.write_all(&[before, hello].concat()).await;
    let (got, closed) = read_all_until_closed(&mut s, Duration::from_secs(20)).await;
    assert!(closed, "connection left open");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn backends_get_the_proxy_protocol_version_their_policy_asks_for() {
    let tls = Tls::new();
    let (v1, v2) = (proxy_echo_backend("v1").await, proxy_echo_backend("v2").await);
    let port = free_port();
    let manifests = [
        passthrough_gateway("gw", port),
        route("one", "gw", &["one.example.test"], &[("one", 1)]),
        route("two", "gw", &["two.example.test"], &[("two", 1)]),
        service("one", 443, v1),
        service("two", 443, v2),
        proxy_protocol_policy("one", "V1"),
        proxy_protocol_policy("two", "V2"),
    ]
    .concat();
    let gw = Gateway::start(&manifests, port, &[]);
    let got = exchange(gw.addr, &[], &tls.client_hello("one.example.test")).await;
    assert!(got.starts_with("v1 src=127.0.0.1:"), "{got}\n{}", gw.log());
    assert!(got.ends_with(" authority=-\n"), "{got}");
    let got = exchange(gw.addr, &[], &tls.client_hello("two.example.test")).await;
    assert!(got.starts_with("v2 src=127.0.0.1:"), "{got}\n{}", gw.log());
    assert!(got.ends_with(" authority=two.example.test\n"), "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_headers_are_accepted_from_trusted_senders_only_and_required_where_asked() {
    let tls = Tls::new();
    let backend = proxy_echo_backend("b").await;
    let (trusting, distrusting) = (free_port(), free_port());
    let dir = TempDir::new("pp-log");
    let log = dir.0.join("access.log");
    let manifests = [
        passthrough_gateway("trusting", trusting),
        passthrough_gateway("distrusting", distrusting),
        route("a", "trusting", &["app.example.test"], &[("b", 1)]),
        route("b", "distrusting", &["app.example.test"], &[("b", 1)]),
        service("b", 443, backend),
        proxy_protocol_policy("b", "V2"),
        listener_policy(
            "trusting",
            "trusting",
            "  proxyProtocol: {mode: Required, trustedCIDRs: [\"127.0.0.0/8\"]}\n",
        ),
        listener_policy(
            "distrusting",
            "distrusting",
            "  proxyProtocol: {mode: Required, trustedCIDRs: [\"10.0.0.0/8\"]}\n",
        ),
    ]
    .concat();
    let log_path = log.to_str().unwrap();
    let gw = Gateway::start(
        &manifests,
        trusting,
        &["--access-log", "json", "--access-log-path", log_path],
    );
    let hello = tls.client_hello("app.example.test");
    let (src, dst): (SocketAddr, SocketAddr) =
        ("192.0.2.9:41000".parse().unwrap(), "198.51.100.1:443".parse().unwrap());
    let v1 = ppp::v1::Addresses::from((src, dst)).to_string().into_bytes();
    let v2 = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (src, dst),
    )
    .build()
    .unwrap();
    // Trusted sender, v1 and v2: the backend sees the client from the header.
    for header in [&v1, &v2] {
        let got = exchange(gw.addr, header, &hello).await;
        assert_eq!(got, "b src=192.0.2.9:41000 authority=app.example.test\n", "{}", gw.log());
    }
    // Required but missing.
    assert_eq!(exchange(gw.addr, &[], &hello).await, "", "{}", gw.log());
    // An untrusted sender, with a header or without.
    let untrusted = gw.at([127, 0, 0, 1], distrusting);
    assert_eq!(exchange(untrusted, &v1, &hello).await, "");
    assert_eq!(exchange(untrusted, &[], &hello).await, "");
    // The access log names the client from the header.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> =
            text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let proxied = lines.iter().filter(|l| l["client"] == "192.0.2.9:41000").count();
        let refused = lines.iter().filter(|l| l["reason"] == "proxy_untrusted").count();
        if proxied == 2 && refused == 2 {
            assert!(lines.iter().any(|l| l["reason"] == "proxy_header_missing"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "access log:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, metrics) = gw.get("/metrics");
    assert!(metrics.contains("sniway_proxy_protocol_headers_total{"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_without_sni_or_with_an_unrouted_name_get_close_alert_or_the_default_backend() {
    let tls = Tls::new();
    let (app, legacy) = (name_backend("app").await, name_backend("legacy").await);
    let (closing, policed) = (free_port(), free_port());
    let manifests = [
        passthrough_gateway("closing", closing),
        passthrough_gateway("policed", policed),
        route("a", "closing", &["app.example.test"], &[("app", 1)]),
        route("b", "policed", &["app.example.test"], &[("app", 1)]),
        service("app", 443, app),
        service("legacy", 443, legacy),
        listener_policy(
            "policed",
            "policed",
            "  noSni: {action: Backend, backendRef: {name: legacy, port: 443}}\n  noMatch: {action: Alert}\n",
        ),
    ]
    .concat();
    let gw = Gateway::start(&manifests, closing, &[]);
    let policed = gw.at([127, 0, 0, 1], policed);
    let no_sni = sniway_testkit::HelloBuilder::minimal().records();
    let other = tls.client_hello("other.example.test");
    // Close, the default, for both kinds.
    assert_eq!(exchange(gw.addr, &[], &no_sni).await, "");
    assert_eq!(exchange(gw.addr, &[], &other).await, "");
    // noSni: the default backend; noMatch: the unrecognized_name alert; routes as before.
    assert_eq!(exchange(policed, &[], &no_sni).await, "legacy", "{}", gw.log());
    let alert = exchange(policed, &[], &other).await;
    assert_eq!(alert.as_bytes(), [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70], "{}", gw.log());
    assert_eq!(exchange(policed, &[], &tls.client_hello("app.example.test")).await, "app");
    let (_, metrics) = gw.get("/metrics");
    for action in ["close\"} 1", "backend\"} 1", "alert\"} 1"] {
        assert!(metrics.contains(action), "{action}:\n{metrics}");
    }
}

//! The admin HTTP endpoint: `/healthz`, `/readyz`, `/metrics`, `/routes` and `/status`.
//!
//! It is for probes, scrapers and operators, never for traffic, so it is kept small and bounded:
//! HTTP/1.1 only, GET and HEAD only, a deadline on every request head (so a client that connects
//! and sends nothing, or trickles its headers, is dropped), a cap on connections at once (beyond
//! it a new connection is closed at once rather than queued), and a limit on each connection's
//! lifetime so that a client that stops reading its responses cannot hold a slot forever.
//! Keep-alive is allowed because Prometheus and kubelet probes reuse their connections.
//!
//! What the endpoint shows comes from an [`AdminState`], supplied by whoever runs the gateway;
//! this module only speaks HTTP. A failure on one connection is logged at debug level and never
//! stops the server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// What the admin endpoint shows. Implemented by the running gateway; every method is called
/// once per request, on the runtime, so each should be quick and must not block on I/O.
pub trait AdminState: Send + Sync + 'static {
    /// Ok when ready to serve traffic; Err(reason) otherwise (e.g. "draining", "listener
    /// 127.0.0.1:8443 not bound").
    fn ready(&self) -> Result<(), String>;
    /// Prometheus/OpenMetrics text exposition.
    fn metrics(&self) -> String;
    /// The live routing table as JSON (no key material).
    fn routes(&self) -> serde_json::Value;
    /// The live Gateway API status as a v1 List.
    fn status(&self) -> serde_json::Value;
}

/// Default deadline for a request head, from the first read of a request (or, on a kept-alive
/// connection, from the end of the previous response).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on admin connections at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default longest life of one admin connection; then it is closed after its current response.
pub const DEFAULT_CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// How long a connection may take to finish its current response once asked to close (at
/// shutdown, or at the end of its lifetime) before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Largest request head read; probes and scrapers send a few hundred bytes.
const MAX_BUF: usize = 16 * 1024;
/// Pause after a failed accept (out of descriptors, typically) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The OpenMetrics content type Prometheus negotiates for.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A bound, not yet serving, admin endpoint.
#[derive(Debug)]
pub struct AdminServer {
    listener: std::net::TcpListener,
    local: SocketAddr,
    header_timeout: Duration,
    max_connections: usize,
    lifetime: Duration,
}

impl AdminServer {
    /// Binds `addr` now (port 0 binds an ephemeral port), so that a port in use is reported at
    /// start-up rather than when serving begins. The error names the address.
    pub fn bind(addr: SocketAddr) -> std::io::Result<AdminServer> {
        let named = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
        };
        let listener = std::net::TcpListener::bind(addr).map_err(named)?;
        listener.set_nonblocking(true).map_err(named)?;
        let local = listener.local_addr().map_err(named)?;
        Ok(AdminServer {
            listener,
            local,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            lifetime: DEFAULT_CONNECTION_LIFETIME,
        })
    }

    /// Sets the deadline for reading a request head (default [`DEFAULT_HEADER_TIMEOUT`]). An idle
    /// kept-alive connection is closed after it too.
    pub fn with_header_timeout(mut self, timeout: Duration) -> AdminServer {
        self.header_timeout = timeout;
        self
    }

    /// Sets the cap on connections at once (default [`DEFAULT_MAX_CONNECTIONS`], at least 1).
    pub fn with_max_connections(mut self, max: usize) -> AdminServer {
        self.max_connections = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Sets the longest life of one connection (default [`DEFAULT_CONNECTION_LIFETIME`]).
    pub fn with_connection_lifetime(mut self, lifetime: Duration) -> AdminServer {
        self.lifetime = lifetime;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` resolves, then closes the listening socket, lets open connections
    /// finish their current response (bounded) and returns. Must run inside a Tokio runtime.
    pub async fn serve(
        self,
        state: Arc<dyn AdminState>,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let AdminServer { listener, local, header_timeout, max_connections, lifetime } = self;
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%local, error = %e, "admin endpoint cannot serve");
                return;
            }
        };
        tracing::info!(%local, "admin endpoint listening");
        let permits = Arc::new(Semaphore::new(max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true)
            .max_buf_size(MAX_BUF);
        let http = Arc::new(http);

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                // Reap finished connection tasks so the set does not grow.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::debug!(error = %e, "admin accept failed");
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                            continue;
                        }
                    };
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::debug!(%peer, max_connections, "admin connection refused: too many");
                        drop(stream);
                        continue;
                    };
                    let conn = serve_connection(
                        stream,
                        Arc::clone(&http),
                        Arc::clone(&state),
                        stop_rx.clone(),
                        lifetime,
                    );
                    tasks.spawn(async move {
                        conn.await;
                        drop(permit);
                    });
                }
            }
        }
        drop(listener);
        stop_tx.send_replace(true);
        let all_done = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(CLOSE_GRACE * 2, all_done).await.is_err() {
            tracing::debug!("admin connections cut at shutdown");
        }
        // Dropping the set aborts whatever is left.
    }
}

/// One connection: HTTP/1.1 until the client closes, the head deadline passes, the lifetime ends
/// or the server stops.
async fn serve_connection(
    stream: TcpStream,
    http: Arc<hyper::server::conn::http1::Builder>,
    state: Arc<dyn AdminState>,
    mut stop: watch::Receiver<bool>,
    lifetime: Duration,
) {
    let peer = stream.peer_addr().ok();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = respond(state.as_ref(), &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let finished = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = stop.wait_for(|s| *s) => None,
        () = tokio::time::sleep(lifetime) => None,
    };
    let result = match finished {
        Some(r) => r,
        None => {
            // Finish the current response, then close; cut a client that does not read it.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!(?peer, "admin connection cut: its response was not read");
                    Ok(())
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(?peer, error = %e, "admin connection ended with an error");
    }
}

/// The response to one request. HEAD gets the same headers as GET; hyper leaves the body out.
fn respond(state: &dyn AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics" | "/routes" | "/status") {
        return text(StatusCode::NOT_FOUND, format!("not found: {path}\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into());
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match state.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
        },
        "/metrics" => body(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, state.metrics()),
        "/routes" => json(&state.routes()),
        _ => json(&state.status()),
    }
}

fn text(status: StatusCode, body_text: String) -> Response<Full<Bytes>> {
    body(status, "text/plain; charset=utf-8", body_text)
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    match serde_json::to_string_pretty(value) {
        Ok(mut s) => {
            s.push('\n');
            body(StatusCode::OK, "application/json", s)
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode JSON: {e}\n")),
    }
}

fn body(status: StatusCode, content_type: &'static str, text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Probes and scrapers want the live answer, never a cached one.
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    /// A gateway stand-in whose readiness the test flips.
    struct Fake {
        not_ready: Mutex<Option<String>>,
    }

    impl AdminState for Fake {
        fn ready(&self) -> Result<(), String> {
            match &*self.not_ready.lock().unwrap() {
                None => Ok(()),
                Some(r) => Err(r.clone()),
            }
        }
        fn metrics(&self) -> String {
            "# TYPE sniway_connections counter\nsniway_connections_total 3\n# EOF\n".into()
        }
        fn routes(&self) -> serde_json::Value {
            serde_json::json!({"listeners": [{"name": "default/gw/tls", "routes": ["default/r#0"]}]})
        }
        fn status(&self) -> serde_json::Value {
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": []})
        }
    }

    /// A running server on an ephemeral loopback port, stopped when dropped.
    struct Running {
        addr: SocketAddr,
        state: Arc<Fake>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(BOUND, &mut self.task).await.expect("server stops").unwrap();
        }
    }

    fn start(server: AdminServer) -> Running {
        let addr = server.local_addr();
        let state = Arc::new(Fake { not_ready: Mutex::new(None) });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared: Arc<dyn AdminState> = state.clone();
        let task = tokio::spawn(server.serve(shared, async move {
            let _ = rx.await;
        }));
        Running { addr, state, stop: Some(tx), task }
    }

    fn loopback() -> AdminServer {
        AdminServer::bind("127.0.0.1:0".parse().unwrap()).unwrap()
    }

    /// Writes `raw` and reads until the server closes, within [`BOUND`].
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(BOUND, s.read_to_end(&mut out))
            .await
            .expect("the server closes the connection in time")
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    async fn get(addr: SocketAddr, method: &str, path: &str) -> String {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        exchange(addr, req.as_bytes()).await
    }

    fn body_of(response: &str) -> &str {
        response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
    }

    #[tokio::test]
    async fn each_path_answers_with_its_status_content_type_and_body() {
        let srv = start(loopback());
        let r = get(srv.addr, "GET", "/healthz").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert_eq!(body_of(&r), "ok\n");

        let r = get(srv.addr, "GET", "/readyz?verbose=1").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert_eq!(body_of(&r), "ready\n");

        let r = get(srv.addr, "GET", "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.to_ascii_lowercase().contains(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}")),
            "{r}"
        );
        assert!(body_of(&r).contains("sniway_connections_total 3"), "{r}");

        for (path, want) in [("/routes", srv.state.routes()), ("/status", srv.state.status())] {
            let r = get(srv.addr, "GET", path).await;
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
            assert!(r.to_ascii_lowercase().contains("content-type: application/json"), "{r}");
            let got: serde_json::Value = serde_json::from_str(body_of(&r)).unwrap();
            assert_eq!(got, want);
            assert!(body_of(&r).contains("\n  "), "pretty-printed: {r}");
        }
        srv.stop().await;
    }

    #[tokio::test]
    async fn head_gets_the_headers_without_a_body() {
        let srv = start(loopback());
        let r = get(srv.addr, "HEAD", "/healthz").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.to_ascii_lowercase().contains("content-length: 3"), "{r}");
        assert_eq!(body_of(&r), "");
        srv.stop().await;
    }

    #[tokio::test]
    async fn other_methods_get_405_with_the_allowed_ones_and_unknown_paths_404() {
        let srv = start(loopback());
        let r = get(srv.addr, "POST", "/readyz").await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        assert!(r.to_ascii_lowercase().contains("allow: get, head"), "{r}");
        let r = get(srv.addr, "DELETE", "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        for path in ["/", "/healthz/", "/metrics.txt", "/../status"] {
            let r = get(srv.addr, "GET", path).await;
            assert!(r.starts_with("HTTP/1.1 404 "), "{path}: {r}");
        }
        srv.stop().await;
    }

    #[tokio::test]
    async fn readiness_follows_the_state_and_says_why_it_is_not_ready() {
        let srv = start(loopback());
        assert!(get(srv.addr, "GET", "/readyz").await.starts_with("HTTP/1.1 200 "));
        *srv.state.not_ready.lock().unwrap() = Some("draining".into());
        let r = get(srv.addr, "GET", "/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(body_of(&r).contains("draining"), "{r}");
        // Liveness is not readiness: the process still runs.
        assert!(get(srv.addr, "GET", "/healthz").await.starts_with("HTTP/1.1 200 "));
        *srv.state.not_ready.lock().unwrap() = None;
        assert!(get(srv.addr, "GET", "/readyz").await.starts_with("HTTP/1.1 200 "));
        srv.stop().await;
    }

    #[tokio::test]
    async fn a_kept_alive_connection_serves_several_requests() {
        let srv = start(loopback());
        let r = exchange(
            srv.addr,
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(r.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{r}");
        assert!(r.contains("ok\n") && r.ends_with("ready\n"), "{r}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn a_malformed_request_gets_400_and_the_server_keeps_serving() {
        let srv = start(loopback());
        for raw in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /healthz HTTP/9.9\r\n\r\n",
            b"\x16\x03\x01\x00\xff\x01\r\n\r\n",
        ] {
            let r = exchange(srv.addr, raw).await;
            assert!(r.is_empty() || r.starts_with("HTTP/1.1 400 "), "{raw:?}: {r}");
        }
        assert!(get(srv.addr, "GET", "/healthz").await.starts_with("HTTP/1.1 200 "));
        srv.stop().await;
    }

    // Paused time: the runtime's clock jumps to the header deadline once every task waits, so
    // the bound below is on tokio's clock, not on how fast the machine is.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_headers_is_closed_after_the_header_timeout() {
        let srv = start(loopback().with_header_timeout(Duration::from_millis(200)));
        let started = tokio::time::Instant::now();
        // `exchange` fails the test unless the server closes within its bound.
        let r = exchange(srv.addr, b"GET /healthz HTTP/1.1\r\nHost: slow\r\n").await;
        assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        // A client that sends nothing at all is closed the same way.
        let r = exchange(srv.addr, b"").await;
        assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once() {
        let srv = start(loopback().with_max_connections(1));
        // The first connection holds the only slot (accepts are served in order).
        let mut first = TcpStream::connect(srv.addr).await.unwrap();
        let r = exchange(srv.addr, b"").await;
        assert_eq!(r, "", "refused without a response");
        // The first one still works, and its slot is free once it closes.
        first
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tokio::time::timeout(BOUND, first.read_to_string(&mut out)).await.unwrap().unwrap();
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        drop(first);
        let again = async {
            loop {
                if get(srv.addr, "GET", "/healthz").await.starts_with("HTTP/1.1 200 ") {
                    break;
                }
                // The slot is returned when the server's task for `first` ends, just after the
                // close; a refused attempt in between is closed at once, so this loop is quick.
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(BOUND, again).await.expect("the slot is freed");
        srv.stop().await;
    }

    #[tokio::test]
    async fn curl_sees_the_same_answers() {
        let srv = start(loopback());
        let curl = |args: Vec<String>| async move {
            let out = tokio::time::timeout(
                BOUND,
                tokio::process::Command::new("curl")
                    .args(["-sS", "-i", "--max-time", "10"])
                    .args(args)
                    .output(),
            )
            .await
            .expect("curl finishes")
            .expect("curl is installed (scripts/test.sh installs it)");
            String::from_utf8(out.stdout).unwrap()
        };
        let base = format!("http://{}", srv.addr);
        let r = curl(vec![format!("{base}/healthz")]).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.ends_with("ok\n"), "{r}");
        let r = curl(vec![format!("{base}/metrics")]).await;
        assert!(r.to_ascii_lowercase().contains("application/openmetrics-text"), "{r}");
        let r = curl(vec![format!("{base}/routes")]).await;
        assert!(r.contains("\"default/gw/tls\""), "{r}");
        let r = curl(vec!["-X".into(), "POST".into(), format!("{base}/status")]).await;
        assert!(r.starts_with("HTTP/1.1 405"), "{r}");
        let r = curl(vec![format!("{base}/nope")]).await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let r = curl(vec!["-I".into(), format!("{base}/readyz")]).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        srv.stop().await;
    }

    #[test]
    fn binding_a_port_in_use_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = AdminServer::bind(addr).unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}

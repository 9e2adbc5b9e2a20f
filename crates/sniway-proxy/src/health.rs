//! Endpoint health: passive ejection after failed connects, active checks (a TCP connect, or a
//! TLS probe), and the state both keep per endpoint across tables.
//!
//! Every endpoint of a backend has an [`EndpointState`], kept by the backend's [`BackendHealth`]
//! (itself part of the backend's state in the registry, `live.rs`) by address, so a new table
//! that keeps an endpoint keeps its health; an endpoint that leaves the table loses it. An
//! endpoint is *usable* when no active check has failed it and it is not ejected.
//!
//! Passive health (on by default, `BackendPolicy` `healthCheck.passive`): `consecutiveFailures`
//! failed connects in a row eject an endpoint for `ejectionTime`, doubled on each repeated
//! ejection (an ejection that follows the last one without a successful connect in between) up
//! to [`MAX_EJECTION`]. A successful connect resets the count and the doubling, and readmits an
//! endpoint that was used while ejected (when every endpoint is unhealthy and the backend fails
//! open). A passing active check readmits an ejected endpoint at once.
//!
//! A new endpoint starts healthy: it takes connections before its first check, so that a
//! reload or a scale-up never refuses traffic while checks have yet to run.
//!
//! Active health (`healthCheck.active`, only when configured): one task per backend checks every
//! endpoint each `interval` (plus up to a tenth of it, random, so that many backends do not
//! check in step), each check bounded by `timeout`. `unhealthyThreshold` failures in a row make
//! an endpoint unhealthy, `healthyThreshold` passes in a row make it healthy again. A check is a
//! TCP connect, or a TLS probe: a ClientHello with the configured server name, which passes when
//! the backend answers with a handshake record whose first message is a ServerHello (RFC 8446
//! §4.1.3; RFC 5246 §7.4.1.3); with `verify`, the probe completes the handshake and verifies the
//! backend's certificate chain for the server name against the configured CA certificates only.
//! The task holds its backend weakly: it ends when no table uses the backend any more, or when
//! the backend's policy no longer asks for active checks.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};
use sniway_model::BackendSettings;
use sniway_model::settings::{ActiveHealthCheck, PassiveHealthCheck, Probe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::metrics::{BackendResultLabels, EndpointLabels, Metrics};
use crate::resolve::Resolver;

/// The longest ejection, however often an endpoint is ejected again.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// The passive health check applied when a backend's policy sets none.
pub const DEFAULT_PASSIVE: PassiveHealthCheck =
    PassiveHealthCheck { consecutive_failures: 3, ejection_time: Duration::from_secs(30) };

/// Most bytes a TLS probe reads before it decides (a record header and a handshake type).
const PROBE_READ: usize = 6;

/// One endpoint's health and load, kept across tables while the endpoint stays.
#[derive(Debug)]
pub(crate) struct EndpointState {
    /// The endpoint.
    pub addr: SocketAddr,
    /// Time base of `ejected_until`.
    born: Instant,
    /// Connections to it open now.
    pub active: AtomicUsize,
    /// Failed connects in a row.
    failures: AtomicU32,
    /// Ejected until this many milliseconds after `born`, plus one; 0: not ejected.
    ejected_until: AtomicU64,
    /// Ejections in a row (the backoff's exponent).
    level: AtomicU32,
    /// False while active checks say the endpoint is down.
    check_ok: AtomicBool,
    /// Active checks passed in a row.
    passes: AtomicU32,
    /// Active checks failed in a row.
    fails: AtomicU32,
    /// Whether any active check ran (for the status view).
    checked: AtomicBool,
    /// The table generation that last had this endpoint (fixed endpoints).
    seen: AtomicU64,
    /// `sniway_backend_endpoint_healthy`.
    healthy_gauge: Gauge,
    /// `sniway_backend_ejections_total`.
    ejections: Counter,
}

impl EndpointState {
    /// A healthy endpoint with detached metric handles.
    #[cfg(test)]
    pub fn detached(addr: SocketAddr) -> EndpointState {
        EndpointState::new(addr, Gauge::default(), Counter::default())
    }

    fn new(addr: SocketAddr, healthy_gauge: Gauge, ejections: Counter) -> EndpointState {
        healthy_gauge.set(1);
        EndpointState {
            addr,
            born: Instant::now(),
            active: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            level: AtomicU32::new(0),
            check_ok: AtomicBool::new(true),
            passes: AtomicU32::new(0),
            fails: AtomicU32::new(0),
            checked: AtomicBool::new(false),
            seen: AtomicU64::new(0),
            healthy_gauge,
            ejections,
        }
    }

    fn now_ms(&self) -> u64 {
        let ms = Instant::now().saturating_duration_since(self.born).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
    }

    /// Takes new connections: no active check failed it and it is not ejected. On the healthy
    /// path this is two atomic loads.
    pub fn usable(&self) -> bool {
        if !self.check_ok.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || self.expire(until)
    }

    /// Whether an ejection ending at `until` is over; when it is, clears it.
    fn expire(&self, until: u64) -> bool {
        if self.now_ms() < until {
            return false;
        }
        if self
            .ejected_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.refresh();
        }
        true
    }

    /// Ejected now.
    pub fn ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && !self.expire(until)
    }

    /// Brings the health gauge up to date.
    pub fn refresh(&self) {
        let ok = self.check_ok.load(Ordering::Relaxed)
            && self.ejected_until.load(Ordering::Relaxed) == 0;
        self.healthy_gauge.set(i64::from(ok));
    }

    /// A connect to it succeeded.
    pub fn connect_succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.level.load(Ordering::Relaxed) != 0 {
            self.level.store(0, Ordering::Relaxed);
        }
        if self.ejected_until.load(Ordering::Relaxed) != 0 {
            self.ejected_until.store(0, Ordering::Relaxed);
            self.refresh();
        }
    }

    /// A connect to it failed; returns true when this ejects it.
    pub fn connect_failed(&self, passive: &PassiveHealthCheck) -> bool {
        if passive.consecutive_failures == 0 {
            return false;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if n < passive.consecutive_failures || self.ejected() {
            return false;
        }
        let level = self.level.fetch_add(1, Ordering::AcqRel).min(16);
        let time = passive.ejection_time.saturating_mul(1 << level);
        let time = time.min(MAX_EJECTION.max(passive.ejection_time));
        let until = self.now_ms().saturating_add(u64::try_from(time.as_millis()).unwrap_or(0));
        self.failures.store(0, Ordering::Relaxed);
        self.ejected_until.store(until.max(1), Ordering::Release);
        self.ejections.inc();
        self.refresh();
        tracing::info!(endpoint = %self.addr, ejection = ?time, "endpoint ejected after failed connects");
        true
    }

    /// An active check's result under `check`'s thresholds.
    pub fn check_result(&self, ok: bool, check: &ActiveHealthCheck) {
        self.checked.store(true, Ordering::Relaxed);
        if ok {
            self.fails.store(0, Ordering::Relaxed);
            let p = self.passes.fetch_add(1, Ordering::AcqRel).saturating_add(1);
            if !self.check_ok.load(Ordering::Relaxed) && p >= check.healthy_threshold.max(1) {
                self.check_ok.store(true, Ordering::Relaxed);
                tracing::info!(endpoint = %self.addr, "endpoint healthy again (active check)");
            }
            // A passing check readmits an ejected endpoint at once.
            if self.ejected_until.swap(0, Ordering::AcqRel) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
        } else {
            self.passes.store(0, Ordering::Relaxed);
            let f = self.fails.fetch_add(1, Ordering::AcqRel).saturating_add(1);
            if self.check_ok.load(Ordering::Relaxed) && f >= check.unhealthy_threshold.max(1) {
                self.check_ok.store(false, Ordering::Relaxed);
                tracing::info!(endpoint = %self.addr, "endpoint unhealthy (active check)");
            }
        }
        self.refresh();
    }

    /// Forgets active-check results (the policy no longer asks for checks).
    fn clear_checks(&self) {
        self.check_ok.store(true, Ordering::Relaxed);
        self.checked.store(false, Ordering::Relaxed);
        self.passes.store(0, Ordering::Relaxed);
        self.fails.store(0, Ordering::Relaxed);
        self.refresh();
    }

    /// The endpoint as `/status` shows it.
    pub fn view(&self) -> Value {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let ejected = until != 0 && !self.expire(until);
        let mut v = json!({
            "address": self.addr.to_string(),
            "healthy": self.usable(),
            "connections": self.active.load(Ordering::Relaxed),
        });
        if ejected {
            let left = until.saturating_sub(self.now_ms());
            v["ejectedForMs"] = json!(left);
        }
        let failures = self.failures.load(Ordering::Relaxed);
        if failures > 0 {
            v["failedConnects"] = json!(failures);
        }
        if self.checked.load(Ordering::Relaxed) {
            let pass = self.check_ok.load(Ordering::Relaxed);
            v["activeCheck"] = json!(if pass { "passing" } else { "failing" });
        }
        v
    }
}

/// Counts a connection on an endpoint while it is open (least-connections balancing).
#[derive(Debug)]
pub(crate) struct EndpointGuard(Arc<EndpointState>);

impl EndpointGuard {
    /// Counts a connection on `e`.
    pub fn new(e: Arc<EndpointState>) -> EndpointGuard {
        e.active.fetch_add(1, Ordering::Relaxed);
        EndpointGuard(e)
    }
}

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the newest table says about a backend, for its active checks.
#[derive(Debug, Default)]
struct Current {
    settings: Arc<BackendSettings>,
    /// The host and port of a backend resolved by DNS.
    dns: Option<(String, u16)>,
}

/// A backend's endpoints with their health, and its active checker.
#[derive(Debug)]
pub(crate) struct BackendHealth {
    name: String,
    endpoints: Mutex<HashMap<SocketAddr, Arc<EndpointState>>>,
    current: Mutex<Current>,
    /// An active checker task runs.
    checker: AtomicBool,
    metrics: Arc<HealthMetrics>,
}

/// Metric families the health code creates series in.
#[derive(Debug)]
pub(crate) struct HealthMetrics {
    healthy: prometheus_client::metrics::family::Family<EndpointLabels, Gauge>,
    ejections: prometheus_client::metrics::family::Family<EndpointLabels, Counter>,
    checks: prometheus_client::metrics::family::Family<BackendResultLabels, Counter>,
}

impl HealthMetrics {
    pub fn new(m: &Metrics) -> Arc<HealthMetrics> {
        Arc::new(HealthMetrics {
            healthy: m.endpoint_healthy.clone(),
            ejections: m.ejections.clone(),
            checks: m.health_checks.clone(),
        })
    }
}

impl BackendHealth {
    pub fn new(name: &str, metrics: Arc<HealthMetrics>) -> BackendHealth {
        BackendHealth {
            name: name.to_string(),
            endpoints: Mutex::new(HashMap::new()),
            current: Mutex::new(Current::default()),
            checker: AtomicBool::new(false),
            metrics,
        }
    }

    fn endpoint(
        &self,
        map: &mut HashMap<SocketAddr, Arc<EndpointState>>,
        addr: SocketAddr,
    ) -> Arc<EndpointState> {
        Arc::clone(map.entry(addr).or_insert_with(|| {
            let labels = EndpointLabels { backend: self.name.clone(), endpoint: addr.to_string() };
            Arc::new(EndpointState::new(
                addr,
                self.metrics.healthy.get_or_create_owned(&labels),
                self.metrics.ejections.get_or_create_owned(&labels),
            ))
        }))
    }

    /// The states of a table's fixed endpoints, kept from earlier tables by address.
    pub fn fixed(&self, addrs: &[SocketAddr], generation: u64) -> Vec<Arc<EndpointState>> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        addrs
            .iter()
            .map(|&a| {
                let e = self.endpoint(&mut map, a);
                e.seen.store(generation, Ordering::Relaxed);
                e
            })
            .collect()
    }

    /// The states of the addresses a DNS name resolves to now; the others are forgotten.
    pub fn resolved(&self, addrs: &[SocketAddr]) -> Vec<Arc<EndpointState>> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let out: Vec<_> = addrs.iter().map(|&a| self.endpoint(&mut map, a)).collect();
        if map.len() != out.len() {
            map.retain(|a, _| addrs.contains(a) || self.forget(*a));
        }
        out
    }

    /// Records what table `generation` says about the backend.
    pub fn update(&self, settings: &Arc<BackendSettings>, dns: Option<(String, u16)>) {
        let mut c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        c.settings = Arc::clone(settings);
        c.dns = dns;
    }

    /// Forgets fixed endpoints that table `generation` does not have.
    pub fn prune(&self, generation: u64) {
        let dns = self.current.lock().unwrap_or_else(|p| p.into_inner()).dns.is_some();
        if dns {
            return;
        }
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|a, e| e.seen.load(Ordering::Relaxed) >= generation || self.forget(*a));
    }

    /// Removes the health gauge of an endpoint that leaves (a stale value would mislead);
    /// returns false, for `retain`. Its ejection count stays, as counters do.
    fn forget(&self, addr: SocketAddr) -> bool {
        let labels = EndpointLabels { backend: self.name.clone(), endpoint: addr.to_string() };
        self.metrics.healthy.remove(&labels);
        false
    }

    /// Every endpoint known now, in address order.
    pub fn all(&self) -> Vec<Arc<EndpointState>> {
        let map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by_key(|e| e.addr);
        v
    }

    /// Brings every endpoint's gauge up to date (ejections end without an event).
    pub fn refresh(&self) {
        for e in self.all() {
            let until = e.ejected_until.load(Ordering::Relaxed);
            if until != 0 {
                e.expire(until);
            }
            e.refresh();
        }
    }

    /// The backend's endpoints as `/status` shows them.
    pub fn view(&self) -> Value {
        Value::Array(self.all().iter().map(|e| e.view()).collect())
    }
}

/// Starts the active checker of `state` unless it runs or the policy asks for none.
pub(crate) fn ensure_checker(
    owner: Weak<crate::live::BackendState>,
    health: &BackendHealth,
    resolver: &Resolver,
) {
    let wanted =
        health.current.lock().unwrap_or_else(|p| p.into_inner()).settings.active_health.is_some();
    if !wanted || health.checker.swap(true, Ordering::AcqRel) {
        return;
    }
    let resolver = resolver.clone();
    tokio::spawn(run_checker(owner, resolver));
}

/// Checks every endpoint of a backend each interval while the backend exists and its policy
/// asks for checks.
async fn run_checker(owner: Weak<crate::live::BackendState>, resolver: Resolver) {
    loop {
        let round = {
            let Some(state) = owner.upgrade() else { return };
            let h = &state.health;
            let (check, dns) = {
                let c = h.current.lock().unwrap_or_else(|p| p.into_inner());
                (c.settings.active_health.clone(), c.dns.clone())
            };
            let Some(check) = check else {
                h.checker.store(false, Ordering::Release);
                for e in h.all() {
                    e.clear_checks();
                }
                // A table installed meanwhile may ask for checks again.
                let again = h
                    .current
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .settings
                    .active_health
                    .is_some();
                if again && !h.checker.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            };
            let endpoints = match dns {
                None => h.all(),
                Some((host, port)) => {
                    // Bounded like a check, so that a silent name server cannot stall the loop.
                    let limit = check.timeout.max(Duration::from_secs(1));
                    let resolved = tokio::time::timeout(limit, resolver.resolve(&host, port)).await;
                    match resolved {
                        Ok(Ok(addrs)) => h.resolved(&addrs),
                        Ok(Err(e)) => {
                            tracing::debug!(backend = %h.name, error = %e, "health check: resolving failed");
                            Vec::new()
                        }
                        Err(_) => {
                            tracing::debug!(backend = %h.name, "health check: resolving timed out");
                            Vec::new()
                        }
                    }
                }
            };
            let labels = |result| BackendResultLabels { backend: h.name.clone(), result };
            let pass = h.metrics.checks.get_or_create_owned(&labels("success"));
            let fail = h.metrics.checks.get_or_create_owned(&labels("failure"));
            (check, endpoints, pass, fail, h.name.clone())
        };
        // The backend's state is not held while checking or waiting.
        let (check, endpoints, pass, fail, name) = round;
        let config = Arc::new(ProbeConfig::new(&check.probe));
        let mut set = tokio::task::JoinSet::new();
        for e in endpoints {
            let config = Arc::clone(&config);
            let timeout = check.timeout;
            set.spawn(async move {
                let r = tokio::time::timeout(timeout, probe(e.addr, &config)).await;
                let r =
                    r.unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")));
                (e, r)
            });
        }
        while let Some(done) = set.join_next().await {
            let Ok((e, r)) = done else { continue };
            if let Err(err) = &r {
                tracing::debug!(backend = %name, endpoint = %e.addr, error = %err, "health check failed");
            }
            if r.is_ok() { &pass } else { &fail }.inc();
            e.check_result(r.is_ok(), &check);
        }
        let interval = check.interval.max(Duration::from_millis(10));
        let jitter = interval.mul_f64(fastrand::f64() / 10.0);
        tokio::time::sleep(interval + jitter).await;
    }
}

/// A probe ready to run: for TLS, the client configuration built once per round.
pub(crate) enum ProbeConfig {
    /// A TCP connect.
    Tcp,
    /// A ClientHello, expecting a ServerHello.
    Hello { config: Arc<rustls::ClientConfig>, name: rustls::pki_types::ServerName<'static> },
    /// A full handshake, the chain verified against the roots.
    Verify(Result<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>), String>),
}

impl ProbeConfig {
    /// The probe for `p`.
    pub fn new(p: &Probe) -> ProbeConfig {
        match p {
            Probe::Tcp => ProbeConfig::Tcp,
            Probe::Tls { sni, verify, ca_pem, .. } => {
                let name = sni
                    .as_deref()
                    .and_then(|s| rustls::pki_types::ServerName::try_from(s.to_string()).ok());
                if *verify {
                    let built = (|| {
                        let name = name.ok_or("a verifying TLS probe needs a server name")?;
                        Ok((client_config(ca_pem)?, name))
                    })();
                    return ProbeConfig::Verify(built);
                }
                // The handshake is never completed, so the roots are never consulted.
                let config = client_config(&[]).unwrap_or_else(|_| unreachable_config());
                let name = name.unwrap_or_else(|| {
                    rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
                });
                ProbeConfig::Hello { config, name }
            }
        }
    }
}

fn unreachable_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    )
}

/// A client configuration trusting only the certificates in `pems`.
fn client_config(pems: &[String]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("CA certificate: {e}"))?;
            roots.add(cert).map_err(|e| format!("CA certificate: {e}"))?;
        }
    }
    if !pems.is_empty() && roots.is_empty() {
        return Err("no CA certificate found".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One check of `addr`; Ok when it passes. The caller bounds it in time.
pub(crate) async fn probe(addr: SocketAddr, config: &ProbeConfig) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    match config {
        ProbeConfig::Tcp => Ok(()),
        ProbeConfig::Hello { config, name } => {
            let mut conn = rustls::ClientConnection::new(Arc::clone(config), name.clone())
                .map_err(io::Error::other)?;
            let mut hello = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut hello)?;
            }
            stream.write_all(&hello).await?;
            let mut buf = [0u8; PROBE_READ];
            let mut n = 0;
            while n < buf.len() {
                let r = stream.read(&mut buf[n..]).await?;
                if r == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed before a ServerHello",
                    ));
                }
                n += r;
            }
            // A handshake record (22) whose first message is a ServerHello (2).
            if buf[0] == 22 && buf[1] == 3 && buf[5] == 2 {
                Ok(())
            } else if buf[0] == 21 {
                Err(io::Error::other("answered with an alert"))
            } else {
                Err(io::Error::other("no ServerHello"))
            }
        }
        ProbeConfig::Verify(Err(e)) => Err(io::Error::other(e.clone())),
        ProbeConfig::Verify(Ok((config, name))) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
            let mut tls = connector.connect(name.clone(), stream).await?;
            let _ = tls.shutdown().await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passive(n: u32, secs: u64) -> PassiveHealthCheck {
        PassiveHealthCheck { consecutive_failures: n, ejection_time: Duration::from_secs(secs) }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_for_a_doubling_time_and_a_success_resets() {
        let e = EndpointState::detached("127.0.0.1:1".parse().unwrap());
        let p = passive(3, 30);
        assert!(!e.connect_failed(&p));
        assert!(!e.connect_failed(&p));
        assert!(e.usable());
        assert!(e.connect_failed(&p));
        assert!(!e.usable());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!e.usable());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(e.usable());
        // Failing again right after readmission: ejected for twice as long.
        for _ in 0..3 {
            e.connect_failed(&p);
        }
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!e.usable());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(e.usable());
        // A success resets the doubling and the count.
        e.connect_failed(&p);
        e.connect_succeeded();
        e.connect_failed(&p);
        e.connect_failed(&p);
        assert!(e.usable(), "two failures after a success do not eject");
        e.connect_failed(&p);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(e.usable(), "the doubling starts over after a success");
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_is_capped_at_five_minutes() {
        let e = EndpointState::detached("127.0.0.1:1".parse().unwrap());
        let p = passive(1, 100);
        for _ in 0..4 {
            assert!(e.connect_failed(&p));
            tokio::time::advance(MAX_EJECTION + Duration::from_secs(1)).await;
            assert!(e.usable());
        }
    }

    #[test]
    fn zero_consecutive_failures_never_ejects() {
        let e = EndpointState::detached("127.0.0.1:1".parse().unwrap());
        for _ in 0..10 {
            assert!(!e.connect_failed(&passive(0, 30)));
        }
        assert!(e.usable());
    }

    #[tokio::test(start_paused = true)]
    async fn active_thresholds_fail_and_readmit_and_a_pass_ends_an_ejection() {
        let e = EndpointState::detached("127.0.0.1:1".parse().unwrap());
        let check = ActiveHealthCheck {
            probe: Probe::Tcp,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        };
        e.check_result(false, &check);
        assert!(e.usable(), "one failure is below the threshold");
        e.check_result(false, &check);
        assert!(!e.usable());
        e.check_result(true, &check);
        assert!(!e.usable(), "one pass is below the healthy threshold");
        e.check_result(true, &check);
        assert!(e.usable());
        assert!(e.connect_failed(&passive(1, 30)));
        assert!(!e.usable());
        e.check_result(true, &check);
        assert!(e.usable(), "a passing check readmits at once");
    }
}

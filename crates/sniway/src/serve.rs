//! What every serving command shares (`run`, `dataplane`, `controller --serve`): the runtime,
//! the proxy's configuration from the flags, the live table with its status and reload record,
//! the admin endpoint, the JSON event lines on standard output, and the drain on SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sniway_compile::Compiled;
use sniway_proxy::access_log::{AccessLog, Format};
use sniway_proxy::{Keepalive, Proxy, ProxyConfig, SocketState};
use tokio::signal::unix::Signal;

use crate::admin::{AdminServer, AdminState};
use crate::cli::{AccessLogFormat, ServeArgs};
use crate::run::report_conditions;

/// A multi-threaded runtime with `--workers` threads, after raising the open-file limit.
pub fn runtime(args: &ServeArgs) -> Result<tokio::runtime::Runtime> {
    match crate::limits::raise_nofile_limit() {
        Ok((soft, _hard)) => {
            if let Some(w) = crate::limits::check_connection_budget(args.max_connections, soft) {
                tracing::warn!("{w}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.workers {
        builder.worker_threads(usize::from(n));
    }
    builder.enable_all().build().context("starting the runtime")
}

/// The proxy's configuration from the command line.
pub fn proxy_config(args: &ServeArgs) -> ProxyConfig {
    ProxyConfig {
        hello_timeout: args.hello_timeout,
        connect_timeout: args.connect_timeout,
        handshake_timeout: args.handshake_timeout,
        idle_timeout: args.idle_timeout,
        half_close_timeout: args.half_close_timeout,
        max_lifetime: args.max_lifetime,
        keepalive: (!args.keepalive_idle.is_zero()).then_some(Keepalive {
            idle: args.keepalive_idle,
            interval: args.keepalive_interval,
            count: args.keepalive_count,
        }),
        max_connections: args.max_connections,
        max_listener_connections: args.max_listener_connections,
        max_backend_connections: args.max_backend_connections,
        max_client_connections: args.max_client_connections,
        dns_server: args.dns_server,
        ..ProxyConfig::default()
    }
}

pub fn access_log(args: &ServeArgs) -> Result<Option<AccessLog>> {
    let Some(format) = args.access_log else { return Ok(None) };
    let format = match format {
        AccessLogFormat::Text => Format::Text,
        AccessLogFormat::Json => Format::Json,
    };
    let out: Box<dyn Write + Send> = match &args.access_log_path {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("{}: cannot open the access log", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    Ok(Some(AccessLog::start(format, out)))
}

/// Writes one event line to standard output.
pub fn event(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

pub fn sockets_json(sockets: &[SocketState]) -> Value {
    Value::Array(
        sockets
            .iter()
            .map(|s| match &s.bound {
                Ok(local) => {
                    json!({ "address": s.configured.to_string(), "bound": local.to_string() })
                }
                Err(e) => json!({ "address": s.configured.to_string(), "error": e }),
            })
            .collect(),
    )
}

/// The last reload, as `/status` shows it.
#[derive(Debug, Default)]
struct Reload {
    /// Reloads attempted so far (0: only the first load).
    attempts: u64,
    /// What the last one did.
    last: Option<Value>,
}

/// The running gateway, as the admin endpoint sees it.
pub struct Live {
    /// The data plane.
    pub proxy: Proxy,
    /// The status list of the table being served, with the real bind results.
    status: Mutex<Value>,
    reloads: Mutex<Reload>,
}

impl Live {
    /// Installs `compiled`, reports its conditions and keeps its status with the bind results.
    pub fn install(&self, mut compiled: Compiled) -> Vec<SocketState> {
        self.install_in_place(&mut compiled)
    }

    /// As [`Live::install`], taking the table out of `compiled` and marking in its statuses the
    /// listeners whose socket could not be bound, for a caller that writes them on.
    pub fn install_in_place(&self, compiled: &mut Compiled) -> Vec<SocketState> {
        let table = Arc::new(std::mem::take(&mut compiled.table));
        let sockets = self.proxy.install(table);
        let failures: Vec<_> = sockets
            .iter()
            .filter_map(|s| s.bound.as_ref().err().map(|e| (s.configured, e.clone())))
            .collect();
        sniway_compile::apply_bind_failures(compiled, &failures);
        let list = compiled.status_list();
        report_conditions(&list);
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = list;
        sockets
    }

    /// A new configuration, or the reason there is none: a valid one is installed, an invalid
    /// one keeps the table being served; either way the reload is logged once, counted and shown
    /// in `/status`.
    pub async fn reload(&self, result: Result<Compiled>, why: &str) {
        let attempt = {
            let mut g = self.reloads.lock().unwrap_or_else(|p| p.into_inner());
            g.attempts += 1;
            g.attempts
        };
        let old = self.proxy.table();
        let (summary, sockets) = match result {
            Err(e) => {
                tracing::error!(
                    reload = attempt,
                    cause = why,
                    "reload failed; the previous configuration keeps serving: {e:#}"
                );
                self.proxy.metrics().reload(false);
                let summary = json!({
                    "attempt": attempt, "cause": why, "result": "failure",
                    "errors": format!("{e:#}").lines().collect::<Vec<_>>(),
                });
                (summary, self.proxy.sockets())
            }
            Ok(compiled) => {
                let diff = sniway_model::diff(&old, &compiled.table);
                let sockets = self.install(compiled);
                // The event below says which sockets serve: those removed must refuse by then.
                self.proxy.settle().await;
                if diff.is_empty() {
                    tracing::info!(reload = attempt, cause = why, "reloaded: nothing changed");
                } else {
                    tracing::info!(reload = attempt, cause = why, "reloaded: {diff}");
                }
                self.proxy.metrics().reload(true);
                let summary = json!({
                    "attempt": attempt, "cause": why, "result": "success",
                    "changes": diff.to_string(),
                });
                (summary, sockets)
            }
        };
        let line = json!({ "reloaded": { "attempt": attempt, "result": summary["result"], "sockets": sockets_json(&sockets) } });
        // Recorded before it is announced: whoever reads the line finds it in /status.
        self.reloads.lock().unwrap_or_else(|p| p.into_inner()).last = Some(summary);
        event(line);
    }
}

impl AdminState for Live {
    fn ready(&self) -> Result<(), String> {
        self.proxy.ready()
    }

    fn metrics(&self) -> String {
        self.proxy.metrics_text()
    }

    fn routes(&self) -> Value {
        sniway_compile::table_summary(&self.proxy.table())
    }

    fn status(&self) -> Value {
        let mut list = self.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let g = self.reloads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = list.as_object_mut() {
            // Beside the List's items, what kubectl would ignore: the last reload's outcome, and
            // every socket's bind result.
            map.insert("reload".into(), g.last.clone().unwrap_or(Value::Null));
            map.insert("sockets".into(), sockets_json(&self.proxy.sockets()));
            // Every backend's endpoints with their health (ejections, active checks).
            map.insert("backends".into(), self.proxy.backend_health());
        }
        list
    }
}

impl Live {
    /// A data plane configured from the flags, serving nothing yet.
    pub fn new(args: &ServeArgs) -> Result<Arc<Self>> {
        Ok(Arc::new(Live {
            proxy: Proxy::new(proxy_config(args), access_log(args)?),
            status: Mutex::new(Value::Null),
            reloads: Mutex::new(Reload::default()),
        }))
    }
}

/// The admin endpoint, serving until [`Admin::stop`].
pub struct Admin {
    /// Where it listens (`None`: `--admin-address off`).
    pub local: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Admin {
    /// Binds `--admin-address` and serves `state` on it.
    pub fn start(args: &ServeArgs, state: Arc<dyn AdminState>) -> Result<Admin> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let local = match args.admin_address.0 {
            None => None,
            Some(addr) => {
                let server = AdminServer::bind(addr).context("the admin endpoint")?;
                let local = server.local_addr();
                let mut stopped = stopped.clone();
                tokio::spawn(server.serve(state, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }));
                Some(local)
            }
        };
        Ok(Admin { local, stop })
    }

    /// Stops serving.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Announces readiness on standard output: the admin address and every socket's bind result.
pub fn ready_event(admin: Option<SocketAddr>, sockets: &[SocketState]) {
    event(json!({ "ready": {
        "admin": admin.map(|a| a.to_string()),
        "sockets": sockets_json(sockets),
    } }));
}

/// Drains after the first SIGTERM or SIGINT: not ready, no new connections, live ones may
/// finish within `--drain-timeout`, then are cut. A second signal exits at once (130).
pub async fn drain(
    proxy: &Proxy,
    args: &ServeArgs,
    admin: &Admin,
    term: &mut Signal,
    int: &mut Signal,
) -> ExitCode {
    tracing::info!(
        drain = ?args.drain_timeout,
        "shutting down: not ready, no new connections, draining the open ones (a second \
         SIGTERM or SIGINT exits at once)"
    );
    let drained = tokio::select! {
        d = proxy.shutdown(args.drain_timeout) => d,
        _ = term.recv() => return exit_now(proxy),
        _ = int.recv() => return exit_now(proxy),
    };
    admin.stop();
    tracing::info!(open = drained.open, cut = drained.cut, "stopped");
    ExitCode::SUCCESS
}

/// A second signal during the drain: leave at once.
fn exit_now(proxy: &Proxy) -> ExitCode {
    tracing::warn!(open = proxy.open_connections(), "second signal: exiting at once");
    ExitCode::from(130)
}

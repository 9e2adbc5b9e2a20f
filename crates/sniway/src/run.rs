//! `sniway run`: serve the Gateways in the given manifests, reload them when they change or on
//! SIGHUP, drain on SIGTERM or SIGINT.
//!
//! ```text
//! files ──(watch, SIGHUP)──> read + load + compile ──> Proxy::install ──> live status
//!                            (a failure keeps the       (sockets reconciled,  (/status, /readyz,
//!                             old table serving)         per-table state)      the ready line)
//! ```
//!
//! Standard output carries one JSON line per event a script or a test may wait for: `ready`
//! once the first table is installed (with the admin address and every socket's bind result),
//! then `reloaded` after each reload attempt. The access log, when written to standard output,
//! shares it; its lines are never a single `ready` or `reloaded` object.

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sniway_compile::Compiled;
use sniway_proxy::access_log::{AccessLog, Format};
use sniway_proxy::{Keepalive, Proxy, ProxyConfig, SocketState};
use tokio::signal::unix::{SignalKind, signal};

use crate::admin::{AdminServer, AdminState};
use crate::cli::{AccessLogFormat, RunArgs};

/// Quiet time after the last file event before a burst of changes is reloaded as one.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Loads, compiles and serves until SIGTERM or SIGINT; reloads on file changes and SIGHUP.
pub fn run(args: RunArgs) -> Result<ExitCode> {
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
    let runtime = builder.enable_all().build().context("starting the runtime")?;
    runtime.block_on(serve(args))
}

/// The proxy's configuration from the command line.
fn proxy_config(args: &RunArgs) -> ProxyConfig {
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
    }
}

fn access_log(args: &RunArgs) -> Result<Option<AccessLog>> {
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

async fn serve(args: RunArgs) -> Result<ExitCode> {
    // Registered first: from here on SIGHUP reloads and never terminates the process.
    let mut hup = signal(SignalKind::hangup()).context("handling SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;

    // The first load must succeed: there is no earlier table to keep serving.
    let input = args.input.clone();
    let first = compile_blocking(input.clone()).await?;
    // Before any socket is bound: once clients may connect, they may take every descriptor left
    // (a connection flood under a low open-file limit), and the watcher could not start. And
    // before the ready line: an edit made once a script has seen it is reloaded.
    let mut watcher = if args.no_watch || input.files.iter().all(|f| f.as_os_str() == "-") {
        None
    } else {
        Some(crate::watch::Watcher::new(&input.files, DEBOUNCE).context("watching the manifests")?)
    };
    let proxy = Proxy::new(proxy_config(&args), access_log(&args)?);
    let live = Arc::new(Live {
        proxy: proxy.clone(),
        status: Mutex::new(Value::Null),
        reloads: Mutex::new(Reload::default()),
    });
    let sockets = live.install(first);
    if sockets.is_empty() {
        tracing::info!(
            "nothing to serve yet: no accepted TLS listener in the input (`sniway check` shows \
             why); waiting for the manifests to change or SIGHUP"
        );
    }

    let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
    let admin = match args.admin_address.0 {
        None => None,
        Some(addr) => {
            let server = AdminServer::bind(addr).context("the admin endpoint")?;
            let local = server.local_addr();
            let state: Arc<dyn AdminState> = live.clone();
            let mut stopped = admin_stopped.clone();
            tokio::spawn(server.serve(state, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
            Some(local)
        }
    };
    event(
        json!({ "ready": { "admin": admin.map(|a| a.to_string()), "sockets": sockets_json(&sockets) } }),
    );

    loop {
        let why = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            Some(()) = changed(&mut watcher) => "the manifests changed",
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        live.reload(&input, why).await;
    }

    tracing::info!(
        drain = ?args.drain_timeout,
        "shutting down: not ready, no new connections, draining the open ones (a second \
         SIGTERM or SIGINT exits at once)"
    );
    let drained = tokio::select! {
        d = proxy.shutdown(args.drain_timeout) => d,
        _ = term.recv() => return Ok(exit_now(&proxy)),
        _ = int.recv() => return Ok(exit_now(&proxy)),
    };
    let _ = admin_stop.send(true);
    tracing::info!(open = drained.open, cut = drained.cut, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// A second signal during the drain: leave at once.
fn exit_now(proxy: &Proxy) -> ExitCode {
    tracing::warn!(open = proxy.open_connections(), "second signal: exiting at once");
    ExitCode::from(130)
}

/// The watcher's next change; never resolves without a watcher.
async fn changed(watcher: &mut Option<crate::watch::Watcher>) -> Option<()> {
    match watcher {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// Reads, loads and compiles off the runtime's worker threads (a large input takes a while).
async fn compile_blocking(input: crate::cli::Input) -> Result<Compiled> {
    tokio::task::spawn_blocking(move || crate::manifests::compile_allow_empty(&input))
        .await
        .context("the compile task")?
}

/// Writes one event line to standard output.
fn event(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn sockets_json(sockets: &[SocketState]) -> Value {
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
struct Live {
    proxy: Proxy,
    /// The status list of the table being served, with the real bind results.
    status: Mutex<Value>,
    reloads: Mutex<Reload>,
}

impl Live {
    /// Installs `compiled`, reports its conditions and keeps its status with the bind results.
    fn install(&self, mut compiled: Compiled) -> Vec<SocketState> {
        let table = Arc::new(std::mem::take(&mut compiled.table));
        let sockets = self.proxy.install(table);
        let failures: Vec<_> = sockets
            .iter()
            .filter_map(|s| s.bound.as_ref().err().map(|e| (s.configured, e.clone())))
            .collect();
        sniway_compile::apply_bind_failures(&mut compiled, &failures);
        let list = compiled.status_list();
        report_conditions(&list);
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = list;
        sockets
    }

    /// Reloads the manifests: a valid result is installed, an invalid one keeps the table being
    /// served; either way the reload is logged once, counted and shown in `/status`.
    async fn reload(&self, input: &crate::cli::Input, why: &str) {
        let attempt = {
            let mut g = self.reloads.lock().unwrap_or_else(|p| p.into_inner());
            g.attempts += 1;
            g.attempts
        };
        let old = self.proxy.table();
        let result = compile_blocking(input.clone()).await;
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
        }
        list
    }
}

/// Resolves on the first SIGINT or SIGTERM (used by `demo`).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutting down: no new connections, draining live ones");
}

/// Logs every condition that is not in its healthy state, so `run` says why a listener or route
/// is not served without a separate `check`.
pub fn report_conditions(list: &serde_json::Value) {
    let Some(items) = list.get("items").and_then(|i| i.as_array()) else { return };
    for item in items {
        let kind = item["kind"].as_str().unwrap_or("?");
        let ns = item["metadata"]["namespace"].as_str().unwrap_or("");
        let name = item["metadata"]["name"].as_str().unwrap_or("?");
        let status = &item["status"];
        let mut problems = Vec::new();
        collect(&status["conditions"], "", &mut problems);
        for l in status["listeners"].as_array().into_iter().flatten() {
            let at = format!("listener {}: ", l["name"].as_str().unwrap_or("?"));
            collect(&l["conditions"], &at, &mut problems);
        }
        for p in status["parents"].as_array().into_iter().flatten() {
            let at = format!("parent {}: ", p["parentRef"]["name"].as_str().unwrap_or("?"));
            collect(&p["conditions"], &at, &mut problems);
        }
        for a in status["ancestors"].as_array().into_iter().flatten() {
            let at = format!("target {}: ", a["ancestorRef"]["name"].as_str().unwrap_or("?"));
            collect(&a["conditions"], &at, &mut problems);
        }
        for p in problems {
            tracing::warn!("{kind} {ns}/{name}: {p}");
        }
    }
}

fn collect(conditions: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    for c in conditions.as_array().into_iter().flatten() {
        let ty = c["type"].as_str().unwrap_or("?");
        let status = c["status"].as_str().unwrap_or("?");
        let healthy = if ty == "Conflicted" { status == "False" } else { status == "True" };
        if !healthy {
            let reason = c["reason"].as_str().unwrap_or("");
            let message = c["message"].as_str().unwrap_or("");
            out.push(format!("{at}{ty}={status} ({reason}): {message}"));
        }
    }
}

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

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use sniway_compile::Compiled;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::RunArgs;
use crate::serve::{Admin, Live, drain, ready_event};

/// Quiet time after the last file event before a burst of changes is reloaded as one.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Loads, compiles and serves until SIGTERM or SIGINT; reloads on file changes and SIGHUP.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    crate::serve::runtime(&args.serve)?.block_on(serve(args))
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
    let live = Live::new(&args.serve)?;
    let sockets = live.install(first);
    if sockets.is_empty() {
        tracing::info!(
            "nothing to serve yet: no accepted TLS listener in the input (`sniway check` shows \
             why); waiting for the manifests to change or SIGHUP"
        );
    }
    let admin = Admin::start(&args.serve, live.clone())?;
    ready_event(admin.local, &sockets);

    loop {
        let why = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            Some(()) = changed(&mut watcher) => "the manifests changed",
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        live.reload(compile_blocking(input.clone()).await, why).await;
    }
    Ok(drain(&live.proxy, &args.serve, &admin, &mut term, &mut int).await)
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

//! `sniway run`: serve the Gateways in the given manifests until SIGINT or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sniway_proxy::{Proxy, ProxyConfig};

use crate::cli::RunArgs;

/// Loads, compiles and serves; drains on SIGINT/SIGTERM.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let compiled = crate::manifests::compile(&args.input)?;
    report_conditions(&compiled.status_list());
    let table = compiled.table;
    if table.sockets.is_empty() {
        bail!("nothing to serve: no accepted TLS listener in the input (`sniway check` shows why)");
    }
    let config = ProxyConfig {
        hello_timeout: args.hello_timeout,
        connect_timeout: args.connect_timeout,
        handshake_timeout: args.handshake_timeout,
        max_connections: args.max_connections,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.workers {
        builder.worker_threads(usize::from(n));
    }
    let runtime = builder.enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let routes = table.route_count();
        let proxy = Proxy::bind(Arc::new(table), config).await?;
        tracing::info!(routes, sockets = proxy.local_addrs().len(), "serving");
        proxy.run(shutdown_signal(), args.drain_timeout).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
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
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
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

//! `sniway controller` and `sniway dataplane`: the Kubernetes front door. Both find the API
//! server as kubectl does, run `sniway_k8s::run` (watch, compile with the same step as file
//! mode, write status as the Lease's leader) and, when they serve, install every table into the
//! live data plane of `serve.rs`.
//!
//! Standard output carries the same event lines as `run`: `ready` once the first snapshot of the
//! cluster is compiled (and, when serving, installed), then `reloaded` after each later compile.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result};
use kube_client::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use sniway_compile::Compiled;
use sniway_compile::status::GatewayStatusAddress;
use sniway_k8s::provision::ProvisionOptions;
use sniway_k8s::{ControllerOptions, LeaseOptions, SnapshotOptions};
use sniway_proxy::metrics::ControllerMetrics;
use tokio::signal::unix::{SignalKind, signal};

use crate::admin::AdminState;
use crate::cli::{ControllerArgs, DataplaneArgs, KubeArgs, ServeArgs};
use crate::serve::{Admin, Live, drain, event, ready_event, sockets_json};

/// `sniway controller`.
pub fn controller(args: ControllerArgs) -> Result<ExitCode> {
    crate::serve::runtime(&args.run)?.block_on(run_controller(args))
}

/// `sniway dataplane`.
pub fn dataplane(args: DataplaneArgs) -> Result<ExitCode> {
    crate::serve::runtime(&args.run)?.block_on(run_dataplane(args))
}

/// A client for the API server named by `--kubeconfig`/`--context`, else found as kubectl finds
/// it: `$KUBECONFIG`, `~/.kube/config`, then the pod's service account.
pub async fn client(args: &KubeArgs) -> Result<(kube_client::Client, kube_client::Config)> {
    let options = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("{}: cannot read the kubeconfig", path.display()))?;
            kube_client::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("{}: not a usable kubeconfig", path.display()))?
        }
        (None, Some(_)) => kube_client::Config::from_kubeconfig(&options)
            .await
            .context("no usable kubeconfig for that context")?,
        (None, None) => kube_client::Config::infer()
            .await
            .context("no Kubernetes API server configured (--kubeconfig, KUBECONFIG, ~/.kube/config or a pod's service account)")?,
    };
    let client = kube_client::Client::try_from(config.clone())
        .context("cannot build a client for the API server")?;
    Ok((client, config))
}

/// What the admin endpoint shows of a Kubernetes command.
struct KubeState {
    /// The data plane, when this process serves.
    live: Option<Arc<Live>>,
    /// Shutting down.
    stopping: AtomicBool,
    /// Compiles so far (the first one is the ready line).
    compiles: AtomicU64,
    /// The statuses as last written (or to be written), from the controller's status passes.
    statuses: tokio::sync::watch::Receiver<Option<Arc<Compiled>>>,
    /// Without a data plane: the controller's own metrics.
    metrics: ControllerMetrics,
}

impl KubeState {
    fn new(
        live: Option<Arc<Live>>,
        statuses: tokio::sync::watch::Receiver<Option<Arc<Compiled>>>,
    ) -> Arc<Self> {
        Arc::new(KubeState {
            live,
            stopping: AtomicBool::new(false),
            compiles: AtomicU64::new(0),
            statuses,
            metrics: ControllerMetrics::new(),
        })
    }

    /// Takes one compile: installs its table when serving, and announces it.
    fn take(&self, compiled: &mut Compiled, admin: Option<SocketAddr>) {
        let n = self.compiles.fetch_add(1, Ordering::SeqCst) + 1;
        let sockets = match &self.live {
            Some(live) => {
                if n > 1 {
                    // Every compile after the first is a reload of the data plane.
                    live.proxy.metrics().reload(true);
                }
                live.install_in_place(compiled)
            }
            None => {
                self.metrics.compiled();
                crate::run::report_conditions(&compiled.status_list());
                Vec::new()
            }
        };
        if n == 1 {
            ready_event(admin, &sockets);
        } else {
            event(json!({ "reloaded": {
                "attempt": n - 1, "result": "success", "sockets": sockets_json(&sockets),
            } }));
        }
    }
}

impl AdminState for KubeState {
    fn ready(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("draining: shutting down".into());
        }
        if self.compiles.load(Ordering::SeqCst) == 0 {
            return Err("waiting for the first list of every watched kind".into());
        }
        match &self.live {
            Some(live) => live.ready(),
            None => Ok(()),
        }
    }

    fn metrics(&self) -> String {
        match &self.live {
            Some(live) => live.metrics(),
            None => self.metrics.encode(),
        }
    }

    fn routes(&self) -> Value {
        match &self.live {
            Some(live) => live.routes(),
            None => Value::Null,
        }
    }

    fn status(&self) -> Value {
        match &self.live {
            Some(live) => live.status(),
            None => self.statuses.borrow().as_ref().map_or(Value::Null, |c| c.status_list()),
        }
    }
}

/// The address this host reaches the API server from: what a Gateway served here on an
/// unspecified address (`0.0.0.0`) shows in `status.addresses`. No packet is sent.
fn local_address_towards(cluster_url: &str) -> Option<IpAddr> {
    let uri: hyper::Uri = cluster_url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let remote: IpAddr = host.parse().ok().or_else(|| {
        use std::net::ToSocketAddrs;
        (host, port).to_socket_addrs().ok()?.next().map(|a| a.ip())
    })?;
    let bind: SocketAddr =
        if remote.is_ipv4() { "0.0.0.0:0".parse().ok()? } else { "[::]:0".parse().ok()? };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect((remote, port)).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// Gateways served on an unspecified address show `advertise` instead.
fn advertise(compiled: &mut Compiled, advertise: IpAddr) {
    for g in &mut compiled.gateways {
        if let Some(st) = g.status.as_mut() {
            for a in &mut st.addresses {
                if a.value.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
                    *a = GatewayStatusAddress {
                        type_: "IPAddress".into(),
                        value: advertise.to_string(),
                    };
                }
            }
            st.addresses.dedup_by(|a, b| a.value == b.value);
        }
    }
}

/// The Gateway API feature a provisioning controller adds to what compile claims: the
/// Gateway's `spec.infrastructure` labels and annotations are carried to every object it
/// provisions.
pub const INFRASTRUCTURE_FEATURE: &str = "GatewayInfrastructurePropagation";

/// Adds `feature` to the supported features of every GatewayClass of ours, in name order.
fn claim_feature(compiled: &mut Compiled, feature: &str) {
    for st in compiled.gateway_classes.iter_mut().filter_map(|c| c.status.as_mut()) {
        let features = &mut st.supported_features;
        if let Err(at) = features.binary_search_by(|f| f.name.as_str().cmp(feature)) {
            features.insert(at, sniway_compile::status::SupportedFeature { name: feature.into() });
        }
    }
}

/// Runs `sniway_k8s::run` until the first SIGTERM or SIGINT, then drains what this process
/// serves.
async fn serve_cluster(
    client: kube_client::Client,
    mut opts: ControllerOptions,
    live: Option<Arc<Live>>,
    run: &ServeArgs,
    advertised: Option<IpAddr>,
) -> Result<ExitCode> {
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let (statuses, statuses_rx) = tokio::sync::watch::channel(None);
    opts.statuses = Some(statuses);
    let state = KubeState::new(live.clone(), statuses_rx);
    if live.is_none() {
        // The controller's own metrics: what its status and provisioning passes did.
        let (writes, mut write_reports) = tokio::sync::mpsc::unbounded_channel();
        let (applies, mut apply_reports) = tokio::sync::mpsc::unbounded_channel();
        opts.reports = Some(writes);
        opts.provision_reports = Some(applies);
        let counted = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(r) = write_reports.recv() => {
                        counted.metrics.status_writes(r.written.len(), r.failed.len());
                    }
                    Some(r) = apply_reports.recv() => {
                        counted.metrics.provision_applies(r.applied.len(), r.failed.len());
                    }
                    else => break,
                }
            }
        });
    }
    let admin = Admin::start(run, state.clone())?;
    let admin_addr = admin.local;
    let sink_state = state.clone();
    let provisioning = opts.provision.is_some();
    let sink = move |compiled: &mut Compiled| {
        if let Some(ip) = advertised {
            advertise(compiled, ip);
        }
        if provisioning {
            claim_feature(compiled, INFRASTRUCTURE_FEATURE);
        }
        sink_state.take(compiled, admin_addr);
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(sniway_k8s::run(client, opts, sink, async move {
        let _ = stopped.await;
    }));
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    state.stopping.store(true, Ordering::SeqCst);
    // Stop watching and release the Lease first, so that another replica takes over while this
    // one drains.
    let _ = stop.send(());
    let _ = controller.await;
    match &live {
        Some(live) => Ok(drain(&live.proxy, run, &admin, &mut term, &mut int).await),
        None => {
            admin.stop();
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Where the Lease goes when neither `--lease-namespace` nor `POD_NAMESPACE` says: the
/// namespace `deploy/` creates when it exists, else `default`, which every cluster has (a
/// controller run from a workstation against a cluster without `deploy/` applied).
async fn default_lease_namespace(client: &kube_client::Client) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let namespaces: kube_client::Api<Namespace> = kube_client::Api::all(client.clone());
    match namespaces.get_opt(INSTALL_NAMESPACE).await {
        Ok(None) => "default".to_string(),
        // Present, or unknown (no permission to read it, a transient error): keep the install
        // namespace, whose Role grants the Lease.
        _ => INSTALL_NAMESPACE.to_string(),
    }
}

/// The namespace `deploy/` installs the controller in.
const INSTALL_NAMESPACE: &str = "sniway-system";

async fn run_controller(args: ControllerArgs) -> Result<ExitCode> {
    let (client, config) = client(&args.kube).await?;
    let identity = args.identity.clone().unwrap_or_else(sniway_k8s::lease::default_identity);
    let lease_namespace = match &args.lease_namespace {
        Some(ns) => ns.clone(),
        None => default_lease_namespace(&client).await,
    };
    tracing::info!(namespace = %lease_namespace, name = %args.lease_name, "leader election Lease");
    let mut lease = LeaseOptions::new(lease_namespace, args.lease_name.clone());
    lease.identity = identity;
    // Without --serve, every Gateway of the class gets a data plane of its own.
    let provision = (!args.serve).then(|| ProvisionOptions {
        image: args.dataplane_image.clone(),
        service_type: args.service_type,
        replicas: (args.dataplane_replicas > 0)
            .then(|| i32::try_from(args.dataplane_replicas).unwrap_or(i32::MAX)),
        dataplane_args: args.dataplane_args.clone(),
        drain_timeout: args.run.drain_timeout,
        ..ProvisionOptions::default()
    });
    let opts = ControllerOptions {
        snapshot: SnapshotOptions {
            default_bind: args.bind_address,
            gateway: None,
            // With --serve the Gateways' addresses are bound here.
            local_addresses: args.serve,
        },
        write_status: true,
        lease: Some(lease),
        provision,
        ..ControllerOptions::default()
    };
    let (live, advertised) = if args.serve {
        let advertised = if args.bind_address.is_unspecified() {
            local_address_towards(&config.cluster_url.to_string())
        } else {
            Some(args.bind_address)
        };
        (Some(Live::new(&args.run)?), advertised)
    } else {
        (None, None)
    };
    tracing::info!(
        api_server = %config.cluster_url,
        serve = args.serve,
        "controller starting: watching the Gateway API"
    );
    serve_cluster(client, opts, live, &args.run, advertised).await
}

async fn run_dataplane(args: DataplaneArgs) -> Result<ExitCode> {
    let (client, config) = client(&args.kube).await?;
    let (namespace, name) = args.gateway.clone();
    let opts = ControllerOptions {
        snapshot: SnapshotOptions {
            default_bind: args.bind_address,
            gateway: Some((namespace.clone(), name.clone())),
            local_addresses: false,
        },
        write_status: false,
        lease: None,
        ..ControllerOptions::default()
    };
    tracing::info!(
        api_server = %config.cluster_url,
        gateway = %format!("{namespace}/{name}"),
        "data plane starting"
    );
    let live = Live::new(&args.run)?;
    serve_cluster(client, opts, Some(live), &args.run, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_address_towards_a_loopback_server_is_loopback() {
        let ip = local_address_towards("http://127.0.0.1:6443").expect("an address");
        assert!(ip.is_loopback(), "{ip}");
    }

    #[test]
    fn an_unspecified_gateway_address_is_replaced_by_the_advertised_one() {
        let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: default}\nspec:\n  gatewayClassName: c\n  listeners:\n  - {name: tls, port: 8443, protocol: TLS, tls: {mode: Passthrough}}\n";
        let loaded = sniway_compile::load(
            &[sniway_compile::Source { name: "t".into(), text: yaml.into() }],
            &sniway_compile::LoadOptions::default(),
        )
        .expect("loads");
        let mut compiled =
            sniway_compile::compile(&loaded.resources, &sniway_compile::CompileOptions::default());
        advertise(&mut compiled, "192.0.2.7".parse().unwrap());
        let st = compiled.gateways[0].status.as_ref().expect("served");
        let values: Vec<&str> = st.addresses.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(values, ["192.0.2.7"]);
    }
}

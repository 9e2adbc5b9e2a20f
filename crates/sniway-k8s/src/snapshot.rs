//! The store's objects compiled: the one place where the cluster's objects meet
//! `sniway_compile`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use sniway_compile::{CompileOptions, Compiled, LoadOptions, Mode};

use crate::store::Store;

/// How to compile a snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    /// Address for Gateways without an IPAddress in `spec.addresses`.
    pub default_bind: IpAddr,
    /// Serve only this Gateway, as `(namespace, name)` (a data plane for one Gateway, in a pod
    /// behind the Service that carries the Gateway's `spec.addresses`: its listeners bind
    /// `default_bind`); `None`: every Gateway of a GatewayClass of sniway's.
    pub gateway: Option<(String, String)>,
    /// The Gateways' `spec.addresses` are this host's to bind (`controller --serve`): an IP
    /// address no local interface holds is `AddressNotUsable`. Off: any address is taken as
    /// given (a provisioned Service's load balancer decides).
    pub local_addresses: bool,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            default_bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            gateway: None,
            local_addresses: false,
        }
    }
}

/// Loads (cluster mode: an object sniway rejects is left out with a warning naming it, never
/// failing the snapshot) and compiles every stored object.
pub fn compile_snapshot(store: &Store, opts: &SnapshotOptions) -> Compiled {
    let now = sniway_proxy::access_log::rfc3339(SystemTime::now(), false);
    let docs: Vec<(String, serde_json::Value)> =
        store.objects().map(|(k, v)| (format!("{} {}", k.kind, k.path()), v.clone())).collect();
    let load_opts = LoadOptions { cluster: true, ..LoadOptions::default() };
    let (resources, mut warnings) = match sniway_compile::load_values(docs, &load_opts) {
        Ok(loaded) => (loaded.resources, loaded.warnings),
        // Cluster mode skips bad objects instead; kept total in case that ever changes.
        Err(e) => (Default::default(), e.errors.iter().map(ToString::to_string).collect()),
    };
    let copts = CompileOptions {
        default_bind: opts.default_bind,
        mode: Mode::Cluster { gateway: opts.gateway.clone() },
        usable_addresses: opts.local_addresses.then(|| local_addresses(&resources)),
        addresses_elsewhere: opts.gateway.is_some(),
        now,
    };
    let mut compiled = sniway_compile::compile(&resources, &copts);
    warnings.append(&mut compiled.warnings);
    compiled.warnings = warnings;
    compiled
}

/// The IP addresses requested in Gateways' `spec.addresses` that this host can bind: those a
/// local interface holds (a UDP socket on port 0 binds them; nothing is sent).
fn local_addresses(res: &sniway_compile::Resources) -> BTreeSet<IpAddr> {
    res.gateways
        .iter()
        .flat_map(|g| &g.spec.addresses)
        .filter_map(|a| a.value.as_deref()?.parse::<IpAddr>().ok())
        .filter(|ip| std::net::UdpSocket::bind((*ip, 0)).is_ok())
        .collect()
}

//! The store's objects compiled: the one place where the cluster's objects meet
//! `sniway_compile`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use serde_json::Value;
use sniway_compile::{CompileOptions, Compiled, LoadOptions, Source};

use crate::kinds;
use crate::store::Store;

/// How to compile a snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    /// Address for Gateways without an IPAddress in `spec.addresses`.
    pub default_bind: IpAddr,
    /// Serve only Gateways of this class (`None`: every Gateway).
    pub gateway_class: Option<String>,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions { default_bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED), gateway_class: None }
    }
}

/// Loads and compiles every stored object. An object the loader rejects is left out (with a
/// warning naming it and why) instead of failing the whole snapshot: in a cluster, one bad
/// object must not stop the others from being served.
pub fn compile_snapshot(store: &Store, opts: &SnapshotOptions) -> Compiled {
    let now = sniway_proxy::access_log::rfc3339(SystemTime::now(), false);
    // One source per object, named after it, so a load error names the object to leave out.
    let mut sources: Vec<Source> = store
        .objects()
        // ListenerSets are not read by today's loader; skipping them keeps its warnings quiet.
        .filter(|(k, _)| k.kind != kinds::LISTENER_SET.kind)
        .filter_map(|(k, v)| {
            let text = serde_json::to_string(&strip(v)).ok()?;
            Some(Source { name: format!("{} {}", k.kind, k.path()), text })
        })
        .collect();
    let load_opts = LoadOptions::default();
    let mut dropped: Vec<String> = Vec::new();
    let loaded = loop {
        match sniway_compile::load(&sources, &load_opts) {
            Ok(l) => break l,
            Err(e) => {
                let bad: BTreeSet<&str> = e.errors.iter().map(|d| d.source.as_str()).collect();
                dropped.extend(e.errors.iter().map(|d| format!("{d}; object ignored")));
                let before = sources.len();
                sources.retain(|s| !bad.contains(s.name.as_str()));
                if sources.len() == before {
                    // Errors not tied to a source: nothing more to leave out.
                    sources.clear();
                }
            }
        }
    };
    let copts = CompileOptions {
        default_bind: opts.default_bind,
        gateway_class: opts.gateway_class.clone(),
        now,
    };
    let mut compiled = sniway_compile::compile(&loaded.resources, &copts);
    let mut warnings = dropped;
    warnings.extend(loaded.warnings);
    warnings.append(&mut compiled.warnings);
    compiled.warnings = warnings;
    compiled
}

/// What the loader reads: the object without `status` (ours to compute).
fn strip(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    v
}

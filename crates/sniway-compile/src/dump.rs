//! A readable summary of a routing table, for `check` output, golden files and `/routes`.

use serde_json::{Value, json};
use sniway_model::{Backend, ListenerMode, ListenerSettings, RoutingTable};

/// Per socket, listeners (most specific first) with hostname and mode (for Terminate, each
/// certificate's source and DNS names, first = default; never key material) and the settings
/// policies gave it (`settings`, only when any is set); per listener,
/// routes (most specific first) with hostname and backends (weight, then endpoints, DNS target
/// or the reason it is invalid).
pub fn table_summary(table: &RoutingTable) -> Value {
    let sockets: Vec<Value> = table
        .sockets
        .iter()
        .map(|s| {
            let listeners: Vec<Value> = s
                .listeners
                .entries()
                .into_iter()
                .map(|(host, l)| {
                    let routes: Vec<Value> = l
                        .routes
                        .entries()
                        .into_iter()
                        .map(|(host, r)| {
                            let backends: Vec<Value> = r
                                .backends
                                .iter()
                                .map(|b| {
                                    let mut v =
                                        json!({ "name": b.backend.name(), "weight": b.weight });
                                    match &b.backend {
                                        Backend::Endpoints { addrs, .. } => {
                                            let a: Vec<String> =
                                                addrs.iter().map(ToString::to_string).collect();
                                            v["endpoints"] = json!(a);
                                        }
                                        Backend::Dns { host, port, .. } => {
                                            v["dns"] = json!(format!("{host}:{port}"));
                                        }
                                        Backend::Invalid { reason, .. } => {
                                            v["invalid"] = json!(reason);
                                        }
                                    }
                                    v
                                })
                                .collect();
                            json!({
                                "hostname": host.map_or("*".to_string(), |h| h.to_string()),
                                "route": r.id.to_string(),
                                "backends": backends,
                            })
                        })
                        .collect();
                    let mut v = json!({
                        "hostname": host.map_or("*".to_string(), |h| h.to_string()),
                        "listener": l.id.to_string(),
                        "mode": l.mode.name(),
                    });
                    if let ListenerMode::Terminate(t) = &l.mode {
                        let certs: Vec<Value> = t
                            .certificates
                            .load()
                            .0
                            .iter()
                            .map(|c| {
                                let names: Vec<String> =
                                    c.dns_names.iter().map(ToString::to_string).collect();
                                json!({ "source": c.source, "dnsNames": names })
                            })
                            .collect();
                        v["certificates"] = json!(certs);
                    }
                    if l.settings != ListenerSettings::default() {
                        // Plain data with string keys: serializing cannot fail.
                        v["settings"] = serde_json::to_value(&l.settings).unwrap_or(Value::Null);
                    }
                    v["routes"] = json!(routes);
                    v
                })
                .collect();
            json!({ "address": s.addr.to_string(), "listeners": listeners })
        })
        .collect();
    Value::Array(sockets)
}

//! A readable summary of a routing table, for `check` output, golden files and `/routes`.

use serde_json::{Value, json};
use sniway_model::{Backend, BackendSettings, ListenerMode, ListenerSettings, Route, RoutingTable};

/// Per socket, listeners (most specific first) with hostname and mode (for Terminate, each
/// certificate's source and DNS names, first = default; never key material) and the settings
/// policies gave it (`settings`, only when any is set); per listener,
/// routes (most specific first) with hostname and backends (weight, then endpoints, DNS target
/// or the reason it is invalid, and the `settings` of its BackendPolicy when any is set; never
/// CA certificates, only where they came from); a listener's default routes (`defaults.noSni`,
/// `defaults.noMatch`) as routes.
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
                            json!({
                                "hostname": host.map_or("*".to_string(), |h| h.to_string()),
                                "route": r.id.to_string(),
                                "backends": backends(r),
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
                    for (key, d) in
                        [("noSni", &l.defaults.no_sni), ("noMatch", &l.defaults.no_match)]
                    {
                        if let Some(r) = d {
                            v["defaults"][key] =
                                json!({ "route": r.id.to_string(), "backends": backends(r) });
                        }
                    }
                    v
                })
                .collect();
            json!({ "address": s.addr.to_string(), "listeners": listeners })
        })
        .collect();
    Value::Array(sockets)
}

fn backends(r: &Route) -> Vec<Value> {
    r.backends
        .iter()
        .map(|b| {
            let mut v = json!({ "name": b.backend.name(), "weight": b.weight });
            match &b.backend {
                Backend::Endpoints { addrs, .. } => {
                    let a: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                    v["endpoints"] = json!(a);
                }
                Backend::Dns { host, port, .. } => {
                    v["dns"] = json!(format!("{host}:{port}"));
                }
                Backend::Invalid { reason, .. } => {
                    v["invalid"] = json!(reason);
                }
            }
            if *b.settings != BackendSettings::default() {
                // Plain data with string keys: serializing cannot fail.
                v["settings"] = serde_json::to_value(&*b.settings).unwrap_or(Value::Null);
            }
            v
        })
        .collect()
}

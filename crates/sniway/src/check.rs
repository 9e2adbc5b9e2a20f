//! `sniway check`: what the gateway would serve and the status it would write, as a Kubernetes
//! `List` printed like `kubectl get -o yaml`, or as tables like `kubectl get -o wide`.
//!
//! Before printing, `check` tries to bind every socket of the table (and closes it at once), so
//! a port another process holds shows as `PortUnavailable`, as `run` would report it.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;
use sniway_compile::Compiled;
use sniway_model::Backend;

use crate::cli::{CheckArgs, Format};

/// Prints every Gateway, TLSRoute, ListenerPolicy and BackendPolicy with its status. Exits 0 whenever the
/// input loaded, whatever the conditions say; a load error is reported and exits non-zero.
pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let mut compiled = crate::manifests::compile(&args.input)?;
    if !args.no_bind_check {
        let failures = bind_failures(&compiled);
        sniway_compile::apply_bind_failures(&mut compiled, &failures);
    }
    let text = match args.output {
        Format::Json => serde_json::to_string_pretty(&compiled.status_list())? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(&compiled.status_list())?,
        Format::Wide => wide(&compiled),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Tries to bind each socket of the table, closing it at once; the ones that fail, with the
/// OS error.
fn bind_failures(compiled: &Compiled) -> Vec<(SocketAddr, String)> {
    compiled
        .table
        .sockets
        .iter()
        .filter_map(|s| TcpListener::bind(s.addr).err().map(|e| (s.addr, e.to_string())))
        .collect()
}

/// Aligns rows into columns as `kubectl get` does: each column as wide as its widest cell,
/// three spaces between columns, no trailing spaces.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = header.iter().map(|h| (*h).to_string()).collect();
    for r in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            line.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `True`, or `False(Reason)`, for the condition of `type_`; `Unknown` when absent.
fn condition(conditions: &Value, type_: &str) -> String {
    let found = conditions.as_array().and_then(|cs| cs.iter().find(|c| c["type"] == type_));
    match found {
        None => "Unknown".into(),
        Some(c) if c["status"] == "True" => "True".into(),
        Some(c) => format!("{}({})", text(&c["status"]), text(&c["reason"])),
    }
}

fn or_none(items: Vec<String>) -> String {
    if items.is_empty() { "<none>".into() } else { items.join(",") }
}

/// Every Gateway, TLSRoute, ListenerPolicy and BackendPolicy as tables, as `kubectl get -o wide`
/// shows them (BackendPolicies with the ancestor of each status entry: the Gateways using the
/// target, or the target itself).
/// Route backends are those the routing table resolved: `name(weight)=ip:port,...` (or the DNS
/// target, or `invalid:Reason`), backends separated by `;`.
pub fn wide(compiled: &Compiled) -> String {
    let mut sections = Vec::new();

    let gateways: Vec<Vec<String>> = compiled
        .gateways
        .iter()
        .map(|g| {
            let v = g.to_value();
            let st = &v["status"];
            let addresses = st["addresses"]
                .as_array()
                .map(|a| a.iter().map(|a| text(&a["value"]).to_string()).collect())
                .unwrap_or_default();
            let listeners = v["spec"]["listeners"]
                .as_array()
                .map(|ls| {
                    ls.iter()
                        .map(|l| {
                            let name = text(&l["name"]);
                            let mode = match text(&l["protocol"]) {
                                "TLS" => l["tls"]["mode"].as_str().unwrap_or("Terminate"),
                                other => other,
                            };
                            let conds = st["listeners"]
                                .as_array()
                                .and_then(|s| s.iter().find(|s| s["name"] == name))
                                .map(|s| &s["conditions"]);
                            let state = match conds {
                                Some(c) => format!(
                                    "[Accepted={},Programmed={}]",
                                    condition(c, "Accepted"),
                                    condition(c, "Programmed")
                                ),
                                None => String::new(),
                            };
                            format!("{name}:{}/{mode}{state}", l["port"])
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                text(&v["metadata"]["namespace"]).to_string(),
                text(&v["metadata"]["name"]).to_string(),
                text(&v["spec"]["gatewayClassName"]).to_string(),
                or_none(addresses),
                condition(&st["conditions"], "Programmed"),
                or_none(listeners),
            ]
        })
        .collect();
    if !gateways.is_empty() {
        sections.push(columns(
            &["NAMESPACE", "NAME", "CLASS", "ADDRESS", "PROGRAMMED", "LISTENERS"],
            &gateways,
        ));
    }

    // Resolved backends per route (`namespace/name`), from the table, in rule order.
    let mut backends: BTreeMap<String, BTreeMap<usize, Vec<String>>> = BTreeMap::new();
    for s in &compiled.table.sockets {
        for (_, l) in s.listeners.entries() {
            for (_, r) in l.routes.entries() {
                let key = format!("{}/{}", r.id.namespace, r.id.name);
                backends.entry(key).or_default().entry(r.id.rule).or_insert_with(|| {
                    r.backends
                        .iter()
                        .map(|b| {
                            let to = match &b.backend {
                                Backend::Endpoints { addrs, .. } if addrs.is_empty() => {
                                    "<none>".to_string()
                                }
                                Backend::Endpoints { addrs, .. } => addrs
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(","),
                                Backend::Dns { host, port, .. } => format!("{host}:{port}"),
                                Backend::Invalid { reason, .. } => format!("invalid:{reason}"),
                            };
                            format!("{}({})={to}", b.backend.name(), b.weight)
                        })
                        .collect()
                });
            }
        }
    }
    let routes: Vec<Vec<String>> = compiled
        .routes
        .iter()
        .map(|r| {
            let v = r.to_value();
            let ns = text(&v["metadata"]["namespace"]);
            let hostnames = v["spec"]["hostnames"]
                .as_array()
                .map(|h| h.iter().map(|h| text(h).to_string()).collect::<Vec<_>>())
                .filter(|h| !h.is_empty())
                .map_or_else(|| "*".to_string(), |h| h.join(","));
            let parents = v["status"]["parents"].as_array().cloned().unwrap_or_default();
            let names = parents
                .iter()
                .map(|p| {
                    let p = &p["parentRef"];
                    let mut s =
                        format!("{}/{}", p["namespace"].as_str().unwrap_or(ns), text(&p["name"]));
                    if let Some(section) = p["sectionName"].as_str() {
                        s = format!("{s}/{section}");
                    }
                    if let Some(port) = p["port"].as_i64() {
                        s = format!("{s}:{port}");
                    }
                    s
                })
                .collect();
            let per_parent =
                |t: &str| or_none(parents.iter().map(|p| condition(&p["conditions"], t)).collect());
            let resolved: Vec<String> = backends
                .get(&r.key)
                .map(|rules| rules.values().flatten().cloned().collect())
                .unwrap_or_default();
            vec![
                ns.to_string(),
                text(&v["metadata"]["name"]).to_string(),
                hostnames,
                or_none(names),
                per_parent("Accepted"),
                per_parent("ResolvedRefs"),
                if resolved.is_empty() { "<none>".into() } else { resolved.join(";") },
            ]
        })
        .collect();
    if !routes.is_empty() {
        sections.push(columns(
            &["NAMESPACE", "NAME", "HOSTNAMES", "PARENTS", "ACCEPTED", "RESOLVED", "BACKENDS"],
            &routes,
        ));
    }

    let policies = policy_rows(&compiled.policies, false);
    if !policies.is_empty() {
        sections.push(columns(&["NAMESPACE", "NAME", "TARGETS", "ACCEPTED"], &policies));
    }
    let backend_policies = policy_rows(&compiled.backend_policies, true);
    if !backend_policies.is_empty() {
        sections.push(columns(
            &["NAMESPACE", "NAME", "TARGETS", "ANCESTORS", "ACCEPTED"],
            &backend_policies,
        ));
    }

    if sections.is_empty() {
        return "No resources found.\n".into();
    }
    sections.join("\n")
}

/// One row per policy: namespace, name, targets (`Kind/name[/section]`), with `ancestors` the
/// ancestor of each status entry (`Kind/namespace/name`), and the `Accepted` condition of each
/// entry (`True(Accepted)`, `False(Reason)`).
fn policy_rows(
    policies: &[sniway_compile::status::ObjectStatus<sniway_compile::policy::PolicyStatus>],
    ancestors: bool,
) -> Vec<Vec<String>> {
    policies
        .iter()
        .map(|p| {
            let v = p.to_value();
            let targets = v["spec"]["targetRefs"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .map(|t| match t["sectionName"].as_str() {
                            Some(s) => format!("{}/{}/{s}", text(&t["kind"]), text(&t["name"])),
                            None => format!("{}/{}", text(&t["kind"]), text(&t["name"])),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let entries = v["status"]["ancestors"].as_array().cloned().unwrap_or_default();
            let accepted = entries
                .iter()
                .map(|a| {
                    let c = a["conditions"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|c| c["type"] == "Accepted"));
                    c.map_or("Unknown".to_string(), |c| {
                        format!("{}({})", text(&c["status"]), text(&c["reason"]))
                    })
                })
                .collect();
            let mut row = vec![
                text(&v["metadata"]["namespace"]).to_string(),
                text(&v["metadata"]["name"]).to_string(),
                or_none(targets),
            ];
            if ancestors {
                let names = entries
                    .iter()
                    .map(|a| {
                        let r = &a["ancestorRef"];
                        format!(
                            "{}/{}/{}",
                            text(&r["kind"]),
                            text(&r["namespace"]),
                            text(&r["name"])
                        )
                    })
                    .collect();
                row.push(or_none(names));
            }
            row.push(or_none(accepted));
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: sniway
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners:
  - {name: tls, protocol: TLS, port: 8443, tls: {mode: Passthrough}}
  - {name: web, protocol: HTTP, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: foo}
spec:
  parentRefs: [{name: gw, sectionName: tls}]
  hostnames: [foo.example.com, bar.example.com]
  rules:
  - backendRefs: [{name: foo, port: 443, weight: 3}, {name: gone, port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: foo}
spec:
  clusterIP: 10.0.0.1
  ports: [{port: 443}]
---
apiVersion: sniway.io/v1alpha1
kind: ListenerPolicy
metadata: {name: edge}
spec:
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: tls}
  - {group: gateway.networking.k8s.io, kind: Gateway, name: nope}
  timeouts: {idle: 1m}
---
apiVersion: sniway.io/v1alpha1
kind: BackendPolicy
metadata: {name: foo-health}
spec:
  targetRefs:
  - {group: "", kind: Service, name: foo}
  - {group: "", kind: Service, name: missing}
  healthCheck: {active: {type: TCP}}
"#;

    fn compiled() -> Compiled {
        let loaded = sniway_compile::load(
            &[sniway_compile::Source { name: "t".into(), text: INPUT.into() }],
            &sniway_compile::LoadOptions::default(),
        )
        .unwrap();
        sniway_compile::compile(
            &loaded.resources,
            &sniway_compile::CompileOptions {
                default_bind: "0.0.0.0".parse().unwrap(),
                now: "2026-01-01T00:00:00Z".into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn wide_output_aligns_gateways_routes_and_policies_like_kubectl() {
        let got = wide(&compiled());
        let want = "\
NAMESPACE   NAME   CLASS    ADDRESS     PROGRAMMED   LISTENERS
default     gw     sniway   127.0.0.1   True         tls:8443/Passthrough[Accepted=True,Programmed=True],web:80/HTTP[Accepted=True,Programmed=True]

NAMESPACE   NAME   HOSTNAMES                         PARENTS          ACCEPTED   RESOLVED                 BACKENDS
default     foo    foo.example.com,bar.example.com   default/gw/tls   True       False(BackendNotFound)   default/foo:443(3)=10.0.0.1:443;default/gone:443(1)=invalid:BackendNotFound

NAMESPACE   NAME   TARGETS                       ACCEPTED
default     edge   Gateway/gw/tls,Gateway/nope   True(Accepted),False(TargetNotFound)

NAMESPACE   NAME         TARGETS                       ANCESTORS                                    ACCEPTED
default     foo-health   Service/foo,Service/missing   Gateway/default/gw,Service/default/missing   True(Accepted),False(TargetNotFound)
";
        assert_eq!(got, want, "got:\n{got}");
    }

    #[test]
    fn nothing_to_show_says_so() {
        let mut c = compiled();
        c.gateways.clear();
        c.routes.clear();
        c.policies.clear();
        c.backend_policies.clear();
        assert_eq!(wide(&c), "No resources found.\n");
    }
}

//! BackendPolicy attachment (GEP-713, direct policy attachment): the settings each Service or
//! ServiceImport ends up with, and each policy's status.
//!
//! - A targetRef `{group: "", kind: Service, name}` or `{group: multicluster.x-k8s.io, kind:
//!   ServiceImport, name}` in the policy's own namespace reaches that object; every backendRef
//!   that resolves to it (from any route, any listener default) carries the same settings, one
//!   shared `Arc`. `sectionName` is not supported (the target is `TargetNotFound`).
//! - Field by field, between policies targeting the same object, the older policy wins
//!   (`creationTimestamp`, then `namespace/name`); the other is `Conflicted` for the fields it
//!   lost, and the fields it did not lose still apply.
//! - Defaults: an unset field takes the data plane's default, except inside
//!   `healthCheck.active` and `healthCheck.passive`, filled here (interval 5s, timeout 1s,
//!   healthyThreshold 1, unhealthyThreshold 2; consecutiveFailures 3, ejectionTime 30s).
//! - CA certificates of a TLS check come from the `ca.crt` key of the ConfigMaps named by
//!   `caCertificateRefs`. A missing ConfigMap or key (or one without a PEM certificate) makes
//!   the policy `Accepted=False/Invalid`; the rest of the policy still applies, and the check
//!   keeps `verify` with the roots that were found, so with none every probe fails: a check
//!   never passes for want of its CA.
//! - Status follows the Gateway API convention for backend policies (BackendTLSPolicy): one
//!   `status.ancestors[]` entry per Gateway whose routes (or listener defaults) refer to a
//!   targeted object. A target no served Gateway uses yet, or one not found, gets one entry whose
//!   `ancestorRef` is the target itself, so the policy's status is never silently empty.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sniway_model::BackendSettings;
use sniway_model::settings::{
    ActiveHealthCheck, LoadBalancer, PassiveHealthCheck, Probe, ProxyProtocolVersion, Relay,
    WhenAllUnhealthy,
};

use crate::backend::TargetKey;
use crate::compile::age;
use crate::policy::{
    AncestorRef, BackendPolicySpec, CA_CERT_KEY, LoadBalancerType, MULTICLUSTER_GROUP,
    PolicyAncestorStatus, PolicyStatus, ProbeType, RelayMode, WhenAllUnhealthyMode,
};
use crate::resources::{Object, Resources};
use crate::status::ObjectStatus;
use crate::status::conditions::{CONTROLLER_NAME, Cond, reasons, types};

/// Default interval of an active check.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Default timeout of an active check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default passes that make an unhealthy endpoint healthy.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;
/// Default failures that make a healthy endpoint unhealthy.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;
/// Default failed connects that eject an endpoint.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;
/// Default first ejection time.
pub const DEFAULT_EJECTION_TIME: Duration = Duration::from_secs(30);

/// One field of a BackendPolicy: its path under `spec`, whether a policy sets it, and how to
/// copy it from a policy's own settings.
type Field =
    (&'static str, fn(&BackendPolicySpec) -> bool, fn(&BackendSettings, &mut BackendSettings));

const FIELDS: [Field; 10] = [
    ("fallback", |p| p.fallback.is_some(), |a, b| b.fallback = a.fallback),
    (
        "connectTimeout",
        |p| p.connect_timeout.is_some(),
        |a, b| b.connect_timeout = a.connect_timeout,
    ),
    (
        "failover.attempts",
        |p| p.failover.as_ref().and_then(|f| f.attempts).is_some(),
        |a, b| b.failover_attempts = a.failover_attempts,
    ),
    ("loadBalancer.type", |p| p.load_balancer.is_some(), |a, b| b.load_balancer = a.load_balancer),
    (
        "healthCheck.active",
        |p| p.health_check.as_ref().and_then(|h| h.active.as_ref()).is_some(),
        |a, b| b.active_health = a.active_health.clone(),
    ),
    (
        "healthCheck.passive",
        |p| p.health_check.as_ref().and_then(|h| h.passive.as_ref()).is_some(),
        |a, b| b.passive_health = a.passive_health,
    ),
    (
        "healthCheck.whenAllUnhealthy",
        |p| p.health_check.as_ref().and_then(|h| h.when_all_unhealthy).is_some(),
        |a, b| b.when_all_unhealthy = a.when_all_unhealthy,
    ),
    (
        "proxyProtocol.version",
        |p| p.proxy_protocol.is_some(),
        |a, b| b.proxy_protocol = a.proxy_protocol,
    ),
    (
        "maxConnections",
        |p| p.max_connections.is_some(),
        |a, b| b.max_connections = a.max_connections,
    ),
    ("relay", |p| p.relay.is_some(), |a, b| b.relay = a.relay),
];

/// The model's relay mode for a policy's.
pub(crate) fn relay(r: RelayMode) -> Relay {
    match r {
        RelayMode::Splice => Relay::Splice,
        RelayMode::Copy => Relay::Copy,
        RelayMode::Kernel => Relay::Kernel,
    }
}

/// What attachment produced before routes are resolved.
pub(crate) struct Attached<'r> {
    /// Settings per targeted object.
    pub settings: BTreeMap<TargetKey, Arc<BackendSettings>>,
    policies: Vec<&'r Object<BackendPolicySpec>>,
    /// Per policy, per targetRef: the object reached, or why none.
    targets: Vec<Vec<Result<TargetKey, String>>>,
    /// Per (policy, targetRef): fields lost, and to whom.
    lost: BTreeMap<(usize, usize), Vec<(&'static str, String)>>,
    /// (policy, targetRef) that won at least one field.
    won: BTreeSet<(usize, usize)>,
    /// Per policy: what makes it Invalid (CA references).
    invalid: Vec<Vec<String>>,
}

/// Resolves every BackendPolicy against the Services and ServiceImports of the snapshot.
pub(crate) fn attach(res: &Resources) -> Attached<'_> {
    let mut policies: Vec<&Object<BackendPolicySpec>> = res.backend_policies.iter().collect();
    policies
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    let config_maps: BTreeMap<(&str, &str), &Object<BTreeMap<String, String>>> = res
        .config_maps
        .iter()
        .map(|c| ((c.meta.namespace.as_str(), c.meta.name.as_str()), c))
        .collect();

    let mut own = Vec::new();
    let mut invalid = Vec::new();
    let mut targets = Vec::new();
    let mut hits: BTreeMap<TargetKey, Vec<(usize, usize)>> = BTreeMap::new();
    for (pi, p) in policies.iter().enumerate() {
        let (settings, problems) = own_settings(p, &config_maps);
        own.push(settings);
        invalid.push(problems);
        let per: Vec<Result<TargetKey, String>> =
            p.spec.target_refs.iter().map(|t| resolve_target(res, &p.meta.namespace, t)).collect();
        for (ti, t) in per.iter().enumerate() {
            if let Ok(key) = t {
                hits.entry(key.clone()).or_default().push((pi, ti));
            }
        }
        targets.push(per);
    }

    let mut settings = BTreeMap::new();
    let mut lost: BTreeMap<(usize, usize), Vec<(&'static str, String)>> = BTreeMap::new();
    let mut won = BTreeSet::new();
    for (key, hs) in hits {
        let mut s = BackendSettings::default();
        for (field, is_set, copy) in FIELDS {
            let mut setting: Vec<(usize, usize)> =
                hs.iter().copied().filter(|(pi, _)| is_set(&policies[*pi].spec)).collect();
            if setting.is_empty() {
                continue;
            }
            setting.sort_by(|a, b| age(&policies[a.0].meta, &policies[b.0].meta));
            let winner = setting[0];
            copy(&own[winner.0], &mut s);
            won.insert(winner);
            for h in &setting[1..] {
                if h.0 != winner.0 {
                    lost.entry(*h).or_default().push((field, policies[winner.0].meta.key()));
                }
            }
        }
        settings.insert(key, Arc::new(s));
    }
    Attached { settings, policies, targets, lost, won, invalid }
}

/// The object a targetRef reaches, or why none.
fn resolve_target(
    res: &Resources,
    ns: &str,
    t: &crate::policy::PolicyTargetReference,
) -> Result<TargetKey, String> {
    let kind = match (t.group.as_str(), t.kind.as_str()) {
        ("", "Service") => "Service",
        (MULTICLUSTER_GROUP, "ServiceImport") => "ServiceImport",
        _ => {
            return Err(format!(
                "target kind {} ({:?}) is not supported: a BackendPolicy targets Services \
                 (group \"\") or ServiceImports ({MULTICLUSTER_GROUP})",
                t.kind, t.group
            ));
        }
    };
    if let Some(s) = &t.section_name {
        return Err(format!(
            "sectionName {s:?}: a BackendPolicy applies to a whole {kind} (sectionName is not \
             supported)"
        ));
    }
    let exists = if kind == "Service" {
        res.services.iter().any(|s| s.meta.namespace == ns && s.meta.name == t.name)
    } else {
        res.service_imports.iter().any(|s| s.meta.namespace == ns && s.meta.name == t.name)
    };
    if !exists {
        return Err(format!("{kind} {ns}/{} is not in the input", t.name));
    }
    Ok((kind, ns.to_string(), t.name.clone()))
}

/// A policy's own settings, every field it sets, with defaults filled inside the health
/// checks; and what is wrong with its CA references.
fn own_settings(
    p: &Object<BackendPolicySpec>,
    config_maps: &BTreeMap<(&str, &str), &Object<BTreeMap<String, String>>>,
) -> (BackendSettings, Vec<String>) {
    let spec = &p.spec;
    let ns = p.meta.namespace.as_str();
    let mut problems = Vec::new();
    let hc = spec.health_check.as_ref();
    let active = hc.and_then(|h| h.active.as_ref()).map(|a| {
        let probe = match a.type_ {
            ProbeType::Tcp => Probe::Tcp,
            ProbeType::Tls => {
                let tls = a.tls.clone().unwrap_or_default();
                let mut ca_pem = Vec::new();
                let mut ca_sources = Vec::new();
                for r in &tls.ca_certificate_refs {
                    let source = format!("{ns}/{}", r.name);
                    match config_maps.get(&(ns, r.name.as_str())) {
                        None => problems.push(format!(
                            "spec.healthCheck.active.tls.caCertificateRefs: ConfigMap {source} \
                             not found"
                        )),
                        Some(cm) => match cm.spec.get(CA_CERT_KEY) {
                            None => problems.push(format!(
                                "spec.healthCheck.active.tls.caCertificateRefs: ConfigMap \
                                 {source} has no key {CA_CERT_KEY}"
                            )),
                            Some(pem) if !pem.contains("-----BEGIN CERTIFICATE-----") => problems
                                .push(format!(
                                    "spec.healthCheck.active.tls.caCertificateRefs: ConfigMap \
                                     {source} key {CA_CERT_KEY} holds no PEM certificate"
                                )),
                            Some(pem) => {
                                ca_pem.push(pem.clone());
                                ca_sources.push(source);
                            }
                        },
                    }
                }
                let verify = tls.verify.unwrap_or(false);
                if verify && !problems.is_empty() && ca_pem.is_empty() {
                    problems.push(
                        "the TLS check verifies against no CA certificate, so every probe \
                         fails until the references resolve"
                            .into(),
                    );
                }
                Probe::Tls { sni: tls.sni, verify, ca_pem, ca_sources }
            }
        };
        ActiveHealthCheck {
            probe,
            interval: a.interval.map_or(DEFAULT_INTERVAL, |d| d.0),
            timeout: a.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            healthy_threshold: a.healthy_threshold.unwrap_or(DEFAULT_HEALTHY_THRESHOLD),
            unhealthy_threshold: a.unhealthy_threshold.unwrap_or(DEFAULT_UNHEALTHY_THRESHOLD),
        }
    });
    let passive = hc.and_then(|h| h.passive.as_ref()).map(|p| PassiveHealthCheck {
        consecutive_failures: p.consecutive_failures.unwrap_or(DEFAULT_CONSECUTIVE_FAILURES),
        ejection_time: p.ejection_time.map_or(DEFAULT_EJECTION_TIME, |d| d.0),
    });
    let settings = BackendSettings {
        fallback: spec.fallback.unwrap_or(false),
        connect_timeout: spec.connect_timeout.map(|d| d.0),
        failover_attempts: spec.failover.as_ref().and_then(|f| f.attempts),
        load_balancer: spec.load_balancer.as_ref().map(|l| match l.type_ {
            LoadBalancerType::RoundRobin => LoadBalancer::RoundRobin,
            LoadBalancerType::LeastConnections => LoadBalancer::LeastConnections,
            LoadBalancerType::PowerOfTwoChoices => LoadBalancer::PowerOfTwoChoices,
        }),
        active_health: active,
        passive_health: passive,
        when_all_unhealthy: hc.and_then(|h| h.when_all_unhealthy).map(|w| match w {
            WhenAllUnhealthyMode::FailOpen => WhenAllUnhealthy::FailOpen,
            WhenAllUnhealthyMode::Refuse => WhenAllUnhealthy::Refuse,
        }),
        proxy_protocol: spec.proxy_protocol.as_ref().map(|pp| match pp.version {
            crate::policy::ProxyProtocolVersion::Off => ProxyProtocolVersion::Off,
            crate::policy::ProxyProtocolVersion::V1 => ProxyProtocolVersion::V1,
            crate::policy::ProxyProtocolVersion::V2 => ProxyProtocolVersion::V2,
        }),
        max_connections: spec.max_connections,
        relay: spec.relay.map(relay),
    };
    (settings, problems)
}

impl Attached<'_> {
    /// Every BackendPolicy's status, sorted by `namespace/name`. `users` maps each object to
    /// the served Gateways `(namespace, name)` whose routes or listener defaults refer to it.
    pub(crate) fn statuses(
        &self,
        users: &BTreeMap<TargetKey, BTreeSet<(String, String)>>,
        now: &str,
    ) -> Vec<ObjectStatus<PolicyStatus>> {
        self.policies
            .iter()
            .enumerate()
            .map(|(pi, p)| {
                let mut entries: Vec<(AncestorRef, Vec<Cond>)> = Vec::new();
                let mut add =
                    |a: AncestorRef, c: Cond| match entries.iter_mut().find(|(r, _)| *r == a) {
                        Some((_, cs)) => cs.push(c),
                        None => entries.push((a, vec![c])),
                    };
                for (ti, t) in p.spec.target_refs.iter().enumerate() {
                    let itself = AncestorRef {
                        group: t.group.clone(),
                        kind: t.kind.clone(),
                        namespace: Some(p.meta.namespace.clone()),
                        name: t.name.clone(),
                        section_name: t.section_name.clone(),
                    };
                    match &self.targets[pi][ti] {
                        Err(why) => add(
                            itself,
                            Cond::no(types::ACCEPTED, reasons::TARGET_NOT_FOUND, why.clone()),
                        ),
                        Ok(key) => {
                            let cond = self.condition(pi, ti, key);
                            match users.get(key).filter(|g| !g.is_empty()) {
                                None => add(itself, cond),
                                Some(gateways) => {
                                    for (ns, name) in gateways {
                                        let gw = AncestorRef {
                                            group: crate::GATEWAY_GROUP.into(),
                                            kind: "Gateway".into(),
                                            namespace: Some(ns.clone()),
                                            name: name.clone(),
                                            section_name: None,
                                        };
                                        add(gw, cond.clone());
                                    }
                                }
                            }
                        }
                    }
                }
                let ancestors = entries
                    .into_iter()
                    .take(16)
                    .map(|(ancestor_ref, conds)| PolicyAncestorStatus {
                        ancestor_ref,
                        controller_name: CONTROLLER_NAME.into(),
                        conditions: vec![merge(conds).stamp(p.meta.generation, now)],
                    })
                    .collect();
                ObjectStatus {
                    key: p.meta.key(),
                    object: p.raw.clone(),
                    status: Some(PolicyStatus { ancestors }),
                }
            })
            .collect()
    }

    /// `Accepted` of one found target.
    fn condition(&self, pi: usize, ti: usize, key: &TargetKey) -> Cond {
        let what = format!("{} {}/{}", key.0, key.1, key.2);
        let conflict = self.lost.get(&(pi, ti)).map(|lost| {
            let mut by_winner: Vec<(&str, Vec<&str>)> = Vec::new();
            for (field, winner) in lost {
                match by_winner.iter_mut().find(|(w, _)| *w == winner.as_str()) {
                    Some((_, fs)) => fs.push(field),
                    None => by_winner.push((winner, vec![field])),
                }
            }
            let parts: Vec<String> = by_winner
                .iter()
                .map(|(w, fs)| format!("{} taken by BackendPolicy {w}", fs.join(", ")))
                .collect();
            format!(
                "{what} is also targeted by an older policy: {}; {}",
                parts.join("; "),
                if self.won.contains(&(pi, ti)) {
                    "the fields not listed apply"
                } else {
                    "nothing of this policy applies to it"
                }
            )
        });
        if !self.invalid[pi].is_empty() {
            let mut msg = format!(
                "{}; the rest of the policy applies to {what}",
                self.invalid[pi].join("; ")
            );
            if let Some(c) = conflict {
                msg.push_str("; also ");
                msg.push_str(&c);
            }
            return Cond::no(types::ACCEPTED, reasons::INVALID, msg);
        }
        match conflict {
            Some(c) => Cond::no(types::ACCEPTED, reasons::CONFLICTED, c),
            None => Cond::yes(types::ACCEPTED, reasons::ACCEPTED, format!("applies to {what}")),
        }
    }
}

/// One ancestor's condition from those of the targets reaching it: the first False one with
/// every False message, else True with every message.
fn merge(conds: Vec<Cond>) -> Cond {
    let mut conds = conds;
    conds.dedup();
    let bad: Vec<&Cond> = conds.iter().filter(|c| c.status == "False").collect();
    let pick: Vec<&Cond> = if bad.is_empty() { conds.iter().collect() } else { bad };
    let msgs: Vec<&str> = pick.iter().map(|c| c.message.as_str()).collect();
    Cond { message: msgs.join("; "), ..pick[0].clone() }
}

//! A data plane per Gateway: the `ServiceAccount`, `Deployment`, `Service` and
//! `PodDisruptionBudget` that serve one Gateway's listeners, built as pure values from the
//! Gateway object ([`desired`]), written by server-side apply ([`apply`]) and deleted once their
//! Gateway is gone ([`prune`]).
//!
//! This follows GEP-1762 (in-cluster Gateway deployments,
//! <https://gateway-api.sigs.k8s.io/geps/gep-1762/>): the objects live in the Gateway's
//! namespace, carry the `gateway.networking.k8s.io/gateway-name` label, are named
//! `<NAME>-<CLASS>` (here `<NAME>-sniway`, whatever the class, so that a Gateway moving between
//! sniway classes keeps its objects), and carry `spec.infrastructure.labels` and `annotations`.
//! The Gateway owns them (`ownerReferences`), so the garbage collector deletes them with it.
//!
//! Infrastructure labels also go on the pod template, so changing them rolls the pods.
//!
//! The data plane pods read the Gateway API objects, Services, EndpointSlices, Namespaces,
//! ListenerPolicies and Secrets of every namespace: one cluster-scoped ClusterRoleBinding,
//! [`DATAPLANE_BINDING`], binds the read-only ClusterRole [`DATAPLANE_ROLE`] (shipped in
//! `deploy/dataplane-rbac.yaml`) to every provisioned ServiceAccount ([`dataplane_binding`],
//! [`apply_dataplane_binding`]). A cluster-scoped object cannot be owned by a namespaced
//! Gateway, so the controller keeps its subjects to the live data planes itself.

use sniway_compile::names::{is_dns1035_label, is_label_value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle,
    LifecycleHandler, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, SleepAction, Sysctl,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Field manager of every server-side apply the controller makes: its controller name.
pub const FIELD_MANAGER: &str = sniway_compile::status::conditions::CONTROLLER_NAME;
/// `app.kubernetes.io/name` (Kubernetes recommended labels,
/// <https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/>).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the provisioned objects' name, one per Gateway.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`: [`prune`] lists by it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`NAME_LABEL`] and [`MANAGED_BY_LABEL`].
pub const APP: &str = "sniway";
/// The Gateway's name (GEP-1762: MUST), or its hashed form when longer than a label value.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The Gateway's class (GEP-1762: SHOULD), hashed like [`GATEWAY_NAME_LABEL`].
pub const GATEWAY_CLASS_LABEL: &str = "gateway.networking.k8s.io/gateway-class-name";
/// The data plane container's name.
pub const CONTAINER: &str = "dataplane";
/// Name of the admin port on the data plane container.
pub const ADMIN_PORT_NAME: &str = "admin";

/// The ClusterRole (`deploy/dataplane-rbac.yaml`) granting a data plane its reads: get, list and watch on
/// every kind of `kinds::WATCHED` and on `kinds::SECRET` and `kinds::CONFIG_MAP` (each watched by
/// name).
pub const DATAPLANE_ROLE: &str = "sniway-dataplane";
/// The ClusterRoleBinding of [`DATAPLANE_ROLE`] to every provisioned ServiceAccount, the only
/// ClusterRoleBinding the controller may write (`deploy/rbac.yaml` names it in `resourceNames`).
pub const DATAPLANE_BINDING: &str = "sniway-dataplane";

/// Suffix of every provisioned object's name (`<NAME>-<CLASS>` of GEP-1762 for the class
/// `sniway`).
const SUFFIX: &str = "-sniway";
/// Hex digits of SHA-256 in hashed names: 40 bits.
const HASH_LEN: usize = 10;
/// Longest DNS-1035 label, label value, and Service port name.
const MAX_LABEL: usize = 63;

/// How the Service exposes the data plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    /// An external load balancer (the Gateway's address comes from its ingress).
    #[default]
    LoadBalancer,
    /// A cluster-internal address only.
    ClusterIP,
    /// A port on every node.
    NodePort,
}

impl ServiceType {
    /// The `spec.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
        }
    }
}

impl std::str::FromStr for ServiceType {
    type Err = String;

    /// `LoadBalancer`, `ClusterIP` or `NodePort`, in any case (for a command-line flag).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ServiceType::LoadBalancer, ServiceType::ClusterIP, ServiceType::NodePort]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("`{s}` is not LoadBalancer, ClusterIP or NodePort"))
    }
}

/// What the controller's flags say about every data plane it provisions.
#[derive(Clone, Debug, PartialEq)]
pub struct ProvisionOptions {
    /// Container image of the data plane (the sniway binary).
    pub image: String,
    /// `imagePullPolicy` (default: the API server's, `Always` for `:latest`, else
    /// `IfNotPresent`).
    pub image_pull_policy: Option<String>,
    /// The Service's type.
    pub service_type: ServiceType,
    /// Replicas of the Deployment; `None` leaves `spec.replicas` to a HorizontalPodAutoscaler
    /// (server-side apply then never resets it).
    pub replicas: Option<i32>,
    /// Extra flags passed to `sniway dataplane` after the ones set here.
    pub dataplane_args: Vec<String>,
    /// Port of the data plane's admin endpoint (probes, metrics); no listener may use it.
    pub admin_port: u16,
    /// How long live connections may finish after SIGTERM (`--drain-timeout`).
    pub drain_timeout: Duration,
    /// How long a terminating pod keeps serving before draining, so that the endpoints
    /// controller and the load balancers stop sending it new connections first (a `preStop`
    /// sleep; Kubernetes 1.30+).
    pub pre_stop_delay: Duration,
    /// CPU request of the data plane container.
    pub cpu_request: String,
    /// Memory request of the data plane container.
    pub memory_request: String,
    /// Memory limit of the data plane container (none by default).
    pub memory_limit: Option<String>,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        ProvisionOptions {
            image: "ghcr.io/sniway/sniway:latest".to_string(),
            image_pull_policy: None,
            service_type: ServiceType::LoadBalancer,
            replicas: Some(1),
            dataplane_args: Vec::new(),
            admin_port: 9901,
            drain_timeout: Duration::from_secs(30),
            pre_stop_delay: Duration::from_secs(5),
            cpu_request: "100m".to_string(),
            memory_request: "64Mi".to_string(),
            memory_limit: None,
        }
    }
}

/// The objects that serve one Gateway, as they should be.
#[derive(Clone, Debug, PartialEq)]
pub struct Provisioned {
    /// The Gateway's namespace, where every object lives.
    pub namespace: String,
    /// The Gateway's `metadata.uid`, the owner of every object.
    pub gateway_uid: String,
    /// The pods' identity.
    pub service_account: ServiceAccount,
    /// The data plane pods.
    pub deployment: Deployment,
    /// The address the Gateway is reached at.
    pub service: Service,
    /// Limits voluntary evictions: one pod at a time, or all but one with several replicas.
    pub pod_disruption_budget: PodDisruptionBudget,
}

impl Provisioned {
    /// The data plane's ServiceAccount as (namespace, name), a subject of [`dataplane_binding`].
    pub fn service_account_ref(&self) -> (String, String) {
        let name = self.service_account.metadata.name.clone().unwrap_or_default();
        (self.namespace.clone(), name)
    }
}

/// Why no objects can be built for a Gateway.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProvisionError {
    /// A field the objects need is absent or not a string.
    #[error("the Gateway has no {0}")]
    Missing(&'static str),
    /// A listener's port is absent or outside 1..=65535.
    #[error("listener `{listener}` has no port in 1..=65535")]
    BadPort {
        /// The listener's name.
        listener: String,
    },
    /// No listener is served over TCP, and a Service needs at least one port.
    #[error("the Gateway has no TCP listener to expose")]
    NoPorts,
    /// A listener uses the admin endpoint's port.
    #[error("listener `{listener}` uses port {port}, the data plane's admin port")]
    AdminPortClash {
        /// The listener's name.
        listener: String,
        /// The port.
        port: u16,
    },
}

/// One port of the Service, from the first listener (in order) that uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ListenerPort {
    listener: String,
    port: u16,
}

/// The objects serving `gateway` (its raw JSON object, as the API server returns it).
pub fn desired(gateway: &Value, opts: &ProvisionOptions) -> Result<Provisioned, ProvisionError> {
    desired_with(gateway, &[], opts)
}

/// The objects serving `gateway` and the listeners of the ListenerSets attached to it (the
/// caller passes only the accepted ones); their ports are opened after the Gateway's own.
pub fn desired_with(
    gateway: &Value,
    listener_sets: &[&Value],
    opts: &ProvisionOptions,
) -> Result<Provisioned, ProvisionError> {
    let gw_name = str_at(gateway, &["metadata", "name"]).ok_or(ProvisionError::Missing("name"))?;
    let namespace =
        str_at(gateway, &["metadata", "namespace"]).ok_or(ProvisionError::Missing("namespace"))?;
    let uid = str_at(gateway, &["metadata", "uid"]).ok_or(ProvisionError::Missing("uid"))?;
    let class = str_at(gateway, &["spec", "gatewayClassName"]);

    let mut ports = listener_ports(gateway)?;
    for set in listener_sets {
        for p in listener_ports(set)? {
            if ports.iter().all(|q| q.port != p.port) {
                ports.push(p);
            }
        }
    }
    if ports.is_empty() {
        return Err(ProvisionError::NoPorts);
    }
    if let Some(p) = ports.iter().find(|p| p.port == opts.admin_port) {
        return Err(ProvisionError::AdminPortClash { listener: p.listener.clone(), port: p.port });
    }

    let name = object_name(gw_name);
    let selector = BTreeMap::from([
        (NAME_LABEL.to_string(), APP.to_string()),
        (INSTANCE_LABEL.to_string(), name.clone()),
    ]);
    let mut labels = string_map(gateway, &["spec", "infrastructure", "labels"]);
    labels.extend(selector.clone());
    labels.insert(MANAGED_BY_LABEL.to_string(), APP.to_string());
    labels.insert(COMPONENT_LABEL.to_string(), CONTAINER.to_string());
    labels.insert(GATEWAY_NAME_LABEL.to_string(), label_value(gw_name));
    if let Some(class) = class {
        labels.insert(GATEWAY_CLASS_LABEL.to_string(), label_value(class));
    }
    let annotations = string_map(gateway, &["spec", "infrastructure", "annotations"]);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels.clone()),
        annotations: (!annotations.is_empty()).then(|| annotations.clone()),
        owner_references: Some(vec![owner_reference(gw_name, uid)]),
        ..ObjectMeta::default()
    };

    let service_account = ServiceAccount { metadata: meta.clone(), ..ServiceAccount::default() };
    let deployment = deployment(
        meta.clone(),
        &selector,
        &labels,
        &annotations,
        &format!("{namespace}/{gw_name}"),
        &ports,
        opts,
    );
    let service = service(meta.clone(), &selector, &ports, &static_ips(gateway), opts);
    let pod_disruption_budget = pod_disruption_budget(meta, &selector, opts.replicas);
    Ok(Provisioned {
        namespace: namespace.to_string(),
        gateway_uid: uid.to_string(),
        service_account,
        deployment,
        service,
        pod_disruption_budget,
    })
}

/// The name of every object provisioned for the Gateway `gateway_name`: `<NAME>-sniway` when
/// that is an RFC 1035 label (what a Service name must be: at most 63 characters, lower-case
/// alphanumerics and `-`, starting with a letter), else a readable prefix of the name with dots
/// turned into dashes, a hash of the whole name, and the suffix. Stable, and distinct for
/// distinct Gateway names.
pub fn object_name(gateway_name: &str) -> String {
    let plain = format!("{gateway_name}{SUFFIX}");
    if is_dns1035_label(&plain) {
        return plain;
    }
    let room = MAX_LABEL - SUFFIX.len() - HASH_LEN - 1;
    let mut prefix: String = gateway_name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .skip_while(|c| !c.is_ascii_lowercase())
        .take(room)
        .collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    if prefix.is_empty() {
        prefix.push_str("gateway");
    }
    format!("{prefix}-{}{SUFFIX}", short_hash(gateway_name))
}

/// A label value naming `name` (a Gateway or GatewayClass name): the name itself when it fits
/// in 63 characters, else a prefix of it and a hash of the whole name. Label values admit
/// `[A-Za-z0-9._-]`, starting and ending with an alphanumeric, as DNS subdomains do.
pub fn label_value(name: &str) -> String {
    if is_label_value(name) {
        return name.to_string();
    }
    let mut prefix: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(MAX_LABEL - HASH_LEN - 1)
        .collect();
    while prefix.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        prefix.pop();
    }
    if prefix.is_empty() { short_hash(name) } else { format!("{prefix}-{}", short_hash(name)) }
}

/// The first [`HASH_LEN`] hex digits of SHA-256 of `s`.
fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(HASH_LEN);
    for b in digest.iter().take(HASH_LEN.div_ceil(2)) {
        out.push_str(&format!("{b:02x}"));
    }
    out.truncate(HASH_LEN);
    out
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// A map of strings at `path`; entries whose value is not a string are left out.
fn string_map(v: &Value, path: &[&str]) -> BTreeMap<String, String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// The distinct TCP ports of `object`'s `spec.listeners`, in order. Every protocol but `UDP`
/// runs over TCP.
fn listener_ports(object: &Value) -> Result<Vec<ListenerPort>, ProvisionError> {
    let mut out: Vec<ListenerPort> = Vec::new();
    let listeners = object.pointer("/spec/listeners").and_then(Value::as_array);
    for l in listeners.into_iter().flatten() {
        let name = l.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        if l.get("protocol").and_then(Value::as_str) == Some("UDP") {
            continue;
        }
        let port = l
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| ProvisionError::BadPort { listener: name.clone() })?;
        if out.iter().all(|p| p.port != port) {
            out.push(ListenerPort { listener: name, port });
        }
    }
    Ok(out)
}

/// The addresses of `spec.addresses` of type `IPAddress` (the default type) that parse as IPs.
/// Others are left to the compile step, which reports them in the Gateway's status.
fn static_ips(gateway: &Value) -> Vec<String> {
    let addresses = gateway.pointer("/spec/addresses").and_then(Value::as_array);
    addresses
        .into_iter()
        .flatten()
        .filter(|a| a.get("type").and_then(Value::as_str).unwrap_or("IPAddress") == "IPAddress")
        .filter_map(|a| a.get("value")?.as_str()?.parse::<IpAddr>().ok())
        .map(|ip| ip.to_string())
        .collect()
}

fn owner_reference(gateway_name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/v1", crate::kinds::GATEWAY_GROUP),
        kind: "Gateway".to_string(),
        name: gateway_name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `--drain-timeout`'s value, as `sniway`'s duration parser reads it.
fn duration_arg(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn secs_ceil(d: Duration) -> i64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn deployment(
    meta: ObjectMeta,
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    gateway: &str,
    ports: &[ListenerPort],
    opts: &ProvisionOptions,
) -> Deployment {
    let mut args = vec![
        "dataplane".to_string(),
        "--gateway".to_string(),
        gateway.to_string(),
        "--admin-address".to_string(),
        format!("0.0.0.0:{}", opts.admin_port),
        "--bind-address".to_string(),
        "0.0.0.0".to_string(),
        "--drain-timeout".to_string(),
        duration_arg(opts.drain_timeout),
    ];
    args.extend(opts.dataplane_args.iter().cloned());

    let mut container_ports: Vec<ContainerPort> = ports
        .iter()
        .map(|p| ContainerPort {
            container_port: i32::from(p.port),
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        })
        .collect();
    container_ports.push(ContainerPort {
        name: Some(ADMIN_PORT_NAME.to_string()),
        container_port: i32::from(opts.admin_port),
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    });
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut limits = BTreeMap::new();
    if let Some(m) = &opts.memory_limit {
        limits.insert("memory".to_string(), Quantity(m.clone()));
    }
    let container = Container {
        name: CONTAINER.to_string(),
        image: Some(opts.image.clone()),
        image_pull_policy: opts.image_pull_policy.clone(),
        args: Some(args),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(container_ports),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: secs_ceil(opts.pre_stop_delay) }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity(opts.cpu_request.clone())),
                ("memory".to_string(), Quantity(opts.memory_request.clone())),
            ])),
            limits: (!limits.is_empty()).then_some(limits),
            ..ResourceRequirements::default()
        }),
        security_context: Some(container_security_context()),
        ..Container::default()
    };
    // An unprivileged process may bind ports below 1024 only with this namespaced sysctl
    // ("safe" since Kubernetes 1.22): the added NET_BIND_SERVICE capability reaches a non-root
    // process's effective set on no common runtime, and `allowPrivilegeEscalation: false`
    // forbids file capabilities.
    let low_port = ports.iter().any(|p| p.port < 1024);
    let pod_security = PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        sysctls: low_port.then(|| {
            vec![Sysctl {
                name: "net.ipv4.ip_unprivileged_port_start".to_string(),
                value: "0".to_string(),
            }]
        }),
        ..PodSecurityContext::default()
    };
    let grace = secs_ceil(opts.pre_stop_delay) + secs_ceil(opts.drain_timeout) + 5;
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            annotations: (!annotations.is_empty()).then(|| annotations.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: meta.name.clone(),
            containers: vec![container],
            security_context: Some(pod_security),
            termination_grace_period_seconds: Some(grace),
            ..PodSpec::default()
        }),
    };
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: opts.replicas,
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            // A new pod is ready before an old one stops taking connections.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// Non-root, read-only root filesystem, no privilege escalation, no capability but
/// NET_BIND_SERVICE: what the Pod Security Standards' `restricted` profile admits
/// (<https://kubernetes.io/docs/concepts/security/pod-security-standards/>).
fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: Some(vec!["NET_BIND_SERVICE".to_string()]),
        }),
        ..SecurityContext::default()
    }
}

/// A Service port name (a DNS-1123 label, unique in the Service) for `listener`.
fn port_name(listener: &str, port: u16, taken: &BTreeSet<String>) -> String {
    let is_label = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_LABEL
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    let mut candidates = Vec::new();
    if is_label(listener) {
        candidates.push(listener.to_string());
    } else if !listener.is_empty() {
        let mut prefix: String = listener
            .chars()
            .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
            .take(MAX_LABEL - HASH_LEN - 1)
            .collect();
        while prefix.ends_with('-') {
            prefix.pop();
        }
        let hash = short_hash(listener);
        candidates.push(if prefix.is_empty() { hash } else { format!("{prefix}-{hash}") });
    }
    candidates.push(format!("tcp-{port}"));
    for c in &candidates {
        if !taken.contains(c) {
            return c.clone();
        }
    }
    (1u32..).map(|i| format!("tcp-{port}-{i}")).find(|c| !taken.contains(c)).unwrap_or_default()
}

fn service(
    meta: ObjectMeta,
    selector: &BTreeMap<String, String>,
    ports: &[ListenerPort],
    static_ips: &[String],
    opts: &ProvisionOptions,
) -> Service {
    let mut taken = BTreeSet::new();
    let service_ports = ports
        .iter()
        .map(|p| {
            let name = port_name(&p.listener, p.port, &taken);
            taken.insert(name.clone());
            ServicePort {
                name: Some(name),
                port: i32::from(p.port),
                target_port: Some(IntOrString::Int(i32::from(p.port))),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }
        })
        .collect();
    // GEP-1762: static addresses become the load balancer's requested IP; for the other types,
    // external IPs that kube-proxy routes to the Service (mutable, unlike `clusterIP`).
    let (load_balancer_ip, external_ips) = match opts.service_type {
        ServiceType::LoadBalancer => (static_ips.first().cloned(), None),
        _ => (None, (!static_ips.is_empty()).then(|| static_ips.to_vec())),
    };
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(opts.service_type.as_str().to_string()),
            selector: Some(selector.clone()),
            ports: Some(service_ports),
            load_balancer_ip,
            external_ips,
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn pod_disruption_budget(
    meta: ObjectMeta,
    selector: &BTreeMap<String, String>,
    replicas: Option<i32>,
) -> PodDisruptionBudget {
    let (min_available, max_unavailable) = match replicas {
        Some(n) if n > 1 => (Some(IntOrString::Int(1)), None),
        _ => (None, Some(IntOrString::Int(1))),
    };
    PodDisruptionBudget {
        metadata: meta,
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            }),
            min_available,
            max_unavailable,
            // A crash-looping pod never blocks a node drain.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
        }),
        ..PodDisruptionBudget::default()
    }
}

/// Gateway API address type of an IP (`status.addresses[].type`).
pub const IP_ADDRESS: &str = "IPAddress";
/// Gateway API address type of a host name.
pub const HOSTNAME: &str = "Hostname";

/// The addresses a Gateway served by `service` is reached at, as (type, value) for its
/// `status.addresses`: the load balancer's ingress IPs and host names, else the external IPs,
/// else the cluster IPs. Empty while none is assigned.
pub fn addresses(service: &Service) -> Vec<(&'static str, String)> {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let from_ingress: Vec<_> = ingress
        .into_iter()
        .flatten()
        .flat_map(|i| {
            i.ip.iter()
                .filter(|s| !s.is_empty())
                .map(|ip| (IP_ADDRESS, ip.clone()))
                .chain(i.hostname.iter().filter(|s| !s.is_empty()).map(|h| (HOSTNAME, h.clone())))
        })
        .collect();
    if !from_ingress.is_empty() {
        return from_ingress;
    }
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    let valid = |s: &&String| s.parse::<IpAddr>().is_ok();
    if let Some(ext) = spec.external_ips.as_ref().filter(|e| !e.is_empty()) {
        return ext.iter().filter(valid).map(|ip| (IP_ADDRESS, ip.clone())).collect();
    }
    let cluster: Vec<String> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.clone(),
        _ => spec.cluster_ip.iter().cloned().collect(),
    };
    cluster.iter().filter(valid).map(|ip| (IP_ADDRESS, ip.clone())).collect()
}

/// Whether at least one data plane pod is available.
pub fn available(deployment: &Deployment) -> bool {
    deployment.status.as_ref().and_then(|s| s.available_replicas).is_some_and(|n| n > 0)
}

/// Writes `p`'s objects by server-side apply, taking over any field another manager set
/// (`force`), and returns them as the API server stored them (the Service with its addresses,
/// the Deployment with its status).
pub async fn apply(
    client: &kube_client::Client,
    p: &Provisioned,
) -> Result<Provisioned, kube_client::Error> {
    let ns = p.namespace.as_str();
    Ok(Provisioned {
        namespace: p.namespace.clone(),
        gateway_uid: p.gateway_uid.clone(),
        service_account: apply_one(client, ns, &p.service_account).await?,
        service: apply_one(client, ns, &p.service).await?,
        deployment: apply_one(client, ns, &p.deployment).await?,
        pod_disruption_budget: apply_one(client, ns, &p.pod_disruption_budget).await?,
    })
}

async fn apply_one<K>(
    client: &kube_client::Client,
    namespace: &str,
    object: &K,
) -> Result<K, kube_client::Error>
where
    K: kube_client::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    use kube_client::api::{Api, Patch, PatchParams};
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await
}

/// The ClusterRoleBinding [`DATAPLANE_BINDING`] of the ClusterRole [`DATAPLANE_ROLE`] to the
/// ServiceAccounts `service_accounts`, given as (namespace, name): the subjects sorted and
/// deduplicated, so that the same set of data planes always gives the same object (and a
/// server-side apply of it changes nothing). With no ServiceAccount the binding has an empty
/// list of subjects: applied, it revokes the access of every data plane that had it.
pub fn dataplane_binding(service_accounts: &[(String, String)]) -> ClusterRoleBinding {
    let subjects: BTreeSet<&(String, String)> = service_accounts.iter().collect();
    let labels = BTreeMap::from([
        (NAME_LABEL.to_string(), APP.to_string()),
        (COMPONENT_LABEL.to_string(), CONTAINER.to_string()),
        (MANAGED_BY_LABEL.to_string(), APP.to_string()),
    ]);
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(DATAPLANE_BINDING.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "ClusterRole".to_string(),
            name: DATAPLANE_ROLE.to_string(),
        },
        subjects: Some(
            subjects
                .into_iter()
                .map(|(namespace, name)| Subject {
                    kind: "ServiceAccount".to_string(),
                    name: name.clone(),
                    namespace: Some(namespace.clone()),
                    ..Subject::default()
                })
                .collect(),
        ),
    }
}

/// Writes [`dataplane_binding`]`(service_accounts)` by server-side apply, taking over any field
/// another manager set (`force`), and returns it as the API server stored it. The list of
/// subjects is atomic: the one applied replaces the one stored, so pass every data plane's
/// ServiceAccount, not only a new one.
///
/// The API server lets the controller bind [`DATAPLANE_ROLE`] without the `bind` verb because
/// the controller's own ClusterRole holds every permission of that role (RBAC's
/// privilege-escalation prevention); `tests/deploy.rs` checks that it does. That check reads the
/// role's rules, so the apply fails while [`DATAPLANE_ROLE`] does not exist. Apply the
/// binding before a new data plane's Deployment, so that its pods can read when they start.
pub async fn apply_dataplane_binding(
    client: &kube_client::Client,
    service_accounts: &[(String, String)],
) -> Result<ClusterRoleBinding, kube_client::Error> {
    use kube_client::api::{Api, Patch, PatchParams};
    let binding = dataplane_binding(service_accounts);
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(DATAPLANE_BINDING, &params, &Patch::Apply(&binding)).await
}

/// One object [`prune`] deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pruned {
    /// Its kind.
    pub kind: &'static str,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// The uid of the Gateway that controls `meta`, if a Gateway does.
pub fn owning_gateway(meta: &ObjectMeta) -> Option<&str> {
    let group = format!("{}/", crate::kinds::GATEWAY_GROUP);
    meta.owner_references.iter().flatten().find_map(|o| {
        (o.controller == Some(true) && o.kind == "Gateway" && o.api_version.starts_with(&group))
            .then_some(o.uid.as_str())
    })
}

/// Whether [`prune`] deletes the object of `meta`: sniway provisioned it (label
/// `app.kubernetes.io/managed-by: sniway`) for a Gateway (its controlling owner) that is not in
/// `live_gateways`. An object no Gateway controls is left alone, whatever its labels.
pub fn orphaned(meta: &ObjectMeta, live_gateways: &BTreeSet<String>) -> bool {
    let ours = meta.labels.as_ref().and_then(|l| l.get(MANAGED_BY_LABEL)).is_some_and(|v| v == APP);
    ours && owning_gateway(meta).is_some_and(|uid| !live_gateways.contains(uid))
}

/// Deletes the [`orphaned`] objects of the kinds [`desired`] builds, in `namespace` or, with
/// `None`, in every namespace (after a restart the controller does not know where it once
/// provisioned). `live_gateways` holds the uids of the Gateways sniway serves: a Gateway deleted
/// or moved to another controller's class loses its data plane. (The garbage collector deletes
/// a deleted Gateway's objects too, through their owner reference.) Each delete is conditional
/// on the uid listed, so an object recreated meanwhile under the same name survives.
pub async fn prune(
    client: &kube_client::Client,
    namespace: Option<&str>,
    live_gateways: &BTreeSet<String>,
) -> Result<Vec<Pruned>, kube_client::Error> {
    let mut out = Vec::new();
    prune_kind::<ServiceAccount>(client, namespace, live_gateways, &mut out).await?;
    prune_kind::<Service>(client, namespace, live_gateways, &mut out).await?;
    prune_kind::<Deployment>(client, namespace, live_gateways, &mut out).await?;
    prune_kind::<PodDisruptionBudget>(client, namespace, live_gateways, &mut out).await?;
    Ok(out)
}

async fn prune_kind<K>(
    client: &kube_client::Client,
    namespace: Option<&str>,
    live: &BTreeSet<String>,
    out: &mut Vec<Pruned>,
) -> Result<(), kube_client::Error>
where
    K: kube_client::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + Debug
        + serde::de::DeserializeOwned,
{
    use kube_client::api::{Api, DeleteParams, ListParams, Preconditions};
    let list: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let lp = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={APP}"));
    for item in list.list_metadata(&lp).await?.items {
        let meta = &item.metadata;
        if !orphaned(meta, live) {
            continue;
        }
        let (Some(name), Some(ns)) = (meta.name.clone(), meta.namespace.clone()) else { continue };
        let dp = DeleteParams {
            preconditions: Some(Preconditions { uid: meta.uid.clone(), resource_version: None }),
            ..DeleteParams::background()
        };
        let api: Api<K> = Api::namespaced(client.clone(), &ns);
        match api.delete(&name, &dp).await {
            Ok(_) => {
                out.push(Pruned { kind: <K as k8s_openapi::Resource>::KIND, namespace: ns, name })
            }
            // Already gone, or replaced by a new object of the same name.
            Err(kube_client::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
    use serde_json::json;
    use sniway_compile::names::is_dns1123_subdomain;

    fn gateway(name: &str) -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": name, "namespace": "edge", "uid": "uid-1"},
            "spec": {
                "gatewayClassName": "sniway",
                "listeners": [
                    {"name": "tls", "port": 443, "protocol": "TLS"},
                    {"name": "tls-other", "port": 443, "protocol": "TLS"},
                    {"name": "admin-tls", "port": 8443, "protocol": "TLS"},
                ],
            },
        })
    }

    fn build(gw: &Value) -> Provisioned {
        desired(gw, &ProvisionOptions::default()).expect("provisionable")
    }

    fn metas(p: &Provisioned) -> Vec<(&'static str, &ObjectMeta)> {
        vec![
            ("ServiceAccount", &p.service_account.metadata),
            ("Deployment", &p.deployment.metadata),
            ("Service", &p.service.metadata),
            ("PodDisruptionBudget", &p.pod_disruption_budget.metadata),
        ]
    }

    fn template(p: &Provisioned) -> &PodTemplateSpec {
        &p.deployment.spec.as_ref().expect("spec").template
    }

    fn pod(p: &Provisioned) -> &PodSpec {
        template(p).spec.as_ref().expect("pod spec")
    }

    fn container(p: &Provisioned) -> &Container {
        &pod(p).containers[0]
    }

    fn long_name(tail: char) -> String {
        let mut n = "a.b-c.".repeat(43);
        n.truncate(252);
        n.push(tail);
        assert_eq!(n.len(), 253);
        assert!(is_dns1123_subdomain(&n), "the test's own name must be a valid Gateway name");
        n
    }

    #[test]
    fn a_short_gateway_name_gives_readable_object_names() {
        assert_eq!(object_name("edge"), "edge-sniway");
        assert_eq!(label_value("edge"), "edge");
        let p = build(&gateway("edge"));
        for (kind, meta) in metas(&p) {
            assert_eq!(meta.name.as_deref(), Some("edge-sniway"), "{kind}");
            assert_eq!(meta.namespace.as_deref(), Some("edge"), "{kind}");
        }
    }

    #[test]
    fn every_object_name_is_a_valid_service_name_whatever_the_gateway_name() {
        let names = [
            "edge".to_string(),
            "my.gateway.example".to_string(),
            "1st-gateway".to_string(),
            "9.9".to_string(),
            "a".repeat(56),
            "a".repeat(57),
            long_name('x'),
        ];
        for n in &names {
            let o = object_name(n);
            assert!(is_dns1035_label(&o), "{o:?} from {n:?}");
            assert!(is_dns1123_subdomain(&o), "{o:?} from {n:?}");
            assert_eq!(o, object_name(n), "stable for {n:?}");
            let l = label_value(n);
            assert!(is_label_value(&l) && !l.is_empty(), "{l:?} from {n:?}");
            assert_eq!(l, label_value(n), "stable for {n:?}");
        }
    }

    #[test]
    fn a_dotted_name_keeps_a_readable_prefix_and_gets_a_hash() {
        let o = object_name("my.gateway.example");
        assert!(o.starts_with("my-gateway-example-"), "{o}");
        assert!(o.ends_with(SUFFIX), "{o}");
        // A dotted name fits a label value as it is.
        assert_eq!(label_value("my.gateway.example"), "my.gateway.example");
    }

    #[test]
    fn distinct_gateway_names_give_distinct_object_names_and_label_values() {
        let names = [
            "a.b".to_string(),
            "a-b".to_string(),
            "a-b-sniway".to_string(),
            long_name('x'),
            long_name('y'),
            "a".repeat(63),
            "a".repeat(64),
        ];
        let objects: BTreeSet<String> = names.iter().map(|n| object_name(n)).collect();
        assert_eq!(objects.len(), names.len(), "{objects:?}");
        let labels: BTreeSet<String> = names.iter().map(|n| label_value(n)).collect();
        assert_eq!(labels.len(), names.len(), "{labels:?}");
    }

    #[test]
    fn a_253_character_gateway_is_provisioned_with_valid_names_and_labels() {
        let name = long_name('z');
        let p = build(&gateway(&name));
        for (kind, meta) in metas(&p) {
            let n = meta.name.as_deref().expect("name");
            assert!(is_dns1035_label(n), "{kind} {n}");
            for (k, v) in meta.labels.iter().flatten() {
                assert!(is_label_value(v), "{kind} label {k}={v}");
            }
            // The owner reference keeps the full name: the controller finds its objects by it.
            assert_eq!(meta.owner_references.as_ref().expect("owner")[0].name, name);
        }
        let gw_label = &p.service.metadata.labels.as_ref().expect("labels")[GATEWAY_NAME_LABEL];
        assert_eq!(gw_label, &label_value(&name));
        assert!(name.starts_with(gw_label.rsplit_once('-').expect("hashed").0));
        for port in p.service.spec.as_ref().expect("spec").ports.iter().flatten() {
            assert!(is_dns1035_label(port.name.as_deref().expect("port name")));
        }
    }

    #[test]
    fn every_object_and_the_pod_template_carry_the_labels_the_gateway_api_and_kubernetes_expect() {
        let p = build(&gateway("edge"));
        let mut all: Vec<(&str, &ObjectMeta)> = metas(&p);
        all.push(("pod template", template(&p).metadata.as_ref().expect("template metadata")));
        for (kind, meta) in all {
            let labels = meta.labels.as_ref().expect("labels");
            assert_eq!(labels[NAME_LABEL], "sniway", "{kind}");
            assert_eq!(labels[MANAGED_BY_LABEL], "sniway", "{kind}");
            assert_eq!(labels[INSTANCE_LABEL], "edge-sniway", "{kind}");
            assert_eq!(labels[GATEWAY_NAME_LABEL], "edge", "{kind}");
            assert_eq!(labels[GATEWAY_CLASS_LABEL], "sniway", "{kind}");
        }
    }

    #[test]
    fn the_selectors_match_the_pod_template_and_no_other_gateways_pods() {
        let p = build(&gateway("edge"));
        let other = build(&gateway("edge2"));
        let template_labels = template(&p).metadata.as_ref().and_then(|m| m.labels.as_ref());
        let template_labels = template_labels.expect("template labels");
        let other_labels = template(&other).metadata.as_ref().and_then(|m| m.labels.clone());
        let other_labels = other_labels.expect("other template labels");
        let selectors = [
            p.deployment.spec.as_ref().and_then(|s| s.selector.match_labels.clone()),
            p.service.spec.as_ref().and_then(|s| s.selector.clone()),
            p.pod_disruption_budget
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref()?.match_labels.clone()),
        ];
        for sel in selectors {
            let sel = sel.expect("selector");
            assert!(!sel.is_empty());
            assert!(sel.iter().all(|(k, v)| template_labels.get(k) == Some(v)), "{sel:?}");
            assert!(!sel.iter().all(|(k, v)| other_labels.get(k) == Some(v)), "{sel:?}");
        }
    }

    #[test]
    fn the_gateway_owns_every_object() {
        let p = build(&gateway("edge"));
        for (kind, meta) in metas(&p) {
            let owners = meta.owner_references.as_ref().expect("owners");
            assert_eq!(owners.len(), 1, "{kind}");
            let o = &owners[0];
            assert_eq!(o.api_version, "gateway.networking.k8s.io/v1");
            assert_eq!(o.kind, "Gateway");
            assert_eq!(o.name, "edge");
            assert_eq!(o.uid, "uid-1");
            assert_eq!(o.controller, Some(true));
            assert_eq!(o.block_owner_deletion, Some(true));
            assert_eq!(owning_gateway(meta), Some("uid-1"));
        }
        assert_eq!(p.gateway_uid, "uid-1");
        assert_eq!(p.namespace, "edge");
    }

    #[test]
    fn only_objects_provisioned_for_a_gateway_no_longer_served_are_orphaned() {
        let p = build(&gateway("edge"));
        let meta = &p.deployment.metadata;
        assert!(!orphaned(meta, &BTreeSet::from(["uid-1".to_string()])));
        assert!(orphaned(meta, &BTreeSet::from(["uid-2".to_string()])));
        assert!(orphaned(meta, &BTreeSet::new()));
        let mut unlabelled = meta.clone();
        unlabelled.labels.as_mut().expect("labels").remove(MANAGED_BY_LABEL);
        assert!(!orphaned(&unlabelled, &BTreeSet::new()));
        let mut unowned = meta.clone();
        unowned.owner_references = None;
        assert!(!orphaned(&unowned, &BTreeSet::new()));
    }

    #[test]
    fn an_object_owned_by_something_else_has_no_owning_gateway() {
        let meta = ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Gateway".into(),
                name: "x".into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        };
        assert_eq!(owning_gateway(&meta), None);
        assert_eq!(owning_gateway(&ObjectMeta::default()), None);
    }

    #[test]
    fn service_ports_follow_the_distinct_tcp_listener_ports() {
        let mut gw = gateway("edge");
        gw["spec"]["listeners"]
            .as_array_mut()
            .expect("listeners")
            .push(json!({"name": "dns", "port": 53, "protocol": "UDP"}));
        let p = build(&gw);
        let ports = p.service.spec.as_ref().and_then(|s| s.ports.clone()).expect("ports");
        let port = |name: &str, n: i32| ServicePort {
            name: Some(name.to_string()),
            port: n,
            target_port: Some(IntOrString::Int(n)),
            protocol: Some("TCP".to_string()),
            ..ServicePort::default()
        };
        assert_eq!(ports, vec![port("tls", 443), port("admin-tls", 8443)]);
        let container_ports: Vec<i32> =
            container(&p).ports.iter().flatten().map(|p| p.container_port).collect();
        assert_eq!(container_ports, vec![443, 8443, 9901]);
    }

    #[test]
    fn listener_set_ports_are_added_after_the_gateways_own() {
        let set = json!({"spec": {"listeners": [
            {"name": "tls", "port": 9443, "protocol": "TLS"},
            {"name": "again", "port": 443, "protocol": "TLS"},
        ]}});
        let p = desired_with(&gateway("edge"), &[&set], &ProvisionOptions::default())
            .expect("provisionable");
        let ports = p.service.spec.as_ref().and_then(|s| s.ports.clone()).expect("ports");
        let got: Vec<(String, i32)> =
            ports.iter().map(|p| (p.name.clone().unwrap_or_default(), p.port)).collect();
        // The set's `tls` name is taken by the Gateway's listener: the port gets another.
        assert_eq!(
            got,
            vec![("tls".into(), 443), ("admin-tls".into(), 8443), ("tcp-9443".into(), 9443)]
        );
    }

    #[test]
    fn a_listener_name_that_is_no_port_name_is_shortened_and_hashed() {
        let long = "l".repeat(100);
        let mut gw = gateway("edge");
        gw["spec"]["listeners"] = json!([
            {"name": long, "port": 443, "protocol": "TLS"},
            {"name": "l".repeat(101), "port": 444, "protocol": "TLS"},
        ]);
        let p = build(&gw);
        let names: Vec<String> = p
            .service
            .spec
            .as_ref()
            .expect("spec")
            .ports
            .iter()
            .flatten()
            .map(|p| p.name.clone().expect("name"))
            .collect();
        assert_eq!(names.len(), 2);
        assert_ne!(names[0], names[1]);
        for n in &names {
            assert!(n.len() <= 63 && n.starts_with("lll"), "{n}");
        }
    }

    #[test]
    fn infrastructure_labels_and_annotations_go_on_every_object_and_the_pod_template() {
        let mut gw = gateway("edge");
        gw["spec"]["infrastructure"] = json!({
            "labels": {"team": "edge", NAME_LABEL: "not-sniway"},
            "annotations": {"key1": "value1"},
        });
        let p = build(&gw);
        let mut all: Vec<(&str, &ObjectMeta)> = metas(&p);
        all.push(("pod template", template(&p).metadata.as_ref().expect("template metadata")));
        for (kind, meta) in all {
            let labels = meta.labels.as_ref().expect("labels");
            assert_eq!(labels["team"], "edge", "{kind}");
            // The selector's labels are ours: an infrastructure label cannot break it.
            assert_eq!(labels[NAME_LABEL], "sniway", "{kind}");
            let annotations = meta.annotations.as_ref().expect("annotations");
            assert_eq!(annotations["key1"], "value1", "{kind}");
        }
    }

    #[test]
    fn without_infrastructure_annotations_no_annotation_field_is_claimed() {
        let p = build(&gateway("edge"));
        for (kind, meta) in metas(&p) {
            assert_eq!(meta.annotations, None, "{kind}");
        }
    }

    #[test]
    fn the_data_plane_serves_this_gateway_with_the_options_flags() {
        let opts = ProvisionOptions {
            dataplane_args: vec!["--idle-timeout".into(), "5m".into()],
            drain_timeout: Duration::from_millis(2500),
            admin_port: 9100,
            image: "example.com/sniway:v1".into(),
            ..ProvisionOptions::default()
        };
        let p = desired(&gateway("edge"), &opts).expect("provisionable");
        let c = container(&p);
        assert_eq!(c.image.as_deref(), Some("example.com/sniway:v1"));
        let args = c.args.as_ref().expect("args");
        assert_eq!(
            args,
            &[
                "dataplane",
                "--gateway",
                "edge/edge",
                "--admin-address",
                "0.0.0.0:9100",
                "--bind-address",
                "0.0.0.0",
                "--drain-timeout",
                "2500ms",
                "--idle-timeout",
                "5m",
            ]
        );
        assert_eq!(pod(&p).service_account_name.as_deref(), Some("edge-sniway"));
        let admin = c.ports.iter().flatten().find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME));
        assert_eq!(admin.map(|p| p.container_port), Some(9100));
    }

    #[test]
    fn probes_use_the_admin_port_and_draining_outlasts_the_pre_stop_delay() {
        let p = build(&gateway("edge"));
        let c = container(&p);
        for (probe, path) in [(&c.readiness_probe, "/readyz"), (&c.liveness_probe, "/healthz")] {
            let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("http probe");
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(get.port, IntOrString::String(ADMIN_PORT_NAME.into()));
        }
        let sleep = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()?.sleep.as_ref());
        let sleep = sleep.expect("preStop sleep").seconds;
        assert_eq!(sleep, 5);
        let grace = pod(&p).termination_grace_period_seconds.expect("grace period");
        assert!(grace > sleep + 30, "{grace}");
    }

    #[test]
    fn the_container_runs_unprivileged_with_only_net_bind_service() {
        let p = build(&gateway("edge"));
        let sc = container(&p).security_context.as_ref().expect("security context");
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let caps = sc.capabilities.as_ref().expect("capabilities");
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(caps.add.as_deref(), Some(&["NET_BIND_SERVICE".to_string()][..]));
        let psc = pod(&p).security_context.as_ref().expect("pod security context");
        assert_eq!(psc.run_as_user, Some(65532));
        assert_eq!(psc.run_as_non_root, Some(true));
        let seccomp = psc.seccomp_profile.as_ref().map(|p| p.type_.as_str());
        assert_eq!(seccomp, Some("RuntimeDefault"));
        let requests = container(&p).resources.as_ref().and_then(|r| r.requests.as_ref());
        assert!(requests.is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")));
    }

    #[test]
    fn low_ports_are_opened_to_the_unprivileged_user_only_when_a_listener_needs_one() {
        let p = build(&gateway("edge"));
        let sysctls = pod(&p).security_context.as_ref().and_then(|s| s.sysctls.clone());
        assert_eq!(
            sysctls.expect("sysctls for port 443")[0].name,
            "net.ipv4.ip_unprivileged_port_start"
        );
        let mut high = gateway("edge");
        high["spec"]["listeners"] = json!([{"name": "tls", "port": 8443, "protocol": "TLS"}]);
        let p = build(&high);
        assert_eq!(pod(&p).security_context.as_ref().and_then(|s| s.sysctls.clone()), None);
    }

    #[test]
    fn replicas_are_left_to_an_autoscaler_when_the_options_say_so() {
        let hpa = ProvisionOptions { replicas: None, ..ProvisionOptions::default() };
        let p = desired(&gateway("edge"), &hpa).expect("provisionable");
        assert_eq!(p.deployment.spec.as_ref().and_then(|s| s.replicas), None);
        let json = serde_json::to_value(&p.deployment).expect("serialises");
        assert!(json["spec"].get("replicas").is_none(), "{json}");
        let pdb = p.pod_disruption_budget.spec.as_ref().expect("spec");
        assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    }

    #[test]
    fn the_disruption_budget_keeps_one_pod_when_there_are_several() {
        for (replicas, min, max) in
            [(1, None, Some(IntOrString::Int(1))), (3, Some(IntOrString::Int(1)), None)]
        {
            let opts = ProvisionOptions { replicas: Some(replicas), ..ProvisionOptions::default() };
            let p = desired(&gateway("edge"), &opts).expect("provisionable");
            assert_eq!(p.deployment.spec.as_ref().and_then(|s| s.replicas), Some(replicas));
            let pdb = p.pod_disruption_budget.spec.as_ref().expect("spec");
            assert_eq!((pdb.min_available.clone(), pdb.max_unavailable.clone()), (min, max));
        }
    }

    #[test]
    fn static_ip_addresses_become_the_load_balancer_ip_or_external_ips() {
        let mut gw = gateway("edge");
        gw["spec"]["addresses"] = json!([
            {"type": "Hostname", "value": "gw.example.com"},
            {"value": "192.0.2.10"},
            {"type": "IPAddress", "value": "2001:db8::1"},
            {"type": "IPAddress", "value": "not an ip"},
        ]);
        let p = build(&gw);
        let spec = p.service.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.load_balancer_ip.as_deref(), Some("192.0.2.10"));
        assert_eq!(spec.external_ips, None);

        for t in [ServiceType::ClusterIP, ServiceType::NodePort] {
            let opts = ProvisionOptions { service_type: t, ..ProvisionOptions::default() };
            let p = desired(&gw, &opts).expect("provisionable");
            let spec = p.service.spec.as_ref().expect("spec");
            assert_eq!(spec.type_.as_deref(), Some(t.as_str()));
            assert_eq!(spec.load_balancer_ip, None);
            assert_eq!(
                spec.external_ips.as_deref(),
                Some(&["192.0.2.10".to_string(), "2001:db8::1".to_string()][..])
            );
        }
    }

    #[test]
    fn service_types_parse_from_their_api_names_in_any_case() {
        for t in [ServiceType::LoadBalancer, ServiceType::ClusterIP, ServiceType::NodePort] {
            assert_eq!(t.as_str().parse::<ServiceType>(), Ok(t));
            assert_eq!(t.as_str().to_lowercase().parse::<ServiceType>(), Ok(t));
        }
        assert!("ExternalName".parse::<ServiceType>().is_err());
        assert!("".parse::<ServiceType>().is_err());
    }

    #[test]
    fn a_gateway_that_cannot_be_provisioned_is_an_error_not_a_panic() {
        let mut no_uid = gateway("edge");
        no_uid["metadata"].as_object_mut().expect("metadata").remove("uid");
        assert_eq!(build_err(&no_uid), ProvisionError::Missing("uid"));
        assert_eq!(build_err(&json!(null)), ProvisionError::Missing("name"));
        assert_eq!(build_err(&json!([1, 2])), ProvisionError::Missing("name"));

        let mut udp_only = gateway("edge");
        udp_only["spec"]["listeners"] = json!([{"name": "dns", "port": 53, "protocol": "UDP"}]);
        assert_eq!(build_err(&udp_only), ProvisionError::NoPorts);

        let mut bad_port = gateway("edge");
        bad_port["spec"]["listeners"] = json!([{"name": "x", "port": 70000, "protocol": "TLS"}]);
        assert_eq!(build_err(&bad_port), ProvisionError::BadPort { listener: "x".into() });

        let mut clash = gateway("edge");
        clash["spec"]["listeners"] = json!([{"name": "x", "port": 9901, "protocol": "TLS"}]);
        assert_eq!(
            build_err(&clash),
            ProvisionError::AdminPortClash { listener: "x".into(), port: 9901 }
        );
    }

    fn build_err(gw: &Value) -> ProvisionError {
        desired(gw, &ProvisionOptions::default()).expect_err("not provisionable")
    }

    #[test]
    fn objects_serialise_with_their_api_version_and_kind_for_server_side_apply() {
        let p = build(&gateway("edge"));
        let pairs = [
            (serde_json::to_value(&p.service_account), "v1", "ServiceAccount"),
            (serde_json::to_value(&p.deployment), "apps/v1", "Deployment"),
            (serde_json::to_value(&p.service), "v1", "Service"),
            (serde_json::to_value(&p.pod_disruption_budget), "policy/v1", "PodDisruptionBudget"),
        ];
        for (json, api_version, kind) in pairs {
            let json = json.expect("serialises");
            assert_eq!(json["apiVersion"], api_version);
            assert_eq!(json["kind"], kind);
            assert!(json.get("status").is_none(), "{kind} claims no status");
        }
    }

    fn service_with(status: Option<ServiceStatus>, spec: ServiceSpec) -> Service {
        Service { spec: Some(spec), status, ..Service::default() }
    }

    #[test]
    fn addresses_come_from_the_load_balancer_then_external_ips_then_the_cluster_ip() {
        let cluster = ServiceSpec {
            cluster_ip: Some("10.0.0.7".into()),
            cluster_ips: Some(vec!["10.0.0.7".into(), "fd00::7".into()]),
            ..ServiceSpec::default()
        };
        let ingress = ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![
                    LoadBalancerIngress { ip: Some("203.0.113.5".into()), ..Default::default() },
                    LoadBalancerIngress {
                        hostname: Some("lb.example.com".into()),
                        ..Default::default()
                    },
                ]),
            }),
            ..ServiceStatus::default()
        };
        assert_eq!(
            addresses(&service_with(Some(ingress), cluster.clone())),
            vec![(IP_ADDRESS, "203.0.113.5".into()), (HOSTNAME, "lb.example.com".into())]
        );
        let external =
            ServiceSpec { external_ips: Some(vec!["192.0.2.1".into()]), ..cluster.clone() };
        assert_eq!(
            addresses(&service_with(None, external)),
            vec![(IP_ADDRESS, "192.0.2.1".into())]
        );
        assert_eq!(
            addresses(&service_with(None, cluster)),
            vec![(IP_ADDRESS, "10.0.0.7".into()), (IP_ADDRESS, "fd00::7".into())]
        );
        let headless = ServiceSpec { cluster_ip: Some("None".into()), ..ServiceSpec::default() };
        assert_eq!(addresses(&service_with(None, headless)), vec![]);
        assert_eq!(addresses(&Service::default()), vec![]);
    }

    #[test]
    fn a_deployment_is_available_once_one_replica_is() {
        let with = |n: Option<i32>| Deployment {
            status: Some(DeploymentStatus { available_replicas: n, ..Default::default() }),
            ..Deployment::default()
        };
        assert!(available(&with(Some(1))));
        assert!(!available(&with(Some(0))));
        assert!(!available(&with(None)));
        assert!(!available(&Deployment::default()));
    }

    fn sa(namespace: &str, name: &str) -> (String, String) {
        (namespace.to_string(), name.to_string())
    }

    fn subjects(b: &ClusterRoleBinding) -> Vec<(String, String)> {
        b.subjects
            .iter()
            .flatten()
            .map(|s| {
                assert_eq!(s.kind, "ServiceAccount");
                assert_eq!(s.api_group, None, "a ServiceAccount is of the core group");
                (
                    s.namespace.clone().expect("a ServiceAccount subject names its namespace"),
                    s.name.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn the_dataplane_binding_binds_the_read_only_role_to_every_service_account_once_in_order() {
        let b = dataplane_binding(&[
            sa("b", "edge-sniway"),
            sa("a", "z-sniway"),
            sa("b", "edge-sniway"),
            sa("a", "b-sniway"),
            // Same name, another namespace: another subject.
            sa("c", "edge-sniway"),
        ]);
        assert_eq!(
            subjects(&b),
            vec![
                sa("a", "b-sniway"),
                sa("a", "z-sniway"),
                sa("b", "edge-sniway"),
                sa("c", "edge-sniway")
            ]
        );
        assert_eq!(b.metadata.name.as_deref(), Some(DATAPLANE_BINDING));
        assert_eq!(b.role_ref.api_group.as_deref(), Some("rbac.authorization.k8s.io"));
        assert_eq!(b.role_ref.kind, "ClusterRole");
        assert_eq!(b.role_ref.name, DATAPLANE_ROLE);
        // Cluster-scoped: no namespace, and no owner, which a namespaced Gateway cannot be.
        assert_eq!(b.metadata.namespace, None);
        assert_eq!(b.metadata.owner_references, None);
        let labels = b.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[MANAGED_BY_LABEL], APP);
    }

    #[test]
    fn the_dataplane_binding_is_the_same_whatever_the_order_of_its_service_accounts() {
        let one = [sa("x", "a-sniway"), sa("y", "b-sniway"), sa("x", "c-sniway")];
        let mut other = one.to_vec();
        other.reverse();
        other.push(one[0].clone());
        assert_eq!(dataplane_binding(&one), dataplane_binding(&other));
    }

    #[test]
    fn without_data_planes_the_binding_remains_with_an_empty_list_of_subjects() {
        let b = dataplane_binding(&[]);
        assert_eq!(b.subjects, Some(vec![]));
        let json = serde_json::to_value(&b).expect("serialises");
        // An explicit empty list, so that the apply removes the subjects applied before.
        assert_eq!(json["subjects"], json!([]));
        assert_eq!(json["apiVersion"], "rbac.authorization.k8s.io/v1");
        assert_eq!(json["kind"], "ClusterRoleBinding");
        assert_eq!(json["roleRef"]["name"], DATAPLANE_ROLE);
        assert!(json["metadata"].get("namespace").is_none(), "{json}");
    }

    #[test]
    fn a_provisioned_data_plane_is_bound_by_the_service_account_its_pods_run_as() {
        let p = build(&gateway("edge"));
        let (namespace, name) = p.service_account_ref();
        assert_eq!(namespace, "edge");
        assert_eq!(Some(name.as_str()), pod(&p).service_account_name.as_deref());
        let b = dataplane_binding(&[p.service_account_ref()]);
        assert_eq!(subjects(&b), vec![(namespace, name)]);
    }
}

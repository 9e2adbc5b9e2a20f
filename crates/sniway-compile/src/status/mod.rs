//! Status as the Gateway API defines it, and its rendering as `kubectl get -o yaml` shows it.

pub mod conditions;

use serde::Serialize;
use serde_json::Value;

pub use conditions::Condition;

/// `GatewayClass.status`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    /// `Accepted`.
    pub conditions: Vec<Condition>,
    /// The features sniway supports ([`crate::SUPPORTED_FEATURES`]), sorted by name.
    pub supported_features: Vec<SupportedFeature>,
}

/// `status.supportedFeatures[]` of a GatewayClass.
#[derive(Clone, Debug, Serialize)]
pub struct SupportedFeature {
    /// A Gateway API feature name (`pkg/features`).
    pub name: String,
}

/// `Gateway.status`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Addresses bound (conformance waits for an entry with `type` set).
    pub addresses: Vec<GatewayStatusAddress>,
    /// `Accepted`, `Programmed`.
    pub conditions: Vec<Condition>,
    /// One entry per listener.
    pub listeners: Vec<ListenerStatus>,
    /// ListenerSets accepted on this Gateway; set when the Gateway allows ListenerSets or one
    /// targets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<i32>,
}

/// `ListenerSet.status`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetStatus {
    /// `Accepted`, `Programmed`.
    pub conditions: Vec<Condition>,
    /// One entry per listener (empty when the set is not attached).
    pub listeners: Vec<ListenerStatus>,
}

/// `status.addresses[]`.
#[derive(Clone, Debug, Serialize)]
pub struct GatewayStatusAddress {
    /// Always `IPAddress`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The address.
    pub value: String,
}

/// `status.listeners[]`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// Kinds routes may have; empty for rejected listeners.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes attached (counted even when the listener is not accepted).
    pub attached_routes: i32,
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    pub conditions: Vec<Condition>,
    /// The sockets the listener is served on in the table (empty when not served); not part
    /// of the Gateway API status, used to report bind failures (`apply_bind_failures`).
    #[serde(skip)]
    pub sockets: Vec<std::net::SocketAddr>,
}

/// `{group, kind}`.
#[derive(Clone, Debug, Serialize)]
pub struct RouteGroupKind {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
}

/// `TLSRoute.status`.
#[derive(Clone, Debug, Serialize)]
pub struct RouteStatus {
    /// One entry per parentRef sniway owns.
    pub parents: Vec<RouteParentStatus>,
}

/// `status.parents[]`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The spec's parentRef with `group` and `kind` filled in.
    pub parent_ref: ParentRefStatus,
    /// `sniway.io/gateway-controller`.
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`.
    pub conditions: Vec<Condition>,
}

/// An echoed parentRef. `namespace` only when the spec gave it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRefStatus {
    /// Default-filled group.
    pub group: String,
    /// Default-filled kind.
    pub kind: String,
    /// As given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Parent name.
    pub name: String,
    /// As given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// As given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// An object and the status sniway computed for it (`None`: not ours, e.g. a Gateway of
/// another class).
#[derive(Clone, Debug)]
pub struct ObjectStatus<S> {
    /// `namespace/name`.
    pub key: String,
    /// The object as given, namespace filled in.
    pub object: Value,
    /// Computed status.
    pub status: Option<S>,
}

impl<S: Serialize> ObjectStatus<S> {
    /// The object with `.status` set.
    pub fn to_value(&self) -> Value {
        let mut v = self.object.clone();
        if let (Some(status), Some(map)) = (&self.status, v.as_object_mut()) {
            // Serializing plain structs of strings and integers cannot fail.
            let status = serde_json::to_value(status).unwrap_or(Value::Null);
            map.insert("status".into(), status);
        }
        v
    }
}

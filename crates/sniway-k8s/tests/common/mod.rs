//! Objects and options the controller and provisioning tests share.

use std::time::Duration;

use serde_json::{Value, json};
use sniway_k8s::lease::LeaseOptions;

/// The Gateway API's apiVersion.
pub const GW: &str = "gateway.networking.k8s.io/v1";

/// A GatewayClass of `controller`.
pub fn class(name: &str, controller: &str) -> Value {
    json!({
        "apiVersion": GW, "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    })
}

/// A Namespace.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// The condition of `type_` in a `conditions` list, or null.
pub fn condition<'a>(conds: &'a Value, type_: &str) -> &'a Value {
    conds.as_array().and_then(|a| a.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

/// A Lease in `infra` short enough for a test to see it expire.
pub fn lease_opts(identity: &str) -> LeaseOptions {
    LeaseOptions {
        name: "sniway-leader".into(),
        namespace: "infra".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(100),
    }
}

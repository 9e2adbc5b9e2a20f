//! Condition types and reasons, in one home. Names and meanings follow Gateway API v1.6.1
//! (`apis/v1/gateway_types.go`, `apis/v1/shared_types.go`); see section 5 of the digest.

use serde::{Deserialize, Serialize};

/// The controller name sniway writes in `status.parents[].controllerName`.
pub const CONTROLLER_NAME: &str = "sniway.io/gateway-controller";

/// `status` values.
pub mod status {
    /// Condition holds.
    pub const TRUE: &str = "True";
    /// Condition does not hold.
    pub const FALSE: &str = "False";
}

/// Condition types.
pub mod types {
    /// Gateway, Listener and Route parent: the configuration is valid and taken.
    pub const ACCEPTED: &str = "Accepted";
    /// Gateway and Listener: the data plane serves it.
    pub const PROGRAMMED: &str = "Programmed";
    /// Listener and Route parent: every reference resolved.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// Listener: indistinct from another listener.
    pub const CONFLICTED: &str = "Conflicted";
}

/// Condition reasons.
pub mod reasons {
    // --- shared ---
    /// `Accepted=True`.
    pub const ACCEPTED: &str = "Accepted";
    /// `Programmed=True`.
    pub const PROGRAMMED: &str = "Programmed";
    /// `ResolvedRefs=True`.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// `Programmed=False`: the configuration is invalid or not served.
    pub const INVALID: &str = "Invalid";
    /// Gateway and Listener `Programmed=False`: valid, but the data plane is not (yet) serving
    /// it, e.g. its socket could not be bound.
    pub const PENDING: &str = "Pending";

    // --- Gateway ---
    /// Gateway `Accepted`: some (True) or all (False) listeners are invalid.
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    /// Gateway `Accepted=False`: a requested address type is not supported.
    pub const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
    /// Gateway `Accepted=False`: `spec.infrastructure.parametersRef` does not resolve to
    /// parameters the implementation reads.
    pub const INVALID_PARAMETERS: &str = "InvalidParameters";
    /// Gateway `Programmed=False`: the requested addresses cannot be used.
    pub const ADDRESS_NOT_USABLE: &str = "AddressNotUsable";

    // --- ListenerSet ---
    /// ListenerSet `Accepted=False` and `Programmed=False`: its Gateway does not allow it.
    pub const NOT_ALLOWED: &str = "NotAllowed";
    /// ListenerSet `Accepted=False`: its Gateway is not accepted.
    pub const PARENT_NOT_ACCEPTED: &str = "ParentNotAccepted";

    // --- Listener ---
    /// Listener `Accepted=False`: the protocol is not served.
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    /// Listener `Accepted=False`: a field value is not supported.
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    /// Listener `Accepted=False`: the port (or address and hostname) is taken.
    pub const PORT_UNAVAILABLE: &str = "PortUnavailable";
    /// Listener `Conflicted=True` (and `Accepted=False`): same port, same hostname.
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    /// Listener `Conflicted=True` (and `Accepted=False`): incompatible protocols on one port.
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    /// Listener `Conflicted=False`.
    pub const NO_CONFLICTS: &str = "NoConflicts";
    /// Listener `ResolvedRefs=False`: `allowedRoutes.kinds` names an unsupported kind.
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    /// Listener `ResolvedRefs=False`: a certificateRef is missing, of an unsupported kind, or
    /// its data is malformed (including a key that does not match the certificate).
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";

    // --- Route parent ---
    /// Route `Accepted=False`: no listener allows the route's kind or namespace.
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    /// Route `Accepted=False`: no listener hostname intersects the route's hostnames.
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    /// Route `Accepted=False`: `sectionName`/`port` match no listener.
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    /// Route and Listener `ResolvedRefs=False`: a cross-namespace reference without a
    /// ReferenceGrant.
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    /// Route `ResolvedRefs=False`: an unsupported backend group or kind.
    pub const INVALID_KIND: &str = "InvalidKind";
    /// Route `ResolvedRefs=False`: the backend (or its port) does not exist.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";

    // --- Policy ancestor (GEP-713 `PolicyConditionReason`) ---
    /// Policy `Accepted=False`: the target does not exist (or is of a kind the policy cannot
    /// target, or names a missing listener).
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    /// Policy `Accepted=False`: an older policy with an equally specific target takes fields
    /// this policy sets.
    pub const CONFLICTED: &str = "Conflicted";
}

/// A condition before it is stamped with generation and time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Condition type.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// Reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl Cond {
    /// A `True` condition.
    pub fn yes(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status: status::TRUE, reason, message: message.into() }
    }

    /// A `False` condition.
    pub fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status: status::FALSE, reason, message: message.into() }
    }

    /// `ResolvedRefs` from the problems found (reason, message), route or listener alike: True
    /// when there are none; otherwise False with the first problem's reason and every message.
    pub fn resolved_refs(problems: &[(&'static str, String)]) -> Self {
        match problems.first() {
            None => {
                Cond::yes(types::RESOLVED_REFS, reasons::RESOLVED_REFS, "all references resolved")
            }
            Some((reason, _)) => {
                let msgs: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
                Cond::no(types::RESOLVED_REFS, reason, msgs.join("; "))
            }
        }
    }

    /// Stamps `observedGeneration` and `lastTransitionTime`.
    pub fn stamp(&self, generation: i64, now: &str) -> Condition {
        Condition {
            type_: self.type_.to_string(),
            status: self.status.to_string(),
            reason: self.reason.to_string(),
            message: self.message.clone(),
            observed_generation: generation,
            last_transition_time: now.to_string(),
        }
    }
}

/// `metav1.Condition` as written to status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message (the API server caps it at 32768 characters).
    pub message: String,
    /// The object's `metadata.generation` this condition was computed from.
    pub observed_generation: i64,
    /// RFC 3339 time of the last status change.
    pub last_transition_time: String,
}

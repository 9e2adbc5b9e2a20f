//! Gateway API manifests to a routing table and statuses.
//!
//! ```text
//! YAML/JSON sources ──load──> Resources ──compile──> Compiled { RoutingTable, statuses, warnings }
//!   (strict: errors name      (snapshot)   (pure)
//!    file, object, path)
//! ```
//!
//! [`load`] reads what `kubectl apply -f` would send and rejects what the API server would
//! reject (Gateway API v1.6.1 CRD schemas and CEL rules). [`compile`] applies the Gateway API
//! rules for TLS listeners and TLSRoutes and computes every status condition; it does no I/O and
//! reads no clock. Neither knows about sockets: `sniway-proxy` serves the table.
//!
//! TLS listeners are served in both modes: Passthrough, and Terminate with the certificates of
//! its `certificateRefs` (Secrets of type `kubernetes.io/tls`, parsed here into rustls signing
//! keys; see [`certificate_sets`] for certificate changes). Listeners of either mode share a
//! port, told apart by hostname (`TLSRouteModeMixed`). Secret data never appears in messages,
//! `Debug` output, status or the table summary.
//!
//! Extensions beyond the Gateway API, each announced by a warning when used:
//! - a backendRef whose name contains a dot and matches no Service is an external `host:port`
//!   (Service names cannot contain dots, so no Service is shadowed);
//! - v1alpha2 `rules[].matches[].snis` routes those SNIs to that rule's backends (an API server
//!   would drop the field).
//!
//! Policies of group `sniway.io` ([`policy`]): `ListenerPolicy` attaches to Gateways and
//! listeners (GEP-713) and fills each listener's `ListenerSettings` and default routes;
//! `BackendPolicy` attaches to Services and ServiceImports and fills the `BackendSettings` of
//! every backend resolved from them. Their CRDs are generated from the types ([`crds`]).
//!
//! ServiceImport backends (`multicluster.x-k8s.io/v1alpha1`, Extended support) resolve to the
//! EndpointSlices labelled [`IMPORT_NAME_LABEL`].
//!
//! HTTP and HTTPS listeners are accepted for status only (conformance requires them to look
//! supported): `supportedKinds: [HTTPRoute]`, `Accepted` and `Programmed` True, HTTPS
//! `certificateRefs` resolved as for Terminate listeners, HTTPRoutes counted in
//! `attachedRoutes`; they bind no socket and have no table entry (a warning says so). TCP, UDP
//! and other protocols are `UnsupportedProtocol`. Different protocols on one port are a
//! `ProtocolConflict`.
//!
//! Which Gateways are served ([`Mode`]): a GatewayClass is sniway's when its `controllerName`
//! is [`CONTROLLER_NAME`]. In file mode a Gateway whose class is not in the input is served too
//! (with a warning); in cluster mode ([`load_values`] with `LoadOptions::cluster`, objects from
//! the API server) only Gateways of an existing class of sniway's, or a single one. Every class
//! gets a status ([`Compiled::gateway_classes`]) listing [`SUPPORTED_FEATURES`].
//!
//! ListenerSets (`gateway.networking.k8s.io/v1`, GEP-1713) add listeners to Gateways that allow
//! them (`spec.allowedListeners`); see `listener_set.rs` for precedence, conflicts and status
//! ([`Compiled::listener_sets`]).
//!
//! File-mode choices: Gateways sharing an (address, port) share a socket, and when two claim one
//! hostname there the older keeps it (the other listener gets `PortUnavailable`).
#![warn(missing_docs)]

pub mod api;
mod backend;
mod backend_policy;
mod bind;
mod certificate;
mod compile;
mod dump;
mod gateway;
mod gateway_class;
mod listener_set;
mod load;
pub mod names;
pub mod policy;
mod policy_attach;
mod reference_grant;
pub mod resources;
mod route;
pub mod status;
mod validate;

pub use backend::{IMPORT_NAME_LABEL, SERVICE_NAME_LABEL};
pub use bind::apply_bind_failures;
pub use certificate::{
    TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY, TLS_SECRET_TYPE, certificate_sets, load_certificate,
};
pub use compile::{CompileOptions, Compiled, Mode, compile};
pub use dump::table_summary;
pub use gateway_class::SUPPORTED_FEATURES;
pub use load::{Diagnostic, LoadError, LoadOptions, Loaded, Source, load, load_values};
pub use policy::crds;
pub use resources::Resources;
pub use status::conditions::CONTROLLER_NAME;

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

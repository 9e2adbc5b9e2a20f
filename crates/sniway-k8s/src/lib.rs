//! sniway in Kubernetes: watches the Gateway API kinds, compiles them with the same pure step as
//! file mode (`sniway_compile`), hands the table to the live data plane (`sniway_proxy`), writes
//! status by server-side apply as the leader of a Lease, and provisions a data plane per Gateway.
#![warn(missing_docs)]

pub mod kinds;
pub mod provision;

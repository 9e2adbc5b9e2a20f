//! sniway in Kubernetes: watches the Gateway API kinds, compiles them with the same pure step as
//! file mode (`sniway_compile`), hands the table to the live data plane (`sniway_proxy`), writes
//! status by server-side apply as the leader of a Lease, and provisions a data plane per Gateway.
//!
//! ```text
//! watchers (watch) ──events──> Store (store) ──debounced──> compile_snapshot (snapshot)
//!   one per kind, one per          raw JSON, a re-list           │
//!   referenced Secret, the         swapped in whole              ├──> sink(&mut Compiled)   (the data plane)
//!   provisioned Deployments                                      ├──> Provisioner (provisioner), while leader (lease)
//!                                                                └──> StatusWriter (status), while leader,
//!                                                                     after dataplane_status (provisioner)
//! ```
//!
//! The status writer and the provisioner are tasks of their own, each fed the latest input by
//! a `watch` channel: one never waits for the other. A change of a provisioned Deployment or a
//! Service's status re-runs only the status pass, not the compile.
//!
//! [`controller::run`] ties them together; every piece is usable on its own and tested
//! against `sniway_testkit::apiserver`, a simulated API server reached through a real
//! `kube::Client`.
#![warn(missing_docs)]

pub mod controller;
pub mod kinds;
pub mod lease;
pub mod provision;
pub mod provisioner;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod watch;

pub use controller::{ControllerOptions, run};
pub use lease::{Leadership, LeaseOptions};
pub use snapshot::{SnapshotOptions, compile_snapshot};
pub use status::{FIELD_MANAGER, StatusWriter, WriteReport};
pub use store::{Change, ObjectKey, Store, StreamId};
pub use watch::Watches;

//! The `sniway` binary's parts: the command line (`run`, `check`, `demo`), reading manifest
//! files, and the demo's built-in TLS backends (also used by the end-to-end tests).

pub mod admin;
pub mod check;
pub mod cli;
pub mod demo;
pub mod kubernetes;
pub mod limits;
pub mod manifests;
pub mod run;
pub mod serve;
pub mod watch;

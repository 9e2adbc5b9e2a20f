//! Test kit shared by the sniway test suites; never part of a build that ships.
//!
//! - [`hello`]: ClientHello bytes, built field by field ([`HelloBuilder`]) or sent by a real
//!   rustls client ([`rustls_client_hello`]), and TLS record framing.
//! - [`ca`]: a test certificate authority (rcgen) issuing leaves as rustls [`CertifiedKey`]s,
//!   and rustls server and client configurations around them.
//! - [`dns`]: a tiny DNS server on loopback that answers `A` questions and counts them.
//! - [`apiserver`]: a simulated Kubernetes API server for controller tests, reached through a
//!   real `kube::Client`.
//!
//! [`CertifiedKey`]: rustls::sign::CertifiedKey

#![warn(missing_docs)]

pub mod apiserver;
pub mod ca;
pub mod dns;
pub mod hello;

pub use ca::{
    TestCa, client_config, client_config_any_certificate, client_config_versions, provider,
};
pub use hello::{
    EXT_ALPN, EXT_ECH, EXT_KEY_SHARE, EXT_PADDING, EXT_SERVER_NAME, EXT_SUPPORTED_VERSIONS,
    HelloBuilder, frame, handshake_bytes, hello, large_hello, record, record_kinds,
    rustls_client_hello, sni_list,
};

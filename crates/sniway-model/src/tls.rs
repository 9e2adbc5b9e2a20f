//! What a `tls.mode: Terminate` listener serves: its certificates (from `certificateRefs`) and
//! handshake settings.
//!
//! The certificate set sits behind its own atomic pointer so that a changed Secret can be swapped
//! into a live listener: new handshakes use the new set, established connections are untouched.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::hostname::{HostPattern, normalize};

/// A Terminate listener's TLS settings.
pub struct TerminateConfig {
    /// The certificates, swappable while serving.
    pub certificates: ArcSwap<CertificateSet>,
    /// ALPN protocols the gateway negotiates, in preference order. Empty: ALPN offered by the
    /// client is not negotiated.
    pub alpn: Vec<Vec<u8>>,
}

impl TerminateConfig {
    /// Settings for `certificates`, no ALPN.
    pub fn new(certificates: CertificateSet) -> Self {
        Self { certificates: ArcSwap::from_pointee(certificates), alpn: Vec::new() }
    }
}

impl fmt::Debug for TerminateConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TerminateConfig")
            .field("certificates", &*self.certificates.load())
            .field("alpn", &self.alpn)
            .finish_non_exhaustive()
    }
}

impl Serialize for TerminateConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("TerminateConfig", 2)?;
        st.serialize_field("certificates", &*self.certificates.load())?;
        let alpn: Vec<String> =
            self.alpn.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        st.serialize_field("alpn", &alpn)?;
        st.end()
    }
}

/// Certificates in `certificateRefs` order; the first is the default.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct CertificateSet(pub Vec<ServedCertificate>);

impl CertificateSet {
    /// The certificate for a server name: the first whose DNS names match it (exact before
    /// wildcard is not needed here: certificate order is the user's preference), else the first.
    /// `None` only when the set is empty.
    pub fn select(&self, server_name: Option<&str>) -> Option<&ServedCertificate> {
        if let Some(name) = server_name {
            let name = normalize(name);
            if let Some(c) = self.0.iter().find(|c| c.covers(&name)) {
                return Some(c);
            }
        }
        self.0.first()
    }
}

/// One certificate chain with its private key. Neither `Debug` nor `Serialize` shows the key.
pub struct ServedCertificate {
    /// Where it came from, `namespace/secret-name`.
    pub source: String,
    /// DNS names from the leaf's subjectAltName, used to choose by SNI.
    pub dns_names: Vec<HostPattern>,
    /// The chain and signing key for rustls.
    pub key: Arc<rustls::sign::CertifiedKey>,
}

impl ServedCertificate {
    /// Whether one of the certificate's names matches `name` (normalized). Certificate
    /// wildcards cover exactly one label (RFC 6125 §6.4.3), unlike Gateway API hostnames.
    pub fn covers(&self, name: &str) -> bool {
        self.dns_names.iter().any(|p| match p {
            HostPattern::Exact(e) => e == name,
            HostPattern::Wildcard(suffix) => name
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        })
    }
}

impl fmt::Debug for ServedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedCertificate")
            .field("source", &self.source)
            .field("dns_names", &self.dns_names)
            .finish_non_exhaustive()
    }
}

impl Serialize for ServedCertificate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ServedCertificate", 2)?;
        st.serialize_field("source", &self.source)?;
        st.serialize_field("dnsNames", &self.dns_names)?;
        st.end()
    }
}

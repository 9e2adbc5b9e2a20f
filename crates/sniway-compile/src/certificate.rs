//! Listener certificates: `tls.certificateRefs` of a Terminate listener resolved to Secrets of
//! type `kubernetes.io/tls`, parsed into rustls signing keys with the leaf's DNS names.
//!
//! Gateway API v1.6.1 (`GatewayTLSConfig.CertificateRefs` and the listener reasons):
//! - a reference defaults to group "" / kind `Secret` / the Gateway's namespace;
//! - a reference into another namespace needs a ReferenceGrant in the Secret's namespace from
//!   `{gateway.networking.k8s.io, Gateway, <gateway namespace>}` to `{"", Secret, name?}`;
//!   otherwise `ResolvedRefs=False/RefNotPermitted`, which takes precedence over every other
//!   problem of that reference ("InvalidCertificateRef must be used only when the reference is
//!   allowed");
//! - a missing object, an unsupported group or kind, or malformed data:
//!   `ResolvedRefs=False/InvalidCertificateRef`.
//!
//! Readings where the Gateway API leaves room (sniway's choices):
//! - a listener with an unusable reference stays `Accepted=True` (its spec is valid; `Accepted`
//!   has no certificate reason) with `ResolvedRefs=False`; with no usable certificate at all it
//!   is `Programmed=False/Invalid` and not served, and the Gateway reports it in
//!   `ListenersNotValid`; routes still attach to it (`attachedRoutes` counts them), with a
//!   warning that they are not served there;
//! - several certificates per listener are implementation-specific: the usable ones are served
//!   in `certificateRefs` order (the first is the default) even when others are not, so one bad
//!   Secret does not take down the names the others cover; `ResolvedRefs=False` still names
//!   every unusable reference;
//! - only `certificateRefs` provide certificates: a Terminate listener with `tls.options` alone
//!   has none;
//! - certificate validity dates are not checked (compile reads no clock); clients do that.
//!
//! Key material never leaves this module: messages name the Secret and the problem, never its
//! content, and parser errors (which may quote input lines) are replaced by fixed descriptions.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sniway_model::{
    CertificateSet, HostPattern, ListenerId, ListenerMode, RoutingTable, ServedCertificate,
};

use crate::GATEWAY_GROUP;
use crate::api::{ReferenceGrantSpec, SecretObjectReference};
use crate::reference_grant::{self, From, To};
use crate::resources::{Object, Resources, Secret};
use crate::status::conditions::reasons;

/// The Secret type certificateRefs must point to.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// The PEM chain key of a `kubernetes.io/tls` Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// The PEM private key key of a `kubernetes.io/tls` Secret.
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";

/// What a Terminate listener's `certificateRefs` resolved to.
#[derive(Debug, Default)]
pub(crate) struct ListenerCertificates {
    /// The usable certificates, in `certificateRefs` order (the first is the default).
    pub served: Vec<ServedCertificate>,
    /// `(reason, message)` per unusable reference, in `certificateRefs` order.
    pub problems: Vec<(&'static str, String)>,
}

/// Resolves certificateRefs against one snapshot; each Secret is parsed once per compile.
pub(crate) struct Certificates<'r> {
    secrets: BTreeMap<(&'r str, &'r str), &'r Object<Secret>>,
    grants: &'r [Object<ReferenceGrantSpec>],
    parsed: RefCell<BTreeMap<(String, String), Result<Parsed, String>>>,
}

/// A parsed Secret: the shareable signing key and the leaf's DNS names.
#[derive(Clone)]
struct Parsed {
    key: Arc<CertifiedKey>,
    dns_names: Vec<HostPattern>,
}

impl<'r> Certificates<'r> {
    pub(crate) fn new(res: &'r Resources) -> Self {
        let secrets = res
            .secrets
            .iter()
            .map(|s| ((s.meta.namespace.as_str(), s.meta.name.as_str()), s))
            .collect();
        Self { secrets, grants: &res.reference_grants, parsed: RefCell::new(BTreeMap::new()) }
    }

    /// Resolves the `certificateRefs` of a listener of a `from_kind` (`Gateway` or
    /// `ListenerSet`) in `gateway_ns`: references default to that namespace, and a Secret in
    /// another namespace needs a ReferenceGrant from that kind.
    pub(crate) fn resolve(
        &self,
        from_kind: &str,
        gateway_ns: &str,
        refs: &[SecretObjectReference],
    ) -> ListenerCertificates {
        let mut out = ListenerCertificates::default();
        for (i, r) in refs.iter().enumerate() {
            match self.resolve_one(from_kind, gateway_ns, r) {
                Ok(c) => out.served.push(c),
                Err((reason, why)) => {
                    out.problems.push((reason, format!("certificateRefs[{i}] {why}")))
                }
            }
        }
        out
    }

    fn resolve_one(
        &self,
        from_kind: &str,
        gateway_ns: &str,
        r: &SecretObjectReference,
    ) -> Result<ServedCertificate, (&'static str, String)> {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Secret");
        let ns = r.namespace.as_deref().unwrap_or(gateway_ns);
        let gk = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let what = format!("{gk} {ns}/{}", r.name);
        let invalid = |msg: String| (reasons::INVALID_CERTIFICATE_REF, format!("{what}: {msg}"));

        let from = From { group: GATEWAY_GROUP, kind: from_kind, namespace: gateway_ns };
        let to = To { group, kind, namespace: ns, name: &r.name };
        if !reference_grant::permits(self.grants, &from, &to) {
            return Err((
                reasons::REF_NOT_PERMITTED,
                format!(
                    "{what}: no ReferenceGrant in namespace {ns} allows {from_kind}s from \
                     namespace {gateway_ns} to refer to it"
                ),
            ));
        }
        if !(group.is_empty() && kind == "Secret") {
            return Err(invalid(format!(
                "kind {gk} is not supported: certificates are read from core Secrets of type \
                 {TLS_SECRET_TYPE}"
            )));
        }
        let Some(secret) = self.secrets.get(&(ns, r.name.as_str())) else {
            return Err(invalid("not found".into()));
        };
        let ty = secret.spec.type_.as_deref().unwrap_or("Opaque");
        if ty != TLS_SECRET_TYPE {
            return Err(invalid(format!(
                "has type {ty}; certificateRefs need type {TLS_SECRET_TYPE}"
            )));
        }
        let key = (ns.to_string(), r.name.clone());
        let parsed = self
            .parsed
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| parse_secret(&secret.spec))
            .clone();
        let p = parsed.map_err(invalid)?;
        Ok(ServedCertificate {
            source: format!("{ns}/{}", r.name),
            dns_names: p.dns_names,
            key: p.key,
        })
    }
}

/// The certificate set of every served Terminate listener of `table`, by listener.
///
/// Certificate change: a changed Secret is a new snapshot, and compiling it yields new sets
/// (compile reads the Secrets anew each time). To keep live listeners (and their handshake
/// state) while new connections pick up the new certificates, compile the new snapshot and
/// store each set from this map into the live listener of the same id
/// (`TerminateConfig::certificates.store(set)`); connections already established keep the
/// certificate they were handshaken with.
pub fn certificate_sets(table: &RoutingTable) -> BTreeMap<ListenerId, Arc<CertificateSet>> {
    let mut out = BTreeMap::new();
    for socket in &table.sockets {
        for (_, l) in socket.listeners.entries() {
            if let ListenerMode::Terminate(t) = &l.mode {
                out.insert(l.id.clone(), t.certificates.load_full());
            }
        }
    }
    out
}

fn parse_secret(s: &Secret) -> Result<Parsed, String> {
    let get = |k: &str| s.data.get(k).filter(|v| !v.is_empty());
    let (Some(chain), Some(key)) = (get(TLS_CERT_KEY), get(TLS_PRIVATE_KEY_KEY)) else {
        let missing: Vec<&str> =
            [TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY].into_iter().filter(|k| get(k).is_none()).collect();
        return Err(format!("no {} in data or stringData", missing.join(" and ")));
    };
    let (key, dns_names) = certified_key(chain, key)?;
    Ok(Parsed { key: Arc::new(key), dns_names })
}

/// Builds a served certificate from a PEM chain (leaf first) and a PEM private key, as found in
/// a `kubernetes.io/tls` Secret: RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 keys in
/// PKCS#1, SEC1 or PKCS#8 encoding. The key must match the leaf. `dns_names` are the leaf's
/// DNS subjectAltNames.
///
/// The error describes the problem without quoting the input.
pub fn load_certificate(
    source: &str,
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<ServedCertificate, String> {
    let (key, dns_names) = certified_key(chain_pem, key_pem)?;
    Ok(ServedCertificate { source: source.to_string(), dns_names, key: Arc::new(key) })
}

fn certified_key(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(CertifiedKey, Vec<HostPattern>), String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{TLS_CERT_KEY} is not valid PEM ({})", pem_problem(&e)))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{TLS_CERT_KEY} holds no PEM certificate"));
    };
    let dns_names = leaf_dns_names(leaf).ok_or_else(|| {
        format!("{TLS_CERT_KEY}: the first certificate is not a valid X.509 certificate")
    })?;

    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) if contains(key_pem, b"ENCRYPTED PRIVATE KEY") => {
            return Err(format!(
                "{TLS_PRIVATE_KEY_KEY} is an encrypted private key; it must be unencrypted"
            ));
        }
        Err(pem::Error::NoItemsFound) => {
            return Err(format!(
                "{TLS_PRIVATE_KEY_KEY} holds no PEM private key (PKCS#1, PKCS#8 or SEC1)"
            ));
        }
        Err(e) => {
            return Err(format!("{TLS_PRIVATE_KEY_KEY} is not valid PEM ({})", pem_problem(&e)));
        }
    };
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| {
            format!(
                "{TLS_PRIVATE_KEY_KEY} is malformed or of an unsupported type (supported: RSA of \
                 2048 bits or more, ECDSA P-256 or P-384, Ed25519)"
            )
        })?;
    let ck = CertifiedKey::new(chain, signer);
    match ck.keys_match() {
        Ok(()) => Ok((ck, dns_names)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(format!(
                "{TLS_PRIVATE_KEY_KEY} does not match the public key of the first certificate in \
             {TLS_CERT_KEY}"
            ))
        }
        // The ring signing keys always expose their public key; stay permissive if one does not.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok((ck, dns_names))
        }
        Err(_) => {
            Err(format!("{TLS_CERT_KEY}: the first certificate is not a valid X.509 certificate"))
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A fixed description of a PEM error: the error values themselves can quote input lines.
fn pem_problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line",
        pem::Error::Base64Decode(_) => "bad base64 inside a section",
        pem::Error::NoItemsFound => "no section found",
        _ => "unreadable",
    }
}

// === X.509: the leaf's subjectAltName DNS names ===

/// One DER element: `(tag, content, rest)`.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The elements of a constructed value's content.
fn elements(mut content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, c, rest) = der(content)?;
        out.push((tag, c));
        content = rest;
    }
    Some(out)
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `[3] EXPLICIT Extensions` in `TBSCertificate`.
const EXTENSIONS: u8 = 0xa3;
/// `GeneralName ::= ... dNSName [2] IA5String`.
const DNS_NAME: u8 = 0x82;
/// `id-ce-subjectAltName` (2.5.29.17).
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// DNS names of the certificate's subjectAltName extension (RFC 5280 §4.2.1.6), lowercase, in
/// order; names that are not hostnames (or a bare `*`) are skipped. `None` when the DER is not
/// a certificate.
fn leaf_dns_names(cert: &CertificateDer<'_>) -> Option<Vec<HostPattern>> {
    let (tag, cert, _) = der(cert.as_ref())?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut names = Vec::new();
    for (tag, content) in elements(tbs)? {
        if tag != EXTENSIONS {
            continue;
        }
        let (tag, exts, _) = der(content)?;
        if tag != SEQUENCE {
            return None;
        }
        for (tag, ext) in elements(exts)? {
            if tag != SEQUENCE {
                return None;
            }
            let parts = elements(ext)?;
            let Some((OID, oid)) = parts.first().copied() else { return None };
            if oid != SUBJECT_ALT_NAME {
                continue;
            }
            let value = parts
                .iter()
                .skip(1)
                .find(|(t, _)| *t != BOOLEAN)
                .filter(|(t, _)| *t == OCTET_STRING)
                .map(|(_, v)| *v)?;
            let (tag, general_names, _) = der(value)?;
            if tag != SEQUENCE {
                return None;
            }
            for (tag, name) in elements(general_names)? {
                if tag != DNS_NAME {
                    continue;
                }
                if let Ok(name) = std::str::from_utf8(name)
                    && is_dns_name(name)
                {
                    names.push(HostPattern::parse(name));
                }
            }
        }
    }
    Some(names)
}

/// A hostname, optionally with a leading `*.` (any case; normalised by `HostPattern::parse`).
fn is_dns_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! pair {
        ($name:literal) => {
            (
                include_str!(concat!("../tests/testdata/certs/", $name, ".crt")),
                include_str!(concat!("../tests/testdata/certs/", $name, ".key")),
            )
        };
    }

    fn load(name: &str, (crt, key): (&str, &str)) -> Result<ServedCertificate, String> {
        load_certificate(name, crt.as_bytes(), key.as_bytes())
    }

    fn names(c: &ServedCertificate) -> Vec<String> {
        c.dns_names.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_supported_key_type_and_encoding_loads_with_its_san_names() {
        let cases = [
            ("rsa-pkcs1", pair!("rsa-pkcs1"), vec!["tls.example.com"]),
            ("rsa-pkcs8", pair!("rsa-pkcs8"), vec!["rsa8.example.com", "*.wild.example.com"]),
            ("ec256-sec1", pair!("ec256-sec1"), vec!["bar.example.com"]),
            ("ec256-pkcs8", pair!("ec256-pkcs8"), vec!["ec8.example.com"]),
            ("ec384-sec1", pair!("ec384-sec1"), vec!["p384.example.com"]),
            ("ed25519", pair!("ed25519"), vec!["*.example.com", "example.com"]),
            ("chain-leaf", pair!("chain-leaf"), vec!["chain.example.com"]),
        ];
        for (name, p, want) in cases {
            let c = load(name, p).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(names(&c), want, "{name}");
            assert_eq!(c.source, name);
        }
        let chain = load("chain", pair!("chain-leaf")).unwrap();
        assert_eq!(chain.key.cert.len(), 2, "the whole chain is served");
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let (crt, _) = pair!("rsa-pkcs1");
        let (_, key) = pair!("rsa-pkcs8");
        let e = load("x", (crt, key)).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let (_, key) = pair!("ec256-sec1");
        let e = load("x", (crt, key)).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
    }

    #[test]
    fn malformed_input_is_described_without_quoting_it() {
        let (crt, key) = pair!("ec256-sec1");
        let cases: Vec<(String, String, &str)> = vec![
            ("not pem".into(), key.into(), "holds no PEM certificate"),
            (crt.replace("-----END CERTIFICATE-----", ""), key.into(), "not valid PEM"),
            (crt.into(), "garbage".into(), "holds no PEM private key"),
            (crt.into(), key.replace("EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"), "encrypted"),
            (
                crt.into(),
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
                "malformed or of an unsupported type",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
                key.into(),
                "not a valid X.509 certificate",
            ),
        ];
        let body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
        for (c, k, want) in cases {
            let e = load("x", (&c, &k)).unwrap_err();
            assert!(e.contains(want), "{e} (wanted {want})");
            assert!(!e.contains("PRIVATE KEY-----"), "{e}");
            assert!(body.iter().all(|b| !e.contains(b)), "{e}");
        }
    }

    #[test]
    fn the_set_selects_by_sni_with_one_label_wildcards_and_defaults_to_the_first() {
        let set = CertificateSet(vec![
            load("tls", pair!("rsa-pkcs1")).unwrap(),
            load("ed", pair!("ed25519")).unwrap(),
            load("rsa8", pair!("rsa-pkcs8")).unwrap(),
        ]);
        let pick = |sni: Option<&str>| set.select(sni).unwrap().source.clone();
        assert_eq!(pick(Some("tls.example.com")), "tls");
        assert_eq!(pick(Some("TLS.Example.com.")), "tls");
        assert_eq!(pick(Some("foo.example.com")), "ed");
        assert_eq!(pick(Some("example.com")), "ed");
        // One label only: `*.example.com` does not cover `a.b.example.com`.
        assert_eq!(pick(Some("a.b.example.com")), "tls");
        assert_eq!(pick(Some("x.wild.example.com")), "rsa8");
        assert_eq!(pick(Some("unknown.org")), "tls");
        assert_eq!(pick(None), "tls");
        assert!(CertificateSet::default().select(Some("x")).is_none());
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let c = load("src", pair!("ec256-sec1")).unwrap();
        let one = format!("{c:?}");
        let d = format!("{one} {:?}", CertificateSet(vec![c]));
        assert!(!d.contains("PRIVATE") && !d.contains("key:"), "{d}");
    }

    #[test]
    fn a_certificate_without_subject_alt_name_has_no_dns_names() {
        let ca = include_str!("../tests/testdata/certs/ca.crt");
        let der = CertificateDer::from_pem_slice(ca.as_bytes()).unwrap();
        assert_eq!(leaf_dns_names(&der), Some(vec![]));
    }

    #[test]
    fn der_reader_rejects_truncated_input() {
        assert!(der(&[0x30, 0x05, 0x01]).is_none());
        assert!(der(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_none());
        assert!(der(&[0x30, 0x81, 0x01, 0x00]).is_some());
        assert!(leaf_dns_names(&CertificateDer::from(vec![0x02, 0x01, 0x00])).is_none());
    }
}

//! Kubernetes name formats, as the API server checks them (`k8s.io/apimachinery`
//! `pkg/util/validation`): the loader validates manifests with them, and the controller names
//! the objects it provisions with them.

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, of any length.
pub(crate) fn is_label_chars(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_label_chars(s)
}

/// RFC 1123 subdomain as Kubernetes checks it (`IsDNS1123Subdomain`, and the Gateway API
/// `Group`, `SectionName` and domain patterns): dot-separated parts of lowercase alphanumerics
/// and '-', each starting and ending alphanumeric, at most 253 characters in all. There is no
/// per-part limit: 63 characters bound a label, not a subdomain's parts.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_chars)
}

/// RFC 1035 label (Service names): starts with a letter, at most 63 characters.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// A Kubernetes qualified name (label and annotation keys): an optional DNS subdomain prefix
/// and `/`, then 1..63 alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric.
pub fn is_qualified_name(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let b = name.as_bytes();
    prefix.is_none_or(is_dns1123_subdomain)
        && !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label value (`IsValidLabelValue`): empty, or 1 to 63 characters of `[A-Za-z0-9._-]`
/// starting and ending with an alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')))
}

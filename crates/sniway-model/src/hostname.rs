//! Hostnames as the Gateway API matches them.
//!
//! A wildcard is only ever a leading `*.` and, unlike RFC 2818 certificate wildcards, it matches
//! **one or more** labels: `*.example.com` matches `a.example.com` and `a.b.example.com` but not
//! `example.com` (Gateway API v1.6.1, `Hostname` godoc; conformance `TLSRouteHostnameIntersection`
//! requires `*.com` to match `abc.example.com`).

use std::fmt;

use serde::{Serialize, Serializer};

/// A listener or route hostname: exact, or a wildcard over a suffix.
///
/// Stored lowercase without a trailing dot, as the API server only admits lowercase names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// A precise name such as `foo.example.com`.
    Exact(String),
    /// `*.SUFFIX`: holds `SUFFIX` (e.g. `example.com` for `*.example.com`).
    Wildcard(String),
}

impl HostPattern {
    /// Parses `*.suffix` or an exact name; lowercases and strips one trailing dot.
    pub fn parse(s: &str) -> Self {
        let s = normalize(s);
        match s.strip_prefix("*.") {
            Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
            None => HostPattern::Exact(s),
        }
    }

    /// Whether `name` (already normalized with [`normalize`]) matches this pattern.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(e) => e == name,
            HostPattern::Wildcard(suffix) => wildcard_matches(suffix, name),
        }
    }

    /// Is this a wildcard pattern?
    pub fn is_wildcard(&self) -> bool {
        matches!(self, HostPattern::Wildcard(_))
    }

    /// Specificity used for precedence: exact beats wildcard; among wildcards, the one with
    /// more labels right of `*` is more specific. Greater is more specific.
    pub fn specificity(&self) -> Specificity {
        match self {
            HostPattern::Exact(_) => Specificity::Exact,
            HostPattern::Wildcard(s) => Specificity::Wildcard(s.split('.').count()),
        }
    }
}

/// How specific a match is; `Ord` puts the most specific last (greatest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Specificity {
    /// Matches any hostname (a listener or route without hostname).
    Any,
    /// `*.suffix` with this many labels in the suffix.
    Wildcard(usize),
    /// A precise name.
    Exact,
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(e) => f.write_str(e),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Lowercases a server name and drops one trailing dot, so `Foo.Example.COM.` matches
/// `foo.example.com`. DNS names compare case-insensitively (RFC 4343).
pub fn normalize(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

/// `*.suffix` matches `name` when `name` ends with `.suffix` and has at least one label before it.
fn wildcard_matches(suffix: &str, name: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

/// Intersects a listener hostname (`None` = any) with one route hostname (`None` = any, as in a
/// v1alpha2 route without hostnames). Returns the names traffic must match on that listener, or
/// `None` when the two share no name. Follows the Gateway API hostname-intersection rules:
///
/// ```text
/// L any                 -> R
/// both exact            -> R if L == R
/// L="*.s", R exact      -> R if R matches *.s
/// L exact, R="*.s"      -> L if L matches *.s
/// L="*.a", R="*.b"      -> the more specific of the two if one covers the other
/// ```
pub fn intersect(
    listener: Option<&HostPattern>,
    route: Option<&HostPattern>,
) -> Option<Option<HostPattern>> {
    use HostPattern::{Exact, Wildcard};
    match (listener, route) {
        (None, r) => Some(r.cloned()),
        (Some(l), None) => Some(Some(l.clone())),
        (Some(Exact(l)), Some(Exact(r))) => (l == r).then(|| Some(Exact(r.clone()))),
        (Some(Wildcard(s)), Some(Exact(r))) => {
            wildcard_matches(s, r).then(|| Some(Exact(r.clone())))
        }
        (Some(Exact(l)), Some(Wildcard(s))) => {
            wildcard_matches(s, l).then(|| Some(Exact(l.clone())))
        }
        (Some(Wildcard(a)), Some(Wildcard(b))) => {
            if a == b || wildcard_matches(b, a) {
                Some(Some(Wildcard(a.clone())))
            } else if wildcard_matches(a, b) {
                Some(Some(Wildcard(b.clone())))
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s)
    }

    #[test]
    fn wildcard_matches_one_or_more_labels_but_not_the_suffix_itself() {
        let w = p("*.example.com");
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("aexample.com"));
        assert!(!w.matches(".example.com"));
        assert!(p("*.com").matches("abc.example.com"));
    }

    #[test]
    fn normalize_lowercases_and_drops_one_trailing_dot() {
        assert_eq!(normalize("Foo.Example.COM."), "foo.example.com");
        assert_eq!(normalize("a.b"), "a.b");
    }

    #[test]
    fn intersection_follows_the_gateway_api_table() {
        let some = |s: &str| Some(Some(p(s)));
        assert_eq!(intersect(None, Some(&p("a.com"))), some("a.com"));
        assert_eq!(intersect(None, None), Some(None));
        assert_eq!(intersect(Some(&p("*.a.com")), None), some("*.a.com"));
        assert_eq!(intersect(Some(&p("a.com")), Some(&p("a.com"))), some("a.com"));
        assert_eq!(intersect(Some(&p("a.com")), Some(&p("b.com"))), None);
        assert_eq!(
            intersect(Some(&p("*.example.com")), Some(&p("x.example.com"))),
            some("x.example.com")
        );
        assert_eq!(
            intersect(Some(&p("abc.example.com")), Some(&p("*.example.com"))),
            some("abc.example.com")
        );
        assert_eq!(intersect(Some(&p("*.example.com")), Some(&p("*.com"))), some("*.example.com"));
        assert_eq!(intersect(Some(&p("*.com")), Some(&p("*.example.com"))), some("*.example.com"));
        assert_eq!(
            intersect(Some(&p("*.example.com")), Some(&p("*.example.com"))),
            some("*.example.com")
        );
        assert_eq!(intersect(Some(&p("*.example.com")), Some(&p("*.nomatch.com"))), None);
        assert_eq!(intersect(Some(&p("www.example.com")), Some(&p("*.nomatch.com"))), None);
    }

    #[test]
    fn specificity_orders_exact_over_longer_wildcard_over_shorter_over_any() {
        let exact = p("a.example.com").specificity();
        let long = p("*.foo.example.com").specificity();
        let short = p("*.example.com").specificity();
        assert!(exact > long && long > short && short > Specificity::Any);
    }
}

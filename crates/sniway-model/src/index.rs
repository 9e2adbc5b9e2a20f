//! An index from server name to the most specific entry whose hostname matches.
//!
//! Lookup cost does not grow with the number of entries: one hash probe for the exact name, then
//! one probe per label suffix for wildcards (longest suffix first), then the catch-all.

use std::collections::HashMap;

use serde::Serialize;

use crate::hostname::{HostPattern, Specificity};

/// Most specific match wins: exact, then the wildcard with the longest suffix, then `any`.
#[derive(Clone, Debug, Serialize)]
pub struct HostIndex<T> {
    exact: HashMap<String, T>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, T>,
    any: Option<T>,
}

impl<T> Default for HostIndex<T> {
    fn default() -> Self {
        Self { exact: HashMap::new(), wildcard: HashMap::new(), any: None }
    }
}

impl<T> HostIndex<T> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `value` under `host` (`None` = any name) unless an entry already holds that exact
    /// pattern; the first insert wins, so callers insert in precedence order. Returns `false`
    /// (and drops `value`) when the slot was taken.
    pub fn insert_first(&mut self, host: Option<&HostPattern>, value: T) -> bool {
        let slot = match host {
            None => {
                if self.any.is_some() {
                    return false;
                }
                self.any = Some(value);
                return true;
            }
            Some(HostPattern::Exact(name)) => self.exact.entry(name.clone()),
            Some(HostPattern::Wildcard(suffix)) => self.wildcard.entry(suffix.clone()),
        };
        match slot {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(value);
                true
            }
        }
    }

    /// The entry for `name`, which must be normalized (lowercase, no trailing dot; see
    /// [`crate::hostname::normalize`]). `None` as `name` (no SNI) only matches nothing.
    pub fn lookup(&self, name: &str) -> Option<&T> {
        self.lookup_with_specificity(name).map(|(v, _)| v)
    }

    /// Like [`HostIndex::lookup`], also saying how specific the match was.
    pub fn lookup_with_specificity(&self, name: &str) -> Option<(&T, Specificity)> {
        if let Some(v) = self.exact.get(name) {
            return Some((v, Specificity::Exact));
        }
        if !self.wildcard.is_empty() {
            // `a.b.example.com` tries `b.example.com`, `example.com`, `com`: longest first, and
            // a wildcard needs at least one label in front of its suffix.
            let mut rest = name;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(v) = self.wildcard.get(rest) {
                    return Some((v, Specificity::Wildcard(rest.split('.').count())));
                }
            }
        }
        self.any.as_ref().map(|v| (v, Specificity::Any))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.any.is_some())
    }

    /// Whether the index has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry with its pattern (`None` = any), most specific first, then by name.
    pub fn entries(&self) -> Vec<(Option<HostPattern>, &T)> {
        let mut out: Vec<(Option<HostPattern>, &T)> = self
            .exact
            .iter()
            .map(|(k, v)| (Some(HostPattern::Exact(k.clone())), v))
            .chain(self.wildcard.iter().map(|(k, v)| (Some(HostPattern::Wildcard(k.clone())), v)))
            .collect();
        out.sort_by(|(a, _), (b, _)| {
            let (a, b) = (a.as_ref().expect("named"), b.as_ref().expect("named"));
            b.specificity().cmp(&a.specificity()).then_with(|| a.cmp(b))
        });
        if let Some(v) = &self.any {
            out.push((None, v));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(entries: &[(Option<&str>, u32)]) -> HostIndex<u32> {
        let mut i = HostIndex::new();
        for (h, v) in entries {
            i.insert_first(h.map(HostPattern::parse).as_ref(), *v);
        }
        i
    }

    #[test]
    fn exact_beats_longer_wildcard_beats_shorter_wildcard_beats_any() {
        let i = idx(&[
            (None, 0),
            (Some("*.com"), 1),
            (Some("*.example.com"), 2),
            (Some("abc.example.com"), 3),
        ]);
        assert_eq!(i.lookup("abc.example.com"), Some(&3));
        assert_eq!(i.lookup("x.abc.example.com"), Some(&2));
        assert_eq!(i.lookup("other.example.com"), Some(&2));
        assert_eq!(i.lookup("example.com"), Some(&1));
        assert_eq!(i.lookup("example.org"), Some(&0));
    }

    #[test]
    fn wildcard_does_not_match_its_own_suffix() {
        let i = idx(&[(Some("*.example.com"), 1)]);
        assert_eq!(i.lookup("example.com"), None);
        assert_eq!(i.lookup("com"), None);
        assert_eq!(i.lookup("a.b.example.com"), Some(&1));
    }

    #[test]
    fn first_insert_wins_for_the_same_pattern() {
        let mut i = HostIndex::new();
        assert!(i.insert_first(Some(&HostPattern::parse("a.com")), 1));
        assert!(!i.insert_first(Some(&HostPattern::parse("a.com")), 2));
        assert!(i.insert_first(None, 3));
        assert!(!i.insert_first(None, 4));
        assert_eq!(i.lookup("a.com"), Some(&1));
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn entries_list_most_specific_first() {
        let i = idx(&[(None, 0), (Some("*.com"), 1), (Some("b.com"), 2), (Some("*.x.com"), 3)]);
        let names: Vec<String> = i
            .entries()
            .iter()
            .map(|(h, _)| h.as_ref().map_or("*".into(), |h| h.to_string()))
            .collect();
        assert_eq!(names, ["b.com", "*.x.com", "*.com", "*"]);
    }
}

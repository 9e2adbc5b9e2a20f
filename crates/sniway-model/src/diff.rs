//! What changed between two routing tables, for reload logs: sockets, listeners, routes and
//! backends added, removed or changed, with a bounded one-line summary.
//!
//! - A socket changed when its listeners (ids and hostnames, in precedence order) differ.
//! - A listener changed when its hostname, mode, settings or served certificates differ; a
//!   certificate is compared by its source and by its leaf certificate's bytes, so a Secret
//!   rotated under the same name counts.
//! - A route (rule) changed when its backends (names and weights, in order) differ.
//! - A backend, by display name across every route, changed when its endpoints, DNS target or
//!   invalid reason differ.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use crate::hostname::HostPattern;
use crate::table::{
    Backend, ListenerId, ListenerMode, ListenerTable, Route, RouteId, RoutingTable,
};

/// How many names of one list the summary shows before "and N more".
const SHOWN: usize = 10;

/// Keys added, removed and changed, each sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes<T> {
    /// In the new table only.
    pub added: Vec<T>,
    /// In the old table only.
    pub removed: Vec<T>,
    /// In both, with different content.
    pub changed: Vec<T>,
}

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Self { added: Vec::new(), removed: Vec::new(), changed: Vec::new() }
    }
}

impl<T> Changes<T> {
    /// Nothing added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares two maps of content by key.
fn compare<K: Ord + Clone, V>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    same: impl Fn(&V, &V) -> bool,
) -> Changes<K> {
    let mut c = Changes::default();
    for (k, v) in new {
        match old.get(k) {
            None => c.added.push(k.clone()),
            Some(o) if !same(o, v) => c.changed.push(k.clone()),
            Some(_) => {}
        }
    }
    c.removed = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    c
}

/// The difference between two routing tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableDiff {
    /// Bound (address, port)s.
    pub sockets: Changes<SocketAddr>,
    /// Gateway listeners.
    pub listeners: Changes<ListenerId>,
    /// Route rules.
    pub routes: Changes<RouteId>,
    /// Backends by display name (`namespace/service:port`, `host:port`).
    pub backends: Changes<String>,
}

impl TableDiff {
    /// The two tables serve the same thing.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
            && self.listeners.is_empty()
            && self.routes.is_empty()
            && self.backends.is_empty()
    }
}

/// Where a route is attached: (listener, the hostname it is indexed under there).
type Attachments = BTreeSet<(ListenerId, Option<HostPattern>)>;

/// Everything of a table, keyed.
struct Keyed<'t> {
    sockets: BTreeMap<SocketAddr, Vec<(ListenerId, Option<HostPattern>)>>,
    listeners: BTreeMap<ListenerId, &'t ListenerTable>,
    /// Each route with where it is attached.
    routes: BTreeMap<RouteId, (&'t Route, Attachments)>,
    backends: BTreeMap<String, &'t Backend>,
}

fn keyed(t: &RoutingTable) -> Keyed<'_> {
    let mut k = Keyed {
        sockets: BTreeMap::new(),
        listeners: BTreeMap::new(),
        routes: BTreeMap::new(),
        backends: BTreeMap::new(),
    };
    for s in &t.sockets {
        let entries = s.listeners.entries();
        k.sockets.insert(s.addr, entries.iter().map(|(h, l)| (l.id.clone(), h.clone())).collect());
        for (_, l) in entries {
            k.listeners.entry(l.id.clone()).or_insert(l);
            for (host, r) in l.routes.entries() {
                let (_, at) = k.routes.entry(r.id.clone()).or_insert((r, BTreeSet::new()));
                at.insert((l.id.clone(), host));
                for b in &r.backends {
                    k.backends.entry(b.backend.name().to_string()).or_insert(&b.backend);
                }
            }
        }
    }
    k
}

fn same_listener(a: &ListenerTable, b: &ListenerTable) -> bool {
    a.hostname == b.hostname
        && a.settings == b.settings
        && same_mode(&a.mode, &b.mode)
        && same_default(a.defaults.no_sni.as_deref(), b.defaults.no_sni.as_deref())
        && same_default(a.defaults.no_match.as_deref(), b.defaults.no_match.as_deref())
}

fn same_default(a: Option<&Route>, b: Option<&Route>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            same_route(a, b)
                && a.backends
                    .iter()
                    .zip(&b.backends)
                    .all(|(x, y)| same_backend(&x.backend, &y.backend))
        }
        _ => false,
    }
}

fn same_mode(a: &ListenerMode, b: &ListenerMode) -> bool {
    match (a, b) {
        (ListenerMode::Passthrough, ListenerMode::Passthrough) => true,
        (ListenerMode::Terminate(a), ListenerMode::Terminate(b)) => {
            let (ca, cb) = (a.certificates.load(), b.certificates.load());
            a.alpn == b.alpn
                && ca.0.len() == cb.0.len()
                && ca.0.iter().zip(cb.0.iter()).all(|(x, y)| {
                    x.source == y.source
                        && x.dns_names == y.dns_names
                        && x.key.cert.first().map(|c| c.as_ref())
                            == y.key.cert.first().map(|c| c.as_ref())
                })
        }
        _ => false,
    }
}

fn same_route(a: &Route, b: &Route) -> bool {
    a.backends.len() == b.backends.len()
        && a.backends.iter().zip(&b.backends).all(|(x, y)| {
            x.weight == y.weight && x.backend.name() == y.backend.name() && x.settings == y.settings
        })
}

fn same_backend(a: &Backend, b: &Backend) -> bool {
    match (a, b) {
        (Backend::Endpoints { addrs: x, .. }, Backend::Endpoints { addrs: y, .. }) => x == y,
        (Backend::Dns { host: hx, port: px, .. }, Backend::Dns { host: hy, port: py, .. }) => {
            hx == hy && px == py
        }
        (Backend::Invalid { reason: x, .. }, Backend::Invalid { reason: y, .. }) => x == y,
        _ => false,
    }
}

/// What changed from `old` to `new`.
pub fn diff(old: &RoutingTable, new: &RoutingTable) -> TableDiff {
    let (o, n) = (keyed(old), keyed(new));
    TableDiff {
        sockets: compare(&o.sockets, &n.sockets, |a, b| a == b),
        listeners: compare(&o.listeners, &n.listeners, |a, b| same_listener(a, b)),
        routes: compare(&o.routes, &n.routes, |(a, at_a), (b, at_b)| {
            same_route(a, b) && at_a == at_b
        }),
        backends: compare(&o.backends, &n.backends, |a, b| same_backend(a, b)),
    }
}

fn lists<T: fmt::Display>(f: &mut fmt::Formatter<'_>, what: &str, c: &Changes<T>) -> fmt::Result {
    names(f, &format!("added {what}"), &c.added)?;
    names(f, &format!("removed {what}"), &c.removed)?;
    names(f, &format!("changed {what}"), &c.changed)
}

fn names<T: fmt::Display>(f: &mut fmt::Formatter<'_>, what: &str, items: &[T]) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    write!(f, "; {what}: ")?;
    for (i, item) in items.iter().take(SHOWN).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    if items.len() > SHOWN {
        write!(f, " and {} more", items.len() - SHOWN)?;
    }
    Ok(())
}

/// `sockets +1 -0 ~0, listeners +1 -1 ~2, routes +0 -0 ~0, backends +0 -0 ~1; added sockets:
/// ...; removed listeners: ...` on one line, at most 10 names per list; `no changes` when empty.
impl fmt::Display for TableDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes");
        }
        fn counts<T>(f: &mut fmt::Formatter<'_>, what: &str, c: &Changes<T>) -> fmt::Result {
            write!(f, "{what} +{} -{} ~{}", c.added.len(), c.removed.len(), c.changed.len())
        }
        counts(f, "sockets", &self.sockets)?;
        counts(f, ", listeners", &self.listeners)?;
        counts(f, ", routes", &self.routes)?;
        counts(f, ", backends", &self.backends)?;
        lists(f, "sockets", &self.sockets)?;
        lists(f, "listeners", &self.listeners)?;
        lists(f, "routes", &self.routes)?;
        lists(f, "backends", &self.backends)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::CertificateDer;

    use super::*;
    use crate::index::HostIndex;
    use crate::settings::ListenerSettings;
    use crate::table::{SocketTable, WeightedBackend};
    use crate::tls::{CertificateSet, ServedCertificate, TerminateConfig};

    #[derive(Debug)]
    struct NoKey;
    impl rustls::sign::SigningKey for NoKey {
        fn choose_scheme(
            &self,
            _: &[rustls::SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ED25519
        }
    }

    fn terminate(source: &str, leaf: &[u8]) -> ListenerMode {
        let key = rustls::sign::CertifiedKey::new(
            vec![CertificateDer::from(leaf.to_vec())],
            Arc::new(NoKey),
        );
        let cert =
            ServedCertificate { source: source.into(), dns_names: vec![], key: Arc::new(key) };
        ListenerMode::Terminate(Arc::new(TerminateConfig::new(CertificateSet(vec![cert]))))
    }

    fn rid(name: &str) -> RouteId {
        RouteId { namespace: "ns".into(), name: name.into(), rule: 0 }
    }

    fn lid(name: &str) -> ListenerId {
        ListenerId { namespace: "ns".into(), gateway: "gw".into(), listener: name.into() }
    }

    fn route(name: &str, backends: Vec<(u32, Backend)>) -> Arc<Route> {
        let b = backends.into_iter().map(|(weight, backend)| WeightedBackend::new(weight, backend));
        Arc::new(Route::new(rid(name), b.collect()))
    }

    fn endpoints(name: &str, addrs: &[&str]) -> Backend {
        Backend::endpoints(name, addrs.iter().map(|a| a.parse().unwrap()).collect())
    }

    fn listener(name: &str, mode: ListenerMode, routes: Vec<Arc<Route>>) -> ListenerTable {
        let mut idx = HostIndex::new();
        for r in routes {
            let host = HostPattern::parse(&format!("{}.example.com", r.id.name));
            idx.insert_first(Some(&host), r);
        }
        ListenerTable {
            id: lid(name),
            hostname: None,
            mode,
            settings: ListenerSettings::default(),
            routes: idx,
            defaults: Default::default(),
        }
    }

    fn table(sockets: Vec<(&str, Vec<ListenerTable>)>) -> RoutingTable {
        let sockets = sockets
            .into_iter()
            .map(|(addr, ls)| {
                let mut idx = HostIndex::new();
                for l in ls {
                    let h = l.hostname.clone();
                    idx.insert_first(h.as_ref(), Arc::new(l));
                }
                SocketTable { addr: addr.parse().unwrap(), listeners: idx }
            })
            .collect();
        RoutingTable { sockets }
    }

    fn base() -> RoutingTable {
        table(vec![(
            "0.0.0.0:443",
            vec![listener(
                "tls",
                ListenerMode::Passthrough,
                vec![route("a", vec![(1, endpoints("ns/a:443", &["10.0.0.1:443"]))])],
            )],
        )])
    }

    #[test]
    fn identical_tables_have_no_changes() {
        let d = diff(&base(), &base());
        assert!(d.is_empty());
        assert_eq!(d.to_string(), "no changes");
    }

    #[test]
    fn a_new_socket_with_its_listener_route_and_backend_is_added() {
        let mut new = base();
        new.sockets.extend(
            table(vec![(
                "0.0.0.0:8443",
                vec![listener(
                    "alt",
                    ListenerMode::Passthrough,
                    vec![route("b", vec![(1, endpoints("ns/b:443", &["10.0.0.2:443"]))])],
                )],
            )])
            .sockets,
        );
        let d = diff(&base(), &new);
        assert_eq!(d.sockets.added, ["0.0.0.0:8443".parse::<SocketAddr>().unwrap()]);
        assert_eq!(d.listeners.added, [lid("alt")]);
        assert_eq!(d.routes.added, [rid("b")]);
        assert_eq!(d.backends.added, ["ns/b:443"]);
        assert_eq!(
            d.to_string(),
            "sockets +1 -0 ~0, listeners +1 -0 ~0, routes +1 -0 ~0, backends +1 -0 ~0; added \
             sockets: 0.0.0.0:8443; added listeners: ns/gw/alt; added routes: ns/b#0; added \
             backends: ns/b:443"
        );
        let back = diff(&new, &base());
        assert_eq!(back.listeners.removed, [lid("alt")]);
        assert!(back.listeners.added.is_empty());
    }

    #[test]
    fn new_endpoints_change_the_backend_but_not_its_route() {
        let new = table(vec![(
            "0.0.0.0:443",
            vec![listener(
                "tls",
                ListenerMode::Passthrough,
                vec![route("a", vec![(1, endpoints("ns/a:443", &["10.0.0.9:443"]))])],
            )],
        )]);
        let d = diff(&base(), &new);
        assert_eq!(d.backends.changed, ["ns/a:443"]);
        assert!(d.routes.is_empty() && d.listeners.is_empty() && d.sockets.is_empty());
    }

    #[test]
    fn a_route_moved_to_another_hostname_is_changed() {
        let mut moved = HostIndex::new();
        let r = route("a", vec![(1, endpoints("ns/a:443", &["10.0.0.1:443"]))]);
        moved.insert_first(Some(&HostPattern::parse("a2.example.com")), r);
        let mut l = listener("tls", ListenerMode::Passthrough, vec![]);
        l.routes = moved;
        let d = diff(&base(), &table(vec![("0.0.0.0:443", vec![l])]));
        assert_eq!(d.routes.changed, [rid("a")]);
        assert!(d.backends.is_empty() && d.listeners.is_empty());
    }

    #[test]
    fn a_new_weight_changes_the_route() {
        let new = table(vec![(
            "0.0.0.0:443",
            vec![listener(
                "tls",
                ListenerMode::Passthrough,
                vec![route("a", vec![(5, endpoints("ns/a:443", &["10.0.0.1:443"]))])],
            )],
        )]);
        let d = diff(&base(), &new);
        assert_eq!(d.routes.changed, [rid("a")]);
        assert!(d.backends.is_empty());
    }

    #[test]
    fn new_settings_change_the_listener() {
        let new = base();
        let mut l = listener(
            "tls",
            ListenerMode::Passthrough,
            vec![route("a", vec![(1, endpoints("ns/a:443", &["10.0.0.1:443"]))])],
        );
        l.settings.idle_timeout = Some(Duration::from_secs(60));
        let changed = table(vec![("0.0.0.0:443", vec![l])]);
        let d = diff(&new, &changed);
        assert_eq!(d.listeners.changed, [lid("tls")]);
        assert!(d.sockets.is_empty(), "same listeners on the socket: {d}");
    }

    #[test]
    fn a_rotated_certificate_with_the_same_source_changes_the_listener() {
        let with = |leaf: &[u8]| {
            table(vec![("0.0.0.0:443", vec![listener("tls", terminate("ns/cert", leaf), vec![])])])
        };
        assert!(diff(&with(b"leaf-1"), &with(b"leaf-1")).is_empty());
        let d = diff(&with(b"leaf-1"), &with(b"leaf-2"));
        assert_eq!(d.listeners.changed, [lid("tls")]);
        let d = diff(&base(), &with(b"leaf-1"));
        assert_eq!(d.listeners.changed, [lid("tls")], "Passthrough to Terminate");
    }

    #[test]
    fn the_summary_shows_ten_names_per_list_and_counts_the_rest() {
        let many = |n: usize| {
            let ls = (0..n)
                .map(|i| {
                    let mut l = listener(&format!("l{i:02}"), ListenerMode::Passthrough, vec![]);
                    l.hostname = Some(HostPattern::parse(&format!("h{i}.example.com")));
                    l
                })
                .collect();
            table(vec![("0.0.0.0:443", ls)])
        };
        let d = diff(&many(0), &many(13));
        let text = d.to_string();
        assert!(text.contains("ns/gw/l09 and 3 more"), "{text}");
        assert!(!text.contains("l10"), "{text}");
        assert_eq!(d.listeners.added.len(), 13);
        assert!(d.listeners.added.windows(2).all(|w| w[0] < w[1]), "sorted");
    }
}

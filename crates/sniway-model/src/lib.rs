//! The API-neutral routing model shared by the compiler and the data plane.
//!
//! ```text
//! RoutingTable
//!   └─ SocketTable (address, port)        one listening socket
//!        └─ ListenerTable by hostname     most specific listener wins, no fall-through
//!             └─ Route by hostname        most specific route wins
//!                  └─ WeightedBackend     Endpoints | Dns | Invalid (its share is refused)
//! ```
//!
//! This crate does no I/O and knows nothing of Kubernetes types: `sniway-compile` builds the
//! table from Gateway API objects; `sniway-proxy` reads it.
#![warn(missing_docs)]

pub mod diff;
pub mod hostname;
pub mod index;
pub mod settings;
pub mod table;
pub mod tls;

pub use diff::{Changes, TableDiff, diff};
pub use hostname::{HostPattern, Specificity, intersect, normalize};
pub use index::HostIndex;
pub use settings::{BackendSettings, ListenerSettings};
pub use table::{
    Backend, DefaultRoutes, ListenerId, ListenerMode, ListenerTable, Lookup, Route, RouteId,
    RoutingTable, SocketTable, WeightedBackend,
};
pub use tls::{CertificateSet, ServedCertificate, TerminateConfig};

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;

    fn listener(host: Option<&str>, routes: &[(Option<&str>, &str)]) -> Arc<ListenerTable> {
        let mut idx = HostIndex::new();
        for (h, name) in routes {
            let id = RouteId { namespace: "ns".into(), name: (*name).into(), rule: 0 };
            idx.insert_first(h.map(HostPattern::parse).as_ref(), Arc::new(Route::new(id, vec![])));
        }
        Arc::new(ListenerTable {
            id: ListenerId {
                namespace: "ns".into(),
                gateway: "gw".into(),
                listener: host.unwrap_or("any").into(),
            },
            hostname: host.map(HostPattern::parse),
            mode: ListenerMode::Passthrough,
            settings: ListenerSettings::default(),
            routes: idx,
            defaults: DefaultRoutes::default(),
        })
    }

    fn socket(listeners: Vec<Arc<ListenerTable>>) -> SocketTable {
        let mut idx = HostIndex::new();
        for l in listeners {
            let h = l.hostname.clone();
            idx.insert_first(h.as_ref(), l);
        }
        SocketTable { addr: "127.0.0.1:443".parse::<SocketAddr>().unwrap(), listeners: idx }
    }

    fn routed(s: &SocketTable, sni: &str) -> Option<String> {
        match s.lookup(sni) {
            Lookup::Route { route, .. } => Some(route.id.name.clone()),
            _ => None,
        }
    }

    #[test]
    fn a_more_specific_listener_without_a_matching_route_does_not_fall_through() {
        let s = socket(vec![
            listener(Some("foo.example.com"), &[]),
            listener(Some("*.example.com"), &[(Some("*.example.com"), "wild")]),
        ]);
        assert!(matches!(s.lookup("foo.example.com"), Lookup::NoRoute { .. }));
        assert_eq!(routed(&s, "bar.example.com").as_deref(), Some("wild"));
    }

    #[test]
    fn sni_is_matched_case_insensitively_without_trailing_dot() {
        let s = socket(vec![listener(None, &[(Some("abc.example.com"), "abc")])]);
        assert_eq!(routed(&s, "ABC.Example.com.").as_deref(), Some("abc"));
        assert_eq!(routed(&s, "abd.example.com"), None);
    }

    #[test]
    fn ip_literal_and_empty_names_never_match() {
        let s = socket(vec![listener(None, &[(None, "all")])]);
        assert_eq!(routed(&s, "x.y").as_deref(), Some("all"));
        assert!(matches!(s.lookup("127.0.0.1"), Lookup::NoListener));
        assert!(matches!(s.lookup(""), Lookup::NoListener));
    }

    #[test]
    fn pick_honours_weights_and_never_picks_weight_zero() {
        let b = |w, n: &str| WeightedBackend::new(w, Backend::endpoints(n, vec![]));
        let r = Route::new(
            RouteId { namespace: "n".into(), name: "r".into(), rule: 0 },
            vec![b(0, "zero"), b(3, "three"), b(1, "one")],
        );
        assert_eq!(r.total_weight(), 4);
        let names: Vec<&str> = (0..4).map(|i| r.pick(i).unwrap().backend.name()).collect();
        assert_eq!(names, ["three", "three", "three", "one"]);
        assert!(r.pick(4).is_none());
    }

    #[test]
    fn table_serializes_for_the_routes_endpoint() {
        let s = socket(vec![listener(Some("*.example.com"), &[(Some("a.example.com"), "a")])]);
        let t = RoutingTable { sockets: vec![s] };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["sockets"][0]["addr"], "127.0.0.1:443");
        assert_eq!(t.route_count(), 1);
    }
}

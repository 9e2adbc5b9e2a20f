//! What a listener does with its clients beyond routing: timeouts, TCP keep-alive and connection
//! limits, as a `ListenerPolicy` (group `sniway.io`) sets them.
//!
//! Every field is optional: `None` means the policy does not set it and the data plane's default
//! (a command-line flag of `sniway run`) applies. The data plane merges the two when a table is
//! installed. A zero duration or count means "off" or "unlimited" where the field says so.
//!
//! [`BackendSettings`] is the same for a backend, as a `BackendPolicy` sets it: balancing,
//! failover, health checks, fallback, the PROXY protocol header sent to it, its limit.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// Per-listener settings from policy; unset fields take the data plane's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSettings {
    /// The whole ClientHello, from accept.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub hello_timeout: Option<Duration>,
    /// The TLS handshake of a Terminate listener, after the ClientHello.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub handshake_timeout: Option<Duration>,
    /// No byte either way for this long ends the connection; zero: no idle timeout.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub idle_timeout: Option<Duration>,
    /// One side has finished sending and the other stays silent this long; zero: no limit.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub half_close_timeout: Option<Duration>,
    /// Longest life of a connection from accept; zero: unlimited.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub max_lifetime: Option<Duration>,
    /// TCP keep-alive: idle time before the first probe; zero turns keep-alive off.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub keepalive_idle: Option<Duration>,
    /// TCP keep-alive: time between probes.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub keepalive_interval: Option<Duration>,
    /// TCP keep-alive: unanswered probes before the connection is dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_count: Option<u32>,
    /// Connections open at once on this listener; zero: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Connections open at once on this listener from one client address; zero: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_client: Option<u32>,
    /// Accepting a PROXY protocol header from a load balancer in front; unset: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<AcceptProxyProtocol>,
    /// What a ClientHello without `server_name` gets; unset: [`Unmatched::Close`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_sni: Option<Unmatched>,
    /// What a server name no route takes gets; unset: [`Unmatched::Close`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_match: Option<Unmatched>,
    /// How routes on this listener relay by default; unset: the data plane's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<Relay>,
}

/// How a listener takes a PROXY protocol header (v1 or v2) from a load balancer in front.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptProxyProtocol {
    /// Off, Optional or Required.
    pub mode: ProxyProtocolMode,
    /// Peers whose header is believed. A header from any other peer closes the connection;
    /// empty: no peer is trusted.
    #[serde(rename = "trustedCIDRs")]
    pub trusted_cidrs: Vec<Cidr>,
}

impl AcceptProxyProtocol {
    /// Whether a header from `peer` is believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_cidrs.iter().any(|c| c.contains(peer))
    }
}

/// Whether a listener reads a PROXY protocol header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum ProxyProtocolMode {
    /// Never: the first bytes are the client's.
    #[default]
    Off,
    /// From a trusted peer, a header is read when present.
    Optional,
    /// Every connection starts with a header from a trusted peer, or is closed.
    Required,
}

/// An IP network, `10.0.0.0/8` or `fd00::/8`; a bare address is a single host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a
    /// dual-stack socket reports IPv4 peers) is matched as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IP network (such as 10.0.0.0/8 or fd00::/8)");
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a listener does with a client no route takes (no `server_name`, or a name that no
/// route matches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Unmatched {
    /// Close the connection without writing (the Gateway API's behaviour).
    #[default]
    Close,
    /// Send a fatal TLS `unrecognized_name` alert (RFC 6066 §3), then close.
    Alert,
    /// Relay to the listener's default backend ([`crate::table::DefaultRoutes`]).
    Backend,
}

/// How a connection's bytes are moved once routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Relay {
    /// `splice(2)` through a pipe for bulk bursts, copies for small ones.
    Splice,
    /// Copies through a user-space buffer.
    Copy,
    /// An in-kernel relay (eBPF sockhash).
    Kernel,
}

/// Per-backend settings from a `BackendPolicy`; unset fields take the data plane's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendSettings {
    /// Receives connections only while every primary (non-fallback) endpoint of the route is
    /// unhealthy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
    /// Deadline of each connect attempt.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub connect_timeout: Option<Duration>,
    /// Endpoints tried per connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_attempts: Option<u32>,
    /// How an endpoint is chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Active health checks; unset: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_health: Option<ActiveHealthCheck>,
    /// Passive ejection after failed connects; unset: the data plane's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive_health: Option<PassiveHealthCheck>,
    /// What happens when every endpoint is unhealthy; unset: [`WhenAllUnhealthy::FailOpen`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when_all_unhealthy: Option<WhenAllUnhealthy>,
    /// The PROXY protocol header sent to the backend; unset: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// Connections open at once to this backend; zero: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// How connections to this backend relay, over the listener's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<Relay>,
}

/// Endpoint selection within a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum LoadBalancer {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The endpoint with the fewest open connections.
    LeastConnections,
    /// Of two endpoints chosen at random, the one with fewer open connections.
    PowerOfTwoChoices,
}

/// Active health checks of every endpoint of a backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveHealthCheck {
    /// What a check does.
    pub probe: Probe,
    /// Time between checks of one endpoint.
    #[serde(serialize_with = "duration_always")]
    pub interval: Duration,
    /// Deadline of one check.
    #[serde(serialize_with = "duration_always")]
    pub timeout: Duration,
    /// Consecutive passes that make an unhealthy endpoint healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
}

/// What an active check does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Probe {
    /// A TCP connect.
    #[serde(rename = "TCP")]
    Tcp,
    /// A TLS ClientHello, expecting a ServerHello; with `verify`, a full handshake and the
    /// backend's certificate verified against `ca` for `sni`.
    #[serde(rename = "TLS", rename_all = "camelCase")]
    Tls {
        /// The server name sent (and verified, with `verify`).
        sni: Option<String>,
        /// Complete the handshake and verify the certificate.
        verify: bool,
        /// Trusted roots, PEM; empty with `verify`: the handshake is refused (no system roots).
        #[serde(skip)]
        ca_pem: Vec<String>,
        /// Where the roots came from, for views (`namespace/configmap`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        ca_sources: Vec<String>,
    },
}

/// Passive health: ejection after failed connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassiveHealthCheck {
    /// Consecutive failed connects that eject an endpoint; zero: never.
    pub consecutive_failures: u32,
    /// First ejection time, doubled on each repeated ejection up to 5 minutes.
    #[serde(serialize_with = "duration_always")]
    pub ejection_time: Duration,
}

/// What a backend whose endpoints are all unhealthy does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum WhenAllUnhealthy {
    /// Use every endpoint as if healthy.
    #[default]
    FailOpen,
    /// Refuse its share of connections.
    Refuse,
}

/// The PROXY protocol header sent to a backend before the client's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum ProxyProtocolVersion {
    /// None.
    #[default]
    Off,
    /// The text header (v1).
    V1,
    /// The binary header (v2), with the authority (SNI) and ALPN TLVs.
    V2,
}

/// Formats a duration as the Gateway API writes them (`1h`, `5m`, `10s`, `500ms`), for the
/// `/routes` view.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn duration_always<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_shown_in_the_largest_whole_unit() {
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn unset_fields_are_left_out_of_the_routes_view() {
        let s =
            ListenerSettings { idle_timeout: Some(Duration::from_secs(60)), ..Default::default() };
        assert_eq!(serde_json::to_value(&s).unwrap(), serde_json::json!({"idleTimeout": "1m"}));
    }

    fn net(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_and_no_others() {
        assert!(net("10.0.0.0/8").contains("10.200.3.4".parse().unwrap()));
        assert!(!net("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(net("127.0.0.1").contains("127.0.0.1".parse().unwrap()));
        assert!(!net("127.0.0.1").contains("127.0.0.2".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("203.0.113.9".parse().unwrap()));
        assert!(net("fd00::/8").contains("fd12::1".parse().unwrap()));
        assert!(!net("fd00::/8").contains("fe80::1".parse().unwrap()));
        assert!(!net("10.0.0.0/8").contains("fd00::1".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        assert!(net("10.0.0.0/8").contains("::ffff:10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn networks_are_written_with_host_bits_cleared() {
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("::1").to_string(), "::1/128");
    }

    #[test]
    fn malformed_networks_are_refused() {
        for bad in ["", "10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "fd00::/129", "x/8", "1.2.3.4/+8"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }
}

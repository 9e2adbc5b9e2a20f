//! What a listener does with its clients beyond routing: timeouts, TCP keep-alive and connection
//! limits, as a `ListenerPolicy` (group `sniway.io`) sets them.
//!
//! Every field is optional: `None` means the policy does not set it and the data plane's default
//! (a command-line flag of `sniway run`) applies. The data plane merges the two when a table is
//! installed. A zero duration or count means "off" or "unlimited" where the field says so.

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
}

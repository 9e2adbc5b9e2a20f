//! The data plane's errors: one enum for the proxy as a whole ([`ProxyError`]) and one for a
//! single connection ([`ConnError`]), whose variants each say which side failed ([`Side`]).
//!
//! A `ConnError` never reaches the peer: the Gateway API conformance suite treats a TLS alert as a
//! failure, so every refusal is a plain close (FIN, or RST when unread bytes are pending). The one
//! exception is a failed handshake on a Terminate listener, after the listener was chosen: rustls
//! may answer it with an alert, as any TLS server does. No variant carries key material. The
//! variants exist so that logs, and later metrics, can name the reason; [`ConnError::reason`] is
//! the stable label for that.

use std::io;
use std::net::SocketAddr;

use thiserror::Error;

/// Errors of the proxy as a whole.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// A listening socket could not be created or bound (address in use, permission denied,
    /// address not available on this host).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the routing table.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// Which party a connection error is blamed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The downstream client: what it sent, or how its socket behaved.
    Client,
    /// The upstream backend: resolution, connect, or its socket during the relay.
    Backend,
    /// The routing configuration: no listener, no route or no usable backend for the name.
    Config,
}

impl Side {
    /// A lowercase label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
            Side::Config => "config",
        }
    }
}

/// Why a connection ended before, or while, relaying.
#[derive(Debug, Error)]
pub enum ConnError {
    /// Client: the bytes are not a TLS ClientHello (another protocol, SSLv2, a malformed or
    /// oversized hello), as decided by the ClientHello parser.
    #[error("not a usable ClientHello: {0}")]
    BadHello(sniway_wire::HelloError),
    /// Client: the hello did not fit in the detection buffer.
    #[error("ClientHello larger than {limit} bytes")]
    HelloTooLarge {
        /// The buffer limit in bytes.
        limit: usize,
    },
    /// Client: the complete hello did not arrive before the deadline.
    #[error("ClientHello not complete after {0:?}")]
    HelloTimeout(std::time::Duration),
    /// Client: the connection closed before the hello was complete.
    #[error("connection closed after {read} bytes, before a complete ClientHello")]
    HelloEof {
        /// Bytes received before the end of stream.
        read: usize,
    },
    /// Client: reading the hello failed (reset, for instance).
    #[error("reading the ClientHello: {0}")]
    HelloRead(#[source] io::Error),
    /// Client: the hello carries no server_name extension; passthrough routes by SNI only.
    #[error("ClientHello without SNI")]
    NoSni,
    /// Client: the server_name extension is present but not a usable host name.
    #[error("ClientHello with an invalid server_name")]
    InvalidSni,
    /// Config: no listener on this socket accepts the name.
    #[error("no listener for {sni:?}")]
    NoListener {
        /// The requested name.
        sni: String,
    },
    /// Config: the most specific listener for the name has no route for it (no fall-through to a
    /// less specific listener).
    #[error("listener {listener} has no route for {sni:?}")]
    NoRoute {
        /// The listener that took the name (`namespace/gateway/listener`).
        listener: String,
        /// The requested name.
        sni: String,
    },
    /// Config: the listener's mode is not served by this data plane.
    #[error("listener {listener} is not in a served mode")]
    UnsupportedMode {
        /// The listener (`namespace/gateway/listener`).
        listener: String,
    },
    /// Config: every backend of the route has weight 0.
    #[error("route {route} has no backend with a weight above 0")]
    NoBackend {
        /// The route rule (`namespace/name#rule`).
        route: String,
    },
    /// Config: the weighted choice fell on a backendRef that could not be resolved; the Gateway
    /// API requires its share of connections to be refused.
    #[error("backend {backend} is invalid: {reason}")]
    InvalidBackend {
        /// The backend's display name.
        backend: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Config: the backend has no endpoint addresses (no ready endpoints, or DNS returned none).
    #[error("backend {backend} has no endpoints")]
    NoEndpoints {
        /// The backend's display name.
        backend: String,
    },
    /// Backend: every endpoint of the route's backends is unhealthy, no fallback is usable, and
    /// the backend's policy says `whenAllUnhealthy: Refuse`.
    #[error("backend {backend} has no healthy endpoint")]
    Unhealthy {
        /// The backend's display name.
        backend: String,
    },
    /// Backend: resolving the backend's DNS name failed.
    #[error("resolving {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// Backend: connecting failed or timed out (the last address tried is named).
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The endpoint address.
        addr: SocketAddr,
        /// The error, `TimedOut` for the connect deadline.
        #[source]
        source: io::Error,
    },
    /// Config: a Terminate listener has no certificate to serve (refused before the handshake).
    #[error("listener {listener} has no certificate")]
    NoCertificate {
        /// The listener (`namespace/gateway/listener`).
        listener: String,
    },
    /// Config: the listener's rustls configuration could not be built.
    #[error("TLS configuration: {0}")]
    TlsConfig(#[source] rustls::Error),
    /// Client: the TLS handshake on a Terminate listener failed after the listener was chosen (no
    /// shared protocol version or cipher suite, a client alert, an abort, a malformed message).
    /// rustls may have sent an alert.
    #[error("TLS handshake: {0}")]
    TlsHandshake(#[source] io::Error),
    /// Client: the TLS handshake was not complete before its deadline.
    #[error("TLS handshake not complete after {0:?}")]
    TlsHandshakeTimeout(std::time::Duration),
    /// Client: reading from or writing to the client failed during the relay.
    #[error("client socket: {0}")]
    ClientIo(#[source] io::Error),
    /// Backend: reading from or writing to the backend failed during the relay.
    #[error("backend socket: {0}")]
    BackendIo(#[source] io::Error),
    /// Config: the connection was still open when the shutdown drain deadline passed.
    #[error("cut at the end of the shutdown drain")]
    Drained,
    /// Config: no byte moved either way for the listener's idle timeout.
    #[error("idle for {0:?}")]
    IdleTimeout(std::time::Duration),
    /// Config: one side had finished and the other stayed silent for the half-close timeout.
    #[error("half-closed and silent for {0:?}")]
    HalfCloseTimeout(std::time::Duration),
    /// Config: the connection reached the listener's maximum lifetime.
    #[error("maximum connection lifetime reached")]
    MaxLifetime,
    /// Config: a connection limit was reached; the connection is closed at once.
    #[error("connection limit reached: {0}")]
    Limit(Limit),
    /// Client: the PROXY protocol header is malformed, too large, or not a PROXY header where
    /// one was expected.
    #[error("PROXY protocol header: {0}")]
    ProxyHeader(String),
    /// Client: the listener requires a PROXY protocol header and the connection did not start
    /// with one.
    #[error("no PROXY protocol header where one is required")]
    ProxyHeaderMissing,
    /// Client: a PROXY protocol header (or, where one is required, any connection) from a peer
    /// outside the trusted networks.
    #[error("PROXY protocol header from untrusted peer {peer}")]
    ProxyUntrusted {
        /// The peer that sent it.
        peer: std::net::IpAddr,
    },
    /// Client: a PostgreSQL client broke the SSLRequest exchange (bytes sent before the
    /// answer, a second request).
    #[error("PostgreSQL preamble: {0}")]
    PostgresPreamble(&'static str),
    /// Backend: the PostgreSQL backend did not accept TLS (its answer to SSLRequest was not `S`).
    #[error("PostgreSQL backend: {0}")]
    PostgresBackend(String),
    /// Config: no route takes the client's server name (or it sent none), and the listener
    /// answers with a TLS `unrecognized_name` alert before closing.
    #[error("no route for the client ({kind}); answered with an unrecognized_name alert")]
    UnrecognizedName {
        /// `no_sni` or `no_match`.
        kind: &'static str,
    },
}

/// Which connection limit refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The process-wide `--max-connections`.
    Global,
    /// The listener's `limits.connections`.
    Listener,
    /// The listener's `limits.connectionsPerClient`, for the client's address.
    Client,
    /// The backend's connection limit.
    Backend,
}

impl Limit {
    /// A lowercase label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Global => "global",
            Limit::Listener => "listener",
            Limit::Client => "client",
            Limit::Backend => "backend",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ConnError {
    /// Which side failed.
    pub fn side(&self) -> Side {
        use ConnError::*;
        match self {
            BadHello(_)
            | HelloTooLarge { .. }
            | HelloTimeout(_)
            | HelloEof { .. }
            | HelloRead(_)
            | NoSni
            | InvalidSni
            | TlsHandshake(_)
            | TlsHandshakeTimeout(_)
            | ClientIo(_)
            | ProxyHeader(_)
            | ProxyHeaderMissing
            | ProxyUntrusted { .. }
            | PostgresPreamble(_) => Side::Client,
            NoListener { .. }
            | NoRoute { .. }
            | UnsupportedMode { .. }
            | NoBackend { .. }
            | InvalidBackend { .. }
            | NoEndpoints { .. }
            | NoCertificate { .. }
            | TlsConfig(_)
            | Drained
            | IdleTimeout(_)
            | HalfCloseTimeout(_)
            | MaxLifetime
            | Limit(_)
            | UnrecognizedName { .. } => Side::Config,
            Unhealthy { .. }
            | Resolve { .. }
            | Connect { .. }
            | BackendIo(_)
            | PostgresBackend(_) => Side::Backend,
        }
    }

    /// A stable snake_case label for the reason, for logs and (later) metrics.
    pub fn reason(&self) -> &'static str {
        use ConnError::*;
        match self {
            BadHello(_) => "bad_hello",
            HelloTooLarge { .. } => "hello_too_large",
            HelloTimeout(_) => "hello_timeout",
            HelloEof { .. } => "hello_eof",
            HelloRead(_) => "hello_read",
            NoSni => "no_sni",
            InvalidSni => "invalid_sni",
            NoListener { .. } => "no_listener",
            NoRoute { .. } => "no_route",
            UnsupportedMode { .. } => "unsupported_mode",
            NoBackend { .. } => "no_backend",
            InvalidBackend { .. } => "invalid_backend",
            NoEndpoints { .. } => "no_endpoints",
            Unhealthy { .. } => "unhealthy",
            Resolve { .. } => "resolve",
            Connect { .. } => "connect",
            NoCertificate { .. } => "no_certificate",
            TlsConfig(_) => "tls_config",
            TlsHandshake(_) => "tls_handshake",
            TlsHandshakeTimeout(_) => "tls_handshake_timeout",
            ClientIo(_) => "client_io",
            BackendIo(_) => "backend_io",
            Drained => "drained",
            IdleTimeout(_) => "idle_timeout",
            HalfCloseTimeout(_) => "half_close_timeout",
            MaxLifetime => "max_lifetime",
            Limit(l) => match l {
                self::Limit::Global => "limit_global",
                self::Limit::Listener => "limit_listener",
                self::Limit::Client => "limit_client",
                self::Limit::Backend => "limit_backend",
            },
            ProxyHeader(_) => "proxy_header",
            ProxyHeaderMissing => "proxy_header_missing",
            ProxyUntrusted { .. } => "proxy_untrusted",
            PostgresPreamble(_) => "postgres_preamble",
            PostgresBackend(_) => "postgres_backend",
            UnrecognizedName { .. } => "unrecognized_name",
        }
    }

    /// The `reason` label of `sniway_hello_failures_total` for an error before routing: timeout,
    /// not_tls, malformed, oversized, no_sni, invalid_sni, no_route, closed, read_error,
    /// proxy_header, proxy_header_missing, proxy_untrusted, postgres_preamble. `None` for errors
    /// after a listener was chosen.
    pub fn hello_reason(&self) -> Option<&'static str> {
        use ConnError::*;
        use sniway_wire::HelloError as H;
        Some(match self {
            HelloTimeout(_) => "timeout",
            HelloTooLarge { .. } | BadHello(H::TooLarge) => "oversized",
            BadHello(H::Malformed(_) | H::RecordOverflow) => "malformed",
            BadHello(_) => "not_tls",
            NoSni => "no_sni",
            InvalidSni => "invalid_sni",
            NoListener { .. } | NoRoute { .. } => "no_route",
            HelloEof { .. } => "closed",
            HelloRead(_) => "read_error",
            ProxyHeader(_) => "proxy_header",
            ProxyHeaderMissing => "proxy_header_missing",
            ProxyUntrusted { .. } => "proxy_untrusted",
            PostgresPreamble(_) => "postgres_preamble",
            UnrecognizedName { kind: "no_sni" } => "no_sni",
            UnrecognizedName { .. } => "no_route",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_problems_blame_the_client_and_routing_gaps_the_config() {
        assert_eq!(ConnError::BadHello(sniway_wire::HelloError::NotTls).side(), Side::Client);
        assert_eq!(ConnError::NoSni.side(), Side::Client);
        assert_eq!(
            ConnError::NoRoute { listener: "l".into(), sni: "s".into() }.side(),
            Side::Config
        );
        assert_eq!(
            ConnError::InvalidBackend { backend: "b".into(), reason: "r".into() }.side(),
            Side::Config
        );
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let e = ConnError::Connect { addr: "127.0.0.1:1".parse().unwrap(), source: refused };
        assert_eq!((e.side(), e.reason()), (Side::Backend, "connect"));
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    }

    #[test]
    fn failed_handshakes_blame_the_client_with_their_own_reasons() {
        let e = ConnError::TlsHandshake(io::Error::new(io::ErrorKind::InvalidData, "no version"));
        assert_eq!((e.side(), e.reason()), (Side::Client, "tls_handshake"));
        let e = ConnError::TlsHandshakeTimeout(std::time::Duration::from_secs(10));
        assert_eq!((e.side(), e.reason()), (Side::Client, "tls_handshake_timeout"));
        let e = ConnError::NoCertificate { listener: "ns/gw/l".into() };
        assert_eq!((e.side(), e.reason()), (Side::Config, "no_certificate"));
    }
}

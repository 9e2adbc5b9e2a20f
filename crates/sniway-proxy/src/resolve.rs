//! DNS resolution of backends named by host (`ExternalName` Services, external host names).
//!
//! One resolver (hickory-resolver) serves the whole proxy: connections and active health
//! checks. Its cache keeps each answer for the records' TTL (RFC 1035 §3.2.1; RFC 2181 §8), so a
//! name is asked again once its TTL has passed, neither on every connection nor only at start.
//! It reads the system's configuration (`/etc/resolv.conf`) unless a name server is given
//! ([`crate::ProxyConfig::dns_server`], `sniway run --dns-server`), and is built on first use.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// The proxy's shared resolver; cloning gives another handle to it.
#[derive(Clone)]
pub(crate) struct Resolver {
    server: Option<SocketAddr>,
    built: Arc<OnceLock<Result<TokioResolver, String>>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").field("server", &self.server).finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver asking `server` (UDP, then TCP for truncated answers), or the system's name
    /// servers.
    pub fn new(server: Option<SocketAddr>) -> Resolver {
        Resolver { server, built: Arc::new(OnceLock::new()) }
    }

    fn get(&self) -> Result<&TokioResolver, String> {
        let built = self.built.get_or_init(|| {
            let provider = TokioRuntimeProvider::default();
            let builder = match self.server {
                Some(addr) => {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for c in &mut ns.connections {
                        c.port = addr.port();
                    }
                    let config = ResolverConfig::from_parts(None, Vec::new(), vec![ns]);
                    TokioResolver::builder_with_config(config, provider)
                        .with_options(ResolverOpts::default())
                }
                None => TokioResolver::builder(provider).map_err(|e| e.to_string())?,
            };
            builder.build().map_err(|e| e.to_string())
        });
        built.as_ref().map_err(|e| format!("DNS resolver not available: {e}"))
    }

    /// The addresses of `host`, each with `port`; an IP literal is itself.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let resolver = self.get().map_err(io::Error::other)?;
        let found = resolver.lookup_ip(host).await.map_err(io::Error::other)?;
        let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address")));
        }
        Ok(addrs)
    }
}

//! Sends one rustls ClientHello to a TCP address, for capturing test fixtures.
//!
//! Used with `tests/data/capture.py` (see `tests/data/README.md`):
//!
//! ```text
//! cargo run -p sniway-wire --example rustls_client_hello -- 127.0.0.1:PORT SNI [ALPN...]
//! ```
//!
//! It writes the first flight and exits; it never reads a reply.

use std::error::Error;
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: rustls_client_hello ADDR SNI [ALPN...]";
    let addr = args.next().ok_or(usage)?;
    let sni = ServerName::try_from(args.next().ok_or(usage)?)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = args.map(String::into_bytes).collect();

    let mut conn = ClientConnection::new(Arc::new(config), sni)?;
    let mut socket = TcpStream::connect(addr)?;
    while conn.wants_write() {
        conn.write_tls(&mut socket)?;
    }
    Ok(())
}

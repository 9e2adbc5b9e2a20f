//! One line per connection when it ends. (Placeholder while the writer lands; it records lines
//! in memory only.)

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `key=value` pairs.
    Text,
    /// One JSON object per line.
    Json,
}

/// What one line says.
#[derive(Debug)]
pub struct Record<'a> {
    /// Accept time.
    pub start: SystemTime,
    /// The client's address.
    pub client: SocketAddr,
    /// The gateway socket that accepted.
    pub local: SocketAddr,
    /// The listener, `namespace/gateway/listener`.
    pub listener: Option<&'a str>,
    /// The server name.
    pub sni: Option<&'a str>,
    /// ALPN protocols the client offered, comma-separated.
    pub alpn: Option<&'a str>,
    /// The route, `namespace/name#rule`.
    pub route: Option<&'a str>,
    /// The backend.
    pub backend: Option<&'a str>,
    /// The endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Bytes from the client.
    pub bytes_from_client: u64,
    /// Bytes to the client.
    pub bytes_to_client: u64,
    /// Accept to complete ClientHello.
    pub hello: Option<Duration>,
    /// Backend connect time.
    pub connect: Option<Duration>,
    /// Accept to close.
    pub total: Duration,
    /// Why it ended.
    pub reason: &'static str,
    /// Who ended it.
    pub ended_by: &'static str,
}

/// Appends one line for `rec`.
pub fn format(rec: &Record<'_>, _format: Format, out: &mut String) {
    out.push_str(&format!("{rec:?}\n"));
}

/// The access log.
#[derive(Clone, Debug)]
pub struct AccessLog {
    format: Format,
    lines: Arc<Mutex<Vec<String>>>,
}

impl AccessLog {
    /// Starts the log.
    pub fn start(format: Format, _out: Box<dyn std::io::Write + Send>) -> AccessLog {
        AccessLog { format, lines: Arc::default() }
    }

    /// Logs one line.
    pub fn log(&self, rec: &Record<'_>) {
        let mut s = String::new();
        format(rec, self.format, &mut s);
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }

    /// Lines dropped.
    pub fn dropped(&self) -> u64 {
        0
    }

    /// Flushes.
    pub fn flush(&self, _timeout: Duration) {}
}

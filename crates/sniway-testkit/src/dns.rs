//! A tiny DNS server on loopback UDP for tests: it answers every `A` question with one address
//! (changeable while it runs) and a fixed TTL, every other question with no answer, and counts
//! the `A` questions it answered (RFC 1035 §4.1 message format).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

/// A running DNS server; it stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    answer: Arc<Mutex<Ipv4Addr>>,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    /// Starts a server on an ephemeral loopback port answering `A` questions with `answer`
    /// and `ttl` seconds.
    pub async fn start(answer: Ipv4Addr, ttl: u32) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS server");
        let addr = socket.local_addr().expect("DNS server address");
        let current = Arc::new(Mutex::new(answer));
        let queries = Arc::new(AtomicUsize::new(0));
        let (a, q) = (Arc::clone(&current), Arc::clone(&queries));
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else { return };
                let ip = *a.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((reply, is_a)) = respond(&buf[..n], ip, ttl) {
                    if is_a {
                        q.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        DnsServer { addr, answer: current, queries, task }
    }

    /// Answers `ip` from now on.
    pub fn set_answer(&self, ip: Ipv4Addr) {
        *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = ip;
    }

    /// `A` questions answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reply to `query`, and whether it was an `A` question; `None` for a malformed query.
fn respond(query: &[u8], ip: Ipv4Addr, ttl: u32) -> Option<(Vec<u8>, bool)> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        i += len;
    }
    let question = query.get(12..i + 4)?;
    let qtype = u16::from_be_bytes([query[i], query[i + 1]]);
    let is_a = qtype == 1;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[0..2]);
    // QR, the opcode and RD copied, RA; NOERROR.
    out.push(0x80 | (query[2] & 0x79));
    out.push(0x80);
    out.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if is_a {
        out.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some((out, is_a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_a_question_gets_the_address_with_the_ttl() {
        // id 0x1234, RD, one question: a.b IN A
        let q = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 1, b'b', 0, 0, 1, 0, 1];
        let (r, is_a) = respond(&q, Ipv4Addr::new(127, 0, 0, 2), 7).unwrap();
        assert!(is_a);
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 2]);
        assert_eq!(&r[r.len() - 10..r.len() - 6], &7u32.to_be_bytes());
        assert!(respond(&q[..14], Ipv4Addr::LOCALHOST, 1).is_none());
    }
}

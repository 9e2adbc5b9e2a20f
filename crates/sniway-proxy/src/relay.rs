//! Relays bytes both ways between client and backend, half-close aware, holding no userspace
//! buffer while the connection is idle.
//!
//! # Half-close
//!
//! TCP closes each direction on its own (RFC 9293 §3.6: CLOSE is "an operation meaning 'I have
//! no more data to send'"; the side that closed may go on receiving until the other side has
//! closed too). When one side's read returns end of stream, the relay shuts down the write half
//! towards the other side (a FIN, after every byte read before it) and keeps copying the other
//! direction until that one ends too. The relay is done when both directions have ended.
//!
//! An error on either socket (a reset, typically) ends both directions at once: both sockets are
//! closed with `SO_LINGER` 0, so the surviving peer sees a reset rather than a clean end of
//! stream and cannot mistake an aborted stream for a complete one.
//!
//! # Buffers
//!
//! `tokio::io::copy_bidirectional` keeps an 8 KiB buffer per direction for the whole life of the
//! connection. Here a direction waits for readability with no buffer at all; once the socket is
//! readable it allocates a [`RELAY_BUFFER`] buffer, copies until a read would block, then drops
//! the buffer before waiting again. So an idle connection holds only its two sockets and a few
//! counters, and a busy one holds at most one buffer per direction. The cost is one allocation
//! per burst of data, small next to the system calls that move it.
//!
//! Order: each direction reads a chunk and writes all of it before reading the next, so no byte
//! is lost or reordered.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::SockRef;
use tokio::net::TcpStream;

use crate::error::ConnError;

/// Buffer size per direction while data flows.
pub const RELAY_BUFFER: usize = 32 * 1024;

/// Bytes moved in each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transferred {
    /// Bytes written to the backend, the replayed hello included.
    pub client_to_backend: u64,
    /// Bytes written to the client.
    pub backend_to_client: u64,
}

/// Writes `replay` (the bytes read during detection) to the backend, then relays both ways until
/// both directions have ended or either fails. Returns the bytes moved in any case.
pub async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    replay: Vec<u8>,
) -> (Transferred, Result<(), ConnError>) {
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let result = async {
        write_all(backend, &replay).await.map_err(ConnError::BackendIo)?;
        up.fetch_add(replay.len() as u64, Ordering::Relaxed);
        drop(replay);

        let c2b = copy_one_way(client, backend, &up);
        let b2c = copy_one_way(backend, client, &down);
        tokio::pin!(c2b, b2c);
        let (mut c2b_done, mut b2c_done) = (false, false);
        while !(c2b_done && b2c_done) {
            tokio::select! {
                r = &mut c2b, if !c2b_done => {
                    r.map_err(|e| e.blame(ConnError::ClientIo, ConnError::BackendIo))?;
                    c2b_done = true;
                }
                r = &mut b2c, if !b2c_done => {
                    r.map_err(|e| e.blame(ConnError::BackendIo, ConnError::ClientIo))?;
                    b2c_done = true;
                }
            }
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        // Propagate the abort: closing with linger 0 sends RST instead of FIN.
        for s in [client, backend] {
            let _ = SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
        }
    }
    let t = Transferred {
        client_to_backend: up.load(Ordering::Relaxed),
        backend_to_client: down.load(Ordering::Relaxed),
    };
    (t, result)
}

/// A failure in one direction: reading the source or writing the destination.
#[derive(Debug)]
enum DirError {
    Read(io::Error),
    Write(io::Error),
}

impl DirError {
    fn blame(self, src: fn(io::Error) -> ConnError, dst: fn(io::Error) -> ConnError) -> ConnError {
        match self {
            DirError::Read(e) => src(e),
            DirError::Write(e) => dst(e),
        }
    }
}

/// Copies `src` to `dst` until `src` ends, then shuts down `dst`'s write half.
async fn copy_one_way(src: &TcpStream, dst: &TcpStream, count: &AtomicU64) -> Result<(), DirError> {
    loop {
        // Idle: no buffer is held across this await.
        src.readable().await.map_err(DirError::Read)?;
        let mut buf = vec![0u8; RELAY_BUFFER];
        loop {
            match src.try_read(&mut buf) {
                Ok(0) => {
                    return shutdown_write(dst).map_err(DirError::Write);
                }
                Ok(n) => {
                    write_all(dst, &buf[..n]).await.map_err(DirError::Write)?;
                    count.fetch_add(n as u64, Ordering::Relaxed);
                    // `try_read`/`try_write` do not take part in tokio's cooperative budget; yield
                    // when it runs out so a fast stream cannot starve the other direction or
                    // other connections on this worker.
                    tokio::task::coop::consume_budget().await;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DirError::Read(e)),
            }
        }
        // `buf` is dropped here, before waiting for more data.
    }
}

/// Writes all of `data`, waiting for writability as needed.
async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends FIN on `dst` once everything before it has been written. A peer that has already gone
/// (`ENOTCONN`) is not an error here: the other direction reports it if it matters.
fn shutdown_write(dst: &TcpStream) -> io::Result<()> {
    match SockRef::from(dst).shutdown(Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

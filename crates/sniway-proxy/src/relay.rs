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
//! readable it reads into the worker thread's [`RELAY_BUFFER`] scratch buffer and writes the bytes
//! out at once. Only when the destination cannot take them all does the tail get a buffer of its
//! own, held until it is written. So an idle connection holds only its two sockets and a few
//! counters, and the common path allocates (and zeroes) nothing per burst. A read that fills the
//! scratch buffer moves the rest of its burst with splice(2) through a pooled pipe
//! ([`crate::splice`]), without copying through userspace.
//!
//! Order: each direction reads a chunk and writes all of it before reading the next, so no byte
//! is lost or reordered.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use socket2::SockRef;
use tokio::net::TcpStream;

use crate::error::ConnError;
use crate::splice::{Burst, SpliceError};

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
        Box::pin(write_all(backend, &replay)).await.map_err(ConnError::BackendIo)?;
        up.fetch_add(replay.len() as u64, Ordering::Relaxed);
        drop(replay);

        let (c2b_end, b2c_end) = (AtomicBool::new(false), AtomicBool::new(false));
        let c2b = copy_one_way(client, backend, &up, &c2b_end, &b2c_end);
        let b2c = copy_one_way(backend, client, &down, &b2c_end, &c2b_end);
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

/// Copies `src` to `dst` until `src` ends, then shuts down `dst`'s write half (or, when
/// `other_done` says the opposite direction has already ended, leaves the FIN to the close that
/// follows at once: one system call less per connection).
///
/// Each read goes into the worker thread's scratch buffer and is written out at once; only bytes
/// the destination cannot take yet are copied into a buffer of their own while waiting. A read
/// that fills the scratch buffer means a bulk transfer: the rest of that burst moves with
/// splice(2) ([`crate::splice`]) when available.
async fn copy_one_way(
    src: &TcpStream,
    dst: &TcpStream,
    count: &AtomicU64,
    done: &AtomicBool,
    other_done: &AtomicBool,
) -> Result<(), DirError> {
    let mut use_splice = crate::splice::enabled();
    loop {
        // Idle: no buffer is held across this await.
        src.readable().await.map_err(DirError::Read)?;
        loop {
            match SCRATCH.with_borrow_mut(|buf| read_and_write(src, dst, buf))? {
                Step::Eof => {
                    done.store(true, Ordering::Release);
                    if other_done.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    return shutdown_write(dst).map_err(DirError::Write);
                }
                Step::Drained => break,
                Step::Again => continue,
                Step::Wrote(n) => {
                    count.fetch_add(n as u64, Ordering::Relaxed);
                    if n == RELAY_BUFFER && use_splice {
                        // Boxed, like every path that waits while data flows: the future an idle
                        // connection keeps holds only what the idle wait needs.
                        match Box::pin(crate::splice::burst(src, dst, count)).await {
                            Ok(Burst::Drained) => break,
                            Ok(Burst::Eof) => {
                                done.store(true, Ordering::Release);
                                if other_done.load(Ordering::Acquire) {
                                    return Ok(());
                                }
                                return shutdown_write(dst).map_err(DirError::Write);
                            }
                            Ok(Burst::Unavailable) => use_splice = false,
                            Err(SpliceError::Read(e)) => return Err(DirError::Read(e)),
                            Err(SpliceError::Write(e)) => return Err(DirError::Write(e)),
                        }
                    }
                }
                Step::Pending(rest, n) => {
                    Box::pin(write_all(dst, &rest)).await.map_err(DirError::Write)?;
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            // `try_read`/`try_write` do not take part in tokio's cooperative budget; yield when it
            // runs out so a fast stream cannot starve the other direction or other connections
            // on this worker.
            tokio::task::coop::consume_budget().await;
        }
    }
}

thread_local! {
    /// Each worker thread's read buffer; borrowed only within one synchronous step.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; RELAY_BUFFER].into_boxed_slice());
}

/// One synchronous step of a direction.
enum Step {
    /// End of stream from the source.
    Eof,
    /// The source would block: wait for readability again.
    Drained,
    /// Interrupted: try again.
    Again,
    /// `n` bytes read and all written.
    Wrote(usize),
    /// `n` bytes read; the destination could not take the tail, copied out here.
    Pending(Vec<u8>, usize),
}

/// Reads once into `buf` and writes what it can without waiting.
fn read_and_write(src: &TcpStream, dst: &TcpStream, buf: &mut [u8]) -> Result<Step, DirError> {
    let n = match src.try_read(buf) {
        Ok(0) => return Ok(Step::Eof),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Drained),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Step::Again),
        Err(e) => return Err(DirError::Read(e)),
    };
    let mut off = 0;
    while off < n {
        match dst.try_write(&buf[off..n]) {
            Ok(0) => return Err(DirError::Write(io::ErrorKind::WriteZero.into())),
            Ok(k) => off += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Step::Pending(buf[off..n].to_vec(), n));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DirError::Write(e)),
        }
    }
    Ok(Step::Wrote(n))
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

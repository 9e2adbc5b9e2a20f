//! Relays bytes both ways between client and backend, half-close aware, holding no userspace
//! buffer while the connection is idle.
//!
//! # Half-close
//!
//! TCP closes each direction on its own (RFC 9293 §3.6: CLOSE is "an operation meaning 'I have
//! no more data to send'"; the side that closed may go on receiving until the other side has
//! closed too). When one side's read returns end of stream, the relay shuts down the write half
//! towards the other side (a FIN, after every byte read before it) and keeps copying the other
//! direction until that one ends too. The relay is done when both directions have ended. The
//! direction that ends last leaves its FIN to the close that follows at once (one system call
//! less per connection; the receive queue it closes over is empty, so the close sends a FIN, not a
//! reset).
//!
//! An error on either socket (a reset, typically) ends both directions at once: both sockets are
//! closed with `SO_LINGER` 0, so the surviving peer sees a reset rather than a clean end of
//! stream and cannot mistake an aborted stream for a complete one.
//!
//! # Buffers and waiting
//!
//! `tokio::io::copy_bidirectional` keeps an 8 KiB buffer per direction for the whole life of the
//! connection. Here each direction is a small state machine polled by one future:
//!
//! - *reading*: waits for the source to be readable with [`TcpStream::poll_read_ready`], which
//!   keeps the waker in the socket's own registration, so an idle connection's future holds only
//!   two references, two counters and two states (no waiter nodes, no buffer). Once readable, it
//!   reads into the worker thread's [`RELAY_BUFFER`] scratch buffer and writes the bytes out at
//!   once; nothing is allocated or zeroed on this path.
//! - *writing*: only when the destination cannot take a whole read does the tail get a buffer of
//!   its own, held until it is written.
//! - *splicing*: a read that fills the scratch buffer means a bulk transfer; the rest of the burst
//!   moves with splice(2) through a pooled pipe (`splice.rs`), without copying through
//!   userspace.
//!
//! Both directions are polled together, so one waiting to write never stops the other from
//! reading (an echo backend that only reads while it can write would otherwise deadlock). Every
//! wait goes through tokio's readiness polls, which take part in its cooperative budget, so a fast
//! stream yields to other connections on the worker.
//!
//! Order: each direction reads a chunk and writes all of it before reading the next, so no byte
//! is lost or reordered.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::net::Shutdown;
use std::task::{Context, Poll, ready};

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::error::{ConnError, Side};
use crate::splice::{self, Pipe};
use crate::watchdog::Watchdog;

/// Size of each worker thread's read buffer; a read that fills it switches the burst to splice.
pub const RELAY_BUFFER: usize = 32 * 1024;

/// Bytes moved in each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transferred {
    /// Bytes written to the backend, the replayed hello included.
    pub client_to_backend: u64,
    /// Bytes written to the client.
    pub backend_to_client: u64,
    /// The side whose stream ended first (its FIN, or close_notify), if either did.
    pub first_to_finish: Option<Side>,
}

/// The bytes read from the client during detection, to be written to the backend before anything
/// else.
#[derive(Debug)]
pub struct Replay {
    /// Every byte read from the client so far.
    pub buf: Vec<u8>,
    /// How many of them the backend already has (sent while connecting).
    pub sent: usize,
}

/// Writes what is left of `replay` to the backend, then relays both ways until both directions
/// have ended, either fails, or `watchdog` ends the connection (a deadline, the drain cut).
/// Returns the bytes moved in any case, the replay included; `meter` is told of the bytes as they
/// move (client to backend, backend to client), the part of the replay already sent first.
///
/// The replay is handled before the future is built, so the future a long-lived connection keeps
/// holds only the two directions: a replay sent whole while connecting is freed here, and one
/// still pending lives in the client-to-backend direction until it is written.
///
/// Whenever the relay ends with an error (a socket failed, a deadline passed, the drain cut),
/// both sockets are closed with a reset, so neither peer can take the cut stream for a complete
/// one.
pub fn relay<'a, M: FnMut(u64, u64) + 'a>(
    client: &'a TcpStream,
    backend: &'a TcpStream,
    replay: Replay,
    watchdog: &'a mut Watchdog,
    mut meter: M,
) -> impl Future<Output = (Transferred, Result<(), ConnError>)> + 'a {
    let mut up = Dir::new(client, backend);
    let mut down = Dir::new(backend, client);
    let Replay { buf, sent } = replay;
    let sent = sent.min(buf.len());
    up.count = sent as u64;
    if sent < buf.len() {
        up.state = State::Writing { buf, off: sent };
    }
    if sent > 0 {
        meter(sent as u64, 0);
    }
    async move {
        let mut first = None;
        let result = poll_fn(|cx| {
            let (u0, d0) = (up.count, down.count);
            let up_done = up.poll_to_end(cx, down.ended).map_err(|e| e.blame(true));
            let down_done = match up_done {
                Err(_) => Ok(false),
                Ok(_) => down.poll_to_end(cx, up.ended).map_err(|e| e.blame(false)),
            };
            let (du, dd) = (up.count - u0, down.count - d0);
            if du + dd > 0 {
                meter(du, dd);
            }
            if first.is_none() {
                first = match (up.ended, down.ended) {
                    (true, _) => Some(Side::Client),
                    (_, true) => Some(Side::Backend),
                    _ => None,
                };
            }
            let (up_done, down_done) = (up_done?, down_done?);
            if up_done && down_done {
                return Poll::Ready(Ok(()));
            }
            watchdog.poll(cx, du + dd > 0, up_done || down_done).map(Err)
        })
        .await;
        if result.is_err() {
            for s in [client, backend] {
                abort_on_close(s);
            }
        }
        let t = Transferred {
            client_to_backend: up.count,
            backend_to_client: down.count,
            first_to_finish: first,
        };
        (t, result)
    }
}

/// Makes closing `socket` abort the connection: with `SO_LINGER` 0 the close sends a reset
/// instead of a FIN, so the peer cannot take a stream the gateway cut for a complete one.
pub(crate) fn abort_on_close(socket: &TcpStream) {
    if let Err(e) = SockRef::from(socket).set_linger(Some(std::time::Duration::ZERO)) {
        tracing::debug!(error = %e, "setting SO_LINGER 0");
    }
}

/// One direction: `src` to `dst`.
struct Dir<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    /// Bytes written to `dst`.
    count: u64,
    /// `src` has ended (its FIN has been passed on, or left to the close).
    ended: bool,
    /// Whether bulk bursts may use splice; turned off for the connection when unavailable.
    use_splice: bool,
    state: State,
}

enum State {
    /// Waiting for `src`; no buffer held.
    Reading,
    /// `buf[off..]` is read and not yet written.
    Writing { buf: Vec<u8>, off: usize },
    /// A bulk burst through `pipe`, which holds `left` bytes not yet written.
    Splicing { pipe: Pipe, left: usize },
    /// `src` has ended.
    Done,
}

/// A failure in one direction: reading the source or writing the destination.
#[derive(Debug)]
enum DirError {
    Read(io::Error),
    Write(io::Error),
}

impl DirError {
    /// The connection error, blaming the side whose socket failed.
    fn blame(self, client_to_backend: bool) -> ConnError {
        match (self, client_to_backend) {
            (DirError::Read(e), true) | (DirError::Write(e), false) => ConnError::ClientIo(e),
            (DirError::Read(e), false) | (DirError::Write(e), true) => ConnError::BackendIo(e),
        }
    }
}

thread_local! {
    /// Each worker thread's read buffer; borrowed only within one synchronous step.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; RELAY_BUFFER].into_boxed_slice());
}

/// What one synchronous read-and-write step did.
enum Step {
    Eof,
    WouldBlock,
    Interrupted,
    /// Read `n` bytes and wrote them all.
    Wrote(usize),
    /// Read `n` bytes; the tail the destination could not take yet.
    Partial(usize, Vec<u8>),
}

impl<'a> Dir<'a> {
    fn new(src: &'a TcpStream, dst: &'a TcpStream) -> Self {
        Dir {
            src,
            dst,
            count: 0,
            ended: false,
            use_splice: splice::enabled(),
            state: State::Reading,
        }
    }

    /// Polls until this direction has ended (`Ok(true)`), or it must wait (`Ok(false)`, with a
    /// wake-up registered). On end of stream, passes the FIN on unless `other_ended`.
    fn poll_to_end(&mut self, cx: &mut Context<'_>, other_ended: bool) -> Result<bool, DirError> {
        if self.ended {
            return Ok(true);
        }
        match self.poll_dir(cx) {
            Poll::Pending => Ok(false),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Ready(Ok(())) => {
                self.ended = true;
                if !other_ended {
                    shutdown_write(self.dst).map_err(DirError::Write)?;
                }
                Ok(true)
            }
        }
    }

    /// Moves data until `src` ends (`Ready(Ok)`), a socket fails, or it must wait.
    fn poll_dir(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), DirError>> {
        loop {
            match &mut self.state {
                State::Done => return Poll::Ready(Ok(())),
                State::Reading => {
                    ready!(self.src.poll_read_ready(cx)).map_err(DirError::Read)?;
                    let (src, dst) = (self.src, self.dst);
                    match SCRATCH.with_borrow_mut(|buf| read_and_write(src, dst, buf))? {
                        Step::Eof => self.state = State::Done,
                        // The readiness is cleared: the next poll registers the waker.
                        Step::WouldBlock | Step::Interrupted => {}
                        Step::Wrote(n) => {
                            self.count += n as u64;
                            if n == RELAY_BUFFER && self.use_splice {
                                match splice::take() {
                                    Some(pipe) => self.state = State::Splicing { pipe, left: 0 },
                                    None => self.use_splice = false,
                                }
                            }
                        }
                        Step::Partial(n, tail) => {
                            self.count += (n - tail.len()) as u64;
                            self.state = State::Writing { buf: tail, off: 0 };
                        }
                    }
                }
                State::Writing { buf, off } => {
                    ready!(self.dst.poll_write_ready(cx)).map_err(DirError::Write)?;
                    match self.dst.try_write(&buf[*off..]) {
                        Ok(0) => return Poll::Ready(Err(DirError::Write(write_zero()))),
                        Ok(k) => {
                            *off += k;
                            self.count += k as u64;
                            if *off == buf.len() {
                                self.state = State::Reading;
                            }
                        }
                        Err(e) if retry(&e) => {}
                        Err(e) => return Poll::Ready(Err(DirError::Write(e))),
                    }
                }
                State::Splicing { pipe, left } if *left == 0 => {
                    // The pipe is empty: fill it from the source.
                    ready!(self.src.poll_read_ready(cx)).map_err(DirError::Read)?;
                    match splice::fill(self.src, pipe) {
                        Ok(0) => self.end_splice(State::Done),
                        Ok(n) => *left = n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.end_splice(State::Reading);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if splice::unsupported(&e) => {
                            self.use_splice = false;
                            self.end_splice(State::Reading);
                        }
                        Err(e) => return Poll::Ready(Err(DirError::Read(e))),
                    }
                }
                State::Splicing { pipe, left } => {
                    ready!(self.dst.poll_write_ready(cx)).map_err(DirError::Write)?;
                    match splice::drain(pipe, self.dst, *left) {
                        Ok(0) => return Poll::Ready(Err(DirError::Write(write_zero()))),
                        Ok(k) => {
                            *left -= k;
                            self.count += k as u64;
                        }
                        Err(e) if retry(&e) => {}
                        // The pipe still holds bytes: it is closed with the state, not pooled.
                        Err(e) => return Poll::Ready(Err(DirError::Write(e))),
                    }
                }
            }
        }
    }

    /// Leaves the splicing state (its pipe empty, back to the pool) for `next`.
    fn end_splice(&mut self, next: State) {
        if let State::Splicing { pipe, .. } = std::mem::replace(&mut self.state, next) {
            splice::give_back(pipe);
        }
    }
}

/// Reads once into `buf` and writes what the destination takes without waiting.
fn read_and_write(src: &TcpStream, dst: &TcpStream, buf: &mut [u8]) -> Result<Step, DirError> {
    let n = match read_once(src, buf) {
        Ok(0) => return Ok(Step::Eof),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::WouldBlock),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Step::Interrupted),
        Err(e) => return Err(DirError::Read(e)),
    };
    let mut off = 0;
    while off < n {
        match dst.try_write(&buf[off..n]) {
            Ok(0) => return Err(DirError::Write(write_zero())),
            Ok(k) => off += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Step::Partial(n, buf[off..n].to_vec()));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DirError::Write(e)),
        }
    }
    Ok(Step::Wrote(n))
}

/// Reads once from `src` into `buf`, as [`TcpStream::try_read`] does, and returns the byte count
/// (0 at end of stream).
///
/// A read that returns fewer bytes than `buf` holds has emptied the socket's receive queue (a
/// stream socket's read takes everything queued, up to the length asked for). So the readiness
/// the read was made on is cleared at once, and the next wait registers the waker instead of
/// first making a `recv` that would only say `EAGAIN`: one system call less per message and
/// direction. This cannot lose a wake-up: tokio clears readiness only if no event arrived since
/// the one the read was made on (its tick), any byte queued after the read raises a new
/// edge-triggered event, and an end of stream or error (`READ_CLOSED`) is never cleared.
pub(crate) fn read_once(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut short = 0;
    let read = src.try_io(Interest::READABLE, || {
        let n = rustix::io::read(src, &mut *buf)?;
        if n > 0 && n < buf.len() {
            // Reported as `WouldBlock` so that `try_io` clears the readiness it checked.
            short = n;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match read {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => Ok(short),
        r => r,
    }
}

/// `WouldBlock` (readiness now cleared; the next poll waits) or `Interrupted`: try again.
fn retry(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

fn write_zero() -> io::Error {
    io::ErrorKind::WriteZero.into()
}

/// Sends FIN on `dst` once everything before it has been written. A peer that has already gone
/// (`ENOTCONN`) is not an error here: the other direction reports it if it matters.
fn shutdown_write(dst: &TcpStream) -> io::Result<()> {
    match SockRef::from(dst).shutdown(Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

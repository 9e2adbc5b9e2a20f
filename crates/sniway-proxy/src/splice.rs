//! Zero-copy relay of bulk data: splice(2) from one socket into a pipe and from the pipe into the
//! other socket, so the bytes never enter userspace.
//!
//! Used only for bursts: the relay copies through a small scratch buffer first, and when one read
//! fills that buffer (a bulk transfer, not a request or a keep-alive) it moves the rest of the
//! burst with splice. Small messages stay on the copy path, where splice would cost more system
//! calls (in and out of the pipe) for nothing.
//!
//! The pipe is only ever spliced into while empty: a non-blocking splice into a pipe with no free
//! slot also fails with `EAGAIN`, and taking that for "socket drained" would clear the socket's
//! readiness while data is still queued. An empty pipe always has room, so `EAGAIN` on the way in
//! means the socket is empty. Pipes come from a small per-thread pool and go back to it empty
//! when the burst ends, so an idle connection holds no pipe (and no descriptors beyond its two
//! sockets).
//!
//! `SNIWAY_RELAY=copy` in the environment turns splice off (the copy path is the fallback, and
//! what benchmarks compare against).

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Requested pipe capacity. Larger pipes move more per pair of system calls (measured on
/// loopback: 64 KiB, the default, cost about twice the CPU per GB of 1 MiB; 4 MiB was no better).
pub const PIPE_SIZE: usize = 1024 * 1024;

/// Most idle pipes kept per thread (two descriptors each).
const POOL_MAX: usize = 16;

/// A pipe: read end, write end, and its capacity.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Whether splice is enabled (not turned off by `SNIWAY_RELAY=copy`).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SNIWAY_RELAY").map_or(true, |v| v != "copy"))
}

fn take() -> Option<Pipe> {
    if let Some(p) = POOL.with_borrow_mut(Vec::pop) {
        return Some(p);
    }
    let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
    let size = fcntl_setpipe_size(&w, PIPE_SIZE).unwrap_or(64 * 1024);
    Some(Pipe { r, w, size })
}

fn give_back(p: Pipe) {
    POOL.with_borrow_mut(|pool| {
        if pool.len() < POOL_MAX {
            pool.push(p);
        }
    });
}

/// How a splice burst ended.
pub(crate) enum Burst {
    /// The source has nothing more for now (its readiness is cleared).
    Drained,
    /// The source reached end of stream.
    Eof,
    /// No pipe could be had, or splice is not supported here: use the copy path.
    Unavailable,
}

/// A failure while splicing: reading the source or writing the destination.
pub(crate) enum SpliceError {
    Read(io::Error),
    Write(io::Error),
}

/// Moves everything `src` has now (and whatever arrives while moving) to `dst`, until `src` would
/// block or ends. `count` grows by every byte written to `dst`.
pub(crate) async fn burst(
    src: &TcpStream,
    dst: &TcpStream,
    count: &AtomicU64,
) -> Result<Burst, SpliceError> {
    let Some(pipe) = take() else { return Ok(Burst::Unavailable) };
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let mut first = true;
    let result = loop {
        // The pipe is empty here.
        let n = match src.try_io(Interest::READABLE, || {
            splice(src, None, &pipe.w, None, pipe.size, flags).map_err(io::Error::from)
        }) {
            Ok(0) => break Ok(Burst::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(Burst::Drained),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if first && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
            {
                break Ok(Burst::Unavailable);
            }
            Err(e) => break Err(SpliceError::Read(e)),
        };
        first = false;
        let mut left = n;
        while left > 0 {
            match dst.try_io(Interest::WRITABLE, || {
                splice(&pipe.r, None, dst, None, left, flags).map_err(io::Error::from)
            }) {
                Ok(0) => return Err(SpliceError::Write(io::ErrorKind::WriteZero.into())),
                Ok(k) => left -= k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The pipe holds data while this waits: a busy connection, not an idle one.
                    dst.writable().await.map_err(SpliceError::Write)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The pipe still holds bytes: it is dropped (closed), not pooled.
                Err(e) => return Err(SpliceError::Write(e)),
            }
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
        // Splicing bypasses tokio's cooperative budget like `try_read` does; see relay.rs.
        tokio::task::coop::consume_budget().await;
    };
    // Every path that reaches here left the pipe empty.
    give_back(pipe);
    result
}

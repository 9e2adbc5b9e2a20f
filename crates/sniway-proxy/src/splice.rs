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
//! sockets). A pipe that still holds bytes when its connection fails is closed, never pooled.
//!
//! `SNIWAY_RELAY=copy` in the environment turns splice off (the copy path is the fallback, and
//! what benchmarks compare against).

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Requested pipe capacity. Larger pipes move more per pair of system calls (measured on
/// loopback: 64 KiB, the default, cost about twice the CPU per GB of 1 MiB; 4 MiB was no better).
pub const PIPE_SIZE: usize = 1024 * 1024;

/// Most idle pipes kept per thread (two descriptors each).
const POOL_MAX: usize = 16;

const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);

/// A pipe: read end, write end, and its capacity.
pub(crate) struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Whether splice is enabled (not turned off by `SNIWAY_RELAY=copy`).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SNIWAY_RELAY").map_or(true, |v| v != "copy"))
}

/// An empty pipe from this thread's pool, or a new one; `None` if none can be made (descriptors
/// exhausted, say): the caller copies instead.
pub(crate) fn take() -> Option<Pipe> {
    if let Some(p) = POOL.with_borrow_mut(Vec::pop) {
        return Some(p);
    }
    let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
    let size = fcntl_setpipe_size(&w, PIPE_SIZE).unwrap_or(64 * 1024);
    Some(Pipe { r, w, size })
}

/// Returns an empty pipe to this thread's pool (or closes it when the pool is full).
pub(crate) fn give_back(p: Pipe) {
    POOL.with_borrow_mut(|pool| {
        if pool.len() < POOL_MAX {
            pool.push(p);
        }
    });
}

/// Moves what `src` has queued into the empty `pipe`. `Ok(0)` is end of stream; `WouldBlock`
/// means `src` is drained, and clears its readiness.
pub(crate) fn fill(src: &TcpStream, pipe: &Pipe) -> io::Result<usize> {
    src.try_io(Interest::READABLE, || {
        splice(src, None, &pipe.w, None, pipe.size, FLAGS).map_err(io::Error::from)
    })
}

/// Moves up to `len` bytes from `pipe` into `dst`. `WouldBlock` clears `dst`'s write readiness.
pub(crate) fn drain(pipe: &Pipe, dst: &TcpStream, len: usize) -> io::Result<usize> {
    dst.try_io(Interest::WRITABLE, || {
        splice(&pipe.r, None, dst, None, len, FLAGS).map_err(io::Error::from)
    })
}

/// Whether `e` says splice cannot be used between these descriptors.
pub(crate) fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
}

//! The open-file limit. Each relayed connection holds two sockets (client and backend), so the
//! usual soft limit of 1024 would cap a gateway at about 500 connections, far below
//! `--max-connections`. The soft limit may be raised to the hard limit without privileges, so it
//! is, at start-up; what is left is checked against the connection budget.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors reserved beyond the connections: listening sockets, the admin endpoint, manifest
/// files and watches, logs, the runtime's own.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the soft RLIMIT_NOFILE to the hard limit. Returns (soft now, hard); "unlimited" is
/// reported as `u64::MAX`. When the hard limit is unlimited, the soft one is raised to the
/// kernel's ceiling (`/proc/sys/fs/nr_open`; the kernel refuses more) if that is higher.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let current = getrlimit(Resource::Nofile);
    let hard = current.maximum;
    let want = match (current.current, hard) {
        // Already unlimited.
        (None, _) => None,
        (Some(_), Some(h)) => Some(h),
        // An unlimited hard limit: ask for the kernel's per-process ceiling, never less.
        (Some(soft), None) => nr_open().filter(|&n| n > soft),
    };
    if let Some(w) = want
        && Some(w) != current.current
    {
        setrlimit(Resource::Nofile, Rlimit { current: Some(w), maximum: hard })?;
    }
    let now = getrlimit(Resource::Nofile);
    Ok((now.current.unwrap_or(u64::MAX), now.maximum.unwrap_or(u64::MAX)))
}

/// The kernel's ceiling on a process's descriptors (`/proc/sys/fs/nr_open`), when readable.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

/// The descriptors `max_connections` may need: a client and a backend socket per connection, plus
/// [`RESERVED_DESCRIPTORS`].
pub fn descriptors_needed(max_connections: usize) -> u64 {
    (max_connections as u64).saturating_mul(2).saturating_add(RESERVED_DESCRIPTORS)
}

/// A warning when `max_connections` cannot all be served within a soft descriptor limit of
/// `soft`; None when they fit. The text says what to change.
pub fn check_connection_budget(max_connections: usize, soft: u64) -> Option<String> {
    let needed = descriptors_needed(max_connections);
    if needed <= soft {
        return None;
    }
    let fits = soft.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    Some(format!(
        "--max-connections {max_connections} needs up to {needed} open files (a client and a \
         backend socket per connection, plus {RESERVED_DESCRIPTORS}), but the limit is {soft}: \
         about {fits} connections fit. Raise the hard limit (`ulimit -Hn`, LimitNOFILE= in a \
         systemd unit, or the container runtime's nofile ulimit) or lower --max-connections"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_the_limit_leaves_the_soft_limit_at_the_hard_one() {
        let (soft, hard) = raise_nofile_limit().unwrap();
        assert!(soft <= hard, "soft {soft} above hard {hard}");
        if hard != u64::MAX {
            assert_eq!(soft, hard);
        }
        // A second call changes nothing.
        assert_eq!(raise_nofile_limit().unwrap(), (soft, hard));
    }

    #[test]
    fn a_budget_within_the_limit_gives_no_warning() {
        assert_eq!(check_connection_budget(100, 1024), None);
        // 2 * 480 + 64 = 1024: exactly at the limit fits.
        assert_eq!(check_connection_budget(480, 1024), None);
        assert_eq!(check_connection_budget(100_000, u64::MAX), None);
    }

    #[test]
    fn a_budget_beyond_the_limit_warns_with_the_numbers_and_what_to_do() {
        let w = check_connection_budget(481, 1024).expect("one connection too many");
        assert!(w.contains("--max-connections 481"), "{w}");
        assert!(w.contains("1026"), "needed: {w}");
        assert!(w.contains("1024"), "limit: {w}");
        assert!(w.contains("about 480 connections"), "{w}");
        assert!(w.contains("LimitNOFILE"), "{w}");
        let w = check_connection_budget(100_000, 1024).unwrap();
        assert!(w.contains("200064"), "{w}");
    }

    #[test]
    fn absurd_budgets_do_not_overflow() {
        assert!(check_connection_budget(usize::MAX, 1 << 20).is_some());
        assert_eq!(check_connection_budget(0, 0).map(|w| w.contains("about 0")), Some(true));
    }
}

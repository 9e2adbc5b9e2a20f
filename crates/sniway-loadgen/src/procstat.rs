//! What /proc says about the proxy under test and the machine: CPU time, RSS, PSS, MemAvailable.

use std::fs;

/// Clock ticks per second for /proc/PID/stat times (`sysconf(_SC_CLK_TCK)`; 100 on Linux).
const TICKS_PER_SEC: u64 = 100;

/// CPU time (user + system) of each process in `pids`, all threads, in microseconds, summed.
/// Processes that have gone are skipped.
pub fn cpu_us(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| one_cpu_ticks(*p)).sum::<u64>() * (1_000_000 / TICKS_PER_SEC)
}

fn one_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at "state" (field 3).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime is field 14, stime 15: indexes 11 and 12 here.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Resident and proportional set size in KiB, summed over `pids` (from smaps_rollup).
pub fn rss_pss_kib(pids: &[u32]) -> (u64, u64) {
    let mut rss = 0;
    let mut pss = 0;
    for pid in pids {
        let Ok(s) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { continue };
        rss += field_kib(&s, "Rss:").unwrap_or(0);
        pss += field_kib(&s, "Pss:").unwrap_or(0);
    }
    (rss, pss)
}

/// `MemAvailable` from /proc/meminfo, in KiB.
pub fn mem_available_kib() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| field_kib(&s, "MemAvailable:"))
        .unwrap_or(0)
}

/// Memory of all TCP sockets' buffers, in KiB (`mem` pages in /proc/net/sockstat's TCP line).
pub fn tcp_mem_kib() -> u64 {
    let Ok(s) = fs::read_to_string("/proc/net/sockstat") else { return 0 };
    let Some(line) = s.lines().find(|l| l.starts_with("TCP:")) else { return 0 };
    let f: Vec<&str> = line.split_whitespace().collect();
    f.iter()
        .position(|w| *w == "mem")
        .and_then(|i| f.get(i + 1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l[name.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Raises the soft descriptor limit to the hard one; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if let Some(max) = l.maximum {
        l.current = Some(max);
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

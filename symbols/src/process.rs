//! A running process: its executable and where that executable is mapped.
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The executable of a pid, as a path that stays valid even if the file on disk was
/// replaced (`/proc/PID/exe` reads the mapped inode).
pub fn exe_path(pid: u32) -> Result<PathBuf> {
    let link = PathBuf::from(format!("/proc/{pid}/exe"));
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the command name: state is the first, flags the seventh.
        let rest: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, r)| r.split(' ').collect())
            .unwrap_or_default();
        if matches!(rest.first(), Some(&"Z") | Some(&"X")) {
            return Err(Error::Zombie { pid });
        }
        const PF_KTHREAD: u64 = 0x0020_0000;
        if rest
            .get(6)
            .and_then(|f| f.parse::<u64>().ok())
            .is_some_and(|f| f & PF_KTHREAD != 0)
        {
            return Err(Error::KernelThread { pid });
        }
    }
    match std::fs::read_link(&link) {
        Ok(_) => Ok(link),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NoProcess { pid }),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(Error::ProcessPermission { pid })
        }
        Err(_) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => {
            Err(Error::NoProcess { pid })
        }
        Err(_) => Err(Error::ProcessPermission { pid }),
    }
}

/// Which file a process runs: (device, inode) of its executable. It changes when the
/// process execs another program.
pub fn exe_identity(pid: u32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// CPU time the process has used (user + system, all threads), in nanoseconds: the
/// larger of its live threads' exact times and its own total in clock ticks. The
/// ticks keep the time of threads that exited (a program ending takes its workers
/// first; their time must not vanish from what probes are priced against).
pub fn cpu_time_ns(pid: u32) -> Option<u64> {
    match (schedstat_ns(pid), stat_cpu_ns(pid)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The CPU time of every thread of `pid` to the nanosecond, from
/// `/proc/PID/task/*/schedstat` (its first field: time on a CPU). `stat` counts in
/// clock ticks (10 ms): too coarse to price a probe over a tenth of a second. A thread
/// that exited takes its time with it; readers take differences with saturation.
fn schedstat_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = t.ok()?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        let Ok(s) = std::fs::read_to_string(path) else {
            continue;
        };
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn stat_cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks.
    let ticks: u64 = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * (1_000_000_000 / hz))
}

pub fn is_alive(pid: u32) -> bool {
    // A zombie still has /proc/PID; its state letter says it is gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()),
            Some('Z') | Some('X')
        ),
        Err(_) => false,
    }
}

/// Load bias of the main executable: runtime address − link-time address. Zero for a
/// non-PIE binary.
pub fn load_bias(pid: u32, first_load_vaddr: u64) -> Result<crate::LoadBias> {
    let maps =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoProcess { pid },
            _ => Error::ProcessPermission { pid },
        })?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(_perms), Some(offset), Some(_dev), Some(_inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let path = f.next().unwrap_or("");
        if exe.as_deref().is_some_and(|e| e.as_os_str() == path)
            && u64::from_str_radix(offset, 16) == Ok(0)
        {
            let start =
                u64::from_str_radix(range.split('-').next().unwrap_or("0"), 16).unwrap_or(0);
            return Ok(crate::LoadBias(start.wrapping_sub(first_load_vaddr)));
        }
    }
    Ok(crate::LoadBias(0))
}

/// The running kernel's (major, minor) version, (0, 0) when unknown.
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// This process's own CPU time (user + system, all threads), in nanoseconds.
pub fn own_cpu_ns() -> Option<u64> {
    // SAFETY: getrusage writes into the struct it is given; zeroed is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF needs nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Some(ns(ru.ru_utime) + ns(ru.ru_stime))
}

/// Time the machine's CPUs have been idle (idle + iowait) and in all (every state), all
/// CPUs together, in nanoseconds, from the first line of /proc/stat.
pub fn machine_times_ns() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal (guest times are inside user).
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = f.get(3)? + f.get(4).copied().unwrap_or(0);
    let all: u64 = f.iter().sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ns = 1_000_000_000 / hz;
    Some((idle * ns, all * ns))
}

//! periscope's own memory against the limit of its memory cgroup. Under a limit too
//! small, the kernel's OOM killer ends periscope without a word (seen at 48–64 MB), or
//! the BPF maps cannot be made: the need is said first, and periscope refuses to start.
//!
//! The need, measured on this machine (kinds fixture, 3 MB: fails at 136 MB, runs at
//! 144 MB; cgroup v1, page cache counted): the BPF maps (periscope.bpf.c: ~68 MB of
//! in-flight entries, ring buffer, stacks and latency histograms, and ~90 KB per CPU of
//! per-CPU counters), and periscope's process (~64 MB, and about 4 bytes per byte of the
//! target's binary for its symbols and types: cmd/go, 22 MB, peaked at 145 MB in
//! `list`).
use std::path::Path;

const MB: u64 = 1 << 20;
/// The BPF maps that do not depend on the number of CPUs, and those per CPU (bpftool's
/// memlock of each map, on this machine).
const MAPS_FIXED: u64 = 68 * MB;
const MAPS_PER_CPU: u64 = 90_000;
const PROCESS_BASE: u64 = 64 * MB;
const PER_BINARY_BYTE: u64 = 4;

/// What periscope needs for a target whose binary is `binary_bytes` long, on `cpus`.
pub fn need(binary_bytes: u64, cpus: u64) -> (u64, u64) {
    (
        MAPS_FIXED + MAPS_PER_CPU * cpus,
        PROCESS_BASE + PER_BINARY_BYTE * binary_bytes,
    )
}

/// A memory cgroup's limit and what is in use under it.
#[derive(Debug, PartialEq)]
pub struct Limit {
    pub cgroup: String,
    pub limit: u64,
    pub used: u64,
}

/// The tightest memory limit over this process's cgroup and its ancestors (cgroup v2
/// `memory.max`, else v1 `memory.limit_in_bytes`), with the working set under it.
pub fn limit() -> Option<Limit> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut best: Option<Limit> = None;
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let (root, max, usage) = match controllers {
            "" => ("/sys/fs/cgroup", "memory.max", "memory.current"),
            c if c.split(',').any(|c| c == "memory") => (
                "/sys/fs/cgroup/memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            ),
            _ => continue,
        };
        let mut dir = Path::new(root).join(path.trim_start_matches('/'));
        loop {
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
            };
            // The working set, as container runtimes count it: page cache not recently
            // used is given back before anything is killed.
            let inactive = std::fs::read_to_string(dir.join("memory.stat"))
                .ok()
                .and_then(|stat| {
                    stat.lines().find_map(|l| {
                        let (k, v) = l.split_once(' ')?;
                        matches!(k, "inactive_file" | "total_inactive_file")
                            .then(|| v.trim().parse::<u64>().ok())?
                    })
                })
                .unwrap_or(0);
            let used = read(usage).map(|u| u.saturating_sub(inactive));
            // "max" (v2) does not parse: no limit at this level.
            if let (Some(limit), Some(used)) = (read(max), used)
                && limit < u64::MAX / 2
                && best
                    .as_ref()
                    .is_none_or(|b| limit - used.min(limit) < b.limit - b.used.min(b.limit))
            {
                best = Some(Limit {
                    cgroup: dir.display().to_string(),
                    limit,
                    used,
                });
            }
            if dir.as_os_str().len() <= root.len() || !dir.pop() {
                break;
            }
        }
    }
    best
}

/// Refuses to start when the memory cgroup leaves less than periscope needs for the
/// binary at `exe`: one line with the need and the limit.
pub fn check(exe: &Path) -> Result<(), String> {
    check_for(exe, true)
}

/// The same for another file of the program (a deploy's): its symbols only, the BPF
/// maps being there already.
pub fn check_another(exe: &Path) -> Result<(), String> {
    check_for(exe, false)
}

fn check_for(exe: &Path, with_maps: bool) -> Result<(), String> {
    let Some(l) = limit() else { return Ok(()) };
    let bytes = std::fs::metadata(exe).map_or(0, |m| m.len());
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as u64;
    let (maps, process) = need(bytes, cpus);
    let maps = if with_maps { maps } else { 0 };
    let free = l.limit.saturating_sub(l.used);
    if free >= maps + process {
        return Ok(());
    }
    Err(format!(
        "periscope needs about {} MB here ({} MB of BPF maps on {cpus} CPUs, {} MB for a {} MB binary's symbols), and its memory cgroup {} allows {} MB with {} MB in use: raise its limit, or run periscope outside it",
        (maps + process).div_ceil(MB),
        maps.div_ceil(MB),
        process.div_ceil(MB),
        bytes.div_ceil(MB),
        l.cgroup,
        l.limit / MB,
        l.used / MB
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_need_grows_with_cpus_and_the_binary() {
        let (maps, process) = need(3 * MB, 2);
        // What the kinds fixture was measured to need on this 2-CPU machine: above
        // 136 MB, and it ran at 144 MB.
        assert!((136 * MB..=150 * MB).contains(&(maps + process)));
        // Per-CPU maps are small: a 64-CPU server needs a few MB more, not hundreds.
        let (maps64, _) = need(3 * MB, 64);
        assert!(maps64 < maps + 8 * MB);
    }
}

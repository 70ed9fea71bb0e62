//! Errors of the probe layer, each a line a user can act on.

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{func} is inlined at every call site: it has no code of its own to probe (probe its callers)"
    )]
    Inlined { func: String },
    #[error(
        "{func} is not in Go's function table (C code linked by cgo, or code the linker dropped): periscope probes Go functions"
    )]
    NoCode { func: String },
    #[error(
        "{func} never returns through a RET (it ends in a tail jump, or is assembly): results and latency cannot be seen; capture its arguments (--args)"
    )]
    NoReturn { func: String },
    #[error(
        "runtime.g is not described in DWARF: cannot tell goroutines apart (is the binary stripped?)"
    )]
    NoRuntimeG,
    #[error("--capture `{}`, column {}: {}", shorten(&.0.text), .0.column, .0.msg)]
    Capture(#[from] ConditionError),
    #[error("--by `{}`, column {}: {}", shorten(&.0.text), .0.column, .0.msg)]
    By(ConditionError),
}

/// A condition that cannot be compiled, with the 1-based column it points at.
#[derive(Debug, thiserror::Error)]
#[error("condition `{}`, column {column}: {msg}", shorten(text))]
pub struct ConditionError {
    pub text: String,
    pub column: usize,
    pub msg: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    // The cause is in the message already (load_hint): not a `source`, or it would be
    // printed twice.
    #[error("{}", load_hint(.0))]
    Load(aya::EbpfError),
    #[error("BPF map {0} is missing from the program")]
    MissingMap(&'static str),
    #[error("BPF map error: {0}")]
    Map(#[from] aya::maps::MapError),
    // Not a `source`: the hint holds what matters of it, and the whole error would
    // print the verifier's log after it.
    #[error("{}", program_hint(.0))]
    Program(aya::programs::ProgramError),
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("too many probes at once (limit {0})")]
    TooMany(u32),
    #[error("attaching to {func} failed: {}", attach_hint(.error, *.pid, *.batched))]
    Attach {
        func: String,
        pid: u32,
        /// Through uprobe_multi links (else perf events).
        batched: bool,
        error: std::io::Error,
    },
    #[error("{func}: the address {addr:#x} is outside the file's mapped segments")]
    NoOffset { func: String, addr: u64 },
}

/// The privileges periscope needs, measured on Linux 6.18 (tests/tests/privileges.rs):
/// CAP_BPF and CAP_PERFMON load the program and make uprobe_multi links (kernels >=
/// 6.6). A uprobe made as a perf event, the fallback without them, needs CAP_SYS_ADMIN
/// since "perf/core: Require CAP_SYS_ADMIN for uprobes" (2025). Another user's process
/// needs CAP_SYS_PTRACE as well (to read its /proc files).
pub const PRIVILEGES: &str = "run periscope as root, or give it CAP_BPF and CAP_PERFMON (plus CAP_SYS_PTRACE for another user's process; CAP_SYS_ADMIN too on kernels without uprobe_multi links, before 6.6)";

/// The same, when uprobes are perf events (no uprobe_multi links).
const PRIVILEGES_PERF: &str = "one perf event per uprobe (no uprobe_multi links) needs CAP_SYS_ADMIN: run periscope as root, or give it CAP_SYS_ADMIN (plus CAP_SYS_PTRACE for another user's process)";

impl From<aya::programs::ProgramError> for EngineError {
    fn from(e: aya::programs::ProgramError) -> Self {
        EngineError::Program(e)
    }
}

/// A program the kernel refused, in one line: the verifier's reason (its log is
/// thousands of lines), the kernel, and the file its whole log was written to
/// (PERISCOPE_VERIFIER_LOG=FILE, else periscope's state directory).
fn program_hint(e: &aya::programs::ProgramError) -> String {
    let aya::programs::ProgramError::LoadError {
        io_error,
        verifier_log,
    } = e
    else {
        return format!("BPF program error: {e}");
    };
    let log = verifier_log.to_string();
    let reason = verifier_reason(&log);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // The whole log goes to a file of the user's own, named in the line: it is what a
    // report of the refusal needs, and thousands of lines long.
    let kept = match std::env::var_os("PERISCOPE_VERIFIER_LOG") {
        Some(path) => std::fs::write(&path, &log).map(|()| path.into()),
        None => periscope_files::write_state_file(
            &format!("verifier-{}", release.trim()),
            "log",
            log.as_bytes(),
        ),
    };
    let kept = match kept {
        Ok(path) => format!(
            "its whole log is in {} (report it with the kernel's version)",
            path.display()
        ),
        Err(w) => format!("its log could not be written: {w} (set PERISCOPE_VERIFIER_LOG=FILE)"),
    };
    // periscope's program loops with bpf_loop (Linux 5.17): an older kernel refuses it
    // in words that do not say so.
    let old = if symbols::process::kernel_version() < (5, 17) {
        " (periscope needs Linux 5.17 or newer: its program uses bpf_loop)"
    } else {
        ""
    };
    format!(
        "Linux {} refused periscope's BPF program ({io_error}){old}: the verifier says \"{reason}\"; {kept}",
        release.trim()
    )
}

/// The verifier's reason for refusing a program: the last line of its log before the
/// statistics it ends with.
pub fn verifier_reason(log: &str) -> String {
    let stats = [
        "verification time",
        "stack depth",
        "processed ",
        "max_states_per_insn",
    ];
    let line = log
        .lines()
        .map(str::trim)
        .rev()
        .find(|l| !l.is_empty() && !stats.iter().any(|s| l.starts_with(s)))
        .unwrap_or("no log");
    // Some kernels end the reason and the statistics on one line.
    let line = line.split(" verification time").next().unwrap_or(line);
    shorten(line)
}

/// What an attach failure means, and what to do about it.
fn attach_hint(e: &std::io::Error, pid: u32, batched: bool) -> String {
    match e.raw_os_error() {
        Some(libc::ESRCH) => format!("process {pid} has exited"),
        Some(libc::EACCES) | Some(libc::EPERM) if batched => {
            format!("permission denied: {PRIVILEGES}")
        }
        Some(libc::EACCES) | Some(libc::EPERM) => format!("permission denied: {PRIVILEGES_PERF}"),
        _ => e.to_string(),
    }
}

/// A load failure in one line: the innermost cause, and for a refusal what to do.
fn load_hint(e: &aya::EbpfError) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    let refused = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|io| matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)));
    if refused {
        format!("the kernel refused periscope's BPF program ({inner}): {PRIVILEGES}")
    } else {
        format!("loading the BPF program failed: {inner}")
    }
}

/// A condition as echoed in a one-line error: long ones are cut (the column still
/// counts from the start of the whole text).
pub fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifiers_reason_is_the_line_before_its_statistics() {
        // The end of what Debian 12's 6.1 said of the program before b0a2035.
        let log = "905: (b7) r1 = 1                      ; R1_w=1\n\
                   ; __sync_fetch_and_add(&h->buckets[b], 1);\n\
                   906: (db) lock *(u64 *)(r0 +0) += r1\n\
                   R0 unbounded memory access, make sure to bounds check any such access\n\
                   verification time 1256216 usec\n\
                   stack depth 312+0+88+24+0+72+40+16\n\
                   processed 17280 insns (limit 1000000) max_states_per_insn 16 total_states 597 peak_states 487 mark_read 29\n";
        assert_eq!(
            verifier_reason(log),
            "R0 unbounded memory access, make sure to bounds check any such access"
        );
        assert_eq!(
            verifier_reason("R0 invalid mem access 'scalar' verification time 5 usec\n"),
            "R0 invalid mem access 'scalar'"
        );
        assert_eq!(verifier_reason(""), "no log");
    }
}

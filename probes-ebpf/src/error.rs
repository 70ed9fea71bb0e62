//! Errors of the probe layer, each a line a user can act on.

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{func} is inlined at every call site: it has no code of its own to probe (probe its callers)"
    )]
    Inlined { func: String },
    #[error("{func} has no machine code in this binary")]
    NoCode { func: String },
    #[error(
        "{func} never returns through a RET (it ends in a tail jump, or is assembly): results and latency cannot be seen; capture its arguments (--args)"
    )]
    NoReturn { func: String },
    #[error(
        "runtime.g is not described in DWARF: cannot tell goroutines apart (is the binary stripped?)"
    )]
    NoRuntimeG,
}

/// A condition that cannot be compiled, with the 1-based column it points at.
#[derive(Debug, thiserror::Error)]
#[error("condition `{text}`, column {column}: {msg}")]
pub struct ConditionError {
    pub text: String,
    pub column: usize,
    pub msg: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "loading the BPF program failed: {0} (periscope needs root, or CAP_BPF and CAP_PERFMON)"
    )]
    Load(#[source] aya::EbpfError),
    #[error("BPF map {0} is missing from the program")]
    MissingMap(&'static str),
    #[error("BPF map error: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("BPF program error: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("too many probes at once (limit {0})")]
    TooMany(u32),
    #[error("attaching to {func} failed: {}", attach_hint(.source, *.pid))]
    Attach {
        func: String,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("{func}: the address {addr:#x} is outside the file's mapped segments")]
    NoOffset { func: String, addr: u64 },
}

/// What an attach failure means, and what to do about it.
fn attach_hint(e: &std::io::Error, pid: u32) -> String {
    match e.raw_os_error() {
        Some(libc::ESRCH) => format!("process {pid} has exited"),
        Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "{e}: uprobes need CAP_PERFMON and CAP_BPF, and CAP_SYS_ADMIN to probe another user's process (run as root)"
        ),
        _ => e.to_string(),
    }
}

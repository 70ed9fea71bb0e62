use std::path::PathBuf;

/// Why a Go binary could not be read. Each message says what to do next, because it is
/// printed as the one line a user sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such file: {path} (give the path of a Go executable, or a pid)")]
    NotFound { path: PathBuf },
    #[error("permission denied reading {path} (run periscope as root)")]
    Permission { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an ELF executable (periscope traces Go programs built for Linux)")]
    NotElf { path: PathBuf },
    #[error(
        "{path} is a truncated or damaged ELF file ({what}): point periscope at the complete binary"
    )]
    BadElf { path: PathBuf, what: String },
    #[error("{path} is not a regular file (give the path of a Go executable, or a pid)")]
    NotAFile { path: PathBuf },
    #[error("{path} is a {arch} binary; periscope supports x86-64 only")]
    UnsupportedArch { path: PathBuf, arch: String },
    #[error("{path} is not a Go program (it has no .gopclntab section)")]
    NotGo { path: PathBuf },
    #[error("{path} was built with {version}; periscope needs Go 1.17 or newer (register ABI)")]
    OldGo { path: PathBuf, version: String },
    #[error("malformed .gopclntab in {path}: {what}")]
    BadPclntab { path: PathBuf, what: &'static str },
    #[error(
        "{path}: its DWARF section {section} is damaged ({what}); periscope reads types from it: use an undamaged copy of the binary"
    )]
    DamagedDwarf {
        path: PathBuf,
        section: &'static str,
        what: String,
    },
    #[error("reading DWARF of {path}: {source}")]
    Dwarf {
        path: PathBuf,
        #[source]
        source: gimli::Error,
    },
    #[error("no process with pid {pid} (is it still running? `ps -p {pid}`)")]
    NoProcess { pid: u32 },
    #[error("{}", process_permission(*.pid))]
    ProcessPermission { pid: u32 },
    #[error("pid {pid} is a zombie: it has exited and waits for its parent to reap it")]
    Zombie { pid: u32 },
    #[error("pid {pid} is a kernel thread, not a Go program")]
    KernelThread { pid: u32 },
}

/// Why the process cannot be inspected: a user without privileges is told what to get;
/// root is told that it is the process that refuses (the kernel checks ptrace access to
/// /proc/PID/exe, which fails even for root when the process is not dumpable or lives
/// in another user namespace).
fn process_permission(pid: u32) -> String {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        format!(
            "the kernel refuses access to pid {pid} even for root (/proc/{pid}/exe is not readable: the process is not dumpable, or in another user namespace)"
        )
    } else {
        format!(
            "permission denied inspecting pid {pid}: run periscope as root, or with CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE (another user's process)"
        )
    }
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        let path = path.to_path_buf();
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { path },
            std::io::ErrorKind::PermissionDenied => Error::Permission { path },
            _ if path.is_dir() || path.exists() && !path.is_file() => Error::NotAFile { path },
            _ => Error::Io { path, source },
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

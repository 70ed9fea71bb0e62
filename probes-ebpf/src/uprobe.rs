//! Attaching one uprobe ourselves: `perf_event_open` on the uprobe PMU, then a BPF perf
//! link (`BPF_LINK_CREATE`). aya does the same but keeps the link's file descriptor to
//! itself; periscope needs it, to hand a duplicate to its keeper process (keeper.rs),
//! which is what makes removal safe on every way of stopping.
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::all
)]
pub(crate) mod abi {
    include!(concat!(env!("OUT_DIR"), "/kernel_abi.rs"));
}

/// The dynamic PMU type of uprobes (`/sys/bus/event_source/devices/uprobe/type`).
fn uprobe_pmu() -> io::Result<u32> {
    static TYPE: OnceLock<Result<u32, String>> = OnceLock::new();
    TYPE.get_or_init(|| {
        let path = "/sys/bus/event_source/devices/uprobe/type";
        std::fs::read_to_string(path)
            .map_err(|e| format!("{path}: {e} (this kernel has no uprobe PMU)"))
            .and_then(|s| s.trim().parse().map_err(|e| format!("{path}: {e}")))
    })
    .clone()
    .map_err(io::Error::other)
}

/// A uprobe at `offset` (a file offset) of `binary`, in process `pid` only, running
/// `prog` with `cookie`. The returned link is the only owner of the probe: the perf
/// event is held by the link, and closing the last descriptor of the link removes
/// the uprobe from the target.
pub fn attach(
    prog: BorrowedFd<'_>,
    binary: &Path,
    offset: u64,
    pid: u32,
    cookie: u64,
) -> io::Result<OwnedFd> {
    let path = CString::new(binary.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    let mut attr = abi::perf_event_attr {
        type_: uprobe_pmu()?,
        size: std::mem::size_of::<abi::perf_event_attr>() as u32,
        ..Default::default()
    };
    // For the uprobe PMU, config1 is the path and config2 the file offset
    // (include/uapi/linux/perf_event.h: uprobe_path, probe_offset).
    attr.__bindgen_anon_3.config1 = path.as_ptr() as u64;
    attr.__bindgen_anon_4.config2 = offset;
    // SAFETY: perf_event_open reads `attr` (valid, sized) and the NUL-terminated path it
    // points to, both alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const abi::perf_event_attr,
            pid as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            abi::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    let perf = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    link_create(prog, perf.as_fd(), cookie)
    // `perf` closes here: the link holds its own reference to the event.
}

fn link_create(prog: BorrowedFd<'_>, perf: BorrowedFd<'_>, cookie: u64) -> io::Result<OwnedFd> {
    let mut attr = abi::bpf_attr::default();
    // SAFETY: writing plain integers into the link_create member of a zeroed union.
    unsafe {
        let lc = &mut attr.link_create;
        lc.prog_fd = prog.as_raw_fd() as u32;
        lc.__bindgen_anon_1.target_fd = perf.as_raw_fd() as u32;
        lc.attach_type = abi::BPF_PERF_EVENT;
        lc.__bindgen_anon_2.perf_event.bpf_cookie = cookie;
    }
    // SAFETY: bpf(2) reads `size` bytes of the attribute union, which lives for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            abi::BPF_LINK_CREATE as libc::c_long,
            &attr as *const abi::bpf_attr,
            std::mem::size_of::<abi::bpf_attr>() as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else. bpf(2) link fds are O_CLOEXEC.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

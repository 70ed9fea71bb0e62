//! Attaching one uprobe ourselves: `perf_event_open` on the uprobe PMU, then a BPF perf
//! link (`BPF_LINK_CREATE`). aya does the same but keeps the link's file descriptor to
//! itself; periscope needs it, to hand a duplicate to its keeper process (keeper.rs),
//! which is what makes removal safe on every way of stopping.
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
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
pub(crate) fn uprobe_pmu() -> io::Result<u32> {
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

/// A uprobe at `offset` (a file offset) of `binary`, in process `pid` only (or every
/// process: `EVERY_PROCESS`), running
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
    let fd = attach_raw(
        prog.as_raw_fd(),
        uprobe_pmu()?,
        path.as_ptr(),
        offset,
        pid,
        cookie,
    )
    .map_err(io::Error::from_raw_os_error)?;
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `attach` in system calls only, allocating nothing (the keeper's child makes links
/// with it): `path` is NUL-terminated, `pmu` the uprobe PMU's type. The link's
/// descriptor, or an errno.
pub(crate) fn attach_raw(
    prog: RawFd,
    pmu: u32,
    path: *const libc::c_char,
    offset: u64,
    pid: u32,
    cookie: u64,
) -> Result<RawFd, i32> {
    let mut attr = abi::perf_event_attr {
        type_: pmu,
        size: std::mem::size_of::<abi::perf_event_attr>() as u32,
        ..Default::default()
    };
    // For the uprobe PMU, config1 is the path and config2 the file offset
    // (include/uapi/linux/perf_event.h: uprobe_path, probe_offset).
    attr.__bindgen_anon_3.config1 = path as u64;
    attr.__bindgen_anon_4.config2 = offset;
    // Every process (EVERY_PROCESS): pid -1 needs a CPU, and the kernel's uprobe filter
    // treats an event without a task as system-wide, so CPU 0 fires on every CPU (as
    // libbpf does it).
    let (pid, cpu) = match pid {
        crate::engine::EVERY_PROCESS => (-1, 0),
        pid => (pid as libc::pid_t, -1),
    };
    // SAFETY: perf_event_open reads `attr` (valid, sized) and the NUL-terminated path it
    // points to, both alive for the call.
    let perf = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const abi::perf_event_attr,
            pid,
            cpu as libc::c_int,
            -1 as libc::c_int,
            abi::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if perf < 0 {
        return Err(errno());
    }
    let link = link_create(prog, perf as RawFd, cookie);
    // SAFETY: the descriptor perf_event_open returned; the link holds its own
    // reference to the event.
    unsafe { libc::close(perf as RawFd) };
    link
}

fn link_create(prog: RawFd, perf: RawFd, cookie: u64) -> Result<RawFd, i32> {
    let mut attr = abi::bpf_attr::default();
    // SAFETY: writing plain integers into the link_create member of a zeroed union.
    unsafe {
        let lc = &mut attr.link_create;
        lc.prog_fd = prog as u32;
        lc.__bindgen_anon_1.target_fd = perf as u32;
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
        return Err(errno());
    }
    // bpf(2) link descriptors are O_CLOEXEC.
    Ok(fd as RawFd)
}

/// The calling thread's errno, without allocating.
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

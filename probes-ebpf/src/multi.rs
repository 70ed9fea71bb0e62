//! Batched uprobes: one `uprobe_multi` link for all the points of a probe (kernels >= 6.6).
//!
//! Removing a perf-event uprobe costs ~0.1 s here (RCU grace periods, serialized under
//! the kernel's event_mutex), so 300 of them took 30 s to go. A multi link registers
//! many offsets of one binary with a cookie each, and since 6.12 unregisters them all
//! behind a single RCU sync.
//!
//! The kernel accepts such a link only for a program loaded with
//! `expected_attach_type = BPF_TRACE_UPROBE_MULTI`, which aya 0.14 cannot ask for. So
//! the same program is loaded a second time here, from the same object: aya-obj
//! relocates it against the maps aya already created (both copies share every map, so
//! plans, counters and events are one), and the raw `bpf()` syscall loads it.
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use aya::maps::{Map, MapData};
use aya_obj::btf::BtfFeatures;

use crate::uprobe::abi;

/// `enum bpf_attach_type` in kernels >= 6.6; Debian's 6.1 headers stop at 47.
const BPF_TRACE_UPROBE_MULTI: u32 = 48;

/// The `link_create` member of `union bpf_attr` for a uprobe_multi link
/// (include/uapi/linux/bpf.h, 6.6+), which the 6.1 headers bindgen reads lack.
#[repr(C)]
#[derive(Default)]
struct LinkCreateUprobeMulti {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    path: u64,
    offsets: u64,
    ref_ctr_offsets: u64,
    cookies: u64,
    cnt: u32,
    multi_flags: u32,
    pid: u32,
    _pad: u32,
}

// The kernel reads these fields at these offsets; a wrong layout would attach
// somewhere else, so the build checks it.
const _: () = {
    assert!(std::mem::offset_of!(LinkCreateUprobeMulti, path) == 16);
    assert!(std::mem::offset_of!(LinkCreateUprobeMulti, cookies) == 40);
    assert!(std::mem::offset_of!(LinkCreateUprobeMulti, pid) == 56);
    assert!(std::mem::size_of::<LinkCreateUprobeMulti>() == 64);
};

fn sys_bpf(cmd: abi::bpf_cmd, attr: *const u8, size: usize) -> io::Result<OwnedFd> {
    // SAFETY: bpf(2) reads (and for some commands writes) `size` bytes at `attr`,
    // which the callers keep alive and sized for the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr, size as u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns; bpf(2) descriptors are O_CLOEXEC.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The map's descriptor, for the kinds of map periscope.bpf.c declares.
fn map_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::Array(m)
        | Map::PerCpuArray(m)
        | Map::HashMap(m)
        | Map::LruHashMap(m)
        | Map::PerCpuHashMap(m)
        | Map::PerCpuLruHashMap(m)
        | Map::RingBuf(m)
        | Map::StackTraceMap(m) => Some(m),
        _ => None,
    }
}

/// Loads program `name` of `object` for uprobe_multi links, sharing the maps of
/// `ebpf` (loaded by aya from the same object). Fails on kernels without multi links.
pub fn load(ebpf: &aya::Ebpf, object: &[u8], name: &str) -> io::Result<OwnedFd> {
    let other = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
    let mut obj = aya_obj::Object::parse(object).map_err(|e| other(&e))?;
    // Every BTF feature: multi links exist only on kernels (>= 6.6) that have them all.
    let features = BtfFeatures::new(true, true, true, true, true, true, true, true);
    let btf = match obj
        .fixup_and_sanitize_btf(&features)
        .map_err(|e| other(&e))?
    {
        Some(btf) => Some(load_btf(&btf.to_bytes())?),
        None => None,
    };
    let mut fds = Vec::new();
    for (map_name, map) in ebpf.maps() {
        let data = map_data(map)
            .ok_or_else(|| io::Error::other(format!("map {map_name}: unexpected kind")))?;
        fds.push((map_name.to_string(), data.fd().as_fd().as_raw_fd()));
    }
    let maps = obj.maps.clone();
    let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
    let with_fds = fds
        .iter()
        .filter_map(|(n, fd)| maps.get(n).map(|m| (n.as_str(), *fd, m)));
    obj.relocate_maps(with_fds, &text_sections)
        .map_err(|e| other(&e))?;
    obj.relocate_calls(&text_sections).map_err(|e| other(&e))?;
    let program = obj
        .programs
        .get(name)
        .ok_or_else(|| io::Error::other(format!("no program {name} in the object")))?;
    let function = obj
        .functions
        .get(&program.function_key())
        .ok_or_else(|| io::Error::other(format!("program {name} has no code")))?;

    let func_info = function.func_info.func_info_bytes();
    let line_info = function.line_info.line_info_bytes();
    let mut attr = abi::bpf_attr::default();
    // SAFETY: plain integers into the prog-load member of a zeroed union; the pointers
    // (instructions, license, BTF info) outlive the syscall below.
    unsafe {
        let p = &mut attr.__bindgen_anon_3;
        p.prog_type = aya_obj::generated::bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
        p.expected_attach_type = BPF_TRACE_UPROBE_MULTI;
        p.insns = function.instructions.as_ptr() as u64;
        p.insn_cnt = function.instructions.len() as u32;
        p.license = program.license.as_ptr() as u64;
        for (dst, src) in p.prog_name.iter_mut().zip(b"periscope_multi") {
            *dst = *src as libc::c_char;
        }
        if let Some(btf) = &btf {
            p.prog_btf_fd = btf.as_raw_fd() as u32;
            if function.func_info_rec_size > 0 {
                p.func_info = func_info.as_ptr() as u64;
                p.func_info_cnt = function.func_info.len() as u32;
                p.func_info_rec_size = function.func_info_rec_size as u32;
            }
            if function.line_info_rec_size > 0 {
                p.line_info = line_info.as_ptr() as u64;
                p.line_info_cnt = function.line_info.len() as u32;
                p.line_info_rec_size = function.line_info_rec_size as u32;
            }
        }
    }
    sys_bpf(
        abi::BPF_PROG_LOAD,
        (&raw const attr).cast(),
        std::mem::size_of::<abi::bpf_attr>(),
    )
    // The program holds its own reference to the BTF object.
}

fn load_btf(raw: &[u8]) -> io::Result<OwnedFd> {
    let mut attr = abi::bpf_attr::default();
    // SAFETY: plain integers into the btf-load member of a zeroed union; `raw` outlives
    // the syscall.
    unsafe {
        let b = &mut attr.__bindgen_anon_7;
        b.btf = raw.as_ptr() as u64;
        b.btf_size = raw.len() as u32;
    }
    sys_bpf(
        abi::BPF_BTF_LOAD,
        (&raw const attr).cast(),
        std::mem::size_of::<abi::bpf_attr>(),
    )
}

/// One link for uprobes at every file offset of `points` (offset, cookie) in `binary`,
/// in process `pid` only (0, `EVERY_PROCESS`: every process running it), running
/// `prog`. Offsets are registered in the order given.
/// Closing the link's last descriptor removes them all.
pub fn attach(
    prog: BorrowedFd<'_>,
    binary: &Path,
    pid: u32,
    points: &[(u64, u64)],
) -> io::Result<OwnedFd> {
    let path = CString::new(binary.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    let offsets: Vec<u64> = points.iter().map(|p| p.0).collect();
    let cookies: Vec<u64> = points.iter().map(|p| p.1).collect();
    let fd = attach_raw(prog.as_raw_fd(), path.as_ptr(), &offsets, &cookies, pid)
        .map_err(io::Error::from_raw_os_error)?;
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `attach` in one system call, allocating nothing (the keeper's child makes links
/// with it): `path` is NUL-terminated; `offsets` and `cookies` are as long as each
/// other. The link's descriptor, or an errno.
pub(crate) fn attach_raw(
    prog: RawFd,
    path: *const libc::c_char,
    offsets: &[u64],
    cookies: &[u64],
    pid: u32,
) -> Result<RawFd, i32> {
    let attr = LinkCreateUprobeMulti {
        prog_fd: prog as u32,
        attach_type: BPF_TRACE_UPROBE_MULTI,
        path: path as u64,
        offsets: offsets.as_ptr() as u64,
        cookies: cookies.as_ptr() as u64,
        cnt: offsets.len().min(cookies.len()) as u32,
        pid,
        ..Default::default()
    };
    // SAFETY: bpf(2) reads the attribute and the arrays and path it points to, all
    // alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            abi::BPF_LINK_CREATE as libc::c_long,
            (&raw const attr).cast::<u8>(),
            std::mem::size_of::<LinkCreateUprobeMulti>() as u32,
        )
    };
    if fd < 0 {
        return Err(crate::uprobe::errno());
    }
    // bpf(2) link descriptors are O_CLOEXEC.
    Ok(fd as RawFd)
}

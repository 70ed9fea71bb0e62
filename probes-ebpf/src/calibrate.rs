//! What a uprobe hit costs on this kernel and CPU, measured at start-up: no constant can
//! stand in for it (a single-stepped hit costs ~14 µs in this VM, ~3x an emulated one
//! on bare metal, ~30x here). periscope probes two functions of its own, one whose first
//! instruction the kernel emulates (`nop`) and one it single-steps (`mov`), and times
//! them probed against bare. The probe's plan is inactive, so this is the cost of the
//! hit itself; the BPF program's own time is measured per probe while it runs.
use std::time::{Duration, Instant};

// Plain functions with a known first instruction (Rust's own code gives no such
// guarantee). System V: argument in RDI, result in RAX.
core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl periscope_calib_emulated",
    ".type periscope_calib_emulated,@function",
    "periscope_calib_emulated:",
    "nop",
    "mov rax, rdi",
    "ret",
    ".size periscope_calib_emulated, . - periscope_calib_emulated",
    ".p2align 4",
    ".globl periscope_calib_stepped",
    ".type periscope_calib_stepped,@function",
    "periscope_calib_stepped:",
    "mov rax, rdi",
    "ret",
    ".size periscope_calib_stepped, . - periscope_calib_stepped",
);

unsafe extern "C" {
    fn periscope_calib_emulated(x: u64) -> u64;
    fn periscope_calib_stepped(x: u64) -> u64;
}

/// Nanoseconds a uprobe hit adds to the probed instruction, by how the kernel runs it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HitCost {
    pub emulated_ns: f64,
    pub stepped_ns: f64,
}

/// The two calibration functions: (address, calls to time them with).
pub(crate) fn targets() -> [(unsafe extern "C" fn(u64) -> u64, u64); 2] {
    [
        (periscope_calib_emulated, 3000),
        (periscope_calib_stepped, 600),
    ]
}

/// Time per call of `f`, the best of three runs of `n` calls.
pub(crate) fn time_per_call(f: unsafe extern "C" fn(u64) -> u64, n: u64) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                // SAFETY: the functions read RDI and return it; nothing else.
                std::hint::black_box(unsafe { f(std::hint::black_box(i)) });
            }
            t.elapsed()
        })
        .min()
        .unwrap_or(Duration::ZERO)
        .as_nanos() as f64
        / n as f64
}

/// The file offset of code at `addr` in this process's executable, from
/// /proc/self/maps (uprobes attach to file offsets).
pub(crate) fn file_offset(addr: usize) -> Option<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    maps.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (lo, hi) = f.first()?.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        let path = f.get(5)?;
        (addr >= lo && addr < hi && std::path::Path::new(path) == exe)
            .then(|| {
                u64::from_str_radix(f[2], 16)
                    .ok()
                    .map(|off| (addr - lo) as u64 + off)
            })
            .flatten()
    })
}

//! What a uprobe hit costs on this kernel and CPU, measured at start-up: no constant can
//! stand in for it (a single-stepped hit costs ~14 µs in this VM, ~3x an emulated one
//! on bare metal, ~30x here). periscope probes two functions of its own, one whose first
//! instruction the kernel emulates (`nop`) and one it single-steps (`mov`), and times
//! them probed against bare. The probe's plan is inactive, so this is the cost of the
//! hit itself; the BPF program's own time is measured per probe while it runs. Last, a
//! latency probe on an empty function gives the floor that the probe itself adds to
//! every latency it measures.
use std::time::Instant;

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
    // The kernel's cheapest uprobe: since 6.18 a probe on a 5-byte NOP is rewritten,
    // at its first hit, into a call to a trampoline that enters the kernel by a system
    // call instead of a breakpoint trap. Go code has such NOPs only as padding before
    // loops, so few probe points can use it; it is measured for what it says of the
    // floor (`make bench`).
    ".p2align 4",
    ".globl periscope_calib_nop5",
    ".type periscope_calib_nop5,@function",
    "periscope_calib_nop5:",
    ".byte 0x0f, 0x1f, 0x44, 0x00, 0x00",
    "mov rax, rdi",
    "ret",
    ".size periscope_calib_nop5, . - periscope_calib_nop5",
    // A call of an empty function, as Go code makes one: R14 holds the goroutine (here
    // a fake `g` whose address comes in RDI), the callee's entry (`nop`) is emulated and
    // its RET single-stepped. A latency probe on the callee measures nothing but the
    // probe's own time between its two clock reads.
    ".p2align 4",
    ".globl periscope_calib_call",
    ".type periscope_calib_call,@function",
    "periscope_calib_call:",
    "push r14",
    "mov r14, rdi",
    "call periscope_calib_empty",
    "pop r14",
    "ret",
    ".size periscope_calib_call, . - periscope_calib_call",
    ".p2align 4",
    ".globl periscope_calib_empty",
    ".type periscope_calib_empty,@function",
    "periscope_calib_empty:",
    "nop",
    "ret",
    ".size periscope_calib_empty, . - periscope_calib_empty",
    // The same with a first instruction the kernel single-steps: a leaf's entry.
    ".p2align 4",
    ".globl periscope_calib_call_stepped",
    ".type periscope_calib_call_stepped,@function",
    "periscope_calib_call_stepped:",
    "push r14",
    "mov r14, rdi",
    "call periscope_calib_empty_stepped",
    "pop r14",
    "ret",
    ".size periscope_calib_call_stepped, . - periscope_calib_call_stepped",
    ".p2align 4",
    ".globl periscope_calib_empty_stepped",
    ".type periscope_calib_empty_stepped,@function",
    "periscope_calib_empty_stepped:",
    "mov rax, rdi",
    "ret",
    ".size periscope_calib_empty_stepped, . - periscope_calib_empty_stepped",
    // A call of a function whose first instruction is `push rbp`, as a Go function's
    // after its stack check: whether the kernel's user stack taken there includes the
    // caller (`periscope_calib_stack_ret`, at [rsp]) is what `Engine::kernel_adds_caller`
    // finds out. Frame pointers as Go keeps them.
    ".p2align 4",
    ".globl periscope_calib_stack_outer",
    ".type periscope_calib_stack_outer,@function",
    "periscope_calib_stack_outer:",
    "push rbp",
    "mov rbp, rsp",
    "push r14",
    "push r14",
    "mov r14, rdi",
    "call periscope_calib_stack_inner",
    ".globl periscope_calib_stack_ret",
    "periscope_calib_stack_ret:",
    "pop r14",
    "pop r14",
    "pop rbp",
    "ret",
    ".size periscope_calib_stack_outer, . - periscope_calib_stack_outer",
    ".p2align 4",
    ".globl periscope_calib_stack_inner",
    ".type periscope_calib_stack_inner,@function",
    "periscope_calib_stack_inner:",
    "push rbp",
    "mov rbp, rsp",
    "pop rbp",
    "ret",
    ".size periscope_calib_stack_inner, . - periscope_calib_stack_inner",
);

unsafe extern "C" {
    fn periscope_calib_emulated(x: u64) -> u64;
    fn periscope_calib_stepped(x: u64) -> u64;
    fn periscope_calib_nop5(x: u64) -> u64;
    fn periscope_calib_call(g: *const u64) -> u64;
    fn periscope_calib_empty();
    fn periscope_calib_call_stepped(g: *const u64) -> u64;
    fn periscope_calib_empty_stepped();
    fn periscope_calib_stack_outer(g: *const u64);
    fn periscope_calib_stack_inner();
    fn periscope_calib_stack_ret();
}

/// The `push rbp` entry `kernel_adds_caller` probes, and the return address into its
/// caller that the kernel's stack may or may not include.
pub(crate) fn stack_points() -> (usize, u64) {
    (
        periscope_calib_stack_inner as *const () as usize,
        periscope_calib_stack_ret as *const () as usize as u64,
    )
}

/// One call of the function `stack_points` names.
pub(crate) fn stack_call() {
    // SAFETY: the function saves and restores R14 and RBP and only calls an empty
    // function; it reads nothing through the fake goroutine.
    unsafe { periscope_calib_stack_outer(FAKE_G.as_ptr()) };
}

/// The fake goroutine of `periscope_calib_call`: goid at offset 0, stack.hi at 8 (the
/// pairing key needs only a stack top above the stack pointer).
pub(crate) static FAKE_G: [u64; 2] = [1, u64::MAX];

/// Calls of the empty function that the latency floor is measured on.
pub(crate) const FLOOR_CALLS: u64 = 400;

/// The empty function's entry and its RET: with `stepped`, the one whose entry the
/// kernel single-steps (`mov rax, rdi`: 3 bytes), else the one it emulates (`nop`).
pub(crate) fn floor_points(stepped: bool) -> (usize, usize) {
    if stepped {
        let entry = periscope_calib_empty_stepped as *const () as usize;
        (entry, entry + 3)
    } else {
        let entry = periscope_calib_empty as *const () as usize;
        (entry, entry + 1)
    }
}

/// Makes the calls the latency floor is measured on.
pub(crate) fn floor_calls(stepped: bool) {
    for _ in 0..FLOOR_CALLS {
        // SAFETY: the functions save and restore R14 and only call an empty function.
        std::hint::black_box(unsafe {
            if stepped {
                periscope_calib_call_stepped(FAKE_G.as_ptr())
            } else {
                periscope_calib_call(FAKE_G.as_ptr())
            }
        });
    }
}

/// What one measurement of the hit costs found (see `Engine::price_hits`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HitPrices {
    pub emulated_ns: f64,
    pub stepped_ns: f64,
    pub nop5_ns: f64,
    /// The single-stepped batches' spread (see `time_per_call`): above ~0.5 the machine
    /// is too busy or noisy for one measurement to be the price.
    pub spread: f64,
}

/// Nanoseconds a uprobe hit adds to the probed instruction, by how the kernel runs it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HitCost {
    pub emulated_ns: f64,
    pub stepped_ns: f64,
    /// A hit on a 5-byte NOP, which kernels from 6.18 turn into a call and a system
    /// call instead of a trap; on older kernels, an emulated hit.
    pub nop5_ns: f64,
    /// What a latency probe measures for a call that takes no time: its own time
    /// between the entry's clock read and the return's (the median of FLOOR_CALLS).
    /// Subtracted from every latency.
    pub latency_floor_ns: f64,
    /// The same when the entry is single-stepped (a leaf without a stack check): the
    /// single step of the entry happens after its clock read.
    pub latency_floor_stepped_ns: f64,
}

/// The calibration functions, emulated, single-stepped and 5-byte NOP: (address, calls
/// to time them with).
pub(crate) fn targets() -> [(unsafe extern "C" fn(u64) -> u64, u64); 3] {
    [
        (periscope_calib_emulated, 3000),
        (periscope_calib_stepped, 600),
        (periscope_calib_nop5, 3000),
    ]
}

/// Batches a calibration function is timed in: many short ones, so that on a busy
/// machine most of them run without being preempted, and a low quantile of their
/// per-call times is what a hit costs rather than what the neighbours cost.
const BATCHES: u64 = 40;

/// Time per call of `f` over `n` calls: the first quartile of BATCHES batches' per-call
/// times, and their spread ((third quartile - first) / first quartile).
pub(crate) fn time_per_call(f: unsafe extern "C" fn(u64) -> u64, n: u64) -> (f64, f64) {
    let per_batch = (n / BATCHES).max(1);
    let mut t: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for i in 0..per_batch {
                // SAFETY: the functions read RDI and return it; nothing else.
                std::hint::black_box(unsafe { f(std::hint::black_box(i)) });
            }
            start.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    let q = |x: f64| t[((t.len() - 1) as f64 * x).round() as usize];
    let (q1, q3) = (q(0.25), q(0.75));
    (q1, if q1 > 0.0 { (q3 - q1) / q1 } else { 0.0 })
}

/// The median of some measurements (of the hit costs, repeated while probes run).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
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

//! The wire format from include/periscope.h (through bindgen, layout tests included).
#![allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all)]
include!(concat!(env!("OUT_DIR"), "/wire.rs"));

// SAFETY: these are plain C structs of integers and byte arrays with explicit padding
// (see periscope.h); every bit pattern is valid and there are no pointers.
unsafe impl aya::Pod for psc_probe {}
// SAFETY: as above.
unsafe impl aya::Pod for psc_stats {}
// SAFETY: as above.
unsafe impl aya::Pod for psc_hist {}
// SAFETY: as above.
unsafe impl aya::Pod for psc_event {}
// SAFETY: as above.
unsafe impl aya::Pod for psc_by_key {}
// SAFETY: as above.
unsafe impl aya::Pod for psc_by_name {}
// SAFETY: as above.
unsafe impl aya::Pod for psc_section {}
// SAFETY: as above.
unsafe impl aya::Pod for psc_item {}
// SAFETY: as above.
unsafe impl aya::Pod for psc_pending_key {}
// SAFETY: as above (two u32 and a u64, no padding).
unsafe impl aya::Pod for psc_site_key {}
// SAFETY: as above (two u16, three u32 and a u64, no padding).
unsafe impl aya::Pod for psc_site_event {}
// SAFETY: as above.
unsafe impl aya::Pod for psc_pending {}
// SAFETY: as above.
unsafe impl aya::Pod for psc_outer {}
// SAFETY: as above (two u32, no padding).
unsafe impl aya::Pod for psc_proc_key {}
// SAFETY: as above (four u64).
unsafe impl aya::Pod for psc_proc {}

/// The compiled BPF object.
pub static BPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/periscope.bpf.o"));

/// A plain value read from ring-buffer bytes: `Pod` (every bit pattern valid, no
/// pointers), so no bytes can make an invalid `T`.
pub fn read<T: aya::Pod>(bytes: &[u8], at: usize) -> Option<T> {
    let end = at.checked_add(std::mem::size_of::<T>())?;
    let b = bytes.get(at..end)?;
    // SAFETY: the length was checked; read_unaligned copes with any alignment, and
    // T: Pod is valid for any bytes.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

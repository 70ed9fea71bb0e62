//! The Go function table in `.gopclntab`, which even stripped binaries keep
//! (runtime/symtab.go; layout of Go ≥ 1.18, magic 0xfffffff0 and ≥ 1.20, 0xfffffff1).

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct PcFunc {
    pub name: String,
    pub entry: u64,
    /// The next function's entry: the end of this one, padding included.
    pub end: u64,
}

/// The pclntab bytes: its own section in most binaries; inside `.data.rel.ro` in a PIE
/// built by Go < 1.20, found there by symbol or, when stripped, by its header.
pub fn locate(elf: &crate::elf::Elf) -> Option<std::borrow::Cow<'_, [u8]>> {
    if let Some(s) = elf.section(".gopclntab") {
        return Some(s);
    }
    if let (Some(a), Some(b)) = (
        elf.symbol_addr("runtime.pclntab"),
        elf.symbol_addr("runtime.epclntab"),
    ) {
        return elf
            .bytes_at(a, (b - a) as usize)
            .map(std::borrow::Cow::Borrowed);
    }
    let ro = elf.section(".data.rel.ro")?;
    let start = (0..ro.len().saturating_sub(64)).step_by(8).find(|&i| {
        matches!(&ro[i..i + 4], [0xf0 | 0xf1, 0xff, 0xff, 0xff])
            && ro[i + 4] == 0
            && ro[i + 5] == 0
            && matches!(ro[i + 6], 1 | 2 | 4)
            && ro[i + 7] == 8
    })?;
    Some(std::borrow::Cow::Owned(ro[start..].to_vec()))
}

/// Where Go's text starts (`runtime.text`), which function entries in the table are
/// relative to when its header's textStart reads 0 in the file (Go ≥ 1.20 leaves it to
/// a relocation). Not the `.text` section: an externally linked binary (cgo) puts C code
/// first there. From the symbol table, or in a stripped binary from the runtime's
/// `firstmoduledata`, which points at the pclntab and holds `minpc` (runtime/symtab.go:
/// pcHeader, six slices, findfunctab, then minpc at byte 160, the same from 1.18 to 1.27).
pub fn text_start(elf: &crate::elf::Elf) -> u64 {
    if let Some(t) = elf.symbol_addr("runtime.text") {
        return t;
    }
    let text = elf.section_addr(".text").unwrap_or(0);
    let text_end = text + elf.section_size(".text").unwrap_or(0);
    let pcln = elf
        .section_addr(".gopclntab")
        .or_else(|| elf.symbol_addr("runtime.pclntab"));
    let from_moduledata = pcln.and_then(|pcln| {
        let data = elf.section(".noptrdata")?;
        let word = |i: usize| {
            data.get(i..i + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        };
        (0..data.len().saturating_sub(200))
            .step_by(8)
            .filter(|&i| word(i) == Some(pcln))
            .find_map(|i| word(i + 160).filter(|&minpc| minpc >= text && minpc < text_end))
    });
    from_moduledata.unwrap_or(text)
}

pub fn functions(tab: &[u8], text_fallback: u64, path: &std::path::Path) -> Result<Vec<PcFunc>> {
    let bad = |what| Error::BadPclntab {
        path: path.to_path_buf(),
        what,
    };
    if tab.len() < 64 {
        return Err(bad("too short"));
    }
    let magic = u32::from_le_bytes(tab[0..4].try_into().unwrap());
    if magic != 0xffff_fff0 && magic != 0xffff_fff1 {
        return Err(bad("unsupported version (Go 1.18 or newer is needed)"));
    }
    if tab[7] != 8 {
        return Err(bad("pointer size is not 8"));
    }
    let word =
        |i: usize| -> u64 { u64::from_le_bytes(tab[8 + 8 * i..16 + 8 * i].try_into().unwrap()) };
    let nfunc = word(0) as usize;
    let mut text_start = word(2);
    // In a PIE the field is filled by a dynamic relocation and reads 0 in the file.
    if text_start == 0 {
        text_start = text_fallback;
    }
    let funcname_off = word(3) as usize;
    let pcln_off = word(7) as usize;
    let functab = tab.get(pcln_off..).ok_or(bad("functab out of range"))?;
    let u32_at = |b: &[u8], off: usize| -> Option<u32> {
        b.get(off..off + 4)
            .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
    };
    let mut out = Vec::with_capacity(nfunc);
    for i in 0..nfunc {
        let entry_off = u32_at(functab, 8 * i).ok_or(bad("functab truncated"))?;
        let func_off = u32_at(functab, 8 * i + 4).ok_or(bad("functab truncated"))? as usize;
        let next_entry = u32_at(functab, 8 * i + 8).ok_or(bad("functab truncated"))?;
        // _func: entryOff u32, nameOff i32, ...
        let name_off = u32_at(functab, func_off + 4).ok_or(bad("_func out of range"))? as usize;
        let names = tab
            .get(funcname_off + name_off..)
            .ok_or(bad("name out of range"))?;
        let end = names.iter().position(|&c| c == 0).unwrap_or(names.len());
        out.push(PcFunc {
            name: String::from_utf8_lossy(&names[..end]).into_owned(),
            entry: text_start + u64::from(entry_off),
            end: text_start + u64::from(next_entry),
        });
    }
    Ok(out)
}

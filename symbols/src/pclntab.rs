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
    moduledata(elf)
        .and_then(|md| moduledata_word(elf, md, 160))
        .filter(|&minpc| minpc >= text && minpc < text_end)
        .unwrap_or(text)
}

/// The link-time address of `runtime.firstmoduledata`: where a word points at the
/// pclntab and the word 160 bytes on (`minpc`) into the text.
pub fn moduledata(elf: &crate::elf::Elf) -> Option<u64> {
    if let Some(a) = elf.symbol_addr("runtime.firstmoduledata") {
        return Some(a);
    }
    let pcln = elf
        .section_addr(".gopclntab")
        .or_else(|| elf.symbol_addr("runtime.pclntab"))?;
    let text = elf.section_addr(".text")?;
    let text_end = text + elf.section_size(".text")?;
    // Go 1.27 gives it a section of its own; before, it is in `.noptrdata`.
    [".go.module", ".noptrdata"].iter().find_map(|&name| {
        let base = elf.section_addr(name)?;
        let data = elf.section(name)?;
        let word = |i: usize| {
            data.get(i..i + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        };
        (0..data.len().saturating_sub(168))
            .step_by(8)
            .filter(|&i| word(i) == Some(pcln))
            .find(|&i| word(i + 160).is_some_and(|minpc| minpc >= text && minpc < text_end))
            .map(|i| base + i as u64)
    })
}

/// The word at byte `off` of the moduledata at `md`.
pub fn moduledata_word(elf: &crate::elf::Elf, md: u64, off: u64) -> Option<u64> {
    elf.bytes_at(md + off, 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
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

/// Source positions from `.gopclntab`: each function's pc→file and pc→line tables, as
/// the runtime reads them for tracebacks (runtime/symtab.go: pcvalue, funcfile), so
/// stacks symbolize without DWARF. A pc inside inlined code gets the inlined body's
/// file:line under the function it was inlined into.
pub struct Lines {
    tab: Vec<u8>,
    text_start: u64,
    /// (entry, end, offset of the `_func` in the function table), by entry.
    funcs: Vec<(u64, u64, usize)>,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    functab: usize,
    funcnames: usize,
}

/// One symbolized pc.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    pub func: String,
    pub file: String,
    pub line: u32,
}

impl Lines {
    pub fn new(tab: Vec<u8>, text_fallback: u64) -> Option<Lines> {
        if tab.len() < 72 || tab[7] != 8 {
            return None;
        }
        let word = |i: usize| u64::from_le_bytes(tab[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        let nfunc = word(0) as usize;
        let text_start = match word(2) {
            0 => text_fallback,
            t => t,
        };
        let (funcnames, cutab, filetab, pctab, functab) = (
            word(3) as usize,
            word(4) as usize,
            word(5) as usize,
            word(6) as usize,
            word(7) as usize,
        );
        let u32_at = |off: usize| -> Option<u64> {
            tab.get(off..off + 4)
                .map(|s| u64::from(u32::from_le_bytes(s.try_into().unwrap())))
        };
        let mut funcs = Vec::with_capacity(nfunc);
        for i in 0..nfunc {
            let entry = u32_at(functab + 8 * i)?;
            let func_off = u32_at(functab + 8 * i + 4)? as usize;
            let next = u32_at(functab + 8 * i + 8)?;
            funcs.push((text_start + entry, text_start + next, func_off));
        }
        Some(Lines {
            tab,
            text_start,
            funcs,
            cutab,
            filetab,
            pctab,
            functab,
            funcnames,
        })
    }

    fn u32_at(&self, off: usize) -> Option<u32> {
        self.tab
            .get(off..off + 4)
            .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
    }

    fn cstr(&self, off: usize) -> Option<String> {
        let b = self.tab.get(off..)?;
        let end = b.iter().position(|&c| c == 0)?;
        Some(String::from_utf8_lossy(&b[..end]).into_owned())
    }

    /// The function, file and line of a link-time pc.
    pub fn position(&self, pc: crate::LinkAddr) -> Option<Position> {
        let pc = pc.0;
        let i = self.funcs.partition_point(|f| f.0 <= pc).checked_sub(1)?;
        let (entry, end, func_off) = self.funcs[i];
        if pc >= end {
            return None;
        }
        let f = self.functab + func_off;
        // _func: entryOff, nameOff, args, deferreturn, pcsp, pcfile, pcln, npcdata,
        // cuOffset (the same offsets from Go 1.18 to 1.27).
        let name = self.cstr(self.funcnames + self.u32_at(f + 4)? as usize)?;
        let pcfile = self.u32_at(f + 20)? as usize;
        let pcln = self.u32_at(f + 24)? as usize;
        let cu = self.u32_at(f + 32)? as usize;
        let file_idx = self.pcvalue(pcfile, entry, pc)?;
        let line = self.pcvalue(pcln, entry, pc)?;
        let file_off = self.u32_at(self.cutab + 4 * (cu + usize::try_from(file_idx).ok()?))?;
        let file = self.cstr(self.filetab + file_off as usize)?;
        Some(Position {
            func: name,
            file,
            line: u32::try_from(line).ok()?,
        })
    }

    /// The `idx`-th FUNCDATA offset of the function entered at `entry` (relative to
    /// the moduledata's `gofunc`), or None when it has none. `header` is the size of a
    /// `_func` before its pcdata offsets: 40 up to Go 1.19, 44 from 1.20 (startLine).
    pub fn funcdata(&self, entry: u64, idx: u8, header: usize) -> Option<u32> {
        let i = self.funcs.binary_search_by_key(&entry, |f| f.0).ok()?;
        let f = self.functab + self.funcs[i].2;
        let npcdata = self.u32_at(f + 28)? as usize;
        let nfuncdata = *self.tab.get(f + header - 1)?;
        if idx >= nfuncdata {
            return None;
        }
        let off = self.u32_at(f + header + 4 * npcdata + 4 * idx as usize)?;
        (off != u32::MAX).then_some(off)
    }

    /// The value of a pc-value table at `target` (runtime.pcvalue: zig-zag value
    /// deltas and pc deltas, as varints; the pc quantum is 1 on amd64).
    fn pcvalue(&self, off: usize, entry: u64, target: u64) -> Option<i64> {
        if off == 0 {
            return None;
        }
        let mut p = self.tab.get(self.pctab + off..)?;
        let (mut val, mut pc, mut first) = (-1i64, entry, true);
        loop {
            let (uvdelta, n) = crate::buildinfo::uvarint(p)?;
            p = &p[n..];
            if uvdelta == 0 && !first {
                return None;
            }
            first = false;
            let vdelta = if uvdelta & 1 != 0 {
                !(uvdelta >> 1) as i64
            } else {
                (uvdelta >> 1) as i64
            };
            val += vdelta;
            let (pcdelta, n) = crate::buildinfo::uvarint(p)?;
            p = &p[n..];
            pc += pcdelta;
            if target < pc {
                return Some(val);
            }
        }
    }

    /// Where Go's text starts (function entries are relative to it).
    pub fn text_start(&self) -> u64 {
        self.text_start
    }
}

//! The ELF file itself: memory-mapped once, with the section and segment facts the rest
//! of the crate needs (vaddr ↔ file offset, section bytes, symbols).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use crate::error::{Error, Result};

/// A mapped ELF image. Cloning shares the mapping.
#[derive(Clone)]
pub struct Elf {
    path: PathBuf,
    map: Arc<memmap2::Mmap>,
    segments: Vec<Segment>,
    pub is_pie: bool,
    /// Symbol addresses by name, indexed on the first look-up: decoding a value looks
    /// some up per call (`runtime.types`), and the table has tens of thousands.
    symbols: std::sync::OnceLock<std::collections::HashMap<String, u64>>,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
}

impl Elf {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the mapping is read-only and private; a binary that changes under us
        // (rebuilt in place) would give wrong symbols, not memory unsafety we act on,
        // which is the same trade-off every debugger makes.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let obj = object::File::parse(&*map).map_err(|e| {
            if map.starts_with(b"\x7fELF") {
                Error::BadElf {
                    path: path.to_path_buf(),
                    what: e.to_string(),
                }
            } else {
                Error::NotElf {
                    path: path.to_path_buf(),
                }
            }
        })?;
        if obj.format() != object::BinaryFormat::Elf {
            return Err(Error::NotElf {
                path: path.to_path_buf(),
            });
        }
        if obj.architecture() != object::Architecture::X86_64 {
            return Err(Error::UnsupportedArch {
                path: path.to_path_buf(),
                arch: format!("{:?}", obj.architecture()),
            });
        }
        let segments = obj
            .segments()
            .map(|s| {
                let (offset, filesz) = s.file_range();
                Segment {
                    vaddr: s.address(),
                    memsz: s.size(),
                    offset,
                    filesz,
                }
            })
            .collect();
        let is_pie = obj.kind() == object::ObjectKind::Dynamic;
        Ok(Elf {
            path: path.to_path_buf(),
            map: Arc::new(map),
            segments,
            is_pie,
            symbols: std::sync::OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn data(&self) -> &[u8] {
        &self.map
    }

    pub fn object(&self) -> object::File<'_> {
        // The file parsed successfully in `open`; parsing again is cheap (headers only).
        object::File::parse(self.data()).expect("ELF parsed at open")
    }

    /// The uncompressed contents of a section, if present and intact.
    pub fn section(&self, name: &str) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.section_checked(name).ok().flatten()
    }

    /// The same, telling a section that is absent (None) from one that is damaged
    /// (Err: why it cannot be read, such as a compressed stream that does not inflate).
    pub fn section_checked(
        &self,
        name: &str,
    ) -> std::result::Result<Option<std::borrow::Cow<'_, [u8]>>, String> {
        let obj = self.object();
        let Some(sec) = obj.section_by_name(name) else {
            return Ok(None);
        };
        let c = sec.compressed_data().map_err(|e| e.to_string())?;
        if c.format != object::CompressionFormat::Zlib {
            return c.decompress().map(Some).map_err(|e| e.to_string());
        }
        // Go's DWARF is zlib (SHF_COMPRESSED): inflated with zlib-rs, about twice as
        // fast as the miniz_oxide that `object` uses, and the largest cost of a catalog.
        // (The size comes from the file: a damaged header must not reserve gigabytes.)
        let mut out = Vec::with_capacity((c.uncompressed_size as usize).min(1 << 30));
        let mut z = flate2::Decompress::new(true);
        match z.decompress_vec(c.data, &mut out, flate2::FlushDecompress::Finish) {
            Ok(flate2::Status::StreamEnd) if out.len() as u64 == c.uncompressed_size => {
                Ok(Some(std::borrow::Cow::Owned(out)))
            }
            Ok(_) if out.len() as u64 == c.uncompressed_size => Err(
                "its compressed data is corrupt: the zlib stream's checksum does not match".into(),
            ),
            Ok(_) => Err(format!(
                "its compressed data inflates to {} bytes, its header says {}",
                out.len(),
                c.uncompressed_size
            )),
            Err(e) => Err(format!("its compressed data does not inflate: {e}")),
        }
    }

    /// The size of a section as stored in the file (compressed or not).
    pub fn section_size(&self, name: &str) -> Option<u64> {
        self.object()
            .section_by_name(name)
            .and_then(|s| s.compressed_file_range().ok())
            .map(|r| r.compressed_size)
    }

    pub fn section_addr(&self, name: &str) -> Option<u64> {
        self.object().section_by_name(name).map(|s| s.address())
    }

    /// Converts a link-time virtual address to a file offset, which is what uprobes
    /// attach to.
    pub fn vaddr_to_offset(&self, vaddr: crate::LinkAddr) -> Option<crate::FileOffset> {
        let v = vaddr.0;
        self.segments.iter().find_map(|s| {
            (v >= s.vaddr && v < s.vaddr + s.filesz.min(s.memsz))
                .then(|| crate::FileOffset(v - s.vaddr + s.offset))
        })
    }

    /// Bytes of the file image at a link-time virtual address.
    pub fn bytes_at(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        let off = self.vaddr_to_offset(crate::LinkAddr(vaddr))?.0 as usize;
        self.data().get(off..off.checked_add(len)?)
    }

    /// The lowest vaddr mapped from file offset 0, used to compute the load bias of a PIE.
    pub fn first_load_vaddr(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.filesz > 0)
            .map(|s| s.vaddr - s.offset)
            .min()
            .unwrap_or(0)
    }

    pub fn symbol_addr(&self, name: &str) -> Option<u64> {
        self.symbols
            .get_or_init(|| {
                let mut m = std::collections::HashMap::new();
                for s in self.object().symbols() {
                    if let Ok(n) = s.name() {
                        // The first of a name, as a scan would find it.
                        m.entry(n.to_string()).or_insert(s.address());
                    }
                }
                m
            })
            .get(name)
            .copied()
    }

    pub fn has_symbols(&self) -> bool {
        self.object().symbols().next().is_some()
    }

    pub fn build_id(&self) -> Option<String> {
        // Go writes its own build id note; the GNU one exists only for external linking.
        let obj = self.object();
        let id = obj.build_id().ok().flatten()?;
        Some(id.iter().map(|b| format!("{b:02x}")).collect())
    }
}

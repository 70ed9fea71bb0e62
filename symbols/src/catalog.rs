//! Everything periscope knows about one Go binary: its functions with parameters,
//! results, their ABI locations and probe points, and its types.
// FxHash: the keys are DWARF offsets, addresses and names from the binary itself;
// SipHash's DoS resistance buys nothing here and cost ~4% of a large catalog.
use rustc_hash::FxHashMap as HashMap;
use std::path::Path;

use serde::Serialize;

use crate::dwarf::{self, DwarfFunction, DwarfParam, GOffsets};
use crate::elf::Elf;
use crate::error::{Error, Result};
use crate::goabi::{self, Location};
use crate::probe_points::{self, ProbePoints};
use crate::types::{TypeId, Types};
use crate::{buildinfo, pclntab};

#[derive(Debug, Clone, Serialize)]
pub struct Value {
    pub name: String,
    #[serde(skip)]
    pub ty: TypeId,
    #[serde(rename = "type")]
    pub type_name: String,
    pub location: Location,
    /// Go's own DWARF location at the entry address, as (DWARF regnum, size) pieces.
    #[serde(skip)]
    pub dwarf_entry: Option<Vec<(Option<u16>, u64)>>,
}

impl Value {
    /// Compiler-internal parameters such as a generic function's `.dict`.
    pub fn is_internal(&self) -> bool {
        self.name.starts_with('.')
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Function {
    pub name: String,
    pub package: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub entry: u64,
    pub end: u64,
    /// None when the binary has no DWARF (stripped): the signature is unknown.
    pub params: Option<Vec<Value>>,
    pub results: Option<Vec<Value>>,
    pub inlined_only: bool,
    /// The function uses ABI0 (all values on the stack; its ELF symbol ends in
    /// `.abi0`): assembly, and cgo wrappers before Go 1.21.
    pub abi0: bool,
    pub probes: Option<ProbePoints>,
}

impl Function {
    pub fn probeable(&self) -> bool {
        !self.inlined_only && self.probes.is_some()
    }

    /// `main.Login(username string, attempts int) (bool, error)`.
    pub fn signature(&self) -> String {
        let Some(params) = &self.params else {
            return format!("{}(?)", self.name);
        };
        let ps: Vec<String> = params
            .iter()
            .filter(|p| !p.is_internal())
            .map(|p| format!("{} {}", p.name, p.type_name))
            .collect();
        let mut s = format!("{}({})", self.name, ps.join(", "));
        let results = self.results.as_deref().unwrap_or(&[]);
        let named = results
            .iter()
            .any(|r| !r.name.starts_with('r') || r.name.parse::<u32>().is_ok());
        let rs: Vec<String> = results
            .iter()
            .map(|r| {
                if named && !is_anon_result(&r.name) {
                    format!("{} {}", r.name, r.type_name)
                } else {
                    r.type_name.clone()
                }
            })
            .collect();
        match rs.len() {
            0 => {}
            1 if !named || is_anon_result(&results[0].name) => s += &format!(" {}", rs[0]),
            _ => s += &format!(" ({})", rs.join(", ")),
        }
        s
    }

    pub fn location(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{}:{l}", short_file(f)),
            (Some(f), None) => short_file(f).to_string(),
            _ => String::new(),
        }
    }

    /// Parameters and then results, for lookups by name in conditions.
    pub fn value(&self, name: &str) -> Option<(&Value, bool)> {
        let p = self
            .params
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|v| v.name == name);
        if let Some(p) = p {
            return Some((p, false));
        }
        self.results
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|v| v.name == name)
            .map(|v| (v, true))
    }
}

fn is_anon_result(name: &str) -> bool {
    name.strip_prefix('r')
        .is_some_and(|n| n.parse::<u32>().is_ok())
}

fn short_file(f: &str) -> &str {
    f.rsplit('/').next().unwrap_or(f)
}

pub struct Catalog {
    pub elf: Elf,
    pub go_version: String,
    /// The main module's path, from the build information (`cmd` for Go's own
    /// commands): its packages are the program's own code.
    pub main_module: Option<String>,
    pub functions: Vec<Function>,
    pub types: Types,
    pub g_offsets: Option<GOffsets>,
    pub has_dwarf: bool,
    runtime_types: HashMap<u64, TypeId>,
    by_name: HashMap<String, usize>,
    /// pc → function, file and line, from `.gopclntab` (stripped binaries too).
    lines: Option<pclntab::Lines>,
}

impl Catalog {
    /// A one-line warning when the binary's Go release is one periscope was not tested
    /// on (its DWARF may describe values otherwise): values are then shown as DWARF
    /// says, unchecked.
    pub fn release_warning(&self) -> Option<String> {
        let tested = TESTED_RELEASES;
        match buildinfo::parse_version(&self.go_version) {
            Some((1, minor)) if tested.contains(&minor) => None,
            _ if !self.has_dwarf => None,
            _ => Some(format!(
                "{} is a Go release periscope was not tested on (go1.19, go1.21 to go1.27): values are shown as its DWARF describes them, unchecked",
                self.go_version
            )),
        }
    }

    pub fn open(path: &Path) -> Result<Catalog> {
        let elf = Elf::open(path)?;
        let Some(pcln) = pclntab::locate(&elf) else {
            return Err(Error::NotGo {
                path: path.to_path_buf(),
            });
        };
        let go_version = elf
            .section(".go.buildinfo")
            .and_then(|s| buildinfo::go_version(&s))
            .unwrap_or_else(|| "unknown".into());
        let main_module = elf
            .section(".go.buildinfo")
            .and_then(|s| buildinfo::main_module(&s));
        if let Some((1, minor)) = buildinfo::parse_version(&go_version)
            && minor < 17
        {
            return Err(Error::OldGo {
                path: path.to_path_buf(),
                version: go_version,
            });
        }
        let text_start = pclntab::text_start(&elf);
        let pcfuncs = pclntab::functions(&pcln, text_start, path)?;
        let lines = pclntab::Lines::new(pcln.into_owned(), text_start);
        let has_dwarf = dwarf::has_dwarf(&elf);
        // Disassembling every function for its probe points needs only the function
        // table, so it runs beside the DWARF walk instead of after it.
        let (points, loaded) = std::thread::scope(|s| {
            let points = s.spawn(|| find_probe_points(&elf, &pcfuncs));
            let loaded = has_dwarf.then(|| dwarf::load(&elf));
            (points.join().expect("probe point thread"), loaded)
        });
        let (mut functions, types, g_offsets, runtime_types) = if let Some(info) = loaded {
            let mut info = info?;
            let dict_ty = info.types.push(crate::types::GoType {
                name: "*[]uintptr".into(),
                size: 8,
                kind: crate::types::Kind::UnsafePointer,
            });
            // Placing every function's values is independent work: split it over the
            // cores like the walk.
            let types = &info.types;
            let abi0 = abi0_entries(&elf);
            let fns = in_parallel(info.functions, |f| {
                let is_abi0 = abi0.contains(&f.low_pc);
                build_function(f, types, dict_ty, is_abi0)
            });
            (fns, info.types, info.g_offsets, info.runtime_types)
        } else {
            // No DWARF: raw argument words where the binary shows where they are, and
            // the goroutine layout from the table of Go versions (stripped.rs).
            let mut types = Types::default();
            let raw = lines
                .as_ref()
                .and_then(|l| crate::stripped::RawArgs::new(&elf, l, &go_version));
            let fns = pcfuncs
                .iter()
                .map(|p| Function {
                    name: p.name.clone(),
                    package: package_of(&p.name).to_string(),
                    file: None,
                    line: None,
                    entry: p.entry,
                    end: p.end,
                    params: raw
                        .as_ref()
                        .and_then(|r| r.words(&elf, p.entry, p.end))
                        .map(|(words, _)| crate::stripped::values(&mut types, words)),
                    results: None,
                    inlined_only: false,
                    abi0: false,
                    probes: None,
                })
                .collect();
            let g = crate::stripped::g_offsets(&go_version);
            (fns, types, g, HashMap::default())
        };
        for f in functions.iter_mut().filter(|f| !f.inlined_only) {
            f.probes = points.get(&f.entry).cloned();
            // DWARF's line table has no row at some entries (compiler-made wrappers,
            // `<autogenerated>:1`); `.gopclntab` has every function's, as Go reads it.
            if (f.file.is_none() || f.line.is_none())
                && let Some(p) = lines
                    .as_ref()
                    .and_then(|l| l.position(crate::LinkAddr(f.entry)))
            {
                f.file.get_or_insert(p.file);
                f.line.get_or_insert(p.line);
            }
        }
        let by_name = functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        Ok(Catalog {
            elf,
            go_version,
            main_module,
            functions,
            types,
            g_offsets,
            has_dwarf,
            runtime_types,
            by_name,
            lines,
        })
    }

    /// The function, file and line of a link-time pc (a return address: pass the call
    /// instruction's, `ret - 1`).
    pub fn position(&self, pc: crate::LinkAddr) -> Option<pclntab::Position> {
        self.lines.as_ref()?.position(pc)
    }

    /// A stripped binary's argument words for `f` (see stripped.rs), and whether Go's
    /// traceback layout lists them all (it stops after ten components).
    pub fn raw_words(&self, f: &Function) -> Option<(Vec<(u8, Location)>, bool)> {
        crate::stripped::RawArgs::new(&self.elf, self.lines.as_ref()?, &self.go_version)?
            .words(&self.elf, f.entry, f.end)
    }

    pub fn function(&self, name: &str) -> Option<&Function> {
        self.by_name.get(name).map(|&i| &self.functions[i])
    }

    /// The index in `functions` of the function of that name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The type whose runtime descriptor sits at link-time address `addr`.
    pub fn runtime_type(&self, addr: crate::LinkAddr) -> Option<TypeId> {
        self.runtime_types.get(&addr.0).copied()
    }

    /// The reflect.Kind byte of a runtime type descriptor (internal/abi.Type.Kind_ at
    /// +23, low 5 bits), for values whose type DWARF does not link to its descriptor.
    pub fn runtime_type_kind(&self, addr: crate::LinkAddr) -> Option<u8> {
        self.elf.bytes_at(addr.0 + 23, 1).map(|b| b[0] & 0x1f)
    }

    /// The name of the runtime type descriptor at link-time `addr`, read from DWARF or,
    /// failing that, from the descriptor itself (internal/abi.Type: Str nameOff at +40,
    /// TFlag at +20, relative to `runtime.types`).
    pub fn runtime_type_name(&self, addr: crate::LinkAddr) -> Option<String> {
        if let Some(t) = self.runtime_type(addr) {
            return Some(self.types.name(t).to_string());
        }
        let base = self.elf.symbol_addr("runtime.types")?;
        let desc = self.elf.bytes_at(addr.0, 48)?;
        let tflag = desc[20];
        let name_off = i32::from_le_bytes(desc[40..44].try_into().ok()?);
        let name_addr = base.checked_add_signed(i64::from(name_off))?;
        let hdr = self.elf.bytes_at(name_addr, 11)?;
        let (len, n) = buildinfo::uvarint(&hdr[1..])?;
        let bytes = self.elf.bytes_at(name_addr + 1 + n as u64, len as usize)?;
        let name = String::from_utf8_lossy(bytes);
        // TFlagExtraStar: the stored name has a '*' that belongs to the pointer type.
        Some(if tflag & 2 != 0 {
            name[1..].to_string()
        } else {
            name.into_owned()
        })
    }
}

/// Go names unnamed results `~r0`, `~r1` (or `~r1`… before 1.19), and blank ones `~b0`
/// up to 1.21 but `~r0` from 1.22: periscope calls them all `r0`, `r1` by their
/// position among the results, the same on every release.
fn display_name(name: &str, index: usize, result: bool) -> String {
    if result && (name.is_empty() || name.starts_with("~r") || name.starts_with("~b")) {
        return format!("r{index}");
    }
    if name.is_empty() || name.starts_with('~') {
        return format!("_{index}");
    }
    name.to_string()
}

/// Where a shape-instantiated generic function takes its dictionary: first, or right
/// after the receiver of a method. Closures inside them capture it instead.
fn dictionary_position(name: &str) -> Option<usize> {
    if !name.contains("[go.shape.") {
        return None;
    }
    let tail = name.rsplit(']').next().unwrap_or("");
    match tail {
        "" => Some(0),
        t if t.contains(".func") => None,
        _ => Some(1),
    }
}

/// `net/http.(*Server).Serve` → `*net/http.Server`.
fn pointer_receiver(name: &str) -> Option<String> {
    let pkg = package_of(name);
    let rest = name.get(pkg.len()..)?.strip_prefix(".(*")?;
    let (ty, method) = rest.split_once(").")?;
    // `-fm` method values get their receiver through the closure context (RDX).
    (!method.contains('.') && !method.ends_with("-fm")).then(|| format!("*{pkg}.{ty}"))
}

/// A name without its package path but its last element, as tables show it:
/// `cmd/vendor/github.com/google/pprof/internal/driver.(*webInterface).render` →
/// `driver.(*webInterface).render` (a `/` inside a generic's type arguments stays).
pub fn short_name(name: &str) -> &str {
    let pkg = package_of(name);
    match pkg.rfind('/') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// `net/http.(*Server).Serve` → `net/http`.
pub fn package_of(name: &str) -> &str {
    let base = name.find('[').map_or(name, |i| &name[..i]);
    let slash = base.rfind('/').map_or(0, |i| i + 1);
    match base[slash..].find('.') {
        Some(dot) => &name[..slash + dot],
        None => "",
    }
}

/// A function of the catalog from its DWARF description: the hidden parameters Go
/// leaves out of DWARF put back, and every value placed by the register ABI.
/// Entries of functions whose symbol says they use ABI0 (`name.abi0`). The DWARF
/// names them without the suffix, and only the symbol table tells the two apart.
fn abi0_entries(elf: &Elf) -> rustc_hash::FxHashSet<u64> {
    use object::{Object, ObjectSymbol};
    elf.object()
        .symbols()
        .filter(|s| s.name().is_ok_and(|n| n.ends_with(".abi0")))
        .map(|s| s.address())
        .collect()
}

/// Go 1.x releases the value fixtures are checked on (tests: `every_release`).
const TESTED_RELEASES: &[u32] = &[19, 21, 22, 23, 24, 25, 26, 27];

fn build_function(f: DwarfFunction, types: &Types, dict_ty: TypeId, abi0: bool) -> Function {
    let (mut params, mut results): (Vec<DwarfParam>, Vec<DwarfParam>) =
        f.params.into_iter().partition(|p| !p.is_result);
    // Go 1.19 to 1.26 describe each unnamed (`~r0`) or blank (`~b0`) result of a
    // function with a `defer` twice (the result and its stack copy). Go gives every
    // result a name of its own, so a repeated name is that copy: the results are the
    // first of each name, in order, where the ABI puts them.
    let mut names = std::collections::HashSet::new();
    results.retain(|r| names.insert(r.name.clone()));
    // Shape-instantiated generic code takes its dictionary as a hidden
    // first argument (in RAX); Go before 1.25 leaves it out of DWARF.
    // Go 1.19 leaves the receiver of autogenerated pointer wrappers
    // (promoted methods) out of DWARF, but it still arrives in RAX.
    if f.file.as_deref() == Some("<autogenerated>")
        && let Some(recv) = pointer_receiver(&f.name)
        && params.first().is_none_or(|p| types.name(p.ty) != recv)
    {
        params.insert(
            0,
            DwarfParam {
                name: ".this".into(),
                ty: dict_ty,
                is_result: false,
                entry_pieces: None,
            },
        );
    }
    // DWARF lists it anywhere, or (before Go 1.25) not at all.
    if let Some(at) = dictionary_position(&f.name) {
        let dict = match params.iter().position(|p| p.name == ".dict") {
            Some(i) => params.remove(i),
            None => DwarfParam {
                name: ".dict".into(),
                ty: dict_ty,
                is_result: false,
                entry_pieces: None,
            },
        };
        params.insert(at.min(params.len()), dict);
    }
    let assign = if abi0 {
        goabi::assign_abi0
    } else {
        goabi::assign
    };
    let a = assign(
        types,
        &params.iter().map(|p| p.ty).collect::<Vec<_>>(),
        &results.iter().map(|p| p.ty).collect::<Vec<_>>(),
    );
    let value = |(i, (p, loc)): (usize, (DwarfParam, Location)), result: bool| Value {
        name: display_name(&p.name, i, result),
        type_name: types.name(p.ty).to_string(),
        ty: p.ty,
        location: loc,
        dwarf_entry: p.entry_pieces,
    };
    Function {
        package: package_of(&f.name).to_string(),
        params: Some(
            params
                .into_iter()
                .zip(a.params)
                .enumerate()
                .map(|x| value(x, false))
                .collect(),
        ),
        results: Some(
            results
                .into_iter()
                .zip(a.results)
                .enumerate()
                .map(|x| value(x, true))
                .collect(),
        ),
        name: f.name,
        file: f.file,
        line: f.line,
        entry: f.low_pc,
        end: f.high_pc,
        inlined_only: f.inlined_only,
        abi0,
        probes: None,
    }
}

/// `f` over `items` on up to four threads, results in order.
fn in_parallel<T: Send, U: Send>(mut items: Vec<T>, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let per = items.len().div_ceil(threads).max(1);
    let mut chunks = Vec::new();
    while items.len() > per {
        let tail = items.split_off(items.len() - per);
        chunks.push(tail);
    }
    chunks.push(items);
    chunks.reverse();
    let f = &f;
    std::thread::scope(|s| {
        let jobs: Vec<_> = chunks
            .into_iter()
            .map(|c| s.spawn(move || c.into_iter().map(f).collect::<Vec<U>>()))
            .collect();
        jobs.into_iter()
            .flat_map(|j| j.join().expect("catalog thread"))
            .collect()
    })
}

/// Probe points of every function in the table, by entry address.
fn find_probe_points(elf: &Elf, functions: &[pclntab::PcFunc]) -> HashMap<u64, ProbePoints> {
    // It runs beside the DWARF walk, which needs a core of its own (its inflating and
    // its walk are the critical path): the other cores share the disassembly.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .clamp(1, 8);
    let chunk = functions.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let jobs: Vec<_> = functions
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter(|f| f.end > f.entry)
                        .filter_map(|f| {
                            let code = elf.bytes_at(f.entry, (f.end - f.entry) as usize)?;
                            Some((f.entry, probe_points::find(code, f.entry)?))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        jobs.into_iter()
            .flat_map(|j| j.join().expect("disassembly thread"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages() {
        assert_eq!(package_of("main.Login"), "main");
        assert_eq!(package_of("net/http.(*Server).Serve"), "net/http");
        assert_eq!(package_of("gopkg.in/yaml.v3.Unmarshal"), "gopkg.in/yaml");
        assert_eq!(package_of("main.Max[go.shape.int]"), "main");
        assert_eq!(package_of("type:.eq.main.T"), "type:");
        assert_eq!(
            pointer_receiver("encoding/json.(*encodeState).Read").as_deref(),
            Some("*encoding/json.encodeState")
        );
        assert_eq!(pointer_receiver("main.Point.Norm1"), None);
    }

    #[test]
    fn result_names() {
        assert_eq!(display_name("~r0", 0, true), "r0");
        assert_eq!(display_name("~r1", 1, true), "r1");
        assert_eq!(display_name("~b0", 0, true), "r0");
        assert_eq!(display_name("err", 2, true), "err");
        assert_eq!(display_name("~p0", 0, false), "_0");
    }
}

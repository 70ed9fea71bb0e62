//! Source files and lines: declarations, the line table at a function's entry, and
//! the file of an abstract function from one of its inlined copies.

use rustc_hash::FxHashMap as HashMap;

use gimli::AttributeValue;

use super::{Die, DwarfFunction, Walker};

impl<'d> Walker<'_, 'd> {
    pub(super) fn decl(&mut self, ui: usize, die: &Die<'d>) -> (Option<String>, Option<u32>) {
        let line = match die.attr_value(gimli::DW_AT_decl_line) {
            Some(AttributeValue::Udata(l)) => Some(l as u32),
            Some(AttributeValue::Data1(l)) => Some(u32::from(l)),
            Some(AttributeValue::Data2(l)) => Some(u32::from(l)),
            Some(AttributeValue::Data4(l)) => Some(l),
            _ => None,
        };
        let file = match die.attr_value(gimli::DW_AT_decl_file) {
            Some(AttributeValue::FileIndex(i)) | Some(AttributeValue::Udata(i)) => {
                self.file_name(ui, i as usize)
            }
            Some(AttributeValue::Data1(i)) => self.file_name(ui, usize::from(i)),
            Some(AttributeValue::Data2(i)) => self.file_name(ui, usize::from(i)),
            Some(AttributeValue::Data4(i)) => self.file_name(ui, i as usize),
            _ => None,
        };
        (file, line)
    }

    pub(super) fn file_name(&mut self, ui: usize, index: usize) -> Option<String> {
        let names = self.file_names.entry(ui).or_insert_with(|| {
            let unit = &self.units[ui].1;
            let Some(lp) = &unit.line_program else {
                return Vec::new();
            };
            let header = lp.header();
            // DWARF < 5 file indexes are 1-based; entry 0 is the unit's primary file.
            let mut v = vec![String::new()];
            if header.version() >= 5 {
                v.clear();
            }
            let string = |a| {
                self.dwarf
                    .attr_string(unit, a)
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            for f in header.file_names() {
                let mut name = string(f.path_name());
                if !name.starts_with('/')
                    && !name.starts_with('<')
                    && let Some(dir) = f.directory(header).map(string)
                    && !dir.is_empty()
                {
                    name = format!("{dir}/{name}");
                }
                v.push(name);
            }
            v
        });
        names.get(index).filter(|s| !s.is_empty()).cloned()
    }

    /// Go before 1.20 emits no DW_AT_decl_line on functions: take the line of the
    /// line-table row at each function's entry instead.
    pub(super) fn lines_from_table(&mut self, ui: usize, fns: &mut [DwarfFunction]) {
        let unit = &self.units[ui].1;
        let Some(lp) = unit.line_program.clone() else {
            return;
        };
        let mut want: HashMap<u64, usize> = fns
            .iter()
            .enumerate()
            .filter(|(_, f)| (f.line.is_none() || f.file.is_none()) && f.low_pc != 0)
            .map(|(i, f)| (f.low_pc, i))
            .collect();
        let mut rows = lp.rows();
        while let Ok(Some((_, row))) = rows.next_row() {
            if want.is_empty() {
                break;
            }
            if let Some(i) = want.remove(&row.address()) {
                if fns[i].line.is_none() {
                    fns[i].line = row.line().map(|l| l.get() as u32);
                }
                if fns[i].file.is_none() {
                    fns[i].file = self.file_name(ui, row.file_index() as usize);
                }
            }
        }
    }

    /// The file of the line-table row at each inlined copy's first address.
    pub(super) fn inline_files_from_table(&mut self, ui: usize, sites: HashMap<usize, u64>) {
        let Some(lp) = self.units[ui].1.line_program.clone() else {
            return;
        };
        let mut by_pc: HashMap<u64, Vec<usize>> = HashMap::default();
        for (o, pc) in sites {
            by_pc.entry(pc).or_default().push(o);
        }
        let mut rows = lp.rows();
        while let Ok(Some((_, row))) = rows.next_row() {
            if by_pc.is_empty() {
                break;
            }
            if let Some(origins) = by_pc.remove(&row.address())
                && let Some(file) = self.file_name(ui, row.file_index() as usize)
            {
                for o in origins {
                    self.inline_files.insert(o, file.clone());
                }
            }
        }
    }
}

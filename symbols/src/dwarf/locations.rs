//! Where a parameter lives at the function's entry, from its DWARF location list.

use gimli::{AttributeValue, Reader};

use super::{R, Walker};

impl<'d> Walker<'_, 'd> {
    /// The location description in force at `pc`, as pieces.
    pub(super) fn entry_pieces(
        &self,
        ui: usize,
        v: AttributeValue<R<'d>>,
        pc: u64,
    ) -> Option<Vec<(Option<u16>, u64)>> {
        let unit = &self.units[ui].1;
        let expr = match v {
            AttributeValue::Exprloc(e) => e,
            other => {
                let mut iter = self.dwarf.attr_locations(unit, other).ok()??;
                let mut found = None;
                while let Ok(Some(entry)) = iter.next() {
                    if entry.range.begin <= pc && pc < entry.range.end {
                        found = Some(entry.data);
                        break;
                    }
                }
                found?
            }
        };
        let mut ops = expr.0;
        let mut pieces = Vec::new();
        let mut reg: Option<u16> = None;
        let mut any = false;
        while !ops.is_empty() {
            let op = gimli::Operation::parse(&mut ops, unit.encoding()).ok()?;
            match op {
                gimli::Operation::Register { register } => {
                    reg = Some(register.0);
                    any = true;
                }
                gimli::Operation::Piece { size_in_bits, .. } => {
                    pieces.push((reg.take(), size_in_bits / 8));
                    any = false;
                }
                _ => {
                    reg = None;
                    any = true;
                }
            }
        }
        if any {
            pieces.push((reg, 0));
        }
        Some(pieces)
    }
}

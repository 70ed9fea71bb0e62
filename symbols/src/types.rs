//! Go types as periscope needs them: enough to place a value in registers (the ABI), to
//! plan what a probe reads, and to decode the bytes it captured.
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub struct TypeId(pub u32);

#[derive(Debug, Clone, Serialize)]
pub struct GoType {
    pub name: String,
    pub size: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone, Serialize)]
pub struct Field {
    pub name: String,
    pub offset: u64,
    pub ty: TypeId,
}

#[derive(Debug, Clone, Serialize)]
pub enum Kind {
    Bool,
    Int {
        signed: bool,
    },
    Float,
    Complex,
    String,
    UnsafePointer,
    Pointer(Option<TypeId>),
    Slice(TypeId),
    Array {
        elem: TypeId,
        len: u64,
    },
    Struct(Vec<Field>),
    Map,
    Chan,
    Func,
    Interface {
        empty: bool,
    },
    /// A type periscope cannot interpret; shown by name, never read.
    Opaque,
    /// An argument word of a binary without DWARF: its size is known, not its type.
    /// Shown in hex as in a Go traceback; compared as an unsigned integer.
    Word,
}

/// All types of one binary, interned by DWARF offset.
#[derive(Debug, Default, Clone)]
pub struct Types {
    types: Vec<GoType>,
}

impl Types {
    pub fn get(&self, id: TypeId) -> &GoType {
        &self.types[id.0 as usize]
    }

    pub(crate) fn push(&mut self, t: GoType) -> TypeId {
        self.types.push(t);
        TypeId(self.types.len() as u32 - 1)
    }

    /// The type of this name, pushed when new (for the few types periscope makes up
    /// itself, such as a stripped binary's argument words).
    pub(crate) fn intern(&mut self, t: GoType) -> TypeId {
        match self.types.iter().position(|x| x.name == t.name) {
            Some(i) => TypeId(i as u32),
            None => self.push(t),
        }
    }

    pub(crate) fn set(&mut self, id: TypeId, t: GoType) {
        self.types[id.0 as usize] = t;
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    pub fn name(&self, id: TypeId) -> &str {
        &self.get(id).name
    }

    /// Alignment in the Go sense (the largest alignment of any scalar inside).
    pub fn align(&self, id: TypeId) -> u64 {
        let t = self.get(id);
        match &t.kind {
            Kind::Bool => 1,
            Kind::Int { .. } | Kind::Float => t.size.clamp(1, 8),
            Kind::Complex => (t.size / 2).clamp(1, 8),
            Kind::Array { elem, .. } => self.align(*elem),
            Kind::Struct(fields) => fields.iter().map(|f| self.align(f.ty)).max().unwrap_or(1),
            Kind::Opaque => t.size.clamp(1, 8).next_power_of_two().min(8),
            _ => 8,
        }
    }

    /// Finds a struct field by name (for conditions and decoding).
    pub fn field(&self, id: TypeId, name: &str) -> Option<&Field> {
        match &self.get(id).kind {
            Kind::Struct(fields) => fields.iter().find(|f| f.name == name),
            _ => None,
        }
    }
}

//! Decoded Go values and their two renderings: JSON for machines, Go-like text for people.
use serde_json::{Value as Json, json};

#[derive(Debug, Clone, PartialEq)]
pub enum GoValue {
    Nil,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Str {
        s: String,
        truncated: bool,
    },
    List {
        items: Vec<GoValue>,
        len: u64,
    },
    Struct(Vec<(String, GoValue)>),
    Map {
        len: Option<u64>,
    },
    Iface {
        ty: String,
        value: Option<Box<GoValue>>,
    },
    Ptr(u64),
    /// Not readable at a uprobe (floats in XMM registers) or not captured.
    Unavailable(&'static str),
    /// A pointer that could not be followed.
    Fault(u64),
}

impl GoValue {
    pub fn to_json(&self) -> Json {
        match self {
            GoValue::Nil => Json::Null,
            GoValue::Bool(b) => json!(b),
            GoValue::Int(i) => json!(i),
            GoValue::Uint(u) => json!(u),
            GoValue::Str { s, truncated } => json!(if *truncated {
                format!("{s}…")
            } else {
                s.clone()
            }),
            GoValue::List { items, len } => {
                let xs: Vec<Json> = items.iter().map(|v| v.to_json()).collect();
                if *len as usize == items.len() {
                    Json::Array(xs)
                } else {
                    json!({"len": len, "items": xs, "truncated": true})
                }
            }
            GoValue::Struct(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            GoValue::Map { len } => json!({ "len": len }),
            GoValue::Iface { ty, value } => match value {
                Some(v) => json!({"type": ty, "value": v.to_json()}),
                None => json!({ "type": ty }),
            },
            GoValue::Ptr(a) => json!(format!("{a:#x}")),
            GoValue::Unavailable(_) => json!("unavailable"),
            GoValue::Fault(a) => json!({ "fault": format!("{a:#x}") }),
        }
    }

    /// Go-like text: `{Name:"alice" Age:15}`, `"s"`, `[1 2 3]`.
    pub fn render(&self) -> String {
        self.render_depth(usize::MAX)
    }

    /// Like `render`, but structs nested deeper than `depth` show as `{…}`: a table
    /// row stays readable when a receiver holds a mutex and a map.
    pub fn render_depth(&self, depth: usize) -> String {
        let inner = |v: &GoValue| v.render_depth(depth.saturating_sub(1));
        match self {
            GoValue::Struct(fields) if depth == 0 && !fields.is_empty() => "{…}".into(),
            GoValue::Nil => "nil".into(),
            GoValue::Bool(b) => b.to_string(),
            GoValue::Int(i) => i.to_string(),
            GoValue::Uint(u) => u.to_string(),
            GoValue::Str { s, truncated } => {
                format!("{:?}{}", s, if *truncated { "…" } else { "" })
            }
            GoValue::List { items, len } => {
                let xs: Vec<String> = items.iter().map(inner).collect();
                let more = if (*len as usize) > items.len() {
                    format!(" …({len})")
                } else {
                    String::new()
                };
                format!("[{}{more}]", xs.join(" "))
            }
            GoValue::Struct(fields) => {
                let xs: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", inner(v)))
                    .collect();
                format!("{{{}}}", xs.join(" "))
            }
            GoValue::Map { len: Some(n) } => format!("map[len={n}]"),
            GoValue::Map { len: None } => "map[?]".into(),
            GoValue::Iface { ty, value: Some(v) } => format!("{ty}({})", inner(v)),
            GoValue::Iface { ty, value: None } => format!("{ty}(…)"),
            GoValue::Ptr(a) => format!("{a:#x}"),
            GoValue::Unavailable(why) => format!("<{why}>"),
            GoValue::Fault(a) => format!("<bad pointer {a:#x}>"),
        }
    }
}

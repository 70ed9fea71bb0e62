//! Decoded Go values and their two renderings: JSON for machines, Go-like text for people.
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value as Json;

/// A parameter's or field's name: shared with the probe's recipe, so decoding a call
/// copies no name.
pub type Name = std::sync::Arc<str>;

#[derive(Debug, Clone, PartialEq)]
pub enum GoValue {
    Nil,
    Bool(bool),
    Int(i64),
    Uint(u64),
    /// A stripped binary's argument word (no type known): hex in text, as in a Go
    /// traceback, a number in JSON.
    Word(u64),
    /// A float32 (`single`) or float64 read from memory or the stack.
    Float {
        v: f64,
        single: bool,
    },
    Complex {
        re: f64,
        im: f64,
        single: bool,
    },
    Str {
        s: String,
        truncated: bool,
    },
    List {
        items: Vec<GoValue>,
        len: u64,
    },
    Struct(Vec<(Name, GoValue)>),
    Map {
        len: Option<u64>,
    },
    Iface {
        ty: String,
        value: Option<Box<GoValue>>,
    },
    Ptr(u64),
    /// A value periscope does not have: never shown as a made-up nil, zero or "".
    NotCaptured(Missing),
    /// A pointer that could not be followed (unmapped memory).
    Fault(u64),
}

/// Why a value was not captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The probe's capture budget (stack window, byte ranges, elements) ran out first.
    Budget,
    /// Behind more pointers than periscope follows (one, or along a `--capture` path).
    Depth,
    /// Past the bytes one read may take (a pointed-to struct over 512 bytes).
    TooLong,
    /// Float arguments and results live in XMM registers, which a uprobe cannot read.
    FloatRegister,
    /// DWARF does not say what it is.
    UnknownType,
    /// A result of a call made while the CPU budget had the return points detached.
    ReturnUnwatched,
    /// A stripped binary's argument word that the function never saves: nothing in
    /// the binary says which register holds it.
    Unplaced,
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Budget => "budget",
            Missing::Depth => "depth",
            Missing::TooLong => "too long",
            Missing::FloatRegister => "float register",
            Missing::UnknownType => "unknown type",
            Missing::ReturnUnwatched => "return not watched (cpu budget)",
            Missing::Unplaced => "unused by the function, so not located (no DWARF)",
        }
    }
}

/// The JSON form of a value, written straight to the output (a trace can print a
/// million of these a second): strings as strings (cut ones end in `…`), pointers to
/// structs as the struct's fields, nil as null (only a real nil), interfaces as
/// `{"type", "value"}`, and what was not captured as `{"not_captured": REASON}`.
impl Serialize for GoValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            GoValue::Nil => s.serialize_none(),
            GoValue::Bool(b) => s.serialize_bool(*b),
            GoValue::Int(i) => s.serialize_i64(*i),
            GoValue::Uint(u) | GoValue::Word(u) => s.serialize_u64(*u),
            // JSON has no NaN or infinity (serde_json would write null, a made-up nil).
            // A float32 in its own shortest digits (0.1, not 0.10000000149011612).
            GoValue::Float { v, single: true } if v.is_finite() => s.serialize_f32(*v as f32),
            GoValue::Float { v, .. } if v.is_finite() => s.serialize_f64(*v),
            GoValue::Float { .. } | GoValue::Complex { .. } => s.collect_str(&self.render()),
            GoValue::Str { s: text, truncated } => {
                if *truncated {
                    s.collect_str(&format_args!("{text}…"))
                } else {
                    s.serialize_str(text)
                }
            }
            GoValue::List { items, len } if *len as usize == items.len() => items.serialize(s),
            GoValue::List { items, len } => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("len", len)?;
                m.serialize_entry("items", items)?;
                m.serialize_entry("truncated", &true)?;
                m.end()
            }
            GoValue::Struct(fields) => Fields(fields).serialize(s),
            GoValue::Map { len } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("len", len)?;
                m.end()
            }
            GoValue::Iface { ty, value } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", ty)?;
                if let Some(v) = value {
                    m.serialize_entry("value", v)?;
                }
                m.end()
            }
            GoValue::Ptr(a) => s.collect_str(&format_args!("{a:#x}")),
            GoValue::NotCaptured(why) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("not_captured", why.as_str())?;
                m.end()
            }
            GoValue::Fault(a) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("not_captured", "fault")?;
                m.serialize_entry("addr", &format_args!("{a:#x}").to_string())?;
                m.end()
            }
        }
    }
}

/// Named values (struct fields, arguments, results) as one JSON object.
pub struct Fields<'a>(pub &'a [(Name, GoValue)]);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(&**k, v)?;
        }
        m.end()
    }
}

impl GoValue {
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).expect("values serialize")
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
            GoValue::Word(w) => format!("{w:#x}"),
            GoValue::Float { v, single } => go_float(*v, *single),
            GoValue::Complex { re, im, single } => {
                let im = go_float(*im, *single);
                let sign = if im.starts_with(['-', '+']) { "" } else { "+" };
                format!("({}{sign}{im}i)", go_float(*re, *single))
            }
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
            GoValue::NotCaptured(why) => format!("‹not captured: {}›", why.as_str()),
            GoValue::Fault(a) => format!("‹not captured: fault at {a:#x}›"),
        }
    }
}

/// A float as Go's `%v` prints it (strconv's 'g' at the shortest precision): the
/// shortest digits that read back the same value (a float32's as a float32), in
/// exponent form when the exponent is under -4 or at least 6 (`1e+06`, `1.5e-05`),
/// else plain (`123456`, `0.0001`).
pub fn go_float(v: f64, single: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let sci = if single {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if v != 0.0 && !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else if single {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_prints_them() {
        // What `fmt.Printf("%v|", v)` printed for these with Go 1.27.
        let f64s = [
            0.0,
            1.0,
            -1.5,
            123456.0,
            1234567.0,
            1e6,
            1e20,
            1e21,
            0.0001,
            0.00001,
            1.0 / 3.0,
            6.02214076e23,
            271828.18,
            -2.5e-7,
            f64::MAX,
            5e-324,
            100000.0,
            999999.0,
            12345678.9,
            -0.0,
        ];
        let got: Vec<String> = f64s.iter().map(|&v| go_float(v, false)).collect();
        assert_eq!(
            got.join("|"),
            "0|1|-1.5|123456|1.234567e+06|1e+06|1e+20|1e+21|0.0001|1e-05|0.3333333333333333|6.02214076e+23|271828.18|-2.5e-07|1.7976931348623157e+308|5e-324|100000|999999|1.23456789e+07|-0"
        );
        let f32s = [0.1f32, 1.0 / 3.0, 16777216.0, 1e6, 3.4e38];
        let got: Vec<String> = f32s.iter().map(|&v| go_float(v.into(), true)).collect();
        assert_eq!(got.join("|"), "0.1|0.33333334|1.6777216e+07|1e+06|3.4e+38");
        let c = |re: f64, im: f64, single| GoValue::Complex { re, im, single }.render();
        assert_eq!(c(1.0, 2.0, false), "(1+2i)");
        assert_eq!(c(1.5, -2.0, false), "(1.5-2i)");
        assert_eq!(c(0.1f32.into(), 1e7, true), "(0.1+1e+07i)");
        // JSON: finite floats as numbers; what JSON cannot hold as Go prints it.
        let j = |v| serde_json::to_string(&GoValue::Float { v, single: false }).unwrap();
        assert_eq!(j(2.5), "2.5");
        let single = GoValue::Float {
            v: 0.1f32.into(),
            single: true,
        };
        assert_eq!(serde_json::to_string(&single).unwrap(), "0.1");
        assert_eq!(j(f64::NAN), "\"NaN\"");
        assert_eq!(j(f64::NEG_INFINITY), "\"-Inf\"");
    }
}

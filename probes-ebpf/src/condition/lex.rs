//! The condition language's tokens, each with its 1-based column.
use crate::error::ConditionError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Int(i128),
    /// `1.5`, `2e3`, `-0.25`: compared with float fields.
    Float(f64),
    /// `50ms`, `1.5s`, `200us`: nanoseconds.
    Duration(u64),
    Str(String),
    Op(&'static str),
    End,
}

/// `50ms` → 50,000,000 ns; None when `lit` is not a duration.
fn duration(lit: &str) -> Option<u64> {
    let split = lit.find(|c: char| c.is_alphabetic() || c == 'µ')?;
    let (num, unit) = lit.split_at(split);
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    let v: f64 = num.parse().ok().filter(|v: &f64| *v >= 0.0)?;
    Some((v * scale).round() as u64)
}

pub(super) fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ConditionError> {
    let err = |column: usize, msg: String| ConditionError {
        text: text.into(),
        column,
        msg,
    };
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let s = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(b[s..i].iter().collect()), col));
        } else if c.is_ascii_digit()
            || (c == '-' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let s = i;
            i += 1;
            // Letters for hex and duration units, a point for `1.5s`, `µ` for `µs`, a
            // sign after an exponent's `e` (`2.5e-3`).
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == 'µ'
                    || (b[i] == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
                    || ((b[i] == '-' || b[i] == '+')
                        && matches!(b[i - 1], 'e' | 'E')
                        && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())
                        && !b[s..i].contains(&'x')))
            {
                i += 1;
            }
            let lit: String = b[s..i].iter().collect();
            if let Some(ns) = duration(&lit) {
                out.push((Tok::Duration(ns), col));
                continue;
            }
            let hex = lit.contains("0x");
            if !hex && lit.contains(['.', 'e', 'E']) {
                let v: f64 = lit
                    .parse()
                    .map_err(|_| err(col, format!("`{lit}` is not a number")))?;
                out.push((Tok::Float(v), col));
                continue;
            }
            let (neg, digits) = match lit.strip_prefix('-') {
                Some(d) => (true, d.to_string()),
                None => (false, lit.clone()),
            };
            let v = match digits.strip_prefix("0x") {
                Some(h) => i128::from_str_radix(h, 16),
                None => digits.parse::<i128>(),
            }
            .map_err(|_| err(col, format!("`{lit}` is not a number")))?;
            out.push((Tok::Int(if neg { -v } else { v }), col));
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(err(col, "unterminated string".into())),
                    Some('"') => break,
                    Some('\\') => {
                        i += 1;
                        match b.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            // Go's \xHH: a byte by its value (periscope's strings are
                            // compared byte-wise as UTF-8 text, so only ASCII values).
                            Some('x') => {
                                let hex: String =
                                    b.get(i + 1..i + 3).unwrap_or(&[]).iter().collect();
                                match u8::from_str_radix(&hex, 16) {
                                    Ok(v) if v < 0x80 && hex.len() == 2 => s.push(v as char),
                                    _ => {
                                        return Err(err(
                                            i,
                                            "\\x takes two hex digits below 80 (an ASCII byte)"
                                                .into(),
                                        ));
                                    }
                                }
                                i += 2;
                            }
                            Some(&c) => s.push(c),
                            None => return Err(err(col, "unterminated string".into())),
                        }
                    }
                    // A raw control character (a NUL, a newline) is refused rather than
                    // kept unseen in the condition: written as an escape it shows.
                    Some(&c) if c.is_control() => {
                        return Err(err(
                            i + 1,
                            format!(
                                "a control character ({:?}) in a string: write it as an escape (\\n, \\t, \\x00)",
                                c
                            ),
                        ));
                    }
                    Some(&c) => s.push(c),
                }
                i += 1;
            }
            i += 1;
            out.push((Tok::Str(s), col));
        } else {
            let two: String = b[i..(i + 2).min(b.len())].iter().collect();
            let op = ["==", "!=", "<=", ">=", "&&", "||"]
                .into_iter()
                .find(|o| *o == two);
            if let Some(op) = op {
                out.push((Tok::Op(op), col));
                i += 2;
            } else if let Some(op) = ["<", ">", "!", "(", ")", ".", ","]
                .into_iter()
                .find(|o| o.starts_with(c))
            {
                out.push((Tok::Op(op), col));
                i += 1;
            } else if c == '=' {
                return Err(err(col, "`=` is assignment; compare with `==`".into()));
            } else {
                return Err(err(col, format!("unexpected character `{c}`")));
            }
        }
    }
    out.push((Tok::End, b.len() + 1));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_with_columns() {
        let t = lex(r#"u.Name == "alice" && !ok"#).unwrap();
        assert_eq!(t[0], (Tok::Ident("u".into()), 1));
        assert_eq!(t[3], (Tok::Op("=="), 8));
        assert_eq!(t[4], (Tok::Str("alice".into()), 11));
        assert_eq!(t[6], (Tok::Op("!"), 22));
        // Escapes as Go writes them; a raw control character is refused at its column.
        let t = lex(r#"name == "a\x00b\n""#).unwrap();
        assert_eq!(t[2].0, Tok::Str("a\0b\n".into()));
        let e = lex("name == \"a\0b\"").unwrap_err();
        assert_eq!(e.column, 11, "{e:?}");
    }

    #[test]
    fn durations_are_nanoseconds() {
        let t = lex("latency > 1.5ms && latency < 2s || latency >= 300us").unwrap();
        assert_eq!(t[2].0, Tok::Duration(1_500_000));
        assert_eq!(t[6].0, Tok::Duration(2_000_000_000));
        assert_eq!(t[10].0, Tok::Duration(300_000));
        assert!(lex("x > 5parsecs").is_err());
    }

    #[test]
    fn floats_are_numbers_with_a_point_or_an_exponent() {
        let t = lex("x > 1.5 && y < -2.5e-3 || z == 2e3 || w == 0x1e").unwrap();
        assert_eq!(t[2].0, Tok::Float(1.5));
        assert_eq!(t[6].0, Tok::Float(-2.5e-3));
        assert_eq!(t[10].0, Tok::Float(2e3));
        assert_eq!(t[14].0, Tok::Int(0x1e));
        assert!(lex("x > 1.5.2").is_err());
    }

    #[test]
    fn a_lone_equals_sign_is_pointed_at() {
        let e = lex("a = 3").unwrap_err();
        assert_eq!(e.column, 3);
    }
}

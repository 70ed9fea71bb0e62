//! The Go version a binary was built with, from the `.go.buildinfo` section
//! (format of Go ≥ 1.18: cmd/go/internal/version, debug/buildinfo).

const MAGIC: &[u8] = b"\xff Go buildinf:";

/// Returns e.g. "go1.21.13", or None when the section is missing or in the old
/// pointer-based format (Go < 1.18).
pub fn go_version(section: &[u8]) -> Option<String> {
    if section.len() < 32 || &section[..14] != MAGIC {
        return None;
    }
    let flags = section[15];
    if flags & 2 == 0 {
        return None; // pre-1.18: strings are behind pointers, and we need ≥ 1.17 anyway
    }
    let (len, n) = uvarint(&section[32..])?;
    let start = 32 + n;
    let bytes = section.get(start..start + len as usize)?;
    String::from_utf8(bytes.to_vec()).ok()
}

pub(crate) fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &c) in b.iter().enumerate().take(10) {
        x |= u64::from(c & 0x7f) << (7 * i);
        if c < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

/// Parses "go1.21.13" (or "go1.22rc1", "devel go1.23-…") into (major, minor).
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let v = v.trim_start_matches("devel ");
    let rest = v.strip_prefix("go")?;
    let mut it = rest.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("go1.21.13"), Some((1, 21)));
        assert_eq!(parse_version("go1.22rc1"), Some((1, 22)));
        assert_eq!(parse_version("go1.19"), Some((1, 19)));
        assert_eq!(parse_version("weird"), None);
    }

    #[test]
    fn reads_the_inline_version_string() {
        let mut sec = MAGIC.to_vec();
        sec.extend([8, 2]);
        sec.resize(32, 0);
        sec.push(9);
        sec.extend(b"go1.27.3!");
        assert_eq!(go_version(&sec).as_deref(), Some("go1.27.3!"));
    }
}

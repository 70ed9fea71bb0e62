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

/// The main module's path, from the module information after the version string:
/// its `mod` line, or for Go's own commands (`path cmd/compile`, no `mod` line) the
/// `cmd` module. None when the binary carries none.
pub fn main_module(section: &[u8]) -> Option<String> {
    let version = go_version(section)?;
    let mut at = 32;
    let (len, n) = uvarint(&section[at..])?;
    debug_assert_eq!(len as usize, version.len());
    at += n + len as usize;
    let (len, n) = uvarint(section.get(at..)?)?;
    let mut info = section.get(at + n..at + n + len as usize)?;
    // Between two 16-byte sentinels (as debug/buildinfo strips them).
    if info.len() >= 33 && info[info.len() - 17] == b'\n' {
        info = &info[16..info.len() - 16];
    }
    let info = String::from_utf8_lossy(info);
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key)?.split('\t').next().map(str::to_string))
    };
    if let Some(m) = field("mod\t") {
        return Some(m);
    }
    let path = field("path\t")?;
    path.starts_with("cmd/").then(|| "cmd".to_string())
}

/// Whether a package belongs to the main module `module` (vendored copies of others
/// under it do not).
pub fn in_module(pkg: &str, module: &str) -> bool {
    let inside = pkg == module
        || pkg
            .strip_prefix(module)
            .is_some_and(|rest| rest.starts_with('/'));
    inside && !pkg[module.len()..].contains("/vendor/")
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

    fn section(info: &str) -> Vec<u8> {
        let mut sec = MAGIC.to_vec();
        sec.extend([8, 2]);
        sec.resize(32, 0);
        sec.push(8);
        sec.extend(b"go1.27.3");
        // The module information sits between two 16-byte sentinels.
        let wrapped = format!("{}{info}{}", "s".repeat(16), "e".repeat(16));
        sec.push(wrapped.len() as u8);
        sec.extend(wrapped.as_bytes());
        sec
    }

    #[test]
    fn the_main_module_is_its_mod_line_or_cmd_for_gos_own_commands() {
        let shop = section("path\tperiscope.demo/shop\nmod\tperiscope.demo/shop\t(devel)\t\n");
        assert_eq!(main_module(&shop).as_deref(), Some("periscope.demo/shop"));
        let compile = section("path\tcmd/compile\nbuild\t-compiler=gc\n");
        assert_eq!(main_module(&compile).as_deref(), Some("cmd"));
        let file = section("path\tcommand-line-arguments\n");
        assert_eq!(main_module(&file), None);
    }

    #[test]
    fn a_module_holds_its_packages_but_not_what_it_vendors() {
        assert!(in_module("cmd/compile/internal/types2", "cmd"));
        assert!(in_module("cmd", "cmd"));
        assert!(!in_module("cmdx/foo", "cmd"));
        assert!(!in_module("cmd/vendor/golang.org/x/telemetry", "cmd"));
        assert!(in_module(
            "github.com/prometheus/prometheus/promql",
            "github.com/prometheus/prometheus"
        ));
    }
}

//! Damaged binaries: every section of a fixture damaged in turn, at three places (its
//! DWARF compressed as Go leaves it, and uncompressed): `periscope list` on each copy
//! ends in time, never panics, and either lists functions or says in one line what is
//! wrong (status 2). A damaged compressed `.debug_info` is said, naming the section (it
//! used to list nothing and exit 0).
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use periscope_tests::{Variant, fixture, newest, periscope};

/// (name, file offset, size) of every section with bytes in the file.
fn sections(elf: &[u8]) -> Vec<(String, usize, usize)> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let names = u64_at(header(shstrndx) + 0x18);
    (1..shnum)
        .filter_map(|i| {
            let h = header(i);
            let (kind, off, size) = (u32_at(h + 4), u64_at(h + 0x18), u64_at(h + 0x20));
            // SHT_NOBITS (.bss) has nothing in the file.
            if kind == 8 || size < 256 {
                return None;
            }
            let at = names + u32_at(h);
            let end = at + elf[at..].iter().position(|&b| b == 0)?;
            Some((
                String::from_utf8_lossy(&elf[at..end]).into_owned(),
                off,
                size,
            ))
        })
        .collect()
}

/// `periscope list FILE`: (status, stdout lines, stderr), or None if it ran past a
/// minute (it is then killed).
fn list(file: &Path) -> Option<(i32, usize, String)> {
    let mut child = Command::new(periscope())
        .arg("list")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out_reader = {
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut out, &mut s).ok();
            s.lines().count()
        })
    };
    let err_reader = {
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut err, &mut s).ok();
            s
        })
    };
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Some((
        status.code().unwrap_or(-1),
        out_reader.join().unwrap(),
        err_reader.join().unwrap(),
    ))
}

#[test]
fn a_damaged_section_is_one_line_or_a_listing_never_a_panic_or_a_hang() {
    let plain = fixture("kinds", &newest(), Variant::Plain);
    // The same binary with its DWARF uncompressed (objcopy), to damage it as it is read.
    let uncompressed: PathBuf =
        std::env::temp_dir().join(format!("periscope-damaged-raw-{}", std::process::id()));
    let ok = Command::new("objcopy")
        .arg("--decompress-debug-sections")
        .arg(&plain)
        .arg(&uncompressed)
        .status()
        .expect("objcopy (binutils)");
    assert!(ok.success());
    let copy = std::env::temp_dir().join(format!("periscope-damaged-{}", std::process::id()));
    let mut bad = Vec::new();
    let mut said_debug_info = false;
    for original in [plain.clone(), uncompressed.clone()] {
        let bytes = std::fs::read(&original).unwrap();
        for (name, off, size) in sections(&bytes) {
            for quarter in 1..=3 {
                let mut damaged = bytes.clone();
                let at = off + size * quarter / 4;
                for (i, b) in damaged[at..(at + 64).min(off + size)]
                    .iter_mut()
                    .enumerate()
                {
                    *b ^= 0xa5 ^ i as u8;
                }
                std::fs::write(&copy, &damaged).unwrap();
                let what = format!("{name} damaged at {quarter}/4 of {}", original.display());
                match list(&copy) {
                    None => bad.push(format!("{what}: still running after a minute")),
                    Some((_, _, err)) if err.contains("panicked") => {
                        bad.push(format!("{what}: {err}"))
                    }
                    Some((0, lines, _)) if lines > 0 => {}
                    Some((2, 0, err)) if err.lines().count() == 1 => {
                        if name == ".debug_info" && original == plain {
                            said_debug_info |= err.contains(".debug_info");
                        }
                    }
                    Some((code, lines, err)) => bad.push(format!(
                        "{what}: status {code}, {lines} lines, said {err:?}"
                    )),
                }
            }
        }
    }
    let _ = std::fs::remove_file(&copy);
    let _ = std::fs::remove_file(&uncompressed);
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(
        said_debug_info,
        "a damaged compressed .debug_info was never named"
    );
}

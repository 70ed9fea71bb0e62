//! periscope's own directory for what it keeps when nobody chose a place: the XDG
//! state directory (`$XDG_STATE_HOME/periscope`, else `~/.local/state/periscope`),
//! made 0700 so other users cannot list or plant names in it.
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The state directory, created if missing. Refused when it exists but belongs to
/// another user (a root periscope started with someone else's HOME, say).
pub fn state_dir() -> io::Result<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Path::new(&home).join(".local/state"),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "neither XDG_STATE_HOME nor HOME is set",
                ));
            }
        },
    };
    let dir = base.join("periscope");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let meta = std::fs::symlink_metadata(&dir)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory of yours: set XDG_STATE_HOME to one",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

/// Writes `bytes` to a new private file `STEM.EXT` in the state directory, or, when
/// there is none, in the current directory (with private::create's refusal of a
/// directory others may write). Returns where it went.
pub fn write_state_file(stem: &str, ext: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let dir = state_dir().or_else(|_| std::env::current_dir())?;
    let (path, mut file) = crate::create(&dir, stem, ext)?;
    file.write_all(bytes)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_state_directory_is_private_and_files_in_it_too() {
        let base = std::env::temp_dir().join(format!("periscope-state-{}", std::process::id()));
        // SAFETY: this test binary's tests that read the environment are this one only.
        unsafe { std::env::set_var("XDG_STATE_HOME", &base) };
        let path = write_state_file("verifier", "log", b"log\n").unwrap();
        assert_eq!(path, base.join("periscope/verifier.log"));
        assert_eq!(std::fs::read(&path).unwrap(), b"log\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&base.join("periscope")), 0o700);
        assert_eq!(mode(&path), 0o600);
        // A second one never overwrites the first.
        let second = write_state_file("verifier", "log", b"again\n").unwrap();
        assert_eq!(second, base.join("periscope/verifier-1.log"));
        assert_eq!(std::fs::read(&path).unwrap(), b"log\n");
        std::fs::remove_dir_all(&base).unwrap();
    }
}

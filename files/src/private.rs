//! Creating a file periscope writes (the TUI's `w`, a verifier log). Captured arguments can be
//! passwords and tokens, so such a file is created exclusively (never through a link
//! another user planted, never over an existing file), readable by its owner only
//! whatever the umask, and never in a directory other users may write to unless it is
//! the user's own.
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir/STEM.EXT` (or `STEM-1.EXT`, … when taken) with mode 0600.
pub fn create(dir: &Path, stem: &str, ext: &str) -> io::Result<(PathBuf, File)> {
    let meta = std::fs::metadata(dir)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.mode() & 0o002 != 0 && meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by other users and not yours: start periscope from a directory of your own",
                dir.display()
            ),
        ));
    }
    for n in 0..100 {
        let name = match n {
            0 => format!("{stem}.{ext}"),
            n => format!("{stem}-{n}.{ext}"),
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true) // O_CREAT | O_EXCL: a planted link or file is refused
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => {
                // The umask may take bits away from 0600, never add: make it exact.
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                return Ok((path, f));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{stem}.{ext} and 99 more names are taken in {}",
            dir.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn never_writes_through_a_planted_link_and_is_private_under_any_umask() {
        let dir = std::env::temp_dir().join(format!("periscope-private-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "secret").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("calls.jsonl")).unwrap();
        // SAFETY: umask only sets this process's file mode mask.
        let old = unsafe { libc::umask(0) };
        let made = create(&dir, "calls", "jsonl");
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let (path, mut f) = made.unwrap();
        f.write_all(b"{}\n").unwrap();
        assert_eq!(path, dir.join("calls-1.jsonl"));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Deploys: a new file of the program (a build installed at the path, or a process of
//! the program's name running another file) is read in the background, then every
//! probe is set on it by name (`Session`), and what happened is said: one note per
//! file, with a line for each probe that changed or could not follow.
use std::path::PathBuf;
use std::thread::JoinHandle;

use symbols::Catalog;

/// A deploy, said once the new file is probed (or refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployNote {
    /// The file as people know it (the path given, or as its first process sees it).
    pub exe: String,
    /// Its (device, inode).
    pub id: (u64, u64),
    /// Its Go version, when read.
    pub go_version: Option<String>,
    /// Probes set on it, of those the session has.
    pub probed: usize,
    pub probes: usize,
    /// A line for each probe whose function changed its signature or could not be
    /// probed there.
    pub lines: Vec<String>,
    /// Why the file cannot be probed at all (its processes then run unprobed).
    pub refused: Option<String>,
}

impl DeployNote {
    pub fn event_name(&self) -> &'static str {
        if self.refused.is_some() {
            "refused"
        } else {
            "deployed"
        }
    }

    /// `a new build of /srv/shop (Go 1.27.3, inode 1234): 5 of 6 probe(s) set on it…`
    pub fn describe(&self) -> String {
        let version = self
            .go_version
            .as_deref()
            .map(|v| format!("{v}, "))
            .unwrap_or_default();
        let what = format!("a new build of {} ({version}inode {})", self.exe, self.id.1);
        match &self.refused {
            Some(why) => format!("{what} cannot be probed: {why}; its processes run unprobed"),
            None => format!(
                "{what}: {} of {} probe(s) set on it by name; its processes are seen from their first call",
                self.probed, self.probes
            ),
        }
    }
}

/// A file's catalog, read on a thread of its own: a large binary takes seconds, which
/// the reader and the screen must not wait for.
pub struct Reading {
    pub build: usize,
    pub path: PathBuf,
    job: JoinHandle<Result<Catalog, String>>,
}

impl Reading {
    pub fn start(build: usize, path: PathBuf) -> Reading {
        let p = path.clone();
        let job = std::thread::spawn(move || {
            crate::memory::check_another(&p)?;
            let cat = Catalog::open(&p).map_err(|e| e.to_string())?;
            if !cat.has_dwarf && cat.g_offsets.is_none() {
                return Err(format!(
                    "it is stripped and built by {}, whose goroutine layout periscope does not know",
                    cat.go_version
                ));
            }
            Ok(cat)
        });
        Reading { build, path, job }
    }

    pub fn is_done(&self) -> bool {
        self.job.is_finished()
    }

    pub fn take(self) -> Result<Catalog, String> {
        self.job
            .join()
            .unwrap_or_else(|_| Err("reading it failed (a panic)".into()))
    }
}

/// `(a int)` and `(a int, tag string)`: whether a function changed its signature.
pub fn changed(old: &symbols::Function, new: &symbols::Function) -> Option<String> {
    let (a, b) = (old.signature(), new.signature());
    (a != b).then(|| {
        format!(
            "{}: its signature changed, from {a} to {b}: probed as it is now",
            new.name
        )
    })
}

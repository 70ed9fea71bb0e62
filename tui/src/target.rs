//! TARGET arguments: a pid or a path, opened into a catalog.
use std::path::PathBuf;

use anyhow::Result;
use symbols::Catalog;

#[derive(Debug, Clone)]
pub enum Target {
    Pid(u32),
    Path(PathBuf),
}

impl Target {
    pub fn parse(s: &str) -> Target {
        match s.parse::<u32>() {
            Ok(pid) => Target::Pid(pid),
            Err(_) => Target::Path(PathBuf::from(s)),
        }
    }

    pub fn open(&self) -> Result<Catalog> {
        let path = match self {
            Target::Pid(pid) => symbols::process::exe_path(*pid)?,
            Target::Path(p) => p.clone(),
        };
        Ok(Catalog::open(&path)?)
    }
}

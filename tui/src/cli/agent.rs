//! `periscope agent --check FILE` (run: agent_run.rs): a probe file (session::probe_file) checked against
//! the binaries it names, read and never attached to, every mistake on a line of its
//! own (`probes.toml:12: …`), so that a file can be fixed in one pass before it is
//! deployed.
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::probe_file::ProbeFile;

pub use super::agent_run::run;

pub fn check(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot be read", path.display()))?;
    let name = path.display();
    let file = match ProbeFile::parse(&text) {
        Ok(f) => f,
        Err(e) => {
            println!("{name}:{}: {}", e.line, e.msg);
            bail!("{name}: not a probe file (1 error)");
        }
    };
    let errors = file.check(&text);
    for e in &errors {
        println!("{name}:{}: {}", e.line, e.msg);
    }
    if !errors.is_empty() {
        bail!("{name}: {} error(s)", errors.len());
    }
    println!(
        "{name}: {} program(s), {} probe(s): ok",
        file.programs.len(),
        file.probe_count()
    );
    Ok(())
}

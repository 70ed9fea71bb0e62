//! Shared by `make bench` (src/bin/bench-probes.rs) and its part inside the VMs
//! (src/bin/kernel-check.rs --bench): the baseline every probe's cost is a ratio of, a
//! plain tracefs uprobe, and the fixture's own timing of its loops.
use std::path::Path;
use std::process::Command;

use crate::FixtureProc;

/// A plain uprobe through tracefs (no BPF) on a function's first instruction (what
/// tools that attach at the symbol pay), removed on drop.
pub struct TracefsProbe;

const TRACEFS: &str = "/sys/kernel/tracing";

impl TracefsProbe {
    pub fn first_instruction(bin: &Path, func: &str) -> TracefsProbe {
        if !Path::new(TRACEFS).join("uprobe_events").exists() {
            let ok = Command::new("mount")
                .args(["-t", "tracefs", "nodev", TRACEFS])
                .status()
                .unwrap();
            assert!(ok.success(), "cannot mount tracefs at {TRACEFS}");
        }
        let cat = symbols::Catalog::open(bin).unwrap();
        let f = cat.function(func).unwrap();
        let off = cat
            .elf
            .vaddr_to_offset(symbols::LinkAddr(f.entry))
            .unwrap()
            .0;
        // tracefs probes are system-wide; only the fixture runs this code.
        write(
            "uprobe_events",
            &format!("p:periscope_bench/first {}:{off:#x}\n", bin.display()),
        );
        write("events/periscope_bench/first/enable", "1\n");
        TracefsProbe
    }
}

impl Drop for TracefsProbe {
    fn drop(&mut self) {
        write("events/periscope_bench/first/enable", "0\n");
        write("uprobe_events", "-:periscope_bench/first\n");
    }
}

fn write(file: &str, what: &str) {
    use std::io::Write;
    let path = format!("{TRACEFS}/{file}");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    f.write_all(what.as_bytes())
        .unwrap_or_else(|e| panic!("{path} <- {what:?}: {e}"));
}

/// ns a call of one of the fixture's timed loops (`work N`: main.Work, `checked N`:
/// main.Hot2), the best of three runs of `calls` calls.
pub fn ns_per_call_of(fx: &mut FixtureProc, cmd: &str, calls: u64) -> f64 {
    (0..3)
        .map(|_| {
            let rec = fx.run(&format!("{cmd} {calls}"));
            rec[0]["ns"].as_f64().unwrap() / calls as f64
        })
        .fold(f64::INFINITY, f64::min)
}

//! One executable file of a program and what a session knows of it: its catalog, its
//! calls (indexed on the first probe that needs them) and the probe that watches its
//! runtime's panic recovery. A session starts with the file it was opened on; each
//! deploy (a new file at the path: program.rs) adds one, probed by name.
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use probes_ebpf::points::Points;
use symbols::Catalog;
use symbols::callsites::CallGraph;

pub struct Build {
    pub cat: Arc<Catalog>,
    /// The file as the kernel and the keeper find it (`/proc/<periscope>/fd/N`).
    pub exe: PathBuf,
    /// Every direct call and taken address of the binary, built on the first probe.
    callgraph: OnceLock<CallGraph>,
    /// The probe id watching runtime.recovery, once a probe has shared return points.
    pub recovery: Option<u32>,
}

impl Build {
    pub fn new(cat: Arc<Catalog>, exe: PathBuf) -> Build {
        Build {
            cat,
            exe,
            callgraph: OnceLock::new(),
            recovery: None,
        }
    }

    pub fn callgraph(&self) -> &CallGraph {
        self.callgraph.get_or_init(|| CallGraph::build(&self.cat))
    }

    /// Where a probe on `f` sits (probes_ebpf::points): at its call sites where every
    /// call is one of them (symbols::callsites), else in the function. `results`:
    /// results are read at the return points.
    pub fn points(&self, f: &symbols::Function, paired: bool, results: bool) -> Option<Points> {
        let graph = self.callgraph();
        let shared = symbols::callsites::recovery_entry(&self.cat).is_some();
        let sites = graph.plan(&self.cat, f, results, shared);
        let straight = graph.straight_entry(&self.cat, f);
        Points::choose(f, paired, Some(&sites), straight)
    }
}

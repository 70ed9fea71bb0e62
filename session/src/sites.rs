//! Return points learnt at run time (issue 24, part 2). A function called through func
//! values, interfaces or method tables has no call sites a scan can list, so its
//! returns start at its RETs, which the kernel single-steps. Its calls say where they
//! come from (the BPF program reads the return address at the entry and reports each
//! new one): after each such call site, the first emulated instruction is a return
//! point (symbols::callsites::CallGraph::after_return), sound by pairing. Once every site
//! in use has one and no new site has come for a while, the RETs go; a call from a
//! site seen later is seen at its entry only until its point is attached (at once).
use std::collections::HashMap;
use std::time::{Duration, Instant};

use probes_ebpf::engine::Site;
use symbols::callsites::AfterCall;

/// No new site for this long: the sites in use are known.
pub const SETTLED: Duration = Duration::from_secs(1);

/// Sites learnt per probe at most: past them, its RETs stay.
pub const MAX_SITES: usize = 64;

/// What one probe has learnt.
#[derive(Debug)]
pub struct Learn {
    /// Each call site in use, by the link address its calls return to: the return
    /// point after it, or why there is none.
    pub sites: HashMap<u64, Result<AfterCall, String>>,
    /// Each site as a process saw it (its own return address): the kernel's table is
    /// told about each once its point is attached.
    pub seen: Vec<Site>,
    pub last_new: Instant,
    /// Its returns are seen after the sites only (its RETs went).
    pub switched: bool,
    /// Results are read at the returns (no register that holds one may change before
    /// the point).
    pub results: bool,
}

impl Learn {
    pub fn new(results: bool) -> Learn {
        Learn {
            sites: HashMap::new(),
            seen: Vec::new(),
            last_new: Instant::now(),
            switched: false,
            results,
        }
    }

    /// Whether its RETs can go now: every site in use has a return point, some of them
    /// emulated (a site whose point is its return address, single-stepped, costs what
    /// a RET costs), there are not too many, and none came for a while.
    pub fn ready(&self) -> bool {
        !self.switched
            && self.sites.len() <= MAX_SITES
            && self.last_new.elapsed() >= SETTLED
            && self.sites.values().all(|s| s.is_ok())
            && self.sites.values().flatten().any(|a| a.emulated)
    }

    /// `after N call site(s) in use, learnt` for the probe's description.
    pub fn describe(&self) -> String {
        if self.switched {
            format!(
                "; return: after {} call site(s) in use, learnt (its RETs detached)",
                self.sites.len()
            )
        } else {
            format!(
                "; learning its call sites: {} in use so far",
                self.sites.len()
            )
        }
    }
}

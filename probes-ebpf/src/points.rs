//! The instructions a probe sits on: at the function's entry and RETs, or at its call
//! sites and after them (symbols::callsites), each with what the kernel does there.
use symbols::Function;
use symbols::callsites::SitePlan;
use symbols::probe_points::EntryKind;

use crate::wire::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub addr: u64,
    /// A PSC_POINT_* kind.
    pub kind: u32,
    /// The kernel single-steps the instruction (~10x the cost of one it emulates).
    pub stepped: bool,
    /// A return point other paths reach too (callsites::AfterCall::shared): a hit
    /// without an entry in flight for its frame is not a return, and not an anomaly.
    pub shared: bool,
}

impl Point {
    /// The attach cookie of this point for probe `id`.
    pub fn cookie(&self, id: u32) -> u64 {
        u64::from(id)
            | (u64::from(self.kind) << PSC_COOKIE_KIND_SHIFT)
            | if self.stepped { PSC_COOKIE_STEPPED } else { 0 }
            | if self.shared { PSC_COOKIE_SHARED } else { 0 }
    }
}

/// Where a probe's entries and returns are seen, and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Points {
    pub entries: Vec<Point>,
    /// Empty when the probe needs no return (or learns them: `sites`).
    pub returns: Vec<Point>,
    /// The returns are learnt: a point after each call site its calls come from, added
    /// as they come (callsites::CallGraph::after_return); a call from a site without one
    /// yet is seen at its entry only.
    pub sites: bool,
    /// For `list` and the TUI: `entry: 3 call sites; return: after 3 call sites`.
    pub describe: String,
}

impl Points {
    /// The points for `f`: its own entry and RETs, with what `sites` (its call sites,
    /// when every call is one) makes cheaper: the returns after the call sites (always,
    /// when usable), the entry at the call sites when its own is single-stepped.
    /// `paired`: results or latency are asked for. None when `f` has no code.
    /// `straight`: where the calls cannot be used and the entry is single-stepped, the
    /// first emulated instruction on its straight path (CallGraph::straight_entry).
    pub fn choose(
        f: &Function,
        paired: bool,
        sites: Option<&Result<SitePlan, String>>,
        straight: Option<u64>,
    ) -> Option<Points> {
        let own = f.probes.as_ref()?;
        let own_entry = Point {
            addr: own.entry,
            kind: match own.entry_kind {
                EntryKind::StackCheckBranch => PSC_POINT_ENTRY_JBE,
                _ => PSC_POINT_ENTRY,
            },
            stepped: own.entry_kind.is_expensive(),
            shared: false,
        };
        let plan = sites.and_then(|s| s.as_ref().ok());
        let why_not = match sites {
            Some(Err(why)) => format!(" ({why})"),
            _ => String::new(),
        };
        let (entries, entry_says) = match plan {
            Some(p) if own_entry.stepped => (
                p.entries
                    .iter()
                    .map(|&addr| Point {
                        addr,
                        kind: PSC_POINT_CALLSITE,
                        stepped: false,
                        shared: false,
                    })
                    .collect(),
                format!("entry: {} call site(s)", p.entries.len()),
            ),
            _ if own_entry.stepped && straight.is_some() => {
                let addr = straight.expect("checked");
                (
                    vec![Point {
                        addr,
                        kind: PSC_POINT_ENTRY,
                        stepped: false,
                        shared: false,
                    }],
                    format!(
                        "entry: first emulated instruction (+{:#x})",
                        addr - own.entry
                    ),
                )
            }
            _ => (
                vec![own_entry],
                match own.entry_kind {
                    EntryKind::PushAfterCheck => "entry: after the stack check".to_string(),
                    EntryKind::StackCheckBranch => "entry: the stack check's branch".to_string(),
                    EntryKind::FirstInstruction { emulated: true } => {
                        "entry: first instruction".to_string()
                    }
                    EntryKind::FirstInstruction { emulated: false } => {
                        "entry: first instruction, single-stepped".to_string()
                    }
                },
            ),
        };
        let (returns, ret_says) = if !paired {
            (Vec::new(), String::new())
        } else {
            match plan.map(|p| &p.returns) {
                Some(Ok(after)) => {
                    let stepped = after.iter().filter(|a| !a.emulated).count();
                    let shared = after.iter().filter(|a| a.shared).count();
                    let paired = if shared > 0 {
                        format!(", {shared} also reached by a branch (paired)")
                    } else {
                        String::new()
                    };
                    (
                        after
                            .iter()
                            .map(|a| Point {
                                addr: a.addr,
                                kind: PSC_POINT_AFTERCALL,
                                stepped: !a.emulated,
                                shared: a.shared,
                            })
                            .collect(),
                        if stepped == 0 {
                            format!("; return: after {} call site(s){paired}", after.len())
                        } else {
                            format!(
                                "; return: after {} call site(s), {stepped} single-stepped{paired}",
                                after.len()
                            )
                        },
                    )
                }
                other => {
                    let why = match other {
                        Some(Err(why)) => format!(" ({why})"),
                        _ => String::new(),
                    };
                    (
                        own.returns
                            .iter()
                            .map(|&addr| Point {
                                addr,
                                kind: PSC_POINT_RET,
                                stepped: true,
                                shared: false,
                            })
                            .collect(),
                        format!(
                            "; return: {} RET(s), single-stepped{why}",
                            own.returns.len()
                        ),
                    )
                }
            }
        };
        // Why the call sites are not used, said once, where it cost something.
        let costly = entries.iter().chain(&returns).any(|p| p.stepped);
        let why = if costly { why_not } else { String::new() };
        // Returns at single-stepped RETs, entries in the function (where [rsp] is the
        // address the call returns to): its call sites in use can be learnt.
        let sites = returns.iter().any(|p| p.kind == PSC_POINT_RET)
            && !f.abi0
            && entries
                .iter()
                .all(|p| !p.stepped && p.kind != PSC_POINT_CALLSITE);
        Some(Points {
            entries,
            returns,
            sites,
            describe: format!("{entry_says}{ret_says}{why}"),
        })
    }
}

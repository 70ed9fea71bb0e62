//! A call's callers: the kernel's walk holds the innermost PSC_STACK_DEPTH frames; a
//! deeper stack's outermost frames (where its goroutine started: the handler above a
//! recursion) come from the BPF program's own walk, with the count of those between.
use std::sync::Arc;

use symbols::pclntab::Position;

/// Callers, innermost first, and what was left out of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    pub frames: Vec<Position>,
    pub elided: Option<Elided>,
}

/// Frames left out before `frames[at]` (`at`: the first of the outermost ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elided {
    pub at: usize,
    pub count: u64,
    /// The walk stopped before the goroutine's first frame, or its outer part was
    /// evicted from the kernel's table before it was read: at least `count` more, and
    /// no frames after `at`.
    pub at_least: bool,
}

impl std::ops::Deref for Stack {
    type Target = [Position];
    fn deref(&self) -> &[Position] {
        &self.frames
    }
}

impl From<Vec<Position>> for Stack {
    fn from(frames: Vec<Position>) -> Stack {
        Stack {
            frames,
            elided: None,
        }
    }
}

impl Stack {
    /// The frames in order, with the elision as a `None` where it falls.
    pub fn parts(&self) -> impl Iterator<Item = Option<&Position>> {
        let at = self.elided.map(|e| e.at);
        self.frames
            .iter()
            .enumerate()
            .flat_map(move |(i, p)| {
                let mark = (Some(i) == at).then_some(None);
                mark.into_iter().chain(std::iter::once(Some(p)))
            })
            .chain((at == Some(self.frames.len())).then_some(None))
    }

    /// `… 137 frames …` (or `… at least 1985 frames …`: the walk stopped, or the
    /// outer part was evicted from the kernel's table before it was read).
    pub fn elided_text(e: &Elided) -> String {
        let n = e.count;
        if e.at_least {
            format!("… at least {n} frames …")
        } else {
            format!("… {n} frames …")
        }
    }
}

/// Adds a deep stack's outer part to its inner pcs. `chain`: how many of the inner
/// pcs are the frame-pointer chain's (the kernel's walk after the pc, in order, the
/// last of them the chain's frame `chain - 1`); `outer`: the BPF program's walk of
/// the same chain. Returns the outer pcs to append (return addresses) and what lies
/// between.
pub fn outer_part(chain: usize, outer: &probes_ebpf::engine::Outer) -> (Vec<u64>, Option<Elided>) {
    let depth = outer.depth as usize;
    if outer.cut {
        let count = depth.saturating_sub(chain) as u64;
        return (
            Vec::new(),
            Some(Elided {
                at: 0,
                count,
                at_least: true,
            }),
        );
    }
    // The outer pcs are the chain's frames depth - n .. depth; those the inner part
    // already holds are not repeated.
    let first = depth - outer.ips.len().min(depth);
    let from = first.max(chain);
    let ips = outer.ips[from - first..].to_vec();
    let count = (from - chain) as u64;
    (
        ips,
        (count > 0).then_some(Elided {
            at: 0,
            count,
            at_least: false,
        }),
    )
}

pub type Shared = Arc<Stack>;

#[cfg(test)]
mod tests {
    use super::*;
    use probes_ebpf::engine::Outer;

    #[test]
    fn the_outer_frames_follow_the_inner_ones_with_the_gap_counted() {
        // 300 frames: the kernel holds the first 63, the walk the last 16.
        let o = Outer {
            depth: 300,
            cut: false,
            ips: (284..300).collect(),
        };
        let (ips, e) = outer_part(63, &o);
        assert_eq!(ips, (284..300).collect::<Vec<u64>>());
        assert_eq!(e.unwrap().count, 300 - 63 - 16);
    }

    #[test]
    fn frames_both_walks_hold_are_shown_once() {
        // 70 frames: the kernel's 63 and the walk's last 16 share 9.
        let o = Outer {
            depth: 70,
            cut: false,
            ips: (54..70).collect(),
        };
        let (ips, e) = outer_part(63, &o);
        assert_eq!(ips, (63..70).collect::<Vec<u64>>());
        assert_eq!(e, None);
    }

    #[test]
    fn a_walk_that_stopped_says_at_least_and_shows_no_false_root() {
        let o = Outer {
            depth: 16384,
            cut: true,
            ips: (16368..16384).collect(),
        };
        let (ips, e) = outer_part(63, &o);
        assert!(ips.is_empty());
        let e = e.unwrap();
        assert!(e.at_least);
        assert_eq!(e.count, 16384 - 63);
    }

    #[test]
    fn the_elision_falls_between_its_frames() {
        let at = |f: &str| Position {
            func: f.into(),
            file: "main.go".into(),
            line: 1,
        };
        let s = Stack {
            frames: vec![at("a"), at("b"), at("z")],
            elided: Some(Elided {
                at: 2,
                count: 5,
                at_least: false,
            }),
        };
        let got: Vec<String> = s
            .parts()
            .map(|p| p.map_or("…".to_string(), |p| p.func.clone()))
            .collect();
        assert_eq!(got, ["a", "b", "…", "z"]);
        assert_eq!(Stack::elided_text(&s.elided.unwrap()), "… 5 frames …");
    }
}

//! A probe as the user specifies it.
use probes_ebpf::Capture;

/// What the user asked of one probe: the one model of it that `trace`'s options, the
/// shell's `trace` command and the TUI's keys all build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub args: bool,
    pub ret: bool,
    pub latency: bool,
    pub condition: Option<String>,
    /// Keep one call in this many.
    pub sample: u32,
    /// Paths captured before anything else (`--capture r.URL.Path,r.Host`).
    pub paths: Vec<String>,
    /// The callers' stack of each call (`--stack`).
    pub stack: bool,
    /// One latency histogram per value of this expression (`--by`).
    pub by: Option<String>,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            args: false,
            ret: false,
            latency: false,
            condition: None,
            sample: 1,
            paths: Vec::new(),
            stack: false,
            by: None,
        }
    }
}

impl ProbeSpec {
    pub fn is_empty(&self) -> bool {
        !(self.args || self.ret || self.latency)
    }

    /// `ARL`, with `·` for what is off: the marker the function list shows.
    pub fn marker(&self) -> String {
        let f = |on: bool, c: char| if on { c } else { '·' };
        format!(
            "{}{}{}",
            f(self.args, 'A'),
            f(self.ret, 'R'),
            f(self.latency, 'L')
        )
    }

    /// `args ret latency if u.Name == "x" 1/10`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = [
            (self.args, "args"),
            (self.ret, "ret"),
            (self.latency, "latency"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, s)| s.to_string())
        .collect();
        if self.sample > 1 {
            parts.push(format!("1/{}", self.sample));
        }
        if self.stack {
            parts.push("stack".into());
        }
        if let Some(by) = &self.by {
            parts.push(format!("by {by}"));
        }
        if !self.paths.is_empty() {
            parts.push(format!("capture {}", self.paths.join(",")));
        }
        if let Some(c) = &self.condition {
            parts.push(format!("if {c}"));
        }
        parts.join(" ")
    }

    pub(crate) fn capture(&self, max_string: u16) -> Capture {
        Capture {
            args: self.args,
            ret: self.ret,
            latency: self.latency,
            sample_every: self.sample.max(1),
            max_string,
            max_elems: 8,
            paths: self.paths.clone(),
            stack: self.stack,
            by: self.by.clone(),
        }
    }
}

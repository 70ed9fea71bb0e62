//! Return points learnt from the call sites in use (sites.rs).
use super::{Session, add_return};

impl Session {
    /// Takes the call sites the probes' calls came from for the first time, places a
    /// return point after each, and once a probe's sites in use all have one (and a
    /// budget is set: without one, every call is seen at its RETs), moves its returns
    /// there and detaches its RETs (sites.rs).
    pub(super) fn learn_sites(&mut self) {
        let new = self.engine.take_sites();
        for s in new {
            let Some(&(func, i)) = self.by_id.get(&s.probe) else {
                continue;
            };
            let link = self
                .program
                .bias(s.pid)
                .to_link(symbols::RuntimeAddr(s.ret))
                .0;
            let Some(m) = self.active.get_mut(&func).map(|a| &mut a.members[i]) else {
                continue;
            };
            let Some(l) = m.learn.as_mut() else {
                continue;
            };
            // (Indexing the binary's calls waits for a site: a session without probes
            // that learn never pays for it here.)
            let build = &self.builds[m.build];
            let f = &build.cat.functions[m.func];
            let fresh = !l.sites.contains_key(&link);
            if fresh {
                let a = build
                    .callgraph()
                    .after_return(&build.cat, f, link, l.results);
                l.sites.insert(link, a);
                l.last_new = std::time::Instant::now();
            }
            l.seen.push(s);
            if l.switched
                && let Some(Ok(a)) = l.sites.get(&link)
            {
                if fresh {
                    let _ = add_return(&mut self.engine, &build.cat, m.id, a);
                }
                let _ = self.engine.cover_site(s);
            }
        }
        if self.gov.budget.is_none() {
            return;
        }
        for a in self.active.values_mut() {
            for m in &mut a.members {
                let Some(l) = m.learn.as_mut().filter(|l| l.ready()) else {
                    continue;
                };
                let cat = &self.builds[m.build].cat;
                let placed = l
                    .sites
                    .values()
                    .flatten()
                    .all(|p| add_return(&mut self.engine, cat, m.id, p).is_ok());
                if !placed {
                    // Those placed stay, paired; the RETs stay too.
                    l.sites
                        .insert(0, Err("a return point could not be attached".into()));
                    continue;
                }
                for s in &l.seen {
                    let _ = self.engine.cover_site(*s);
                }
                if self.engine.rely_on_sites(m.id).is_ok() {
                    self.gov.returns_now_cheap(m.id);
                    l.switched = true;
                    self.said.push(format!(
                        "{}: returns now seen after its {} call site(s) in use, learnt; its {} RET(s) detached",
                        cat.functions[m.func].name,
                        l.sites.len(),
                        m.points.returns.len()
                    ));
                }
            }
        }
    }
}

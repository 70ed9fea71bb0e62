//! Deploys (program.rs finds a new file of the program; deploy.rs reads it): every
//! probe set on the new file by its function's name, and what changed said.
use std::sync::Arc;

use super::{Member, Session};
use crate::ProbeSpec;
use crate::build::Build;
use crate::deploy::DeployNote;

impl Session {
    /// Attaches the probe `s` on every function of the program's file `b` (a deploy's)
    /// named as the probe's function `key` (in the session's catalog) is: all or none,
    /// and why not in one line.
    pub(super) fn attach_by_name(
        &mut self,
        b: usize,
        key: usize,
        s: &ProbeSpec,
    ) -> Result<Vec<Member>, String> {
        let name = self.cat.functions[key].name.clone();
        let cat = Arc::clone(&self.builds[b].cat);
        let file = self.program.file(b).display.clone();
        let funcs = symbols::resolve::group(&cat, &name);
        if funcs.is_empty() {
            return Err(format!(
                "{name}: not in the new build of {file}: its processes are not probed there (the older ones still are)"
            ));
        }
        let mut members = Vec::new();
        for f in funcs {
            match self.attach_one(b, f, s) {
                Ok((mut m, _)) => {
                    // Rows name the function as the session's catalog does (a deploy's
                    // own index means nothing to front-ends); one it lacks goes by the
                    // probe's.
                    m.shown = self.cat.index_of(&cat.functions[f].name).unwrap_or(key);
                    members.push(m);
                }
                Err(e) => {
                    let ids: Vec<u32> = members.iter().map(|m: &Member| m.id).collect();
                    self.engine.detach_many(&ids);
                    return Err(format!(
                        "{name}: cannot be probed in the new build of {file} ({e}): the older processes still are"
                    ));
                }
            }
        }
        Ok(members)
    }

    /// Reads a new file of the program (a deploy: program.rs) in the background, then
    /// sets every probe on it by name.
    pub(super) fn follow_deploys(&mut self) {
        if self.reading.as_ref().is_some_and(|r| r.is_done()) {
            let r = self.reading.take().expect("checked");
            self.deploy(r);
        }
        if self.reading.is_none()
            && let Some(&b) = self.program.take_new_files().first()
        {
            let path = self.program.file(b).path.clone();
            self.reading = Some(crate::deploy::Reading::start(b, path));
        }
    }

    /// Sets every probe, by its function's name, on the program's new file that `r`
    /// read: same captures and condition; what changed or cannot follow is said.
    fn deploy(&mut self, r: crate::deploy::Reading) {
        let b = r.build;
        let (exe, id) = {
            let f = self.program.file(b);
            (f.display.clone(), f.id)
        };
        let mut note = DeployNote {
            exe,
            id,
            go_version: None,
            probed: 0,
            probes: self.active.len(),
            lines: Vec::new(),
            refused: None,
        };
        let path = r.path.clone();
        let cat = match r.take() {
            // (Files are found one at a time, so the builds and the program's files
            // keep one numbering.)
            Ok(cat) if self.builds.len() == b => Arc::new(cat),
            Ok(_) => {
                self.program.refuse(b);
                note.refused = Some("files out of step (a periscope bug)".into());
                self.deploys.push(note);
                return;
            }
            Err(why) => {
                self.program.refuse(b);
                note.refused = Some(why);
                self.deploys.push(note);
                return;
            }
        };
        note.go_version = Some(cat.go_version.clone());
        self.program.located(b, cat.elf.first_load_vaddr());
        self.builds.push(Build::new(cat, path));
        let mut keys: Vec<(u32, usize)> = self.active.iter().map(|(&f, a)| (a.number, f)).collect();
        keys.sort_unstable();
        let cpu = self.program.cpu_ns();
        for (_, key) in keys {
            let spec = self.active[&key].spec.clone();
            match self.attach_by_name(b, key, &spec) {
                Ok(members) => {
                    note.probed += 1;
                    if let Some(m) = members.first()
                        && let Some(line) = crate::deploy::changed(
                            &self.cat.functions[key],
                            &self.builds[b].cat.functions[m.func],
                        )
                    {
                        note.lines.push(line);
                    }
                    let name = self.cat.functions[key].name.clone();
                    let a = self.active.get_mut(&key).expect("listed above");
                    for m in members {
                        self.gov
                            .add(m.id as usize, m.id, &name, &self.engine, &m.points, cpu);
                        self.by_id.insert(m.id, (key, a.members.len()));
                        a.members.push(m);
                    }
                }
                Err(why) => note.lines.push(why),
            }
        }
        self.deploys.push(note);
    }

    /// New files of the program since the last call, each probed or refused.
    pub fn take_deploy_notes(&mut self) -> Vec<DeployNote> {
        std::mem::take(&mut self.deploys)
    }
}

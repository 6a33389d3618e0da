//! The core against a naive model: an owner/kind per byte and a plain list of waiters, checked after
//! every step of random lock/unlock/test/cancel sequences (blocking and not) across 5 owners of 3
//! clients on 2 files. The model is slow and obvious; the core must agree with it on every answer, on
//! the held ranges, on the queues, and on which waiters each event grants.
//!
//! quickcheck draws the seeds; a failure prints the seed, and `BRLOCK_SEED=N cargo test -p brlock-core
//! --test model` reruns exactly that run.
mod common;
use std::collections::{BTreeMap, BTreeSet};

use brlock_core::*;
use common::*;
use quickcheck::QuickCheck;

const BYTES: u64 = 48; // max_offset = BYTES - 1: "to end of file" is small enough to model per byte
const OWNERS: [&str; 5] = ["c0/a", "c0/b", "c1/c", "c1/d", "c2/e"];
const FILES: [&str; 2] = ["f", "g"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiter {
    owner: usize,
    start: u64,
    end: u64,
    kind: LockKind,
}

#[derive(Default)]
struct Model {
    /// file → byte → owner → kind
    bytes: BTreeMap<usize, Vec<BTreeMap<usize, LockKind>>>,
    queues: BTreeMap<usize, Vec<Waiter>>,
}

impl Model {
    fn file(&mut self, f: usize) -> &mut Vec<BTreeMap<usize, LockKind>> {
        self.bytes
            .entry(f)
            .or_insert_with(|| vec![BTreeMap::new(); BYTES as usize])
    }

    fn held_conflicts(
        &mut self,
        f: usize,
        owner: usize,
        start: u64,
        end: u64,
        kind: LockKind,
    ) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        for b in start..=end {
            for (&o, &k) in &self.file(f)[b as usize] {
                if o != owner && k.conflicts_with(kind) {
                    out.insert(o);
                }
            }
        }
        out
    }

    fn queued_conflicts(&self, f: usize, w: Waiter, before: usize) -> BTreeSet<usize> {
        let queue = self.queues.get(&f).map(Vec::as_slice).unwrap_or(&[]);
        queue[..before.min(queue.len())]
            .iter()
            .filter(|q| {
                q.owner != w.owner
                    && q.start <= w.end
                    && w.start <= q.end
                    && q.kind.conflicts_with(w.kind)
            })
            .map(|q| q.owner)
            .collect()
    }

    fn blockers(&mut self, f: usize, w: Waiter, before: usize) -> BTreeSet<usize> {
        let mut out = self.held_conflicts(f, w.owner, w.start, w.end, w.kind);
        out.extend(self.queued_conflicts(f, w, before));
        out
    }

    fn set(&mut self, f: usize, owner: usize, start: u64, end: u64, kind: Option<LockKind>) {
        for b in start..=end {
            let byte = &mut self.file(f)[b as usize];
            match kind {
                Some(k) => byte.insert(owner, k),
                None => byte.remove(&owner),
            };
        }
    }

    /// Edges of the wait-for graph, owner → owners it waits for.
    fn edges(&mut self) -> BTreeMap<usize, BTreeSet<usize>> {
        let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        let queues = self.queues.clone();
        for (&f, queue) in &queues {
            for (i, &w) in queue.iter().enumerate() {
                let b = self.blockers(f, w, i);
                edges.entry(w.owner).or_default().extend(b);
            }
        }
        edges
    }

    fn reaches(
        edges: &BTreeMap<usize, BTreeSet<usize>>,
        from: &BTreeSet<usize>,
        target: usize,
    ) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = from.iter().copied().collect();
        while let Some(o) = stack.pop() {
            if o == target {
                return true;
            }
            if seen.insert(o) {
                stack.extend(edges.get(&o).into_iter().flatten().copied());
            }
        }
        false
    }

    /// Grants queued waiters in order until a pass grants nothing; returns the owners granted.
    fn wake(&mut self, f: usize) -> Vec<usize> {
        let mut granted = Vec::new();
        loop {
            let snapshot = self.queues.get(&f).cloned().unwrap_or_default();
            let mut any = false;
            for w in snapshot {
                let queue = &self.queues[&f];
                let position = queue.iter().position(|q| *q == w).unwrap();
                if self.blockers(f, w, position).is_empty() {
                    self.queues.get_mut(&f).unwrap().remove(position);
                    self.set(f, w.owner, w.start, w.end, Some(w.kind));
                    granted.push(w.owner);
                    any = true;
                }
            }
            if !any {
                return granted;
            }
        }
    }

    /// Held ranges per owner as the core reports them: maximal runs of one kind.
    fn held(&mut self, f: usize) -> Vec<String> {
        let mut runs: Vec<(u64, u64, usize, LockKind)> = Vec::new();
        let bytes = self.file(f).clone();
        for owner in 0..OWNERS.len() {
            let mut b = 0;
            while b < BYTES {
                match bytes[b as usize].get(&owner) {
                    None => b += 1,
                    Some(&k) => {
                        let start = b;
                        while b < BYTES && bytes[b as usize].get(&owner) == Some(&k) {
                            b += 1;
                        }
                        runs.push((start, b - 1, owner, k));
                    }
                }
            }
        }
        runs.sort_by_key(|&(s, e, o, _)| (s, e, OWNERS[o].split('/').collect::<Vec<_>>()));
        runs.iter()
            .map(|&(s, e, o, k)| {
                let end = if e == BYTES - 1 {
                    "EOF".to_string()
                } else {
                    e.to_string()
                };
                let kind = if k == S { "S" } else { "X" };
                format!("{}:{kind}:{s}-{end}", OWNERS[o].split('/').nth(1).unwrap())
            })
            .collect()
    }
}

fn owner_index(id: &OwnerId) -> usize {
    OWNERS
        .iter()
        .position(|o| o.split('/').nth(1).unwrap().as_bytes() == id.as_bytes())
        .unwrap()
}

fn run(seed: u64, steps: usize) -> Result<(), String> {
    let config = Config {
        max_offset: BYTES - 1,
        ..Config::brlock()
    };
    let mut t = T::with(config);
    let mut model = Model::default();
    let mut rng = Rng(seed);
    for step in 0..steps {
        let o = rng.below(OWNERS.len() as u64) as usize;
        let f = rng.below(FILES.len() as u64) as usize;
        let start = rng.below(BYTES + 2);
        // Mostly short ranges, sometimes to end of file (0), sometimes too long.
        let length = match rng.below(10) {
            0 => 0,
            1 => rng.below(BYTES + 4),
            _ => 1 + rng.below(12),
        };
        let kind = if rng.below(2) == 0 { S } else { X };
        let span = Range::new(start, length).span(BYTES - 1);
        let op = rng.below(10);
        let context = || {
            format!(
                "seed {seed}, step {step}: op {op} owner {} file {} {start}+{length} {kind:?}",
                OWNERS[o], FILES[f]
            )
        };
        let (name, file) = (OWNERS[o], FILES[f]);
        let mut model_granted: Vec<usize> = Vec::new();
        match op {
            0..=4 => {
                let wait = op >= 3;
                let outcome = t.lock_full(name, file, start, length, kind, wait, false);
                let Some(span) = span else {
                    if outcome != Outcome::TooBig {
                        return Err(format!("{}: expected TooBig, got {outcome:?}", context()));
                    }
                    continue;
                };
                let w = Waiter {
                    owner: o,
                    start: span.start,
                    end: span.end,
                    kind,
                };
                let queue_len = model.queues.get(&f).map_or(0, Vec::len);
                let retransmit = model.queues.get(&f).is_some_and(|q| q.contains(&w));
                let held = model.held_conflicts(f, o, w.start, w.end, kind);
                let queued = if wait {
                    model.queued_conflicts(f, w, usize::MAX)
                } else {
                    BTreeSet::new()
                };
                if retransmit {
                    if !matches!(outcome, Outcome::Blocked { .. }) {
                        return Err(format!(
                            "{}: retransmission should stay Blocked, got {outcome:?}",
                            context()
                        ));
                    }
                } else if held.is_empty() && queued.is_empty() {
                    if outcome != Outcome::Granted {
                        return Err(format!("{}: expected Granted, got {outcome:?}", context()));
                    }
                    model.set(f, o, w.start, w.end, Some(kind));
                    model_granted = model.wake(f);
                } else if !wait {
                    let Outcome::Denied { holder } = &outcome else {
                        return Err(format!("{}: expected Denied, got {outcome:?}", context()));
                    };
                    check_holder(&mut model, f, o, w, holder)
                        .map_err(|e| format!("{}: {e}", context()))?;
                } else {
                    let mut blockers = held.clone();
                    blockers.extend(queued);
                    let edges = model.edges();
                    let deadlock = Model::reaches(&edges, &blockers, o);
                    match (&outcome, deadlock) {
                        (Outcome::Blocked { .. }, false) => {
                            model.queues.entry(f).or_default().push(w)
                        }
                        (Outcome::Deadlock { cycle }, true) => {
                            let cycle: Vec<usize> =
                                cycle.iter().map(|r| owner_index(&r.owner)).collect();
                            if cycle[0] != o || !blockers.contains(&cycle[1 % cycle.len()]) {
                                return Err(format!(
                                    "{}: cycle {cycle:?} does not start at the requester's edge",
                                    context()
                                ));
                            }
                            for pair in cycle[1..].windows(2) {
                                if !edges.get(&pair[0]).is_some_and(|e| e.contains(&pair[1])) {
                                    return Err(format!(
                                        "{}: cycle {cycle:?} has no edge {pair:?}",
                                        context()
                                    ));
                                }
                            }
                            let last = *cycle.last().unwrap();
                            if cycle.len() > 1 && !edges.get(&last).is_some_and(|e| e.contains(&o))
                            {
                                return Err(format!(
                                    "{}: cycle {cycle:?} does not close",
                                    context()
                                ));
                            }
                        }
                        (other, deadlock) => {
                            return Err(format!(
                                "{}: model deadlock={deadlock} (queue {queue_len}), core {other:?}",
                                context()
                            ));
                        }
                    }
                }
            }
            5..=6 => {
                let outcome = t.unlock(name, file, start, length);
                let Some(span) = span else {
                    if outcome != Outcome::TooBig {
                        return Err(format!("{}: expected TooBig, got {outcome:?}", context()));
                    }
                    continue;
                };
                if outcome != Outcome::Granted {
                    return Err(format!("{}: unlock answered {outcome:?}", context()));
                }
                model.set(f, o, span.start, span.end, None);
                if let Some(q) = model.queues.get_mut(&f) {
                    q.retain(|w| !(w.owner == o && w.start == span.start && w.end == span.end));
                }
                model_granted = model.wake(f);
            }
            7..=8 => {
                let outcome = t.test(name, file, start, length, kind);
                let Some(span) = span else { continue };
                let w = Waiter {
                    owner: o,
                    start: span.start,
                    end: span.end,
                    kind,
                };
                let held = model.held_conflicts(f, o, w.start, w.end, kind);
                match (&outcome, held.is_empty()) {
                    (Outcome::Granted, true) => {}
                    (Outcome::Denied { holder }, false) => {
                        check_holder(&mut model, f, o, w, holder)
                            .map_err(|e| format!("{}: {e}", context()))?
                    }
                    (other, _) => {
                        return Err(format!(
                            "{}: test: model conflicts {held:?}, core {other:?}",
                            context()
                        ));
                    }
                }
            }
            _ => {
                let outcome = t.cancel(name, file, start, length, kind);
                let Some(span) = span else { continue };
                if outcome != Outcome::Granted {
                    return Err(format!("{}: cancel answered {outcome:?}", context()));
                }
                let w = Waiter {
                    owner: o,
                    start: span.start,
                    end: span.end,
                    kind,
                };
                if let Some(q) = model.queues.get_mut(&f)
                    && let Some(i) = q.iter().position(|x| *x == w)
                {
                    q.remove(i);
                }
                model_granted = model.wake(f);
            }
        }
        // A grant that closed a cycle of waiting owners is answered by removing a waiter on it
        // (WaiterRemoved, Deadlock); each removal must be of a queued waiter whose owner waits for
        // itself through that waiter, and none may be left: the graph is acyclic after every event.
        for action in t.last.clone() {
            let Action::WaiterRemoved {
                owner,
                file,
                range,
                kind,
                reason: WaiterRemovedReason::Deadlock,
                ..
            } = action
            else {
                continue;
            };
            let wo = owner_index(&owner);
            let wf = FILES
                .iter()
                .position(|name| FileId::from(*name) == file)
                .expect("a file of the run");
            let span = range
                .span(BYTES - 1)
                .expect("a removed waiter's range fits");
            let w = Waiter {
                owner: wo,
                start: span.start,
                end: span.end,
                kind,
            };
            let Some(position) = model
                .queues
                .get(&wf)
                .and_then(|q| q.iter().position(|x| *x == w))
            else {
                return Err(format!("{}: removed {w:?}, which is not queued", context()));
            };
            let blockers = model.blockers(wf, w, position);
            let edges = model.edges();
            if !Model::reaches(&edges, &blockers, wo) {
                return Err(format!(
                    "{}: removed {w:?} for a deadlock, but it is on no cycle",
                    context()
                ));
            }
            model.queues.get_mut(&wf).unwrap().remove(position);
            model_granted.extend(model.wake(wf));
        }
        let edges = model.edges();
        if let Some((&o, _)) = edges
            .iter()
            .find(|&(&o, out)| Model::reaches(&edges, out, o))
        {
            return Err(format!("{}: owner {o} waits for itself", context()));
        }
        // Every grant is confirmed at once, so grants are final like the model's.
        let core_granted: Vec<usize> = t
            .granted()
            .iter()
            .map(|(_, owner)| owner_index(&OwnerId::from(owner.as_str())))
            .collect();
        let waiters: Vec<WaiterId> = t.granted().iter().map(|(w, _)| *w).collect();
        for w in waiters {
            t.callback(w, CallbackResult::Delivered);
        }
        if core_granted != model_granted {
            return Err(format!(
                "{}: core granted {core_granted:?}, model {model_granted:?}",
                context()
            ));
        }
        for (fi, file) in FILES.iter().enumerate() {
            let (core, naive) = (t.held(file), model.held(fi));
            if core != naive {
                return Err(format!(
                    "{}: file {file} held\n core  {core:?}\n model {naive:?}",
                    context()
                ));
            }
            let core_queue: Vec<usize> = t
                .core
                .waiters(&FileId::from(*file))
                .iter()
                .map(|w| owner_index(&w.owner))
                .collect();
            let model_queue: Vec<usize> = model
                .queues
                .get(&fi)
                .map(|q| q.iter().map(|w| w.owner).collect())
                .unwrap_or_default();
            if core_queue != model_queue {
                return Err(format!(
                    "{}: file {file} queue core {core_queue:?} model {model_queue:?}",
                    context()
                ));
            }
        }
    }
    Ok(())
}

/// The reported holder really holds that range with that kind, and really conflicts with the request.
fn check_holder(
    model: &mut Model,
    f: usize,
    o: usize,
    w: Waiter,
    holder: &Holder,
) -> Result<(), String> {
    let h = owner_index(&holder.owner);
    let span = holder.range.span(BYTES - 1).ok_or("holder range invalid")?;
    if h == o || !holder.kind.conflicts_with(w.kind) || !span.overlaps(Span::new(w.start, w.end)) {
        return Err(format!("holder {holder:?} does not conflict"));
    }
    for b in span.start..=span.end {
        if model.file(f)[b as usize].get(&h) != Some(&holder.kind) {
            return Err(format!("holder {holder:?} does not hold byte {b}"));
        }
    }
    Ok(())
}

#[test]
fn the_core_agrees_with_a_per_byte_model() {
    if let Ok(seed) = std::env::var("BRLOCK_SEED") {
        let seed: u64 = seed.parse().expect("BRLOCK_SEED is a number");
        if let Err(e) = run(seed, 300) {
            panic!("{e}");
        }
        return;
    }
    fn prop(seed: u64) -> bool {
        match run(seed, 300) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("{e}\nrerun with BRLOCK_SEED={seed}");
                false
            }
        }
    }
    QuickCheck::new()
        .tests(1_500)
        .max_tests(1_500)
        .quickcheck(prop as fn(u64) -> bool);
}

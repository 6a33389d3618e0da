//! A trace being explored: the header, every step so far with its actions, and a core replayed up to
//! the step being looked at. Stepping back replays from the nearest checkpoint; issuing a new event while
//! looking at the past drops the steps after it, like typing after an undo.

use std::collections::BTreeSet;

use brlock_core::{
    Action, Config, Core, Event, FileId, Instant, Profile, Replay, Trace, TraceHeader, TraceStep,
};

use crate::Error;
use crate::jsonl::{self, AnnotatedTrace};

/// A clone of the replay every this many steps, so stepping back costs at most this many events.
const CHECKPOINT_EVERY: usize = 32;

#[derive(Clone, Debug)]
pub struct Simulator {
    trace: AnnotatedTrace,
    /// The actions of building the core (a restore), before the first step.
    initial: Vec<Action>,
    /// The actions of each step of `trace`, computed once when the step was added.
    outputs: Vec<Vec<Action>>,
    /// The core after `position` steps.
    replay: Replay,
    position: usize,
    /// `checkpoints[k]` is the replay after `k * CHECKPOINT_EVERY` steps.
    checkpoints: Vec<Replay>,
}

impl Simulator {
    /// An empty trace over `config`, in epoch 1 at time 0.
    pub fn new(config: Config) -> Self {
        let trace = AnnotatedTrace {
            trace: Trace {
                header: TraceHeader::new(config),
                steps: Vec::new(),
            },
            description: String::new(),
            notes: Vec::new(),
        };
        Self::from_trace(trace).expect("a fresh header always replays")
    }

    pub fn from_profile(name: &str) -> Result<Self, Error> {
        let profile = Profile::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
            Error::new(format!(
                "unknown profile {name:?} (known: {})",
                names.join(", ")
            ))
        })?;
        Ok(Self::new(profile.config()))
    }

    /// Loads a JSON-lines trace, replays all of it (so every step's actions are known and a broken trace
    /// is refused whole), and stands before its first step.
    pub fn from_jsonl(text: &str) -> Result<Self, Error> {
        Self::from_trace(jsonl::parse(text)?)
    }

    fn from_trace(trace: AnnotatedTrace) -> Result<Self, Error> {
        let start = Replay::start(&trace.trace.header).map_err(|e| Error::new(e.to_string()))?;
        let mut replay = start.clone();
        let mut outputs = Vec::with_capacity(trace.trace.steps.len());
        for step in &trace.trace.steps {
            outputs.push(replay.step(step).map_err(|e| Error::new(e.to_string()))?);
        }
        let initial = start.initial.clone();
        Ok(Self {
            trace,
            initial,
            outputs,
            replay: start.clone(),
            position: 0,
            checkpoints: vec![start],
        })
    }

    /// Runs `event` at `now` after the step being looked at (dropping any later steps) and moves to it.
    pub fn step(&mut self, now: Instant, event: Event) -> Result<Vec<Action>, Error> {
        if now < self.replay.core.now() {
            return Err(Error::new(format!(
                "time goes backwards: now {} after {}",
                now.as_millis(),
                self.replay.core.now().as_millis()
            )));
        }
        self.truncate();
        let step = TraceStep { now, event };
        let actions = self
            .replay
            .step(&step)
            .map_err(|e| Error::new(e.to_string()))?;
        self.trace.trace.steps.push(step);
        self.trace.notes.push(String::new());
        self.outputs.push(actions.clone());
        self.position += 1;
        self.checkpoint();
        Ok(actions)
    }

    /// Appends a step a live server reported (`GET /events`) after the last one, wherever the page is
    /// looking, and stays at the end. `agrees` says whether the actions the page's core gave are
    /// the ones the server's gave: when not, the page is not showing the server any more, and the
    /// step is not kept.
    pub fn follow(
        &mut self,
        step: TraceStep,
        agrees: impl FnOnce(&[Action]) -> bool,
    ) -> Result<Vec<Action>, Error> {
        self.seek(self.len())?;
        let actions = self.step(step.now, step.event)?;
        if !agrees(&actions) {
            let number = self.len();
            self.seek(number - 1)?;
            self.truncate();
            return Err(Error::new(format!(
                "step {number}: the page's core gave other actions than the server's; the page \
                 stops following"
            )));
        }
        Ok(actions)
    }

    /// Moves to just after step `position` (0 = before the first), forward or back.
    pub fn seek(&mut self, position: usize) -> Result<(), Error> {
        let len = self.trace.trace.steps.len();
        if position > len {
            return Err(Error::new(format!(
                "no step {position}: the trace has {len} steps"
            )));
        }
        if position < self.position {
            let k = (position / CHECKPOINT_EVERY).min(self.checkpoints.len() - 1);
            self.replay = self.checkpoints[k].clone();
            self.position = k * CHECKPOINT_EVERY;
        }
        while self.position < position {
            let step = &self.trace.trace.steps[self.position];
            let actions = self
                .replay
                .step(step)
                .map_err(|e| Error::new(e.to_string()))?;
            debug_assert_eq!(
                actions, self.outputs[self.position],
                "replay is deterministic"
            );
            self.position += 1;
            self.checkpoint();
        }
        Ok(())
    }

    /// Drops the steps after the one being looked at.
    fn truncate(&mut self) {
        let keep = self.position;
        self.trace.trace.steps.truncate(keep);
        self.trace.notes.truncate(keep);
        self.outputs.truncate(keep);
        self.checkpoints.truncate(keep / CHECKPOINT_EVERY + 1);
    }

    fn checkpoint(&mut self) {
        if self.position.is_multiple_of(CHECKPOINT_EVERY)
            && self.checkpoints.len() == self.position / CHECKPOINT_EVERY
        {
            self.checkpoints.push(self.replay.clone());
        }
    }

    /// The core as it is after the current step; every view (held locks, waiters, wait-for graph, grace,
    /// stats) is read from here.
    pub fn core(&self) -> &Core {
        &self.replay.core
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn len(&self) -> usize {
        self.trace.trace.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trace.trace.steps.is_empty()
    }

    pub fn header(&self) -> &TraceHeader {
        &self.trace.trace.header
    }

    pub fn steps(&self) -> &[TraceStep] {
        &self.trace.trace.steps
    }

    /// The actions of step `index` (counting from 0).
    pub fn actions(&self, index: usize) -> Option<&[Action]> {
        self.outputs.get(index).map(Vec::as_slice)
    }

    pub fn initial_actions(&self) -> &[Action] {
        &self.initial
    }

    pub fn description(&self) -> &str {
        &self.trace.description
    }

    pub fn note(&self, index: usize) -> &str {
        self.trace.notes.get(index).map_or("", String::as_str)
    }

    /// Files with state now, and files the steps so far named (an emptied file keeps its place on the
    /// page), in name order.
    pub fn files_seen(&self) -> Vec<FileId> {
        let mut files: BTreeSet<FileId> = self.core().files().into_iter().collect();
        if let Some(records) = &self.header().restore {
            files.extend(records.iter().map(|r| r.file.clone()));
        }
        for step in &self.trace.trace.steps[..self.position] {
            if let Some(file) = file_of(&step.event) {
                files.insert(file.clone());
            }
        }
        files.into_iter().collect()
    }

    /// The whole trace (every step, not only those up to the current one) in the JSON-lines format.
    pub fn to_jsonl(&self) -> String {
        jsonl::write(&self.trace)
    }
}

fn file_of(event: &Event) -> Option<&FileId> {
    match event {
        Event::Lock { file, .. }
        | Event::Unlock { file, .. }
        | Event::Test { file, .. }
        | Event::Cancel { file, .. }
        | Event::Share { file, .. }
        | Event::Unshare { file, .. } => Some(file),
        _ => None,
    }
}

//! `--store memory`: the store's semantics (keys, epochs, fencing) without durability. Nothing
//! survives the process; two `memory` stores share nothing.

use std::collections::BTreeMap;
use std::sync::Mutex;

use brlock_core::{ClientId, FileId, LockRecord, OwnerId, PersistOp};

use super::{RecordFilter, StoreError, Write, check_fence};

type Key = (FileId, ClientId, OwnerId, u64);

fn key(r: &LockRecord) -> Key {
    (
        r.file.clone(),
        r.client.clone(),
        r.owner.clone(),
        r.range.offset,
    )
}

#[derive(Default)]
struct State {
    epoch: u64,
    records: BTreeMap<Key, LockRecord>,
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied batch (see `apply`).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn begin_epoch(&self) -> (u64, Vec<LockRecord>) {
        let mut state = self.state();
        state.epoch += 1;
        (state.epoch, state.records.values().cloned().collect())
    }

    pub(super) fn apply(&self, epoch: u64, batch: &[Write]) -> Result<(), StoreError> {
        let mut state = self.state();
        check_fence(epoch, state.epoch)?;
        for write in batch {
            match &write.op {
                PersistOp::Put(r) => {
                    state.records.insert(key(r), r.clone());
                }
                PersistOp::Delete(r) => {
                    state.records.remove(&key(r));
                }
            }
        }
        Ok(())
    }

    pub(super) fn records(&self, filter: &RecordFilter) -> Vec<LockRecord> {
        let state = self.state();
        state
            .records
            .values()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect()
    }

    pub(super) fn epoch(&self) -> u64 {
        self.state().epoch
    }
}

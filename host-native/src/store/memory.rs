//! `--store memory`: the store's semantics (keys, epochs, fencing) without durability. Nothing
//! survives the process; two `memory` stores share nothing.

use std::collections::BTreeMap;
use std::sync::Mutex;

use brlock_core::{ClientId, FileId, LockRecord, OwnerId, PersistOp, ShareRecord};

use super::{ClientHost, HostWrite, Kept, RecordFilter, StoreError, Write, check_fence};

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
    shares: BTreeMap<(FileId, ClientId, OwnerId), ShareRecord>,
    hosts: BTreeMap<Vec<u8>, ClientHost>,
    nsm_state: u32,
    /// Fault injection: while set, writes and reads fail with `Unavailable(reason)`.
    unavailable: Option<String>,
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

    /// Fault injection for tests: makes every later `apply` and `records` fail with
    /// [`StoreError::Unavailable`] (`Some(reason)`) or succeed again (`None`).
    pub fn set_unavailable(&self, reason: Option<&str>) {
        self.state().unavailable = reason.map(str::to_owned);
    }

    fn check_available(state: &State) -> Result<(), StoreError> {
        match &state.unavailable {
            Some(reason) => Err(StoreError::Unavailable(reason.clone())),
            None => Ok(()),
        }
    }

    pub(super) fn begin_epoch(&self) -> (u64, Vec<LockRecord>) {
        let mut state = self.state();
        state.epoch += 1;
        state.nsm_state = super::next_nsm_state(state.nsm_state);
        (state.epoch, state.records.values().cloned().collect())
    }

    pub(super) fn apply(
        &self,
        epoch: u64,
        batch: &[Write],
        hosts: &[HostWrite],
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        Self::check_available(&state)?;
        check_fence(epoch, state.epoch)?;
        for write in batch {
            match &write.op {
                PersistOp::Put(r) => {
                    state.records.insert(key(r), r.clone());
                }
                PersistOp::Delete(r) => {
                    state.records.remove(&key(r));
                }
                PersistOp::PutShare(r) => {
                    let k = (r.file.clone(), r.client.clone(), r.owner.clone());
                    state.shares.insert(k, r.clone());
                }
                PersistOp::DeleteShare(r) => {
                    let k = (r.file.clone(), r.client.clone(), r.owner.clone());
                    state.shares.remove(&k);
                }
            }
        }
        for write in hosts {
            match write {
                HostWrite::Put(host) => {
                    state.hosts.insert(host.caller_name.clone(), host.clone());
                }
                HostWrite::Delete(name) => {
                    state.hosts.remove(name);
                }
            }
        }
        Ok(())
    }

    pub(super) fn records(&self, filter: &RecordFilter) -> Result<Vec<LockRecord>, StoreError> {
        let state = self.state();
        Self::check_available(&state)?;
        Ok(state
            .records
            .values()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect())
    }

    pub(super) fn kept(&self) -> Result<Kept, StoreError> {
        let state = self.state();
        Self::check_available(&state)?;
        Ok(Kept {
            nsm_state: state.nsm_state,
            shares: state.shares.values().cloned().collect(),
            hosts: state.hosts.values().cloned().collect(),
        })
    }

    pub(super) fn epoch(&self) -> u64 {
        self.state().epoch
    }
}

//! Interning: each file, client and owner's bytes are stored once and named by a small key everywhere
//! else, so a held lock costs a few integers. Keys of removed entries are reused lowest-last (a stack),
//! which depends only on the events seen, so it is deterministic. The hash map is for lookup only:
//! nothing iterates it, so its per-process seed cannot reach an action.
//!
//! A removed entry is *retired* rather than dropped: its key goes on the free stack as before, and
//! every reader treats it as gone, but its id and map entry stay while its key is among the top
//! [`RETIRED_MAX`] of the stack. Interning the same id again while its key is on top — the key a
//! new entry would get anyway — takes the entry back without touching the map: an owner that
//! unlocks its last lock and locks again, the commonest churn, costs no map insert or remove. Keys
//! are handed out exactly as if removed entries were dropped, so nothing observable changes.

use alloc::vec::Vec;
use core::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};

/// How many retired entries a registry keeps at most (the top of its free stack); past it the
/// deepest is dropped. Bounds the memory a burst of removals leaves behind to this many ids.
pub(crate) const RETIRED_MAX: usize = 16;

#[derive(Clone, Debug)]
pub(crate) struct Registry<K, V> {
    /// The key of every id with an entry in `slots`, live or retired, hashed by the id: the table
    /// holds only key numbers (the ids are in the slots), 4 bytes an entry.
    keys: HashTable<u32>,
    hasher: DefaultHashBuilder,
    slots: Vec<Option<(K, V)>>,
    /// Whether each slot's entry is live; a slot with an entry that is not live is retired.
    live: Vec<bool>,
    free: Vec<u32>,
    /// Live entries.
    len: usize,
}

impl<K, V> Default for Registry<K, V> {
    fn default() -> Self {
        Self {
            keys: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            slots: Vec::new(),
            live: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<K, V> Registry<K, V> {
    /// Slots as readers see them: retired entries are gone.
    fn live_slots(&self) -> impl Iterator<Item = Option<&(K, V)>> {
        self.slots
            .iter()
            .zip(&self.live)
            .map(|(slot, &live)| slot.as_ref().filter(|_| live))
    }
}

/// Equal when the same ids sit at the same keys with the same free stack (the map follows the slots;
/// retired entries are gone to every reader).
impl<K: PartialEq, V: PartialEq> PartialEq for Registry<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.free == other.free
            && self.slots.len() == other.slots.len()
            && self.live_slots().eq(other.live_slots())
    }
}

impl<K: Eq, V: Eq> Eq for Registry<K, V> {}

/// The serde form keeps the keys: `{"slots":[[id, value] or null, …],"free":[key, …]}`, since keys
/// order ties (lower owner key first) and reused keys come off the free stack. Retired entries are
/// written as empty slots. Reading it back rebuilds the lookup map and refuses slots and a free
/// stack that disagree.
#[cfg(feature = "serde")]
impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for Registry<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Slots<'a, K, V>(&'a Registry<K, V>);
        impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for Slots<'_, K, V> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.live_slots())
            }
        }
        let mut state = s.serialize_struct("Registry", 2)?;
        state.serialize_field("slots", &Slots(self))?;
        state.serialize_field("free", &self.free)?;
        state.end()
    }
}

#[cfg(feature = "serde")]
impl<'de, K, V> serde::Deserialize<'de> for Registry<K, V>
where
    K: serde::Deserialize<'de> + Hash + Eq + Clone,
    V: serde::Deserialize<'de>,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(bound = "K: serde::Deserialize<'de>, V: serde::Deserialize<'de>")]
        struct Form<K, V> {
            slots: Vec<Option<(K, V)>>,
            free: Vec<u32>,
        }
        let Form { slots, free } = Form::<K, V>::deserialize(d)?;
        let error = serde::de::Error::custom;
        let mut registry = Self {
            slots,
            ..Self::default()
        };
        for key in 0..registry.slots.len() as u32 {
            if let Some((id, _)) = &registry.slots[key as usize] {
                if registry.find(id).is_some() {
                    return Err(error("registry: one id in two slots"));
                }
                registry.insert_key(key);
            }
        }
        let slots = &registry.slots;
        let mut empty: Vec<u32> = (0..slots.len() as u32)
            .filter(|&k| slots[k as usize].is_none())
            .collect();
        let mut listed = free.clone();
        listed.sort_unstable();
        empty.sort_unstable();
        if listed != empty {
            return Err(error("registry: the free stack is not the empty slots"));
        }
        if slots.len() > u32::MAX as usize {
            return Err(error("registry: too many slots"));
        }
        registry.live = slots.iter().map(Option::is_some).collect();
        registry.len = registry.keys.len();
        registry.free = free;
        Ok(registry)
    }
}

impl<K: Hash + Eq + Clone, V> Registry<K, V> {
    pub fn lookup(&self, id: &K) -> Option<u32> {
        self.find(id).filter(|&key| self.live[key as usize])
    }

    /// The key of `id`, live or retired.
    fn find(&self, id: &K) -> Option<u32> {
        self.find_by(self.hasher.hash_one(id), |k| k == id)
    }

    /// The key of the id with this hash that `eq` accepts, live or retired.
    fn find_by(&self, hash: u64, eq: impl Fn(&K) -> bool) -> Option<u32> {
        let slots = &self.slots;
        self.keys
            .find(hash, |&key| {
                slots[key as usize].as_ref().is_some_and(|(k, _)| eq(k))
            })
            .copied()
    }

    /// Enters the id in slot `key` into the table.
    fn insert_key(&mut self, key: u32) {
        let Self {
            keys,
            slots,
            hasher,
            ..
        } = self;
        let Some((id, _)) = &slots[key as usize] else {
            return;
        };
        let rehash = |&k: &u32| {
            slots[k as usize]
                .as_ref()
                .map_or(0, |(id, _)| hasher.hash_one(id))
        };
        keys.insert_unique(hasher.hash_one(id), key, rehash);
    }

    /// The live key of the id that hashes like `query` and that `eq` accepts: a lookup by a
    /// borrowed form of the id (an owner's client key and `&OwnerId`), which must hash as the id does.
    pub fn lookup_by<Q: Hash + ?Sized>(&self, query: &Q, eq: impl Fn(&K) -> bool) -> Option<u32> {
        self.find_by(self.hasher.hash_one(query), eq)
            .filter(|&key| self.live[key as usize])
    }

    pub fn intern(&mut self, id: &K, make: impl FnOnce() -> V) -> u32 {
        self.intern_by(id, |k| k == id, || id.clone(), make)
    }

    /// [`Registry::intern`] by a borrowed form of the id (see [`Registry::lookup_by`]); `id` makes
    /// the id itself, only when it is new.
    pub fn intern_by<Q: Hash + ?Sized>(
        &mut self,
        query: &Q,
        eq: impl Fn(&K) -> bool,
        id: impl FnOnce() -> K,
        make: impl FnOnce() -> V,
    ) -> u32 {
        let hash = self.hasher.hash_one(query);
        if let Some(key) = self.find_by(hash, eq) {
            if self.live[key as usize] {
                return key;
            }
            if self.free.last() == Some(&key) {
                // Retired, and its key is the one a new entry would get: take it back, as new.
                self.free.pop();
                if let Some((_, value)) = &mut self.slots[key as usize] {
                    *value = make();
                }
                self.live[key as usize] = true;
                self.len += 1;
                return key;
            }
            // Its key goes to another id first; the id starts over like any new one.
            self.drop_retired(key);
        }
        let key = match self.free.pop() {
            Some(key) => {
                self.drop_retired(key);
                key
            }
            None => {
                self.slots.push(None);
                self.live.push(false);
                (self.slots.len() - 1) as u32
            }
        };
        let id = id();
        debug_assert_eq!(
            self.hasher.hash_one(&id),
            hash,
            "a query must hash as its id"
        );
        self.slots[key as usize] = Some((id, make()));
        self.live[key as usize] = true;
        self.len += 1;
        self.insert_key(key);
        key
    }

    /// Removes the entry at `key` for every reader (it is retired, see the module doc).
    pub fn remove(&mut self, key: u32) {
        if !self.live.get(key as usize).copied().unwrap_or(false) {
            return;
        }
        self.live[key as usize] = false;
        self.len -= 1;
        self.free.push(key);
        // Only the top RETIRED_MAX keys of the stack may keep a retired entry.
        if let Some(deep) = self.free.len().checked_sub(RETIRED_MAX + 1) {
            self.drop_retired(self.free[deep]);
        }
    }

    /// Drops the retired entry at `key`, if any, and its place in the map.
    fn drop_retired(&mut self, key: u32) {
        if !self.live[key as usize]
            && let Some((id, _)) = self.slots[key as usize].take()
            && let Ok(entry) = self
                .keys
                .find_entry(self.hasher.hash_one(&id), |&k| k == key)
        {
            entry.remove();
        }
    }

    pub fn id(&self, key: u32) -> &K {
        &self.entry(key).0
    }

    pub fn get(&self, key: u32) -> &V {
        &self.entry(key).1
    }

    pub fn get_mut(&mut self, key: u32) -> &mut V {
        match self.slots.get_mut(key as usize) {
            Some(Some((_, value))) if self.live[key as usize] => value,
            _ => panic!("registry key {key} is not live"),
        }
    }

    pub fn try_get(&self, key: u32) -> Option<&V> {
        self.live_slot(key).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Live entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &K, &V)> {
        self.live_slots()
            .enumerate()
            .filter_map(|(i, slot)| slot.map(|(k, v)| (i as u32, k, v)))
    }

    fn live_slot(&self, key: u32) -> Option<&(K, V)> {
        self.slots
            .get(key as usize)?
            .as_ref()
            .filter(|_| self.live[key as usize])
    }

    fn entry(&self, key: u32) -> &(K, V) {
        match self.live_slot(key) {
            Some(entry) => entry,
            None => panic!("registry key {key} is not live"),
        }
    }

    /// The map and the slots agree, the live count is right, and retired entries sit only under
    /// the top keys of the free stack.
    #[cfg(any(test, feature = "invariants"))]
    pub fn check(&self) -> Result<(), &'static str> {
        let kept = self.slots.iter().filter(|s| s.is_some()).count();
        if kept != self.keys.len() {
            return Err("registry: map and slots differ in size");
        }
        if self.live.len() != self.slots.len()
            || self.live.iter().filter(|&&l| l).count() != self.len
        {
            return Err("registry: live count wrong");
        }
        for (key, slot) in self.slots.iter().enumerate() {
            let live = self.live[key];
            if live && slot.is_none() {
                return Err("registry: a live key without an entry");
            }
            if let Some((id, _)) = slot
                && self.find(id) != Some(key as u32)
            {
                return Err("registry: map does not point at its slot");
            }
        }
        let mut on_stack = alloc::vec![false; self.slots.len()];
        for (depth, &key) in self.free.iter().rev().enumerate() {
            let Some(seen) = on_stack.get_mut(key as usize) else {
                return Err("registry: free key past the slots");
            };
            if *seen || self.live[key as usize] {
                return Err("registry: free stack holds a live or repeated key");
            }
            *seen = true;
            if depth >= RETIRED_MAX && self.slots[key as usize].is_some() {
                return Err("registry: a retired entry deep in the free stack");
            }
        }
        if on_stack
            .iter()
            .zip(&self.live)
            .any(|(&free, &live)| !free && !live)
        {
            return Err("registry: a removed key missing from the free stack");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashbrown::HashMap;
    use quickcheck::{QuickCheck, TestResult};

    /// The registry as it was before entries were retired: a removed entry is dropped at once.
    #[derive(Default)]
    struct Dropping {
        keys: HashMap<u8, u32>,
        slots: Vec<Option<u8>>,
        free: Vec<u32>,
    }

    impl Dropping {
        fn intern(&mut self, id: u8) -> u32 {
            if let Some(&key) = self.keys.get(&id) {
                return key;
            }
            let key = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            });
            self.slots[key as usize] = Some(id);
            self.keys.insert(id, key);
            key
        }

        fn remove(&mut self, key: u32) {
            if let Some(id) = self.slots[key as usize].take() {
                self.keys.remove(&id);
                self.free.push(key);
            }
        }
    }

    /// Retiring is invisible: every intern hands out the key a registry that drops removed entries
    /// would, and lookups, the live entries and the serde form agree with it after every step.
    #[test]
    fn retired_entries_change_no_key_lookup_or_serde_form() {
        fn prop(ops: Vec<(bool, u8)>) -> TestResult {
            let mut registry: Registry<u8, u64> = Registry::default();
            let mut model = Dropping::default();
            for (intern, id) in ops {
                let id = id % 24;
                if intern {
                    let key = registry.intern(&id, || u64::from(id) * 3);
                    assert_eq!(key, model.intern(id));
                    // A taken-back entry is as new.
                    assert_eq!(*registry.get(key), u64::from(id) * 3);
                    *registry.get_mut(key) += 1_000;
                    *registry.get_mut(key) -= 1_000;
                } else if let Some(&key) = model.keys.get(&id) {
                    registry.remove(key);
                    model.remove(key);
                }
                assert_eq!(registry.check(), Ok(()));
                for probe in 0..24u8 {
                    assert_eq!(registry.lookup(&probe), model.keys.get(&probe).copied());
                }
                assert_eq!(registry.len(), model.keys.len());
                let live: Vec<(u32, u8)> = registry.iter().map(|(k, &id, _)| (k, id)).collect();
                let want: Vec<(u32, u8)> = model
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(k, id)| id.map(|id| (k as u32, id)))
                    .collect();
                assert_eq!(live, want);
                assert_eq!(registry.free, model.free);
            }
            let bytes = postcard::to_allocvec(&registry).expect("serialises");
            let back: Registry<u8, u64> = postcard::from_bytes(&bytes).expect("reads back");
            assert_eq!(back, registry);
            assert_eq!(back.check(), Ok(()));
            TestResult::passed()
        }
        QuickCheck::new()
            .tests(2_000)
            .quickcheck(prop as fn(Vec<(bool, u8)>) -> TestResult);
    }
}

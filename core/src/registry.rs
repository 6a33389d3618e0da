//! Interning: each file, client and owner's bytes are stored once and named by a small key everywhere
//! else, so a held lock costs a few integers. Keys of removed entries are reused lowest-last (a stack),
//! which depends only on the events seen, so it is deterministic. The hash map is for lookup only:
//! nothing iterates it, so its per-process seed cannot reach an action.

use alloc::vec::Vec;
use core::hash::Hash;

use hashbrown::HashMap;

#[derive(Clone, Debug)]
pub(crate) struct Registry<K, V> {
    keys: HashMap<K, u32>,
    slots: Vec<Option<(K, V)>>,
    free: Vec<u32>,
}

impl<K, V> Default for Registry<K, V> {
    fn default() -> Self {
        Self {
            keys: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

/// Equal when the same ids sit at the same keys with the same free stack (the map follows the slots).
impl<K: PartialEq, V: PartialEq> PartialEq for Registry<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.slots == other.slots && self.free == other.free
    }
}

impl<K: Eq, V: Eq> Eq for Registry<K, V> {}

/// The serde form keeps the keys: `{"slots":[[id, value] or null, …],"free":[key, …]}`, since keys
/// order ties (lower owner key first) and reused keys come off the free stack. Reading it back
/// rebuilds the lookup map and refuses slots and a free stack that disagree.
#[cfg(feature = "serde")]
impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for Registry<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut state = s.serialize_struct("Registry", 2)?;
        state.serialize_field("slots", &self.slots)?;
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
        let mut keys = HashMap::default();
        for (key, slot) in slots.iter().enumerate() {
            if let Some((id, _)) = slot
                && keys.insert(id.clone(), key as u32).is_some()
            {
                return Err(error("registry: one id in two slots"));
            }
        }
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
        Ok(Self { keys, slots, free })
    }
}

impl<K: Hash + Eq + Clone, V> Registry<K, V> {
    pub fn lookup(&self, id: &K) -> Option<u32> {
        self.keys.get(id).copied()
    }

    pub fn intern(&mut self, id: &K, make: impl FnOnce() -> V) -> u32 {
        if let Some(&key) = self.keys.get(id) {
            return key;
        }
        let entry = Some((id.clone(), make()));
        let key = match self.free.pop() {
            Some(key) => {
                self.slots[key as usize] = entry;
                key
            }
            None => {
                self.slots.push(entry);
                (self.slots.len() - 1) as u32
            }
        };
        self.keys.insert(id.clone(), key);
        key
    }

    pub fn remove(&mut self, key: u32) -> Option<V> {
        let (id, value) = self.slots.get_mut(key as usize)?.take()?;
        self.keys.remove(&id);
        self.free.push(key);
        Some(value)
    }

    pub fn id(&self, key: u32) -> &K {
        &self.entry(key).0
    }

    pub fn get(&self, key: u32) -> &V {
        &self.entry(key).1
    }

    pub fn get_mut(&mut self, key: u32) -> &mut V {
        match self.slots.get_mut(key as usize) {
            Some(Some((_, value))) => value,
            _ => panic!("registry key {key} is not live"),
        }
    }

    pub fn try_get(&self, key: u32) -> Option<&V> {
        self.slots.get(key as usize)?.as_ref().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Live entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &K, &V)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| slot.as_ref().map(|(k, v)| (i as u32, k, v)))
    }

    fn entry(&self, key: u32) -> &(K, V) {
        match self.slots.get(key as usize) {
            Some(Some(entry)) => entry,
            _ => panic!("registry key {key} is not live"),
        }
    }

    /// The map and the slots agree.
    #[cfg(any(test, feature = "invariants"))]
    pub fn check(&self) -> Result<(), &'static str> {
        let live = self.slots.iter().filter(|s| s.is_some()).count();
        if live != self.keys.len() {
            return Err("registry: map and slots differ in size");
        }
        for (key, id, _) in self.iter() {
            if self.keys.get(id) != Some(&key) {
                return Err("registry: map does not point at its slot");
            }
        }
        Ok(())
    }
}

//! An interval tree: a treap in an arena, keyed by (start, owner), each node augmented with the largest
//! end in its subtree. "Which locks overlap this span?" costs O(log n + k) however long the locks are —
//! Linux, FreeBSD and Ganesha all scan a per-file list instead.
//!
//! Priorities come from a counter mixed by splitmix64, so the shape is the same on every platform.

use alloc::vec::Vec;
use core::ops::ControlFlow;

use crate::range::Span;

const NIL: u32 = u32::MAX;

/// (start, owner): unique within one tree, because one owner's locks never overlap.
pub(crate) type Key = (u64, u32);

#[derive(Clone, Debug)]
struct Node {
    start: u64,
    end: u64,
    max_end: u64,
    owner: u32,
    priority: u32,
    left: u32,
    right: u32,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct IntervalTree {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: Option<u32>,
    len: usize,
    next_priority: u64,
}

impl IntervalTree {
    pub fn insert(&mut self, span: Span, owner: u32) {
        let node = self.alloc(span, owner);
        let root = self.insert_at(self.root_index(), node);
        self.set_root(root);
        self.len += 1;
    }

    /// Removes the node with this key; returns its end if it was there.
    pub fn remove(&mut self, key: Key) -> Option<u64> {
        let (root, found) = self.remove_at(self.root_index(), key);
        self.set_root(root);
        let found = found?;
        self.free.push(found);
        self.len -= 1;
        Some(self.nodes[found as usize].end)
    }

    /// Calls `visit(span, owner)` for every interval overlapping `span`, in key order, until it breaks.
    pub fn overlapping<B>(
        &self,
        span: Span,
        mut visit: impl FnMut(Span, u32) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        self.walk(self.root_index(), span, &mut visit)
    }

    /// Every interval in key order.
    pub fn iter(&self) -> impl Iterator<Item = (Span, u32)> + '_ {
        let mut out = Vec::with_capacity(self.len);
        let _ = self.walk::<()>(self.root_index(), Span::new(0, u64::MAX), &mut |s, o| {
            out.push((s, o));
            ControlFlow::Continue(())
        });
        out.into_iter()
    }

    /// Checks heap order, key order and the max-end augmentation; returns the node count.
    #[cfg(any(test, feature = "invariants"))]
    pub fn check(&self) -> Result<usize, &'static str> {
        fn go(
            t: &IntervalTree,
            i: u32,
            lo: Option<Key>,
            hi: Option<Key>,
        ) -> Result<(usize, u64), &'static str> {
            if i == NIL {
                return Ok((0, 0));
            }
            let n = &t.nodes[i as usize];
            let key = (n.start, n.owner);
            if lo.is_some_and(|lo| key <= lo) || hi.is_some_and(|hi| key >= hi) {
                return Err("interval tree keys out of order");
            }
            if n.start > n.end {
                return Err("interval tree node with start > end");
            }
            for child in [n.left, n.right] {
                if child != NIL && t.nodes[child as usize].priority > n.priority {
                    return Err("interval tree heap order broken");
                }
            }
            let (lc, lmax) = go(t, n.left, lo, Some(key))?;
            let (rc, rmax) = go(t, n.right, Some(key), hi)?;
            let max = n.end.max(lmax).max(rmax);
            if max != n.max_end {
                return Err("interval tree max_end wrong");
            }
            Ok((lc + rc + 1, max))
        }
        let (count, _) = go(self, self.root_index(), None, None)?;
        if count != self.len {
            return Err("interval tree length wrong");
        }
        Ok(count)
    }

    fn walk<B>(
        &self,
        i: u32,
        span: Span,
        visit: &mut impl FnMut(Span, u32) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        if i == NIL {
            return ControlFlow::Continue(());
        }
        let n = &self.nodes[i as usize];
        if n.max_end < span.start {
            return ControlFlow::Continue(());
        }
        self.walk(n.left, span, visit)?;
        if n.start > span.end {
            return ControlFlow::Continue(());
        }
        if n.end >= span.start {
            visit(Span::new(n.start, n.end), n.owner)?;
        }
        self.walk(n.right, span, visit)
    }

    fn root_index(&self) -> u32 {
        self.root.unwrap_or(NIL)
    }

    fn set_root(&mut self, root: u32) {
        self.root = (root != NIL).then_some(root);
    }

    fn alloc(&mut self, span: Span, owner: u32) -> u32 {
        let priority = splitmix64(self.next_priority) as u32;
        self.next_priority += 1;
        let node = Node {
            start: span.start,
            end: span.end,
            max_end: span.end,
            owner,
            priority,
            left: NIL,
            right: NIL,
        };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn update(&mut self, i: u32) {
        let n = &self.nodes[i as usize];
        let mut max = n.end;
        for child in [n.left, n.right] {
            if child != NIL {
                max = max.max(self.nodes[child as usize].max_end);
            }
        }
        self.nodes[i as usize].max_end = max;
    }

    fn key(&self, i: u32) -> Key {
        let n = &self.nodes[i as usize];
        (n.start, n.owner)
    }

    /// Puts the lone node `node` into subtree `t` as a leaf by key, then rotates it up while its
    /// priority beats its parent's: one walk down and back, where a split and two merges took three.
    fn insert_at(&mut self, t: u32, node: u32) -> u32 {
        if t == NIL {
            return node;
        }
        let end = self.nodes[node as usize].end;
        let n = &mut self.nodes[t as usize];
        n.max_end = n.max_end.max(end);
        if self.key(node) < self.key(t) {
            let left = self.insert_at(self.nodes[t as usize].left, node);
            self.nodes[t as usize].left = left;
            if self.nodes[left as usize].priority > self.nodes[t as usize].priority {
                return self.rotate_right(t);
            }
        } else {
            let right = self.insert_at(self.nodes[t as usize].right, node);
            self.nodes[t as usize].right = right;
            if self.nodes[right as usize].priority > self.nodes[t as usize].priority {
                return self.rotate_left(t);
            }
        }
        t
    }

    /// Takes the node with `key` out of subtree `t` (its children merged in its place); returns
    /// the subtree's new root and the node taken, if any.
    fn remove_at(&mut self, t: u32, key: Key) -> (u32, Option<u32>) {
        if t == NIL {
            return (NIL, None);
        }
        let here = self.key(t);
        let found = if key < here {
            let (left, found) = self.remove_at(self.nodes[t as usize].left, key);
            self.nodes[t as usize].left = left;
            found
        } else if key > here {
            let (right, found) = self.remove_at(self.nodes[t as usize].right, key);
            self.nodes[t as usize].right = right;
            found
        } else {
            let n = &self.nodes[t as usize];
            let merged = self.merge(n.left, n.right);
            let n = &mut self.nodes[t as usize];
            (n.left, n.right) = (NIL, NIL);
            return (merged, Some(t));
        };
        // Only a node whose end was this subtree's largest can lower its max_end.
        if let Some(gone) = found
            && self.nodes[gone as usize].end >= self.nodes[t as usize].max_end
        {
            self.update(t);
        }
        (t, found)
    }

    /// `t`'s left child takes its place; `t` becomes its right child.
    fn rotate_right(&mut self, t: u32) -> u32 {
        let left = self.nodes[t as usize].left;
        self.nodes[t as usize].left = self.nodes[left as usize].right;
        self.nodes[left as usize].right = t;
        self.update(t);
        self.update(left);
        left
    }

    /// `t`'s right child takes its place; `t` becomes its left child.
    fn rotate_left(&mut self, t: u32) -> u32 {
        let right = self.nodes[t as usize].right;
        self.nodes[t as usize].right = self.nodes[right as usize].left;
        self.nodes[right as usize].left = t;
        self.update(t);
        self.update(right);
        right
    }

    /// Joins two treaps where every key of `a` is below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].priority >= self.nodes[b as usize].priority {
            let right = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = right;
            self.update(a);
            a
        } else {
            let left = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = left;
            self.update(b);
            b
        }
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use quickcheck::{QuickCheck, TestResult};

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, u8, u8),
        Remove(u8, u8),
        Query(u8, u8),
    }

    impl quickcheck::Arbitrary for Op {
        fn arbitrary(g: &mut quickcheck::Gen) -> Self {
            match u8::arbitrary(g) % 3 {
                0 => Op::Insert(
                    u8::arbitrary(g),
                    u8::arbitrary(g) % 32,
                    u8::arbitrary(g) % 4,
                ),
                1 => Op::Remove(u8::arbitrary(g), u8::arbitrary(g) % 4),
                _ => Op::Query(u8::arbitrary(g), u8::arbitrary(g) % 64),
            }
        }
    }

    /// The tree answers overlap queries exactly as a plain ordered map scanned end to end.
    #[test]
    fn interval_tree_agrees_with_a_scanned_map() {
        fn prop(ops: Vec<Op>) -> TestResult {
            let mut tree = IntervalTree::default();
            let mut model: BTreeMap<Key, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(start, len, owner) => {
                        let key = (start as u64, owner as u32);
                        if model.contains_key(&key) {
                            continue;
                        }
                        let end = start as u64 + len as u64;
                        model.insert(key, end);
                        tree.insert(Span::new(start as u64, end), owner as u32);
                    }
                    Op::Remove(start, owner) => {
                        let key = (start as u64, owner as u32);
                        assert_eq!(tree.remove(key), model.remove(&key));
                    }
                    Op::Query(start, len) => {
                        let q = Span::new(start as u64, start as u64 + len as u64);
                        let mut got = Vec::new();
                        let _ = tree.overlapping::<()>(q, |s, o| {
                            got.push(((s.start, o), s.end));
                            ControlFlow::Continue(())
                        });
                        let want: Vec<_> = model
                            .iter()
                            .filter(|&(&(s, _), &e)| Span::new(s, e).overlaps(q))
                            .map(|(&k, &e)| (k, e))
                            .collect();
                        assert_eq!(got, want);
                    }
                }
                assert_eq!(tree.check(), Ok(model.len()));
            }
            TestResult::passed()
        }
        QuickCheck::new()
            .tests(2_000)
            .quickcheck(prop as fn(Vec<Op>) -> TestResult);
    }

    #[test]
    fn queries_stop_when_the_visitor_breaks() {
        let mut tree = IntervalTree::default();
        for i in 0..10u64 {
            tree.insert(Span::new(i * 10, i * 10 + 5), 1);
        }
        let mut seen = 0;
        let found = tree.overlapping(Span::new(0, 100), |s, _| {
            seen += 1;
            if s.start == 30 {
                ControlFlow::Break(s)
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(found, ControlFlow::Break(Span::new(30, 35)));
        assert_eq!(seen, 4);
    }

    #[test]
    fn a_long_interval_is_found_from_anywhere_it_covers() {
        let mut tree = IntervalTree::default();
        tree.insert(Span::new(0, u64::MAX), 7);
        for i in 1..1000u64 {
            tree.insert(Span::new(i * 100, i * 100 + 1), 1);
        }
        let mut owners = Vec::new();
        let _ = tree.overlapping::<()>(Span::new(50_000_050, 50_000_060), |_, o| {
            owners.push(o);
            ControlFlow::Continue(())
        });
        assert_eq!(owners, [7]);
    }
}

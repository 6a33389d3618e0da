//! The wait-for graph of `/wait-for`: an edge from each waiter's owner to each owner it waits for,
//! and the cycles among them (strongly connected parts, found without recursion).

use std::collections::BTreeMap;

use brlock_core::{Core, OwnerRef, WaitEdge};
use serde::Serialize;

use super::filter::Capped;
use super::rows::{OwnerRow, file_hex};

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct EdgeRow {
    /// The waiting request (as in `/waiters`).
    pub waiter: u64,
    pub file: String,
    pub from: OwnerRow,
    pub to: OwnerRow,
    /// Both ends are on one cycle of the graph.
    pub in_cycle: bool,
}

/// The wait-for graph as collected on the core task: edges (each with whether it lies on a
/// cycle) and the cycles' owners.
pub struct WaitFor {
    pub edges: Capped<(WaitEdge, bool)>,
    /// The owners of each cycle (a strongly connected part of more than one owner, or one that
    /// waits for itself). The core refuses a blocking request that would close a cycle
    /// (NLM4_DEADLCK), but a cycle can form later, when a non-blocking lock (judged against held
    /// locks only) lands on a range an owner already waits for.
    pub cycles: Vec<Vec<OwnerRef>>,
}

impl WaitFor {
    /// Edges as rows, and each cycle's owners in order.
    pub fn rows(self) -> (Capped<EdgeRow>, Vec<Vec<OwnerRow>>) {
        let edges = self.edges.map(|(e, in_cycle)| EdgeRow {
            waiter: e.waiter.0,
            file: file_hex(&e.file),
            from: OwnerRow::new(&e.from.client, &e.from.owner),
            to: OwnerRow::new(&e.to.client, &e.to.owner),
            in_cycle,
        });
        let mut cycles: Vec<Vec<OwnerRow>> = self
            .cycles
            .into_iter()
            .map(|cycle| {
                let mut owners: Vec<OwnerRow> = cycle
                    .iter()
                    .map(|o| OwnerRow::new(&o.client, &o.owner))
                    .collect();
                owners.sort();
                owners
            })
            .collect();
        cycles.sort();
        (edges, cycles)
    }
}

/// The wait-for graph: an edge from a waiter's owner to each owner it waits for, in waiter order.
/// The graph is as large as the waiter limits allow (the core builds it whole); the edges listed
/// are capped, the cycles are searched over all of it.
pub fn wait_for(core: &Core, limit: usize) -> WaitFor {
    let graph = core.wait_for_graph();
    let mut nodes: BTreeMap<&OwnerRef, usize> = BTreeMap::new();
    for e in &graph {
        let n = nodes.len();
        nodes.entry(&e.from).or_insert(n);
        let n = nodes.len();
        nodes.entry(&e.to).or_insert(n);
    }
    let pairs: Vec<(usize, usize)> = graph
        .iter()
        .map(|e| (nodes[&e.from], nodes[&e.to]))
        .collect();
    let component = strongly_connected(nodes.len(), &pairs);
    // A component is a cycle when it has two owners or more, or one that waits for itself.
    let mut cyclic = vec![0usize; nodes.len()];
    for &c in &component {
        cyclic[c] += 1;
    }
    for &(a, b) in &pairs {
        if a == b {
            cyclic[component[a]] += 1;
        }
    }
    let on_cycle = |n: usize| cyclic[component[n]] > 1;
    let mut cycles: BTreeMap<usize, Vec<OwnerRef>> = BTreeMap::new();
    for (owner, &n) in &nodes {
        if on_cycle(n) {
            cycles
                .entry(component[n])
                .or_default()
                .push((*owner).clone());
        }
    }
    let cycles = cycles.into_values().collect();
    let mut edges = Capped::new();
    for (edge, (a, b)) in graph.into_iter().zip(pairs.iter().copied()) {
        let in_cycle = component[a] == component[b] && on_cycle(a);
        if !edges.offer(limit, || (edge, in_cycle)) {
            break;
        }
    }
    WaitFor { edges, cycles }
}

/// Kosaraju's algorithm, iterative (a graph of 10,000 waiters must not overflow a stack): the
/// component number of each of `n` nodes, equal for nodes that reach each other.
fn strongly_connected(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut forward = vec![Vec::new(); n];
    let mut backward = vec![Vec::new(); n];
    for &(a, b) in edges {
        forward[a].push(b);
        backward[b].push(a);
    }
    // Pass 1: nodes in order of finishing a depth-first search.
    let mut finished = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for root in 0..n {
        if seen[root] {
            continue;
        }
        seen[root] = true;
        let mut stack = vec![(root, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            if let Some(&to) = forward[*node].get(*next) {
                *next += 1;
                if !seen[to] {
                    seen[to] = true;
                    stack.push((to, 0));
                }
            } else {
                finished.push(*node);
                stack.pop();
            }
        }
    }
    // Pass 2: on the reversed graph, latest finisher first; each search is one component.
    const NONE: usize = usize::MAX;
    let mut component = vec![NONE; n];
    let mut count = 0;
    for &root in finished.iter().rev() {
        if component[root] != NONE {
            continue;
        }
        component[root] = count;
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            for &from in &backward[node] {
                if component[from] == NONE {
                    component[from] = count;
                    stack.push(from);
                }
            }
        }
        count += 1;
    }
    component
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::admin::world::World;
    use std::collections::BTreeSet;

    #[test]
    fn the_wait_for_graph_lists_edges_without_a_cycle_the_core_would_refuse() {
        let mut w = World::new();
        w.lock("host-a", 1, b"f", 0, 10, false);
        w.lock("host-b", 2, b"g", 0, 10, false);
        w.lock("host-a", 1, b"g", 0, 10, true); // a waits for b
        w.lock("host-b", 2, b"f", 0, 10, true); // would close a cycle: refused (deadlock)
        let (edges, cycles) = wait_for(&w.core, 10).rows();
        assert_eq!(edges.rows.len(), 1);
        let e = &edges.rows[0];
        assert_eq!(
            (e.from.owner.as_str(), e.to.owner.as_str(), e.file.as_str()),
            ("host-a/1/oh", "host-b/2/oh", "67")
        );
        assert!(!e.in_cycle);
        assert!(cycles.is_empty());
    }

    /// A non-blocking lock, judged against held locks only, lands on a range an owner already waits
    /// for; the core breaks the cycle that would close (removing that waiter), so `/wait-for` lists
    /// what is left and no cycle.
    #[test]
    fn a_cycle_a_grant_would_close_is_broken_before_it_is_listed() {
        let mut w = World::new();
        w.lock("x", 1, b"g", 0, 10, false); // x holds g
        w.lock("y", 2, b"g", 0, 10, true); // y waits for x on g
        w.lock("z", 3, b"f", 0, 10, false); // z holds f[0, 10)
        w.lock("x", 1, b"f", 0, 20, true); // x waits for z on f[0, 20)
        w.lock("y", 2, b"f", 15, 5, false); // y takes f[15, 20): x's wait would close a cycle
        let (edges, cycles) = wait_for(&w.core, 10).rows();
        let marked: Vec<_> = edges
            .rows
            .iter()
            .map(|e| (e.from.owner.as_str(), e.to.owner.as_str(), e.in_cycle))
            .collect();
        assert_eq!(marked, [("y/2/oh", "x/1/oh", false)]);
        assert!(cycles.is_empty());
    }

    #[test]
    fn strongly_connected_parts_are_found_without_recursion() {
        // 0 → 1 → 2 → 0 is a cycle; 3 → 0 and 4 alone are not.
        let c = strongly_connected(5, &[(0, 1), (1, 2), (2, 0), (3, 0)]);
        assert!(c[0] == c[1] && c[1] == c[2]);
        assert!(c[3] != c[0] && c[4] != c[0] && c[3] != c[4]);
        // A long chain and a long ring: no stack overflow.
        let n = 200_000;
        let chain: Vec<_> = (0..n - 1).map(|i| (i, i + 1)).collect();
        let c = strongly_connected(n, &chain);
        assert_eq!(c.iter().collect::<BTreeSet<_>>().len(), n);
        let mut ring = chain;
        ring.push((n - 1, 0));
        let c = strongly_connected(n, &ring);
        assert!(c.iter().all(|&x| x == c[0]));
    }

    /// Against the naive model: two nodes share a component exactly when each reaches the other.
    #[test]
    fn strongly_connected_agrees_with_mutual_reachability() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |below: usize| {
            // xorshift64*: a fixed seed, so a failure replays.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below
        };
        for case in 0..2_000 {
            let n = 1 + next(12);
            let edges: Vec<(usize, usize)> = (0..next(30)).map(|_| (next(n), next(n))).collect();
            let mut reach = vec![vec![false; n]; n];
            for (a, row) in reach.iter_mut().enumerate() {
                let mut stack = vec![a];
                while let Some(x) = stack.pop() {
                    if !row[x] {
                        row[x] = true;
                        stack.extend(edges.iter().filter(|e| e.0 == x).map(|e| e.1));
                    }
                }
            }
            let component = strongly_connected(n, &edges);
            for a in 0..n {
                for b in 0..n {
                    assert_eq!(
                        component[a] == component[b],
                        reach[a][b] && reach[b][a],
                        "case {case}: nodes {a}, {b} of {edges:?}"
                    );
                }
            }
        }
    }
}

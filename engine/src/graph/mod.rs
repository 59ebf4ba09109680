//! The DAG of steps: built once from `needs`, sealed, then only read. Owns cycle
//! detection (with the whole path), topological order, parallel levels, ancestry and
//! the Mermaid/DOT pictures. Knows nothing of step types.

use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone)]
pub struct Dag {
    graph: DiGraph<usize, ()>,
    needs: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    topo: Vec<usize>,
}

impl Dag {
    /// Builds the DAG from each step's needs (indices). On cycles, returns each cycle as
    /// the path of step indices, closed (`[a, b, c, a]`).
    pub fn build(needs: Vec<Vec<usize>>) -> Result<Dag, Vec<Vec<usize>>> {
        let n = needs.len();
        let mut graph = DiGraph::with_capacity(n, needs.iter().map(Vec::len).sum());
        for i in 0..n {
            graph.add_node(i);
        }
        let mut dependents = vec![Vec::new(); n];
        for (i, ns) in needs.iter().enumerate() {
            for &d in ns {
                graph.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
                dependents[d].push(i);
            }
        }
        let topo = kahn(&needs, &dependents);
        if topo.len() < n {
            return Err(cycles(&graph, &needs));
        }
        Ok(Dag { graph, needs, dependents, topo })
    }

    pub fn len(&self) -> usize {
        self.needs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.needs.is_empty()
    }

    pub fn needs(&self, i: usize) -> &[usize] {
        &self.needs[i]
    }

    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }

    /// Topological order; among steps that are free at the same time, file order.
    pub fn topo(&self) -> &[usize] {
        &self.topo
    }

    /// Steps grouped by depth: everything in a level can run in parallel.
    pub fn levels(&self) -> Vec<Vec<usize>> {
        let mut depth = vec![0usize; self.len()];
        for &i in &self.topo {
            depth[i] = self.needs[i].iter().map(|&d| depth[d] + 1).max().unwrap_or(0);
        }
        let mut levels: Vec<Vec<usize>> = vec![Vec::new(); depth.iter().max().map_or(0, |m| m + 1)];
        for (i, d) in depth.iter().enumerate() {
            levels[*d].push(i);
        }
        levels
    }

    /// Whether `anc` must finish before `of` starts.
    pub fn is_ancestor(&self, anc: usize, of: usize) -> bool {
        if self.needs[of].contains(&anc) {
            return true;
        }
        petgraph::algo::has_path_connecting(&self.graph, NodeIndex::new(anc), NodeIndex::new(of), None) && anc != of
    }

    /// For each `(anc, of)` pair, whether `anc` must finish before `of` starts, all pairs at
    /// once: one sweep of the topological order per 64 distinct `anc`, one bit each. A search
    /// per pair made a chain of 25,000 steps that all read the first one's status quadratic.
    pub fn ancestors_among(&self, pairs: &[(usize, usize)]) -> Vec<bool> {
        let mut sources: Vec<usize> = pairs.iter().map(|&(a, _)| a).collect();
        sources.sort_unstable();
        sources.dedup();
        let mut answers = vec![false; pairs.len()];
        let mut reach = vec![0u64; self.len()];
        for chunk in sources.chunks(64) {
            self.sweep(chunk, &mut reach);
            for (answer, &(a, of)) in answers.iter_mut().zip(pairs) {
                if a != of
                    && let Ok(bit) = chunk.binary_search(&a)
                {
                    *answer = reach[of] >> bit & 1 == 1;
                }
            }
        }
        answers
    }

    /// Whether each step has at least one of `sources` among its ancestors, in one pass.
    pub fn below_any(&self, sources: &[usize]) -> Vec<bool> {
        let mut source = vec![false; self.len()];
        sources.iter().for_each(|&s| source[s] = true);
        let mut below = vec![false; self.len()];
        for &v in &self.topo {
            below[v] = self.needs[v].iter().any(|&d| below[d] || source[d]);
        }
        below
    }

    /// For each of `targets`, the `sources` among its ancestors (in the order of `sources`):
    /// a sweep of the DAG per 64 sources, as in [`Dag::ancestors_among`].
    pub fn ancestors_from(&self, sources: &[usize], targets: &[usize]) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); targets.len()];
        let mut reach = vec![0u64; self.len()];
        for chunk in sources.chunks(64) {
            self.sweep(chunk, &mut reach);
            for (found, &t) in out.iter_mut().zip(targets) {
                // A source reaches itself in `reach`; it is not its own ancestor.
                found.extend(
                    chunk.iter().enumerate().filter(|&(bit, &s)| s != t && reach[t] >> bit & 1 == 1).map(|(_, &s)| s),
                );
            }
        }
        out
    }

    /// Sets bit k of `reach[v]` when `chunk[k]` is `v` or one of its ancestors.
    fn sweep(&self, chunk: &[usize], reach: &mut [u64]) {
        reach.iter_mut().for_each(|r| *r = 0);
        for (bit, &a) in chunk.iter().enumerate() {
            reach[a] |= 1 << bit;
        }
        for &v in &self.topo {
            let mut r = reach[v];
            for &d in &self.needs[v] {
                r |= reach[d];
            }
            reach[v] = r;
        }
    }

    /// Marks `roots` and everything downstream of them.
    pub fn downstream(&self, roots: impl IntoIterator<Item = usize>) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<usize> = roots.into_iter().collect();
        while let Some(i) = stack.pop() {
            if !seen[i] {
                seen[i] = true;
                stack.extend(self.dependents[i].iter().copied());
            }
        }
        seen
    }

    /// A Mermaid flowchart; `label(i)` gives each node's text.
    pub fn mermaid(&self, ids: &[&str], label: impl Fn(usize) -> String) -> String {
        let mut out = String::from("flowchart TD\n");
        for (i, id) in ids.iter().enumerate() {
            out.push_str(&format!("  {id}[\"{}\"]\n", label(i).replace('"', "#quot;")));
        }
        for i in 0..self.len() {
            for &d in &self.needs[i] {
                out.push_str(&format!("  {} --> {}\n", ids[d], ids[i]));
            }
        }
        out
    }

    pub fn dot(&self, name: &str, ids: &[&str], label: impl Fn(usize) -> String) -> String {
        let mut out = format!("digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box];\n", name.replace('"', "\\\""));
        for (i, id) in ids.iter().enumerate() {
            out.push_str(&format!(
                "  \"{}\" [label=\"{}\"];\n",
                id,
                label(i).replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
        for i in 0..self.len() {
            for &d in &self.needs[i] {
                out.push_str(&format!("  \"{}\" -> \"{}\";\n", ids[d], ids[i]));
            }
        }
        out.push_str("}\n");
        out
    }
}

fn kahn(needs: &[Vec<usize>], dependents: &[Vec<usize>]) -> Vec<usize> {
    let mut remaining: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<Reverse<usize>> =
        remaining.iter().enumerate().filter(|(_, r)| **r == 0).map(|(i, _)| Reverse(i)).collect();
    let mut order = Vec::with_capacity(needs.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &dependents[i] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    order
}

/// One closed path per strongly connected component that is a cycle.
fn cycles(graph: &DiGraph<usize, ()>, needs: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut found = Vec::new();
    // Kosaraju's, not Tarjan's: petgraph's tarjan_scc recurses once per step on the path,
    // and a cycle through 30,000 steps overflowed the stack (exit 134); kosaraju_scc is
    // iterative. Component and visit marks are arrays, so a long cycle is walked in O(n).
    let mut component = vec![usize::MAX; needs.len()];
    let mut visited = vec![false; needs.len()];
    for (c, scc) in kosaraju_scc(graph).into_iter().enumerate() {
        let members: Vec<usize> = scc.iter().map(|n| n.index()).collect();
        let start = *members.iter().min().expect("scc is never empty");
        if members.len() == 1 && !needs[start].contains(&start) {
            continue;
        }
        for &m in &members {
            component[m] = c;
        }
        // Walk "needs" edges inside the component from the first step until we come back:
        // a -> b means a needs b, read as the order a reviewer follows the file.
        let in_scc = |i: usize| component[i] == c;
        let mut path = vec![start];
        visited[start] = true;
        let mut cur = start;
        loop {
            let next = needs[cur].iter().copied().filter(|&x| in_scc(x)).min_by_key(|&x| (x != start, x));
            match next {
                Some(x) if x == start => {
                    path.push(start);
                    break;
                }
                Some(x) if !visited[x] => {
                    visited[x] = true;
                    path.push(x);
                    cur = x;
                }
                Some(x) => {
                    // A smaller loop that does not pass through `start`: report that loop.
                    let at = path.iter().position(|&p| p == x).unwrap_or(0);
                    path = path[at..].to_vec();
                    path.push(x);
                    break;
                }
                None => break,
            }
        }
        found.push(path);
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_levels_and_cycles() {
        let dag = Dag::build(vec![vec![], vec![0], vec![0], vec![1, 2]]).unwrap();
        assert_eq!(dag.topo(), &[0, 1, 2, 3]);
        assert_eq!(dag.levels(), vec![vec![0], vec![1, 2], vec![3]]);
        assert!(dag.is_ancestor(0, 3));
        assert!(!dag.is_ancestor(1, 2));
        let cycles = Dag::build(vec![vec![2], vec![0], vec![1]]).unwrap_err();
        assert_eq!(cycles, vec![vec![0, 2, 1, 0]]);
    }

    #[test]
    fn ancestry_in_one_pass_agrees_with_a_search_per_pair() {
        // A diamond with a tail and a separate branch, then 200 chained steps (more than
        // one 64-bit chunk of sources).
        let mut needs = vec![vec![], vec![0], vec![0], vec![1, 2], vec![3], vec![]];
        for i in 6..206 {
            needs.push(vec![i - 1]);
        }
        let dag = Dag::build(needs).unwrap();
        let pairs: Vec<(usize, usize)> = (0..dag.len()).flat_map(|a| (0..dag.len()).map(move |b| (a, b))).collect();
        let fast = dag.ancestors_among(&pairs);
        for (&(a, b), got) in pairs.iter().zip(fast) {
            assert_eq!(got, dag.is_ancestor(a, b), "{a} -> {b}");
        }
        assert!(dag.ancestors_among(&[(0, 4), (5, 205), (4, 0), (1, 2), (3, 3)]) == [true, true, false, false, false]);
        // The same answers, grouped by target, and "below any of them".
        let sources: Vec<usize> = (0..dag.len()).step_by(3).collect();
        let targets: Vec<usize> = (0..dag.len()).collect();
        let below = dag.below_any(&sources);
        for (t, found) in dag.ancestors_from(&sources, &targets).into_iter().enumerate() {
            let want: Vec<usize> = sources.iter().copied().filter(|&s| dag.is_ancestor(s, t)).collect();
            assert_eq!(found, want, "ancestors of {t}");
            assert_eq!(below[t], !want.is_empty(), "below any: {t}");
        }
    }

    #[test]
    fn a_cycle_through_many_steps_is_found_without_deep_recursion() {
        // Tarjan's recursion overflowed the 8 MiB main stack at about 30,000 steps.
        let n = 200_000;
        let cycles = Dag::build((0..n).map(|i| vec![(i + 1) % n]).collect()).unwrap_err();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), n + 1);
        assert_eq!(cycles[0][..3], [0, 1, 2]);
    }
}

//! The DAG of steps: built once from `needs`, sealed, then only read. Owns cycle
//! detection (with the whole path), topological order, parallel levels, ancestry and
//! the Mermaid/DOT pictures. Knows nothing of step types.

use petgraph::algo::tarjan_scc;
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
    for scc in tarjan_scc(graph) {
        let members: Vec<usize> = scc.iter().map(|n| n.index()).collect();
        let start = *members.iter().min().expect("scc is never empty");
        if members.len() == 1 && !needs[start].contains(&start) {
            continue;
        }
        // Walk "needs" edges inside the component from the first step until we come back:
        // a -> b means a needs b, read as the order a reviewer follows the file.
        let in_scc = |i: usize| members.contains(&i);
        let mut path = vec![start];
        let mut visited = vec![start];
        let mut cur = start;
        loop {
            let next = needs[cur].iter().copied().filter(|&x| in_scc(x)).min_by_key(|&x| (x != start, x));
            match next {
                Some(x) if x == start => {
                    path.push(start);
                    break;
                }
                Some(x) if !visited.contains(&x) => {
                    visited.push(x);
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
}

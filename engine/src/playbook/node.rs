//! A YAML document as a tree of nodes that remember where they stood in the file.
//!
//! The tree is built straight from the events of granit-parser (the YAML 1.2 parser under
//! serde-saphyr): positions for every key and value come for free, and the work is a
//! third of going through serde with a span per value (measured in bench/engine.py).
//! The builder enforces the budget itself: nesting depth, node count (aliases count at
//! their expanded size, so alias bombs stop early) and one document per file. Later stages
//! deserialize typed structs from the JSON form of a subtree; when that fails, the error's
//! path leads back into this tree to the exact line and column.

use granit_parser::{Event, Parser, ScalarStyle, Span};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// A 1-based position in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u64,
    pub col: u64,
}

impl Pos {
    fn of(span: &Span) -> Self {
        // granit-parser: lines are 1-based, columns 0-based.
        Pos { line: span.start.line().max(1) as u64, col: span.start.col() as u64 + 1 }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order, each with the position of its key.
    Map(Vec<(Key, Node)>),
}

/// One segment of a path into a document (`with.headers.Authorization`, `command[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// The path of a serde_path_to_error error, as segments.
pub fn segs(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            _ => None,
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Node {
    /// The JSON form of this subtree, as the typed structs are deserialized from it.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::from(*i),
            NodeKind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            NodeKind::Str(s) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => {
                Value::Object(entries.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect())
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    pub fn entry(&self, key: &str) -> Option<(&Key, &Node)> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    pub fn index(&self, i: usize) -> Option<&Node> {
        match &self.kind {
            NodeKind::Seq(items) => items.get(i),
            _ => None,
        }
    }

    /// The deepest node along `path`, and where to point at it: the value when it is a
    /// scalar, the key when it is a map or a list (the key line reads better there).
    pub fn locate(&self, path: &[Seg]) -> (&Node, Pos) {
        let mut node = self;
        let mut pos = self.pos;
        for seg in path {
            let next = match seg {
                Seg::Index(i) => node.index(*i).map(|n| (n.pos, n)),
                Seg::Key(k) => node.entry(k).map(|(key, n)| {
                    (if matches!(n.kind, NodeKind::Map(_) | NodeKind::Seq(_)) { key.pos } else { n.pos }, n)
                }),
            };
            // A missing key (or the unknown one an error names) leaves us on its map.
            let Some((p, n)) = next else { break };
            pos = p;
            node = n;
        }
        (node, pos)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Bounds for [`parse`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_depth: usize,
    pub max_nodes: usize,
    /// Bytes of scalar text after aliases are expanded: a few aliases of one long string
    /// cost few nodes but many bytes.
    pub max_bytes: usize,
}

/// A YAML problem at a position.
#[derive(Debug, Clone)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document into a tree of positioned nodes.
pub fn parse(text: &str, limits: Limits) -> Result<Node, YamlError> {
    // The parser's own nesting limits (255) guard its scanner; ours (64) come first.
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        limits,
        nodes: 0,
        bytes: 0,
        held_nodes: 0,
        held_bytes: 0,
        anchors: HashMap::new(),
        last: Pos::default(),
    };
    loop {
        let (ev, span) = b.next()?;
        match ev {
            Event::StreamStart | Event::DocumentStart(..) => continue,
            Event::StreamEnd => return Ok(Node { pos: Pos { line: 1, col: 1 }, kind: NodeKind::Null }),
            ev => {
                let root = b.node(ev, span, 0)?;
                loop {
                    let (ev, span) = b.next()?;
                    match ev {
                        Event::DocumentEnd => continue,
                        Event::StreamEnd => return Ok(root),
                        _ => {
                            return Err(YamlError {
                                pos: Pos::of(&span),
                                message: "a playbook file holds one YAML document (found a second `---`)".into(),
                            });
                        }
                    }
                }
            }
        }
    }
}

struct Builder<'a> {
    parser: Parser<'a, granit_parser::StrInput<'a>>,
    limits: Limits,
    nodes: usize,
    bytes: usize,
    /// Nodes and scalar bytes in the copies the anchors keep (see [`Builder::hold`]).
    held_nodes: usize,
    held_bytes: usize,
    /// Anchored nodes with their size (nodes and scalar bytes in the subtree), for aliases.
    anchors: HashMap<usize, (Node, usize, usize)>,
    last: Pos,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        loop {
            match self.parser.next_event() {
                None => return Err(YamlError { pos: self.last, message: "unexpected end of input".into() }),
                Some(Err(e)) => {
                    let m = e.marker();
                    let pos = Pos { line: m.line().max(1) as u64, col: m.col() as u64 + 1 };
                    // The scanner looks ahead through flow collections (`[[[[...` could be
                    // a key) and stops at its own depth limit before we see the events.
                    let mut message = e.info();
                    if message == "recursion limit exceeded" {
                        message = format!("nesting deeper than {} levels", self.limits.max_depth);
                    }
                    return Err(YamlError { pos, message });
                }
                // Anchor names are presentation; the node events carry the ids.
                Some(Ok((Event::Anchor(..), _))) => continue,
                Some(Ok((ev, span))) => {
                    self.last = Pos::of(&span);
                    return Ok((ev, span));
                }
            }
        }
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            return Err(YamlError {
                pos,
                message: format!(
                    "the document has more than {} values (aliases count at their expanded size)",
                    self.limits.max_nodes
                ),
            });
        }
        Ok(())
    }

    fn count_bytes(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.max_bytes {
            return Err(YamlError {
                pos,
                message: format!(
                    "the document has more than {} MiB of text (aliases count at their expanded size)",
                    self.limits.max_bytes >> 20
                ),
            });
        }
        Ok(())
    }

    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<Node, YamlError> {
        let pos = Pos::of(&span);
        let (start, start_bytes) = (self.nodes, self.bytes);
        let (kind, anchor) = match ev {
            Event::Scalar(value, style, anchor, tag) => {
                self.count(1, pos)?;
                self.count_bytes(value.len(), pos)?;
                let tag = tag.map(|t| t.suffix().to_owned());
                let text = value.clone();
                let kind = scalar(value, style, tag.as_deref());
                // JSON, which the typed sections are read from, has no infinity or NaN: as
                // null they would read as "absent" (`with: 1e309` was no `with` at all).
                if let NodeKind::Float(f) = kind
                    && !f.is_finite()
                {
                    return Err(YamlError {
                        pos,
                        message: format!("`{text}` is not a finite number; quote it if it is meant as text"),
                    });
                }
                (kind, anchor)
            }
            Event::SequenceStart(_, anchor, _) => {
                self.enter(depth, pos)?;
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span, depth + 1)?);
                }
                (NodeKind::Seq(items), anchor)
            }
            Event::MappingStart(_, anchor, _) => {
                self.enter(depth, pos)?;
                let mut entries: Vec<(Key, Node)> = Vec::new();
                // Key -> line of its first use: a hash lookup keeps 150k keys linear.
                let mut seen: HashMap<String, u64> = HashMap::new();
                let mut merged = Merged::default();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key_node = self.node(ev, span, depth + 1)?;
                    let name = match key_node.kind {
                        NodeKind::Str(s) => s,
                        NodeKind::Int(i) => i.to_string(),
                        NodeKind::Bool(b) => b.to_string(),
                        NodeKind::Float(f) => f.to_string(),
                        NodeKind::Null => "null".into(),
                        NodeKind::Seq(_) | NodeKind::Map(_) => {
                            return Err(YamlError {
                                pos: key_node.pos,
                                message: "a mapping key must be a scalar, not a list or a map".into(),
                            });
                        }
                    };
                    let (ev, span) = self.next()?;
                    let value = self.node(ev, span, depth + 1)?;
                    if name == "<<" {
                        // YAML merge key: `<<: *defaults` or `<<: [*a, *b]`; explicit keys win.
                        merge_into(&mut merged, value)?;
                        continue;
                    }
                    if let Some(first) = seen.get(&name) {
                        return Err(YamlError {
                            pos: key_node.pos,
                            message: format!("duplicate key `{name}` (first at line {first})"),
                        });
                    }
                    seen.insert(name.clone(), key_node.pos.line);
                    entries.push((Key { name, pos: key_node.pos }, value));
                }
                for (k, v) in merged.entries {
                    if seen.insert(k.name.clone(), k.pos.line).is_none() {
                        entries.push((k, v));
                    }
                }
                (NodeKind::Map(entries), anchor)
            }
            Event::Alias(id) => {
                // Count the expansion before copying it: an alias bomb stops here.
                let Some(&(_, size, bytes)) = self.anchors.get(&id) else {
                    return Err(YamlError { pos, message: "alias to an unknown anchor".into() });
                };
                self.count(size, pos)?;
                self.count_bytes(bytes, pos)?;
                let kind = self.anchors[&id].0.kind.clone();
                return Ok(Node { pos, kind });
            }
            Event::UnresolvedAlias(name) => {
                return Err(YamlError { pos, message: format!("alias `*{name}` refers to no anchor") });
            }
            other => return Err(YamlError { pos, message: format!("unexpected YAML event {other:?}") }),
        };
        let node = Node { pos, kind };
        if anchor != 0 {
            let (size, bytes) = ((self.nodes - start).max(1), self.bytes - start_bytes);
            self.hold(size, bytes, pos)?;
            self.anchors.insert(anchor, (node.clone(), size, bytes));
        }
        Ok(node)
    }

    /// Each anchor keeps a copy of its value for the aliases to come, so anchors nested n
    /// deep hold n copies of the innermost value: the copies get a budget of their own
    /// (the same size as the document's), or a 4 MB string under 60 nested anchors would
    /// take 240 MB.
    fn hold(&mut self, nodes: usize, bytes: usize, pos: Pos) -> Result<(), YamlError> {
        self.held_nodes += nodes;
        self.held_bytes = self.held_bytes.saturating_add(bytes);
        if self.held_nodes > self.limits.max_nodes || self.held_bytes > self.limits.max_bytes {
            return Err(YamlError {
                pos,
                message: format!(
                    "anchored values hold more than {} values or {} MiB of text (each anchor keeps a copy, so \
                     nested anchors count once per level)",
                    self.limits.max_nodes,
                    self.limits.max_bytes >> 20
                ),
            });
        }
        Ok(())
    }

    fn enter(&mut self, depth: usize, pos: Pos) -> Result<(), YamlError> {
        if depth >= self.limits.max_depth {
            return Err(YamlError { pos, message: format!("nesting deeper than {} levels", self.limits.max_depth) });
        }
        self.count(1, pos)
    }
}

/// The entries `<<` brings into one mapping, first comer wins (YAML's merge rule), with a
/// set of their names so that merging a mapping of n keys costs n lookups, not n²/2.
#[derive(Default)]
struct Merged {
    entries: Vec<(Key, Node)>,
    names: HashSet<String>,
}

fn merge_into(merged: &mut Merged, value: Node) -> Result<(), YamlError> {
    match value.kind {
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                if merged.names.insert(k.name.clone()) {
                    merged.entries.push((k, v));
                }
            }
            Ok(())
        }
        NodeKind::Seq(items) => items.into_iter().try_for_each(|i| merge_into(merged, i)),
        _ => Err(YamlError { pos: value.pos, message: "`<<` merges a mapping or a list of mappings".into() }),
    }
}

/// The YAML 1.2 core schema for plain scalars, with two deliberate restrictions: only
/// `true`/`false` are booleans (so `no`, `n`, `on` stay text), and numbers with a leading
/// zero (`0755`, `007`) stay text.
fn scalar(value: Cow<'_, str>, style: ScalarStyle, tag: Option<&str>) -> NodeKind {
    if style != ScalarStyle::Plain || tag == Some("str") {
        return NodeKind::Str(value.into_owned());
    }
    let v = value.as_ref();
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
        "true" | "True" | "TRUE" => return NodeKind::Bool(true),
        "false" | "False" | "FALSE" => return NodeKind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return NodeKind::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return NodeKind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeKind::Float(f64::NAN),
        _ => {}
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    let first = digits.as_bytes().first().copied();
    if first.is_some_and(|c| c.is_ascii_digit() || c == b'.') {
        if let Some(hex) = v.strip_prefix("0x") {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return NodeKind::Int(i);
            }
        } else if let Some(oct) = v.strip_prefix("0o") {
            if let Ok(i) = i64::from_str_radix(oct, 8) {
                return NodeKind::Int(i);
            }
        } else if digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.") {
            return NodeKind::Str(value.into_owned());
        } else if digits.bytes().all(|c| c.is_ascii_digit()) {
            if let Ok(i) = v.parse::<i64>() {
                return NodeKind::Int(i);
            }
        } else if digits.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'))
            && digits.bytes().any(|c| c.is_ascii_digit())
            && let Ok(f) = v.parse::<f64>()
        {
            return NodeKind::Float(f);
        }
    }
    NodeKind::Str(value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_depth: 64, max_nodes: 10_000, max_bytes: 1 << 20 };

    fn kind(text: &str) -> NodeKind {
        parse(text, LIMITS).unwrap().kind
    }

    #[test]
    fn scalars_follow_the_core_schema_strictly() {
        assert!(matches!(kind("42"), NodeKind::Int(42)));
        assert!(matches!(kind("-1.5e3"), NodeKind::Float(f) if f == -1500.0));
        assert!(matches!(kind("0x1f"), NodeKind::Int(31)));
        assert!(matches!(kind("true"), NodeKind::Bool(true)));
        assert!(matches!(kind("~"), NodeKind::Null));
        for text in ["no", "n", "on", "yes", "0755", "30s", "1.2.3", "'42'", "!!str 42"] {
            assert!(matches!(kind(text), NodeKind::Str(_)), "{text} should be text");
        }
        for text in [".inf", "-.Inf", ".nan", "1e309", "x: [-1e999]"] {
            let e = parse(text, LIMITS).unwrap_err();
            assert!(e.message.contains("is not a finite number; quote it"), "{text}: {}", e.message);
        }
        assert!(matches!(kind("'.inf'"), NodeKind::Str(_)));
    }

    #[test]
    fn positions_merges_duplicates_and_budget() {
        let n = parse("a: 1\nb:\n  - x\n  - {c: 2}\n", LIMITS).unwrap();
        let (k, v) = n.entry("b").unwrap();
        assert_eq!((k.pos.line, k.pos.col), (2, 1));
        assert_eq!(v.index(1).unwrap().get("c").unwrap().pos, Pos { line: 4, col: 9 });
        let m = parse("base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\n", LIMITS).unwrap();
        let used = m.get("use").unwrap();
        assert!(matches!(used.get("y").unwrap().kind, NodeKind::Int(3)));
        assert!(matches!(used.get("x").unwrap().kind, NodeKind::Int(1)));
        let dup = parse("a: 1\na: 2\n", LIMITS).unwrap_err();
        assert_eq!((dup.pos.line, dup.message.as_str()), (2, "duplicate key `a` (first at line 1)"));
        let deep = parse(&format!("{}{}", "[".repeat(100), "]".repeat(100)), LIMITS).unwrap_err();
        assert!(deep.message.contains("nesting deeper than 64 levels"));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..6 {
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        assert!(parse(&bomb, LIMITS).unwrap_err().message.contains("more than 10000 values"));
        // Few nodes, many bytes: one 20 KB string aliased 20^4 times.
        let mut wide = format!("s: &s \"{}\"\n", "x".repeat(20_000));
        wide.push_str("l1: &l1 [*s, *s, *s, *s, *s, *s, *s, *s, *s, *s, *s, *s, *s, *s, *s, *s, *s, *s, *s, *s]\n");
        for i in 2..5 {
            wide.push_str(&format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 20].join(", ")));
        }
        let err = parse(&wide, LIMITS).unwrap_err();
        assert_eq!(err.message, "the document has more than 1 MiB of text (aliases count at their expanded size)");
        assert_eq!(err.pos.line, 3, "l1 is 400 KB, l2 crosses 1 MiB");
        assert!(parse("a: 1\n---\nb: 2\n", LIMITS).unwrap_err().message.contains("one YAML document"));
    }

    #[test]
    fn merge_keys_follow_yaml_precedence() {
        let m = parse("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc: {<<: [*a, *b], z: 3}\n", LIMITS).unwrap();
        let c = m.get("c").unwrap();
        let keys: Vec<&str> = match &c.kind {
            NodeKind::Map(e) => e.iter().map(|(k, _)| k.name.as_str()).collect(),
            _ => panic!("not a map"),
        };
        // Explicit keys first and winning; among merged mappings the first one wins.
        assert_eq!(keys, ["z", "x", "y"]);
        assert!(matches!(c.get("y").unwrap().kind, NodeKind::Int(1)));
        assert!(matches!(c.get("z").unwrap().kind, NodeKind::Int(3)));
        let bad = parse("a: {<<: 5}\n", LIMITS).unwrap_err();
        assert_eq!(
            (bad.pos.line, bad.pos.col, bad.message.as_str()),
            (1, 9, "`<<` merges a mapping or a list of mappings")
        );
    }

    #[test]
    fn merging_a_huge_mapping_is_linear() {
        // 100,000 keys merged into a mapping: the old first-comer check compared each key
        // with every key before it (5·10⁹ comparisons). Time is measured in bench/hostile.py.
        let n = 100_000;
        let mut text = String::from("base: &base\n");
        for i in 0..n {
            text.push_str(&format!("  k{i}: {i}\n"));
        }
        text.push_str("use:\n  <<: *base\n  k7: own\n");
        let limits = Limits { max_depth: 64, max_nodes: 1_000_000, max_bytes: 32 << 20 };
        let m = parse(&text, limits).unwrap();
        let used = m.get("use").unwrap();
        let NodeKind::Map(entries) = &used.kind else { panic!("not a map") };
        assert_eq!(entries.len(), n);
        assert_eq!(used.get("k7").unwrap().as_str(), Some("own"));
        assert!(matches!(used.get(&format!("k{}", n - 1)).unwrap().kind, NodeKind::Int(i) if i == n as i64 - 1));
    }

    #[test]
    fn nested_anchors_count_the_copies_they_keep() {
        // Each anchor keeps a copy of its value for later aliases: 60 anchors around one
        // 100 KB string would hold 6 MB from a 100 KB file.
        let mut text = String::from("x: ");
        for d in 0..60 {
            text.push_str(&format!("&a{d} {{k: "));
        }
        text.push_str(&format!("\"{}\"{}\n", "s".repeat(100_000), "}".repeat(60)));
        let err = parse(&text, LIMITS).unwrap_err();
        assert_eq!(
            err.message,
            "anchored values hold more than 10000 values or 1 MiB of text (each anchor keeps a copy, so nested \
             anchors count once per level)"
        );
        // The 11th level from the inside (1.1 MB held) is where it stops: the `{` of a49,
        // after `x: `, ten `&aN {k: ` and 39 `&aNN {k: `, then `&a49 `.
        assert_eq!((err.pos.line, err.pos.col), (1, 3 + 10 * 8 + 39 * 9 + 5 + 1));
        // Without aliases, a few anchors are nothing special.
        assert!(parse("a: &a {k: &b [1, 2]}\n", LIMITS).is_ok());
    }
}

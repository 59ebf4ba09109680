//! Problems found in a playbook, each tied to a file position and, where we can, a hint.

use super::node::Pos;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u64,
    pub col: u64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic { file: file.to_owned(), line: pos.line, col: pos.col, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl Diagnostic {
    /// The problem as rustc shows one: the source line with a caret under the token,
    /// rendered by annotate-snippets (rustc's own renderer). `source` is the file's text;
    /// a position outside it (an I/O error, a file changed since) falls back to
    /// [`Display`](fmt::Display)'s one line.
    pub fn snippet(&self, source: &str, color: bool) -> String {
        use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
        let Some(span) = token_span(source, self.line, self.col) else { return self.to_string() };
        let mut group = Level::ERROR
            .primary_title(self.message.as_str())
            .element(Snippet::source(source).path(self.file.as_str()).annotation(AnnotationKind::Primary.span(span)));
        if let Some(hint) = &self.hint {
            group = group.element(Level::HELP.message(hint.as_str()));
        }
        let renderer = if color { Renderer::styled() } else { Renderer::plain() };
        renderer.render(&[group])
    }
}

/// The byte range of the token at 1-based `line`:`col` (col counts characters): a quoted
/// scalar to its closing quote, a plain one to the next space, `,`, `]`, `}`, `#` or `: `.
fn token_span(source: &str, line: u64, col: u64) -> Option<std::ops::Range<usize>> {
    if line == 0 || col == 0 {
        return None;
    }
    let mut start_of_line = 0;
    for _ in 1..line {
        start_of_line += source[start_of_line..].find('\n')? + 1;
    }
    let text = &source[start_of_line..];
    let text = &text[..text.find('\n').unwrap_or(text.len())];
    let start = match text.char_indices().nth(col as usize - 1) {
        Some((i, _)) => i,
        // Just past the end of the line (a missing value): point there.
        None if text.chars().count() + 1 == col as usize => text.len(),
        None => return None,
    };
    let rest = &text[start..];
    let len = match rest.chars().next() {
        None => 0,
        Some(q @ ('"' | '\'')) => rest[1..].find(q).map_or(rest.len(), |i| i + 2),
        Some(_) => rest
            .char_indices()
            .find(|&(i, c)| {
                i > 0 && (c.is_whitespace() || matches!(c, ',' | ']' | '}' | '#') || rest[i..].starts_with(": "))
            })
            .map_or(rest.len(), |(i, _)| i),
    };
    let len = if rest.ends_with(':') && len == rest.len() && len > 1 { len - 1 } else { len };
    Some(start_of_line + start..start_of_line + start + len)
}

/// Collects problems for one file; sorted by position when finished.
#[derive(Debug)]
pub struct Diagnostics {
    file: String,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: &str) -> Self {
        Diagnostics { file: file.to_owned(), items: Vec::new() }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.items.push(Diagnostic::new(&self.file, pos, message));
        self.items.last_mut().expect("just pushed")
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| (a.line, a.col, &a.message).cmp(&(b.line, b.col, &b.message)));
        self.items.dedup();
        self.items
    }
}

/// Names longer than this get no suggestion: ids are short, and the edit distance costs
/// the product of the two lengths.
const DYM_MAX_LEN: usize = 64;

/// Edit-distance cells a process may spend on suggestions in all: a hostile file with
/// thousands of wrong names against thousands of ids gets plain errors once it is spent,
/// instead of a quadratic wait (well under a second of work). OSA distance (adjacent
/// transpositions) is enough for typos and needs no per-call hash map.
static DYM_BUDGET: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(20_000_000);

/// Candidates whose edit distance is computed for one name, at most.
const DYM_MAX_COMPARED: usize = 16;

/// Best "did you mean" candidate for a misspelt name.
pub fn did_you_mean<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    use std::sync::atomic::Ordering;
    if wrong.len() > DYM_MAX_LEN {
        return None;
    }
    let threshold = |c: &str| 2.max(c.len() / 3);
    // The distance is at least the length difference: skip what cannot pass the bar.
    let mut plausible: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|c| c.len() <= DYM_MAX_LEN && c.len().abs_diff(wrong.len()) <= threshold(c))
        .enumerate()
        .collect();
    // Thousands of ids of the same length all pass that bar, and one name compared with all
    // of them would spend the budget of the whole file: compare only those sharing the
    // longest start or end with it (a typo leaves one or the other), a linear pre-pass.
    if plausible.len() > DYM_MAX_COMPARED {
        let shared = |c: &str| {
            let (a, b) = (wrong.as_bytes(), c.as_bytes());
            let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            let tail = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
            head.max(tail)
        };
        plausible.select_nth_unstable_by_key(DYM_MAX_COMPARED - 1, |(i, c)| (std::cmp::Reverse(shared(c)), *i));
        plausible.truncate(DYM_MAX_COMPARED);
        plausible.sort_unstable();
    }
    plausible
        .into_iter()
        .map(|(_, c)| c)
        .take_while(|c| DYM_BUDGET.fetch_sub((c.len() * wrong.len()).max(1) as i64, Ordering::Relaxed) > 0)
        .map(|c| (strsim::osa_distance(wrong, c), c))
        .filter(|(d, c)| *d <= threshold(c) && *d < c.len().max(wrong.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod dym_tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_names_only_and_skips_long_ones() {
        assert_eq!(did_you_mean("restor_db", ["restore_db", "notify", "restore_dbs_all"]), Some("restore_db"));
        assert_eq!(did_you_mean("x", ["restore_db"]), None);
        let long = "a".repeat(65);
        assert_eq!(did_you_mean(&long, [long.as_str()]), None);
        // A candidate far longer than the name is not compared (and could not pass).
        assert_eq!(did_you_mean("abc", ["abcdefghijkl"]), None);
        // Among thousands of names of the same length, the one a typo came from is found.
        let ids: Vec<String> = (0..3000).map(|i| format!("step_{i:04}_restore_the_orders_table")).collect();
        let got = did_you_mean("step_2999_restore_the_ordres_table", ids.iter().map(String::as_str));
        assert_eq!(got, Some("step_2999_restore_the_orders_table"));
        let got = did_you_mean("stpe_1234_restore_the_orders_table", ids.iter().map(String::as_str));
        assert_eq!(got, Some("step_1234_restore_the_orders_table"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_puts_a_caret_under_the_token() {
        let src = "steps:\n  - id: a\n    type: shel\n";
        let d = Diagnostic::new("p.yaml", Pos { line: 3, col: 11 }, "unknown step type `shel`")
            .with_hint("known types: shell, sql");
        assert_eq!(
            d.snippet(src, false),
            "error: unknown step type `shel`\n --> p.yaml:3:11\n  |\n3 |     type: shel\n  |           ^^^^\n  |\n  = help: known types: shell, sql"
        );
        // A key ending in `:` is underlined without the colon; quoted text to its quote.
        assert_eq!(token_span("  need: [b]\n", 1, 3), Some(2..6));
        assert_eq!(token_span("a: \"x y\" # c\n", 1, 4), Some(3..8));
        assert_eq!(token_span("a:\n", 1, 3), Some(2..2));
        // Out of the file: the one-line form.
        let far = Diagnostic::new("p.yaml", Pos { line: 9, col: 1 }, "m");
        assert_eq!(far.snippet(src, false), "p.yaml:9:1: m");
    }
}

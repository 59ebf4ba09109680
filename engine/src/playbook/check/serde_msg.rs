//! serde's error messages in an SRE's words, pointing at the right key or value.

use crate::playbook::diag::did_you_mean;
use crate::playbook::node::{Node, NodeKind, Pos, Seg};

/// A value deserialized from `node`, or its problem reported at the exact key or value it
/// is about. The one place playbooks and drill suites turn a serde error into a diagnostic.
pub(crate) fn de_node<T: serde::de::DeserializeOwned>(
    diags: &mut crate::playbook::diag::Diagnostics,
    node: &Node,
    what: &str,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(node.to_json()) {
        Ok(v) => Some(v),
        Err(err) => {
            let path = crate::playbook::node::segs(err.path());
            let message = err.into_inner().to_string();
            let (pos, message, hint) = describe_at(node, path, &message, what, "key", "allowed keys");
            diags.error(pos, message).hint = hint;
            None
        }
    }
}

/// Where an error about `path` (under `node`) points, and how it reads. An unknown-field
/// error names the stray key: it points at that key and suggests the closest allowed one.
pub(crate) fn describe_at(
    node: &Node,
    mut path: Vec<Seg>,
    message: &str,
    what: &str,
    noun: &str,
    allowed: &str,
) -> (Pos, String, Option<String>) {
    let Some((field, expected)) = unknown_field(message) else {
        let (_, pos) = node.locate(&path);
        let at = if path.is_empty() { String::new() } else { format!("`{}`: ", path_text(&path)) };
        // An enum value: suggest the closest allowed one, as for keys.
        if let Some((value, allowed)) = unknown_variant(message) {
            // Short names (`int`, `bool`) are too far by edit distance from a longer
            // spelling (`integr`, `boolean`): a name the value starts with also counts.
            let close = did_you_mean(&value, allowed.iter().map(String::as_str)).or_else(|| {
                allowed.iter().map(String::as_str).find(|a| a.len() >= 3 && value.to_ascii_lowercase().starts_with(a))
            });
            let message = match close {
                Some(s) => format!("{what}{at}unknown value `{value}` (did you mean `{s}`?)"),
                None => format!("{what}{at}unknown value `{value}`"),
            };
            return (pos, message, Some(format!("allowed values: {}", allowed.join(", "))));
        }
        return (pos, format!("{what}{at}{}", tidy_serde(message)), None);
    };
    // serde_path_to_error ends the path with the stray key itself.
    if path.last() == Some(&Seg::Key(field.clone())) {
        path.pop();
    }
    let (map, mut pos) = node.locate(&path);
    if let Some((k, _)) = map.entry(&field) {
        pos = k.pos;
    }
    let at = if path.is_empty() { String::new() } else { format!("`{}`: ", path_text(&path)) };
    let message = match did_you_mean(&field, expected.iter().map(String::as_str)) {
        Some(s) => format!("{what}{at}unknown {noun} `{field}` (did you mean `{s}`?)"),
        None => format!("{what}{at}unknown {noun} `{field}`"),
    };
    (pos, message, Some(format!("{allowed}: {}", expected.join(", "))))
}

fn path_text(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

pub(super) fn scalar_text(n: &Node) -> String {
    match &n.kind {
        NodeKind::Str(s) => s.clone(),
        NodeKind::Int(i) => i.to_string(),
        NodeKind::Float(f) => f.to_string(),
        NodeKind::Bool(b) => b.to_string(),
        NodeKind::Null => String::new(),
        NodeKind::Seq(_) | NodeKind::Map(_) => n.to_json().to_string(),
    }
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`").
fn unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let field = rest[..end].to_owned();
    let expected = rest[end..].split('`').skip(2).step_by(2).map(str::to_owned).collect();
    Some((field, expected))
}

/// Parses serde's "unknown variant `x`, expected one of `a`, `b`" (or "expected `a`").
fn unknown_variant(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown variant `")?;
    let end = rest.find('`')?;
    let value = rest[..end].to_owned();
    let expected = rest[end..].split('`').skip(2).step_by(2).map(str::to_owned).collect();
    Some((value, expected))
}

/// serde's wording in words an SRE uses: no Rust type names (`u32`, `WhenValue`).
pub(super) fn tidy_serde(msg: &str) -> String {
    // Untagged enums say only "did not match any variant of untagged enum X": say what fits.
    const UNTAGGED: &[(&str, &str)] = &[
        ("RpoValue", "expected a duration such as `15m` or a text such as `point-in-time`"),
        ("StatusSet", "expected an HTTP status code such as `200` or a list of them such as `[200, 204]`"),
        ("WhenValue", "expected an expression or true/false"),
    ];
    if let Some(name) = msg.strip_prefix("data did not match any variant of untagged enum ") {
        let name = name.split_whitespace().next().unwrap_or_default();
        if let Some((_, say)) = UNTAGGED.iter().find(|(n, _)| *n == name) {
            return (*say).to_owned();
        }
        return "the value has none of the accepted shapes".to_owned();
    }
    let mut out = msg.replace("invalid type: ", "wrong type: ").replace("invalid value: ", "wrong value: ");
    for (rust, words) in [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping"),
        ("expected a boolean", "expected true or false"),
        ("integer `", "number `"),
        ("floating point `", "number `"),
        ("sequence,", "list,"),
        (", expected", "; expected"),
        ("expected string or map", "expected one of the allowed values"),
    ] {
        out = out.replace(rust, words);
    }
    // "expected struct RawRetry" / "expected enum Method": the Rust name means nothing here.
    for (rust, words) in
        [("expected struct ", "expected a mapping"), ("expected enum ", "expected one of the allowed values")]
    {
        if let Some(at) = out.find(rust) {
            let end = out[at + rust.len()..]
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .map_or(out.len(), |e| at + rust.len() + e);
            out.replace_range(at..end, words);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_parse() {
        let (f, e) = unknown_field("unknown field `need`, expected one of `id`, `needs`").unwrap();
        assert_eq!(f, "need");
        assert_eq!(e, vec!["id", "needs"]);
    }
}

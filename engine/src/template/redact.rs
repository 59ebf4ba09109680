//! Redaction: the values of secrets replaced by `***` in everything written or printed.
//!
//! One [`Redactor`] per process, known once the run starts (secret inputs, `secrets:` env
//! vars) and installed with [`install`]. Every record that leaves the engine passes it at
//! the boundary where it leaves: the dispatcher's event emit (journal, reporter, state fold),
//! the stores' write paths (journal line, snapshot, inputs, team-store rows), captured
//! output before it is cut, the approval prompt and the CLI's error printer. Records are
//! redacted as serialized values ([`Redactor::redact_record`]): every string and every key
//! is walked, so a field added later cannot escape by not being on a list.
//!
//! A secret is matched in the forms it takes on its way out, not just verbatim:
//! - any letter case (templates' `upper`, `lower`, `title`, `capitalize`);
//! - each character either as itself, percent-encoded (`%2F`/`%2f`, every encode set at
//!   once: minijinja's `urlencode`, reqwest's URL display, form `+` for a space), JSON- or
//!   HTML-escaped (`\"`, `\n`, `\u00XX`, `&lt;`), mixed freely;
//! - each line of a multi-line value (a PEM key leaks line by line through a stderr tail);
//! - base64 (standard and URL-safe) at any of the three byte offsets it can sit at inside
//!   a longer encoded text (`user:password` in basic auth); the two or three characters
//!   at each end of such a run that also carry neighbouring bytes stay;
//! - non-string secrets by their text (`12345`, compact JSON of a list or map) and by every
//!   string and number leaf.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use regex::{Regex, RegexBuilder};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::{Arc, RwLock};

pub const MASK: &str = "***";

/// Secret values below this length are not masked: masking every `a` or `1` would make
/// output unreadable and would itself reveal the secret. Such values are too weak to be
/// secrets; `exec` warns about them. Lines of a multi-line secret use the same threshold.
pub const MIN_SECRET_LEN: usize = 4;

/// A base64 run shorter than this is too likely to occur by chance in ordinary text.
const MIN_BASE64_LEN: usize = 6;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Texts matched with every derived form (case, escapes, percent-encoding).
    texts: Vec<String>,
    /// Base64 runs, matched exactly (base64 is case-sensitive).
    base64: Vec<String>,
    matcher: Option<Regex>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret string. Returns false when it is too short to be masked.
    pub fn add(&mut self, value: &str) -> bool {
        let ok = self.add_text(value);
        self.build();
        ok
    }

    /// Adds a secret of any type: a string, a number by its text, a list or map by its
    /// compact JSON and every leaf. Returns false when the value or a leaf of it is too
    /// short to be masked (the caller warns).
    pub fn add_value(&mut self, value: &Value) -> bool {
        let ok = self.add_leaves(value);
        if let Value::Array(_) | Value::Object(_) = value {
            self.add_text(&value.to_string());
            if let Ok(pretty) = serde_json::to_string_pretty(value) {
                self.add_text(&pretty);
            }
        }
        self.build();
        ok
    }

    fn add_leaves(&mut self, value: &Value) -> bool {
        match value {
            Value::String(s) => s.is_empty() || self.add_text(s),
            Value::Number(n) => self.add_text(&n.to_string()),
            Value::Bool(_) | Value::Null => true,
            // Every leaf is added even after a short one: no short-circuit.
            Value::Array(items) => items.iter().filter(|i| !self.add_leaves(i)).count() == 0,
            Value::Object(map) => map.values().filter(|i| !self.add_leaves(i)).count() == 0,
        }
    }

    fn add_text(&mut self, value: &str) -> bool {
        if value.len() < MIN_SECRET_LEN {
            return false;
        }
        push_unique(&mut self.texts, value);
        if value.contains('\n') {
            for line in value.lines().map(str::trim).filter(|l| l.len() >= MIN_SECRET_LEN) {
                push_unique(&mut self.texts, line);
            }
        }
        for b in base64_forms(value.as_bytes()) {
            push_unique(&mut self.base64, &b);
        }
        true
    }

    /// One regex for every secret and form: linear in the text, whatever the number of secrets.
    fn build(&mut self) {
        if self.texts.is_empty() {
            self.matcher = None;
            return;
        }
        // Longest first: at one position the first alternative that matches wins, so a
        // secret that contains another (or a PEM and its lines) is masked whole.
        self.texts.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.base64.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut pattern = String::from("(?i:");
        for (i, t) in self.texts.iter().enumerate() {
            if i > 0 {
                pattern.push('|');
            }
            t.chars().for_each(|c| char_pattern(c, &mut pattern));
        }
        pattern.push(')');
        if !self.base64.is_empty() {
            pattern.push_str("|(?-i:");
            pattern.push_str(&self.base64.iter().map(|b| regex::escape(b)).collect::<Vec<_>>().join("|"));
            pattern.push(')');
        }
        // The pattern is built from escaped pieces; only its size could make it fail, and the
        // limits are raised far beyond any real set of secrets (a 4 KiB key is ~1 MiB).
        self.matcher = RegexBuilder::new(&pattern)
            .size_limit(512 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .map_err(|e| eprintln!("error: cannot build the secret matcher: {e}"))
            .ok();
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.matcher {
            Some(m) => m.replace_all(text, MASK),
            None => Cow::Borrowed(text),
        }
    }

    /// Redacts every string, every key and every number (by its text) of a JSON value. A
    /// number that matches becomes the string `***`.
    pub fn redact_value(&self, v: &mut Value) {
        self.walk(v, true);
    }

    fn walk(&self, v: &mut Value, numbers: bool) {
        if self.matcher.is_none() {
            return;
        }
        match v {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            Value::Number(n) if numbers => {
                if let Cow::Owned(r) = self.redact(&n.to_string()) {
                    *v = Value::String(r);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.walk(i, numbers)),
            Value::Object(map) => {
                if map.keys().any(|k| matches!(self.redact(k), Cow::Owned(_))) {
                    let old = std::mem::take(map);
                    *map = old.into_iter().map(|(k, v)| (self.redact(&k).into_owned(), v)).collect();
                }
                map.values_mut().for_each(|i| self.walk(i, numbers));
            }
            _ => {}
        }
    }

    /// Redacts a whole record through its serialized form: every string and key of every
    /// field, present or added later. Where a masked leaf would make the record unreadable
    /// (an enum tag such as `succeeded`, or a counter such as `seq`, that equals a weak
    /// secret), that one leaf keeps the engine's own word; every other leaf is masked. A
    /// number that matches is masked wherever the record can hold a string (outputs).
    pub fn redact_record<T: Serialize + DeserializeOwned>(&self, record: T) -> T {
        if self.matcher.is_none() {
            return record;
        }
        let Ok(original) = serde_json::to_value(&record) else { return record };
        let mut v = original.clone();
        self.walk(&mut v, false);
        let mut numbers = Vec::new();
        self.matching_leaves(&v, &mut Vec::new(), &mut numbers, false);
        if v == original && numbers.is_empty() {
            return record;
        }
        match serde_json::from_value::<T>(v.clone()) {
            Ok(redacted) if numbers.is_empty() => return redacted,
            Ok(_) => {}
            Err(_) => {
                // Leaf by leaf, each change checked: slower, and only for such weak secrets.
                v = original.clone();
                let mut strings = Vec::new();
                self.matching_leaves(&v, &mut Vec::new(), &mut strings, true);
                for path in strings {
                    self.try_mask::<T>(&mut v, &path);
                }
            }
        }
        for path in numbers {
            self.try_mask::<T>(&mut v, &path);
        }
        if v == original {
            return record;
        }
        // Every change above was checked to read back.
        serde_json::from_value(v).unwrap_or(record)
    }

    /// Masks one leaf, unless the record could not be read back with it masked.
    fn try_mask<T: DeserializeOwned>(&self, v: &mut Value, path: &[PathPart]) {
        let Some(slot) = pointer_mut(v, path) else { return };
        let old = slot.clone();
        let text = match &old {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return,
        };
        *slot = Value::String(self.redact(&text).into_owned());
        if serde_json::from_value::<T>(v.clone()).is_err()
            && let Some(slot) = pointer_mut(v, path)
        {
            *slot = old;
        }
    }

    /// Paths of the leaves that hold a secret: strings (`strings`) or numbers.
    fn matching_leaves(&self, v: &Value, at: &mut Vec<PathPart>, out: &mut Vec<Vec<PathPart>>, strings: bool) {
        match v {
            Value::Number(n) if !strings => {
                if matches!(self.redact(&n.to_string()), Cow::Owned(_)) {
                    out.push(at.clone());
                }
            }
            Value::String(s) if strings => {
                if matches!(self.redact(s), Cow::Owned(_)) {
                    out.push(at.clone());
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    at.push(PathPart::Index(i));
                    self.matching_leaves(item, at, out, strings);
                    at.pop();
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    at.push(PathPart::Key(k.clone()));
                    self.matching_leaves(item, at, out, strings);
                    at.pop();
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone)]
enum PathPart {
    Key(String),
    Index(usize),
}

fn pointer_mut<'a>(v: &'a mut Value, path: &[PathPart]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, part| match part {
        PathPart::Key(k) => v.get_mut(k.as_str()),
        PathPart::Index(i) => v.get_mut(*i),
    })
}

fn push_unique(list: &mut Vec<String>, s: &str) {
    if !list.iter().any(|x| x == s) {
        list.push(s.to_owned());
    }
}

/// A regex piece matching one character of a secret in any of the ways it is written out.
fn char_pattern(c: char, out: &mut String) {
    let mut buf = [0u8; 4];
    let text = c.encode_utf8(&mut buf);
    // Letters and digits are written as themselves by every encoder (percent-encoding,
    // JSON, HTML); one alternative keeps the matcher small for long keys and tokens.
    if c.is_ascii_alphanumeric() {
        out.push(c);
        return;
    }
    let mut alts = vec![regex::escape(text)];
    alts.push(text.bytes().map(|b| format!("%{b:02X}")).collect());
    if (c as u32) < 0x1_0000 {
        alts.push(format!(r"\\u{:04X}", c as u32));
    }
    let extra: &[&str] = match c {
        ' ' => &[r"\+"],
        '"' => &[r#"\\""#, "&quot;", "&#34;", "&#x22;"],
        '\'' => &["&#39;", "&#x27;", r"\\'"],
        '\\' => &[r"\\\\"],
        '/' => &[r"\\/", "&#x2F;", "&#47;"],
        '\n' => &[r"\\n"],
        '\r' => &[r"\\r"],
        '\t' => &[r"\\t"],
        '<' => &["&lt;", "&#60;"],
        '>' => &["&gt;", "&#62;"],
        '&' => &["&amp;", "&#38;"],
        _ => &[],
    };
    alts.extend(extra.iter().map(|s| (*s).to_owned()));
    out.push_str("(?:");
    out.push_str(&alts.join("|"));
    out.push(')');
}

/// The base64 runs a secret leaves in an encoded text: its own encoding, and for each of
/// the three offsets it can start at inside a longer input, the characters that depend on
/// its bytes alone.
fn base64_forms(secret: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for (padded, bare) in [(&STANDARD, &STANDARD_NO_PAD), (&URL_SAFE, &URL_SAFE_NO_PAD)] {
        out.push(padded.encode(secret));
        for offset in 0..3usize {
            let mut input = vec![0u8; offset];
            input.extend_from_slice(secret);
            let enc = bare.encode(&input);
            // Characters carrying bits of the `offset` leading bytes, and a last partial
            // character carrying bits of whatever follows, are not the secret's own.
            let skip = [0, 2, 3][offset];
            let cut = usize::from(input.len() % 3 != 0);
            if enc.len() > skip + cut {
                let core = &enc[skip..enc.len() - cut];
                if core.len() >= MIN_BASE64_LEN {
                    out.push(core.to_owned());
                }
            }
        }
    }
    out
}

static GLOBAL: RwLock<Option<Arc<Redactor>>> = RwLock::new(None);

/// Makes `r` the redactor of this process: every boundary uses it from now on.
pub fn install(r: Arc<Redactor>) {
    *GLOBAL.write().unwrap_or_else(|e| e.into_inner()) = Some(r);
}

/// The redactor of this process (empty before a run's secrets are known).
pub fn global() -> Arc<Redactor> {
    GLOBAL.read().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()
}

/// Redacts a text with the process's redactor.
pub fn text(s: &str) -> String {
    global().redact(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(secrets: &[&str]) -> Redactor {
        let mut r = Redactor::new();
        for s in secrets {
            r.add(s);
        }
        r
    }

    #[test]
    fn masks_longest_first_and_skips_short_values() {
        let mut r = Redactor::new();
        assert!(r.add("hunter2"));
        assert!(r.add("hunter2-extended"));
        assert!(!r.add("ab"));
        assert_eq!(r.redact("x hunter2-extended y hunter2"), "x *** y ***");
        let mut v = json!({"a": ["pw=hunter2"], "b": 3});
        r.redact_value(&mut v);
        assert_eq!(v, json!({"a": ["pw=***"], "b": 3}));
    }

    #[test]
    fn masks_encoded_escaped_and_case_variants() {
        let secret = r#"p@ss/w!rd "q" <x> #h sp%ce"#;
        let r = with(&[secret]);
        let forms = [
            secret.to_owned(),
            secret.to_uppercase(),
            secret.to_lowercase(),
            // minijinja urlencode (upper hex) and a lower-hex encoder
            "p%40ss/w%21rd%20%22q%22%20%3Cx%3E%20%23h%20sp%25ce".to_owned(),
            "p%40ss%2fw%21rd+%22q%22+%3cx%3e+%23h+sp%25ce".to_owned(),
            // reqwest's URL display: only part of the set encoded
            "p@ss/w!rd%20%22q%22%20%3Cx%3E%20%23h%20sp%ce".to_owned(),
            serde_json::to_string(secret).unwrap().trim_matches('"').to_owned(),
            "p@ss/w!rd &quot;q&quot; &lt;x&gt; #h sp%ce".to_owned(),
        ];
        for f in forms {
            let out = r.redact(&format!("before {f} after")).into_owned();
            assert_eq!(out, "before *** after", "form {f}");
        }
    }

    #[test]
    fn masks_each_line_of_a_multi_line_secret_and_base64() {
        let pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASCBKcwggSjAgEAAoIB\n-----END KEY-----";
        let r = with(&[pem, "s3cr3t-pass"]);
        assert_eq!(r.redact("error: AQEFAASCBKcwggSjAgEAAoIB\n"), "error: ***\n");
        assert!(!r.redact(&format!("{pem:?}")).contains("MIIE"));
        for prefix in ["", "u:", "us:", "use:"] {
            let enc = STANDARD.encode(format!("{prefix}s3cr3t-pass"));
            let out = r.redact(&format!("Basic {enc}")).into_owned();
            assert!(out.contains(MASK), "{prefix}: {out}");
            assert!(out.len() < enc.len(), "{prefix}: {out}");
        }
    }

    #[test]
    fn non_string_secrets_are_masked_by_text_and_leaves() {
        let mut r = Redactor::new();
        assert!(r.add_value(&json!(48213957)));
        assert!(r.add_value(&json!({"user": "admin-x", "token": "tok-123456"})));
        let mut v = json!({"n": 48213957, "s": "pin 48213957", "m": {"token": "tok-123456"}, "seq": 3});
        r.redact_value(&mut v);
        assert_eq!(v, json!({"n": "***", "s": "pin ***", "m": {"token": "***"}, "seq": 3}));
        assert!(!r.add_value(&json!({"a": "ab"})), "a short leaf is reported");
    }

    #[test]
    fn records_keep_their_typed_numbers() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Rec {
            seq: u64,
            text: String,
            outputs: Value,
        }
        let mut r = Redactor::new();
        r.add_value(&json!(1500));
        let out = r.redact_record(Rec { seq: 1500, text: "delay 1500".into(), outputs: json!({"pin": 1500, "n": 2}) });
        assert_eq!(out, Rec { seq: 1500, text: "delay ***".into(), outputs: json!({"pin": "***", "n": 2}) });
    }

    #[test]
    fn a_weak_secret_equal_to_an_enum_tag_is_masked_everywhere_else() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        #[serde(rename_all = "snake_case")]
        enum Status {
            Succeeded,
        }
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Rec {
            status: Status,
            text: String,
            outputs: Value,
        }
        let r = with(&["succeeded"]);
        let rec = Rec { status: Status::Succeeded, text: "it succeeded".into(), outputs: json!(["Succeeded", 1]) };
        let out = r.redact_record(rec);
        assert_eq!(out, Rec { status: Status::Succeeded, text: "it ***".into(), outputs: json!(["***", 1]) });
    }
}

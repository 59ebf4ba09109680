//! Redaction: the values of secrets replaced by `***` in everything written or printed.

use serde_json::Value;
use std::borrow::Cow;

pub const MASK: &str = "***";

/// Secret values below this length are not masked: masking every `a` or `1` would make
/// output unreadable and would itself reveal the secret. Such values are too weak to be
/// secrets; `exec` warns about them.
pub const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret value. Returns false when it is too short to be masked.
    pub fn add(&mut self, value: &str) -> bool {
        if value.len() < MIN_SECRET_LEN {
            return false;
        }
        if !self.secrets.iter().any(|s| s == value) {
            self.secrets.push(value.to_owned());
            // Longest first, so a secret that contains another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), MASK));
            }
        }
        out
    }

    pub fn redact_value(&self, v: &mut Value) {
        if self.secrets.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact_value(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.redact_value(i)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_skips_short_values() {
        let mut r = Redactor::new();
        assert!(r.add("hunter2"));
        assert!(r.add("hunter2-extended"));
        assert!(!r.add("ab"));
        assert_eq!(r.redact("x hunter2-extended y hunter2"), "x *** y ***");
        let mut v = serde_json::json!({"a": ["pw=hunter2"], "b": 3});
        r.redact_value(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["pw=***"], "b": 3}));
    }
}

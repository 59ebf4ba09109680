//! Pieces shared by step types.

use std::time::Duration;

/// Captured output beyond this is cut (and says so): a runaway command must not eat memory.
/// It bounds what a capture ever holds, not only what it keeps at the end.
pub const MAX_CAPTURE: usize = 4 * 1024 * 1024;

/// Bytes kept past each side of the cut so a redactor sees a whole secret that straddles it
/// before the cut drops the part outside the kept window (see [`Captured::text_with`]).
pub const CUT_OVERLAP: usize = 4 * 1024;

/// A streaming capture: keeps the first and the last `cap / 2` bytes (plus [`CUT_OVERLAP`])
/// and only counts what lies between, so memory stays bounded whatever the producer writes.
pub struct Capture {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl Capture {
    pub fn new(cap: usize) -> Self {
        let head_cap = cap / 2;
        Capture {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            head_cap,
            tail_cap: cap - head_cap,
            total: 0,
        }
    }

    /// Bytes seen so far, kept or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn push(&mut self, mut chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let head_room = (self.head_cap + CUT_OVERLAP).saturating_sub(self.head.len());
        let n = head_room.min(chunk.len());
        self.head.extend_from_slice(&chunk[..n]);
        chunk = &chunk[n..];
        if chunk.is_empty() {
            return;
        }
        let keep = self.tail_cap + CUT_OVERLAP;
        if chunk.len() >= keep {
            self.tail.clear();
            chunk = &chunk[chunk.len() - keep..];
        }
        self.tail.extend(chunk);
        let excess = self.tail.len().saturating_sub(keep);
        self.tail.drain(..excess);
    }

    pub fn finish(self) -> Captured {
        let mut head = self.head;
        let mut tail: Vec<u8> = self.tail.into();
        let limit = (self.head_cap + self.tail_cap) as u64;
        if self.total <= limit {
            // Nothing was dropped: head and tail are one contiguous text.
            head.append(&mut tail);
            return Captured { head, tail: Vec::new(), head_cap: usize::MAX, tail_cap: 0, total: self.total };
        }
        Captured { head, tail, head_cap: self.head_cap, tail_cap: self.tail_cap, total: self.total }
    }
}

/// The result of a [`Capture`]: either the whole output or its head and tail with the count
/// of bytes cut between them.
pub struct Captured {
    head: Vec<u8>,
    tail: Vec<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl Captured {
    pub fn truncated(&self) -> bool {
        self.head_cap != usize::MAX
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The raw bytes when nothing was cut (for JSON parsing); `None` when cut.
    pub fn whole(&self) -> Option<&[u8]> {
        (!self.truncated()).then_some(&self.head[..])
    }

    /// The text as it may leave the step: redacted by the run's redactor, then cut.
    pub fn text(&self) -> String {
        let redactor = crate::template::redact::global();
        self.text_with(|s| redactor.redact(s).into_owned())
    }

    /// The one place where a capture is cut. `redact` runs over the head and the tail
    /// *including* the overlap bytes past the cut, and only then is each side cut to its
    /// window, so a secret straddling the cut is redacted before half of it could survive.
    pub fn text_with(&self, redact: impl Fn(&str) -> String) -> String {
        if !self.truncated() {
            return redact(&String::from_utf8_lossy(&self.head));
        }
        let head = redact(&String::from_utf8_lossy(&self.head));
        let tail = redact(&String::from_utf8_lossy(&self.tail));
        let head = &head[..floor_char(&head, self.head_cap.min(head.len()))];
        let tail = &tail[ceil_char(&tail, tail.len().saturating_sub(self.tail_cap))..];
        let cut = self.total - (self.head_cap + self.tail_cap) as u64;
        format!(
            "{head}\n[runbook: {cut} bytes cut here; the output was {} bytes, {} MiB are kept]\n{tail}",
            self.total,
            (self.head_cap + self.tail_cap) >> 20
        )
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Reads `r` to its end into a bounded [`Capture`], in 64 KiB pieces.
pub async fn capture_stream(mut r: impl tokio::io::AsyncRead + Unpin, cap: usize) -> std::io::Result<Captured> {
    use tokio::io::AsyncReadExt;
    let mut c = Capture::new(cap);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(c.finish());
        }
        c.push(&buf[..n]);
    }
}

/// Redacts an HTTP body read by [`read_body_capped`] with `cap + CUT_OVERLAP`, then cuts it at
/// `cap`: redact first, so a secret straddling the cut leaves no head behind.
pub fn body_text(bytes: &[u8], truncated: bool, cap: usize) -> String {
    let redactor = crate::template::redact::global();
    let text = redactor.redact(&String::from_utf8_lossy(bytes)).into_owned();
    if !truncated {
        return text;
    }
    let end = floor_char(&text, cap.min(text.len()));
    format!("{}\n[runbook: body cut at {} MiB; the rest was not read]", &text[..end], cap >> 20)
}

/// Reads an HTTP body up to `cap` bytes and stops there (the rest is not downloaded).
/// Returns the bytes and whether the body was longer than the cap.
pub async fn read_body_capped(resp: &mut reqwest::Response, cap: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The one HTTP client of a run: rustls, a user agent, and a connect timeout. Per-request
/// time limits come from the step's `timeout`.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| format!("cannot create the HTTP client: {e}"))
}

/// The last few lines of a text, for error messages.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `scheme://host[:port]` of a URL, for plans that must not print tokens in paths.
pub fn url_origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

/// Template results keep their native type (`{{ port }}` is a number). Where a parameter is
/// text by nature (argv, env values, headers), numbers and booleans are taken as text.
pub mod lenient {
    use indexmap::IndexMap;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// What the schema says of such a parameter: text, a number or a boolean, as the
    /// deserializers below accept (editors must not flag `command: [sleep, 5]`).
    pub struct Text;

    impl schemars::JsonSchema for Text {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> std::borrow::Cow<'static, str> {
            "Text".into()
        }
        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            schemars::json_schema!({ "type": ["string", "number", "boolean"] })
        }
    }

    fn text<E: serde::de::Error>(v: Value) -> Result<String, E> {
        match v {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(E::custom(format!("expected text, got `{other}`"))),
        }
    }

    pub fn opt_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        match Option::<Vec<Value>>::deserialize(d)? {
            Some(items) => Ok(Some(items.into_iter().map(text).collect::<Result<_, _>>()?)),
            None => Ok(None),
        }
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, String>, D::Error> {
        IndexMap::<String, Value>::deserialize(d)?.into_iter().map(|(k, v)| Ok((k, text(v)?))).collect()
    }
}

/// reqwest hides the cause (connection refused, DNS) in the source chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    msg
}

/// Runs a client tool to its end in a process group of its own, registered for `step`: it
/// is journaled (`step_process`), killed with the step (timeout, Ctrl-C, a lost lease), and
/// after a crash `resume` sees whether it still runs. A tool that reads or writes a file
/// itself (pg_dump --file, pg_restore of a whole dump) would otherwise outlive a killed
/// runbook unseen, and `--rerun-interrupted` would start a second copy beside it.
pub async fn output_in_group(mut cmd: tokio::process::Command, step: &str) -> std::io::Result<std::process::Output> {
    use std::process::Stdio;
    cmd.process_group(0).kill_on_drop(true).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn()?;
    let group = child.id().map(|id| crate::exec::groups::Group::register(id as i32, step));
    let out = child.wait_with_output().await;
    drop(group);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(pieces: &[&[u8]], cap: usize) -> Captured {
        let mut c = Capture::new(cap);
        for p in pieces {
            c.push(p);
        }
        c.finish()
    }

    #[test]
    fn small_output_is_kept_whole() {
        let c = capture(&[b"hello ", b"world"], 64);
        assert!(!c.truncated());
        assert_eq!(c.text(), "hello world");
        assert_eq!(c.whole(), Some(&b"hello world"[..]));
    }

    #[test]
    fn large_output_keeps_head_and_tail_and_counts_the_rest() {
        let cap = 2 * CUT_OVERLAP;
        let data: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        // Pushed in uneven pieces so the ring buffer wraps and drops on many paths.
        let mut c = Capture::new(cap);
        for piece in data.chunks(777) {
            c.push(piece);
            assert!(c.head.len() + c.tail.len() <= cap + 2 * CUT_OVERLAP, "holds more than the cap");
        }
        let c = c.finish();
        assert!(c.truncated());
        assert_eq!(c.total(), 100_000);
        let text = c.text();
        let head = std::str::from_utf8(&data[..cap / 2]).unwrap();
        let tail = std::str::from_utf8(&data[data.len() - cap / 2..]).unwrap();
        let note =
            format!("\n[runbook: {} bytes cut here; the output was 100000 bytes, 0 MiB are kept]\n", 100_000 - cap);
        assert_eq!(text, format!("{head}{note}{tail}"));
    }

    #[test]
    fn output_exactly_at_the_cap_is_not_cut() {
        let data = vec![b'x'; 64];
        let c = capture(&[&data], 64);
        assert!(!c.truncated());
        assert_eq!(c.text().len(), 64);
    }

    #[test]
    fn redactor_sees_a_secret_straddling_the_cut() {
        let cap = 2 * CUT_OVERLAP;
        let mut data = vec![b'.'; cap / 2 - 3];
        data.extend_from_slice(b"SECRET");
        data.extend(vec![b'.'; 50_000]);
        let c = capture(&[&data], cap);
        let text = c.text_with(|s| s.replace("SECRET", "******"));
        assert!(!text.contains("SEC"), "the kept half of the secret leaked");
        assert!(text.starts_with(&format!("{}***", ".".repeat(cap / 2 - 3))));
    }

    #[test]
    fn a_cut_inside_a_multibyte_char_stays_valid_text() {
        let data = "é".repeat(10_000);
        let c = capture(&[data.as_bytes()], 2 * CUT_OVERLAP + 1);
        let text = c.text();
        assert!(text.contains("bytes cut here"));
        assert!(!text.contains('\u{fffd}'));
    }
}

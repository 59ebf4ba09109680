//! Issue 9: secrets never leave in any form, and run state is private. One playbook plants
//! secrets of every kind (string, multi-line PEM, one full of URL/JSON/HTML specials, int,
//! map, `secrets:` env vars, a webhook URL) in every place a value can travel (inputs,
//! stdout/stderr, a 4 MiB cut, an http query, reqwest and step errors, an approval message,
//! templates with `urlencode`, `upper`, `title`, `tojson`, a base64 the step computes);
//! then every file of the state dir or every row of the team store, and everything `exec`,
//! `resume`, `show`, `report` and `runs` print, is searched for each secret and each of its
//! derived forms.

use crate::pg_cluster::{Cluster, bin as pg_bin};
use crate::support::{Env, Run, status};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use std::os::unix::fs::PermissionsExt;

const TOKEN: &str = "tok-Str1ng-Secret-9f3a";
const SPECIAL: &str = r#"p@ss/w!rd "q" <x> #h sp%ce"#;
const PIN: &str = "48213957";
const CREDS: &str = r#"{"user":"svc-admin-0c1d","token":"map-token-77f1e2"}"#;
const API_TOKEN: &str = "api-Env-Token-31b9c5d7";
const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7Zq3uQxWv9kLm\nq8Hd2PfT1aXy0Rk7nB4sVe6Jc9WtZu5L\n-----END PRIVATE KEY-----";
const HOOK: &str = "http://127.0.0.1:1/services/T000/B000/hook-Secret-5e6b";

const PLAYBOOK: &str = r#"apiVersion: runbook/v1
name: leak
secrets: [API_TOKEN, PEM_KEY, SLACK_WEBHOOK]
inputs:
  token: { type: string, secret: true }
  special: { type: string, secret: true }
  pin: { type: int, secret: true }
  creds: { type: map, secret: true }
  plain: { type: string }
steps:
  - id: echo_all
    type: shell
    with:
      script: |
        echo "token=$TOK special=$SPECIAL plain=$PLAIN"
        echo "enc=$ENC up=$UP title=$TITLE" >&2
        echo "json=$CJ pin=$PIN api=$API_TOKEN"
        echo "creds=$CREDS"
        printf '%s\n' "$PEM_KEY"
        printf 'basic %s\n' "$(printf 'svc:%s' "$API_TOKEN" | base64 -w0)"
        printf 'b64 %s\n' "$(printf '%s' "$TOK" | base64 -w0 | tr '+/' '-_')"
      env:
        TOK: "{{ inputs.token }}"
        SPECIAL: "{{ inputs.special }}"
        PLAIN: "{{ inputs.plain }}"
        ENC: "{{ inputs.special | urlencode }}"
        UP: "{{ inputs.token | upper }}"
        TITLE: "{{ inputs.token | title }}"
        CJ: "{{ inputs.special | tojson }}"
        PIN: "{{ inputs.pin }}"
        CREDS: "{{ inputs.creds | tojson }}"
  - id: big
    type: shell
    continue_on_error: true
    with:
      # The secret straddles the 4 MiB cut: 4 MiB minus 10 bytes, then the token.
      script: "head -c 4194294 /dev/zero | tr '\\0' a; echo \"$API_TOKEN\""
  - id: pem_fails
    type: shell
    needs: [echo_all]
    continue_on_error: true
    with:
      script: "printf '%s\\n' \"$PEM_KEY\" >&2; echo \"{{ inputs.pin }} {{ inputs.creds.token }}\" >&2; exit 3"
  - id: call
    type: http
    needs: [echo_all]
    continue_on_error: true
    with:
      url: "http://127.0.0.1:1/x?token={{ inputs.token | urlencode }}&s={{ inputs.special | urlencode }}&pin={{ inputs.pin }}"
  - id: hook
    type: notify
    continue_on_error: true
    with: { webhook: "{{ env.SLACK_WEBHOOK }}", text: "rotating {{ inputs.token }}" }
  - id: gate
    type: approval
    needs: [echo_all, big, pem_fails, call, hook]
    with: { message: "rotate {{ inputs.token }} ({{ inputs.special }}, {{ inputs.pin }}, {{ inputs.creds.token }}) at {{ env.SLACK_WEBHOOK }}?" }
  - id: after
    type: shell
    needs: [gate]
    with: { script: "echo \"after $API_TOKEN {{ inputs.creds.user }}\" >&2; exit 1" }
"#;

fn env_vars() -> Vec<(&'static str, &'static str)> {
    vec![("API_TOKEN", API_TOKEN), ("PEM_KEY", PEM), ("SLACK_WEBHOOK", HOOK)]
}

fn input_args() -> Vec<String> {
    let mut v = Vec::new();
    for (k, val) in [("token", TOKEN), ("special", SPECIAL), ("pin", PIN), ("creds", CREDS), ("plain", API_TOKEN)] {
        v.push("-i".to_owned());
        v.push(format!("{k}={val}"));
    }
    v
}

fn pct(s: &str, keep: &str, space_plus: bool, lower: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else if b == b' ' && space_plus {
            out.push('+');
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every form of a secret that must not appear; the first list is compared without case
/// (so `upper`, `lower`, `title` are all covered), the second exactly (base64).
fn forms(secret: &str) -> (Vec<String>, Vec<String>) {
    let mut text = vec![secret.to_owned()];
    for keep in ["", "-._~", "/.-_"] {
        for plus in [false, true] {
            text.push(pct(secret, keep, plus, false));
            text.push(pct(secret, keep, plus, true));
        }
    }
    // reqwest's display of a query: only space, `"`, `#`, `<`, `>` encoded.
    text.push(secret.replace(' ', "%20").replace('"', "%22").replace('#', "%23").replace('<', "%3C"));
    text.push(serde_json::to_string(secret).unwrap().trim_matches('"').to_owned());
    text.push(secret.replace('<', "&lt;").replace('"', "&quot;"));
    if secret.contains('\n') {
        text.extend(secret.lines().filter(|l| l.trim().len() >= 4).map(|l| l.trim().to_owned()));
    }
    if secret.len() >= 16 {
        // No head or tail of it either (a cut, a partial mask).
        let mid = secret.char_indices().nth(secret.chars().count() / 2).unwrap().0;
        text.push(secret[..mid].to_owned());
        text.push(secret[mid..].to_owned());
    }
    let mut exact = Vec::new();
    for enc in [&STANDARD, &URL_SAFE] {
        exact.push(enc.encode(secret));
        exact.push(enc.encode(format!("svc:{secret}")));
    }
    (text, exact)
}

fn all_forms() -> (Vec<String>, Vec<String>) {
    let creds: serde_json::Value = serde_json::from_str(CREDS).unwrap();
    let mut secrets: Vec<String> =
        vec![TOKEN, SPECIAL, PIN, API_TOKEN, PEM, HOOK, CREDS].into_iter().map(Into::into).collect();
    secrets.push(creds.to_string());
    secrets.push("svc-admin-0c1d".into());
    secrets.push("map-token-77f1e2".into());
    secrets.push("hook-Secret-5e6b".into());
    let (mut text, mut exact) = (Vec::new(), Vec::new());
    for s in &secrets {
        let (t, e) = forms(s);
        text.extend(t);
        exact.extend(e);
    }
    (text, exact)
}

/// One matcher for every form (a pass per haystack: state files hold 4 MiB outputs).
fn matcher() -> &'static (regex::Regex, regex::Regex) {
    static M: std::sync::OnceLock<(regex::Regex, regex::Regex)> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let (text, exact) = all_forms();
        let alt = |v: &[String]| v.iter().map(|f| regex::escape(f)).collect::<Vec<_>>().join("|");
        let text = regex::RegexBuilder::new(&alt(&text)).case_insensitive(true).build().unwrap();
        (text, regex::Regex::new(&alt(&exact)).unwrap())
    })
}

/// Panics naming the place and the form found.
fn assert_clean(place: &str, haystack: &str) {
    let (text, exact) = matcher();
    if let Some(m) = text.find(haystack).or_else(|| exact.find(haystack)) {
        panic!("{place} leaks `{}`:\n{}", m.as_str(), excerpt(haystack, m.as_str()));
    }
}

fn excerpt(h: &str, f: &str) -> String {
    match h.to_lowercase().find(&f.to_lowercase()) {
        Some(i) => {
            let start = h.floor_char_boundary(i.saturating_sub(200));
            let end = h.ceil_char_boundary((i + f.len() + 200).min(h.len()));
            h[start..end].to_owned()
        }
        None => String::new(),
    }
}

fn args<'a>(team: Option<&'a str>, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = match team {
        Some(url) => vec!["--state", url],
        None => vec![],
    };
    v.extend_from_slice(rest);
    v
}

/// Runs the matrix on one store; returns everything the commands printed.
fn plant_and_read(env: &Env, team: Option<&str>) -> String {
    env.write("leak.yaml", PLAYBOOK);
    let mut printed = String::new();
    let mut record = |what: &str, r: &Run| printed.push_str(&format!("\n== {what}\n{}", r.all()));
    let inputs = input_args();
    let mut exec: Vec<&str> = args(team, &["exec", "leak.yaml", "--run-id", "s1"]);
    exec.extend(inputs.iter().map(String::as_str));
    let r = env.run_env(&exec, &env_vars());
    assert_eq!(r.code, 3, "paused at the approval: {}", r.all());
    record("exec", &r);
    let mut json_exec = args(team, &["exec", "leak.yaml", "--run-id", "s2", "--output", "json"]);
    json_exec.extend(inputs.iter().map(String::as_str));
    let r = env.run_env(&json_exec, &env_vars());
    assert_eq!(r.code, 3, "{}", r.all());
    record("exec --output json", &r);

    let show: serde_json::Value =
        serde_json::from_str(&env.run(&args(team, &["show", "s1", "--output", "json"])).stdout).unwrap();
    for (id, want) in [("echo_all", "succeeded"), ("big", "succeeded"), ("pem_fails", "failed"), ("call", "failed")] {
        assert_eq!(status(&show, id), want, "{id}: {show}");
    }
    assert_eq!(status(&show, "hook"), "failed");
    assert_eq!(status(&show, "gate"), "waiting");
    // The masks are where the secrets were (the test would pass on an empty state otherwise).
    let stdout = crate::support::step(&show, "echo_all")["outputs"]["stdout"].as_str().unwrap().to_owned();
    assert!(stdout.starts_with("token=*** special=*** plain=***\n"), "{stdout}");
    assert!(stdout.contains("json=\"***\" pin=*** api=***"), "{stdout}");
    let big = crate::support::step(&show, "big")["outputs"]["stdout"].as_str().unwrap().to_owned();
    assert!(big.ends_with("a***"), "redacted before the cut: …{}", &big[big.len() - 40..]);
    let stderr = crate::support::step(&show, "echo_all")["outputs"]["stderr"].as_str().unwrap().to_owned();
    assert_eq!(stderr.trim(), "enc=*** up=*** title=***");
    let call_error = crate::support::step(&show, "call")["error"].as_str().unwrap().to_owned();
    assert!(call_error.contains("token=***") && call_error.contains("pin=***"), "{call_error}");
    let hook_error = crate::support::step(&show, "hook")["error"].as_str().unwrap().to_owned();
    assert!(hook_error.starts_with("cannot reach the webhook http://127.0.0.1:1: "), "{hook_error}");

    // resume: every secret input again; `plain` too, as it held a secret's value.
    let r = env.run_env(&args(team, &["resume", "s1", "--approve", "gate"]), &env_vars());
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("give them again: ") && r.stderr.contains("-i plain=..."), "{}", r.stderr);
    record("resume without inputs", &r);
    let mut resume = args(team, &["resume", "s1", "--approve", "gate"]);
    resume.extend(inputs.iter().map(String::as_str));
    let r = env.run_env(&resume, &env_vars());
    assert_eq!(r.code, 1, "`after` fails on purpose: {}", r.all());
    record("resume", &r);

    for (what, a) in [
        ("show", vec!["show", "s1"]),
        ("show json", vec!["show", "s1", "--output", "json"]),
        ("show s2", vec!["show", "s2", "--output", "json"]),
        ("report md", vec!["report", "s1"]),
        ("report json", vec!["report", "s1", "--format", "json"]),
        ("runs", vec!["runs"]),
        ("runs json", vec!["runs", "--output", "json"]),
    ] {
        let r = env.run(&args(team, &a));
        assert_eq!(r.code, 0, "{what}: {}", r.all());
        record(what, &r);
    }
    // Input errors never echo a secret value.
    let r =
        env.run_env(&["exec", "leak.yaml", "-i", "pin=12ab-secret-xyz", "-i", &format!("creds={TOKEN}")], &env_vars());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("input `pin`: expected an integer (the value is secret and not shown)"), "{}", r.stderr);
    assert!(!r.stderr.contains("12ab-secret-xyz"), "{}", r.stderr);
    record("bad inputs", &r);
    let report = printed.find("== report md").map(|i| &printed[i..]).unwrap_or_default();
    assert!(report.contains("***"), "the report shows the masks: {report}");
    printed
}

fn modes(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        if p.is_dir() {
            assert_eq!(mode, 0o700, "{}", p.display());
            modes(&p);
        } else {
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
}

#[test]
fn no_secret_form_reaches_the_state_dir_or_any_output() {
    let env = Env::new();
    let printed = plant_and_read(&env, None);
    assert_clean("command output", &printed);
    let root = env.path(".runbook");
    let files = crate::support::walk(&root);
    let names: Vec<String> = files.iter().filter_map(|f| f.file_name()?.to_str().map(str::to_owned)).collect();
    for want in ["meta.json", "playbook.yaml", "inputs.json", "journal.jsonl", "state.json", "lock"] {
        assert!(names.iter().filter(|n| *n == want).count() == 2, "{want} in both runs: {names:?}");
    }
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        assert_clean(&f.display().to_string(), &text);
    }
    let inputs = std::fs::read_to_string(root.join("runs/s1/inputs.json")).unwrap();
    let inputs: serde_json::Value = serde_json::from_str(&inputs).unwrap();
    assert_eq!(
        inputs,
        serde_json::json!({"token": "***", "special": "***", "pin": "***", "creds": "***", "plain": "***"})
    );
    assert_eq!(std::fs::metadata(&root).unwrap().permissions().mode() & 0o777, 0o700);
    modes(&root);
}

#[test]
fn no_secret_form_reaches_the_team_store_or_any_output() {
    let c = Cluster::start();
    let url = c.url();
    let env = Env::new();
    let printed = plant_and_read(&env, Some(&url));
    assert_clean("command output", &printed);
    // Every row of every table, as INSERT statements (text kept as written, no re-escaping).
    let out = std::process::Command::new(pg_bin("pg_dump"))
        .args(["--data-only", "--inserts", "--dbname", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(rows.contains("INSERT INTO public.runbook_events"), "{}", &rows[..rows.len().min(2000)]);
    assert!(rows.contains("token=*** special=***"), "the redacted output is in the store");
    assert_clean("team store rows", &rows);
    assert!(!env.path(".runbook").exists(), "the team store writes no state dir");
}

/// The approval prompt on a terminal shows the message redacted.
#[test]
fn tty_prompt_is_redacted() {
    let env = Env::new();
    env.write(
        "p.yaml",
        concat!(
            "apiVersion: runbook/v1\nname: ttyleak\nsecrets: [API_TOKEN]\n",
            "inputs:\n  token: { type: string, secret: true }\n",
            "steps:\n  - id: go\n    type: approval\n",
            "    with: { message: \"rotate {{ inputs.token | upper }} and {{ env.API_TOKEN | urlencode }}?\" }\n",
        ),
    );
    let cmd = format!("{} exec p.yaml --run-id t1 -i token={TOKEN}", crate::support::bin());
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .current_dir(env.dir.path())
        .env("RUNBOOK_STATE_DIR", env.path(".runbook"))
        .env("API_TOKEN", API_TOKEN)
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) runs");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"n\n").unwrap();
    drop(stdin);
    let out = crate::support::finish(child.wait_with_output().unwrap());
    let screen = out.stdout.replace('\r', "\n");
    assert!(screen.contains("✋ approval `go`: rotate *** and ***?"), "{screen}");
    assert_clean("the terminal", &screen);
}

/// Values too short to mask keep the documented warning (docs/semantics.md), whatever their
/// type; an enum error of a secret input lists the allowed values, never the given one.
#[test]
fn short_secrets_warn_and_enum_errors_hide_the_value() {
    let env = Env::new();
    env.write(
        "p.yaml",
        concat!(
            "apiVersion: runbook/v1\nname: short\nsecrets: [SHORT_ENV]\n",
            "inputs:\n",
            "  a: { type: string, secret: true }\n",
            "  n: { type: int, secret: true }\n",
            "  m: { type: map, secret: true }\n",
            "  region: { type: string, secret: true, enum: [eu-central-1-secret-a, us-east-1-secret-b] }\n",
            "steps:\n  - id: s\n    type: shell\n    with: { command: [\"true\"] }\n",
        ),
    );
    let given = ["-i", "a=abc", "-i", "n=42", "-i", r#"m={"user":"longer-user-name","pw":"ab"}"#];
    let mut a = vec!["exec", "p.yaml", "--run-id", "w1", "-i", "region=eu-central-1-secret-a"];
    a.extend(given);
    let r = env.run_env(&a, &[("SHORT_ENV", "xy")]);
    assert_eq!(r.code, 0, "{}", r.all());
    for name in ["a", "n", "m"] {
        let want = format!("warning: secret input `{name}` (or a part of it) is too short to be redacted reliably");
        assert!(r.stdout.contains(&want), "{want}\n{}", r.stdout);
    }
    assert!(r.stdout.contains("warning: secret $SHORT_ENV is too short to be redacted reliably"), "{}", r.stdout);
    // The long leaf of the map is still masked where it is stored.
    let journal = std::fs::read_to_string(env.path(".runbook/runs/w1/journal.jsonl")).unwrap();
    assert!(!journal.contains("longer-user-name"), "{journal}");

    let mut a = vec!["exec", "p.yaml", "-i", "region=eu-west-9-my-typo-secret"];
    a.extend(given);
    let r = env.run(&a);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains(
            "input `region`: expected a string, one of `\"eu-central-1-secret-a\"`, `\"us-east-1-secret-b\"` (the value is secret and not shown)"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.all().contains("eu-west-9-my-typo-secret"), "{}", r.all());
}

//! The crash matrix: the binary is killed right after each of its journal writes in turn
//! (the test-only hook `RUNBOOK_TEST_ABORT_AFTER_WRITES`, docs/semantics.md), then resumed
//! until the run ends, over a playbook with parallel branches, a retried step, an approval and
//! non-idempotent steps.
//!
//! For every N, in both forms of the hook (`N`: the N-th event reached the file, then abort;
//! `N:unflushed`: abort with the N-th event and the rest of the scheduler turn still in the
//! process's buffer, as a kill -9 at that instant), the exec is aborted at its N-th write, and
//! the first resume is aborted at its own N-th write too (so crashes of resume are covered);
//! later resumes run to the end, with `--rerun-interrupted` only after a resume refused with
//! exit 3 because a non-idempotent step was interrupted. Checked for each N:
//! - a step the journal showed as succeeded after a crash never runs again (its marker file
//!   gets no new `start` or `done` line);
//! - a non-idempotent step starts at most once, plus once per `--rerun-interrupted` given
//!   while it was interrupted;
//! - every step ran to completion at least once, and a resume never fails otherwise;
//! - the final `show --output json` equals the uncrashed run's: run status, and each step's
//!   status, `skipped_by` and outputs (`approved_at` aside: it is the time of the decision).
//!
//! The markers are written by the steps themselves with `>>` (O_APPEND), one line per start
//! and one per completion. No sleeps: the matrix takes a few seconds.

use crate::support::{Env, Run, step};
use serde_json::Value;
use std::collections::BTreeMap;

const PLAYBOOK: &str = r#"apiVersion: runbook/v1
name: matrix
steps:
  - id: prep
    type: shell
    idempotent: true
    with: { script: "echo start >> prep.log; echo done >> prep.log; echo prepared" }
  # Two branches after prep: a non-idempotent copy, and a retried step that fails its very
  # first attempt (the counter file outlives crashes, so only the first attempt ever fails).
  - id: copy
    type: shell
    needs: [prep]
    with: { script: "echo start >> copy.log; echo done >> copy.log; echo copied" }
  - id: flaky
    type: shell
    needs: [prep]
    idempotent: true
    retry: { attempts: 3 }
    with:
      script: "echo start >> flaky.log; n=$(cat flaky.count 2>/dev/null || echo 0); echo $((n+1)) > flaky.count; [ $n -ge 1 ] || exit 1; echo done >> flaky.log; echo steady"
  - id: skipped
    type: shell
    needs: [prep]
    when: "false"
    with: { script: "echo start >> skipped.log; echo done >> skipped.log" }
  - id: gate
    type: approval
    needs: [copy, flaky, skipped]
    with: { message: "switch over?" }
  - id: switch
    type: shell
    needs: [gate]
    with: { script: "echo start >> switch.log; echo done >> switch.log; echo switched" }
  - id: audit
    type: shell
    needs: [switch]
    trigger: always
    idempotent: true
    with: { script: "echo start >> audit.log; echo done >> audit.log; echo audited" }
"#;

const STEPS: [&str; 7] = ["prep", "copy", "flaky", "skipped", "gate", "switch", "audit"];
const SHELL_STEPS: [&str; 6] = ["prep", "copy", "flaky", "skipped", "switch", "audit"];
const NOT_IDEMPOTENT: [&str; 2] = ["copy", "switch"];
const HOOK: &str = "RUNBOOK_TEST_ABORT_AFTER_WRITES";
/// What [`run_hooked`] reports for a process killed by SIGABRT (the hook), as a shell would.
const ABORTED: i32 = 128 + libc::SIGABRT;
const INTERRUPTED_MSG: &str = "were interrupted while running and are not idempotent";

/// What a user can see of a finished run, minus what differs between two good runs.
fn final_state(show: &Value) -> Value {
    let steps: Vec<Value> = STEPS
        .iter()
        .map(|id| {
            let s = step(show, id);
            let mut outputs = s["outputs"].clone();
            if let Some(o) = outputs.as_object_mut() {
                o.remove("approved_at");
            }
            serde_json::json!({ "id": id, "status": s["status"], "skipped_by": s["skipped_by"], "outputs": outputs })
        })
        .collect();
    serde_json::json!({ "status": show["status"], "steps": steps })
}

/// (starts, completions) of a shell step, from its marker file.
fn marks(env: &Env, id: &str) -> (usize, usize) {
    let text = env.read(&format!("{id}.log"));
    (text.lines().filter(|l| *l == "start").count(), text.lines().filter(|l| *l == "done").count())
}

/// Where the runs live: the file store, or the team store (PostgreSQL) with a short lease,
/// which a crashed driver keeps until it expires.
struct Store {
    url: Option<String>,
}

impl Store {
    const LEASE: &str = "1s";

    fn run(&self, env: &Env, args: &[&str], hook: Option<&str>) -> Run {
        let mut all: Vec<&str> = Vec::new();
        if let Some(url) = &self.url {
            all.extend(["--state", url.as_str()]);
        }
        all.extend_from_slice(args);
        let mut c = env.command(&all);
        c.env("RUNBOOK_LEASE_TTL", Self::LEASE);
        run_hooked(c, hook)
    }

    fn show(&self, env: &Env, run: &str) -> Option<Value> {
        let r = self.run(env, &["show", run, "--output", "json"], None);
        (r.code == 0).then(|| serde_json::from_str(&r.stdout).expect("show prints JSON"))
    }

    /// After a crash: the team store refuses a resume until the dead driver's lease expired.
    fn after_crash(&self) {
        if self.url.is_some() {
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
    }
}

fn run_hooked(mut c: std::process::Command, hook: Option<&str>) -> Run {
    match hook {
        Some(h) => c.env(HOOK, h),
        None => c.env_remove(HOOK),
    };
    let out = c.output().expect("run runbook");
    // Only the hook's SIGABRT counts as the crash; another signal (a segfault) must fail.
    let aborted = std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(libc::SIGABRT);
    let mut r = crate::support::finish(out);
    if aborted {
        r.code = ABORTED;
    }
    r
}

fn uncrashed(store: &Store, run: &str) -> Value {
    let env = Env::new();
    env.write("m.yaml", PLAYBOOK);
    let r = store.run(&env, &["exec", "m.yaml", "--run-id", run, "--approve", "gate"], None);
    assert_eq!(r.code, 0, "{}", r.all());
    let show = store.show(&env, run).expect("show the uncrashed run");
    for id in SHELL_STEPS {
        let want = if id == "skipped" {
            (0, 0)
        } else if id == "flaky" {
            (2, 1)
        } else {
            (1, 1)
        };
        assert_eq!(marks(&env, id), want, "uncrashed run: markers of {id}");
    }
    final_state(&show)
}

/// What one case saw, for the checks at its end.
struct Case<'a> {
    env: Env,
    store: &'a Store,
    run: String,
    label: String,
    /// Marker counts of each step at the first time a crashed run's journal showed it succeeded.
    succeeded_at: BTreeMap<String, (usize, usize)>,
    /// `--rerun-interrupted` given while the step was interrupted.
    reruns_allowed: BTreeMap<String, usize>,
    log: Vec<String>,
}

impl Case<'_> {
    fn run(&self, args: &[&str], hook: Option<&str>) -> Run {
        self.store.run(&self.env, args, hook)
    }

    fn show(&self) -> Value {
        self.store.show(&self.env, &self.run).unwrap_or_else(|| self.fail("show failed".into()))
    }

    /// After a crash: remember what the journal says completed, with its markers then.
    fn after_crash(&mut self) -> Option<Value> {
        self.store.after_crash();
        let show = self.store.show(&self.env, &self.run)?;
        for id in SHELL_STEPS {
            if step(&show, id)["status"] == "succeeded" && !self.succeeded_at.contains_key(id) {
                self.succeeded_at.insert(id.to_owned(), marks(&self.env, id));
            }
        }
        Some(show)
    }

    fn fail(&self, what: String) -> ! {
        panic!("crash matrix, case {}: {what}\nhistory:\n{}", self.label, self.log.join("\n"))
    }
}

/// One case: exec aborted at write `n`, first resume aborted at its write `n`, then resumes.
/// Returns None when the exec finished before its n-th write (the matrix is complete).
fn case(n: u64, unflushed: bool, want: &Value, store: &Store) -> Option<Seen> {
    let hook = if unflushed { format!("{n}:unflushed") } else { n.to_string() };
    let env = Env::new();
    env.write("m.yaml", PLAYBOOK);
    let run = format!("m{n}{}", if unflushed { "u" } else { "f" });
    let mut c = Case {
        env,
        store,
        run: run.clone(),
        label: format!("{hook}{}", if store.url.is_some() { " (team store)" } else { "" }),
        succeeded_at: BTreeMap::new(),
        reruns_allowed: BTreeMap::new(),
        log: Vec::new(),
    };
    let r = c.run(&["exec", "m.yaml", "--run-id", &run, "--approve", "gate"], Some(&hook));
    c.log.push(format!("exec: exit {}", r.code));
    if r.code == 0 {
        return None;
    }
    let mut seen = Seen::default();
    if r.code != ABORTED {
        c.fail(format!("exec neither finished nor aborted: {}", r.all()));
    }
    if c.after_crash().is_none() {
        // The process died before `run_started` was durable. Run creation is atomic: such a
        // run does not exist at all (never a half-created one that cannot be shown or
        // resumed), nothing ran, and starting over under the same id is safe.
        let show = c.run(&["show", &run], None);
        if !show.stderr.contains(&format!("no run `{run}`")) {
            c.fail(format!("the crashed run cannot be read: {}", show.all()));
        }
        for id in SHELL_STEPS {
            if marks(&c.env, id) != (0, 0) {
                c.fail(format!("{id} ran although the run was never recorded as started"));
            }
        }
        seen.unrecorded = 1;
        return Some(seen);
    }

    let mut rerun = false;
    let mut hooked_resume = true;
    for round in 0.. {
        if round > 8 {
            c.fail("no end after 8 resumes".into());
        }
        let mut args = vec!["resume", run.as_str(), "--approve", "gate"];
        if rerun {
            args.push("--rerun-interrupted");
        }
        let r = c.run(&args, hooked_resume.then_some(hook.as_str()));
        c.log.push(format!("{} (hook: {hooked_resume}): exit {}", args.join(" "), r.code));
        rerun = false;
        match r.code {
            0 => break,
            ABORTED if hooked_resume => {
                seen.resume_crashes += 1;
                if c.after_crash().is_none() {
                    c.fail("the run cannot be shown after a crashed resume".into());
                }
            }
            3 if r.stderr.contains(INTERRUPTED_MSG) => {
                // The user checks, then tells runbook to run the interrupted steps again.
                let show = c.show();
                for id in NOT_IDEMPOTENT {
                    if step(&show, id)["status"] == "interrupted" {
                        *c.reruns_allowed.entry(id.to_owned()).or_default() += 1;
                    }
                }
                if c.reruns_allowed.is_empty() {
                    c.fail(format!("exit 3 names interrupted steps, but none is interrupted: {}", r.stderr));
                }
                rerun = true;
                seen.reruns += 1;
            }
            _ => c.fail(format!("resume failed: {}", r.all())),
        }
        hooked_resume = false;
    }

    let show = c.show();
    let got = final_state(&show);
    if &got != want {
        c.fail(format!("final state differs from the uncrashed run's:\n got {got}\nwant {want}"));
    }
    for (id, at) in &c.succeeded_at {
        let now = marks(&c.env, id);
        if now != *at {
            c.fail(format!("{id} was journaled as succeeded with markers {at:?}, then ran again: {now:?}"));
        }
    }
    for id in SHELL_STEPS {
        let (starts, dones) = marks(&c.env, id);
        if id == "skipped" {
            if starts != 0 {
                c.fail("the step skipped by its `when` ran".into());
            }
            continue;
        }
        if dones == 0 || dones > starts {
            c.fail(format!("{id}: {starts} starts and {dones} completions"));
        }
        if NOT_IDEMPOTENT.contains(&id) {
            let allowed = 1 + c.reruns_allowed.get(id).copied().unwrap_or(0);
            if starts > allowed {
                c.fail(format!("non-idempotent {id} started {starts} times, allowed {allowed}"));
            }
        }
    }
    seen.journaled_done = c.succeeded_at.len();
    Some(seen)
}

/// What a case went through, summed over the matrix to show it reached the paths it is for.
#[derive(Default, Debug)]
struct Seen {
    resume_crashes: usize,
    reruns: usize,
    unrecorded: usize,
    journaled_done: usize,
}

/// Every crash point, in `threads` threads (a case mostly waits: on processes, on fsync,
/// on a lease to expire); stops at the first N the exec gets through without crashing.
fn matrix(unflushed: bool, store: &Store, threads: usize) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    let want = uncrashed(store, if unflushed { "uncrashed-u" } else { "uncrashed-f" });
    let next = AtomicU64::new(1);
    let end = AtomicU64::new(u64::MAX);
    let total = Mutex::new(Seen::default());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= end.load(Ordering::SeqCst) || n >= 200 {
                        break;
                    }
                    let Some(seen) = case(n, unflushed, &want, store) else {
                        end.fetch_min(n, Ordering::SeqCst);
                        break;
                    };
                    let mut t = total.lock().unwrap();
                    t.resume_crashes += seen.resume_crashes;
                    t.reruns += seen.reruns;
                    t.unrecorded += seen.unrecorded;
                    t.journaled_done += seen.journaled_done;
                }
            });
        }
    });
    let points = end.load(Ordering::SeqCst).saturating_sub(1);
    let total = total.into_inner().unwrap();
    let form = if unflushed { "unflushed" } else { "flushed" };
    eprintln!("crash matrix ({form}): {points} crash points, {total:?}");
    // A hook that never fired would end the matrix at 1; one that fired but missed the
    // interesting moments would show no resume crash or no --rerun-interrupted.
    assert!((15..199).contains(&points), "the matrix ended after {points} writes: did the hook fire?");
    assert!(total.resume_crashes >= 3, "resumes were hardly ever crashed: {total:?}");
    assert!(total.reruns > 0, "no crash ever interrupted a non-idempotent step: {total:?}");
}

#[test]
fn crash_after_each_journal_write_then_resume() {
    matrix(false, &Store { url: None }, 2);
}

#[test]
fn crash_with_the_last_scheduler_turn_unwritten_then_resume() {
    matrix(true, &Store { url: None }, 2);
}

/// The same matrix over the team store: the hook stops the process right after the N-th
/// event was inserted. (Its unflushed form, the batch of a scheduler turn lost, is the file
/// store's case again with a lease wait of a second after each crash: left out for time.)
#[test]
fn team_store_crash_after_each_write_then_resume() {
    let cluster = crate::pg_cluster::Cluster::start();
    let store = Store { url: Some(cluster.url()) };
    matrix(false, &store, 6);
}

/// The hook is for tests: a value it cannot read stops the binary before any run exists
/// (a typo must not make a crash test pass as a normal run, nor leave half a run behind).
#[test]
fn a_bad_hook_value_is_refused_before_the_run_is_created() {
    let env = Env::new();
    env.write("m.yaml", PLAYBOOK);
    for bad in ["abc", "0", "3:later", ""] {
        let r = run_hooked(env.command(&["exec", "m.yaml", "--approve", "gate"]), Some(bad));
        assert_eq!(r.code, 2, "{bad:?}: {}", r.all());
        assert!(
            r.stderr.contains(&format!("error: {HOOK}=`{bad}`: expected N or N:unflushed with N >= 1 (test-only)")),
            "{}",
            r.stderr
        );
    }
    assert!(!env.path(".runbook/runs").exists() || std::fs::read_dir(env.path(".runbook/runs")).unwrap().count() == 0);
    assert_eq!(marks(&env, "prep"), (0, 0));
}

//! The PostgreSQL steps against real PostgreSQL (throwaway clusters from `pg_cluster`).

use crate::pg_cluster::{Cluster, PASSWORD, free_port};
use crate::support::{Env, status, step};
use std::time::Duration;

fn exec(env: &Env, run_id: &str, body: &str) -> (i32, serde_json::Value, String) {
    env.write(&format!("{run_id}.yaml"), &format!("apiVersion: runbook/v1\nname: pg-test\nsteps:\n{body}"));
    let r = env.run(&["exec", &format!("{run_id}.yaml"), "--run-id", run_id]);
    (r.code, env.show(run_id), r.all())
}

/// Rows 1..=100 before the base backup, 101..=150 after it, then the target time, then
/// damage (rows 1..=10 deleted, 151..=200 added): a restore to the target must show
/// exactly 1..=150.
fn damaged_cluster() -> (Cluster, String) {
    let c = Cluster::start();
    c.psql("create table orders (id int primary key, total int not null); insert into orders select g, g * 10 from generate_series(1, 100) g");
    c.base_backup();
    c.psql("insert into orders select g, g * 10 from generate_series(101, 150) g");
    std::thread::sleep(Duration::from_millis(1100));
    let target = c.now();
    std::thread::sleep(Duration::from_millis(1100));
    c.psql("delete from orders where id <= 10");
    c.psql("insert into orders select g, g * 10 from generate_series(151, 200) g");
    c.archive_now();
    (c, target)
}

#[test]
fn pitr_restore_lands_exactly_at_the_target() {
    let (c, target) = damaged_cluster();
    let env = Env::new();
    let port = free_port();
    let restored = c.path("restored");
    c.adopt(&restored);
    let (code, show, out) = exec(
        &env,
        "p1",
        &format!(
            "  - id: restore\n    type: pitr-restore\n    with: {{ provider: postgres, base_backup: {}, wal_archive: {}, target_time: \"{target}\", data_dir: {}, port: {port}, password: {PASSWORD} }}\n",
            c.path("base").display(),
            c.path("archive").display(),
            restored.display()
        ),
    );
    assert_eq!(code, 0, "{out}");
    let o = &step(&show, "restore")["outputs"];
    assert_eq!(o["url"], format!("postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"));
    let target_ts: jiff::Timestamp = target.parse().unwrap();
    assert_eq!(o["target_time"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap(), target_ts);
    let recovered: jiff::Timestamp = o["recovered_to"].as_str().unwrap().parse().unwrap();
    assert!(recovered <= target_ts, "recovered_to {recovered} is after the target {target}");
    // Proof by data: everything committed before the target, nothing after it.
    assert_eq!(c.psql_port(port, "select count(*), min(id), max(id) from orders"), "150|1|150");
    assert_eq!(c.psql_port(port, "select pg_is_in_recovery()"), "f");
    // The original cluster was not touched.
    assert_eq!(c.psql("select count(*), min(id), max(id) from orders"), "190|11|200");
    // A second restore into the same directory is refused.
    let (code, show, _) = exec(
        &env,
        "p2",
        &format!(
            "  - id: again\n    type: pitr-restore\n    with: {{ provider: postgres, base_backup: {}, wal_archive: {}, target_time: \"{target}\", data_dir: {}, port: {} }}\n",
            c.path("base").display(),
            c.path("archive").display(),
            restored.display(),
            free_port()
        ),
    );
    assert_eq!(code, 1);
    assert_eq!(step(&show, "again")["error"], format!("data_dir {} is not empty", restored.display()));
}

#[test]
fn pitr_restore_explains_what_is_wrong() {
    let (c, target) = damaged_cluster();
    let env = Env::new();
    // A WAL archive that lacks the segments after the base backup.
    let partial = c.path("partial-archive");
    std::fs::create_dir_all(&partial).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(c.path("archive")).unwrap().flatten().map(|e| e.file_name()).collect();
    names.sort();
    for n in names.iter().take(2) {
        std::fs::copy(c.path("archive").join(n), partial.join(n)).unwrap();
    }
    std::process::Command::new("chmod").arg("-R").arg("a+rX").arg(&partial).status().unwrap();
    c.adopt(&c.path("r-missing"));
    let base = c.path("base").display().to_string();
    let archive = c.path("archive").display().to_string();
    let restore = |id: &str, wal: &str, t: &str, dir: &str, port: u16| {
        format!(
            "  - id: {id}\n    type: pitr-restore\n    continue_on_error: true\n    with: {{ provider: postgres, base_backup: {base}, wal_archive: {wal}, target_time: \"{t}\", data_dir: {}, port: {port}, password: {PASSWORD} }}\n",
            c.path(dir).display()
        )
    };
    let body = [
        restore("future", &archive, "2099-01-01T00:00:00Z", "r-future", free_port()),
        restore("too_early", &archive, "2001-01-01T00:00:00Z", "r-early", free_port()),
        restore("port_taken", &archive, &target, "r-port", c.port),
        restore("missing_wal", &partial.display().to_string(), &target, "r-missing", free_port()),
    ]
    .concat();
    let (code, show, out) = exec(&env, "e1", &body);
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "future")["error"], "target_time 2099-01-01T00:00:00Z is in the future");
    let early = step(&show, "too_early")["error"].as_str().unwrap().to_owned();
    assert!(early.starts_with("target_time 2001-01-01T00:00:00Z is before the base backup was taken ("), "{early}");
    assert_eq!(step(&show, "port_taken")["error"], format!("port {} is in use", c.port));
    let missing = step(&show, "missing_wal")["error"].as_str().unwrap().to_owned();
    assert_eq!(
        missing, "the restored cluster stopped: recovery ended before configured recovery target was reached",
        "{out}"
    );
    assert!(out.contains("hint: the WAL archive ends before the target time"), "{out}");
}

#[test]
fn verify_rls_reports_disabled_rls_and_changed_policies() {
    let c = Cluster::start();
    c.psql(concat!(
        "create table orders (id int, owner text); create table notes (id int, owner text);",
        "alter table orders enable row level security; alter table notes enable row level security;",
        "create policy orders_owner on orders for select using (owner = current_user);",
        "create policy notes_owner on notes using (owner = current_user) with check (owner = current_user);",
    ));
    let env = Env::new();
    let url = c.url();
    let (code, show, out) = exec(
        &env,
        "s1",
        &format!("  - id: snap\n    type: verify-rls\n    with: {{ url: \"{url}\", snapshot: rls.yaml }}\n"),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "snap")["outputs"]["tables_checked"], 2);
    let expected = env.read("rls.yaml");
    assert!(expected.contains("- name: \"orders_owner\""), "{expected}");
    let check = format!("  - id: check\n    type: verify-rls\n    with: {{ url: \"{url}\", expect: rls.yaml }}\n");
    let (code, _, out) = exec(&env, "s2", &check);
    assert_eq!(code, 0, "a healthy database must pass: {out}");

    c.psql("drop policy orders_owner on orders; alter table notes disable row level security");
    let (code, show, out) = exec(&env, "s3", &check);
    assert_eq!(code, 1, "{out}");
    let o = &step(&show, "check")["outputs"];
    assert_eq!(o["missing_rls"], serde_json::json!(["public.notes"]));
    assert_eq!(
        o["policy_diff"],
        serde_json::json!([
            "public.notes: RLS expected on, found off",
            "public.orders: policy `orders_owner` is missing"
        ])
    );
    assert!(out.contains("public.notes: RLS is disabled"), "{out}");

    // RLS that is on but not forced, when forcing is required.
    let (code, show, _) = exec(
        &env,
        "s4",
        &format!(
            "  - id: force\n    type: verify-rls\n    with: {{ url: \"{url}\", tables: [orders], require_force: true }}\n"
        ),
    );
    assert_eq!(code, 1);
    assert_eq!(step(&show, "force")["outputs"]["not_forced"], serde_json::json!(["public.orders"]));

    // A malformed expected file names its line and column.
    env.write("bad.yaml", "tables:\n  public.orders:\n    rls: maybe\n");
    let (code, show, _) = exec(
        &env,
        "s5",
        &format!("  - id: bad\n    type: verify-rls\n    with: {{ url: \"{url}\", expect: bad.yaml }}\n"),
    );
    assert_eq!(code, 1);
    let err = step(&show, "bad")["error"].as_str().unwrap().to_owned();
    assert!(
        err.starts_with(&format!(
            "{}:3:10: `tables.public.orders.rls`: invalid type: string \"maybe\", expected a boolean",
            env.path("bad.yaml").display()
        )),
        "{err}"
    );
}

#[test]
fn sql_outputs_rows_and_fails_clearly_on_bad_input() {
    let c = Cluster::start();
    c.psql("create table orders (id int primary key, total numeric(10,2), note text, at timestamptz default '2026-11-27T09:12:00Z', data jsonb)");
    c.psql("insert into orders values (1, 12.50, 'a', default, '{\"k\": [1, 2]}'), (2, -3, null, default, null)");
    let env = Env::new();
    let url = c.url();
    let bad_pw = url.replace(PASSWORD, "wrong-password");
    let body = format!(
        concat!(
            "  - id: rows\n    type: sql\n    with: {{ url: \"{url}\", query: \"select id, total, note, at, data from orders where id >= $1 order by id\", params: [1], expect: {{ row_count: 2 }} }}\n",
            "  - id: negative\n    type: sql\n    continue_on_error: true\n    with: {{ url: \"{url}\", query: \"select count(*) as n from orders where total < 0\", expect: {{ rows: [{{ n: 0 }}] }} }}\n",
            "  - id: wrong_password\n    type: sql\n    continue_on_error: true\n    with: {{ url: \"{bad_pw}\", query: \"select 1\" }}\n",
            "  - id: unreachable\n    type: sql\n    continue_on_error: true\n    with: {{ url: \"postgresql://postgres@127.0.0.1:1/postgres\", query: \"select 1\" }}\n",
            "  - id: no_table\n    type: sql\n    continue_on_error: true\n    with: {{ url: \"{url}\", query: \"select * from nope\" }}\n",
            "  - id: script\n    type: sql\n    needs: [rows]\n    with: {{ url: \"{url}\", query: \"update orders set note = 'x'; select count(*) as n from orders where note = 'x'\" }}\n",
        ),
        url = url,
        bad_pw = bad_pw
    );
    let (code, show, out) = exec(&env, "q1", &body);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        step(&show, "rows")["outputs"]["rows"],
        serde_json::json!([
            {"id": 1, "total": 12.5, "note": "a", "at": "2026-11-27T09:12:00Z", "data": {"k": [1, 2]}},
            {"id": 2, "total": -3.0, "note": null, "at": "2026-11-27T09:12:00Z", "data": null}
        ])
    );
    assert_eq!(status(&show, "negative"), "failed");
    assert_eq!(step(&show, "negative")["error"], "row 0, column `n`: expected 0, got 1");
    let pw_err = step(&show, "wrong_password")["error"].as_str().unwrap().to_owned();
    assert_eq!(
        pw_err,
        format!(
            "cannot connect to postgres@127.0.0.1:{}/postgres: password authentication failed for user \"postgres\"",
            c.port
        )
    );
    assert!(out.contains("hint: check the user and password in the connection string"), "{out}");
    assert!(!out.contains("wrong-password") && !out.contains(PASSWORD), "a password leaked: {out}");
    assert_eq!(
        step(&show, "unreachable")["error"],
        "cannot connect to postgres@127.0.0.1:1/postgres: Connection refused (os error 111)"
    );
    assert_eq!(
        step(&show, "no_table")["error"],
        format!("postgres@127.0.0.1:{}/postgres: relation \"nope\" does not exist (SQLSTATE 42P01)", c.port)
    );
    assert_eq!(step(&show, "script")["outputs"]["rows"], serde_json::json!([{"n": "2"}]));
}

#[test]
fn pg_dump_and_restore_one_table() {
    let c = Cluster::start();
    c.psql("create table orders (id int primary key, total int); create table users (id int primary key, name text)");
    c.psql("alter table orders enable row level security; create policy p on orders using (true)");
    c.psql("insert into orders select g, g from generate_series(1, 500) g; insert into users values (1, 'ann')");
    let env = Env::new();
    let url = c.url();
    let (code, show, out) = exec(
        &env,
        "d1",
        &format!(
            concat!(
                "  - id: full\n    type: pg-dump\n    with: {{ url: \"{url}\", to: backups/, format: custom }}\n",
                "  - id: schema\n    type: pg-dump\n    with: {{ url: \"{url}\", to: backups/, schema_only: true }}\n",
            ),
            url = url
        ),
    );
    assert_eq!(code, 0, "{out}");
    let full = &step(&show, "full")["outputs"];
    let path = full["path"].as_str().unwrap().to_owned();
    let name = std::path::Path::new(&path).file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("backup-") && name.ends_with(".dump") && name.len() == "backup-YYYYMMDD-HHMMSS.dump".len(),
        "{name}"
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(full["bytes"], bytes.len());
    // A full copy of the database is for its owner only (issue 9).
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(std::path::Path::new(&path)), 0o600, "backup file mode");
    assert_eq!(mode(&env.path("backups")), 0o700, "backup folder mode");
    let sum = std::process::Command::new("sha256sum").arg(&path).output().unwrap();
    assert_eq!(
        full["sha256"].as_str().unwrap(),
        String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap()
    );
    let schema = std::fs::read_to_string(step(&show, "schema")["outputs"]["path"].as_str().unwrap()).unwrap();
    assert!(
        schema.contains("CREATE TABLE public.orders") && !schema.contains("COPY public.orders"),
        "schema-only dump has data"
    );
    assert!(!out.contains(PASSWORD));

    // Damage one table, change another, then restore only the damaged one.
    c.psql("delete from orders where id > 100; update orders set total = -1");
    c.psql("insert into users values (2, 'bob')");
    let (code, show, out) = exec(
        &env,
        "d2",
        &format!(
            "  - id: repair\n    type: pg-restore\n    with: {{ url: \"{url}\", from: \"{path}\", tables: [public.orders] }}\n"
        ),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "repair")["outputs"]["tables"], serde_json::json!({"public.orders": 500}));
    assert_eq!(c.psql("select count(*), min(total) from orders"), "500|1");
    assert_eq!(c.psql("select count(*) from users"), "2", "an unrelated table was changed");
    assert_eq!(c.psql("select count(*) from pg_policies where tablename = 'orders'"), "1", "the policy was lost");

    // A restore that fails is rolled back whole.
    c.psql("delete from orders where id > 400");
    c.psql("create or replace function no() returns trigger language plpgsql as $$ begin if new.id = 450 then raise exception 'boom'; end if; return new; end $$; create trigger t before insert on orders for each row execute function no()");
    let (code, show, _) = exec(
        &env,
        "d3",
        &format!(
            "  - id: repair\n    type: pg-restore\n    with: {{ url: \"{url}\", from: \"{path}\", tables: [public.orders] }}\n"
        ),
    );
    assert_eq!(code, 1);
    assert!(step(&show, "repair")["error"].as_str().unwrap().starts_with("the restore was rolled back:"));
    assert_eq!(c.psql("select count(*) from orders"), "400");
}

#[test]
fn sslmode_require_encrypts_and_refuses_plain_servers() {
    let c = Cluster::start_tls();
    let plain = Cluster::start();
    let env = Env::new();
    let q = "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()";
    let body = format!(
        concat!(
            "  - id: tls\n    type: sql\n    with: {{ url: \"{tls}?sslmode=require\", query: \"{q}\" }}\n",
            "  - id: prefer\n    type: sql\n    with: {{ url: \"{tls}\", query: \"{q}\" }}\n",
            "  - id: disabled\n    type: sql\n    with: {{ url: \"{tls}?sslmode=disable\", query: \"{q}\" }}\n",
            "  - id: no_tls_server\n    type: sql\n    continue_on_error: true\n    with: {{ url: \"{plain}?sslmode=require\", query: \"select 1\" }}\n",
        ),
        tls = c.url(),
        plain = plain.url(),
        q = q
    );
    let (code, show, out) = exec(&env, "t1", &body);
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "tls")["outputs"]["rows"][0]["ssl"], true);
    assert!(step(&show, "tls")["outputs"]["rows"][0]["version"].as_str().unwrap().starts_with("TLSv1."));
    assert_eq!(
        step(&show, "prefer")["outputs"]["rows"][0]["ssl"],
        true,
        "sslmode=prefer (the default) uses TLS when offered"
    );
    assert_eq!(step(&show, "disabled")["outputs"]["rows"][0]["ssl"], false);
    let err = step(&show, "no_tls_server")["error"].as_str().unwrap().to_owned();
    assert!(err.starts_with(&format!("cannot connect to postgres@127.0.0.1:{}/postgres: ", plain.port)), "{err}");
}

/// The README's main job, end to end, as whoever runs the tests (root on CI) and, when that
/// is root, as the unprivileged `postgres` user too.
#[test]
fn drill_example_runs_as_root_and_as_a_normal_user() {
    let drill = crate::support::repo_root().join("examples/drill.yaml");
    let run = |as_user: Option<&str>| {
        let env = Env::new();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let work = env.path("work");
        let playbook = if as_user.is_some() { env.path("drill.yaml") } else { drill.clone() };
        let args = [
            "exec".to_owned(),
            playbook.display().to_string(),
            "--yes".to_owned(),
            "--run-id".to_owned(),
            "drill".to_owned(),
            "-i".to_owned(),
            format!("source_port={}", free_port()),
            "-i".to_owned(),
            format!("restore_port={}", free_port()),
            "-i".to_owned(),
            format!("workdir={}", work.display()),
        ];
        let mut cmd = match as_user {
            Some(u) => {
                // The build tree may not be readable by that user: run a copy of the binary.
                let copy = env.path("runbook");
                std::fs::copy(crate::support::bin(), &copy).unwrap();
                let drill_copy = env.path("drill.yaml");
                std::fs::copy(&drill, &drill_copy).unwrap();
                std::fs::set_permissions(&drill_copy, std::fs::Permissions::from_mode(0o644)).unwrap();
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", u, "--"]).arg(copy);
                c
            }
            None => std::process::Command::new(crate::support::bin()),
        };
        cmd.args(&args).current_dir(env.dir.path()).env("RUNBOOK_STATE_DIR", env.path(".runbook"));
        let out = crate::support::finish(cmd.output().unwrap());
        assert_eq!(out.code, 0, "drill as {as_user:?}: {}", out.all());
        let show = env.show("drill");
        assert_eq!(status(&show, "verify_data"), "succeeded");
        assert_eq!(status(&show, "verify_rls"), "succeeded");
        assert_eq!(status(&show, "cleanup"), "succeeded");
        let report = step(&show, "report")["outputs"]["stdout"].as_str().unwrap().to_owned();
        assert!(report.contains("1500 of 1500 rows back, 0 lost"), "{report}");
        assert!(!work.exists(), "the drill left {}", work.display());
    };
    run(None);
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        run(Some("postgres"));
    }
}

// Issue 10: the restore drill's `trigger: always` cleanup dropped `public` on a scratch URL
// that was production's. With `not_same_as` the step refuses before it connects.
#[test]
fn destructive_steps_refuse_a_target_that_is_the_source() {
    let c = Cluster::start();
    c.psql("create table orders (id int primary key); insert into orders select generate_series(1, 5)");
    c.psql("create database scratch");
    let prod = c.url();
    // The same database written another way: `localhost` for 127.0.0.1, other options.
    let prod_again = format!("postgresql://postgres:{PASSWORD}@localhost:{}/postgres?connect_timeout=5", c.port);
    let scratch = format!("postgresql://postgres:{PASSWORD}@127.0.0.1:{}/scratch", c.port);
    let env = Env::new();
    let body = |scratch_url: &str| {
        format!(
            concat!(
                "  - id: restore\n    type: shell\n    with: {{ command: [\"false\"] }}\n",
                "  - id: restore_table\n    type: pg-restore\n    needs: [restore]\n    trigger: always\n",
                "    with: {{ url: \"{s}\", from: missing.dump, not_same_as: \"{p}\" }}\n",
                "  - id: cleanup\n    type: sql\n    needs: [restore]\n    trigger: always\n",
                "    with: {{ url: \"{s}\", not_same_as: \"{p}\", query: \"drop schema public cascade\" }}\n",
            ),
            s = scratch_url,
            p = prod
        )
    };
    let (code, show, out) = exec(&env, "same", &body(&prod_again));
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&show, "cleanup"), "failed");
    let err = step(&show, "cleanup")["error"].as_str().unwrap().to_owned();
    assert!(err.starts_with(&format!("refused: the target postgres@localhost:{}/postgres is", c.port)), "{err}");
    assert!(
        err.ends_with("is the database `not_same_as` names (same host, port and database); nothing was changed"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
    assert_eq!(status(&show, "restore_table"), "failed");
    assert!(step(&show, "restore_table")["error"].as_str().unwrap().starts_with("refused: "), "{show}");
    // Nothing was dropped.
    assert_eq!(c.psql("select count(*) from orders"), "5");

    // A different database on the same server is fine: the cleanup runs there only.
    c.psql_db("scratch", "create table junk (id int)");
    let (code, show, out) = exec(&env, "distinct", &body(&scratch));
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&show, "cleanup"), "succeeded", "{out}");
    assert_eq!(c.psql_db("scratch", "select count(*) from pg_namespace where nspname = 'public'"), "0");
    assert_eq!(c.psql("select count(*) from orders"), "5");
}

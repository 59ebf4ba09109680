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
            "  - id: script\n    type: sql\n    needs: [rows]\n    with: {{ url: \"{url}\", query: \"update orders set note = 'x'; select count(*) as n from orders where note = 'x'\", mode: write }}\n",
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

/// A `mode: read` query (the default) cannot change anything, whatever its first word:
/// each of these starts like a read, writes, and must fail with no row changed.
#[test]
fn sql_read_mode_changes_nothing_whatever_the_text_says() {
    let c = Cluster::start();
    c.psql("create table orders (id int primary key, total int); insert into orders select g, g from generate_series(1, 10) g");
    c.psql("create function purge() returns int language sql as $$ delete from orders returning 1 $$");
    c.psql("create sequence s");
    let env = Env::new();
    let url = c.url();
    let writes = [
        ("explain_delete", "explain analyze delete from orders"),
        ("function", "select purge()"),
        ("select_into", "select * into copy_of_orders from orders"),
        ("cte_delete", "with d as (delete from orders returning *) select count(*) from d"),
        ("nextval", "select nextval('s')"),
    ];
    let mut body = String::new();
    for (id, q) in writes {
        body.push_str(&format!(
            "  - id: {id}\n    type: sql\n    continue_on_error: true\n    with: {{ url: \"{url}\", query: \"{q}\" }}\n"
        ));
    }
    body.push_str(&format!(
        "  - id: script\n    type: sql\n    continue_on_error: true\n    with: {{ url: \"{url}\", query: \"select 1; delete from orders\" }}\n"
    ));
    body.push_str(&format!(
        "  - id: read\n    type: sql\n    with: {{ url: \"{url}\", query: \"select count(*) as n from orders\", expect: {{ rows: [{{ n: 10 }}] }} }}\n"
    ));
    body.push_str(&format!(
        "  - id: write\n    type: sql\n    needs: [read]\n    with: {{ url: \"{url}\", query: \"delete from orders where id > 5\", mode: write }}\n"
    ));
    let (code, show, out) = exec(&env, "ro", &body);
    assert_eq!(code, 0, "{out}");
    for (id, _) in writes {
        assert_eq!(status(&show, id), "failed", "{id}: {out}");
        assert_eq!(
            step(&show, id)["error"],
            format!(
                "postgres@127.0.0.1:{}/postgres: the query tried to change data, but this step runs read-only (`mode: read`, the default); nothing was changed",
                c.port
            ),
            "{id}"
        );
    }
    assert!(out.contains("hint: if the query is meant to write, set `mode: write`"), "{out}");
    assert!(
        step(&show, "script")["error"].as_str().unwrap().ends_with("a `mode: read` query must be one statement"),
        "{}",
        step(&show, "script")["error"]
    );
    // The data proves it: only the `mode: write` step changed anything.
    assert_eq!(c.psql("select count(*), sum(total) from orders"), "5|15");
    assert_eq!(c.psql("select count(*) from pg_class where relname = 'copy_of_orders'"), "0");
    assert_eq!(c.psql("select last_value, is_called from s"), "1|f");
    // Read steps are idempotent (re-run after a crash), write steps are not.
    let plan = env.run(&["plan", "ro.yaml", "--output", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap_or_default();
    let idem = |id: &str| {
        plan["levels"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l.as_array().into_iter().flatten())
            .find(|s| s["id"] == id)
            .map(|s| s["idempotent"].clone())
    };
    assert_eq!(idem("read"), Some(serde_json::json!(true)), "{plan}");
    assert_eq!(idem("write"), Some(serde_json::json!(false)), "{plan}");
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
    c.psql("alter table orders add constraint small check (id < 450) not valid");
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

fn restore(env: &Env, run_id: &str, url: &str, dump: &str, tables: &str) -> (i32, serde_json::Value, String) {
    exec(
        env,
        run_id,
        &format!(
            "  - id: r\n    type: pg-restore\n    with: {{ url: \"{url}\", from: \"{dump}\", tables: {tables} }}\n"
        ),
    )
}

/// Mixed-case names, foreign keys inside and outside the set, triggers, sequences, and
/// names that try to carry SQL; every success is checked by the data.
#[test]
fn pg_restore_names_keys_triggers_and_injection() {
    let c = Cluster::start();
    c.psql(concat!(
        "create table orders (id int primary key, total int);",
        "create table \"Orders\" (id int primary key, total int);",
        "create table customers (id serial primary key, name text);",
        "create table order_lines (id int primary key, customer_id int not null references customers, note text);",
        "create table invoices (id int primary key, order_id int references \"Orders\");",
        "create table audit (n serial, what text);",
        "insert into orders select g, g * 10 from generate_series(1, 10) g;",
        "insert into \"Orders\" select g, g * 100 from generate_series(1, 3) g;",
        "insert into customers (name) select 'c' || g from generate_series(1, 5) g;",
        "insert into order_lines select g, g % 5 + 1, 'orig-' || g from generate_series(1, 20) g;",
        "insert into invoices values (1, 1);",
    ));
    // Triggers added after the data: an audit row per insert, a note rewritten on insert,
    // one already disabled (it must stay disabled), one ALWAYS (it must stay ALWAYS).
    c.psql(concat!(
        "create function log() returns trigger language plpgsql as $$ begin insert into public.audit (what) values (tg_table_name || ' ' || new.id); return new; end $$;",
        "create function touch() returns trigger language plpgsql as $$ begin new.note := 'touched'; return new; end $$;",
        "create trigger customers_log after insert on customers for each row execute function log();",
        "create trigger lines_touch before insert on order_lines for each row execute function touch();",
        "create trigger lines_log after insert on order_lines for each row execute function log();",
        "alter table order_lines disable trigger lines_log;",
        "create trigger \"Customers Always\" after insert on customers for each row execute function log();",
        "alter table customers enable always trigger \"Customers Always\";",
    ));
    let env = Env::new();
    let url = c.url();
    let (code, show, out) = exec(
        &env,
        "dump",
        &format!("  - id: d\n    type: pg-dump\n    with: {{ url: \"{url}\", to: b/, format: custom }}\n"),
    );
    assert_eq!(code, 0, "{out}");
    let dump = step(&show, "d")["outputs"]["path"].as_str().unwrap().to_owned();

    // The incident.
    c.psql("delete from order_lines; delete from customers where id > 2; update customers set name = 'x'");
    c.psql("select setval('customers_id_seq', 1)");
    c.psql("update orders set total = 0; update \"Orders\" set total = -1");

    // Child listed before parent, both restored in one TRUNCATE and parents-first load.
    let (code, show, out) = restore(&env, "r1", &url, &dump, "[public.order_lines, customers]");
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "r")["outputs"]["tables"], serde_json::json!({"public.order_lines": 20, "customers": 5}));
    assert_eq!(step(&show, "r")["outputs"]["sequences"], serde_json::json!(["\"public\".\"customers_id_seq\""]));
    assert_eq!(c.psql("select string_agg(name, ',' order by id) from customers"), "c1,c2,c3,c4,c5");
    assert_eq!(c.psql("select count(*) from order_lines where note = 'orig-' || id"), "20", "a trigger rewrote rows");
    assert_eq!(c.psql("select count(*) from audit"), "0", "a trigger fired on restored rows");
    assert_eq!(
        c.psql(
            "select string_agg(tgname || '=' || tgenabled::text, ',' order by tgname) from pg_trigger where not tgisinternal"
        ),
        "Customers Always=A,customers_log=O,lines_log=D,lines_touch=O",
        "triggers were not put back as they were"
    );
    assert_eq!(c.psql("select nextval('customers_id_seq')"), "6", "the sequence was not set back");
    assert_eq!(c.psql("select sum(total) from orders"), "0", "a table outside the set changed");
    // The triggers work again after the restore.
    c.psql("insert into customers (name) values ('new')");
    assert_eq!(c.psql("select count(*) from audit"), "2");

    // An unquoted name folds to lower case, as in SQL: `public.Orders` is `orders`.
    let (code, show, out) = restore(&env, "r2", &url, &dump, "[public.Orders]");
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "r")["outputs"]["tables"], serde_json::json!({"public.Orders": 10}));
    assert_eq!(c.psql("select sum(total) from orders"), "550");
    assert_eq!(c.psql("select sum(total) from \"Orders\""), "-3", "the mixed-case table was touched");

    // "Orders" is referenced by invoices, which is not listed: refused, nothing emptied.
    let (code, show, out) = restore(&env, "r3", &url, &dump, "['public.\"Orders\"']");
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        step(&show, "r")["error"],
        "table invoices references \"public\".\"Orders\" (foreign key \"invoices_order_id_fkey\"), and is not in `tables`"
    );
    assert!(out.contains("hint: add invoices to `tables` so both are restored together"), "{out}");
    assert_eq!(c.psql("select count(*) from invoices"), "1");
    assert_eq!(c.psql("select sum(total) from \"Orders\""), "-3");

    // With the referencing table in the set, it works.
    let (code, _, out) = restore(&env, "r4", &url, &dump, "['public.\"Orders\"', invoices]");
    assert_eq!(code, 0, "{out}");
    assert_eq!(c.psql("select sum(total) from \"Orders\""), "600");
    assert_eq!(c.psql("select count(*) from invoices"), "1");

    // A name that is not in the dump.
    let (code, show, _) = restore(&env, "r5", &url, &dump, "[public.nope]");
    assert_eq!(code, 1);
    let err = step(&show, "r")["error"].as_str().unwrap().to_owned();
    assert!(err.starts_with("table \"public\".\"nope\" is not in the dump"), "{err}");
    assert!(err.contains("public.Orders") && err.contains("public.order_lines"), "{err}");

    // Injection attempts: in the playbook (refused before anything runs) and through an
    // input (refused at run time); either way no SQL runs.
    env.write(
        "r6.yaml",
        &format!("apiVersion: runbook/v1\nname: r6\nsteps:\n  - id: r\n    type: pg-restore\n    with: {{ url: \"{url}\", from: \"{dump}\", tables: ['orders; drop table customers'] }}\n"),
    );
    let r = env.run(&["exec", "r6.yaml", "--run-id", "r6"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.all().contains("unexpected `;`"), "{}", r.all());
    env.write(
        "inj.yaml",
        &format!(
            "apiVersion: runbook/v1\nname: inj\ninputs:\n  tables: {{ type: list }}\nsteps:\n  - id: r\n    type: pg-restore\n    with: {{ url: \"{url}\", from: \"{dump}\", tables: \"{{{{ inputs.tables }}}}\" }}\n"
        ),
    );
    for (i, evil) in
        ["orders\"; drop table customers; --", "public.orders, customers cascade", "x.\"y\".z"].iter().enumerate()
    {
        let run_id = format!("inj{i}");
        let r =
            env.run(&["exec", "inj.yaml", "--run-id", &run_id, "-i", &format!("tables=[{}]", serde_json::json!(evil))]);
        assert_eq!(r.code, 1, "{}", r.all());
        assert!(
            step(&env.show(&run_id), "r")["error"].as_str().unwrap().starts_with("`with.tables.0`: "),
            "{}",
            r.all()
        );
    }
    assert_eq!(c.psql("select count(*) from customers"), "6", "an injection got through");

    // Triggers can be asked to fire (then they run once per restored row).
    c.psql("truncate audit");
    let (code, _, out) = exec(
        &env,
        "r7",
        &format!(
            "  - id: r\n    type: pg-restore\n    with: {{ url: \"{url}\", from: \"{dump}\", tables: [customers, order_lines], triggers: fire }}\n"
        ),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(c.psql("select count(*) from audit"), "10", "customers_log and the ALWAYS trigger, 5 rows each");
    assert_eq!(c.psql("select count(*) from order_lines where note = 'touched'"), "20");
}

/// A LATIN1 database round-trips byte for byte (table restore and whole plain dump), and
/// a dump cut short is rolled back, never half committed.
#[test]
fn pg_restore_latin1_bytes_and_truncated_dumps() {
    let c = Cluster::start();
    c.psql("create database l1 encoding 'LATIN1' lc_collate 'C' lc_ctype 'C' template template0");
    c.psql("create database l2 encoding 'LATIN1' lc_collate 'C' lc_ctype 'C' template template0");
    // Every non-ASCII LATIN1 character, in a mixed-case, non-ASCII table name too.
    c.psql_db("l1", "create table \"Caf\u{e9}\" (id int primary key, s text); insert into \"Caf\u{e9}\" select g, repeat(chr(g), 3) || ' ' || g from generate_series(160, 255) g");
    c.psql_db("l1", "create table big (id int primary key, pad text); insert into big select g, repeat(md5(g::text), 4) from generate_series(1, 30000) g");
    let fingerprint = |db: &str| {
        c.psql_db(
            db,
            "select md5(string_agg(encode(convert_to(s, 'LATIN1'), 'hex'), ',' order by id)) from \"Caf\u{e9}\"",
        )
    };
    let before = fingerprint("l1");
    assert_eq!(
        c.psql_db("l1", "select encode(convert_to(s, 'LATIN1'), 'hex') from \"Caf\u{e9}\" where id = 233"),
        "e9e9e920323333"
    );
    let env = Env::new();
    let base = c.url();
    let base = base.strip_suffix("/postgres").unwrap();
    let (l1, l2) = (format!("{base}/l1"), format!("{base}/l2"));
    let (code, show, out) = exec(
        &env,
        "d",
        &format!(
            concat!(
                "  - id: custom\n    type: pg-dump\n    with: {{ url: \"{l1}\", to: c.dump, format: custom }}\n",
                "  - id: plain\n    type: pg-dump\n    with: {{ url: \"{l1}\", to: p.sql }}\n",
            ),
            l1 = l1
        ),
    );
    assert_eq!(code, 0, "{out}");
    let custom = step(&show, "custom")["outputs"]["path"].as_str().unwrap().to_owned();
    let plain = step(&show, "plain")["outputs"]["path"].as_str().unwrap().to_owned();
    c.psql_db("l1", "update \"Caf\u{e9}\" set s = 'x'; delete from big where id > 10");

    let (code, show, out) = restore(&env, "r1", &l1, &custom, "['public.\"Caf\u{e9}\"']");
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "r")["outputs"]["tables"], serde_json::json!({"public.\"Caf\u{e9}\"": 96}));
    assert_eq!(fingerprint("l1"), before, "LATIN1 bytes changed");

    let (code, _, out) = exec(
        &env,
        "r2",
        &format!("  - id: r\n    type: pg-restore\n    with: {{ url: \"{l2}\", from: \"{plain}\" }}\n"),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(fingerprint("l2"), before, "LATIN1 bytes changed in a whole plain restore");
    assert_eq!(c.psql_db("l2", "select count(*) from big"), "30000");

    // psql fails early in a big load (a constraint the 100th row breaks): the step stops
    // pg_restore instead of waiting on its full pipe, and reports PostgreSQL's error.
    c.psql_db("l1", "alter table big add constraint small check (id < 100) not valid");
    let (code, show, out) = restore(&env, "r4", &l1, &custom, "[big]");
    assert_eq!(code, 1, "{out}");
    let err = step(&show, "r")["error"].as_str().unwrap().to_owned();
    assert!(err.contains("violates check constraint \"small\""), "{err}");
    assert_eq!(c.psql_db("l1", "select count(*) from big"), "10");
    c.psql_db("l1", "alter table big drop constraint small");

    // The same dump cut in the middle of `big`'s data: pg_restore fails part-way, and
    // nothing of the load is committed (not even the rows before the cut).
    let bytes = std::fs::read(&custom).unwrap();
    let cut = env.path("cut.dump");
    std::fs::write(&cut, &bytes[..bytes.len() * 3 / 4]).unwrap();
    let (code, show, out) = restore(&env, "r3", &l1, cut.to_str().unwrap(), "[big]");
    assert_eq!(code, 1, "{out}");
    let err = step(&show, "r")["error"].as_str().unwrap().to_owned();
    assert!(err.starts_with("the restore was rolled back: pg_restore failed:"), "{err}");
    assert_eq!(c.psql_db("l1", "select count(*) from big"), "10", "half a dump was committed");
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
                "    with: {{ url: \"{s}\", not_same_as: \"{p}\", query: \"drop schema public cascade\", mode: write }}\n",
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

/// The client tools that read or write a file themselves (pg_dump --file, pg_restore of a
/// whole dump) run in a process group of their own that is journaled, as a shell step's,
/// so that after a crash `resume` can see whether they still run.
#[test]
fn pg_tools_run_in_a_journaled_process_group() {
    let c = Cluster::start();
    c.psql("create table t (id int primary key); insert into t select generate_series(1, 10)");
    c.psql("create database copy");
    let copy = format!("{}/copy", c.url().rsplit_once('/').unwrap().0);
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        "g1",
        &format!(
            concat!(
                "  - id: dump\n    type: pg-dump\n    with: {{ url: \"{}\", to: out/, format: custom }}\n",
                "  - id: load\n    type: pg-restore\n    needs: [dump]\n    with: {{ url: \"{}\", from: \"{{{{ steps.dump.outputs.path }}}}\" }}\n",
            ),
            c.url(),
            copy
        ),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(status(&show, "load"), "succeeded");
    assert_eq!(c.psql_db("copy", "select count(*) from t"), "10");
    let journal = env.read(".runbook/runs/g1/journal.jsonl");
    for id in ["dump", "load"] {
        assert!(
            journal.lines().any(|l| l.contains("\"step_process\"") && l.contains(&format!("\"step\":\"{id}\""))),
            "no process group journaled for {id}:\n{journal}"
        );
    }
}

//! The three promises under faults and races (issue 14): no row lost or unreachable, never two
//! holders of one lock, never a drain into an outage, and every wait bounded by what the
//! operator asked. Each test reproduces one counterexample against real servers: frozen with
//! SIGSTOP, stopped, or raced.
//!
//! Tests that freeze or stop servers, or change replication, take turns (`serial`); the others
//! run beside them in databases of their own.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::{
    alive, bin, conn, federation, fingerprint, is_stopped, port_of, server, signal,
    wait_replicated, wait_until, Env, Federation, Frozen,
};
use mysql::prelude::Queryable;
use serde_json::Value;

fn fed() -> &'static Federation {
    federation("faults", 25200, 2)
}

/// Servers are shared by every test of this binary: a test that freezes or stops one runs
/// alone (`serial`), the others side by side (`calm`).
static SERVERS: RwLock<()> = RwLock::new(());

fn serial() -> RwLockWriteGuard<'static, ()> {
    SERVERS.write().unwrap_or_else(|e| e.into_inner())
}

fn calm() -> RwLockReadGuard<'static, ()> {
    SERVERS.read().unwrap_or_else(|e| e.into_inner())
}

/// The sandbox member name of a shard server port.
fn member(fed: &Federation, port: u16) -> String {
    for (shard, ports) in fed.shards() {
        for (port_of, half) in ports.iter().zip(["a", "b"]) {
            if *port_of == port {
                return format!("{shard}{half}");
            }
        }
    }
    panic!("no shard server on port {port}")
}

/// A server stopped (SIGTERM, waited for) until dropped, when `sandbox up` starts it again and
/// its replication catches up.
struct Stopped(&'static Federation);

impl Stopped {
    fn new(fed: &'static Federation, member: &str) -> Stopped {
        let pid = fed.server_pid(member);
        signal(pid, libc::SIGTERM);
        wait_until("the server to stop", || !alive(pid));
        Stopped(fed)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let out = Command::new(bin())
            .args(["sandbox", "up", "--dir"])
            .arg(&self.0.dir)
            .env(
                "SHARDCTL_SANDBOX_CACHE",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-cache"),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restarting the sandbox: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A world with both shards registered.
fn world(name: &str) -> Env {
    let env = Env::new(fed(), name);
    env.register_shards();
    env
}

fn journal_entries(env: &Env, user: u64) -> u64 {
    env.ring()
        .exec_first("SELECT COUNT(*) FROM migrations WHERE user_id = ?", (user,))
        .unwrap()
        .unwrap()
}

fn audit_actions(env: &Env) -> Vec<String> {
    env.ring()
        .query("SELECT action FROM audit_log ORDER BY audit_id")
        .unwrap()
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(start.elapsed() < within, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f`, prints how long it took (the figures the closing note quotes), and fails the test
/// if it took `limit` or more.
#[allow(clippy::print_stderr)] // the figure, shown with --nocapture
fn timed<T>(what: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    eprintln!("{what}: {took:?}");
    assert!(took < limit, "{what} took {took:?}, the bound is {limit:?}");
    out
}

// ---- Rows lost or unreachable ----

#[test]
fn a_config_without_tables_or_with_one_twice_is_refused() {
    let _turn = calm();
    let env = Env::new(fed(), "config_tables");
    let good = std::fs::read_to_string(&env.config).unwrap();
    let (head, _) = good.split_once("[[shards.tables]]").unwrap();
    let twice =
        good.clone() + "[[shards.tables]]\nname = \"photos\"\nowner_column = \"owner_id\"\n";
    for (what, text) in [("no tables", head.to_string()), ("photos twice", twice)] {
        let path = env.dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let r = common::run_with_config(&path, &["shard", "list", "--format", "json"], &[]);
        assert_eq!(r.code, 2, "{what}: {}", r.stderr);
        assert_eq!(r.json()["error"]["kind"], "config", "{what}");
        assert!(
            r.stderr.contains("[[shards.tables]]"),
            "{what}: {}",
            r.stderr
        );
    }
}

#[test]
fn rows_no_migration_explains_are_refused_not_deleted() {
    let _turn = calm();
    let env = world("strays");
    let user = 7001;
    let home = env.seed_user(user, 40);
    let away = env.other_shard(&home);
    let away_ports = env.shard_ports(&away);
    let home_ports = env.shard_ports(&home);
    env.write_strays(away_ports[0], user, 5);
    wait_replicated(&mut conn(away_ports[0]), away_ports[1]);
    let strays = fingerprint(away_ports[0], &env.shard_db(), user);
    let rows = fingerprint(home_ports[0], &env.shard_db(), user);
    let before = env.snapshot();

    // The streamed mover refuses before it changes anything, and names the rows.
    let (code, doc) = env.run_json(&["migrate", &user.to_string(), "--to", &away]);
    assert_eq!(code, 4, "{doc}");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("photos: 5") && msg.contains("--clear-destination"),
        "{msg}"
    );
    assert_eq!(fingerprint(away_ports[0], &env.shard_db(), user), strays);
    assert_eq!(fingerprint(home_ports[0], &env.shard_db(), user), rows);
    assert_eq!(env.snapshot(), before);
    assert_eq!(journal_entries(&env, user), 0);

    // The batch mover (rebalance apply) refuses that account and moves the others.
    let other = 7002;
    let other_home = env.seed_user(other, 3);
    let plan = env.write_plan(
        "plan.json",
        vec![
            serde_json::json!({"user": user, "from": home, "to": away, "rows": 46}),
            serde_json::json!({"user": other, "from": other_home, "to": env.other_shard(&other_home), "rows": 6}),
        ],
    );
    let (code, doc) = env.run_json(&["rebalance", "apply", &plan]);
    assert_eq!(code, 5, "{doc}");
    assert_eq!(doc["done"], 1, "{doc}");
    let failed = doc["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{doc}");
    assert_eq!(failed[0]["user"], user);
    assert!(failed[0]["error"]
        .as_str()
        .unwrap()
        .contains("no migration"));
    assert_eq!(fingerprint(away_ports[0], &env.shard_db(), user), strays);
    assert_eq!(env.directory(user), (home.clone(), "active".to_string()));

    // Told to, the operator's move clears them first, and the user arrives whole.
    env.run(&[
        "migrate",
        &user.to_string(),
        "--to",
        &away,
        "--clear-destination",
    ])
    .ok();
    env.assert_whole(user, &rows);
}

#[test]
fn a_shard_in_a_migration_cannot_be_removed_and_the_flip_checks_its_destination() {
    let _turn = serial();
    let env = Env::new(fed(), "remove_moving");
    env.create_app_schema();
    let shards = fed().shards();
    let add = |name: &str, ports: &[u16]| {
        let a = format!("127.0.0.1:{}", ports[0]);
        let b = format!("127.0.0.1:{}", ports[1]);
        env.run(&[
            "shard", "add", name, "--weight", "1", "--server", &a, "--server", &b,
        ])
        .ok();
    };
    add(&shards[0].0, &shards[0].1);
    let user = 7101;
    let home = env.seed_user(user, 30);
    assert_eq!(home, shards[0].0);
    add(&shards[1].0, &shards[1].1);
    let empty = shards[1].0.clone();
    let rows = fingerprint(shards[0].1[0], &env.shard_db(), user);

    let mut mover = env.migration_paused_mid_copy(user, &empty, &["--format", "json"]);
    let before = env.snapshot();
    let (code, doc) = env.run_json(&["shard", "remove", &empty]);
    assert_eq!(code, 4, "{doc}");
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unfinished migration"));
    assert_eq!(env.snapshot(), before);

    // The destination stops taking users before the flip: the flip refuses, the user stays.
    env.run(&["shard", "set-state", &empty, "readonly"]).ok();
    signal(mover.id() as i32, libc::SIGCONT);
    let code = wait_exit(&mut mover, Duration::from_secs(60));
    assert_eq!(code, 4);
    env.assert_whole(user, &rows);
    assert_eq!(env.directory(user).0, home);

    // A user placed on a shard id nobody registered is reported by doctor.
    env.ring()
        .query_drop("INSERT INTO users (user_id, shard_id) VALUES (7199, 999)")
        .unwrap();
    let (code, doc) = env.run_json(&["doctor"]);
    assert_eq!(code, 1);
    let check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "users' shards")
        .expect("a users' shards check");
    assert_eq!(check["ok"], false);
    assert!(
        check["detail"].as_str().unwrap().contains("7199"),
        "{check}"
    );
}

// ---- Two holders of one lock ----

/// Starts `lock run NAME` over a shell whose children ignore SIGTERM, and waits until the
/// lease names the command's group. Returns the holder and the pid of the TERM-proof child.
fn stubborn_lock_run(env: &Env, name: &str, ttl: &str, extra: &[&str]) -> (Child, i32) {
    let pidfile = env.dir.path().join(format!("{name}.pid"));
    let script = format!(
        "trap '' TERM; sleep 60 & echo $! > {}; wait",
        pidfile.display()
    );
    let mut args = vec!["lock", "run", name, "--ttl", ttl, "--grace", "1s"];
    args.extend(extra);
    args.extend(["--", "sh", "-c", &script]);
    let holder = env.spawn(&args, &[]);
    wait_until("the command's pid file", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
    });
    let child: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the lease to name the command's group", || {
        env.json(&["lock", "show", name])["lease"]["metadata"]["command_pgid"].is_u64()
    });
    (holder, child)
}

/// Ends a stubborn `lock run`: the holder by SIGKILL, then its command's whole group.
fn kill_stubborn(env: &Env, name: &str, mut holder: Child) {
    let pgid = env.json(&["lock", "show", name])["lease"]["metadata"]["command_pgid"]
        .as_i64()
        .expect("the command's group");
    signal(holder.id() as i32, libc::SIGKILL);
    holder.wait().unwrap();
    signal(-(pgid as i32), libc::SIGKILL);
    wait_until("the command's group to be gone", || !alive(pgid as i32));
}

#[test]
fn a_lost_lock_stops_the_commands_whole_process_group() {
    let _turn = calm();
    let env = Env::new(fed(), "lock_group");
    let (mut holder, grandchild) = stubborn_lock_run(&env, "grouped", "3s", &[]);
    env.run(&["lock", "force-release", "grouped", "--reason", "test"])
        .ok();
    let code = wait_exit(&mut holder, Duration::from_secs(10));
    assert_eq!(code, 1, "lock run reports the lost lock");
    wait_until("the grandchild to be stopped with its group", || {
        !alive(grandchild)
    });
}

#[test]
fn a_dead_lock_run_holder_is_waited_out_while_its_command_may_run() {
    let _turn = calm();
    let env = Env::new(fed(), "lock_dead_run");
    let (mut holder, grandchild) = stubborn_lock_run(&env, "stubborn", "4s", &[]);
    let t1 = env.json(&["lock", "show", "stubborn"])["lease"]["token"]
        .as_u64()
        .unwrap();
    signal(holder.id() as i32, libc::SIGKILL);
    holder.wait().unwrap();
    // Its GET_LOCK session is gone, but its command ignores the death signal and runs on.
    assert!(alive(grandchild));
    let (code, doc) = env.run_json(&["lock", "acquire", "stubborn", "--ttl", "5s"]);
    assert_eq!(code, 3, "{doc}");
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("may still be running"));
    // Once the lease has expired, the lock is taken over.
    let got = env.json(&[
        "lock", "acquire", "stubborn", "--ttl", "5s", "--wait", "10s",
    ]);
    assert!(got["token"].as_u64().unwrap() > t1);
    signal(grandchild, libc::SIGKILL);

    // A group that is provably gone (same host, no process left in it) is no reason to wait.
    env.run(&["lock", "release", "stubborn"]).ok();
    let (holder, grandchild) = stubborn_lock_run(&env, "stubborn", "60s", &[]);
    kill_stubborn(&env, "stubborn", holder);
    assert!(!alive(grandchild));
    let start = Instant::now();
    let got = env.json(&["lock", "acquire", "stubborn", "--ttl", "5s"]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(got["took_over"], true);
}

#[test]
fn an_unreachable_holder_is_waited_out_and_account_locks_fall_over() {
    let _turn = serial();
    let env = world("lock_unreachable");
    let user = 7300;
    let home = env.seed_user(user, 5);
    let name = format!("ACCOUNT_{user}_REPORT");
    let (mut holder, grandchild) = stubborn_lock_run(&env, &name, "6s", &[]);
    let shown = env.json(&["lock", "show", &name]);
    let holder_server = shown["lease"]["holder_server"]
        .as_str()
        .unwrap()
        .to_string();
    let holder_port = port_of(&holder_server);
    assert!(env.shard_ports(&home).contains(&holder_port));
    let acquired_at = Instant::now();
    {
        // The runbook's path: the account's server stops (still `online` in the ring).
        let _down = Stopped::new(fed(), &member(fed(), holder_port));
        // A second job falls over to the shard's other server for its GET_LOCK, finds the
        // lease, and cannot ask the holder's server: the holder may be alive, so it waits.
        let (code, doc) = env.run_json(&["lock", "acquire", &name, "--ttl", "5s"]);
        assert_eq!(code, 3, "{doc}");
        assert!(doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not answer"));
        // The holder cannot confirm its lease either, and stops its command before expiry.
        assert_eq!(wait_exit(&mut holder, Duration::from_secs(15)), 1);
        wait_until("the command to stop", || !alive(grandchild));
        assert!(acquired_at.elapsed() < Duration::from_secs(8));
        let got = env.json(&["lock", "acquire", &name, "--ttl", "5s", "--wait", "15s"]);
        assert_eq!(got["took_over"], true);
        let shown = env.json(&["lock", "show", &name]);
        assert_ne!(shown["lease"]["token"], Value::Null);
        env.run(&["lock", "release", &name]).ok();
        // With one server of the shard dead but `online`, its accounts still migrate.
        let away = env.other_shard(&home);
        let moved = env.json(&["migrate", &user.to_string(), "--to", &away]);
        assert_eq!(moved["state"], "done", "{moved}");
    }
}

// ---- Drains into an outage, and waits that are not bounded ----

/// Opens a session on `port` with a transaction holding a row of the world's shard database,
/// through no default database (`db.table`).
fn open_transaction(env: &Env, port: u16) -> mysql::Conn {
    let mut c = conn(port);
    c.query_drop("START TRANSACTION").unwrap();
    c.query_drop(format!(
        "INSERT INTO {}.favorites (owner_id, photo_id, created_at) VALUES (424242, 1, NOW())",
        env.shard_db()
    ))
    .unwrap();
    c
}

fn statuses(env: &Env) -> Vec<(u16, String)> {
    env.ring()
        .query("SELECT port, status FROM shard_servers ORDER BY port")
        .unwrap()
}

/// Starts `maintenance drain --half a --timeout 60s` and waits until `port` is draining.
fn drain_in_background(env: &Env, port: u16) -> Child {
    let drain = env.spawn(
        &[
            "maintenance",
            "drain",
            "--half",
            "a",
            "--timeout",
            "60s",
            "--format",
            "json",
        ],
        &[],
    );
    wait_until("the server to be draining", || {
        statuses(env).contains(&(port, "draining".into()))
    });
    drain
}

/// Waits for a background command: (exit code, its JSON document).
fn finished(mut child: Child, within: Duration) -> (i32, Value) {
    let code = wait_exit(&mut child, within);
    let out = child.wait_with_output().unwrap();
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (code, doc)
}

#[test]
fn a_session_without_a_default_database_holds_the_drain() {
    let _turn = serial();
    let env = world("drain_hidden_session");
    let shards = fed().shards();
    let a1 = shards[0].1[0];
    let mut tx = open_transaction(&env, a1);
    let id: u64 = tx.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    let (code, doc) = env.run_json(&["maintenance", "drain", "--half", "a", "--timeout", "1s"]);
    assert_eq!(code, 5, "{doc}");
    assert_eq!(server(&doc, a1)["status"], "draining");
    assert!(doc["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == id));
    tx.query_drop("ROLLBACK").unwrap();
    drop(tx);
    env.json(&["maintenance", "drain", "--half", "a"]);
    env.json(&["maintenance", "restore", "--half", "a"]);
}

#[test]
fn a_drain_whose_other_half_dies_puts_its_servers_back_online() {
    let _turn = serial();
    let env = world("drain_peer_dies");
    let shards = fed().shards();
    let (a1, b1) = (shards[0].1[0], shards[0].1[1]);
    let a2 = shards[1].1[0];
    // A session holds shard1's half a; shard2's drains at once.
    let mut tx = open_transaction(&env, a1);
    let drain = drain_in_background(&env, a1);
    let started = Instant::now();
    let down = Stopped::new(fed(), &member(fed(), b1));
    let (code, doc) = finished(drain, Duration::from_secs(20));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(code, 5, "{doc}");
    assert_eq!(server(&doc, a1)["status"], "online", "{doc}");
    assert!(server(&doc, a1)["note"]
        .as_str()
        .unwrap()
        .contains("put back online"));
    assert_eq!(server(&doc, a2)["status"], "offline");
    // Routing: shard1 is served by its half a again.
    assert!(statuses(&env).contains(&(a1, "online".into())));
    tx.query_drop("ROLLBACK").unwrap();
    drop(tx);

    // A server left only draining (never stopped) comes back without a healthy peer.
    env.ring()
        .exec_drop(
            "UPDATE shard_servers SET status = 'draining' WHERE port = ?",
            (a1,),
        )
        .unwrap();
    let (code, doc) = env.run_json(&["maintenance", "restore", "--half", "a", "--timeout", "10s"]);
    assert_eq!(server(&doc, a1)["status"], "online", "{doc}");
    assert_eq!(server(&doc, a2)["status"], "online", "{doc}");
    assert_eq!(code, 5, "the dead peer is said: {doc}");
    drop(down);

    // A draining server that died is marked offline: it serves nobody.
    let tx = open_transaction(&env, a1);
    let drain = drain_in_background(&env, a1);
    let down = Stopped::new(fed(), &member(fed(), a1));
    drop(tx);
    let (code, doc) = finished(drain, Duration::from_secs(75));
    assert!(code == 5 || code == 0, "{doc}");
    assert_eq!(server(&doc, a1)["status"], "offline", "{doc}");
    drop(down);
    env.json(&["maintenance", "restore", "--half", "a"]);
    assert!(statuses(&env).iter().all(|(_, s)| s == "online"));
}

/// A server that freezes after the drain or restore logged in to it holds the command no
/// longer than what was left of `--timeout` (plus a second): every statement of the waits is
/// bounded by what is left, not by what was left at the login. (Before, a server frozen 4.5 s
/// into a 6 s drain held it for 6 s more.)
#[test]
fn a_server_frozen_mid_wait_holds_no_drain_or_restore_past_its_timeout() {
    let _turn = serial();
    let env = world("frozen_mid_wait");
    let a1 = fed().shards()[0].1[0];
    let pid = fed().server_pid(&member(fed(), a1));
    // An application session that keeps a1 from draining.
    let db = env.shard_db();
    let sleeper = std::thread::spawn(move || {
        let mut c = conn(a1);
        let _ = c.query_drop(format!("USE {db}"));
        let _ = c.query_drop("SELECT SLEEP(20)");
    });
    std::thread::sleep(Duration::from_millis(500));
    // Runs `verb --half a --timeout 6s` and freezes `pid` `after` into it: it ends within the
    // timeout (and a second or two), with one of `codes`.
    let frozen_after = |verb: &str, pid: i32, after: Duration, codes: &[i32]| {
        let started = Instant::now();
        let child = env.spawn(
            &[
                "maintenance",
                verb,
                "--half",
                "a",
                "--timeout",
                "6s",
                "--format",
                "json",
            ],
            &[],
        );
        std::thread::sleep(after);
        let frozen = Frozen::new(pid);
        let out = child.wait_with_output().unwrap();
        let took = started.elapsed();
        drop(frozen);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            took < Duration::from_secs(9),
            "{verb} --timeout 6s took {took:?}: {doc}"
        );
        assert!(codes.contains(&out.status.code().unwrap_or(-1)), "{doc}");
    };
    frozen_after("drain", pid, Duration::from_millis(4500), &[5]);
    env.json(&["maintenance", "restore", "--half", "a"]);
    // The ring frozen while the drain waits for the session: its last writes are bounded by
    // what is left too (before, they could take another --timeout).
    let ring = fed().server_pid("global");
    frozen_after("drain", ring, Duration::from_millis(2000), &[1, 5]);
    sleeper.join().unwrap();
    env.json(&["maintenance", "restore", "--half", "a"]);

    // A drained server whose replication is stopped keeps a restore waiting; frozen then, it
    // holds the restore no longer than --timeout either.
    env.json(&["maintenance", "drain", "--half", "a"]);
    conn(a1).query_drop("STOP SLAVE SQL_THREAD").unwrap();
    frozen_after("restore", pid, Duration::from_millis(5000), &[5]);
    conn(a1).query_drop("START SLAVE SQL_THREAD").unwrap();
    env.json(&["maintenance", "restore", "--half", "a"]);
    assert!(statuses(&env).iter().all(|(_, s)| s == "online"));
}

/// `doctor` with the ring frozen waits one bounded login, not one per source (the ring and two
/// ticket databases on that server cost three 5 s waits, one after another, before).
#[test]
fn doctor_with_the_ring_frozen_costs_one_login_not_one_per_source() {
    let _turn = serial();
    let env = world("frozen_ring_doctor");
    let ring = Frozen::new(fed().server_pid("global"));
    let started = Instant::now();
    let (code, doc) = env.run_json(&["doctor"]);
    let took = started.elapsed();
    drop(ring);
    assert_eq!(code, 1, "{doc}");
    assert!(took < Duration::from_secs(9), "doctor took {took:?}");
}

#[test]
fn a_frozen_server_holds_no_command_past_its_timeout() {
    let _turn = serial();
    let env = world("frozen");
    let shards = fed().shards();
    let (a1, b1) = (shards[0].1[0], shards[0].1[1]);
    // Users whose routing starts at shard1's half a server.
    let ids: Vec<String> = (7400..7432).step_by(2).map(|u| u.to_string()).collect();
    let mut args = vec!["user", "assign", "--seed", "5"];
    args.extend(ids.iter().map(String::as_str));
    let placed = env.json(&args);
    let user = placed["assigned"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["shard"] == shards[0].0.as_str())
        .map(|p| p["user"].as_u64().unwrap())
        .expect("a user on shard1");
    {
        let _frozen = Frozen::new(fed().server_pid(&member(fed(), a1)));
        // The frozen server shows as not answering; its tables cannot change while frozen.
        let before = env.snapshot();

        // `user locate` falls over to the other server within the connect timeout (5 s).
        let doc = timed(
            "user locate past a frozen server",
            Duration::from_secs(7),
            || env.json(&["user", "locate", &user.to_string()]),
        );
        assert_eq!(doc["server"]["port"], b1, "{doc}");

        // The ring falls over too: a config naming the frozen server first.
        let text = std::fs::read_to_string(&env.config).unwrap().replacen(
            &format!("servers = [\"127.0.0.1:{}\"]", fed().ring_port()),
            &format!(
                "servers = [\"127.0.0.1:{a1}\", \"127.0.0.1:{}\"]",
                fed().ring_port()
            ),
            1,
        );
        let two_rings = env.dir.path().join("two-rings.toml");
        std::fs::write(&two_rings, text).unwrap();
        timed(
            "ring fail-over past a frozen server",
            Duration::from_secs(7),
            || common::run_with_config(&two_rings, &["shard", "list"], &[]).ok(),
        );

        // Status answers within a probe's time, and fails its health gate.
        let (code, doc) = timed("maintenance status", Duration::from_secs(10), || {
            env.run_json(&["maintenance", "status"])
        });
        assert_eq!(code, 1, "{doc}");
        assert_eq!(server(&doc, a1)["reachable"], false);
        assert_eq!(server(&doc, b1)["reachable"], true);

        // The drain is refused (its shard cannot be checked) well within --timeout 10s...
        let (code, doc) = timed(
            "drain --timeout 10s, refused",
            Duration::from_secs(15),
            || env.run_json(&["maintenance", "drain", "--half", "a", "--timeout", "10s"]),
        );
        assert_eq!(code, 4, "{doc}");
        assert_eq!(env.snapshot(), before);
        // ...and with --skip-unsafe the healthy shard drains; the frozen one is left alone.
        let (code, doc) = timed(
            "drain --timeout 10s --skip-unsafe",
            Duration::from_secs(15),
            || {
                env.run_json(&[
                    "maintenance",
                    "drain",
                    "--half",
                    "a",
                    "--timeout",
                    "10s",
                    "--skip-unsafe",
                ])
            },
        );
        assert_eq!(code, 5, "{doc}");
        assert_eq!(server(&doc, a1)["status"], "online");
        assert_eq!(server(&doc, shards[1].1[0])["status"], "offline");

        // Restore brings the healthy server back and says the frozen `online` one is dead.
        let (code, doc) = timed("restore --timeout 10s", Duration::from_secs(15), || {
            env.run_json(&["maintenance", "restore", "--half", "a", "--timeout", "10s"])
        });
        assert_eq!(code, 5, "{doc}");
        assert_eq!(server(&doc, shards[1].1[0])["status"], "online");
        assert!(server(&doc, a1)["note"]
            .as_str()
            .unwrap()
            .contains("does not answer"));
    }

    // A frozen ring: `lock run --ttl 3s` stops its command once no renewal is confirmed.
    let pidfile = env.dir.path().join("ring-frozen.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let mut holder = env.spawn(
        &[
            "lock",
            "run",
            "frozen-ring",
            "--ttl",
            "3s",
            "--",
            "sh",
            "-c",
            &script,
        ],
        &[],
    );
    wait_until("the command", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| !s.trim().is_empty())
    });
    let cmd: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    {
        let _ring = Frozen::new(fed().server_pid("global"));
        let frozen_at = Instant::now();
        wait_until("the command to stop", || !alive(cmd));
        assert!(
            frozen_at.elapsed() < Duration::from_secs(5),
            "{:?}",
            frozen_at.elapsed()
        );
        assert_eq!(wait_exit(&mut holder, Duration::from_secs(10)), 1);
    }
    env.run(&["lock", "release", "frozen-ring"]);
}

#[test]
fn a_migration_blocked_on_a_frozen_server_honours_ctrl_c() {
    let _turn = serial();
    let env = world("frozen_migrate");
    let user = 7500;
    let (home, away, rows) = env.seed_move(user, 300);
    let mut mover = env.migration_paused_mid_copy(user, &away, &[]);
    let dst = env.json(&["migrate", "status", &user.to_string()])[0]["dest_server"]
        .as_str()
        .unwrap()
        .to_string();
    let dst_port = port_of(&dst);
    {
        let _frozen = Frozen::new(fed().server_pid(&member(fed(), dst_port)));
        signal(mover.id() as i32, libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        signal(mover.id() as i32, libc::SIGINT);
        let code = wait_exit(&mut mover, Duration::from_secs(20));
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(code, 1);
    }
    env.json(&["migrate", "resume", &user.to_string()]);
    env.assert_whole(user, &rows);
    assert_eq!(env.directory(user).0, home);
}

#[test]
fn restore_brings_each_server_back_as_soon_as_it_is_ready() {
    let _turn = serial();
    let env = world("restore_each");
    let shards = fed().shards();
    let (a1, a2) = (shards[0].1[0], shards[1].1[0]);
    env.json(&["maintenance", "drain", "--half", "a"]);
    conn(a1).query_drop("STOP SLAVE SQL_THREAD").unwrap();
    let (code, doc) = env.run_json(&["maintenance", "restore", "--half", "a", "--timeout", "3s"]);
    conn(a1).query_drop("START SLAVE").unwrap();
    assert_eq!(code, 5, "{doc}");
    assert_eq!(server(&doc, a1)["status"], "offline");
    assert_eq!(server(&doc, a2)["status"], "online");
    // shard2's server came back at once, not when shard1's gave up 3 s later.
    let early: Option<i64> = env
        .ring()
        .exec_first(
            "SELECT TIMESTAMPDIFF(MICROSECOND, at, UTC_TIMESTAMP(6)) FROM audit_log
             WHERE action = 'maintenance.restore' AND target = ? ORDER BY audit_id DESC LIMIT 1",
            (shards[1].0.as_str(),),
        )
        .unwrap();
    assert!(early.unwrap() > 2_000_000, "restored {early:?} µs ago");
    env.json(&["maintenance", "restore", "--half", "a"]);
}

#[test]
fn a_drain_names_the_locks_held_on_the_servers_it_drains() {
    let _turn = serial();
    let env = world("drain_locks");
    let user = 7600;
    let home = env.seed_user(user, 3);
    let name = format!("ACCOUNT_{user}_NIGHTLY");
    let (holder, grandchild) = stubborn_lock_run(&env, &name, "30s", &[]);
    let shown = env.json(&["lock", "show", &name]);
    let port = port_of(shown["lease"]["holder_server"].as_str().unwrap());
    let half = if env.shard_ports(&home)[0] == port {
        "a"
    } else {
        "b"
    };
    let doc = env.json(&["maintenance", "drain", "--half", half]);
    let locks = doc["locks"].as_array().unwrap();
    assert!(locks.iter().any(|l| l["name"] == name.as_str()), "{doc}");
    env.json(&["maintenance", "restore", "--half", half]);
    kill_stubborn(&env, &name, holder);
    // The group was killed as one; its last member may take a moment to be gone.
    wait_until("the grandchild to be gone with its group", || {
        !alive(grandchild)
    });
}

// ---- Honest results and bounded inputs ----

#[test]
fn ctrl_c_after_the_flip_says_the_user_moved_and_the_flip_is_audited() {
    let _turn = calm();
    let env = world("after_flip");
    let user = 7700;
    let (_, away, rows) = env.seed_move(user, 200);
    let mover = env.spawn(
        &[
            "migrate",
            &user.to_string(),
            "--to",
            &away,
            "--format",
            "json",
        ],
        &[("SHARDCTL_FAILPOINT_STOP", "migrate.after_flip")],
    );
    wait_until("the migration to pause after the flip", || {
        is_stopped(mover.id())
    });
    assert!(audit_actions(&env).iter().any(|a| a == "migrate.flip"));
    signal(mover.id() as i32, libc::SIGINT);
    signal(mover.id() as i32, libc::SIGCONT);
    let out = mover.wait_with_output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(5), "{doc}");
    assert_eq!(doc["to"], away.as_str());
    assert_eq!(env.directory(user).0, away);
    env.json(&["migrate", "resume", &user.to_string()]);
    env.assert_whole(user, &rows);
}

/// The clean-up after a flip waits while a peer of the source lags more than `--max-lag`:
/// `migrate resume` of a move whose source rows were kept deletes nothing while the source's
/// peer replicates 30 s late, and finishes once the peer has caught up.
#[test]
fn a_kept_sources_clean_up_waits_while_its_peer_lags() {
    let _turn = serial();
    let env = world("lagging_cleanup");
    let user = 7900;
    let (from, to, rows) = env.seed_move(user, 3_000);
    let kept = env.json(&[
        "migrate",
        &user.to_string(),
        "--to",
        &to,
        "--cleanup",
        "later",
    ]);
    assert_eq!(kept["state"], "flipped", "{kept}");
    let ports = env.shard_ports(&from);
    let (src, peer) = (ports[(user % 2) as usize], ports[1 - (user % 2) as usize]);
    struct Undelay(u16);
    impl Drop for Undelay {
        fn drop(&mut self) {
            let _ = conn(self.0)
                .query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE");
        }
    }
    let undelay = Undelay(peer);
    conn(peer)
        .query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 30; START SLAVE")
        .unwrap();
    // Something for the peer to be late with.
    conn(src)
        .query_drop(format!(
            "CREATE TABLE {}.lag_marker (i INT)",
            env.shard_db()
        ))
        .unwrap();
    wait_until("the source's peer to lag", || {
        let status: Option<mysql::Row> = conn(peer).query_first("SHOW SLAVE STATUS").unwrap();
        status
            .and_then(|r| r.get::<Option<u64>, _>("Seconds_Behind_Master").flatten())
            .is_some_and(|lag| lag > 1)
    });
    let mut resume = env.spawn(
        &["migrate", "resume", &user.to_string(), "--max-lag", "1"],
        &[],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        resume.try_wait().unwrap().is_none(),
        "the clean-up did not wait"
    );
    let left: u64 = fingerprint(src, &env.shard_db(), user)
        .iter()
        .map(|(_, n, _)| n)
        .sum();
    assert!(left > 0, "rows were deleted while the peer lagged");
    drop(undelay);
    assert_eq!(wait_exit(&mut resume, Duration::from_secs(60)), 0);
    assert_eq!(env.directory(user).0, to);
    env.assert_whole(user, &rows);
}

#[test]
fn a_live_migration_is_in_progress_not_interrupted() {
    let _turn = calm();
    let env = world("in_progress");
    let user = 7800;
    let (_, away, rows) = env.seed_move(user, 200);
    let mut mover = env.migration_paused_mid_copy(user, &away, &[]);
    let (code, doc) = env.run_json(&["migrate", "resume", "--all"]);
    assert_eq!(code, 0, "{doc}");
    let running = doc["in_progress"].as_array().unwrap();
    assert!(running.iter().any(|r| r["user"] == user), "{doc}");
    assert_eq!(doc["failed"].as_array().unwrap().len(), 0);
    let (code, doc) = env.run_json(&["migrate", &user.to_string(), "--to", &away]);
    assert_eq!(code, 3, "{doc}");
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("in progress"));
    signal(mover.id() as i32, libc::SIGCONT);
    assert_eq!(wait_exit(&mut mover, Duration::from_secs(60)), 0);
    env.assert_whole(user, &rows);
}

/// A plan moving each of `users` to the shard it is not on.
fn plan_to_the_other_shard(env: &Env, users: &[u64], file: &str) -> String {
    let placed: Vec<(u64, String)> = users.iter().map(|&u| (u, env.directory(u).0)).collect();
    let moves: Vec<Value> = placed
        .iter()
        .map(|(u, home)| serde_json::json!({"user": u, "from": home, "to": env.other_shard(home), "rows": 3}))
        .collect();
    env.write_plan(file, moves)
}

#[test]
fn concurrent_applies_count_each_others_moves_as_done_never_failed() {
    let _turn = calm();
    let env = world("apply_race");
    let users: Vec<u64> = (7900..7940).collect();
    for &u in &users {
        env.seed_user(u, 2);
    }
    // The winner flips its first batch and stops there, holding its locks.
    let plan = plan_to_the_other_shard(&env, &users, "plan0.json");
    let winner = env.spawn(
        &[
            "rebalance",
            "apply",
            &plan,
            "--jobs",
            "1",
            "--format",
            "json",
        ],
        &[("SHARDCTL_FAILPOINT_STOP", "migrate.after_flip")],
    );
    wait_until("the winner to flip a batch", || is_stopped(winner.id()));
    let (code, doc) = env.run_json(&["rebalance", "apply", &plan, "--lock-ttl", "5s"]);
    signal(winner.id() as i32, libc::SIGCONT);
    let (wcode, wdoc) = finished(winner, Duration::from_secs(120));
    for (code, doc) in [(code, &doc), (wcode, &wdoc)] {
        assert_eq!(doc["failed"].as_array().unwrap().len(), 0, "{doc}");
        assert_eq!(code, 0, "{doc}");
    }
    assert!(doc["already_done"].as_u64().unwrap() >= 1, "{doc}");
    // Two applies of one plan started together, a few rounds back and forth: every move is
    // done by one and counted as already done by the other, none is a failure.
    for round in 1..=3 {
        let plan = plan_to_the_other_shard(&env, &users, &format!("plan{round}.json"));
        let a = env.spawn(
            &[
                "rebalance",
                "apply",
                &plan,
                "--jobs",
                "2",
                "--format",
                "json",
            ],
            &[],
        );
        let b = env.spawn(
            &[
                "rebalance",
                "apply",
                &plan,
                "--jobs",
                "2",
                "--format",
                "json",
            ],
            &[],
        );
        let ((ca, da), (cb, db)) = (
            finished(a, Duration::from_secs(120)),
            finished(b, Duration::from_secs(120)),
        );
        for (code, doc) in [(ca, &da), (cb, &db)] {
            assert_eq!(
                doc["failed"].as_array().unwrap().len(),
                0,
                "round {round}: {doc}"
            );
            assert_eq!(code, 0, "round {round}: {doc}");
            assert_eq!(
                doc["done"].as_u64().unwrap() + doc["already_done"].as_u64().unwrap(),
                users.len() as u64,
                "round {round}: {doc}"
            );
        }
        assert_eq!(
            da["done"].as_u64().unwrap() + db["done"].as_u64().unwrap(),
            users.len() as u64
        );
    }
}

#[test]
fn a_ttl_out_of_range_is_refused_everywhere() {
    let _turn = calm();
    let env = Env::new(fed(), "ttl_range");
    for args in [
        vec!["rebalance", "apply", "--lock-ttl", "0s"],
        vec!["migrate", "resume", "--all", "--lock-ttl", "0s"],
        vec!["migrate", "1", "--to", "shard1", "--lock-ttl", "0s"],
        vec!["lock", "acquire", "x", "--ttl", "0s"],
        vec!["lock", "run", "x", "--ttl", "30d", "--", "true"],
    ] {
        let before = env.snapshot();
        let mut all = args.clone();
        all.extend(["--format", "json"]);
        let r = env.run(&all);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.json()["error"]["kind"], "usage");
        assert!(r.stderr.contains("ttl must be between"), "{}", r.stderr);
        assert_eq!(env.snapshot(), before);
    }
}

#[test]
fn concurrent_assigns_of_the_same_ids_in_other_orders_place_each_user_once() {
    let _turn = calm();
    let env = world("assign_race");
    let ids: Vec<String> = (100_000..115_000).map(|u| u.to_string()).collect();
    let forward = env.dir.path().join("forward.txt");
    let backward = env.dir.path().join("backward.txt");
    std::fs::write(&forward, ids.join("\n")).unwrap();
    let mut rev = ids.clone();
    rev.reverse();
    std::fs::write(&backward, rev.join("\n")).unwrap();
    for round in 0..3 {
        if round > 0 {
            env.ring()
                .query_drop("DELETE FROM users WHERE user_id >= 100000")
                .unwrap();
        }
        let a = env.spawn(
            &[
                "user",
                "assign",
                "--file",
                forward.to_str().unwrap(),
                "--format",
                "json",
            ],
            &[],
        );
        let b = env.spawn(
            &[
                "user",
                "assign",
                "--file",
                backward.to_str().unwrap(),
                "--format",
                "json",
            ],
            &[],
        );
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert_eq!(
            a.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&a.stderr)
        );
        assert_eq!(
            b.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&b.stderr)
        );
        let da: Value = serde_json::from_slice(&a.stdout).unwrap();
        let db: Value = serde_json::from_slice(&b.stdout).unwrap();
        let placed =
            da["assigned"].as_array().unwrap().len() + db["assigned"].as_array().unwrap().len();
        assert_eq!(
            placed,
            ids.len(),
            "round {round}: each user placed by exactly one run"
        );
        let n: Option<u64> = env
            .ring()
            .query_first("SELECT COUNT(*) FROM users WHERE user_id >= 100000")
            .unwrap();
        assert_eq!(n, Some(ids.len() as u64));
    }
    // Every placed user is in the audit log, batch by batch.
    let audited: Option<u64> = env
        .ring()
        .query_first(
            "SELECT CAST(SUM(JSON_VALUE(details, '$.assigned')) AS UNSIGNED) FROM audit_log WHERE action = 'user.assign'",
        )
        .unwrap();
    assert_eq!(audited, Some(3 * ids.len() as u64));
}

#[test]
fn an_id_file_that_is_not_one_is_refused_at_once_and_quoted_briefly() {
    let _turn = calm();
    let env = Env::new(fed(), "assign_bounded");
    let before = env.snapshot();
    let start = Instant::now();
    let r = env.run(&["user", "assign", "--file", "/dev/zero", "--format", "json"]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("longer than"), "{}", r.stderr);
    let huge = env.dir.path().join("huge.txt");
    std::fs::write(&huge, format!("1\n{}\n", "x".repeat(3_000))).unwrap();
    let r = env.run(&["user", "assign", "--file", huge.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.len() < 300, "{} bytes of error", r.stderr.len());
    // With stderr closed, the exit code still says what happened.
    let mut cmd = Command::new(bin());
    cmd.args(["user", "assign", "--file", huge.to_str().unwrap()])
        .env("SHARDCTL_CONFIG", &env.config);
    // SAFETY: closing fd 2 in the child before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::close(2);
            Ok(())
        });
    }
    assert_eq!(cmd.status().unwrap().code(), Some(2));
    assert_eq!(env.snapshot(), before);
}

#[test]
fn sandbox_up_on_ports_in_use_names_them_and_leaves_nothing_running() {
    let _turn = calm();
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let start = Instant::now();
    let out = Command::new(bin())
        .args([
            "sandbox", "up", "--format", "json", "--shards", "1", "--dir",
        ])
        .arg(dir.path())
        .args(["--base-port", &port.to_string()])
        .env(
            "SHARDCTL_SANDBOX_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-cache"),
        )
        .output()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("port {port} is in use")), "{err}");
    assert!(err.contains("--base-port"), "{err}");
    assert!(err.contains("pid"), "names the holder: {err}");
    drop(listener);

    // A second sandbox on a running sandbox's ports writes nothing into its ring.
    let ring_port = fed().ring_port();
    let before: Vec<String> = conn(ring_port)
        .query("SELECT name FROM shardctl.shards ORDER BY name")
        .unwrap();
    let out = Command::new(bin())
        .args(["sandbox", "up", "--shards", "1", "--dir"])
        .arg(dir.path().join("second"))
        .args(["--base-port", &ring_port.to_string()])
        .env(
            "SHARDCTL_SANDBOX_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-cache"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let after: Vec<String> = conn(ring_port)
        .query("SELECT name FROM shardctl.shards ORDER BY name")
        .unwrap();
    assert_eq!(before, after);
    let status = Command::new(bin())
        .args(["sandbox", "status", "--format", "json", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap_or(Value::Null);
    assert!(
        doc["servers"]
            .as_array()
            .is_none_or(|s| s.iter().all(|s| s["running"] == false)),
        "{doc}"
    );
}

#[test]
fn the_audit_log_names_the_operator_and_the_database_login() {
    let _turn = calm();
    let env = world("audit_operator");
    // Cron sets none of the variables: the uid's login name is used.
    let out = Command::new(bin())
        .args(["shard", "set-weight", &fed().shards()[0].0, "2"])
        .env("SHARDCTL_CONFIG", &env.config)
        .env_remove("SHARDCTL_OPERATOR")
        .env_remove("SUDO_USER")
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (operator, login): (String, Option<String>) = env
        .ring()
        .query_first("SELECT operator, db_login FROM audit_log ORDER BY audit_id DESC LIMIT 1")
        .unwrap()
        .unwrap();
    assert_ne!(operator, "unknown");
    assert!(!operator.is_empty());
    assert!(login.unwrap().starts_with("root@"));

    // Control characters are refused, changing nothing; a long name is cut to fit.
    let before = env.snapshot();
    let r = env.run_with(
        &[
            "shard",
            "set-weight",
            &fed().shards()[0].0,
            "3",
            "--format",
            "json",
        ],
        &[("SHARDCTL_OPERATOR", "mallory\nroot")],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(env.snapshot(), before);
    let long = "o".repeat(300);
    env.run_with(
        &["shard", "set-weight", &fed().shards()[0].0, "3"],
        &[("SHARDCTL_OPERATOR", &long)],
    )
    .ok();
    let operator: Option<String> = env
        .ring()
        .query_first("SELECT operator FROM audit_log ORDER BY audit_id DESC LIMIT 1")
        .unwrap();
    assert_eq!(operator.unwrap().len(), 255);

    // lock run is audited like acquire and release.
    env.run(&["lock", "run", "audited", "--ttl", "5s", "--", "true"])
        .ok();
    let actions = audit_actions(&env);
    assert!(actions.iter().any(|a| a == "lock.run"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "lock.release"), "{actions:?}");
}

/// A batch holder paused mid-copy past its leases, swept, its accounts moved by another apply,
/// then woken: fenced out like a single mover, not one row written or lost.
#[test]
fn a_paused_batch_holder_is_fenced_out_like_a_single_one() {
    let _turn = calm();
    let env = world("paused_batch");
    let users = [7901u64, 7902, 7903];
    let mut seeded = Vec::new();
    for u in users {
        seeded.push((u, env.seed_move(u, 30)));
    }
    let moves: Vec<Value> = seeded
        .iter()
        .map(
            |(u, (from, to, _))| serde_json::json!({"user": u, "from": from, "to": to, "rows": 60}),
        )
        .collect();
    let plan = env.write_plan("paused.json", moves);
    let stale = env.spawn(
        &[
            "rebalance",
            "apply",
            &plan,
            "--jobs",
            "1",
            "--lock-ttl",
            "1s",
            "--format",
            "json",
        ],
        &[("SHARDCTL_FAILPOINT_STOP", "migrate.copy_mid")],
    );
    wait_until("the batch to pause mid-copy", || is_stopped(stale.id()));
    std::thread::sleep(Duration::from_millis(1_500));
    // The paused group's leases have expired: swept.
    let swept = env.json(&["lock", "sweep"]);
    assert!(swept["released"].as_u64().unwrap() >= 1, "{swept}");
    let done = env.json(&["rebalance", "apply", &plan]);
    assert_eq!(done["failed"].as_array().unwrap().len(), 0, "{done}");
    signal(stale.id() as i32, libc::SIGCONT);
    let out = stale.wait_with_output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "the stale holder must fail: {doc}"
    );
    let text = doc.to_string();
    assert!(
        text.contains("fenced out") || text.contains("lost"),
        "{doc}"
    );
    for (u, (_, to, rows)) in &seeded {
        assert_eq!(&env.directory(*u).0, to);
        env.assert_whole(*u, rows);
    }
}

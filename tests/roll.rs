//! Rolling maintenance on a real 3-shard federation: `maintenance roll` drains each half in
//! turn, runs the operator's command for every drained server (here an "upgrade" that really
//! stops the server and starts it again with `sandbox up`), restores, then the next half — while
//! a watcher checks every 50 ms that no shard is ever left without an online server. Failures,
//! a SIGKILL mid-roll and a second roll at once.
//!
//! Servers and their replication are shared by every test of this binary: they take turns.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{bin, conn, federation, server, wait_until, Env, Federation};
use mysql::prelude::Queryable;
use serde_json::Value;

fn fed() -> &'static Federation {
    federation("roll", 25260, 3)
}

fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn world(name: &str) -> Env {
    let env = Env::new(fed(), name);
    env.register_shards();
    let ids: Vec<String> = (1..=30).map(|u| u.to_string()).collect();
    let mut args = vec!["user", "assign", "--seed", "1"];
    args.extend(ids.iter().map(String::as_str));
    env.json(&args);
    env
}

fn log_path(env: &Env) -> PathBuf {
    env.dir.path().join("runs.log")
}

/// Lines of the command log: (port, half, what).
fn runs(env: &Env) -> Vec<(u16, String, String)> {
    std::fs::read_to_string(log_path(env))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

fn count(runs: &[(u16, String, String)], port: u16, what: &str) -> usize {
    runs.iter().filter(|r| r.0 == port && r.2 == what).count()
}

/// The "upgrade": stops the server by the pid listening on its port, waits for it to exit,
/// starts it again with `sandbox up` (which waits for replication), and logs start and end.
fn upgrade_script(env: &Env) -> String {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-cache");
    format!(
        "set -e; log={log}; echo \"$SHARDCTL_PORT $SHARDCTL_HALF start\" >> $log; \
         pid=$(ss -ltnpH \"sport = :$SHARDCTL_PORT\" | sed -n 's/.*pid=\\([0-9]*\\).*/\\1/p' | head -n 1); \
         kill \"$pid\"; \
         while [ -e /proc/$pid ] && ! grep -q ') Z' /proc/$pid/stat; do sleep 0.1; done; \
         SHARDCTL_SANDBOX_CACHE={cache} {bin} sandbox up --dir {dir} > /dev/null; \
         echo \"$SHARDCTL_PORT $SHARDCTL_HALF end\" >> $log",
        log = log_path(env).display(),
        cache = cache.display(),
        bin = bin().display(),
        dir = env.fed.dir.display(),
    )
}

/// Polls the ring every 50 ms until stopped; the shards it ever saw with no online server.
struct Watcher {
    stop: std::sync::Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Watcher {
    fn start(env: &Env) -> Watcher {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let mut ring = env.ring();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let rows: Vec<(u32, i64)> = ring
                    .query(
                        "SELECT shard_id, CAST(SUM(status = 'online') AS SIGNED) FROM shard_servers GROUP BY shard_id",
                    )
                    .unwrap();
                for (shard, online) in rows {
                    if online == 0 {
                        seen.push(format!("shard {shard} had no online server"));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        Watcher {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

fn all_ports() -> Vec<u16> {
    fed().shards().into_iter().flat_map(|(_, p)| p).collect()
}

fn half_ports(half: usize) -> Vec<u16> {
    fed().shards().into_iter().map(|(_, p)| p[half]).collect()
}

fn assert_all_online_and_replicating(env: &Env) {
    let statuses: Vec<(u16, String)> = env
        .ring()
        .query("SELECT port, status FROM shard_servers ORDER BY port")
        .unwrap();
    assert!(statuses.iter().all(|(_, s)| s == "online"), "{statuses:?}");
    for port in all_ports() {
        wait_until("replication both ways", || {
            let row: Option<mysql::Row> = conn(port).query_first("SHOW SLAVE STATUS").unwrap();
            let row = row.expect("a replica");
            let io: String = row.get("Slave_IO_Running").unwrap();
            let sql: String = row.get("Slave_SQL_Running").unwrap();
            io == "Yes" && sql == "Yes"
        });
    }
}

fn finished(child: Child) -> (i32, Value) {
    let out = child.wait_with_output().unwrap();
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), doc)
}

#[test]
fn a_roll_upgrades_every_server_once_half_a_before_half_b() {
    let _turn = serial();
    let env = world("roll_all");
    let watcher = Watcher::start(&env);
    let script = upgrade_script(&env);
    let (code, doc) = env.run_json(&["maintenance", "roll", "--exec", &script]);
    let outages = watcher.finish();
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["state"], "done");
    assert!(outages.is_empty(), "{outages:?}");
    let halves = doc["halves"].as_array().unwrap();
    assert_eq!(halves.len(), 2);
    assert_eq!(halves[0]["half"], "a");
    assert_eq!(halves[1]["half"], "b");
    for h in halves {
        for s in h["servers"].as_array().unwrap() {
            assert_eq!(s["exec"]["code"], 0, "{s}");
            assert_eq!(s["status"], "online", "{s}");
        }
    }
    // Every server got its command exactly once, and half a's all came before half b's.
    let runs = runs(&env);
    for port in all_ports() {
        assert_eq!(count(&runs, port, "start"), 1, "{port}: {runs:?}");
        assert_eq!(count(&runs, port, "end"), 1, "{port}: {runs:?}");
    }
    let last_a = runs.iter().rposition(|r| r.1 == "a").unwrap();
    let first_b = runs.iter().position(|r| r.1 == "b").unwrap();
    assert!(last_a < first_b, "{runs:?}");
    assert_all_online_and_replicating(&env);
    assert!(env.json(&["maintenance", "status"])["roll"].is_null());
    let execs: Option<u64> = env
        .ring()
        .query_first("SELECT COUNT(*) FROM audit_log WHERE action = 'maintenance.roll.exec'")
        .unwrap();
    assert_eq!(execs, Some(6));
    // The same roll again is a new one: every server gets the command again.
    let (code, _) = env.run_json(&["maintenance", "roll", "--exec", "true", "--parallel", "3"]);
    assert_eq!(code, 0);
}

#[test]
fn a_failed_command_stops_the_roll_and_a_rerun_retries_only_it() {
    let _turn = serial();
    let env = world("roll_fail");
    let bad = half_ports(1)[1];
    let fail_flag = env.dir.path().join("fail");
    std::fs::write(&fail_flag, "").unwrap();
    let script = format!(
        "echo \"$SHARDCTL_PORT $SHARDCTL_HALF start\" >> {log}; \
         if [ -e {flag} ] && [ \"$SHARDCTL_PORT\" = {bad} ]; then echo boom; exit 7; fi; \
         echo \"$SHARDCTL_PORT $SHARDCTL_HALF end\" >> {log}",
        log = log_path(&env).display(),
        flag = fail_flag.display(),
    );
    let args = ["maintenance", "roll", "--exec", &script, "--parallel", "3"];
    let (code, doc) = env.run_json(&args);
    assert_eq!(code, 5, "{doc}");
    assert_eq!(doc["state"], "failed");
    let b = &doc["halves"][1];
    let failed = server(b, bad);
    assert_eq!(failed["exec"]["code"], 7, "{doc}");
    assert_eq!(failed["status"], "offline", "left drained: {doc}");
    assert!(failed["output_tail"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l == "boom"));
    for port in half_ports(1).into_iter().filter(|p| *p != bad) {
        assert_eq!(server(b, port)["status"], "online", "{doc}");
        assert_eq!(server(b, port)["exec"]["code"], 0, "{doc}");
    }
    for port in half_ports(0) {
        assert_eq!(server(&doc["halves"][0], port)["status"], "online");
    }
    // A roll is in progress (unfinished) for `maintenance status`.
    let status = env.json(&["maintenance", "status"]);
    assert_eq!(status["roll"]["state"], "failed", "{status}");

    std::fs::remove_file(&fail_flag).unwrap();
    let before = runs(&env);
    let (code, doc) = env.run_json(&args);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["resumed"], true);
    let after = runs(&env);
    let new: Vec<_> = after[before.len()..].to_vec();
    assert_eq!(
        new,
        vec![
            (bad, "b".to_string(), "start".to_string()),
            (bad, "b".to_string(), "end".to_string())
        ]
    );
    assert_all_online_and_replicating(&env);
}

#[test]
fn a_killed_roll_picks_up_without_running_a_command_twice() {
    let _turn = serial();
    let env = world("roll_killed");
    let script = format!(
        "echo \"$SHARDCTL_PORT $SHARDCTL_HALF start\" >> {log}; sleep 1; \
         echo \"$SHARDCTL_PORT $SHARDCTL_HALF end\" >> {log}",
        log = log_path(&env).display()
    );
    let args = ["maintenance", "roll", "--exec", &script, "--format", "json"];
    let first = env.spawn(&args, &[]);
    wait_until("two commands to finish", || {
        runs(&env).iter().filter(|r| r.2 == "end").count() >= 2
    });
    // A second roll meanwhile is refused as in use, naming the first.
    let (code, doc) = env.run_json(&["maintenance", "roll", "--exec", "true"]);
    assert_eq!(code, 3, "{doc}");
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maintenance roll #"));
    assert_eq!(
        env.json(&["maintenance", "status"])["roll"]["state"],
        "running"
    );
    wait_until("a third command to run", || {
        runs(&env).iter().filter(|r| r.2 == "start").count() >= 3
    });
    // SAFETY: killing the roll this test started.
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    let _ = first.wait_with_output();
    std::thread::sleep(Duration::from_millis(1500));
    let before = runs(&env);
    let ended: Vec<u16> = before
        .iter()
        .filter(|r| r.2 == "end")
        .map(|r| r.0)
        .collect();

    let again = env.spawn(&args, &[]);
    let (code, doc) = finished(again);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["resumed"], true);
    let after = runs(&env);
    for port in all_ports() {
        assert_eq!(count(&after, port, "end"), 1, "{port}: {after:?}");
    }
    for port in ended {
        assert_eq!(
            count(&after, port, "start"),
            1,
            "{port} ran again: {after:?}"
        );
    }
    let last_a = after.iter().rposition(|r| r.1 == "a").unwrap();
    let first_b = after.iter().position(|r| r.1 == "b").unwrap();
    assert!(last_a < first_b, "{after:?}");
    assert_all_online_and_replicating(&env);
}

#[test]
fn refusals_dry_runs_and_bad_input_change_nothing() {
    let _turn = serial();
    let env = world("roll_refused");
    for args in [
        vec!["maintenance", "roll", "--exec", ""],
        vec!["maintenance", "roll", "--exec", "true", "--halves", "a,a"],
        vec!["maintenance", "roll", "--exec", "true", "--halves", "c"],
        vec!["maintenance", "roll", "--exec", "true", "--parallel", "0"],
        vec![
            "maintenance",
            "roll",
            "--exec",
            "true",
            "--exec-timeout",
            "soon",
        ],
        // Zero would drain a half and stop every command at once.
        vec![
            "maintenance",
            "roll",
            "--exec",
            "true",
            "--exec-timeout",
            "0s",
        ],
        vec![
            "maintenance",
            "roll",
            "--exec",
            "true",
            "--exec-timeout",
            "1ns",
        ],
        vec!["maintenance", "roll"],
    ] {
        let before = env.snapshot();
        let (code, doc) = env.run_json(&args);
        assert_eq!(code, 2, "{args:?}: {doc}");
        assert!(doc["error"]["message"].is_string());
        assert_eq!(env.snapshot(), before);
    }
    let before = env.snapshot();
    let (code, doc) = env.run_json(&["maintenance", "roll", "--exec", "false", "--dry-run"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["state"], "planned");
    assert_eq!(env.snapshot(), before);

    // A replica thread stopped in shard1: the drain of half a refuses, nothing runs.
    let b1 = fed().shards()[0].1[1];
    conn(b1).query_drop("STOP SLAVE SQL_THREAD").unwrap();
    let touched = env.dir.path().join("touched");
    let exec = format!("touch {}", touched.display());
    let (dry, _) = env.run_json(&["maintenance", "roll", "--exec", &exec, "--dry-run"]);
    let (code, doc) = env.run_json(&["maintenance", "roll", "--exec", &exec]);
    conn(b1).query_drop("START SLAVE").unwrap();
    assert_eq!(dry, 4);
    assert_eq!(code, 4, "{doc}");
    assert_eq!(doc["state"], "refused");
    assert!(!doc["refused"].as_array().unwrap().is_empty());
    assert!(!touched.exists());
    let statuses: Vec<String> = env
        .ring()
        .query("SELECT status FROM shard_servers")
        .unwrap();
    assert!(statuses.iter().all(|s| s == "online"));
    // A command past --exec-timeout is stopped and counts as failed.
    let start = Instant::now();
    let (code, doc) = env.run_json(&[
        "maintenance",
        "roll",
        "--exec",
        "sleep 30",
        "--halves",
        "a",
        "--exec-timeout",
        "1s",
    ]);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(code, 5, "{doc}");
    let first = &doc["halves"][0]["servers"][0];
    assert_eq!(first["exec"]["code"], 124, "{doc}");
    assert_eq!(first["exec"]["timed_out"], true);
    // A roll of another command supersedes the unfinished one and leaves nothing drained.
    let (code, doc) = env.run_json(&["maintenance", "roll", "--exec", "true", "--halves", "a"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["resumed"], false);
    let states: Vec<String> = env
        .ring()
        .query("SELECT state FROM rolls ORDER BY roll_id")
        .unwrap();
    assert_eq!(
        states.last().map(String::as_str),
        Some("done"),
        "{states:?}"
    );
    assert!(states.iter().any(|s| s == "abandoned"), "{states:?}");
    let statuses: Vec<String> = env
        .ring()
        .query("SELECT status FROM shard_servers")
        .unwrap();
    assert!(statuses.iter().all(|s| s == "online"), "{statuses:?}");
}

/// Per port, the log's starts and ends in order: never a second start before its end.
fn assert_never_two_at_once(log: &[(u16, String, String)]) {
    for port in all_ports() {
        let mut running = false;
        for r in log.iter().filter(|r| r.0 == port) {
            match r.2.as_str() {
                "start" => {
                    assert!(!running, "{port} ran twice at once: {log:?}");
                    running = true;
                }
                _ => running = false,
            }
        }
    }
}

/// A command that logs its start and end for the server it runs for (`setup` first, a sleep of
/// `secs` between).
fn logged_command(env: &Env, setup: &str, secs: u32) -> String {
    format!(
        "{setup}echo \"$SHARDCTL_PORT $SHARDCTL_HALF start\" >> {log}; sleep {secs}; \
         echo \"$SHARDCTL_PORT $SHARDCTL_HALF end\" >> {log}",
        log = log_path(env).display()
    )
}

#[test]
fn a_killed_roll_whose_command_ignores_sigterm_is_waited_for_not_run_twice() {
    let _turn = serial();
    let env = world("roll_sigterm");
    let script = logged_command(&env, "trap '' TERM INT HUP; ", 4);
    let args = common::half_a_roll(&script);
    let first = env.spawn(&args, &[]);
    wait_until("a command to start", || !runs(&env).is_empty());
    // SAFETY: killing the roll this test started; its command ignores the SIGTERM it gets.
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    let _ = first.wait_with_output();
    let (code, doc) = finished(env.spawn(&args, &[]));
    assert_eq!(code, 0, "{doc}");
    let log = runs(&env);
    assert_never_two_at_once(&log);
    for port in half_ports(0) {
        assert!(count(&log, port, "end") >= 1, "{port}: {log:?}");
    }
    assert_all_online_and_replicating(&env);
}

/// A roll frozen inside a fenced ring transaction (its restore's) holds the roll lock's fence
/// row: its successor waits for it no longer than `--timeout`, says what holds it (exit 3),
/// and once the frozen roll is gone, finishes the half. (Before, it failed after its whole
/// `--timeout` with the server's "Lock wait timeout exceeded".)
#[cfg(feature = "failpoints")]
#[test]
fn a_successor_behind_a_roll_frozen_in_a_ring_transaction_says_so_within_its_timeout() {
    let _turn = serial();
    let env = world("roll_frozen_tx");
    let script = logged_command(&env, "", 0);
    let args = common::half_a_roll(&script);
    let mut first = env.spawn(
        &args,
        &[("SHARDCTL_FAILPOINT_STOP", "restore.before_commit")],
    );
    wait_until("the roll to stop inside its restore", || {
        common::is_stopped(first.id())
    });
    // Past the roll lock's 30 s lease.
    std::thread::sleep(Duration::from_secs(31));
    let mut bounded = args.to_vec();
    bounded.extend(["--timeout", "3s"]);
    let started = Instant::now();
    let (code, doc) = finished(env.spawn(&bounded, &[]));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(code, 3, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("holds the roll lock's fence"),
        "{doc}"
    );
    // SAFETY: killing the roll this test started (frozen: SIGKILL needs no SIGCONT).
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    let _ = first.wait();
    let (code, doc) = finished(env.spawn(&args, &[]));
    assert_eq!(code, 0, "{doc}");
    assert_all_online_and_replicating(&env);
}

#[test]
fn a_roll_frozen_past_its_lock_does_nothing_more_when_woken() {
    let _turn = serial();
    let env = world("roll_frozen");
    let script = logged_command(&env, "", 2);
    let args = common::half_a_roll(&script);
    let first = env.spawn(&args, &[]);
    // Frozen while its command runs, its start journaled: not inside a ring transaction (a
    // roll frozen there holds the fence row; tests/zookeeper.rs covers that).
    wait_until("a command to start, journaled", || {
        !runs(&env).is_empty()
            && env
                .ring()
                .query_first::<u64, _>(
                    "SELECT COUNT(*) FROM roll_servers WHERE exec_pgid IS NOT NULL",
                )
                .unwrap()
                .unwrap_or(0)
                > 0
    });
    let frozen = common::Frozen::new(first.id() as i32);
    // Past the roll lock's 30 s lease: a successor takes over and finishes the half.
    std::thread::sleep(Duration::from_secs(32));
    let (code, doc) = finished(env.spawn(&args, &[]));
    assert_eq!(code, 0, "the successor finishes: {doc}");
    let before_waking = runs(&env);
    let audited = env.maintenance_audits();
    drop(frozen);
    let (code, doc) = finished(first);
    assert_ne!(code, 0, "the woken roll knows it lost its lock: {doc}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&env), before_waking, "the woken roll started nothing");
    assert_eq!(
        env.maintenance_audits(),
        audited,
        "and wrote nothing to the ring"
    );
    assert_never_two_at_once(&before_waking);
    assert_all_online_and_replicating(&env);
}

#[test]
fn a_command_that_leaves_a_daemon_holding_its_output_ends_its_step_when_it_exits() {
    let _turn = serial();
    let env = world("roll_daemon");
    let args = [
        "maintenance",
        "roll",
        "--exec",
        "sleep 31.25 & echo started",
        "--halves",
        "a",
        "--exec-timeout",
        "20s",
        "--format",
        "json",
    ];
    let start = Instant::now();
    let out = env.run(&args);
    let took = start.elapsed();
    let _ = std::process::Command::new("pkill")
        .args(["-f", "sleep 31.25"])
        .status();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("still holds its output"),
        "said: {}",
        out.stderr
    );
    // Three servers one after another: each step ends when its command exits (plus the 1 s
    // grace), not when the daemon lets go of the pipe 31 s later.
    assert!(took < Duration::from_secs(28), "took {took:?}");
    for s in out.json()["halves"][0]["servers"].as_array().unwrap() {
        assert_eq!(s["exec"]["code"], 0, "{s}");
        assert_ne!(s["exec"]["timed_out"], true, "{s}");
    }
    assert_all_online_and_replicating(&env);
}

#[test]
fn signals_to_a_roll_reach_its_commands_and_it_journals_and_exits() {
    let _turn = serial();
    let env = world("roll_signals");
    for (script, signals) in [
        ("sleep 60", 1),
        ("trap '' TERM INT HUP; while :; do sleep 0.2; done", 2),
    ] {
        let exec = format!(
            "echo \"$SHARDCTL_PORT $SHARDCTL_HALF start\" >> {log}; {script}",
            log = log_path(&env).display()
        );
        let args = [
            "maintenance",
            "roll",
            "--exec",
            &exec,
            "--halves",
            "a",
            "--format",
            "json",
        ];
        std::fs::write(log_path(&env), "").unwrap();
        let roll = env.spawn(&args, &[]);
        wait_until("a command to start", || !runs(&env).is_empty());
        let start = Instant::now();
        for _ in 0..signals {
            // SAFETY: signalling the roll this test started.
            unsafe { libc::kill(roll.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(300));
        }
        let (code, doc) = finished(roll);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(code, 5, "{doc}");
        let status = env.json(&["maintenance", "status"]);
        let journaled: Vec<&Value> = status["roll"]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == "exec_failed")
            .collect();
        assert_eq!(journaled.len(), 1, "{status}");
        assert!(
            journaled[0]["exit_code"].as_i64().unwrap() > 128,
            "{status}"
        );
        assert_eq!(runs(&env).len(), 1, "no other command started");
        // The signal stopped the commands, not the restore: the servers whose command never
        // ran serve again; the one whose command was stopped stays drained.
        let offline: Vec<&Value> = status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] != "online")
            .collect();
        assert_eq!(offline.len(), 1, "{status}");
        env.json(&["maintenance", "restore", "--half", "a"]);
    }
    assert_all_online_and_replicating(&env);
}

/// A roll whose ring freezes stops within its bounds (each ring statement at most --timeout,
/// the lock's lease at most), saying so, instead of waiting out the connection's 5 minute read
/// timeout; no server's command runs twice.
#[test]
fn a_roll_whose_ring_freezes_stops_within_its_bounds() {
    let _turn = serial();
    let env = world("roll_ring_frozen");
    let script = logged_command(&env, "", 1);
    let mut args = common::half_a_roll(&script).to_vec();
    args.extend(["--timeout", "8s"]);
    let mut roll = env.spawn(&args, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let ring = common::Frozen::new(fed().server_pid("global"));
    let started = Instant::now();
    let ended = loop {
        if let Some(status) = roll.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = roll.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    drop(ring);
    let status =
        ended.unwrap_or_else(|| panic!("the roll still ran {took:?} after the ring froze"));
    assert_ne!(status.code(), Some(0));
    assert!(took < Duration::from_secs(45), "{took:?}");
    assert_never_two_at_once(&runs(&env));
}

//! Maintenance drains and restores on a real 4-shard federation with master-master replication
//! in every shard: refusals that change nothing, routing to the other half, sessions that hold a
//! drain, restores that wait for replication to catch up, idempotent re-runs, the audit trail.
//!
//! Replication threads and sessions are per server, not per test database, so the tests of this
//! binary take turns (`serial`).
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{conn, federation, server, Env, Federation};
use mysql::prelude::Queryable;
use serde_json::Value;

fn fed() -> &'static Federation {
    federation("maintenance", 25100, 4)
}

fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Restarts replication on the server when dropped, so a failed assertion does not leave the
/// next test a broken shard.
struct Replication(u16);

impl Replication {
    fn stop(port: u16, what: &str) -> Replication {
        conn(port).query_drop(format!("STOP SLAVE {what}")).unwrap();
        Replication(port)
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        // Checked: a server left without replication would fail the next test for no reason
        // of its own (not while a failing test unwinds: that would abort).
        let restarted = conn(self.0).query_drop("START SLAVE");
        if !std::thread::panicking() {
            restarted.expect("restarting replication after the test");
        }
    }
}

/// A world with the four shards registered and `users` users placed on them.
fn world(name: &str, users: u64) -> Env {
    let env = Env::new(fed(), name);
    env.register_shards();
    let ids: Vec<String> = (1..=users).map(|u| u.to_string()).collect();
    let mut args = vec!["user", "assign", "--seed", "3"];
    args.extend(ids.iter().map(String::as_str));
    env.json(&args);
    env
}

/// Status of every server in the ring, by port.
fn statuses(env: &Env) -> Vec<(u16, String)> {
    env.ring()
        .query("SELECT port, status FROM shard_servers ORDER BY port")
        .unwrap()
}

fn half_ports(env: &Env, half: usize) -> Vec<u16> {
    env.fed.shards().iter().map(|(_, p)| p[half]).collect()
}

#[test]
fn drain_routes_to_the_other_half_and_restore_brings_it_back() {
    let _turn = serial();
    let env = world("mt_round_trip", 40);
    let halves_a = half_ports(&env, 0);
    let halves_b = half_ports(&env, 1);

    let status = env.json(&["maintenance", "status"]);
    let servers = status["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 8);
    for s in servers {
        assert_eq!(s["status"], "online", "{s}");
        assert_eq!(s["reachable"], true, "{s}");
        assert_eq!(s["replication"]["io_running"], true, "{s}");
        assert_eq!(s["replication"]["sql_running"], true, "{s}");
        assert_eq!(s["connections"], 0, "{s}");
    }

    // A dry run checks and says what would change, and changes nothing.
    let before = env.snapshot();
    let (code, dry) = env.run_json(&["maintenance", "drain", "--half", "a", "--dry-run"]);
    assert_eq!(code, 0, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["refused"], Value::Array(vec![]));
    for p in &halves_a {
        assert_eq!(server(&dry, *p)["status"], "online");
        assert_eq!(server(&dry, *p)["note"], "would change");
    }
    assert_eq!(env.snapshot(), before);

    let (code, drained) = env.run_json(&["maintenance", "drain", "--half", "a"]);
    assert_eq!(code, 0, "{drained}");
    assert_eq!(drained["half"], "a");
    assert_eq!(drained["changed"], 4);
    for p in &halves_a {
        let s = server(&drained, *p);
        assert_eq!(s["status"], "offline", "{s}");
        assert_eq!(s["host"], "127.0.0.1");
        assert!(s["shard"].as_str().unwrap().starts_with("shard"));
    }
    for (port, status) in statuses(&env) {
        let expect = if halves_a.contains(&port) {
            "offline"
        } else {
            "online"
        };
        assert_eq!(status, expect, "server {port}");
    }

    // Every user is now routed to its shard's half b.
    for user in 1..=40u64 {
        let at = env.json(&["user", "locate", &user.to_string()]);
        let port = at["server"]["port"].as_u64().unwrap() as u16;
        assert!(halves_b.contains(&port), "user {user} routed to {at}");
    }

    // Again: nothing to do, nothing changed, exit 0.
    let before = env.snapshot();
    let (code, again) = env.run_json(&["maintenance", "drain", "--half", "a"]);
    assert_eq!((code, again["changed"].as_u64()), (0, Some(0)), "{again}");
    assert_eq!(env.snapshot(), before);

    // Draining b while a is drained would leave shards with no server: refused, exit 4.
    let (code, refused) = env.run_json(&["maintenance", "drain", "--half", "b"]);
    assert_eq!(code, 4, "{refused}");
    let reasons = refused["refused"].as_array().unwrap();
    assert_eq!(reasons.len(), 4, "{refused}");
    for r in reasons {
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .contains("(half a) is offline"),
            "{r}"
        );
    }
    assert_eq!(env.snapshot(), before);

    let (code, restored) = env.run_json(&["maintenance", "restore", "--half", "a"]);
    assert_eq!(code, 0, "{restored}");
    assert_eq!(restored["changed"], 4);
    assert!(statuses(&env).iter().all(|(_, s)| s == "online"));
    let before = env.snapshot();
    let (code, again) = env.run_json(&["maintenance", "restore", "--half", "a"]);
    assert_eq!((code, again["changed"].as_u64()), (0, Some(0)), "{again}");
    assert_eq!(env.snapshot(), before);

    // Audited: who marked which shard draining, offline and online again.
    let audit = env.json(&["audit", "--since", "1h"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "maintenance.drain",
        "maintenance.offline",
        "maintenance.restore",
    ] {
        assert_eq!(
            actions.iter().filter(|x| **x == a).count(),
            4,
            "{a}: {actions:?}"
        );
    }
}

#[test]
fn a_stopped_replica_thread_on_the_other_half_blocks_the_drain() {
    let _turn = serial();
    let env = world("mt_replica", 10);
    let (_, shard2) = &env.fed.shards()[1];
    let _stopped = Replication::stop(shard2[1], "SQL_THREAD");

    let before = env.snapshot();
    let (code, doc) = env.run_json(&["maintenance", "drain", "--half", "a"]);
    assert_eq!(code, 4, "{doc}");
    let refused = doc["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{doc}");
    assert_eq!(refused[0]["shard"], "shard2");
    let reason = refused[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{} (half b)", shard2[1])) && reason.contains("SQL thread"),
        "{reason}"
    );
    assert_eq!(env.snapshot(), before, "a refused drain changed the ring");

    // --skip-unsafe drains the other shards and lists the refused one: partly done.
    let (code, doc) = env.run_json(&["maintenance", "drain", "--half", "a", "--skip-unsafe"]);
    assert_eq!(code, 5, "{doc}");
    assert_eq!(doc["refused"][0]["shard"], "shard2");
    for (name, ports) in env.fed.shards() {
        let expect = if name == "shard2" {
            "online"
        } else {
            "offline"
        };
        assert_eq!(server(&doc, ports[0])["status"], expect, "{name}");
    }
    let (code, _) = env.run_json(&["maintenance", "restore", "--half", "a"]);
    assert_eq!(code, 0);
}

#[test]
fn open_sessions_hold_the_drain_and_are_named() {
    let _turn = serial();
    let env = world("mt_sessions", 20);
    let (_, shard1) = &env.fed.shards()[0];
    let mut app = mysql::Conn::new(
        mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(shard1[0])
            .user(Some("root"))
            .db_name(Some(env.shard_db()))
            .prefer_socket(false),
    )
    .unwrap();
    let app_id = app.connection_id() as u64;
    // An application session in the middle of a transaction.
    app.query_drop("BEGIN").unwrap();
    app.query_drop("SELECT COUNT(*) FROM photos").unwrap();

    let (code, doc) = env.run_json(&["maintenance", "drain", "--half", "a", "--timeout", "1s"]);
    assert_eq!(code, 5, "{doc}");
    let held = server(&doc, shard1[0]);
    assert_eq!(held["status"], "draining", "{doc}");
    assert!(held["note"].as_str().unwrap().contains("sessions"), "{doc}");
    let sessions = doc["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{doc}");
    assert_eq!(sessions[0]["id"], app_id);
    assert_eq!(sessions[0]["user"], "root");
    assert_eq!(sessions[0]["shard"], "shard1");
    assert!(sessions[0]["host"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(sessions[0]["time"].is_u64());
    for (_, ports) in &env.fed.shards()[1..] {
        assert_eq!(server(&doc, ports[0])["status"], "offline");
    }
    // Draining already: applications are routed to half b.
    let on_shard1: Vec<u64> = env
        .ring()
        .query("SELECT user_id FROM users WHERE shard_id = (SELECT shard_id FROM shards WHERE name = 'shard1')")
        .unwrap();
    for u in on_shard1 {
        let at = env.json(&["user", "locate", &u.to_string()]);
        assert_eq!(at["server"]["port"], shard1[1], "{at}");
    }

    // Once the application lets go, the same command finishes the drain.
    app.query_drop("COMMIT").unwrap();
    drop(app);
    let (code, doc) = env.run_json(&["maintenance", "drain", "--half", "a"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(server(&doc, shard1[0])["status"], "offline");
    assert_eq!(server(&doc, shard1[0])["changed"], true);
    assert_eq!(doc["changed"], 1);
    env.run_json(&["maintenance", "restore", "--half", "a"]);
}

#[test]
fn restore_waits_for_the_replica_to_catch_up() {
    let _turn = serial();
    let env = world("mt_catch_up", 10);
    let (_, shard1) = &env.fed.shards()[0];
    let (a, b) = (shard1[0], shard1[1]);
    let (code, _) = env.run_json(&["maintenance", "drain", "--half", "a"]);
    assert_eq!(code, 0);

    // Half a's replication is down (as after an upgrade) while half b takes writes.
    let stopped = Replication::stop(a, "");
    let mut writer = conn(b);
    writer
        .query_drop(format!(
            "INSERT INTO {}.photos (photo_id, owner_id, title, taken_at, views) VALUES (900001, 1, 'written on b', NOW(), 0)",
            env.shard_db()
        ))
        .unwrap();

    // It cannot catch up in time: reported, left offline; the other shards come back.
    let (code, doc) = env.run_json(&["maintenance", "restore", "--half", "a", "--timeout", "1s"]);
    assert_eq!(code, 5, "{doc}");
    let s = server(&doc, a);
    assert_eq!(s["status"], "offline");
    assert!(s["note"].as_str().unwrap().contains("not running"), "{s}");
    for (_, ports) in &env.fed.shards()[1..] {
        assert_eq!(server(&doc, ports[0])["status"], "online");
    }

    // A restore with time to wait goes on waiting until replication runs again and has
    // applied the write, and only then brings the server back.
    let mut child = env.spawn(
        &[
            "maintenance",
            "restore",
            "--half",
            "a",
            "--timeout",
            "60s",
            "--format",
            "json",
        ],
        &[],
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "restore finished while the replica was stopped"
    );
    drop(stopped);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(server(&doc, a)["status"], "online");
    let copied: Option<String> = conn(a)
        .query_first(format!(
            "SELECT title FROM {}.photos WHERE photo_id = 900001",
            env.shard_db()
        ))
        .unwrap();
    assert_eq!(copied.as_deref(), Some("written on b"));
    assert!(statuses(&env).iter().all(|(_, s)| s == "online"));
}

#[test]
fn capacity_refuses_a_half_that_cannot_carry_the_shard() {
    let _turn = serial();
    let env = world("mt_capacity", 10);
    let (_, shard3) = &env.fed.shards()[2];
    let b = format!("127.0.0.1:{}", shard3[1]);
    env.run(&["shard", "set-capacity", "shard3", "0.5", "--server", &b])
        .ok();
    let listed = env.json(&["shard", "list"]);
    let capacity = listed[2]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["port"] == shard3[1])
        .unwrap()["capacity_qps"]
        .clone();
    assert_eq!(capacity, 0.5);

    let before = env.snapshot();
    let (code, doc) = env.run_json(&["maintenance", "drain", "--half", "a"]);
    assert_eq!(code, 4, "{doc}");
    assert_eq!(doc["refused"][0]["shard"], "shard3");
    assert!(
        doc["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("half b can carry 0.5"),
        "{doc}"
    );
    assert_eq!(env.snapshot(), before);

    env.run(&["shard", "set-capacity", "shard3", "1000000"])
        .ok();
    let (code, doc) = env.run_json(&["maintenance", "drain", "--half", "a"]);
    assert_eq!(code, 0, "{doc}");
    env.run_json(&["maintenance", "restore", "--half", "a"]);
}

#[test]
fn bad_input_changes_nothing() {
    let _turn = serial();
    let env = world("mt_bad", 5);
    let before = env.snapshot();
    for (args, code) in [
        (vec!["maintenance", "drain", "--half", "c"], 2),
        (vec!["maintenance", "drain"], 2),
        (
            vec!["maintenance", "drain", "--half", "a", "--timeout", "soon"],
            2,
        ),
        (
            vec!["maintenance", "restore", "--half", "b", "--max-lag", "-1"],
            2,
        ),
        (vec!["shard", "set-capacity", "shard1", "0"], 2),
        (vec!["shard", "set-capacity", "shard1", "lots"], 2),
        (vec!["shard", "set-capacity", "nosuch", "10"], 1),
        (
            vec![
                "shard",
                "set-capacity",
                "shard1",
                "10",
                "--server",
                "127.0.0.1:1",
            ],
            1,
        ),
        (
            vec!["shard", "set-capacity", "shard1", "10", "--dry-run"],
            0,
        ),
        (
            vec!["maintenance", "restore", "--half", "a", "--dry-run"],
            0,
        ),
    ] {
        let mut all = args.clone();
        all.extend(["--format", "json"]);
        let r = env.run(&all);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        if code != 0 {
            assert!(r.json()["error"]["message"].is_string(), "{args:?}");
            assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        }
    }
    assert_eq!(env.snapshot(), before);
}

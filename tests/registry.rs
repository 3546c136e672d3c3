//! Shards, weighted placement, routing and ticket IDs, as the operator uses them.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::collections::{HashMap, HashSet};

use common::{federation, Env, Federation};
use mysql::prelude::Queryable;

fn fed() -> &'static Federation {
    federation("registry", 24500, 2)
}

fn server(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

#[test]
fn shard_lifecycle_add_weight_state_remove() {
    let env = Env::new(fed(), "shard_lifecycle");
    env.create_app_schema();
    let ports = &fed().shards()[0].1;
    let added = env.json(&[
        "shard",
        "add",
        "big",
        "--weight",
        "3",
        "--server",
        &server(ports[0]),
        "--server",
        &server(ports[1]),
    ]);
    assert_eq!(added["changed"], true);
    let mut ring = env.ring();
    let halves: Vec<(u16, String, String)> = ring
        .query("SELECT port, half, status FROM shard_servers ORDER BY half")
        .unwrap();
    assert_eq!(
        halves,
        vec![
            (ports[0], "a".into(), "online".into()),
            (ports[1], "b".into(), "online".into())
        ]
    );

    env.json(&["shard", "set-weight", "big", "2.5"]);
    let w: Option<f64> = ring
        .query_first("SELECT weight FROM shards WHERE name = 'big'")
        .unwrap();
    assert_eq!(w, Some(2.5));
    let same = env.json(&["shard", "set-weight", "big", "2.5"]);
    assert_eq!(same["changed"], false);

    let dry = env.json(&["shard", "set-state", "big", "readonly", "--dry-run"]);
    assert_eq!(dry["changed"], true);
    let st: Option<String> = ring
        .query_first("SELECT state FROM shards WHERE name = 'big'")
        .unwrap();
    assert_eq!(st.as_deref(), Some("active"));
    env.json(&["shard", "set-state", "big", "readonly"]);
    let st: Option<String> = ring
        .query_first("SELECT state FROM shards WHERE name = 'big'")
        .unwrap();
    assert_eq!(st.as_deref(), Some("readonly"));

    // A readonly shard takes no new users: with it the only shard, there is nowhere to go.
    let r = env.run(&["user", "assign", "1", "--format", "json"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["error"]["kind"], "conflict");

    env.json(&["shard", "set-state", "big", "active"]);
    env.json(&["user", "assign", "7"]);
    let before = env.snapshot();
    let r = env.run(&["shard", "remove", "big", "--format", "json"]);
    assert_eq!(r.code, 1, "a shard with users cannot go");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("still holds"));
    assert_eq!(before, env.snapshot());

    ring.query_drop("DELETE FROM users").unwrap();
    env.json(&["shard", "remove", "big"]);
    let n: Option<u64> = ring.query_first("SELECT COUNT(*) FROM shards").unwrap();
    assert_eq!(n, Some(0));
    let actions: Vec<String> = ring
        .query("SELECT action FROM audit_log ORDER BY audit_id")
        .unwrap();
    for a in [
        "shard.add",
        "shard.set-weight",
        "shard.set-state",
        "user.assign",
        "shard.remove",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
}

#[test]
fn shard_add_checks_the_servers_unless_told_not_to() {
    let env = Env::new(fed(), "shard_add_check");
    // No application schema on the shards for this world yet.
    let ports = &fed().shards()[1].1;
    let before = env.snapshot();
    let r = env.run(&[
        "shard",
        "add",
        "s",
        "--weight",
        "1",
        "--server",
        &server(ports[0]),
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("Unknown database"), "{}", r.stderr);
    let r = env.run(&[
        "shard",
        "add",
        "s",
        "--weight",
        "1",
        "--server",
        "127.0.0.1:1",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("127.0.0.1:1"), "{}", r.stderr);
    assert_eq!(before, env.snapshot());
    env.json(&[
        "shard",
        "add",
        "s",
        "--weight",
        "1",
        "--server",
        "127.0.0.1:1",
        "--no-check",
    ]);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let env = Env::new(fed(), "bad_input");
    env.register_shards();
    let ports = &fed().shards()[0].1;
    let registered = server(ports[0]);
    let before = env.snapshot();
    #[rustfmt::skip]
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["shard", "add", "n1", "--weight", "0", "--server", "h:1", "--no-check"], 2),
        (vec!["shard", "add", "n1", "--weight", "-1", "--server", "h:1", "--no-check"], 2),
        (vec!["shard", "add", "n1", "--weight", "NaN", "--server", "h:1", "--no-check"], 2),
        (vec!["shard", "add", "n1", "--weight", "inf", "--server", "h:1", "--no-check"], 2),
        (vec!["shard", "add", "n1", "--weight", "heavy", "--server", "h:1", "--no-check"], 2),
        (vec!["shard", "add", "n1", "--weight", "1", "--server", "nohostport", "--no-check"], 2),
        (vec!["shard", "add", "n1", "--weight", "1", "--server", "h:99999", "--no-check"], 2),
        (vec!["shard", "add", "x'; DROP TABLE users; --", "--weight", "1", "--server", "h:1", "--no-check"], 2),
        (vec!["shard", "add", "n1", "--weight", "1", "--server", "h:1", "--server", "h:1", "--no-check"], 2),
        (vec!["shard", "add", "shard1", "--weight", "1", "--server", "h:1", "--no-check"], 1),
        (vec!["shard", "add", "n1", "--weight", "1", "--server", "127.0.0.1:1", "--server", &registered, "--no-check"], 1),
        (vec!["shard", "set-weight", "nosuch", "2"], 1),
        (vec!["shard", "set-weight", "shard1", "0"], 2),
        (vec!["shard", "set-state", "shard1", "broken"], 2),
        (vec!["shard", "remove", "nosuch"], 1),
        (vec!["user", "assign", "-5"], 2),
        (vec!["user", "assign", "18446744073709551616"], 2),
        (vec!["user", "assign"], 2),
        (vec!["user", "locate", "abc"], 2),
        (vec!["user", "locate", "424242"], 1),
        (vec!["id", "next", "-n", "0"], 2),
        (vec!["id", "next", "--bits", "16"], 2),
    ];
    for (args, code) in cases {
        let mut with_json = args.clone();
        with_json.extend(["--format", "json"]);
        let r = env.run(&with_json);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr.lines().count(),
            1,
            "{args:?}: one-line error, got {}",
            r.stderr
        );
        assert!(r.json()["error"]["message"].is_string(), "{args:?}");
        assert!(!r.stderr.contains("panicked"), "{args:?}");
    }
    // A file with one bad line assigns nobody.
    let file = env.dir.path().join("ids.txt");
    std::fs::write(&file, "1\n2\nthree\n4\n").unwrap();
    let r = env.run(&["user", "assign", "--file", file.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("line 3"), "{}", r.stderr);
    assert_eq!(before, env.snapshot());
    let users: Option<u64> = env
        .ring()
        .query_first("SELECT COUNT(*) FROM users")
        .unwrap();
    assert_eq!(users, Some(0));
}

#[test]
fn three_hundred_thousand_users_follow_the_weights_and_a_rerun_changes_nothing() {
    let env = Env::new(fed(), "assign_300k");
    env.create_app_schema();
    let ports: Vec<u16> = fed().shards().iter().flat_map(|(_, p)| p.clone()).collect();
    // Three shards with weights 1:2:3 (one server each is enough for placement).
    for (i, w) in ["1", "2", "3"].iter().enumerate() {
        env.json(&[
            "shard",
            "add",
            &format!("w{w}"),
            "--weight",
            w,
            "--server",
            &server(ports[i]),
        ]);
    }
    let file = env.dir.path().join("users.txt");
    let ids: String = (1..=300_000u64)
        .map(|i| format!("{}\n", i * 7919 % 1_000_003 + 1))
        .collect();
    std::fs::write(&file, &ids).unwrap();

    let first = env.json(&[
        "user",
        "assign",
        "--file",
        file.to_str().unwrap(),
        "--seed",
        "3",
    ]);
    assert_eq!(first["assigned"].as_array().unwrap().len(), 300_000);
    assert!(first["existing"].as_array().unwrap().is_empty());
    let mut ring = env.ring();
    let counts: HashMap<String, u64> = ring
        .query(
            "SELECT s.name, COUNT(*) FROM users u JOIN shards s USING (shard_id) GROUP BY s.name",
        )
        .unwrap()
        .into_iter()
        .collect();
    for (name, expected) in [("w1", 1.0 / 6.0), ("w2", 2.0 / 6.0), ("w3", 3.0 / 6.0)] {
        let share = counts[name] as f64 / 300_000.0;
        assert!(
            (share - expected).abs() < 0.005,
            "{name}: {share} vs {expected}"
        );
    }
    // The JSON agrees with the table.
    let from_json: usize = first["assigned"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["shard"] == "w3")
        .count();
    assert_eq!(from_json as u64, counts["w3"]);

    let checksum = |ring: &mut mysql::Conn| -> Option<(String, Option<i64>)> {
        ring.query_first("CHECKSUM TABLE users").unwrap()
    };
    let before = checksum(&mut ring);
    let again = env.json(&["user", "assign", "--file", file.to_str().unwrap()]);
    assert!(again["assigned"].as_array().unwrap().is_empty());
    assert_eq!(again["existing"].as_array().unwrap().len(), 300_000);
    assert_eq!(before, checksum(&mut ring));

    // A mixed batch: old users stay where they are, new ones are placed.
    let mixed = env.json(&["user", "assign", "7920", "2000000", "2000001"]);
    let new: HashSet<u64> = mixed["assigned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user"].as_u64().unwrap())
        .collect();
    assert_eq!(new, HashSet::from([2_000_000, 2_000_001]));
    assert_eq!(mixed["existing"][0]["user"], 7920);
}

#[test]
fn seeded_assignment_is_reproducible_and_dry_run_writes_nothing() {
    let a = Env::new(fed(), "seed_a");
    let b = Env::new(fed(), "seed_b");
    for env in [&a, &b] {
        env.register_shards();
    }
    let ids: Vec<String> = (1..=50).map(|i| i.to_string()).collect();
    let mut args = vec!["user", "assign", "--seed", "11"];
    args.extend(ids.iter().map(String::as_str));
    let mut dry = args.clone();
    dry.push("--dry-run");
    let before = a.snapshot();
    let planned = a.json(&dry);
    assert_eq!(planned["dry_run"], true);
    assert_eq!(before, a.snapshot());
    assert_eq!(a.json(&args)["assigned"], b.json(&args)["assigned"]);
    let after_dry = a.json(&dry);
    assert_eq!(after_dry["existing"].as_array().unwrap().len(), 50);
}

#[test]
fn locate_follows_the_routing_rule() {
    let env = Env::new(fed(), "locate");
    env.register_shards();
    env.json(&["user", "assign", "10", "11"]);
    let mut ring = env.ring();
    for user in [10u64, 11] {
        let loc = env.json(&["user", "locate", &user.to_string()]);
        let servers = loc["servers"].as_array().unwrap();
        let expected = &servers[(user % 2) as usize];
        assert_eq!(loc["server"]["port"], expected["port"], "{loc}");
        assert_eq!(loc["state"], "active");
        assert_eq!(loc["user"], user);
    }
    // Take user 10's first choice out of rotation: the other half serves it.
    let loc = env.json(&["user", "locate", "10"]);
    let first = loc["server"]["port"].as_u64().unwrap();
    ring.exec_drop(
        "UPDATE shard_servers SET status = 'draining' WHERE port = ?",
        (first,),
    )
    .unwrap();
    let moved = env.json(&["user", "locate", "10"]);
    assert_ne!(moved["server"]["port"].as_u64().unwrap(), first);
    // A server that does not answer is skipped, with the reason.
    let shard = loc["shard"].as_str().unwrap().to_string();
    ring.exec_drop(
        "UPDATE shard_servers ss JOIN shards s USING (shard_id) SET ss.status = 'online', ss.port = IF(ss.port = ?, 1, ss.port) WHERE s.name = ?",
        (first, &shard),
    )
    .unwrap();
    let loc = env.json(&["user", "locate", "10"]);
    if loc["skipped"].as_array().unwrap().is_empty() {
        assert_ne!(loc["server"]["port"], 1);
    } else {
        assert_eq!(loc["skipped"][0]["port"], 1);
        assert!(loc["server"]["port"].as_u64().unwrap() > 1);
    }
    // No online server: null, exit 1.
    ring.exec_drop("UPDATE shard_servers ss JOIN shards s USING (shard_id) SET ss.status = 'offline' WHERE s.name = ?", (&shard,)).unwrap();
    let r = env.run(&["user", "locate", "10", "--format", "json"]);
    assert_eq!(r.code, 1);
    assert!(r.json()["server"].is_null());
}

#[test]
fn ids_are_unique_and_survive_a_dead_ticket_server() {
    let env = Env::new(fed(), "ids");
    let first = env.json(&["id", "next", "-n", "1000"]);
    let second = env.json(&["id", "next", "-n", "1000"]);
    let all: Vec<u64> = first["ids"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["ids"].as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(all.len(), 2000);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 2000);
    // Both servers took part: odd ids from one, even from the other.
    assert!(all.iter().any(|i| i % 2 == 0) && all.iter().any(|i| i % 2 == 1));
    let small = env.json(&["id", "next", "--bits", "32", "-n", "3"]);
    assert_eq!(small["ids"].as_array().unwrap().len(), 3);

    // One ticket server down (nothing listens on its port): ids still come.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let broken = text.replacen(
        &format!(
            "server = \"127.0.0.1:{}\"\ndatabase = \"{}\"",
            fed().ring_port(),
            env.ticket_db('b')
        ),
        &format!(
            "server = \"127.0.0.1:1\"\ndatabase = \"{}\"",
            env.ticket_db('b')
        ),
        1,
    );
    assert_ne!(text, broken);
    std::fs::write(&env.config, broken).unwrap();
    let more = env.json(&["id", "next", "-n", "10"]);
    let more: Vec<u64> = more["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(more.len(), 10);
    assert!(more.iter().all(|i| i % 2 == 1 && !all.contains(i)));
    let doctor = env.run(&["doctor", "--format", "json"]);
    assert_eq!(doctor.code, 1);
}

/// A shard removed, or set retiring, while `user assign` is placing users takes none of them:
/// each batch holds its chosen shards' rows in share mode and finds them changed, and places
/// its users on the shards active now. (Before, a batch placed users on a shard removed a
/// moment earlier: users the directory sent to a shard that no longer existed.)
#[cfg(feature = "failpoints")]
#[test]
fn a_shard_removed_or_retired_mid_assign_takes_no_user() {
    let env = Env::new(fed(), "assign_race");
    env.create_app_schema();
    let (big, small) = (&fed().shards()[0].1, &fed().shards()[1].1);
    for (name, weight, ports) in [("big", "1000000", big), ("small", "1", small)] {
        env.json(&[
            "shard",
            "add",
            name,
            "--weight",
            weight,
            "--server",
            &server(ports[0]),
            "--server",
            &server(ports[1]),
        ]);
    }
    let changes: [(u64, &[&str]); 2] = [
        (0, &["shard", "remove", "big"]),
        (1, &["shard", "set-state", "big", "retiring"]),
    ];
    for (round, change) in changes {
        if round == 1 {
            // Back as it was: the shard again, active, holding no users.
            env.json(&[
                "shard",
                "add",
                "big",
                "--weight",
                "1000000",
                "--server",
                &server(big[0]),
                "--server",
                &server(big[1]),
            ]);
        }
        let ids: Vec<String> = (1..=50).map(|u| (round * 1000 + u).to_string()).collect();
        let mut args = vec!["user", "assign"];
        args.extend(ids.iter().map(String::as_str));
        let assign = env.spawn(&args, &[("SHARDCTL_FAILPOINT_STOP", "assign.before_batch")]);
        common::wait_until("the assignment to pause before its batch", || {
            common::is_stopped(assign.id())
        });
        env.json(change);
        common::signal(assign.id() as i32, libc::SIGCONT);
        let out = assign.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut ring = env.ring();
        let misplaced: Vec<(u64, String)> = ring
            .exec(
                "SELECT u.user_id, IFNULL(s.name, CONCAT('#', u.shard_id)) FROM users u
                 LEFT JOIN shards s USING (shard_id)
                 WHERE u.user_id BETWEEN ? AND ? AND (s.state IS NULL OR s.state <> 'active')",
                (round * 1000 + 1, round * 1000 + 50),
            )
            .unwrap();
        assert!(
            misplaced.is_empty(),
            "round {round}: users placed on a shard gone or not active: {misplaced:?}"
        );
        let placed: u64 = ring
            .exec_first(
                "SELECT COUNT(*) FROM users u JOIN shards s USING (shard_id)
                 WHERE u.user_id BETWEEN ? AND ? AND s.name = 'small'",
                (round * 1000 + 1, round * 1000 + 50),
            )
            .unwrap()
            .unwrap();
        assert_eq!(placed, 50, "round {round}");
    }
}

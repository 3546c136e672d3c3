//! Every verb that changes the federation writes an audit row, and no verb that only reads does.
//! The command tree is walked (as the generated-files test does), so a new verb fails this test
//! until it is listed here with an invocation that exercises it.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::collections::BTreeSet;

use common::{federation, Env, Federation};
use mysql::prelude::Queryable;

fn fed() -> &'static Federation {
    federation("audit_walk", 25320, 2)
}

/// Audit rows with `action`.
fn audited(env: &Env, action: &str) -> u64 {
    env.ring()
        .exec_first("SELECT COUNT(*) FROM audit_log WHERE action = ?", (action,))
        .unwrap()
        .unwrap()
}

fn all_rows(env: &Env) -> u64 {
    env.ring()
        .query_first("SELECT COUNT(*) FROM audit_log")
        .unwrap()
        .unwrap()
}

#[test]
fn every_mutating_verb_writes_an_audit_row_and_no_reading_verb_does() {
    let env = Env::new(fed(), "walk");
    // `init` audits when it changes the schema: on a ring that does not exist yet.
    env.ring()
        .query_drop(format!("DROP DATABASE {}", env.ring_db()))
        .unwrap();
    env.run(&["init"]).ok();
    assert_eq!(audited(&env, "init"), 1, "init wrote no row");
    env.register_shards();
    let (home, away, _) = env.seed_move(1, 40);
    env.json(&["user", "assign", "2", "3", "4"]);
    let plan = env.dir.path().join("plan.json");
    let plan = plan.to_str().unwrap().to_string();
    let spare = format!("127.0.0.1:{}", env.fed.ring_port());
    env.json(&["rebalance", "plan", "-o", &plan]);

    // Verbs that change nothing the ring records, with why.
    let exempt = [
        (
            "id next",
            "hands out ids from the ticket servers, as applications do",
        ),
        ("sandbox up", "starts local servers (its `init` is audited)"),
        ("sandbox down", "stops local servers"),
        ("completions", "prints a script"),
        ("cache status", "reads the routing cache (tests/cache.rs)"),
        (
            "cache invalidate",
            "deletes routing-cache entries, no ring state (tests/cache.rs)",
        ),
        (
            "cache flush",
            "retries routing-cache deletes (tests/cache.rs)",
        ),
    ];
    // Verbs that only read: run each, and no audit row may appear.
    let reading: Vec<(&str, Vec<&str>)> = vec![
        ("doctor", vec!["doctor"]),
        ("audit", vec!["audit"]),
        ("shard list", vec!["shard", "list"]),
        ("user locate", vec!["user", "locate", "1"]),
        ("migrate status", vec!["migrate", "status"]),
        ("rebalance plan", vec!["rebalance", "plan", "-o", &plan]),
        ("maintenance status", vec!["maintenance", "status"]),
        ("lock list", vec!["lock", "list"]),
        ("lock show", vec!["lock", "show", "JOB_WALK"]),
        ("guard status", vec!["guard", "status"]),
        ("top", vec!["top", "--once"]),
        (
            "sandbox status",
            vec!["sandbox", "status", "--dir", env.fed.dir.to_str().unwrap()],
        ),
    ];
    // Verbs that change something, each run to a change, with the action it must record.
    let mutating: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "shard add",
            vec![
                "shard",
                "add",
                "spare",
                "--weight",
                "1",
                "--server",
                &spare,
                "--no-check",
            ],
            "shard.add",
        ),
        (
            "shard set-weight",
            vec!["shard", "set-weight", "spare", "2"],
            "shard.set-weight",
        ),
        (
            "shard set-capacity",
            vec!["shard", "set-capacity", "spare", "500"],
            "shard.set-capacity",
        ),
        (
            "shard set-state",
            vec!["shard", "set-state", "spare", "retiring"],
            "shard.set-state",
        ),
        (
            "shard remove",
            vec!["shard", "remove", "spare"],
            "shard.remove",
        ),
        ("user assign", vec!["user", "assign", "5"], "user.assign"),
        (
            "migrate",
            vec!["migrate", "1", "--to", &away, "--keep-source"],
            "migrate",
        ),
        (
            "migrate resume",
            vec!["migrate", "resume", "1"],
            "migrate.resume",
        ),
        (
            "rebalance apply",
            vec!["rebalance", "apply", &plan],
            "rebalance.apply",
        ),
        (
            "lock acquire",
            vec!["lock", "acquire", "JOB_WALK", "--ttl", "1m"],
            "lock.acquire",
        ),
        (
            "lock release",
            vec!["lock", "release", "JOB_WALK"],
            "lock.release",
        ),
        (
            "lock force-release",
            vec!["lock", "acquire", "JOB_FORCE", "--ttl", "1m"],
            "lock.acquire",
        ),
        (
            "lock run",
            vec!["lock", "run", "JOB_RUN", "--ttl", "5s", "--", "true"],
            "lock.run",
        ),
        ("guard install", vec!["guard", "install"], "guard.install"),
        (
            "guard prune",
            vec!["guard", "prune", "--older-than", "1h"],
            "guard.prune",
        ),
        ("guard remove", vec!["guard", "remove"], "guard.remove"),
        (
            "maintenance drain",
            vec!["maintenance", "drain", "--half", "b"],
            "maintenance.drain",
        ),
        (
            "maintenance restore",
            vec!["maintenance", "restore", "--half", "b"],
            "maintenance.restore",
        ),
        (
            "maintenance roll",
            vec!["maintenance", "roll", "--exec", "true"],
            "maintenance.roll",
        ),
    ];

    let tree = common::verbs();
    let listed: BTreeSet<String> = exempt
        .iter()
        .map(|e| e.0)
        .chain(reading.iter().map(|r| r.0))
        .chain(mutating.iter().map(|m| m.0))
        .chain(["init", "lock sweep"])
        .map(String::from)
        .collect();
    assert_eq!(tree, listed, "every verb of the tree is classified here");

    for (verb, args, action) in &mutating {
        let before = audited(&env, action);
        // Not JSON: `lock run` hands everything after `--` to its command.
        let r = env.run(args);
        assert_eq!(r.code, 0, "{verb}: {} {}", r.stdout, r.stderr);
        let doc = &r.stdout;
        assert!(
            audited(&env, action) > before,
            "{verb} wrote no `{action}` row: {doc}"
        );
        if *verb == "lock force-release" {
            let before = audited(&env, "lock.force-release");
            env.json(&["lock", "force-release", "JOB_FORCE", "--reason", "the walk"]);
            assert_eq!(audited(&env, "lock.force-release"), before + 1);
        }
        if *verb == "migrate" {
            assert_eq!(env.directory(1).0, away, "moved, the source kept");
        }
    }
    // A sweep audits what it released: an expired lease first.
    env.json(&["lock", "acquire", "JOB_SWEPT", "--ttl", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    let before = audited(&env, "lock.sweep");
    env.json(&["lock", "sweep"]);
    assert!(
        audited(&env, "lock.sweep") > before,
        "lock sweep wrote no row"
    );

    for (verb, args) in &reading {
        let before = all_rows(&env);
        let (code, doc) = env.run_json(args);
        assert_eq!(code, 0, "{verb}: {doc}");
        assert_eq!(all_rows(&env), before, "{verb} wrote an audit row");
    }
    // And the dry runs of the mutating verbs change nothing, the audit log included.
    let before = env.snapshot();
    for args in [
        vec!["shard", "set-weight", &home, "3", "--dry-run"],
        vec!["user", "assign", "6", "--dry-run"],
        vec!["migrate", "2", "--to", &home, "--dry-run"],
        vec!["maintenance", "drain", "--half", "a", "--dry-run"],
        vec!["lock", "acquire", "JOB_DRY", "--ttl", "1m", "--dry-run"],
    ] {
        let (code, doc) = env.run_json(&args);
        assert_eq!(code, 0, "{args:?}: {doc}");
    }
    assert_eq!(env.snapshot(), before, "a dry run changed the ring");
}

//! Rebalancing on a real 3-shard federation: plans near the lower bound, applies that keep
//! every row (grand totals per table unchanged, each user's rows only where the directory says),
//! retiring shards emptied, failures reported while the rest goes on, re-runs and concurrent
//! runs that do nothing twice, and — with the `failpoints` feature — a crash at every named
//! point followed by a re-run.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{conn, federation, root_db, wait_replicated, Env, Federation};
use mysql::prelude::Queryable;
use serde_json::Value;
use shardctl::sandbox::demo;

fn fed() -> &'static Federation {
    federation("rebalance", 25000, 3)
}

const TABLES: [&str; 3] = ["photos", "comments", "favorites"];

/// A world with `users` users placed by weight, each with a demo account (skewed sizes: a few
/// large ones, most small). User ids start at `first`: GET_LOCK names are per server, not per
/// database, so tests running at once on the same servers must not share account ids.
fn world(name: &str, first: u64, users: u64) -> Env {
    let env = Env::new(fed(), name);
    env.register_shards();
    let ids: String = (first..first + users).map(|u| format!("{u}\n")).collect();
    let file = env.dir.path().join("users.txt");
    std::fs::write(&file, ids).unwrap();
    let placed = env.json(&[
        "user",
        "assign",
        "--file",
        file.to_str().unwrap(),
        "--seed",
        "7",
    ]);
    let mut by_shard: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for p in placed["assigned"].as_array().unwrap() {
        by_shard
            .entry(p["shard"].as_str().unwrap().to_string())
            .or_default()
            .push(p["user"].as_u64().unwrap());
    }
    let accounts: HashMap<u64, demo::Account> =
        demo::plan_accounts(&(first..first + users).collect::<Vec<_>>(), 7)
            .into_iter()
            .map(|a| (a.owner, a))
            .collect();
    for (shard, owners) in by_shard {
        let ports = env.shard_ports(&shard);
        let mine: Vec<demo::Account> = owners.iter().map(|u| accounts[u]).collect();
        demo::write_accounts(
            &mut root_db(ports[0]),
            &env.shard_db().parse().unwrap(),
            &mine,
        )
        .unwrap();
        wait_replicated(&mut conn(ports[0]), ports[1]);
    }
    env
}

/// Per table: rows and an order-independent checksum over every shard (half a of each).
fn grand_totals(env: &Env) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for (_, ports) in env.fed.shards() {
        settle(&ports);
        let mut c = conn(ports[0]);
        for t in TABLES {
            let (n, sum): (u64, u64) = c
                .query_first(format!(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(CRC32(CONCAT_WS('#', {}))), 0) AS UNSIGNED) FROM {}.{t}",
                    row_of(t),
                    env.shard_db()
                ))
                .unwrap()
                .unwrap();
            let e: &mut (u64, u64) = out.entry(t.to_string()).or_insert((0, 0));
            e.0 += n;
            e.1 = e.1.wrapping_add(sum);
        }
    }
    out
}

fn row_of(table: &str) -> &'static str {
    match table {
        "photos" => "photo_id, owner_id, title, taken_at, views",
        "comments" => "comment_id, owner_id, photo_id, body, created_at",
        _ => "owner_id, photo_id, created_at",
    }
}

/// Both servers of a shard have applied each other's writes.
fn settle(ports: &[u16]) {
    wait_replicated(&mut conn(ports[0]), ports[1]);
    wait_replicated(&mut conn(ports[1]), ports[0]);
}

/// Asserts every row lives only on the shard the directory names (on both its servers), that
/// every user is active, and that no journal entry or lock is left unfinished.
fn assert_rows_where_directory_says(env: &Env) {
    let mut ring = env.ring();
    let home: HashMap<u64, (String, String)> = ring
        .query_map(
            "SELECT u.user_id, s.name, u.state FROM users u JOIN shards s USING (shard_id)",
            |(u, s, st)| (u, (s, st)),
        )
        .unwrap()
        .into_iter()
        .collect();
    let moving: Vec<(&u64, &(String, String))> =
        home.iter().filter(|(_, (_, st))| st != "active").collect();
    let journal: Vec<(u64, u64, String)> = ring
        .query("SELECT migration_id, user_id, state FROM migrations WHERE state NOT IN ('done', 'rolled_back')")
        .unwrap();
    assert!(
        moving.is_empty(),
        "users left moving: {moving:?}; unfinished journal: {journal:?}"
    );
    for (shard, ports) in env.fed.shards() {
        settle(&ports);
        for port in &ports {
            let mut c = conn(*port);
            for t in TABLES {
                let owners: Vec<u64> = c
                    .query(format!(
                        "SELECT DISTINCT owner_id FROM {}.{t}",
                        env.shard_db()
                    ))
                    .unwrap();
                for o in owners {
                    let (h, _) = home
                        .get(&o)
                        .unwrap_or_else(|| panic!("rows of unknown user {o}"));
                    assert_eq!(
                        h, &shard,
                        "user {o} has rows in {t} on {shard} ({port}) but lives on {h}"
                    );
                }
            }
        }
    }
    let unfinished: u64 = ring
        .query_first("SELECT COUNT(*) FROM migrations WHERE state NOT IN ('done', 'rolled_back')")
        .unwrap()
        .unwrap();
    assert_eq!(unfinished, 0, "unfinished journal entries");
    let locks: u64 = ring
        .query_first("SELECT COUNT(*) FROM locks WHERE name LIKE 'ACCOUNT\\_%'")
        .unwrap()
        .unwrap();
    assert_eq!(locks, 0, "account locks left behind");
}

/// Users per shard, from `shard list`.
fn users_per_shard(env: &Env) -> BTreeMap<String, u64> {
    env.json(&["shard", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["users"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn set_weights(env: &Env, weights: &[(&str, &str)]) {
    for (shard, w) in weights {
        env.run(&["shard", "set-weight", shard, w]).ok();
    }
}

/// Runs with `--format json` whatever the exit code: (code, document).
fn json_any(env: &Env, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let r = env.run(&all);
    let v = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {} stderr {}", r.stdout, r.stderr));
    (r.code, v)
}

#[test]
fn weights_1_1_4_balance_within_tolerance_keeping_every_row() {
    let env = world("rebalance_weights", 1, 3000);
    let before = grand_totals(&env);
    set_weights(&env, &[("shard1", "1"), ("shard2", "1"), ("shard3", "4")]);
    let plan_file = env.dir.path().join("plan.json");
    let plan = env.json(&["rebalance", "plan", "-o", plan_file.to_str().unwrap()]);
    let moves = plan["moves"].as_array().unwrap();
    for m in moves {
        for key in ["user", "from", "to"] {
            assert!(m.get(key).is_some(), "{key}");
        }
        assert_eq!(m["to"], "shard3");
    }
    // The lower bound, from the counts: shards 1 and 2 hold ~1000 each and may keep 510.
    let now = users_per_shard(&env);
    let lower_bound = now["shard1"].saturating_sub(510) + now["shard2"].saturating_sub(510);
    assert!(
        moves.len() as f64 <= 1.2 * lower_bound as f64 && moves.len() as u64 >= lower_bound,
        "{} moves, lower bound {lower_bound}",
        moves.len()
    );
    assert_eq!(plan["lower_bound"].as_u64().unwrap(), lower_bound);
    // The plan file says the same, and records the directory it was made from.
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    assert_eq!(file["moves"], plan["moves"]);
    assert_eq!(file["shards"][0]["users"], now["shard1"]);

    let dry = env.json(&[
        "rebalance",
        "apply",
        plan_file.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(dry["would_move"].as_u64().unwrap(), moves.len() as u64);
    assert_eq!(users_per_shard(&env), now, "a dry run moved users");

    let applied = env.json(&[
        "rebalance",
        "apply",
        plan_file.to_str().unwrap(),
        "--jobs",
        "4",
    ]);
    assert_eq!(applied["done"].as_u64().unwrap(), moves.len() as u64);
    assert_eq!(applied["failed"].as_array().unwrap().len(), 0);
    let after = users_per_shard(&env);
    for (shard, target) in [("shard1", 500.0), ("shard2", 500.0), ("shard3", 2000.0)] {
        let n = after[shard] as f64;
        assert!(
            (n - target).abs() <= 0.02 * target,
            "{shard}: {n} users, target {target}"
        );
    }
    assert_eq!(grand_totals(&env), before, "rows were lost or doubled");
    assert_rows_where_directory_says(&env);
    assert!(env.json(&["rebalance", "plan"])["moves"]
        .as_array()
        .unwrap()
        .is_empty());

    // The same plan again does nothing twice.
    let again = env.json(&["rebalance", "apply", plan_file.to_str().unwrap()]);
    assert_eq!(again["done"], 0);
    assert_eq!(again["already_done"].as_u64().unwrap(), moves.len() as u64);
    assert_eq!(grand_totals(&env), before);
}

#[test]
fn a_retiring_shard_is_emptied_then_removed() {
    let env = world("rebalance_retire", 100_000, 900);
    let before = grand_totals(&env);
    env.run(&["shard", "set-state", "shard1", "retiring"]).ok();
    // Without a plan file: plan, then apply.
    let applied = env.json(&["rebalance", "apply", "--jobs", "3", "--per-shard", "3"]);
    assert!(applied["done"].as_u64().unwrap() > 0);
    assert_eq!(applied["failed"].as_array().unwrap().len(), 0);
    assert_eq!(users_per_shard(&env)["shard1"], 0);
    assert_eq!(grand_totals(&env), before);
    assert_rows_where_directory_says(&env);
    env.run(&["shard", "remove", "shard1"]).ok();
    assert!(!users_per_shard(&env).contains_key("shard1"));
}

#[test]
fn a_failed_move_is_reported_and_the_rest_go_on() {
    let env = world("rebalance_failure", 200_000, 300);
    let before = grand_totals(&env);
    set_weights(&env, &[("shard3", "6")]);
    let plan_file = env.dir.path().join("plan.json");
    let plan = env.json(&["rebalance", "plan", "-o", plan_file.to_str().unwrap()]);
    let victim = plan["moves"][0]["user"].as_u64().unwrap();
    // An application job holds the victim's account lock on its server.
    let (_, located) = json_any(&env, &["user", "locate", &victim.to_string()]);
    let port = located["server"]["port"].as_u64().unwrap() as u16;
    let mut app = conn(port);
    let got: Option<i64> = app
        .exec_first(
            "SELECT GET_LOCK(?, 0)",
            (format!("ACCOUNT_{victim}_MIGRATE"),),
        )
        .unwrap();
    assert_eq!(got, Some(1));
    let (code, out) = json_any(&env, &["rebalance", "apply", plan_file.to_str().unwrap()]);
    assert_eq!(code, 5, "{out}");
    let failed = out["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{out}");
    assert_eq!(failed[0]["user"], victim);
    assert!(
        failed[0]["error"].as_str().unwrap().contains("held"),
        "{out}"
    );
    assert_eq!(
        out["done"].as_u64().unwrap(),
        plan["moves"].as_array().unwrap().len() as u64 - 1
    );
    assert_eq!(grand_totals(&env), before);
    // The job ends; the same command finishes the one move left.
    drop(app);
    let again = env.json(&["rebalance", "apply", plan_file.to_str().unwrap()]);
    assert_eq!(again["done"], 1);
    assert_eq!(grand_totals(&env), before);
    assert_rows_where_directory_says(&env);
}

#[test]
fn two_applies_of_one_plan_move_each_user_once() {
    let env = world("rebalance_twice", 300_000, 1200);
    let before = grand_totals(&env);
    set_weights(&env, &[("shard1", "5")]);
    let plan_file = env.dir.path().join("plan.json");
    let plan = env.json(&["rebalance", "plan", "-o", plan_file.to_str().unwrap()]);
    let planned = plan["moves"].as_array().unwrap().len() as u64;
    assert!(planned > 100);
    let args = [
        "rebalance",
        "apply",
        plan_file.to_str().unwrap(),
        "--jobs",
        "2",
        "--format",
        "json",
    ];
    let a = env.spawn(&args, &[]);
    let b = env.spawn(&args, &[]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let doc = |o: &std::process::Output| -> Value {
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)))
    };
    let (da, db) = (doc(&a), doc(&b));
    let done = da["done"].as_u64().unwrap() + db["done"].as_u64().unwrap();
    assert_eq!(done, planned, "a: {da}\nb: {db}");
    let mut ring = env.ring();
    let twice: u64 = ring
        .query_first(
            "SELECT COUNT(*) FROM (SELECT user_id FROM migrations WHERE state = 'done' GROUP BY user_id HAVING COUNT(*) > 1) t",
        )
        .unwrap()
        .unwrap();
    assert_eq!(twice, 0, "a user was moved twice");
    assert_eq!(grand_totals(&env), before);
    assert_rows_where_directory_says(&env);
}

#[test]
fn bad_plans_and_options_change_nothing() {
    let env = world("rebalance_bad", 400_000, 60);
    set_weights(&env, &[("shard2", "3")]);
    let good = env.json(&["rebalance", "plan"]);
    let dir = env.dir.path();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let mut wrong_version = good.clone();
    wrong_version["version"] = 99.into();
    let mut unknown_shard = good.clone();
    unknown_shard["moves"][0]["to"] = "nowhere".into();
    let mut twice = good.clone();
    let first = twice["moves"][0].clone();
    twice["moves"].as_array_mut().unwrap().push(first);
    let mut hostile = good.clone();
    hostile["moves"][0]["to"] = "x'; DROP TABLE users; --".into();
    let cases: Vec<(Vec<String>, i32)> = vec![
        (vec![write("garbage.json", "not json".into())], 2),
        (vec![write("version.json", wrong_version.to_string())], 2),
        (vec![write("twice.json", twice.to_string())], 2),
        (vec![write("hostile.json", hostile.to_string())], 2),
        (vec![write("unknown.json", unknown_shard.to_string())], 1),
        (
            vec![dir.join("missing.json").to_str().unwrap().to_string()],
            2,
        ),
        (vec!["--jobs".into(), "0".into()], 2),
        (vec!["--per-shard".into(), "-1".into()], 2),
        (vec!["--tolerance".into(), "NaN".into()], 2),
        (vec!["--tolerance".into(), "101".into()], 2),
        (vec!["--tolerance".into(), "-2".into()], 2),
    ];
    let snapshot = env.snapshot();
    for (extra, code) in cases {
        let mut args: Vec<&str> = vec!["rebalance", "apply"];
        args.extend(extra.iter().map(String::as_str));
        let r = env.run(&args);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
        let (jcode, doc) = json_any(&env, &args);
        assert_eq!(jcode, code);
        assert!(doc["error"]["message"].is_string(), "{args:?}: {doc}");
        assert_eq!(env.snapshot(), snapshot, "{args:?} changed the ring");
    }
    for bad in [
        ["--tolerance", "abc"],
        ["--max-moves", "0"],
        ["--by", "bytes"],
    ] {
        let mut args = vec!["rebalance", "plan"];
        args.extend(bad);
        let r = env.run(&args);
        assert_eq!(r.code, 2, "{args:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
        let (jcode, doc) = json_any(&env, &args);
        assert_eq!(jcode, 2);
        assert!(doc["error"]["message"].is_string(), "{args:?}: {doc}");
        assert_eq!(env.snapshot(), snapshot, "{args:?} changed the ring");
    }
}

#[cfg(feature = "failpoints")]
#[test]
fn a_crash_at_every_point_of_a_batch_is_finished_by_the_next_apply() {
    let env = world("rebalance_crash", 500_000, 400);
    let before = grand_totals(&env);
    // Every named point a migration passes; the batch passes them too.
    for (i, point) in shardctl::migrate::state::FAILPOINTS.iter().enumerate() {
        // Alternate the weights so every round has moves to make.
        let heavy = ["shard1", "shard2"][i % 2];
        set_weights(
            &env,
            &[
                ("shard1", "1"),
                ("shard2", "1"),
                ("shard3", "1"),
                (heavy, "5"),
            ],
        );
        let plan_file = env.dir.path().join(format!("plan{i}.json"));
        env.json(&["rebalance", "plan", "-o", plan_file.to_str().unwrap()]);
        let crashed = env.run_with(
            &[
                "rebalance",
                "apply",
                plan_file.to_str().unwrap(),
                "--jobs",
                "1",
            ],
            &[("SHARDCTL_FAILPOINT", point)],
        );
        assert_eq!(
            crashed.code, -1,
            "{point}: the process was not killed: {}",
            crashed.stderr
        );
        let finished = env.json(&[
            "rebalance",
            "apply",
            plan_file.to_str().unwrap(),
            "--lock-ttl",
            "5s",
        ]);
        assert_eq!(
            finished["failed"].as_array().unwrap().len(),
            0,
            "{point}: {finished}"
        );
        assert_eq!(
            grand_totals(&env),
            before,
            "{point}: rows lost or doubled; {finished}"
        );
        assert_rows_where_directory_says(&env);
        assert!(
            env.json(&["rebalance", "plan"])["moves"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{point}: not balanced after the re-run"
        );
    }
}

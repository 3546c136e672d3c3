//! The ZooKeeper lock backend against a real 3-node ensemble started by the sandbox: a race of
//! 50 acquirers (also while the leader is killed), paused holders fenced out, a sweeper racing
//! a release and re-acquire, a migration and a crashed rebalance on ZooKeeper locks, the whole
//! ensemble down, and the token rule when switching backends.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::process::Child;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::{federation_with, wait_until, Env, Federation};
use mysql::prelude::Queryable;
use serde_json::Value;
use shardctl::config::ZookeeperConfig;
use shardctl::lock::zk::{four_letter, mode, ZkStore};
use shardctl::types::HostPort;

fn fed() -> &'static Federation {
    federation_with(
        "zookeeper",
        25360,
        2,
        &["--lock-backend", "zookeeper", "--zookeeper-nodes", "3"],
    )
}

/// Tests that stop ensemble nodes take this for writing; the others for reading, so no test
/// sees the ensemble lose a node it did not expect.
static ENSEMBLE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    ENSEMBLE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    ENSEMBLE.write().unwrap_or_else(|e| e.into_inner())
}

fn zk_ports() -> Vec<u16> {
    fed().zookeeper_ports()
}

fn zk_config(name: &str, session: Duration) -> ZookeeperConfig {
    fed().zookeeper_config(name, session)
}

/// A world whose locks are under `/t_<name>` in the ensemble (see `Env::keep_locks_in_zookeeper`).
fn zk_env(name: &str, session: &str) -> Env {
    let env = Env::new(fed(), name);
    env.keep_locks_in_zookeeper(session);
    env
}

fn signal(pid: u32, sig: i32) {
    unsafe { libc::kill(pid as i32, sig) };
}

fn pids() -> Vec<(u16, u32)> {
    let dir = &fed().dir;
    (1..=3)
        .map(|i| {
            let pid = std::fs::read_to_string(dir.join(format!("zookeeper{i}/zookeeper.pid")))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            (zk_ports()[i - 1], pid)
        })
        .collect()
}

fn role(port: u16) -> Option<String> {
    four_letter(
        &HostPort::new("127.0.0.1", port),
        "srvr",
        Duration::from_millis(500),
    )
    .ok()
    .and_then(|a| mode(&a).map(String::from))
}

/// Restarts whatever node is down and waits until all three serve.
fn heal() {
    let r = common::run_with_config(
        &fed().dir.join("shardctl.toml"),
        &["sandbox", "up", "--dir", fed().dir.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    wait_until("the ensemble to serve", || {
        zk_ports().iter().all(|p| role(*p).is_some())
    });
}

fn leases_in_ring(env: &Env) -> u64 {
    env.ring()
        .query_first::<u64, _>("SELECT COUNT(*) FROM locks")
        .unwrap()
        .unwrap()
}

fn lock_names(env: &Env) -> Vec<String> {
    env.json(&["lock", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect()
}

/// A `lock run` holding `name` for 30 s (sleeping), once its lock is there.
fn holding(env: &Env, name: &str) -> Child {
    let holder = env.spawn(
        &["lock", "run", name, "--ttl", "30s", "--", "sleep", "30"],
        &[],
    );
    wait_until("the lock", || lock_names(env).iter().any(|n| n == name));
    holder
}

/// 50 processes race for one lock: the winner's token, and every loser's message.
fn race(env: &Env, name: &str, during: impl FnOnce()) -> (String, u64) {
    let children: Vec<Child> = (0..50)
        .map(|i| {
            let owner = format!("racer{i}");
            env.spawn(
                &[
                    "lock", "acquire", name, "--ttl", "60s", "--owner", &owner, "--format", "json",
                ],
                &[],
            )
        })
        .collect();
    during();
    let outs: Vec<(i32, Value)> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            )
        })
        .collect();
    let winners: Vec<&Value> = outs
        .iter()
        .filter(|(c, _)| *c == 0)
        .map(|(_, d)| d)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {outs:?}");
    let winner = winners[0];
    assert_eq!(winner["backend"], "zookeeper");
    let owner = winner["owner"].as_str().unwrap().to_string();
    for (code, doc) in &outs {
        if *code == 0 {
            continue;
        }
        assert_eq!(*code, 3, "a loser exits 3: {doc}");
        let msg = doc["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&owner), "the loser names the holder: {msg}");
    }
    (owner, winner["token"].as_u64().unwrap())
}

#[test]
fn fifty_acquirers_one_winner_and_the_node_is_readable_by_stock_tools() {
    let _g = shared();
    let env = zk_env("zk_race", "6s");
    let (owner, token) = race(&env, "race", || {});
    let shown = env.json(&["lock", "show", "race"]);
    assert_eq!(shown["backend"], "zookeeper");
    assert_eq!(shown["lease"]["token"], token);
    assert_eq!(shown["lease"]["owner"], owner.as_str());
    assert_eq!(leases_in_ring(&env), 0, "no lease rows in the ring");
    // The node's JSON, as any ZooKeeper client reads it.
    let store = ZkStore::connect(&zk_config("zk_race", Duration::from_secs(6))).unwrap();
    let node = store.read("race").unwrap().unwrap();
    assert_eq!(node.token, token);
    assert_eq!(node.record.token, token, "the record carries its czxid");
    assert_eq!(node.record.owner, owner);
    assert_eq!(node.record.max_hold_seconds, 60.0);
    let cli = std::process::Command::new("/usr/share/zookeeper/bin/zkCli.sh")
        .args([
            "-server",
            &format!("127.0.0.1:{}", zk_ports()[0]),
            "get",
            "/t_zk_race/locks/race",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    let json_line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("zkCli.sh printed no record: {text}"));
    let doc: Value = serde_json::from_str(json_line).unwrap();
    for key in shardctl::lock::zk::RECORD_FIELDS {
        assert!(doc.get(key).is_some(), "{key} missing: {doc}");
    }
    assert_eq!(doc["token"], token);
    let released = env.json(&["lock", "release", "race", "--token", &token.to_string()]);
    assert_eq!(released["released"], true);
    assert_eq!(released["backend"], "zookeeper");
    assert!(lock_names(&env).is_empty());
}

#[test]
fn the_leader_killed_mid_race_still_gives_one_winner() {
    let _g = exclusive();
    let env = zk_env("zk_leader", "8s");
    let leader = pids()
        .into_iter()
        .find(|(port, _)| role(*port).as_deref() == Some("leader"))
        .expect("a leader");
    let (_, token) = race(&env, "contested", || {
        std::thread::sleep(Duration::from_millis(150));
        signal(leader.1, libc::SIGKILL);
    });
    assert!(role(leader.0).is_none(), "the leader is gone");
    // A new leader serves the winner's lock.
    assert_eq!(
        env.json(&["lock", "show", "contested"])["lease"]["token"],
        token
    );
    heal();
    // A frozen server answers nothing: the racers connected to it lose their connection with
    // their creates in flight, reconnect elsewhere, and ask for their own holder child to learn
    // whether their create happened. Still one winner.
    let first = pids()[0];
    let (_, frozen_race) = race(&env, "frozen", || {
        std::thread::sleep(Duration::from_millis(150));
        signal(first.1, libc::SIGSTOP);
    });
    signal(first.1, libc::SIGCONT);
    assert_eq!(
        env.json(&["lock", "show", "frozen"])["lease"]["token"],
        frozen_race
    );
    env.json(&["lock", "release", "frozen"]);
    wait_until("the ensemble to serve", || {
        zk_ports().iter().all(|p| role(*p).is_some())
    });
    // Tokens keep growing across the election (a new epoch in the zxid's high half).
    env.json(&["lock", "release", "contested"]);
    let after = env.json(&["lock", "acquire", "contested", "--ttl", "10s"]);
    assert!(after["token"].as_u64().unwrap() > token);
    env.json(&["lock", "release", "contested"]);
}

#[test]
fn a_paused_lock_run_holder_is_taken_over_and_stops_its_command() {
    let _g = shared();
    let env = zk_env("zk_paused_run", "2s");
    let pidfile = env.dir.path().join("cmd.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let holder = env.spawn(
        &[
            "lock", "run", "paused", "--ttl", "2s", "--grace", "2s", "--", "sh", "-c", &script,
        ],
        &[],
    );
    wait_until("the command's pid file", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    });
    let cmd_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let t1 = env.json(&["lock", "show", "paused"])["lease"]["token"]
        .as_u64()
        .unwrap();
    signal(holder.id(), libc::SIGSTOP);
    // Past its lease and its ZooKeeper session: the lock is taken over.
    std::thread::sleep(Duration::from_millis(2600));
    let got = env.json(&[
        "lock", "acquire", "paused", "--ttl", "60s", "--owner", "heir",
    ]);
    let t2 = got["token"].as_u64().unwrap();
    assert!(t2 > t1);
    assert_eq!(got["took_over"], true);
    signal(holder.id(), libc::SIGCONT);
    let out = holder.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "the stale holder must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lost"), "{err}");
    wait_until("the stale holder's command to stop", || {
        std::fs::read_to_string(format!("/proc/{cmd_pid}/stat"))
            .map_or(true, |s| s.contains(") Z "))
    });
    // The stale holder changed nothing of its successor's: same token, same record.
    let now = env.json(&["lock", "show", "paused"])["lease"].clone();
    assert_eq!(now["token"], t2);
    assert_eq!(now["owner"], "heir");
    assert_eq!(env.audited("lock.takeover", "paused"), 1);
}

#[test]
fn force_release_deletes_the_node_and_ends_the_get_lock_session() {
    let _g = shared();
    let env = zk_env("zk_force", "6s");
    env.register_shards();
    env.json(&["user", "assign", "42"]);
    let holder = holding(&env, "ACCOUNT_42_REPORT");
    let shown = env.json(&["lock", "show", "ACCOUNT_42_REPORT"]);
    assert!(
        shown["getlock_holder"].is_object(),
        "GET_LOCK is held on the account's server: {shown}"
    );
    let forced = env.json(&[
        "lock",
        "force-release",
        "ACCOUNT_42_REPORT",
        "--reason",
        "stuck report job",
    ]);
    assert_eq!(forced["released"], true);
    assert_eq!(forced["backend"], "zookeeper");
    assert_eq!(forced["killed"].as_array().unwrap().len(), 1, "{forced}");
    let out = holder.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(lock_names(&env).is_empty());
    let shown = env.json(&["lock", "show", "ACCOUNT_42_REPORT"]);
    assert!(shown["getlock_holder"].is_null());
}

#[test]
fn top_drain_and_resume_see_the_locks_in_zookeeper() {
    let _g = shared();
    let env = zk_env("zk_views", "2s");
    env.register_shards();
    let home = env.seed_user(51, 3);
    let holder = holding(&env, "ACCOUNT_51_NIGHTLY");
    let top = env.json(&["top", "--once"]);
    let locks = top["locks"].as_array().unwrap();
    assert!(
        locks
            .iter()
            .any(|l| l["name"] == "ACCOUNT_51_NIGHTLY"
                && l["token"].as_u64().unwrap() > u32::MAX as u64),
        "{top}"
    );
    // A drain of the half whose server holds the lock's GET_LOCK names it.
    let shown = env.json(&["lock", "show", "ACCOUNT_51_NIGHTLY"]);
    let port = common::port_of(shown["lease"]["holder_server"].as_str().unwrap());
    let half = if env.shard_ports(&home)[0] == port {
        "a"
    } else {
        "b"
    };
    let drained = env.json(&["maintenance", "drain", "--half", half]);
    assert!(
        drained["locks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "ACCOUNT_51_NIGHTLY"),
        "{drained}"
    );
    env.json(&["maintenance", "restore", "--half", half]);
    signal(holder.id(), libc::SIGTERM);
    holder.wait_with_output().unwrap();
    // A migration lock whose holder died before journaling anything: `migrate resume` frees it.
    env.json(&["lock", "acquire", "ACCOUNT_51_MIGRATE", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1100));
    let resumed = env.json(&["migrate", "resume", "--all"]);
    assert_eq!(
        resumed["released_locks"],
        serde_json::json!(["ACCOUNT_51_MIGRATE"]),
        "{resumed}"
    );
    assert!(lock_names(&env).is_empty());
}

#[test]
fn a_sweep_never_deletes_a_successor() {
    let _g = shared();
    let env = zk_env("zk_sweep", "6s");
    let store = ZkStore::connect(&zk_config("zk_sweep", Duration::from_secs(6))).unwrap();
    // The ABA trap, made exact: a sweeper read the expired lock; meanwhile it was released
    // and acquired again (a node at version 0 again). The stale delete must fail.
    env.json(&["lock", "acquire", "aba", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1100));
    let stale = store.read("aba").unwrap().unwrap();
    assert!(stale.expired_at(store.now_ms().unwrap()));
    env.json(&["lock", "release", "aba"]);
    let successor = env.json(&["lock", "acquire", "aba", "--ttl", "60s"]);
    assert!(!store.delete_judged(&stale).unwrap());
    assert_eq!(
        env.json(&["lock", "show", "aba"])["lease"]["token"],
        successor["token"]
    );
    env.json(&["lock", "release", "aba"]);
    // And raced for real: sweeps run while each expired lock is released and re-acquired.
    for round in 0..15 {
        let name = format!("swept{round}");
        env.json(&["lock", "acquire", &name, "--ttl", "1s"]);
        std::thread::sleep(Duration::from_millis(1050));
        let sweeper = env.spawn(&["lock", "sweep", "--format", "json"], &[]);
        env.run(&["lock", "release", &name]);
        let (code, again) = env.run_json(&["lock", "acquire", &name, "--ttl", "60s"]);
        let swept: Value =
            serde_json::from_slice(&sweeper.wait_with_output().unwrap().stdout).unwrap();
        assert_eq!(swept["backend"], "zookeeper");
        assert_eq!(code, 0, "{again}");
        let shown = env.json(&["lock", "show", &name]);
        assert_eq!(
            shown["lease"]["token"], again["token"],
            "round {round}: the successor was swept ({swept})"
        );
        env.json(&["lock", "release", &name]);
    }
    // Expired locks do go.
    env.json(&["lock", "acquire", "old", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1100));
    let dry = env.json(&["lock", "sweep", "--dry-run"]);
    assert_eq!(dry["locks"], serde_json::json!(["old"]));
    assert_eq!(lock_names(&env), vec!["old".to_string()]);
    let swept = env.json(&["lock", "sweep"]);
    assert_eq!(swept["released"], 1);
    assert!(lock_names(&env).is_empty());
}

#[test]
fn a_migration_moves_an_account_whole_on_zookeeper_locks() {
    let _g = shared();
    let env = zk_env("zk_migrate", "6s");
    env.register_shards();
    let (from, to, original) = env.seed_move(11, 3_000);
    let done = env.json(&["migrate", "11", "--to", &to]);
    assert_eq!(done["state"], "done");
    assert!(
        done["token"].as_u64().unwrap() > u32::MAX as u64,
        "a czxid token (epoch in the high half): {done}"
    );
    env.assert_whole(11, &original);
    assert!(lock_names(&env).is_empty());
    env.json(&["migrate", "11", "--to", &from]);
    env.assert_whole(11, &original);
    assert!(lock_names(&env).is_empty());
}

#[test]
fn the_whole_ensemble_down_fails_within_the_session_timeout_and_changes_nothing() {
    let _g = exclusive();
    let env = zk_env("zk_down", "2s");
    env.register_shards();
    let (_, to, original) = env.seed_move(12, 200);
    let before = env.snapshot();
    let check = |what: &str| {
        for args in [
            vec!["lock", "acquire", "job", "--ttl", "10s"],
            vec!["lock", "list"],
            vec!["migrate", "12", "--to", &to],
        ] {
            let start = Instant::now();
            let (code, doc) = env.run_json(&args);
            let took = start.elapsed();
            assert_eq!(code, 1, "{what} {args:?}: {doc}");
            let msg = doc["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains("ZooKeeper") && msg.contains(&zk_ports()[0].to_string()),
                "{what}: the error says ZooKeeper and names the ensemble: {msg}"
            );
            assert!(
                took < Duration::from_secs(4),
                "{what} {args:?} took {took:?}, past the 2 s session timeout"
            );
            let r = env.run(&args);
            assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
        }
        // doctor says which checks fail, bounded by the session timeout per phase.
        let start = Instant::now();
        let (code, doc) = env.run_json(&["doctor"]);
        let took = start.elapsed();
        assert_eq!(code, 1, "{what}: {doc}");
        assert!(
            took < Duration::from_secs(10),
            "{what}: doctor took {took:?}"
        );
        let failed: Vec<&str> = doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| c["check"].as_str().unwrap())
            .collect();
        for check in ["zookeeper serving", "zookeeper leader", "zookeeper session"] {
            assert!(failed.contains(&check), "{what}: {check} not failed: {doc}");
        }
        assert_eq!(env.snapshot(), before, "{what}: something changed");
    };
    let nodes = pids();
    for (_, pid) in &nodes {
        signal(*pid, libc::SIGSTOP);
    }
    check("frozen");
    for (_, pid) in &nodes {
        signal(*pid, libc::SIGCONT);
        signal(*pid, libc::SIGKILL);
    }
    wait_until("the nodes to go", || {
        zk_ports().iter().all(|p| role(*p).is_none())
    });
    check("killed");
    // One source down is one panel's failure, never the others' (`top`), and never turns a
    // finished drain into a failure.
    let start = Instant::now();
    let (code, doc) = env.run_json(&["top", "--once"]);
    assert_eq!(code, 5, "{doc}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        doc["errors"]["locks"]
            .as_str()
            .unwrap()
            .contains("ZooKeeper"),
        "{doc}"
    );
    assert!(doc["errors"].get("ring").is_none(), "{doc}");
    assert!(!doc["shards"].as_array().unwrap().is_empty(), "{doc}");
    assert!(!doc["servers"].as_array().unwrap().is_empty(), "{doc}");
    let (code, drained) = env.run_json(&["maintenance", "drain", "--half", "a"]);
    assert_eq!(code, 5, "{drained}");
    assert!(
        drained["locks_unknown"]
            .as_str()
            .unwrap()
            .contains("ZooKeeper"),
        "{drained}"
    );
    let servers = drained["servers"].as_array().unwrap();
    assert!(
        !servers.is_empty() && servers.iter().all(|s| s["status"] == "offline"),
        "the runbook still finds the drained servers: {drained}"
    );
    env.json(&["maintenance", "restore", "--half", "a"]);
    heal();
    env.json(&["migrate", "12", "--to", &to]);
    env.assert_whole(12, &original);
}

#[test]
fn switching_backends_never_hands_out_a_lower_token() {
    let _g = shared();
    let env = zk_env("zk_switch", "6s");
    env.register_shards();
    let (from, to, original) = env.seed_move(13, 100);
    let zk_text = std::fs::read_to_string(&env.config).unwrap();
    let moved = env.json(&["migrate", "13", "--to", &to]);
    let used = moved["token"].as_u64().unwrap();
    let (_, doctor) = env.run_json(&["doctor"]);
    let checks = doctor["checks"].as_array().unwrap();
    for check in [
        "zookeeper serving",
        "zookeeper leader",
        "zookeeper session",
        "tokens",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c["check"] == check && c["ok"] == true),
            "{check}: {doctor}"
        );
    }
    // Back to the ring's locks, whose sequence is far below the czxid the move used.
    let mysql_text = zk_text[..zk_text.find("[locks]").unwrap()].to_string();
    std::fs::write(&env.config, &mysql_text).unwrap();
    let (code, doc) = env.run_json(&["doctor"]);
    assert_ne!(code, 0);
    let tokens = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "tokens")
        .unwrap();
    assert_eq!(tokens["ok"], false, "{tokens}");
    assert!(tokens["fix"]
        .as_str()
        .unwrap()
        .contains(&format!("AUTO_INCREMENT = {}", used + 1)));
    let before = env.snapshot();
    for args in [
        vec!["lock", "acquire", "job", "--ttl", "10s"],
        vec!["migrate", "13", "--to", &from],
    ] {
        let (code, doc) = env.run_json(&args);
        assert_eq!(code, 4, "{args:?}: {doc}");
        assert_eq!(doc["error"]["kind"], "refused");
    }
    assert_eq!(leases_in_ring(&env), 0);
    assert_eq!(env.directory(13).0, to, "nothing moved");
    // The snapshot's lease table and journal are unchanged (the audit log too).
    let after = env.snapshot();
    assert_eq!(after, before, "a refused grant changed something");
    // The remedy doctor prints, then the ring's locks work above the old tokens.
    env.ring()
        .query_drop(format!("ALTER TABLE locks AUTO_INCREMENT = {}", used + 1))
        .unwrap();
    let back = env.json(&["migrate", "13", "--to", &from]);
    assert!(back["token"].as_u64().unwrap() > used);
    env.assert_whole(13, &original);
    // And to ZooKeeper again: its czxids are above every ring token used so far.
    std::fs::write(&env.config, &zk_text).unwrap();
    let again = env.json(&["migrate", "13", "--to", &to]);
    assert!(again["token"].as_u64().unwrap() > back["token"].as_u64().unwrap());
    env.assert_whole(13, &original);
}

#[cfg(feature = "failpoints")]
mod crashes {
    use super::*;

    #[test]
    fn a_paused_migration_is_fenced_out_by_its_successor() {
        let _g = shared();
        let env = zk_env("zk_fenced", "2s");
        env.register_shards();
        let (from, to, original) = env.seed_move(21, 20_000);
        // Paused in the copy, then just before the flip: each time a successor finishes the
        // move (taking the lock over once the holder's session is gone), and the woken holder
        // can write neither a chunk nor the directory.
        for (round, point) in ["migrate.copy_mid", "migrate.after_verify"]
            .into_iter()
            .enumerate()
        {
            let target = if round == 0 { &to } else { &from };
            let stale = env.spawn(
                &["migrate", "21", "--to", target, "--lock-ttl", "1s"],
                &[("SHARDCTL_FAILPOINT_STOP", point)],
            );
            wait_until("the migration to pause", || common::is_stopped(stale.id()));
            std::thread::sleep(Duration::from_millis(2600));
            let done = env.json(&["migrate", "21", "--to", target]);
            assert_eq!(done["state"], "done", "{point}: {done}");
            let new_token = done["token"].as_u64().unwrap_or(0);
            signal(stale.id(), libc::SIGCONT);
            let out = stale.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{point}: the stale holder must fail");
            assert!(
                err.contains("fenced out") || err.contains("lost"),
                "{point}: {err}"
            );
            assert_eq!(&env.directory(21).0, target, "{point}");
            env.assert_whole(21, &original);
            if new_token > 0 {
                let fence: Option<u64> = common::conn(env.shard_ports(&from)[0])
                    .exec_first(
                        format!(
                            "SELECT token FROM {}.shardctl_fence WHERE user_id = 21",
                            env.shard_db()
                        ),
                        (),
                    )
                    .unwrap();
                assert!(fence.unwrap() >= new_token, "{point}");
            }
        }
        assert!(lock_names(&env).is_empty());
    }

    #[test]
    fn a_crashed_rebalance_is_finished_and_every_account_is_whole() {
        let _g = shared();
        let env = zk_env("zk_rebalance", "2s");
        env.register_shards();
        let users: Vec<u64> = (31..43).collect();
        let originals: Vec<(u64, common::Fingerprint)> = users
            .iter()
            .map(|&u| {
                let home = env.seed_user(u, 40 + u);
                (
                    u,
                    common::fingerprint(env.shard_ports(&home)[0], &env.shard_db(), u),
                )
            })
            .collect();
        for point in ["migrate.copy_mid", "migrate.after_flip"] {
            // The shard holding fewer of the accounts weighs four times the other: there are
            // always moves to make (and to crash in).
            let on_shard1 = users
                .iter()
                .filter(|u| env.directory(**u).0 == "shard1")
                .count();
            let heavy = if on_shard1 * 2 <= users.len() {
                "shard1"
            } else {
                "shard2"
            };
            let i = usize::from(point == "migrate.after_flip");
            for (shard, w) in [("shard1", "1"), ("shard2", "1"), (heavy, "4")] {
                env.run(&["shard", "set-weight", shard, w]).ok();
            }
            let plan = env.dir.path().join(format!("plan{i}.json"));
            env.json(&["rebalance", "plan", "-o", plan.to_str().unwrap()]);
            let crashed = env.run_with(
                &["rebalance", "apply", plan.to_str().unwrap(), "--jobs", "1"],
                &[("SHARDCTL_FAILPOINT", point)],
            );
            assert_eq!(crashed.code, -1, "{point}: not killed: {}", crashed.stderr);
            let finished = env.json(&[
                "rebalance",
                "apply",
                plan.to_str().unwrap(),
                "--lock-ttl",
                "5s",
            ]);
            assert_eq!(
                finished["failed"].as_array().unwrap().len(),
                0,
                "{point}: {finished}"
            );
            for (u, original) in &originals {
                env.assert_whole(*u, original);
            }
            assert!(lock_names(&env).is_empty(), "{point}: locks left");
        }
    }
}

#[test]
fn skewed_clocks_on_zookeeper_never_make_two_holders() {
    let _g = shared();
    let env = zk_env("zk_skew", "6s");
    common::skewed_hosts_never_make_two_holders(&env);
    // A holder whose clock is 2 h behind writes a lease every host sees as alive: the leader's
    // time of its write decides, not the text it wrote.
    let store = ZkStore::connect(&zk_config("zk_skew", Duration::from_secs(6))).unwrap();
    env.json(&["lock", "acquire", "behind", "--ttl", "1h"]);
    let mut node = store.read("behind").unwrap().unwrap();
    node.record.expires_at = "2020-01-01T00:00:00.000000Z".into();
    store
        .update("behind", node.holder.as_deref().unwrap(), &node.record)
        .unwrap()
        .unwrap();
    let shown = env.json(&["lock", "show", "behind"]);
    assert_eq!(shown["lease"]["expired"], false, "{shown}");
    assert!(env.json(&["lock", "sweep", "--dry-run"])["locks"]
        .as_array()
        .unwrap()
        .is_empty());
    env.json(&["lock", "release", "behind"]);
}

#[test]
fn a_delete_judged_on_a_stale_read_never_removes_a_renewed_lock() {
    let _g = shared();
    let env = zk_env("zk_version", "6s");
    let store = ZkStore::connect(&zk_config("zk_version", Duration::from_secs(6))).unwrap();
    env.json(&["lock", "acquire", "renewed", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1100));
    // A sweeper read it expired; then its holder renewed it (a write, a new version).
    let stale = store.read("renewed").unwrap().unwrap();
    assert!(stale.expired_at(store.now_ms().unwrap()));
    let mut record = stale.record.clone();
    record.max_hold_seconds = 60.0;
    store
        .update("renewed", stale.holder.as_deref().unwrap(), &record)
        .unwrap()
        .unwrap();
    assert!(
        !store.delete_judged(&stale).unwrap(),
        "the stale delete fails"
    );
    let shown = env.json(&["lock", "show", "renewed"]);
    assert_eq!(shown["held"], true);
    assert_eq!(shown["lease"]["expired"], false, "{shown}");
    env.json(&["lock", "release", "renewed"]);
}

fn zk_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("/usr/share/zookeeper/bin/zkCli.sh")
        .args(["-server", &format!("127.0.0.1:{}", zk_ports()[0])])
        .args(args)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn names_and_nodes_zookeeper_treats_differently_work_the_same_everywhere() {
    let _g = shared();
    let env = zk_env("zk_nodes", "6s");
    for name in [".", ".."] {
        for verb in [
            vec!["lock", "acquire", name, "--ttl", "5s"],
            vec!["lock", "show", name],
        ] {
            let r = env.run(&verb);
            assert_eq!(r.code, 2, "{verb:?}: {}", r.stderr);
        }
    }
    // A stray child beside the holder's: release, force-release and the sweep still remove
    // the lock, and force-release says what else it found.
    env.json(&["lock", "acquire", "stray", "--ttl", "60s"]);
    zk_cli(&["create", "/t_zk_nodes/locks/stray/junk", "x"]);
    let released = env.json(&["lock", "release", "stray"]);
    assert_eq!(released["released"], true, "{released}");
    // A stray with children of its own goes too, deepest first.
    env.json(&["lock", "acquire", "deep", "--ttl", "60s"]);
    zk_cli(&["create", "/t_zk_nodes/locks/deep/junk2", "x"]);
    zk_cli(&["create", "/t_zk_nodes/locks/deep/junk2/deeper", "x"]);
    let released = env.json(&["lock", "release", "deep"]);
    assert_eq!(released["released"], true, "{released}");
    assert_eq!(released["stray_children"], serde_json::json!(["junk2"]));
    env.json(&["lock", "acquire", "forced", "--ttl", "60s"]);
    zk_cli(&["create", "/t_zk_nodes/locks/forced/junk", "x"]);
    let forced = env.json(&["lock", "force-release", "forced", "--reason", "test"]);
    assert_eq!(forced["released"], true, "{forced}");
    assert_eq!(forced["stray_children"], serde_json::json!(["junk"]));
    env.json(&["lock", "acquire", "swept", "--ttl", "1s"]);
    zk_cli(&["create", "/t_zk_nodes/locks/swept/junk", "x"]);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        env.json(&["lock", "sweep"])["locks"],
        serde_json::json!(["swept"])
    );
    assert!(lock_names(&env).is_empty(), "{:?}", lock_names(&env));
    // Another federation's root nested inside this one's locks: to this one it looks like an
    // expired lock with an unreadable record, but it is no lock's shape, and its live leases
    // survive this one's sweep and takeovers.
    let nested = env.dir.path().join("nested.toml");
    std::fs::write(
        &nested,
        std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("root = \"/t_zk_nodes\"", "root = \"/t_zk_nodes/locks/ZZ\""),
    )
    .unwrap();
    let inner = |args: &[&str]| common::run_with_config(&nested, args, &[]);
    assert_eq!(inner(&["lock", "acquire", "L1", "--ttl", "1h"]).code, 0);
    let swept = env.json(&["lock", "sweep"]);
    assert_eq!(swept["locks"], serde_json::json!([]), "{swept}");
    assert_eq!(env.run(&["lock", "acquire", "ZZ", "--ttl", "5s"]).code, 3);
    let again = inner(&["lock", "acquire", "L1", "--ttl", "1h"]);
    assert_eq!(
        again.code, 3,
        "the nested root's lease survived: {}",
        again.stdout
    );
    assert_eq!(inner(&["lock", "release", "L1"]).code, 0);
    // A root inside ZooKeeper's own tree is refused at load.
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        text.replace("root = \"/t_zk_nodes\"", "root = \"/zookeeper/quota\""),
    )
    .unwrap();
    let r = env.run(&["lock", "list"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("/zookeeper"), "{}", r.stderr);
}

#[test]
fn a_forged_record_never_sends_the_shard_login_anywhere() {
    let _g = shared();
    let env = zk_env("zk_forged", "6s");
    env.register_shards();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let trap = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let store = ZkStore::connect(&zk_config("zk_forged", Duration::from_secs(6))).unwrap();
    env.json(&["lock", "acquire", "forged", "--ttl", "60s"]);
    let mut node = store.read("forged").unwrap().unwrap();
    node.record.holder_server = Some(trap.clone());
    node.record.holder_connection = Some(7);
    store
        .update("forged", node.holder.as_deref().unwrap(), &node.record)
        .unwrap()
        .unwrap();
    env.json(&["lock", "show", "forged"]);
    let r = env.run(&["lock", "acquire", "forged", "--ttl", "5s"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    env.run(&["lock", "acquire", "forged", "--ttl", "5s", "--dry-run"]);
    env.json(&[
        "lock",
        "force-release",
        "forged",
        "--reason",
        "forged record",
    ]);
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("shardctl connected to the forged holder server {trap}: {other:?}"),
    }
}

#[test]
fn with_digest_authentication_the_lock_nodes_are_not_world_writable() {
    let _g = shared();
    let env = zk_env("zk_digest", "6s");
    let password = env.dir.path().join("zk.pw");
    std::fs::write(&password, "s3cret\n").unwrap();
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        text.replace(
            "root = \"/t_zk_digest\"",
            &format!(
                "root = \"/t_zk_digest/auth\"\ndigest_user = \"shardctl\"\ndigest_password_file = \"{}\"",
                password.display()
            ),
        ),
    )
    .unwrap();
    env.json(&["lock", "acquire", "guarded", "--ttl", "60s"]);
    let acl = zk_cli(&["getAcl", "/t_zk_digest/auth/locks/guarded"]);
    assert!(acl.contains("'digest,'shardctl:"), "{acl}");
    assert!(!acl.contains("'world,'anyone\n: cdrwa"), "{acl}");
    // Another client of the ensemble, without the identity, can neither delete nor change it.
    let mut anonymous = zk_config("zk_digest", Duration::from_secs(6));
    anonymous.root = "/t_zk_digest/auth".into();
    let other = ZkStore::connect(&anonymous).unwrap();
    let node = other.read("guarded").unwrap().unwrap();
    assert!(
        other.delete_judged(&node).is_err(),
        "an anonymous delete is refused"
    );
    assert!(other.read("guarded").unwrap().is_some());
    assert!(!other.world_writable().unwrap());
    // Without the identity, the open default is what `doctor` reports.
    let open = ZkStore::connect(&zk_config("zk_digest", Duration::from_secs(6))).unwrap();
    assert!(open.world_writable().unwrap());
    let shown = env.json(&["lock", "show", "guarded"]);
    assert_eq!(shown["held"], true, "{shown}");
    env.json(&["lock", "release", "guarded"]);
}

/// The history check: many client processes on one lock, on both backends at once, acquiring,
/// renewing, releasing, frozen, killed and clock-skewed at random for a minute. Each client
/// logs, on the host's monotonic clock (one clock for every process here, untouched by
/// faketime), its grant and every moment its keeper proved the lock held; and under the lock it
/// writes to the ring, each write fenced by its token. The checker proves no two clients'
/// believed intervals of one lock overlap, and that the fenced writes carry tokens in the order
/// they were granted (every write was made under the newest token).
mod history {
    use super::*;
    use shardctl::lock::keeper::keeping;
    use shardctl::lock::{LockClient, Request};
    use shardctl::ring::fences::{self, Fence};
    use shardctl::types::LockName;
    use std::io::Write;

    const LOCK: &str = "HISTORY";
    const TTL: Duration = Duration::from_secs(2);

    fn mono_ns() -> u128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
    }

    /// One client process: holds, works under the lock, releases, again, until killed or 70 s.
    #[test]
    fn history_client() {
        let (Ok(config), Ok(log)) = (
            std::env::var("HISTORY_CONFIG"),
            std::env::var("HISTORY_LOG"),
        ) else {
            return; // run only as a client process, by the history test
        };
        let cfg = shardctl::config::Config::load(std::path::Path::new(&config)).unwrap();
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let name: LockName = LOCK.parse().unwrap();
        let req = Request {
            name: name.clone(),
            ttl: TTL,
            owner: format!("client-{}", std::process::id()),
            purpose: "history".into(),
            hold_session: true,
            metadata: serde_json::Value::Null,
        };
        let until = Instant::now() + Duration::from_secs(100);
        while Instant::now() < until {
            let Ok(mut client) = LockClient::new(&cfg) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let granted = Instant::now();
            let Ok(held) = client.acquire(&req, Duration::from_millis(500)) else {
                continue;
            };
            writeln!(out, "begin {} {}", held.token, mono_ns()).unwrap();
            let fence = Fence {
                name: name.clone(),
                token: held.token,
                proof: None,
            };
            let raised = client.ring().run("raising", |c| {
                fences::raise(c, &[(&fence.name, fence.token)])
            });
            let hold_for = Duration::from_millis(200 + rand_ms(1500));
            let (_, watch, client) = keeping(client, &held, granted, |w| {
                let fence = Fence {
                    proof: Some(w.held_proof()),
                    ..fence.clone()
                };
                let mut ring = shardctl::ring::open(&cfg).ok();
                let start = Instant::now();
                // Work first, then look at the time: a client woken from a freeze acts at once,
                // as real ones do, and only its keeper's proof stands between it and a write.
                while raised.is_ok() {
                    if w.check().is_err() {
                        break;
                    }
                    let now = mono_ns();
                    writeln!(out, "held {} {now}", held.token).unwrap();
                    if let Some(db) = ring.as_mut() {
                        let _ = db.transaction("writing under the lock", |c| {
                            use mysql::prelude::Queryable;
                            fences::hold(c, &fence)?;
                            c.exec_drop(
                                "INSERT INTO history_writes (token, pid) VALUES (?, ?)",
                                (held.token, std::process::id()),
                            )?;
                            fences::still_proven(Some(&fence))
                        });
                    }
                    if start.elapsed() >= hold_for {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            if watch.check().is_ok() {
                if let Ok(mut c) = client {
                    let _ = c.release(&held);
                }
            }
            writeln!(out, "end {} {}", held.token, mono_ns()).unwrap();
        }
    }

    fn rand_ms(n: u64) -> u64 {
        (mono_ns() as u64 / 1000) % n.max(1)
    }

    fn spawn_client(env: &Env, log: &std::path::Path, skew: Option<&str>) -> Child {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match skew {
            Some(s) => {
                let mut c = std::process::Command::new("faketime");
                c.args(["-f", s]).arg(&exe);
                c
            }
            None => std::process::Command::new(&exe),
        };
        cmd.args([
            "--exact",
            "history::history_client",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("HISTORY_CONFIG", &env.config)
        .env("HISTORY_LOG", log)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
    }

    /// (token, first, last) believed intervals from one client's log.
    fn intervals(log: &str) -> Vec<(u64, u128, u128)> {
        let mut out: Vec<(u64, u128, u128)> = Vec::new();
        for line in log.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(kind), Some(token), Some(at)) = (f.first(), f.get(1), f.get(2)) else {
                continue; // a line cut short by a kill
            };
            let (Ok(token), Ok(at)) = (token.parse::<u64>(), at.parse::<u128>()) else {
                continue;
            };
            match *kind {
                "begin" => out.push((token, at, at)),
                "held" => {
                    if let Some(last) = out.iter_mut().rev().find(|i| i.0 == token) {
                        last.2 = last.2.max(at);
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn world(name: &str, zookeeper: bool) -> Env {
        let env = if zookeeper {
            zk_env(name, "2s")
        } else {
            Env::new(fed(), name)
        };
        env.ring()
            .query_drop(
                "CREATE TABLE history_writes (id BIGINT AUTO_INCREMENT PRIMARY KEY,
                 token BIGINT UNSIGNED NOT NULL, pid INT NOT NULL)",
            )
            .unwrap();
        env
    }

    #[test]
    fn no_two_clients_ever_believe_they_hold_one_lock_and_every_write_is_fenced() {
        let _g = shared();
        let worlds = [world("hist_mysql", false), world("hist_zk", true)];
        let dirs: Vec<std::path::PathBuf> =
            worlds.iter().map(|e| e.dir.path().to_path_buf()).collect();
        let mut clients: Vec<(usize, std::path::PathBuf, Child)> = Vec::new();
        let mut next_log = 0;
        let mut spawn =
            |w: usize,
             skew: Option<&str>,
             clients: &mut Vec<(usize, std::path::PathBuf, Child)>| {
                next_log += 1;
                let log = dirs[w].join(format!("client{next_log}.log"));
                clients.push((w, log.clone(), spawn_client(&worlds[w], &log, skew)));
            };
        for w in 0..2 {
            for skew in [None, None, Some("+5s"), Some("-5s"), Some("+2h")] {
                spawn(w, skew, &mut clients);
            }
        }
        let start = Instant::now();
        let mut faults = 0;
        while start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(200 + rand_ms(500)));
            // Mostly the holder of the moment (its owner names its pid): faults that matter.
            let w = rand_ms(2) as usize;
            let holder = worlds[w]
                .run(&["--format", "json", "lock", "show", LOCK])
                .json()["lease"]["owner"]
                .as_str()
                .and_then(|o| o.strip_prefix("client-"))
                .and_then(|p| p.parse::<u32>().ok());
            let i = match holder.and_then(|p| clients.iter().position(|c| c.2.id() == p)) {
                Some(i) if rand_ms(10) < 7 => i,
                _ => rand_ms(clients.len() as u64) as usize,
            };
            let pid = clients[i].2.id();
            match rand_ms(3) {
                0 | 2 => {
                    // Frozen within its lease or well past it, then woken.
                    signal(pid, libc::SIGSTOP);
                    std::thread::sleep(Duration::from_millis(1000 + rand_ms(3000)));
                    signal(pid, libc::SIGCONT);
                }
                1 => {
                    signal(pid, libc::SIGKILL);
                    let _ = clients[i].2.wait();
                    let w = clients[i].0;
                    spawn(w, None, &mut clients);
                }
                _ => unreachable!("rand_ms(3) is below 3"),
            }
            faults += 1;
        }
        for (_, _, c) in &mut clients {
            signal(c.id(), libc::SIGCONT);
            signal(c.id(), libc::SIGKILL);
            let _ = c.wait();
        }
        assert!(faults >= 10, "{faults} faults");
        for (w, env) in worlds.iter().enumerate() {
            let mut all: Vec<(u64, u128, u128)> = clients
                .iter()
                .filter(|(cw, _, _)| *cw == w)
                .flat_map(|(_, log, _)| {
                    intervals(&std::fs::read_to_string(log).unwrap_or_default())
                })
                .collect();
            all.sort_by_key(|i| i.1);
            let holders: std::collections::BTreeSet<u64> = all.iter().map(|i| i.0).collect();
            assert!(
                holders.len() >= 10,
                "{}: only {} grants",
                env.name,
                holders.len()
            );
            for pair in all.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                assert!(
                    a.2 < b.1,
                    "{}: token {} believed held until {} but token {} was granted at {}",
                    env.name,
                    a.0,
                    a.2,
                    b.0,
                    b.1
                );
                assert!(
                    a.0 < b.0,
                    "{}: tokens out of grant order: {a:?} {b:?}",
                    env.name
                );
            }
            let writes: Vec<u64> = env
                .ring()
                .query("SELECT token FROM history_writes ORDER BY id")
                .unwrap();
            assert!(writes.len() > 50, "{}: {} writes", env.name, writes.len());
            assert!(
                writes.windows(2).all(|w| w[0] <= w[1]),
                "{}: a write under an older token after a newer one: {writes:?}",
                env.name
            );
        }
    }
}

/// A world on ZooKeeper locks with its shards registered, and a roll command that logs each
/// server's start and end (after a sleep of `secs`) to the returned file.
fn zk_roll_world(name: &str, secs: u32) -> (Env, std::path::PathBuf, String) {
    let env = zk_env(name, "6s");
    env.register_shards();
    let log = env.dir.path().join("runs.log");
    let script = format!(
        "echo \"$SHARDCTL_PORT start\" >> {log}; sleep {secs}; echo \"$SHARDCTL_PORT end\" >> {log}",
        log = log.display()
    );
    (env, log, script)
}

/// `maintenance roll` of half a with `script`, started and frozen (SIGSTOP) for 9 s — past
/// its 6 s ZooKeeper session — once its first command has started.
fn roll_frozen_past_its_session(
    env: &Env,
    log: &std::path::Path,
    script: &str,
) -> (Child, common::Frozen) {
    let roll = env.spawn(&common::half_a_roll(script), &[]);
    wait_until("a command to start", || {
        std::fs::read_to_string(log).is_ok_and(|l| !l.is_empty())
    });
    let frozen = common::Frozen::new(roll.id() as i32);
    std::thread::sleep(Duration::from_secs(9));
    (roll, frozen)
}

#[test]
fn a_roll_frozen_past_its_zookeeper_session_does_nothing_more_when_woken() {
    let _g = shared();
    let (env, log, script) = zk_roll_world("zk_roll", 3);
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    // Past the 6 s session: its holder child is gone, a successor takes the lock over.
    let (first, frozen) = roll_frozen_past_its_session(&env, &log, &script);
    let out = env
        .spawn(&common::half_a_roll(&script), &[])
        .wait_with_output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before_waking = lines();
    let audit_before = env.maintenance_audits();
    drop(frozen);
    let woken = first.wait_with_output().unwrap();
    assert_ne!(
        woken.status.code(),
        Some(0),
        "the woken roll knows it lost its lock"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(lines(), before_waking, "the woken roll started nothing");
    assert_eq!(
        env.maintenance_audits(),
        audit_before,
        "and wrote nothing to the ring"
    );
    // Per server: never a second start before the first one's end.
    let mut running: std::collections::HashMap<String, bool> = Default::default();
    for l in before_waking.lines() {
        let (port, what) = l.split_once(' ').unwrap();
        let r = running.entry(port.to_string()).or_default();
        assert!(
            !(*r && what == "start"),
            "{port} ran twice at once:\n{before_waking}"
        );
        *r = what == "start";
    }
    let status = env.json(&["maintenance", "status"]);
    assert!(
        status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "online"),
        "{status}"
    );
}

#[test]
fn a_roll_woken_after_its_zookeeper_session_expired_acts_no_more() {
    let _g = shared();
    let (env, log, script) = zk_roll_world("zk_roll_alone", 2);
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    // Past the session: its holder child is gone, so the lock is no longer its own, though no
    // successor came and its 30 s lease has not run out.
    let (roll, frozen) = roll_frozen_past_its_session(&env, &log, &script);
    let audit_before = env.maintenance_audits();
    drop(frozen);
    let woken = roll.wait_with_output().unwrap();
    assert_ne!(
        woken.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&woken.stdout)
    );
    let starts = lines().lines().filter(|l| l.ends_with("start")).count();
    assert_eq!(starts, 1, "no command started after waking:\n{}", lines());
    assert_eq!(
        env.maintenance_audits(),
        audit_before,
        "nothing written after waking"
    );
    env.json(&["maintenance", "restore", "--half", "a"]);
}

#[test]
fn a_roll_frozen_inside_its_restore_transaction_writes_nothing_when_woken() {
    let _g = shared();
    let (env, _log, script) = zk_roll_world("zk_roll_restore", 0);
    let roll = env.spawn(
        &common::half_a_roll(&script),
        &[("SHARDCTL_FAILPOINT_STOP", "restore.before_commit")],
    );
    wait_until("the roll to stop inside its restore", || {
        common::is_stopped(roll.id())
    });
    // Its fence was checked as the transaction began; past its 6 s session it no longer holds
    // the lock, and the commit must not land.
    std::thread::sleep(Duration::from_secs(9));
    let statuses = |env: &Env| -> Vec<String> {
        env.json(&["maintenance", "status"])["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{}:{}", s["port"], s["status"]))
            .collect()
    };
    let before = statuses(&env);
    assert!(
        before.iter().any(|s| s.ends_with("\"offline\"")),
        "{before:?}"
    );
    let audit_before = env.maintenance_audits();
    // Woken (again, should it stop at the point once more for another shard).
    let mut roll = roll;
    let deadline = Instant::now() + Duration::from_secs(60);
    while roll.try_wait().unwrap().is_none() && Instant::now() < deadline {
        signal(roll.id(), libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(200));
    }
    let woken = roll.wait_with_output().unwrap();
    assert_ne!(
        woken.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&woken.stderr)
    );
    assert_eq!(statuses(&env), before, "the woken roll restored nothing");
    assert_eq!(
        env.maintenance_audits(),
        audit_before,
        "and audited nothing"
    );
    env.json(&["maintenance", "restore", "--half", "a"]);
}

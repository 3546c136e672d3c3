//! Drains, restores and rolls hand each user's writes from one server to the other with never
//! two servers accepting them (PRODUCT.md invariant 10), proven with an application writing
//! through them: hot rows incremented over and over on pooled and per-write connections,
//! routes re-read on a timer, rows inserted and deleted, and a ledger of every acknowledged
//! write. Against a real master-master pair, with and without a lagging peer; and the same
//! run without the home guard loses writes, so the test can fail.

#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::app::{self, App, Spec};
use common::*;
use mysql::prelude::Queryable;

fn fed() -> &'static Federation {
    federation("handover", 25440, 1)
}

/// Replication delays are server-wide: one test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A world with the one shard registered; the home guard on unless `guarded` is false.
fn world(name: &str, guarded: bool) -> Env {
    let env = Env::new(fed(), name);
    let text = std::fs::read_to_string(&env.config).unwrap();
    let marker = format!("database = \"{}\"\n", env.shard_db());
    let flag = format!("{marker}home_guard = {guarded}\n");
    std::fs::write(&env.config, text.replace(&marker, &flag)).unwrap();
    env.register_shards();
    env
}

fn ports(env: &Env) -> Vec<u16> {
    env.fed.shards()[0].1.clone()
}

/// Eight hot users, four hot photos each, seeded on both servers.
fn spec(env: &Env) -> Spec {
    let users: Vec<u64> = (1..=8).collect();
    let ids: Vec<String> = users.iter().map(u64::to_string).collect();
    let mut args = vec!["user", "assign"];
    args.extend(ids.iter().map(String::as_str));
    env.json(&args);
    let spec = Spec {
        ring_port: env.fed.ring_port(),
        ring_db: env.ring_db(),
        shard_db: env.shard_db(),
        shard: env.fed.shards()[0].0.clone(),
        hot: users
            .iter()
            .flat_map(|u| (0..4).map(move |k| (*u, u * 100 + k)))
            .collect(),
        first_new_photo: 10_000_000,
        writers: 6,
    };
    let p = ports(env);
    app::seed(&spec, p[0], p[1]);
    spec
}

/// Delays the server on `port` applying its peer's writes by `seconds` until dropped.
struct Delay(u16);
impl Delay {
    fn new(port: u16, seconds: u32) -> Delay {
        let mut c = conn(port);
        c.query_drop("STOP SLAVE").unwrap();
        c.query_drop(format!("CHANGE MASTER TO MASTER_DELAY = {seconds}"))
            .unwrap();
        c.query_drop("START SLAVE").unwrap();
        Delay(port)
    }
}
impl Drop for Delay {
    fn drop(&mut self) {
        let mut c = conn(self.0);
        let undone = c
            .query_drop("STOP SLAVE")
            .and_then(|()| c.query_drop("CHANGE MASTER TO MASTER_DELAY = 0"))
            .and_then(|()| c.query_drop("START SLAVE"));
        if !std::thread::panicking() {
            undone.expect("taking the replication delay off");
        }
    }
}

/// Runs `args` as the maintenance runbook would and insists it succeeded.
fn step(env: &Env, args: &[&str]) -> serde_json::Value {
    let (code, doc) = env.run_json(args);
    assert_eq!(code, 0, "{args:?}: {doc}");
    doc
}

/// Lets the application write for a moment, then stops it and checks every acknowledged write
/// is on both servers with its value, the halves identical, replication running.
fn settle_and_check(env: &Env, running: App) -> app::Ledger {
    std::thread::sleep(Duration::from_millis(500));
    let spec = running.spec.clone();
    let ledger = running.stop();
    let p = ports(env);
    let lost = app::compare(&spec, &ledger, &p);
    assert!(
        lost.nothing(),
        "acknowledged writes lost: {} increments; {:#?}",
        lost.increments,
        lost.rows
    );
    assert_eq!(
        app::checksums(p[0], &env.shard_db()),
        app::checksums(p[1], &env.shard_db()),
        "the halves differ"
    );
    assert!(app::replicating(p[0]) && app::replicating(p[1]));
    assert!(
        ledger.acknowledged() > 100,
        "the application barely wrote: {ledger:?}"
    );
    ledger
}

#[test]
fn drains_restores_and_rolls_keep_every_acknowledged_write() {
    let _turn = serial();
    let env = world("handover_plain", true);
    let running = App::start(spec(&env));
    for _ in 0..3 {
        for half in ["a", "b"] {
            std::thread::sleep(Duration::from_millis(300));
            let drained = step(&env, &["maintenance", "drain", "--half", half]);
            assert_eq!(drained["home_guard"], true);
            assert_eq!(
                drained["handovers"].as_array().unwrap().len(),
                1,
                "{drained}"
            );
            std::thread::sleep(Duration::from_millis(300));
            step(&env, &["maintenance", "restore", "--half", half]);
        }
    }
    step(&env, &["maintenance", "roll", "--exec", "sleep 0.3"]);
    let ledger = settle_and_check(&env, running);
    assert!(ledger.refused > 0, "no write was ever refused: {ledger:?}");
}

#[test]
fn a_lagging_peer_gets_every_write_before_it_takes_over() {
    let _turn = serial();
    let env = world("handover_lag", true);
    let p = ports(&env);
    let running = App::start(spec(&env));
    for (half, taker) in [("a", p[1]), ("b", p[0])] {
        // The server taking the users over applies the other's writes two seconds late.
        let _delay = Delay::new(taker, 2);
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let drained = step(
            &env,
            &["maintenance", "drain", "--half", half, "--timeout", "30s"],
        );
        let window = drained["handovers"][0]["write_window_seconds"]
            .as_f64()
            .unwrap();
        // Without a delay a hand-over takes milliseconds; this one waits for the peer.
        assert!(
            window >= 0.3,
            "the hand-over did not wait for the lagging peer: {drained}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(500));
        step(
            &env,
            &["maintenance", "restore", "--half", half, "--timeout", "30s"],
        );
    }
    // And a whole roll, half a's taker lagging.
    {
        let _delay = Delay::new(p[1], 2);
        std::thread::sleep(Duration::from_millis(500));
        let rolled = step(
            &env,
            &[
                "maintenance",
                "roll",
                "--exec",
                "sleep 0.3",
                "--halves",
                "a",
                "--timeout",
                "30s",
            ],
        );
        assert_eq!(rolled["state"], "done", "{rolled}");
    }
    settle_and_check(&env, running);
}

#[test]
fn without_the_home_guard_a_lagging_peer_loses_writes() {
    let _turn = serial();
    let env = world("handover_unguarded", false);
    let p = ports(&env);
    let running = App::start(spec(&env));
    {
        let _delay = Delay::new(p[1], 2);
        std::thread::sleep(Duration::from_millis(500));
        let (code, drained) = env.run_json(&["maintenance", "drain", "--half", "a"]);
        assert_eq!(drained["home_guard"], false);
        assert!(drained["warning"]
            .as_str()
            .unwrap()
            .contains("home_guard is off"));
        assert!(code == 0 || code == 5, "{drained}");
        std::thread::sleep(Duration::from_secs(3));
        env.run(&["maintenance", "restore", "--half", "a", "--timeout", "30s"]);
        std::thread::sleep(Duration::from_millis(500));
    }
    let spec = running.spec.clone();
    let ledger = running.stop();
    let lost = app::compare(&spec, &ledger, &p);
    assert!(
        !lost.nothing(),
        "without the guard nothing was lost: the test cannot tell ({ledger:?})"
    );
}

/// The home guard's rules on `port`, as (rule, members, position).
fn rules(env: &Env, port: u16) -> Vec<(String, u32, Option<u32>)> {
    conn(port)
        .query(format!(
            "SELECT rule, members, position FROM {}.shardctl_home ORDER BY rule",
            env.shard_db()
        ))
        .unwrap()
}

/// The rules of both servers.
fn both_rules(env: &Env, p: &[u16]) -> [Vec<(String, u32, Option<u32>)>; 2] {
    [rules(env, p[0]), rules(env, p[1])]
}

/// A refused or undone drain: both servers online in the ring and their rules as `before`.
fn assert_unchanged(env: &Env, p: &[u16], before: &[Vec<(String, u32, Option<u32>)>; 2]) {
    assert_eq!(statuses(env), ["online", "online"]);
    assert_eq!(&both_rules(env, p), before);
}

/// One test's turn, its world with the home guard and the hot rows seeded, and its ports.
fn seeded(name: &str) -> (MutexGuard<'static, ()>, Env, Vec<u16>) {
    let turn = serial();
    let env = world(name, true);
    let p = ports(&env);
    spec(&env);
    (turn, env, p)
}

fn statuses(env: &Env) -> Vec<String> {
    env.ring()
        .query(format!(
            "SELECT status FROM {}.shard_servers ORDER BY half",
            env.ring_db()
        ))
        .unwrap()
}

/// Adds `by` to `photo`'s views on `c`, as the application does.
fn bump(c: &mut mysql::Conn, env: &Env, photo: u64, by: u64) -> mysql::Result<()> {
    c.exec_drop(
        format!(
            "UPDATE {}.photos SET views = views + ? WHERE photo_id = ?",
            env.shard_db()
        ),
        (by, photo),
    )
}

fn is_refusal(r: &mysql::Result<()>) -> bool {
    matches!(r, Err(mysql::Error::MySqlError(e)) if e.code == 1644)
}

/// Whether the server on `port` takes an application write for `photo`.
fn takes(env: &Env, port: u16, photo: u64) -> bool {
    let r = bump(&mut conn(port), env, photo, 1);
    assert!(r.is_ok() || is_refusal(&r), "{r:?}");
    r.is_ok()
}

/// A session on `port` in a transaction that added `by` to `photo`'s views and is still open.
fn writing(env: &Env, port: u16, photo: u64, by: u64) -> mysql::Conn {
    let mut c = conn(port);
    c.query_drop("BEGIN").unwrap();
    bump(&mut c, env, photo, by).unwrap();
    c
}

fn views(env: &Env, port: u16, photo: u64) -> Option<u64> {
    conn(port)
        .exec_first(
            format!(
                "SELECT views FROM {}.photos WHERE photo_id = ?",
                env.shard_db()
            ),
            (photo,),
        )
        .unwrap()
}

#[test]
fn a_write_in_flight_is_waited_for_and_reaches_the_taker() {
    let (_turn, env, p) = seeded("handover_inflight");
    // User 2 writes on half a (2 mod 2 = 0) in a transaction it has not committed yet.
    let mut open = writing(&env, p[0], 200, 5);
    let drain = env.spawn(
        &[
            "maintenance",
            "drain",
            "--half",
            "a",
            "--timeout",
            "20s",
            "--format",
            "json",
        ],
        &[],
    );
    std::thread::sleep(Duration::from_millis(1500));
    // Meanwhile half b refuses user 2: it has not got that write yet.
    assert!(!takes(&env, p[1], 200));
    open.query_drop("COMMIT").unwrap();
    let out = drain.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Half b took over with the committed write applied, and takes user 2's writes now.
    assert!(takes(&env, p[1], 200));
    assert_eq!(views(&env, p[1], 200), Some(6));
    step(&env, &["maintenance", "restore", "--half", "a"]);
}

#[test]
fn an_open_writer_past_the_timeout_refuses_the_drain_and_changes_nothing() {
    let (_turn, env, p) = seeded("handover_timeout");
    let before = both_rules(&env, &p);
    let mut open = writing(&env, p[0], 400, 1);
    let started = Instant::now();
    let (code, doc) = env.run_json(&["maintenance", "drain", "--half", "a", "--timeout", "2s"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code, 4, "{doc}");
    let reason = doc["refused"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("connection"), "{reason}");
    assert_unchanged(&env, &p, &before);
    open.query_drop("ROLLBACK").unwrap();
}

#[test]
fn a_prepared_xa_transaction_holds_the_hand_over_and_is_named() {
    let (_turn, env, p) = seeded("handover_xa");
    {
        let mut xa = conn(p[0]);
        xa.query_drop("XA START 'handover_xa'").unwrap();
        bump(&mut xa, &env, 600, 1).unwrap();
        xa.query_drop("XA END 'handover_xa'").unwrap();
        xa.query_drop("XA PREPARE 'handover_xa'").unwrap();
    }
    let (code, doc) = env.run_json(&["maintenance", "drain", "--half", "a", "--timeout", "2s"]);
    assert_eq!(code, 4, "{doc}");
    assert!(
        doc["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("prepared XA"),
        "{doc}"
    );
    assert_eq!(statuses(&env), ["online", "online"]);
    conn(p[0]).query_drop("XA COMMIT 'handover_xa'").unwrap();
    step(&env, &["maintenance", "drain", "--half", "a"]);
    assert_eq!(
        views(&env, p[1], 600),
        Some(1),
        "the prepared write reached the taker before it took over"
    );
    step(&env, &["maintenance", "restore", "--half", "a"]);
}

#[test]
fn a_frozen_old_server_is_bounded_by_the_timeout_and_nothing_changes_hands() {
    let (_turn, env, p) = seeded("handover_frozen");
    let before = both_rules(&env, &p);
    let started = Instant::now();
    let (code, doc) = {
        let _frozen = Frozen::new(env.fed.server_pid("shard1a"));
        env.run_json(&["maintenance", "drain", "--half", "a", "--timeout", "3s"])
    };
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "held {took:?}");
    assert_eq!(code, 4, "{doc}");
    assert_unchanged(&env, &p, &before);
}

#[test]
fn an_interrupted_hand_over_is_undone_and_says_so() {
    let (_turn, env, p) = seeded("handover_signal");
    let before = both_rules(&env, &p);
    let mut open = writing(&env, p[0], 800, 1);
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
    std::thread::sleep(Duration::from_millis(1500));
    signal(drain.id() as i32, libc::SIGINT);
    let started = Instant::now();
    let out = drain.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(4), "{doc}");
    assert_eq!(doc["interrupted"], true);
    assert!(
        doc["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("still open"),
        "{doc}"
    );
    assert_unchanged(&env, &p, &before);
    open.query_drop("ROLLBACK").unwrap();
}

#[test]
fn replicated_statements_pass_the_guard_and_replication_keeps_running() {
    let (_turn, env, p) = seeded("handover_statement");
    // User 3 lives on half b (3 mod 2 = 1); a statement-format write there replicates to a,
    // whose triggers fire for it and must let it through.
    let mut b = conn(p[1]);
    b.query_drop("SET SESSION binlog_format = 'STATEMENT'")
        .unwrap();
    bump(&mut b, &env, 300, 7).unwrap();
    wait_replicated(&mut b, p[0]);
    assert_eq!(views(&env, p[0], 300), Some(7));
    assert!(app::replicating(p[0]));
    // The same write made on a is an application's, for a user a does not take.
    let refused = bump(&mut conn(p[0]), &env, 300, 1);
    let Err(mysql::Error::MySqlError(e)) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(e.code, 1644);
    assert!(
        e.message
            .contains(&format!("they go to 127.0.0.1:{}", p[1])),
        "{}",
        e.message
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn a_drain_killed_mid_hand_over_leaves_no_user_two_writers_and_lapses_back_by_itself() {
    let (_turn, env, p) = seeded("handover_killed_drain");
    let r = env.run_with(
        &["maintenance", "drain", "--half", "a", "--timeout", "2s"],
        &[("SHARDCTL_FAILPOINT", "handover.stopped")],
    );
    assert_eq!(r.code, -1, "not killed: {}", r.stderr);
    // The ring is as it was (its transaction died with the process); half a stopped taking
    // user 2's writes and half b has not started: nobody takes them, nobody takes them twice.
    assert_eq!(statuses(&env), ["online", "online"]);
    assert!(!takes(&env, p[0], 200) && !takes(&env, p[1], 200));
    assert!(takes(&env, p[1], 300), "half b's own users were affected");
    // Past --timeout and the lease's margin, half a's proposal lapses: it takes user 2 again,
    // as the ring still says, without anyone running anything.
    wait_until("half a takes user 2 back", || takes(&env, p[0], 200));
    assert!(!takes(&env, p[1], 200));
    let doc = step(&env, &["maintenance", "drain", "--half", "a"]);
    assert_eq!(doc["servers"][0]["status"], "offline", "{doc}");
    assert!(takes(&env, p[1], 200) && !takes(&env, p[0], 200));
    step(&env, &["maintenance", "restore", "--half", "a"]);
    assert!(takes(&env, p[0], 200) && !takes(&env, p[1], 200));
}

#[cfg(feature = "failpoints")]
#[test]
fn a_drain_killed_mid_hand_over_is_finished_by_running_it_again() {
    let (_turn, env, p) = seeded("handover_killed_rerun");
    let r = env.run_with(
        &["maintenance", "drain", "--half", "a"],
        &[("SHARDCTL_FAILPOINT", "handover.caught_up")],
    );
    assert_eq!(r.code, -1, "not killed: {}", r.stderr);
    assert!(!takes(&env, p[0], 200) && !takes(&env, p[1], 200));
    let doc = step(&env, &["maintenance", "drain", "--half", "a"]);
    assert_eq!(doc["servers"][0]["status"], "offline", "{doc}");
    assert!(takes(&env, p[1], 200) && !takes(&env, p[0], 200));
    step(&env, &["maintenance", "restore", "--half", "a"]);
}

#[cfg(feature = "failpoints")]
#[test]
fn a_restore_killed_while_settling_is_finished_by_running_it_again() {
    let (_turn, env, p) = seeded("handover_killed_restore");
    step(&env, &["maintenance", "drain", "--half", "a"]);
    let r = env.run_with(
        &["maintenance", "restore", "--half", "a"],
        &[("SHARDCTL_FAILPOINT", "handover.settled_one")],
    );
    assert_eq!(r.code, -1, "not killed: {}", r.stderr);
    assert_eq!(statuses(&env), ["offline", "online"]);
    // Half b gave user 2 up; half a has not taken it yet.
    assert!(!takes(&env, p[0], 200) && !takes(&env, p[1], 200));
    let doc = step(&env, &["maintenance", "restore", "--half", "a"]);
    assert_eq!(doc["servers"][0]["status"], "online", "{doc}");
    assert!(takes(&env, p[0], 200) && !takes(&env, p[1], 200));
    assert!(takes(&env, p[1], 300) && !takes(&env, p[0], 300));
}

#[test]
fn a_server_without_the_triggers_refuses_the_hand_over_until_the_guard_is_installed() {
    let (_turn, env, p) = seeded("handover_untriggered");
    conn(p[0])
        .query_drop(format!(
            "DROP TRIGGER {}.shardctl_guard_photos_bu",
            env.shard_db()
        ))
        .unwrap();
    let (code, doc) = env.run_json(&["maintenance", "drain", "--half", "a"]);
    assert_eq!(code, 4, "{doc}");
    let reason = doc["refused"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("shardctl guard install"), "{reason}");
    assert_eq!(statuses(&env), ["online", "online"]);
    step(&env, &["guard", "install"]);
    step(&env, &["maintenance", "drain", "--half", "a"]);
    assert!(takes(&env, p[1], 200) && !takes(&env, p[0], 200));
    step(&env, &["maintenance", "restore", "--half", "a"]);
}

#[test]
fn a_drain_and_a_restore_racing_never_give_a_user_two_writers() {
    let (_turn, env, p) = seeded("handover_race");
    let db = env.shard_db();
    for round in 0..4 {
        // Half a left draining (an idle session held the drain), then both commands at once.
        let mut idle = conn(p[0]);
        idle.query_drop(format!("USE {db}")).unwrap();
        let (code, _) = env.run_json(&["maintenance", "drain", "--half", "a", "--timeout", "1s"]);
        assert_eq!(code, 5, "round {round}");
        drop(idle);
        let (first, second) = if round % 2 == 0 {
            ("drain", "restore")
        } else {
            ("restore", "drain")
        };
        let a = env.spawn(
            &["maintenance", first, "--half", "a", "--timeout", "5s"],
            &[],
        );
        let b = env.spawn(
            &["maintenance", second, "--half", "a", "--timeout", "5s"],
            &[],
        );
        a.wait_with_output().unwrap();
        b.wait_with_output().unwrap();
        // Whatever the ring says now, each user has exactly its routed server as writer.
        let online: Vec<u16> = env
            .ring()
            .query(format!(
                "SELECT port FROM {}.shard_servers WHERE status = 'online' ORDER BY half, host, port",
                env.ring_db()
            ))
            .unwrap();
        for user in 1..=8u64 {
            let photo = user * 100;
            let writer = online[(user % online.len() as u64) as usize];
            for port in &p {
                assert_eq!(
                    takes(&env, *port, photo),
                    *port == writer,
                    "round {round} ({first} raced {second}): user {user} on {port}, ring writers {online:?}"
                );
            }
        }
        step(&env, &["maintenance", "restore", "--half", "a"]);
    }
}

#[test]
fn a_loser_that_cannot_settle_stops_the_hand_over_before_anyone_gains() {
    let (_turn, env, p) = seeded("handover_settle_blocked");
    // Half b applies half a's writes 3 s late, so the hand-over waits there a while...
    let delay = Delay::new(p[1], 3);
    bump(&mut conn(p[0]), &env, 200, 1).unwrap();
    let started = Instant::now();
    let drain = env.spawn(
        &[
            "maintenance",
            "drain",
            "--half",
            "a",
            "--timeout",
            "6s",
            "--format",
            "json",
        ],
        &[],
    );
    // ... and meanwhile an application writes on half a, is refused, and neither commits nor
    // rolls back: its transaction holds half a's rules until it ends.
    wait_until("half a to stop taking user 2", || !takes(&env, p[0], 200));
    let mut stuck = conn(p[0]);
    stuck.query_drop("SET autocommit = 0").unwrap();
    assert!(is_refusal(&bump(&mut stuck, &env, 200, 1)));
    let out = drain.wait_with_output().unwrap();
    // Its waits end with --timeout (the settling gives up by then, plus a second or two).
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(4), "{doc}");
    assert!(
        doc["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("could not settle"),
        "{doc}"
    );
    assert_eq!(statuses(&env), ["online", "online"]);
    // Nobody took user 2 over: half b refuses it; once half a's proposal lapses (--timeout
    // plus 5 s), half a takes it again, and only half a. (Photo 201: the stuck transaction
    // holds photo 200's row.)
    assert!(!takes(&env, p[1], 201));
    wait_until("half a takes user 2 back", || takes(&env, p[0], 201));
    assert!(!takes(&env, p[1], 201));
    stuck.query_drop("ROLLBACK").unwrap();
    drop(delay);
}

//! The routing cache (memcached, started by `sandbox up --cache`): every verb that changes what
//! a user's or a shard's cached entry says deletes its key; a cache that is down leaves the ring
//! change standing, exits 5 naming the pending keys, and `cache flush` clears them once it is
//! back. Without `[cache]` nothing of this runs.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{federation_with, Env, Federation, Frozen};
use mysql::prelude::Queryable;
use serde_json::json;

/// One test at a time: one freezes the memcached, the application simulator's sessions would
/// hold another's drain.
static CACHE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn fed() -> &'static Federation {
    federation_with(
        "cache",
        25340,
        2,
        &["--cache", "--lock-backend", "zookeeper"],
    )
}

fn cache_port() -> u16 {
    fed().servers("memcached")[0].1
}

/// Sends `text` to the sandbox's memcached and reads `lines` lines of answer.
fn ask(text: &str, lines: usize) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", cache_port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(text.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    (0..lines)
        .map(|_| {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            l.trim_end().to_string()
        })
        .collect()
}

/// The value cached under `key`.
fn get(key: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", cache_port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(format!("get {key}\r\n").as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    if !line.starts_with("VALUE") {
        return None;
    }
    let mut value = String::new();
    r.read_line(&mut value).unwrap();
    Some(value.trim_end().to_string())
}

fn put(key: &str) {
    assert_eq!(ask(&format!("set {key} 0 0 1\r\nx\r\n"), 1), ["STORED"]);
}

fn cached(key: &str) -> bool {
    get(key).is_some()
}

/// A world whose config has `[cache]`, with keys of its own (tests share the memcached).
fn world(name: &str) -> Env {
    let env = Env::new(fed(), name);
    env.register_shards();
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(&format!(
        "[cache]\nservers = [\"127.0.0.1:{}\"]\nuser_key = \"{name}:user:{{user_id}}\"\n\
         shard_key = \"{name}:shard:{{shard_id}}\"\nredelete_after = \"200ms\"\n",
        cache_port()
    ));
    std::fs::write(&env.config, text).unwrap();
    env
}

fn shard_id(env: &Env, name: &str) -> u32 {
    env.ring()
        .exec_first("SELECT shard_id FROM shards WHERE name = ?", (name,))
        .unwrap()
        .unwrap()
}

/// Every user's route and every shard's entry as the ring holds them: what a router caches.
#[derive(PartialEq)]
struct Routes {
    users: std::collections::BTreeMap<u64, (u32, String)>,
    shards: std::collections::BTreeMap<u32, Vec<String>>,
}

fn routes(env: &Env) -> Routes {
    let mut ring = env.ring();
    let users: Vec<(u64, u32, String)> = ring
        .query("SELECT user_id, shard_id, state FROM users")
        .unwrap();
    let shards: Vec<(u32, String)> = ring
        .query(
            "SELECT s.shard_id, CONCAT_WS(' ', s.name, s.weight, s.state, ss.host, ss.port, ss.half,
                    ss.status, IFNULL(ss.capacity_qps, '-'))
             FROM shards s LEFT JOIN shard_servers ss USING (shard_id)",
        )
        .unwrap();
    let mut by_shard: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for (id, row) in shards {
        by_shard.entry(id).or_default().push(row);
    }
    for rows in by_shard.values_mut() {
        rows.sort();
    }
    Routes {
        users: users.into_iter().map(|(u, s, st)| (u, (s, st))).collect(),
        shards: by_shard,
    }
}

/// The users and shards whose entry differs between `before` and `after` (added, changed or
/// gone).
fn changed_entries(before: &Routes, after: &Routes) -> (Vec<u64>, Vec<u32>) {
    fn differ<K: Ord + Copy, V: PartialEq>(
        a: &std::collections::BTreeMap<K, V>,
        b: &std::collections::BTreeMap<K, V>,
    ) -> Vec<K> {
        let keys: std::collections::BTreeSet<K> = a.keys().chain(b.keys()).copied().collect();
        keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect()
    }
    (
        differ(&before.users, &after.users),
        differ(&before.shards, &after.shards),
    )
}

#[test]
fn every_change_of_a_cached_entry_deletes_its_key() {
    let _turn = CACHE.write().unwrap_or_else(|p| p.into_inner());
    // Without [cache]: the cache verbs say so (exit 2) and other commands report nothing.
    let plain = Env::new(fed(), "cache_plain");
    let (code, doc) = plain.run_json(&["cache", "status"]);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["error"]["kind"], "config");

    let env = world("cw");
    let (home, away, _) = env.seed_move(1, 40);
    env.json(&["user", "assign", "2", "3"]);
    let (s_home, s_away) = (shard_id(&env, &home), shard_id(&env, &away));
    let user = |u: u64| format!("cw:user:{u}");
    let shard = |s: u32| format!("cw:shard:{s}");
    let spare = format!("127.0.0.1:{}", env.fed.ring_port());
    let plan = env.write_plan(
        "plan.json",
        vec![json!({"user": 1, "from": away, "to": home, "rows": 40})],
    );
    // (verb, the command, the keys it must delete)
    type Step<'a> = (&'a str, Vec<&'a str>, Vec<String>);
    let mut steps: Vec<Step> = vec![
        ("user assign", vec!["user", "assign", "9"], vec![user(9)]),
        (
            "migrate",
            vec!["migrate", "1", "--to", &away],
            vec![user(1)],
        ),
        (
            "rebalance apply",
            vec!["rebalance", "apply", &plan],
            vec![user(1)],
        ),
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
            vec![shard(3)],
        ),
        (
            "shard set-weight",
            vec!["shard", "set-weight", &home, "2"],
            vec![shard(s_home)],
        ),
        (
            "shard set-capacity",
            vec!["shard", "set-capacity", &home, "900"],
            vec![shard(s_home)],
        ),
        (
            "shard set-state",
            vec!["shard", "set-state", "spare", "retiring"],
            vec![shard(3)],
        ),
        (
            "shard remove",
            vec!["shard", "remove", "spare"],
            vec![shard(3)],
        ),
        (
            "maintenance drain",
            vec!["maintenance", "drain", "--half", "b"],
            vec![shard(s_home), shard(s_away)],
        ),
        (
            "maintenance restore",
            vec!["maintenance", "restore", "--half", "b"],
            vec![shard(s_home), shard(s_away)],
        ),
        (
            "maintenance roll",
            vec!["maintenance", "roll", "--exec", "true"],
            vec![shard(s_home), shard(s_away)],
        ),
        (
            "cache invalidate",
            vec!["cache", "invalidate", "2", "3"],
            vec![user(2), user(3)],
        ),
    ];
    if cfg!(feature = "failpoints") {
        steps.push((
            "migrate resume",
            vec!["migrate", "resume", "2"],
            vec![user(2)],
        ));
    }
    // Verbs that change no cached entry: locks, ids, reads, local processes.
    let unchanged = [
        "init",
        "doctor",
        "audit",
        "top",
        "completions",
        "id next",
        "shard list",
        "user locate",
        "migrate status",
        "rebalance plan",
        "maintenance status",
        "lock acquire",
        "lock release",
        "lock force-release",
        "lock run",
        "lock sweep",
        "lock list",
        "lock show",
        "sandbox up",
        "sandbox down",
        "sandbox status",
        "cache status",
        "cache flush",
        "guard install",
        "guard status",
        "guard remove",
        "guard prune",
    ];
    let listed: std::collections::BTreeSet<String> = steps
        .iter()
        .map(|s| s.0)
        .chain(unchanged)
        .chain(["migrate resume"])
        .map(String::from)
        .collect();
    assert_eq!(common::verbs(), listed, "every verb is classified here");

    for (verb, args, keys) in &steps {
        if *verb == "migrate resume" {
            // A migration killed after marking the user moving: the resume gives it back.
            let out = env.run_with(
                &[
                    "migrate",
                    "2",
                    "--to",
                    &env.other_shard(&env.directory(2).0),
                ],
                &[("SHARDCTL_FAILPOINT", "migrate.after_moving")],
            );
            assert_eq!(out.code, -1, "{}", out.stderr);
        }
        // Every entry the ring holds is cached, and the ones the verb is known to change.
        let before = routes(&env);
        let all: Vec<String> = before
            .users
            .keys()
            .map(|u| user(*u))
            .chain(before.shards.keys().map(|s| shard(*s)))
            .chain(keys.iter().cloned())
            .collect();
        for k in &all {
            put(k);
        }
        let r = env.run(args);
        assert_eq!(r.code, 0, "{verb}: {} {}", r.stdout, r.stderr);
        for k in keys {
            assert!(!cached(k), "{verb} left `{k}` in the cache");
        }
        // Whatever the verb changed in the ring, listed above or not, is gone from the cache.
        let (users, shards) = changed_entries(&before, &routes(&env));
        let stale: Vec<String> = users
            .iter()
            .map(|u| user(*u))
            .chain(shards.iter().map(|s| shard(*s)))
            .filter(|k| cached(k))
            .collect();
        assert!(
            stale.is_empty(),
            "{verb} changed the ring's entries of {users:?} (users) and {shards:?} (shards) but left {stale:?} cached"
        );
        // (A roll drains and restores: it ends where it began; its keys are listed above.)
        let touched = !users.is_empty() || !shards.is_empty();
        assert!(
            touched || verb.starts_with("cache") || *verb == "maintenance roll",
            "{verb} changed no entry of the ring: the walk does not exercise it"
        );
    }
    // A key nobody's change concerns stays; a reader that filled the cache just after the
    // first delete (from a ring read made before the commit) is undone by the second one,
    // `redelete_after` (here 200 ms) later, after the command has returned.
    put("cw:user:777");
    env.json(&["migrate", "1", "--to", &home]);
    assert!(cached("cw:user:777"));
    env.json(&["cache", "invalidate", "4"]);
    put(&user(4));
    common::wait_until("the second delete", || !cached(&user(4)));
}

#[test]
fn a_cache_that_is_down_leaves_the_flip_standing_and_flush_clears_it() {
    let _turn = CACHE.write().unwrap_or_else(|p| p.into_inner());
    let env = world("cdown");
    let (_, away, rows) = env.seed_move(11, 300);
    // Frozen, so it neither answers nor frees its port; woken after the move.
    let frozen = Frozen::new(fed().pid("memcached/memcached.pid"));
    let started = std::time::Instant::now();
    let (code, doc) = env.run_json(&["migrate", "11", "--to", &away]);
    let took = started.elapsed();
    drop(frozen);
    // A frozen cache costs one bounded wait (at most 1 s a server) per run, not one per change.
    assert!(
        took < Duration::from_secs(8),
        "the move took {took:?} with the cache frozen"
    );
    assert_eq!(code, 5, "{doc}");
    assert_eq!(doc["state"], "done");
    assert_eq!(doc["cache"]["pending"], json!(["cdown:user:11"]));
    assert_eq!(env.directory(11).0, away, "the flip stands");
    env.assert_whole(11, &rows);
    let status = env.json(&["cache", "status"]);
    assert_eq!(status["servers"][0]["reachable"], true);
    assert_eq!(status["pending"], json!(["cdown:user:11"]));
    put("cdown:user:11");
    let flushed = env.json(&["cache", "flush"]);
    assert_eq!(flushed["deleted"], json!(["cdown:user:11"]));
    assert!(!cached("cdown:user:11"));
    assert_eq!(env.json(&["cache", "status"])["pending"], json!([]));
    // `cache invalidate` with the cache down says the key is pending, not deleted.
    let frozen = Frozen::new(fed().pid("memcached/memcached.pid"));
    let (code, doc) = env.run_json(&["cache", "invalidate", "11"]);
    drop(frozen);
    assert_eq!(code, 5, "{doc}");
    assert_eq!(doc["deleted"], json!([]), "{doc}");
    assert_eq!(doc["pending"], json!(["cdown:user:11"]), "{doc}");
    env.json(&["cache", "flush"]);
}

/// A look-aside application: it routes each write by its cache (memcached, entries kept for
/// `ttl`), fills a missed entry from the ring by the routing rule, writes to the server routed
/// to on a connection of its own, and on a write-guard refusal deletes the entry and tries
/// again. It records every write it saw acknowledged.
struct App {
    ring_port: u16,
    ring_db: String,
    shard_db: String,
    prefix: String,
    stop: std::sync::atomic::AtomicBool,
    next_id: std::sync::atomic::AtomicU64,
    acked: std::sync::Mutex<Vec<(u64, u64)>>,
    refused: std::sync::atomic::AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl App {
    fn new(env: &Env, prefix: &str) -> App {
        App {
            ring_port: env.fed.ring_port(),
            ring_db: env.ring_db(),
            shard_db: env.shard_db(),
            prefix: prefix.to_string(),
            stop: Default::default(),
            next_id: std::sync::atomic::AtomicU64::new(9_000_000_000),
            acked: Default::default(),
            refused: Default::default(),
            last_error: Default::default(),
        }
    }

    fn key(&self, user: u64) -> String {
        format!("{}:user:{user}", self.prefix)
    }

    /// The routing rule over the ring: the user's shard's online servers by half, host, port;
    /// the one at user mod count.
    fn ring_route(&self, user: u64) -> Option<u16> {
        let mut c = common::conn(self.ring_port);
        let ports: Vec<u16> = c
            .exec(
                format!(
                    "SELECT ss.port FROM {0}.users u JOIN {0}.shard_servers ss USING (shard_id)
                     WHERE u.user_id = ? AND ss.status = 'online' ORDER BY ss.half, ss.host, ss.port",
                    self.ring_db
                ),
                (user,),
            )
            .unwrap();
        (!ports.is_empty()).then(|| ports[(user % ports.len() as u64) as usize])
    }

    fn route(&self, user: u64) -> Option<u16> {
        let key = self.key(user);
        if let Some(port) = get(&key).and_then(|v| v.parse().ok()) {
            return Some(port);
        }
        let port = self.ring_route(user)?;
        ask(
            &format!("set {key} 0 1800 {}\r\n{port}\r\n", port.to_string().len()),
            1,
        );
        Some(port)
    }

    /// Writes to `users` round and round until stopped.
    fn run(&self, users: &[u64]) {
        use std::sync::atomic::Ordering::SeqCst;
        let mut i = 0;
        while !self.stop.load(SeqCst) {
            let user = users[i % users.len()];
            i += 1;
            let id = self.next_id.fetch_add(1, SeqCst);
            for _ in 0..500 {
                let Some(port) = self.route(user) else { break };
                let written = common::conn_within(port, Duration::from_secs(2)).map(|mut c| {
                    c.exec_drop(
                        format!(
                            "INSERT INTO {}.photos (photo_id, owner_id, title, taken_at, views)
                             VALUES (?, ?, 'app', UTC_TIMESTAMP(), 0)",
                            self.shard_db
                        ),
                        (id, user),
                    )
                });
                match written {
                    Some(Ok(())) => {
                        self.acked.lock().unwrap().push((user, id));
                        break;
                    }
                    Some(Err(mysql::Error::MySqlError(e))) if e.code == 1644 => {
                        self.refused.fetch_add(1, SeqCst);
                        ask(&format!("delete {}\r\n", self.key(user)), 1);
                    }
                    other => {
                        let mut last = self.last_error.lock().unwrap();
                        *last = Some(format!("{other:?}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Acknowledged writes that are not on their user's directory shard, or are on another one.
fn misplaced(env: &Env, acked: &[(u64, u64)]) -> Vec<String> {
    for (_, ports) in env.fed.shards() {
        common::wait_replicated(&mut common::conn(ports[0]), ports[1]);
        common::wait_replicated(&mut common::conn(ports[1]), ports[0]);
    }
    let mut wrong = Vec::new();
    for (user, id) in acked {
        let home = env.directory(*user).0;
        for (shard, ports) in env.fed.shards() {
            for port in ports {
                let n: u64 = common::conn(port)
                    .exec_first(
                        format!(
                            "SELECT COUNT(*) FROM {}.photos WHERE photo_id = ?",
                            env.shard_db()
                        ),
                        (id,),
                    )
                    .unwrap()
                    .unwrap();
                if (shard == home) != (n == 1) {
                    wrong.push(format!(
                        "user {user} photo {id}: {n} on {shard} ({port}), home {home}"
                    ));
                }
            }
        }
    }
    wrong
}

/// Runs `app` on `users` in two threads while `work` runs; returns what `work` returned.
fn while_writing<T>(app: &App, users: &[u64], work: impl FnOnce() -> T) -> T {
    app.stop.store(false, std::sync::atomic::Ordering::SeqCst);
    /// Stops the writers however the work ends (a failed assertion included).
    struct StopOnDrop<'a>(&'a App);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    std::thread::scope(|s| {
        let _stop = StopOnDrop(app);
        for half in users.chunks(users.len().div_ceil(2)) {
            s.spawn(move || app.run(half));
        }
        // Every user's entry is cached before the work starts.
        let start = std::time::Instant::now();
        while !{
            let acked = app.acked.lock().unwrap();
            users.iter().all(|u| acked.iter().any(|(a, _)| a == u))
        } {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the application did not write to every user; its last error: {:?}",
                app.last_error.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = work();
        std::thread::sleep(Duration::from_millis(500));
        app.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        out
    })
}

/// A world of `users` small accounts, the write guard installed when `guarded`, `[cache]`
/// (shardctl invalidating) when `invalidating`.
fn app_world(name: &str, users: std::ops::Range<u64>, guarded: bool, invalidating: bool) -> Env {
    let env = if invalidating {
        world(name)
    } else {
        let env = Env::new(fed(), name);
        env.register_shards();
        env
    };
    for u in users {
        env.seed_user(u, 20);
    }
    if guarded {
        let text = std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("[shards]\n", "[shards]\nwrite_guard = true\n");
        std::fs::write(&env.config, text).unwrap();
        env.json(&["guard", "install"]);
    }
    env
}

/// Makes `heavy` weigh four times the other and rebalances: (exit code, report).
fn rebalance_onto(env: &Env, heavy: &str) -> (i32, serde_json::Value) {
    env.json(&["shard", "set-weight", heavy, "4"]);
    env.run_json(&["rebalance", "apply", "--tolerance", "0"])
}

/// With the guard and invalidation on, an application writes through a rebalance, a streamed
/// `migrate` and a drain; every write it saw acknowledged is on its user's directory shard.
fn every_acknowledged_write_is_home(name: &str, users: std::ops::Range<u64>, zookeeper: bool) {
    let _turn = CACHE.write().unwrap_or_else(|p| p.into_inner());
    let env = app_world(name, users.clone(), true, true);
    if zookeeper {
        env.keep_locks_in_zookeeper("6s");
    }
    let users: Vec<u64> = users.collect();
    let app = App::new(&env, name);
    let heavy = env.directory(users[0]).0;
    let light = env.other_shard(&heavy);
    let (code, applied) = while_writing(&app, &users, || rebalance_onto(&env, &light));
    assert_eq!(code, 0, "{applied}");
    assert!(applied["done"].as_u64().unwrap() > 0, "{applied}");
    assert_eq!(applied["failed"].as_array().unwrap().len(), 0, "{applied}");
    // One account by the streamed mover (`migrate`) while the application writes to it.
    let moved = users[5];
    let target = env.other_shard(&env.directory(moved).0);
    let single = while_writing(&app, &users, || {
        env.run_json(&["migrate", &moved.to_string(), "--to", &target])
    });
    assert_eq!(single.0, 0, "{}", single.1);
    assert_eq!(env.directory(moved).0, target);
    let drained = while_writing(&app, &users, || {
        env.run_json(&["maintenance", "drain", "--half", "a", "--timeout", "30s"])
    });
    assert_eq!(
        drained.0, 0,
        "the drain waited for new sessions: {}",
        drained.1
    );
    env.json(&["maintenance", "restore", "--half", "a"]);
    let acked = app.acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the application wrote {} rows",
        acked.len()
    );
    let wrong = misplaced(&env, &acked);
    assert!(
        wrong.is_empty(),
        "{} of {} writes misplaced: {:?}",
        wrong.len(),
        acked.len(),
        &wrong[..wrong.len().min(5)]
    );
    if zookeeper {
        let locks = env.json(&["lock", "list"]);
        assert_eq!(locks, json!([]), "locks left in ZooKeeper");
    }
}

#[test]
fn with_the_guard_and_invalidation_every_acknowledged_write_is_where_the_ring_says() {
    every_acknowledged_write_is_home("appsafe", 3001..3031, false);
}

#[test]
fn with_zookeeper_locks_every_acknowledged_write_is_where_the_ring_says() {
    every_acknowledged_write_is_home("appzk", 3201..3231, true);
}

#[test]
fn without_the_guard_and_invalidation_a_stale_cache_misplaces_writes() {
    let _turn = CACHE.write().unwrap_or_else(|p| p.into_inner());
    let users: Vec<u64> = (3101..3131).collect();
    let env = app_world("appbare", 3101..3131, false, false);
    let app = App::new(&env, "appbare");
    let heavy = env.directory(users[0]).0;
    let light = env.other_shard(&heavy);
    // Every user's entry cached; then the users are moved while quiet (verification passes:
    // without the guard a user written during its move cannot move at all); then they write
    // again, routed by the cache shardctl did not invalidate.
    while_writing(&app, &users, || ());
    let (_, applied) = rebalance_onto(&env, &light);
    assert!(applied["done"].as_u64().unwrap() > 0, "{applied}");
    while_writing(&app, &users, || ());
    let acked = app.acked.lock().unwrap().clone();
    let wrong = misplaced(&env, &acked);
    assert!(
        !wrong.is_empty(),
        "a stale cache should have sent writes to a user's old shard"
    );
}

#[test]
fn the_guard_refuses_every_kind_of_write_to_a_guarded_owner_and_only_that() {
    let _turn = CACHE.write().unwrap_or_else(|p| p.into_inner());
    let env = app_world("guardkinds", 4001..4002, true, false);
    let home = env.directory(4001).0;
    let port = env.shard_ports(&home)[0];
    let db = env.shard_db();
    let mut c = common::conn(port);
    c.query_drop(format!("USE {db}")).unwrap();
    let photo = |c: &mut mysql::Conn, owner: u64| -> u64 {
        c.exec_first(
            "SELECT photo_id FROM photos WHERE owner_id = ? LIMIT 1",
            (owner,),
        )
        .unwrap()
        .unwrap()
    };
    // Another owner's row beside the guarded user's, written as an application would.
    c.query_drop("INSERT INTO photos (photo_id, owner_id, title, taken_at, views) VALUES (4999000001, 4999, 'x', NOW(), 0)")
        .unwrap();
    let (mine, other) = (photo(&mut c, 4001), photo(&mut c, 4999));
    common::guard_by_hand(port, &db, 4001, Some("elsewhere"));
    let mut admin = common::shardctl_conn(port);
    admin.query_drop(format!("USE {db}")).unwrap();
    let refused = |c: &mut mysql::Conn, sql: String| match c.query_drop(&sql) {
        Err(mysql::Error::MySqlError(e)) => {
            assert_eq!((e.code, e.state.as_str()), (1644, "45000"), "{sql}");
            assert!(
                e.message.contains("user 4001") && e.message.contains("elsewhere"),
                "{}",
                e.message
            );
        }
        other => panic!("{sql}: {other:?}"),
    };
    refused(&mut c, "INSERT INTO photos (photo_id, owner_id, title, taken_at, views) VALUES (1, 4001, 'x', NOW(), 0)".into());
    refused(
        &mut c,
        format!("UPDATE photos SET views = views + 1 WHERE photo_id = {mine}"),
    );
    refused(
        &mut c,
        format!("UPDATE photos SET owner_id = 4001 WHERE photo_id = {other}"),
    );
    refused(
        &mut c,
        format!("DELETE FROM photos WHERE photo_id = {mine}"),
    );
    // Another owner's rows are written as ever.
    c.query_drop(format!(
        "UPDATE photos SET views = views + 1 WHERE photo_id = {other}"
    ))
    .unwrap();
    // Nothing an application can set in its session passes for shardctl: not the variable
    // older shardctl sessions set, whatever its value.
    for value in ["1", "0", "'shardctl'"] {
        c.query_drop(format!("SET @shardctl_writer = {value}"))
            .unwrap();
        refused(
            &mut c,
            format!("UPDATE photos SET views = views + 1 WHERE photo_id = {mine}"),
        );
    }
    // shardctl's own login passes.
    admin
        .query_drop(format!(
            "UPDATE photos SET views = views + 1 WHERE photo_id = {mine}"
        ))
        .unwrap();
    let status = env.json(&["guard", "status"]);
    let here = common::server(&status, port);
    assert_eq!(
        (here["installed"].as_bool(), here["guarded"].as_u64()),
        (Some(true), Some(1)),
        "{status}"
    );
    // A guard never lapses by itself: removing the guard is refused while it guards anyone,
    // changing nothing; pruning lifts only rows older than asked.
    let removing = env.run(&["guard", "remove", "--format", "json"]);
    assert_eq!(removing.code, 4, "{}", removing.stdout);
    assert!(
        removing
            .stdout
            .contains(&format!("127.0.0.1:{port} guards 1")),
        "{}",
        removing.stdout
    );
    assert_eq!(
        common::server(&env.json(&["guard", "status"]), port)["installed"],
        true
    );
    let young = env.json(&["guard", "prune", "--older-than", "1h"]);
    assert_eq!(young["users"], 0, "{young}");
    refused(
        &mut c,
        format!("UPDATE photos SET views = views + 1 WHERE photo_id = {mine}"),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let planned = env.json(&["guard", "prune", "--older-than", "1s", "--dry-run"]);
    assert_eq!(planned["users"], 1, "{planned}");
    assert_eq!(
        common::server(&env.json(&["guard", "status"]), port)["guarded"],
        1
    );
    let pruned = env.json(&["guard", "prune", "--older-than", "1s"]);
    assert_eq!(
        common::server(&pruned, port)["users"],
        serde_json::json!([4001]),
        "{pruned}"
    );
    // Both prunes are audited; the dry run is not.
    assert_eq!(env.audited("guard.prune", &format!("127.0.0.1:{port}")), 2);
    c.query_drop(format!(
        "UPDATE photos SET views = views + 1 WHERE photo_id = {mine}"
    ))
    .unwrap();
    env.json(&["guard", "remove"]);
    let gone = env.json(&["guard", "status"]);
    assert_eq!(common::server(&gone, port)["installed"], false, "{gone}");
    assert!(
        env.run(&["doctor"]).code != 0,
        "doctor reports the missing triggers"
    );
}

//! Online moves: an application keeps writing to the account being moved (inserts, updates of
//! indexed columns and of the owner, deletes, large rows, NULLs, binary and 4-byte UTF-8 values,
//! DATETIME(6), DECIMAL, JSON), and after the move the destination holds exactly what the
//! application saw acknowledged. With the `failpoints` feature: a crash at every point of an
//! online move, then `migrate resume`, gives the same result; a source server dying mid
//! catch-up and a binary log purged under the mover end in a clean roll-back.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use common::app::Rng;
use common::{conn, federation, user_rows, wait_replicated, Env, Federation, Rows};
use mysql::prelude::Queryable;
use mysql::Value;

fn fed() -> &'static Federation {
    federation("online", 25380, 2)
}

/// One test at a time: a move's read-only mark waits for every transaction writing on its
/// source (another test's copy into the same server would be one), and two tests kill or purge
/// a source server.
static SERVERS: std::sync::RwLock<()> = std::sync::RwLock::new(());

const EVENTS: &str = "CREATE TABLE IF NOT EXISTS events (
    id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    owner_id BIGINT UNSIGNED NOT NULL,
    tag VARCHAR(40) CHARACTER SET utf8mb4 NULL,
    at DATETIME(6) NULL,
    amount DECIMAL(20,6) NULL,
    doc JSON NULL,
    raw VARBINARY(64) NULL,
    big LONGBLOB NULL,
    KEY owner (owner_id, id),
    KEY tag (tag)
) ENGINE=InnoDB";

const COLUMNS: &str = "id, owner_id, tag, at, amount, doc, raw, big";

/// A row as the server prints it in the text protocol.
type Row = Vec<Option<Vec<u8>>>;

/// The values of a row of `owner` (as written, and as the server prints them back).
fn row(id: u64, owner: u64, rng: &mut Rng) -> Row {
    let s = |v: String| Some(v.into_bytes());
    let n = rng.next();
    let tag = (!n.is_multiple_of(10)).then(|| format!("t{} 😀𝄞 ü", n % 997).into_bytes());
    let at = s(format!(
        "20{:02}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        n % 50,
        n % 12 + 1,
        n % 28 + 1,
        n % 24,
        n % 60,
        (n >> 8) % 60,
        (n >> 16) % 1_000_000
    ));
    let amount = if n.is_multiple_of(7) {
        None
    } else {
        s(format!(
            "{}{}.{:06}",
            if n.is_multiple_of(3) { "-" } else { "" },
            (n >> 20) % 100_000_000,
            (n >> 4) % 1_000_000
        ))
    };
    let doc = s(format!(
        r#"{{"n": {}, "s": "ü\"q", "a": [null, true, 1.5]}}"#,
        n % 1000
    ));
    let raw: Vec<u8> = (0..(n % 64))
        .map(|i| (i as u8).wrapping_mul(n as u8 | 1))
        .collect();
    let big = (n.is_multiple_of(200)).then(|| vec![(n % 251) as u8; 200_000 + (n % 1000) as usize]);
    vec![
        s(id.to_string()),
        s(owner.to_string()),
        tag,
        at,
        amount,
        doc,
        Some(raw),
        big,
    ]
}

fn params(r: &Row) -> Vec<Value> {
    r.iter()
        .map(|v| v.clone().map(Value::Bytes).unwrap_or(Value::NULL))
        .collect()
}

/// An application writing to two users of one shard (the one being moved and a neighbour it
/// trades rows with). It routes every write by the ring (the user's shard's servers, the one
/// at user mod count), waits while the user is `moving`, retries a write-guard refusal, and
/// keeps its own record of every row as its acknowledged writes left it.
struct App {
    ring_port: u16,
    ring_db: String,
    shard_db: String,
    user: u64,
    neighbour: u64,
    rows: Mutex<BTreeMap<u64, Row>>,
    next_id: AtomicU64,
    stop: AtomicBool,
    acked: AtomicU64,
    refused: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl App {
    fn new(env: &Env, user: u64, neighbour: u64, seeded: BTreeMap<u64, Row>) -> App {
        App {
            ring_port: env.fed.ring_port(),
            ring_db: env.ring_db(),
            shard_db: env.shard_db(),
            user,
            neighbour,
            next_id: AtomicU64::new(seeded.keys().max().unwrap() + 1),
            rows: Mutex::new(seeded),
            stop: AtomicBool::new(false),
            acked: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The server the ring routes `user` to, or None while it is moving.
    fn route(&self, ring: &mut mysql::Conn, user: u64) -> Option<u16> {
        let rows: Vec<(String, u16)> = ring
            .exec(
                format!(
                    "SELECT u.state, ss.port FROM {0}.users u JOIN {0}.shard_servers ss USING (shard_id)
                     WHERE u.user_id = ? AND ss.status = 'online' ORDER BY ss.half, ss.host, ss.port",
                    self.ring_db
                ),
                (user,),
            )
            .unwrap();
        if rows.is_empty() || rows[0].0 == "moving" {
            return None;
        }
        Some(rows[(user % rows.len() as u64) as usize].1)
    }

    /// One write (or a transaction of two): the statements, and what the record becomes
    /// once they are acknowledged.
    fn plan(&self, rng: &mut Rng) -> Vec<(String, Vec<Value>, u64, Option<Row>)> {
        let rows = self.rows.lock().unwrap();
        let pick = |rng: &mut Rng, owner: u64| -> Option<(u64, Row)> {
            let ids: Vec<&u64> = rows
                .iter()
                .filter(|(_, r)| r[1].as_deref() == Some(owner.to_string().as_bytes()))
                .map(|(id, _)| id)
                .collect();
            (!ids.is_empty()).then(|| {
                let id = *ids[rng.below(ids.len() as u64) as usize];
                (id, rows[&id].clone())
            })
        };
        let db = &self.shard_db;
        let mut out = Vec::new();
        let ops = if rng.below(10) == 0 { 2 } else { 1 };
        for _ in 0..ops {
            let dice = rng.below(100);
            let op = match dice {
                0..=39 => {
                    let id = self.next_id.fetch_add(1, SeqCst);
                    let r = row(id, self.user, rng);
                    Some((
                        format!("INSERT INTO {db}.events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                        params(&r),
                        id,
                        Some(r),
                    ))
                }
                40..=64 => pick(rng, self.user).map(|(id, old)| {
                    let mut r = row(id, self.user, rng);
                    r[7] = old[7].clone();
                    (
                        format!("UPDATE {db}.events SET tag = ?, at = ?, amount = ?, doc = ?, raw = ? WHERE id = ?"),
                        vec![params(&r)[2].clone(), params(&r)[3].clone(), params(&r)[4].clone(),
                             params(&r)[5].clone(), params(&r)[6].clone(), Value::from(id)],
                        id,
                        Some(r),
                    )
                }),
                65..=84 => {
                    let (from, to) = if dice < 75 {
                        (self.user, self.neighbour)
                    } else {
                        (self.neighbour, self.user)
                    };
                    pick(rng, from).map(|(id, mut r)| {
                        r[1] = Some(to.to_string().into_bytes());
                        (
                            format!("UPDATE {db}.events SET owner_id = ? WHERE id = ?"),
                            vec![Value::from(to), Value::from(id)],
                            id,
                            Some(r),
                        )
                    })
                }
                _ => pick(rng, self.user).map(|(id, _)| {
                    (
                        format!("DELETE FROM {db}.events WHERE id = ?"),
                        vec![Value::from(id)],
                        id,
                        None,
                    )
                }),
            };
            out.extend(op);
        }
        out
    }

    /// Writes until stopped.
    fn run(&self, seed: u64) {
        let mut rng = Rng(seed | 1);
        let mut ring = conn(self.ring_port);
        while !self.stop.load(SeqCst) {
            // A steady rate, not a busy loop: many tests share two cores.
            std::thread::sleep(Duration::from_millis(1));
            let writes = self.plan(&mut rng);
            // Every server a write's rows live on must be routable: both users share a shard.
            let Some(port) = self.route(&mut ring, self.user) else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            // Rows change hands only while both users live on the same server.
            let trading = writes.iter().any(|(sql, ..)| sql.contains("SET owner_id"));
            if trading && self.route(&mut ring, self.neighbour) != Some(port) {
                continue;
            }
            let mut c = match common::conn_within(port, Duration::from_secs(2)) {
                Some(c) => c,
                None => continue,
            };
            // Ok(false): refused by the write guard.
            let result = (|| -> Result<bool, String> {
                let mut tx = c
                    .start_transaction(mysql::TxOpts::default())
                    .map_err(|e| e.to_string())?;
                for (sql, p, id, _) in &writes {
                    match tx.exec_drop(sql, p.clone()) {
                        Err(mysql::Error::MySqlError(e)) if e.code == 1644 => return Ok(false),
                        Err(e) => return Err(format!("{e} on {port}")),
                        Ok(()) if tx.affected_rows() != 1 => {
                            return Err(format!("`{sql}` of row {id} changed no row on {port}"))
                        }
                        Ok(()) => {}
                    }
                }
                tx.commit().map(|()| true).map_err(|e| e.to_string())
            })();
            match result {
                Ok(true) => {
                    let mut rows = self.rows.lock().unwrap();
                    for (_, _, id, after) in writes {
                        match after {
                            Some(r) => rows.insert(id, r),
                            None => rows.remove(&id),
                        };
                    }
                    self.acked.fetch_add(1, SeqCst);
                }
                Ok(false) => {
                    self.refused.fetch_add(1, SeqCst);
                }
                Err(e) => *self.last_error.lock().unwrap() = Some(e),
            }
        }
    }

    /// The rows of `owner` the application's record says there are.
    fn expected(&self, owner: u64) -> Rows {
        let mut rows: Rows = self
            .rows
            .lock()
            .unwrap()
            .values()
            .filter(|r| r[1].as_deref() == Some(owner.to_string().as_bytes()))
            .cloned()
            .collect();
        rows.sort();
        rows
    }

    /// Runs the application while `work` runs (and a little after); returns what it returned.
    fn while_writing<T>(&self, work: impl FnOnce() -> T) -> T {
        self.stop.store(false, SeqCst);
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, SeqCst);
            }
        }
        std::thread::scope(|s| {
            let _stop = StopOnDrop(&self.stop);
            s.spawn(|| self.run(self.user));
            let before = self.acked.load(SeqCst);
            common::wait_until("the application to write", || {
                self.acked.load(SeqCst) > before + 20
            });
            let out = work();
            let after = self.acked.load(SeqCst);
            common::wait_until("the application to write after the work", || {
                self.acked.load(SeqCst) > after + 20
            });
            self.stop.store(true, SeqCst);
            out
        })
    }
}

/// A world with the write guard installed, the `events` table, and `user` seeded with
/// `photos` demo photos and `events` events (its neighbour, on the same shard, with 200):
/// (env, app, source shard, destination shard).
fn world(name: &str, user: u64, photos: u64, events: u64) -> (Env, App, String, String) {
    let env = Env::new(fed(), name);
    env.register_shards();
    for (_, ports) in env.fed.shards() {
        let mut c = conn(ports[0]);
        c.query_drop(format!("USE {}", env.shard_db())).unwrap();
        c.query_drop(EVENTS).unwrap();
        wait_replicated(&mut c, ports[1]);
    }
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("[shards]\n", "[shards]\nwrite_guard = true\n")
        + "[[shards.tables]]\nname = \"events\"\nowner_column = \"owner_id\"\n";
    std::fs::write(&env.config, text).unwrap();
    env.json(&["guard", "install"]);
    let (from, to, _) = env.seed_move(user, photos);
    let neighbour = user + 1;
    env.ring()
        .exec_drop(
            "INSERT INTO users (user_id, shard_id) SELECT ?, shard_id FROM users WHERE user_id = ?",
            (neighbour, user),
        )
        .unwrap();
    let port = env.shard_ports(&from)[0];
    let mut c = conn(port);
    let mut rng = Rng(user * 7919);
    let mut seeded = BTreeMap::new();
    let ids = (1..=events)
        .map(|i| (user * 1_000_000 + i, user))
        .chain((1..=200).map(|i| (user * 1_000_000 + events + i, neighbour)));
    let ids: Vec<(u64, u64)> = ids.collect();
    for chunk in ids.chunks(500) {
        let rows: Vec<Row> = chunk.iter().map(|&(id, o)| row(id, o, &mut rng)).collect();
        let sql = format!(
            "INSERT INTO {}.events ({COLUMNS}) VALUES {}",
            env.shard_db(),
            vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; rows.len()].join(", ")
        );
        c.exec_drop(sql, rows.iter().flat_map(params).collect::<Vec<_>>())
            .unwrap();
        for (r, &(id, _)) in rows.into_iter().zip(chunk) {
            seeded.insert(id, r);
        }
    }
    wait_replicated(&mut c, env.shard_ports(&from)[1]);
    let app = App::new(&env, user, neighbour, seeded);
    (env, app, from, to)
}

/// The user's events on every server: exactly the application's record on both servers of
/// its directory shard, none anywhere else. The neighbour's too, on its shard.
fn assert_events_as_acknowledged(env: &Env, app: &App) {
    for (_, ports) in env.fed.shards() {
        wait_replicated(&mut conn(ports[0]), ports[1]);
        wait_replicated(&mut conn(ports[1]), ports[0]);
    }
    for owner in [app.user, app.neighbour] {
        let (home, state) = env.directory(owner);
        assert_eq!(state, "active", "user {owner} left {state}");
        let expected = app.expected(owner);
        for (shard, ports) in env.fed.shards() {
            for port in ports.clone() {
                let got = user_rows(port, &env.shard_db(), "events", "owner_id", owner);
                if shard == home {
                    if got.len() != expected.len() {
                        let ids = |r: &Rows| -> std::collections::BTreeSet<Vec<u8>> {
                            r.iter().map(|x| x[0].clone().unwrap()).collect()
                        };
                        let (g, e) = (ids(&got), ids(&expected));
                        let missing: Vec<String> = e
                            .difference(&g)
                            .map(|x| String::from_utf8_lossy(x).into_owned())
                            .collect();
                        let extra: Vec<String> = g
                            .difference(&e)
                            .map(|x| String::from_utf8_lossy(x).into_owned())
                            .collect();
                        let elsewhere: Vec<(u16, u64)> = env
                            .fed
                            .shards()
                            .into_iter()
                            .flat_map(|(_, p)| p)
                            .map(|p| {
                                let n: u64 = conn(p)
                                    .query_first(format!(
                                        "SELECT COUNT(*) FROM {}.events WHERE id IN ({})",
                                        env.shard_db(),
                                        missing.join(",")
                                    ))
                                    .unwrap()
                                    .unwrap();
                                (p, n)
                            })
                            .collect();
                        let owners: Vec<(u64, u64)> = conn(ports[0])
                            .query(format!(
                                "SELECT id, owner_id FROM {}.events WHERE id IN ({})",
                                env.shard_db(),
                                missing.join(",")
                            ))
                            .unwrap();
                        panic!("missing {missing:?} extra {extra:?} found {elsewhere:?} owners on home {owners:?}");
                    }
                    assert_eq!(got.len(), expected.len(), "user {owner}'s events on {port}");
                    for (g, e) in got.iter().zip(&expected) {
                        assert_eq!(g, e, "a row of user {owner} on {port}");
                    }
                } else {
                    assert!(
                        got.is_empty(),
                        "user {owner} left {} events on {port}",
                        got.len()
                    );
                }
            }
        }
    }
}

#[test]
fn an_account_moves_online_while_the_application_writes_to_it() {
    let _alone = SERVERS.write().unwrap_or_else(|p| p.into_inner());
    let (env, app, from, to) = world("online_basic", 1001, 20_000, 20_000);
    let original = common::fingerprint(env.shard_ports(&from)[0], &env.shard_db(), 1001);
    let planned = env.json(&[
        "migrate",
        "1001",
        "--to",
        &to,
        "--mode",
        "online",
        "--dry-run",
    ]);
    assert_eq!(planned["mode"], "online", "{planned}");
    let acked_before = app.acked.load(SeqCst);
    let (code, moved) = app.while_writing(|| {
        let moved = env.run_json(&["migrate", "1001", "--to", &to, "--mode", "online"]);
        // The application wrote while the account was being copied.
        assert!(app.acked.load(SeqCst) > acked_before + 20);
        moved
    });
    assert_eq!(code, 0, "{moved}");
    assert_eq!(moved["state"], "done", "{moved}");
    assert_eq!(moved["mode"], "online", "{moved}");
    // The application's writes during the copy reached the destination as the source's binary
    // log's events.
    assert!(
        moved["catch_up"]["changes"].as_u64().unwrap() > 0,
        "{moved}"
    );
    assert!(
        moved["read_only_seconds"].as_f64().unwrap() > 0.0,
        "{moved}"
    );
    assert_eq!(env.directory(1001).0, to);
    assert_eq!(app.last_error.lock().unwrap().as_deref(), None);
    assert_events_as_acknowledged(&env, &app);
    // The demo tables nobody wrote to moved whole.
    for port in env.shard_ports(&to) {
        assert_eq!(common::fingerprint(port, &env.shard_db(), 1001), original);
    }
    let journal = env.json(&["migrate", "status", "1001"]);
    assert_eq!(journal[0]["mode"], "online", "{journal}");
    assert!(journal[0]["binlog_position"]
        .as_str()
        .unwrap()
        .contains(':'));
    assert!(
        journal[0]["read_only_seconds"].as_f64().is_some(),
        "{journal}"
    );
}

#[test]
fn online_is_refused_where_the_log_cannot_be_followed_and_auto_moves_offline_saying_why() {
    let _alone = SERVERS.write().unwrap_or_else(|p| p.into_inner());
    let (env, _app, from, to) = world("online_refused", 1101, 300, 100);
    // shardctl's replication id taken by the source itself.
    let src_port = env.shard_ports(&from)[(1101 % 2) as usize];
    let taken: u32 = conn(src_port)
        .query_first("SELECT @@server_id")
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!("{text}[migrate]\nserver_id = {taken}\nonline_min_rows = 0\n"),
    )
    .unwrap();
    let before = env.snapshot();
    let (code, refused) = env.run_json(&["migrate", "1101", "--to", &to, "--mode", "online"]);
    assert_eq!(code, 4, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("server_id"), "{message}");
    assert_eq!(env.snapshot(), before, "a refused move changed something");
    // The same id taken by the source's peer, which would replicate under shardctl's name.
    let peer_port = env.shard_ports(&from)[((1101 + 1) % 2) as usize];
    let peer_id: u32 = conn(peer_port)
        .query_first("SELECT @@server_id")
        .unwrap()
        .unwrap();
    std::fs::write(
        &env.config,
        format!("{text}[migrate]\nserver_id = {peer_id}\nonline_min_rows = 0\n"),
    )
    .unwrap();
    let (code, refused) = env.run_json(&["migrate", "1101", "--to", &to, "--mode", "online"]);
    assert_eq!(code, 4, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("127.0.0.1:{peer_port} uses server_id {peer_id}")),
        "{message}"
    );
    assert_eq!(env.snapshot(), before, "a refused move changed something");
    let (code, moved) = env.run_json(&["migrate", "1101", "--to", &to]);
    assert_eq!(code, 0, "{moved}");
    assert_eq!(moved["mode"], "offline", "{moved}");
    assert!(
        moved["note"].as_str().unwrap().contains("server_id"),
        "{moved}"
    );
    assert!(moved["read_only_seconds"].as_f64().is_some(), "{moved}");
    // The doctor says what to fix, with the GRANT an operator would need.
    let (code, doctor) = env.run_json(&["doctor"]);
    assert_eq!(code, 1, "{doctor}");
    let check = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["check"] == "online moves"
                && c["target"]
                    .as_str()
                    .unwrap()
                    .contains(&src_port.to_string())
        })
        .unwrap_or_else(|| panic!("no online check: {doctor}"))
        .clone();
    assert_eq!(check["ok"], false, "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("server_id"),
        "{check}"
    );
    assert!(
        check["fix"].as_str().unwrap().contains("server_id"),
        "{check}"
    );
}

#[test]
fn cleanup_later_leaves_the_source_guarded_until_resume() {
    let _alone = SERVERS.write().unwrap_or_else(|p| p.into_inner());
    let (env, app, from, to) = world("online_cleanup_later", 1201, 2_000, 2_000);
    let moved = app.while_writing(|| {
        env.json(&[
            "migrate",
            "1201",
            "--to",
            &to,
            "--mode",
            "online",
            "--cleanup",
            "later",
        ])
    });
    assert_eq!(moved["state"], "flipped", "{moved}");
    assert_eq!(env.directory(1201).0, to);
    let left = user_rows(
        env.shard_ports(&from)[0],
        &env.shard_db(),
        "events",
        "owner_id",
        1201,
    );
    assert!(!left.is_empty(), "the source's rows were kept");
    // Guarded: an application routing from a stale entry is refused, not lost.
    let err = conn(env.shard_ports(&from)[(1201 % 2) as usize])
        .exec_drop(
            format!(
                "DELETE FROM {}.events WHERE owner_id = 1201 LIMIT 1",
                env.shard_db()
            ),
            (),
        )
        .unwrap_err();
    assert!(err.to_string().contains("write guard"), "{err}");
    let resumed = env.json(&["migrate", "resume", "1201"]);
    assert_eq!(resumed["resumed"][0]["now"], "done", "{resumed}");
    assert_events_as_acknowledged(&env, &app);
}

#[test]
fn rebalance_moves_a_large_account_online_and_reports_how_each_moved() {
    let _alone = SERVERS.write().unwrap_or_else(|p| p.into_inner());
    let (env, app, from, to) = world("online_rebalance", 1401, 3_000, 2_000);
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!("{text}[migrate]\nonline_min_rows = 1000\n"),
    )
    .unwrap();
    // A small neighbour goes in a batch beside it.
    env.seed_user(1403, 20);
    let small_from = env.directory(1403).0;
    let small_to = env.other_shard(&small_from);
    let plan = env.write_plan(
        "plan.json",
        vec![
            serde_json::json!({"user": 1401, "from": from, "to": to, "rows": 9_000}),
            serde_json::json!({"user": 1403, "from": small_from, "to": small_to, "rows": 30}),
        ],
    );
    let applied = app.while_writing(|| env.json(&["rebalance", "apply", &plan]));
    assert_eq!(applied["done"], 2, "{applied}");
    assert_eq!(applied["online"], 1, "{applied}");
    let moves = applied["moves"].as_array().unwrap();
    let mode = |u: u64| moves.iter().find(|m| m["user"] == u).unwrap()["mode"].clone();
    assert_eq!(mode(1401), "online", "{applied}");
    assert_eq!(mode(1403), "offline", "{applied}");
    let longest = applied["longest_read_only_seconds"].as_f64().unwrap();
    assert!(moves
        .iter()
        .all(|m| m["read_only_seconds"].as_f64().unwrap() <= longest));
    assert_eq!(env.directory(1401).0, to);
    assert_events_as_acknowledged(&env, &app);
}

#[cfg(feature = "failpoints")]
mod crashes {
    use super::*;
    use common::{routing_member, Frozen};

    /// The application writes throughout; the mover is killed at `point`, resumed, and the
    /// move made again: the destination holds every acknowledged write, nothing is doubled
    /// or left behind.
    fn crash_at(point: &str, user: u64) {
        let _alone = SERVERS.write().unwrap_or_else(|p| p.into_inner());
        let (env, app, from, to) = world(
            &format!("online_{}", point.replace('.', "_")),
            user,
            3_000,
            3_000,
        );
        let uid = user.to_string();
        app.while_writing(|| {
            let out = env.run_with(
                &["migrate", &uid, "--to", &to, "--mode", "online"],
                &[("SHARDCTL_FAILPOINT", point)],
            );
            assert_eq!(out.code, -1, "{point}: expected a SIGKILL: {}", out.stderr);
            let resumed = env.json(&["migrate", "resume", &uid]);
            let flipped = point == "migrate.after_flip";
            assert_eq!(
                resumed["resumed"][0]["now"],
                if flipped { "done" } else { "rolled_back" },
                "{point}: {resumed}"
            );
            assert_eq!(
                &env.directory(user).0,
                if flipped { &to } else { &from },
                "{point}"
            );
            let done = env.json(&["migrate", &uid, "--to", &to, "--mode", "online"]);
            assert_eq!(done["state"], "done", "{point}: {done}");
        });
        assert_eq!(env.directory(user).0, to);
        assert_events_as_acknowledged(&env, &app);
    }

    macro_rules! crash_tests {
        ($($name:ident => $point:literal, $user:literal;)*) => {
            $(#[test] fn $name() { crash_at($point, $user); })*
            #[test]
            fn every_online_failpoint_is_tested() {
                let tested = [$($point),*];
                for p in shardctl::migrate::state::ONLINE_FAILPOINTS {
                    assert!(tested.contains(p), "no crash test for {p}");
                }
            }
        };
    }

    crash_tests! {
        crash_mid_copy => "migrate.copy_mid", 2001;
        crash_after_copy => "migrate.after_copy", 2011;
        crash_mid_catch_up => "migrate.catchup_mid", 2021;
        crash_between_apply_and_journal => "migrate.apply_before_journal", 2031;
        crash_after_the_moving_mark => "migrate.after_moving", 2041;
        crash_in_the_read_only_window => "migrate.read_only_window", 2051;
        crash_after_verify => "migrate.after_verify", 2061;
        crash_after_flip => "migrate.after_flip", 2071;
        crash_after_follow => "migrate.after_follow", 2081;
    }

    /// Starts an online move of `user` paused right after its first pass over the log.
    fn paused_in_catch_up(env: &Env, user: u64, to: &str) -> std::process::Child {
        paused_at(env, user, to, "migrate.catchup_mid")
    }

    /// Starts an online move of `user` paused at `point`.
    fn paused_at(env: &Env, user: u64, to: &str, point: &str) -> std::process::Child {
        let child = env.spawn(
            &[
                "migrate",
                &user.to_string(),
                "--to",
                to,
                "--mode",
                "online",
                "--format",
                "json",
            ],
            &[("SHARDCTL_FAILPOINT_STOP", point)],
        );
        common::wait_until(&format!("the move to pause at {point}"), || {
            common::is_stopped(child.id())
        });
        child
    }

    /// Runs statements on `port` in a session that logs minimal row images (its key, and
    /// only the columns it changed).
    fn minimal_session(env: &Env, port: u16, statements: &[String]) {
        let mut c = conn(port);
        c.query_drop(format!("USE {}", env.shard_db())).unwrap();
        c.query_drop("SET SESSION binlog_row_image = 'MINIMAL'")
            .unwrap();
        for s in statements {
            c.query_drop(s).unwrap();
            assert_eq!(c.affected_rows(), 1, "{s}");
        }
    }

    /// Both servers of every shard have applied each other's writes.
    fn settled(env: &Env) {
        for (_, ports) in env.fed.shards() {
            wait_replicated(&mut conn(ports[0]), ports[1]);
            wait_replicated(&mut conn(ports[1]), ports[0]);
        }
    }

    /// A session that logs minimal row images names a deleted row by its key alone: the
    /// destination, whose rows of the user mirror the source's, says whether it was the user's
    /// (then it is deleted there too) or someone else's (then nothing happens). A change it
    /// makes to the user's row cannot be applied from such an image: the move is refused and
    /// given back, nothing lost.
    #[test]
    fn a_session_logging_minimal_images_is_followed_where_it_can_be_and_refused_where_not() {
        let _alone = SERVERS.write().unwrap_or_else(|p| p.into_inner());
        let env = Env::new(fed(), "online_minimal");
        env.register_shards();
        let user = 3301;
        let (from, to, _) = env.seed_move(user, 3_000);
        let photo = |user: u64, n: u64| user * 10_000_000 + n;
        let src = env.shard_ports(&from)[(user % 2) as usize];
        // Another user's photos on the same server.
        conn(src)
            .exec_drop(
                format!(
                    "INSERT INTO {}.photos (photo_id, owner_id, title, taken_at) VALUES (?, 3302, 'theirs', NOW())",
                    env.shard_db()
                ),
                (photo(3302, 1),),
            )
            .unwrap();
        let child = paused_at(&env, user, &to, "migrate.after_copy");
        minimal_session(
            &env,
            src,
            &[
                format!("DELETE FROM photos WHERE photo_id = {}", photo(user, 5)),
                format!("DELETE FROM photos WHERE photo_id = {}", photo(3302, 1)),
            ],
        );
        settled(&env);
        let expected = common::fingerprint(src, &env.shard_db(), user);
        let (code, out) = finish(child);
        assert_eq!(code, Some(0), "{out}");
        let done: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(done["state"], "done", "{done}");
        settled(&env);
        for port in env.shard_ports(&to) {
            assert_eq!(common::fingerprint(port, &env.shard_db(), user), expected);
        }
        // Back, with the user's photo changed by such a session during the move.
        let back = env.shard_ports(&to)[(user % 2) as usize];
        let child = paused_at(&env, user, &from, "migrate.after_copy");
        minimal_session(
            &env,
            back,
            &[format!(
                "UPDATE photos SET views = views + 1 WHERE photo_id = {}",
                photo(user, 6)
            )],
        );
        let (code, out) = finish(child);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("binlog_row_image"), "{out}");
        assert_eq!(env.directory(user), (to.clone(), "active".into()));
        settled(&env);
        let now = common::fingerprint(back, &env.shard_db(), user);
        assert_ne!(now, expected, "the update is on the source");
        for port in env.shard_ports(&from) {
            assert!(
                common::fingerprint(port, &env.shard_db(), user)
                    .iter()
                    .all(|(_, n, _)| *n == 0),
                "rows of the user left on {port}"
            );
        }
    }

    /// The mover's exit code and JSON error once it ran on.
    fn finish(child: std::process::Child) -> (Option<i32>, String) {
        unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// After a failed online move: the user active and writable on its source shard, nothing
    /// of it on the destination.
    fn assert_rolled_back(env: &Env, app: &App, from: &str) {
        let resumed = env.json(&["migrate", "resume", &app.user.to_string()]);
        for r in resumed["resumed"].as_array().unwrap() {
            assert_eq!(r["now"], "rolled_back", "{resumed}");
        }
        assert_eq!(env.directory(app.user), (from.to_string(), "active".into()));
        let writes = app.acked.load(SeqCst);
        app.while_writing(|| {
            common::wait_until("writes on the source", || {
                app.acked.load(SeqCst) > writes + 20
            })
        });
        assert_events_as_acknowledged(env, app);
    }

    /// A write on the source's peer (an application that failed over) reaches the source by
    /// replication and, the source logging what it applies (log_slave_updates), its binary log
    /// too: it is followed like the source's own, and moves with the user, checked by a whole
    /// verification (a peer wrote to the user).
    #[test]
    fn a_write_on_the_sources_peer_is_followed_and_moves_with_the_user() {
        let _alone = SERVERS.write().unwrap_or_else(|p| p.into_inner());
        let (env, app, from, to) = world("online_peer_write", 3201, 3_000, 3_000);
        let peer = env.shard_ports(&from)[1 - (3201 % 2) as usize];
        let child = app.while_writing(|| paused_in_catch_up(&env, 3201, &to));
        let id = app.next_id.fetch_add(1, SeqCst);
        let mut rng = Rng(id);
        let r = row(id, 3201, &mut rng);
        conn(peer)
            .exec_drop(
                format!(
                    "INSERT INTO {}.events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    env.shard_db()
                ),
                params(&r),
            )
            .unwrap();
        app.rows.lock().unwrap().insert(id, r);
        let (code, out) = finish(child);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("\"done\""), "{out}");
        assert_eq!(env.directory(3201), (to.clone(), "active".into()));
        assert_ne!(from, to);
        assert_events_as_acknowledged(&env, &app);
    }

    #[test]
    fn a_binary_log_purged_under_the_mover_rolls_back() {
        let _alone = SERVERS.write().unwrap_or_else(|p| p.into_inner());
        let (env, app, from, to) = world("online_purged", 3001, 3_000, 3_000);
        let src = env.shard_ports(&from)[(3001 % 2) as usize];
        let child = app.while_writing(|| paused_in_catch_up(&env, 3001, &to));
        let mut c = conn(src);
        let journal = env.json(&["migrate", "status", "3001"]);
        let followed = journal[0]["binlog_position"].as_str().unwrap().to_string();
        let followed = followed.rsplit_once(':').unwrap().0.to_string();
        // A log a replica is still reading is kept: rotate until the peer has moved on.
        common::wait_until("the followed binlog to be purged", || {
            c.query_drop("FLUSH BINARY LOGS").unwrap();
            let current: mysql::Row = c.query_first("SHOW MASTER STATUS").unwrap().unwrap();
            let file: String = current.get(0).unwrap();
            wait_replicated(&mut c, env.shard_ports(&from)[1 - (3001 % 2) as usize]);
            c.query_drop(format!("PURGE BINARY LOGS TO '{file}'"))
                .unwrap();
            let logs: Vec<String> = c
                .query_map("SHOW BINARY LOGS", |r: mysql::Row| r.get(0).unwrap())
                .unwrap();
            !logs.contains(&followed)
        });
        let (code, out) = finish(child);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("purged"), "{out}");
        assert_rolled_back(&env, &app, &from);
    }

    /// A source frozen (SIGSTOP) while the mover follows its binary log holds the mover no
    /// longer than Ctrl-C and its 10 s grace; thawed, the move is undone and the user whole.
    #[test]
    fn a_source_frozen_mid_catch_up_honours_ctrl_c() {
        let _alone = SERVERS.write().unwrap_or_else(|p| p.into_inner());
        let (env, app, from, to) = world("online_source_frozen", 3401, 3_000, 3_000);
        let child = app.while_writing(|| paused_in_catch_up(&env, 3401, &to));
        let frozen = Frozen::new(env.fed.server_pid(&routing_member(&from, 3401)));
        unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        std::thread::sleep(Duration::from_millis(500));
        let start = std::time::Instant::now();
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "held {:?} past Ctrl-C",
            start.elapsed()
        );
        assert_ne!(out.status.code(), Some(0));
        drop(frozen);
        assert_rolled_back(&env, &app, &from);
    }

    #[test]
    fn a_source_dying_mid_catch_up_rolls_back() {
        let _alone = SERVERS.write().unwrap_or_else(|p| p.into_inner());
        let (env, app, from, to) = world("online_source_dies", 3101, 3_000, 3_000);
        let child = app.while_writing(|| paused_in_catch_up(&env, 3101, &to));
        let pid = env.fed.server_pid(&routing_member(&from, 3101));
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let (code, out) = finish(child);
        assert_ne!(code, Some(0), "{out}");
        // The source comes back (its data intact: InnoDB recovers) and the move is undone.
        env.json(&["sandbox", "up", "--dir", env.fed.dir.to_str().unwrap()]);
        assert_rolled_back(&env, &app, &from);
        let done =
            app.while_writing(|| env.json(&["migrate", "3101", "--to", &to, "--mode", "online"]));
        assert_eq!(done["state"], "done", "{done}");
        assert_events_as_acknowledged(&env, &app);
    }
}

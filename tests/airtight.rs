//! Every acknowledged write survives a move, and the write guard is airtight: an application
//! that writes in statement format, leaves a prepared XA transaction behind, falls over to a
//! lagging peer, keeps a stale route forever, holds other users' rows in open transactions or
//! sets shardctl's old session variable, and an operator removing the guard mid-move, each
//! either loses nothing or is refused, bounded, with the cause named. Against real
//! master-master pairs with the write guard installed.

#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::sync::{Mutex, MutexGuard};

use common::*;
use mysql::prelude::Queryable;

fn fed() -> &'static Federation {
    federation("airtight", 25480, 2)
}

/// Tests stop replication and freeze servers: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A world with the write guard on and installed, and `user` seeded with `photos` photos:
/// (env, its shard, the other shard).
fn world(name: &str, user: u64, photos: u64) -> (Env, String, String) {
    let env = Env::new(fed(), name);
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("[shards]\n", "[shards]\nwrite_guard = true\n");
    std::fs::write(&env.config, text).unwrap();
    env.register_shards();
    env.json(&["guard", "install"]);
    let (from, to, _) = env.seed_move(user, photos);
    (env, from, to)
}

/// The server the ring routes `user`'s writes to on `shard`, and its peer.
fn route(env: &Env, shard: &str, user: u64) -> (u16, u16) {
    let ports = env.shard_ports(shard);
    let i = (user % 2) as usize;
    (ports[i], ports[1 - i])
}

/// An application's connection (root: not shardctl's login) in the world's shard database.
fn app(env: &Env, port: u16) -> mysql::Conn {
    let mut c = conn(port);
    c.query_drop(format!("USE {}", env.shard_db())).unwrap();
    c
}

/// The first of `user`'s photos on `port`.
fn a_photo(env: &Env, port: u16, user: u64) -> u64 {
    app(env, port)
        .exec_first(
            "SELECT MIN(photo_id) FROM photos WHERE owner_id = ?",
            (user,),
        )
        .unwrap()
        .unwrap()
}

fn views(env: &Env, port: u16, photo: u64) -> Option<u64> {
    app(env, port)
        .exec_first("SELECT views FROM photos WHERE photo_id = ?", (photo,))
        .unwrap()
}

/// Once replication settled: `photo` has `expected` views on every server of `shard`.
fn assert_views(env: &Env, shard: &str, photo: u64, expected: u64) {
    settle(env);
    for port in env.shard_ports(shard) {
        assert_eq!(views(env, port, photo), Some(expected), "on {port}");
    }
}

fn rows_of(env: &Env, port: u16, user: u64) -> u64 {
    app(env, port)
        .exec_first("SELECT COUNT(*) FROM photos WHERE owner_id = ?", (user,))
        .unwrap()
        .unwrap()
}

fn bump(c: &mut mysql::Conn, photo: u64) -> mysql::Result<()> {
    c.exec_drop(
        "UPDATE photos SET views = views + 1 WHERE photo_id = ?",
        (photo,),
    )
}

fn is_refusal(r: &mysql::Result<()>) -> bool {
    matches!(r, Err(mysql::Error::MySqlError(e)) if e.code == 1644)
}

/// Both servers of every shard have applied each other's writes.
fn settle(env: &Env) {
    for (_, p) in env.fed.shards() {
        wait_replicated(&mut conn(p[0]), p[1]);
        wait_replicated(&mut conn(p[1]), p[0]);
    }
}

/// Inserts a new photo for `user` on `port` as the application.
fn insert_photo(env: &Env, port: u16, user: u64, photo: u64) -> mysql::Result<()> {
    app(env, port).exec_drop(
        "INSERT INTO photos (photo_id, owner_id, title, taken_at, views) VALUES (?, ?, 'new', NOW(), 0)",
        (photo, user),
    )
}

/// A migration started with `failpoint` set to stop it there, once it stopped.
fn paused(env: &Env, args: &[&str], failpoint: &str) -> std::process::Child {
    let child = env.spawn(args, &[("SHARDCTL_FAILPOINT_STOP", failpoint)]);
    wait_until("the migration to pause", || is_stopped(child.id()));
    child
}

/// An online move of `id` to `to`, paused right after the writable verification: the window
/// an application's last writes before the mark fall in.
fn paused_after_follow(env: &Env, id: &str, to: &str) -> std::process::Child {
    paused(
        env,
        &[
            "migrate", id, "--to", to, "--mode", "online", "--format", "json",
        ],
        "migrate.after_follow",
    )
}

/// An application session on `port` whose writes reach the binary log as statements.
fn statement_session(env: &Env, port: u16) -> mysql::Conn {
    let mut c = app(env, port);
    c.query_drop("SET SESSION binlog_format = STATEMENT")
        .unwrap();
    c
}

/// Resumes a paused command and waits for it: (exit code, stdout).
fn resumed(child: std::process::Child) -> (i32, String) {
    signal(child.id() as i32, libc::SIGCONT);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn statement_format_writes_during_an_online_move_are_never_lost_and_the_give_back_says_why() {
    let _turn = serial();
    let user = 6001;
    let (env, from, to) = world("stmt", user, 3000);
    let (src, peer) = route(&env, &from, user);
    let photo = a_photo(&env, src, user);
    let before = views(&env, src, photo).unwrap();
    let id = user.to_string();
    // Paused after the whole account was verified while writable: the window in which a
    // statement-format update used to be skipped.
    let child = paused_after_follow(&env, &id, &to);
    let mut c = statement_session(&env, src);
    for _ in 0..21 {
        bump(&mut c, photo).unwrap();
    }
    drop(c);
    let (code, out) = resumed(child);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("binlog_format=STATEMENT"), "{out}");
    assert_eq!(env.directory(user), (from.clone(), "active".into()));
    settle(&env);
    for port in [src, peer] {
        assert_eq!(views(&env, port, photo), Some(before + 21), "on {port}");
    }
    for port in env.shard_ports(&to) {
        assert_eq!(rows_of(&env, port, user), 0, "left on {port}");
    }
    // A statement-format write to another user in the same window costs a whole verification,
    // not the move.
    let other = user + 2;
    env.ring()
        .exec_drop(
            "INSERT INTO users (user_id, shard_id) SELECT ?, shard_id FROM users WHERE user_id = ?",
            (other, user),
        )
        .unwrap();
    app(&env, src)
        .exec_drop(
            "INSERT INTO photos (photo_id, owner_id, title, taken_at, views) VALUES (?, ?, 'x', NOW(), 0)",
            (other * 10_000_000 + 1, other),
        )
        .unwrap();
    let child = paused_after_follow(&env, &id, &to);
    let mut c = statement_session(&env, src);
    bump(&mut c, other * 10_000_000 + 1).unwrap();
    let (code, out) = resumed(child);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"done\""), "{out}");
    settle(&env);
    for port in env.shard_ports(&to) {
        assert_eq!(views(&env, port, photo), Some(before + 21), "on {port}");
        assert_eq!(rows_of(&env, port, user), 3000, "on {port}");
    }
    assert_eq!(views(&env, src, other * 10_000_000 + 1), Some(1));
}

#[test]
fn a_prepared_xa_transaction_holds_moves_off_its_server_naming_it_until_it_ends() {
    let _turn = serial();
    let user = 6011;
    let (env, from, to) = world("xa", user, 500);
    let (src, _) = route(&env, &from, user);
    let photo = a_photo(&env, src, user);
    let before = views(&env, src, photo).unwrap();
    let id = user.to_string();
    // Prepared and left behind by its session: only XA RECOVER lists it. Rolled back if the
    // test fails, so no other test meets it.
    struct Prepared(u16);
    impl Drop for Prepared {
        fn drop(&mut self) {
            let _ = conn(self.0).query_drop("XA ROLLBACK 'app-xa-1'");
        }
    }
    let _left = Prepared(src);
    let mut c = app(&env, src);
    c.query_drop("XA START 'app-xa-1'").unwrap();
    bump(&mut c, photo).unwrap();
    c.query_drop("XA END 'app-xa-1'").unwrap();
    c.query_drop("XA PREPARE 'app-xa-1'").unwrap();
    drop(c);
    for mode in ["online", "offline"] {
        let run = env.run(&[
            "migrate", &id, "--to", &to, "--mode", mode, "--format", "json",
        ]);
        assert_eq!(run.code, 4, "{mode}: {}", run.stdout);
        assert!(run.stdout.contains("app-xa-1"), "{mode}: {}", run.stdout);
        assert_eq!(env.directory(user), (from.clone(), "active".into()));
        for port in env.shard_ports(&to) {
            assert_eq!(rows_of(&env, port, user), 0);
        }
    }
    app(&env, src).query_drop("XA COMMIT 'app-xa-1'").unwrap();
    let moved = env.json(&["migrate", &id, "--to", &to, "--mode", "online"]);
    assert_eq!(moved["state"], "done", "{moved}");
    assert_views(&env, &to, photo, before + 1);
}

#[test]
fn the_clean_up_keeps_rows_written_to_the_source_after_the_flip() {
    let _turn = serial();
    let user = 6021;
    let (env, from, to) = world("late", user, 300);
    let (src, _) = route(&env, &from, user);
    let id = user.to_string();
    let run = env.run_with(
        &["migrate", &id, "--to", &to, "--mode", "offline"],
        &[("SHARDCTL_FAILPOINT", "migrate.after_flip")],
    );
    assert_ne!(run.code, 0);
    assert_eq!(env.directory(user).0, to);
    // Written after the flip past the guard (a late XA commit, an administrator).
    let late = user * 10_000_000 + 9_999_999;
    let mut admin = shardctl_conn(src);
    admin
        .exec_drop(
            format!(
                "INSERT INTO {}.photos (photo_id, owner_id, title, taken_at, views) VALUES (?, ?, 'late', NOW(), 7)",
                env.shard_db()
            ),
            (late, user),
        )
        .unwrap();
    let resume = env.run(&["migrate", "resume", &id, "--format", "json"]);
    assert_ne!(resume.code, 0, "{}", resume.stdout);
    assert!(
        resume.stdout.contains("changed after the verification"),
        "{}",
        resume.stdout
    );
    assert_eq!(views(&env, src, late), Some(7));
    assert_eq!(rows_of(&env, src, user), 301);
    // The operator's way out, as the error says: the source's rows cleared by hand.
    admin
        .exec_drop(
            format!("DELETE FROM {}.photos WHERE owner_id = ?", env.shard_db()),
            (user,),
        )
        .unwrap();
    let resume = env.run(&["migrate", "resume", &id, "--format", "json"]);
    assert_eq!(resume.code, 0, "{}", resume.stdout);
}

#[test]
fn a_moved_user_is_refused_on_every_server_it_left_until_it_moves_back() {
    let _turn = serial();
    let user = 6031;
    let (env, from, to) = world("left", user, 200);
    let (src, peer) = route(&env, &from, user);
    let photo = a_photo(&env, src, user);
    let id = user.to_string();
    // The peer applies nothing from the source: a guard sent by replication never reaches it.
    conn(peer).query_drop("STOP SLAVE").unwrap();
    let moved = env.json(&["migrate", &id, "--to", &to, "--mode", "offline"]);
    conn(peer).query_drop("START SLAVE").unwrap();
    assert_eq!(moved["state"], "done", "{moved}");
    settle(&env);
    // A fall-over write to the peer, and one through a stale route to the old server: refused,
    // now and later (the guard does not lapse).
    for round in 0..2 {
        for port in [src, peer] {
            let new = user * 10_000_000 + 8_000_000 + u64::from(port) * 10 + round;
            let wrote = insert_photo(&env, port, user, new);
            assert!(
                is_refusal(&wrote),
                "a write for the moved user was accepted on {port}: {wrote:?}"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    let status = env.json(&["guard", "status"]);
    for port in [src, peer] {
        assert_eq!(server(&status, port)["guarded"], 1, "{status}");
    }
    // Moving back lifts it there, and guards the servers it left now.
    let back = env.json(&["migrate", &id, "--to", &from, "--mode", "offline"]);
    assert_eq!(back["state"], "done", "{back}");
    bump(&mut app(&env, src), photo).unwrap();
    for port in env.shard_ports(&to) {
        let wrote = insert_photo(
            &env,
            port,
            user,
            user * 10_000_000 + 9_000_000 + u64::from(port),
        );
        assert!(is_refusal(&wrote), "on {port}: {wrote:?}");
    }
}

#[test]
fn a_move_given_back_leaves_the_guard_where_it_was_going_as_it_was() {
    let _turn = serial();
    let user = 6081;
    let (env, from, to) = world("back", user, 2000);
    let id = user.to_string();
    let moved = env.json(&["migrate", &id, "--to", &to, "--mode", "offline"]);
    assert_eq!(moved["state"], "done", "{moved}");
    // Moving back, given back (a statement-format write on its source): the shard it left
    // keeps refusing it.
    let (src, _) = route(&env, &to, user);
    let photo = a_photo(&env, src, user);
    let child = paused_after_follow(&env, &id, &from);
    let mut c = statement_session(&env, src);
    bump(&mut c, photo).unwrap();
    let (code, out) = resumed(child);
    assert_eq!(code, 1, "{out}");
    assert_eq!(env.directory(user), (to.clone(), "active".into()));
    for port in env.shard_ports(&from) {
        let wrote = insert_photo(
            &env,
            port,
            user,
            user * 10_000_000 + 7_000_000 + u64::from(port),
        );
        assert!(
            is_refusal(&wrote),
            "a stale route wrote on {port}: {wrote:?}"
        );
    }
    bump(&mut app(&env, src), photo).unwrap();
}

#[test]
fn a_source_server_that_cannot_be_guarded_holds_the_move_naming_it() {
    let _turn = serial();
    let user = 6041;
    let (env, from, to) = world("frozen", user, 200);
    let (src, peer) = route(&env, &from, user);
    let photo = a_photo(&env, src, user);
    let member = env
        .fed
        .servers("shard")
        .into_iter()
        .find(|(_, p, _)| *p == peer)
        .map(|(shard, _, half)| format!("{shard}{half}"))
        .unwrap();
    let run = {
        let _frozen = Frozen::new(env.fed.server_pid(&member));
        env.run(&[
            "migrate",
            &user.to_string(),
            "--to",
            &to,
            "--mode",
            "offline",
            "--format",
            "json",
        ])
    };
    assert_eq!(run.code, 4, "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("127.0.0.1:{peer}")),
        "{}",
        run.stdout
    );
    assert_eq!(env.directory(user), (from, "active".into()));
    bump(&mut app(&env, src), photo).unwrap();
    for port in env.shard_ports(&to) {
        assert_eq!(rows_of(&env, port, user), 0);
    }
}

#[test]
fn a_replicated_statement_for_a_guarded_user_never_stops_replication() {
    let _turn = serial();
    let user = 6051;
    let (env, from, _) = world("replicated", user, 10);
    let (src, peer) = route(&env, &from, user);
    // Guarded on the source alone, as at a move's mark before the peer is.
    guard_by_hand(src, &env.shard_db(), user, Some("elsewhere"));
    let mut c = statement_session(&env, peer);
    let photo = user * 10_000_000 + 5_000_000;
    c.exec_drop(
        "INSERT INTO photos (photo_id, owner_id, title, taken_at, views) VALUES (?, ?, 'peer', NOW(), 3)",
        (photo, user),
    )
    .unwrap();
    wait_replicated(&mut c, src);
    assert_eq!(views(&env, src, photo), Some(3));
    let status: mysql::Row = conn(src).query_first("SHOW SLAVE STATUS").unwrap().unwrap();
    let sql: String = status.get("Slave_SQL_Running").unwrap();
    assert_eq!(sql, "Yes");
    // The application on the source itself is refused.
    assert!(is_refusal(&bump(&mut app(&env, src), photo)));
    guard_by_hand(src, &env.shard_db(), user, None);
}

#[test]
fn only_the_moving_users_own_writers_hold_a_move_and_only_for_a_bounded_time() {
    let _turn = serial();
    let user = 6061;
    let (env, from, to) = world("writers", user, 2000);
    let (src, _) = route(&env, &from, user);
    let photo = a_photo(&env, src, user);
    let before = views(&env, src, photo).unwrap();
    // Another user on the same server, the next one in the owner index.
    let other = user + 2;
    env.ring()
        .exec_drop(
            "INSERT INTO users (user_id, shard_id) SELECT ?, shard_id FROM users WHERE user_id = ?",
            (other, user),
        )
        .unwrap();
    let theirs = other * 10_000_000 + 1;
    app(&env, src)
        .exec_drop(
            "INSERT INTO photos (photo_id, owner_id, title, taken_at, views) VALUES (?, ?, 'x', NOW(), 0)",
            (theirs, other),
        )
        .unwrap();
    // Another user's open transactions, in statement format and at REPEATABLE READ: the move
    // goes on beside them.
    let mut open = statement_session(&env, src);
    open.query_drop("START TRANSACTION").unwrap();
    bump(&mut open, theirs).unwrap();
    let id = user.to_string();
    let moved = env.run(&[
        "migrate", &id, "--to", &to, "--mode", "online", "--format", "json",
    ]);
    assert_eq!(moved.code, 0, "{} {}", moved.stdout, moved.stderr);
    open.query_drop("COMMIT").unwrap();
    // The user's own open writer on its new home: the move back waits for it, then refuses,
    // naming it, and changes nothing.
    let (home, _) = route(&env, &to, user);
    let mut mine = app(&env, home);
    mine.query_drop("START TRANSACTION").unwrap();
    bump(&mut mine, photo).unwrap();
    let back = env.run(&[
        "migrate", &id, "--to", &from, "--mode", "online", "--format", "json",
    ]);
    assert_eq!(back.code, 4, "{}", back.stdout);
    assert!(back.stdout.contains("waited 5s"), "{}", back.stdout);
    assert!(back.stdout.contains("connection"), "{}", back.stdout);
    mine.query_drop("COMMIT").unwrap();
    assert_eq!(env.directory(user), (to.clone(), "active".into()));
    // Given back whole: its writes are taken on its home again (no guard left behind).
    bump(&mut app(&env, home), photo).unwrap();
    assert_views(&env, &to, photo, before + 2);
}

#[test]
fn guard_remove_is_refused_while_it_protects_and_a_partial_install_says_so() {
    let _turn = serial();
    let user = 6071;
    let (env, from, to) = world("remove", user, 3000);
    let child = env.migration_paused_mid_copy(user, &to, &["--mode", "offline"]);
    let refused = env.run(&["guard", "remove", "--format", "json"]);
    assert_eq!(refused.code, 4, "{}", refused.stdout);
    assert!(refused.stdout.contains("in flight"), "{}", refused.stdout);
    assert!(
        refused.stdout.contains(&format!("user {user}")),
        "{}",
        refused.stdout
    );
    let status = env.json(&["guard", "status"]);
    assert!(
        status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["installed"] == true),
        "{status}"
    );
    let forced = env.json(&["guard", "remove", "--force"]);
    assert!(forced["servers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["installed"] == false));
    let audited: u64 = env
        .ring()
        .query_first(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'guard.remove' AND details LIKE '%\"force\":true%'",
        )
        .unwrap()
        .unwrap();
    assert_eq!(audited, 4);
    signal(child.id() as i32, libc::SIGKILL);
    signal(child.id() as i32, libc::SIGCONT);
    let _ = child.wait_with_output();
    env.json(&["guard", "install"]);
    env.json(&["migrate", "resume", &user.to_string()]);
    assert_eq!(env.directory(user), (from.clone(), "active".into()));
    // One server that cannot be reached: the install is partial (exit 5), the others have it.
    let (_, gone) = route(&env, &to, user);
    env.ring()
        .exec_drop("UPDATE shard_servers SET port = 1 WHERE port = ?", (gone,))
        .unwrap();
    let partial = env.run(&["guard", "install", "--format", "json"]);
    env.ring()
        .exec_drop("UPDATE shard_servers SET port = ? WHERE port = 1", (gone,))
        .unwrap();
    assert_eq!(partial.code, 5, "{}", partial.stdout);
}

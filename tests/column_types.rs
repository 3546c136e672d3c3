//! Every column type an application uses survives a move exactly, on every path: the streamed
//! `migrate`, the batched `rebalance apply`, and a crash plus `migrate resume`. Rows are
//! compared as the server returns them in its text protocol (a NULL is not an empty string),
//! fetched from the source before the move and from both destination servers after it.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use common::{conn, digest, federation, wait_replicated, Env, Federation, Rows};
use mysql::prelude::Queryable;
use mysql::Value;
use serde_json::json;

fn fed() -> &'static Federation {
    federation("column_types", 25300, 2)
}

/// A per-user table with every awkward type: the owner is the second column of a composite
/// key, and two columns are generated (neither may be written by a copy).
const EXOTIC: &str = "CREATE TABLE exotic (
    k INT NOT NULL,
    owner_id BIGINT UNSIGNED NOT NULL,
    y YEAR NULL,
    bits BIT(10) NULL,
    flags SET('a','b','c') NULL,
    choice ENUM('x','y','z') NULL,
    fixed BINARY(16) NULL,
    blob_ BLOB NULL,
    txt TEXT CHARACTER SET utf8mb4 NULL,
    latin VARCHAR(40) CHARACTER SET latin1 NULL,
    exact DECIMAL(65,30) NULL,
    dbl DOUBLE NULL,
    flt FLOAT NULL,
    dt DATETIME(6) NULL,
    ts TIMESTAMP(6) NULL DEFAULT NULL,
    tm TIME(6) NULL,
    d DATE NULL,
    doc JSON NULL,
    ip INET6 NULL,
    id UUID NULL,
    neg BIGINT NULL,
    big BIGINT UNSIGNED NULL,
    doubled INT AS (k * 2) STORED,
    label VARCHAR(60) AS (CONCAT(k, ':', IFNULL(choice, '-'))) VIRTUAL,
    PRIMARY KEY (k, owner_id),
    KEY (owner_id)
) ENGINE=InnoDB";

const WRITTEN: &str = "k, owner_id, y, bits, flags, choice, fixed, blob_, txt, latin, exact, dbl, flt, dt, ts, tm, d, doc, ip, id, neg, big";

/// The hostile values of row `i` (22 written columns); row 0 is NULL wherever NULL is allowed.
fn hostile_row(owner: u64, i: i64) -> Vec<Value> {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let nasty = "tab\there\nnewline\\backslash\0nul 'quote\" 😀 ü 𝄞";
    if i == 0 {
        let mut row = vec![Value::from(i), Value::from(owner)];
        row.extend(std::iter::repeat_n(Value::NULL, 20));
        return row;
    }
    let years = [0i64, 1901, 2155, 2000, 1999];
    let doubles = [
        f64::MAX,
        f64::MIN_POSITIVE,
        -0.0,
        5e-324,
        0.1,
        -1.7976931348623157e308,
        123456.789,
    ];
    let mut bin = vec![0u8; 16];
    for (j, b) in bin.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(j as u8 * 17);
    }
    let mut blob = all_bytes.clone();
    blob.rotate_left(i as usize % 256);
    let nullable = |v: Value, every: i64| if i % every == 1 { Value::NULL } else { v };
    vec![
        Value::from(i),
        Value::from(owner),
        Value::from(years[i as usize % years.len()]),
        Value::from((i * 97) % 1024),
        nullable(
            Value::from(["", "a", "a,b", "b,c", "a,b,c"][i as usize % 5]),
            7,
        ),
        nullable(Value::from(["x", "y", "z"][i as usize % 3]), 5),
        Value::Bytes(bin),
        nullable(Value::Bytes(blob), 6),
        Value::from(format!("{nasty} #{i}")),
        Value::from(["café", "naïve", "", "\\", "\t"][i as usize % 5]),
        Value::from(format!(
            "{}{}.{:030}",
            if i % 2 == 0 { "-" } else { "" },
            "9".repeat(35),
            i
        )),
        nullable(Value::Double(doubles[i as usize % doubles.len()]), 9),
        Value::Float([3.4e38f32, 1.1754944e-38, -0.5, 0.1][i as usize % 4]),
        Value::from(format!(
            "2024-03-31 0{}:30:00.{:06}",
            i % 10,
            i * 1_001 % 1_000_000
        )),
        // Around the European and the American DST changes: ambiguous local times if any
        // session read them in a zone other than UTC.
        Value::from(
            [
                "2024-03-31 01:30:00.5",
                "2024-10-27 00:59:59.999999",
                "2024-11-03 06:30:00",
                "1970-01-01 00:00:01",
            ][i as usize % 4],
        ),
        Value::from(
            [
                "-838:59:59.000000",
                "838:59:59.999999",
                "00:00:00",
                "-00:00:01.5",
            ][i as usize % 4],
        ),
        Value::from(["1000-01-01", "9999-12-31", "2024-02-29"][i as usize % 3]),
        Value::from(format!(
            r#"{{"i": {i}, "s": "{}", "nested": [null, true, 1.5e300, {{"k": "😀"}}]}}"#,
            "quote\\\"tab\\t"
        )),
        Value::from(
            [
                "::",
                "2001:db8::1",
                "::ffff:192.0.2.1",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ][i as usize % 4],
        ),
        Value::from(format!("123e4567-e89b-12d3-a456-{:012x}", i)),
        Value::Int([i64::MIN, i64::MAX, -1][i as usize % 3]),
        Value::UInt([u64::MAX, 0][i as usize % 2]),
    ]
}

/// Creates the table on every shard and lists it in the world's configuration.
fn with_exotic(env: &Env) {
    for (_, ports) in env.fed.shards() {
        let mut c = conn(ports[0]);
        c.query_drop(format!("USE {}", env.shard_db())).unwrap();
        c.query_drop(EXOTIC).unwrap();
        wait_replicated(&mut c, ports[1]);
    }
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str("[[shards.tables]]\nname = \"exotic\"\nowner_column = \"owner_id\"\n");
    std::fs::write(&env.config, text).unwrap();
}

fn seed_exotic(env: &Env, shard: &str, user: u64, rows: i64) {
    let port = env.shard_ports(shard)[0];
    let mut c = conn(port);
    c.query_drop(format!("USE {}", env.shard_db())).unwrap();
    c.query_drop("SET time_zone = '+00:00'").unwrap();
    for i in 0..rows {
        c.exec_drop(
            format!(
                "INSERT INTO exotic ({WRITTEN}) VALUES ({})",
                vec!["?"; 22].join(",")
            ),
            hostile_row(user, i),
        )
        .unwrap();
    }
    wait_replicated(&mut c, env.shard_ports(shard)[1]);
}

fn exotic_rows(port: u16, database: &str, user: u64) -> Rows {
    common::user_rows(port, database, "exotic", "owner_id", user)
}

/// Asserts the user's exotic rows on both servers of `home` are exactly `expected`, and that
/// no other shard has any.
fn assert_exotic(env: &Env, user: u64, home: &str, expected: &Rows) {
    // Both servers of every shard are compared: each first applies what its peer wrote.
    for (_, ports) in env.fed.shards() {
        wait_replicated(&mut conn(ports[0]), ports[1]);
        wait_replicated(&mut conn(ports[1]), ports[0]);
    }
    for (shard, ports) in env.fed.shards() {
        for port in ports {
            let got = exotic_rows(port, &env.shard_db(), user);
            if shard == home {
                assert_eq!(got.len(), expected.len(), "rows of {user} on {port}");
                for (a, b) in got.iter().zip(expected) {
                    assert_eq!(a, b, "a row of {user} changed on {port}");
                }
                assert_eq!(digest(&got), digest(expected));
            } else {
                assert!(got.is_empty(), "{user} left {} rows on {port}", got.len());
            }
        }
    }
}

/// A world with the exotic table, its shards' servers in different time zones (a copy that
/// read or wrote TIMESTAMPs as local times would shift them).
fn world(name: &str) -> Env {
    let env = Env::new(fed(), name);
    for ((_, ports), zone) in env.fed.shards().into_iter().zip(["-05:00", "+09:30"]) {
        for port in ports {
            conn(port)
                .exec_drop("SET GLOBAL time_zone = ?", (zone,))
                .unwrap();
        }
    }
    env.register_shards();
    with_exotic(&env);
    env
}

/// A user placed with `photos` demo photos and `rows` exotic rows: (home, other shard, the
/// exotic rows as they are now).
fn hostile_user(env: &Env, user: u64, photos: u64, rows: i64) -> (String, String, Rows) {
    let (home, away, _) = env.seed_move(user, photos);
    seed_exotic(env, &home, user, rows);
    let before = exotic_rows(env.shard_ports(&home)[0], &env.shard_db(), user);
    assert_eq!(before.len(), rows as usize);
    (home, away, before)
}

#[test]
fn the_streamed_move_keeps_every_value() {
    let env = world("types_stream");
    let (home, away, before) = hostile_user(&env, 7001, 3_000, 120);
    let done = env.json(&["migrate", "7001", "--to", &away]);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["rows"]["exotic"], 120);
    assert_exotic(&env, 7001, &away, &before);
    // And back, so both directions and both servers' settings are crossed.
    env.json(&["migrate", "7001", "--to", &home]);
    assert_exotic(&env, 7001, &home, &before);
}

#[test]
fn the_batched_move_keeps_every_value() {
    let env = world("types_batch");
    let (home, away, before) = hostile_user(&env, 7002, 20, 60);
    let (home2, away2, before2) = hostile_user(&env, 7003, 10, 25);
    let moves: Vec<_> = [(7002, &home, &away), (7003, &home2, &away2)]
        .into_iter()
        .map(|(u, from, to)| json!({"user": u, "from": from, "to": to, "rows": 100}))
        .collect();
    let plan = env.write_plan("plan.json", moves);
    let applied = env.json(&["rebalance", "apply", &plan]);
    assert_eq!(applied["failed"].as_array().unwrap().len(), 0, "{applied}");
    assert_exotic(&env, 7002, &away, &before);
    assert_exotic(&env, 7003, &away2, &before2);
}

#[cfg(feature = "failpoints")]
#[test]
fn a_crash_mid_copy_or_mid_cleanup_then_resume_keeps_every_value() {
    let env = world("types_crash");
    let (home, away, before) = hostile_user(&env, 7004, 6_000, 80);
    // Before the flip the resume rolls back; after it, it finishes.
    for (point, home_after) in [("migrate.copy_mid", &home), ("migrate.cleanup_mid", &away)] {
        let out = env.run_with(
            &["migrate", "7004", "--to", &away],
            &[("SHARDCTL_FAILPOINT", point)],
        );
        assert_eq!(out.code, -1, "{point}: {}", out.stderr);
        env.json(&["migrate", "resume", "7004"]);
        assert_eq!(&env.directory(7004).0, home_after, "{point}");
        assert_exotic(&env, 7004, home_after, &before);
    }
}

#[test]
fn a_load_data_shortfall_says_why_and_the_user_stays_whole() {
    let env = world("types_shortfall");
    let (home, away, before) = hostile_user(&env, 7005, 3_000, 40);
    // Schema drift: the destination refuses repeated `latin` values the source holds.
    let ports = env.shard_ports(&away);
    let mut c = conn(ports[0]);
    c.query_drop(format!(
        "ALTER TABLE {}.exotic ADD UNIQUE KEY (latin)",
        env.shard_db()
    ))
    .unwrap();
    wait_replicated(&mut c, ports[1]);
    let (code, doc) = env.run_json(&["migrate", "7005", "--to", &away]);
    assert_eq!(code, 1, "{doc}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("LOAD DATA took")
            && message.contains("1062")
            && message.contains("Duplicate entry"),
        "{message}"
    );
    assert_eq!(env.directory(7005), (home.clone(), "active".into()));
    assert_exotic(&env, 7005, &home, &before);
}

/// The application changes every kind of value while the account is copied online: updates of
/// every column (NULLs in, NULLs out), inserts, deletes, a key changed, a row moving in from
/// another owner and one moving out. Every one of those reaches the destination as an event of
/// the source's binary log, applied: the destination ends exactly as the source was left.
#[cfg(feature = "failpoints")]
#[test]
fn an_online_move_applies_every_value_from_the_binary_log() {
    let env = world("types_online");
    let (home, away, _) = hostile_user(&env, 7006, 30, 60);
    // A neighbour on the same shard, to trade rows with.
    seed_exotic(&env, &home, 7007, 12);
    let src = env.shard_ports(&home)[(7006 % 2) as usize];
    let mover = env.spawn(
        &[
            "migrate", "7006", "--to", &away, "--mode", "online", "--format", "json",
        ],
        &[("SHARDCTL_FAILPOINT_STOP", "migrate.after_copy")],
    );
    common::wait_until("the move to pause after its copy", || {
        common::is_stopped(mover.id())
    });
    let mut c = conn(src);
    c.query_drop(format!("USE {}", env.shard_db())).unwrap();
    c.query_drop("SET time_zone = '+00:00'").unwrap();
    let assign: Vec<String> = WRITTEN
        .split(", ")
        .skip(2)
        .map(|col| format!("{col} = ?"))
        .collect();
    for i in 1..30i64 {
        // Row i takes the values of row i + 7 (NULLs where that one has them).
        let values: Vec<Value> = hostile_row(7006, i + 7).into_iter().skip(2).collect();
        let mut params = values;
        params.extend([Value::from(i), Value::from(7006u64)]);
        c.exec_drop(
            format!(
                "UPDATE exotic SET {} WHERE k = ? AND owner_id = ?",
                assign.join(", ")
            ),
            params,
        )
        .unwrap();
    }
    c.exec_drop(
        "DELETE FROM exotic WHERE owner_id = 7006 AND k BETWEEN 30 AND 39",
        (),
    )
    .unwrap();
    for i in 100..120 {
        c.exec_drop(
            format!(
                "INSERT INTO exotic ({WRITTEN}) VALUES ({})",
                vec!["?"; 22].join(",")
            ),
            hostile_row(7006, i),
        )
        .unwrap();
    }
    c.exec_drop(
        "UPDATE exotic SET k = 1041 WHERE owner_id = 7006 AND k = 41",
        (),
    )
    .unwrap();
    c.exec_drop(
        "UPDATE exotic SET owner_id = 7006, k = 35 WHERE owner_id = 7007 AND k = 3",
        (),
    )
    .unwrap();
    c.exec_drop(
        "UPDATE exotic SET owner_id = 7007 WHERE owner_id = 7006 AND k = 50",
        (),
    )
    .unwrap();
    let expected = exotic_rows(src, &env.shard_db(), 7006);
    let neighbour = exotic_rows(src, &env.shard_db(), 7007);
    unsafe { libc::kill(mover.id() as i32, libc::SIGCONT) };
    let out = mover.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["mode"], "online", "{done}");
    // 29 updates, 10 deletes, 20 inserts, a key change, a row in, a row out.
    assert!(
        done["catch_up"]["changes"].as_u64().unwrap() >= 62,
        "{done}"
    );
    assert_exotic(&env, 7006, &away, &expected);
    assert_eq!(exotic_rows(src, &env.shard_db(), 7007), neighbour);
}

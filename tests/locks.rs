//! Locks under the failures that broke their peers: races, a holder killed, a holder paused past
//! its lease, an application job holding GET_LOCK, sweeps running at once.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{federation, wait_until, Env, Federation};
use mysql::prelude::Queryable;

fn fed() -> &'static Federation {
    federation("locks", 24700, 2)
}

fn token_of(env: &Env, name: &str) -> Option<u64> {
    env.json(&["lock", "show", name])["lease"]["token"].as_u64()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn pid_in(file: &Path) -> i32 {
    wait_until("the command's pid file", || {
        std::fs::read_to_string(file).is_ok_and(|s| s.ends_with('\n'))
    });
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn signal(pid: u32, sig: i32) {
    unsafe { libc::kill(pid as i32, sig) };
}

#[test]
fn fifty_processes_one_winner() {
    let env = Env::new(fed(), "lock_race");
    let children: Vec<Child> = (0..50)
        .map(|_| env.spawn(&["lock", "acquire", "race", "--ttl", "60s"], &[]))
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 3).count(), 49, "{codes:?}");
    let n: Option<u64> = env
        .ring()
        .query_first("SELECT COUNT(*) FROM locks WHERE name = 'race'")
        .unwrap();
    assert_eq!(n, Some(1));
}

#[test]
fn acquire_release_and_tokens() {
    let env = Env::new(fed(), "lock_basics");
    let first = env.json(&[
        "lock", "acquire", "deploy", "--ttl", "60s", "--owner", "alice",
    ]);
    for key in ["name", "token", "owner", "expires_at"] {
        assert!(first.get(key).is_some(), "{key}");
    }
    assert_eq!(first["owner"], "alice");
    let r = env.run(&[
        "lock", "acquire", "deploy", "--ttl", "60s", "--format", "json",
    ]);
    assert_eq!(r.code, 3);
    assert_eq!(r.json()["error"]["kind"], "lock_in_use");
    assert!(r.stderr.contains("alice"), "{}", r.stderr);
    // A wrong token releases nothing.
    let t = first["token"].as_u64().unwrap();
    let r = env.run(&[
        "lock",
        "release",
        "deploy",
        "--token",
        &(t + 100).to_string(),
    ]);
    assert_eq!(r.code, 3);
    assert_eq!(token_of(&env, "deploy"), Some(t));
    let released = env.json(&["lock", "release", "deploy", "--token", &t.to_string()]);
    assert_eq!(released["released"], true);
    let again = env.json(&["lock", "acquire", "deploy", "--ttl", "60s"]);
    assert!(again["token"].as_u64().unwrap() > t, "tokens only grow");
    // --wait gets the lock once it is released.
    let waiter = env.spawn(
        &[
            "lock", "acquire", "deploy", "--ttl", "60s", "--wait", "20s", "--format", "json",
        ],
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    env.json(&["lock", "release", "deploy"]);
    let out = waiter.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit: Vec<String> = env
        .ring()
        .query("SELECT action FROM audit_log WHERE target = 'deploy'")
        .unwrap();
    assert!(audit.iter().filter(|a| *a == "lock.acquire").count() >= 3);
    assert!(audit.iter().any(|a| a == "lock.release"));
}

#[test]
fn dry_runs_change_nothing() {
    let env = Env::new(fed(), "lock_dry");
    let free = env.json(&["lock", "acquire", "d1", "--ttl", "60s", "--dry-run"]);
    assert_eq!(free["would"], true);
    assert_eq!(token_of(&env, "d1"), None);
    let held = env.json(&["lock", "acquire", "d1", "--ttl", "60s"]);
    let token = held["token"].as_u64().unwrap();
    let before = env.snapshot();
    let r = env.run(&[
        "lock",
        "acquire",
        "d1",
        "--ttl",
        "60s",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 3);
    assert_eq!(r.json()["would"], false);
    let r = env.run(&[
        "lock",
        "run",
        "d1",
        "--ttl",
        "60s",
        "--dry-run",
        "--",
        "true",
    ]);
    assert_eq!(r.code, 3);
    assert_eq!(
        env.json(&["lock", "release", "d1", "--dry-run"])["would"],
        true
    );
    let r = env.run(&[
        "lock",
        "release",
        "d1",
        "--token",
        &(token + 1).to_string(),
        "--dry-run",
    ]);
    assert_eq!(r.code, 3);
    let forced = env.json(&[
        "lock",
        "force-release",
        "d1",
        "--reason",
        "test",
        "--dry-run",
    ]);
    assert_eq!(forced["would"], true);
    assert_eq!(before, env.snapshot());
    assert_eq!(token_of(&env, "d1"), Some(token));
}

#[test]
fn list_filters_and_names() {
    let env = Env::new(fed(), "lock_list");
    env.json(&["lock", "acquire", "ab_1", "--ttl", "60s", "--owner", "bob"]);
    env.json(&["lock", "acquire", "abX1", "--ttl", "60s"]);
    env.json(&["lock", "acquire", "zz", "--ttl", "1s"]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["lock", "list"];
        a.extend(args);
        env.json(&a)
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&["--prefix", "ab_"]), vec!["ab_1"]);
    assert_eq!(names(&["--owner", "bob"]), vec!["ab_1"]);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(names(&["--expired"]), vec!["zz"]);
    let list = env.json(&["lock", "list"]);
    for key in [
        "name",
        "owner",
        "host",
        "token",
        "acquired_at",
        "expires_at",
        "expired",
    ] {
        assert!(list[0].get(key).is_some(), "{key}");
    }
    let before = env.snapshot();
    for (args, code) in [
        (vec!["lock", "acquire", &"x".repeat(65), "--ttl", "10s"], 2),
        (vec!["lock", "acquire", "has space", "--ttl", "10s"], 2),
        (vec!["lock", "acquire", "q'uote", "--ttl", "10s"], 2),
        (vec!["lock", "acquire", "ok", "--ttl", "0s"], 2),
        (vec!["lock", "acquire", "ok", "--ttl", "soon"], 2),
        (vec!["lock", "acquire", "ok"], 2),
        (vec!["lock", "release", "ok", "--token", "-1"], 2),
        (vec!["lock", "force-release", "ok", "--reason", " "], 2),
        (vec!["lock", "run", "ok", "--ttl", "5s"], 2),
    ] {
        let mut with_json = args.clone();
        with_json.extend(["--format", "json"]);
        let r = env.run(&with_json);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert_eq!(r.json()["error"]["kind"], "usage", "{args:?}");
    }
    assert_eq!(before, env.snapshot());
}

#[test]
fn a_killed_lock_run_holder_frees_the_lock_at_once() {
    let env = Env::new(fed(), "lock_sigkill");
    let pidfile = env.dir.path().join("cmd.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let mut holder = env.spawn(
        &[
            "lock", "run", "job", "--ttl", "60s", "--", "sh", "-c", &script,
        ],
        &[],
    );
    let cmd_pid = pid_in(&pidfile);
    let t1 = token_of(&env, "job").expect("lease recorded");
    // Once the lease names the command's process group, a takeover can see the group is gone.
    wait_until("the lease to name the command's group", || {
        env.json(&["lock", "show", "job"])["lease"]["metadata"]["command_pgid"].is_u64()
    });
    signal(holder.id(), libc::SIGKILL);
    holder.wait().unwrap();
    // The lease still has 60s to run, but its holder's session is gone: no waiting.
    let start = Instant::now();
    let got = env.json(&["lock", "acquire", "job", "--ttl", "30s"]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(got["token"].as_u64().unwrap() > t1);
    assert_eq!(got["took_over"], true);
    // The command does not run on without its lock holder.
    wait_until("the orphaned command to stop", || !alive(cmd_pid));
}

#[test]
fn a_paused_holder_loses_the_lock_and_stops_its_command() {
    let env = Env::new(fed(), "lock_sigstop");
    let pidfile = env.dir.path().join("cmd.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let holder = env.spawn(
        &[
            "lock", "run", "paused", "--ttl", "2s", "--grace", "2s", "--", "sh", "-c", &script,
        ],
        &[],
    );
    let cmd_pid = pid_in(&pidfile);
    let t1 = token_of(&env, "paused").unwrap();
    signal(holder.id(), libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2500));
    let got = env.json(&["lock", "acquire", "paused", "--ttl", "60s"]);
    let t2 = got["token"].as_u64().unwrap();
    assert!(t2 > t1);
    signal(holder.id(), libc::SIGCONT);
    let out = holder.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "the stale holder must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lost"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the stale holder's command to stop", || !alive(cmd_pid));
    // The new holder still holds it, with its own token.
    assert_eq!(token_of(&env, "paused"), Some(t2));
    assert_eq!(env.audited("lock.takeover", "paused"), 1);
}

#[test]
fn lock_run_passes_exit_code_and_interrupts() {
    let env = Env::new(fed(), "lock_run");
    let r = env.run(&[
        "lock",
        "run",
        "r1",
        "--ttl",
        "3s",
        "--",
        "sh",
        "-c",
        "test \"$SHARDCTL_LOCK_NAME\" = r1 && test -n \"$SHARDCTL_LOCK_TOKEN\" && exit 7",
    ]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert_eq!(token_of(&env, "r1"), None, "released after the command");
    // Renewed while the command outlives its ttl.
    let r = env.run(&[
        "lock", "run", "r2", "--ttl", "1s", "--format", "json", "--", "sleep", "2",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.json()["renewals"].as_u64().unwrap() >= 3);
    // An interrupt reaches the command, and the lock is released.
    let holder = env.spawn(
        &["lock", "run", "r3", "--ttl", "30s", "--", "sleep", "30"],
        &[],
    );
    wait_until("the lease", || token_of(&env, "r3").is_some());
    signal(holder.id(), libc::SIGINT);
    let out = holder.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(token_of(&env, "r3"), None);
}

#[test]
fn account_locks_meet_application_jobs_on_the_shard() {
    let env = Env::new(fed(), "lock_account");
    env.register_shards();
    env.json(&["user", "assign", "42"]);
    let server = env.json(&["user", "locate", "42"])["server"]["port"]
        .as_u64()
        .unwrap() as u16;
    let name = "ACCOUNT_42_RESIZE";
    // A lock run holds GET_LOCK on the account's server for its whole life.
    let mut holder = env.spawn(
        &["lock", "run", name, "--ttl", "30s", "--", "sleep", "30"],
        &[],
    );
    wait_until("the lease", || token_of(&env, name).is_some());
    let mut shard = common::conn(server);
    let used: Option<Option<u64>> = shard.exec_first("SELECT IS_USED_LOCK(?)", (name,)).unwrap();
    assert!(
        used.flatten().is_some(),
        "GET_LOCK held on the account's server"
    );
    let shown = env.json(&["lock", "show", name]);
    assert!(shown["getlock_holder"]["server"]
        .as_str()
        .unwrap()
        .ends_with(&server.to_string()));
    signal(holder.id(), libc::SIGTERM);
    holder.wait().unwrap();

    // An application job holding the classic GET_LOCK excludes us.
    let other = "ACCOUNT_42_UPLOAD";
    let mut app = common::conn(server);
    let got: Option<Option<i64>> = app.exec_first("SELECT GET_LOCK(?, 0)", (other,)).unwrap();
    assert_eq!(got.flatten(), Some(1));
    let r = env.run(&["lock", "acquire", other, "--ttl", "10s"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("application job"), "{}", r.stderr);
    // Force-release ends the job's session and says how.
    let forced = env.json(&["lock", "force-release", other, "--reason", "stuck upload"]);
    let kill = forced["killed"][0].as_str().unwrap();
    assert!(kill.starts_with("KILL CONNECTION"), "{kill}");
    assert!(
        app.query_drop("SELECT 1").is_err(),
        "the job's connection was killed"
    );
    env.json(&["lock", "acquire", other, "--ttl", "10s"]);
    let reasons: Vec<String> = env.ring().query("SELECT JSON_VALUE(details, '$.reason') FROM audit_log WHERE action = 'lock.force-release'").unwrap();
    assert_eq!(reasons, vec!["stuck upload"]);
}

#[test]
fn sweep_releases_expired_leases_quietly_and_sweeps_do_not_collide() {
    let env = Env::new(fed(), "lock_sweep");
    let mut ring = env.ring();
    let insert = |ring: &mut mysql::Conn, prefix: &str, n: u32, secs: i64| {
        let values: Vec<String> = (0..n)
            .map(|i| format!("('{prefix}{i}', 'cron', 'h', 1, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL {secs} SECOND, '{{}}')"))
            .collect();
        ring.query_drop(format!(
            "INSERT INTO locks (name, owner, host, pid, acquired_at, expires_at, metadata) VALUES {}",
            values.join(",")
        ))
        .unwrap();
    };
    insert(&mut ring, "old", 3000, -10);
    insert(&mut ring, "live", 50, 600);
    let dry = env.json(&["lock", "sweep", "--dry-run", "--limit", "10"]);
    assert_eq!(dry["released"], 10);
    let count = |ring: &mut mysql::Conn| -> u64 {
        ring.query_first("SELECT COUNT(*) FROM locks")
            .unwrap()
            .unwrap()
    };
    assert_eq!(count(&mut ring), 3050);
    let limited = env.json(&["lock", "sweep", "--limit", "500"]);
    assert_eq!(limited["released"], 500);
    // Two sweeps at once: each lock released exactly once.
    let a = env.spawn(&["lock", "sweep", "--format", "json"], &[]);
    let b = env.spawn(&["lock", "sweep", "--format", "json"], &[]);
    let total: u64 = [a, b]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["released"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(total, 2500);
    assert_eq!(count(&mut ring), 50);
    // Cron's sweep: nothing to say, nothing printed.
    insert(&mut ring, "late", 5, -1);
    let r = env.run(&["lock", "sweep"]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    assert_eq!(count(&mut ring), 50);
    let verbose = env.run(&["lock", "sweep", "-v"]);
    assert!(verbose.stdout.contains("released 0"), "{}", verbose.stdout);
}

#[test]
fn skewed_clocks_on_mysql_never_make_two_holders() {
    let env = Env::new(fed(), "skew");
    common::skewed_hosts_never_make_two_holders(&env);
}

#[test]
fn hostile_text_is_refused_at_input_and_stored_text_is_escaped_in_tables() {
    let env = Env::new(fed(), "hostile_text");
    for (flag, value) in [
        ("--owner", "a\u{1b}[31mred"),
        ("--owner", "two\nlines"),
        ("--purpose", "bell\u{7}"),
        ("--purpose", "\u{202e}gnp.exe"),
        ("--owner", "zero\u{200b}width"),
    ] {
        let r = env.run(&["lock", "acquire", "t", "--ttl", "5s", flag, value]);
        assert_eq!(r.code, 2, "{flag} {value:?}: {}", r.stderr);
    }
    let r = env.run(&[
        "lock",
        "force-release",
        "t",
        "--reason",
        "osc\u{1b}]0;x\u{7}",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = env.run_with(&["lock", "list"], &[("SHARDCTL_OPERATOR", "eve\u{202e}")]);
    assert_eq!(r.code, 2, "a bidi override in the operator: {}", r.stderr);
    let r = env.run(&["guard", "install", "--timeout", "0s", "--dry-run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // A set but non-UTF-8 operator is refused, not skipped for the next variable.
    use std::os::unix::ffi::OsStrExt;
    let out = std::process::Command::new(common::bin())
        .args(["lock", "list"])
        .env("SHARDCTL_CONFIG", &env.config)
        .env("SHARDCTL_OPERATOR", std::ffi::OsStr::from_bytes(b"caf\xe9"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(token_of(&env, "t"), None, "nothing was taken");
    // A lease written by anyone else, with escapes and a newline, cannot steer the terminal or
    // forge a row of the table.
    env.ring()
        .query_drop(
            "INSERT INTO locks (name, owner, host, pid, purpose, acquired_at, expires_at, metadata)
             VALUES ('forged', CONCAT('x', CHAR(27), '[2J', CHAR(10), '| fake | row |'), 'h', 1, '',
                     UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL 1 HOUR, '{}')",
        )
        .unwrap();
    let table = env.run(&["lock", "list"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(!table.stdout.contains('\u{1b}'), "{:?}", table.stdout);
    assert!(
        table.stdout.contains("\\u{1b}[2J\\u{a}| fake | row |"),
        "{}",
        table.stdout
    );
    assert!(
        !table.stdout.lines().any(|l| l.starts_with("| fake")),
        "{}",
        table.stdout
    );
    // Our own multi-line cells stay multi-line: a shard's servers, one per line.
    env.register_shards();
    let shards = env.run(&["shard", "list"]);
    assert_eq!(shards.code, 0, "{}", shards.stderr);
    assert!(!shards.stdout.contains("\\u{a}"), "{}", shards.stdout);
}

//! Account migration: the happy path, idempotence, bad input, and — with the `failpoints`
//! feature — a crash at every named point, a paused holder fenced out, and Ctrl-C.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use common::{federation, Env, Federation};
use mysql::prelude::Queryable;

fn fed() -> &'static Federation {
    federation("migrate", 24800, 2)
}

fn world(name: &str, user: u64, photos: u64) -> (Env, String, String, common::Fingerprint) {
    let env = Env::new(fed(), name);
    env.register_shards();
    let (from, to, original) = env.seed_move(user, photos);
    (env, from, to, original)
}

#[test]
fn a_user_moves_whole_and_a_rerun_changes_nothing() {
    let (env, from, to, original) = world("migrate_basic", 101, 12_000);
    let plan = env.json(&["migrate", "101", "--to", &to, "--dry-run"]);
    assert_eq!(plan["state"], "planned");
    assert_eq!(env.directory(101), (from.clone(), "active".into()));
    let done = env.json(&["migrate", "101", "--to", &to]);
    for key in ["user", "from", "to", "state", "rows"] {
        assert!(done.get(key).is_some(), "{key}");
    }
    assert_eq!(done["state"], "done");
    assert_eq!(done["from"], from.as_str());
    assert_eq!(done["rows"]["photos"], 12_000);
    assert_eq!(env.directory(101).0, to);
    env.assert_whole(101, &original);
    let again = env.json(&["migrate", "101", "--to", &to]);
    assert_eq!(again["state"], "done");
    assert!(again["note"].as_str().unwrap().contains("nothing to do"));
    env.assert_whole(101, &original);
    // And back again.
    env.json(&["migrate", "101", "--to", &from]);
    env.assert_whole(101, &original);
    let journal = env.json(&["migrate", "status", "101"]);
    assert_eq!(journal.as_array().unwrap().len(), 2);
    assert!(journal
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["state"] == "done"));
    let audited: Option<u64> = env
        .ring()
        .query_first("SELECT COUNT(*) FROM audit_log WHERE action = 'migrate'")
        .unwrap();
    assert_eq!(audited, Some(2));
}

#[test]
fn keep_source_leaves_rows_until_resume() {
    let (env, _from, to, original) = world("migrate_keep", 102, 800);
    let kept = env.json(&["migrate", "102", "--to", &to, "--keep-source"]);
    assert_eq!(kept["state"], "flipped");
    assert_eq!(env.directory(102).0, to);
    let resumed = env.json(&["migrate", "resume", "102"]);
    assert_eq!(resumed["resumed"][0]["now"], "done");
    env.assert_whole(102, &original);
}

#[test]
fn bad_input_changes_nothing() {
    let (env, from, _to, original) = world("migrate_bad", 103, 50);
    let before = env.snapshot();
    for (args, code) in [
        (vec!["migrate", "103", "--to", "nosuch"], 1),
        (vec!["migrate", "999999", "--to", &from], 1),
        (vec!["migrate", "103"], 2),
        (vec!["migrate", "abc", "--to", &from], 2),
        (
            vec!["migrate", "103", "--to", "x'; DROP TABLE users; --"],
            2,
        ),
        (vec!["migrate", "103", "--to", &from, "--lock-ttl", "0s"], 2),
        (vec!["migrate", "resume"], 2),
    ] {
        let mut a = args.clone();
        a.extend(["--format", "json"]);
        let r = env.run(&a);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(r.json()["error"]["message"].is_string());
    }
    assert_eq!(before, env.snapshot());
    env.assert_whole(103, &original);
}

#[test]
fn a_held_account_lock_blocks_the_migration() {
    let (env, from, to, original) = world("migrate_locked", 104, 50);
    env.json(&["lock", "acquire", "ACCOUNT_104_MIGRATE", "--ttl", "60s"]);
    let r = env.run(&["migrate", "104", "--to", &to]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(env.directory(104), (from, "active".into()));
    env.json(&["lock", "release", "ACCOUNT_104_MIGRATE"]);
    env.assert_whole(104, &original);
}

#[cfg(feature = "failpoints")]
mod crashes {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    fn crash_at(point: &str, user: u64) {
        let (env, from, to, original) =
            world(&format!("crash_{}", point.replace('.', "_")), user, 7_000);
        let out = env.run_with(
            &["migrate", &user.to_string(), "--to", &to],
            &[("SHARDCTL_FAILPOINT", point)],
        );
        assert_eq!(
            out.code, -1,
            "{point}: expected a SIGKILL, got exit {}: {}",
            out.code, out.stderr
        );
        let resumed = env
            .run(&["migrate", "resume", &user.to_string(), "--format", "json"])
            .ok()
            .json();
        let flipped = [
            "migrate.after_flip",
            "migrate.cleanup_mid",
            "migrate.after_cleanup",
        ]
        .contains(&point);
        let home = if flipped { &to } else { &from };
        assert_eq!(&env.directory(user).0, home, "{point}");
        if point != "migrate.after_lock" {
            let now = &resumed["resumed"][0]["now"];
            assert_eq!(
                now,
                if flipped { "done" } else { "rolled_back" },
                "{point}: {resumed}"
            );
        }
        env.assert_whole(user, &original);
        // Afterwards the move can be made (or is already made) without a manual fix-up.
        let done = env.json(&["migrate", &user.to_string(), "--to", &to]);
        assert_eq!(done["state"], "done");
        env.assert_whole(user, &original);
    }

    macro_rules! crash_tests {
        ($($name:ident => $point:literal, $user:literal;)*) => {
            $(#[test] fn $name() { crash_at($point, $user); })*
            #[test]
            fn every_failpoint_is_tested() {
                let tested = [$($point),*];
                for p in shardctl::migrate::state::FAILPOINTS {
                    assert!(tested.contains(p), "no crash test for {p}");
                }
            }
        };
    }

    crash_tests! {
        crash_after_lock => "migrate.after_lock", 201;
        crash_after_moving => "migrate.after_moving", 202;
        crash_mid_copy => "migrate.copy_mid", 203;
        crash_after_copy => "migrate.after_copy", 204;
        crash_after_verify => "migrate.after_verify", 205;
        crash_after_flip => "migrate.after_flip", 206;
        crash_mid_cleanup => "migrate.cleanup_mid", 207;
        crash_after_cleanup => "migrate.after_cleanup", 208;
    }

    /// The user's rows on every server of `shard`.
    fn rows_on(env: &Env, shard: &str, user: u64) -> Vec<u64> {
        env.shard_ports(shard)
            .into_iter()
            .map(|port| {
                common::fingerprint(port, &env.shard_db(), user)
                    .iter()
                    .map(|(_, n, _)| *n)
                    .sum()
            })
            .collect()
    }

    /// Killed while clearing rows already on the destination (`--clear-destination`): the
    /// resume gives the user back whole, and the move can be made again.
    #[test]
    fn crash_mid_clear() {
        let (env, from, to, original) = world("crash_mid_clear", 209, 3_000);
        let dst = env.shard_ports(&to)[(209 % 2) as usize];
        env.write_strays(dst, 209, 200);
        let out = env.run_with(
            &["migrate", "209", "--to", &to, "--clear-destination"],
            &[("SHARDCTL_FAILPOINT", "migrate.clear_mid")],
        );
        assert_eq!(out.code, -1, "expected a SIGKILL: {}", out.stderr);
        let resumed = env.json(&["migrate", "resume", "209"]);
        assert_eq!(resumed["resumed"][0]["now"], "rolled_back", "{resumed}");
        assert_eq!(env.directory(209), (from.clone(), "active".into()));
        // Whole on the source; what is left of the strays is still not ours to delete.
        for port in env.shard_ports(&from) {
            assert_eq!(common::fingerprint(port, &env.shard_db(), 209), original);
        }
        assert!(rows_on(&env, &to, 209)[(209 % 2) as usize] > 0);
        let done = env.json(&["migrate", "209", "--to", &to, "--clear-destination"]);
        assert_eq!(done["state"], "done", "{done}");
        env.assert_whole(209, &original);
    }

    /// Killed while giving the user back after a failure once the copy began (here rows that
    /// appeared on the destination during the copy fail the verification): the resume clears
    /// the destination and gives the user back whole.
    #[test]
    fn crash_mid_abort() {
        let (env, from, to, original) = world("crash_mid_abort", 210, 3_000);
        let mover = env.spawn(
            &["migrate", "210", "--to", &to, "--format", "json"],
            &[
                ("SHARDCTL_FAILPOINT_STOP", "migrate.after_copy"),
                ("SHARDCTL_FAILPOINT", "migrate.abort_mid"),
            ],
        );
        common::wait_until("the move to pause after its copy", || {
            common::is_stopped(mover.id())
        });
        let dst = env.shard_ports(&to)[(210 % 2) as usize];
        env.write_strays(dst, 210, 20);
        unsafe { libc::kill(mover.id() as i32, libc::SIGCONT) };
        let out = mover.wait_with_output().unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
        let resumed = env.json(&["migrate", "resume", "210"]);
        assert_eq!(resumed["resumed"][0]["now"], "rolled_back", "{resumed}");
        assert_eq!(env.directory(210), (from, "active".into()));
        common::wait_replicated(
            &mut common::conn(dst),
            env.shard_ports(&to)[1 - (210 % 2) as usize],
        );
        assert_eq!(rows_on(&env, &to, 210), vec![0, 0]);
        env.assert_whole(210, &original);
    }

    #[test]
    fn every_give_back_failpoint_is_tested() {
        let tested = ["migrate.clear_mid", "migrate.abort_mid"];
        for p in shardctl::migrate::state::GIVE_BACK_FAILPOINTS {
            assert!(tested.contains(p), "no crash test for {p}");
        }
    }

    #[test]
    fn a_paused_migration_is_fenced_out_after_its_lease_is_swept() {
        let (env, from, to, original) = world("migrate_fenced", 301, 20_000);
        let stale = env.migration_paused_mid_copy(301, &to, &["--lock-ttl", "1s"]);
        std::thread::sleep(Duration::from_millis(1500));
        let swept = env.json(&["lock", "sweep"]);
        assert_eq!(swept["locks"][0], "ACCOUNT_301_MIGRATE");
        // Another process completes the move.
        let done = env.json(&["migrate", "301", "--to", &to]);
        assert_eq!(done["state"], "done");
        let new_token = done["token"].as_u64().unwrap();
        unsafe { libc::kill(stale.id() as i32, libc::SIGCONT) };
        let out = stale.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the stale holder must fail");
        assert!(err.contains("fenced out") || err.contains("lost"), "{err}");
        assert_eq!(env.directory(301).0, to);
        env.assert_whole(301, &original);
        let fence: Option<u64> = common::conn(env.shard_ports(&from)[0])
            .exec_first(
                format!(
                    "SELECT token FROM {}.shardctl_fence WHERE user_id = 301",
                    env.shard_db()
                ),
                (),
            )
            .unwrap();
        assert!(fence.unwrap() >= new_token);
    }

    #[test]
    fn an_interrupted_migration_releases_its_lock_and_is_resumable() {
        let (env, from, to, original) = world("migrate_ctrl_c", 302, 20_000);
        let child = env.migration_paused_mid_copy(302, &to, &[]);
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
            libc::kill(child.id() as i32, libc::SIGCONT);
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.signal().is_none());
        assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
        // The user is writable again at once; the journal says what is left to do.
        assert_eq!(env.directory(302), (from, "active".into()));
        env.json(&["migrate", "resume", "--all"]);
        env.assert_whole(302, &original);
    }
}

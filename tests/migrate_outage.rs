//! A destination server killed in the middle of a copy: the migration fails cleanly (exit 1,
//! the user active on its source, the source untouched), and once the server is back a resume
//! clears the partial copy and the move can be made. Its own federation: it kills a server.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom
#![cfg(feature = "failpoints")]

mod common;

use common::{federation, fingerprint, routing_member, Env};

#[test]
fn a_destination_dying_mid_copy_leaves_the_source_whole() {
    let fed = federation("migrate_outage", 24900, 2);
    let env = Env::new(fed, "outage");
    env.register_shards();
    let user = 401;
    let from = env.seed_user(user, 20_000);
    let to = fed
        .shards()
        .into_iter()
        .map(|(n, _)| n)
        .find(|n| *n != from)
        .unwrap();
    let original = fingerprint(env.shard_ports(&from)[0], &env.shard_db(), user);

    let child = env.migration_paused_mid_copy(user, &to, &[]);
    let pid = fed.server_pid(&routing_member(&to, user));
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::kill(child.id() as i32, libc::SIGCONT);
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(env.directory(user), (from.clone(), "active".to_string()));
    for port in env.shard_ports(&from) {
        assert_eq!(
            fingerprint(port, &env.shard_db(), user),
            original,
            "the source is untouched"
        );
    }
    let journal = env.json(&["migrate", "status", &user.to_string()]);
    assert_eq!(journal[0]["state"], "aborted", "{journal}");

    // The server comes back; resume clears what the copy left, and the move goes through.
    env.json(&["sandbox", "up", "--dir", fed.dir.to_str().unwrap()]);
    let resumed = env.json(&["migrate", "resume", &user.to_string()]);
    assert_eq!(resumed["resumed"][0]["now"], "rolled_back", "{resumed}");
    env.assert_whole(user, &original);
    let done = env.json(&["migrate", &user.to_string(), "--to", &to]);
    assert_eq!(done["state"], "done");
    env.assert_whole(user, &original);

    // A server that refuses LOAD DATA LOCAL INFILE gets multi-row INSERTs instead.
    for port in env.shard_ports(&from) {
        mysql::prelude::Queryable::query_drop(
            &mut common::conn(port),
            "SET GLOBAL local_infile = 0",
        )
        .unwrap();
    }
    let back = env.json(&["migrate", &user.to_string(), "--to", &from]);
    assert_eq!(back["state"], "done");
    env.assert_whole(user, &original);
    for port in env.shard_ports(&from) {
        mysql::prelude::Queryable::query_drop(
            &mut common::conn(port),
            "SET GLOBAL local_infile = 1",
        )
        .unwrap();
    }
}

//! Destructive checks in a federation of their own: doctor must notice a stopped server and
//! stopped replication, `sandbox up` must bring both back, `sandbox down` must stop exactly the
//! sandbox's servers and be idempotent. One test, in order, because each step breaks the world.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use common::{alive, federation, signal, wait_until, Env};
use mysql::prelude::Queryable;

fn failing(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .cloned()
        .collect()
}

fn mariadbd_of(dir: &std::path::Path) -> usize {
    let needle = dir.to_str().unwrap().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| {
            let c = String::from_utf8_lossy(c);
            c.contains("mariadbd") && c.contains(&needle)
        })
        .count()
}

#[test]
fn doctor_notices_failures_and_sandbox_up_repairs_them() {
    let fed = federation("lifecycle", 24600, 2);
    let env = Env::new(fed, "lifecycle");
    env.register_shards();
    let dir = fed.dir.to_str().unwrap();
    assert_eq!(env.json(&["doctor"])["ok"], true);

    // Stop one shard server, by its pid.
    let (_, port_b) = (fed.shards()[0].1[0], fed.shards()[0].1[1]);
    let pid = fed.server_pid("shard1b");
    signal(pid, libc::SIGTERM);
    wait_until("the server to stop", || !alive(pid));
    let r = env.run(&["doctor", "--format", "json"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let bad = failing(&r.json());
    let down = bad
        .iter()
        .find(|c| c["check"] == "reachable")
        .expect("a reachability failure");
    assert!(
        down["target"]
            .as_str()
            .unwrap()
            .contains(&port_b.to_string()),
        "{down}"
    );
    assert!(down["fix"].is_string());
    // Its peer's replication from it is broken too.
    assert!(bad.iter().any(|c| c["check"] == "replication"), "{bad:?}");
    let status = env.json(&["sandbox", "status", "--dir", dir]);
    let stopped: Vec<_> = status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["running"] == false)
        .collect();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["port"], port_b);

    // `up` again restarts what is down.
    let up = env.json(&["sandbox", "up", "--dir", dir]);
    assert_eq!(up["started"].as_array().unwrap().len(), 1);
    assert_eq!(up["created"], false);
    assert_eq!(env.json(&["doctor"])["ok"], true);

    // Stop replication on one server.
    let port_a = fed.shards()[1].1[0];
    common::conn(port_a).query_drop("STOP SLAVE").unwrap();
    let r = env.run(&["doctor", "--format", "json"]);
    assert_eq!(r.code, 1);
    let bad = failing(&r.json());
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0]["target"]
        .as_str()
        .unwrap()
        .contains(&port_a.to_string()));
    assert!(
        bad[0]["detail"].as_str().unwrap().contains("not running"),
        "{}",
        bad[0]
    );
    env.json(&["sandbox", "up", "--dir", dir]);
    assert_eq!(env.json(&["doctor"])["ok"], true);

    // Down stops every server of the sandbox and nothing else; twice is fine.
    assert!(mariadbd_of(&fed.dir) == 5);
    let first = env.json(&["sandbox", "down", "--dir", dir]);
    assert_eq!(first["stopped"].as_array().unwrap().len(), 5);
    assert_eq!(mariadbd_of(&fed.dir), 0);
    let again = env.json(&["sandbox", "down", "--dir", dir]);
    assert!(again["stopped"].as_array().unwrap().is_empty());
    let status = env.json(&["sandbox", "status", "--dir", dir]);
    assert!(status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["running"] == false));
    // A ring that is down is an unreachable error, not a crash.
    let r = env.run(&["shard", "list", "--format", "json"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["error"]["kind"], "unreachable");
}

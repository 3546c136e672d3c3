//! The foundation as an operator meets it: the sandbox, init, doctor, config errors, audit and
//! the JSON error contract.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use common::{federation, Env, Federation};
use mysql::prelude::Queryable;

fn fed() -> &'static Federation {
    federation("foundation", 24400, 2)
}

#[test]
fn sandbox_status_lists_every_server_running() {
    let fed = fed();
    let servers = fed.status["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 5);
    assert!(fed.status["config"]
        .as_str()
        .unwrap()
        .ends_with("shardctl.toml"));
    assert_eq!(fed.status["global_database"], "shardctl");
    assert_eq!(fed.status["shard_database"], "photoapp");
    for s in servers {
        for key in ["role", "shard", "half", "host", "port", "user", "running"] {
            assert!(s.get(key).is_some(), "{key} missing in {s}");
        }
        assert_eq!(s["running"], true);
        assert_eq!(s["host"], "127.0.0.1");
        assert_eq!(s["user"], "root");
    }
    assert_eq!(fed.servers("global").len(), 1);
    assert_eq!(
        fed.servers("shard").iter().filter(|s| s.2 == "a").count(),
        2
    );
}

#[test]
fn sandbox_replicates_master_master_inside_each_shard() {
    let fed = fed();
    for (_, ports) in fed.shards() {
        // A row written on either half appears on the other.
        let mut a = common::conn(ports[0]);
        let mut b = common::conn(ports[1]);
        a.query_drop("CREATE DATABASE IF NOT EXISTS t_repl")
            .unwrap();
        a.query_drop(
            "CREATE TABLE IF NOT EXISTS t_repl.x (id INT AUTO_INCREMENT PRIMARY KEY, side CHAR(1))",
        )
        .unwrap();
        common::wait_replicated(&mut a, ports[1]);
        b.query_drop("INSERT INTO t_repl.x (side) VALUES ('b')")
            .unwrap();
        common::wait_replicated(&mut b, ports[0]);
        let n: Option<u64> = a
            .query_first("SELECT COUNT(*) FROM t_repl.x WHERE side = 'b'")
            .unwrap();
        assert!(n.unwrap() >= 1);
        let (inc, off): (u64, u64) = b
            .query_first("SELECT @@auto_increment_increment, @@auto_increment_offset")
            .unwrap()
            .unwrap();
        assert_eq!((inc, off), (2, 2));
    }
}

#[test]
fn init_twice_is_idempotent_and_audited_once() {
    let env = Env::new(fed(), "init_twice");
    let second = env.json(&["init"]);
    assert_eq!(second["from_version"], shardctl::ring::schema::VERSION);
    assert_eq!(second["version"], shardctl::ring::schema::VERSION);
    let mut ring = env.ring();
    let tables: Vec<String> = ring
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
            (env.ring_db(),),
        )
        .unwrap();
    for t in [
        "audit_log",
        "locks",
        "migrations",
        "schema_version",
        "shard_servers",
        "shards",
        "tickets32",
        "tickets64",
        "users",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    let inits: Option<u64> = ring
        .query_first("SELECT COUNT(*) FROM audit_log WHERE action = 'init'")
        .unwrap();
    assert_eq!(inits, Some(1));
    let entries = env.json(&["audit", "--action", "init"]);
    assert_eq!(entries.as_array().unwrap().len(), 1);
    assert_eq!(entries[0]["operator"], "test-operator");
    assert!(env
        .json(&["audit", "--action", "shard.add"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn init_dry_run_creates_nothing() {
    let env = Env::new(fed(), "init_dry");
    let fresh = env.dir.path().join("fresh.toml");
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&env.ring_db(), "t_init_dry_never");
    std::fs::write(&fresh, text).unwrap();
    let r = env
        .run(&[
            "init",
            "--dry-run",
            "--format",
            "json",
            "--config",
            fresh.to_str().unwrap(),
        ])
        .ok();
    let doc = r.json();
    assert_eq!(doc["dry_run"], true);
    assert!(doc["from_version"].is_null());
    let exists: Option<String> = env
        .ring()
        .query_first("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 't_init_dry_never'")
        .unwrap();
    assert_eq!(exists, None);
    let same = env.json(&["init", "--dry-run"]);
    assert_eq!(same["from_version"], same["version"]);
}

#[test]
fn doctor_passes_on_a_healthy_federation() {
    let env = Env::new(fed(), "doctor_ok");
    env.register_shards();
    let report = env.json(&["doctor"]);
    assert_eq!(report["ok"], true, "{report}");
    let checks = report["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .filter(|c| c["check"] == "replication")
            .count()
            == 4
    );
}

#[test]
fn shard_list_shows_the_registered_shards() {
    let env = Env::new(fed(), "shard_list_basic");
    env.register_shards();
    let list = env.json(&["shard", "list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for s in list {
        for key in ["name", "weight", "state", "users", "servers"] {
            assert!(s.get(key).is_some(), "{key} missing in {s}");
        }
        let servers = s["servers"].as_array().unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0]["half"], "a");
        assert_eq!(servers[1]["half"], "b");
        assert_eq!(servers[0]["status"], "online");
    }
}

fn write(env: &Env, name: &str, text: &str) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Runs `shard list` with a config, in both formats; returns (code, stderr, json error).
fn try_config(
    env: &Env,
    config: &str,
    extra_env: &[(&str, &str)],
) -> (i32, String, serde_json::Value) {
    let table = env.run_with(&["shard", "list", "--config", config], extra_env);
    let json = env.run_with(
        &["shard", "list", "--config", config, "--format", "json"],
        extra_env,
    );
    assert_eq!(table.code, json.code);
    assert_eq!(
        table.stderr.lines().count(),
        1,
        "one-line error: {}",
        table.stderr
    );
    assert!(table.stdout.is_empty());
    (table.code, table.stderr, json.json())
}

#[test]
fn config_errors_are_one_line_with_the_documented_exit_code() {
    let env = Env::new(fed(), "config_errors");
    let good = std::fs::read_to_string(&env.config).unwrap();
    let ring = fed().ring_port();

    let (code, err, doc) = try_config(&env, "/nonexistent/shardctl.toml", &[]);
    assert_eq!(
        (code, doc["error"]["kind"].as_str()),
        (2, Some("config")),
        "{err}"
    );

    let malformed = write(&env, "malformed.toml", "[ring\nservers = ");
    let (code, _, doc) = try_config(&env, &malformed, &[]);
    assert_eq!((code, doc["error"]["kind"].as_str()), (2, Some("config")));

    let unknown = write(
        &env,
        "unknown.toml",
        &good.replace("[shards]", "[shards]\ncolour = \"blue\""),
    );
    let (code, err, doc) = try_config(&env, &unknown, &[]);
    assert_eq!((code, doc["error"]["kind"].as_str()), (2, Some("config")));
    assert!(err.contains("colour"), "{err}");

    // A port nothing listens on.
    let dead = write(
        &env,
        "dead.toml",
        &good.replace(&format!("127.0.0.1:{ring}\"]"), "127.0.0.1:1\"]"),
    );
    let (code, err, doc) = try_config(&env, &dead, &[]);
    assert_eq!(
        (code, doc["error"]["kind"].as_str()),
        (1, Some("unreachable")),
        "{err}"
    );
    assert!(err.contains("127.0.0.1:1"), "{err}");

    let password = "Sup3r-Secret-pw";
    let wrong = write(
        &env,
        "wrong.toml",
        &good.replace(
            "[shards]",
            "[ring.auth]\nuser = \"root\"\npassword_env = \"TEST_RING_PW\"\n[shards]",
        ),
    );
    let (code, err, doc) = try_config(&env, &wrong, &[("TEST_RING_PW", password)]);
    assert_eq!(
        (code, doc["error"]["kind"].as_str()),
        (2, Some("config")),
        "{err}"
    );
    assert!(err.contains("Access denied"), "{err}");
    for out in [err, doc.to_string()] {
        assert!(!out.contains(password), "password leaked: {out}");
    }
}

#[test]
fn usage_errors_print_a_json_error_object() {
    let env = Env::new(fed(), "usage_json");
    let r = env.run(&[
        "shard", "add", "x", "--weight", "abc", "--server", "h:1", "--format", "json",
    ]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["kind"], "usage");
    let r = env.run(&["--format=json", "no-such-command"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["kind"], "usage");
    // A missing argument is named, on the one line.
    let r = env.run(&["lock", "acquire", "x", "--format", "json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--ttl"),
        "{}",
        r.stdout
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    let r = env.run(&["shard", "list", "--format", "yaml"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stderr.lines().count(), 1);
    let before = env.snapshot();
    #[rustfmt::skip]
    let cases: [&[&str]; 9] = [
        &["audit", "--since", "soon"],
        &["audit", "--limit", "0"],
        &["completions", "cmd.exe"],
        &["doctor", "--max-lag", "-1"],
        &["sandbox", "up", "--shards", "0"],
        &["sandbox", "up", "--base-port", "80"],
        &["sandbox", "status", "--dir", "/nonexistent/sandbox"],
        &["migrate", "status", "abc"],
        &["init", "--dry-run", "extra"],
    ];
    for args in cases {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let r = env.run(&a);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.code == 1 || r.code == 2, "{args:?}: exit {}", r.code);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.json()["error"]["kind"].is_string(), "{args:?}");
    }
    assert_eq!(before, env.snapshot());
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let env = Env::new(fed(), "pipe");
    env.register_shards();
    // `true` exits without reading, so shardctl writes into a closed pipe.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' shard list | true; echo ${{PIPESTATUS[0]}}",
            common::bin().display()
        ))
        .env("SHARDCTL_CONFIG", &env.config)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

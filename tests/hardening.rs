//! Hardening against real servers: no command prints a password or writes it to the audit
//! log, whichever way it was given; doctor's GRANT statements are exactly what a login lacks
//! (running them makes the check pass); a drain will not trust a server it cannot fully see;
//! TLS to a server that requires it, with a certificate this test makes.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{conn, federation, run_with_config, Env, Federation, Run};
use mysql::prelude::Queryable;
use serde_json::Value;

fn fed() -> &'static Federation {
    federation("hardening", 25150, 2)
}

/// Every server of the federation, ring first.
fn all_ports(env: &Env) -> Vec<u16> {
    let mut ports = vec![env.fed.ring_port()];
    ports.extend(env.fed.shards().into_iter().flat_map(|(_, p)| p));
    ports
}

/// Creates `user` on every server (not replicated: each server gets its own), with `grants`
/// run for it as given (`{u}` stands for the account).
fn create_login(env: &Env, user: &str, password: &str, grants: &[String]) {
    let account = format!("'{user}'@'127.0.0.1'");
    for port in all_ports(env) {
        let mut c = conn(port);
        c.query_drop("SET SESSION sql_log_bin = 0").unwrap();
        c.query_drop(format!("DROP USER IF EXISTS {account}"))
            .unwrap();
        // CREATE USER takes no placeholders; the test's passwords hold no quote.
        c.query_drop(format!("CREATE USER {account} IDENTIFIED BY '{password}'"))
            .unwrap();
        for g in grants {
            c.query_drop(g.replace("{u}", &account)).unwrap();
        }
    }
}

/// Appends auth sections to the world's config.
fn with_auth(env: &Env, auth: &str) {
    let mut text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(common::SHARDCTL_AUTH, "");
    text.push_str(auth);
    std::fs::write(&env.config, text).unwrap();
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

const CANARY: &str = "Canary-pw-7f3e1d";

#[test]
fn no_command_prints_or_records_the_password() {
    let env = Env::new(fed(), "hd_leak");
    env.register_shards();
    create_login(
        &env,
        "leaky",
        CANARY,
        &["GRANT ALL PRIVILEGES ON *.* TO {u}".to_string()],
    );
    let dir = env.dir.path();
    write_private(&dir.join("pw"), &format!("{CANARY}\n"));
    write_private(
        &dir.join("creds.cnf"),
        &format!("[client]\nuser = leaky\npassword = \"{CANARY}\"\n"),
    );
    write_private(&dir.join("my.cnf"), "[client]\n!include creds.cnf\n");
    let base = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(common::SHARDCTL_AUTH, "");
    let ways = [
        "[ring.auth]\nuser = \"leaky\"\npassword_file = \"pw\"\n[shards.auth]\nuser = \"leaky\"\npassword_file = \"pw\"\n".to_string(),
        "[ring.auth]\nuser = \"leaky\"\npassword_env = \"LEAK_PW\"\n[shards.auth]\nuser = \"leaky\"\npassword_env = \"LEAK_PW\"\n".to_string(),
        "[ring.auth]\ndefaults_file = \"my.cnf\"\n[shards.auth]\ndefaults_file = \"my.cnf\"\n".to_string(),
    ];
    let plan = dir.join("plan.json");
    let plan = plan.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["init"],
        vec!["doctor"],
        vec!["shard", "list"],
        vec!["shard", "set-weight", "shard1", "2"],
        vec!["shard", "set-state", "shard2", "readonly"],
        vec!["shard", "set-state", "shard2", "active"],
        vec!["shard", "set-capacity", "shard1", "5000"],
        vec!["shard", "remove", "nosuch"],
        vec![
            "shard",
            "add",
            "nope",
            "--weight",
            "1",
            "--server",
            "127.0.0.1:1",
        ],
        vec!["user", "assign", "11", "12", "13", "14"],
        vec!["user", "locate", "11"],
        vec!["user", "locate", "999999"],
        vec!["id", "next", "-n", "3"],
        vec!["migrate", "11", "--to", "shard1"],
        vec!["migrate", "11", "--to", "shard2"],
        vec!["migrate", "status"],
        vec!["migrate", "resume", "--all"],
        vec!["rebalance", "plan", "-o", plan],
        vec!["rebalance", "apply", plan],
        vec!["rebalance", "apply", "--dry-run"],
        vec!["lock", "acquire", "JOB_LEAK", "--ttl", "1m"],
        vec!["lock", "list"],
        vec!["lock", "show", "JOB_LEAK"],
        vec!["lock", "acquire", "JOB_LEAK", "--ttl", "1m"],
        vec!["lock", "release", "JOB_LEAK"],
        vec!["lock", "acquire", "JOB_LEAK2", "--ttl", "1m"],
        vec!["lock", "force-release", "JOB_LEAK2", "--reason", "test"],
        vec!["lock", "sweep"],
        vec!["lock", "run", "JOB_RUN", "--ttl", "10s", "--", "true"],
        vec!["maintenance", "status"],
        vec!["maintenance", "drain", "--half", "a", "--dry-run"],
        vec!["maintenance", "restore", "--half", "a"],
        vec!["audit", "--since", "1h"],
    ];
    let mut runs = 0;
    for (i, auth) in ways.iter().enumerate() {
        std::fs::write(&env.config, format!("{base}{auth}")).unwrap();
        for args in &commands {
            for format in ["table", "json"] {
                let mut all = args.clone();
                all.extend(["--format", format, "-v"]);
                let r = env.run_with(&all, &[("LEAK_PW", CANARY)]);
                assert!(
                    !r.stdout.contains(CANARY) && !r.stderr.contains(CANARY),
                    "way {i}: {all:?} printed the password:\n{}\n{}",
                    r.stdout,
                    r.stderr
                );
                assert!(!r.stderr.contains("panicked"), "{all:?}: {}", r.stderr);
                runs += 1;
            }
        }
        // Logged in for real: the commands that succeed did (the password works).
        assert_eq!(
            env.run_with(&["shard", "list"], &[("LEAK_PW", CANARY)])
                .code,
            0,
            "way {i} did not log in"
        );
    }
    assert!(runs >= 150);

    // A wrong password is a configuration error that names no password either.
    std::fs::write(
        &env.config,
        format!("{base}[ring.auth]\nuser = \"leaky\"\npassword_env = \"LEAK_PW\"\n"),
    )
    .unwrap();
    let wrong = "Wrong-canary-91b2";
    let r = env.run_with(
        &["shard", "list", "--format", "json"],
        &[("LEAK_PW", wrong)],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.json()["error"]["kind"], "config");
    assert!(!r.stdout.contains(wrong) && !r.stderr.contains(wrong));

    // Nothing the commands stored holds it: audit log, locks, journal.
    let mut ring = env.ring();
    for table in [
        "audit_log",
        "locks",
        "migrations",
        "shards",
        "shard_servers",
    ] {
        let rows: Vec<mysql::Row> = ring.query(format!("SELECT * FROM {table}")).unwrap();
        let text = format!("{rows:?}");
        assert!(!text.contains(CANARY), "{table} holds the password");
    }
    let audited: u64 = ring
        .query_first("SELECT COUNT(*) FROM audit_log")
        .unwrap()
        .unwrap();
    assert!(audited > 10, "the commands did write the audit log");
}

#[test]
fn doctor_names_the_grants_and_they_are_enough() {
    let env = Env::new(fed(), "hd_grants");
    env.register_shards();
    let ring_db = env.ring_db();
    let shard_db = env.shard_db();
    create_login(
        &env,
        "limited",
        "limited-pw",
        &[
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON `{ring_db}`.* TO {{u}}"),
            format!("GRANT SELECT ON `{shard_db}`.* TO {{u}}"),
            format!(
                "GRANT SELECT, INSERT, DELETE ON `{}`.* TO {{u}}",
                env.ticket_db('a')
            ),
            format!(
                "GRANT SELECT, INSERT, DELETE ON `{}`.* TO {{u}}",
                env.ticket_db('b')
            ),
        ],
    );
    with_auth(
        &env,
        "[ring.auth]\nuser = \"limited\"\npassword_env = \"LIMITED_PW\"\n\
         [shards.auth]\nuser = \"limited\"\npassword_env = \"LIMITED_PW\"\n",
    );
    let pw = [("LIMITED_PW", "limited-pw")];
    let doctor = |env: &Env| -> (i32, Value) {
        let r = env.run_with(&["doctor", "--format", "json"], &pw);
        (r.code, r.json())
    };
    let (code, doc) = doctor(&env);
    assert_eq!(code, 1, "{doc}");
    let failed: Vec<&Value> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    let ring_fix = failed
        .iter()
        .find(|c| c["check"] == "ring privileges")
        .expect("the ring privileges check failed")["fix"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ring_fix,
        format!(
            "GRANT CREATE, INDEX, ALTER ON `{ring_db}`.* TO 'limited'@'127.0.0.1'; \
             GRANT CONNECTION ADMIN ON *.* TO 'limited'@'127.0.0.1';"
        )
    );
    let shard_fixes: Vec<&str> = failed
        .iter()
        .filter(|c| c["check"] == "privileges")
        .map(|c| c["fix"].as_str().unwrap())
        .collect();
    assert_eq!(shard_fixes.len(), 4, "{doc}");
    for fix in &shard_fixes {
        assert_eq!(
            *fix,
            format!(
                "GRANT INSERT, UPDATE, DELETE, CREATE, TRIGGER, ALTER, DROP ON `{shard_db}`.* TO 'limited'@'127.0.0.1'; \
                 GRANT SUPER, PROCESS, BINLOG ADMIN, SLAVE MONITOR, CONNECTION ADMIN, REPLICATION SLAVE, BINLOG MONITOR, REPLICATION MASTER ADMIN ON *.* TO 'limited'@'127.0.0.1';"
            )
        );
    }

    // Before anything changes, a drain refuses servers whose sessions it cannot see.
    let before = env.snapshot();
    let r = env.run_with(
        &["maintenance", "drain", "--half", "a", "--format", "json"],
        &pw,
    );
    assert_eq!(r.code, 4, "{}", r.stdout);
    let refused = r.json()["refused"].clone();
    assert_eq!(refused.as_array().unwrap().len(), 2, "{refused}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("missing PROCESS"),
        "{refused}"
    );
    assert_eq!(env.snapshot(), before);

    // Running exactly what doctor printed is enough.
    for port in all_ports(&env) {
        let mut c = conn(port);
        c.query_drop("SET SESSION sql_log_bin = 0").unwrap();
        let fix = if port == env.fed.ring_port() {
            ring_fix.clone()
        } else {
            shard_fixes[0].to_string()
        };
        c.query_drop(fix).unwrap();
    }
    let (code, doc) = doctor(&env);
    let still: Vec<&Value> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert!(still.is_empty(), "{still:?}");
    assert_eq!(code, 0);
}

/// A CA and a server certificate for `localhost` signed by it, made with openssl.
fn make_certs(dir: &Path, ca_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (scripts/install-deps)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = |n: &str| format!("{ca_name}-{n}");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        &key("ca.key"),
        "-out",
        &key("ca.pem"),
        "-subj",
        &format!("/CN={ca_name}"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key("server.key"),
        "-out",
        &key("server.csr"),
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &key("server.csr"),
        "-CA",
        &key("ca.pem"),
        "-CAkey",
        &key("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        &key("server.pem"),
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join(key("ca.pem")),
        dir.join(key("server.pem")),
        dir.join(key("server.key")),
    )
}

#[test]
fn tls_to_a_server_that_requires_it() {
    use shardctl::sandbox::server::{template, Binaries, ServerProcess};
    let fed = fed();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path(), "shardctl-test-ca");
    let (other_ca, _, _) = make_certs(dir.path(), "some-other-ca");

    let bins = Binaries::locate().unwrap();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("template-cache");
    let server = ServerProcess {
        dir: dir.path().join("tls-server"),
        port: 25160,
        server_id: 160,
        pair: None,
        files_dir: dir.path().join("files"),
        buffer_pool_mb: 32,
    };
    server.prepare(&template(&bins, &cache).unwrap()).unwrap();
    let mut cnf = std::fs::read_to_string(server.dir.join("my.cnf")).unwrap();
    cnf.push_str(&format!(
        "ssl-ca={}\nssl-cert={}\nssl-key={}\nrequire-secure-transport=ON\n",
        ca.display(),
        cert.display(),
        key.display()
    ));
    std::fs::write(server.dir.join("my.cnf"), cnf).unwrap();
    server.spawn(&bins).unwrap();
    struct Stop<'a>(&'a ServerProcess);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.stop(Duration::from_secs(10));
        }
    }
    let _stop = Stop(&server);
    // Ready once it answers over TLS.
    let tls_login = |mode: &str, ca: &Path, host: &str| -> String {
        format!(
            "[ring]\nservers = [\"{host}:25160\"]\ndatabase = \"tls_ring\"\n\
             [ring.auth]\nuser = \"root\"\nno_password = true\n\
             [shards]\ndatabase = \"app\"\n[shards.auth]\nuser = \"root\"\nno_password = true\n\
             [[shards.tables]]\nname = \"photos\"\nowner_column = \"owner_id\"\n\
             [tls]\nmode = \"{mode}\"\nca = \"{}\"\n",
            ca.display()
        )
    };
    let run = |config: &str, args: &[&str]| -> Run {
        let path = dir.path().join("shardctl.toml");
        std::fs::write(&path, config).unwrap();
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        run_with_config(&path, &all, &[])
    };
    let required = tls_login("required", &ca, "127.0.0.1");
    let start = std::time::Instant::now();
    while run(&required, &["init"]).code != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the TLS server did not come up: {}",
            std::fs::read_to_string(server.error_log()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Encrypted and verified against the test's CA, by host name.
    let verified = tls_login("verify_identity", &ca, "localhost");
    let r = run(&verified, &["shard", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // The server refuses plain connections (MariaDB answers "access denied"): a clear one-line
    // configuration error naming the server, not a hang.
    let plain = tls_login("disabled", &ca, "127.0.0.1");
    let r = run(&plain, &["shard", "list"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("127.0.0.1:25160"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.json()["error"]["message"].is_string());

    // A certificate from a CA we do not trust is refused.
    let untrusted = tls_login("verify_identity", &other_ca, "localhost");
    let r = run(&untrusted, &["shard", "list"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.to_ascii_lowercase().contains("certificate"),
        "{}",
        r.stderr
    );

    // `preferred` takes TLS where offered and plain text where not (the federation's ring).
    let preferred = tls_login("preferred", &ca, "127.0.0.1")
        .replace("127.0.0.1:25160", &format!("127.0.0.1:{}", fed.ring_port()));
    let r = run(&preferred, &["init", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Checksums of every table a command could change: the ring's and each shard server's.
#[test]
fn bad_input_corpus_gets_one_clear_error_and_changes_nothing() {
    let env = Env::new(fed(), "hd_corpus");
    env.register_shards();
    let home = env.seed_user(1, 30);
    env.json(&["user", "assign", "2", "3", "4", "5"]);
    let dir = env.dir.path().to_path_buf();
    let file = |name: &str, text: &str| -> String {
        let p = dir.join(name);
        write_private(&p, text);
        p.to_str().unwrap().to_string()
    };
    let plan = env.dir.path().join("good.json");
    env.run(&[
        "rebalance",
        "plan",
        "--tolerance",
        "0",
        "-o",
        plan.to_str().unwrap(),
    ])
    .ok();
    let good: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let mut v99 = good.clone();
    v99["version"] = 99.into();
    let mut stranger = good.clone();
    stranger["moves"] =
        serde_json::json!([{"user": 1, "from": "shard1", "to": "no-such-shard", "rows": 1}]);
    let malformed = file("malformed.json", "{\"moves\": [");
    let v99 = file("v99.json", &v99.to_string());
    let stranger = file("stranger.json", &stranger.to_string());
    let not_a_plan = file("not-a-plan.json", "[1, 2, 3]");
    let bad_ids = file("ids.txt", "6\n7\nseven\n8\n");
    let long_name = "x".repeat(65);
    let config = std::fs::read_to_string(&env.config).unwrap();
    let configs = [
        ("malformed.toml", "[ring\nservers = 1".to_string()),
        (
            "unknown-key.toml",
            config.replace("[shards]", "[shards]\nshard_count = 3"),
        ),
        (
            "injection.toml",
            config.replace(
                &format!("\"{}\"", env.shard_db()),
                "\"app`; DROP TABLE users; --\"",
            ),
        ),
        (
            "unreachable.toml",
            config.replace(
                &format!("servers = [\"127.0.0.1:{}\"]", env.fed.ring_port()),
                "servers = [\"127.0.0.1:1\"]",
            ),
        ),
        (
            "wrong-password.toml",
            format!("{config}[ring.auth]\nuser = \"root\"\npassword_env = \"CORPUS_PW\"\n"),
        ),
        (
            "unset-env.toml",
            format!("{config}[ring.auth]\npassword_env = \"CORPUS_PW_UNSET\"\n"),
        ),
        (
            "bad-timeout.toml",
            format!("{config}[timeouts]\nconnect = \"-1s\"\n"),
        ),
        (
            "zero-timeout.toml",
            format!("{config}[timeouts]\nconnect = \"0s\"\n"),
        ),
        (
            "zk-no-servers.toml",
            format!("{config}[locks]\nbackend = \"zookeeper\"\n"),
        ),
        (
            // Nothing listens there: the lock verbs fail at once, naming the ensemble.
            "zk-unreachable.toml",
            format!("{config}[locks]\nbackend = \"zookeeper\"\nservers = [\"127.0.0.1:1\"]\nsession_timeout = \"1s\"\n"),
        ),
        (
            "bad-owner.toml",
            config.replace(
                "name = \"photos\"\nowner_column = \"owner_id\"",
                "name = \"photos\"\nowner_column = \"no_such_owner\"",
            ),
        ),
    ];
    for (name, text) in &configs {
        file(name, text);
    }
    let cfg = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let open_cnf = dir.join("open.cnf");
    std::fs::write(&open_cnf, "[client]\npassword = x\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open_cnf, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    file(
        "open-cnf.toml",
        &format!(
            "{config}[ring.auth]\ndefaults_file = \"{}\"\n",
            open_cnf.display()
        ),
    );

    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let with_config = |name: &str, args: &[&str]| {
        let mut v = s(&["--config", &cfg(name)]);
        v.extend(s(args));
        v
    };
    #[rustfmt::skip]
    let cases: Vec<(Vec<String>, i32)> = vec![
        // Numbers: negative, zero, NaN, infinite, huge.
        (s(&["shard", "add", "s9", "--weight", "-1", "--server", "127.0.0.1:1"]), 2),
        (s(&["shard", "add", "s9", "--weight", "0", "--server", "127.0.0.1:1"]), 2),
        (s(&["shard", "add", "s9", "--weight", "NaN", "--server", "127.0.0.1:1"]), 2),
        (s(&["shard", "add", "s9", "--weight", "inf", "--server", "127.0.0.1:1"]), 2),
        (s(&["shard", "add", "s9", "--weight", "1e400", "--server", "127.0.0.1:1"]), 2),
        (s(&["shard", "add", "s9", "--weight", "1e-320", "--server", "127.0.0.1:1"]), 2),
        (s(&["shard", "set-weight", "shard1", "1e-320"]), 2),
        (s(&["shard", "set-weight", "shard1", "-5"]), 2),
        (s(&["shard", "set-capacity", "shard1", "NaN"]), 2),
        (s(&["shard", "set-capacity", "shard1", "-1"]), 2),
        (s(&["user", "assign", "-1"]), 2),
        (s(&["user", "assign", "18446744073709551616"]), 2),
        (s(&["id", "next", "-n", "0"]), 2),
        (s(&["id", "next", "-n", "1000001"]), 2),
        (s(&["id", "next", "--bits", "16"]), 2),
        (s(&["migrate", "1", "--to", "shard2", "--max-lag", "-3"]), 2),
        (s(&["migrate", "resume", "1", "--max-lag", "soon"]), 2),
        (s(&["rebalance", "plan", "--tolerance", "150"]), 2),
        (s(&["rebalance", "plan", "--tolerance", "NaN"]), 2),
        (s(&["rebalance", "plan", "--max-moves", "0"]), 2),
        (s(&["rebalance", "apply", "--jobs", "0"]), 2),
        (s(&["lock", "sweep", "--limit", "0"]), 2),
        (s(&["doctor", "--max-lag", "1e99"]), 2),
        // Names: unknown and hostile.
        (s(&["shard", "add", "bad name!", "--weight", "1", "--server", "127.0.0.1:1"]), 2),
        (s(&["shard", "add", &long_name, "--weight", "1", "--server", "127.0.0.1:1"]), 2),
        (s(&["shard", "add", "s9'; DROP TABLE users; --", "--weight", "1", "--server", "127.0.0.1:1"]), 2),
        (s(&["shard", "set-weight", "nosuch", "2"]), 1),
        (s(&["shard", "set-state", "shard1", "deleted"]), 2),
        (s(&["shard", "remove", "nosuch"]), 1),
        (s(&["shard", "remove", &home]), 1),
        (s(&["user", "locate", "abc"]), 2),
        (s(&["user", "locate", "999999999"]), 1),
        (s(&["migrate", "1", "--to", "nosuch"]), 1),
        (s(&["migrate", "999999999", "--to", "shard1"]), 1),
        (s(&["lock", "acquire", &long_name, "--ttl", "1m"]), 2),
        (s(&["lock", "acquire", "bad name", "--ttl", "1m"]), 2),
        (s(&["lock", "show", "../../etc/passwd"]), 2),
        (s(&["lock", "release", "JOB_X", "--token", "abc"]), 2),
        (s(&["lock", "run", "JOB_X", "--ttl", "1s"]), 2),
        (s(&["maintenance", "drain", "--half", "c"]), 2),
        (s(&["maintenance", "restore"]), 2),
        (s(&["completions", "cmd.exe"]), 2),
        (s(&["cache", "invalidate", "abc"]), 2),
        (s(&["cache", "status"]), 2),
        (s(&["guard", "install", "--timeout", "soon"]), 2),
        (s(&["guard", "remove", "--timeout", "-1s"]), 2),
        // HOST:PORT and durations.
        (s(&["shard", "add", "s9", "--weight", "1", "--server", "127.0.0.1"]), 2),
        (s(&["shard", "add", "s9", "--weight", "1", "--server", "127.0.0.1:99999"]), 2),
        (s(&["shard", "add", "s9", "--weight", "1", "--server", ":3306"]), 2),
        (s(&["shard", "add", "s9", "--weight", "1", "--server", "db:0"]), 2),
        (s(&["shard", "set-capacity", "shard1", "10", "--server", "nohost"]), 2),
        (s(&["lock", "acquire", "JOB_X", "--ttl", "-5s"]), 2),
        (s(&["lock", "acquire", "JOB_X", "--ttl", "11years"]), 2),
        (s(&["migrate", "1", "--to", "shard2", "--lock-ttl", "soon"]), 2),
        (s(&["maintenance", "drain", "--half", "a", "--timeout", "NaN"]), 2),
        (s(&["audit", "--since", "-1h"]), 2),
        // Files: ids, plans.
        (s(&["user", "assign", "--file", &bad_ids]), 2),
        (s(&["user", "assign", "--file", "/nonexistent/ids.txt"]), 2),
        (s(&["rebalance", "apply", &malformed]), 2),
        (s(&["rebalance", "apply", &v99]), 2),
        (s(&["rebalance", "apply", &not_a_plan]), 2),
        (s(&["rebalance", "apply", &stranger]), 1),
        (s(&["rebalance", "apply", "/nonexistent/plan.json"]), 2),
        // Config files, servers, credentials.
        (with_config("malformed.toml", &["shard", "list"]), 2),
        (with_config("unknown-key.toml", &["shard", "list"]), 2),
        (with_config("injection.toml", &["shard", "list"]), 2),
        (with_config("unreachable.toml", &["shard", "list"]), 1),
        (with_config("zk-no-servers.toml", &["lock", "list"]), 2),
        (with_config("zk-unreachable.toml", &["lock", "acquire", "JOB_X", "--ttl", "1m"]), 1),
        (with_config("zk-unreachable.toml", &["migrate", "1", "--to", &env.other_shard(&home)]), 1),
        (s(&["sandbox", "up", "--zookeeper-nodes", "3"]), 2),
        (s(&["sandbox", "up", "--lock-backend", "etcd"]), 2),
        (s(&["sandbox", "up", "--lock-backend", "zookeeper", "--zookeeper-nodes", "0"]), 2),
        (with_config("wrong-password.toml", &["shard", "list"]), 2),
        (with_config("unset-env.toml", &["shard", "list"]), 2),
        (with_config("bad-timeout.toml", &["shard", "list"]), 2),
        (with_config("zero-timeout.toml", &["shard", "list"]), 2),
        (with_config("bad-owner.toml", &["rebalance", "plan"]), 2),
        (with_config("bad-owner.toml", &["migrate", "1", "--to", &env.other_shard(&home)]), 2),
        (with_config("open-cnf.toml", &["shard", "list"]), 2),
        (with_config("nonexistent.toml", &["shard", "list"]), 2),
        (s(&["--defaults-file", "/nonexistent/my.cnf", "shard", "list"]), 2),
    ];
    assert!(cases.len() >= 40);

    let before = env.snapshot();
    let mut wrong = Vec::new();
    for (args, code) in &cases {
        for json in [false, true] {
            let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
            if json {
                all.extend(["--format", "json"]);
            }
            let r = env.run_with(&all, &[("CORPUS_PW", "not-the-password")]);
            let one_line = r.stderr.lines().count() == 1 && r.stderr.starts_with("error: ");
            let json_ok = !json
                || serde_json::from_str::<Value>(&r.stdout).is_ok_and(|v| {
                    v["error"]["kind"].is_string() && v["error"]["message"].is_string()
                });
            let debug_text = [
                "panicked",
                "MySqlError",
                "DriverError",
                "CodecError",
                "IoError {",
            ]
            .iter()
            .any(|t| r.stderr.contains(t) || r.stdout.contains(t));
            if r.code != *code || !one_line || !json_ok || debug_text {
                wrong.push(format!(
                    "{all:?}: exit {} (want {code}), stderr {:?}, stdout {:?}",
                    r.code, r.stderr, r.stdout
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(env.snapshot(), before);
}

/// Every branch on a server's error is taken on its code, never on its text: errors raised
/// with `SIGNAL` carry one code and another kind's words (and a port with 1213 in it).
#[test]
fn server_errors_are_told_apart_by_their_codes_not_their_text() {
    use shardctl::db::retry_deadlocks;
    use shardctl::error::{DbErrorKind, Error};
    let port = fed().ring_port();
    let mut db = common::root_db(port);
    let signal = |db: &mut shardctl::db::Db, code: u16, text: &str| -> Error {
        // SIGNAL takes no placeholders; the texts here hold no quote.
        db.query_drop(
            "signalling",
            &format!("SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = {code}, MESSAGE_TEXT = '{text}'"),
        )
        .unwrap_err()
    };
    let words =
        "Deadlock found 1213 Duplicate entry Unknown thread Unknown database 1148 not allowed";
    for (code, kind) in [
        (1213, DbErrorKind::Deadlock),
        (1062, DbErrorKind::Duplicate),
        (1094, DbErrorKind::UnknownThread),
        (1049, DbErrorKind::UnknownDatabase),
        (1148, DbErrorKind::LocalInfileRefused),
        (1644, DbErrorKind::Other),
    ] {
        let e = signal(&mut db, code, words);
        assert_eq!(e.server_error().and_then(|s| s.code()), Some(code));
        assert!(e.is(kind), "{code}: {e}");
        assert!(!e.to_string().contains("MySqlError"), "Debug text: {e}");
    }
    // The one deadlock policy: a deadlock is tried again (7 attempts in all), anything else
    // once, whatever its words.
    for (code, attempts) in [(1213, 7), (1644, 1), (1062, 1)] {
        let mut n = 0;
        let result = retry_deadlocks(|| {
            n += 1;
            Err::<(), _>(signal(
                &mut db,
                code,
                "Deadlock found when trying to get lock 1213",
            ))
        });
        assert!(result.is_err());
        assert_eq!(n, attempts, "code {code}");
    }
    // Nothing listens on a port with 1213 in it: unreachable, tried once, said plainly.
    let mut n = 0;
    let unreachable = retry_deadlocks(|| {
        n += 1;
        shardctl::db::Db::connect(
            &shardctl::types::HostPort::new("127.0.0.1", 21213),
            &shardctl::config::Login {
                user: "root".into(),
                password: None,
            },
            None,
            &shardctl::config::NetOptions::default(),
        )
    })
    .err()
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(unreachable.kind(), "unreachable");
    assert!(
        !unreachable.to_string().contains("DriverError"),
        "{unreachable}"
    );
    // Killing a session that has ended is "already gone", not a failure.
    assert!(!db
        .kill_connection("ending a session", 4_000_000_000)
        .unwrap());
    // Unknown database and refused logins are configuration errors (exit 2).
    let missing = shardctl::db::Db::connect(
        &shardctl::types::HostPort::new("127.0.0.1", port),
        &shardctl::config::Login {
            user: "root".into(),
            password: None,
        },
        Some(&"no_such_database_1213".parse().unwrap()),
        &shardctl::config::NetOptions::default(),
    )
    .err()
    .unwrap();
    assert!(missing.is(DbErrorKind::UnknownDatabase), "{missing}");
    assert_eq!((missing.kind(), missing.exit_code()), ("config", 2));
}

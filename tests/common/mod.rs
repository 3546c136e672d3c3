//! One sandbox federation per test binary, started on first use and stopped at exit; each test
//! works in databases of its own (ring, tickets and shard database named after the test), so
//! tests run in parallel on the same servers without seeing each other.
#![allow(dead_code)]

pub mod app;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use mysql::prelude::Queryable;
use serde_json::Value;
use shardctl::sandbox::demo;

pub struct Federation {
    pub dir: PathBuf,
    pub status: Value,
}

static FEDERATION: OnceLock<Federation> = OnceLock::new();
static DIR: OnceLock<PathBuf> = OnceLock::new();

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shardctl"))
}

/// Stops the binary's servers at exit and removes their data (about half a gigabyte a binary,
/// which twenty binaries in a row would pile onto a CI machine's disk); set
/// `SHARDCTL_KEEP_SANDBOXES=1` to keep them for a look after a failure.
extern "C" fn stop_federation() {
    if let Some(dir) = DIR.get() {
        let stopped = Command::new(bin())
            .args(["sandbox", "down", "--dir"])
            .arg(dir)
            .output()
            .is_ok_and(|out| out.status.success());
        if stopped && std::env::var_os("SHARDCTL_KEEP_SANDBOXES").is_none() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The binary's shared federation: `name` picks its directory, `base_port` its ports.
pub fn federation(name: &str, base_port: u16, shards: u32) -> &'static Federation {
    federation_with(name, base_port, shards, &[])
}

/// The same, with more `sandbox up` options (`--cache`).
pub fn federation_with(
    name: &str,
    base_port: u16,
    shards: u32,
    extra: &[&str],
) -> &'static Federation {
    FEDERATION.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = root.join("sandboxes").join(name);
        let out = Command::new(bin())
            .args(["sandbox", "up", "--format", "json", "--dir"])
            .arg(&dir)
            .args([
                "--shards",
                &shards.to_string(),
                "--base-port",
                &base_port.to_string(),
            ])
            .args(extra)
            .env("SHARDCTL_SANDBOX_CACHE", root.join("template-cache"))
            .output()
            .expect("run shardctl sandbox up");
        assert!(
            out.status.success(),
            "sandbox up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        DIR.set(dir.clone()).expect("set once");
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe { libc::atexit(stop_federation) };
        let status = run_json(&dir, &["sandbox", "status", "--dir", dir.to_str().unwrap()]);
        grant_test_databases(&status);
        Federation { dir, status }
    })
}

fn run_json(cwd: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin())
        .current_dir(cwd)
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

impl Federation {
    pub fn ring_port(&self) -> u16 {
        self.servers("global")[0].1
    }

    /// (shard, port) of every server with the role, in layout order.
    pub fn servers(&self, role: &str) -> Vec<(String, u16, String)> {
        self.status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["role"] == role)
            .map(|s| {
                (
                    s["shard"].as_str().unwrap_or("").to_string(),
                    s["port"].as_u64().unwrap() as u16,
                    s["half"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The client ports of the sandbox's ZooKeeper ensemble (`--lock-backend zookeeper`).
    pub fn zookeeper_ports(&self) -> Vec<u16> {
        self.servers("zookeeper")
            .into_iter()
            .map(|(_, p, _)| p)
            .collect()
    }

    /// The ensemble as the config names it, with the locks of world `name` under `/t_<name>`.
    pub fn zookeeper_config(
        &self,
        name: &str,
        session: Duration,
    ) -> shardctl::config::ZookeeperConfig {
        shardctl::config::ZookeeperConfig {
            servers: self
                .zookeeper_ports()
                .into_iter()
                .map(|p| shardctl::types::HostPort::new("127.0.0.1", p))
                .collect(),
            root: format!("/t_{name}"),
            session_timeout: session,
            digest: None,
        }
    }

    /// The pid a sandbox process wrote to `file`, relative to the sandbox directory
    /// (`shard1b/mariadbd.pid`, `memcached/memcached.pid`).
    pub fn pid(&self, file: &str) -> i32 {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_else(|e| panic!("reading {file}: {e}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// The pid of a sandbox server: `global`, or a shard server like `shard1a`.
    pub fn server_pid(&self, member: &str) -> i32 {
        self.pid(&format!("{member}/mariadbd.pid"))
    }

    /// The sandbox shards as (name, [port a, port b]).
    pub fn shards(&self) -> Vec<(String, Vec<u16>)> {
        let mut out: Vec<(String, Vec<u16>)> = Vec::new();
        for (shard, port, _) in self.servers("shard") {
            match out.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, ports)) => ports.push(port),
                None => out.push((shard, vec![port])),
            }
        }
        out
    }
}

pub fn conn(port: u16) -> mysql::Conn {
    mysql::Conn::new(
        mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(port)
            .user(Some("root"))
            .prefer_socket(false),
    )
    .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
}

/// shardctl's own login on the sandbox's servers (the guards let only it through).
pub const SHARDCTL_USER: &str = "shardctl";

/// The config's `[shards.auth]` section for it (a test with a login of its own removes it).
pub const SHARDCTL_AUTH: &str = "[shards.auth]\nuser = \"shardctl\"\nno_password = true\n";

/// A connection as shardctl's login: for a test acting as an administrator whose writes the
/// guards must let through (seeding rows a guarded user owns).
pub fn shardctl_conn(port: u16) -> mysql::Conn {
    mysql::Conn::new(
        mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(port)
            .user(Some(SHARDCTL_USER))
            .prefer_socket(false),
    )
    .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port} as {SHARDCTL_USER}: {e}"))
}

/// Guards (`lives_on` Some) or unguards `user` on `port` alone, as shardctl does: logged in as
/// shardctl, nothing replicated, the guard table's row and then its bucket's list.
pub fn guard_by_hand(port: u16, database: &str, user: u64, lives_on: Option<&str>) {
    let mut c = shardctl_conn(port);
    c.query_drop("SET SESSION sql_log_bin = 0").unwrap();
    match lives_on {
        Some(to) => c.exec_drop(
            format!("REPLACE INTO {database}.shardctl_guard (user_id, lives_on, guarded_at) VALUES (?, ?, UTC_TIMESTAMP(6))"),
            (user, to),
        ),
        None => c.exec_drop(
            format!("DELETE FROM {database}.shardctl_guard WHERE user_id = ?"),
            (user,),
        ),
    }
    .unwrap();
    let bucket = user % shardctl::shard::guard::BUCKETS;
    c.exec_drop(
        format!(
            "UPDATE {database}.shardctl_guard_buckets SET users = COALESCE((
                 SELECT CONCAT(',', GROUP_CONCAT(CONCAT(g.user_id, '=', g.lives_on) ORDER BY g.user_id SEPARATOR ','), ',')
                 FROM {database}.shardctl_guard g WHERE g.bucket = ?), '') WHERE bucket = ?"
        ),
        (bucket, bucket),
    )
    .unwrap();
}

/// Lets shardctl's login work in the tests' databases (`t_...`) as it does in the sandbox's
/// own: the same privileges, on a database name pattern (not replicated; each server).
fn grant_test_databases(status: &Value) {
    let mysql = status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == "global" || s["role"] == "shard");
    for s in mysql {
        let mut c = conn(s["port"].as_u64().unwrap() as u16);
        c.query_drop("SET SESSION sql_log_bin = 0").unwrap();
        for host in ["127.0.0.1", "localhost"] {
            c.query_drop(format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, TRIGGER ON `t\\_%`.* TO '{SHARDCTL_USER}'@'{host}'"
            ))
            .unwrap();
        }
    }
}

/// A root connection whose login and statements are bounded by `limit`; None when the server
/// does not answer in time (frozen by a test).
pub fn conn_within(port: u16, limit: Duration) -> Option<mysql::Conn> {
    mysql::Conn::new(
        mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(port)
            .user(Some("root"))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(limit))
            .read_timeout(Some(limit))
            .write_timeout(Some(limit)),
    )
    .ok()
}

/// shardctl's own connection type, as root on a sandbox server.
pub fn root_db(port: u16) -> shardctl::db::Db {
    shardctl::db::Db::connect(
        &shardctl::types::HostPort::new("127.0.0.1", port),
        &shardctl::config::Login {
            user: "root".into(),
            password: None,
        },
        None,
        &Default::default(),
    )
    .unwrap()
}

/// Polls `f` until it holds; fails the test after 30 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The sandbox server the routing rule picks for `user` on `shard` (online servers by half,
/// index user mod 2): where shardctl reads and writes the user's rows.
pub fn routing_member(shard: &str, user: u64) -> String {
    let half = if user.is_multiple_of(2) { "a" } else { "b" };
    format!("{shard}{half}")
}

/// Sends `sig` to `pid`.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: signalling a process this test started or a sandbox server it owns.
    unsafe { libc::kill(pid, sig) };
}

/// Whether process `pid` still runs (a zombie does not).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
}

/// A process frozen with SIGSTOP until dropped (a frozen server still accepts TCP and answers
/// nothing).
pub struct Frozen(i32);

impl Frozen {
    pub fn new(pid: i32) -> Frozen {
        signal(pid, libc::SIGSTOP);
        wait_until("the process to freeze", || is_stopped(pid as u32));
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

/// Whether process `pid` is stopped (SIGSTOP).
pub fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

/// What a shardctl run produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs shardctl with the config at `config` (and `env`), as operator `test-operator`.
pub fn run_with_config(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    run_command(cmd, config, env)
}

/// Runs `cmd` (shardctl, or something that runs it) with `config` and the test operator.
fn run_command(mut cmd: Command, config: &Path, env: &[(&str, &str)]) -> Run {
    let out = cmd
        .env("SHARDCTL_CONFIG", config)
        .env("SHARDCTL_OPERATOR", "test-operator")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs shardctl with `--format json` on a host whose wall clock is `skew` off (libfaketime,
/// `+2h` or `-1h`), its timers real, as a skewed host's are.
pub fn run_skewed(config: &Path, skew: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new("faketime");
    cmd.arg("-f")
        .arg(skew)
        .arg(bin())
        .args(["--format", "json"])
        .args(args);
    run_command(cmd, config, &[("FAKETIME_DONT_FAKE_MONOTONIC", "1")])
}

/// One test's world: its own ring database, ticket schemas and shard database.
pub struct Env {
    pub fed: &'static Federation,
    pub name: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Env {
    /// A fresh world named `name`: databases dropped and recreated, schema initialised.
    pub fn new(fed: &'static Federation, name: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("shardctl.toml");
        let env = Env {
            fed,
            name: name.to_string(),
            dir,
            config,
        };
        let ring = fed.ring_port();
        let mut c = conn(ring);
        for db in [env.ring_db(), env.ticket_db('a'), env.ticket_db('b')] {
            c.query_drop(format!("DROP DATABASE IF EXISTS {db}"))
                .unwrap();
        }
        for (_, ports) in fed.shards() {
            let mut s = conn(ports[0]);
            s.query_drop(format!("DROP DATABASE IF EXISTS {}", env.shard_db()))
                .unwrap();
        }
        std::fs::write(&env.config, env.config_text(ring, &env.ring_db())).unwrap();
        env.run(&["init"]).ok();
        env
    }

    pub fn ring_db(&self) -> String {
        format!("t_{}", self.name)
    }
    pub fn ticket_db(&self, which: char) -> String {
        format!("t_{}_tickets_{which}", self.name)
    }
    pub fn shard_db(&self) -> String {
        format!("t_{}_app", self.name)
    }

    /// The config text for this world, pointing at `ring_port`.
    pub fn config_text(&self, ring_port: u16, ring_db: &str) -> String {
        let tables: String = demo::tables()
            .iter()
            .map(|t| {
                format!(
                    "[[shards.tables]]\nname = \"{}\"\nowner_column = \"{}\"\n",
                    t.name, t.owner_column
                )
            })
            .collect();
        format!(
            "[ring]\nservers = [\"127.0.0.1:{ring_port}\"]\ndatabase = \"{ring_db}\"\n\
             [[tickets]]\nserver = \"127.0.0.1:{p}\"\ndatabase = \"{ta}\"\nauto_increment_increment = 2\nauto_increment_offset = 1\n\
             [[tickets]]\nserver = \"127.0.0.1:{p}\"\ndatabase = \"{tb}\"\nauto_increment_increment = 2\nauto_increment_offset = 2\n\
             [shards]\ndatabase = \"{sd}\"\n{SHARDCTL_AUTH}{tables}",
            p = self.fed.ring_port(),
            ta = self.ticket_db('a'),
            tb = self.ticket_db('b'),
            sd = self.shard_db(),
        )
    }

    /// Runs shardctl with this world's config.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        run_with_config(&self.config, args, env)
    }

    /// Runs with `--format json`, asserts exit 0, returns the document.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        self.run(&all).ok().json()
    }

    /// Runs with `--format json`, whatever its exit code: (exit code, the document).
    pub fn run_json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let r = self.run(&all);
        (r.code, r.json())
    }

    /// The sandbox shard that is not `shard` (the federations of two shards).
    pub fn other_shard(&self, shard: &str) -> String {
        self.fed
            .shards()
            .into_iter()
            .map(|(n, _)| n)
            .find(|n| n != shard)
            .expect("a second shard")
    }

    /// Writes a plan file of `moves` (`{"user", "from", "to", "rows"}`) in this world's
    /// directory, as `rebalance plan -o` would; returns its path.
    pub fn write_plan(&self, file: &str, moves: Vec<Value>) -> String {
        let plan = self.dir.path().join(file);
        std::fs::write(
            &plan,
            serde_json::json!({"version": 1, "created_at": "now", "by": "users", "tolerance_pct": 2.0,
                               "lower_bound": 0, "rows_to_move": 0, "shards": [], "moves": moves})
            .to_string(),
        )
        .unwrap();
        plan.to_str().unwrap().to_string()
    }

    /// Starts shardctl in the background with this world's config (and `env`), pipes captured.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        Command::new(bin())
            .args(args)
            .env("SHARDCTL_CONFIG", &self.config)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts `migrate USER --to TO` and waits until it has paused itself in the middle of
    /// the copy (test builds only: the `failpoints` feature).
    pub fn migration_paused_mid_copy(
        &self,
        user: u64,
        to: &str,
        extra: &[&str],
    ) -> std::process::Child {
        let user = user.to_string();
        let mut args = vec!["migrate", &user, "--to", to];
        args.extend(extra);
        let child = self.spawn(&args, &[("SHARDCTL_FAILPOINT_STOP", "migrate.copy_mid")]);
        wait_until("the migration to pause mid-copy", || is_stopped(child.id()));
        child
    }

    /// Creates the demo application schema on every shard (half a; replication copies it to b).
    pub fn create_app_schema(&self) {
        for (_, ports) in self.fed.shards() {
            let mut s = conn(ports[0]);
            let db: shardctl::types::Ident = self.shard_db().parse().unwrap();
            demo::create_schema(&mut root_db(ports[0]), &db).unwrap();
            wait_replicated(&mut s, ports[1]);
        }
    }

    /// Registers every sandbox shard (weight 1) in this world's ring.
    pub fn register_shards(&self) {
        self.create_app_schema();
        for (name, ports) in self.fed.shards() {
            let a = format!("127.0.0.1:{}", ports[0]);
            let b = format!("127.0.0.1:{}", ports[1]);
            self.run(&[
                "shard", "add", &name, "--weight", "1", "--server", &a, "--server", &b,
            ])
            .ok();
        }
    }

    /// Keeps this world's locks in the federation's ZooKeeper ensemble, under `/t_<name>`,
    /// with the given session timeout (short: paused holders lose their ephemeral nodes
    /// quickly). The ensemble outlives test runs, so a previous run's locks there are deleted.
    pub fn keep_locks_in_zookeeper(&self, session: &str) {
        let servers: Vec<String> = self
            .fed
            .zookeeper_ports()
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push_str(&format!(
            "[locks]\nbackend = \"zookeeper\"\nservers = [{}]\nroot = \"/t_{}\"\nsession_timeout = \"{session}\"\n",
            servers.join(", "),
            self.name
        ));
        std::fs::write(&self.config, text).unwrap();
        let store = shardctl::lock::zk::ZkStore::connect(
            &self
                .fed
                .zookeeper_config(&self.name, Duration::from_secs(6)),
        )
        .unwrap();
        for node in store.read_all().unwrap() {
            store.delete_judged(&node).unwrap();
        }
    }

    /// How many audit rows maintenance commands wrote (drains, restores, rolls).
    pub fn maintenance_audits(&self) -> u64 {
        self.ring()
            .query_first("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'maintenance.%'")
            .unwrap()
            .unwrap()
    }

    /// How many audit rows record `action` on `target`.
    pub fn audited(&self, action: &str, target: &str) -> u64 {
        self.ring()
            .exec_first(
                "SELECT COUNT(*) FROM audit_log WHERE action = ? AND target = ?",
                (action, target),
            )
            .unwrap()
            .unwrap_or(0)
    }

    pub fn ring(&self) -> mysql::Conn {
        let mut c = conn(self.fed.ring_port());
        c.query_drop(format!("USE {}", self.ring_db())).unwrap();
        c
    }

    /// A snapshot of everything a command could change: the ring's tables (directory, locks,
    /// journal, audit log) and every shard server's per-user tables, to prove it changed nothing.
    pub fn snapshot(&self) -> Vec<(String, Option<i64>)> {
        let mut out = Vec::new();
        let mut ring = self.ring();
        for t in [
            "shards",
            "shard_servers",
            "users",
            "locks",
            "migrations",
            "audit_log",
        ] {
            let row: (String, Option<i64>) = ring
                .query_first(format!("CHECKSUM TABLE {t}"))
                .unwrap()
                .unwrap();
            out.push(row);
        }
        for (_, ports) in self.fed.shards() {
            for port in ports {
                // A server a test has frozen (SIGSTOP) is recorded as such, not waited for: it
                // is the same before and after, or the snapshots differ and say so.
                let Some(mut c) = conn_within(port, Duration::from_secs(2)) else {
                    out.push((format!("{port}: does not answer"), None));
                    continue;
                };
                for t in demo::tables() {
                    let row: Option<(String, Option<i64>)> = c
                        .query_first(format!("CHECKSUM TABLE {}.{}", self.shard_db(), t.name))
                        .unwrap();
                    let (name, sum) = row.unwrap();
                    out.push((format!("{port}/{name}"), sum));
                }
            }
        }
        out
    }
}

/// The port of a `HOST:PORT` a document names.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("`{addr}` is not HOST:PORT"))
}

/// The entry for the server on `port` in a document's `servers` list.
pub fn server(doc: &Value, port: u16) -> &Value {
    doc["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["port"] == port)
        .unwrap_or_else(|| panic!("no server {port} in {doc}"))
}

/// Waits until the server on `replica_port` has applied everything `source` wrote.
pub fn wait_replicated(source: &mut mysql::Conn, replica_port: u16) {
    let pos: String = source
        .query_first("SELECT @@gtid_binlog_pos")
        .unwrap()
        .unwrap();
    let mut r = conn(replica_port);
    // Without the replica's own domain: its peer logs what it replicates, the replica's own
    // writes included, which the replica never applies.
    let own: u32 = r.query_first("SELECT @@gtid_domain_id").unwrap().unwrap();
    let pos = shardctl::shard::replica::without_domain(&pos, own);
    let waited: Option<i64> = r
        .exec_first("SELECT MASTER_GTID_WAIT(?, 30)", (pos,))
        .unwrap();
    assert_eq!(
        waited,
        Some(0),
        "replica on {replica_port} did not catch up"
    );
}

/// Per table: (rows, digest) of one user's rows on one server.
pub type Fingerprint = Vec<(String, u64, u64)>;

/// One user's rows as the server prints them: every column, NULL kept apart from every string.
pub type Rows = Vec<Vec<Option<Vec<u8>>>>;

/// `user`'s rows of `table` on `port`, fetched in the text protocol in UTC and sorted, so two
/// servers holding the same rows give equal lists whatever their order or time zone.
pub fn user_rows(port: u16, database: &str, table: &str, owner_column: &str, user: u64) -> Rows {
    let mut c = conn(port);
    c.query_drop("SET time_zone = '+00:00'").unwrap();
    let rows: Vec<mysql::Row> = c
        .query(format!(
            "SELECT * FROM {database}.{table} WHERE {owner_column} = {user}"
        ))
        .unwrap();
    let mut out: Rows = rows
        .into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql::Value::NULL => None,
                    mysql::Value::Bytes(b) => Some(b),
                    other => panic!("the text protocol returned {other:?}"),
                })
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// A digest of rows, computed here from what was fetched (not by the server's SQL).
pub fn digest(rows: &Rows) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rows.hash(&mut h);
    h.finish()
}

/// The user's rows of every demo table on `port`.
pub fn fingerprint(port: u16, database: &str, user: u64) -> Fingerprint {
    demo::tables()
        .iter()
        .map(|t| {
            let rows = user_rows(
                port,
                database,
                t.name.as_str(),
                t.owner_column.as_str(),
                user,
            );
            (t.name.to_string(), rows.len() as u64, digest(&rows))
        })
        .collect()
}

impl Env {
    /// Places `user` and writes an account of `photos` photos for it on its shard (half a,
    /// replicated to b). Returns the shard's name.
    pub fn seed_user(&self, user: u64, photos: u64) -> String {
        let placed = self.json(&["user", "assign", &user.to_string()]);
        let shard = placed["assigned"][0]["shard"]
            .as_str()
            .expect("newly placed")
            .to_string();
        let ports = self.shard_ports(&shard);
        let account = demo::Account {
            owner: user,
            size: demo::AccountSize {
                photos,
                comments: photos * 3 / 10,
                favorites: (photos / 5).min(500),
            },
            first_photo_id: user * 10_000_000 + 1,
            first_comment_id: user * 10_000_000 + 1,
        };
        demo::write_accounts(
            &mut root_db(ports[0]),
            &self.shard_db().parse().unwrap(),
            &[account],
        )
        .unwrap();
        wait_replicated(&mut conn(ports[0]), ports[1]);
        shard
    }

    /// Seeds `user` with an account of `photos` photos, for a move: (its shard, the other
    /// shard, its rows as they are now).
    pub fn seed_move(&self, user: u64, photos: u64) -> (String, String, Fingerprint) {
        let home = self.seed_user(user, photos);
        let away = self.other_shard(&home);
        let rows = fingerprint(self.shard_ports(&home)[0], &self.shard_db(), user);
        assert!(rows.iter().any(|(_, n, _)| *n > 0));
        (home, away, rows)
    }

    /// Writes rows of `user` straight onto `port`'s shard database (ids apart from the seeded
    /// ones), as an application writing to the wrong shard, or a flip with nothing copied,
    /// leaves.
    pub fn write_strays(&self, port: u16, user: u64, photos: u64) {
        let account = demo::Account {
            owner: user,
            size: demo::AccountSize {
                photos,
                comments: 2,
                favorites: 1,
            },
            first_photo_id: user * 10_000_000 + 5_000_000,
            first_comment_id: user * 10_000_000 + 5_000_000,
        };
        demo::write_accounts(
            &mut root_db(port),
            &self.shard_db().parse().unwrap(),
            &[account],
        )
        .unwrap();
    }

    pub fn shard_ports(&self, shard: &str) -> Vec<u16> {
        self.fed
            .shards()
            .into_iter()
            .find(|(n, _)| n == shard)
            .map(|(_, p)| p)
            .expect("a sandbox shard")
    }

    /// Where the directory says `user` lives, and its state.
    pub fn directory(&self, user: u64) -> (String, String) {
        self.ring()
            .exec_first(
                "SELECT s.name, u.state FROM users u JOIN shards s USING (shard_id) WHERE u.user_id = ?",
                (user,),
            )
            .unwrap()
            .unwrap()
    }

    /// Asserts the user's rows are exactly `expected` on both servers of the shard the
    /// directory names, and absent from every other shard; and that no lock is left.
    pub fn assert_whole(&self, user: u64, expected: &Fingerprint) {
        let (home, state) = self.directory(user);
        assert_eq!(state, "active", "user {user} left `{state}`");
        for (shard, ports) in self.fed.shards() {
            wait_replicated(&mut conn(ports[0]), ports[1]);
            wait_replicated(&mut conn(ports[1]), ports[0]);
            for port in ports {
                let got = fingerprint(port, &self.shard_db(), user);
                if shard == home {
                    assert_eq!(&got, expected, "user {user} on {shard} ({port})");
                } else {
                    assert!(
                        got.iter().all(|(_, n, _)| *n == 0),
                        "user {user} left rows on {shard} ({port}): {got:?}"
                    );
                }
            }
        }
        let leases: Option<u64> = self
            .ring()
            .query_first("SELECT COUNT(*) FROM locks")
            .unwrap();
        assert_eq!(leases, Some(0), "a lock was left behind");
    }
}

/// Every verb of the command tree, as words (`shard add`, `lock run`, and `migrate`, a group
/// that also runs itself), for the tests that must cover each.
pub fn verbs() -> std::collections::BTreeSet<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        let subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help" && !c.is_hide_set())
            .collect();
        let runs_itself = cmd.get_arguments().any(|a| a.is_positional());
        if subs.is_empty() || runs_itself {
            out.insert(prefix.trim().to_string());
        }
        for s in subs {
            walk(s, &format!("{prefix} {}", s.get_name()), out);
        }
    }
    let mut cli = shardctl::cli::command();
    cli.build();
    let mut out = std::collections::BTreeSet::new();
    walk(&cli, "", &mut out);
    out
}

/// The clock-skew cases of one backend, as a hostile cron host and operator would cause them:
/// a sweep from a host 2 h ahead or behind releases no live lease (and still the expired one),
/// an acquirer an hour ahead never takes over a live holder, and a host whose clock is off
/// holds nothing (exit 4, saying so, leaving nothing behind).
pub fn skewed_hosts_never_make_two_holders(env: &Env) {
    let config = env.config.as_path();
    env.json(&["lock", "acquire", "live", "--ttl", "1h"]);
    env.json(&["lock", "acquire", "short", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1300));
    for skew in ["+2h", "-2h"] {
        let dry = run_skewed(config, skew, &["lock", "sweep", "--dry-run"]);
        assert_eq!(dry.code, 0, "{}", dry.stderr);
        assert_eq!(dry.json()["locks"], serde_json::json!(["short"]), "{skew}");
    }
    let swept = run_skewed(config, "+2h", &["lock", "sweep"]);
    assert_eq!(swept.code, 0, "{}", swept.stderr);
    assert_eq!(swept.json()["locks"], serde_json::json!(["short"]));
    let shown = env.json(&["lock", "show", "live"]);
    assert_eq!(shown["held"], true, "the live lease survived: {shown}");
    assert!(shown["lease"]["remaining_seconds"].as_f64().unwrap() > 3500.0);
    for skew in ["+1h", "-1h"] {
        let taken = run_skewed(config, skew, &["lock", "acquire", "live", "--ttl", "10s"]);
        assert_eq!(
            taken.code, 3,
            "an acquirer {skew} meets the live holder: {}",
            taken.stdout
        );
        let fresh = run_skewed(config, skew, &["lock", "acquire", "fresh", "--ttl", "1h"]);
        assert_eq!(
            fresh.code, 4,
            "a host {skew} off holds nothing: {}",
            fresh.stdout
        );
        let msg = fresh.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("clock") && msg.contains("NTP"), "{msg}");
        let run = run_skewed(
            config,
            skew,
            &["lock", "run", "fresh", "--ttl", "1h", "--", "true"],
        );
        assert_eq!(run.code, 4, "lock run {skew}: {}", run.stdout);
    }
    assert_eq!(
        env.json(&["lock", "show", "fresh"])["held"],
        false,
        "a refused grant leaves no lease"
    );
    assert_eq!(
        env.json(&["lock", "show", "live"])["lease"]["token"],
        shown["lease"]["token"],
        "the first holder still holds it"
    );
    env.json(&["lock", "release", "live"]);
}

/// `maintenance roll` of half a with `exec`, JSON out.
pub fn half_a_roll(exec: &str) -> [&str; 8] {
    [
        "maintenance",
        "roll",
        "--exec",
        exec,
        "--halves",
        "a",
        "--format",
        "json",
    ]
}

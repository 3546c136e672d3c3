//! A local federation of real MariaDB servers: one global ring server (with two ticket schemas)
//! and N shards of two servers each in master-master replication. It is how people try shardctl
//! and what the test suite and the benchmarks run against.

pub mod cache;
pub mod demo;
pub mod server;
pub mod zookeeper;

use cache::CacheProcess;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zookeeper::ZkNode;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Login};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::output::Ui;
use crate::parallel;
use crate::ring::directory::{self, Half};
use crate::ring::{self, assign, Changes, Ring};
use crate::shard::replica;
use crate::types::{HostPort, Ident, ShardName, Weight};
use server::{Binaries, ServerProcess};

pub const RING_DATABASE: &str = "shardctl";
pub const SECOND_TICKET_DATABASE: &str = "shardctl_tickets_b";
const STATE_FILE: &str = "sandbox.json";
const CONFIG_FILE: &str = "shardctl.toml";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What a sandbox is: recorded on first `up` so later commands need only the directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Spec {
    pub shards: u32,
    pub base_port: u16,
    #[serde(default = "default_buffer_pool_mb")]
    pub buffer_pool_mb: u32,
    /// Shards whose servers run (schema included) but are not registered in the ring: new
    /// hardware for `shard add`.
    #[serde(default)]
    pub spare_shards: u32,
    /// A memcached runs beside the servers, and the config has its `[cache]`.
    #[serde(default)]
    pub cache: bool,
    /// `[shards] write_guard = true`, and the guard installed on every server.
    #[serde(default)]
    pub write_guard: bool,
    /// A ZooKeeper ensemble of this many nodes keeps the locks (`[locks] backend =
    /// "zookeeper"`); 0: the locks are in the ring.
    #[serde(default)]
    pub zookeeper_nodes: u32,
}

/// The sandbox's ZooKeeper ensemble, if it has one: client ports after the memcached's port,
/// then the quorum and election ports.
pub fn zookeeper_nodes(dir: &Path, spec: &Spec) -> Vec<ZkNode> {
    let first = spec.base_port + 2 + 2 * (spec.shards + spec.spare_shards) as u16;
    zookeeper::ensemble(dir, spec.zookeeper_nodes, first)
}

/// The sandbox's memcached, if it has one: on the port after the last shard server's.
pub fn cache_process(dir: &Path, spec: &Spec) -> Option<CacheProcess> {
    spec.cache.then(|| CacheProcess {
        dir: dir.join("memcached"),
        port: spec.base_port + 1 + 2 * (spec.shards + spec.spare_shards) as u16,
    })
}

/// Small, so a sandbox of many servers fits a laptop.
pub const DEFAULT_BUFFER_POOL_MB: u32 = 64;

fn default_buffer_pool_mb() -> u32 {
    DEFAULT_BUFFER_POOL_MB
}

#[derive(Clone, Debug)]
pub struct Member {
    pub role: &'static str,
    pub shard: Option<String>,
    pub half: Option<Half>,
    pub process: ServerProcess,
}

pub fn shard_name(i: u32) -> String {
    format!("shard{i}")
}

/// The servers of a sandbox: the ring server on the base port, then each shard's pair.
pub fn layout(dir: &Path, spec: &Spec) -> Vec<Member> {
    let files_dir = dir.join("files");
    let mut members = vec![Member {
        role: "global",
        shard: None,
        half: None,
        process: ServerProcess {
            dir: dir.join("global"),
            port: spec.base_port,
            server_id: 1,
            pair: None,
            files_dir: files_dir.clone(),
            buffer_pool_mb: spec.buffer_pool_mb,
        },
    }];
    for i in 1..=spec.shards + spec.spare_shards {
        for (k, half) in [Half::A, Half::B].into_iter().enumerate() {
            members.push(Member {
                role: "shard",
                shard: Some(shard_name(i)),
                half: Some(half),
                process: ServerProcess {
                    dir: dir.join(format!("{}{}", shard_name(i), half)),
                    port: spec.base_port + 1 + 2 * (i - 1) as u16 + k as u16,
                    server_id: 10 * i + 1 + k as u32,
                    pair: Some((2, 1 + k as u32)),
                    files_dir: files_dir.clone(),
                    buffer_pool_mb: spec.buffer_pool_mb,
                },
            });
        }
    }
    members
}

/// shardctl's own login on every sandbox server, with the grants `doctor` asks for and no
/// password; distinct from `root`, which the sandbox's applications (and tests) use: the
/// guards' triggers let only shardctl's login through.
pub const SHARDCTL_USER: &str = "shardctl";

/// Creates shardctl's login on one server (idempotent; not replicated, each server gets it
/// from here).
fn create_shardctl_login(db: &mut Db, role: &str) -> Result<()> {
    use crate::doctor::rules::{grant_statements, ring_needs, shard_needs, Flavor};
    let (needs, databases) = if role == "shard" {
        (shard_needs(Flavor::MariaDb), vec![demo::DATABASE])
    } else {
        (
            ring_needs(Flavor::MariaDb),
            vec![RING_DATABASE, SECOND_TICKET_DATABASE],
        )
    };
    db.query_drop("creating shardctl's login", "SET SESSION sql_log_bin = 0")?;
    for host in ["127.0.0.1", "localhost"] {
        db.query_drop(
            "creating shardctl's login",
            &format!("CREATE USER IF NOT EXISTS '{SHARDCTL_USER}'@'{host}'"),
        )?;
        for database in &databases {
            for grant in grant_statements(&needs, database, &format!("{SHARDCTL_USER}@{host}")) {
                db.query_drop("granting shardctl's login", &grant)?;
            }
        }
    }
    db.query_drop("creating shardctl's login", "SET SESSION sql_log_bin = 1")
}

fn root_login() -> Login {
    Login {
        user: "root".into(),
        password: None,
    }
}

/// The sandbox always runs with the home guard.
const HOME_GUARD_TEXT: &str =
    "# Each server takes only the writes of the users the ring routes to it, and drains,\n\
     # restores and rolls hand users' writes over with never two servers taking them.\n\
     home_guard = true\n";

fn config_text(
    members: &[Member],
    cache: Option<&CacheProcess>,
    write_guard: bool,
    zookeeper: &[ZkNode],
) -> String {
    let ring = members[0].process.addr();
    let tables: String = demo::tables()
        .iter()
        .map(|t| {
            format!(
                "\n[[shards.tables]]\nname = \"{}\"\nowner_column = \"{}\"\n",
                t.name, t.owner_column
            )
        })
        .collect();
    format!(
        "# Written by `shardctl sandbox up`.\n\
         [ring]\nservers = [\"{ring}\"]\ndatabase = \"{RING_DATABASE}\"\n\n[ring.auth]\nuser = \"{SHARDCTL_USER}\"\nno_password = true\n\n\
         # Both ticket schemas live on the one ring server, so the increment and offset are set\n\
         # per session; production ticket servers set them server-wide.\n\
         [[tickets]]\nserver = \"{ring}\"\ndatabase = \"{RING_DATABASE}\"\nauto_increment_increment = 2\nauto_increment_offset = 1\n\n\
         [[tickets]]\nserver = \"{ring}\"\ndatabase = \"{SECOND_TICKET_DATABASE}\"\nauto_increment_increment = 2\nauto_increment_offset = 2\n\n\
         [shards]\ndatabase = \"{}\"\n{}{}\n[shards.auth]\n\
         # shardctl's own login: the guards let only it through (applications log in as root).\n\
         user = \"{SHARDCTL_USER}\"\nno_password = true\n{tables}{}",
        demo::DATABASE,
        HOME_GUARD_TEXT,
        if write_guard {
            "# Moves guard their users with triggers (`shardctl guard install`).\nwrite_guard = true\n"
        } else {
            ""
        },
        cache
            .map(|c| format!("\n# The application's routing cache: shardctl deletes its entries at every change.\n[cache]\nservers = [\"{}\"]\n", c.addr()))
            .unwrap_or_default()
    ) + &locks_text(zookeeper)
}

/// The `[locks]` section of a sandbox whose locks live in its ZooKeeper ensemble.
fn locks_text(zookeeper: &[ZkNode]) -> String {
    if zookeeper.is_empty() {
        return String::new();
    }
    let servers: Vec<String> = zookeeper
        .iter()
        .map(|n| format!("\"{}\"", n.addr()))
        .collect();
    format!(
        "\n# Locks are nodes under /shardctl/locks in the sandbox's ZooKeeper ensemble.\n[locks]\nbackend = \"zookeeper\"\nservers = [{}]\n",
        servers.join(", ")
    )
}

fn read_spec(dir: &Path) -> Result<Option<Spec>> {
    match std::fs::read_to_string(dir.join(STATE_FILE)) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Failed(format!("{}: {e}", dir.join(STATE_FILE).display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading the sandbox state", e)),
    }
}

/// Where the prepared data directory is kept between sandboxes.
fn template_cache(dir: &Path) -> PathBuf {
    std::env::var_os("SHARDCTL_SANDBOX_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("shardctl")))
        .unwrap_or_else(|| dir.join(".cache"))
}

pub struct UpOptions {
    pub dir: PathBuf,
    pub spec: Spec,
    pub users: u64,
}

#[derive(Debug, Serialize)]
pub struct UpOutcome {
    pub config: PathBuf,
    pub created: bool,
    pub started: Vec<String>,
    pub users: u64,
    pub rows: u64,
    pub notes: Vec<String>,
}

/// Brings the sandbox up: creates it the first time, afterwards restarts whatever is down.
/// `observe` gives the observer of the new ring's directory writes (the routing cache's
/// invalidator, for the sandbox's own config).
pub fn up(opts: &UpOptions, observe: &dyn Fn(&Config) -> Changes, ui: &Ui) -> Result<UpOutcome> {
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| Error::io("creating the sandbox directory", e))?;
    let dir = opts
        .dir
        .canonicalize()
        .map_err(|e| Error::io("resolving the sandbox directory", e))?;
    let recorded = read_spec(&dir)?;
    let mut notes = Vec::new();
    let spec = spec_to_keep(recorded.as_ref(), &opts.spec, &mut notes);
    check_ports_fit(&spec)?;
    let bins = Binaries::locate()?;
    let members = layout(&dir, &spec);
    let spinner = ui.spinner("preparing data directories");
    let template = server::template(&bins, &template_cache(&dir))?;
    let ensemble = zookeeper_nodes(&dir, &spec);
    let down = Down::find(&members, cache_process(&dir, &spec), &ensemble)?;
    let mut started = Started::default();
    let result = started
        .start(&down, &bins, &template, &spinner)
        .and_then(|()| {
            bring_up(
                opts,
                observe,
                &dir,
                &spec,
                recorded.is_none(),
                &members,
                &spinner,
            )
        });
    match result {
        Ok((config, users, rows)) => Ok(UpOutcome {
            config,
            created: recorded.is_none(),
            started: started.addrs,
            users,
            rows,
            notes,
        }),
        Err(e) => {
            // Leave nothing running that this call started: a failed `up` is undone.
            spinner.finish_and_clear();
            started.undo(down.cache.as_ref());
            Err(e)
        }
    }
}

/// The spec the sandbox runs with: the one it was created with, if it was (its data
/// directories and ports were laid out by that one), else the one asked for. Keeping a
/// recorded spec that differs from the one asked for is noted.
fn spec_to_keep(recorded: Option<&Spec>, asked: &Spec, notes: &mut Vec<String>) -> Spec {
    match recorded {
        Some(s) if s != asked => {
            notes.push(format!(
                "this sandbox was created with {} shards (and {} spare) on base port {} and {} MB buffer pools, locks in {}; keeping that",
                s.shards,
                s.spare_shards,
                s.base_port,
                s.buffer_pool_mb,
                match s.zookeeper_nodes {
                    0 => "the ring".to_string(),
                    n => format!("a {n}-node ZooKeeper ensemble"),
                }
            ));
            s.clone()
        }
        Some(s) => s.clone(),
        None => asked.clone(),
    }
}

/// Refuses a spec whose servers' ports would run past the last port, or that has no shard,
/// before anything is started.
fn check_ports_fit(spec: &Spec) -> Result<()> {
    if spec.base_port as u32 + 2 * (spec.shards + spec.spare_shards) + 2 + 3 * spec.zookeeper_nodes
        > u16::MAX as u32
        || spec.shards == 0
    {
        return Err(Error::Usage(
            "--shards and --base-port leave no room for the servers' ports".into(),
        ));
    }
    Ok(())
}

/// What of the sandbox is not running: what this `up` starts.
struct Down<'a> {
    members: Vec<&'a Member>,
    cache: Option<CacheProcess>,
    /// The whole ensemble: each node starting is told of all of them.
    ensemble: &'a [ZkNode],
    zookeeper: Vec<&'a ZkNode>,
}

impl<'a> Down<'a> {
    /// Finds what is down. Every port a server must be started on is checked before any is
    /// started.
    fn find(
        members: &'a [Member],
        cache: Option<CacheProcess>,
        ensemble: &'a [ZkNode],
    ) -> Result<Down<'a>> {
        let to_start: Vec<&Member> = members
            .iter()
            .filter(|m| m.process.running_pid().is_none())
            .collect();
        for m in &to_start {
            m.process.check_port_free()?;
        }
        Ok(Down {
            members: to_start,
            cache: cache.filter(|c| c.running_pid().is_none()),
            ensemble,
            zookeeper: ensemble
                .iter()
                .filter(|n| n.running_pid().is_none())
                .collect(),
        })
    }
}

/// What this `up` has started so far: a failed `up` stops it again.
#[derive(Default)]
struct Started<'a> {
    /// Every address started, for the outcome.
    addrs: Vec<String>,
    members: Vec<&'a Member>,
    zookeeper: Vec<&'a ZkNode>,
}

impl<'a> Started<'a> {
    /// Starts what is down, noting each as it starts (a failure leaves the rest unstarted).
    fn start(
        &mut self,
        down: &Down<'a>,
        bins: &Binaries,
        template: &Path,
        spinner: &indicatif::ProgressBar,
    ) -> Result<()> {
        for &m in &down.members {
            m.process.prepare(template)?;
            m.process.spawn(bins)?;
            self.members.push(m);
            self.addrs.push(m.process.addr().to_string());
        }
        if let Some(c) = &down.cache {
            c.start()?;
            self.addrs.push(c.addr().to_string());
        }
        for &n in &down.zookeeper {
            n.start(down.ensemble)?;
            self.zookeeper.push(n);
            self.addrs.push(n.addr().to_string());
        }
        if !down.zookeeper.is_empty() {
            spinner.set_message("waiting for ZooKeeper");
            zookeeper::wait_serving(down.ensemble, START_TIMEOUT)?;
        }
        Ok(())
    }

    /// Stops the servers and nodes this `up` started, and `cache`, the memcached it was to
    /// start, whether or not it got that far.
    fn undo(self, cache: Option<&CacheProcess>) {
        for m in self.members {
            m.process.stop(Duration::from_secs(10));
        }
        if let Some(c) = cache {
            c.stop();
        }
        for n in self.zookeeper {
            n.stop();
        }
    }
}

/// With every server spawned: waits for them, and the first time sets up replication, the
/// ring and the demo data; then waits for replication. (config, users placed, rows written)
fn bring_up(
    opts: &UpOptions,
    observe: &dyn Fn(&Config) -> Changes,
    dir: &Path,
    spec: &Spec,
    fresh: bool,
    members: &[Member],
    spinner: &indicatif::ProgressBar,
) -> Result<(PathBuf, u64, u64)> {
    spinner.set_message("waiting for the servers");
    let login = root_login();
    let mut conns = parallel::each(members, |m| m.process.wait_ready(&login, START_TIMEOUT))
        .into_iter()
        .collect::<Result<Vec<Db>>>()?;
    for (m, db) in members.iter().zip(conns.iter_mut()) {
        create_shardctl_login(db, m.role)?;
    }
    let config_path = dir.join(CONFIG_FILE);
    let (mut users, mut rows) = (0, 0);
    // Every time: a sandbox made by an older shardctl replicates as this one does.
    spinner.set_message("setting up replication");
    for pair in members[1..].chunks(2).zip(conns[1..].chunks_mut(2)) {
        let (ms, dbs) = pair;
        link_pair(dbs, &[ms[0].process.port, ms[1].process.port])?;
    }
    if fresh {
        std::fs::write(
            &config_path,
            config_text(
                members,
                cache_process(dir, spec).as_ref(),
                spec.write_guard,
                &zookeeper_nodes(dir, spec),
            ),
        )
        .map_err(|e| Error::io("writing the sandbox config", e))?;
        let cfg = Config::load(&config_path)?;
        spinner.set_message("creating the ring and the shards");
        ring::initialize(&cfg, false)?;
        let mut ring_db = Ring::open(&cfg, &observe(&cfg))?;
        let database: Ident = demo::DATABASE.parse().map_err(Error::Failed)?;
        for (i, pair) in members[1..].chunks(2).enumerate() {
            let name: ShardName = shard_name(i as u32 + 1).parse().map_err(Error::Failed)?;
            let servers: Vec<HostPort> = pair.iter().map(|m| m.process.addr()).collect();
            if (i as u32) < spec.shards {
                directory::add_shard(
                    &mut ring_db,
                    &name,
                    Weight::try_from(1.0).map_err(Error::Failed)?,
                    &servers,
                )?;
            }
            demo::create_schema(&mut conns[1 + 2 * i], &database)?;
        }
        if opts.users > 0 {
            spinner.set_message(format!(
                "placing {} users and writing their rows",
                opts.users
            ));
            let ids: Vec<u64> = (1..=opts.users).collect();
            let placed = assign::assign(
                &mut ring_db,
                &ids,
                Some(1),
                &indicatif::ProgressBar::hidden(),
            )?;
            users = placed.assigned.len() as u64;
            rows = write_demo_accounts(&cfg, members, &placed.assigned)?;
        }
        std::fs::write(
            dir.join(STATE_FILE),
            serde_json::to_string_pretty(spec).expect("plain data serialises"),
        )
        .map_err(|e| Error::io("writing the sandbox state", e))?;
    }
    if !fresh {
        // A sandbox made by an older shardctl gets this one's ring schema (init is idempotent).
        ring::initialize(&Config::load(&config_path)?, false)?;
    }
    {
        // The home guard is always on in a sandbox; the move guard when asked for.
        spinner.set_message("installing the guard triggers");
        let cfg = Config::load(&config_path)?;
        let servers = crate::shard::guard::everywhere(
            &cfg,
            crate::shard::guard::Action::Install,
            Duration::from_secs(30),
        )?;
        if let Some(e) = servers.iter().find_map(|s| s.error.clone()) {
            return Err(Error::Failed(format!("installing the write guard: {e}")));
        }
    }
    spinner.set_message("waiting for replication");
    for (m, db) in members.iter().zip(conns.iter_mut()) {
        if m.role == "shard" {
            ensure_replicating(db)?;
        }
    }
    for pair in conns[1..].chunks_mut(2) {
        wait_caught_up(pair)?;
    }
    spinner.finish_and_clear();
    Ok((config_path, users, rows))
}

/// Points each server of a pair at the other and starts replication. Each logs what it applies
/// (log-slave-updates), so each finds its own writes in the other's log: it ignores its own
/// GTID domain there and starts from what it applied (`slave_pos`), or a reconnect asking the
/// other for its own newest write, not yet applied there, would be refused (error 1236).
fn link_pair(dbs: &mut [Db], ports: &[u16]) -> Result<()> {
    for (i, db) in dbs.iter_mut().enumerate() {
        let peer = ports[1 - i];
        let own: Option<u32> =
            db.exec_first("reading the GTID domain", "SELECT @@gtid_domain_id", ())?;
        db.query_drop("stopping replication", "STOP SLAVE")?;
        db.query_drop(
            "configuring replication",
            &format!(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={peer}, MASTER_USER='root', \
                 MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
                 IGNORE_DOMAIN_IDS=({})",
                own.unwrap_or(0)
            ),
        )?;
        db.query_drop("starting replication", "START SLAVE")?;
    }
    Ok(())
}

/// Starts stopped replication threads and waits until both run.
fn ensure_replicating(db: &mut Db) -> Result<()> {
    let start = std::time::Instant::now();
    let mut kicked = false;
    loop {
        match replica::status(db)? {
            Some(s) if s.io_running && s.sql_running => return Ok(()),
            Some(_) if !kicked => {
                db.query_drop("starting replication", "START SLAVE")?;
                kicked = true;
            }
            None => {
                return Err(Error::Failed(format!(
                    "{} has no replication configured",
                    db.server
                )))
            }
            Some(s) if start.elapsed() > START_TIMEOUT => {
                return Err(Error::Failed(format!(
                    "{}: {}",
                    db.server,
                    s.problem(None).unwrap_or_default()
                )))
            }
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Waits until each server of a pair has applied everything the other wrote.
fn wait_caught_up(pair: &mut [Db]) -> Result<()> {
    for i in 0..pair.len() {
        let pos: String = pair[i]
            .exec_first(
                "reading the binlog position",
                "SELECT @@gtid_binlog_pos",
                (),
            )?
            .unwrap_or_default();
        let other = &mut pair[1 - i];
        if !replica::wait_for(other, &pos, START_TIMEOUT)? {
            return Err(Error::Failed(format!(
                "{} did not catch up with its peer",
                other.server
            )));
        }
    }
    Ok(())
}

/// Writes each placed user's demo account on its shard's half-a server, shards in parallel.
fn write_demo_accounts(cfg: &Config, members: &[Member], placed: &[(u64, u32)]) -> Result<u64> {
    let mut ring_db = ring::open(cfg)?;
    let shards = directory::shards(&mut ring_db)?;
    let mut sorted = placed.to_vec();
    sorted.sort_unstable();
    let owners: Vec<u64> = sorted.iter().map(|(u, _)| *u).collect();
    let accounts = demo::plan_accounts(&owners, 1);
    let database = cfg.shards.database.clone();
    std::thread::scope(|s| {
        let handles: Vec<_> = shards
            .iter()
            .map(|shard| {
                let mine: Vec<demo::Account> = accounts
                    .iter()
                    .zip(&sorted)
                    .filter(|(_, (_, sid))| *sid == shard.id)
                    .map(|(a, _)| *a)
                    .collect();
                let addr = members
                    .iter()
                    .find(|m| {
                        m.shard.as_deref() == Some(shard.name.as_str()) && m.half == Some(Half::A)
                    })
                    .map(|m| m.process.addr());
                let database = &database;
                s.spawn(move || -> Result<u64> {
                    let addr =
                        addr.ok_or_else(|| Error::Failed(format!("no server for {}", shard.name)))?;
                    let mut db = Db::connect(&addr, &root_login(), None, &cfg.net)?;
                    demo::write_accounts(&mut db, database, &mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Failed("a writer thread panicked".into())))
            })
            .sum::<Result<u64>>()
    })
}

#[derive(Debug, Serialize)]
pub struct ServerState {
    pub role: &'static str,
    pub shard: Option<String>,
    pub half: Option<Half>,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub running: bool,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub config: PathBuf,
    pub global_database: String,
    pub shard_database: String,
    pub servers: Vec<ServerState>,
}

fn existing(dir: &Path) -> Result<(PathBuf, Spec)> {
    let dir = dir.canonicalize().map_err(|_| {
        Error::NotFound(format!(
            "no sandbox in {}: run `shardctl sandbox up`",
            dir.display()
        ))
    })?;
    let spec = read_spec(&dir)?.ok_or_else(|| {
        Error::NotFound(format!(
            "no sandbox in {}: run `shardctl sandbox up`",
            dir.display()
        ))
    })?;
    Ok((dir, spec))
}

pub fn status(dir: &Path) -> Result<Status> {
    let (dir, spec) = existing(dir)?;
    let mut servers: Vec<ServerState> = layout(&dir, &spec)
        .into_iter()
        .map(|m| ServerState {
            role: m.role,
            shard: m.shard,
            half: m.half,
            host: "127.0.0.1".into(),
            port: m.process.port,
            user: "root".into(),
            running: m.process.running_pid().is_some(),
        })
        .collect();
    servers.extend(cache_process(&dir, &spec).map(|c| ServerState {
        role: "memcached",
        shard: None,
        half: None,
        host: "127.0.0.1".into(),
        port: c.port,
        user: String::new(),
        running: c.running_pid().is_some(),
    }));
    servers.extend(
        zookeeper_nodes(&dir, &spec)
            .into_iter()
            .map(|n| ServerState {
                role: "zookeeper",
                shard: None,
                half: None,
                host: "127.0.0.1".into(),
                port: n.client_port,
                user: String::new(),
                running: n.running_pid().is_some(),
            }),
    );
    Ok(Status {
        config: dir.join(CONFIG_FILE),
        global_database: RING_DATABASE.into(),
        shard_database: demo::DATABASE.into(),
        servers,
    })
}

/// Stops every server of the sandbox that runs (by pid); idempotent. Returns those stopped.
pub fn down(dir: &Path) -> Result<Vec<String>> {
    let Ok((dir, spec)) = existing(dir) else {
        return Ok(Vec::new());
    };
    let members = layout(&dir, &spec);
    let mut stopped: Vec<String> = parallel::each(&members, |m| {
        m.process
            .stop(Duration::from_secs(60))
            .then(|| m.process.addr().to_string())
    })
    .into_iter()
    .flatten()
    .collect();
    stopped.extend(
        parallel::each(&zookeeper_nodes(&dir, &spec), |n| {
            n.stop().then(|| n.addr().to_string())
        })
        .into_iter()
        .flatten(),
    );
    if let Some(c) = cache_process(&dir, &spec) {
        if c.stop() {
            stopped.push(c.addr().to_string());
        }
    }
    Ok(stopped)
}

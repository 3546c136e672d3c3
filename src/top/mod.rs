//! `shardctl top`: the federation live in one screen. Read-only: it changes nothing.
//!
//! A refresh reads the ring (a handful of queries) and takes the servers' latest probes from
//! probers that run on threads of their own, one per server, each with its own connection and
//! every statement bounded. So a server that does not answer shows as such, and never slows
//! the refresh; each server is asked two statements per interval.

pub mod app;
pub mod render;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::db::Db;
use crate::error::Result;
use crate::lock::Lease;
use crate::rebalance::balance::{self, Load};
use crate::ring::directory::{self, Half, ServerStatus, ShardState};
use crate::ring::{self, audit};
use crate::shard::probe::{self, Probe};
use crate::types::HostPort;

/// One screenful of the federation, as `top --once --format json` prints it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    pub shards: Vec<ShardRow>,
    pub servers: Vec<ServerRow>,
    pub migrations: Vec<MigrationRow>,
    pub locks: Vec<LockRow>,
    pub audit: Vec<AuditRow>,
    /// How long reading the ring took, in milliseconds (the servers' probes run apart).
    pub refresh_ms: f64,
    /// The sources that could not be read this time, and why: `ring` (shards, servers,
    /// migrations, audit) and `locks` (the lock backend). Their panels are empty here; the live
    /// screen keeps what it last read and says how old it is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
    /// When the ring's part and the locks were read (each by a thread of its own).
    #[serde(skip)]
    pub ring_read_at: Option<Instant>,
    #[serde(skip)]
    pub locks_read_at: Option<Instant>,
}

/// The source behind the shards, servers, migrations and audit panels.
pub const RING: &str = "ring";
/// The source behind the locks panel.
pub const LOCKS: &str = "locks";

#[derive(Clone, Debug, Serialize)]
pub struct ShardRow {
    pub name: String,
    pub state: ShardState,
    pub weight: f64,
    pub users: u64,
    /// Of all users, in percent.
    pub share: f64,
    pub target_share: f64,
    /// Migrations in flight into and out of it.
    pub moves_in: u64,
    pub moves_out: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerRow {
    pub shard: String,
    pub host: String,
    pub port: u16,
    pub half: Half,
    pub status: ServerStatus,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub io_running: Option<bool>,
    pub sql_running: Option<bool>,
    pub lag_seconds: Option<u64>,
    /// Application sessions (the shard database's, or holding a transaction).
    pub sessions: Option<u64>,
    /// Queries per second since the previous probe.
    pub qps: Option<f64>,
    /// The users whose writes it takes now (its home guard's rules, short: `%2=0`, `all`,
    /// `none`, `%2=1>all` while handing over), or null without them.
    pub takes_writes_for: Option<String>,
    /// Whether that is what the ring routes to it.
    pub agrees_with_ring: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MigrationRow {
    pub migration_id: u64,
    pub user: u64,
    pub from: String,
    pub to: String,
    /// The journal's step.
    pub state: String,
    pub rows: u64,
    pub age_seconds: f64,
    /// From the `moving` mark to the flip, where the journal knows it.
    pub read_only_seconds: Option<f64>,
    /// False for the last finished one, shown below those in flight.
    pub in_flight: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct LockRow {
    pub name: String,
    pub owner: String,
    pub host: String,
    pub token: u64,
    pub age_seconds: f64,
    pub remaining_seconds: f64,
    /// Past its expiry and not yet swept.
    pub expired: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditRow {
    pub at: String,
    pub operator: String,
    pub action: String,
    pub target: String,
}

/// The latest probe of a server: when it finished, and what it found.
type Latest = (Instant, std::result::Result<Probe, String>, Option<f64>);

/// Probes every shard server on a thread of its own, each `interval`, keeping the latest result.
pub struct Probers {
    latest: Arc<Mutex<HashMap<HostPort, Latest>>>,
    started: Arc<Mutex<Vec<HostPort>>>,
    stop: Arc<AtomicBool>,
    interval: Duration,
}

impl Probers {
    pub fn new(interval: Duration) -> Probers {
        Probers {
            latest: Arc::default(),
            started: Arc::default(),
            stop: Arc::default(),
            interval,
        }
    }

    /// Starts a prober for each of `servers` that has none yet.
    fn watch(&self, cfg: &Config, servers: &[HostPort]) {
        let Ok(mut started) = self.started.lock() else {
            return;
        };
        for addr in servers {
            if started.contains(addr) {
                continue;
            }
            started.push(addr.clone());
            let (cfg, addr) = (cfg.clone(), addr.clone());
            let (latest, stop, interval) = (self.latest.clone(), self.stop.clone(), self.interval);
            std::thread::spawn(move || probe_loop(&cfg, &addr, &latest, &stop, interval));
        }
    }

    /// Waits until every server has been probed once, or `within` has passed.
    fn settle(&self, servers: &[HostPort], within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let done = self
                .latest
                .lock()
                .is_ok_and(|l| servers.iter().all(|s| l.contains_key(s)));
            if done {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Probers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn probe_loop(
    cfg: &Config,
    addr: &HostPort,
    latest: &Mutex<HashMap<HostPort, Latest>>,
    stop: &AtomicBool,
    interval: Duration,
) {
    let mut db: Option<Db> = None;
    let mut last: Option<(Instant, u64)> = None;
    while !stop.load(Ordering::SeqCst) {
        let began = Instant::now();
        // A server that did not answer in time says so first, whichever statement it froze in.
        let probe = probe_once(cfg, addr, &mut db).map_err(|e| match e {
            crate::error::Error::Unreachable(m) => format!("does not answer: {m}"),
            e => e.to_string(),
        });
        if probe.is_err() {
            db = None;
        }
        let qps = match (&probe, last) {
            (Ok(p), Some((t, q))) => {
                let secs = began.duration_since(t).as_secs_f64();
                (secs > 0.0).then(|| p.questions.saturating_sub(q) as f64 / secs)
            }
            _ => None,
        };
        if let Ok(p) = &probe {
            last = Some((began, p.questions));
        }
        if let Ok(mut l) = latest.lock() {
            l.insert(addr.clone(), (Instant::now(), probe, qps));
        }
        let next = began + interval;
        while Instant::now() < next && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(interval));
        }
    }
}

/// Probes `addr` on the prober's session, logging in again when it was lost (a frozen server
/// costs the prober `probe::bound`, nobody else).
fn probe_once(cfg: &Config, addr: &HostPort, db: &mut Option<Db>) -> Result<Probe> {
    if db.as_ref().is_none_or(Db::is_lost) {
        *db = Some(probe::session(cfg, addr, probe::bound(cfg))?);
    }
    probe::probe(cfg, db.as_mut().expect("logged in above"))
}

/// What the ring says, read in one go.
#[derive(Clone, Default)]
struct RingView {
    shards: Vec<directory::Shard>,
    counts: HashMap<u32, u64>,
    migrations: Vec<MigrationRow>,
    audit: Vec<audit::Entry>,
}

fn read_ring(ring: &mut Db) -> Result<RingView> {
    Ok(RingView {
        shards: directory::shards(ring)?,
        counts: directory::user_counts(ring)?,
        migrations: migrations(ring)?,
        audit: audit::read(ring, None, None, 8)?,
    })
}

/// A source's latest read: when it began, how long it took (ms), and what it found.
type LatestRead<T> = Arc<Mutex<Option<(Instant, f64, std::result::Result<T, String>)>>>;

/// Reads `read` every `interval` on a thread of its own until `stop`, keeping the latest result:
/// a source that does not answer holds up its own panels, never the others'.
fn watch_source<T: Send + 'static>(
    interval: Duration,
    stop: Arc<AtomicBool>,
    mut read: impl FnMut() -> std::result::Result<T, String> + Send + 'static,
) -> LatestRead<T> {
    let latest: LatestRead<T> = Arc::default();
    let out = latest.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let began = Instant::now();
            let found = read();
            let ms = began.elapsed().as_secs_f64() * 1000.0;
            if let Ok(mut l) = out.lock() {
                *l = Some((began, ms, found));
            }
            while began.elapsed() < interval && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    latest
}

/// The leases, from whichever backend keeps them, each read with what is kept between reads
/// (a ZooKeeper session, a ring connection), dropped after an error.
fn read_locks(
    cfg: &Config,
    zk: &mut Option<crate::lock::zk::ZkStore>,
    ring: &mut Option<Db>,
) -> Result<Vec<Lease>> {
    let read = match &cfg.locks {
        crate::config::LockBackend::Zookeeper(z) => {
            let store = match zk.take() {
                Some(s) => s,
                None => crate::lock::zk::ZkStore::connect(z)?,
            };
            let read = crate::lock::list_nodes(&store, &Default::default());
            *zk = Some(store);
            read
        }
        crate::config::LockBackend::Mysql => {
            let mut db = match ring.take().filter(|d| !d.is_lost()) {
                Some(d) => d,
                None => open_ring(cfg)?,
            };
            let read = crate::lock::list(cfg, &mut db, &Default::default());
            *ring = Some(db);
            read
        }
    };
    if read.is_err() {
        *zk = None;
        *ring = None;
    }
    read
}

/// The three sources of the screen, each read on threads of its own: the ring, the lock
/// backend, and every shard server (`Probers`).
pub struct Sources {
    probers: Probers,
    ring: LatestRead<RingView>,
    locks: LatestRead<Vec<Lease>>,
    stop: Arc<AtomicBool>,
    /// The last ring view read well: its servers are still probed while the ring is not.
    last_view: Mutex<RingView>,
}

impl Drop for Sources {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Sources {
    pub fn start(cfg: &Config, interval: Duration) -> Sources {
        let stop = Arc::new(AtomicBool::new(false));
        let ring_cfg = cfg.clone();
        let mut db: Option<Db> = None;
        let ring = watch_source(interval, stop.clone(), move || {
            let mut d = match db.take().filter(|d| !d.is_lost()) {
                Some(d) => d,
                None => open_ring(&ring_cfg).map_err(|e| e.to_string())?,
            };
            let read = read_ring(&mut d).map_err(|e| e.to_string());
            db = Some(d);
            read
        });
        let locks_cfg = cfg.clone();
        let (mut zk, mut lock_ring) = (None, None);
        let locks = watch_source(interval, stop.clone(), move || {
            read_locks(&locks_cfg, &mut zk, &mut lock_ring).map_err(|e| e.to_string())
        });
        Sources {
            probers: Probers::new(interval),
            ring,
            locks,
            stop,
            last_view: Mutex::new(RingView::default()),
        }
    }

    /// Waits, up to `within`, for a first read of the ring and the locks, then for a first
    /// probe of every server (`top --once`).
    fn settle(&self, cfg: &Config, within: Duration) {
        let deadline = Instant::now() + within;
        let ring_read = || self.ring.lock().is_ok_and(|l| l.is_some());
        let locks_read = || self.locks.lock().is_ok_and(|l| l.is_some());
        while Instant::now() < deadline && !(ring_read() && locks_read()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let view = self.ring.lock().ok().and_then(|l| match l.as_ref() {
            Some((_, _, Ok(v))) => Some(v.clone()),
            _ => None,
        });
        if let Some(v) = view {
            let addrs: Vec<HostPort> = v
                .shards
                .iter()
                .flat_map(|s| s.servers.iter().map(|v| v.addr.clone()))
                .collect();
            self.probers.watch(cfg, &addrs);
            self.probers
                .settle(&addrs, deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// The latest of every source, now. A source that failed (or was not read yet) leaves its
    /// panels empty and says why in `errors`; the servers keep their probes, from the last
    /// shards the ring gave.
    pub fn snapshot(&self, cfg: &Config) -> Snapshot {
        let mut errors = BTreeMap::new();
        let latest_ring = self.ring.lock().ok().and_then(|l| l.clone());
        let (view, ring_read_at, refresh_ms) = match latest_ring {
            Some((at, ms, Ok(v))) => {
                if let Ok(mut last) = self.last_view.lock() {
                    *last = v.clone();
                }
                (v, Some(at), ms)
            }
            Some((_, ms, Err(e))) => {
                errors.insert(RING.to_string(), e);
                (RingView::default(), None, ms)
            }
            None => {
                errors.insert(RING.to_string(), "not read yet".into());
                (RingView::default(), None, 0.0)
            }
        };
        let latest_locks = self.locks.lock().ok().and_then(|l| l.clone());
        let (locks, locks_read_at) = match latest_locks {
            Some((at, _, Ok(l))) => (l, Some(at)),
            Some((_, _, Err(e))) => {
                errors.insert(LOCKS.to_string(), e);
                (Vec::new(), None)
            }
            None => {
                errors.insert(LOCKS.to_string(), "not read yet".into());
                (Vec::new(), None)
            }
        };
        let server_shards = self
            .last_view
            .lock()
            .map(|v| v.shards.clone())
            .unwrap_or_default();
        let mut snap = assemble(cfg, &self.probers, view, &server_shards, locks, refresh_ms);
        snap.errors = errors;
        snap.ring_read_at = ring_read_at;
        snap.locks_read_at = locks_read_at;
        snap
    }
}

/// One screenful from what the sources read: the ring's view (its shards, counts, migrations,
/// audit), the servers of `server_shards` with their latest probes, and the locks.
fn assemble(
    cfg: &Config,
    probers: &Probers,
    view: RingView,
    server_shards: &[directory::Shard],
    locks: Vec<Lease>,
    refresh_ms: f64,
) -> Snapshot {
    let RingView {
        shards,
        counts,
        migrations,
        audit,
    } = view;
    let addrs: Vec<HostPort> = server_shards
        .iter()
        .flat_map(|s| s.servers.iter().map(|v| v.addr.clone()))
        .collect();
    probers.watch(cfg, &addrs);

    Snapshot {
        errors: BTreeMap::new(),
        ring_read_at: None,
        locks_read_at: None,
        shards: shard_rows(&shards, &counts, &migrations),
        servers: server_rows(cfg, probers, server_shards),
        migrations,
        locks: locks.into_iter().map(lock_row).collect(),
        audit: audit
            .into_iter()
            .map(|e| AuditRow {
                at: e.at,
                operator: e.operator,
                action: e.action,
                target: e.target,
            })
            .collect(),
        refresh_ms,
    }
}

/// The shards panel: each shard's users against the share the balancer aims for, and the
/// migrations in flight into and out of it, so an operator sees where the ring is heading.
fn shard_rows(
    shards: &[directory::Shard],
    counts: &HashMap<u32, u64>,
    migrations: &[MigrationRow],
) -> Vec<ShardRow> {
    let total: u64 = counts.values().sum();
    let targets = balance::targets(
        &shards
            .iter()
            .map(|s| Load {
                state: s.state,
                weight: s.weight,
                units: counts.get(&s.id).copied().unwrap_or(0),
            })
            .collect::<Vec<_>>(),
    );
    let pct = |n: f64| {
        if total == 0 {
            0.0
        } else {
            100.0 * n / total as f64
        }
    };
    let in_flight = |name: &str, into: bool| {
        migrations
            .iter()
            .filter(|m| m.in_flight && if into { m.to == name } else { m.from == name })
            .count() as u64
    };
    shards
        .iter()
        .zip(&targets)
        .map(|(s, &t)| {
            let users = counts.get(&s.id).copied().unwrap_or(0);
            ShardRow {
                name: s.name.to_string(),
                state: s.state,
                weight: s.weight,
                users,
                share: pct(users as f64),
                target_share: pct(t),
                moves_in: in_flight(&s.name, true),
                moves_out: in_flight(&s.name, false),
            }
        })
        .collect()
}

/// The servers panel: every server of `server_shards` with the probers' latest finding, read
/// once for the whole screen so every row is of the same moment.
fn server_rows(
    cfg: &Config,
    probers: &Probers,
    server_shards: &[directory::Shard],
) -> Vec<ServerRow> {
    let stale_after = probers.interval * 2 + probe::bound(cfg) + Duration::from_secs(1);
    let latest = probers.latest.lock().map(|l| l.clone()).unwrap_or_default();
    server_shards
        .iter()
        .flat_map(|s| s.servers.iter().map(move |v| (s, v)))
        .map(|(s, v)| server_row(cfg, s, v, latest.get(&v.addr), stale_after))
        .collect()
}

/// One server's row from its latest probe (`latest`): a probe older than `stale_after` means
/// the prober is stuck on a server that does not answer, so the row says that rather than show
/// what it found back then.
fn server_row(
    cfg: &Config,
    s: &directory::Shard,
    v: &directory::Server,
    latest: Option<&Latest>,
    stale_after: Duration,
) -> ServerRow {
    let mut row = ServerRow {
        shard: s.name.to_string(),
        host: v.addr.host.clone(),
        port: v.addr.port,
        half: v.half,
        status: v.status,
        reachable: false,
        error: None,
        io_running: None,
        sql_running: None,
        lag_seconds: None,
        sessions: None,
        qps: None,
        takes_writes_for: None,
        agrees_with_ring: None,
    };
    match latest {
        None => row.error = Some("not probed yet".into()),
        Some((at, _, _)) if at.elapsed() > stale_after => {
            row.error = Some(format!(
                "does not answer (last heard {:.0}s ago)",
                at.elapsed().as_secs_f64()
            ))
        }
        Some((_, Err(e), _)) => row.error = Some(e.clone()),
        Some((_, Ok(p), qps)) => {
            row.reachable = true;
            let r = p.replica.as_ref();
            row.io_running = r.map(|s| s.io_running);
            row.sql_running = r.map(|s| s.sql_running);
            row.lag_seconds = r.and_then(|s| s.lag_seconds);
            row.sessions = Some(p.sessions.len() as u64);
            row.qps = *qps;
            if let Some(view) = p
                .home
                .as_ref()
                .filter(|v| crate::shard::home::enabled(cfg) || **v != Default::default())
            {
                let expected =
                    crate::shard::home::Rule::of(&v.addr, &crate::shard::home::writers(&s.servers));
                row.takes_writes_for = Some(view.short());
                row.agrees_with_ring = Some(view.settled_on(&expected));
            }
        }
    }
    row
}

fn lock_row(l: Lease) -> LockRow {
    LockRow {
        name: l.name,
        owner: l.owner,
        host: l.host,
        token: l.token,
        age_seconds: l.age_seconds,
        remaining_seconds: l.remaining_seconds,
        expired: l.expired,
    }
}

/// Migrations in flight, oldest first, then the last one finished.
fn migrations(ring: &mut Db) -> Result<Vec<MigrationRow>> {
    type Row = (
        u64,
        u64,
        String,
        String,
        String,
        Option<String>,
        f64,
        Option<f64>,
        u8,
    );
    let rows: Vec<Row> = ring.exec(
        "reading migrations in flight",
        "(SELECT m.migration_id, m.user_id, COALESCE(f.name, CONCAT('#', m.from_shard)),
                 COALESCE(t.name, CONCAT('#', m.to_shard)), m.state, m.row_counts,
                 TIMESTAMPDIFF(MICROSECOND, m.started_at, COALESCE(m.finished_at, UTC_TIMESTAMP(6))) / 1e6,
                 CAST(JSON_VALUE(m.timings, '$.read_only_seconds') AS DOUBLE), 1
          FROM migrations m LEFT JOIN shards f ON f.shard_id = m.from_shard LEFT JOIN shards t ON t.shard_id = m.to_shard
          WHERE m.state NOT IN ('done', 'rolled_back') ORDER BY m.migration_id LIMIT 200)
         UNION ALL
         (SELECT m.migration_id, m.user_id, COALESCE(f.name, CONCAT('#', m.from_shard)),
                 COALESCE(t.name, CONCAT('#', m.to_shard)), m.state, m.row_counts,
                 TIMESTAMPDIFF(MICROSECOND, m.started_at, COALESCE(m.finished_at, UTC_TIMESTAMP(6))) / 1e6,
                 CAST(JSON_VALUE(m.timings, '$.read_only_seconds') AS DOUBLE), 0
          FROM migrations m LEFT JOIN shards f ON f.shard_id = m.from_shard LEFT JOIN shards t ON t.shard_id = m.to_shard
          WHERE m.state IN ('done', 'rolled_back') ORDER BY m.migration_id DESC LIMIT 1)",
        (),
    )?;
    Ok(rows
        .into_iter()
        .map(
            |(id, user, from, to, state, counts, age, ro, live)| MigrationRow {
                migration_id: id,
                user,
                from,
                to,
                state,
                rows: counts
                    .and_then(|c| serde_json::from_str::<HashMap<String, u64>>(&c).ok())
                    .map(|m| m.values().sum())
                    .unwrap_or(0),
                age_seconds: age,
                read_only_seconds: ro,
                in_flight: live == 1,
            },
        )
        .collect())
}

/// The ring, opened with every statement bounded like a probe's: a frozen ring costs a
/// refresh that much, and the screen says how old what it shows is.
pub fn open_ring(cfg: &Config) -> Result<Db> {
    let mut cfg = cfg.clone();
    let bound = probe::bound(&cfg);
    cfg.net.read_timeout = cfg.net.read_timeout.min(bound);
    cfg.net.write_timeout = cfg.net.write_timeout.min(bound);
    ring::open(&cfg)
}

/// One snapshot for `top --once`: the ring and the locks read and the servers probed once (in
/// parallel, each bounded) first.
pub fn once(cfg: &Config) -> Snapshot {
    let sources = Sources::start(cfg, Duration::from_secs(3600));
    sources.settle(
        cfg,
        cfg.net.connect_timeout * 2 + probe::bound(cfg) * 4 + Duration::from_secs(2),
    );
    let mut snap = sources.snapshot(cfg);
    // A server that did not answer within the wait is said so.
    for s in &mut snap.servers {
        if s.error.as_deref() == Some("not probed yet") {
            s.error = Some("does not answer".into());
        }
    }
    snap
}

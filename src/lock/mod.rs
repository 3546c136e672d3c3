//! Locks: a lease row in the ring (listable, with owner, expiry and a fencing token) united with
//! MySQL's `GET_LOCK` on the server where the data lives (atomic, honoured by application jobs
//! that use the classic protocol, and released by the server the moment the holder dies).
//!
//! The winner is decided by one statement: the lease `INSERT` (primary key on the name), which
//! also draws the token from the table's auto-increment. Nothing checks and then acts.

pub mod clock;
pub mod keeper;
pub mod lease;
pub mod run;
pub mod zk;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{Config, LockBackend};
use crate::db::{retry_deadlocks, Db};
use crate::error::{kind_of, DbErrorKind, Error, Result};
use crate::ring::{self, audit, directory, fences};
use crate::shard::routing;
use crate::types::{shown, HostPort, LockName};
use lease::{judge, Observed, Verdict};
use zk::ZkStore;

/// A lease as recorded, with what the ring says about its age.
#[derive(Clone, Debug, Serialize)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub purpose: String,
    pub token: u64,
    pub acquired_at: String,
    pub expires_at: String,
    pub expired: bool,
    pub age_seconds: f64,
    pub remaining_seconds: f64,
    pub holder_server: Option<String>,
    pub holder_connection: Option<u64>,
    pub metadata: Value,
    /// Where the lease is kept: "mysql" (the ring's `locks` table) or "zookeeper".
    pub backend: &'static str,
    /// On ZooKeeper, the lock node as read: what a takeover or sweep deletes, at its version.
    #[serde(skip)]
    zk_node: Option<zk::Node>,
}

const LEASE_COLUMNS: &str = "name, owner, host, pid, purpose, token,
    DATE_FORMAT(acquired_at, '%Y-%m-%dT%H:%i:%s.%fZ'), DATE_FORMAT(expires_at, '%Y-%m-%dT%H:%i:%s.%fZ'),
    expires_at <= UTC_TIMESTAMP(6),
    TIMESTAMPDIFF(MICROSECOND, acquired_at, UTC_TIMESTAMP(6)) / 1e6,
    GREATEST(TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at), 0) / 1e6,
    holder_server, holder_connection, metadata";

/// A row of `LEASE_COLUMNS` (more columns than the crate's tuples take).
struct LeaseRow(Lease);

impl mysql::prelude::FromRow for LeaseRow {
    fn from_row_opt(mut row: mysql::Row) -> std::result::Result<Self, mysql::FromRowError> {
        fn take<T: mysql::prelude::FromValue>(row: &mut mysql::Row, i: usize) -> Option<T> {
            row.take_opt(i).and_then(|v| v.ok())
        }
        let r = &mut row;
        let lease = (|| {
            Some(Lease {
                name: take(r, 0)?,
                owner: take(r, 1)?,
                host: take(r, 2)?,
                pid: take(r, 3)?,
                purpose: take(r, 4)?,
                token: take(r, 5)?,
                acquired_at: take(r, 6)?,
                expires_at: take(r, 7)?,
                expired: take::<u8>(r, 8)? != 0,
                age_seconds: take(r, 9)?,
                remaining_seconds: take(r, 10)?,
                holder_server: take(r, 11)?,
                holder_connection: take(r, 12)?,
                metadata: serde_json::from_str(&take::<String>(r, 13)?).unwrap_or(Value::Null),
                backend: "mysql",
                zk_node: None,
            })
        })();
        lease.map(LeaseRow).ok_or(mysql::FromRowError(row))
    }
}

impl Lease {
    /// A lock node judged at `now_ms` on the ensemble's clock: its times are the leader's
    /// (created, last written), whatever the record's text says.
    fn from_node(node: zk::Node, now_ms: i64) -> Lease {
        let r = node.record.clone();
        let expires_ms = node.expires_ms();
        Lease {
            name: node.name.clone(),
            expired: node.expired_at(now_ms),
            age_seconds: (now_ms - node.ctime_ms).max(0) as f64 / 1000.0,
            remaining_seconds: (expires_ms.saturating_sub(now_ms)).max(0) as f64 / 1000.0,
            owner: r.owner,
            host: r.host,
            pid: r.pid,
            purpose: r.purpose,
            token: node.token,
            acquired_at: zk::zk_timestamp(node.ctime_ms),
            expires_at: zk::zk_timestamp(expires_ms),
            holder_server: r.holder_server,
            holder_connection: r.holder_connection,
            metadata: r.metadata,
            backend: "zookeeper",
            zk_node: Some(node),
        }
    }

    /// On ZooKeeper, the holder child (None: its ephemeral child is gone); None on mysql.
    fn zk_holder(&self) -> Option<Option<&str>> {
        self.zk_node.as_ref().map(|n| n.holder.as_deref())
    }

    fn holder(&self) -> Option<(HostPort, u64)> {
        let server = self.holder_server.as_deref()?.parse().ok()?;
        Some((server, self.holder_connection?))
    }

    /// Whether the holder runs a command under the lock (`lock run` records it).
    fn runs_command(&self) -> bool {
        self.metadata.get("runs_command") == Some(&Value::Bool(true))
    }

    /// Whether the command's process group is gone. Only provable on the holder's own host
    /// (process groups are per machine) and once `lock run` recorded the group.
    fn command_gone(&self) -> bool {
        let Some(pgid) = self.metadata.get("command_pgid").and_then(Value::as_i64) else {
            return false;
        };
        if self.host != audit::hostname() || pgid <= 1 {
            return false;
        }
        !crate::process::group_alive(pgid)
    }

    fn in_use(&self) -> Error {
        Error::LockInUse(format!(
            "lock {} is held by {} on {} (pid {}, token {}) until {}",
            self.name,
            shown(&self.owner),
            shown(&self.host),
            self.pid,
            self.token,
            shown(&self.expires_at)
        ))
    }
}

enum Inserted {
    /// The token, and on ZooKeeper the lock node's holder child.
    Won(u64, Option<String>),
    /// A lease with this name exists.
    Exists,
    /// GET_LOCK was refused, so no row was written.
    Refused,
}

/// A swept lease: name, token, and the session that held its GET_LOCK.
type SweptRow = (String, u64, Option<String>, Option<u64>);

/// What to ask for.
#[derive(Clone, Debug)]
pub struct Request {
    pub name: LockName,
    pub ttl: Duration,
    pub owner: String,
    pub purpose: String,
    /// Keep a session holding GET_LOCK for the lease's life (lock run, migrations). Without it,
    /// GET_LOCK is held only while acquiring, and the lease lives until released or expired.
    pub hold_session: bool,
    pub metadata: Value,
}

/// A lock this process holds.
#[derive(Clone, Debug, Serialize)]
pub struct Held {
    pub name: LockName,
    pub token: u64,
    pub owner: String,
    #[serde(skip)]
    pub ttl: Duration,
    /// Where the GET_LOCK is held, when a session is kept.
    pub session: Option<HostPort>,
    /// Whether the lease replaced a stale one.
    pub took_over: bool,
    /// On ZooKeeper, the lock node's holder child: proof the node is still ours.
    #[serde(skip)]
    pub zk_holder: Option<String>,
}

/// Talks to the ring and to the servers holding GET_LOCKs. One per thread.
pub struct LockClient<'c> {
    cfg: &'c Config,
    ring: Db,
    ring_connection_id: u64,
    /// Dedicated connections to shard servers, each holding the GET_LOCKs taken on that server.
    /// Plain `Conn`s, never pooled: returning a pooled connection resets it and drops its locks.
    shards: HashMap<HostPort, Db>,
    /// Whether the ring runs MariaDB (which has DELETE ... RETURNING); asked when first needed.
    mariadb: Option<bool>,
    /// The longest one read or write may block, where a holder must not wait longer than its
    /// lease (see `bound_io`).
    io_timeout: Option<Duration>,
    /// With `[locks] backend = "zookeeper"`: the session where the lock nodes are kept. The
    /// leases are there, not in the ring; the GET_LOCK interlock on an account's server stays.
    zk: Option<ZkStore>,
    /// The highest token a move had used before this client's first grant (the shards' fences
    /// held no higher): no grant at or below it is handed out.
    token_floor: Option<u64>,
    /// On ZooKeeper, the record this client last wrote for each lock it holds, with the holder
    /// child it was written under: a renewal rewrites it without reading it back first.
    zk_records: HashMap<String, OwnNode>,
    /// Registered servers (the ring's and the shards'): the only ones this client logs in to,
    /// whatever a lease record names. Read when first needed.
    registered: Option<Vec<HostPort>>,
    /// Whether this host's clock was found within `clock::MAX_SKEW` of the ring's.
    clock_checked: bool,
}

/// A lock node this client holds on ZooKeeper.
#[derive(Clone)]
struct OwnNode {
    child: String,
    record: zk::Record,
    /// Until when the lease certainly holds, on this host's monotonic clock: the start of the
    /// last confirmed write plus the ttl (the leader stamped it at or after that instant).
    confirmed_until: Instant,
}

impl<'c> LockClient<'c> {
    pub fn new(cfg: &'c Config) -> Result<LockClient<'c>> {
        LockClient::with_ring(cfg, ring::open(cfg)?)
    }

    pub fn with_ring(cfg: &'c Config, ring: Db) -> Result<LockClient<'c>> {
        let zk = match &cfg.locks {
            LockBackend::Mysql => None,
            LockBackend::Zookeeper(z) => Some(ZkStore::connect(z)?),
        };
        Ok(LockClient {
            cfg,
            ring_connection_id: ring.connection_id(),
            ring,
            shards: HashMap::new(),
            mariadb: None,
            io_timeout: None,
            zk,
            token_floor: None,
            zk_records: HashMap::new(),
            registered: None,
            clock_checked: false,
        })
    }

    /// The highest token any move had used, read once and before this client's first grant:
    /// a sequence only grows, so every grant after the read is above it unless the backend's
    /// sequence is behind (after a switch). Read after a grant, it could include other
    /// holders' later, higher tokens, which say nothing about this one.
    fn token_floor(&mut self) -> Result<u64> {
        if let Some(f) = self.token_floor {
            return Ok(f);
        }
        let f = ring::highest_token(&mut self.ring)?;
        self.token_floor = Some(f);
        Ok(f)
    }

    /// On the mysql backend, once per client, at its first grant: a holder on a host whose
    /// clock is off refuses to act (the leases themselves are judged by the ring's clock). On
    /// ZooKeeper every grant and renewal carries the leader's time and is checked as it comes.
    fn check_clock(&mut self) -> Result<()> {
        if self.zk.is_some() || self.clock_checked {
            return Ok(());
        }
        self.check_ring_clock()?;
        self.clock_checked = true;
        Ok(())
    }

    /// Refuses when this host's clock strays from the ring's by more than `clock::MAX_SKEW`.
    fn check_ring_clock(&mut self) -> Result<()> {
        let before = SystemTime::now();
        let ring_ms: Option<i64> = self.ring.exec_first(
            "reading the ring's clock",
            "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
            (),
        )?;
        let after = SystemTime::now();
        match ring_ms {
            Some(ms) => clock::check(ms, before, after, "the ring's clock").map_err(Error::Refused),
            None => Ok(()),
        }
    }

    /// "mysql" or "zookeeper", as the lock verbs report it.
    pub fn backend(&self) -> &'static str {
        self.cfg.locks.name()
    }

    /// Which grants may be handed out. Each token must be above every token a move has used:
    /// after switching backends, the other backend's sequence may be behind what the shards'
    /// fences hold, and a lower token would be refused there anyway, after a lock that looked
    /// good. On ZooKeeper an account lock's grant also raises its ring fence before its holder
    /// does anything (see `ring::fences`, one statement for all the grants): that waits for a
    /// directory change of the previous holder under way and refuses its later ones; a fence
    /// that has seen a higher token refuses the grant.
    fn admissible(&mut self, held: &[&Held]) -> Result<Vec<bool>> {
        let floor = self.token_floor()?;
        let fenced = |h: &Held| self.zk.is_some() && h.name.account().is_some();
        let grants: Vec<fences::Grant> = held
            .iter()
            .filter(|h| fenced(h))
            .map(|h| (&h.name, h.token))
            .collect();
        let current: Vec<String> = if grants.is_empty() {
            Vec::new()
        } else {
            self.ring.run("raising the locks' fences", |c| {
                fences::raise(c, &grants)?;
                fences::current(c, &grants)
            })?
        };
        Ok(held
            .iter()
            .map(|h| {
                h.token > floor && (!fenced(h) || current.iter().any(|n| n == h.name.as_str()))
            })
            .collect())
    }

    /// Gives back a grant that was not admissible, and says why.
    fn refuse(&mut self, held: &Held) -> Error {
        let _ = self.release(held);
        let floor = self.token_floor.unwrap_or(0);
        Error::Refused(format!(
            "the {} backend granted lock {} token {}, but a token at least as high ({floor} or \
             above) has already been used: a lower token would be refused by the shards' fences. {}",
            self.backend(),
            held.name,
            held.token,
            token_remedy(&self.cfg.locks, floor)
        ))
    }

    fn check_token(&mut self, held: &Held) -> Result<()> {
        if let Err(e) = self.check_clock() {
            let _ = self.release(held);
            return Err(e);
        }
        if self.admissible(&[held])?.first() == Some(&true) {
            return Ok(());
        }
        Err(self.refuse(held))
    }

    /// From now on no statement on any of this client's connections blocks longer than `d`: a
    /// holder renewing against a frozen server learns within its lease that it cannot renew.
    pub fn bound_io(&mut self, d: Duration) -> Result<()> {
        self.io_timeout = Some(d);
        self.ring.set_timeouts(d, d)?;
        for db in self.shards.values_mut() {
            db.set_timeouts(d, d)?;
        }
        Ok(())
    }

    fn ring_is_mariadb(&mut self) -> Result<bool> {
        if self.mariadb.is_none() {
            self.mariadb = Some(self.ring.version()?.contains("MariaDB"));
        }
        Ok(self.mariadb == Some(true))
    }

    pub fn ring(&mut self) -> &mut Db {
        &mut self.ring
    }

    /// The server whose GET_LOCK guards `name`: for an account lock, the account's server by
    /// the routing rule ("the locks and the data are in the same place"); otherwise the ring.
    fn lock_server(&mut self, name: &LockName) -> Result<Option<HostPort>> {
        let Some(user) = name.account() else {
            return Ok(None);
        };
        let Some((shard_id, _)) = directory::user(&mut self.ring, user)? else {
            return Ok(None);
        };
        let shard = directory::shards(&mut self.ring)?
            .into_iter()
            .find(|s| s.id == shard_id)
            .ok_or_else(|| {
                Error::inconsistent(format!("user {user} names missing shard {shard_id}"))
            })?;
        // The routing rule with its fall-over, as `user locate` applies it: the first of the
        // user's servers that answers. (Two acquirers that chose different servers still meet
        // at the lease, whose insert alone decides the winner.)
        let candidates: Vec<HostPort> = routing::candidates(user, &shard.servers)
            .iter()
            .map(|s| s.addr())
            .collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        let mut failures = Vec::new();
        for addr in candidates {
            match self.session(Some(&addr)) {
                Ok(_) => return Ok(Some(addr)),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(Error::Unreachable(format!(
            "no server of shard `{}` answers for lock {name}: {}",
            shard.name,
            failures.join("; ")
        )))
    }

    /// The connection that takes GET_LOCKs on `server` (None: the ring connection).
    fn session(&mut self, server: Option<&HostPort>) -> Result<&mut Db> {
        match server {
            None => Ok(&mut self.ring),
            Some(addr) => {
                if self.shards.get(addr).is_none_or(Db::is_lost) {
                    self.check_registered(addr)?;
                    let mut db = crate::shard::connect_server(self.cfg, addr, &self.cfg.net)?;
                    if let Some(d) = self.io_timeout {
                        db.set_timeouts(d, d)?;
                    }
                    self.shards.insert(addr.clone(), db);
                }
                Ok(self.shards.get_mut(addr).expect("inserted above"))
            }
        }
    }

    /// Refuses a server that is neither the ring nor a registered shard server: a lease record
    /// can be written by anyone who reaches the backend, and must never make this client log in
    /// (with the shard login) wherever it says.
    fn check_registered(&mut self, addr: &HostPort) -> Result<()> {
        if *addr == self.ring.server {
            return Ok(());
        }
        if self.registered.as_ref().is_none_or(|r| !r.contains(addr)) {
            // Read again on a miss: a server may have been registered since.
            let servers = directory::shards(&mut self.ring)?
                .iter()
                .flat_map(|s| s.servers.iter().map(|v| v.addr()))
                .collect();
            self.registered = Some(servers);
        }
        if self.registered.as_ref().is_some_and(|r| r.contains(addr)) {
            return Ok(());
        }
        Err(Error::Refused(format!(
            "a lease names {addr} as its holder's server, which is neither the ring nor a \
             registered shard server: shardctl does not log in there"
        )))
    }

    fn session_connection_id(&mut self, server: Option<&HostPort>) -> Result<u64> {
        Ok(self.session(server)?.connection_id())
    }

    fn get_lock(
        &mut self,
        server: Option<&HostPort>,
        name: &LockName,
        wait_secs: u64,
    ) -> Result<bool> {
        let got: Option<Option<i64>> = self.session(server)?.exec_first(
            "taking GET_LOCK",
            "SELECT GET_LOCK(?, ?)",
            (name.as_str(), wait_secs),
        )?;
        Ok(got.flatten() == Some(1))
    }

    fn release_lock(&mut self, server: Option<&HostPort>, name: &LockName) -> Result<()> {
        self.session(server)?.exec_drop(
            "releasing GET_LOCK",
            "DO RELEASE_LOCK(?)",
            (name.as_str(),),
        )
    }

    /// The connection id holding GET_LOCK(name) on `server`, if any.
    fn getlock_holder(&mut self, server: Option<&HostPort>, name: &str) -> Result<Option<u64>> {
        Ok(self
            .session(server)?
            .exec_first(
                "asking who holds GET_LOCK",
                "SELECT IS_USED_LOCK(?)",
                (name,),
            )?
            .flatten())
    }

    /// The server a lease's holder names, as a session key (None for the ring itself).
    fn as_session(&self, server: &HostPort) -> Option<HostPort> {
        (*server != self.ring.server).then(|| server.clone())
    }

    /// Kills connection `conn` on `server` if it still holds GET_LOCK(name). Returns the
    /// statement run, for the operator's record.
    fn kill_holder(&mut self, server: &HostPort, name: &str, conn: u64) -> Result<Option<String>> {
        let session = self.as_session(server);
        match self.getlock_holder(session.as_ref(), name) {
            Ok(holder) if holder == Some(conn) => {}
            // A server we do not log in to holds nothing of ours to end.
            Ok(_) | Err(Error::Refused(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        if !self
            .session(session.as_ref())?
            .kill_connection("killing the holder's session", conn)?
        {
            return Ok(None);
        }
        Ok(Some(format!("KILL CONNECTION {conn} on {server}")))
    }

    pub fn read(&mut self, name: &str) -> Result<Option<Lease>> {
        if let Some(store) = &self.zk {
            let Some(node) = store.read(name)? else {
                return Ok(None);
            };
            // Judged by the ensemble's clock, read after the node: a lease seen expired was.
            let now = store.now_ms()?;
            return Ok(Some(Lease::from_node(node, now)));
        }
        let row: Option<LeaseRow> = self.ring.exec_first(
            "reading the lease",
            &format!("SELECT {LEASE_COLUMNS} FROM locks WHERE name = ?"),
            (name,),
        )?;
        Ok(row.map(|r| r.0))
    }

    /// Whether the session a lease names still holds its GET_LOCK; None when its server does
    /// not answer (the holder may be alive on the far side of a partition, or its server frozen).
    fn session_alive(&mut self, lease: &Lease) -> Result<Option<bool>> {
        let Some((server, conn)) = lease.holder() else {
            return Ok(Some(false));
        };
        let session = self.as_session(&server);
        match self.getlock_holder(session.as_ref(), &lease.name) {
            Ok(holder) => Ok(Some(holder == Some(conn))),
            Err(Error::Unreachable(_)) => {
                self.shards.remove(&server);
                Ok(None)
            }
            // Not a server we log in to: its holder cannot be seen, so the lease is waited out.
            Err(Error::Refused(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One attempt: the lock, or `LockInUse`.
    pub fn try_acquire(&mut self, req: &Request) -> Result<Held> {
        self.token_floor()?;
        let held = self.try_acquire_unchecked(req)?;
        self.check_token(&held)?;
        Ok(held)
    }

    fn try_acquire_unchecked(&mut self, req: &Request) -> Result<Held> {
        let server = self.lock_server(&req.name)?;
        if server.is_none() && self.zk.is_some() {
            // No GET_LOCK to take: the lock node alone decides.
            return self.insert_lease(req, None);
        }
        if server.is_none() {
            // The GET_LOCK lives on the ring connection itself: one statement takes it and
            // records the lease, so an uncontended lock costs what bare GET_LOCK costs.
            match self.insert_row(req, None, true)? {
                Inserted::Won(token, child) => {
                    if !req.hold_session {
                        self.release_lock(None, &req.name)?;
                    }
                    return Ok(self.held(req, None, (token, child), false));
                }
                // We hold the GET_LOCK now; the lease decides.
                Inserted::Exists => return self.record_lease(req, None),
                Inserted::Refused => {}
            }
        }
        let mut got = self.get_lock(server.as_ref(), &req.name, 0)?;
        if !got {
            // Someone holds the GET_LOCK. If it is a lease holder whose lease expired, its
            // session is stale: end it, then the lock comes free.
            let lease = self.read(req.name.as_str())?;
            let stale = lease
                .as_ref()
                .filter(|l| l.expired)
                .and_then(|l| l.holder());
            let Some((holder_server, conn)) = stale else {
                return Err(match lease {
                    Some(l) => l.in_use(),
                    None => Error::LockInUse(format!(
                        "lock {} is held with GET_LOCK on {} by a session that has no lease (an application job)",
                        req.name,
                        server.as_ref().unwrap_or(&self.ring.server)
                    )),
                });
            };
            self.kill_holder(&holder_server, req.name.as_str(), conn)?;
            got = self.get_lock(server.as_ref(), &req.name, 2)?;
            if !got {
                return Err(lease.map(|l| l.in_use()).unwrap_or_else(|| {
                    Error::LockInUse(format!("lock {} is held with GET_LOCK", req.name))
                }));
            }
        }
        self.record_lease(req, server.as_ref())
    }

    /// Many account locks at once, all guarded on `server` (the accounts' routing server),
    /// each kept on one session: one `GET_LOCK` statement and one lease `INSERT` for the lot,
    /// where one lock at a time would cost a round trip or three per account. A lock that is
    /// not free at once goes the one-at-a-time way (`try_acquire`), which knows how to take over
    /// a dead or expired holder. Results are in the order of `reqs`.
    pub fn try_acquire_many(
        &mut self,
        reqs: &[Request],
        server: &HostPort,
    ) -> Result<Vec<Result<Held>>> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        self.token_floor()?;
        let session = self.as_session(server);
        let names: Vec<mysql::Value> = reqs.iter().map(|r| r.name.as_str().into()).collect();
        let got: Vec<mysql::Value> = self
            .session(session.as_ref())?
            .exec_first::<mysql::Row>(
                "taking GET_LOCKs",
                &format!("SELECT {}", vec!["GET_LOCK(?, 0)"; reqs.len()].join(", ")),
                names,
            )?
            .map(|r| r.unwrap())
            .unwrap_or_default();
        let won_getlock: Vec<bool> = (0..reqs.len())
            .map(|i| got.get(i) == Some(&mysql::Value::Int(1)))
            .collect();
        let conn = self.session_connection_id(session.as_ref())?;
        let ours: Vec<&Request> = reqs
            .iter()
            .zip(&won_getlock)
            .filter(|(_, w)| **w)
            .map(|(r, _)| r)
            .collect();
        let mut tokens: HashMap<String, (u64, Option<String>)> = HashMap::new();
        if let (false, Some(_)) = (ours.is_empty(), &self.zk) {
            for r in &ours {
                match self.insert_row(r, session.as_ref(), false) {
                    Ok(Inserted::Won(token, child)) => {
                        tokens.insert(r.name.to_string(), (token, child));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let names = ours.iter().map(|r| r.name.as_str().into()).collect();
                        self.release_locks(session.as_ref(), names);
                        return Err(e);
                    }
                }
            }
        } else if !ours.is_empty() {
            // IGNORE: a lease left by a dead holder keeps its row; that lock goes the slow way.
            let sql = format!(
                "INSERT IGNORE INTO locks (name, owner, host, pid, purpose, acquired_at, expires_at, metadata,
                                           holder_server, holder_connection)
                 VALUES {}",
                vec!["(?, ?, ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?, ?, ?)"; ours.len()].join(", ")
            );
            let host = audit::hostname();
            let pid = std::process::id();
            let mut params: Vec<mysql::Value> = Vec::with_capacity(ours.len() * 9);
            for r in &ours {
                params.extend([
                    r.name.as_str().into(),
                    r.owner.as_str().into(),
                    host.as_str().into(),
                    pid.into(),
                    r.purpose.as_str().into(),
                    (r.ttl.as_micros() as u64).into(),
                    r.metadata.to_string().into(),
                    server.to_string().into(),
                    conn.into(),
                ]);
            }
            let lookup = format!(
                "SELECT name, token FROM locks WHERE name IN ({}) AND holder_server = ? AND holder_connection = ?",
                vec!["?"; ours.len()].join(", ")
            );
            let mut look: Vec<mysql::Value> = ours.iter().map(|r| r.name.as_str().into()).collect();
            look.extend([server.to_string().into(), conn.into()]);
            let ring = &mut self.ring;
            // One transaction, so a deadlock retried never leaves a first attempt's rows.
            let rows: Result<Vec<(String, u64)>> = retry_deadlocks(|| {
                ring.transaction("recording the leases", |c| {
                    use mysql::prelude::Queryable;
                    c.exec_drop(&sql, params.clone())?;
                    c.exec(&lookup, look.clone())
                })
            });
            match rows {
                Ok(rows) => tokens.extend(rows.into_iter().map(|(n, t)| (n, (t, None)))),
                Err(e) => {
                    // Give the GET_LOCKs back, or they would block everyone until we exit.
                    let names = ours.iter().map(|r| r.name.as_str().into()).collect();
                    self.release_locks(session.as_ref(), names);
                    return Err(e);
                }
            }
        }
        let mut out = Vec::with_capacity(reqs.len());
        // Indexes of grants still to be admitted, all at once below.
        let mut unchecked = Vec::new();
        for (req, getlock) in reqs.iter().zip(won_getlock) {
            let result = match tokens.remove(req.name.as_str()) {
                Some(won) => Ok(self.held(req, Some(server), won, false)),
                // We hold the GET_LOCK, but a lease is there: judge it.
                None if getlock => self.record_lease(req, session.as_ref()),
                // Admitted on its own.
                None => {
                    out.push(self.try_acquire(req));
                    continue;
                }
            };
            if result.is_ok() {
                unchecked.push(out.len());
            }
            out.push(result);
        }
        let grants: Vec<Held> = unchecked
            .iter()
            .filter_map(|&i| out[i].as_ref().ok().cloned())
            .collect();
        let admitted = match self
            .check_clock()
            .and_then(|()| self.admissible(&grants.iter().collect::<Vec<_>>()))
        {
            Ok(a) => a,
            Err(e) => {
                // Not handed out: give them all back.
                let _ = self.release_many(&grants);
                return Err(e);
            }
        };
        for ((&i, held), ok) in unchecked.iter().zip(&grants).zip(admitted) {
            if !ok {
                out[i] = Err(self.refuse(held));
            }
        }
        Ok(out)
    }

    /// Extends many leases held on one session. Fails with `LockLost` unless every one of them
    /// was still current and its GET_LOCK still held.
    pub fn renew_many(&mut self, held: &[Held]) -> Result<()> {
        let Some(first) = held.first() else {
            return Ok(());
        };
        if self.zk.is_some() {
            let mut lost = 0;
            for h in held {
                lost += usize::from(self.renew_node(h).is_err());
            }
            if lost > 0 {
                return Err(Error::LockLost(format!(
                    "{lost} of {} account locks were lost (expired, taken over or released)",
                    held.len()
                )));
            }
            return Ok(());
        }
        let mut params = vec![mysql::Value::from(first.ttl.as_micros() as u64)];
        params.extend(held.iter().map(|h| mysql::Value::from(h.name.as_str())));
        params.extend(held.iter().map(|h| mysql::Value::from(h.token)));
        let sql = format!(
            "UPDATE locks SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND
             WHERE name IN ({0}) AND token IN ({0}) AND expires_at > UTC_TIMESTAMP(6)",
            vec!["?"; held.len()].join(", ")
        );
        let ring = &mut self.ring;
        let renewed = retry_deadlocks(|| {
            ring.run("renewing the leases", |c| {
                use mysql::prelude::Queryable;
                c.exec_drop(&sql, params.clone())?;
                Ok(c.affected_rows())
            })
        })?;
        if renewed != held.len() as u64 {
            return Err(Error::LockLost(format!(
                "{} of {} account locks were lost (expired, taken over or released)",
                held.len() as u64 - renewed,
                held.len()
            )));
        }
        Ok(())
    }

    /// Releases many locks this process holds (leases first, then their GET_LOCKs).
    pub fn release_many(&mut self, held: &[Held]) -> Result<()> {
        if held.is_empty() {
            return Ok(());
        }
        if let Some(store) = &self.zk {
            for h in held {
                self.zk_records.remove(h.name.as_str());
                if let Some(child) = &h.zk_holder {
                    store.release(h.name.as_str(), child)?;
                }
            }
        } else {
            // By primary key (with the tokens, so only our own leases go): record locks only,
            // no gaps for a concurrent acquirer's insert to deadlock with.
            let mut params: Vec<mysql::Value> =
                held.iter().map(|h| h.name.as_str().into()).collect();
            params.extend(held.iter().map(|h| mysql::Value::from(h.token)));
            let sql = format!(
                "DELETE FROM locks WHERE name IN ({0}) AND token IN ({0})",
                vec!["?"; held.len()].join(", ")
            );
            let ring = &mut self.ring;
            retry_deadlocks(|| ring.exec_drop("releasing the leases", &sql, params.clone()))?;
        }
        // Then the GET_LOCKs, one statement per session, on either backend.
        let mut by_session: HashMap<Option<HostPort>, Vec<mysql::Value>> = HashMap::new();
        for h in held {
            if let Some(server) = &h.session {
                by_session
                    .entry(self.as_session(server))
                    .or_default()
                    .push(h.name.as_str().into());
            }
        }
        for (session, names) in by_session {
            self.release_locks(session.as_ref(), names);
        }
        Ok(())
    }

    /// Releases the GET_LOCKs `names` held on `server`'s session, in one statement. Best
    /// effort: a session that was killed already dropped its locks.
    fn release_locks(&mut self, server: Option<&HostPort>, names: Vec<mysql::Value>) {
        let sql = format!("DO {}", vec!["RELEASE_LOCK(?)"; names.len()].join(", "));
        let _ = self
            .session(server)
            .and_then(|db| db.exec_drop("releasing GET_LOCKs", &sql, names));
    }

    /// With the GET_LOCK held: records the lease, then keeps or gives back the GET_LOCK.
    fn record_lease(&mut self, req: &Request, server: Option<&HostPort>) -> Result<Held> {
        let result = self.insert_lease(req, server);
        if !req.hold_session || result.is_err() {
            self.release_lock(server, &req.name)?;
        }
        result
    }

    fn held(
        &self,
        req: &Request,
        server: Option<&HostPort>,
        won: (u64, Option<String>),
        took_over: bool,
    ) -> Held {
        // On ZooKeeper a lock that is not an account's takes no GET_LOCK anywhere.
        let getlock_on = match server {
            Some(s) => Some(s),
            None if self.zk.is_none() => Some(&self.ring.server),
            None => None,
        };
        Held {
            name: req.name.clone(),
            token: won.0,
            owner: req.owner.clone(),
            ttl: req.ttl,
            session: getlock_on.filter(|_| req.hold_session).cloned(),
            took_over,
            zk_holder: won.1,
        }
    }

    /// One lease INSERT. `with_get_lock` makes the row conditional on taking GET_LOCK on the
    /// ring connection in the same statement.
    fn insert_row(
        &mut self,
        req: &Request,
        server: Option<&HostPort>,
        with_get_lock: bool,
    ) -> Result<Inserted> {
        if self.zk.is_some() {
            return self.create_node(req, server);
        }
        let (holder_server, holder_conn) = if req.hold_session {
            let id = self.session_connection_id(server)?;
            (
                Some(server.unwrap_or(&self.ring.server).to_string()),
                Some(id),
            )
        } else {
            (None, None)
        };
        // A VALUES insert (not INSERT ... SELECT) takes InnoDB's auto-increment mutex only
        // briefly, not the table-level AUTO-INC lock, so concurrent acquirers do not queue. To
        // fuse GET_LOCK in, a refused GET_LOCK makes `owner` NULL, which its NOT NULL column
        // rejects (error 1048) before anything is written.
        let owner = if with_get_lock {
            "IF(GET_LOCK(?, 0) = 1, ?, NULL)"
        } else {
            "?"
        };
        let sql = format!(
            "INSERT INTO locks (name, owner, host, pid, purpose, acquired_at, expires_at, metadata,
                                holder_server, holder_connection)
             VALUES (?, {owner}, ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?, ?, ?)"
        );
        let ring = &mut self.ring;
        let mut attempt = || {
            ring.run("recording the lease", |c| {
                use mysql::prelude::Queryable;
                let mut params: Vec<mysql::Value> = vec![req.name.as_str().into()];
                if with_get_lock {
                    params.push(req.name.as_str().into());
                }
                params.extend([
                    req.owner.as_str().into(),
                    audit::hostname().into(),
                    std::process::id().into(),
                    req.purpose.as_str().into(),
                    (req.ttl.as_micros() as u64).into(),
                    req.metadata.to_string().into(),
                    holder_server.clone().into(),
                    holder_conn.into(),
                ]);
                match c.exec_drop(&sql, params) {
                    Ok(()) => Ok(Inserted::Won(c.last_insert_id(), None)),
                    Err(e) if kind_of(&e) == DbErrorKind::Duplicate => Ok(Inserted::Exists),
                    Err(e) if with_get_lock && kind_of(&e) == DbErrorKind::NullRefused => {
                        Ok(Inserted::Refused)
                    }
                    Err(e) => Err(e),
                }
            })
        };
        // A fused GET_LOCK is not undone by a rollback (and would nest if taken again): only a
        // plain insert is retried after a deadlock.
        if with_get_lock {
            attempt()
        } else {
            retry_deadlocks(attempt)
        }
    }

    /// On ZooKeeper: the lock node, ephemeral-held when the holder keeps a session. `server`
    /// is where the caller took GET_LOCK (None: nowhere).
    fn create_node(&mut self, req: &Request, server: Option<&HostPort>) -> Result<Inserted> {
        let holder = match server.filter(|_| req.hold_session) {
            Some(s) => Some((s.to_string(), self.session_connection_id(Some(s))?)),
            None => None,
        };
        let record = zk::Record::starting_now(
            &req.owner,
            &req.purpose,
            req.ttl,
            holder,
            req.metadata.clone(),
        );
        let store = self.zk.as_ref().expect("called for the zookeeper backend");
        let began = Instant::now();
        let before = SystemTime::now();
        Ok(
            match store.create(req.name.as_str(), &record, req.hold_session)? {
                zk::Created::Won(token, child, granted_ms) => {
                    let after = SystemTime::now();
                    if let Err(why) = clock::check(granted_ms, before, after, "ZooKeeper's clock") {
                        let _ = store.release(req.name.as_str(), &child);
                        return Err(Error::Refused(why));
                    }
                    let mut record = record;
                    record.token = token;
                    self.zk_records.insert(
                        req.name.to_string(),
                        OwnNode {
                            child: child.clone(),
                            record,
                            confirmed_until: began + req.ttl,
                        },
                    );
                    Inserted::Won(token, Some(child))
                }
                zk::Created::Exists => Inserted::Exists,
            },
        )
    }

    /// Deletes a stale lease being taken over, only if it is still the one judged.
    fn delete_judged(&mut self, existing: &Lease) -> Result<bool> {
        match (&self.zk, &existing.zk_node) {
            (Some(store), Some(node)) => store.delete_judged(node),
            _ => self.delete_lease(&existing.name, Some(existing.token)),
        }
    }

    fn insert_lease(&mut self, req: &Request, server: Option<&HostPort>) -> Result<Held> {
        let mut took_over = false;
        for _ in 0..3 {
            if let Inserted::Won(token, child) = self.insert_row(req, server, false)? {
                return Ok(self.held(req, server, (token, child), took_over));
            }
            let Some(existing) = self.read(req.name.as_str())? else {
                continue;
            };
            match self.verdict(&existing)? {
                Verdict::InUse(None) => return Err(existing.in_use()),
                Verdict::InUse(Some(why)) => {
                    return Err(Error::LockInUse(format!("{}: {why}", existing.in_use())))
                }
                Verdict::TakeOver {
                    reason,
                    kill_session,
                } => {
                    let mut killed = None;
                    if let (true, Some((s, conn))) = (kill_session, existing.holder()) {
                        killed = self.kill_holder(&s, &existing.name, conn)?;
                    }
                    if self.zk.is_some() && !self.delete_judged(&existing)? {
                        // Someone else took it over first: judge theirs.
                        continue;
                    }
                    let on_ring = self.zk.is_none();
                    self.ring.run("taking over the lease", |c| {
                        use mysql::prelude::Queryable;
                        if on_ring {
                            c.exec_drop("DELETE FROM locks WHERE name = ? AND token = ?", (&existing.name, existing.token))?;
                        }
                        audit::record(
                            c,
                            "lock.takeover",
                            &existing.name,
                            json!({ "reason": reason, "old_token": existing.token, "old_owner": existing.owner,
                                    "old_host": existing.host, "killed": killed, "new_owner": req.owner }),
                        )
                    })?;
                    took_over = true;
                }
            }
        }
        Err(Error::LockInUse(format!(
            "lock {} is contended; try again",
            req.name
        )))
    }

    /// The lease rule applied to `lease` as its holder is observed now.
    fn verdict(&mut self, lease: &Lease) -> Result<Verdict> {
        if let Some(child) = lease.zk_holder() {
            return Ok(judge(Observed {
                expired: lease.expired,
                has_session: zk::keeps_session(child),
                // The ephemeral child is the session; where GET_LOCK is held too, it must be
                // alive as well.
                session_alive: if !zk::session_alive(child) {
                    Some(false)
                } else if lease.holder().is_some() {
                    self.session_alive(lease)?
                } else {
                    Some(true)
                },
                runs_command: lease.runs_command(),
                command_gone: lease.command_gone(),
            }));
        }
        Ok(judge(Observed {
            expired: lease.expired,
            has_session: lease.holder().is_some(),
            session_alive: self.session_alive(lease)?,
            runs_command: lease.runs_command(),
            command_gone: lease.command_gone(),
        }))
    }

    /// What acquiring `name` now would meet, for `--dry-run`: the lease and the live GET_LOCK
    /// holder, and whether the acquisition would go through (the lock is free, or the lease
    /// rule lets its holder be taken over), decided by the same rule an acquisition uses.
    pub fn preview(&mut self, name: &LockName) -> Result<Preview> {
        let lease = self.read(name.as_str())?;
        let holder = self.live_holder(name, lease.as_ref())?;
        let free = match &lease {
            None => holder.is_none(),
            Some(l) => {
                // A takeover ends the lease holder's own session, never anyone else's.
                let holder_is_lease = holder
                    .as_ref()
                    .is_none_or(|(_, c)| l.holder_connection == Some(*c));
                holder_is_lease && matches!(self.verdict(l)?, Verdict::TakeOver { .. })
            }
        };
        Ok(Preview {
            lease,
            getlock_holder: holder,
            free,
        })
    }

    /// `lock acquire`: waits up to `wait`, audits the grant, and reads the lease back.
    pub fn acquire_audited(
        &mut self,
        req: &Request,
        wait: Duration,
    ) -> Result<(Held, Option<Lease>)> {
        let held = self.acquire(req, wait)?;
        self.audit(
            "lock.acquire",
            &held.name,
            json!({ "token": held.token, "owner": held.owner, "ttl_seconds": req.ttl.as_secs_f64() }),
        )?;
        let lease = self.read(held.name.as_str())?;
        Ok((held, lease))
    }

    /// `lock release`: deletes the lease (only if it carries `token`, when given) and audits
    /// it. The lease that was there, if any, and whether it was released.
    pub fn release_audited(
        &mut self,
        name: &LockName,
        token: Option<u64>,
    ) -> Result<(Option<Lease>, bool)> {
        let Some(lease) = self.read(name.as_str())? else {
            return Ok((None, false));
        };
        if let Some(t) = token.filter(|t| *t != lease.token) {
            return Err(Error::LockInUse(format!(
                "lock {name} now carries token {}, not {t}: it is someone else's; nothing released",
                lease.token
            )));
        }
        let released = self.delete_lease(name.as_str(), Some(lease.token))?;
        if released {
            self.audit(
                "lock.release",
                name,
                json!({ "token": lease.token, "owner": lease.owner }),
            )?;
        }
        Ok((Some(lease), released))
    }

    fn audit(&mut self, action: &str, name: &LockName, details: serde_json::Value) -> Result<()> {
        self.ring.run("auditing", |c| {
            audit::record(c, action, name.as_str(), details)
        })
    }

    /// Tries until the lock is won or `wait` has passed.
    pub fn acquire(&mut self, req: &Request, wait: Duration) -> Result<Held> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.try_acquire(req) {
                Err(Error::LockInUse(_)) if Instant::now() < deadline => {
                    std::thread::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    );
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Extends the lease by its ttl. Fails with `LockLost` once the lease expired, was taken
    /// over or force-released, or the session holding GET_LOCK is gone.
    pub fn renew(&mut self, held: &Held) -> Result<()> {
        let lost = |why: &str| {
            Error::LockLost(format!(
                "lock {} (token {}) was lost: {why}",
                held.name, held.token
            ))
        };
        if self.zk.is_some() {
            self.renew_node(held).map_err(|why| lost(&why))?;
        } else {
            let renewed = self.ring.run("renewing the lease", |c| {
                use mysql::prelude::Queryable;
                c.exec_drop(
                    "UPDATE locks SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND
                     WHERE name = ? AND token = ? AND expires_at > UTC_TIMESTAMP(6)",
                    (held.ttl.as_micros() as u64, held.name.as_str(), held.token),
                )?;
                Ok(c.affected_rows())
            });
            match renewed {
                Ok(1) => {}
                Ok(_) => return Err(lost("the lease expired, was taken over or was released")),
                Err(e) => return Err(lost(&e.to_string())),
            }
        }
        if let Some(server) = &held.session {
            let session = self.as_session(server);
            let mine: Result<Option<Option<i64>>> = self.session(session.as_ref()).and_then(|db| {
                db.exec_first(
                    "checking GET_LOCK",
                    "SELECT IS_USED_LOCK(?) = CONNECTION_ID()",
                    (held.name.as_str(),),
                )
            });
            if mine.ok().flatten().flatten() != Some(1) {
                return Err(lost("its GET_LOCK session was ended"));
            }
        }
        Ok(())
    }

    /// On ZooKeeper: extends our lock node's expiry, only while its holder child is ours and
    /// the lease has not expired. Err says why it is lost.
    fn renew_node(&mut self, held: &Held) -> std::result::Result<(), String> {
        let gone = "the lock node is gone or is someone else's";
        let child = held
            .zk_holder
            .as_deref()
            .ok_or("no holder child recorded")?;
        let own = self
            .own_record(held)
            .map_err(|e| e.to_string())?
            .ok_or(gone)?;
        // Past its last confirmed end the lease may have been judged expired and taken over;
        // the mysql backend refuses such a renewal too.
        if Instant::now() >= own.confirmed_until {
            return Err("the lease expired".into());
        }
        let mut record = own.record;
        record.extend(held.ttl);
        let store = self.zk.as_ref().ok_or("not on zookeeper")?;
        let began = Instant::now();
        let before = SystemTime::now();
        match store.update(held.name.as_str(), child, &record) {
            Ok(Some(written_ms)) => {
                clock::check(written_ms, before, SystemTime::now(), "ZooKeeper's clock")?;
                self.zk_records.insert(
                    held.name.to_string(),
                    OwnNode {
                        child: child.to_string(),
                        record,
                        confirmed_until: began + held.ttl,
                    },
                );
                Ok(())
            }
            Ok(None) => Err(gone.into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// On ZooKeeper, the record of a lock we hold: as we last wrote it, else read (None: the
    /// node is gone or is someone else's).
    fn own_record(&self, held: &Held) -> Result<Option<OwnNode>> {
        let Some(child) = held.zk_holder.as_deref() else {
            return Ok(None);
        };
        if let Some(own) = self.zk_records.get(held.name.as_str()) {
            if own.child == child {
                return Ok(Some(own.clone()));
            }
        }
        // Not written by this client (a clone of the grant): the lease holds for what the
        // ensemble's clock says is left of it, counted from before the read.
        let Some(store) = &self.zk else {
            return Ok(None);
        };
        let began = Instant::now();
        let Some(n) = store
            .read(held.name.as_str())?
            .filter(|n| n.holder.as_deref() == Some(child))
        else {
            return Ok(None);
        };
        let left = n.expires_ms().saturating_sub(store.now_ms()?).max(0) as u64;
        Ok(Some(OwnNode {
            child: child.to_string(),
            confirmed_until: began + Duration::from_millis(left),
            record: zk::Record {
                token: n.token,
                ..n.record
            },
        }))
    }

    /// Releases a lock this process holds. False when the lease was no longer ours.
    pub fn release(&mut self, held: &Held) -> Result<bool> {
        self.zk_records.remove(held.name.as_str());
        if let Some(store) = &self.zk {
            let deleted = match &held.zk_holder {
                Some(child) => store.release(held.name.as_str(), child)?,
                None => false,
            };
            if let Some(server) = &held.session {
                let session = self.as_session(server);
                let _ = self.release_lock(session.as_ref(), &held.name);
            }
            return Ok(deleted);
        }
        let on_ring = held.session.as_ref() == Some(&self.ring.server);
        if on_ring {
            // Lease and GET_LOCK on the same connection: one statement drops both. RELEASE_LOCK
            // is evaluated only for our own row; COALESCE keeps the condition true either way.
            let n = self.ring.run("releasing the lock", |c| {
                use mysql::prelude::Queryable;
                c.exec_drop(
                    "DELETE FROM locks WHERE name = ? AND token = ? AND COALESCE(RELEASE_LOCK(?), 0) >= 0",
                    (held.name.as_str(), held.token, held.name.as_str()),
                )?;
                Ok(c.affected_rows())
            })?;
            if n == 1 {
                return Ok(true);
            }
        }
        let deleted = self.delete_lease(held.name.as_str(), Some(held.token))?;
        if let Some(server) = &held.session {
            let session = self.as_session(server);
            // A killed session already dropped its lock.
            let _ = self.release_lock(session.as_ref(), &held.name);
        }
        Ok(deleted)
    }

    /// Records in our lease the process group of the command `lock run` started, so a later
    /// acquirer on this host can tell whether the command outlived us.
    pub fn record_command_group(&mut self, held: &Held, pgid: u32) -> Result<()> {
        if let (Some(_), Some(child)) = (&self.zk, held.zk_holder.clone()) {
            if let Some(mut own) = self.own_record(held)? {
                let record = &mut own.record;
                if let Value::Object(m) = &mut record.metadata {
                    m.insert("command_pgid".into(), pgid.into());
                } else {
                    record.metadata = json!({ "command_pgid": pgid });
                }
                let store = self.zk.as_ref().expect("matched above");
                // The write moves the node's mtime, but the lease this holder counts on stays
                // what its last renewal confirmed.
                if store
                    .update(held.name.as_str(), &child, &own.record)?
                    .is_some()
                {
                    self.zk_records.insert(held.name.to_string(), own);
                }
            }
            return Ok(());
        }
        self.ring.exec_drop(
            "recording the command's process group",
            "UPDATE locks SET metadata = JSON_SET(metadata, '$.command_pgid', ?) WHERE name = ? AND token = ?",
            (pgid, held.name.as_str(), held.token),
        )
    }

    /// Deletes a lease, only if it still carries `token` when one is given.
    pub fn delete_lease(&mut self, name: &str, token: Option<u64>) -> Result<bool> {
        if let Some(store) = &self.zk {
            let Some(node) = store.read(name)? else {
                return Ok(false);
            };
            if token.is_some_and(|t| t != node.token) {
                return Ok(false);
            }
            return store.delete_judged(&node);
        }
        let n = self.ring.run("deleting the lease", |c| {
            use mysql::prelude::Queryable;
            c.exec_drop(
                "DELETE FROM locks WHERE name = ? AND (? IS NULL OR token = ?)",
                (name, token, token),
            )?;
            Ok(c.affected_rows())
        })?;
        Ok(n == 1)
    }

    /// Ends whoever holds the lock: kills the GET_LOCK holder's session on the lock's server
    /// (whether it is a lease holder or an application job), deletes the lease, and audits it
    /// with the operator's `reason`.
    pub fn force_release(&mut self, name: &LockName, reason: &str) -> Result<ForceReleased> {
        if reason.trim().is_empty() {
            return Err(Error::Usage("--reason must say why".into()));
        }
        let lease = self.read(name.as_str())?;
        let on_zk = self.zk.is_some();
        let server = match lease.as_ref().and_then(|l| l.holder()) {
            Some((s, _)) => Some(s),
            // On ZooKeeper a lock that is not an account's has no GET_LOCK anywhere.
            None => self
                .lock_server(name)?
                .or_else(|| (!on_zk).then(|| self.ring.server.clone())),
        };
        let mut killed = Vec::new();
        if let Some(server) = server {
            let session = self.as_session(&server);
            let holder = match self.getlock_holder(session.as_ref(), name.as_str()) {
                Err(Error::Refused(_)) => None,
                other => other?,
            };
            if let Some(conn) = holder {
                if conn != self.ring_connection_id || session.is_some() {
                    killed.extend(self.kill_holder(&server, name.as_str(), conn)?);
                }
            }
        }
        let released = self.delete_lease(name.as_str(), lease.as_ref().map(|l| l.token))?;
        let stray_children = lease
            .as_ref()
            .and_then(|l| l.zk_node.as_ref())
            .map(|n| {
                n.children
                    .iter()
                    .filter(|c| Some(*c) != n.holder.as_ref())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let done = ForceReleased {
            name: name.to_string(),
            released,
            stray_children,
            token: lease.as_ref().map(|l| l.token),
            owner: lease.map(|l| l.owner),
            killed,
            backend: self.backend(),
        };
        self.audit(
            "lock.force-release",
            name,
            json!({ "reason": reason, "token": done.token, "owner": done.owner,
                    "killed": done.killed, "released": done.released }),
        )?;
        Ok(done)
    }

    /// Leases matching the filter, oldest expiry first.
    pub fn list(&mut self, filter: &ListFilter) -> Result<Vec<Lease>> {
        match &self.zk {
            Some(store) => list_nodes(store, filter),
            None => list(&mut self.ring, filter),
        }
    }

    /// Releases expired leases, `SWEEP_CHUNK` at a time by the `expires_at` index, at most
    /// `limit` (None: all).
    /// Each chunk is one statement; the sessions of their holders are ended. Two sweeps at once
    /// each delete distinct rows (a row is deleted once), so their counts add up.
    pub fn sweep(&mut self, limit: Option<u64>, dry_run: bool) -> Result<Vec<String>> {
        if self.zk.is_some() {
            return self.sweep_nodes(limit, dry_run);
        }
        let limit = limit.unwrap_or(u64::MAX);
        let chunk = SWEEP_CHUNK;
        let mut released = Vec::new();
        while (released.len() as u64) < limit {
            let n = chunk.min(limit - released.len() as u64);
            let rows: Vec<SweptRow> = if dry_run {
                self.ring.exec(
                    "listing expired leases",
                    "SELECT name, token, holder_server, holder_connection FROM locks
                     WHERE expires_at <= UTC_TIMESTAMP(6) ORDER BY expires_at LIMIT ? OFFSET ?",
                    (n, released.len() as u64),
                )?
            } else if self.ring_is_mariadb()? {
                self.ring.exec(
                    "sweeping expired leases",
                    "DELETE FROM locks WHERE expires_at <= UTC_TIMESTAMP(6) ORDER BY expires_at LIMIT ?
                     RETURNING name, token, holder_server, holder_connection",
                    (n,),
                )?
            } else {
                self.sweep_chunk_portable(n)?
            };
            let got = rows.len() as u64;
            if !dry_run && got > 0 {
                for (name, _, server, conn) in &rows {
                    if let (Some(s), Some(c)) = (
                        server.as_deref().and_then(|s| s.parse::<HostPort>().ok()),
                        conn,
                    ) {
                        // A holder that is unreachable has no session left to end.
                        let _ = self.kill_holder(&s, name, *c);
                    }
                }
                let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
                self.ring.run("auditing the sweep", |c| {
                    audit::record(
                        c,
                        "lock.sweep",
                        &format!("{got} locks"),
                        json!({ "released": names }),
                    )
                })?;
            }
            released.extend(rows.into_iter().map(|r| r.0));
            if got < n {
                break;
            }
        }
        Ok(released)
    }

    /// ZooLocker's periodic scan: every expired lock node is deleted with the holder child it
    /// was read with, so a lock released and re-acquired since the read (a new child) is never
    /// the one deleted. The GET_LOCK sessions of the swept holders are ended.
    fn sweep_nodes(&mut self, limit: Option<u64>, dry_run: bool) -> Result<Vec<String>> {
        let store = self.zk.as_ref().expect("called for the zookeeper backend");
        let expired: Vec<Lease> = list_nodes(
            store,
            &ListFilter {
                expired_only: true,
                ..Default::default()
            },
        )?
        .into_iter()
        .take(limit.map_or(usize::MAX, |l| l as usize))
        .collect();
        if dry_run {
            return Ok(expired.into_iter().map(|l| l.name).collect());
        }
        let mut released = Vec::new();
        for lease in expired {
            if !self.delete_judged(&lease)? {
                continue;
            }
            if let Some((server, conn)) = lease.holder() {
                let _ = self.kill_holder(&server, &lease.name, conn);
            }
            released.push(lease.name);
        }
        if !released.is_empty() {
            let n = released.len();
            self.ring.run("auditing the sweep", |c| {
                audit::record(
                    c,
                    "lock.sweep",
                    &format!("{n} locks"),
                    json!({ "released": released, "backend": "zookeeper" }),
                )
            })?;
        }
        Ok(released)
    }

    /// MySQL has no DELETE ... RETURNING: select the chunk, then delete exactly those rows
    /// that are still expired with the same token.
    fn sweep_chunk_portable(&mut self, n: u64) -> Result<Vec<SweptRow>> {
        self.ring.transaction("sweeping expired leases", |tx| {
            use mysql::prelude::Queryable;
            let rows: Vec<SweptRow> = tx.exec(
                "SELECT name, token, holder_server, holder_connection FROM locks
                 WHERE expires_at <= UTC_TIMESTAMP(6) ORDER BY expires_at LIMIT ? FOR UPDATE",
                (n,),
            )?;
            if !rows.is_empty() {
                let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
                tx.exec_drop(
                    format!(
                        "DELETE FROM locks WHERE name IN ({}) AND expires_at <= UTC_TIMESTAMP(6)",
                        vec!["?"; names.len()].join(",")
                    ),
                    names,
                )?;
            }
            Ok(rows)
        })
    }

    /// The GET_LOCK holder of `name` on its server right now, as (server, connection id).
    pub fn live_holder(
        &mut self,
        name: &LockName,
        lease: Option<&Lease>,
    ) -> Result<Option<(String, u64)>> {
        let server = match lease.and_then(|l| l.holder()) {
            Some((s, _)) => Some(s),
            None => self.lock_server(name)?,
        };
        if server.is_none() && self.zk.is_some() {
            return Ok(None);
        }
        let session = server.as_ref().and_then(|s| self.as_session(s));
        let shown = server
            .unwrap_or_else(|| self.ring.server.clone())
            .to_string();
        match self.getlock_holder(session.as_ref(), name.as_str()) {
            Ok(holder) => Ok(holder.map(|c| (shown, c))),
            // A record naming a server we do not log in to: its holder cannot be seen.
            Err(Error::Refused(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What an acquisition would meet now (`--dry-run`).
#[derive(Debug)]
pub struct Preview {
    pub lease: Option<Lease>,
    /// The session holding GET_LOCK: (server, connection id).
    pub getlock_holder: Option<(String, u64)>,
    /// Free now, or its holder may be taken over.
    pub free: bool,
}

#[derive(Debug, Serialize)]
pub struct ForceReleased {
    pub name: String,
    /// A lease was deleted.
    pub released: bool,
    pub token: Option<u64>,
    pub owner: Option<String>,
    /// The KILL statements run, with their server.
    pub killed: Vec<String>,
    /// On ZooKeeper: children of the lock node that were not its holder's (put there by hand
    /// or by another tool), removed with it.
    pub stray_children: Vec<String>,
    pub backend: &'static str,
}

/// Takes the lock (trying for up to `wait`), runs `f` while the keeper renews it, then
/// releases it. `f` asks the watch before each act; work it finished stands (its writes were
/// fenced), but a lost lock is never released (it is someone else's by then).
pub fn holding<T>(
    cfg: &Config,
    req: &Request,
    wait: Duration,
    f: impl FnOnce(&Held, &keeper::Watch) -> Result<T>,
) -> Result<T> {
    let mut client = LockClient::new(cfg)?;
    let granted = Instant::now();
    let held = client.acquire(req, wait)?;
    let (result, watch, client) = keeper::keeping(client, &held, granted, |w| f(&held, w));
    let mut client = client?;
    if let Err(lost) = watch.check() {
        return match result {
            Ok(v) => Ok(v),
            Err(e @ Error::LockLost(_)) => Err(e),
            Err(_) => Err(lost),
        };
    }
    let released = client.release(&held);
    let value = result?;
    released?;
    Ok(value)
}

/// Expired leases a sweep deletes per statement.
const SWEEP_CHUNK: u64 = 10_000;

/// Which leases `lock list` shows; the default shows all.
#[derive(Clone, Debug, Default)]
pub struct ListFilter<'a> {
    pub expired_only: bool,
    /// Names starting with this.
    pub prefix: Option<&'a str>,
    pub owner: Option<&'a str>,
}

/// Leases matching the filter, oldest expiry first, read on `ring`.
pub fn list(ring: &mut Db, filter: &ListFilter) -> Result<Vec<Lease>> {
    let ListFilter {
        expired_only,
        prefix,
        owner,
    } = *filter;
    let like = prefix.map(|p| {
        format!(
            "{}%",
            p.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let rows: Vec<LeaseRow> = ring.exec(
        "listing locks",
        &format!(
            "SELECT {LEASE_COLUMNS} FROM locks
             WHERE (? = 0 OR expires_at <= UTC_TIMESTAMP(6)) AND (? IS NULL OR name LIKE ?) AND (? IS NULL OR owner = ?)
             ORDER BY expires_at, name"
        ),
        (expired_only as u8, &like, &like, owner, owner),
    )?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Lock nodes matching the filter, oldest expiry first (the ring's listing order), judged by
/// the ensemble's clock read after them.
pub fn list_nodes(store: &ZkStore, filter: &ListFilter) -> Result<Vec<Lease>> {
    let nodes = store.read_all()?;
    let now = if nodes.is_empty() { 0 } else { store.now_ms()? };
    let mut leases: Vec<Lease> = nodes
        .into_iter()
        .map(|n| Lease::from_node(n, now))
        .filter(|l| {
            (!filter.expired_only || l.expired)
                && filter.prefix.is_none_or(|p| l.name.starts_with(p))
                && filter.owner.is_none_or(|o| l.owner == o)
        })
        .collect();
    // Both sides are the same fixed-width UTC format, so text order is time order.
    leases.sort_by(|a, b| {
        a.expires_at
            .cmp(&b.expires_at)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(leases)
}

/// What an operator does when a backend's next token is not above the highest one used.
pub fn token_remedy(backend: &LockBackend, floor: u64) -> String {
    match backend {
        LockBackend::Mysql => format!(
            "Raise the ring's sequence past it (in the ring database: ALTER TABLE locks AUTO_INCREMENT = {}), \
             or go back to [locks] backend = \"zookeeper\"",
            floor + 1
        ),
        LockBackend::Zookeeper(_) => "This ensemble's zxids are behind the tokens issued before \
             (a new ensemble?): keep [locks] backend = \"mysql\", or use the ensemble that issued them"
            .into(),
    }
}

/// A lock whose GET_LOCK is held on a given server.
#[derive(Clone, Debug, Serialize)]
pub struct HolderOn {
    pub name: String,
    pub owner: String,
    pub server: String,
    pub connection: u64,
}

/// The leases whose GET_LOCK session is on one of `servers` (a drain names them: those holders
/// lose their server with it).
pub fn holders_on(cfg: &Config, ring: &mut Db, servers: &[HostPort]) -> Result<Vec<HolderOn>> {
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    if let LockBackend::Zookeeper(z) = &cfg.locks {
        let names: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
        return Ok(list_nodes(&ZkStore::connect(z)?, &ListFilter::default())?
            .into_iter()
            .filter_map(|l| {
                let server = l.holder_server.filter(|s| names.contains(s))?;
                Some(HolderOn {
                    name: l.name,
                    owner: l.owner,
                    server,
                    connection: l.holder_connection?,
                })
            })
            .collect());
    }
    let names: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    let rows: Vec<(String, String, String, u64)> = ring.exec(
        "listing locks held on the drained servers",
        &format!(
            "SELECT name, owner, holder_server, holder_connection FROM locks
             WHERE holder_server IN ({}) AND holder_connection IS NOT NULL ORDER BY name",
            vec!["?"; names.len()].join(", ")
        ),
        names,
    )?;
    Ok(rows
        .into_iter()
        .map(|(name, owner, server, connection)| HolderOn {
            name,
            owner,
            server,
            connection,
        })
        .collect())
}

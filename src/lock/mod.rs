//! Locks: a lease (listable, with owner, expiry and a fencing token) united with MySQL's
//! `GET_LOCK` on the server where the data lives (atomic, honoured by application jobs that use
//! the classic protocol, and released by the server the moment the holder dies).
//!
//! The lease lives in a store (`store::LeaseStore`): the ring's `locks` table
//! (`ring_store`) or a ZooKeeper ensemble (`zk_leases`). The store keeps and judges records by
//! its own clock; this client decides on them in one place for both — who wins, when a holder
//! may be taken over (`lease::judge`), the token rule and the fences — and holds the GET_LOCK
//! interlock. One keeper renews (`keeper`), one runner runs commands (`crate::process`).

pub mod clock;
pub mod keeper;
pub mod lease;
pub mod ring_store;
pub mod run;
pub mod store;
pub mod zk;
pub mod zk_leases;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{Config, LockBackend};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::ring::{self, audit, directory, fences};
use crate::shard::routing;
use crate::types::{shown, HostPort, LockName};
use lease::{judge, Observed, Verdict};
use store::{Inserted, LeaseStore, Won};
pub use zk_leases::list_nodes;

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
    pub(crate) zk_node: Option<zk::Node>,
}

impl Lease {
    /// On ZooKeeper, children of the lock node that are not its holder's (put there by hand or
    /// by another tool): an explicit release removes them with it.
    pub fn stray_children(&self) -> Vec<String> {
        self.zk_node
            .as_ref()
            .map(|n| {
                n.children
                    .iter()
                    .filter(|c| Some(*c) != n.holder.as_ref())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
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
    /// The longest one read or write may block, where a holder must not wait longer than its
    /// lease (see `bound_io`).
    io_timeout: Option<Duration>,
    /// Where the leases are kept (`[locks] backend`).
    store: Box<dyn LeaseStore>,
    /// The highest token a move had used before this client's first grant (the shards' fences
    /// held no higher): no grant at or below it is handed out.
    token_floor: Option<u64>,
    /// Registered servers (the ring's and the shards'): the only ones this client logs in to,
    /// whatever a lease record names. Read when first needed.
    registered: Option<Vec<HostPort>>,
}

/// The lease store `[locks] backend` names.
pub fn open_store(cfg: &Config) -> Result<Box<dyn LeaseStore>> {
    Ok(match &cfg.locks {
        LockBackend::Mysql => Box::<ring_store::RingLeases>::default(),
        LockBackend::Zookeeper(z) => Box::new(zk_leases::ZkLeases::new(zk::ZkStore::connect(z)?)),
    })
}

impl<'c> LockClient<'c> {
    pub fn new(cfg: &'c Config) -> Result<LockClient<'c>> {
        LockClient::with_ring(cfg, ring::open(cfg)?)
    }

    pub fn with_ring(cfg: &'c Config, ring: Db) -> Result<LockClient<'c>> {
        Ok(LockClient {
            cfg,
            ring_connection_id: ring.connection_id(),
            ring,
            shards: HashMap::new(),
            io_timeout: None,
            store: open_store(cfg)?,
            token_floor: None,
            registered: None,
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

    /// A holder on a host whose clock is off refuses to act (the store says how it checks).
    fn check_clock(&mut self) -> Result<()> {
        self.store.check_clock(&mut self.ring)
    }

    /// How long one confirmed grant or renewal proves `held` is still ours (see the store).
    pub fn proof_for(&self, held: &Held) -> Duration {
        self.store.proof_for(held)
    }

    /// "mysql" or "zookeeper", as the lock verbs report it.
    pub fn backend(&self) -> &'static str {
        self.store.name()
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
        let in_ring = self.store.fences_in_ring();
        let fenced = |h: &Held| in_ring && h.name.account().is_some();
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
        let shards = directory::shards(&mut self.ring)?;
        // Just read: the servers shardctl may log in to, without asking the ring again.
        self.registered = Some(
            shards
                .iter()
                .flat_map(|s| s.servers.iter().map(|v| v.addr.clone()))
                .collect(),
        );
        let shard = shards
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
            .map(|s| s.addr.clone())
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
                .flat_map(|s| s.servers.iter().map(|v| v.addr.clone()))
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
        self.store.read(&mut self.ring, name)
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
        if server.is_none() && !self.store.getlock_on_ring() {
            // No GET_LOCK to take: the lock node alone decides.
            return self.insert_lease(req, None);
        }
        if server.is_none() {
            // The GET_LOCK lives on the ring connection itself: one statement takes it and
            // records the lease, so an uncontended lock costs what bare GET_LOCK costs.
            match self.insert_row(req, None, true)? {
                Inserted::Won(won) => {
                    if !req.hold_session {
                        self.release_lock(None, &req.name)?;
                    }
                    return Ok(self.held(req, None, won, false));
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
        let mut tokens: HashMap<String, Won> = HashMap::new();
        if !ours.is_empty() {
            match self
                .store
                .insert_many(&mut self.ring, &ours, (server, conn))
            {
                Ok(won) => tokens = won,
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
        let lost = self.store.renew_many(&mut self.ring, held)?;
        if lost > 0 {
            return Err(Error::LockLost(format!(
                "{lost} of {} account locks were lost (expired, taken over or released)",
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
        self.store.release_many(&mut self.ring, held)?;
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

    fn held(&self, req: &Request, server: Option<&HostPort>, won: Won, took_over: bool) -> Held {
        // On ZooKeeper a lock that is not an account's takes no GET_LOCK anywhere.
        let getlock_on = match server {
            Some(s) => Some(s),
            None if self.store.getlock_on_ring() => Some(&self.ring.server),
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

    /// Records the lease in the store. `server` is where the caller took GET_LOCK (None: on
    /// the ring connection where the store keeps it there, else nowhere); `fuse_getlock` takes
    /// it on the ring connection in the same statement.
    fn insert_row(
        &mut self,
        req: &Request,
        server: Option<&HostPort>,
        fuse_getlock: bool,
    ) -> Result<Inserted> {
        let holder = match (req.hold_session, server) {
            (false, _) => None,
            (true, Some(s)) => Some((s.clone(), self.session_connection_id(Some(s))?)),
            (true, None) if self.store.getlock_on_ring() => {
                Some((self.ring.server.clone(), self.ring_connection_id))
            }
            (true, None) => None,
        };
        self.store.insert(&mut self.ring, req, holder, fuse_getlock)
    }

    /// Deletes a stale lease being taken over, only if it is still the one judged.
    fn delete_judged(&mut self, existing: &Lease) -> Result<bool> {
        self.store.delete_judged(&mut self.ring, existing)
    }

    fn insert_lease(&mut self, req: &Request, server: Option<&HostPort>) -> Result<Held> {
        let mut took_over = false;
        for _ in 0..3 {
            if let Inserted::Won(won) = self.insert_row(req, server, false)? {
                return Ok(self.held(req, server, won, took_over));
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
                    if !self.delete_judged(&existing)? {
                        // It changed since it was judged (renewed, or someone else took it
                        // over first): judge it again.
                        continue;
                    }
                    self.ring.run("auditing the takeover", |c| {
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
        self.store
            .renew(&mut self.ring, held)
            .map_err(|why| lost(&why))?;
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

    /// Releases a lock this process holds. False when the lease was no longer ours.
    pub fn release(&mut self, held: &Held) -> Result<bool> {
        let released = self.store.release(&mut self.ring, held)?;
        if let (false, Some(server)) = (released.getlock_released, &held.session) {
            let session = self.as_session(server);
            // A killed session already dropped its lock.
            let _ = self.release_lock(session.as_ref(), &held.name);
        }
        Ok(released.deleted)
    }

    /// Records in our lease the process group of the command `lock run` started, so a later
    /// acquirer on this host can tell whether the command outlived us.
    pub fn record_command_group(&mut self, held: &Held, pgid: u32) -> Result<()> {
        self.store.record_command_group(&mut self.ring, held, pgid)
    }

    /// Deletes a lease, only if it still carries `token` when one is given.
    pub fn delete_lease(&mut self, name: &str, token: Option<u64>) -> Result<bool> {
        self.store.delete(&mut self.ring, name, token)
    }

    /// Ends whoever holds the lock: kills the GET_LOCK holder's session on the lock's server
    /// (whether it is a lease holder or an application job), deletes the lease, and audits it
    /// with the operator's `reason`.
    pub fn force_release(&mut self, name: &LockName, reason: &str) -> Result<ForceReleased> {
        if reason.trim().is_empty() {
            return Err(Error::Usage("--reason must say why".into()));
        }
        let lease = self.read(name.as_str())?;
        let on_ring = self.store.getlock_on_ring();
        let server = match lease.as_ref().and_then(|l| l.holder()) {
            Some((s, _)) => Some(s),
            // On ZooKeeper a lock that is not an account's has no GET_LOCK anywhere.
            None => self
                .lock_server(name)?
                .or_else(|| on_ring.then(|| self.ring.server.clone())),
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
        // What the operator asked to remove, as it is now (a renewal since the read does not
        // save it), children and all.
        let released = self.delete_lease(name.as_str(), lease.as_ref().map(|l| l.token))?;
        let stray_children = lease
            .as_ref()
            .map(Lease::stray_children)
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
        self.store.list(&mut self.ring, filter)
    }

    /// Releases expired leases, `SWEEP_CHUNK` at a time, at most `limit` (None: all), each
    /// only as it was judged expired; the sessions of their holders are ended, each chunk
    /// audited. Two sweeps at once each delete distinct leases (a lease is deleted once), so
    /// their counts add up.
    pub fn sweep(&mut self, limit: Option<u64>, dry_run: bool) -> Result<Vec<String>> {
        let limit = limit.unwrap_or(u64::MAX);
        let mut released = Vec::new();
        while (released.len() as u64) < limit {
            let n = SWEEP_CHUNK.min(limit - released.len() as u64);
            let done = released.len() as u64;
            let chunk = self.store.sweep_chunk(&mut self.ring, n, dry_run, done)?;
            let got = chunk.len() as u64;
            if !dry_run && got > 0 {
                for s in &chunk {
                    if let Some((server, conn)) = &s.holder {
                        // A holder that is unreachable has no session left to end.
                        let _ = self.kill_holder(server, &s.name, *conn);
                    }
                }
                let names: Vec<&str> = chunk.iter().map(|s| s.name.as_str()).collect();
                let backend = self.store.name();
                self.ring.run("auditing the sweep", |c| {
                    audit::record(
                        c,
                        "lock.sweep",
                        &format!("{got} locks"),
                        json!({ "released": names, "backend": backend }),
                    )
                })?;
            }
            released.extend(chunk.into_iter().map(|s| s.name));
            if got < n {
                break;
            }
        }
        Ok(released)
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
        if server.is_none() && !self.store.getlock_on_ring() {
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

/// Every lease of the configured backend matching the filter, read with `ring` open.
pub fn list(cfg: &Config, ring: &mut Db, filter: &ListFilter) -> Result<Vec<Lease>> {
    open_store(cfg)?.list(ring, filter)
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
    let names: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    let mut held: Vec<HolderOn> = list(cfg, ring, &ListFilter::default())?
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
        .collect();
    held.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(held)
}

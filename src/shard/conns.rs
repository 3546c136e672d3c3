//! One command's sessions on shard servers, kept from step to step and lent to whichever thread
//! needs one. A login is a handshake of several round trips and a thread on the server; a small
//! account's move used to open about 35 of them, one per step and stream.
//!
//! Every session is prepared the same way, so a session lent for a copy behaves like one lent
//! for a checksum: UTC, the write guard's pass, READ COMMITTED (each statement of a move names
//! its rows exactly, and neighbouring accounts' gap locks would otherwise deadlock concurrent
//! workers), index dives for long `IN` lists, and minimal row images (every migrated table has a
//! primary key, so a replica needs only it to find a deleted row).

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use crate::config::Config;
use crate::db::Db;
use crate::error::Result;
use crate::ring::{Changes, Ring};
use crate::types::HostPort;

/// The idle sessions of one command, per server.
pub struct Conns<'c> {
    cfg: &'c Config,
    /// Observes the command's directory writes (its ring sessions are opened with it).
    changes: Changes,
    idle: Mutex<HashMap<HostPort, Vec<Db>>>,
    /// What `once` already saw to on each server.
    done: Mutex<HashSet<(HostPort, &'static str)>>,
}

impl<'c> Conns<'c> {
    pub fn new(cfg: &'c Config, changes: &Changes) -> Conns<'c> {
        Conns {
            cfg,
            changes: changes.clone(),
            idle: Mutex::new(HashMap::new()),
            done: Mutex::new(HashSet::new()),
        }
    }

    /// Runs `f` (which makes sure of `what`, such as a table existing) on a session of `addr`
    /// the first time this command asks for `what` there; later asks cost nothing.
    pub fn once(
        &self,
        addr: &HostPort,
        what: &'static str,
        f: impl FnOnce(&mut Db) -> Result<()>,
    ) -> Result<()> {
        let key = (addr.clone(), what);
        if self.done.lock().is_ok_and(|d| d.contains(&key)) {
            return Ok(());
        }
        f(&mut *self.get(addr)?)?;
        if let Ok(mut d) = self.done.lock() {
            d.insert(key);
        }
        Ok(())
    }

    pub fn cfg(&self) -> &'c Config {
        self.cfg
    }

    /// A new ring session whose directory writes this command observes.
    pub fn ring(&self) -> Result<Ring> {
        Ring::open(self.cfg, &self.changes)
    }

    /// A session on `addr`: an idle one, else a new one. It comes back when dropped, unless an
    /// I/O error ended it or it was discarded.
    pub fn get(&self, addr: &HostPort) -> Result<Lent<'_>> {
        let idle = self
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.get_mut(addr).and_then(Vec::pop));
        let db = match idle {
            Some(db) => db,
            None => open(self.cfg, addr)?,
        };
        Ok(Lent {
            db: Some(db),
            home: &self.idle,
        })
    }

    /// The first of `servers` that answers, as `shard::first_answering` judges it; its session
    /// stays for the next step.
    pub fn first_answering(
        &self,
        shard: &str,
        servers: impl IntoIterator<Item = HostPort>,
    ) -> Result<HostPort> {
        super::first_answering(shard, servers, |addr| self.get(addr).map(|_| addr.clone()))
    }
}

fn open(cfg: &Config, addr: &HostPort) -> Result<Db> {
    let mut db = super::connect(cfg, addr)?;
    db.query_drop(
        "preparing the session",
        "SET SESSION tx_isolation = 'READ-COMMITTED', eq_range_index_dive_limit = 0",
    )?;
    // A server that does not allow it (an old one, or missing privileges) logs full images.
    let _ = db.query_drop(
        "choosing minimal row images",
        "SET SESSION binlog_row_image = 'MINIMAL'",
    );
    Ok(db)
}

/// A session lent from `Conns`.
pub struct Lent<'a> {
    db: Option<Db>,
    home: &'a Mutex<HashMap<HostPort, Vec<Db>>>,
}

impl Lent<'_> {
    /// Closes the session instead of giving it back (its state is not one to hand on).
    pub fn discard(mut self) {
        self.db = None;
    }

    /// The session, kept: a binary log stream consumes it.
    pub fn keep(mut self) -> Db {
        self.db
            .take()
            .expect("a lent session is present until dropped")
    }
}

impl Deref for Lent<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
            .as_ref()
            .expect("a lent session is present until dropped")
    }
}

impl DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut Db {
        self.db
            .as_mut()
            .expect("a lent session is present until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(db) = self.db.take().filter(|db| !db.is_lost()) {
            if let Ok(mut idle) = self.home.lock() {
                idle.entry(db.server.clone()).or_default().push(db);
            }
        }
    }
}

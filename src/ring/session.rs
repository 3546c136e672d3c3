//! A ring session that may change the directory, and the record of what it changed.
//!
//! Applications route by what the directory says, often through a cache of it. Every change
//! to a user's or a shard's entry therefore has a consequence after its commit (the cached
//! entry must go), and a forgotten consequence is a stale route. So the directory's writers
//! take a `Ring`, not a bare connection, and write only through `write`/`write_if`, whose
//! transaction must return what it changed: the session tells the command's `Observer`
//! right after the commit. The ring knows nothing of caches; the command layer decides who
//! observes (the routing cache's invalidator) and finishes the observer once, at its end.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use mysql::Transaction;

use crate::config::Config;
use crate::db::Db;
use crate::error::Result;

/// Directory entries a committed transaction changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Users placed, marked moving, flipped or given back.
    pub users: Vec<u64>,
    /// Shards whose state, weight, servers, a server's status or capacity changed, or that
    /// were added or removed.
    pub shards: Vec<u32>,
}

impl Changed {
    pub fn users(users: Vec<u64>) -> Changed {
        Changed {
            users,
            shards: Vec::new(),
        }
    }

    pub fn shards(shards: Vec<u32>) -> Changed {
        Changed {
            users: Vec::new(),
            shards,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.shards.is_empty()
    }
}

/// Told of every committed directory change, right after its commit, from whichever thread
/// committed it.
pub trait Observer: Send + Sync {
    fn committed(&self, changed: &Changed);
}

/// A command's observer, shared by all its ring sessions and threads (cheap to clone).
#[derive(Clone)]
pub struct Changes(Arc<dyn Observer>);

impl Changes {
    pub fn new(observer: Arc<dyn Observer>) -> Changes {
        Changes(observer)
    }

    fn committed(&self, changed: &Changed) {
        if !changed.is_empty() {
            self.0.committed(changed);
        }
    }
}

/// A ring session whose directory writes are observed. It derefs to the connection for
/// everything else (reads, the journal, the audit log).
pub struct Ring {
    db: Db,
    changes: Changes,
}

impl Ring {
    /// Opens a session (as `ring::open`) whose changes `changes` observes.
    pub fn open(cfg: &Config, changes: &Changes) -> Result<Ring> {
        Ok(Ring {
            db: super::open(cfg)?,
            changes: changes.clone(),
        })
    }

    /// Replaces a lost connection, keeping the observer.
    pub fn reconnect(&mut self, cfg: &Config) -> Result<()> {
        self.db = super::open(cfg)?;
        Ok(())
    }

    /// One transaction that changes the directory: `f` returns its value and what it changed,
    /// which is observed once the transaction has committed.
    pub fn write<T>(
        &mut self,
        doing: &str,
        f: impl FnOnce(&mut Transaction) -> mysql::Result<(T, Changed)>,
    ) -> Result<T> {
        let (value, changed) = self.db.transaction(doing, f)?;
        self.changes.committed(&changed);
        Ok(value)
    }

    /// As `write`, committed only if `f` returns `Some` (as `Db::transaction_if`).
    pub fn write_if<T>(
        &mut self,
        doing: &str,
        f: impl FnOnce(&mut Transaction) -> mysql::Result<Option<(T, Changed)>>,
    ) -> Result<Option<T>> {
        Ok(self.db.transaction_if(doing, f)?.map(|(value, changed)| {
            self.changes.committed(&changed);
            value
        }))
    }
}

impl Deref for Ring {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

impl DerefMut for Ring {
    fn deref_mut(&mut self) -> &mut Db {
        &mut self.db
    }
}

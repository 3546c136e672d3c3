//! The one lease-store interface both backends sit behind: a store keeps lease records, judges
//! them by its own clock (the one every client shares), and makes every delete conditional on
//! what was judged. It answers with records and outcomes; the client (`LockClient`) decides —
//! who wins, when a lease may be taken over (`lease::judge`), what is fenced and audited — and
//! holds the `GET_LOCK` interlock, which is the same on both backends.
//!
//! Every method gets the client's ring connection: the mysql store keeps its leases there, the
//! ZooKeeper store ignores it.

use std::collections::HashMap;

use super::{Held, Lease, ListFilter, Request};
use crate::db::Db;
use crate::error::Result;
use crate::types::HostPort;

/// A won grant: the token, and on ZooKeeper the lock node's holder child.
pub type Won = (u64, Option<String>);

pub enum Inserted {
    Won(Won),
    /// A lease with this name exists.
    Exists,
    /// A fused GET_LOCK was refused, so nothing was written (mysql only).
    Refused,
}

/// A lease a sweep removed (or would): its name, token, and the session holding its GET_LOCK.
pub struct Swept {
    pub name: String,
    pub token: u64,
    pub holder: Option<(HostPort, u64)>,
}

/// What a release did.
pub struct Released {
    /// The lease was ours and is gone.
    pub deleted: bool,
    /// The GET_LOCK on the ring connection went in the same statement (no second round trip).
    pub getlock_released: bool,
}

pub trait LeaseStore: Send {
    /// "mysql" or "zookeeper", as the lock verbs report it.
    fn name(&self) -> &'static str;

    /// Whether a lock that is not an account's takes GET_LOCK on the ring connection (mysql,
    /// where the lease row lives beside it) or nowhere (ZooKeeper: the node alone decides).
    fn getlock_on_ring(&self) -> bool;

    /// Whether a grant of an account lock raises the ring's fence: a lease kept outside the
    /// ring cannot take part in a directory change's transaction.
    fn fences_in_ring(&self) -> bool;

    /// How long one confirmed grant or renewal proves `held` is still ours: its ttl, or less
    /// where the store drops a holder sooner (ZooKeeper drops an ephemeral holder child when its
    /// session expires, which a frozen holder's does after the session timeout).
    fn proof_for(&self, held: &Held) -> std::time::Duration {
        held.ttl
    }

    /// Refuses when this host's clock is too far off the store's (see `clock`). Stores that
    /// check at every grant and renewal do nothing here.
    fn check_clock(&mut self, ring: &mut Db) -> Result<()>;

    /// Records a lease for `req`, held by `holder` (the GET_LOCK session: server, connection)
    /// when the holder keeps one. `fuse_getlock`: take GET_LOCK on the ring connection in the
    /// same statement (only where `getlock_on_ring`).
    fn insert(
        &mut self,
        ring: &mut Db,
        req: &Request,
        holder: Option<(HostPort, u64)>,
        fuse_getlock: bool,
    ) -> Result<Inserted>;

    /// Leases for many requests, all held on one session: the grants won, by name (a name
    /// already leased is left out, for the one-at-a-time path to judge).
    fn insert_many(
        &mut self,
        ring: &mut Db,
        reqs: &[&Request],
        holder: (&HostPort, u64),
    ) -> Result<HashMap<String, Won>>;

    /// The lease named `name`, judged by the store's clock.
    fn read(&mut self, ring: &mut Db, name: &str) -> Result<Option<Lease>>;

    /// Leases matching the filter, oldest expiry first.
    fn list(&mut self, ring: &mut Db, filter: &ListFilter) -> Result<Vec<Lease>>;

    /// Extends a lease we hold by its ttl; Err says why it is lost.
    fn renew(&mut self, ring: &mut Db, held: &Held) -> std::result::Result<(), String>;

    /// Extends many leases held on one session: how many were lost.
    fn renew_many(&mut self, ring: &mut Db, held: &[Held]) -> Result<usize>;

    /// Deletes a lease we hold (only if it is still ours).
    fn release(&mut self, ring: &mut Db, held: &Held) -> Result<Released>;

    /// Deletes many leases we hold.
    fn release_many(&mut self, ring: &mut Db, held: &[Held]) -> Result<()>;

    /// Deletes `lease` only if it is still exactly what was read and judged (its token, and on
    /// ZooKeeper its version and children). False: it changed since.
    fn delete_judged(&mut self, ring: &mut Db, lease: &Lease) -> Result<bool>;

    /// Deletes the lease named `name` as it is now, only if it carries `token` when given.
    fn delete(&mut self, ring: &mut Db, name: &str, token: Option<u64>) -> Result<bool>;

    /// Records in our lease the process group of the command run under it.
    fn record_command_group(&mut self, ring: &mut Db, held: &Held, pgid: u32) -> Result<()>;

    /// Removes up to `n` expired leases (a dry run: lists them, `offset` on), each deleted only
    /// as judged.
    fn sweep_chunk(
        &mut self,
        ring: &mut Db,
        n: u64,
        dry_run: bool,
        offset: u64,
    ) -> Result<Vec<Swept>>;
}

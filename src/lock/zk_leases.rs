//! The ZooKeeper lease store: each lease is a lock node (`zk::ZkStore` keeps the recipe), judged
//! by the ensemble's clock — the leader's `mtime` of the grant or last renewal plus the ttl,
//! against "now" read from the same clock — and deleted only at the version and with the
//! children it was judged with. Every grant and renewal carries the leader's time, so a holder
//! whose own clock is off finds out at once and refuses.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::clock;
use super::store::{Inserted, LeaseStore, Released, Swept, Won};
use super::zk::{self, ZkStore};
use super::{Held, Lease, ListFilter, Request};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::types::HostPort;

/// A lock node this client holds.
#[derive(Clone)]
struct OwnNode {
    child: String,
    record: zk::Record,
    /// Until when the lease certainly holds, on this host's monotonic clock: the start of the
    /// last confirmed write plus the ttl (the leader stamped it at or after that instant).
    confirmed_until: Instant,
}

pub struct ZkLeases {
    store: ZkStore,
    /// The record this client last wrote for each lock it holds, with the holder child it was
    /// written under: a renewal rewrites it without reading it back first.
    own: HashMap<String, OwnNode>,
}

impl ZkLeases {
    pub fn new(store: ZkStore) -> ZkLeases {
        ZkLeases {
            store,
            own: HashMap::new(),
        }
    }

    /// The record of a lock we hold: as we last wrote it, else read (None: the node is gone or
    /// is someone else's).
    fn own_record(&self, held: &Held) -> Result<Option<OwnNode>> {
        let Some(child) = held.zk_holder.as_deref() else {
            return Ok(None);
        };
        if let Some(own) = self.own.get(held.name.as_str()) {
            if own.child == child {
                return Ok(Some(own.clone()));
            }
        }
        // Not written by this client (a clone of the grant): the lease holds for what the
        // ensemble's clock says is left of it, counted from before the read.
        let began = Instant::now();
        let Some(n) = self
            .store
            .read(held.name.as_str())?
            .filter(|n| n.holder.as_deref() == Some(child))
        else {
            return Ok(None);
        };
        let left = n.expires_ms().saturating_sub(self.store.now_ms()?).max(0) as u64;
        Ok(Some(OwnNode {
            child: child.to_string(),
            confirmed_until: began + Duration::from_millis(left),
            record: zk::Record {
                token: n.token,
                ..n.record
            },
        }))
    }
}

/// A lock node judged at `now_ms` on the ensemble's clock: its times are the leader's
/// (created, last written), whatever the record's text says.
fn lease_of(node: zk::Node, now_ms: i64) -> Lease {
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

/// Lock nodes matching the filter, oldest expiry first (the ring's listing order), judged by
/// the ensemble's clock read after them.
pub fn list_nodes(store: &ZkStore, filter: &ListFilter) -> Result<Vec<Lease>> {
    let nodes = store.read_all()?;
    let now = if nodes.is_empty() { 0 } else { store.now_ms()? };
    let mut leases: Vec<Lease> = nodes
        .into_iter()
        .map(|n| lease_of(n, now))
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

impl ZkLeases {
    /// How long a write confirms a lease held with (or without) an ephemeral holder child.
    fn proof(&self, ttl: Duration, ephemeral: bool) -> Duration {
        if ephemeral {
            ttl.min(self.store.session_timeout())
        } else {
            ttl
        }
    }
}

impl LeaseStore for ZkLeases {
    fn name(&self) -> &'static str {
        "zookeeper"
    }

    fn proof_for(&self, held: &Held) -> Duration {
        let ephemeral = held
            .zk_holder
            .as_deref()
            .is_some_and(|c| c.starts_with("e-"));
        self.proof(held.ttl, ephemeral)
    }

    fn getlock_on_ring(&self) -> bool {
        false
    }

    fn fences_in_ring(&self) -> bool {
        true
    }

    fn check_clock(&mut self, _ring: &mut Db) -> Result<()> {
        // Checked at every grant and renewal, on the leader's time they carry.
        Ok(())
    }

    fn insert(
        &mut self,
        _ring: &mut Db,
        req: &Request,
        holder: Option<(HostPort, u64)>,
        _fuse_getlock: bool,
    ) -> Result<Inserted> {
        let record = zk::Record::starting_now(
            &req.owner,
            &req.purpose,
            req.ttl,
            holder.map(|(s, c)| (s.to_string(), c)),
            req.metadata.clone(),
        );
        let began = Instant::now();
        let before = SystemTime::now();
        Ok(
            match self
                .store
                .create(req.name.as_str(), &record, req.hold_session)?
            {
                zk::Created::Won(token, child, granted_ms) => {
                    let after = SystemTime::now();
                    if let Err(why) = clock::check(granted_ms, before, after, "ZooKeeper's clock") {
                        let _ = self.store.release(req.name.as_str(), &child);
                        return Err(Error::Refused(why));
                    }
                    let mut record = record;
                    record.token = token;
                    self.own.insert(
                        req.name.to_string(),
                        OwnNode {
                            child: child.clone(),
                            record,
                            confirmed_until: began + self.proof(req.ttl, req.hold_session),
                        },
                    );
                    Inserted::Won((token, Some(child)))
                }
                zk::Created::Exists => Inserted::Exists,
            },
        )
    }

    fn insert_many(
        &mut self,
        ring: &mut Db,
        reqs: &[&Request],
        (server, conn): (&HostPort, u64),
    ) -> Result<HashMap<String, Won>> {
        let mut won = HashMap::new();
        for r in reqs {
            if let Inserted::Won(w) = self.insert(ring, r, Some((server.clone(), conn)), false)? {
                won.insert(r.name.to_string(), w);
            }
        }
        Ok(won)
    }

    fn read(&mut self, _ring: &mut Db, name: &str) -> Result<Option<Lease>> {
        let Some(node) = self.store.read(name)? else {
            return Ok(None);
        };
        // Judged by the ensemble's clock, read after the node: a lease seen expired was.
        let now = self.store.now_ms()?;
        Ok(Some(lease_of(node, now)))
    }

    fn list(&mut self, _ring: &mut Db, filter: &ListFilter) -> Result<Vec<Lease>> {
        list_nodes(&self.store, filter)
    }

    fn renew(&mut self, _ring: &mut Db, held: &Held) -> std::result::Result<(), String> {
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
        let proof = self.proof_for(held);
        let began = Instant::now();
        let before = SystemTime::now();
        match self.store.update(held.name.as_str(), child, &record) {
            Ok(Some(written_ms)) => {
                clock::check(written_ms, before, SystemTime::now(), "ZooKeeper's clock")?;
                self.own.insert(
                    held.name.to_string(),
                    OwnNode {
                        child: child.to_string(),
                        record,
                        confirmed_until: began + proof,
                    },
                );
                Ok(())
            }
            Ok(None) => Err(gone.into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn renew_many(&mut self, ring: &mut Db, held: &[Held]) -> Result<usize> {
        Ok(held.iter().filter(|h| self.renew(ring, h).is_err()).count())
    }

    fn release(&mut self, _ring: &mut Db, held: &Held) -> Result<Released> {
        self.own.remove(held.name.as_str());
        let deleted = match &held.zk_holder {
            Some(child) => self.store.release(held.name.as_str(), child)?,
            None => false,
        };
        Ok(Released {
            deleted,
            getlock_released: false,
        })
    }

    fn release_many(&mut self, ring: &mut Db, held: &[Held]) -> Result<()> {
        for h in held {
            self.release(ring, h)?;
        }
        Ok(())
    }

    fn delete_judged(&mut self, ring: &mut Db, lease: &Lease) -> Result<bool> {
        match &lease.zk_node {
            Some(node) => self.store.delete_judged(node),
            None => self.delete(ring, &lease.name, Some(lease.token)),
        }
    }

    fn delete(&mut self, _ring: &mut Db, name: &str, token: Option<u64>) -> Result<bool> {
        let Some(node) = self.store.read(name)? else {
            return Ok(false);
        };
        if token.is_some_and(|t| t != node.token) {
            return Ok(false);
        }
        self.store.remove(&node)
    }

    fn record_command_group(&mut self, _ring: &mut Db, held: &Held, pgid: u32) -> Result<()> {
        let Some(child) = held.zk_holder.clone() else {
            return Ok(());
        };
        let Some(mut own) = self.own_record(held)? else {
            return Ok(());
        };
        let record = &mut own.record;
        if let Value::Object(m) = &mut record.metadata {
            m.insert("command_pgid".into(), pgid.into());
        } else {
            record.metadata = json!({ "command_pgid": pgid });
        }
        // The write moves the node's mtime, but the lease this holder counts on stays what its
        // last renewal confirmed.
        if self
            .store
            .update(held.name.as_str(), &child, &own.record)?
            .is_some()
        {
            self.own.insert(held.name.to_string(), own);
        }
        Ok(())
    }

    fn sweep_chunk(
        &mut self,
        _ring: &mut Db,
        n: u64,
        dry_run: bool,
        offset: u64,
    ) -> Result<Vec<Swept>> {
        let expired = list_nodes(
            &self.store,
            &ListFilter {
                expired_only: true,
                ..Default::default()
            },
        )?;
        let swept = |l: &Lease| Swept {
            name: l.name.clone(),
            token: l.token,
            holder: l
                .holder_server
                .as_deref()
                .and_then(|s| s.parse::<HostPort>().ok())
                .zip(l.holder_connection),
        };
        if dry_run {
            return Ok(expired
                .iter()
                .skip(offset as usize)
                .take(n as usize)
                .map(swept)
                .collect());
        }
        let mut out = Vec::new();
        for lease in expired.iter().take(n as usize) {
            // ZooLocker's periodic scan, made exact: a lock renewed, or released and acquired
            // again, since the read is not the one judged, and stays.
            if let Some(node) = &lease.zk_node {
                if self.store.delete_judged(node)? {
                    out.push(swept(lease));
                }
            }
        }
        Ok(out)
    }
}

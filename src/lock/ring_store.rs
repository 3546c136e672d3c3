//! The mysql lease store: each lease is a row of the ring's `locks` table, judged by the ring's
//! clock (`UTC_TIMESTAMP`). The winner is decided by one statement — the lease `INSERT`
//! (primary key on the name), which also draws the token from the table's auto-increment —
//! and nothing checks and then acts.

use std::collections::HashMap;
use std::time::SystemTime;

use mysql::prelude::Queryable;
use serde_json::Value;

use super::clock;
use super::store::{Inserted, LeaseStore, Released, Swept, Won};
use super::{Held, Lease, ListFilter, Request};
use crate::db::{retry_deadlocks, Db};
use crate::error::{kind_of, DbErrorKind, Error, Result};
use crate::ring::audit;
use crate::types::HostPort;

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

/// A swept row: name, token, and the session that held its GET_LOCK.
type SweptRow = (String, u64, Option<String>, Option<u64>);

fn swept(rows: Vec<SweptRow>) -> Vec<Swept> {
    rows.into_iter()
        .map(|(name, token, server, conn)| Swept {
            name,
            token,
            holder: server.and_then(|s| s.parse::<HostPort>().ok()).zip(conn),
        })
        .collect()
}

#[derive(Default)]
pub struct RingLeases {
    /// Whether the ring runs MariaDB (which has DELETE ... RETURNING); asked when first needed.
    mariadb: Option<bool>,
    /// Whether this host's clock was found within `clock::MAX_SKEW` of the ring's.
    clock_checked: bool,
}

impl RingLeases {
    fn is_mariadb(&mut self, ring: &mut Db) -> Result<bool> {
        if self.mariadb.is_none() {
            self.mariadb = Some(ring.version()?.contains("MariaDB"));
        }
        Ok(self.mariadb == Some(true))
    }

    /// MySQL has no DELETE ... RETURNING: select the chunk, then delete exactly those rows
    /// that are still expired.
    fn sweep_portable(ring: &mut Db, n: u64) -> Result<Vec<SweptRow>> {
        ring.transaction("sweeping expired leases", |tx| {
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
}

impl LeaseStore for RingLeases {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn getlock_on_ring(&self) -> bool {
        true
    }

    fn fences_in_ring(&self) -> bool {
        // A directory change checks the lease row itself, in its own transaction.
        false
    }

    /// Once per client, at its first grant: the leases are judged by the ring's clock, but a
    /// holder on a host whose clock is off refuses to act.
    fn check_clock(&mut self, ring: &mut Db) -> Result<()> {
        if self.clock_checked {
            return Ok(());
        }
        let before = SystemTime::now();
        let ring_ms: Option<i64> = ring.exec_first(
            "reading the ring's clock",
            "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
            (),
        )?;
        let after = SystemTime::now();
        if let Some(ms) = ring_ms {
            clock::check(ms, before, after, "the ring's clock").map_err(Error::Refused)?;
        }
        self.clock_checked = true;
        Ok(())
    }

    fn insert(
        &mut self,
        ring: &mut Db,
        req: &Request,
        holder: Option<(HostPort, u64)>,
        fuse_getlock: bool,
    ) -> Result<Inserted> {
        let (holder_server, holder_conn) = holder.map(|(s, c)| (s.to_string(), c)).unzip();
        // A VALUES insert (not INSERT ... SELECT) takes InnoDB's auto-increment mutex only
        // briefly, not the table-level AUTO-INC lock, so concurrent acquirers do not queue. To
        // fuse GET_LOCK in, a refused GET_LOCK makes `owner` NULL, which its NOT NULL column
        // rejects (error 1048) before anything is written.
        let owner = if fuse_getlock {
            "IF(GET_LOCK(?, 0) = 1, ?, NULL)"
        } else {
            "?"
        };
        let sql = format!(
            "INSERT INTO locks (name, owner, host, pid, purpose, acquired_at, expires_at, metadata,
                                holder_server, holder_connection)
             VALUES (?, {owner}, ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?, ?, ?)"
        );
        let mut attempt = || {
            ring.run("recording the lease", |c| {
                let mut params: Vec<mysql::Value> = vec![req.name.as_str().into()];
                if fuse_getlock {
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
                    Ok(()) => Ok(Inserted::Won((c.last_insert_id(), None))),
                    Err(e) if kind_of(&e) == DbErrorKind::Duplicate => Ok(Inserted::Exists),
                    Err(e) if fuse_getlock && kind_of(&e) == DbErrorKind::NullRefused => {
                        Ok(Inserted::Refused)
                    }
                    Err(e) => Err(e),
                }
            })
        };
        // A fused GET_LOCK is not undone by a rollback (and would nest if taken again): only a
        // plain insert is retried after a deadlock.
        if fuse_getlock {
            attempt()
        } else {
            retry_deadlocks(attempt)
        }
    }

    fn insert_many(
        &mut self,
        ring: &mut Db,
        reqs: &[&Request],
        (server, conn): (&HostPort, u64),
    ) -> Result<HashMap<String, Won>> {
        if reqs.is_empty() {
            return Ok(HashMap::new());
        }
        // IGNORE: a lease left by a dead holder keeps its row; that lock goes the slow way.
        let sql = format!(
            "INSERT IGNORE INTO locks (name, owner, host, pid, purpose, acquired_at, expires_at, metadata,
                                       holder_server, holder_connection)
             VALUES {}",
            vec!["(?, ?, ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?, ?, ?)"; reqs.len()].join(", ")
        );
        let host = audit::hostname();
        let pid = std::process::id();
        let mut params: Vec<mysql::Value> = Vec::with_capacity(reqs.len() * 9);
        for r in reqs {
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
            vec!["?"; reqs.len()].join(", ")
        );
        let mut look: Vec<mysql::Value> = reqs.iter().map(|r| r.name.as_str().into()).collect();
        look.extend([server.to_string().into(), conn.into()]);
        // One transaction, so a deadlock retried never leaves a first attempt's rows.
        let rows: Vec<(String, u64)> = retry_deadlocks(|| {
            ring.transaction("recording the leases", |c| {
                c.exec_drop(&sql, params.clone())?;
                c.exec(&lookup, look.clone())
            })
        })?;
        Ok(rows.into_iter().map(|(n, t)| (n, (t, None))).collect())
    }

    fn read(&mut self, ring: &mut Db, name: &str) -> Result<Option<Lease>> {
        let row: Option<LeaseRow> = ring.exec_first(
            "reading the lease",
            &format!("SELECT {LEASE_COLUMNS} FROM locks WHERE name = ?"),
            (name,),
        )?;
        Ok(row.map(|r| r.0))
    }

    fn list(&mut self, ring: &mut Db, filter: &ListFilter) -> Result<Vec<Lease>> {
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

    fn renew(&mut self, ring: &mut Db, held: &Held) -> std::result::Result<(), String> {
        let renewed = ring.run("renewing the lease", |c| {
            c.exec_drop(
                "UPDATE locks SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND
                 WHERE name = ? AND token = ? AND expires_at > UTC_TIMESTAMP(6)",
                (held.ttl.as_micros() as u64, held.name.as_str(), held.token),
            )?;
            Ok(c.affected_rows())
        });
        match renewed {
            Ok(1) => Ok(()),
            Ok(_) => Err("the lease expired, was taken over or was released".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn renew_many(&mut self, ring: &mut Db, held: &[Held]) -> Result<usize> {
        let Some(first) = held.first() else {
            return Ok(0);
        };
        let mut params = vec![mysql::Value::from(first.ttl.as_micros() as u64)];
        params.extend(held.iter().map(|h| mysql::Value::from(h.name.as_str())));
        params.extend(held.iter().map(|h| mysql::Value::from(h.token)));
        let sql = format!(
            "UPDATE locks SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND
             WHERE name IN ({0}) AND token IN ({0}) AND expires_at > UTC_TIMESTAMP(6)",
            vec!["?"; held.len()].join(", ")
        );
        let renewed = retry_deadlocks(|| {
            ring.run("renewing the leases", |c| {
                c.exec_drop(&sql, params.clone())?;
                Ok(c.affected_rows())
            })
        })?;
        Ok(held.len().saturating_sub(renewed as usize))
    }

    fn release(&mut self, ring: &mut Db, held: &Held) -> Result<Released> {
        if held.session.as_ref() == Some(&ring.server) {
            // Lease and GET_LOCK on the same connection: one statement drops both. RELEASE_LOCK
            // is evaluated only for our own row; COALESCE keeps the condition true either way.
            let n = ring.run("releasing the lock", |c| {
                c.exec_drop(
                    "DELETE FROM locks WHERE name = ? AND token = ? AND COALESCE(RELEASE_LOCK(?), 0) >= 0",
                    (held.name.as_str(), held.token, held.name.as_str()),
                )?;
                Ok(c.affected_rows())
            })?;
            if n == 1 {
                return Ok(Released {
                    deleted: true,
                    getlock_released: true,
                });
            }
        }
        Ok(Released {
            deleted: self.delete(ring, held.name.as_str(), Some(held.token))?,
            getlock_released: false,
        })
    }

    fn release_many(&mut self, ring: &mut Db, held: &[Held]) -> Result<()> {
        if held.is_empty() {
            return Ok(());
        }
        // By primary key (with the tokens, so only our own leases go): record locks only, no
        // gaps for a concurrent acquirer's insert to deadlock with.
        let mut params: Vec<mysql::Value> = held.iter().map(|h| h.name.as_str().into()).collect();
        params.extend(held.iter().map(|h| mysql::Value::from(h.token)));
        let sql = format!(
            "DELETE FROM locks WHERE name IN ({0}) AND token IN ({0})",
            vec!["?"; held.len()].join(", ")
        );
        retry_deadlocks(|| ring.exec_drop("releasing the leases", &sql, params.clone()))
    }

    fn delete_judged(&mut self, ring: &mut Db, lease: &Lease) -> Result<bool> {
        // The token names the lease; an expired one can no longer be renewed (the renewal
        // checks the expiry in its own statement), so what was judged is what is deleted.
        self.delete(ring, &lease.name, Some(lease.token))
    }

    fn delete(&mut self, ring: &mut Db, name: &str, token: Option<u64>) -> Result<bool> {
        let n = ring.run("deleting the lease", |c| {
            c.exec_drop(
                "DELETE FROM locks WHERE name = ? AND (? IS NULL OR token = ?)",
                (name, token, token),
            )?;
            Ok(c.affected_rows())
        })?;
        Ok(n == 1)
    }

    fn record_command_group(&mut self, ring: &mut Db, held: &Held, pgid: u32) -> Result<()> {
        ring.exec_drop(
            "recording the command's process group",
            "UPDATE locks SET metadata = JSON_SET(metadata, '$.command_pgid', ?) WHERE name = ? AND token = ?",
            (pgid, held.name.as_str(), held.token),
        )
    }

    fn sweep_chunk(
        &mut self,
        ring: &mut Db,
        n: u64,
        dry_run: bool,
        offset: u64,
    ) -> Result<Vec<Swept>> {
        let rows: Vec<SweptRow> = if dry_run {
            ring.exec(
                "listing expired leases",
                "SELECT name, token, holder_server, holder_connection FROM locks
                 WHERE expires_at <= UTC_TIMESTAMP(6) ORDER BY expires_at LIMIT ? OFFSET ?",
                (n, offset),
            )?
        } else if self.is_mariadb(ring)? {
            ring.exec(
                "sweeping expired leases",
                "DELETE FROM locks WHERE expires_at <= UTC_TIMESTAMP(6) ORDER BY expires_at LIMIT ?
                 RETURNING name, token, holder_server, holder_connection",
                (n,),
            )?
        } else {
            RingLeases::sweep_portable(ring, n)?
        };
        Ok(swept(rows))
    }
}

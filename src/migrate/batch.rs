//! Moving many small accounts between the same two shards at once, keeping every invariant of a
//! single migration per account: each account has its own lock, token, fence and journal entry,
//! goes through the same states, and is verified on its own checksums. What is shared is the
//! round trips: one GET_LOCK statement and one lease insert for all the locks, one copy
//! statement per table, one checksum query per table grouped by owner, one fenced flip.
//!
//! A crash anywhere leaves ordinary journal entries that `migrate resume` (or the next
//! `rebalance apply`) finishes or rolls back one by one.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::json;

use super::data::{self, Checksum, Table};
use super::engine::{self, Account, Group, Holder, Mover, Route, Side, Sums};
use super::state::{Course, Step};
use super::{describe_tables, lock_name};
use crate::config::Config;
use crate::db::{retry_deadlocks, Db};
use crate::error::{Error, Result};
use crate::lock::{Held, LockClient, Request};
use crate::output::Ui;
use crate::ring::directory::{self, Placed, Shard, UserState};
use crate::ring::{audit, Ring};
use crate::shard::conns::Conns;
use crate::shard::{fence, replica, routing};
use crate::types::HostPort;

/// What happened to each account of a batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub done: Vec<Moved>,
    /// Already where the caller sends them (a re-run, or a concurrent run moved them).
    pub already: Vec<u64>,
    /// Not moved because it was not where the caller said: (user, why).
    pub skipped: Vec<(u64, String)>,
    /// Not moved: (user, error). Lock-in-use failures are marked by `Error::LockInUse`.
    pub failed: Vec<(u64, Error)>,
}

/// One account moved.
#[derive(Clone, Debug)]
pub struct Moved {
    pub user: u64,
    pub rows: u64,
    /// `online` or `offline` (a batch always is).
    pub mode: String,
    /// From the `moving` mark to the flip's commit.
    pub read_only_seconds: Option<f64>,
}

impl BatchOutcome {
    fn fail_all(&mut self, users: &[u64], e: &Error) {
        for &u in users {
            self.failed.push((u, e.clone()));
        }
    }
}

/// Where an account is, against where a move expects it.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// Active on the source: it may move.
    Movable,
    /// On the destination already.
    Arrived,
    /// Anywhere else, or mid-migration: why it is skipped.
    Elsewhere(String),
}

/// Judges `placed` (shard id, state) of `user` for a move from `from` to `to`.
pub fn placement(user: u64, placed: Option<&Placed>, from: &Shard, to: &Shard) -> Placement {
    match placed {
        Some((s, UserState::Active)) if *s == from.id => Placement::Movable,
        Some((s, _)) if *s == to.id => Placement::Arrived,
        Some((s, st)) if *s == from.id => Placement::Elsewhere(format!(
            "{st} on {} (an unfinished migration: run `shardctl migrate resume {user}`)",
            from.name
        )),
        Some((s, _)) => {
            Placement::Elsewhere(format!("no longer on {} (now on shard #{s})", from.name))
        }
        None => Placement::Elsewhere("no longer in the directory".into()),
    }
}

/// One worker: its lock client and its ring session (the journal and the directory), kept from
/// batch to batch, and the command's shard sessions.
pub struct Worker<'c> {
    ui: &'c Ui,
    conns: &'c Conns<'c>,
    locks: LockClient<'c>,
    ring: Ring,
    tables: HashMap<(HostPort, HostPort), Vec<Table>>,
    lock_ttl: Duration,
    max_lag: Option<u64>,
}

impl<'c> Worker<'c> {
    /// `max_lag`: groups wait while a server lags more than this many seconds (None: never).
    pub fn new(
        ui: &'c Ui,
        conns: &'c Conns<'c>,
        lock_ttl: Duration,
        max_lag: Option<u64>,
    ) -> Result<Self> {
        Ok(Worker {
            ui,
            conns,
            locks: LockClient::new(conns.cfg())?,
            ring: conns.ring()?,
            tables: HashMap::new(),
            lock_ttl,
            max_lag,
        })
    }

    /// Moves `users` from `from` to `to`, grouped by the servers their routing names (each
    /// account is read from and written to its own server, as the application uses it).
    /// `phase` hears which step is running.
    pub fn move_batch(
        &mut self,
        from: &Shard,
        to: &Shard,
        users: &[u64],
        phase: &dyn Fn(&str),
    ) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        let route = |u: u64, s: &Shard| -> Vec<HostPort> {
            routing::candidates(u, &s.servers)
                .iter()
                .map(|v| v.addr.clone())
                .collect()
        };
        let mut groups: BTreeMap<(Vec<HostPort>, Vec<HostPort>), Vec<u64>> = BTreeMap::new();
        for &u in users {
            groups
                .entry((route(u, from), route(u, to)))
                .or_default()
                .push(u);
        }
        for ((src, dst), users) in groups {
            let servers = self
                .conns
                .first_answering(&from.name, src)
                .and_then(|s| Ok((s, self.conns.first_answering(&to.name, dst)?)));
            match servers {
                Ok((src, dst)) => {
                    let way = Way { from, to, src, dst };
                    self.move_group(way, &users, phase, &mut out)
                }
                Err(e) => out.fail_all(&users, &e),
            }
        }
        out
    }

    fn move_group(
        &mut self,
        way: Way,
        users: &[u64],
        phase: &dyn Fn(&str),
        out: &mut BatchOutcome,
    ) {
        let Way { from, to, src, dst } = way;
        if let Err(e) = self.wait_for_lag(from, to, phase) {
            return out.fail_all(users, &e);
        }
        phase("locking");
        let (owner, host, pid) = (audit::operator(), audit::hostname(), std::process::id());
        let purpose = format!("rebalance to {}", to.name);
        let reqs: Result<Vec<Request>> = users
            .iter()
            .map(|&u| {
                Ok(Request {
                    name: lock_name(u)?,
                    ttl: self.lock_ttl,
                    owner: owner.clone(),
                    purpose: purpose.clone(),
                    hold_session: true,
                    metadata: json!({ "purpose": purpose, "user": u, "pid": pid, "host": host }),
                })
            })
            .collect();
        let acquired = reqs.and_then(|reqs| self.locks.try_acquire_many(&reqs, &src));
        let acquired = match acquired {
            Ok(a) => a,
            Err(e) => return out.fail_all(users, &e),
        };
        let mut held = Vec::new();
        for (&u, r) in users.iter().zip(acquired) {
            match r {
                Ok(h) => held.push((u, h)),
                Err(e) => out.failed.push((u, e)),
            }
        }
        failpoint!(super::state::AFTER_LOCK);
        // Under the locks: which accounts are still where the caller saw them.
        let ids: Vec<u64> = held.iter().map(|h| h.0).collect();
        let placed = match directory::placements(&mut self.ring, &ids) {
            Ok(p) => p,
            Err(e) => {
                out.fail_all(&ids, &e);
                let held: Vec<Held> = held.into_iter().map(|h| h.1).collect();
                let _ = self.locks.release_many(&held);
                return;
            }
        };
        let (mut go, mut release) = (Vec::new(), Vec::new());
        for (u, h) in held {
            match placement(u, placed.get(&u), from, to) {
                Placement::Movable => go.push((u, h)),
                Placement::Arrived => {
                    out.already.push(u);
                    release.push(h);
                }
                Placement::Elsewhere(why) => {
                    out.skipped.push((u, why));
                    release.push(h);
                }
            }
        }
        // Rows already on the destination are no attempt of ours (those are resolved before
        // a batch starts): refuse those accounts rather than overwrite what may be the only
        // copy. (The engine looks again under the mark, for the group as a whole.)
        if !go.is_empty() {
            let ids: Vec<u64> = go.iter().map(|g| g.0).collect();
            let strays = self
                .tables(&src, &dst)
                .and_then(|tables| data::strays(&mut *self.conns.get(&dst)?, &tables, &ids));
            match strays {
                Ok(strays) => go.retain(|(u, h)| match strays.get(u) {
                    Some(rows) => {
                        out.failed.push((*u, data::strays_refusal(&dst, *u, rows)));
                        release.push(h.clone());
                        false
                    }
                    None => true,
                }),
                Err(e) => {
                    out.fail_all(&ids, &e);
                    release.extend(go.drain(..).map(|g| g.1));
                }
            }
        }
        if let Err(e) = self.locks.release_many(&release) {
            self.ui.warn(&format!("releasing account locks: {e}"));
        }
        if go.is_empty() {
            return;
        }
        let users: Vec<u64> = go.iter().map(|g| g.0).collect();
        let held: Vec<Held> = go.into_iter().map(|g| g.1).collect();
        match self.run_group(Way { from, to, src, dst }, &held, phase) {
            Ok(moved) => out.done.extend(moved),
            Err(e) => {
                let e = self.why_stopped(&held, e);
                out.fail_all(&users, &e)
            }
        }
        if let Err(e) = self.locks.release_many(&held) {
            self.ui.warn(&format!("releasing account locks: {e}"));
        }
    }

    fn run_group(&mut self, way: Way, held: &[Held], phase: &dyn Fn(&str)) -> Result<Vec<Moved>> {
        let Way { from, to, src, dst } = way;
        let tables = self.tables(&src, &dst)?;
        let accounts: Vec<Account> = held
            .iter()
            .map(|h| {
                Ok(Account {
                    user: h.name.account().ok_or_else(|| {
                        Error::inconsistent(format!("{} is not an account lock", h.name))
                    })?,
                    lock: h.name.clone(),
                    token: h.token,
                    migration_id: 0,
                })
            })
            .collect::<Result<_>>()?;
        let (ui, conns) = (self.ui, self.conns);
        let mut leases = Leases {
            locks: &mut self.locks,
            ring: &mut self.ring,
            cfg: self.conns.cfg(),
            held,
            renewed_at: Instant::now(),
            ttl: self.lock_ttl,
        };
        let route = Route {
            from,
            to,
            src,
            dst,
            tables,
        };
        let mut g = Group::new(
            ui,
            conns,
            route,
            accounts,
            Course::Offline { keep_source: false },
            &mut leases,
            phase,
        );
        g.journal_start(false, None)?;
        let outcome = engine::drive(&mut g, &mut Batched)?;
        if let Some(e) = outcome.cleanup_error {
            return Err(e);
        }
        let seconds = outcome.timings.get("total").copied().unwrap_or_default();
        let rows = |u: &u64| -> u64 {
            outcome
                .sums
                .get(u)
                .map(|t| t.values().map(|c| c.rows).sum())
                .unwrap_or(0)
        };
        let entries: Vec<(String, serde_json::Value)> = g
            .accounts
            .iter()
            .map(|a| {
                (
                    a.user.to_string(),
                    json!({ "from": from.name, "to": to.name, "state": "done", "rows": rows(&a.user),
                            "migration_id": a.migration_id, "batch_of": g.accounts.len(), "seconds": seconds }),
                )
            })
            .collect();
        let ring = g.holder.ring()?;
        retry_deadlocks(|| ring.run("auditing", |c| audit::record_many(c, "migrate", &entries)))?;
        Ok(g.accounts
            .iter()
            .map(|a| Moved {
                user: a.user,
                rows: rows(&a.user),
                mode: "offline".into(),
                read_only_seconds: outcome.read_only_seconds,
            })
            .collect())
    }

    /// A newer holder of these accounts' locks ends our sessions on the shards (a paused holder
    /// woken past its leases sees a connection dropped, not a fence): when the leases are no
    /// longer ours, that is the reason to report.
    fn why_stopped(&mut self, held: &[Held], e: Error) -> Error {
        if matches!(e, Error::LockLost(_)) {
            return e;
        }
        match self.locks.renew_many(held) {
            Err(Error::LockLost(lost)) => Error::LockLost(format!("{lost}; then: {e}")),
            _ => e,
        }
    }

    /// Waits while a server of either shard lags more than `max_lag` seconds.
    fn wait_for_lag(&mut self, from: &Shard, to: &Shard, phase: &dyn Fn(&str)) -> Result<()> {
        let Some(max_lag) = self.max_lag else {
            return Ok(());
        };
        let servers: Vec<HostPort> = from
            .servers
            .iter()
            .chain(&to.servers)
            .map(|s| s.addr.clone())
            .collect();
        loop {
            let mut lagging = None;
            for addr in &servers {
                // An unreachable server is not lagging here: the copy itself will say so.
                let Ok(mut db) = self.conns.get(addr) else {
                    continue;
                };
                if let Ok(Some(s)) = replica::status(&mut db) {
                    if s.lag_seconds.is_some_and(|l| l > max_lag) {
                        lagging = Some(addr.clone());
                    }
                }
            }
            let Some(addr) = lagging else {
                return Ok(());
            };
            if crate::signals::received() {
                return Err(Error::Failed(
                    "interrupted while waiting for replication".into(),
                ));
            }
            phase(&format!("waiting: {addr} lags"));
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn tables(&mut self, src: &HostPort, dst: &HostPort) -> Result<Vec<Table>> {
        let key = (src.clone(), dst.clone());
        if !self.tables.contains_key(&key) {
            let t = describe_tables(self.conns, src, dst)?;
            self.tables.insert(key.clone(), t);
        }
        Ok(self.tables[&key].clone())
    }
}

/// A group's way: between which shards, and by which of their servers.
struct Way<'a> {
    from: &'a Shard,
    to: &'a Shard,
    src: HostPort,
    dst: HostPort,
}

/// A batch's locks: held by the worker's lock client, renewed between steps once a third of
/// their time has passed (a batch takes well under a second, but waiting for replication may
/// stretch it).
struct Leases<'a, 'c> {
    locks: &'a mut LockClient<'c>,
    ring: &'a mut Ring,
    cfg: &'c Config,
    held: &'a [Held],
    renewed_at: Instant,
    ttl: Duration,
}

impl Holder for Leases<'_, '_> {
    /// The worker's session, opened again if an I/O error ended it.
    fn ring(&mut self) -> Result<&mut Ring> {
        if self.ring.is_lost() {
            self.ring.reconnect(self.cfg)?;
        }
        Ok(self.ring)
    }

    fn keep(&mut self) -> Result<()> {
        if self.renewed_at.elapsed() >= crate::lock::lease::renew_interval(self.ttl) {
            self.locks.renew_many(self.held)?;
            self.renewed_at = Instant::now();
        }
        Ok(())
    }
}

/// Moves a batch's rows: one statement per table for all the accounts, every write one fenced
/// transaction (a batch's copy is whole or absent).
struct Batched;

/// Runs `f` on a session of `addr` registered with the fence for every account of the group;
/// the registration ends with it (a session that failed is closed instead).
fn registered<T>(g: &Group, addr: &HostPort, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
    let tokens = g.tokens();
    let mut db = g.conns.get(addr)?;
    let done = retry_deadlocks(|| fence::register_all(&mut db, &tokens))
        .and_then(|()| f(&mut db))
        .and_then(|v| fence::unregister_all(&mut db).map(|()| v));
    if done.is_err() {
        db.discard();
    }
    done
}

impl<'a> Mover<'a> for Batched {
    fn copy(&mut self, g: &mut Group<'a>) -> Result<()> {
        let users = g.users();
        let tokens = g.tokens();
        let mut rows = Vec::with_capacity(g.tables.len());
        {
            let mut src = g.conns.get(&g.src)?;
            for t in &g.tables {
                rows.push(data::read_rows(&mut src, t, &users)?.1);
            }
        }
        registered(g, &g.dst, |db| {
            retry_deadlocks(|| {
                fence::fenced_all(db, &tokens, "copying", |tx| {
                    for (t, rows) in g.tables.iter().zip(&rows) {
                        data::replace_rows(tx, t, &users, rows)?;
                    }
                    Ok(())
                })
            })
        })?;
        engine::mid(Step::Copy);
        Ok(())
    }

    /// Both servers checksum at once, each on its own session, grouped by owner.
    fn verify(&mut self, g: &mut Group<'a>) -> Result<Sums> {
        let users = g.users();
        let checksums = |addr: &HostPort| -> Result<Vec<HashMap<u64, Checksum>>> {
            let mut db = g.conns.get(addr)?;
            g.tables
                .iter()
                .map(|t| data::checksums_by_owner(&mut db, t, &users))
                .collect()
        };
        let (source, dest) = std::thread::scope(|s| {
            let theirs = s.spawn(|| checksums(&g.src));
            let ours = checksums(&g.dst);
            (
                theirs
                    .join()
                    .unwrap_or_else(|_| Err(Error::Failed("a checksum thread panicked".into()))),
                ours,
            )
        });
        let (source, dest) = (source?, dest?);
        let mut sums = Sums::new();
        for ((t, source), dest) in g.tables.iter().zip(&source).zip(&dest) {
            for &u in &users {
                let (s, d) = (
                    source.get(&u).copied().unwrap_or(Checksum::EMPTY),
                    dest.get(&u).copied().unwrap_or(Checksum::EMPTY),
                );
                if s != d {
                    return Err(Error::Failed(format!(
                        "verification failed for user {u}, table {}: source {} rows (sum {}, xor {}), destination {} rows (sum {}, xor {})",
                        t.name, s.rows, s.sum, s.xor, d.rows, d.sum, d.xor
                    )));
                }
                sums.entry(u).or_default().insert(t.name.to_string(), s);
            }
        }
        Ok(sums)
    }

    /// Deletes the group's rows of every table on one side, in one fenced transaction.
    fn delete(&mut self, g: &mut Group<'a>, side: Side, step: Step) -> Result<()> {
        let addr = match side {
            Side::Source => &g.src,
            Side::Destination => &g.dst,
        };
        let users = g.users();
        let tokens = g.tokens();
        registered(g, addr, |db| {
            retry_deadlocks(|| {
                fence::fenced_all(db, &tokens, "deleting", |tx| {
                    g.tables
                        .iter()
                        .try_for_each(|t| data::delete_rows(tx, t, &users))
                })
            })
        })?;
        engine::mid(step);
        Ok(())
    }
}

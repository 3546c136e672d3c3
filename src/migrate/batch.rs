//! Moving many small accounts between the same two shards at once, keeping every invariant of a
//! single migration per account: each account has its own lock, token, fence and journal entry,
//! goes through the same states, and is verified on its own checksums. What is shared is the
//! round trips: one GET_LOCK statement and one lease insert for all the locks, one copy
//! statement per table, one checksum query per table grouped by owner, one fenced flip.
//!
//! A crash anywhere leaves ordinary journal entries that `migrate resume` (or the next
//! `rebalance apply`) finishes or rolls back one by one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::json;

use super::data::{self, Checksum, Table};
use super::state::State;
use super::{describe_tables, fenced_ring, lock_name, wait_for_positions};
use crate::config::Config;
use crate::db::placeholders;
use crate::db::{retry_deadlocks, Db};
use crate::error::{Error, Result};
use crate::lock::{Held, LockClient, Request};
use crate::output::Ui;
use crate::ring::directory::{self, Shard};
use crate::ring::{audit, fences};
use crate::shard::replica;
use crate::shard::{fence, guard, routing};
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

/// Checksums per owner of every table, in table order.
fn checksums(db: &mut Db, tables: &[Table], users: &[u64]) -> Result<Vec<HashMap<u64, Checksum>>> {
    tables
        .iter()
        .map(|t| data::checksums_by_owner(db, t, users))
        .collect()
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
pub fn placement(user: u64, placed: Option<&(u32, String)>, from: &Shard, to: &Shard) -> Placement {
    match placed {
        Some((s, st)) if *s == from.id && st == "active" => Placement::Movable,
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

/// One worker's mover: its lock client (whose ring connection also writes the journal) and
/// its shard connections, kept from batch to batch.
pub struct Mover<'c> {
    cfg: &'c Config,
    ui: &'c Ui,
    locks: LockClient<'c>,
    conns: HashMap<HostPort, Db>,
    tables: HashMap<(HostPort, HostPort), Vec<Table>>,
    fences_ready: HashSet<HostPort>,
    lock_ttl: Duration,
    max_lag: Option<u64>,
}

/// The accounts of one group with what they hold.
struct Group<'a> {
    from: &'a Shard,
    to: &'a Shard,
    src: HostPort,
    dst: HostPort,
    users: Vec<u64>,
    held: Vec<Held>,
    /// (user, token), for the fences.
    tokens: Vec<(u64, u64)>,
    migration_ids: Vec<u64>,
    /// When the leases were taken or last extended.
    renewed_at: Instant,
    /// Whether the copy began: only then may the accounts' rows on the destination be ours.
    copying: bool,
}

impl Group<'_> {
    fn grants(&self) -> Vec<fences::Grant<'_>> {
        self.held.iter().map(|h| (&h.name, h.token)).collect()
    }
}

impl<'c> Mover<'c> {
    /// `max_lag`: groups wait while a server lags more than this many seconds (None: never).
    pub fn new(
        cfg: &'c Config,
        ui: &'c Ui,
        lock_ttl: Duration,
        max_lag: Option<u64>,
    ) -> Result<Self> {
        Ok(Mover {
            cfg,
            ui,
            locks: LockClient::new(cfg)?,
            conns: HashMap::new(),
            tables: HashMap::new(),
            fences_ready: HashSet::new(),
            lock_ttl,
            max_lag,
        })
    }

    /// A connection to a shard server, reconnected if an earlier error lost it.
    fn conn(&mut self, addr: &HostPort) -> Result<&mut Db> {
        if self.conns.get(addr).is_none_or(Db::is_lost) {
            let mut db = crate::shard::connect(self.cfg, addr)?;
            // Minimal row images: every migrated table has a primary key (see `delete_stream`).
            let _ = db.query_drop(
                "choosing minimal row images",
                "SET SESSION binlog_row_image = 'MINIMAL'",
            );
            // Workers write neighbouring owners' rows of the same tables at once: under
            // REPEATABLE READ the gap locks of one's `DELETE ... WHERE owner IN` deadlock with
            // the other's inserts. Each statement here names its rows exactly; no gap needs
            // locking.
            db.query_drop(
                "choosing the isolation level",
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            )?;
            // `owner IN (...)` lists of 200 or more values make the optimizer guess from index
            // statistics instead of looking, and on a large table it guesses a full scan
            // (measured: 10x slower batches). 0: always look.
            let _ = db.query_drop(
                "choosing index dives",
                "SET SESSION eq_range_index_dive_limit = 0",
            );
            self.conns.insert(addr.clone(), db);
        }
        Ok(self.conns.get_mut(addr).expect("inserted above"))
    }

    fn ring(&mut self) -> &mut Db {
        self.locks.ring()
    }

    /// The first of `candidates` that answers.
    fn reachable(&mut self, candidates: &[HostPort], shard: &Shard) -> Result<HostPort> {
        crate::shard::first_answering(&shard.name, candidates.iter().cloned(), |addr| {
            self.conn(addr).map(|_| addr.clone())
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
                .map(|v| v.addr())
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
                .reachable(&src, from)
                .and_then(|s| Ok((s, self.reachable(&dst, to)?)));
            match servers {
                Ok((src, dst)) => self.move_group(from, to, src, dst, &users, phase, &mut out),
                Err(e) => out.fail_all(&users, &e),
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn move_group(
        &mut self,
        from: &Shard,
        to: &Shard,
        src: HostPort,
        dst: HostPort,
        users: &[u64],
        phase: &dyn Fn(&str),
        out: &mut BatchOutcome,
    ) {
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
        failpoint!("migrate.after_lock");
        // Under the locks: which accounts are still where the caller saw them.
        let ids: Vec<u64> = held.iter().map(|h| h.0).collect();
        let placed = match directory::placements(self.ring(), &ids) {
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
        // a batch starts): refuse those accounts rather than overwrite what may be the only copy.
        if !go.is_empty() {
            let ids: Vec<u64> = go.iter().map(|g| g.0).collect();
            let strays = self
                .tables(&src, &dst)
                .and_then(|tables| data::strays(self.conn(&dst)?, &tables, &ids));
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
        let mut group = Group {
            from,
            to,
            src,
            dst,
            users: go.iter().map(|g| g.0).collect(),
            tokens: go.iter().map(|g| (g.0, g.1.token)).collect(),
            held: go.into_iter().map(|g| g.1).collect(),
            migration_ids: Vec::new(),
            renewed_at: Instant::now(),
            copying: false,
        };
        match self.run_group(&mut group, phase) {
            Ok(rows) => out.done.extend(rows),
            Err(e) => {
                let e = self.why_stopped(&group, e);
                out.fail_all(&group.users, &e)
            }
        }
        for addr in [&group.src, &group.dst] {
            if let Some(db) = self.conns.get_mut(addr) {
                // A connection that failed is dropped, and its registrations with it.
                let _ = fence::unregister_all(db);
            }
        }
        if let Err(e) = self.locks.release_many(&group.held) {
            self.ui.warn(&format!("releasing account locks: {e}"));
        }
    }

    /// A newer holder of these accounts' locks ends our sessions on the shards (a paused holder
    /// woken past its leases sees a connection dropped, not a fence): when the leases are no
    /// longer ours, that is the reason to report.
    fn why_stopped(&mut self, g: &Group, e: Error) -> Error {
        if matches!(e, Error::LockLost(_)) {
            return e;
        }
        match self.locks.renew_many(&g.held) {
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
            .map(|s| s.addr())
            .collect();
        loop {
            let mut lagging = None;
            for addr in &servers {
                // An unreachable server is not lagging here: the copy itself will say so.
                let Ok(db) = self.conn(addr) else { continue };
                if let Ok(Some(s)) = replica::status(db) {
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
            let t = describe_tables(self.cfg, src, dst)?;
            self.tables.insert(key.clone(), t);
        }
        Ok(self.tables[&key].clone())
    }

    fn raise_fences(&mut self, addr: &HostPort, tokens: &[(u64, u64)]) -> Result<()> {
        let ready = self.fences_ready.contains(addr);
        let db = self.conn(addr)?;
        if !ready {
            fence::ensure_fence(db)?;
        }
        retry_deadlocks(|| fence::raise_fences(db, tokens))?;
        self.fences_ready.insert(addr.clone());
        Ok(())
    }

    /// Moves the group's journal entries to `state`, only while our tokens drive them.
    fn journal(&mut self, g: &Group, state: State, error: Option<&str>) -> Result<()> {
        let mut params: Vec<mysql::Value> = vec![state.as_str().into(), error.into()];
        params.extend(g.migration_ids.iter().map(|&i| mysql::Value::from(i)));
        params.extend(g.held.iter().map(|h| mysql::Value::from(h.token)));
        let finished = if state.is_final() {
            ", finished_at = UTC_TIMESTAMP(6)"
        } else {
            ""
        };
        let n = g.migration_ids.len();
        self.journal_update(
            format!(
                "UPDATE migrations SET state = ?, error = COALESCE(?, error), updated_at = UTC_TIMESTAMP(6){finished}
                 WHERE migration_id IN ({}) AND token IN ({})",
                placeholders(n),
                placeholders(n)
            ),
            params,
            n,
        )
    }

    /// Runs a journal UPDATE that must change all `n` entries: fewer means another holder
    /// took some over.
    fn journal_update(&mut self, sql: String, params: Vec<mysql::Value>, n: usize) -> Result<()> {
        let ring = self.ring();
        let changed = retry_deadlocks(|| {
            ring.run("updating the migration journal", |c| {
                c.exec_drop(&sql, params.clone())?;
                Ok(c.affected_rows())
            })
        })?;
        if changed != n as u64 {
            return Err(Error::LockLost(format!(
                "fenced out of the journal: {} of {n} migrations are driven by a newer lock holder now",
                n as u64 - changed
            )));
        }
        Ok(())
    }

    fn run_group(&mut self, g: &mut Group, phase: &dyn Fn(&str)) -> Result<Vec<Moved>> {
        let started = Instant::now();
        let tables = self.tables(&g.src, &g.dst)?;
        g.migration_ids = self.journal_start(g)?;
        phase("fencing");
        self.raise_fences(&g.src.clone(), &g.tokens)?;
        self.raise_fences(&g.dst.clone(), &g.tokens)?;
        let cfg = self.cfg;
        guard::open_destination(cfg, self.conn(&g.dst)?, &g.users)?;
        guard::close_source(cfg, self.conn(&g.src)?, &g.users, &g.to.name)?;
        self.directory_step(
            g,
            ("active", "moving"),
            None,
            Some(State::Moving),
            "the accounts were no longer all active on the source",
        )
        .inspect_err(|_| {
            // Not marked: not moving, so not guarded either.
            let cfg = self.cfg;
            let _ = self
                .conn(&g.src)
                .and_then(|db| guard::given_back(cfg, db, &g.users));
        })?;
        let sealed = Instant::now();
        failpoint!("migrate.after_moving");
        let copied = self.copy_and_verify(g, &tables, phase);
        let sums = match copied {
            Ok(s) => s,
            Err(e @ Error::LockLost(_)) => return Err(e),
            Err(e) => {
                let reached = self.abort(g, &tables, &e.to_string());
                self.ui.warn(&format!(
                    "{} accounts stopped before the flip and were {}: they stay on {}",
                    g.users.len(),
                    reached
                        .map(|s| s.to_string())
                        .unwrap_or_else(|e| format!("left for `migrate resume` ({e})")),
                    g.from.name
                ));
                return Err(e);
            }
        };
        self.journal_verified(g, &sums)?;
        failpoint!("migrate.after_verify");
        self.renew_if_due(g)?;
        phase("flipping");
        let flipped = self.directory_step(
            g,
            ("moving", "active"),
            Some(g.to.id),
            Some(State::Flipped),
            &format!(
                "the accounts were no longer all `moving` on the source, or shard `{}` is no longer active, at the flip",
                g.to.name
            ),
        );
        match flipped {
            Ok(()) => {}
            Err(e @ Error::LockLost(_)) => return Err(e),
            Err(e) => {
                // Nothing flipped: give the accounts back like any failure before the flip.
                let _ = self.abort(g, &tables, &e.to_string());
                return Err(e);
            }
        }
        let read_only = sealed.elapsed().as_secs_f64();
        failpoint!("migrate.after_flip");
        let cfg = self.cfg;
        if let Err(e) = self
            .conn(&g.src)
            .and_then(|db| guard::after_flip(cfg, db, &g.users, &g.to.name))
        {
            self.ui
                .warn(&format!("keeping the source guarded after the flip: {e}"));
        }
        self.journal(g, State::Cleaning, None)?;
        phase("cleaning up");
        self.delete_everywhere(&g.src.clone(), g, &tables, "migrate.cleanup_mid")?;
        failpoint!("migrate.after_cleanup");
        self.journal(g, State::Done, None)?;
        let seconds = started.elapsed().as_secs_f64();
        let rows: Vec<(u64, u64)> = g
            .users
            .iter()
            .map(|u| {
                (
                    *u,
                    sums.get(u)
                        .map(|t| t.values().map(|c| c.rows).sum())
                        .unwrap_or(0),
                )
            })
            .collect();
        let entries: Vec<(String, serde_json::Value)> = rows
            .iter()
            .zip(&g.migration_ids)
            .map(|((u, r), id)| {
                (
                    u.to_string(),
                    json!({ "from": g.from.name, "to": g.to.name, "state": "done", "rows": r,
                    "migration_id": id, "batch_of": g.users.len(), "seconds": seconds }),
                )
            })
            .collect();
        let ring = self.ring();
        retry_deadlocks(|| ring.run("auditing", |c| audit::record_many(c, "migrate", &entries)))?;
        Ok(rows
            .into_iter()
            .map(|(user, rows)| Moved {
                user,
                rows,
                mode: "offline".into(),
                read_only_seconds: Some(read_only),
            })
            .collect())
    }

    /// Journals the group's migrations as started; their ids, in the order of `g.users`.
    fn journal_start(&mut self, g: &Group) -> Result<Vec<u64>> {
        let mut params: Vec<mysql::Value> = Vec::new();
        for (u, t) in &g.tokens {
            params.extend([
                mysql::Value::from(*u),
                g.from.id.into(),
                g.to.id.into(),
                (*t).into(),
                g.src.to_string().into(),
                g.dst.to_string().into(),
            ]);
        }
        // By the user index (tokens alone are not indexed in the journal), then our tokens.
        let mut lookup: Vec<mysql::Value> = g.tokens.iter().map(|t| t.0.into()).collect();
        lookup.extend(g.tokens.iter().map(|t| mysql::Value::from(t.1)));
        let n = g.tokens.len();
        let ring = self.ring();
        // One transaction: a deadlock retried runs the insert again only after it was rolled
        // back, so the journal never holds an attempt twice.
        let rows: Vec<(u64, u64)> = retry_deadlocks(|| {
            ring.transaction("journaling the migrations", |c| {
            c.exec_drop(
                format!(
                    "INSERT INTO migrations (user_id, from_shard, to_shard, state, token, keep_source, source_server,
                                             dest_server, row_counts, started_at, updated_at)
                     VALUES {}",
                    vec!["(?, ?, ?, 'started', ?, 0, ?, ?, '{}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"; n].join(", ")
                ),
                params.clone(),
            )?;
            c.exec(
                format!(
                    "SELECT user_id, migration_id FROM migrations WHERE user_id IN ({0}) AND token IN ({0})",
                    placeholders(n)
                ),
                lookup.clone(),
            )
        })
        })?;
        let by_user: HashMap<u64, u64> = rows.into_iter().collect();
        g.users
            .iter()
            .map(|u| {
                by_user.get(u).copied().ok_or_else(|| {
                    Error::inconsistent(format!("the journal entry of user {u} was not found"))
                })
            })
            .collect()
    }

    /// One ring transaction fenced by the group's leases: every account of the group goes from
    /// state `was` to `now` (and to shard `to`, for the flip) on the source shard, or none does;
    /// their journal entries go to `journal` in the same transaction.
    fn directory_step(
        &mut self,
        g: &Group,
        (was, now): (&str, &str),
        to: Option<u32>,
        journal: Option<State>,
        unexpected: &str,
    ) -> Result<()> {
        let n = g.users.len();
        let mut moved: Vec<mysql::Value> = vec![
            to.unwrap_or(g.from.id).into(),
            now.into(),
            g.from.id.into(),
            was.into(),
        ];
        moved.extend(g.users.iter().map(|&u| mysql::Value::from(u)));
        let users_sql = format!(
            "UPDATE users SET shard_id = ?, state = ? WHERE shard_id = ? AND state = ? AND user_id IN ({})",
            placeholders(n)
        );
        let mut journaled: Vec<mysql::Value> = journal
            .map(|s| mysql::Value::from(s.as_str()))
            .into_iter()
            .collect();
        journaled.extend(g.migration_ids.iter().map(|&i| mysql::Value::from(i)));
        let journal_sql = format!(
            "UPDATE migrations SET state = ?, updated_at = UTC_TIMESTAMP(6) WHERE migration_id IN ({})",
            placeholders(g.migration_ids.len())
        );
        let grants = g.grants();
        let backend = &self.cfg.locks;
        let db = self.ring();
        let done = retry_deadlocks(|| {
            fenced_ring(db, backend, &grants, |tx| {
                if let Some(to) = to {
                    if !super::destination_active(tx, to)? {
                        return Ok(None);
                    }
                }
                tx.exec_drop(&users_sql, moved.clone())?;
                if tx.affected_rows() != n as u64 {
                    return Ok(None);
                }
                if journal.is_some() {
                    tx.exec_drop(&journal_sql, journaled.clone())?;
                }
                Ok(Some(()))
            })
        })?;
        done.ok_or_else(|| Error::Failed(format!("{unexpected}; nothing changed")))?;
        crate::cache::users_changed(self.cfg, &g.users);
        Ok(())
    }

    /// Catches the source up, copies every table (one fenced transaction each, replacing any
    /// partial copy), and compares per-account checksums computed by both servers.
    fn copy_and_verify(
        &mut self,
        g: &mut Group,
        tables: &[Table],
        phase: &dyn Fn(&str),
    ) -> Result<HashMap<u64, BTreeMap<String, Checksum>>> {
        self.catch_up(g.from, &g.src)?;
        g.copying = true;
        self.journal(g, State::Copying, None)?;
        self.renew_if_due(g)?;
        phase("copying");
        let mut rows = Vec::with_capacity(tables.len());
        for t in tables {
            rows.push(data::read_rows(self.conn(&g.src)?, t, &g.users)?.1);
        }
        let db = self.conn(&g.dst)?;
        retry_deadlocks(|| fence::register_all(db, &g.tokens))?;
        // One transaction for every table: a batch's copy is whole or absent.
        retry_deadlocks(|| {
            fence::fenced_all(db, &g.tokens, "copying", |tx| {
                for (t, rows) in tables.iter().zip(&rows) {
                    data::replace_rows(tx, t, &g.users, rows)?;
                }
                Ok(())
            })
        })?;
        drop(rows);
        failpoint!("migrate.copy_mid");
        failpoint!("migrate.after_copy");
        phase("verifying");
        // Both servers checksum at once, each on its own connection.
        let mut src = self.take_conn(&g.src)?;
        let mut dst = self.take_conn(&g.dst)?;
        let (source, dest) = std::thread::scope(|s| {
            let theirs = s.spawn(|| checksums(&mut src, tables, &g.users));
            let ours = checksums(&mut dst, tables, &g.users);
            (
                theirs
                    .join()
                    .unwrap_or_else(|_| Err(Error::Failed("a checksum thread panicked".into()))),
                ours,
            )
        });
        self.conns.insert(g.src.clone(), src);
        self.conns.insert(g.dst.clone(), dst);
        let (source, dest) = (source?, dest?);
        let none = Checksum {
            rows: 0,
            sum: 0,
            xor: 0,
        };
        let mut sums: HashMap<u64, BTreeMap<String, Checksum>> = HashMap::new();
        for ((t, source), dest) in tables.iter().zip(&source).zip(&dest) {
            for &u in &g.users {
                let (s, d) = (
                    source.get(&u).copied().unwrap_or(none),
                    dest.get(&u).copied().unwrap_or(none),
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

    /// A cached connection taken out of the cache (to be used on another thread); put it back.
    fn take_conn(&mut self, addr: &HostPort) -> Result<Db> {
        self.conn(addr)?;
        Ok(self.conns.remove(addr).expect("connected above"))
    }

    /// Waits until `server` has applied everything its shard peers wrote (as the single
    /// migration does), on the cached connections.
    fn catch_up(&mut self, shard: &Shard, server: &HostPort) -> Result<()> {
        let mut positions = Vec::new();
        for peer in shard
            .servers
            .iter()
            .map(|s| s.addr())
            .filter(|a| a != server)
        {
            let pos = self.conn(&peer).and_then(replica::binlog_position);
            positions.push((peer, pos));
        }
        let ui = self.ui;
        wait_for_positions(self.conn(server)?, positions, ui)
    }

    fn journal_verified(
        &mut self,
        g: &Group,
        sums: &HashMap<u64, BTreeMap<String, Checksum>>,
    ) -> Result<()> {
        // One statement: each entry gets its own counts and checksums.
        let mut params: Vec<mysql::Value> = Vec::new();
        let mut cases_rows = Vec::new();
        let mut cases_sums = Vec::new();
        let mut rows_params = Vec::new();
        for (u, id) in g.users.iter().zip(&g.migration_ids) {
            let s = sums.get(u).cloned().unwrap_or_default();
            let counts: BTreeMap<&String, u64> = s.iter().map(|(k, v)| (k, v.rows)).collect();
            cases_rows.push("WHEN ? THEN ?");
            rows_params.extend([mysql::Value::from(*id), json!(counts).to_string().into()]);
            cases_sums.push("WHEN ? THEN ?");
            params.extend([mysql::Value::from(*id), json!(s).to_string().into()]);
        }
        rows_params.extend(params);
        rows_params.extend(g.migration_ids.iter().map(|&i| mysql::Value::from(i)));
        rows_params.extend(g.held.iter().map(|h| mysql::Value::from(h.token)));
        let n = g.migration_ids.len();
        self.journal_update(
            format!(
                "UPDATE migrations SET state = 'verified', updated_at = UTC_TIMESTAMP(6),
                        row_counts = CASE migration_id {} END, checksums = CASE migration_id {} END
                 WHERE migration_id IN ({}) AND token IN ({})",
                cases_rows.join(" "),
                cases_sums.join(" "),
                placeholders(n),
                placeholders(n)
            ),
            rows_params,
            n,
        )
    }

    /// Deletes the group's rows of every table on `addr`, in one fenced transaction.
    fn delete_everywhere(
        &mut self,
        addr: &HostPort,
        g: &Group,
        tables: &[Table],
        failpoint_name: &'static str,
    ) -> Result<()> {
        let db = self.conn(addr)?;
        retry_deadlocks(|| fence::register_all(db, &g.tokens))?;
        retry_deadlocks(|| {
            fence::fenced_all(db, &g.tokens, "deleting", |tx| {
                tables
                    .iter()
                    .try_for_each(|t| data::delete_rows(tx, t, &g.users))
            })
        })?;
        // Used only where failpoints are compiled in.
        let _ = failpoint_name;
        failpoint!(failpoint_name);
        Ok(())
    }

    /// Before the flip, something failed: clear the destination and give the accounts back
    /// to the source. The state reached, as in a single migration's abort.
    fn abort(&mut self, g: &Group, tables: &[Table], cause: &str) -> Result<State> {
        let cleared = !g.copying
            || self
                .delete_everywhere(&g.dst.clone(), g, tables, "migrate.abort_mid")
                .is_ok();
        self.directory_step(
            g,
            ("moving", "active"),
            None,
            None,
            "the accounts were no longer all `moving` on the source",
        )?;
        let cfg = self.cfg;
        guard::given_back(cfg, self.conn(&g.src)?, &g.users)?;
        let state = if cleared {
            State::RolledBack
        } else {
            State::Aborted
        };
        self.journal(g, state, Some(cause))?;
        Ok(state)
    }

    /// Extends the group's leases once a third of their time has passed (a batch takes well
    /// under a second, but waiting for replication may stretch it).
    fn renew_if_due(&mut self, g: &mut Group) -> Result<()> {
        if g.renewed_at.elapsed() >= crate::lock::lease::renew_interval(self.lock_ttl) {
            self.locks.renew_many(&g.held)?;
            g.renewed_at = Instant::now();
        }
        Ok(())
    }
}

//! Moving one user between shards, so that at every instant the user's rows are whole on the
//! shard the directory names, whatever fails.
//!
//! The steps (each journaled in `migrations`, each safe to repeat): take the account lock; mark
//! the user `moving`; copy every per-user table; verify counts and checksums computed by both
//! servers; flip the directory in one ring transaction checked against the lock's token — the
//! commit point; delete the source's rows; release. Writes to shards are fenced by the token
//! where the data lives (`data::raise_fence`), writes to the ring by the lease row, so a holder
//! that lost its lock cannot change anything afterwards.

pub mod batch;
pub mod data;
pub mod online;
pub mod state;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde::Serialize;
use serde_json::json;

use crate::config::{Config, LockBackend};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::lock::{Held, LockClient, Request};
use crate::output::Ui;
use crate::ring::directory::{self, Shard};
use crate::ring::{self, audit, fences};
use crate::shard::replica;
use crate::shard::{fence, guard, routing};
use crate::types::{HostPort, LockName, ShardName};
use data::{Checksum, Control, Table};
pub use online::Mode;
use state::{resume_action, Resume, State};

/// Parallel streams per large table (value ranges of its key). On a busy pair of servers more
/// streams only contend; two keep both the reading and the writing side busy.
const STREAMS_PER_TABLE: usize = 2;

#[derive(Clone, Debug)]
pub struct Options {
    pub user: u64,
    pub to: ShardName,
    pub keep_source: bool,
    pub lock_ttl: Duration,
    pub max_lag: u64,
    pub dry_run: bool,
    /// Delete rows of the user already on the destination before the copy, though no
    /// migration of ours explains them (the operator checked them).
    pub clear_destination: bool,
    pub mode: Mode,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub user: u64,
    pub from: String,
    pub to: String,
    pub state: String,
    pub rows: BTreeMap<String, u64>,
    pub migration_id: Option<u64>,
    pub token: Option<u64>,
    pub checksums: BTreeMap<String, Checksum>,
    /// Seconds per step.
    pub timings: BTreeMap<String, f64>,
    /// `online` (writable while copying) or `offline`.
    pub mode: String,
    /// From the `moving` mark to the flip's commit; None before a flip.
    pub read_only_seconds: Option<f64>,
    pub note: String,
    /// The user moved, but the clean-up after the flip did not finish (`migrate resume`
    /// finishes it): partly done.
    #[serde(skip)]
    pub cleanup_pending: bool,
}

/// A journal row.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub migration_id: u64,
    pub user: u64,
    pub from: String,
    pub to: String,
    #[serde(skip)]
    pub from_id: u32,
    #[serde(skip)]
    pub to_id: u32,
    pub state: State,
    pub token: Option<u64>,
    pub keep_source: bool,
    pub source_server: Option<String>,
    pub dest_server: Option<String>,
    pub rows: serde_json::Value,
    pub error: Option<String>,
    /// `online` or `offline`.
    pub mode: String,
    /// Online: how far the source's binary log has been followed.
    pub binlog_position: Option<String>,
    pub read_only_seconds: Option<f64>,
    pub started_at: String,
    pub updated_at: String,
}

pub fn lock_name(user: u64) -> Result<LockName> {
    LockName::for_account(user, "MIGRATE").map_err(Error::Failed)
}

/// Which journal entries to read.
#[derive(Clone, Copy, Debug)]
pub enum Entries {
    /// Unfinished ones only (of one user, or of all).
    Unfinished(Option<u64>),
    /// One user's, or (None) all unfinished ones and the latest 50.
    Listing(Option<u64>),
}

/// Journal entries, newest first.
pub fn journal(db: &mut Db, which: Entries) -> Result<Vec<Entry>> {
    let (user, unfinished_only) = match which {
        Entries::Unfinished(u) => (u, true),
        Entries::Listing(u) => (u, false),
    };
    let rows: Vec<mysql::Row> = db.exec(
        "reading the migration journal",
        "SELECT m.migration_id, m.user_id, COALESCE(f.name, CONCAT('#', m.from_shard)), COALESCE(t.name, CONCAT('#', m.to_shard)),
                m.from_shard, m.to_shard, m.state, m.token, m.keep_source, m.source_server, m.dest_server,
                COALESCE(m.row_counts, '{}'), m.error,
                DATE_FORMAT(m.started_at, '%Y-%m-%dT%H:%i:%s.%fZ'), DATE_FORMAT(m.updated_at, '%Y-%m-%dT%H:%i:%s.%fZ'),
                m.mode, m.binlog_position, m.read_only_seconds
         FROM migrations m LEFT JOIN shards f ON f.shard_id = m.from_shard LEFT JOIN shards t ON t.shard_id = m.to_shard
         WHERE (? IS NULL OR m.user_id = ?) AND (? = 0 OR m.state NOT IN ('done', 'rolled_back'))
         ORDER BY m.migration_id DESC LIMIT 1000",
        (user, user, unfinished_only as u8),
    )?;
    rows.into_iter()
        .map(|mut r| {
            let mut take = |i: usize| r.take::<mysql::Value, _>(i).unwrap_or(mysql::Value::NULL);
            let text = |v: mysql::Value| mysql::from_value_opt::<Option<String>>(v).ok().flatten();
            let num = |v: mysql::Value| mysql::from_value_opt::<Option<u64>>(v).ok().flatten();
            let state: String = text(take(6)).unwrap_or_default();
            Ok(Entry {
                migration_id: num(take(0)).unwrap_or(0),
                user: num(take(1)).unwrap_or(0),
                from: text(take(2)).unwrap_or_default(),
                to: text(take(3)).unwrap_or_default(),
                from_id: num(take(4)).unwrap_or(0) as u32,
                to_id: num(take(5)).unwrap_or(0) as u32,
                state: state.parse().map_err(Error::inconsistent)?,
                token: num(take(7)),
                keep_source: num(take(8)) == Some(1),
                source_server: text(take(9)),
                dest_server: text(take(10)),
                rows: serde_json::from_str(&text(take(11)).unwrap_or_default()).unwrap_or_default(),
                error: text(take(12)),
                started_at: text(take(13)).unwrap_or_default(),
                updated_at: text(take(14)).unwrap_or_default(),
                mode: text(take(15)).unwrap_or_else(|| "offline".into()),
                binlog_position: text(take(16)),
                read_only_seconds: mysql::from_value_opt::<Option<f64>>(take(17))
                    .ok()
                    .flatten(),
            })
        })
        .collect()
}

/// Moves a journal entry to `state`, only while `token` drives it. False when it does not.
fn journal_state(
    db: &mut Db,
    id: u64,
    token: u64,
    state: State,
    extra: &[(&str, String)],
) -> Result<bool> {
    let mut sets = vec![
        "state = ?".to_string(),
        "updated_at = UTC_TIMESTAMP(6)".to_string(),
    ];
    let mut params: Vec<mysql::Value> = vec![state.as_str().into()];
    for (col, v) in extra {
        sets.push(format!("{col} = ?"));
        params.push(v.clone().into());
    }
    if state.is_final() {
        sets.push("finished_at = UTC_TIMESTAMP(6)".into());
    }
    params.extend([id.into(), token.into()]);
    let n = db.run("updating the migration journal", |c| {
        c.exec_drop(
            format!(
                "UPDATE migrations SET {} WHERE migration_id = ? AND token = ?",
                sets.join(", ")
            ),
            params,
        )?;
        Ok(c.affected_rows())
    })?;
    Ok(n == 1)
}

/// Runs one ring transaction after checking that the grants are all still current: the
/// directory changes are fenced where they are stored. With the `mysql` backend the leases
/// themselves are checked (and row-locked, so a takeover waits for this commit); with
/// ZooKeeper, the ring's lock fences (`ring::fences`). `f` returns None when the directory is
/// not as it expects; the transaction is then rolled back, and so is the result.
fn fenced_ring<T>(
    db: &mut Db,
    backend: &LockBackend,
    grants: &[fences::Grant],
    f: impl FnOnce(&mut mysql::Transaction) -> mysql::Result<Option<T>>,
) -> Result<Option<T>> {
    let tokens: Vec<mysql::Value> = grants.iter().map(|&(_, t)| t.into()).collect();
    let result = db.transaction_if("changing the directory", |tx| {
        let current = match backend {
            LockBackend::Mysql => tx
                .exec_first::<u64, _, _>(
                    format!(
                        "SELECT COUNT(*) FROM locks WHERE token IN ({}) AND expires_at > UTC_TIMESTAMP(6) FOR UPDATE",
                        crate::db::placeholders(tokens.len())
                    ),
                    tokens,
                )?
                .unwrap_or(0),
            LockBackend::Zookeeper(_) => {
                fences::raise(tx, grants)?;
                fences::current(tx, grants)?.len() as u64
            }
        };
        if current != grants.len() as u64 {
            return Ok(None);
        }
        Ok(Some(f(tx)?))
    })?;
    result.ok_or_else(|| match grants {
        [(_, token)] => Error::LockLost(format!(
            "the account lock was lost (token {token} is no longer current); nothing changed"
        )),
        _ => Error::LockLost(format!(
            "account locks were lost (not all of {} tokens are current); nothing changed",
            grants.len()
        )),
    })
}

/// The first of the shard's servers, in the user's routing order, that answers.
fn pick_server(
    cfg: &Config,
    user: u64,
    shard: &Shard,
    preferred: Option<&str>,
) -> Result<HostPort> {
    let mut order: Vec<HostPort> = routing::candidates(user, &shard.servers)
        .iter()
        .map(|s| s.addr())
        .collect();
    if let Some(p) = preferred.and_then(|p| p.parse::<HostPort>().ok()) {
        order.retain(|a| *a != p);
        order.insert(0, p);
    }
    crate::shard::first_answering(&shard.name, order, |addr| {
        crate::shard::connect(cfg, addr).map(|_| addr.clone())
    })
}

/// Waits until `server` has applied everything its shard peers wrote, so a copy read from it
/// misses none of the user's last writes (MariaDB GTIDs).
fn catch_up_with_peers(cfg: &Config, shard: &Shard, server: &HostPort, ui: &Ui) -> Result<()> {
    let positions = shard
        .servers
        .iter()
        .map(|s| s.addr())
        .filter(|a| a != server)
        .map(|peer| {
            let pos = crate::shard::connect(cfg, &peer)
                .and_then(|mut p| replica::binlog_position(&mut p));
            (peer, pos)
        })
        .collect();
    wait_for_positions(&mut crate::shard::connect(cfg, server)?, positions, ui)
}

/// Waits on `db` until it has applied each peer's binlog position (as read from the peer).
/// A peer whose position could not be read is warned about and not waited for.
fn wait_for_positions(
    db: &mut Db,
    positions: Vec<(HostPort, Result<Option<String>>)>,
    ui: &Ui,
) -> Result<()> {
    for (peer, pos) in positions {
        let pos = match pos {
            Ok(p) => p,
            Err(e) => {
                ui.warn(&format!(
                    "cannot read {peer}'s position ({e}); copying without waiting for it"
                ));
                continue;
            }
        };
        let Some(pos) = pos else {
            continue;
        };
        if !replica::wait_for(db, &pos, Duration::from_secs(60))? {
            return Err(Error::Refused(format!(
                "{} did not catch up with {peer} within 60s; nothing was copied",
                db.server
            )));
        }
    }
    Ok(())
}

/// Keeps `pause` set while any peer of `servers` lags more than `max_lag` seconds (None: never).
fn watch_lag(
    cfg: &Config,
    shards: &[&Shard],
    servers: &[HostPort],
    max_lag: Option<u64>,
    control: &Control,
    done: &AtomicBool,
) {
    let peers: Vec<HostPort> = shards
        .iter()
        .flat_map(|s| s.servers.iter().map(|v| v.addr()))
        .filter(|a| !servers.contains(a))
        .collect();
    let mut conns: Vec<Option<Db>> = peers
        .iter()
        .map(|p| crate::shard::connect(cfg, p).ok())
        .collect();
    while !done.load(Ordering::SeqCst) {
        let lagging = conns.iter_mut().any(|c| {
            c.as_mut()
                .and_then(|db| replica::status(db).ok().flatten())
                .is_some_and(|s| {
                    s.lag_seconds
                        .is_some_and(|l| max_lag.is_some_and(|m| l > m))
                })
        });
        control.pause.store(lagging, Ordering::SeqCst);
        // Check twice a second, but notice the end of the step at once (a small account's
        // step takes milliseconds).
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    control.pause.store(false, Ordering::SeqCst);
}

/// What one stream of a step does with its job.
type StreamWork<'a> = dyn Fn(&data::Job) -> Result<u64> + Sync + 'a;

/// Everything a running migration works with.
struct Run<'a> {
    cfg: &'a Config,
    ui: &'a Ui,
    user: u64,
    token: u64,
    migration_id: u64,
    from: &'a Shard,
    to: &'a Shard,
    src: HostPort,
    dst: HostPort,
    tables: Vec<Table>,
    /// Chunks wait while a peer lags more than this; None: they never wait (a roll-back).
    max_lag: Option<u64>,
    lock_lost: &'a AtomicBool,
    /// The migration's one ring connection (streams run on other threads, hence the mutex).
    ring: Mutex<&'a mut Db>,
    /// Whether the copy began: only then may rows of the user on the destination be ours.
    copying: AtomicBool,
}

impl Run<'_> {
    /// Runs `f` on the ring connection, reconnecting first if an I/O error ended it (the ring
    /// may have failed over to its other server between two steps).
    fn with_ring<T>(&self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        let mut db = self
            .ring
            .lock()
            .map_err(|_| Error::Failed("the ring connection's lock was poisoned".into()))?;
        if db.is_lost() {
            **db = ring::open(self.cfg)?;
        }
        f(&mut db)
    }

    fn set_state(&self, state: State, extra: &[(&str, String)]) -> Result<()> {
        if state == State::Copying {
            self.copying.store(true, Ordering::SeqCst);
        }
        if self.with_ring(|db| journal_state(db, self.migration_id, self.token, state, extra))? {
            Ok(())
        } else {
            Err(Error::LockLost(format!(
                "fenced out of the journal: migration #{} is driven by a newer lock holder now",
                self.migration_id
            )))
        }
    }

    /// Runs `work` for every (table, range) stream in parallel, with a progress bar and the lag
    /// watcher; returns rows per table.
    fn streams(
        &self,
        what: &str,
        total: u64,
        ranges_on: &HostPort,
        work: &StreamWork<'_>,
    ) -> Result<BTreeMap<String, u64>> {
        let control = Control::default();
        let done = AtomicBool::new(false);
        let mut jobs = Vec::new();
        {
            let mut db = crate::shard::connect(self.cfg, ranges_on)?;
            for t in &self.tables {
                let rows = data::count(&mut db, t, self.user)?;
                for r in data::ranges(&mut db, t, self.user, rows, STREAMS_PER_TABLE)? {
                    jobs.push((t, r));
                }
            }
        }
        let bar = self.ui.progress(total, what);
        let shards = [self.from, self.to];
        let servers = [self.src.clone(), self.dst.clone()];
        let results: Vec<(String, Result<u64>)> = std::thread::scope(|s| {
            s.spawn(|| watch_lag(self.cfg, &shards, &servers, self.max_lag, &control, &done));
            let handles: Vec<_> = jobs
                .iter()
                .map(|(t, r)| {
                    let control = &control;
                    let job = data::Job {
                        cfg: self.cfg,
                        table: t,
                        user: self.user,
                        token: self.token,
                        range: *r,
                        control,
                    };
                    (t.name.to_string(), s.spawn(move || work(&job)))
                })
                .collect();
            while !handles.iter().all(|(_, h)| h.is_finished()) {
                if self.lock_lost.load(Ordering::SeqCst) {
                    control.lock_lost.store(true, Ordering::SeqCst);
                }
                bar.set_position(control.rows.load(Ordering::Relaxed));
                bar.set_message(if control.pause.load(Ordering::SeqCst) {
                    format!("{what} (waiting for replication)")
                } else {
                    what.to_string()
                });
                std::thread::sleep(Duration::from_millis(5));
            }
            done.store(true, Ordering::SeqCst);
            handles
                .into_iter()
                .map(|(name, h)| {
                    (
                        name,
                        h.join().unwrap_or_else(|_| {
                            Err(Error::Failed("a copy thread panicked".into()))
                        }),
                    )
                })
                .collect()
        });
        bar.finish_and_clear();
        let mut per_table = BTreeMap::new();
        let mut first_error = None;
        for (name, r) in results {
            match r {
                Ok(n) => *per_table.entry(name).or_insert(0) += n,
                // A lost lock explains every other failure; report it first.
                Err(e @ Error::LockLost(_)) => first_error = Some(e),
                Err(e) => {
                    control.stop.store(true, Ordering::SeqCst);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(per_table),
        }
    }

    /// Deletes the user's rows of every table on `addr`.
    fn delete_all(
        &self,
        addr: &HostPort,
        what: &str,
        total: u64,
        failpoint_name: &'static str,
    ) -> Result<BTreeMap<String, u64>> {
        let hit = std::sync::Once::new();
        self.streams(what, total, addr, &|job| {
            data::delete_stream(job, addr, &|| {
                hit.call_once(|| {
                    // Used only where failpoints are compiled in.
                    let _ = failpoint_name;
                    failpoint!(failpoint_name);
                })
            })
        })
    }

    fn copy_all(&self, total: u64) -> Result<BTreeMap<String, u64>> {
        let hit = std::sync::Once::new();
        self.streams("copying", total, &self.src, &|job| {
            data::copy_stream(job, &self.src, &self.dst, &|| {
                hit.call_once(|| {
                    failpoint!("migrate.copy_mid");
                })
            })
        })
    }

    /// Checksums of every table on `addr`, tables in parallel.
    fn checksums(&self, addr: &HostPort) -> Result<BTreeMap<String, Checksum>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .tables
                .iter()
                .map(|t| {
                    let sum = move || {
                        crate::shard::connect(self.cfg, addr)
                            .and_then(|mut db| data::checksum(&mut db, t, self.user))
                    };
                    (t.name.to_string(), s.spawn(sum))
                })
                .collect();
            handles
                .into_iter()
                .map(|(n, h)| {
                    Ok((
                        n,
                        h.join().unwrap_or_else(|_| {
                            Err(Error::Failed("a checksum thread panicked".into()))
                        })?,
                    ))
                })
                .collect()
        })
    }

    /// Copies, checksumming the source meanwhile (the user is read-only, and the source is
    /// mostly idle while the destination writes), then checksums the destination and compares.
    fn copy_and_verify(
        &self,
        total: u64,
        report: &mut Report,
    ) -> Result<BTreeMap<String, Checksum>> {
        let mut step = Instant::now();
        let (copied, source) = std::thread::scope(|s| {
            let source = s.spawn(|| self.checksums(&self.src));
            let copied = self.copy_all(total);
            (
                copied,
                source
                    .join()
                    .unwrap_or_else(|_| Err(Error::Failed("a checksum thread panicked".into()))),
            )
        });
        copied?;
        failpoint!("migrate.after_copy");
        lap(report, "copy", &mut step);
        let source = source?;
        let dest = self.checksums(&self.dst)?;
        lap(report, "verify", &mut step);
        compare(&source, &dest)?;
        Ok(source)
    }

    /// Marks the user `moving`: guarded on the source first (where the guard is installed),
    /// then in the directory, with the journal, in one fenced ring transaction.
    fn seal(&self, src_db: &mut Db, lock: &LockName) -> Result<()> {
        guard::close_source(self.cfg, src_db, &[self.user], &self.to.name)?;
        let (user, from, id) = (self.user, self.from.id, self.migration_id);
        self.with_ring(|db| {
            fenced_ring(db, &self.cfg.locks, &[(lock, self.token)], |tx| {
                tx.exec_drop(
                    "UPDATE users SET state = 'moving' WHERE user_id = ? AND shard_id = ?",
                    (user, from),
                )?;
                tx.exec_drop("UPDATE migrations SET state = 'moving', updated_at = UTC_TIMESTAMP(6) WHERE migration_id = ?", (id,)).map(Some)
            })
        })
        .inspect_err(|_| {
            // Not marked: not moving, so not guarded either.
            let _ = guard::given_back(self.cfg, src_db, &[user]);
        })?;
        crate::cache::users_changed(self.cfg, &[user]);
        Ok(())
    }

    /// The online copy: the user stays writable while its rows are copied and the source's
    /// binary log is followed pass after pass, then the copy is verified against a snapshot
    /// of the source; `seal` then marks the user `moving` for the last pass, whose rows alone
    /// are verified (with the counts). Returns the checksums as of the flip.
    fn online(
        &self,
        src_db: &mut Db,
        total: u64,
        report: &mut Report,
        seal: &dyn Fn(&mut Db) -> Result<()>,
    ) -> Result<BTreeMap<String, Checksum>> {
        let mut step = Instant::now();
        let tail = online::Tail::new(self.cfg, &self.src, self.user, &self.tables)?;
        // The source first takes in what its peers wrote (their writes are not in its log),
        // then the position is taken before the copy reads anything: every change the copy
        // may miss is past it.
        catch_up_with_peers(self.cfg, self.from, &self.src, self.ui)?;
        let mut peers = self.peer_positions();
        let mut pos = online::current_position(src_db)?;
        self.set_state(State::Copying, &[("binlog_position", pos.to_string())])?;
        self.copy_all(total)?;
        failpoint!("migrate.after_copy");
        lap(report, "copy", &mut step);
        let mut dst = crate::shard::connect(self.cfg, &self.dst)?;
        let dst_conn = dst.raw("applying the binary log")?;
        fence::register(dst_conn, &self.dst, self.user, self.token)?;
        let mut passes = 0;
        loop {
            let started = Instant::now();
            let pass = self.follow(&tail, &pos, None, src_db, dst_conn, State::Copying)?;
            pos = pass.end.clone();
            passes += 1;
            if passes == 1 {
                failpoint!("migrate.catchup_mid");
            }
            if online::converged(passes, pass.keys(), started.elapsed()) {
                break;
            }
        }
        // Verified while still writable: the rows re-read through a snapshot make the
        // destination exactly the source as of the snapshot's position.
        let mut snap = online::Snapshot::open(self.cfg, &self.src)?;
        let at = snap.at.clone();
        pos = self
            .follow(
                &tail,
                &pos,
                Some(&at),
                &mut snap.db,
                dst_conn,
                State::Copying,
            )?
            .end;
        let verified = self.verify_against(&mut snap)?;
        drop(snap);
        // Most of the peers' logs are read now, while the user is writable.
        let mut peers_wrote = self.peers_wrote(&mut peers);
        lap(report, "catch_up", &mut step);
        seal(src_db)?;
        failpoint!("migrate.after_moving");
        // A write that passed the guard just before the mark may commit after the last pass
        // read the log: those transactions end first.
        let open = online::writing_transactions(src_db, self.user)?;
        if let Some(open) = online::wait_for_transactions(src_db, &open, WRITERS_GRACE)? {
            return Err(Error::Refused(format!(
                "transactions writing on {} since before the read-only mark did not end within {}s ({open}); the user stays on {}",
                self.src,
                WRITERS_GRACE.as_secs(),
                self.from.name
            )));
        }
        catch_up_with_peers(self.cfg, self.from, &self.src, self.ui)?;
        let mut snap = online::Snapshot::open(self.cfg, &self.src)?;
        let at = snap.at.clone();
        let keys = self.touched_by(&tail, &pos, Some(&at))?.touched;
        let before = self.checksums_of(&mut crate::shard::connect(self.cfg, &self.dst)?, &keys)?;
        online::apply(
            &mut snap.db,
            &self.dst,
            dst_conn,
            &self.tables,
            &keys,
            self.user,
            self.token,
        )?;
        failpoint!("migrate.apply_before_journal");
        self.set_state(State::Moving, &[("binlog_position", at.to_string())])?;
        failpoint!("migrate.read_only_window");
        peers_wrote |= self.peers_wrote(&mut peers);
        let sums = if peers_wrote {
            // A peer wrote to the user meanwhile (failover?): those rows are in the source's
            // data but not its log, so only a whole verification can vouch for the copy.
            self.ui.status(&format!(
                "user {}: a peer of {} wrote to it during the move; verifying every row",
                self.user, self.src
            ));
            self.verify_against(&mut snap)?
        } else {
            self.verify_changes(&mut snap, &keys, &verified, &before)?
        };
        lap(report, "read_only_catch_up_and_verify", &mut step);
        self.ui.status(&format!(
            "user {}: {passes} passes over the binary log while writable, {} rows in the read-only one",
            self.user,
            keys.iter().map(|k| k.len()).sum::<usize>()
        ));
        fence::unregister(dst_conn, self.user);
        Ok(sums)
    }

    /// The keys of the user's rows that the source's log from `pos` (to `until`) touched.
    fn touched_by(
        &self,
        tail: &online::Tail<'_>,
        pos: &online::Position,
        until: Option<&online::Position>,
    ) -> Result<online::Pass> {
        if self.lock_lost.load(Ordering::SeqCst) {
            return Err(Error::LockLost(
                "the migration lock was lost while following the binary log".into(),
            ));
        }
        if crate::signals::received() {
            return Err(Error::Failed(
                "interrupted while following the binary log; the journal is resumable".into(),
            ));
        }
        tail.pass(pos, until)
    }

    /// One pass over the source's binary log from `pos` (to `until`): the user's rows it
    /// touched copied again, read through `read`, then where it reached journaled (in
    /// `state`).
    fn follow(
        &self,
        tail: &online::Tail<'_>,
        pos: &online::Position,
        until: Option<&online::Position>,
        read: &mut Db,
        dst_conn: &mut mysql::Conn,
        state: State,
    ) -> Result<online::Pass> {
        let pass = self.touched_by(tail, pos, until)?;
        online::apply(
            read,
            &self.dst,
            dst_conn,
            &self.tables,
            &pass.touched,
            self.user,
            self.token,
        )?;
        failpoint!("migrate.apply_before_journal");
        self.set_state(state, &[("binlog_position", pass.end.to_string())])?;
        Ok(pass)
    }

    /// Checksums of the whole account: the source's through `snap`, the destination's at the
    /// same time; they must be equal.
    fn verify_against(&self, snap: &mut online::Snapshot) -> Result<BTreeMap<String, Checksum>> {
        let (source, dest) = std::thread::scope(|s| {
            let dest = s.spawn(|| self.checksums(&self.dst));
            let source: Result<BTreeMap<String, Checksum>> = self
                .tables
                .iter()
                .map(|t| {
                    Ok((
                        t.name.to_string(),
                        data::checksum(&mut snap.db, t, self.user)?,
                    ))
                })
                .collect();
            let dest = dest
                .join()
                .unwrap_or_else(|_| Err(Error::Failed("a checksum thread panicked".into())));
            (source, dest)
        });
        let source = source?;
        compare(&source, &dest?)?;
        Ok(source)
    }

    /// Checksums of the rows of `keys` on `db`, per table.
    fn checksums_of(&self, db: &mut Db, keys: &online::Touched) -> Result<Vec<Checksum>> {
        self.tables
            .iter()
            .zip(keys)
            .map(|(t, k)| online::checksum_keys(db, t, k, self.user))
            .collect()
    }

    /// The read-only window's verification: the rows the last pass copied are equal on both
    /// sides, and so are the counts; every other row was verified equal at the earlier
    /// snapshot and neither side changed it since. Returns the whole account's checksums,
    /// the verified ones with the changed rows swapped (`before`: theirs on the destination
    /// before the pass).
    fn verify_changes(
        &self,
        snap: &mut online::Snapshot,
        keys: &online::Touched,
        verified: &BTreeMap<String, Checksum>,
        before: &[Checksum],
    ) -> Result<BTreeMap<String, Checksum>> {
        let mut dst = crate::shard::connect(self.cfg, &self.dst)?;
        let source = self.checksums_of(&mut snap.db, keys)?;
        let dest = self.checksums_of(&mut dst, keys)?;
        let mut sums = BTreeMap::new();
        for (i, t) in self.tables.iter().enumerate() {
            let name = t.name.to_string();
            let changed = |side: &[Checksum]| BTreeMap::from([(name.clone(), side[i])]);
            compare(&changed(&source), &changed(&dest))?;
            let whole = verified[&name].minus(before[i]).plus(source[i]);
            let (here, there) = (
                data::count(&mut snap.db, t, self.user)?,
                data::count(&mut dst, t, self.user)?,
            );
            if here != there || here != whole.rows {
                return Err(Error::Failed(format!(
                    "verification failed for table {name}: the source has {here} rows, the destination {there}, the journal of changes says {}",
                    whole.rows
                )));
            }
            sums.insert(name, whole);
        }
        Ok(sums)
    }

    /// Where each peer of the source (the other servers of its shard) is in its own log.
    fn peer_positions(&self) -> Vec<(HostPort, Option<online::Position>)> {
        self.from
            .servers
            .iter()
            .map(|s| s.addr())
            .filter(|a| *a != self.src)
            .map(|p| {
                let pos = crate::shard::connect(self.cfg, &p)
                    .and_then(|mut db| online::current_position(&mut db))
                    .ok();
                (p, pos)
            })
            .collect()
    }

    /// Whether any peer wrote to the user since `peers` were read (or cannot tell); moves each
    /// peer's position on to where its log was read, so the next look reads only what is new.
    fn peers_wrote(&self, peers: &mut [(HostPort, Option<online::Position>)]) -> bool {
        let mut wrote = false;
        for (peer, pos) in peers.iter_mut() {
            let read = pos.as_ref().map(|from| {
                online::Tail::new(self.cfg, peer, self.user, &self.tables)
                    .and_then(|t| t.pass(from, None))
            });
            match read {
                Some(Ok(p)) => {
                    wrote |= p.keys() > 0;
                    *pos = Some(p.end);
                }
                _ => {
                    wrote = true;
                    *pos = None;
                }
            }
        }
        wrote
    }

    /// Before the flip, something failed: clear the destination and give the user back to the
    /// source. Returns the state reached (`rolled_back`, or `aborted` if the destination could
    /// not be cleared).
    fn abort(&self, cause: &str) -> Result<State> {
        // Before the copy began, whatever the destination holds is not ours to delete.
        let cleared = !self.copying.load(Ordering::SeqCst)
            || self
                .delete_all(&self.dst, "clearing", 0, "migrate.abort_mid")
                .is_ok();
        let user = self.user;
        let from = self.from.id;
        let name = lock_name(user)?;
        self.with_ring(|db| {
            fenced_ring(db, &self.cfg.locks, &[(&name, self.token)], |tx| {
                tx.exec_drop(
                    "UPDATE users SET state = 'active' WHERE user_id = ? AND shard_id = ?",
                    (user, from),
                )
                .map(Some)
            })
        })?;
        crate::cache::users_changed(self.cfg, &[user]);
        if guard::enabled(self.cfg) {
            guard::given_back(
                self.cfg,
                &mut crate::shard::connect(self.cfg, &self.src)?,
                &[user],
            )?;
        }
        let state = if cleared {
            State::RolledBack
        } else {
            State::Aborted
        };
        self.set_state(state, &[("error", cause.to_string())])?;
        Ok(state)
    }
}

/// How long transactions that were writing on the source at the `moving` mark may take to end.
const WRITERS_GRACE: Duration = Duration::from_secs(5);

/// Fails naming the first table whose checksums differ.
fn compare(source: &BTreeMap<String, Checksum>, dest: &BTreeMap<String, Checksum>) -> Result<()> {
    for (name, src) in source {
        let dst = dest.get(name).copied().unwrap_or(Checksum::EMPTY);
        if *src != dst {
            return Err(Error::Failed(format!(
                "verification failed for table {name}: source {} rows (sum {}, xor {}), destination {} rows (sum {}, xor {})",
                src.rows, src.sum, src.xor, dst.rows, dst.sum, dst.xor
            )));
        }
    }
    Ok(())
}

/// Records the time since `step` under `what`, and starts the next step.
fn lap(report: &mut Report, what: &str, step: &mut Instant) {
    report
        .timings
        .insert(what.into(), step.elapsed().as_secs_f64());
    *step = Instant::now();
}

/// Takes the account's migration lock, runs `f` while it is renewed, then releases it.
fn with_lock<T>(
    cfg: &Config,
    user: u64,
    ttl: Duration,
    purpose: &str,
    f: impl FnOnce(&Held, &AtomicBool) -> Result<T>,
) -> Result<T> {
    let req = Request {
        name: lock_name(user)?,
        ttl,
        owner: audit::operator(),
        purpose: purpose.into(),
        hold_session: true,
        metadata: json!({ "purpose": purpose, "user": user, "pid": std::process::id(), "host": audit::hostname() }),
    };
    crate::lock::holding(cfg, &req, Duration::ZERO, |held, lost| {
        failpoint!("migrate.after_lock");
        f(held, lost)
    })
}

fn shard_by_id(shards: &[Shard], id: u32) -> Result<&Shard> {
    shards
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| Error::inconsistent(format!("shard id {id} is not registered")))
}

fn describe_tables(cfg: &Config, src: &HostPort, dst: &HostPort) -> Result<Vec<Table>> {
    let mut s = crate::shard::connect(cfg, src)?;
    let mut d = crate::shard::connect(cfg, dst)?;
    cfg.shards
        .tables
        .iter()
        .map(|spec| {
            let a = data::describe(&mut s, &cfg.shards.database, spec)?;
            let b = data::describe(&mut d, &cfg.shards.database, spec)?;
            if a.columns != b.columns || a.primary_key != b.primary_key {
                return Err(Error::Refused(format!(
                    "table `{}` differs between {src} and {dst}; nothing was copied",
                    spec.name
                )));
            }
            Ok(a)
        })
        .collect()
}

/// Refuses (exit 4) when `dst` holds rows of `user` already.
fn refuse_strays(cfg: &Config, dst: &HostPort, tables: &[Table], user: u64) -> Result<()> {
    let found = data::strays(&mut crate::shard::connect(cfg, dst)?, tables, &[user])?;
    match found.get(&user) {
        Some(rows) => Err(data::strays_refusal(dst, user, rows)),
        None => Ok(()),
    }
}

/// Inside the flip's transaction: whether the destination shard is still registered and
/// active. Its row is read in share mode, so `shard remove` (which locks it for update) and
/// the flip cannot interleave.
fn destination_active(tx: &mut mysql::Transaction, shard_id: u32) -> mysql::Result<bool> {
    let state: Option<String> = tx.exec_first(
        "SELECT state FROM shards WHERE shard_id = ? LOCK IN SHARE MODE",
        (shard_id,),
    )?;
    Ok(state.as_deref() == Some("active"))
}

/// How a move goes, and (offline, where online was possible to ask for) why.
enum Chosen {
    Online,
    Offline(Option<String>),
}

/// Online where asked for or (auto) where the account is large enough, if the source's binary
/// log can be followed; `--mode online` where it cannot is refused before anything changes.
fn choose_mode(
    cfg: &Config,
    mode: Mode,
    rows: u64,
    from: &Shard,
    src: &HostPort,
) -> Result<Chosen> {
    if mode == Mode::Offline {
        return Ok(Chosen::Offline(None));
    }
    if mode == Mode::Auto && rows < cfg.migrate.online_min_rows {
        return Ok(Chosen::Offline(None));
    }
    let peers: Vec<HostPort> = from
        .servers
        .iter()
        .map(|s| s.addr())
        .filter(|a| a != src)
        .collect();
    let unmet = online::unmet_preconditions(cfg, &mut crate::shard::connect(cfg, src)?, &peers)?;
    match (unmet.is_empty(), mode) {
        (true, _) => Ok(Chosen::Online),
        (false, Mode::Online) => Err(Error::Refused(format!(
            "--mode online is refused, nothing changed: {} (`--mode auto` moves offline instead)",
            unmet.join("; ")
        ))),
        (false, _) => Ok(Chosen::Offline(Some(unmet.join("; ")))),
    }
}

/// Moves a user. Re-running after it finished changes nothing; after an interruption it first
/// resolves the unfinished journal entry, then moves.
pub fn migrate(cfg: &Config, opts: &Options, ui: &Ui) -> Result<Report> {
    let mut ring_db = ring::open(cfg)?;
    let shards = directory::shards(&mut ring_db)?;
    let to = shards
        .iter()
        .find(|s| s.name == opts.to.as_str())
        .ok_or_else(|| Error::NotFound(format!("no shard named `{}`", opts.to)))?;
    if directory::user(&mut ring_db, opts.user)?.is_none() {
        return Err(Error::NotFound(format!(
            "user {} is not assigned to any shard",
            opts.user
        )));
    }
    if !opts.dry_run {
        for entry in journal(&mut ring_db, Entries::Unfinished(Some(opts.user)))? {
            match resume_entry(cfg, &mut ring_db, &entry, opts.lock_ttl, ui) {
                Ok(r) => ui.status(&format!(
                    "migration #{} had been interrupted ({}); it is {} now",
                    r.migration_id, r.was, r.now
                )),
                // A live holder is driving it: it is in progress, not interrupted.
                Err(Error::LockInUse(why)) => {
                    return Err(Error::LockInUse(format!(
                        "migration #{} of user {} to {} is in progress ({}): {why}",
                        entry.migration_id, entry.user, entry.to, entry.state
                    )))
                }
                Err(e) => return Err(e),
            }
        }
    }
    let (from_id, state) = directory::user(&mut ring_db, opts.user)?.unwrap_or_default();
    let from = shard_by_id(&shards, from_id)?;
    let mut report = Report {
        user: opts.user,
        from: from.name.clone(),
        to: to.name.clone(),
        ..Report::default()
    };
    if from.id == to.id {
        report.state = "done".into();
        report.note = format!(
            "user {} already lives on {}; nothing to do",
            opts.user, to.name
        );
        return Ok(report);
    }
    if state != "active" {
        return Err(Error::Refused(format!(
            "user {} is `{state}` with no unfinished migration in the journal",
            opts.user
        )));
    }
    if to.state != directory::ShardState::Active {
        return Err(Error::Refused(format!(
            "shard `{}` is {}: only active shards take users",
            to.name, to.state
        )));
    }
    let src = pick_server(cfg, opts.user, from, None)?;
    let dst = pick_server(cfg, opts.user, to, None)?;
    let tables = describe_tables(cfg, &src, &dst)?;
    {
        let mut s = crate::shard::connect(cfg, &src)?;
        for t in &tables {
            report
                .rows
                .insert(t.name.to_string(), data::count(&mut s, t, opts.user)?);
        }
    }
    if !opts.clear_destination {
        refuse_strays(cfg, &dst, &tables, opts.user)?;
    }
    let total: u64 = report.rows.values().sum();
    let online = match choose_mode(cfg, opts.mode, total, from, &src)? {
        Chosen::Online => true,
        Chosen::Offline(why) => {
            if let Some(why) = why {
                ui.status(&format!("moving user {} offline: {why}", opts.user));
                report.note = format!("offline: {why}");
            }
            false
        }
    };
    report.mode = if online { "online" } else { "offline" }.into();
    if opts.dry_run {
        report.state = "planned".into();
        report.note = format!("would copy {} from {src} to {dst}", report.mode);
        return Ok(report);
    }
    let started = Instant::now();
    let outcome = with_lock(
        cfg,
        opts.user,
        opts.lock_ttl,
        &format!("migrate to {}", to.name),
        |held, lost| {
            let migration_id = ring_db.run("journaling the migration", |c| {
            c.exec_drop(
                "INSERT INTO migrations (user_id, from_shard, to_shard, state, token, keep_source, source_server, dest_server,
                                         row_counts, mode, started_at, updated_at)
                 VALUES (?, ?, ?, 'started', ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
                (opts.user, from.id, to.id, held.token, opts.keep_source, src.to_string(), dst.to_string(), json!(report.rows).to_string(), report.mode.clone()),
            )?;
            Ok(c.last_insert_id())
        })?;
            report.migration_id = Some(migration_id);
            report.token = Some(held.token);
            let run = Run {
                cfg,
                ui,
                user: opts.user,
                token: held.token,
                migration_id,
                from,
                to,
                src: src.clone(),
                dst: dst.clone(),
                tables,
                max_lag: Some(opts.max_lag),
                lock_lost: lost,
                ring: Mutex::new(&mut ring_db),
                copying: AtomicBool::new(false),
            };
            // One session per server for the fence and the guard rows.
            let mut src_db = crate::shard::connect(cfg, &src)?;
            let mut dst_db = crate::shard::connect(cfg, &dst)?;
            for db in [&mut src_db, &mut dst_db] {
                fence::raise_fence(db, opts.user, held.token)?;
            }
            guard::open_destination(cfg, &mut dst_db, &[opts.user])?;
            let sealed_at = std::cell::Cell::new(None);
            let seal = |src_db: &mut Db| -> Result<()> {
                run.seal(src_db, &held.name)?;
                sealed_at.set(Some(Instant::now()));
                Ok(())
            };
            let clear_or_refuse = || {
                // Looked for again under the lock: every earlier attempt of ours has been
                // resolved, so whatever is there now is not ours.
                if opts.clear_destination {
                    run.delete_all(&dst, "clearing", 0, "migrate.clear_mid")
                        .map(|_| ())
                } else {
                    refuse_strays(cfg, &dst, &run.tables, opts.user)
                }
            };
            let before_flip = if online {
                (|| -> Result<BTreeMap<String, Checksum>> {
                    clear_or_refuse()?;
                    run.online(&mut src_db, total, &mut report, &|db| seal(db))
                })()
            } else {
                seal(&mut src_db)?;
                failpoint!("migrate.after_moving");
                (|| -> Result<BTreeMap<String, Checksum>> {
                    catch_up_with_peers(cfg, from, &src, ui)?;
                    clear_or_refuse()?;
                    run.set_state(State::Copying, &[])?;
                    run.copy_and_verify(total, &mut report)
                })()
            };
            let mut step = Instant::now();
            let sums = match before_flip {
                Ok(s) => s,
                Err(e @ Error::LockLost(_)) => return Err(e),
                Err(e) => {
                    let reached = run.abort(&e.to_string())?;
                    ui.warn(&format!("migration #{migration_id} stopped before the flip and was {reached}: the user stays on {}", from.name));
                    return Err(e);
                }
            };
            run.set_state(State::Verified, &[("checksums", json!(sums).to_string())])?;
            report.checksums = sums;
            failpoint!("migrate.after_verify");
            // The commit point: one ring transaction, checked against the lease's token.
            let flip_audit = json!({ "from": from.name, "to": to.name, "migration_id": migration_id,
                                     "token": held.token, "rows": report.rows });
            let flipped = run.with_ring(|db| fenced_ring(db, &run.cfg.locks, &[(&held.name, held.token)], |tx| {
                if !destination_active(tx, to.id)? {
                    return Ok(Some(false));
                }
                tx.exec_drop(
                "UPDATE users SET shard_id = ?, state = 'active' WHERE user_id = ? AND shard_id = ? AND state = 'moving'",
                (to.id, opts.user, from.id),
            )?;
                if tx.affected_rows() != 1 {
                    return Ok(None);
                }
                let read_only = sealed_at.get().map(|t| t.elapsed().as_secs_f64());
                tx.exec_drop("UPDATE migrations SET state = 'flipped', read_only_seconds = ?, updated_at = UTC_TIMESTAMP(6) WHERE migration_id = ?", (read_only, migration_id))?;
                audit::record(tx, "migrate.flip", &opts.user.to_string(), flip_audit.clone())?;
                Ok(Some(true))
            }));
            match flipped {
                Ok(Some(true)) => {
                    crate::cache::users_changed(cfg, &[opts.user]);
                    if let Err(e) = crate::shard::connect(cfg, &src)
                        .and_then(|mut db| guard::after_flip(cfg, &mut db, &[opts.user], &to.name))
                    {
                        ui.warn(&format!("keeping the source guarded after the flip: {e}"));
                    }
                }
                Ok(Some(false)) => {
                    let e = Error::Refused(format!(
                        "shard `{}` was removed or is no longer active; the user stays on {}",
                        to.name, from.name
                    ));
                    run.abort(&e.to_string())?;
                    return Err(e);
                }
                Ok(None) => {
                    return Err(Error::Failed(format!(
                        "user {} was not `moving` on {} at the flip; nothing changed",
                        opts.user, from.name
                    )))
                }
                Err(e @ Error::LockLost(_)) => return Err(e),
                Err(e) => {
                    let reached = run.abort(&e.to_string())?;
                    ui.warn(&format!("migration #{migration_id} could not flip and was {reached}: the user stays on {}", from.name));
                    return Err(e);
                }
            }
            report.read_only_seconds = sealed_at.get().map(|t| t.elapsed().as_secs_f64());
            report
                .timings
                .insert("served".into(), started.elapsed().as_secs_f64());
            lap(&mut report, "flip", &mut step);
            failpoint!("migrate.after_flip");
            report.state = State::Flipped.to_string();
            if opts.keep_source {
                report.note = format!(
                    "source rows kept on {src}; `shardctl migrate resume {}` deletes them",
                    opts.user
                );
                return Ok(());
            }
            // Past the commit point the user has moved, whatever happens now: a failure here
            // (a lost lock, Ctrl-C, the source going away) leaves a clean-up to finish.
            let cleanup = (|| {
                run.set_state(State::Cleaning, &[])?;
                report.state = State::Cleaning.to_string();
                run.delete_all(&src, "cleaning up", total, "migrate.cleanup_mid")?;
                failpoint!("migrate.after_cleanup");
                run.set_state(State::Done, &[])
            })();
            match cleanup {
                Ok(()) => {
                    lap(&mut report, "cleanup", &mut step);
                    report.state = State::Done.to_string();
                }
                Err(e) => {
                    report.cleanup_pending = true;
                    report.note = format!(
                        "user {} moved to {}, but the clean-up of {src} did not finish ({e}); `shardctl migrate resume {}` finishes it",
                        opts.user, to.name, opts.user
                    );
                }
            }
            Ok(())
        },
    );
    report
        .timings
        .insert("total".into(), started.elapsed().as_secs_f64());
    outcome?;
    ring_db.run("auditing", |c| {
        audit::record(c, "migrate", &opts.user.to_string(), json!({ "from": report.from, "to": report.to, "state": report.state,
            "rows": report.rows, "migration_id": report.migration_id, "token": report.token, "seconds": report.timings.get("total") }))
    })?;
    Ok(report)
}

/// What `resume` did with one entry.
#[derive(Debug, Serialize)]
pub struct Resumed {
    pub migration_id: u64,
    pub user: u64,
    pub from: String,
    pub to: String,
    pub was: State,
    pub now: State,
}

/// Finishes (past the flip) or rolls back (before it) one unfinished journal entry.
pub fn resume_entry(
    cfg: &Config,
    ring_db: &mut Db,
    entry: &Entry,
    ttl: Duration,
    ui: &Ui,
) -> Result<Resumed> {
    let shards = directory::shards(ring_db)?;
    let from = shard_by_id(&shards, entry.from_id)?;
    let to = shard_by_id(&shards, entry.to_id)?;
    let action = resume_action(entry.state);
    let now = with_lock(
        cfg,
        entry.user,
        ttl,
        &format!("resume migration #{}", entry.migration_id),
        |held, lost| {
            // Take the entry over: from here on only our token may write it.
            let taken = ring_db.run("taking over the journal entry", |c| {
                c.exec_drop(
                    "UPDATE migrations SET token = ?, updated_at = UTC_TIMESTAMP(6) WHERE migration_id = ? AND state = ?",
                    (held.token, entry.migration_id, entry.state.as_str()),
                )?;
                Ok(c.affected_rows())
            })?;
            if taken != 1 {
                // Its holder moved it on between our reading it and our taking the lock: what
                // we read is stale, so acting on it could undo a finished move. Leave it.
                let now: Option<String> = ring_db.exec_first(
                    "reading the journal entry",
                    "SELECT state FROM migrations WHERE migration_id = ?",
                    (entry.migration_id,),
                )?;
                return now
                    .unwrap_or_default()
                    .parse::<State>()
                    .map_err(Error::inconsistent);
            }
            let src = pick_server(cfg, entry.user, from, entry.source_server.as_deref())?;
            let dst = pick_server(cfg, entry.user, to, entry.dest_server.as_deref())?;
            let mut src_db = crate::shard::connect(cfg, &src)?;
            for db in [&mut src_db, &mut crate::shard::connect(cfg, &dst)?] {
                fence::raise_fence(db, entry.user, held.token)?;
            }
            let tables = describe_tables(cfg, &src, &dst)?;
            let run = Run {
                cfg,
                ui,
                user: entry.user,
                token: held.token,
                migration_id: entry.migration_id,
                from,
                to,
                src: src.clone(),
                dst: dst.clone(),
                tables,
                max_lag: None,
                lock_lost: lost,
                ring: Mutex::new(&mut *ring_db),
                copying: AtomicBool::new(false),
            };
            match action {
                Resume::Nothing => Ok(entry.state),
                Resume::RollBack => {
                    // Only a copy that began can have left rows of ours on the destination.
                    if state::may_have_copied(entry.state, entry.mode == "online") {
                        run.delete_all(&dst, "clearing", 0, "migrate.resume_clear_mid")?;
                    }
                    run.with_ring(|db| fenced_ring(db, &run.cfg.locks, &[(&held.name, held.token)], |tx| {
                        tx.exec_drop(
                            "UPDATE users SET state = 'active' WHERE user_id = ? AND shard_id = ?",
                            (entry.user, from.id),
                        )?;
                        tx.exec_drop("UPDATE migrations SET state = 'rolled_back', updated_at = UTC_TIMESTAMP(6), finished_at = UTC_TIMESTAMP(6) WHERE migration_id = ?", (entry.migration_id,)).map(Some)
                    }))?;
                    crate::cache::users_changed(cfg, &[entry.user]);
                    guard::given_back(cfg, &mut src_db, &[entry.user])?;
                    Ok(State::RolledBack)
                }
                Resume::Finish => {
                    guard::after_flip(cfg, &mut src_db, &[entry.user], &to.name)?;
                    run.set_state(State::Cleaning, &[])?;
                    run.delete_all(&src, "cleaning up", 0, "migrate.resume_cleanup_mid")?;
                    run.set_state(State::Done, &[])?;
                    Ok(State::Done)
                }
            }
        },
    )?;
    ring_db.run("auditing", |c| {
        audit::record(
            c,
            "migrate.resume",
            &entry.user.to_string(),
            json!({ "migration_id": entry.migration_id, "was": entry.state, "now": now }),
        )
    })?;
    Ok(Resumed {
        migration_id: entry.migration_id,
        user: entry.user,
        from: entry.from.clone(),
        to: entry.to.clone(),
        was: entry.state,
        now,
    })
}

/// A journal entry whose migration is running now (its lock is held by a live holder).
#[derive(Debug, Serialize)]
pub struct InProgress {
    pub migration_id: u64,
    pub user: u64,
    pub from: String,
    pub to: String,
    pub state: State,
    /// Who holds the account lock.
    pub holder: String,
}

/// What `resume` did: the entries resolved and the users whose entry could not be.
pub struct ResumeOutcome {
    pub resumed: Vec<Resumed>,
    /// Entries a live holder is driving (its lock is held): in progress, left alone.
    pub in_progress: Vec<InProgress>,
    pub failed: Vec<(u64, Error)>,
    /// Migration locks left by holders that died before journaling anything, now released.
    pub released_locks: Vec<String>,
}

/// Releases migration locks whose holder is dead or expired (a crash between taking the lock and
/// journaling leaves one). A live holder's lock is left alone.
fn release_dead_locks(cfg: &Config, user: Option<u64>, ttl: Duration) -> Result<Vec<String>> {
    let mut client = LockClient::new(cfg)?;
    let names: Vec<String> = client
        .list(&crate::lock::ListFilter {
            prefix: Some("ACCOUNT_"),
            ..Default::default()
        })?
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n.ends_with("_MIGRATE"))
        .filter(|n| user.is_none_or(|u| *n == format!("ACCOUNT_{u}_MIGRATE")))
        .collect();
    let mut released = Vec::new();
    for name in names {
        let Ok(name) = name.parse::<LockName>() else {
            continue;
        };
        let req = Request {
            name: name.clone(),
            ttl,
            owner: audit::operator(),
            purpose: "migrate resume: releasing a dead holder's lock".into(),
            hold_session: false,
            metadata: json!({}),
        };
        match client.try_acquire(&req) {
            Ok(held) => {
                client.release(&held)?;
                released.push(name.to_string());
            }
            Err(Error::LockInUse(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(released)
}

/// Resumes the unfinished entries of one user, or of everyone.
pub fn resume(cfg: &Config, user: Option<u64>, ttl: Duration, ui: &Ui) -> Result<ResumeOutcome> {
    let mut ring_db = ring::open(cfg)?;
    let entries = journal(&mut ring_db, Entries::Unfinished(user))?;
    let mut done = Vec::new();
    let mut in_progress = Vec::new();
    let mut failed = Vec::new();
    for e in entries {
        match resume_entry(cfg, &mut ring_db, &e, ttl, ui) {
            Ok(r) => done.push(r),
            Err(Error::LockInUse(holder)) => in_progress.push(InProgress {
                migration_id: e.migration_id,
                user: e.user,
                from: e.from.clone(),
                to: e.to.clone(),
                state: e.state,
                holder,
            }),
            Err(err) => failed.push((e.user, err)),
        }
    }
    let released_locks = release_dead_locks(cfg, user, ttl)?;
    Ok(ResumeOutcome {
        resumed: done,
        in_progress,
        failed,
        released_locks,
    })
}

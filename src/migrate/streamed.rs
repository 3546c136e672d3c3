//! One account moved as streams: each large table split by key ranges into parallel streams on
//! sessions of their own, rows streamed off the source into `LOAD DATA` on the destination, at
//! most one chunk per stream in memory, chunks waiting while a peer of either server lags.
//!
//! Online, the account stays writable while it is copied, from snapshots that all stand at one
//! position of the source's binary log; the log from there is then applied to the destination,
//! pass after pass, until little is left (see `online`); the read-only window takes only the
//! last pass.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::applier::{self, Applier, Statements, Touched};
use super::binlog::{self, Tail};
use super::data::{self, Checksum, Control, Table};
use super::engine::{self, Group, Mover, Side, Sums};
use super::online::{self, Position, Snapshot};
use super::state::{State, Step};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::output::Ui;
use crate::ring::directory::Shard;
use crate::shard::conns::{Conns, Lent};
use crate::shard::replica;
use crate::types::HostPort;

/// Parallel streams per large table (value ranges of its key). On a busy pair of servers more
/// streams only contend; two keep both the reading and the writing side busy.
const STREAMS_PER_TABLE: usize = 2;

/// Below this many rows an account's tables go one after another on one pair of sessions:
/// parallel streams would only cost a login each.
const PARALLEL_MIN_ROWS: u64 = 20_000;

/// The mover of one account.
pub struct Streamed<'a> {
    lost: &'a AtomicBool,
    /// Chunks of the copy and the clean-up wait while a peer lags more than this (None:
    /// never); giving back never waits: the user is read-only until it is done.
    max_lag: Option<u64>,
    /// The account's rows per table, as counted before the move (empty: not counted).
    counted: BTreeMap<String, u64>,
    online: Option<Following<'a>>,
    /// What following the binary log did, once it is done.
    pub caught_up: Option<CaughtUp>,
}

/// What an online move's passes over the source's binary log did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CaughtUp {
    /// Passes while the account was writable.
    pub passes: usize,
    /// Row changes applied to the destination, in all.
    pub changes: u64,
    /// Of those, the ones of the read-only window's pass.
    pub read_only_changes: u64,
}

/// An online move's state from its copy to its verification.
struct Following<'a> {
    tail: Tail<'a>,
    /// How far the source's log has been applied.
    pos: Position,
    /// Each peer of the source: where it stands in its own log (None: cannot tell).
    peers: Vec<Peer>,
    /// A peer wrote to the account during the move (its writes reach the source by
    /// replication, not in the source's own log).
    peers_wrote: bool,
    /// Since the account was last verified whole: the first event of the source's log that
    /// may have changed rows without saying which (a statement-format write...).
    unattributed: Option<String>,
    passes: usize,
    /// The whole account's checksums, verified against a snapshot while writable.
    verified: BTreeMap<String, Checksum>,
    applier: Applier<'a>,
    read_only_changes: u64,
}

impl<'a> Streamed<'a> {
    pub fn new(
        lost: &'a AtomicBool,
        max_lag: Option<u64>,
        counted: BTreeMap<String, u64>,
    ) -> Streamed<'a> {
        Streamed {
            lost,
            max_lag,
            counted,
            online: None,
            caught_up: None,
        }
    }

    fn ctx(&self, g: &Group<'a>) -> Ctx<'a> {
        Ctx {
            ui: g.ui,
            conns: g.conns,
            user: g.accounts[0].user,
            token: g.accounts[0].token,
            tables: g.tables.clone(),
            from: g.from,
            to: g.to,
            src: g.src.clone(),
            dst: g.dst.clone(),
            max_lag: self.max_lag,
            lost: self.lost,
            counted: g
                .tables
                .iter()
                .map(|t| self.counted.get(&t.name.to_string()).copied())
                .collect(),
            rows: self.total(),
        }
    }

    fn total(&self) -> u64 {
        self.counted.values().sum()
    }

    fn following(&mut self) -> Result<&mut Following<'a>> {
        self.online
            .as_mut()
            .ok_or_else(|| Error::inconsistent("an online step ran before the copy"))
    }
}

impl<'a> Mover<'a> for Streamed<'a> {
    fn copy(&mut self, g: &mut Group<'a>) -> Result<()> {
        let c = self.ctx(g);
        let lanes = c.lanes(&c.src)?;
        if !g.course.is_online() {
            // The source's checksums are not taken meanwhile: on a busy pair of servers, work
            // beside the copy slows it by more than it saves (measured: 6% slower served).
            return c.copy_all(self.total(), lanes, None).map(|_| ());
        }
        // The source has taken in its peers' writes (the catch-up step). Every stream reads
        // through a snapshot at one position: the copy is the account as of it, and every
        // change since is in the log past it.
        let tail = Tail::new(c.conns, &c.src, c.user, &c.tables)?;
        let statements = tail
            .kinds()?
            .into_iter()
            .zip(&c.tables)
            .map(|(kinds, t)| Statements::new(t, kinds))
            .collect::<Result<Vec<_>>>()?;
        let peers = c.peer_positions();
        let snapshots = Snapshot::open_many(c.conns, &c.src, lanes.len())?;
        // A transaction prepared before the snapshots (after the catch-up's look) would commit
        // into neither the copy nor the log past them.
        if let Some(xids) =
            online::wait_for_prepared_xa(&mut *c.conns.get(&c.src)?, Duration::ZERO)?
        {
            return Err(online::prepared_xa_refusal(
                &c.src,
                &xids,
                Duration::ZERO,
                &c.from.name,
            ));
        }
        let pos = snapshots[0].at.clone();
        let lanes = if snapshots.len() == lanes.len() {
            lanes
        } else {
            vec![lanes.into_iter().flatten().collect()]
        };
        g.journal(
            State::Copying,
            &[(
                "binlog_position",
                engine::Column::All(pos.to_string().into()),
            )],
        )?;
        let applier = Applier::new(c.conns, (&c.src, &c.dst), (c.user, c.token), statements)?;
        let snapshots: Vec<Mutex<Snapshot>> = snapshots.into_iter().map(Mutex::new).collect();
        c.copy_all(self.total(), lanes, Some(&snapshots))?;
        drop(snapshots);
        self.online = Some(Following {
            tail,
            pos,
            peers,
            peers_wrote: false,
            unattributed: None,
            passes: 0,
            verified: BTreeMap::new(),
            applier,
            read_only_changes: 0,
        });
        Ok(())
    }

    /// Passes over the source's log until one finds little, then a verification of the whole
    /// account against a snapshot of the source, all while the account is writable.
    fn follow(&mut self, g: &mut Group<'a>) -> Result<()> {
        let c = self.ctx(g);
        let o = self.following()?;
        loop {
            let started = Instant::now();
            let read = c.apply_pass(o, None)?;
            g.journal_applied(State::Copying, read.end.to_string())?;
            o.passes += 1;
            if o.passes == 1 {
                engine::mid(Step::Follow);
            }
            if online::converged(o.passes, read.changes as usize, started.elapsed()) {
                break;
            }
        }
        // Verified while writable: the log applied up to a snapshot's position makes the
        // destination exactly the source as of that position. (Verifying the copy as it was
        // made, each share or the source's side against the copy's snapshot, was measured
        // slower: the checksums contended with the copy.) The read-only window then verifies
        // only the rows touched since.
        let mut snap = Snapshot::open(c.conns, &c.src)?;
        let at = snap.at.clone();
        let read = c.apply_pass(o, Some(&at))?;
        g.journal_applied(State::Copying, read.end.to_string())?;
        o.verified = c
            .verify_against(&mut snap.db)
            .map_err(|e| because(e, o.unattributed.as_deref(), None))?;
        // Whatever the log could not attribute so far is vouched for now.
        o.unattributed = None;
        o.applier.verified_whole();
        // Most of the peers' logs are read now, while the account is writable.
        o.peers_wrote |= c.peers_wrote(&mut o.peers);
        Ok(())
    }

    /// The read-only window (the account is marked): transactions that passed the guard just
    /// before the mark end first, the source takes in its peers' last writes, and the last
    /// pass applies the log up to where the source stands.
    fn last_pass(&mut self, g: &mut Group<'a>) -> Result<()> {
        let c = self.ctx(g);
        // The catch-up waits for the user's writers from before the mark and for prepared XA
        // transactions too.
        g.catch_up()?;
        let end = online::current_position(&mut *c.conns.get(&c.src)?)?;
        let o = self.following()?;
        let read = c.apply_pass(o, Some(&end))?;
        o.read_only_changes = read.changes;
        g.journal_applied(State::Moving, read.end.to_string())?;
        Ok(())
    }

    fn verify(&mut self, g: &mut Group<'a>) -> Result<Sums> {
        let c = self.ctx(g);
        let sums = match self.online.take() {
            // Offline: the account is read-only, both servers are read as they stand, at once.
            None => {
                let (source, dest) = std::thread::scope(|s| {
                    let dest = s.spawn(|| c.checksums(&c.dst));
                    (c.checksums(&c.src), joined(dest.join(), "checksum"))
                });
                let source = source?;
                compare(&source, &dest?)?;
                source
            }
            Some(mut o) => {
                o.peers_wrote |= c.peers_wrote(&mut o.peers);
                let (keys, before) = o
                    .applier
                    .since_verified()
                    .map(|(k, b)| (k.clone(), b.to_vec()))
                    .ok_or_else(|| {
                        Error::inconsistent("verifying before the account was verified whole")
                    })?;
                // The account is read-only: the source is read as it stands.
                let mut src = c.conns.get(&c.src)?;
                let sums = if o.peers_wrote || o.unattributed.is_some() {
                    // A peer wrote to the user meanwhile (failover?), or the source's log holds
                    // a change it does not list row by row: only a whole verification can
                    // vouch for the copy.
                    let peer = o.peers_wrote.then(|| c.src.to_string());
                    c.ui.status(&format!(
                        "user {}: {}; verifying every row",
                        c.user,
                        causes(o.unattributed.as_deref(), peer.as_deref())
                    ));
                    c.verify_against(&mut src)
                        .map_err(|e| because(e, o.unattributed.as_deref(), peer.as_deref()))?
                } else {
                    c.verify_changes(
                        &mut src,
                        o.applier.statements(),
                        &keys,
                        &o.verified,
                        &before,
                    )?
                };
                self.caught_up = Some(CaughtUp {
                    passes: o.passes,
                    changes: o.applier.applied,
                    read_only_changes: o.read_only_changes,
                });
                o.applier.finish()?;
                sums
            }
        };
        Ok(BTreeMap::from([(c.user, sums)]))
    }

    fn delete(&mut self, g: &mut Group<'a>, side: Side, step: Step) -> Result<()> {
        let mut c = self.ctx(g);
        let (addr, what, total) = match side {
            Side::Source => (c.src.clone(), "cleaning up", self.total()),
            Side::Destination => {
                c.max_lag = None;
                (c.dst.clone(), "clearing", 0)
            }
        };
        c.delete_all(&addr, what, total, step).map(|_| ())
    }
}

/// A thread's result, or the failure of a thread that panicked.
fn joined<T>(r: std::thread::Result<Result<T>>, what: &str) -> Result<T> {
    r.unwrap_or_else(|_| Err(Error::Failed(format!("a {what} thread panicked"))))
}

/// What the streams of a step share (all of it may cross threads).
struct Ctx<'a> {
    ui: &'a Ui,
    conns: &'a Conns<'a>,
    user: u64,
    token: u64,
    tables: Vec<Table>,
    from: &'a Shard,
    to: &'a Shard,
    src: HostPort,
    dst: HostPort,
    max_lag: Option<u64>,
    lost: &'a AtomicBool,
    /// The account's rows per table (as `tables`), as counted before the move (None: not
    /// counted), and all of them (0: not counted).
    counted: Vec<Option<u64>>,
    rows: u64,
}

/// A stream's share of a step: a table (by index) and a range of its key.
type Share = (usize, Option<data::KeyRange>);

/// What one stream of a step does with its share, on its lane (thread).
type StreamWork<'a> = dyn Fn(&data::Job, usize) -> Result<u64> + Sync + 'a;

impl Ctx<'_> {
    /// The step's lanes, each the shares one thread takes in turn: every (table, key range)
    /// its own lane, or, for a small account, all of them in one.
    fn lanes(&self, on: &HostPort) -> Result<Vec<Vec<Share>>> {
        let mut shares = Vec::new();
        let mut rows = 0;
        let mut db = self.conns.get(on)?;
        for (i, t) in self.tables.iter().enumerate() {
            // Counts from before the move only choose how to split the work: the ranges are
            // open at both ends, so rows written since still fall in one.
            let n = match self.counted[i] {
                Some(n) => n,
                None => data::count(&mut db, t, self.user)?,
            };
            rows += n;
            for r in data::ranges(&mut db, t, self.user, n, STREAMS_PER_TABLE)? {
                shares.push((i, r));
            }
        }
        Ok(if rows < PARALLEL_MIN_ROWS {
            vec![shares]
        } else {
            shares.into_iter().map(|s| vec![s]).collect()
        })
    }

    /// Runs `work` for every share, the lanes in parallel, with a progress bar and the lag
    /// watcher; returns rows per table.
    fn streams(
        &self,
        what: &str,
        total: u64,
        lanes: Vec<Vec<Share>>,
        work: &StreamWork<'_>,
    ) -> Result<BTreeMap<String, u64>> {
        let control = Control::default();
        let mut peers = self.lag_peers();
        control
            .pause
            .store(self.lagging(&mut peers), Ordering::SeqCst);
        let done = AtomicBool::new(false);
        let bar = self.ui.progress(total, what);
        let results: Vec<(String, Result<u64>)> = std::thread::scope(|s| {
            s.spawn(|| self.watch_lag(peers, &control, &done));
            let control = &control;
            let handles: Vec<_> = lanes
                .into_iter()
                .enumerate()
                .map(|(lane, shares)| {
                    s.spawn(move || {
                        let mut done = Vec::new();
                        for (table, range) in shares {
                            let t = &self.tables[table];
                            let job = data::Job {
                                table: t,
                                user: self.user,
                                token: self.token,
                                range,
                                control,
                            };
                            let result = work(&job, lane);
                            let failed = result.is_err();
                            done.push((t.name.to_string(), result));
                            if failed {
                                break;
                            }
                        }
                        done
                    })
                })
                .collect();
            while !handles.iter().all(|h| h.is_finished()) {
                if self.lost.load(Ordering::SeqCst) {
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
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![(
                            "?".into(),
                            Err(Error::Failed("a copy thread panicked".into())),
                        )]
                    })
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

    /// Connections to every peer of the two servers (None: not reachable now).
    fn lag_peers(&self) -> Vec<Option<Lent<'_>>> {
        if self.max_lag.is_none() {
            return Vec::new();
        }
        [self.from, self.to]
            .iter()
            .flat_map(|s| s.servers.iter().map(|v| v.addr.clone()))
            .filter(|a| *a != self.src && *a != self.dst)
            .map(|p| self.conns.get(&p).ok())
            .collect()
    }

    /// Whether any of `peers` lags more than `max_lag` seconds (None: never).
    fn lagging(&self, peers: &mut [Option<Lent<'_>>]) -> bool {
        let Some(max_lag) = self.max_lag else {
            return false;
        };
        peers.iter_mut().any(|c| {
            c.as_mut()
                .and_then(|db| replica::status(db).ok().flatten())
                .is_some_and(|s| s.lag_seconds.is_some_and(|l| l > max_lag))
        })
    }

    /// Keeps `pause` set while any of `peers` lags; the caller made the first check before any
    /// stream started, so no batch runs on a lag nobody looked at.
    fn watch_lag(&self, mut peers: Vec<Option<Lent<'_>>>, control: &Control, done: &AtomicBool) {
        while !done.load(Ordering::SeqCst) {
            // Check twice a second, but notice the end of the step at once (a small account's
            // step takes milliseconds).
            for _ in 0..100 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if !done.load(Ordering::SeqCst) {
                control
                    .pause
                    .store(self.lagging(&mut peers), Ordering::SeqCst);
            }
        }
        control.pause.store(false, Ordering::SeqCst);
    }

    /// Deletes the user's rows of every table on `addr`.
    fn delete_all(
        &self,
        addr: &HostPort,
        what: &str,
        total: u64,
        step: Step,
    ) -> Result<BTreeMap<String, u64>> {
        let hit = std::sync::Once::new();
        self.streams(what, total, self.lanes(addr)?, &|job, _| {
            let mut db = self.conns.get(addr)?;
            let deleted =
                data::delete_stream(job, &mut db, &|| hit.call_once(|| engine::mid(step)));
            if deleted.is_err() {
                // Registered with the fence: not a session to lend again.
                db.discard();
            }
            deleted
        })
    }

    /// Copies every share, each lane reading through its own snapshot where there are
    /// `snapshots` (one per lane), else through a session of the source.
    fn copy_all(
        &self,
        total: u64,
        lanes: Vec<Vec<Share>>,
        snapshots: Option<&[Mutex<Snapshot>]>,
    ) -> Result<BTreeMap<String, u64>> {
        let hit = std::sync::Once::new();
        self.streams("copying", total, lanes, &|job, lane| {
            let mut dst = self.conns.get(&self.dst)?;
            let after_first = || hit.call_once(|| engine::mid(Step::Copy));
            let copied = match snapshots {
                Some(snapshots) => {
                    let mut snap = snapshots[lane]
                        .lock()
                        .map_err(|_| Error::Failed("a snapshot's lock was poisoned".into()))?;
                    let copied = data::copy_stream(job, &mut snap.db, &mut dst, &after_first);
                    if copied.is_err() {
                        snap.db.mark_lost();
                    }
                    copied
                }
                None => {
                    let mut src = self.conns.get(&self.src)?;
                    let copied = data::copy_stream(job, &mut src, &mut dst, &after_first);
                    if copied.is_err() {
                        src.discard();
                    }
                    copied
                }
            };
            if copied.is_err() {
                // Registered with the fence: not a session to lend again.
                dst.discard();
            }
            copied
        })
    }

    /// Checksums of every table on `addr`, tables in parallel (one after another for a small
    /// account, on one session).
    fn checksums(&self, addr: &HostPort) -> Result<BTreeMap<String, Checksum>> {
        if self.rows < PARALLEL_MIN_ROWS {
            let mut db = self.conns.get(addr)?;
            return self
                .tables
                .iter()
                .map(|t| Ok((t.name.to_string(), data::checksum(&mut db, t, self.user)?)))
                .collect();
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .tables
                .iter()
                .map(|t| {
                    let sum = move || {
                        self.conns
                            .get(addr)
                            .and_then(|mut db| data::checksum(&mut db, t, self.user))
                    };
                    (t.name.to_string(), s.spawn(sum))
                })
                .collect();
            handles
                .into_iter()
                .map(|(n, h)| Ok((n, joined(h.join(), "checksum")?)))
                .collect()
        })
    }

    /// Before a pass: the lock is still ours, and nobody asked us to stop.
    fn may_follow(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::LockLost(
                "the migration lock was lost while following the binary log".into(),
            ));
        }
        if crate::signals::received() {
            return Err(Error::Failed(
                "interrupted while following the binary log; the journal is resumable".into(),
            ));
        }
        Ok(())
    }

    /// One pass: the source's log from where `o` reached (to `until`) applied to the
    /// destination, transaction by transaction. The caller journals where it reached.
    fn apply_pass(&self, o: &mut Following, until: Option<&Position>) -> Result<binlog::Read> {
        self.may_follow()?;
        let Following {
            tail, pos, applier, ..
        } = o;
        let read = tail.pass(pos, until, &mut |t| applier.push(t))?;
        applier.flush(Some(&read.end))?;
        *pos = read.end.clone();
        if o.unattributed.is_none() {
            o.unattributed = read.unattributed.clone();
        }
        Ok(read)
    }

    /// Checksums of the whole account: the source's through `source` (a snapshot, or a
    /// session while the account is read-only), the destination's at the same time; they must
    /// be equal.
    fn verify_against(&self, source: &mut Db) -> Result<BTreeMap<String, Checksum>> {
        let (theirs, ours) = std::thread::scope(|s| {
            let ours = s.spawn(|| self.checksums(&self.dst));
            let theirs: Result<BTreeMap<String, Checksum>> = self
                .tables
                .iter()
                .map(|t| Ok((t.name.to_string(), data::checksum(source, t, self.user)?)))
                .collect();
            (theirs, joined(ours.join(), "checksum"))
        });
        let theirs = theirs?;
        compare(&theirs, &ours?)?;
        Ok(theirs)
    }

    /// Checksums of the rows of `keys` on `db`, per table.
    fn checksums_of(
        &self,
        db: &mut Db,
        statements: &[Statements],
        keys: &Touched,
    ) -> Result<Vec<Checksum>> {
        statements
            .iter()
            .zip(keys)
            .map(|(s, k)| applier::checksum_keys(db, s, k, self.user))
            .collect()
    }

    /// The read-only window's verification: the rows the log touched since the account was
    /// verified whole are equal on both sides, and so are the counts; every other row was
    /// verified equal then and neither side changed it since. Returns the whole account's
    /// checksums, the verified ones with the touched rows swapped (`before`: theirs on the
    /// destination before the first change to each).
    fn verify_changes(
        &self,
        source: &mut Db,
        statements: &[Statements],
        keys: &Touched,
        verified: &BTreeMap<String, Checksum>,
        before: &[Checksum],
    ) -> Result<BTreeMap<String, Checksum>> {
        let mut dst = self.conns.get(&self.dst)?;
        let theirs = self.checksums_of(source, statements, keys)?;
        let ours = self.checksums_of(&mut dst, statements, keys)?;
        let mut sums = BTreeMap::new();
        for (i, t) in self.tables.iter().enumerate() {
            let name = t.name.to_string();
            let changed = |side: &[Checksum]| BTreeMap::from([(name.clone(), side[i])]);
            compare(&changed(&theirs), &changed(&ours))?;
            let whole = verified
                .get(&name)
                .copied()
                .unwrap_or(Checksum::EMPTY)
                .minus(before[i])
                .plus(theirs[i]);
            let (here, there) = (
                data::count(source, t, self.user)?,
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
    fn peer_positions(&self) -> Vec<Peer> {
        self.from
            .servers
            .iter()
            .map(|s| s.addr.clone())
            .filter(|a| *a != self.src)
            .map(|addr| {
                let at = self
                    .conns
                    .get(&addr)
                    .and_then(|mut db| {
                        let id: Option<u32> =
                            db.exec_first("reading the server id", "SELECT @@server_id", ())?;
                        Ok((id.unwrap_or(0), online::current_position(&mut db)?))
                    })
                    .ok();
                Peer { addr, at }
            })
            .collect()
    }

    /// Whether any peer wrote to the user itself since `peers` were read (or cannot tell),
    /// what its log holds of others' writes aside; moves each peer's position on to where its
    /// log was read, so the next look reads only what is new.
    fn peers_wrote(&self, peers: &mut [Peer]) -> bool {
        let mut wrote = false;
        for peer in peers.iter_mut() {
            let read = peer.at.as_ref().map(|(id, from)| {
                Tail::new(self.conns, &peer.addr, self.user, &self.tables).and_then(|t| {
                    let mut t = t.written_by(*id);
                    t.pass(from, None, &mut |_| Ok(())).map(|r| (*id, r))
                })
            });
            match read {
                Some(Ok((id, r))) => {
                    wrote |= r.changes > 0 || r.unattributed.is_some();
                    peer.at = Some((id, r.end));
                }
                _ => {
                    wrote = true;
                    peer.at = None;
                }
            }
        }
        wrote
    }
}

/// A peer of the source: where it stands in its own log, with its server id (None: cannot
/// tell).
struct Peer {
    addr: HostPort,
    at: Option<(u32, Position)>,
}

/// Why an online move verified the whole account, in words: the first event the log could
/// not attribute, and `peer` (the source) when a peer wrote the user itself.
fn causes(unattributed: Option<&str>, peer: Option<&str>) -> String {
    let mut out = Vec::new();
    if let Some(event) = unattributed {
        out.push(format!(
            "the source's log holds a change it does not list row by row (an application session writing with binlog_format=STATEMENT or MIXED, a rollback to a savepoint, an XA transaction ended apart from its changes), first at {event}"
        ));
    }
    if let Some(src) = peer {
        out.push(format!(
            "a peer of {src} wrote to the user itself during the move"
        ));
    }
    out.join("; and ")
}

/// A failed verification, with what made the account change without the log saying how.
fn because(e: Error, unattributed: Option<&str>, peer: Option<&str>) -> Error {
    match (e, unattributed.is_some() || peer.is_some()) {
        (Error::Failed(m), true) => Error::Failed(format!(
            "{m}: {}. The copy cannot follow such writes; move the user with --mode offline, or have the application write with binlog_format=ROW and binlog_row_image=FULL while it moves",
            causes(unattributed, peer)
        )),
        (e, _) => e,
    }
}

/// Fails naming the first table whose checksums differ.
pub fn compare(
    source: &BTreeMap<String, Checksum>,
    dest: &BTreeMap<String, Checksum>,
) -> Result<()> {
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

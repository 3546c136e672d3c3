//! One account moved as streams: each large table split by key ranges into parallel streams on
//! sessions of their own, rows streamed off the source into `LOAD DATA` on the destination, at
//! most one chunk per stream in memory, chunks waiting while a peer of either server lags.
//!
//! Online, the account stays writable while it is copied: the source's binary log then says
//! which of its rows changed, and those are copied again, pass after pass, until little is left
//! (see `online`); the read-only window takes only the last pass.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::data::{self, Checksum, Control, Table};
use super::engine::{self, Group, Mover, Side, Sums};
use super::online::{self, Position, Snapshot, Tail, Touched};
use super::state::{State, Step};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::output::Ui;
use crate::ring::directory::Shard;
use crate::shard::conns::{Conns, Lent};
use crate::shard::{fence, replica};
use crate::types::HostPort;

/// Parallel streams per large table (value ranges of its key). On a busy pair of servers more
/// streams only contend; two keep both the reading and the writing side busy.
const STREAMS_PER_TABLE: usize = 2;

/// Below this many rows an account's tables go one after another on one pair of sessions:
/// parallel streams would only cost a login each.
const PARALLEL_MIN_ROWS: u64 = 20_000;

/// How long transactions that were writing on the source at the `moving` mark may take to end.
const WRITERS_GRACE: Duration = Duration::from_secs(5);

/// The mover of one account.
pub struct Streamed<'a> {
    lost: &'a AtomicBool,
    /// Chunks wait while a peer lags more than this; None: they never wait (a roll-back).
    max_lag: Option<u64>,
    /// The account's rows, for the progress bars.
    total: u64,
    /// Offline: the source's checksums, computed while the copy ran (the account is read-only
    /// and the source mostly idle while the destination writes).
    source: Option<BTreeMap<String, Checksum>>,
    online: Option<Following<'a>>,
}

/// An online move's state from its copy to its verification.
struct Following<'a> {
    tail: Tail<'a>,
    /// How far the source's log has been applied.
    pos: Position,
    /// Where each peer of the source stands in its own log (None: cannot tell).
    peers: Vec<(HostPort, Option<Position>)>,
    /// A peer wrote to the account during the move (its writes reach the source by
    /// replication, not in the source's own log).
    peers_wrote: bool,
    passes: usize,
    /// The whole account's checksums, verified against a snapshot while writable.
    verified: BTreeMap<String, Checksum>,
    /// The destination session the passes write on, registered with the fence.
    applier: Option<Lent<'a>>,
    /// The read-only window's pass: its keys, their checksums on the destination before it,
    /// and the snapshot it read them from.
    last: Option<(Touched, Vec<Checksum>, Snapshot<'a>)>,
}

impl Drop for Following<'_> {
    fn drop(&mut self) {
        // Registered with the fence: not a session to lend again.
        if let Some(applier) = self.applier.take() {
            applier.discard();
        }
    }
}

impl<'a> Streamed<'a> {
    pub fn new(lost: &'a AtomicBool, max_lag: Option<u64>, total: u64) -> Streamed<'a> {
        Streamed {
            lost,
            max_lag,
            total,
            source: None,
            online: None,
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
            rows: self.total,
        }
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
        if !g.course.is_online() {
            let (copied, source) = std::thread::scope(|s| {
                let source = s.spawn(|| c.checksums(&c.src));
                let copied = c.copy_all(self.total);
                (copied, joined(source.join(), "checksum"))
            });
            copied?;
            self.source = Some(source?);
            return Ok(());
        }
        // The source has taken in its peers' writes (the catch-up step); its position is taken
        // before the copy reads anything: every change the copy may miss is past it.
        let tail = Tail::new(c.conns, &c.src, c.user, &c.tables)?;
        let peers = c.peer_positions();
        let pos = online::current_position(&mut *c.conns.get(&c.src)?)?;
        g.journal(
            State::Copying,
            &[(
                "binlog_position",
                engine::Column::All(pos.to_string().into()),
            )],
        )?;
        self.online = Some(Following {
            tail,
            pos,
            peers,
            peers_wrote: false,
            passes: 0,
            verified: BTreeMap::new(),
            applier: None,
            last: None,
        });
        c.copy_all(self.total).map(|_| ())
    }

    /// Passes over the source's log until one finds little, then a verification of the whole
    /// account against a snapshot of the source, all while the account is writable.
    fn follow(&mut self, g: &mut Group<'a>) -> Result<()> {
        let c = self.ctx(g);
        let o = self.following()?;
        let mut applier = c.conns.get(&c.dst)?;
        fence::register(
            applier.raw("applying the binary log")?,
            &c.dst,
            c.user,
            c.token,
        )?;
        o.applier = Some(applier);
        loop {
            let started = Instant::now();
            let mut read = c.conns.get(&c.src)?;
            let pass = c.apply_pass(o, None, &mut read)?;
            g.journal_applied(State::Copying, pass.end.to_string())?;
            o.pos = pass.end.clone();
            o.passes += 1;
            if o.passes == 1 {
                engine::mid(Step::Follow);
            }
            if online::converged(o.passes, pass.keys(), started.elapsed()) {
                break;
            }
        }
        // The rows the log touched up to a snapshot's position, read through the snapshot,
        // make the destination exactly the source as of that position: verifiable while
        // writable.
        let mut snap = Snapshot::open(c.conns, &c.src)?;
        let at = snap.at.clone();
        let pass = c.apply_pass(o, Some(&at), &mut snap.db)?;
        g.journal_applied(State::Copying, pass.end.to_string())?;
        o.pos = pass.end;
        o.verified = c.verify_against(&mut snap)?;
        drop(snap);
        // Most of the peers' logs are read now, while the account is writable.
        o.peers_wrote |= c.peers_wrote(&mut o.peers);
        Ok(())
    }

    /// The read-only window (the account is marked): transactions that passed the guard just
    /// before the mark end first, the source takes in its peers' last writes, and one last
    /// pass reads the rows from a snapshot.
    fn last_pass(&mut self, g: &mut Group<'a>) -> Result<()> {
        let c = self.ctx(g);
        {
            let mut src = c.conns.get(&c.src)?;
            let open = online::writing_transactions(&mut src, c.user)?;
            if let Some(open) = online::wait_for_transactions(&mut src, &open, WRITERS_GRACE)? {
                return Err(Error::Refused(format!(
                    "transactions writing on {} since before the read-only mark did not end within {}s ({open}); the user stays on {}",
                    c.src,
                    WRITERS_GRACE.as_secs(),
                    c.from.name
                )));
            }
        }
        g.catch_up()?;
        let o = self.following()?;
        let mut snap = Snapshot::open(c.conns, &c.src)?;
        let at = snap.at.clone();
        let keys = c.touched_by(o, Some(&at))?.touched;
        let before = c.checksums_of(&mut *c.conns.get(&c.dst)?, &keys)?;
        let applier = o
            .applier
            .as_mut()
            .ok_or_else(|| Error::inconsistent("the last pass ran before following the log"))?;
        online::apply(
            &mut snap.db,
            &c.dst,
            applier.raw("applying the binary log")?,
            &c.tables,
            &keys,
            c.user,
            c.token,
        )?;
        g.journal_applied(State::Moving, at.to_string())?;
        o.pos = at;
        o.last = Some((keys, before, snap));
        Ok(())
    }

    fn verify(&mut self, g: &mut Group<'a>) -> Result<Sums> {
        let c = self.ctx(g);
        let sums = match self.online.as_mut() {
            None => {
                let source = self
                    .source
                    .take()
                    .ok_or_else(|| Error::inconsistent("verifying before the copy"))?;
                compare(&source, &c.checksums(&c.dst)?)?;
                source
            }
            Some(o) => {
                o.peers_wrote |= c.peers_wrote(&mut o.peers);
                let (keys, before, mut snap) = o
                    .last
                    .take()
                    .ok_or_else(|| Error::inconsistent("verifying before the last pass"))?;
                let sums = if o.peers_wrote {
                    // A peer wrote to the user meanwhile (failover?): those rows are in the
                    // source's data but not its log, so only a whole verification can vouch
                    // for the copy.
                    c.ui.status(&format!(
                        "user {}: a peer of {} wrote to it during the move; verifying every row",
                        c.user, c.src
                    ));
                    c.verify_against(&mut snap)?
                } else {
                    c.verify_changes(&mut snap, &keys, &o.verified, &before)?
                };
                c.ui.status(&format!(
                    "user {}: {} passes over the binary log while writable, {} rows in the read-only one",
                    c.user,
                    o.passes,
                    keys.iter().map(|k| k.len()).sum::<usize>()
                ));
                if let Some(mut applier) = o.applier.take() {
                    fence::unregister(applier.raw("applying the binary log")?, c.user);
                }
                sums
            }
        };
        Ok(BTreeMap::from([(c.user, sums)]))
    }

    fn delete(&mut self, g: &mut Group<'a>, side: Side, step: Step) -> Result<()> {
        let c = self.ctx(g);
        let (addr, what, total) = match side {
            Side::Source => (&c.src, "cleaning up", self.total),
            Side::Destination => (&c.dst, "clearing", 0),
        };
        c.delete_all(addr, what, total, step).map(|_| ())
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
    /// The account's rows, as counted before the move (0: not counted).
    rows: u64,
}

/// What one stream of a step does with its job.
type StreamWork<'a> = dyn Fn(&data::Job) -> Result<u64> + Sync + 'a;

impl Ctx<'_> {
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
        let mut rows = 0;
        {
            let mut db = self.conns.get(ranges_on)?;
            for t in &self.tables {
                let n = data::count(&mut db, t, self.user)?;
                rows += n;
                for r in data::ranges(&mut db, t, self.user, n, STREAMS_PER_TABLE)? {
                    jobs.push((t, r));
                }
            }
        }
        // Each lane runs its jobs one after another on one thread (and so one pair of sessions).
        let lanes: Vec<Vec<_>> = if rows < PARALLEL_MIN_ROWS {
            vec![jobs]
        } else {
            jobs.into_iter().map(|j| vec![j]).collect()
        };
        let bar = self.ui.progress(total, what);
        let results: Vec<(String, Result<u64>)> = std::thread::scope(|s| {
            s.spawn(|| self.watch_lag(&control, &done));
            let control = &control;
            let handles: Vec<_> = lanes
                .into_iter()
                .map(|lane| {
                    s.spawn(move || {
                        let mut done = Vec::new();
                        for (t, r) in lane {
                            let job = data::Job {
                                table: t,
                                user: self.user,
                                token: self.token,
                                range: r,
                                control,
                            };
                            let result = work(&job);
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

    /// Keeps `pause` set while any peer of the two servers lags more than `max_lag` seconds
    /// (None: never).
    fn watch_lag(&self, control: &Control, done: &AtomicBool) {
        let peers: Vec<HostPort> = [self.from, self.to]
            .iter()
            .flat_map(|s| s.servers.iter().map(|v| v.addr()))
            .filter(|a| *a != self.src && *a != self.dst)
            .collect();
        let mut conns: Vec<Option<Lent>> = peers.iter().map(|p| self.conns.get(p).ok()).collect();
        while !done.load(Ordering::SeqCst) {
            let lagging = conns.iter_mut().any(|c| {
                c.as_mut()
                    .and_then(|db| replica::status(db).ok().flatten())
                    .is_some_and(|s| {
                        s.lag_seconds
                            .is_some_and(|l| self.max_lag.is_some_and(|m| l > m))
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

    /// Deletes the user's rows of every table on `addr`.
    fn delete_all(
        &self,
        addr: &HostPort,
        what: &str,
        total: u64,
        step: Step,
    ) -> Result<BTreeMap<String, u64>> {
        let hit = std::sync::Once::new();
        self.streams(what, total, addr, &|job| {
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

    fn copy_all(&self, total: u64) -> Result<BTreeMap<String, u64>> {
        let hit = std::sync::Once::new();
        self.streams("copying", total, &self.src, &|job| {
            let mut src = self.conns.get(&self.src)?;
            let mut dst = self.conns.get(&self.dst)?;
            let copied = data::copy_stream(job, &mut src, &mut dst, &|| {
                hit.call_once(|| engine::mid(Step::Copy))
            });
            if copied.is_err() {
                src.discard();
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

    /// The keys of the user's rows that the source's log from where `o` reached (to `until`)
    /// touched.
    fn touched_by(&self, o: &Following, until: Option<&Position>) -> Result<online::Pass> {
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
        o.tail.pass(&o.pos, until)
    }

    /// One pass over the source's log from where `o` reached (to `until`): the user's rows it
    /// touched copied again, read through `read`. The caller journals where it reached.
    fn apply_pass(
        &self,
        o: &mut Following,
        until: Option<&Position>,
        read: &mut Db,
    ) -> Result<online::Pass> {
        let pass = self.touched_by(o, until)?;
        let applier = o
            .applier
            .as_mut()
            .ok_or_else(|| Error::inconsistent("a pass ran without its applier session"))?;
        online::apply(
            read,
            &self.dst,
            applier.raw("applying the binary log")?,
            &self.tables,
            &pass.touched,
            self.user,
            self.token,
        )?;
        Ok(pass)
    }

    /// Checksums of the whole account: the source's through `snap`, the destination's at the
    /// same time; they must be equal.
    fn verify_against(&self, snap: &mut Snapshot) -> Result<BTreeMap<String, Checksum>> {
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
            (source, joined(dest.join(), "checksum"))
        });
        let source = source?;
        compare(&source, &dest?)?;
        Ok(source)
    }

    /// Checksums of the rows of `keys` on `db`, per table.
    fn checksums_of(&self, db: &mut Db, keys: &Touched) -> Result<Vec<Checksum>> {
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
        snap: &mut Snapshot,
        keys: &Touched,
        verified: &BTreeMap<String, Checksum>,
        before: &[Checksum],
    ) -> Result<BTreeMap<String, Checksum>> {
        let mut dst = self.conns.get(&self.dst)?;
        let source = self.checksums_of(&mut snap.db, keys)?;
        let dest = self.checksums_of(&mut dst, keys)?;
        let mut sums = BTreeMap::new();
        for (i, t) in self.tables.iter().enumerate() {
            let name = t.name.to_string();
            let changed = |side: &[Checksum]| BTreeMap::from([(name.clone(), side[i])]);
            compare(&changed(&source), &changed(&dest))?;
            let whole = verified
                .get(&name)
                .copied()
                .unwrap_or(Checksum::EMPTY)
                .minus(before[i])
                .plus(source[i]);
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
    fn peer_positions(&self) -> Vec<(HostPort, Option<Position>)> {
        self.from
            .servers
            .iter()
            .map(|s| s.addr())
            .filter(|a| *a != self.src)
            .map(|p| {
                let pos = self
                    .conns
                    .get(&p)
                    .and_then(|mut db| online::current_position(&mut db))
                    .ok();
                (p, pos)
            })
            .collect()
    }

    /// Whether any peer wrote to the user since `peers` were read (or cannot tell); moves each
    /// peer's position on to where its log was read, so the next look reads only what is new.
    fn peers_wrote(&self, peers: &mut [(HostPort, Option<Position>)]) -> bool {
        let mut wrote = false;
        for (peer, pos) in peers.iter_mut() {
            let read = pos.as_ref().map(|from| {
                Tail::new(self.conns, peer, self.user, &self.tables)
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

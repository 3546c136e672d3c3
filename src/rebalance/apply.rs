//! Applying a plan: interrupted migrations of the plan's users are resolved first, moves whose
//! user is no longer where the plan says are skipped, and the rest run on a pool of workers
//! (batches of small accounts, large ones alone), at most `per_shard` at a time on any shard.
//! Re-running the same plan finishes what is left and does nothing twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::schedule::{self, Queue, Task};
use super::PlanFile;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::migrate;
use crate::migrate::batch::{placement, BatchOutcome, Placement, Worker};
use crate::output::Ui;
use crate::ring::directory::{self, Shard, ShardState};
use crate::ring::{self, audit, Changes, Ring};
use crate::shard::conns::Conns;

#[derive(Clone, Debug)]
pub struct Options {
    pub jobs: usize,
    pub per_shard: usize,
    pub max_lag: u64,
    pub lock_ttl: Duration,
    pub dry_run: bool,
    /// How large accounts move (small ones go in batches, offline).
    pub mode: migrate::Mode,
}

/// One account this run moved.
#[derive(Clone, Debug, Serialize)]
pub struct Move {
    pub user: u64,
    pub from: String,
    pub to: String,
    pub rows: u64,
    pub mode: String,
    /// From the `moving` mark to the flip's commit (a batch's accounts share theirs).
    pub read_only_seconds: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Failed {
    pub user: u64,
    pub from: String,
    pub to: String,
    pub error: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub user: u64,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// What `rebalance apply` did (PRODUCT.md 3b pins `done` and `failed`).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Accounts moved by this run.
    pub done: u64,
    pub failed: Vec<Failed>,
    pub skipped: Vec<Skipped>,
    /// Moves of the plan.
    pub planned: u64,
    /// Moves found already done (the user is where the plan sends it).
    pub already_done: u64,
    /// Interrupted migrations of the plan's users resolved before starting.
    pub resumed: u64,
    /// Rows moved by this run.
    pub rows: u64,
    /// Every account moved, how, and how long it was read-only.
    pub moves: Vec<Move>,
    /// Accounts moved online.
    pub online: u64,
    /// The longest any account moved by this run was read-only.
    pub longest_read_only_seconds: Option<f64>,
    pub seconds: f64,
    pub accounts_per_second: f64,
    pub rows_per_second: f64,
    pub jobs: usize,
    pub per_shard: usize,
    pub dry_run: bool,
    /// Under --dry-run: the accounts and rows that would move.
    pub would_move: u64,
    pub would_move_rows: u64,
    /// Accounts left unstarted after an interruption (Ctrl-C).
    pub left: u64,
    pub interrupted: bool,
    /// Users per shard at the end.
    pub shards: Vec<ShardUsers>,
}

#[derive(Debug, Serialize)]
pub struct ShardUsers {
    pub name: String,
    pub state: ShardState,
    pub users: u64,
}

/// Shared by the workers: the queue, the tallies, the display.
struct Work<'a> {
    cfg: &'a Config,
    conns: &'a Conns<'a>,
    ui: &'a Ui,
    shards: &'a [Shard],
    opts: &'a Options,
    queue: Mutex<Queue>,
    ready: Condvar,
    results: Mutex<Vec<(Task, BatchOutcome)>>,
    rows: AtomicU64,
    overall: indicatif::ProgressBar,
    total_rows: u64,
}

impl Work<'_> {
    /// The next task a worker may run, waiting while every pending one is gated; None when
    /// nothing is left (or an interruption stops handing out work).
    fn next(&self) -> Option<Task> {
        let mut q = self.queue.lock().ok()?;
        loop {
            if q.is_empty() || crate::signals::received() {
                return None;
            }
            if let Some(t) = q.take() {
                return Some(t);
            }
            q = self.ready.wait(q).ok()?;
        }
    }

    fn finish(&self, task: Task, outcome: BatchOutcome) {
        let rows: u64 = outcome.done.iter().map(|d| d.rows).sum();
        let moved = rows + self.rows.fetch_add(rows, Ordering::Relaxed);
        self.overall
            .inc((outcome.done.len() + outcome.skipped.len() + outcome.failed.len()) as u64);
        let seconds = self.overall.elapsed().as_secs_f64().max(0.001);
        self.overall.set_message(format!(
            "· {} / {} rows · {:.0} accounts/s",
            indicatif::HumanCount(moved),
            indicatif::HumanCount(self.total_rows),
            self.overall.position() as f64 / seconds
        ));
        if let Ok(mut q) = self.queue.lock() {
            q.finish(&task);
        }
        self.ready.notify_all();
        if let Ok(mut r) = self.results.lock() {
            r.push((task, outcome));
        }
    }

    fn worker(&self, number: usize) {
        let line = self.ui.spinner(&format!("worker {number}: starting"));
        let mut mover: Option<Worker> = None;
        while let Some(task) = self.next() {
            let [from, to] = task.shards().map(|i| &self.shards[i]);
            let what = format!(
                "worker {number}: {} → {} · {} account{} ({} rows)",
                from.name,
                to.name,
                task.accounts(),
                if task.accounts() == 1 { "" } else { "s" },
                indicatif::HumanCount(task.rows())
            );
            let phase = |p: &str| line.set_message(format!("{what} · {p}"));
            phase("starting");
            let outcome = match &task {
                Task::Batch { users, .. } => {
                    let ids: Vec<u64> = users.iter().map(|u| u.0).collect();
                    if mover.is_none() {
                        match Worker::new(
                            self.ui,
                            self.conns,
                            self.opts.lock_ttl,
                            Some(self.opts.max_lag),
                        ) {
                            Ok(m) => mover = Some(m),
                            Err(e) => {
                                let mut o = BatchOutcome::default();
                                o.failed.extend(ids.iter().map(|&u| (u, e.clone())));
                                self.finish(task, o);
                                continue;
                            }
                        }
                    }
                    let m = mover.as_mut().expect("set above");
                    m.move_batch(from, to, &ids, &phase)
                }
                Task::Single { user, .. } => self.single(*user, from, to, &phase),
            };
            self.finish(task, outcome);
        }
        line.finish_and_clear();
    }

    /// One large account, through the streaming migration.
    fn single(&self, user: u64, from: &Shard, to: &Shard, phase: &dyn Fn(&str)) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        let opts = migrate::Options {
            user,
            to: match to.name.parse() {
                Ok(n) => n,
                Err(e) => {
                    out.failed.push((user, Error::Failed(e)));
                    return out;
                }
            },
            keep_source: false,
            clear_destination: false,
            lock_ttl: self.opts.lock_ttl,
            max_lag: self.opts.max_lag,
            dry_run: false,
            mode: self.opts.mode,
        };
        // The plan's source is checked first: a user that moved elsewhere is not chased.
        let here = ring::open(self.cfg).and_then(|mut db| directory::user(&mut db, user));
        match here.map(|p| placement(user, p.as_ref(), from, to)) {
            Ok(Placement::Movable) => {
                match migrate::migrate_with(self.conns, &opts, self.ui, phase) {
                    Ok(r) => out.done.push(migrate::batch::Moved {
                        user,
                        rows: r.rows.values().sum(),
                        mode: r.mode,
                        read_only_seconds: r.read_only_seconds,
                    }),
                    Err(e) => out.failed.push((user, e)),
                }
            }
            Ok(Placement::Arrived) => out.already.push(user),
            Ok(Placement::Elsewhere(why)) => out.skipped.push((user, why)),
            Err(e) => out.failed.push((user, e)),
        }
        out
    }
}

/// Runs `tasks` on `opts.jobs` workers; the outcomes, and the accounts left unstarted.
fn run_tasks(
    cfg: &Config,
    conns: &Conns,
    ui: &Ui,
    shards: &[Shard],
    opts: &Options,
    tasks: Vec<Task>,
) -> Result<(Vec<(Task, BatchOutcome)>, u64)> {
    let accounts: usize = tasks.iter().map(Task::accounts).sum();
    let total_rows: u64 = tasks.iter().map(Task::rows).sum();
    let work = Work {
        cfg,
        conns,
        ui,
        shards,
        opts,
        queue: Mutex::new(Queue::new(tasks, shards.len(), opts.per_shard)),
        ready: Condvar::new(),
        results: Mutex::new(Vec::new()),
        rows: AtomicU64::new(0),
        overall: ui.accounts_bar(accounts as u64),
        total_rows,
    };
    std::thread::scope(|s| {
        for n in 1..=opts.jobs {
            let work = &work;
            std::thread::Builder::new()
                .name(format!("rebalance-{n}"))
                .spawn_scoped(s, move || work.worker(n))
                .map(|_| ())
                .map_err(|e| Error::Failed(format!("starting {} workers: {e}", opts.jobs)))?;
        }
        Ok::<(), Error>(())
    })?;
    work.overall.finish_and_clear();
    let left = work
        .queue
        .lock()
        .map(|mut q| q.abandon() as u64)
        .unwrap_or(0);
    let results = work.results.into_inner().unwrap_or_default();
    Ok((results, left))
}

/// Applies `plan`.
pub fn apply(
    cfg: &Config,
    changes: &Changes,
    plan: &PlanFile,
    opts: &Options,
    ui: &Ui,
) -> Result<Report> {
    let started = Instant::now();
    let conns = Conns::new(cfg, changes);
    let mut ring_db = conns.ring()?;
    let shards = directory::shards(&mut ring_db)?;
    let index = shard_index(&shards, plan)?;
    let mut report = Report {
        planned: plan.moves.len() as u64,
        jobs: opts.jobs,
        per_shard: opts.per_shard,
        dry_run: opts.dry_run,
        ..Report::default()
    };
    let users: Vec<u64> = plan.moves.iter().map(|m| m.user).collect();
    if !opts.dry_run {
        report.resumed = resume_interrupted(&conns, &mut ring_db, &users, opts, ui)?;
    }
    let now = directory::placements(&mut ring_db, &users)?;
    let pending = pending_moves(plan, &shards, &index, &now, &mut report);
    if opts.dry_run {
        report.would_move = pending.len() as u64;
        report.would_move_rows = pending.iter().map(|m| m.1).sum();
        report.shards = users_per_shard(&mut ring_db, &shards)?;
        return Ok(report);
    }
    if !pending.is_empty() {
        ui.status(&format!(
            "moving {} accounts ({} rows) with {} workers, at most {} per shard",
            pending.len(),
            pending.iter().map(|m| m.1).sum::<u64>(),
            opts.jobs,
            opts.per_shard
        ));
    }
    let run_ui = ui.multi();
    let (mut results, left) = run_tasks(
        cfg,
        &conns,
        &run_ui,
        &shards,
        opts,
        schedule::tasks(&pending),
    )?;
    // Accounts whose lock was in use (another job, or a concurrent apply) get one more try once
    // everything else is done; by then a concurrent apply has usually moved them.
    let rows: HashMap<u64, u64> = pending.iter().map(|m| (m.0, m.1)).collect();
    let busy: Vec<schedule::Move> = results
        .iter_mut()
        .flat_map(|(task, o)| {
            let [from, to] = task.shards();
            let (busy, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut o.failed)
                .into_iter()
                .partition(|(_, e)| matches!(e, Error::LockInUse(_)));
            o.failed = rest;
            // With their planned rows, so a large account goes the streaming way again.
            busy.into_iter()
                .map(|(u, _)| (u, rows[&u], from, to))
                .collect::<Vec<_>>()
        })
        .collect();
    if !busy.is_empty() && !crate::signals::received() {
        std::thread::sleep(Duration::from_millis(500));
        let (again, _) = run_tasks(cfg, &conns, &run_ui, &shards, opts, schedule::tasks(&busy))?;
        results.extend(again);
    }
    settle_busy(cfg, &mut ring_db, &shards, &mut results)?;
    tally(&mut report, results, &shards);
    report.moves.sort_by_key(|m| m.user);
    report.online = report.moves.iter().filter(|m| m.mode == "online").count() as u64;
    report.longest_read_only_seconds = report
        .moves
        .iter()
        .filter_map(|m| m.read_only_seconds)
        .reduce(f64::max);
    report.failed.sort_by_key(|f| f.user);
    report.skipped.sort_by_key(|s| s.user);
    report.left = left;
    report.interrupted = crate::signals::received();
    report.seconds = started.elapsed().as_secs_f64();
    if report.seconds > 0.0 {
        report.accounts_per_second = report.done as f64 / report.seconds;
        report.rows_per_second = report.rows as f64 / report.seconds;
    }
    if ring_db.is_lost() {
        ring_db.reconnect(cfg)?;
    }
    report.shards = users_per_shard(&mut ring_db, &shards)?;
    ring_db.run("auditing", |c| {
        audit::record(
            c,
            "rebalance.apply",
            &format!("{} moves", report.planned),
            serde_json::json!({ "done": report.done, "failed": report.failed.len(), "skipped": report.skipped.len(),
                                "already_done": report.already_done, "rows": report.rows, "seconds": report.seconds,
                                "jobs": report.jobs, "interrupted": report.interrupted }),
        )
    })?;
    Ok(report)
}

/// Resolves unfinished migrations of the plan's users (a crashed earlier apply leaves them),
/// so their moves start from a known state. The count resolved. A holder that just died may
/// still hold its GET_LOCKs for a moment, and a live one (a concurrent apply) finishes its
/// Each shard's position by name; refuses a plan naming a shard that is not registered.
fn shard_index<'s>(shards: &'s [Shard], plan: &PlanFile) -> Result<HashMap<&'s str, usize>> {
    let index: HashMap<&str, usize> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    for m in &plan.moves {
        for name in [&m.from, &m.to] {
            if !index.contains_key(name.as_str()) {
                return Err(Error::NotFound(format!(
                    "the plan moves user {} via shard `{name}`, which is not registered; nothing was moved",
                    m.user
                )));
            }
        }
    }
    Ok(index)
}

/// The plan's moves still to make: those already made are counted, and those that cannot be
/// made (the user moved elsewhere, the destination takes no users) are skipped with why.
fn pending_moves(
    plan: &PlanFile,
    shards: &[Shard],
    index: &HashMap<&str, usize>,
    now: &HashMap<u64, directory::Placed>,
    report: &mut Report,
) -> Vec<schedule::Move> {
    let mut pending: Vec<schedule::Move> = Vec::new();
    for m in &plan.moves {
        let (from, to) = (index[m.from.as_str()], index[m.to.as_str()]);
        let skip = |reason: String| Skipped {
            user: m.user,
            from: m.from.clone(),
            to: m.to.clone(),
            reason,
        };
        match placement(m.user, now.get(&m.user), &shards[from], &shards[to]) {
            Placement::Arrived => report.already_done += 1,
            Placement::Movable if shards[to].state != ShardState::Active => {
                report.skipped.push(skip(format!(
                    "shard {} is {}: only active shards take users",
                    m.to, shards[to].state
                )))
            }
            Placement::Movable => pending.push((m.user, m.rows, from, to)),
            Placement::Elsewhere(why) => report.skipped.push(skip(why)),
        }
    }
    pending
}

/// Accounts still busy after the second try were being moved by someone else all along (a
/// concurrent apply of this plan or another): where are they now?
fn settle_busy(
    cfg: &Config,
    ring_db: &mut Ring,
    shards: &[Shard],
    results: &mut [(Task, BatchOutcome)],
) -> Result<()> {
    let still_busy: Vec<u64> = results
        .iter()
        .flat_map(|(_, o)| o.failed.iter())
        .filter(|(_, e)| matches!(e, Error::LockInUse(_)))
        .map(|(u, _)| *u)
        .collect();
    if !still_busy.is_empty() {
        if ring_db.is_lost() {
            ring_db.reconnect(cfg)?;
        }
        let placed = directory::placements(ring_db, &still_busy)?;
        for (task, o) in results.iter_mut() {
            let [from, to] = task.shards().map(|i| &shards[i]);
            let failed = std::mem::take(&mut o.failed);
            for (u, e) in failed {
                if !matches!(e, Error::LockInUse(_)) {
                    o.failed.push((u, e));
                    continue;
                }
                match placement(u, placed.get(&u), from, to) {
                    Placement::Arrived => o.already.push(u),
                    Placement::Elsewhere(why) => o.skipped.push((u, why)),
                    Placement::Movable => o.failed.push((u, e)),
                }
            }
        }
    }
    Ok(())
}

/// Adds the workers' outcomes to the report, per move.
fn tally(report: &mut Report, results: Vec<(Task, BatchOutcome)>, shards: &[Shard]) {
    for (task, o) in results {
        let [from, to] = task.shards().map(|i| shards[i].name.clone());
        report.done += o.done.len() as u64;
        report.already_done += o.already.len() as u64;
        report.rows += o.done.iter().map(|d| d.rows).sum::<u64>();
        report.moves.extend(o.done.iter().map(|d| Move {
            user: d.user,
            from: from.to_string(),
            to: to.to_string(),
            rows: d.rows,
            mode: d.mode.clone(),
            read_only_seconds: d.read_only_seconds,
        }));
        for (user, reason) in o.skipped {
            report.skipped.push(Skipped {
                user,
                from: from.to_string(),
                to: to.to_string(),
                reason,
            });
        }
        report
            .failed
            .extend(o.failed.into_iter().map(|(user, e)| Failed {
                user,
                from: from.to_string(),
                to: to.to_string(),
                error: e.to_string(),
            }));
    }
}

/// batch in a moment: locks in use are tried again for a while.
fn resume_interrupted(
    conns: &Conns,
    ring_db: &mut Ring,
    users: &[u64],
    opts: &Options,
    ui: &Ui,
) -> Result<u64> {
    let wanted: HashSet<u64> = users.iter().copied().collect();
    let deadline = Instant::now() + opts.lock_ttl.max(Duration::from_secs(5));
    let mut resolved = 0;
    loop {
        let entries: Vec<migrate::Entry> =
            migrate::journal(ring_db, migrate::Entries::Unfinished(None))?
                .into_iter()
                .filter(|e| wanted.contains(&e.user))
                .collect();
        if entries.is_empty() {
            return Ok(resolved);
        }
        ui.status(&format!(
            "resolving {} interrupted migrations first",
            entries.len()
        ));
        let mut busy = false;
        for e in &entries {
            match migrate::resume_entry(conns, ring_db, e, (opts.lock_ttl, opts.max_lag), ui) {
                Ok(r) if r.now.is_final() => resolved += 1,
                Ok(_) => busy = true,
                Err(Error::LockInUse(_)) => busy = true,
                Err(err) => return Err(err),
            }
        }
        if busy {
            if Instant::now() >= deadline || crate::signals::received() {
                // Their moves are skipped and reported; a later run resolves them.
                return Ok(resolved);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn users_per_shard(ring_db: &mut Db, shards: &[Shard]) -> Result<Vec<ShardUsers>> {
    let counts = directory::user_counts(ring_db)?;
    Ok(shards
        .iter()
        .map(|s| ShardUsers {
            name: s.name.to_string(),
            state: s.state,
            users: counts.get(&s.id).copied().unwrap_or(0),
        })
        .collect())
}

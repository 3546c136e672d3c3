//! Moving one user between shards, so that at every instant the user's rows are whole on the
//! shard the directory names, whatever fails.
//!
//! The steps (each journaled in `migrations`, each safe to repeat): take the account lock; mark
//! the user `moving`; copy every per-user table; verify counts and checksums computed by both
//! servers; flip the directory in one ring transaction checked against the lock's token — the
//! commit point; delete the source's rows; release. Writes to shards are fenced by the token
//! where the data lives (`shard::fence`), writes to the ring by the lease row, so a holder that
//! lost its lock cannot change anything afterwards.
//!
//! `state` orders the steps (pure), `engine` runs them for every kind of move, `streamed` and
//! `batch` move the rows of one large account and of many small ones, `online` follows a
//! source's binary log; this module is the entry: `migrate`, `resume` and the journal.

pub mod applier;
pub mod batch;
pub mod binlog;
pub mod data;
pub mod engine;
pub mod online;
pub mod state;
pub mod streamed;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::lock::{Held, LockClient, Request};
use crate::output::Ui;
use crate::ring::directory::{self, Shard};
use crate::ring::{audit, Changes, Ring};
use crate::shard::conns::Conns;
use crate::shard::routing;
use crate::types::{HostPort, LockName, ShardName};
use data::{Checksum, Table};
use engine::{Account, Group, Holder, Route};
pub use online::Mode;
use state::{Course, State};
use streamed::Streamed;

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
    /// Online: what following the source's binary log did.
    pub catch_up: Option<streamed::CaughtUp>,
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
    rows.into_iter().map(|mut r| entry(&mut r)).collect()
}

/// One journal row, refused (never defaulted) when a column is missing or of the wrong type:
/// a resume acting on a guessed entry could move a user the wrong way.
fn entry(r: &mut mysql::Row) -> Result<Entry> {
    fn column<T: mysql::prelude::FromValue>(r: &mut mysql::Row, i: usize, name: &str) -> Result<T> {
        match r.take_opt::<T, _>(i) {
            Some(Ok(v)) => Ok(v),
            _ => Err(Error::inconsistent(format!(
                "a migration journal row has no valid `{name}`; nothing was done with it"
            ))),
        }
    }
    let rows: String = column(r, 11, "row_counts")?;
    Ok(Entry {
        migration_id: column(r, 0, "migration_id")?,
        user: column(r, 1, "user_id")?,
        from: column(r, 2, "from_shard")?,
        to: column(r, 3, "to_shard")?,
        from_id: column(r, 4, "from_shard")?,
        to_id: column(r, 5, "to_shard")?,
        state: column::<String>(r, 6, "state")?
            .parse()
            .map_err(Error::inconsistent)?,
        token: column(r, 7, "token")?,
        keep_source: column::<u8>(r, 8, "keep_source")? == 1,
        source_server: column(r, 9, "source_server")?,
        dest_server: column(r, 10, "dest_server")?,
        rows: serde_json::from_str(&rows).map_err(|e| {
            Error::inconsistent(format!(
                "a migration journal row's row_counts is not JSON: {e}"
            ))
        })?,
        error: column(r, 12, "error")?,
        started_at: column(r, 13, "started_at")?,
        updated_at: column(r, 14, "updated_at")?,
        mode: column(r, 15, "mode")?,
        binlog_position: column(r, 16, "binlog_position")?,
        read_only_seconds: column(r, 17, "read_only_seconds")?,
    })
}

/// A single move's lock: renewed by its keeper thread, which says so when it cannot.
struct Kept<'a> {
    cfg: &'a Config,
    ring: &'a mut Ring,
    lost: &'a AtomicBool,
}

impl Holder for Kept<'_> {
    /// The ring session, opened again if an I/O error ended it (the ring may have failed over
    /// to its other server between two steps).
    fn ring(&mut self) -> Result<&mut Ring> {
        if self.ring.is_lost() {
            self.ring.reconnect(self.cfg)?;
        }
        Ok(self.ring)
    }

    fn keep(&mut self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::LockLost("the migration lock was lost".into()));
        }
        Ok(())
    }
}

/// The first of the shard's servers, in the user's routing order, that answers.
fn pick_server(
    conns: &Conns,
    user: u64,
    shard: &Shard,
    preferred: Option<&str>,
) -> Result<HostPort> {
    let mut order: Vec<HostPort> = routing::candidates(user, &shard.servers)
        .iter()
        .map(|s| s.addr.clone())
        .collect();
    if let Some(p) = preferred.and_then(|p| p.parse::<HostPort>().ok()) {
        order.retain(|a| *a != p);
        order.insert(0, p);
    }
    conns.first_answering(&shard.name, order)
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
    crate::lock::holding(cfg, &req, Duration::ZERO, |held, watch| {
        let lost = watch.flag();
        failpoint!(state::AFTER_LOCK);
        f(held, lost)
    })
}

fn shard_by_id(shards: &[Shard], id: u32) -> Result<&Shard> {
    shards
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| Error::inconsistent(format!("shard id {id} is not registered")))
}

/// The route of one user's move: the servers its routing names on both shards (`preferred`
/// first, a journal's, where they answer) and the tables as both describe them.
fn route<'a>(
    conns: &Conns,
    user: u64,
    (from, to): (&'a Shard, &'a Shard),
    (src, dst): (Option<&str>, Option<&str>),
) -> Result<Route<'a>> {
    let src = pick_server(conns, user, from, src)?;
    let dst = pick_server(conns, user, to, dst)?;
    let tables = describe_tables(conns, &src, &dst)?;
    Ok(Route {
        from,
        to,
        src,
        dst,
        tables,
    })
}

pub(crate) fn describe_tables(conns: &Conns, src: &HostPort, dst: &HostPort) -> Result<Vec<Table>> {
    let cfg = conns.cfg();
    let mut s = conns.get(src)?;
    let mut d = conns.get(dst)?;
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
fn refuse_strays(conns: &Conns, dst: &HostPort, tables: &[Table], user: u64) -> Result<()> {
    let found = data::strays(&mut *conns.get(dst)?, tables, &[user])?;
    match found.get(&user) {
        Some(rows) => Err(data::strays_refusal(dst, user, rows)),
        None => Ok(()),
    }
}

/// How a move goes, and (offline, where online was possible to ask for) why.
enum Chosen {
    Online,
    Offline(Option<String>),
}

/// Online where asked for or (auto) where the account is large enough, if the source's binary
/// log can be followed; `--mode online` where it cannot is refused before anything changes.
fn choose_mode(
    conns: &Conns,
    mode: Mode,
    rows: u64,
    from: &Shard,
    src: &HostPort,
) -> Result<Chosen> {
    let cfg = conns.cfg();
    if mode == Mode::Offline {
        return Ok(Chosen::Offline(None));
    }
    if mode == Mode::Auto && rows < cfg.migrate.online_min_rows {
        return Ok(Chosen::Offline(None));
    }
    // On the command's sessions: the copy's lag watcher and the catch-up use them again.
    let peers: Vec<(HostPort, u32)> = from
        .servers
        .iter()
        .map(|s| s.addr.clone())
        .filter(|a| a != src)
        .filter_map(|p| {
            let id = conns
                .get(&p)
                .and_then(|mut db| {
                    db.exec_first::<u32>("reading the server id", "SELECT @@server_id", ())
                })
                .ok()?;
            Some((p, id.unwrap_or(0)))
        })
        .collect();
    let peers_write = from
        .servers
        .iter()
        .any(|s| s.addr != *src && s.status == directory::ServerStatus::Online);
    let unmet = online::unmet_preconditions(cfg, &mut *conns.get(src)?, &peers, peers_write)?;
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
pub fn migrate(cfg: &Config, changes: &Changes, opts: &Options, ui: &Ui) -> Result<Report> {
    migrate_with(&Conns::new(cfg, changes), opts, ui, &|_| {})
}

/// `migrate` on the command's shard sessions; `phase` hears which step is running. The dry
/// run and the real run share one plan.
pub fn migrate_with(
    conns: &Conns,
    opts: &Options,
    ui: &Ui,
    phase: &dyn Fn(&str),
) -> Result<Report> {
    let started = Instant::now();
    let mut ring_db = conns.ring()?;
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
        resume_unfinished(conns, &mut ring_db, opts, ui)?;
    }
    let mut plan = match plan(conns, &mut ring_db, &shards, to, opts, ui)? {
        Planned::Move(plan) => plan,
        Planned::Nothing(report) => return Ok(report),
    };
    if opts.dry_run {
        plan.report.state = "planned".into();
        plan.report.note = format!(
            "would copy {} from {} to {}",
            plan.report.mode, plan.route.src, plan.route.dst
        );
        return Ok(plan.report);
    }
    execute(conns, &mut ring_db, plan, opts, (ui, phase), started)
}

/// Finishes or rolls back the user's interrupted migrations first; one a live holder drives
/// is in progress, not interrupted.
fn resume_unfinished(conns: &Conns, ring_db: &mut Ring, opts: &Options, ui: &Ui) -> Result<()> {
    for entry in journal(ring_db, Entries::Unfinished(Some(opts.user)))? {
        match resume_entry(conns, ring_db, &entry, (opts.lock_ttl, opts.max_lag), ui) {
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
    Ok(())
}

/// A move decided: by which route, online or offline, and the report so far.
struct Plan<'s> {
    to: &'s Shard,
    route: Route<'s>,
    course: Course,
    report: Report,
}

enum Planned<'s> {
    Move(Plan<'s>),
    /// Nothing to move (the user already lives there): the report says so.
    Nothing(Report),
}

/// Decides the move: where the user is, that it may move, the route, the rows to copy and
/// whether online; refuses what may not be moved.
fn plan<'s>(
    conns: &Conns,
    ring_db: &mut Ring,
    shards: &'s [Shard],
    to: &'s Shard,
    opts: &Options,
    ui: &Ui,
) -> Result<Planned<'s>> {
    let Some((from_id, state)) = directory::user(ring_db, opts.user)? else {
        return Err(Error::NotFound(format!(
            "user {} is not assigned to any shard",
            opts.user
        )));
    };
    let from = shard_by_id(shards, from_id)?;
    let mut report = Report {
        user: opts.user,
        from: from.name.to_string(),
        to: to.name.to_string(),
        ..Report::default()
    };
    if from.id == to.id {
        report.state = "done".into();
        report.note = format!(
            "user {} already lives on {}; nothing to do",
            opts.user, to.name
        );
        return Ok(Planned::Nothing(report));
    }
    if state != directory::UserState::Active {
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
    let route = route(conns, opts.user, (from, to), (None, None))?;
    let (src, dst, tables) = (&route.src, &route.dst, &route.tables);
    {
        let mut s = conns.get(src)?;
        for t in tables {
            report
                .rows
                .insert(t.name.to_string(), data::count(&mut s, t, opts.user)?);
        }
    }
    if !opts.clear_destination {
        refuse_strays(conns, dst, tables, opts.user)?;
    }
    let total: u64 = report.rows.values().sum();
    let course = match choose_mode(conns, opts.mode, total, from, src)? {
        Chosen::Online => Course::Online {
            keep_source: opts.keep_source,
        },
        Chosen::Offline(why) => {
            if let Some(why) = why {
                ui.status(&format!("moving user {} offline: {why}", opts.user));
                report.note = format!("offline: {why}");
            }
            Course::Offline {
                keep_source: opts.keep_source,
            }
        }
    };
    report.mode = if course.is_online() {
        "online"
    } else {
        "offline"
    }
    .into();
    Ok(Planned::Move(Plan {
        to,
        route,
        course,
        report,
    }))
}

/// Moves the user as planned, under its account lock, and audits the move.
fn execute(
    conns: &Conns,
    ring_db: &mut Ring,
    plan: Plan,
    opts: &Options,
    (ui, phase): (&Ui, &dyn Fn(&str)),
    started: Instant,
) -> Result<Report> {
    let cfg = conns.cfg();
    let Plan {
        to,
        route,
        course,
        mut report,
    } = plan;
    // Named in the report's notes after the route has gone to the move.
    let src = route.src.clone();
    let rows = report.rows.clone();
    let (migration_id, token, outcome, caught_up) = with_lock(
        cfg,
        opts.user,
        opts.lock_ttl,
        &format!("migrate to {}", to.name),
        |held, lost| {
            let mut kept = Kept {
                cfg,
                ring: &mut *ring_db,
                lost,
            };
            let mut g = Group::new(
                ui,
                conns,
                route,
                vec![account(held, 0)],
                course,
                &mut kept,
                phase,
            );
            g.started = started;
            g.clear_destination = opts.clear_destination;
            g.journal_start(opts.keep_source, Some(&rows))?;
            let migration_id = g.accounts[0].migration_id;
            let mut mover = Streamed::new(lost, Some(opts.max_lag), rows.clone());
            let outcome = engine::drive(&mut g, &mut mover)?;
            Ok((migration_id, held.token, outcome, mover.caught_up))
        },
    )?;
    report.catch_up = caught_up;
    report.migration_id = Some(migration_id);
    report.token = Some(token);
    report.state = outcome.reached.unwrap_or(State::Started).to_string();
    report.read_only_seconds = outcome.read_only_seconds;
    report.timings = outcome.timings;
    report.checksums = outcome.sums.into_values().next().unwrap_or_default();
    if let Some(e) = outcome.cleanup_error {
        report.cleanup_pending = true;
        report.note = format!(
            "user {} moved to {}, but the clean-up of {src} did not finish ({e}); `shardctl migrate resume {}` finishes it",
            opts.user, to.name, opts.user
        );
    } else if opts.keep_source {
        report.note = format!(
            "source rows kept on {src}; `shardctl migrate resume {}` deletes them",
            opts.user
        );
    }
    ring_db.run("auditing", |c| {
        audit::record(c, "migrate", &opts.user.to_string(), json!({ "from": report.from, "to": report.to, "state": report.state,
            "rows": report.rows, "migration_id": report.migration_id, "token": report.token, "seconds": report.timings.get("total") }))
    })?;
    Ok(report)
}

/// The engine's account for a lock held on it.
fn account(held: &Held, migration_id: u64) -> Account {
    Account {
        user: held.name.account().unwrap_or_default(),
        lock: held.name.clone(),
        token: held.token,
        migration_id,
    }
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

/// Finishes (past the flip) or rolls back (before it) one unfinished journal entry: the
/// engine's loop, started from the entry's state.
pub fn resume_entry(
    conns: &Conns,
    ring_db: &mut Ring,
    entry: &Entry,
    (ttl, max_lag): (Duration, u64),
    ui: &Ui,
) -> Result<Resumed> {
    let cfg = conns.cfg();
    let shards = directory::shards(ring_db)?;
    let from = shard_by_id(&shards, entry.from_id)?;
    let to = shard_by_id(&shards, entry.to_id)?;
    let course = Course::Resume {
        state: entry.state,
        online: entry.mode == "online",
    };
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
            let preferred = (entry.source_server.as_deref(), entry.dest_server.as_deref());
            let route = route(conns, entry.user, (from, to), preferred)?;
            let mut kept = Kept {
                cfg,
                ring: &mut *ring_db,
                lost,
            };
            let mut g = Group::new(
                ui,
                conns,
                route,
                vec![account(held, entry.migration_id)],
                course,
                &mut kept,
                &|_| {},
            );
            let outcome = engine::drive(
                &mut g,
                &mut Streamed::new(lost, Some(max_lag), BTreeMap::new()),
            )?;
            match (outcome.cleanup_error, outcome.reached) {
                (Some(e), _) => Err(e),
                (None, Some(State::Aborted)) => Err(Error::Failed(format!(
                    "migration #{}: the destination could not be cleared; run `migrate resume` again",
                    entry.migration_id
                ))),
                (None, reached) => Ok(reached.unwrap_or(entry.state)),
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
pub fn resume(
    cfg: &Config,
    changes: &Changes,
    user: Option<u64>,
    (ttl, max_lag): (Duration, u64),
    ui: &Ui,
) -> Result<ResumeOutcome> {
    let conns = Conns::new(cfg, changes);
    let mut ring_db = conns.ring()?;
    let entries = journal(&mut ring_db, Entries::Unfinished(user))?;
    let mut done = Vec::new();
    let mut in_progress = Vec::new();
    let mut failed = Vec::new();
    for e in entries {
        match resume_entry(&conns, &mut ring_db, &e, (ttl, max_lag), ui) {
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

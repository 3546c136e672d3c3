//! Taking half of every shard out of service and bringing it back (`maintenance`).
//!
//! A drain checks every shard at once (rules in `rules`), then per shard, in a ring transaction
//! that holds the shard's rows and checks again that the other half is online (two drains at
//! once cannot take both halves), hands the drained servers' users over to the rest of the shard
//! (`shard::handover`, with the home guard) and marks the half `draining`; then it waits for the
//! application sessions on the drained servers to end (and, without the home guard, for the
//! other half to apply everything they wrote) and marks them `offline`. A restore waits until
//! each server answers and its replication has caught up, then in the same kind of transaction
//! hands its users back and marks it `online`.

pub mod roll;
pub mod rules;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::db::Db;
use crate::doctor::{self, grants};
use crate::error::{Error, Result};
use crate::output::Ui;
use crate::parallel;
use crate::ring::directory::{self, Half, Server, ServerStatus, Shard};
use crate::ring::{self, audit, fences, Changed, Changes, Ring};
use crate::shard::replica::{self, ReplicaStatus};
use crate::shard::sessions::{self, Session};
use crate::shard::{handover, home, probe};
use crate::types::HostPort;
use rules::Facts;

/// How long the query rate is sampled, where capacities ask for it.
const RATE_SAMPLE: Duration = Duration::from_secs(1);
/// How often a waiting drain or restore looks again.
const POLL: Duration = Duration::from_millis(100);

/// What is left until `deadline`, plus a second for the answer to travel: the bound for a
/// statement that itself waits until then (MASTER_GTID_WAIT).
fn until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1)
}

/// Bounds every statement `db` sends from now by what is left until `deadline` (and by `cap`
/// when given): a session logged in early must not wait past the deadline when its server
/// freezes later.
fn bound_by(db: &mut Db, deadline: Instant, cap: Option<Duration>) -> Result<()> {
    let left = until(deadline);
    let t = cap.map_or(left, |c| c.min(left));
    db.set_timeouts(t, t)
}

/// How much to trust a probe.
#[derive(Clone, Copy, PartialEq)]
enum Trust {
    /// Report what the server shows.
    AsShown,
    /// First check the login may see every session and the replication state: without
    /// PROCESS a server lists only our own session, which a drain would take for drained.
    CheckGrants,
}

/// Probes `server` on a session of its own for a maintenance decision: when `sample` is set,
/// its query rate over that long too.
fn facts(cfg: &Config, server: &Server, sample: Option<Duration>, trust: Trust) -> Facts {
    let found = probe::session(cfg, &server.addr, probe::bound(cfg)).and_then(|mut db| {
        if trust == Trust::CheckGrants {
            if let Some(gap) = grants::gap(
                &mut db,
                cfg.shards.database.as_str(),
                doctor::rules::drain_needs,
            )? {
                return Err(Error::Refused(format!(
                    "{}; run: {}",
                    gap.describe(),
                    gap.statements.join(" ")
                )));
            }
        }
        let first = probe::probe(cfg, &mut db)?;
        let qps = match sample {
            Some(d) => {
                let t0 = Instant::now();
                std::thread::sleep(d);
                let q1 = probe::questions(&mut db)?;
                Some(q1.saturating_sub(first.questions) as f64 / t0.elapsed().as_secs_f64())
            }
            None => None,
        };
        Ok((first, qps))
    });
    match found {
        Ok((p, qps)) => Facts {
            server: server.clone(),
            probe: Ok(p),
            qps,
        },
        Err(e) => Facts {
            server: server.clone(),
            probe: Err(e.to_string()),
            qps: None,
        },
    }
}

/// The servers of `shards` worth probing for a drain of `half` (not those of the half already
/// offline: they serve nobody and may be down), probed at once. The query rate is sampled only
/// on shards whose other half has capacities configured.
fn shard_facts(cfg: &Config, shards: &[&Shard], half: Half) -> Vec<Vec<Facts>> {
    let targets: Vec<(usize, Server, Option<Duration>)> = shards
        .iter()
        .enumerate()
        .flat_map(|(i, shard)| {
            let others: Vec<&Server> = shard.servers.iter().filter(|s| s.half != half).collect();
            let sample = (!others.is_empty() && others.iter().all(|s| s.capacity_qps.is_some()))
                .then_some(RATE_SAMPLE);
            shard
                .servers
                .iter()
                .filter(|s| !(s.half == half && s.status == ServerStatus::Offline))
                .map(move |s| (i, s.clone(), sample))
        })
        .collect();
    let probes = parallel::each(&targets, |(_, s, sample)| {
        facts(cfg, s, *sample, Trust::CheckGrants)
    });
    let mut out: Vec<Vec<Facts>> = vec![Vec::new(); shards.len()];
    for ((i, _, _), f) in targets.into_iter().zip(probes) {
        out[i].push(f);
    }
    out
}

/// One server of the half, as the command leaves it.
#[derive(Clone, Debug, Serialize)]
pub struct ServerReport {
    pub shard: String,
    pub host: String,
    pub port: u16,
    pub half: Half,
    pub status: ServerStatus,
    /// Whether this run changed its status.
    pub changed: bool,
    /// Why it did not reach the status asked for, or what a dry run would do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ServerReport {
    pub fn addr(&self) -> HostPort {
        HostPort::new(self.host.clone(), self.port)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    pub shard: String,
    pub reason: String,
}

/// An application session that kept a server from draining.
#[derive(Clone, Debug, Serialize)]
pub struct Holdout {
    pub shard: String,
    pub server: String,
    #[serde(flatten)]
    pub session: Session,
}

/// What a drain or restore did (or, in a dry run, would do).
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub half: Half,
    pub dry_run: bool,
    /// Every server of the half, with its status now.
    pub servers: Vec<ServerReport>,
    /// Shards a drain refused, and why.
    pub refused: Vec<Refusal>,
    /// Application sessions still open on servers that did not drain (for a dry run: open now).
    pub sessions: Vec<Holdout>,
    /// shardctl locks whose GET_LOCK is held on a drained server: their holders lose that
    /// server with it (and their leases are then waited out, not taken over).
    pub locks: Vec<crate::lock::HolderOn>,
    /// Why `locks` could not be read (the lock backend did not answer): exit 5, the drain
    /// itself done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locks_unknown: Option<String>,
    /// How many servers changed status.
    pub changed: usize,
    pub seconds: f64,
    /// Whether the database enforced the hand-over (`[shards] home_guard`).
    pub home_guard: bool,
    /// Each shard whose writers changed, handed over with never two servers accepting one
    /// user's writes.
    pub handovers: Vec<handover::Handover>,
    /// What the operator must know about how safe this was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// A signal stopped the command: what it left is said per server.
    pub interrupted: bool,
    /// A refusal stopped the whole command before it changed anything.
    #[serde(skip)]
    pub blocked: bool,
}

/// Said by every drain and restore without the home guard.
const UNGUARDED: &str = "[shards] home_guard is off: the hand-over relies on every application following the ring; a session still writing on the old server while the new one takes the same user's writes loses updates (set home_guard = true and run `shardctl guard install`)";

/// Marks a dry run's servers that would change.
const WOULD: &str = "would change";

/// The outcome as the half's servers of every shard stand after `changes` (statuses written),
/// with `notes` on those that did not get where they were asked to go; no refusal or session.
fn report(
    shards: &[Shard],
    half: Half,
    dry_run: bool,
    start: Instant,
    changes: &HashMap<HostPort, ServerStatus>,
    notes: &HashMap<HostPort, String>,
) -> Outcome {
    let servers: Vec<ServerReport> = shards
        .iter()
        .flat_map(|shard| {
            shard.servers.iter().filter(|s| s.half == half).map(|s| {
                let addr = s.addr.clone();
                let new = changes.get(&addr).copied();
                ServerReport {
                    shard: shard.name.to_string(),
                    host: s.addr.host.clone(),
                    port: s.addr.port,
                    half,
                    status: new.unwrap_or(s.status),
                    changed: new.is_some_and(|n| n != s.status),
                    note: notes.get(&addr).cloned(),
                }
            })
        })
        .collect();
    Outcome {
        locks_unknown: None,
        half,
        dry_run,
        changed: servers.iter().filter(|s| s.changed).count(),
        servers,
        refused: Vec::new(),
        sessions: Vec::new(),
        locks: Vec::new(),
        seconds: start.elapsed().as_secs_f64(),
        home_guard: false,
        handovers: Vec::new(),
        warning: None,
        interrupted: false,
        blocked: false,
    }
}

pub struct DrainOptions {
    pub half: Half,
    pub timeout: Duration,
    pub max_lag: u64,
    pub dry_run: bool,
    pub skip_unsafe: bool,
    /// Only these servers of the half (a roll picking up after a failure); None: all of them.
    pub only: Option<Vec<HostPort>>,
    /// A roll's lock: every ring write of the drain is refused once a successor holds it.
    pub fence: Option<fences::Fence>,
}

/// Why a server did not finish draining.
enum Stuck {
    Sessions(Vec<Session>),
    Problem(String),
    /// No server of the other half answers any more: the shard would be left with none.
    PeerDown(String),
    /// The draining server itself does not answer: it serves nobody either way.
    Dead(String),
}

pub fn drain(cfg: &Config, changes: &Changes, opts: &DrainOptions, ui: &Ui) -> Result<Outcome> {
    let start = Instant::now();
    // A signal stops the waits at their next look and undoes a hand-over in progress.
    crate::signals::catch_termination();
    let half = opts.half;
    let mut ring = Ring::open(cfg, changes)?;
    // Nothing the drain asks of the ring may outlast the operator's timeout.
    ring.set_timeouts(until(start + opts.timeout), until(start + opts.timeout))?;
    let shards = directory::shards(&mut ring)?;
    let only = opts.only.as_deref();
    let (safe, mut refused) = check_shards(cfg, &shards, opts, ui);
    let mut notes: HashMap<HostPort, String> = HashMap::new();
    let enforced = home::enabled(cfg);
    let outcome = |changes: HashMap<HostPort, ServerStatus>,
                   notes: &HashMap<HostPort, String>,
                   refused: Vec<Refusal>,
                   sessions: Vec<Holdout>| Outcome {
        blocked: !refused.is_empty() && !opts.skip_unsafe,
        refused,
        sessions,
        home_guard: enforced,
        warning: (!enforced).then(|| UNGUARDED.to_string()),
        ..report(&shards, half, opts.dry_run, start, &changes, notes)
    };
    if !enforced && !opts.dry_run {
        ui.warn(UNGUARDED);
    }
    if !refused.is_empty() && !opts.skip_unsafe {
        return Ok(outcome(HashMap::new(), &notes, refused, Vec::new()));
    }
    if opts.dry_run {
        let open = would_drain(half, &safe, &mut notes);
        return Ok(outcome(HashMap::new(), &notes, refused, open));
    }

    let safe_shards: Vec<&Shard> = safe.iter().map(|(s, _)| *s).collect();
    let deadline = start + opts.timeout;
    let (marked, raced, handovers) =
        hand_over_and_mark(cfg, changes, opts, &safe_shards, deadline, ui)?;
    let handed_over_none = marked.is_empty() && !raced.is_empty();
    refused.extend(raced);
    if marked.is_empty() {
        return Ok(Outcome {
            blocked: handed_over_none,
            interrupted: crate::signals::received(),
            ..outcome(HashMap::new(), &notes, refused, Vec::new())
        });
    }
    let draining: Vec<(&Shard, &Server)> = marked
        .iter()
        .flat_map(|shard| {
            shard
                .servers
                .iter()
                .filter(|s| rules::in_scope(s, half, only) && s.status != ServerStatus::Offline)
                .map(move |s| (*shard, s))
        })
        .collect();
    let waiting = ui.spinner(&format!(
        "half {half} draining: waiting for application sessions on {} servers to end",
        draining.len()
    ));
    let results = parallel::each(&draining, |(shard, server)| {
        // With the home guard the hand-over already waited for the other half.
        wait_drained(cfg, shard, server, deadline, !enforced)
    });
    waiting.finish_and_clear();

    let mut statuses: HashMap<HostPort, ServerStatus> = HashMap::new();
    let Settled { done, back, open } = settle(half, &draining, results, &mut statuses, &mut notes);
    // The waits may have run to the deadline: what the ring is asked now is bounded by what
    // is left of it (a ring frozen meanwhile must not hold the drain another --timeout).
    bound_by(&mut ring, deadline, None)?;
    for addr in set_status(
        &mut ring,
        &done,
        &[ServerStatus::Draining],
        ServerStatus::Offline,
        half,
        opts.fence.as_ref(),
    )? {
        statuses.insert(addr, ServerStatus::Offline);
    }
    for addr in set_status(
        &mut ring,
        &back,
        &[ServerStatus::Draining],
        ServerStatus::Online,
        half,
        opts.fence.as_ref(),
    )? {
        statuses.insert(addr, ServerStatus::Online);
    }
    let drained: Vec<HostPort> = draining.iter().map(|(_, s)| s.addr.clone()).collect();
    let (locks, locks_unknown) = locks_on(cfg, &mut ring, &drained, ui);
    Ok(Outcome {
        locks,
        locks_unknown,
        handovers,
        interrupted: crate::signals::received(),
        blocked: false,
        ..outcome(statuses, &notes, refused, open)
    })
}

/// Marks `half` of each of `safe_shards` draining, with the home guard handing each shard's
/// users over to the rest of it first: the shards marked, those refused meanwhile, and the
/// hand-overs.
fn hand_over_and_mark<'s>(
    cfg: &Config,
    changes: &Changes,
    opts: &DrainOptions,
    safe_shards: &[&'s Shard],
    deadline: Instant,
    ui: &Ui,
) -> Result<(Vec<&'s Shard>, Vec<Refusal>, Vec<handover::Handover>)> {
    let (half, only) = (opts.half, opts.only.as_deref());
    let enforced = home::enabled(cfg);
    // With the home guard, each shard's users are handed over to the rest of it inside the
    // transaction that marks the half, so the ring names the new writers only once they take
    // the writes; a shard whose hand-over is refused is left as it was.
    let handing = (enforced && !safe_shards.is_empty()).then(|| {
        ui.spinner(&format!(
            "half {half}: handing the writes of {} shards over",
            safe_shards.len()
        ))
    });
    let hand_over = |shard: &Shard| -> std::result::Result<Option<handover::Handover>, String> {
        if !enforced {
            return Ok(None);
        }
        let rest: Vec<Server> = shard
            .servers
            .iter()
            .filter(|s| !rules::in_scope(s, half, only))
            .cloned()
            .collect();
        handover::converge(cfg, shard, &home::writers(&rest), deadline).map(Some)
    };
    let marked = mark_draining(changes, cfg, half, safe_shards, opts, deadline, hand_over);
    if let Some(h) = handing {
        h.finish_and_clear();
    }
    marked
}

/// Where the waits of a drain left its servers.
struct Settled<'s> {
    /// Drained (or dead): to be marked offline.
    done: Vec<(&'s Shard, &'s Server)>,
    /// Their other half stopped answering: to be put back online.
    back: Vec<(&'s Shard, &'s Server)>,
    /// Application sessions that kept servers draining.
    open: Vec<Holdout>,
}

/// Sorts the waits' `results` (one per server of `draining`), noting each server marked
/// draining in `statuses` and why one did not drain in `notes`.
fn settle<'s>(
    half: Half,
    draining: &[(&'s Shard, &'s Server)],
    results: Vec<Result<(), Stuck>>,
    statuses: &mut HashMap<HostPort, ServerStatus>,
    notes: &mut HashMap<HostPort, String>,
) -> Settled<'s> {
    let mut open = Vec::new();
    let mut done = Vec::new();
    let mut back = Vec::new();
    for ((shard, server), result) in draining.iter().zip(results) {
        let addr = server.addr.clone();
        statuses.insert(addr.clone(), ServerStatus::Draining);
        match result {
            Ok(()) => done.push((*shard, *server)),
            Err(Stuck::Sessions(s)) => {
                notes.insert(
                    addr,
                    format!(
                        "application sessions still open: {}; left draining",
                        s.len()
                    ),
                );
                open.extend(holdouts(shard, server, s));
            }
            Err(Stuck::Problem(p)) => {
                notes.insert(addr, format!("{p}; left draining"));
            }
            Err(Stuck::PeerDown(p)) => {
                notes.insert(
                    addr,
                    format!("{p}; put back online so the shard keeps a server"),
                );
                back.push((*shard, *server));
            }
            Err(Stuck::Dead(p)) => {
                notes.insert(
                    addr,
                    format!(
                        "does not answer ({p}); marked offline: it serves nobody, but whether half {} has its last writes could not be checked",
                        half.other()
                    ),
                );
                done.push((*shard, *server));
            }
        }
    }
    Settled { done, back, open }
}

/// The shardctl locks held with GET_LOCK on `drained` servers, or why they are unknown.
fn locks_on(
    cfg: &Config,
    ring: &mut Db,
    drained: &[HostPort],
    ui: &Ui,
) -> (Vec<crate::lock::HolderOn>, Option<String>) {
    // Only informational, read after the change: a lock backend that does not answer never
    // turns a finished drain into a failure (the runbook would find no servers to act on).
    let (locks, unknown) = match crate::lock::holders_on(cfg, ring, drained) {
        Ok(l) => (l, None),
        Err(e) => {
            ui.warn(&format!(
                "which locks are held on the drained servers is unknown: {e}"
            ));
            (Vec::new(), Some(e.to_string()))
        }
    };
    for l in &locks {
        ui.warn(&format!(
            "lock {} (owner {}) is held with GET_LOCK on drained server {} (connection {})",
            l.name, l.owner, l.server, l.connection
        ));
    }
    (locks, unknown)
}

/// The shards with something left to drain in `opts.half`, probed at once: those safe to
/// drain, with what their servers reported, and those refused, with why.
fn check_shards<'s>(
    cfg: &Config,
    shards: &'s [Shard],
    opts: &DrainOptions,
    ui: &Ui,
) -> (Vec<(&'s Shard, Vec<Facts>)>, Vec<Refusal>) {
    let half = opts.half;
    let pending: Vec<&Shard> = shards
        .iter()
        .filter(|s| rules::drain_pending(half, &s.servers, opts.only.as_deref()))
        .collect();
    let checking = ui.spinner(&format!(
        "checking {} shards before draining half {half}",
        pending.len()
    ));
    let facts = shard_facts(cfg, &pending, half);
    checking.finish_and_clear();
    let mut refused = Vec::new();
    let mut safe = Vec::new();
    for (shard, f) in pending.into_iter().zip(facts) {
        match rules::drain_refusal(half, &f, opts.max_lag) {
            Ok(()) => safe.push((shard, f)),
            Err(reason) => refused.push(Refusal {
                shard: shard.name.to_string(),
                reason,
            }),
        }
    }
    (safe, refused)
}

/// A dry run: notes the servers of `half` a drain would change, and returns the application
/// sessions it would wait for.
fn would_drain(
    half: Half,
    safe: &[(&Shard, Vec<Facts>)],
    notes: &mut HashMap<HostPort, String>,
) -> Vec<Holdout> {
    let mut open = Vec::new();
    for (shard, f) in safe {
        for fact in f.iter().filter(|f| f.server.half == half) {
            notes.insert(fact.server.addr.clone(), WOULD.into());
            open.extend(holdouts(shard, &fact.server, sessions_of(fact)));
        }
    }
    open
}

fn sessions_of(f: &Facts) -> Vec<Session> {
    f.probe
        .as_ref()
        .map(|p| p.sessions.clone())
        .unwrap_or_default()
}

fn holdouts(shard: &Shard, server: &Server, sessions: Vec<Session>) -> Vec<Holdout> {
    sessions
        .into_iter()
        .map(|session| Holdout {
            shard: shard.name.to_string(),
            server: server.addr.to_string(),
            session,
        })
        .collect()
}

/// The servers of `ids`' shards as the ring holds them, read with row locks held until the
/// transaction ends: every change of a shard's writers (a drain's mark, a restore's hand-back)
/// takes them, so two maintenance commands never hand one shard's users over at once, and each
/// starts from what the other left.
fn lock_servers(
    tx: &mut mysql::Transaction,
    ids: &[u32],
) -> mysql::Result<Vec<(u32, std::result::Result<Server, String>)>> {
    let rows: Vec<(u32, String, u16, String, String)> = tx.exec(
        format!(
            "SELECT shard_id, host, port, half, status FROM shard_servers
             WHERE shard_id IN ({}) ORDER BY shard_id, half, host, port FOR UPDATE",
            vec!["?"; ids.len()].join(",")
        ),
        ids.to_vec(),
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, host, port, h, status)| {
            let server = h.parse().and_then(|half| {
                Ok(Server {
                    addr: HostPort::new(host, port),
                    half,
                    status: status.parse()?,
                    capacity_qps: None,
                })
            });
            (id, server)
        })
        .collect())
}

/// The servers of shard `id` among `rows`.
fn servers_of(
    rows: &[(u32, std::result::Result<Server, String>)],
    id: u32,
) -> std::result::Result<Vec<Server>, String> {
    rows.iter()
        .filter(|(i, _)| *i == id)
        .map(|(_, s)| s.clone())
        .collect()
}

/// Bounds how long the ring session waits for another command's row locks: what is left of
/// the operator's timeout, at least a second.
fn bound_lock_waits(ring: &mut Db, deadline: Instant) -> Result<()> {
    ring.exec_drop(
        "bounding waits for other maintenance commands",
        "SET SESSION innodb_lock_wait_timeout = ?",
        (deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1),),
    )
}

/// What marking one shard's half draining came to.
enum Marked {
    Done(Option<handover::Handover>),
    Refused(String),
}

/// Marks `half` of each of `shards` draining, each shard in a ring transaction of its own (on a
/// connection of its own, all at once) that reads the shard's servers again with row locks,
/// checks once more that the other half is all online, hands the users over (`hand_over`, run
/// while the rows are locked, so the ring changes only once the new writers take the writes)
/// and commits at once: a shard's ring and rules change together, whatever becomes of the
/// others. Returns the shards marked, those refused (by the second look, their hand-over, or
/// another maintenance command holding them past the timeout), and the hand-overs.
fn mark_draining<'s>(
    changes: &Changes,
    cfg: &Config,
    half: Half,
    shards: &[&'s Shard],
    opts: &DrainOptions,
    deadline: Instant,
    hand_over: impl Fn(&Shard) -> std::result::Result<Option<handover::Handover>, String> + Sync,
) -> Result<(Vec<&'s Shard>, Vec<Refusal>, Vec<handover::Handover>)> {
    let results = parallel::each(shards, |shard| {
        crate::db::retry_deadlocks(|| {
            let mut ring = Ring::open(cfg, changes)?;
            ring.set_timeouts(until(deadline), until(deadline))?;
            bound_lock_waits(&mut ring, deadline)?;
            ring.write("marking the half draining", |tx| {
                let marked = mark_one(tx, half, shard, opts, &hand_over)?;
                let changed = match marked {
                    Marked::Done(_) => Changed::shards(vec![shard.id]),
                    Marked::Refused(_) => Changed::default(),
                };
                Ok((marked, changed))
            })
        })
    });
    let mut marked = Vec::new();
    let mut refused = Vec::new();
    let mut handovers = Vec::new();
    for (shard, result) in shards.iter().zip(results) {
        let refuse = |reason: String| Refusal {
            shard: shard.name.to_string(),
            reason,
        };
        match result {
            Ok(Marked::Done(h)) => {
                marked.push(*shard);
                handovers.extend(h);
            }
            Ok(Marked::Refused(reason)) => refused.push(refuse(reason)),
            // A roll's shards take its fence one at a time: behind a shard whose hand-over
            // waits, the others wait too, and are said to.
            Err(e) if e.is(crate::error::DbErrorKind::LockWaitTimeout) => refused.push(refuse(
                if opts.fence.is_some() {
                    "waited past --timeout behind the roll's hand-over on another shard (or another maintenance command changing this shard's servers); nothing was changed".into()
                } else {
                    "another maintenance command is changing this shard's servers and held them past --timeout; nothing was changed".into()
                },
            )),
            Err(e) => return Err(e),
        }
    }
    Ok((marked, refused, handovers))
}

/// One shard's part of `mark_draining`, inside its transaction.
fn mark_one(
    tx: &mut mysql::Transaction,
    half: Half,
    shard: &Shard,
    opts: &DrainOptions,
    hand_over: &impl Fn(&Shard) -> std::result::Result<Option<handover::Handover>, String>,
) -> mysql::Result<Marked> {
    fences::hold_if(tx, opts.fence.as_ref())?;
    let now = match servers_of(&lock_servers(tx, &[shard.id])?, shard.id).and_then(|servers| {
        rules::other_half_online(half, &servers)?;
        Ok(servers)
    }) {
        Ok(servers) => Shard {
            servers,
            ..shard.clone()
        },
        Err(reason) => return Ok(Marked::Refused(format!("changed while checking: {reason}"))),
    };
    // The hand-over starts from the ring as it is now, not as first read.
    let handed = match hand_over(&now) {
        Ok(h) => h,
        Err(reason) => {
            return Ok(Marked::Refused(format!(
                "its writes could not be handed over, so it was left as it was: {reason}"
            )))
        }
    };
    let servers = opts.only.as_deref().unwrap_or_default();
    let only = if opts.only.is_some() {
        format!(
            " AND (host, port) IN ({})",
            vec!["(?, ?)"; servers.len().max(1)].join(",")
        )
    } else {
        String::new()
    };
    let mut params: Vec<mysql::Value> = vec![shard.id.into(), half.as_str().into()];
    for a in servers {
        params.extend([a.host.as_str().into(), a.port.into()]);
    }
    if opts.only.is_some() && servers.is_empty() {
        params.extend([mysql::Value::from(""), mysql::Value::from(0u16)]);
    }
    tx.exec_drop(
        format!(
            "UPDATE shard_servers SET status = 'draining'
             WHERE shard_id = ? AND half = ? AND status = 'online'{only}"
        ),
        params,
    )?;
    audit::record_many(
        tx,
        "maintenance.drain",
        &[(
            shard.name.to_string(),
            json!({ "half": half, "status": "draining" }),
        )],
    )?;
    fences::still_proven(opts.fence.as_ref())?;
    Ok(Marked::Done(handed))
}

/// Waits until `server` has no application sessions, then until every server of the other half
/// has applied everything it wrote, or until `deadline`. Every statement is bounded by the
/// deadline (or a probe's time for the other half's pings), so a frozen server holds nothing
/// past it. While waiting, the other half is watched: if none of it answers any more, the wait
/// ends at once (the drained server must serve again).
fn wait_drained(
    cfg: &Config,
    shard: &Shard,
    server: &Server,
    deadline: Instant,
    replicated: bool,
) -> Result<(), Stuck> {
    let problem = |e: crate::error::Error| Stuck::Problem(e.to_string());
    let mut db = probe::session(cfg, &server.addr, until(deadline))
        .map_err(|e| Stuck::Dead(e.to_string()))?;
    let mut peers: Vec<(HostPort, Option<Db>)> = shard
        .servers
        .iter()
        .filter(|s| s.half != server.half)
        .map(|s| (s.addr.clone(), None))
        .collect();
    loop {
        other_half_answers(cfg, &mut peers, deadline)?;
        let open = match bound_by(&mut db, deadline, None)
            .and_then(|()| sessions::list(&mut db, &cfg.shards.database))
        {
            Ok(open) => open,
            // It went away while we waited: if it does not take a new connection, it is dead.
            Err(crate::error::Error::Unreachable(_)) => {
                db = probe::session(cfg, &server.addr, until(deadline))
                    .map_err(|e| Stuck::Dead(e.to_string()))?;
                continue;
            }
            Err(e) => return Err(problem(e)),
        };
        if open.is_empty() {
            break;
        }
        if crate::signals::received() {
            return Err(Stuck::Problem(
                "interrupted while application sessions were open (its users' writes are handed over already)".into(),
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stuck::Sessions(open));
        }
        std::thread::sleep(left.min(POLL));
    }
    if !replicated {
        return Ok(());
    }
    bound_by(&mut db, deadline, None).map_err(problem)?;
    let Some(position) = replica::binlog_position(&mut db).map_err(problem)? else {
        return Ok(());
    };
    for (addr, conn) in &mut peers {
        let left = deadline.saturating_duration_since(Instant::now());
        let caught_up = match conn {
            Some(p) => p
                .set_timeouts(until(deadline), until(deadline))
                .and_then(|()| replica::wait_for(p, &position, left)),
            None => Err(crate::error::Error::Unreachable(format!(
                "{addr} does not answer"
            ))),
        }
        .map_err(problem)?;
        if !caught_up {
            return Err(Stuck::Problem(format!(
                "{addr} has not applied all of its writes yet"
            )));
        }
    }
    Ok(())
}

/// Pings every server of the other half (reconnecting what was lost); fails with `PeerDown`
/// when none answers.
fn other_half_answers(
    cfg: &Config,
    peers: &mut [(HostPort, Option<Db>)],
    deadline: Instant,
) -> Result<(), Stuck> {
    let bound = probe::bound(cfg);
    let mut failures = Vec::new();
    for (addr, conn) in peers.iter_mut() {
        if conn.as_ref().is_none_or(Db::is_lost) {
            *conn = probe::session(cfg, addr, bound.min(until(deadline))).ok();
        }
        let alive = conn.as_mut().is_some_and(|db| {
            bound_by(db, deadline, Some(bound))
                .and_then(|()| db.query_drop("checking the other half", "DO 1"))
                .is_ok()
        });
        if !alive {
            *conn = None;
            failures.push(addr.to_string());
        }
    }
    if !peers.is_empty() && failures.len() == peers.len() {
        return Err(Stuck::PeerDown(format!(
            "the other half stopped answering ({})",
            failures.join(", ")
        )));
    }
    Ok(())
}

/// Sets `servers` to `to`, each only if its status is still one of `from` (a restore or
/// another drain may have moved it on meanwhile), in one ring transaction audited per shard.
/// Returns the servers changed.
fn set_status(
    ring: &mut Ring,
    servers: &[(&Shard, &Server)],
    from: &[ServerStatus],
    to: ServerStatus,
    half: Half,
    fence: Option<&fences::Fence>,
) -> Result<Vec<HostPort>> {
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    ring.write("changing server status", |tx| {
        fences::hold_if(tx, fence)?;
        let changed = write_status(tx, servers, from, to, half)?;
        fences::still_proven(fence)?;
        let ids: Vec<u32> = servers
            .iter()
            .filter(|(_, server)| changed.contains(&server.addr))
            .map(|(shard, _)| shard.id)
            .collect();
        Ok((changed, Changed::shards(ids)))
    })
}

/// `set_status` inside a ring transaction of the caller's: the servers changed, audited per
/// shard.
fn write_status(
    tx: &mut mysql::Transaction,
    servers: &[(&Shard, &Server)],
    from: &[ServerStatus],
    to: ServerStatus,
    half: Half,
) -> mysql::Result<Vec<HostPort>> {
    let action = match to {
        ServerStatus::Online => "maintenance.restore",
        ServerStatus::Offline => "maintenance.offline",
        ServerStatus::Draining => "maintenance.drain",
    };
    let sql = format!(
        "UPDATE shard_servers SET status = ? WHERE host = ? AND port = ? AND status IN ({})",
        vec!["?"; from.len()].join(",")
    );
    let mut changed = Vec::new();
    let mut by_shard: Vec<(String, Vec<String>)> = Vec::new();
    for (shard, server) in servers {
        let params: Vec<mysql::Value> = [
            to.as_str().into(),
            server.addr.host.as_str().into(),
            server.addr.port.into(),
        ]
        .into_iter()
        .chain(from.iter().map(|f| f.as_str().into()))
        .collect();
        tx.exec_drop(&sql, params)?;
        if tx.affected_rows() == 0 {
            continue;
        }
        changed.push(server.addr.clone());
        match by_shard.iter_mut().find(|(s, _)| shard.name == s.as_str()) {
            Some((_, list)) => list.push(server.addr.to_string()),
            None => by_shard.push((shard.name.to_string(), vec![server.addr.to_string()])),
        }
    }
    let entries: Vec<(String, serde_json::Value)> = by_shard
        .into_iter()
        .map(|(shard, list)| {
            (
                shard,
                json!({ "half": half, "status": to, "servers": list }),
            )
        })
        .collect();
    audit::record_many(tx, action, &entries)?;
    Ok(changed)
}

/// Hands `joining`'s users back to it and marks it online (or, with no server joining,
/// finishes a hand-over an earlier run of shard's left half done), in one ring transaction
/// that holds the shard's rows (see `lock_servers`): the ring names the server a writer only
/// once it takes the writes. Returns whether the ring changed and the hand-over, if any.
fn hand_back(
    changes: &Changes,
    cfg: &Config,
    shard: &Shard,
    joining: Option<&Server>,
    half: Half,
    deadline: Instant,
    fence: Option<&fences::Fence>,
) -> std::result::Result<(bool, Option<handover::Handover>), String> {
    let enforced = home::enabled(cfg);
    let done = crate::db::retry_deadlocks(|| {
        let mut ring = Ring::open(cfg, changes)?;
        ring.set_timeouts(until(deadline), until(deadline))?;
        bound_lock_waits(&mut ring, deadline)?;
        ring.write("handing the users back", |tx| {
            fences::hold_if(tx, fence)?;
            let now = match servers_of(&lock_servers(tx, &[shard.id])?, shard.id) {
                Ok(servers) => Shard {
                    servers,
                    ..shard.clone()
                },
                Err(e) => return Ok((Err(e), Changed::default())),
            };
            let handed = if enforced {
                let mut after = now.servers.clone();
                for s in after
                    .iter_mut()
                    .filter(|s| joining.is_some_and(|j| j.addr == s.addr))
                {
                    s.status = ServerStatus::Online;
                }
                match handover::converge(cfg, &now, &home::writers(&after), deadline) {
                    Ok(h) => Some(h).filter(|h| h.write_window_seconds > 0.0),
                    Err(e) => {
                        return Ok((
                            Err(format!("its users' writes could not be handed over: {e}")),
                            Changed::default(),
                        ))
                    }
                }
            } else {
                None
            };
            let changed = match joining {
                Some(server) => !write_status(
                    tx,
                    &[(&now, server)],
                    &[ServerStatus::Draining, ServerStatus::Offline],
                    ServerStatus::Online,
                    half,
                )?
                .is_empty(),
                None => false,
            };
            // A pause here (the tests' failpoint) holds the transaction open past the lease.
            crate::failpoint!("restore.before_commit");
            fences::still_proven(fence)?;
            let ids = if changed { vec![shard.id] } else { Vec::new() };
            Ok((Ok((changed, handed)), Changed::shards(ids)))
        })
    })
    .map_err(|e| match e.is(crate::error::DbErrorKind::LockWaitTimeout) {
        true => "another maintenance command is changing its shard's servers and held them past --timeout; nothing was changed".to_string(),
        false => format!("could not mark it online: {e}"),
    })??;
    Ok(done)
}

/// What every server of a restore shares.
struct Restoring<'a> {
    cfg: &'a Config,
    changes: &'a Changes,
    opts: &'a RestoreOptions,
    deadline: Instant,
    enforced: bool,
}

impl Restoring<'_> {
    /// Brings one server of the half back (or, dry, says whether it could come back); `keep`
    /// collects the hand-overs made on the way.
    fn one(
        &self,
        shard: &Shard,
        server: &Server,
        keep: &dyn Fn(Option<handover::Handover>),
    ) -> Result<Step, String> {
        let half = self.opts.half;
        if server.status == ServerStatus::Online {
            // Already serving: only say whether it really answers, and settle its shard's
            // rules if a hand-over was left half done.
            if self.enforced && !self.opts.dry_run {
                keep(
                    hand_back(
                        self.changes,
                        self.cfg,
                        shard,
                        None,
                        half,
                        self.deadline,
                        self.opts.fence.as_ref(),
                    )?
                    .1,
                );
            }
            return facts(self.cfg, server, None, Trust::AsShown)
                .probe
                .map(|_| Step::Unchanged)
                .map_err(|e| format!("marked online but does not answer: {e}"));
        }
        if self.opts.dry_run {
            let found = facts(self.cfg, server, None, Trust::AsShown);
            return match rules::restore_problem(&found, self.opts.max_lag) {
                Some(p) if server.status != ServerStatus::Draining => Err(p),
                _ => Ok(Step::Would),
            };
        }
        let note = wait_restorable(self.cfg, shard, server, self.opts.max_lag, self.deadline)?;
        // A roll that lost its lock (frozen, woken) touches nothing more.
        if !fences::proven(self.opts.fence.as_ref()) {
            return Err("not restored: the roll's lock is no longer proven held".into());
        }
        let (changed, handed) = hand_back(
            self.changes,
            self.cfg,
            shard,
            Some(server),
            half,
            self.deadline,
            self.opts.fence.as_ref(),
        )?;
        keep(handed);
        Ok(if changed {
            Step::Online(note)
        } else {
            Step::Unchanged
        })
    }
}

pub struct RestoreOptions {
    pub half: Half,
    pub timeout: Duration,
    pub max_lag: u64,
    pub dry_run: bool,
    /// Only these servers of the half (a roll leaves those whose command failed drained).
    pub only: Option<Vec<HostPort>>,
    /// A roll's lock: every ring write of the restore is refused once a successor holds it.
    pub fence: Option<fences::Fence>,
}

pub fn restore(cfg: &Config, changes: &Changes, opts: &RestoreOptions, ui: &Ui) -> Result<Outcome> {
    let start = Instant::now();
    crate::signals::catch_termination();
    let half = opts.half;
    let deadline = start + opts.timeout;
    let mut ring = Ring::open(cfg, changes)?;
    ring.set_timeouts(until(deadline), until(deadline))?;
    let shards = directory::shards(&mut ring)?;
    let of_half: Vec<(&Shard, &Server)> = shards
        .iter()
        .flat_map(|shard| {
            shard
                .servers
                .iter()
                .filter(|s| rules::in_scope(s, half, opts.only.as_deref()))
                .map(move |s| (shard, s))
        })
        .collect();
    let waiting = ui.spinner(&format!(
        "half {half}: waiting for {} servers to answer and catch up",
        of_half
            .iter()
            .filter(|(_, s)| s.status != ServerStatus::Online)
            .count()
    ));
    let enforced = home::enabled(cfg);
    if !enforced && !opts.dry_run {
        ui.warn(UNGUARDED);
    }
    // Each server goes back online the moment it is ready, not when the slowest one is, each
    // in a ring transaction of its own that holds its shard's rows while it hands users back.
    let handovers = std::sync::Mutex::new(Vec::new());
    let restoring = Restoring {
        cfg,
        changes,
        opts,
        deadline,
        enforced,
    };
    let results = parallel::each(&of_half, |(shard, server)| {
        restoring.one(shard, server, &|h| {
            handovers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(h)
        })
    });
    waiting.finish_and_clear();

    let mut notes = HashMap::new();
    let mut changes = HashMap::new();
    for (&(_, server), result) in of_half.iter().zip(results) {
        let addr = server.addr.clone();
        match result {
            Ok(Step::Unchanged) => {}
            Ok(Step::Would) => {
                notes.insert(addr, WOULD.to_string());
            }
            Ok(Step::Online(note)) => {
                changes.insert(addr.clone(), ServerStatus::Online);
                if let Some(n) = note {
                    notes.insert(addr, n);
                }
            }
            Err(p) if server.status == ServerStatus::Online => {
                notes.insert(addr, p);
            }
            Err(p) => {
                notes.insert(addr, format!("{p}; left {}", server.status));
            }
        }
    }
    Ok(Outcome {
        home_guard: enforced,
        warning: (!enforced).then(|| UNGUARDED.to_string()),
        handovers: handovers.into_inner().unwrap_or_else(|p| p.into_inner()),
        interrupted: crate::signals::received(),
        ..report(&shards, half, opts.dry_run, start, &changes, &notes)
    })
}

/// What restoring one server came to.
enum Step {
    /// It was online already (and answers), or another run restored it meanwhile.
    Unchanged,
    /// A dry run: it would go online.
    Would,
    /// Marked online; with what the operator should know about how.
    Online(Option<String>),
}

/// Waits until `server` answers, replicates within `max_lag`, and has applied everything its
/// online peers wrote, or until `deadline`; the last problem seen otherwise. A server just
/// restarted after its upgrade may still be starting: it is asked again until the deadline.
///
/// A server that was only `draining` never stopped and missed nothing but the application's
/// new writes, which went to the other half: it catches up with every peer that answers, and
/// peers that do not answer are no reason to keep it out (it may be the shard's last server).
fn wait_restorable(
    cfg: &Config,
    shard: &Shard,
    server: &Server,
    max_lag: u64,
    deadline: Instant,
) -> Result<Option<String>, String> {
    let only_draining = server.status == ServerStatus::Draining;
    // Sessions are kept from one attempt to the next (one login a server, not one every
    // 100 ms); one that failed is dropped and logged in again.
    let mut own: Option<Db> = None;
    let mut peers: HashMap<HostPort, Db> = HashMap::new();
    let mut attempt = || -> Result<Option<String>, String> {
        if own.as_ref().is_none_or(Db::is_lost) {
            own = Some(
                probe::session(cfg, &server.addr, until(deadline))
                    .map_err(|e| format!("does not answer: {e}"))?,
            );
        }
        let db = own.as_mut().expect("logged in above");
        bound_by(db, deadline, None).map_err(|e| e.to_string())?;
        let facts = Facts {
            server: server.clone(),
            probe: probe::probe(cfg, db).map_err(|e| e.to_string()),
            qps: None,
        };
        let mut skipped = Vec::new();
        if let Some(problem) = rules::restore_problem(&facts, max_lag) {
            if !only_draining {
                return Err(problem);
            }
            skipped.push(problem);
        }
        for peer in shard
            .servers
            .iter()
            .filter(|p| p.status == ServerStatus::Online && p.addr != server.addr)
        {
            let addr = peer.addr.clone();
            let bound = probe::bound(cfg).min(until(deadline));
            if peers.get(&addr).is_none_or(Db::is_lost) {
                match probe::session(cfg, &addr, bound) {
                    Ok(p) => {
                        peers.insert(addr.clone(), p);
                    }
                    Err(e) => {
                        peers.remove(&addr);
                        let e = format!("cannot read the position of its peer {addr}: {e}");
                        if only_draining {
                            skipped.push(e);
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
            let peer_db = peers.get_mut(&addr).expect("logged in above");
            let position = peer_db
                .set_timeouts(bound, bound)
                .and_then(|()| replica::binlog_position(peer_db))
                .map_err(|e| format!("cannot read the position of its peer {addr}: {e}"));
            let position = match position {
                Ok(p) => p,
                Err(e) if only_draining => {
                    skipped.push(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(position) = position else { continue };
            let left = deadline.saturating_duration_since(Instant::now());
            if !replica::wait_for(db, &position, left).map_err(|e| e.to_string())? {
                return Err(format!(
                    "has not caught up with {} ({})",
                    peer.addr.clone(),
                    replica::why_behind(db)
                ));
            }
        }
        Ok((!skipped.is_empty()).then(|| {
            format!(
                "back online from draining (it never stopped) although: {}",
                skipped.join("; ")
            )
        }))
    };
    loop {
        let result = attempt();
        let left = deadline.saturating_duration_since(Instant::now());
        match result {
            Err(e) if crate::signals::received() => {
                return Err(format!("interrupted while waiting ({e})"))
            }
            Err(_) if !left.is_zero() => std::thread::sleep(left.min(POLL)),
            done => return done,
        }
    }
}

/// One server as `maintenance status` shows it.
#[derive(Debug, Serialize)]
pub struct ServerState {
    pub shard: String,
    pub host: String,
    pub port: u16,
    pub half: Half,
    pub status: ServerStatus,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// None when it replicates from nobody (or did not answer).
    pub replication: Option<ReplicaStatus>,
    /// Application sessions open now.
    pub connections: usize,
    pub capacity_qps: Option<f64>,
    /// The users whose writes the server takes now (its home guard's rules), or null when it
    /// has none or did not answer.
    pub takes_writes_for: Option<String>,
    /// Whether that is what the ring routes to it (null without the home guard's rules): false
    /// while a hand-over is in progress, or after one was interrupted.
    pub agrees_with_ring: Option<bool>,
}

/// Every shard server's status, reachability, replication and application sessions, probed
/// at once.
pub fn status(cfg: &Config) -> Result<(Vec<ServerState>, Option<roll::RollStatus>)> {
    let mut ring = ring::open(cfg)?;
    let shards = directory::shards(&mut ring)?;
    let rolling = roll::in_progress(&mut ring)?;
    let servers: Vec<(&Shard, &Server)> = shards
        .iter()
        .flat_map(|shard| shard.servers.iter().map(move |s| (shard, s)))
        .collect();
    let probes = parallel::each(&servers, |(shard, s)| {
        let probe = probe::probe_at(cfg, &s.addr).map_err(|e| e.to_string());
        let home = probe
            .as_ref()
            .ok()
            .and_then(|p| p.home.clone())
            .filter(|v| home::enabled(cfg) || *v != home::View::default())
            .map(|v| {
                let expected = home::Rule::of(&s.addr, &home::writers(&shard.servers));
                (v.describe(), v.settled_on(&expected))
            });
        (probe, home)
    });
    let states = servers
        .into_iter()
        .zip(probes)
        .map(|((shard, s), (p, home))| ServerState {
            takes_writes_for: home.as_ref().map(|(d, _)| d.clone()),
            agrees_with_ring: home.map(|(_, a)| a),
            shard: shard.name.to_string(),
            host: s.addr.host.clone(),
            port: s.addr.port,
            half: s.half,
            status: s.status,
            reachable: p.is_ok(),
            replication: p.as_ref().ok().and_then(|p| p.replica.clone()),
            connections: p.as_ref().map(|p| p.sessions.len()).unwrap_or(0),
            error: p.err(),
            capacity_qps: s.capacity_qps,
        })
        .collect();
    Ok((states, rolling))
}

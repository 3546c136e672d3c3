//! Handing users' writes from one server of a shard to another with never two servers accepting
//! one user's writes (PRODUCT.md invariant 10), enforced by the home guard (`shard::home`).
//!
//! `converge` brings every server of a shard to the rules of a new list of writers (the shard's
//! online servers once the change is made, in routing order):
//!
//! 1. every server losing users gets the new rule as its `next` rule, so it accepts only users
//!    both its old and new rules accept; the update is also the barrier that waits until every
//!    transaction that wrote under the old rule has ended (see `home`); nobody gains any user;
//! 2. each server gaining users applies everything every other server wrote to its binary log
//!    up to then (MariaDB GTIDs);
//! 3. every server settles on its new rule: those that lost users first, each only while its
//!    proposal has not lapsed, then those gaining users.
//!
//! The users changing hands are refused from 1 to 3 (the write window; measured and reported).
//! Steps 1 and 2 are bounded by the operator's deadline; past it, or on a signal, the `next`
//! rules are withdrawn and every server takes what it took before: a hand-over is done or
//! undone, never half done. Each proposal is also a lease (the deadline plus `LEASE_MARGIN`, on
//! the server's own clock): killed outright (SIGKILL) in steps 1 or 2, no user has two writers
//! and the servers take their old users back by themselves when it lapses; a loser that cannot
//! settle in step 3 stops the hand-over before any gainer takes anything. The callers run a
//! shard's hand-over while holding its rows in the ring, so two never overlap.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::home::{self, Rule, View};
use super::replica;
use crate::config::Config;
use crate::db::Db;
use crate::error::Result;
use crate::parallel;
use crate::ring::directory::Shard;
use crate::types::HostPort;

/// One server of a hand-over, before and after.
#[derive(Clone, Debug, Serialize)]
pub struct ServerHandover {
    pub host: String,
    pub port: u16,
    /// What it accepted before, in words.
    pub before: String,
    /// What it accepts now.
    pub after: String,
}

/// What a hand-over of one shard did.
#[derive(Clone, Debug, Serialize)]
pub struct Handover {
    pub shard: String,
    /// The shard's writers afterwards, in routing order.
    pub writers: Vec<String>,
    /// How long the users changing hands were refused (0 when nothing changed).
    pub write_window_seconds: f64,
    pub servers: Vec<ServerHandover>,
    /// What the operator should know (a server that was down and kept its old rule).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Why a server's rules could not be read.
enum Unread {
    /// Nothing listens: the server is not running, and takes no writes until it starts.
    Down(String),
    /// It did not answer in time, or answered with an error: it may still take writes.
    Unknown(String),
}

struct Member {
    addr: HostPort,
    target: Rule,
    state: std::result::Result<(Mutex<Db>, View), Unread>,
}

impl Member {
    fn view(&self) -> Option<&View> {
        self.state.as_ref().ok().map(|(_, v)| v)
    }
    fn db(&self) -> Option<&Mutex<Db>> {
        self.state.as_ref().ok().map(|(db, _)| db)
    }
    fn shrinking(&self) -> bool {
        self.view().is_some_and(|v| !v.within(&self.target))
    }
    fn gaining(&self) -> bool {
        self.view().is_some_and(|v| !v.covers(&self.target))
    }
    fn settled(&self) -> bool {
        self.view().is_some_and(|v| v.settled_on(&self.target))
    }
}

fn lock(db: &Mutex<Db>) -> std::sync::MutexGuard<'_, Db> {
    db.lock().unwrap_or_else(|p| p.into_inner())
}

/// What is left until `deadline`, at least a moment (a statement bound of zero never ends).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(50))
}

/// Whether nothing listens on `addr`: a refused connection, not a silent one.
fn nothing_listens(addr: &HostPort, within: Duration) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(mut addrs) = (addr.host.as_str(), addr.port).to_socket_addrs() else {
        return false;
    };
    addrs.next().is_some_and(|a| {
        matches!(
            std::net::TcpStream::connect_timeout(&a, within.min(Duration::from_secs(2))),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    })
}

fn open(
    cfg: &Config,
    addr: &HostPort,
    deadline: Instant,
) -> std::result::Result<(Mutex<Db>, View), Unread> {
    let io = left(deadline).min(cfg.net.connect_timeout.max(Duration::from_secs(2)));
    let opened = home::session(cfg, addr, io).and_then(|mut db| {
        // Rules without the triggers that enforce them would hand over nothing.
        let installed = super::guard::inspect(cfg, &mut db)?;
        let view = home::read(cfg, &mut db)?.filter(|_| installed.installed);
        Ok((db, view))
    });
    match opened {
        Ok((db, Some(view))) => {
            let mut db = db;
            // The waits below are bounded by the deadline, not by a probe's time.
            let io = left(deadline) + Duration::from_secs(1);
            db.set_timeouts(io, io)
                .map_err(|e| Unread::Unknown(e.to_string()))?;
            Ok((Mutex::new(db), view))
        }
        Ok((_, None)) => Err(Unread::Unknown(
            "it lacks the home guard's triggers, table or rules: run `shardctl guard install`"
                .into(),
        )),
        Err(_) if nothing_listens(addr, io) => Err(Unread::Down("nothing listens there".into())),
        Err(e) => Err(Unread::Unknown(e.to_string())),
    }
}

/// Brings every server of `shard` to the rules of `writers` (see the module's comment), or
/// leaves every rule as it was and says why. `Err` is a refusal: nothing was changed.
pub fn converge(
    cfg: &Config,
    shard: &Shard,
    writers: &[HostPort],
    deadline: Instant,
) -> std::result::Result<Handover, String> {
    let members = open_members(cfg, shard, writers, deadline);
    let notes = down_notes(&members)?;
    let live: Vec<&Member> = members.iter().filter(|m| m.view().is_some()).collect();
    if live.iter().all(|m| m.settled()) {
        return Ok(report(shard, writers, &members, 0.0, notes));
    }

    // 1. Those losing users stop taking them, once what they took under the old rule is done.
    let start = Instant::now();
    let changed = stop_losers(cfg, &live, writers, deadline)?;
    crate::failpoint!("handover.stopped");

    // 2. Those gaining users apply everything the others wrote.
    catch_up_gainers(&live, deadline).map_err(|e| undo(cfg, &changed, e))?;

    crate::failpoint!("handover.caught_up");

    // 3. Settle: those that lost users first, then the gainers.
    settle_losers(cfg, &live, writers, deadline).map_err(|e| undo(cfg, &changed, e))?;
    settle_gainers(cfg, &live, writers, deadline)?;
    Ok(report(
        shard,
        writers,
        &members,
        start.elapsed().as_secs_f64(),
        notes,
    ))
}

/// Opens every server of `shard` at once (the slowest sets the pace, not the sum of them), each
/// with the rule `writers` gives it.
fn open_members(
    cfg: &Config,
    shard: &Shard,
    writers: &[HostPort],
    deadline: Instant,
) -> Vec<Member> {
    let addrs: Vec<HostPort> = shard.servers.iter().map(|s| s.addr.clone()).collect();
    let opened = parallel::each(&addrs, |a| open(cfg, a, deadline));
    addrs
        .into_iter()
        .zip(opened)
        .map(|(addr, state)| Member {
            target: Rule::of(&addr, writers),
            addr,
            state,
        })
        .collect()
}

/// The notes for servers that are down and are to take no writes afterwards; `Err` refuses the
/// hand-over when any other server's rules could not be read, since nobody could then say
/// which users' writes it takes.
fn down_notes(members: &[Member]) -> std::result::Result<Vec<String>, String> {
    let mut notes = Vec::new();
    for m in members {
        match &m.state {
            Ok(_) => {}
            // A server that is not running takes no writes now; if it is to take none
            // afterwards, the hand-over can go on without it.
            Err(Unread::Down(why)) if m.target.position.is_none() => notes.push(format!(
                "{} is down ({why}): its home rule could not be changed, so it must not serve applications again before `shardctl maintenance restore` brings it back",
                m.addr
            )),
            Err(Unread::Down(why)) | Err(Unread::Unknown(why)) => {
                return Err(format!(
                    "{}: {why}; cannot confirm which users' writes it takes",
                    m.addr
                ))
            }
        }
    }
    Ok(notes)
}

/// What the hand-over did, for the operator: every server's rules before and after, and how
/// long the users changing hands were refused (`window`).
fn report(
    shard: &Shard,
    writers: &[HostPort],
    members: &[Member],
    window: f64,
    notes: Vec<String>,
) -> Handover {
    Handover {
        shard: shard.name.to_string(),
        writers: writers.iter().map(|w| w.to_string()).collect(),
        write_window_seconds: window,
        servers: members
            .iter()
            .map(|m| ServerHandover {
                host: m.addr.host.clone(),
                port: m.addr.port,
                before: m
                    .view()
                    .map(View::describe)
                    .unwrap_or_else(|| "unknown (down)".into()),
                after: if m.view().is_some() {
                    m.target.describe()
                } else {
                    "unknown (down)".into()
                },
            })
            .collect(),
        notes,
    }
}

/// Step 1: the servers of `live` losing users propose their new rules behind the barrier. What
/// it returns are the servers whose rules changed, for `undo` to withdraw should a later step
/// fail; if any server did not get through, those are withdrawn here and `Err` says why.
fn stop_losers<'a>(
    cfg: &Config,
    live: &[&'a Member],
    writers: &[HostPort],
    deadline: Instant,
) -> std::result::Result<Vec<&'a Member>, String> {
    let shrinking: Vec<&Member> = live.iter().copied().filter(|m| m.shrinking()).collect();
    let proposed = parallel::each(&shrinking, |m| {
        let mut db = lock(m.db().expect("live"));
        barrier(cfg, &mut db, &m.target, writers, deadline)
    });
    let changed: Vec<&Member> = shrinking
        .iter()
        .zip(&proposed)
        .filter(|(_, p)| !matches!(p, Stopped::NotYet(_)))
        .map(|(m, _)| *m)
        .collect();
    if let Some(e) = shrinking.iter().zip(proposed).find_map(|(m, p)| match p {
        Stopped::Yes => None,
        Stopped::NotYet(e) | Stopped::Pending(e) => Some(format!("{}: {e}", m.addr)),
    }) {
        return Err(undo(cfg, &changed, e));
    }
    Ok(changed)
}

/// Withdraws the proposals of `changed`, so that every server takes what it took before: a
/// hand-over that stops is undone, never half done. Returns `why`, the reason it stopped.
fn undo(cfg: &Config, changed: &[&Member], why: String) -> String {
    parallel::each(changed, |m| {
        let mut db = lock(m.db().expect("live"));
        // A server whose withdrawal fails (an open transaction holds its rules) keeps
        // accepting only what both its rules accept until its proposal lapses: safe.
        let _ =
            bounded(&mut db, Duration::from_secs(1)).and_then(|()| home::withdraw(cfg, &mut db));
    });
    why
}

/// Step 2: each server of `live` gaining users applies everything every other server wrote to
/// its binary log up to now, so that it takes no user's writes before it holds all of them.
/// `Err` says why not (or that a signal came); the caller undoes step 1.
fn catch_up_gainers(live: &[&Member], deadline: Instant) -> std::result::Result<(), String> {
    let positions: Vec<Result<(HostPort, Option<String>)>> = parallel::each(live, |m| {
        let mut db = lock(m.db().expect("live"));
        Ok((m.addr.clone(), replica::binlog_position(&mut db)?))
    });
    let mut marks = Vec::new();
    for p in positions {
        match p {
            Ok((addr, Some(pos))) => marks.push((addr, pos)),
            Ok((_, None)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let gaining: Vec<&&Member> = live.iter().filter(|m| m.gaining()).collect();
    let caught_up = parallel::each(&gaining, |m| {
        catch_up(&mut lock(m.db().expect("live")), &m.addr, &marks, deadline)
    });
    if let Some(e) = caught_up.into_iter().find_map(|r| r.err()) {
        return Err(e);
    }
    if crate::signals::received() {
        return Err("interrupted".into());
    }
    Ok(())
}

/// Step 3, first: the servers of `live` that lost users settle on their new rules, each only
/// while its proposal has not lapsed, so that no gainer takes a user its old writer could take
/// back. A loser that cannot settle (an application transaction holds its rules' lock past the
/// lease: one left open after a refused write, say) stops the hand-over before any gainer takes
/// anything: its proposal lapses and it takes its users back, as if nothing had started. `Err`
/// says why; returning releases the loser's session, which the caller's `undo` then locks.
fn settle_losers(
    cfg: &Config,
    live: &[&Member],
    writers: &[HostPort],
    deadline: Instant,
) -> std::result::Result<(), String> {
    for m in live.iter().filter(|m| !m.gaining() && !m.settled()) {
        let mut db = lock(m.db().expect("live"));
        // Within the operator's timeout (a second at least): the lease's margin is for the
        // settling itself, not for waiting on an application past --timeout.
        let wait = deadline.saturating_duration_since(Instant::now());
        match bounded(&mut db, wait).and_then(|()| home::settle(cfg, &mut db, &m.target, writers)) {
            Ok(true) => {}
            failed => {
                let why = match failed {
                    Ok(_) => "it was held up past --timeout and its proposal lapsed".to_string(),
                    Err(e) => format!(
                        "{e}; transactions holding its rules: {}",
                        holders(&mut db).unwrap_or_else(|e| e.to_string())
                    ),
                };
                return Err(format!(
                    "{}: could not settle its new rule ({why}); no user was handed over: its proposal lapses within {}s and it takes its users back",
                    m.addr,
                    LEASE_MARGIN.as_secs()
                ));
            }
        }
        crate::failpoint!("handover.settled_one");
    }
    Ok(())
}

/// Step 3, then: the servers of `live` gaining users settle on their new rules, however late,
/// since the losers have settled and those users have no other writer now. `Err` leaves the
/// hand-over partly done, for the same command to finish.
fn settle_gainers(
    cfg: &Config,
    live: &[&Member],
    writers: &[HostPort],
    deadline: Instant,
) -> std::result::Result<(), String> {
    for m in live.iter().filter(|m| m.gaining()) {
        let mut db = lock(m.db().expect("live"));
        // However late: its users have no other writer now.
        bounded(&mut db, left(deadline).max(Duration::from_secs(5)))
            .and_then(|()| home::settle(cfg, &mut db, &m.target, writers))
            .and_then(|settled| match settled {
                true => Ok(()),
                false => Err(crate::error::Error::Refused(
                    "its proposal lapsed".into(),
                )),
            })
            .map_err(|e| {
                format!(
                    "{}: {e}; the hand-over is partly done (no user has two writers, some none): run the same command again to finish it",
                    m.addr
                )
            })?;
        crate::failpoint!("handover.settled_one");
    }
    Ok(())
}

/// Sets how long the session's row-lock waits may take (whole seconds, at least one).
fn bounded(db: &mut Db, wait: Duration) -> Result<()> {
    db.exec_drop(
        "bounding row-lock waits",
        "SET SESSION innodb_lock_wait_timeout = ?",
        (wait.as_secs().max(1),),
    )
}

/// How long a proposal outlives the hand-over's deadline: time to settle after the last wait.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How far a server losing users got.
enum Stopped {
    /// It takes only its new users, and nothing written under the old rule is still open.
    Yes,
    /// Its rule did not change: the barrier did not pass by the deadline (or a signal).
    NotYet(String),
    /// Its rule changed, but a prepared XA transaction from before is still open.
    Pending(String),
}

/// Proposes `target` on a server losing users (`home::propose`), trying again a second at a
/// time until `deadline` or a signal, so applications' writes queued behind the barrier wait a
/// second at most before they run (and meet whichever rule is in force); then waits for the
/// prepared XA transactions open at that moment, which keep no shared lock (InnoDB releases
/// those at XA PREPARE) but commit their writes later. Past the deadline, names what held it up.
fn barrier(
    cfg: &Config,
    db: &mut Db,
    target: &Rule,
    writers: &[HostPort],
    deadline: Instant,
) -> Stopped {
    let out_of_time = || Instant::now() >= deadline || crate::signals::received();
    loop {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        // The proposal outlives the hand-over's deadline by a margin; if this process dies, it
        // lapses then and the server takes its old users back (the ring was never changed).
        let lease = deadline.saturating_duration_since(Instant::now()) + LEASE_MARGIN;
        match home::propose(cfg, db, target, writers, wait.as_secs().max(1), lease) {
            Ok(true) => break,
            Ok(false) if out_of_time() => {
                return Stopped::NotYet(format!(
                    "transactions that wrote before the hand-over began are still open: {}",
                    holders(db).unwrap_or_else(|e| format!("(could not list them: {e})"))
                ))
            }
            Ok(false) => {}
            Err(e) => return Stopped::NotYet(e.to_string()),
        }
    }
    let prepared = match prepared_xa(db) {
        Ok(p) => p,
        Err(e) => return Stopped::Pending(e.to_string()),
    };
    loop {
        let open: Vec<String> = match prepared_xa(db) {
            Ok(now) => now.into_iter().filter(|x| prepared.contains(x)).collect(),
            Err(e) => return Stopped::Pending(e.to_string()),
        };
        if open.is_empty() {
            return Stopped::Yes;
        }
        if out_of_time() {
            return Stopped::Pending(format!(
                "prepared XA transactions from before the hand-over began are still open (XA RECOVER): {}; commit or roll them back",
                open.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The XIDs of the prepared XA transactions on the server.
pub fn prepared_xa(db: &mut Db) -> Result<Vec<String>> {
    use mysql::prelude::Queryable;
    let rows: Vec<mysql::Row> = db.run("listing prepared XA transactions", |c| {
        c.query("XA RECOVER")
    })?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            let data: Option<Vec<u8>> = r.take("data");
            String::from_utf8_lossy(&data.unwrap_or_default()).into_owned()
        })
        .collect())
}

/// The transactions holding row locks on the server, for the operator. InnoDB's list of
/// transactions is a cache refreshed only after 0.1 s without a reader: read after a pause.
pub fn holders(db: &mut Db) -> Result<String> {
    std::thread::sleep(Duration::from_millis(150));
    let rows: Vec<(u64, String, String, Option<String>)> = db.exec(
        "listing open transactions",
        "SELECT trx_mysql_thread_id, CAST(trx_started AS CHAR), trx_state, trx_query
         FROM information_schema.INNODB_TRX
         WHERE trx_mysql_thread_id <> CONNECTION_ID()
           AND (trx_id <> 0 OR trx_rows_modified > 0 OR trx_mysql_thread_id = 0)
         ORDER BY trx_started",
        (),
    )?;
    let named: Vec<String> = rows
        .into_iter()
        .map(|(thread, since, state, query)| match thread {
            0 => format!("a prepared XA transaction started {since} (see XA RECOVER)"),
            id => format!(
                "connection {id} ({state} since {since}{})",
                query
                    .map(|q| format!(": {}", q.chars().take(80).collect::<String>()))
                    .unwrap_or_default()
            ),
        })
        .collect();
    Ok(if named.is_empty() {
        "none listed (they ended meanwhile)".into()
    } else {
        named.join("; ")
    })
}

/// Waits until the server of `db` has applied every other server's position in `marks` (its
/// own GTID domain left out: a server never waits for its own writes).
fn catch_up(
    db: &mut Db,
    addr: &HostPort,
    marks: &[(HostPort, String)],
    deadline: Instant,
) -> Result<(), String> {
    let own: Option<u32> = db
        .exec_first("reading the GTID domain", "SELECT @@gtid_domain_id", ())
        .map_err(|e| e.to_string())?;
    for (peer, pos) in marks.iter().filter(|(p, _)| p != addr) {
        let theirs: Vec<&str> = pos
            .split(',')
            .map(str::trim)
            .filter(|g| {
                g.split('-')
                    .next()
                    .and_then(|d| d.parse::<u32>().ok())
                    .is_none_or(|d| Some(d) != own)
            })
            .collect();
        if theirs.is_empty() {
            continue;
        }
        // In slices, so a signal is heard within a second.
        let done = loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            if replica::wait_for(db, &theirs.join(","), wait).map_err(|e| e.to_string())? {
                break true;
            }
            if Instant::now() >= deadline || crate::signals::received() {
                break false;
            }
        };
        if !done && crate::signals::received() {
            return Err(format!(
                "interrupted while {addr} was applying what {peer} wrote before the hand-over"
            ));
        }
        if !done {
            return Err(format!(
                "{addr} has not applied everything {peer} wrote before the hand-over within the timeout ({})",
                replica::why_behind(db)
            ));
        }
    }
    Ok(())
}

/// Brings every server of `shards` to the ring's own view, as `guard install` and `shard add`
/// leave them: with the home guard on, each server settles on the rule of the writers the ring
/// names now (by the same protocol, so a server that took other users' writes gives them up
/// first); with it off, every rule is dropped and the servers accept every user again. Per
/// shard: what was done, or why not.
pub fn to_ring(
    cfg: &Config,
    shards: &[Shard],
    timeout: Duration,
) -> Vec<std::result::Result<Option<Handover>, String>> {
    let deadline = Instant::now() + timeout;
    parallel::each(shards, |shard| {
        // Rows first (the triggers lock only rows that exist), then the rules.
        for s in &shard.servers {
            home::session(cfg, &s.addr, left(deadline))
                .and_then(|mut db| {
                    home::ensure_rows(cfg, &mut db)?;
                    if home::enabled(cfg) {
                        Ok(())
                    } else {
                        home::clear(cfg, &mut db)
                    }
                })
                .map_err(|e| format!("{}: {e}", s.addr))?;
        }
        if home::enabled(cfg) {
            return converge(cfg, shard, &home::writers(&shard.servers), deadline).map(Some);
        }
        Ok(None)
    })
}

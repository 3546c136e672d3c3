//! Rolling maintenance (`maintenance roll`): Flickr's loop as one command — drain a half of
//! every shard, run the operator's command once for each drained server, restore the half, and
//! only then the next half.
//!
//! It is safe to kill and to run again. A journal in the ring (`rolls`, `roll_servers`) records
//! each server's step as it is reached: a re-run of the same roll does not run the command again
//! where it succeeded, does not drain again a half that is done, and restores what succeeded
//! before it was killed. One roll at a time: it holds the `MAINTENANCE_ROLL` lock.

use std::collections::{HashMap, VecDeque};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde::Serialize;
use serde_json::json;

use super::{drain, restore, DrainOptions, Refusal, RestoreOptions};
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::lock::keeper::Watch;
use crate::lock::{self, Request};
use crate::output::Ui;
use crate::process::{self, Output};
use crate::ring::directory::{self, Half, ServerStatus, Shard};
use crate::ring::fences::{self, Fence};
use crate::ring::{self, audit, Changes};
use crate::types::{HostPort, LockName};

/// The lock every roll holds: two at once would drain both halves' servers in turn.
const ROLL_LOCK: &str = "MAINTENANCE_ROLL";
/// The roll lock's lease; renewed every third of it while the roll runs.
const ROLL_LOCK_TTL: Duration = Duration::from_secs(30);
/// Lines of a command's output kept for the report.
const TAIL_LINES: usize = 20;

pub struct RollOptions {
    pub exec: String,
    pub halves: Vec<Half>,
    pub parallel: usize,
    pub timeout: Duration,
    pub exec_timeout: Duration,
    pub max_lag: u64,
    pub dry_run: bool,
}

/// Where a server of a roll has got to, as journaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Drained for the command; the command may have run, or died with us.
    Drained,
    ExecOk,
    ExecFailed,
    /// The command succeeded and the server is back online.
    Restored,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Drained => "drained",
            Step::ExecOk => "exec_ok",
            Step::ExecFailed => "exec_failed",
            Step::Restored => "restored",
        }
    }

    fn parse(s: &str) -> Option<Step> {
        [
            Step::Drained,
            Step::ExecOk,
            Step::ExecFailed,
            Step::Restored,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// What a half still needs, from its servers and their journaled steps (pure).
#[derive(Debug, Default, PartialEq)]
pub struct Remaining {
    /// The command has not succeeded on these yet: drain them (if not already) and run it.
    pub exec: Vec<HostPort>,
    /// The command succeeded but they are not known to be back: restore them.
    pub restore: Vec<HostPort>,
}

impl Remaining {
    pub fn done(&self) -> bool {
        self.exec.is_empty() && self.restore.is_empty()
    }
}

/// A server whose command succeeded is never given it again; one that was only drained (the
/// command was interrupted with us) or whose command failed gets it again.
pub fn remaining(servers: &[HostPort], steps: &HashMap<HostPort, Step>) -> Remaining {
    let mut r = Remaining::default();
    for s in servers {
        match steps.get(s) {
            Some(Step::Restored) => {}
            Some(Step::ExecOk) => r.restore.push(s.clone()),
            None | Some(Step::Drained) | Some(Step::ExecFailed) => r.exec.push(s.clone()),
        }
    }
    r
}

/// How one run of the command went.
#[derive(Clone, Debug, Serialize)]
pub struct Exec {
    /// Exit code (128 + signal when a signal ended it; 124 when `--exec-timeout` stopped it).
    pub code: i32,
    pub seconds: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// One server of a half, as the roll leaves it.
#[derive(Clone, Debug, Serialize)]
pub struct ServerRun {
    pub shard: String,
    pub host: String,
    pub port: u16,
    /// The command's result in this run, or in an earlier run of the same roll; null if it
    /// did not run.
    pub exec: Option<Exec>,
    pub status: ServerStatus,
    /// The journaled step.
    pub step: Option<Step>,
    /// The last lines of the command's output, when it failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_tail: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HalfRun {
    pub half: Half,
    pub servers: Vec<ServerRun>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollState {
    Done,
    Failed,
    Refused,
    /// A dry run: what would happen.
    Planned,
}

#[derive(Debug, Serialize)]
pub struct RollReport {
    pub roll_id: Option<u64>,
    pub command: String,
    pub state: RollState,
    pub halves: Vec<HalfRun>,
    /// Why a drain was refused (nothing of that half was changed).
    pub refused: Vec<Refusal>,
    /// This run picked up a roll an earlier run left unfinished.
    pub resumed: bool,
    pub dry_run: bool,
    pub seconds: f64,
}

/// A server of the roll with what is known of it now.
#[derive(Clone)]
struct Target {
    shard: String,
    half: Half,
    addr: HostPort,
}

/// The roll's journal rows: (host, port, step, exit code, seconds, timed out, output tail).
type JournalRow = (
    String,
    u16,
    String,
    Option<i32>,
    Option<f64>,
    bool,
    Option<String>,
);

struct Journal {
    steps: HashMap<HostPort, Step>,
    execs: HashMap<HostPort, (Exec, Vec<String>)>,
}

fn read_journal(ring: &mut Db, roll_id: u64) -> Result<Journal> {
    let rows: Vec<JournalRow> = ring.exec(
        "reading the roll journal",
        "SELECT host, port, step, exit_code, seconds, timed_out, output_tail FROM roll_servers
         WHERE roll_id = ?",
        (roll_id,),
    )?;
    let mut j = Journal {
        steps: HashMap::new(),
        execs: HashMap::new(),
    };
    for (host, port, step, code, seconds, timed_out, tail) in rows {
        let addr = HostPort::new(host, port);
        if let Some(step) = Step::parse(&step) {
            j.steps.insert(addr.clone(), step);
        }
        if let (Some(code), Some(seconds)) = (code, seconds) {
            let exec = Exec {
                code,
                seconds,
                timed_out,
            };
            let tail = tail
                .map(|t| t.lines().map(str::to_string).collect())
                .unwrap_or_default();
            j.execs.insert(addr, (exec, tail));
        }
    }
    Ok(j)
}

fn journal_step(
    ring: &mut Db,
    fence: &Fence,
    roll_id: u64,
    t: &Target,
    step: Step,
    exec: Option<(&Exec, &[String])>,
) -> Result<()> {
    let (code, seconds, timed_out, tail) = match exec {
        Some((e, tail)) => (
            Some(e.code),
            Some(e.seconds),
            e.timed_out,
            Some(tail.join("\n")),
        ),
        None => (None, None, false, None),
    };
    fenced(ring, "journaling the roll", fence, |c| {
        c.exec_drop(
            "INSERT INTO roll_servers (roll_id, half, shard, host, port, step, exit_code, seconds, timed_out,
                                       output_tail, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE step = VALUES(step), updated_at = VALUES(updated_at),
                 exit_code = COALESCE(VALUES(exit_code), exit_code), seconds = COALESCE(VALUES(seconds), seconds),
                 timed_out = IF(VALUES(exit_code) IS NULL, timed_out, VALUES(timed_out)),
                 output_tail = COALESCE(VALUES(output_tail), output_tail)",
            (roll_id, t.half.as_str(), t.shard.as_str(), t.addr.host.as_str(), t.addr.port, step.as_str(), code, seconds,
             timed_out, tail),
        )?;
        if let Some((e, _)) = exec {
            audit::record(
                c,
                "maintenance.roll.exec",
                &t.addr.to_string(),
                json!({ "roll_id": roll_id, "shard": t.shard, "half": t.half, "code": e.code,
                        "seconds": e.seconds, "timed_out": e.timed_out }),
            )?;
        }
        Ok(())
    })
}

/// One ring transaction of the roll, fenced by its lock: the fence held from the start (a
/// successor raising it waits) and the lock still proven held just before the commit.
fn fenced<T>(
    ring: &mut Db,
    doing: &str,
    fence: &Fence,
    f: impl FnOnce(&mut mysql::Transaction) -> mysql::Result<T>,
) -> Result<T> {
    ring.transaction(doing, |c| {
        fences::hold(c, fence)?;
        let v = f(c)?;
        fences::still_proven(Some(fence))?;
        Ok(v)
    })
}

/// An unfinished roll: (id, command, halves).
fn unfinished(ring: &mut Db) -> Result<Option<(u64, String, String)>> {
    ring.exec_first(
        "looking for an unfinished roll",
        "SELECT roll_id, command, halves FROM rolls WHERE state IN ('running', 'failed', 'refused')
         ORDER BY roll_id DESC LIMIT 1",
        (),
    )
}

fn halves_text(halves: &[Half]) -> String {
    halves
        .iter()
        .map(|h| h.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Journals where the command for `t` runs: before it starts (no group yet: a roll that lost
/// its lock is refused here, by the fence, before it runs anything) and as it starts (a later
/// roll waits for that group).
fn journal_started(
    ring: &mut Db,
    fence: &Fence,
    roll_id: u64,
    t: &Target,
    pgid: Option<u32>,
) -> Result<()> {
    fenced(ring, "journaling the command's start", fence, |c| {
        c.exec_drop(
            "UPDATE roll_servers SET exec_host = ?, exec_pgid = ?, updated_at = UTC_TIMESTAMP(6)
             WHERE roll_id = ? AND host = ? AND port = ?",
            (
                audit::hostname(),
                pgid,
                roll_id,
                t.addr.host.as_str(),
                t.addr.port,
            ),
        )
    })
}

/// Commands a roll started whose end was never journaled (the roll was killed, or lost its
/// lock): (server, host they ran on, process group).
fn unended_commands(ring: &mut Db) -> Result<Vec<(HostPort, String, i64)>> {
    let rows: Vec<(String, u16, String, i64)> = ring.exec(
        "looking for commands a roll left running",
        "SELECT s.host, s.port, s.exec_host, s.exec_pgid FROM roll_servers s JOIN rolls r USING (roll_id)
         WHERE s.step = 'drained' AND s.exec_pgid IS NOT NULL AND r.state IN ('running', 'failed', 'refused', 'abandoned')",
        (),
    )?;
    Ok(rows
        .into_iter()
        .map(|(h, p, eh, g)| (HostPort::new(h, p), eh, g))
        .collect())
}

/// Waits (up to `within`) for commands an earlier roll started and never saw end: a second
/// copy must not run beside the first. A command on another host cannot be seen from here:
/// refused, naming it.
fn wait_for_unended(ring: &mut Db, within: Duration, ui: &Ui) -> Result<()> {
    let here = audit::hostname();
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<(HostPort, String, i64)> = unended_commands(ring)?
            .into_iter()
            .filter(|(_, host, pgid)| *host != here || process::group_alive(*pgid))
            .collect();
        let Some((server, host, pgid)) = left.first() else {
            return Ok(());
        };
        if *host != here {
            return Err(Error::Refused(format!(
                "an earlier roll started its command for {server} on host {host} (process group \
                 {pgid}) and never saw it end: run this roll on {host}, where it can wait for that \
                 command, or end that process group there first"
            )));
        }
        if Instant::now() >= deadline || crate::signals::received() {
            return Err(Error::Refused(format!(
                "an earlier roll's command for {server} (process group {pgid} on this host) still \
                 runs; not starting a second copy (kill -TERM -{pgid} to end it)"
            )));
        }
        ui.status(&format!(
            "waiting for an earlier roll's command for {server} (process group {pgid}) to end"
        ));
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn set_roll_state(ring: &mut Db, fence: &Fence, roll_id: u64, state: &str) -> Result<()> {
    fenced(ring, "recording the roll's state", fence, |c| {
        c.exec_drop(
            "UPDATE rolls SET state = ?, updated_at = UTC_TIMESTAMP(6),
                 finished_at = IF(? IN ('done'), UTC_TIMESTAMP(6), NULL) WHERE roll_id = ?",
            (state, state, roll_id),
        )?;
        audit::record(
            c,
            "maintenance.roll",
            &format!("roll #{roll_id}"),
            json!({ "state": state }),
        )
    })
}

/// The roll of this command and halves: the unfinished one if it is the same, else a new one.
/// (roll id, whether it was picked up) An unfinished roll of another command is superseded:
/// with the roll lock held none is live, and the new roll gives every server its own command
/// (servers the old one left drained included), so nothing is skipped.
fn begin(ring: &mut Db, fence: &Fence, opts: &RollOptions, ui: &Ui) -> Result<(u64, bool)> {
    let halves = halves_text(&opts.halves);
    if let Some((id, command, was_halves)) = unfinished(ring)? {
        if command == opts.exec && was_halves == halves {
            set_roll_state(ring, fence, id, "running")?;
            return Ok((id, true));
        }
        ui.warn(&format!(
            "maintenance roll #{id} (--exec {command:?} --halves {was_halves}) was left unfinished; \
             this roll of another command supersedes it"
        ));
        set_roll_state(ring, fence, id, "abandoned")?;
    }
    let id = fenced(ring, "journaling the roll", fence, |c| {
        c.exec_drop(
            "INSERT INTO rolls (command, halves, state, operator, host, started_at, updated_at)
             VALUES (?, ?, 'running', ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
            (
                opts.exec.as_str(),
                halves.as_str(),
                audit::operator(),
                audit::hostname(),
            ),
        )?;
        let id = c.last_insert_id().unwrap_or_default();
        audit::record(
            c,
            "maintenance.roll",
            &format!("roll #{id}"),
            json!({ "state": "running", "command": opts.exec, "halves": halves }),
        )?;
        Ok(id)
    })?;
    Ok((id, false))
}

fn targets(shards: &[Shard], half: Half) -> Vec<Target> {
    shards
        .iter()
        .flat_map(|s| {
            s.servers
                .iter()
                .filter(move |v| v.half == half)
                .map(move |v| Target {
                    shard: s.name.clone(),
                    half,
                    addr: v.addr(),
                })
        })
        .collect()
}

pub fn roll(cfg: &Config, changes: &Changes, opts: &RollOptions, ui: &Ui) -> Result<RollReport> {
    let start = Instant::now();
    if opts.exec.trim().is_empty() {
        return Err(Error::Usage("--exec needs a command".into()));
    }
    if opts.halves.is_empty()
        || opts
            .halves
            .iter()
            .enumerate()
            .any(|(i, h)| opts.halves[..i].contains(h))
    {
        return Err(Error::Usage(
            "--halves lists each of a and b at most once".into(),
        ));
    }
    let mut report = RollReport {
        roll_id: None,
        command: opts.exec.clone(),
        state: RollState::Done,
        halves: Vec::new(),
        refused: Vec::new(),
        resumed: false,
        dry_run: opts.dry_run,
        seconds: 0.0,
    };
    if opts.dry_run {
        let first = opts.halves[0];
        let checked = drain(
            cfg,
            changes,
            &drain_options(opts, first, None, true, None),
            ui,
        )?;
        report.state = if checked.blocked {
            RollState::Refused
        } else {
            RollState::Planned
        };
        report.refused = checked.refused;
        let shards = directory::shards(&mut ring::open(cfg)?)?;
        report.halves = half_runs(opts, &shards, None);
        report.seconds = start.elapsed().as_secs_f64();
        return Ok(report);
    }
    let req = Request {
        name: ROLL_LOCK.parse::<LockName>().map_err(Error::Failed)?,
        ttl: ROLL_LOCK_TTL,
        owner: audit::operator(),
        purpose: format!(
            "maintenance roll: {}",
            opts.exec.chars().take(200).collect::<String>()
        ),
        hold_session: true,
        metadata: json!({ "purpose": "maintenance roll", "command": opts.exec, "pid": std::process::id(),
                          "host": audit::hostname() }),
    };
    crate::signals::catch_termination();
    let held = lock::holding(cfg, &req, Duration::ZERO, |held, watch| {
        // Every ring write of this roll holds the lock's fence at its token: once a successor
        // raised it, nothing this roll writes lands, whenever it wakes.
        let fence = Fence {
            name: held.name.clone(),
            token: held.token,
            proof: Some(watch.held_proof()),
        };
        // Raising waits for a frozen predecessor's open transaction on the fence row: no
        // longer than the operator's --timeout.
        let mut ring = ring::open(cfg)?;
        super::bound_lock_waits(&mut ring, Instant::now() + opts.timeout)?;
        ring.run("raising the roll lock's fence", |c| {
            fences::raise(c, &[(&fence.name, fence.token)])
        })?;
        run_halves(cfg, changes, opts, ui, &mut report, watch, &fence)
    });
    match held {
        Err(Error::LockInUse(why)) => {
            let mut ring = ring::open(cfg)?;
            let running = unfinished(&mut ring)?
                .map(|(id, cmd, _)| format!("maintenance roll #{id} (--exec {cmd:?}) is running"))
                .unwrap_or_else(|| "another maintenance roll is running".into());
            return Err(Error::LockInUse(format!("{running}: {why}")));
        }
        other => other?,
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

fn drain_options(
    opts: &RollOptions,
    half: Half,
    only: Option<Vec<HostPort>>,
    dry_run: bool,
    fence: Option<&Fence>,
) -> DrainOptions {
    DrainOptions {
        fence: fence.cloned(),
        half,
        timeout: opts.timeout,
        max_lag: opts.max_lag,
        dry_run,
        skip_unsafe: false,
        only,
    }
}

/// The halves as they stand now, with the journal's results (or none, before a roll exists).
fn half_runs(opts: &RollOptions, shards: &[Shard], journal: Option<&Journal>) -> Vec<HalfRun> {
    let status: HashMap<HostPort, ServerStatus> = shards
        .iter()
        .flat_map(|s| s.servers.iter().map(|v| (v.addr(), v.status)))
        .collect();
    opts.halves
        .iter()
        .map(|&half| HalfRun {
            half,
            servers: targets(shards, half)
                .into_iter()
                .map(|t| {
                    let exec = journal.and_then(|j| j.execs.get(&t.addr));
                    let step = journal.and_then(|j| j.steps.get(&t.addr).copied());
                    ServerRun {
                        shard: t.shard.clone(),
                        host: t.addr.host.clone(),
                        port: t.addr.port,
                        exec: exec.map(|e| e.0.clone()),
                        status: status
                            .get(&t.addr)
                            .copied()
                            .unwrap_or(ServerStatus::Offline),
                        step,
                        output_tail: match step {
                            Some(Step::ExecFailed) => exec.map(|e| e.1.clone()).unwrap_or_default(),
                            _ => Vec::new(),
                        },
                        note: None,
                    }
                })
                .collect(),
        })
        .collect()
}

/// With the roll lock held: every half in order, each drained, run and restored before the next.
fn run_halves(
    cfg: &Config,
    changes: &Changes,
    opts: &RollOptions,
    ui: &Ui,
    report: &mut RollReport,
    watch: &Watch,
    fence: &Fence,
) -> Result<()> {
    let mut ring = ring::open(cfg)?;
    // A command an earlier roll started may still run (it was SIGKILLed, or lost its lock):
    // never a second copy beside it.
    wait_for_unended(&mut ring, opts.exec_timeout, ui)?;
    watch.check()?;
    let (roll_id, resumed) = begin(&mut ring, fence, opts, ui)?;
    report.roll_id = Some(roll_id);
    report.resumed = resumed;
    if resumed {
        ui.status(&format!(
            "picking up maintenance roll #{roll_id} where it stopped"
        ));
    }
    let mut notes: HashMap<HostPort, String> = HashMap::new();
    let mut state = RollState::Done;
    // A signal stops the commands and the roll, never the restore of what it drained: taken
    // here so the restore runs (a second signal during it stops that too).
    let mut interrupted = false;
    for &half in &opts.halves {
        let shards = directory::shards(&mut ring)?;
        let half_targets = targets(&shards, half);
        let journal = read_journal(&mut ring, roll_id)?;
        let addrs: Vec<HostPort> = half_targets.iter().map(|t| t.addr.clone()).collect();
        let left = remaining(&addrs, &journal.steps);
        if left.done() && every_online(&shards, half) {
            continue;
        }
        let mut restore_now = left.restore.clone();
        if !left.exec.is_empty() {
            watch.check()?;
            let drained = drain(
                cfg,
                changes,
                &drain_options(opts, half, Some(left.exec.clone()), false, Some(fence)),
                ui,
            )?;
            if drained.blocked {
                report.refused = drained.refused;
                state = RollState::Refused;
                break;
            }
            let offline: Vec<&Target> = half_targets
                .iter()
                .filter(|t| left.exec.contains(&t.addr))
                .filter(|t| {
                    drained.servers.iter().any(|s| {
                        s.host == t.addr.host
                            && s.port == t.addr.port
                            && s.status == ServerStatus::Offline
                    })
                })
                .collect();
            for s in &drained.servers {
                let addr = HostPort::new(s.host.clone(), s.port);
                if left.exec.contains(&addr) && s.status != ServerStatus::Offline {
                    notes.insert(
                        addr,
                        format!(
                            "not drained ({}); its command did not run",
                            s.note.clone().unwrap_or_else(|| s.status.to_string())
                        ),
                    );
                    state = RollState::Failed;
                }
            }
            for t in &offline {
                watch.check()?;
                journal_step(&mut ring, fence, roll_id, t, Step::Drained, None)?;
            }
            let results = run_commands(opts, ui, roll_id, half, &offline, &mut ring, watch, fence)?;
            watch.check()?;
            for (t, r) in offline.iter().zip(results) {
                match r {
                    Some(e) if e.code == 0 => restore_now.push(t.addr.clone()),
                    Some(_) => state = RollState::Failed,
                    // Drained for nothing: it serves again, and a re-run gives it the command.
                    None => {
                        notes.insert(
                            t.addr.clone(),
                            "not started (a command failed first); restored, a re-run gives it the command".into(),
                        );
                        restore_now.push(t.addr.clone());
                        state = RollState::Failed;
                    }
                }
            }
        }
        if crate::signals::take().is_some() {
            interrupted = true;
        }
        if !restore_now.is_empty() {
            watch.check()?;
            let restored = restore(
                cfg,
                changes,
                &RestoreOptions {
                    fence: Some(fence.clone()),
                    half,
                    timeout: opts.timeout,
                    max_lag: opts.max_lag,
                    dry_run: false,
                    only: Some(restore_now.clone()),
                },
                ui,
            )?;
            let steps_now = read_journal(&mut ring, roll_id)?.steps;
            for s in &restored.servers {
                let addr = HostPort::new(s.host.clone(), s.port);
                if !restore_now.contains(&addr) {
                    continue;
                }
                if s.status == ServerStatus::Online {
                    // Only a server whose command succeeded is done with.
                    let succeeded = steps_now.get(&addr) == Some(&Step::ExecOk);
                    if let (true, Some(t)) =
                        (succeeded, half_targets.iter().find(|t| t.addr == addr))
                    {
                        watch.check()?;
                        journal_step(&mut ring, fence, roll_id, t, Step::Restored, None)?;
                    }
                } else {
                    notes.insert(
                        addr,
                        s.note.clone().unwrap_or_else(|| "not restored".into()),
                    );
                    state = RollState::Failed;
                }
            }
        }
        // The next half starts only once every server of this one serves again.
        let shards = directory::shards(&mut ring)?;
        if state == RollState::Done && !every_online(&shards, half) {
            for s in shards.iter().flat_map(|s| s.servers.iter()) {
                if s.half == half && s.status != ServerStatus::Online {
                    notes.entry(s.addr()).or_insert_with(|| {
                        format!("{}: not back online, so the next half waits", s.status)
                    });
                }
            }
            state = RollState::Failed;
        }
        watch.check()?;
        interrupted |= crate::signals::take().is_some();
        if state != RollState::Done || interrupted {
            if state == RollState::Done {
                state = RollState::Failed;
            }
            break;
        }
    }
    let shards = directory::shards(&mut ring)?;
    let journal = read_journal(&mut ring, roll_id)?;
    report.halves = half_runs(opts, &shards, Some(&journal));
    for h in &mut report.halves {
        for s in &mut h.servers {
            s.note = notes.remove(&HostPort::new(s.host.clone(), s.port));
        }
    }
    report.state = state;
    watch.check()?;
    set_roll_state(
        &mut ring,
        fence,
        roll_id,
        match state {
            RollState::Done => "done",
            RollState::Refused => "refused",
            RollState::Failed | RollState::Planned => "failed",
        },
    )?;
    Ok(())
}

fn every_online(shards: &[Shard], half: Half) -> bool {
    shards
        .iter()
        .flat_map(|s| s.servers.iter())
        .filter(|s| s.half == half)
        .all(|s| s.status == ServerStatus::Online)
}

/// Runs the command for each of `servers`, at most `--parallel` at once. After the first
/// failure no new one starts; running ones finish. Each start and result is journaled as it
/// comes, only while the roll still holds its lock. Results in the order of `servers`; None for
/// a command not started.
#[allow(clippy::too_many_arguments)]
fn run_commands(
    opts: &RollOptions,
    ui: &Ui,
    roll_id: u64,
    half: Half,
    servers: &[&Target],
    ring: &mut Db,
    watch: &Watch,
    fence: &Fence,
) -> Result<Vec<Option<Exec>>> {
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..servers.len()).collect());
    let results: Mutex<Vec<Option<Exec>>> = Mutex::new(vec![None; servers.len()]);
    let failed = AtomicBool::new(false);
    let ring = Mutex::new(ring);
    let journal_error: Mutex<Option<Error>> = Mutex::new(None);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let running: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let show = |n: usize, running: &[String]| {
        format!(
            "half {half}: {n} of {} servers done; running on {}",
            servers.len(),
            if running.is_empty() {
                "none".to_string()
            } else {
                running.join(", ")
            }
        )
    };
    let progress = ui.spinner(&format!(
        "half {half}: running the command on {} servers, {} at a time",
        servers.len(),
        opts.parallel
    ));
    let journal = |f: &dyn Fn(&mut Db) -> Result<()>| -> bool {
        let Ok(mut db) = ring.lock() else {
            return false;
        };
        let result = watch.check().and_then(|()| f(&mut db));
        match result {
            Ok(()) => true,
            Err(e) => {
                if let Ok(mut j) = journal_error.lock() {
                    j.get_or_insert(e);
                }
                failed.store(true, Ordering::SeqCst);
                false
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..opts.parallel.min(servers.len().max(1)) {
            s.spawn(|| loop {
                let stop = failed.load(Ordering::SeqCst)
                    || crate::signals::received()
                    || watch.check().is_err();
                let next = if stop {
                    None
                } else {
                    queue.lock().ok().and_then(|mut q| q.pop_front())
                };
                let Some(i) = next else { break };
                let t = servers[i];
                let label = format!("{}/{}", t.shard, t.half);
                if let Ok(mut r) = running.lock() {
                    r.push(label.clone());
                    progress.set_message(show(done.load(Ordering::SeqCst), &r));
                }
                let started =
                    |pgid: Option<u32>| journal(&|db| journal_started(db, fence, roll_id, t, pgid));
                let (exec, tail) = run_one(&opts.exec, t, opts.exec_timeout, ui, started);
                if exec.code != 0 {
                    failed.store(true, Ordering::SeqCst);
                }
                let step = if exec.code == 0 {
                    Step::ExecOk
                } else {
                    Step::ExecFailed
                };
                let kept: &[String] = if exec.code == 0 { &[] } else { &tail };
                // A roll that lost its lock journals nothing: its successor owns the journal.
                journal(&|db| journal_step(db, fence, roll_id, t, step, Some((&exec, kept))));
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(exec);
                }
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                if let Ok(mut r) = running.lock() {
                    r.retain(|l| *l != label);
                    progress.set_message(show(n, &r));
                }
            });
        }
    });
    progress.finish_and_clear();
    if let Some(e) = journal_error.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_default())
}

/// How long a command has after SIGTERM (a timeout, a signal to the roll) before SIGKILL.
const EXEC_GRACE: Duration = Duration::from_secs(5);

/// Runs the command for one server: `sh -c CMD` with the server in its environment, under the
/// shared runner, its output passed through line by line with a prefix naming the server.
/// `started` journals the start, before (None) and after (the process group) the spawn; if it
/// cannot (the roll lost its lock) the command is not started, or is stopped at once. The command's exit — or its timeout, or a signal to the roll
/// (SIGTERM to its group; a second signal, or the grace, SIGKILL) — ends it, whatever still
/// holds its output. (result, last lines)
fn run_one(
    exec: &str,
    t: &Target,
    timeout: Duration,
    ui: &Ui,
    started: impl Fn(Option<u32>) -> bool,
) -> (Exec, Vec<String>) {
    let begun = Instant::now();
    let prefix = format!("[{}/{} {}]", t.shard, t.half, t.addr);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(exec)
        .env("SHARDCTL_SHARD", &t.shard)
        .env("SHARDCTL_HALF", t.half.as_str())
        .env("SHARDCTL_HOST", &t.addr.host)
        .env("SHARDCTL_PORT", t.addr.port.to_string());
    let result = |code: i32, timed_out: bool, tail: Vec<String>| {
        (
            Exec {
                code,
                seconds: begun.elapsed().as_secs_f64(),
                timed_out,
            },
            tail,
        )
    };
    let output = Output::Lines {
        prefix: prefix.clone(),
        ui: ui.clone(),
        keep: TAIL_LINES,
    };
    if !started(None) {
        return result(1, false, vec!["not started: the roll lost its lock".into()]);
    }
    let mut child = match process::spawn(cmd, output) {
        Ok(c) => c,
        Err(e) => return result(127, false, vec![format!("cannot run sh: {e}")]),
    };
    if !started(Some(child.pgid())) {
        child.stop(Duration::ZERO, || true);
        let (tail, _) = child.finish();
        return result(1, false, tail);
    }
    let signals_before = crate::signals::count();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        let signalled = crate::signals::count() > signals_before;
        if signalled || begun.elapsed() >= timeout {
            timed_out = !signalled;
            ui.warn(&format!(
                "{prefix} {}: stopping the command (SIGTERM, SIGKILL after {}s{})",
                if signalled {
                    "signal received"
                } else {
                    "--exec-timeout passed"
                },
                EXEC_GRACE.as_secs(),
                if signalled { " or another signal" } else { "" }
            ));
            break child.stop(EXEC_GRACE, || {
                crate::signals::count() > signals_before + u32::from(signalled)
            });
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let code = match status {
        _ if timed_out => 124,
        Some(st) => process::exit_code(st),
        None => 1,
    };
    let (mut tail, left) = child.finish();
    if let Some(note) = left {
        ui.warn(&format!("{prefix} {note}"));
        if tail.len() == TAIL_LINES {
            tail.remove(0);
        }
        tail.push(note);
    }
    result(code, timed_out, tail)
}

/// The roll in progress (or left unfinished), for `maintenance status`.
#[derive(Debug, Serialize)]
pub struct RollStatus {
    pub roll_id: u64,
    pub command: String,
    pub halves: String,
    pub state: String,
    pub started_at: String,
    pub servers: Vec<RollServer>,
}

#[derive(Debug, Serialize)]
pub struct RollServer {
    pub shard: String,
    pub half: String,
    pub host: String,
    pub port: u16,
    pub step: String,
    pub exit_code: Option<i32>,
}

pub fn in_progress(ring: &mut Db) -> Result<Option<RollStatus>> {
    let row: Option<(u64, String, String, String, String)> = ring.exec_first(
        "looking for a roll in progress",
        "SELECT roll_id, command, halves, state, DATE_FORMAT(started_at, '%Y-%m-%dT%H:%i:%s.%fZ') FROM rolls
         WHERE state IN ('running', 'failed', 'refused') ORDER BY roll_id DESC LIMIT 1",
        (),
    )?;
    let Some((roll_id, command, halves, state, started_at)) = row else {
        return Ok(None);
    };
    let servers: Vec<(String, String, String, u16, String, Option<i32>)> = ring.exec(
        "reading the roll journal",
        "SELECT shard, half, host, port, step, exit_code FROM roll_servers WHERE roll_id = ?
         ORDER BY half, shard, host, port",
        (roll_id,),
    )?;
    Ok(Some(RollStatus {
        roll_id,
        command,
        halves,
        state,
        started_at,
        servers: servers
            .into_iter()
            .map(|(shard, half, host, port, step, exit_code)| RollServer {
                shard,
                half,
                host,
                port,
                step,
                exit_code,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> HostPort {
        HostPort::new("db", p)
    }

    #[test]
    fn a_server_whose_command_succeeded_never_gets_it_again() {
        let servers = [a(1), a(2), a(3), a(4), a(5)];
        let steps: HashMap<HostPort, Step> = [
            (a(1), Step::Restored),
            (a(2), Step::ExecOk),
            (a(3), Step::ExecFailed),
            (a(4), Step::Drained),
        ]
        .into_iter()
        .collect();
        let r = remaining(&servers, &steps);
        assert_eq!(r.exec, [a(3), a(4), a(5)]);
        assert_eq!(r.restore, [a(2)]);
        assert!(!r.done());
        let all: HashMap<HostPort, Step> = servers
            .iter()
            .map(|s| (s.clone(), Step::Restored))
            .collect();
        assert!(remaining(&servers, &all).done());
    }
}

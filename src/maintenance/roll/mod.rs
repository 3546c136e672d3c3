//! Rolling maintenance (`maintenance roll`): Flickr's loop as one command — drain a half of
//! every shard, run the operator's command once for each drained server, restore the half, and
//! only then the next half.
//!
//! It is safe to kill and to run again. A journal in the ring (`rolls`, `roll_servers`) records
//! each server's step as it is reached: a re-run of the same roll does not run the command again
//! where it succeeded, does not drain again a half that is done, and restores what succeeded
//! before it was killed. One roll at a time: it holds the `MAINTENANCE_ROLL` lock.

mod journal;
mod runner;

pub use journal::{in_progress, RollServer, RollStatus};

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::{drain, restore, DrainOptions, Refusal, RestoreOptions};
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::lock::keeper::Watch;
use crate::lock::{self, Request};
use crate::output::Ui;
use crate::ring::directory::{self, Half, ServerStatus, Shard};
use crate::ring::fences::{self, Fence};
use crate::ring::{self, audit, Changes};
use crate::types::{HostPort, LockName};

/// The lock every roll holds: two at once would drain both halves' servers in turn.
const ROLL_LOCK: &str = "MAINTENANCE_ROLL";
/// The roll lock's lease; renewed every third of it while the roll runs.
const ROLL_LOCK_TTL: Duration = Duration::from_secs(30);

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

fn targets(shards: &[Shard], half: Half) -> Vec<Target> {
    shards
        .iter()
        .flat_map(|s| {
            s.servers
                .iter()
                .filter(move |v| v.half == half)
                .map(move |v| Target {
                    shard: s.name.to_string(),
                    half,
                    addr: v.addr.clone(),
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
        })
        .map_err(|e| match e.is(crate::error::DbErrorKind::LockWaitTimeout) {
            true => Error::LockInUse(format!(
                "the previous roll holds the roll lock's fence in an open ring transaction (it is frozen or stuck) past --timeout {}: stop that process (or kill its ring session), then run again; nothing was changed",
                humantime::format_duration(opts.timeout)
            )),
            false => e,
        })?;
        run_halves(cfg, changes, opts, ui, &mut report, (watch, &fence))
    });
    match held {
        Err(Error::LockInUse(why)) => {
            let mut ring = ring::open(cfg)?;
            let running = journal::unfinished(&mut ring)?
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
fn half_runs(
    opts: &RollOptions,
    shards: &[Shard],
    journal: Option<&journal::Journal>,
) -> Vec<HalfRun> {
    let status: HashMap<HostPort, ServerStatus> = shards
        .iter()
        .flat_map(|s| s.servers.iter().map(|v| (v.addr.clone(), v.status)))
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

/// Runs the roll's halves under its lock, journaled as roll `roll_id`, and writes the result
/// into `report`.
fn run_halves(
    cfg: &Config,
    changes: &Changes,
    opts: &RollOptions,
    ui: &Ui,
    report: &mut RollReport,
    (watch, fence): (&Watch, &Fence),
) -> Result<()> {
    let mut ring = ring::open(cfg)?;
    // The journal's statements are quick: one the ring holds past the lease (or --timeout) is
    // a roll that can no longer prove its lock, and must stop, not wait 5 minutes.
    let bound = opts.timeout.min(ROLL_LOCK_TTL) + Duration::from_secs(1);
    ring.set_timeouts(bound, bound)?;
    // A command an earlier roll started may still run (it was SIGKILLed, or lost its lock):
    // never a second copy beside it.
    journal::wait_for_unended(&mut ring, opts.exec_timeout, ui)?;
    watch.check()?;
    let (roll_id, resumed) = journal::begin(&mut ring, fence, opts, ui)?;
    report.roll_id = Some(roll_id);
    report.resumed = resumed;
    if resumed {
        ui.status(&format!(
            "picking up maintenance roll #{roll_id} where it stopped"
        ));
    }
    let mut rolling = Rolling {
        cfg,
        changes,
        opts,
        ui,
        watch,
        fence,
        ring,
        roll_id,
        notes: HashMap::new(),
        state: RollState::Done,
        refused: Vec::new(),
    };
    // A signal stops the commands and the roll, never the restore of what it drained: taken
    // here so the restore runs (a second signal during it stops that too).
    let mut interrupted = false;
    for &half in &opts.halves {
        rolling.half(half, &mut interrupted)?;
        watch.check()?;
        interrupted |= crate::signals::take().is_some();
        if rolling.state != RollState::Done || interrupted {
            if rolling.state == RollState::Done {
                rolling.state = RollState::Failed;
            }
            break;
        }
    }
    rolling.finish(report)
}

/// One roll under its lock: what every half shares, and what the halves found.
struct Rolling<'a> {
    cfg: &'a Config,
    changes: &'a Changes,
    opts: &'a RollOptions,
    ui: &'a Ui,
    watch: &'a Watch,
    fence: &'a Fence,
    ring: Db,
    roll_id: u64,
    notes: HashMap<HostPort, String>,
    state: RollState,
    refused: Vec<Refusal>,
}

impl Rolling<'_> {
    /// Drains `half` where its command has yet to run, runs it there, and restores what it may:
    /// the next half starts only once every server of this one serves again.
    fn half(&mut self, half: Half, interrupted: &mut bool) -> Result<()> {
        let shards = directory::shards(&mut self.ring)?;
        let targets = targets(&shards, half);
        let journal = journal::read(&mut self.ring, self.roll_id)?;
        let addrs: Vec<HostPort> = targets.iter().map(|t| t.addr.clone()).collect();
        let left = remaining(&addrs, &journal.steps);
        if left.done() && every_online(&shards, half) {
            return Ok(());
        }
        let mut restore_now = left.restore.clone();
        if !left.exec.is_empty() {
            match self.drain_and_run(half, &targets, &left.exec)? {
                Some(ran) => restore_now.extend(ran),
                None => return Ok(()),
            }
        }
        if crate::signals::take().is_some() {
            *interrupted = true;
        }
        if !restore_now.is_empty() {
            self.restore(half, &targets, &restore_now)?;
        }
        let shards = directory::shards(&mut self.ring)?;
        if self.state == RollState::Done && !every_online(&shards, half) {
            for s in shards.iter().flat_map(|s| s.servers.iter()) {
                if s.half == half && s.status != ServerStatus::Online {
                    self.notes.entry(s.addr.clone()).or_insert_with(|| {
                        format!("{}: not back online, so the next half waits", s.status)
                    });
                }
            }
            self.state = RollState::Failed;
        }
        Ok(())
    }

    /// Drains the servers of `half` in `exec` and runs the command on those that drained: the
    /// servers to restore now (None: the drain was refused, and the roll stops).
    fn drain_and_run(
        &mut self,
        half: Half,
        targets: &[Target],
        exec: &[HostPort],
    ) -> Result<Option<Vec<HostPort>>> {
        self.watch.check()?;
        let drained = drain(
            self.cfg,
            self.changes,
            &drain_options(
                self.opts,
                half,
                Some(exec.to_vec()),
                false,
                Some(self.fence),
            ),
            self.ui,
        )?;
        if drained.blocked {
            self.refused = drained.refused;
            self.state = RollState::Refused;
            return Ok(None);
        }
        // Shards refused while others drained (a hand-over that could not settle): the roll
        // goes on with the others, and says why these did not drain.
        if !drained.refused.is_empty() {
            self.state = RollState::Failed;
        }
        self.refused.extend(drained.refused);
        let now: HashMap<HostPort, &super::ServerReport> =
            drained.servers.iter().map(|s| (s.addr(), s)).collect();
        let offline: Vec<&Target> = targets
            .iter()
            .filter(|t| exec.contains(&t.addr))
            .filter(|t| {
                now.get(&t.addr)
                    .is_some_and(|s| s.status == ServerStatus::Offline)
            })
            .collect();
        for (addr, s) in &now {
            if exec.contains(addr) && s.status != ServerStatus::Offline {
                self.notes.insert(
                    addr.clone(),
                    format!(
                        "not drained ({}); its command did not run",
                        s.note.clone().unwrap_or_else(|| s.status.to_string())
                    ),
                );
                self.state = RollState::Failed;
            }
        }
        for t in &offline {
            self.watch.check()?;
            journal::step(
                &mut self.ring,
                self.fence,
                self.roll_id,
                t,
                Step::Drained,
                None,
            )?;
        }
        let runner = runner::Runner {
            opts: self.opts,
            ui: self.ui,
            roll_id: self.roll_id,
            watch: self.watch,
            fence: self.fence,
        };
        let results = runner.run(half, &offline, &mut self.ring)?;
        self.watch.check()?;
        let mut restore_now = Vec::new();
        for (t, r) in offline.iter().zip(results) {
            match r {
                Some(e) if e.code == 0 => restore_now.push(t.addr.clone()),
                Some(_) => self.state = RollState::Failed,
                // Drained for nothing: it serves again, and a re-run gives it the command.
                None => {
                    self.notes.insert(
                        t.addr.clone(),
                        "not started (a command failed first); restored, a re-run gives it the command".into(),
                    );
                    restore_now.push(t.addr.clone());
                    self.state = RollState::Failed;
                }
            }
        }
        Ok(Some(restore_now))
    }

    /// Restores `servers` of `half`; a server whose command succeeded is done with.
    fn restore(&mut self, half: Half, targets: &[Target], servers: &[HostPort]) -> Result<()> {
        self.watch.check()?;
        let restored = restore(
            self.cfg,
            self.changes,
            &RestoreOptions {
                fence: Some(self.fence.clone()),
                half,
                timeout: self.opts.timeout,
                max_lag: self.opts.max_lag,
                dry_run: false,
                only: Some(servers.to_vec()),
            },
            self.ui,
        )?;
        let steps_now = journal::read(&mut self.ring, self.roll_id)?.steps;
        for s in &restored.servers {
            let addr = s.addr();
            if !servers.contains(&addr) {
                continue;
            }
            if s.status == ServerStatus::Online {
                let succeeded = steps_now.get(&addr) == Some(&Step::ExecOk);
                if let (true, Some(t)) = (succeeded, targets.iter().find(|t| t.addr == addr)) {
                    self.watch.check()?;
                    journal::step(
                        &mut self.ring,
                        self.fence,
                        self.roll_id,
                        t,
                        Step::Restored,
                        None,
                    )?;
                }
            } else {
                self.notes.insert(
                    addr,
                    s.note.clone().unwrap_or_else(|| "not restored".into()),
                );
                self.state = RollState::Failed;
            }
        }
        Ok(())
    }

    /// Writes what the roll did into `report`, and its end into the journal.
    fn finish(mut self, report: &mut RollReport) -> Result<()> {
        let shards = directory::shards(&mut self.ring)?;
        let journal = journal::read(&mut self.ring, self.roll_id)?;
        report.halves = half_runs(self.opts, &shards, Some(&journal));
        for h in &mut report.halves {
            for s in &mut h.servers {
                s.note = self.notes.remove(&HostPort::new(s.host.clone(), s.port));
            }
        }
        report.refused.extend(self.refused);
        report.state = self.state;
        self.watch.check()?;
        journal::set_state(
            &mut self.ring,
            self.fence,
            self.roll_id,
            match self.state {
                RollState::Done => "done",
                RollState::Refused => "refused",
                RollState::Failed | RollState::Planned => "failed",
            },
        )
    }
}

fn every_online(shards: &[Shard], half: Half) -> bool {
    shards
        .iter()
        .flat_map(|s| s.servers.iter())
        .filter(|s| s.half == half)
        .all(|s| s.status == ServerStatus::Online)
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

//! The roll's journal in the ring (`rolls`, `roll_servers`): each server's step as it is
//! reached, every write fenced by the roll lock, so a successor owns it the moment it takes the
//! lock; and what `maintenance status` shows of a roll in progress.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde::Serialize;
use serde_json::json;

use super::{Exec, RollOptions, Step, Target};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::output::Ui;
use crate::process;
use crate::ring::audit;
use crate::ring::directory::Half;
use crate::ring::fences::{self, Fence};
use crate::types::HostPort;

/// The roll's journal rows: (host, port, step, exit code, seconds, timed out, output tail).
pub(super) type JournalRow = (
    String,
    u16,
    String,
    Option<i32>,
    Option<f64>,
    bool,
    Option<String>,
);

pub(super) struct Journal {
    pub(super) steps: HashMap<HostPort, Step>,
    pub(super) execs: HashMap<HostPort, (Exec, Vec<String>)>,
}

pub(super) fn read(ring: &mut Db, roll_id: u64) -> Result<Journal> {
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
        // Refused, never skipped: a server whose step is unknown would run its command again.
        let known = Step::parse(&step).ok_or_else(|| {
            Error::inconsistent(format!(
                "the roll journal records an unknown step `{step}` for {addr}"
            ))
        })?;
        j.steps.insert(addr.clone(), known);
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

pub(super) fn step(
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
pub(super) fn fenced<T>(
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
pub(super) fn unfinished(ring: &mut Db) -> Result<Option<(u64, String, String)>> {
    ring.exec_first(
        "looking for an unfinished roll",
        "SELECT roll_id, command, halves FROM rolls WHERE state IN ('running', 'failed', 'refused')
         ORDER BY roll_id DESC LIMIT 1",
        (),
    )
}

pub(super) fn halves_text(halves: &[Half]) -> String {
    halves
        .iter()
        .map(|h| h.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Journals where the command for `t` runs: before it starts (no group yet: a roll that lost
/// its lock is refused here, by the fence, before it runs anything) and as it starts (a later
/// roll waits for that group).
pub(super) fn started(
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
pub(super) fn unended_commands(ring: &mut Db) -> Result<Vec<(HostPort, String, i64)>> {
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
pub(super) fn wait_for_unended(ring: &mut Db, within: Duration, ui: &Ui) -> Result<()> {
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

pub(super) fn set_state(ring: &mut Db, fence: &Fence, roll_id: u64, state: &str) -> Result<()> {
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
pub(super) fn begin(
    ring: &mut Db,
    fence: &Fence,
    opts: &RollOptions,
    ui: &Ui,
) -> Result<(u64, bool)> {
    let halves = halves_text(&opts.halves);
    if let Some((id, command, was_halves)) = unfinished(ring)? {
        if command == opts.exec && was_halves == halves {
            set_state(ring, fence, id, "running")?;
            return Ok((id, true));
        }
        ui.warn(&format!(
            "maintenance roll #{id} (--exec {command:?} --halves {was_halves}) was left unfinished; \
             this roll of another command supersedes it"
        ));
        set_state(ring, fence, id, "abandoned")?;
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

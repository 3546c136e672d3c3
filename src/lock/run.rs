//! `lock run`: hold a lock while a command runs, renewing it; if the lock is lost, stop the
//! command (SIGTERM, then SIGKILL after a grace period) rather than let it run unprotected —
//! the failure `etcdctl lock` users reported.
//!
//! The command runs under the shared runner (`crate::process`: a process group of its own,
//! every signal to the whole group) and the shared keeper (`super::keeper`): a frozen ring can
//! block a renewal, but not the watch, which stops the command once the lease may have
//! expired without a renewal being confirmed.

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::lock::keeper::{keeping, Watch};
use crate::lock::{Held, LockClient, Request};
use crate::output::Ui;
use crate::process::{self, Output, Running};
use crate::ring::audit;

pub struct RunOptions {
    pub request: Request,
    pub wait: Duration,
    pub command: Vec<OsString>,
    /// How long the command has to exit after SIGTERM before SIGKILL.
    pub grace: Duration,
}

#[derive(Debug, Serialize)]
pub struct RunOutcome {
    pub name: String,
    pub token: u64,
    /// The command's exit code (128 + signal when a signal ended it).
    pub exit_code: i32,
    pub renewals: u64,
    pub backend: &'static str,
}

pub fn run_under_lock(cfg: &Config, opts: &RunOptions, ui: &Ui) -> Result<RunOutcome> {
    let program = opts
        .command
        .first()
        .ok_or_else(|| Error::Usage("lock run needs a command after `--`".into()))?;
    let mut client = LockClient::new(cfg)?;
    let granted = Instant::now();
    let held = client.acquire(&opts.request, opts.wait)?;
    // A renewal that blocks longer than the lease is worthless: the watch below has stopped the
    // command by then. Bounding it lets this process end soon after, too.
    client.bound_io(held.ttl)?;
    ui.debug(&format!("holding {} with token {}", held.name, held.token));
    crate::signals::catch_termination();
    let mut cmd = Command::new(program);
    cmd.args(&opts.command[1..])
        .env("SHARDCTL_LOCK_NAME", held.name.as_str())
        .env("SHARDCTL_LOCK_TOKEN", held.token.to_string());
    let mut child = match process::spawn(cmd, Output::Inherit) {
        Ok(c) => c,
        Err(e) => {
            client.release(&held)?;
            return Err(Error::Failed(format!(
                "cannot run {}: {e}",
                program.to_string_lossy()
            )));
        }
    };
    let pgid = child.pgid();
    let command_text: String = opts
        .command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(500)
        .collect();
    // Best effort: without it a takeover simply waits for the lease to expire.
    if let Err(e) = client.record_command_group(&held, pgid) {
        ui.warn(&format!("recording the command's process group: {e}"));
    }
    audited(
        &mut client,
        "lock.run",
        &held,
        json!({ "token": held.token, "owner": held.owner, "command": command_text, "pgid": pgid,
                "ttl_seconds": held.ttl.as_secs_f64() }),
        ui,
    );
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let (ended, watch, client) = keeping(client, &held, granted, |w| {
        watch(&mut child, w, w.proof(), interactive, opts.grace, ui)
    });
    let mut client = client?;
    let renewals = watch.renewals();
    let code = match ended {
        Ended::Exited(code) => code,
        Ended::Lost(e) => {
            audited(
                &mut client,
                "lock.run.lost",
                &held,
                json!({ "token": held.token, "error": e.to_string() }),
                ui,
            );
            return Err(e);
        }
        Ended::Failed(e) => return Err(e),
    };
    let released = client.release(&held);
    audited(
        &mut client,
        "lock.release",
        &held,
        json!({ "token": held.token, "owner": held.owner, "exit_code": code,
                "released": matches!(released, Ok(true)) }),
        ui,
    );
    match released {
        Ok(true) => Ok(RunOutcome {
            name: held.name.to_string(),
            token: held.token,
            exit_code: code,
            renewals,
            backend: cfg.locks.name(),
        }),
        Ok(false) => Err(Error::LockLost(format!(
            "lock {} was no longer held when the command ended (exit {code})",
            held.name
        ))),
        Err(e) => Err(e),
    }
}

/// Writes an audit row; a failure to audit is warned about, not fatal (the command ran).
fn audited(
    client: &mut LockClient,
    action: &str,
    held: &Held,
    details: serde_json::Value,
    ui: &Ui,
) {
    let name = held.name.as_str();
    if let Err(e) = client
        .ring()
        .run("auditing", |c| audit::record(c, action, name, details))
    {
        ui.warn(&format!("writing the audit log: {e}"));
    }
}

enum Ended {
    /// The command ended with this code while the lock was held.
    Exited(i32),
    /// The lock was lost (or may have been); the command was stopped.
    Lost(Error),
    Failed(Error),
}

/// Waits for the command, passing signals on to its group, and stops it once the lock is lost
/// or its lease may have run out without a confirmed renewal.
fn watch(
    child: &mut Running,
    w: &Watch,
    ttl: Duration,
    interactive: bool,
    grace: Duration,
    ui: &Ui,
) -> Ended {
    let stop_margin = grace.min(ttl / 4);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ended::Exited(process::exit_code(status)),
            Ok(None) => {}
            Err(e) => return Ended::Failed(Error::io("waiting for the command", e)),
        }
        // At a terminal, Ctrl-C already reached the command through the terminal's group.
        if let Some(sig) = crate::signals::take().filter(|s| !(*s == libc::SIGINT && interactive)) {
            child.signal(sig);
        }
        // The command must be gone before the lease may be: it is stopped once what is left of
        // the last confirmed lease is no more than its stopping time (a renewal every third of
        // the ttl keeps at least two thirds left), and killed when that runs out.
        let left = w.confirmed_for();
        let lost = w.check().err().or_else(|| {
            (left <= stop_margin).then(|| {
                Error::LockLost(format!(
                    "no renewal was confirmed for {:.1}s: the lease may run out",
                    ttl.saturating_sub(left).as_secs_f64()
                ))
            })
        });
        if let Some(lost) = lost {
            ui.warn(&format!("{lost}; stopping the command"));
            child.stop(grace.min(left), || false);
            return Ended::Lost(lost);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

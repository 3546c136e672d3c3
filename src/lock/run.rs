//! `lock run`: hold a lock while a command runs, renewing it; if the lock is lost, stop the
//! command (SIGTERM, then SIGKILL after a grace period) rather than let it run unprotected —
//! the failure `etcdctl lock` users reported.
//!
//! The command runs in a process group of its own and every signal goes to the whole group, so
//! a shell's children stop with it. Renewals run on a thread of their own: a frozen ring can
//! block a renewal, but not the watch, which stops the command once the lease may have expired
//! without a renewal being confirmed.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::lock::{lease, Held, LockClient, Request};
use crate::output::Ui;
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

/// Signals the command's whole process group.
fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: signalling the process group our child leads (its pid is the group id).
    unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// What the renewal thread has confirmed, shared with the watch.
struct Renewals {
    /// Until when the lease is known to hold: the start of the last confirmed renewal plus
    /// the ttl (the ring extends from its own clock, at or after that instant).
    confirmed_until: Mutex<Instant>,
    count: std::sync::atomic::AtomicU64,
    /// Why the lock was lost, once a renewal said so.
    lost: Mutex<Option<Error>>,
    stop: AtomicBool,
}

/// Renews every `interval` until told to stop or the lock is lost; returns the client.
fn renew_loop<'c>(mut client: LockClient<'c>, held: &Held, shared: &Renewals) -> LockClient<'c> {
    let interval = lease::renew_interval(held.ttl);
    let mut next = Instant::now() + interval;
    while !shared.stop.load(Ordering::SeqCst) {
        if Instant::now() >= next {
            let began = Instant::now();
            match client.renew(held) {
                Ok(()) => {
                    if let Ok(mut until) = shared.confirmed_until.lock() {
                        *until = began + held.ttl;
                    }
                    shared.count.fetch_add(1, Ordering::SeqCst);
                    next = Instant::now() + interval;
                }
                Err(lost) => {
                    if let Ok(mut l) = shared.lost.lock() {
                        *l = Some(lost);
                    }
                    return client;
                }
            }
        }
        std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
    }
    client
}

pub fn run_under_lock(cfg: &Config, opts: &RunOptions, ui: &Ui) -> Result<RunOutcome> {
    let program = opts
        .command
        .first()
        .ok_or_else(|| Error::Usage("lock run needs a command after `--`".into()))?;
    let mut client = LockClient::new(cfg)?;
    let acquired_at = Instant::now();
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
    // SAFETY: setpgid and prctl are async-signal-safe. The command leads a process group of its
    // own (so the whole group can be stopped), and the kernel SIGTERMs it if shardctl dies,
    // even by SIGKILL. A takeover from a dead holder waits out the lease for what ignores that.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            client.release(&held)?;
            return Err(Error::Failed(format!(
                "cannot run {}: {e}",
                program.to_string_lossy()
            )));
        }
    };
    let pgid = child.id();
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
    let shared = Renewals {
        confirmed_until: Mutex::new(acquired_at + held.ttl),
        count: Default::default(),
        lost: Mutex::new(None),
        stop: AtomicBool::new(false),
    };
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let (ended, client) = std::thread::scope(|s| {
        let renewer = s.spawn(|| renew_loop(client, &held, &shared));
        let ended = watch(&mut child, pgid, &shared, interactive, opts.grace, ui);
        shared.stop.store(true, Ordering::SeqCst);
        renewer.thread().unpark();
        (ended, renewer.join())
    });
    let mut client = client.map_err(|_| Error::Failed("the lock renewer panicked".into()))?;
    let renewals = shared.count.load(Ordering::SeqCst);
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
    child: &mut Child,
    pgid: u32,
    shared: &Renewals,
    interactive: bool,
    grace: Duration,
    ui: &Ui,
) -> Ended {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ended::Exited(exit_code(status)),
            Ok(None) => {}
            Err(e) => return Ended::Failed(Error::io("waiting for the command", e)),
        }
        // At a terminal, Ctrl-C already reached the command through the terminal's group.
        if let Some(sig) = crate::signals::take().filter(|s| !(*s == libc::SIGINT && interactive)) {
            signal_group(pgid, sig);
        }
        let lost = shared.lost.lock().ok().and_then(|mut l| l.take());
        let expired = shared
            .confirmed_until
            .lock()
            .is_ok_and(|until| Instant::now() >= *until);
        let lost = lost.or_else(|| {
            expired.then(|| {
                Error::LockLost(
                    "the lock was lost or its lease may have expired: no renewal was confirmed within its ttl".into(),
                )
            })
        });
        if let Some(lost) = lost {
            ui.warn(&format!("{lost}; stopping the command"));
            // The command must be gone before the lease may be: its grace ends at the last
            // confirmed expiry at the latest (a little time to exit cleanly is kept).
            let until_expiry = shared
                .confirmed_until
                .lock()
                .map(|until| until.saturating_duration_since(Instant::now()))
                .unwrap_or_default();
            let grace = grace.min(until_expiry).max(Duration::from_millis(200));
            return match terminate(child, pgid, grace) {
                Ok(()) => Ended::Lost(lost),
                Err(e) => Ended::Failed(e),
            };
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// SIGTERM to the group, then SIGKILL once `grace` has passed; waits for the child to go.
fn terminate(child: &mut Child, pgid: u32, grace: Duration) -> Result<()> {
    signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        if child
            .try_wait()
            .map_err(|e| Error::io("waiting for the command", e))?
            .is_some()
        {
            // The leader is gone; what it left behind in the group goes too.
            signal_group(pgid, libc::SIGKILL);
            return Ok(());
        }
        if Instant::now() >= deadline {
            signal_group(pgid, libc::SIGKILL);
            let _ = child.wait();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

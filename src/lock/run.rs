//! `lock run`: hold a lock while a command runs, renewing it; if the lock is lost, stop the
//! command (SIGTERM, then SIGKILL after a grace period) rather than let it run unprotected —
//! the failure `etcdctl lock` users reported.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::lock::{lease, LockClient, Request};
use crate::output::Ui;

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
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

pub fn run_under_lock(cfg: &Config, opts: &RunOptions, ui: &Ui) -> Result<RunOutcome> {
    let program = opts
        .command
        .first()
        .ok_or_else(|| Error::Usage("lock run needs a command after `--`".into()))?;
    let mut client = LockClient::new(cfg)?;
    let held = client.acquire(&opts.request, opts.wait)?;
    ui.debug(&format!("holding {} with token {}", held.name, held.token));
    crate::signals::catch_termination();
    let mut cmd = Command::new(program);
    cmd.args(&opts.command[1..])
        .env("SHARDCTL_LOCK_NAME", held.name.as_str())
        .env("SHARDCTL_LOCK_TOKEN", held.token.to_string());
    // SAFETY: prctl is async-signal-safe; it asks the kernel to SIGTERM the command if
    // shardctl dies (even by SIGKILL), so it never runs on without its lock holder.
    unsafe {
        cmd.pre_exec(|| {
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
    let interval = lease::renew_interval(held.ttl);
    let mut next_renewal = Instant::now() + interval;
    let mut renewals = 0;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::io("waiting for the command", e))?
        {
            let released = client.release(&held);
            let code = exit_code(status);
            return match released {
                Ok(true) => Ok(RunOutcome {
                    name: held.name.to_string(),
                    token: held.token,
                    exit_code: code,
                    renewals,
                }),
                Ok(false) => Err(Error::LockLost(format!(
                    "lock {} was no longer held when the command ended (exit {code})",
                    held.name
                ))),
                Err(e) => Err(e),
            };
        }
        // At a terminal, Ctrl-C already reached the command through the process group.
        if let Some(sig) = crate::signals::take().filter(|s| !(*s == libc::SIGINT && interactive)) {
            signal(child.id(), sig);
        }
        if Instant::now() >= next_renewal {
            match client.renew(&held) {
                Ok(()) => {
                    renewals += 1;
                    next_renewal = Instant::now() + interval;
                }
                Err(lost) => {
                    ui.warn(&format!("{lost}; stopping the command"));
                    terminate(&mut child, opts.grace)?;
                    return Err(lost);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// SIGTERM, then SIGKILL once `grace` has passed; waits for the child to go.
fn terminate(child: &mut std::process::Child, grace: Duration) -> Result<()> {
    signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        if child
            .try_wait()
            .map_err(|e| Error::io("waiting for the command", e))?
            .is_some()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

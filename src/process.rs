//! The one child-process runner, shared by `lock run` and `maintenance roll`: the command leads
//! a process group of its own (so every signal reaches whatever it started), the kernel sends
//! it SIGTERM if shardctl dies, stopping it is SIGTERM to the group and SIGKILL after a grace,
//! and its exit ends the wait at once: output is read on threads that are never waited for
//! past a short grace, because a daemon the command started may hold the pipe for ever.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::output::Ui;

/// How long readers may go on after the command exited before they are left behind.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Where the command's output goes.
pub enum Output {
    /// Straight to shardctl's own stdout and stderr (`lock run`).
    Inherit,
    /// Read line by line, passed through with `prefix`, the last `keep` lines kept (`roll`).
    Lines { prefix: String, ui: Ui, keep: usize },
}

/// A running command.
pub struct Running {
    child: Child,
    pgid: u32,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// One message per reader when it reaches the end of its stream.
    readers: Option<(mpsc::Receiver<()>, usize)>,
}

/// Starts `cmd` in a process group of its own, told to stop (SIGTERM) if shardctl dies.
pub fn spawn(mut cmd: Command, output: Output) -> std::io::Result<Running> {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe. PDEATHSIG fires when the thread that forked exits:
    // callers spawn from the thread that waits for the command.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let lines = match output {
        Output::Inherit => None,
        Output::Lines { prefix, ui, keep } => {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            Some((prefix, ui, keep))
        }
    };
    let mut child = cmd.spawn()?;
    let pgid = child.id();
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut readers = None;
    if let Some((prefix, ui, keep)) = lines {
        let (tx, rx) = mpsc::channel();
        let streams: Vec<Box<dyn Read + Send>> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        readers = Some((rx, streams.len()));
        for stream in streams {
            let (tail, prefix, ui, tx) = (tail.clone(), prefix.clone(), ui.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                    ui.passthrough(&format!("{prefix} {line}"));
                    if let Ok(mut t) = tail.lock() {
                        if t.len() == keep {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
                let _ = tx.send(());
            });
        }
    }
    Ok(Running {
        child,
        pgid,
        tail,
        readers,
    })
}

impl Running {
    /// The process group (the command's pid).
    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Signals the command's whole process group.
    pub fn signal(&self, sig: libc::c_int) {
        signal_group(self.pgid, sig);
    }

    /// SIGTERM to the group, SIGKILL once `grace` has passed (or at once when `hurry` says so,
    /// a second Ctrl-C); waits for the command to go. The group's stragglers go with it.
    pub fn stop(&mut self, grace: Duration, hurry: impl Fn() -> bool) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.signal(libc::SIGKILL);
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline && !hurry() => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                _ => {
                    self.signal(libc::SIGKILL);
                    return self.child.wait().ok();
                }
            }
        }
    }

    /// After the command exited: the last lines of its output, and a note when something it
    /// started still holds its output past `OUTPUT_GRACE` (left running, not waited for).
    pub fn finish(mut self) -> (Vec<String>, Option<String>) {
        let mut left = None;
        if let Some((rx, n)) = self.readers.take() {
            let deadline = Instant::now() + OUTPUT_GRACE;
            let mut ended = 0;
            while ended < n {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(()) => ended += 1,
                    Err(_) => break,
                }
            }
            if ended < n {
                left = Some(format!(
                    "the command exited, but a process it started (process group {}) still holds \
                     its output; not waited for (redirect a daemon's output, e.g. `cmd >log 2>&1 &`)",
                    self.pgid
                ));
            }
        }
        let tail = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        (tail, left)
    }
}

/// Signals process group `pgid`.
pub fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: signalling a process group one of our commands leads (its pid is the group id).
    unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
}

/// The exit code a shell would report: 128 + the signal when a signal ended it.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Whether any process of group `pgid` still runs on this machine. Zombies do not count: a
/// dead command's leader may wait unreaped (its parent, the dead holder, is gone) where the
/// init process does not reap. Where /proc cannot be read, the group is taken to be alive.
pub fn group_alive(pgid: i64) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // After the command name in parentheses: state, ppid, pgrp, ...
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.get(2).and_then(|g| g.parse::<i64>().ok()) == Some(pgid)
            && fields.first().is_some_and(|s| *s != "Z" && *s != "X")
    })
}

//! Running the operator's command for each drained server, a few at a time, under the shared
//! child-process runner (`crate::process`, as `lock run`), journaling each start and end.

use std::collections::VecDeque;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{journal, Exec, RollOptions, Step, Target};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::lock::keeper::Watch;
use crate::output::Ui;
use crate::process::{self, Output};
use crate::ring::directory::Half;
use crate::ring::fences::Fence;

/// Lines of a command's output kept for the report.
pub(super) const TAIL_LINES: usize = 20;

/// What the command runs with: the roll's options, its journal's id and its lock.
pub(super) struct Runner<'a> {
    pub(super) opts: &'a RollOptions,
    pub(super) ui: &'a Ui,
    pub(super) roll_id: u64,
    pub(super) watch: &'a Watch,
    pub(super) fence: &'a Fence,
}

impl Runner<'_> {
    /// Runs the command for each of `servers`, at most `--parallel` at once. After the first
    /// failure no new one starts; running ones finish. Each start and result is journaled as it
    /// comes, only while the roll still holds its lock. Results in the order of `servers`; None for
    /// a command not started.
    pub(super) fn run(
        &self,
        half: Half,
        servers: &[&Target],
        ring: &mut Db,
    ) -> Result<Vec<Option<Exec>>> {
        let Runner {
            opts,
            ui,
            roll_id,
            watch,
            fence,
        } = *self;
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
                    let started = |pgid: Option<u32>| {
                        journal(&|db| journal::started(db, fence, roll_id, t, pgid))
                    };
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
                    journal(&|db| journal::step(db, fence, roll_id, t, step, Some((&exec, kept))));
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
}

/// How long a command has after SIGTERM (a timeout, a signal to the roll) before SIGKILL.
pub(super) const EXEC_GRACE: Duration = Duration::from_secs(5);

/// Runs the command for one server: `sh -c CMD` with the server in its environment, under the
/// shared runner, its output passed through line by line with a prefix naming the server.
/// `started` journals the start, before (None) and after (the process group) the spawn; if it
/// cannot (the roll lost its lock) the command is not started, or is stopped at once. The command's exit — or its timeout, or a signal to the roll
/// (SIGTERM to its group; a second signal, or the grace, SIGKILL) — ends it, whatever still
/// holds its output. (result, last lines)
pub(super) fn run_one(
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
    // Counted from before the spawn: a signal that arrives while the start is journaled (a
    // ring round trip, slow on a loaded ring) still stops the command.
    let signals_before = crate::signals::count();
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

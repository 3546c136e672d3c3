//! The live screen: a refresher thread takes a snapshot every interval (the ring read there,
//! the servers' probes on their own threads), the main thread draws and answers keys. The
//! terminal is restored however it ends: `q`, Ctrl-C, SIGTERM, an error, or a panic (ratatui's
//! hook restores it before the panic message prints).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;

use super::render::{draw, View};
use super::{Snapshot, Sources};
use crate::config::Config;
use crate::error::{Error, Result};

pub struct TopOptions {
    pub interval: Duration,
}

/// Runs the live view until the operator quits.
pub fn run(cfg: &Config, opts: &TopOptions) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "top needs a terminal; use `shardctl top --once` (with --format json for scripts)"
                .into(),
        ));
    }
    crate::signals::catch_termination();
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, cfg, opts);
    ratatui::restore();
    result
}

fn event_loop(terminal: &mut DefaultTerminal, cfg: &Config, opts: &TopOptions) -> Result<()> {
    let paused = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Snapshot>();
    let refresher = {
        let (cfg, paused, stop, interval) =
            (cfg.clone(), paused.clone(), stop.clone(), opts.interval);
        std::thread::spawn(move || refresh_loop(&cfg, interval, &paused, &stop, &tx))
    };
    let mut shown = Shown::default();
    let mut view = View::default();
    let outcome = loop {
        while let Ok(next) = rx.try_recv() {
            shown.merge(next);
        }
        shown.describe(&mut view);
        let snap = &shown.snap;
        if let Err(e) = terminal.draw(|f| draw(f, snap, &view)) {
            break Err(Error::io("drawing the screen", e));
        }
        if crate::signals::received() {
            break Ok(());
        }
        // Wait for the keyboard ourselves: on a hung-up terminal (its window closed) crossterm's
        // own wait spins on end-of-file and never returns.
        if hung_up_while_waiting(Duration::from_millis(50)) {
            break Ok(());
        }
        // Every event crossterm has, new or read ahead with an earlier one (so a key that came
        // in the same read as another is never left waiting for more input).
        match next_keys(&mut view, &paused) {
            Ok(false) => {}
            Ok(true) => break Ok(()),
            Err(e) => break Err(Error::io("reading the keyboard", e)),
        }
    };
    stop.store(true, Ordering::SeqCst);
    // The refresher may be inside a ring query: it ends on its own, bounded by the timeouts.
    drop(refresher);
    outcome
}

/// What is on screen: the newest of each source's panels, and when each was read. A source that
/// failed keeps its last panels, marked stale with their age and the reason.
#[derive(Default)]
struct Shown {
    snap: Snapshot,
    ring_at: Option<Instant>,
    locks_at: Option<Instant>,
    errors: std::collections::BTreeMap<String, String>,
}

impl Shown {
    fn merge(&mut self, next: Snapshot) {
        // The servers' probes run apart from the ring: they keep coming while it does not answer.
        if !next.servers.is_empty() {
            self.snap.servers = next.servers;
        }
        if let Some(at) = next.ring_read_at {
            self.snap.shards = next.shards;
            self.snap.migrations = next.migrations;
            self.snap.audit = next.audit;
            self.snap.refresh_ms = next.refresh_ms;
            self.ring_at = Some(at);
        }
        if let Some(at) = next.locks_read_at {
            self.snap.locks = next.locks;
            self.locks_at = Some(at);
        }
        self.errors = next.errors;
    }

    /// The title's ages and each stale panel's reason, as of now.
    fn describe(&self, view: &mut View) {
        let age = |at: Option<Instant>| match at {
            None => "not read yet".to_string(),
            Some(at) => format!("{:.0}s ago", at.elapsed().as_secs_f64()),
        };
        view.taken_at = format!(
            "ring read {} ({:.0} ms) · locks read {}",
            age(self.ring_at),
            self.snap.refresh_ms,
            age(self.locks_at)
        );
        view.stale = Default::default();
        for (source, why) in &self.errors {
            let (panels, at): (&[usize], _) = if source == super::LOCKS {
                (&[3], self.locks_at)
            } else {
                // The servers panel keeps its probes; its statuses are the ring's.
                (&[0, 1, 2, 4], self.ring_at)
            };
            for &p in panels {
                view.stale[p] = Some(format!("{source} read {}: {why}", age(at)));
            }
        }
        view.error = (!self.errors.is_empty()).then(|| {
            self.errors
                .iter()
                .map(|(s, e)| format!("{s}: {e}"))
                .collect::<Vec<_>>()
                .join(" · ")
        });
    }
}

/// Handles every event available now; true when the operator asked to quit.
fn next_keys(view: &mut View, paused: &AtomicBool) -> std::io::Result<bool> {
    while event::poll(Duration::ZERO)? {
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Ok(true),
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(true),
            KeyCode::Tab => view.next_panel(),
            KeyCode::Down | KeyCode::Char('j') => view.scroll_down(),
            KeyCode::Up | KeyCode::Char('k') => view.scroll_up(),
            KeyCode::Char('p') => {
                view.paused = !view.paused;
                paused.store(view.paused, Ordering::SeqCst);
            }
            _ => {}
        }
    }
    Ok(false)
}

/// Waits up to `timeout` for the keyboard; true when the terminal hung up (its window closed,
/// the tmux or ssh session ended): no key will ever come, and reads see end-of-file.
fn hung_up_while_waiting(timeout: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one descriptor we own.
    let n = unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as libc::c_int) };
    n > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// Every `interval` (unless paused), the latest of each source, sent as one snapshot: the ring,
/// the locks and the servers are each read on threads of their own, so none waits for another.
fn refresh_loop(
    cfg: &Config,
    interval: Duration,
    paused: &AtomicBool,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Snapshot>,
) {
    let sources = Sources::start(cfg, interval);
    while !stop.load(Ordering::SeqCst) {
        let began = Instant::now();
        if !paused.load(Ordering::SeqCst) && tx.send(sources.snapshot(cfg)).is_err() {
            return;
        }
        while began.elapsed() < interval && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

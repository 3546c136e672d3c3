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
use super::{snapshot, Probers, Snapshot};
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::ring;

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
    let (tx, rx) = mpsc::channel::<std::result::Result<Snapshot, String>>();
    let refresher = {
        let (cfg, paused, stop, interval) =
            (cfg.clone(), paused.clone(), stop.clone(), opts.interval);
        std::thread::spawn(move || refresh_loop(&cfg, interval, &paused, &stop, &tx))
    };
    let mut snap = Snapshot::default();
    let mut view = View {
        taken_at: "waiting for the first refresh".into(),
        ..View::default()
    };
    let outcome = loop {
        while let Ok(next) = rx.try_recv() {
            match next {
                Ok(s) => {
                    snap = s;
                    view.error = None;
                    view.taken_at = format!("refreshed in {:.0} ms", snap.refresh_ms);
                }
                Err(e) => view.error = Some(e),
            }
        }
        if let Err(e) = terminal.draw(|f| draw(f, &snap, &view)) {
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

/// Takes a snapshot every `interval` (unless paused) and sends it, or why it failed; a lost
/// ring connection is opened again at the next refresh.
fn refresh_loop(
    cfg: &Config,
    interval: Duration,
    paused: &AtomicBool,
    stop: &AtomicBool,
    tx: &mpsc::Sender<std::result::Result<Snapshot, String>>,
) {
    let probers = Probers::new(interval);
    let mut ring: Option<Db> = None;
    while !stop.load(Ordering::SeqCst) {
        let began = Instant::now();
        if !paused.load(Ordering::SeqCst) {
            let result = match ring.take().filter(|db| !db.is_lost()) {
                Some(db) => Ok(db),
                None => ring::open(cfg),
            }
            .and_then(|mut db| {
                let snap = snapshot(cfg, &mut db, &probers);
                ring = Some(db);
                snap
            })
            .map_err(|e| e.to_string());
            if tx.send(result).is_err() {
                return;
            }
        }
        while began.elapsed() < interval && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

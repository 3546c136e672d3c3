//! Termination signals noted rather than obeyed at once, so long work can stop at a safe point
//! (a chunk boundary) and leave things resumable.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

static PENDING: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicU32 = AtomicU32::new(0);

extern "C" fn note(sig: libc::c_int) {
    PENDING.store(sig, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// How many termination signals have arrived in all (a second Ctrl-C means "now").
pub fn count() -> u32 {
    COUNT.load(Ordering::SeqCst)
}

/// From now on SIGINT, SIGTERM and SIGHUP only set a flag. Handlers (unlike ignored signals)
/// are reset to the default in child processes at exec.
pub fn catch_termination() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, note as *const () as libc::sighandler_t) };
    }
}

/// The signal received since the last call, if any; clears it.
pub fn take() -> Option<i32> {
    match PENDING.swap(0, Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Whether a termination signal has arrived (without clearing it).
pub fn received() -> bool {
    PENDING.load(Ordering::SeqCst) != 0
}

/// Once a termination signal has arrived, gives the work `grace` to stop at its next safe point;
/// if it is still running then (blocked on a server that does not answer), `give_up` runs on
/// a watchdog thread. A migration is safe to abandon anywhere (its journal says what `resume`
/// must finish or undo), so a frozen server never keeps it past the operator's Ctrl-C.
pub fn watchdog(grace: std::time::Duration, give_up: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        while !received() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(grace);
        give_up();
    });
}

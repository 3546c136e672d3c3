//! Named crash points for the crash-safety tests. Compiled only with the `failpoints` feature:
//! in a normal build `failpoint!` expands to nothing, so it cannot fire by accident.
//!
//! With the feature, `SHARDCTL_FAILPOINT=NAME` makes the process SIGKILL itself when it reaches
//! NAME — no unwinding, no cleanup, exactly like a crash.

#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::hit($name);
    };
}

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if std::env::var("SHARDCTL_FAILPOINT").is_ok_and(|v| v == name) {
        // SAFETY: signalling ourselves; SIGKILL cannot be caught, as a crash would not be.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

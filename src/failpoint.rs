//! Named crash points for the crash-safety tests. Compiled only with the `failpoints` feature:
//! in a normal build `failpoint!` expands to nothing, so it cannot fire by accident.
//!
//! With the feature, `SHARDCTL_FAILPOINT=NAME` makes the process SIGKILL itself when it reaches
//! NAME — no unwinding, no cleanup, exactly like a crash; `SHARDCTL_FAILPOINT_STOP=NAME` makes it
//! SIGSTOP itself there (a pause, as by a debugger or a stalled VM), to be resumed by SIGCONT.

#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::hit($name);
    };
}

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    let is = |var: &str| std::env::var(var).is_ok_and(|v| v == name);
    if is("SHARDCTL_FAILPOINT") {
        // SAFETY: signalling ourselves; SIGKILL cannot be caught, as a crash would not be.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    if is("SHARDCTL_FAILPOINT_STOP") {
        // SAFETY: as above; the whole process stops until SIGCONT.
        unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
    }
}

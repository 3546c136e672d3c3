//! The lease rules, as pure functions: when a lock that is already recorded may be taken over.
//!
//! A lease is the lock's record in the ring. A holder that keeps a session also holds
//! `GET_LOCK(name)` on one server; the server drops that lock the moment the holder's session
//! ends, so a dead holder is visible at once and need not be waited out. A holder whose session
//! is alive but whose lease has expired (paused, partitioned) has lost the lock: its session is
//! killed so it cannot go on believing otherwise, and so the GET_LOCK comes free.

use std::time::Duration;

/// What the recorded lease says, and what we observed of its holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    pub expired: bool,
    /// The lease names a session holding GET_LOCK.
    pub has_session: bool,
    /// That session still holds the GET_LOCK.
    pub session_alive: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Held by someone else.
    InUse,
    /// May be taken over; `kill_session` when the stale holder's session is still alive.
    TakeOver {
        reason: &'static str,
        kill_session: bool,
    },
}

pub fn judge(o: Observed) -> Verdict {
    match (o.has_session, o.session_alive, o.expired) {
        (true, false, _) => Verdict::TakeOver {
            reason: "the holder's session is gone",
            kill_session: false,
        },
        (_, _, false) => Verdict::InUse,
        (has_session, alive, true) => Verdict::TakeOver {
            reason: "the lease expired",
            kill_session: has_session && alive,
        },
    }
}

/// How often a holder renews: three times per ttl, so two renewals can fail before it expires.
pub fn renew_interval(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(100))
}

/// Shortest and longest lease a caller may ask for.
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub fn check_ttl(ttl: Duration) -> Result<Duration, String> {
    if ttl < MIN_TTL || ttl > MAX_TTL {
        Err(format!(
            "ttl must be between {}s and {}s",
            MIN_TTL.as_secs(),
            MAX_TTL.as_secs()
        ))
    } else {
        Ok(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(expired: bool, has_session: bool, session_alive: bool) -> Verdict {
        judge(Observed {
            expired,
            has_session,
            session_alive,
        })
    }

    #[test]
    fn a_live_lease_is_in_use() {
        assert_eq!(o(false, false, false), Verdict::InUse);
        assert_eq!(o(false, true, true), Verdict::InUse);
    }

    #[test]
    fn a_dead_session_frees_the_lock_before_expiry() {
        assert!(matches!(
            o(false, true, false),
            Verdict::TakeOver {
                kill_session: false,
                ..
            }
        ));
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_a_paused_holder_killed() {
        assert!(matches!(
            o(true, false, false),
            Verdict::TakeOver {
                kill_session: false,
                ..
            }
        ));
        assert!(matches!(
            o(true, true, true),
            Verdict::TakeOver {
                kill_session: true,
                ..
            }
        ));
    }

    #[test]
    fn renewal_and_ttl_bounds() {
        assert_eq!(
            renew_interval(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert!(check_ttl(Duration::from_millis(500)).is_err());
        assert!(check_ttl(Duration::from_secs(10)).is_ok());
    }
}

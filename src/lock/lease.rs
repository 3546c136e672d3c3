//! The lease rules, as pure functions: when a lock that is already recorded may be taken over.
//!
//! A lease is the lock's record in the ring. A holder that keeps a session also holds
//! `GET_LOCK(name)` on one server; the server drops that lock the moment the holder's session
//! ends, so a dead holder is visible at once and need not be waited out — unless it ran a
//! command that may outlive it (`lock run`), or its server does not answer (unreachable is
//! not dead): then the lease is waited out. A holder whose session
//! is alive but whose lease has expired (paused, partitioned) has lost the lock: its session is
//! killed so it cannot go on believing otherwise, and so the GET_LOCK comes free.

use std::time::Duration;

/// What the recorded lease says, and what we observed of its holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    pub expired: bool,
    /// The lease names a session holding GET_LOCK.
    pub has_session: bool,
    /// Whether that session still holds the GET_LOCK: None when its server did not answer.
    /// An unreachable server is not a dead holder: the holder may be alive and working.
    pub session_alive: Option<bool>,
    /// The holder runs a command under the lock (`lock run`): the command may outlive it.
    pub runs_command: bool,
    /// That command's process group is known to be gone (checked on the holder's own host).
    pub command_gone: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Held by someone else; with why, where that is not plain.
    InUse(Option<&'static str>),
    /// May be taken over; `kill_session` when the stale holder's session is still alive.
    TakeOver {
        reason: &'static str,
        kill_session: bool,
    },
}

pub fn judge(o: Observed) -> Verdict {
    let session_gone = o.has_session && o.session_alive == Some(false);
    if !o.expired {
        if session_gone && o.runs_command && !o.command_gone {
            // Its holder died, but the command it ran may not have: only the lease's expiry
            // says the command had its time.
            return Verdict::InUse(Some(
                "its holder died, but the command it ran may still be running; the lease must expire first",
            ));
        }
        if session_gone {
            return Verdict::TakeOver {
                reason: "the holder's session is gone",
                kill_session: false,
            };
        }
        if o.has_session && o.session_alive.is_none() {
            return Verdict::InUse(Some(
                "the holder's server does not answer, so the holder may still be working; the lease must expire first",
            ));
        }
        return Verdict::InUse(None);
    }
    Verdict::TakeOver {
        reason: "the lease expired",
        kill_session: o.has_session && o.session_alive == Some(true),
    }
}

/// How often a holder renews: three times per ttl, so two renewals can fail before it expires.
pub fn renew_interval(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(100))
}

/// Shortest and longest lease a caller may ask for.
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A lease's length, within the range every lock backend accepts: checked where it is parsed,
/// so no ttl of 0s (every lease expiring as it is written) gets past the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttl(Duration);

impl Ttl {
    pub fn new(d: Duration) -> Result<Ttl, String> {
        check_ttl(d).map(Ttl)
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

impl std::str::FromStr for Ttl {
    type Err = String;
    fn from_str(s: &str) -> Result<Ttl, String> {
        Ttl::new(crate::types::parse_duration(s)?)
    }
}

fn check_ttl(ttl: Duration) -> Result<Duration, String> {
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

    fn o(expired: bool, has_session: bool, session_alive: Option<bool>) -> Verdict {
        judge(Observed {
            expired,
            has_session,
            session_alive,
            runs_command: false,
            command_gone: false,
        })
    }

    #[test]
    fn a_live_lease_is_in_use() {
        assert_eq!(o(false, false, None), Verdict::InUse(None));
        assert_eq!(o(false, true, Some(true)), Verdict::InUse(None));
    }

    #[test]
    fn a_dead_session_frees_the_lock_before_expiry() {
        assert!(matches!(
            o(false, true, Some(false)),
            Verdict::TakeOver {
                kill_session: false,
                ..
            }
        ));
    }

    #[test]
    fn an_unreachable_holder_is_waited_out() {
        assert!(matches!(o(false, true, None), Verdict::InUse(Some(_))));
        assert!(matches!(
            o(true, true, None),
            Verdict::TakeOver {
                kill_session: false,
                ..
            }
        ));
    }

    #[test]
    fn a_dead_lock_run_holder_is_waited_out_unless_its_command_is_gone() {
        let run = |expired, command_gone| {
            judge(Observed {
                expired,
                has_session: true,
                session_alive: Some(false),
                runs_command: true,
                command_gone,
            })
        };
        assert!(matches!(run(false, false), Verdict::InUse(Some(_))));
        assert!(matches!(run(false, true), Verdict::TakeOver { .. }));
        assert!(matches!(run(true, false), Verdict::TakeOver { .. }));
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_a_paused_holder_killed() {
        assert!(matches!(
            o(true, false, None),
            Verdict::TakeOver {
                kill_session: false,
                ..
            }
        ));
        assert!(matches!(
            o(true, true, Some(true)),
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
        assert!(check_ttl(Duration::ZERO).is_err());
        assert!(check_ttl(Duration::from_secs(10)).is_ok());
    }
}

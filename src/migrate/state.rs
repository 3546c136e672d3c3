//! The migration state machine, pure. The directory flip is the commit point: before it the
//! user's data is whole on the source and a resume rolls back; from it on the data is whole on
//! the destination and a resume finishes the clean-up.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Journaled, lock held; nothing changed yet.
    Started,
    /// The user is marked `moving` (read-only for applications). Offline this comes before the
    /// copy; online after it, for the last pass over the binary log.
    Moving,
    /// Rows are being copied (online: and the binary log followed, the user writable); the
    /// destination may hold part of them.
    Copying,
    /// Counts and checksums matched on both sides.
    Verified,
    /// The directory points at the destination: the commit point.
    Flipped,
    /// The source's rows are being deleted.
    Cleaning,
    /// Finished; the source holds nothing of the user.
    Done,
    /// Failed before the flip; the user is active on the source again, but the destination
    /// may still hold a partial copy that a resume clears.
    Aborted,
    /// Undone: the user is active on the source, the destination holds nothing of it.
    RolledBack,
}

const ALL: [State; 9] = [
    State::Started,
    State::Moving,
    State::Copying,
    State::Verified,
    State::Flipped,
    State::Cleaning,
    State::Done,
    State::Aborted,
    State::RolledBack,
];

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Started => "started",
            State::Moving => "moving",
            State::Copying => "copying",
            State::Verified => "verified",
            State::Flipped => "flipped",
            State::Cleaning => "cleaning",
            State::Done => "done",
            State::Aborted => "aborted",
            State::RolledBack => "rolled_back",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::RolledBack)
    }

    /// Past the commit point: the destination is where the user lives.
    pub fn is_flipped(self) -> bool {
        matches!(self, State::Flipped | State::Cleaning | State::Done)
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<State, String> {
        ALL.iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown migration state `{s}`"))
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `migrate resume` does with a journal entry in `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Before the flip: clear the destination, make the user active on the source.
    RollBack,
    /// After the flip: delete what is left on the source.
    Finish,
    Nothing,
}

pub fn resume_action(state: State) -> Resume {
    match state {
        State::Started | State::Moving | State::Copying | State::Verified | State::Aborted => {
            Resume::RollBack
        }
        State::Flipped | State::Cleaning => Resume::Finish,
        State::Done | State::RolledBack => Resume::Nothing,
    }
}

/// Whether a migration interrupted in `state` may have written rows to the destination (and
/// so a roll-back must clear them). Before the copy began, rows there are not ours; an online
/// move is `moving` only after its copy.
pub fn may_have_copied(state: State, online: bool) -> bool {
    matches!(state, State::Copying | State::Verified | State::Aborted)
        || (online && state == State::Moving)
}

/// Every failpoint a migration passes, in order; the crash tests kill the process at each.
pub const FAILPOINTS: &[&str] = &[
    "migrate.after_lock",
    "migrate.after_moving",
    "migrate.copy_mid",
    "migrate.after_copy",
    "migrate.after_verify",
    "migrate.after_flip",
    "migrate.cleanup_mid",
    "migrate.after_cleanup",
];

/// The failpoints only an online move passes, in order: after the first pass over the binary
/// log was applied and journaled, between a pass's apply and its journal entry, and in the
/// read-only window (the user `moving`, the last pass applied, not yet verified).
pub const ONLINE_FAILPOINTS: &[&str] = &[
    "migrate.catchup_mid",
    "migrate.apply_before_journal",
    "migrate.read_only_window",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flip_divides_roll_back_from_finish() {
        for s in ALL {
            let action = resume_action(s);
            match s {
                _ if s.is_final() => assert_eq!(action, Resume::Nothing),
                _ if s.is_flipped() => assert_eq!(action, Resume::Finish),
                _ => assert_eq!(action, Resume::RollBack),
            }
            assert_eq!(s.as_str().parse::<State>().unwrap(), s);
        }
    }

    #[test]
    fn only_a_copy_that_began_clears_the_destination() {
        let clears: Vec<State> = ALL
            .into_iter()
            .filter(|s| may_have_copied(*s, false))
            .collect();
        assert_eq!(clears, [State::Copying, State::Verified, State::Aborted]);
        let online: Vec<State> = ALL
            .into_iter()
            .filter(|s| may_have_copied(*s, true))
            .collect();
        assert_eq!(
            online,
            [
                State::Moving,
                State::Copying,
                State::Verified,
                State::Aborted
            ]
        );
    }
}

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

/// A step of a move. Every move, of one account or of a batch, streamed or online, and every
/// `migrate resume`, is the engine's one loop taking these in the order `next` gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Raise every account's fence to its token on both servers; open the destination's guard.
    Fence,
    /// Mark the accounts `moving` (guarded on the source): read-only for applications.
    Mark,
    /// Wait until the source has applied what its peers wrote, so a copy read from it misses
    /// none of the accounts' last writes.
    CatchUp,
    /// Rows of the accounts already on the destination: refused, or deleted when asked to.
    Clear,
    /// Copy every per-user table.
    Copy,
    /// Online: follow the source's binary log while the accounts stay writable, until little is
    /// left, and verify the copy against a snapshot of the source.
    Follow,
    /// Online, in the read-only window: the rest of the log, up to where the source stands.
    LastPass,
    /// Counts and checksums computed by both servers, compared.
    Verify,
    /// Point the directory at the destination: the commit point.
    Flip,
    /// Delete the source's rows (kept guarded meanwhile).
    Clean,
    /// Before the flip: clear what the copy left on the destination, give the accounts back.
    Abort,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Fence => "fence",
            Step::Mark => "mark",
            Step::CatchUp => "catch_up",
            Step::Clear => "clear",
            Step::Copy => "copy",
            Step::Follow => "follow",
            Step::LastPass => "last_pass",
            Step::Verify => "verify",
            Step::Flip => "flip",
            Step::Clean => "clean",
            Step::Abort => "abort",
        }
    }

    /// What the progress line says while the step runs.
    pub fn doing(self) -> &'static str {
        match self {
            Step::Fence => "fencing",
            Step::Mark => "marking moving",
            Step::CatchUp => "waiting for the source's peers",
            Step::Clear => "checking the destination",
            Step::Copy => "copying",
            Step::Follow => "following the binary log",
            Step::LastPass => "read-only: the last pass",
            Step::Verify => "verifying",
            Step::Flip => "flipping",
            Step::Clean => "cleaning up",
            Step::Abort => "giving back",
        }
    }

    /// The journal state written as the step begins (a crash inside it must be read as it).
    pub fn journals_first(self) -> Option<State> {
        match self {
            Step::Copy => Some(State::Copying),
            Step::Clean => Some(State::Cleaning),
            _ => None,
        }
    }

    /// The journal state the step ends in (for `Mark` and `Flip`, in the directory's own
    /// transaction; `Abort` ends in `rolled_back`, or `aborted` if the destination could not be
    /// cleared).
    pub fn journals_last(self) -> Option<State> {
        match self {
            Step::Mark => Some(State::Moving),
            Step::Verify => Some(State::Verified),
            Step::Flip => Some(State::Flipped),
            Step::Clean => Some(State::Done),
            Step::Abort => Some(State::RolledBack),
            _ => None,
        }
    }

    /// The failpoint just after the step (the crash tests kill the process at each).
    pub fn failpoint_after(self) -> Option<&'static str> {
        match self {
            Step::Mark => Some("migrate.after_moving"),
            Step::Copy => Some("migrate.after_copy"),
            Step::Follow => Some("migrate.after_follow"),
            Step::LastPass => Some("migrate.read_only_window"),
            Step::Verify => Some("migrate.after_verify"),
            Step::Flip => Some("migrate.after_flip"),
            _ => None,
        }
    }

    /// The failpoint once the step's work is done, before its last journal write.
    pub fn failpoint_done(self) -> Option<&'static str> {
        match self {
            Step::Clean => Some("migrate.after_cleanup"),
            _ => None,
        }
    }

    /// The failpoint inside the step, once its first chunk (or pass) is written.
    pub fn failpoint_mid(self) -> Option<&'static str> {
        match self {
            Step::Copy => Some("migrate.copy_mid"),
            Step::Follow => Some("migrate.catchup_mid"),
            Step::Clean => Some("migrate.cleanup_mid"),
            Step::Clear => Some("migrate.clear_mid"),
            Step::Abort => Some("migrate.abort_mid"),
            _ => None,
        }
    }
}

/// The failpoint between applying a pass over the binary log and journaling where it reached.
pub const APPLY_BEFORE_JOURNAL: &str = "migrate.apply_before_journal";

/// The failpoint after the lock is taken, before anything is journaled.
pub const AFTER_LOCK: &str = "migrate.after_lock";

const OFFLINE: &[Step] = &[
    Step::Fence,
    Step::Mark,
    Step::CatchUp,
    Step::Clear,
    Step::Copy,
    Step::Verify,
    Step::Flip,
    Step::Clean,
];

/// Online, the copy and the catch-up come before the mark: the accounts stay writable.
const ONLINE: &[Step] = &[
    Step::Fence,
    Step::Clear,
    Step::CatchUp,
    Step::Copy,
    Step::Follow,
    Step::Mark,
    Step::LastPass,
    Step::Verify,
    Step::Flip,
    Step::Clean,
];

const ROLL_BACK: &[Step] = &[Step::Fence, Step::Abort];
const FINISH: &[Step] = &[Step::Fence, Step::Clean];

/// Which way a move goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Course {
    /// Read-only from the mark, before the copy, to the flip.
    Offline { keep_source: bool },
    /// Writable while copying; read-only only for the last pass, the verification and the flip.
    Online { keep_source: bool },
    /// `migrate resume` of a journal entry in `state`: before the flip it rolls back, after it
    /// it finishes the clean-up.
    Resume { state: State, online: bool },
}

impl Course {
    fn steps(self) -> &'static [Step] {
        match self {
            Course::Offline { .. } => OFFLINE,
            Course::Online { .. } => ONLINE,
            Course::Resume { state, .. } => match resume_action(state) {
                Resume::RollBack => ROLL_BACK,
                Resume::Finish => FINISH,
                Resume::Nothing => &[],
            },
        }
    }

    fn keeps_source(self) -> bool {
        matches!(
            self,
            Course::Offline { keep_source: true } | Course::Online { keep_source: true }
        )
    }

    pub fn is_online(self) -> bool {
        matches!(self, Course::Online { .. })
    }

    /// Whether rows of ours may be on the destination once `stage` is reached: the copy began
    /// (or, resuming, the journal says it may have).
    pub fn copy_began(self, stage: Stage) -> bool {
        if let Course::Resume { state, online } = self {
            return may_have_copied(state, online);
        }
        let at = match stage {
            Stage::Start => return false,
            Stage::After(s) | Stage::Failed(s) => s,
        };
        let order = |s: Step| self.steps().iter().position(|x| *x == s);
        match (order(at), order(Step::Copy)) {
            (Some(at), Some(copy)) => at >= copy,
            _ => false,
        }
    }
}

/// Where a move stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Locked and journaled; nothing else done.
    Start,
    /// The step is done.
    After(Step),
    /// The step failed.
    Failed(Step),
}

/// The next step of a move in `stage`, or None when nothing is left: after the clean-up (or
/// the flip, when the source is kept), after a roll-back, and after a failure past the flip
/// (the user has moved; `migrate resume` finishes the clean-up). A failure before the flip
/// gives the accounts back.
pub fn next(course: Course, stage: Stage) -> Option<Step> {
    let steps = course.steps();
    match stage {
        Stage::Start => steps.first().copied(),
        Stage::After(Step::Abort) | Stage::Failed(Step::Abort) => None,
        Stage::After(Step::Flip) if course.keeps_source() => None,
        Stage::After(done) => {
            let i = steps.iter().position(|s| *s == done)?;
            steps.get(i + 1).copied()
        }
        Stage::Failed(step) if is_before_flip(step) => Some(Step::Abort),
        Stage::Failed(_) => None,
    }
}

/// Steps whose failure leaves the directory naming the source (the flip's own failure
/// included: its transaction either committed whole or not at all).
fn is_before_flip(step: Step) -> bool {
    !matches!(step, Step::Clean | Step::Abort)
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
    AFTER_LOCK,
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
    APPLY_BEFORE_JOURNAL,
    "migrate.after_follow",
    "migrate.read_only_window",
];

/// The failpoints of the steps only some moves take: clearing rows already on the destination
/// (`--clear-destination`), and giving the accounts back after a failure once the copy began.
pub const GIVE_BACK_FAILPOINTS: &[&str] = &["migrate.clear_mid", "migrate.abort_mid"];

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

    /// The steps a course takes when every one succeeds.
    fn walk(course: Course) -> Vec<Step> {
        let mut out = Vec::new();
        let mut stage = Stage::Start;
        while let Some(step) = next(course, stage) {
            out.push(step);
            stage = Stage::After(step);
        }
        out
    }

    #[test]
    fn an_offline_move_is_read_only_from_before_the_copy_to_the_flip() {
        use Step::*;
        assert_eq!(
            walk(Course::Offline { keep_source: false }),
            [Fence, Mark, CatchUp, Clear, Copy, Verify, Flip, Clean]
        );
        assert_eq!(
            walk(Course::Offline { keep_source: true }),
            [Fence, Mark, CatchUp, Clear, Copy, Verify, Flip]
        );
    }

    #[test]
    fn an_online_move_marks_only_after_copying_and_following_the_log() {
        use Step::*;
        assert_eq!(
            walk(Course::Online { keep_source: false }),
            [Fence, Clear, CatchUp, Copy, Follow, Mark, LastPass, Verify, Flip, Clean]
        );
    }

    #[test]
    fn resume_is_the_same_loop_from_the_journals_state() {
        use Step::*;
        for s in ALL {
            let walked = walk(Course::Resume {
                state: s,
                online: false,
            });
            match resume_action(s) {
                Resume::RollBack => assert_eq!(walked, [Fence, Abort], "{s}"),
                Resume::Finish => assert_eq!(walked, [Fence, Clean], "{s}"),
                Resume::Nothing => assert!(walked.is_empty(), "{s}"),
            }
        }
    }

    #[test]
    fn a_failure_before_the_flip_gives_back_and_after_it_stops() {
        for course in [
            Course::Offline { keep_source: false },
            Course::Online { keep_source: false },
        ] {
            for step in walk(course) {
                let then = next(course, Stage::Failed(step));
                if step == Step::Clean {
                    assert_eq!(then, None);
                } else {
                    assert_eq!(then, Some(Step::Abort), "{step:?}");
                }
            }
            assert_eq!(next(course, Stage::After(Step::Abort)), None);
            assert_eq!(next(course, Stage::Failed(Step::Abort)), None);
        }
    }

    #[test]
    fn a_give_back_clears_the_destination_only_once_the_copy_began() {
        let offline = Course::Offline { keep_source: false };
        assert!(!offline.copy_began(Stage::Failed(Step::Clear)));
        assert!(!offline.copy_began(Stage::After(Step::Mark)));
        assert!(offline.copy_began(Stage::Failed(Step::Copy)));
        assert!(offline.copy_began(Stage::Failed(Step::Flip)));
        let online = Course::Online { keep_source: false };
        assert!(!online.copy_began(Stage::Failed(Step::CatchUp)));
        assert!(online.copy_began(Stage::Failed(Step::Follow)));
        assert!(online.copy_began(Stage::Failed(Step::Mark)));
        let resumed = |state, online| Course::Resume { state, online }.copy_began(Stage::Start);
        assert!(!resumed(State::Moving, false));
        assert!(resumed(State::Moving, true));
        assert!(resumed(State::Copying, false));
    }

    #[test]
    fn every_step_failpoint_is_listed() {
        let listed: Vec<&str> = FAILPOINTS
            .iter()
            .chain(ONLINE_FAILPOINTS)
            .chain(GIVE_BACK_FAILPOINTS)
            .copied()
            .collect();
        for course in [
            Course::Offline { keep_source: false },
            Course::Online { keep_source: false },
        ] {
            for step in walk(course).into_iter().chain([Step::Abort]) {
                let points = [
                    step.failpoint_after(),
                    step.failpoint_mid(),
                    step.failpoint_done(),
                ];
                for p in points.into_iter().flatten() {
                    assert!(listed.contains(&p), "{p} is not listed");
                }
            }
        }
    }
}

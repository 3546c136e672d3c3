use serde::Serialize;

use crate::cli::MaintenanceCommand;
use crate::commands::Ctx;
use crate::error::Result;
use crate::exit_codes;
use crate::maintenance::roll::{RollOptions, RollReport, RollState, RollStatus};
use crate::maintenance::{self, DrainOptions, Outcome as Done, RestoreOptions, ServerState};
use crate::output::{table, Outcome, Report};

pub fn run(ctx: &Ctx, cmd: MaintenanceCommand) -> Result<Outcome> {
    let cfg = ctx.config()?;
    match cmd {
        MaintenanceCommand::Status => {
            let (servers, roll) = maintenance::status(&cfg)?;
            Outcome::of(StatusReport { servers, roll })
        }
        MaintenanceCommand::Roll(a) => Outcome::of(maintenance::roll::roll(
            &cfg,
            &ctx.changes(&cfg),
            &RollOptions {
                exec: a.exec,
                halves: a.halves,
                parallel: a.parallel.into(),
                timeout: a.timeout,
                exec_timeout: a.exec_timeout,
                max_lag: a.max_lag,
                dry_run: a.dry_run,
            },
            // Commands' output prints above the progress lines.
            &ctx.ui.multi(),
        )?),
        MaintenanceCommand::Drain(a) => Outcome::of(Change {
            action: "drain",
            done: maintenance::drain(
                &cfg,
                &ctx.changes(&cfg),
                &DrainOptions {
                    fence: None,
                    half: a.half,
                    timeout: a.timeout,
                    max_lag: a.max_lag,
                    dry_run: a.dry_run,
                    skip_unsafe: a.skip_unsafe,
                    only: None,
                },
                &ctx.ui,
            )?,
        }),
        MaintenanceCommand::Restore(a) => Outcome::of(Change {
            action: "restore",
            done: maintenance::restore(
                &cfg,
                &ctx.changes(&cfg),
                &RestoreOptions {
                    fence: None,
                    half: a.half,
                    timeout: a.timeout,
                    max_lag: a.max_lag,
                    dry_run: a.dry_run,
                    only: None,
                },
                &ctx.ui,
            )?,
        }),
    }
}

#[derive(Serialize)]
struct StatusReport {
    servers: Vec<ServerState>,
    /// A maintenance roll in progress or left unfinished, or null.
    roll: Option<RollStatus>,
}

impl Report for StatusReport {
    fn human(&self) -> String {
        table(
            &[
                "shard",
                "server",
                "half",
                "status",
                "reachable",
                "replication",
                "lag",
                "app sessions",
                "takes writes for",
            ],
            self.servers.iter().map(|s| {
                let (replication, lag) = match &s.replication {
                    Some(r) => (
                        format!(
                            "from {} io {} sql {}",
                            r.source,
                            yes_no(r.io_running),
                            yes_no(r.sql_running)
                        ),
                        r.lag_seconds
                            .map(|l| format!("{l}s"))
                            .unwrap_or_else(|| "-".into()),
                    ),
                    None => ("none".into(), "-".into()),
                };
                vec![
                    s.shard.clone(),
                    format!("{}:{}", s.host, s.port),
                    s.half.to_string(),
                    s.status.to_string(),
                    match &s.error {
                        None => "yes".into(),
                        Some(e) => format!("no: {e}"),
                    },
                    replication,
                    lag,
                    s.connections.to_string(),
                    match (&s.takes_writes_for, s.agrees_with_ring) {
                        (Some(d), Some(false)) => format!("{d} (not what the ring routes)"),
                        (Some(d), _) => d.clone(),
                        (None, _) => "-".into(),
                    },
                ]
            }),
        ) + &match self.unreachable() {
            0 => String::new(),
            n => format!("\n{n} servers do not answer"),
        } + &match &self.roll {
            None => String::new(),
            Some(r) => format!(
                "\nmaintenance roll #{} is {} (halves {}, since {}): {} of its servers done; --exec {:?}",
                r.roll_id,
                r.state,
                r.halves,
                r.started_at,
                r.servers.iter().filter(|s| s.step == "restored").count(),
                r.command
            ),
        }
    }

    /// A health gate, as `doctor` is: a server that does not answer fails it.
    fn exit_code(&self) -> u8 {
        if self.unreachable() > 0 {
            exit_codes::FAILED
        } else {
            exit_codes::OK
        }
    }
}

impl StatusReport {
    fn unreachable(&self) -> usize {
        self.servers.iter().filter(|s| !s.reachable).count()
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A drain or a restore.
#[derive(Serialize)]
struct Change {
    #[serde(skip)]
    action: &'static str,
    #[serde(flatten)]
    done: Done,
}

impl Report for Change {
    fn human(&self) -> String {
        let d = &self.done;
        let mut out = table(
            &["shard", "server", "status", "note"],
            d.servers.iter().map(|s| {
                vec![
                    s.shard.clone(),
                    format!("{}:{}", s.host, s.port),
                    if s.changed {
                        format!("{} (changed)", s.status)
                    } else {
                        s.status.to_string()
                    },
                    s.note.clone().unwrap_or_default(),
                ]
            }),
        );
        if !d.refused.is_empty() {
            out.push_str("\nrefused:\n");
            out.push_str(&table(
                &["shard", "reason"],
                d.refused
                    .iter()
                    .map(|r| vec![r.shard.clone(), r.reason.clone()]),
            ));
        }
        out.push_str(&sessions_table(d));
        out.push_str(&handovers_table(d));
        if let Some(w) = &d.warning {
            out.push_str(&format!("\nwarning: {w}"));
        }
        if d.interrupted {
            out.push_str(
                "\ninterrupted: every server is as listed; run the same command again to finish",
            );
        }
        if !d.locks.is_empty() {
            out.push_str("\nlocks held with GET_LOCK on drained servers:\n");
            out.push_str(&table(
                &["lock", "owner", "server", "connection"],
                d.locks.iter().map(|l| {
                    vec![
                        l.name.clone(),
                        l.owner.clone(),
                        l.server.clone(),
                        l.connection.to_string(),
                    ]
                }),
            ));
        }
        out.push('\n');
        out.push_str(&self.summary());
        out
    }

    fn exit_code(&self) -> u8 {
        let d = &self.done;
        if d.blocked {
            exit_codes::REFUSED
        } else if !d.refused.is_empty()
            || d.locks_unknown.is_some()
            || (!d.dry_run && d.servers.iter().any(|s| s.note.is_some()))
        {
            exit_codes::PARTIAL
        } else {
            exit_codes::OK
        }
    }
}

impl Change {
    fn summary(&self) -> String {
        let d = &self.done;
        let half = d.half;
        if d.blocked {
            return format!(
                "refused: {} shards are not safe to {} half {half}; nothing was changed \
                 (--skip-unsafe {}s the rest)",
                d.refused.len(),
                self.action,
                self.action
            );
        }
        if d.dry_run {
            return format!("dry run: nothing was changed ({:.1}s)", d.seconds);
        }
        let target = if self.action == "drain" {
            "offline"
        } else {
            "online"
        };
        let at_target = d
            .servers
            .iter()
            .filter(|s| s.status.as_str() == target)
            .count();
        let mut line = if d.changed == 0 && d.refused.is_empty() && at_target == d.servers.len() {
            match d.handovers.len() {
                0 => format!("half {half} is already {target}: nothing changed"),
                n => format!(
                    "half {half} is already {target}; finished the hand-over an earlier run left half done on {n} shards"
                ),
            }
        } else {
            let left = d.servers.len() - at_target;
            format!(
                "{at_target} of {} servers of half {half} {target} ({} changed, {left} not) in {:.1}s",
                d.servers.len(),
                d.changed,
                d.seconds
            )
        };
        if self.action == "drain" && at_target > 0 {
            line.push_str(&format!(
                "\nupgrade the {target} servers, then `shardctl maintenance restore --half {half}`"
            ));
        }
        line
    }
}

impl Report for RollReport {
    fn human(&self) -> String {
        let mut out = String::new();
        for h in &self.halves {
            out.push_str(&format!("half {}:\n", h.half));
            out.push_str(&table(
                &["shard", "server", "status", "command", "note"],
                h.servers.iter().map(|s| {
                    vec![
                        s.shard.clone(),
                        format!("{}:{}", s.host, s.port),
                        s.status.to_string(),
                        match &s.exec {
                            Some(e) if e.timed_out => format!("timed out after {:.1}s", e.seconds),
                            Some(e) => format!("exit {} in {:.1}s", e.code, e.seconds),
                            None => "-".into(),
                        },
                        s.note.clone().unwrap_or_default(),
                    ]
                }),
            ));
            out.push('\n');
            for s in h.servers.iter().filter(|s| !s.output_tail.is_empty()) {
                out.push_str(&format!("last output of {}:{}:\n", s.host, s.port));
                for line in &s.output_tail {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
        for r in &self.refused {
            out.push_str(&format!("refused: {}: {}\n", r.shard, r.reason));
        }
        let id = self.roll_id.map(|i| format!("#{i} ")).unwrap_or_default();
        out.push_str(&match self.state {
            RollState::Done => format!("maintenance roll {id}done in {:.1}s", self.seconds),
            RollState::Failed => format!(
                "maintenance roll {id}stopped: servers whose command failed stay drained; run the same command again to retry them"
            ),
            RollState::Refused => format!("maintenance roll {id}refused by a drain's safety checks; that half was not changed"),
            RollState::Planned => "dry run: nothing was changed".into(),
        });
        out
    }

    fn exit_code(&self) -> u8 {
        match self.state {
            RollState::Done | RollState::Planned => exit_codes::OK,
            RollState::Failed => exit_codes::PARTIAL,
            RollState::Refused => exit_codes::REFUSED,
        }
    }
}

/// The application sessions a drain met, as a table (empty without any).
fn sessions_table(d: &Done) -> String {
    let mut out = String::new();
    if d.sessions.is_empty() {
        return out;
    }

    out.push_str(if d.dry_run {
        "\napplication sessions open now (a drain waits for them):\n"
    } else {
        "\napplication sessions still open:\n"
    });
    out.push_str(&table(
        &[
            "shard", "server", "id", "user", "client", "time", "state", "query",
        ],
        d.sessions.iter().map(|h| {
            vec![
                h.shard.clone(),
                h.server.clone(),
                h.session.id.to_string(),
                h.session.user.clone(),
                h.session.host.clone(),
                format!("{}s", h.session.time),
                h.session
                    .state
                    .clone()
                    .unwrap_or_else(|| h.session.command.clone()),
                crate::types::shown(&h.session.info.clone().unwrap_or_default()),
            ]
        }),
    ));
    out
}

/// The hand-overs a drain or restore made, as a table with their notes (empty without any).
fn handovers_table(d: &Done) -> String {
    let mut out = String::new();
    if d.handovers.is_empty() {
        return out;
    }

    out.push_str("\nusers' writes handed over (never two servers taking one user's):\n");
    out.push_str(&table(
        &[
            "shard",
            "server",
            "took writes for",
            "takes writes for",
            "write window",
        ],
        d.handovers.iter().flat_map(|h| {
            h.servers.iter().map(move |s| {
                vec![
                    h.shard.clone(),
                    format!("{}:{}", s.host, s.port),
                    s.before.clone(),
                    s.after.clone(),
                    format!("{:.3}s", h.write_window_seconds),
                ]
            })
        }),
    ));
    for note in d.handovers.iter().flat_map(|h| &h.notes) {
        out.push_str(&format!("\nnote: {note}"));
    }
    out
}

use serde::Serialize;

use crate::cli::{MigrateArgs, MigrateCommand};
use crate::commands::Ctx;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::migrate::{self, Entry, InProgress, Options, Report as MigrateReport, Resumed};
use crate::output::{table, Outcome, Report};
use crate::ring;

/// How long a migration has, after Ctrl-C or SIGTERM, to reach its next safe point before it
/// is abandoned where it stands (a chunk takes well under a second; a frozen server forever).
const STUCK_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl Report for MigrateReport {
    fn human(&self) -> String {
        let mut out = format!(
            "user {}: {} -> {}: {}",
            self.user, self.from, self.to, self.state
        );
        let mut how = vec![self.mode.clone()];
        if let Some(s) = self.read_only_seconds {
            how.push(format!("read-only {s:.2}s"));
        }
        if let Some(c) = &self.catch_up {
            how.push(format!(
                "{} changes applied from the binary log in {} pass{}, {} of them read-only",
                c.changes,
                c.passes,
                if c.passes == 1 { "" } else { "es" },
                c.read_only_changes
            ));
        }
        how.retain(|h| !h.is_empty());
        if !how.is_empty() {
            out.push_str(&format!(" ({})", how.join("; ")));
        }
        if !self.rows.is_empty() {
            let rows = self
                .rows
                .iter()
                .map(|(t, n)| vec![t.clone(), n.to_string()]);
            out.push_str(&format!("\n{}", table(&["table", "rows"], rows)));
        }
        if !self.timings.is_empty() {
            let t: Vec<String> = self
                .timings
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}s"))
                .collect();
            out.push_str(&format!("\n{}", t.join(", ")));
        }
        if !self.note.is_empty() {
            out.push_str(&format!("\n{}", self.note));
        }
        out
    }

    fn exit_code(&self) -> u8 {
        if self.cleanup_pending {
            exit_codes::PARTIAL
        } else {
            exit_codes::OK
        }
    }
}

#[derive(Serialize)]
struct ResumeReport {
    resumed: Vec<Resumed>,
    in_progress: Vec<InProgress>,
    failed: Vec<Failure>,
    released_locks: Vec<String>,
}

#[derive(Serialize)]
struct Failure {
    user: u64,
    error: String,
}

impl Report for ResumeReport {
    fn human(&self) -> String {
        let released = self
            .released_locks
            .iter()
            .map(|l| format!("\nreleased {l}, left by a dead holder"))
            .collect::<String>();
        let running = self
            .in_progress
            .iter()
            .map(|r| {
                format!(
                    "\nmigration #{} of user {} ({} -> {}, {}) is in progress: {}",
                    r.migration_id, r.user, r.from, r.to, r.state, r.holder
                )
            })
            .collect::<String>();
        if self.resumed.is_empty() && self.failed.is_empty() {
            return format!("nothing to resume{running}{released}");
        }
        let mut out = table(
            &["migration", "user", "from", "to", "was", "now"],
            self.resumed.iter().map(|r| {
                vec![
                    r.migration_id.to_string(),
                    r.user.to_string(),
                    r.from.clone(),
                    r.to.clone(),
                    r.was.to_string(),
                    r.now.to_string(),
                ]
            }),
        );
        for f in &self.failed {
            out.push_str(&format!("\nuser {}: {}", f.user, f.error));
        }
        out + &running + &released
    }

    fn exit_code(&self) -> u8 {
        match (self.resumed.is_empty(), self.failed.is_empty()) {
            (_, true) => exit_codes::OK,
            (false, false) => exit_codes::PARTIAL,
            (true, false) => exit_codes::FAILED,
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Journal(Vec<Entry>);

impl Report for Journal {
    fn human(&self) -> String {
        table(
            &[
                "migration",
                "user",
                "from",
                "to",
                "state",
                "token",
                "updated",
                "error",
            ],
            self.0.iter().map(|e| {
                vec![
                    e.migration_id.to_string(),
                    e.user.to_string(),
                    e.from.clone(),
                    e.to.clone(),
                    e.state.to_string(),
                    e.token.map(|t| t.to_string()).unwrap_or_default(),
                    e.updated_at.clone(),
                    e.error.clone().unwrap_or_default(),
                ]
            }),
        )
    }
}

pub fn run(ctx: &Ctx, args: MigrateArgs) -> Result<Outcome> {
    let cfg = ctx.config()?;
    match args.command {
        Some(MigrateCommand::Status(a)) => {
            let mut db = ring::open(&cfg)?;
            let mut entries = migrate::journal(&mut db, migrate::Entries::Listing(a.user))?;
            if a.user.is_none() {
                // Unfinished ones always; of the finished, the latest 50.
                let mut finished = 0;
                entries.retain(|e| {
                    !e.state.is_final() || {
                        finished += 1;
                        finished <= 50
                    }
                });
            }
            Outcome::of(Journal(entries))
        }
        Some(MigrateCommand::Resume(a)) => {
            crate::signals::catch_termination();
            let outcome = migrate::resume(
                &cfg,
                &ctx.changes(&cfg),
                a.user,
                (a.lock.lock_ttl.get(), a.max_lag),
                &ctx.ui,
            )?;
            Outcome::of(ResumeReport {
                released_locks: outcome.released_locks,
                in_progress: outcome.in_progress,
                resumed: outcome.resumed,
                failed: outcome
                    .failed
                    .into_iter()
                    .map(|(user, e)| Failure {
                        user,
                        error: e.to_string(),
                    })
                    .collect(),
            })
        }
        None => {
            let (Some(user), Some(to)) = (args.run.user, args.run.to) else {
                return Err(Error::Usage("migrate needs UID and --to SHARD".into()));
            };
            let ttl = args.run.lock.lock_ttl.get();
            crate::signals::catch_termination();
            let json = ctx.ui.format == crate::output::Format::Json;
            crate::signals::watchdog(STUCK_GRACE, move || {
                let code = crate::output::fail(
                    "failed",
                    &format!(
                        "interrupted while a server did not answer for {}s; the journal is consistent: \
                         `shardctl migrate resume {user}` finishes or rolls back the migration",
                        STUCK_GRACE.as_secs()
                    ),
                    json,
                    exit_codes::FAILED,
                );
                std::process::exit(code.into());
            });
            let report = migrate::migrate(
                &cfg,
                &ctx.changes(&cfg),
                &Options {
                    user,
                    to,
                    keep_source: args.run.keep_source
                        || args.run.cleanup == crate::cli::Cleanup::Later,
                    mode: args.run.mode,
                    clear_destination: args.run.clear_destination,
                    lock_ttl: ttl,
                    max_lag: args.run.max_lag,
                    dry_run: args.run.dry_run,
                },
                &ctx.ui,
            )?;
            Outcome::of(report)
        }
    }
}

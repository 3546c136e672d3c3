use serde::Serialize;

use crate::cli::{GuardChangeArgs, GuardCommand, GuardPruneArgs};
use crate::commands::Ctx;
use crate::error::Result;
use crate::exit_codes;
use crate::output::{table, Outcome, Report};
use crate::shard::guard::{self, Action, ServerGuard, ServerPrune};

#[derive(Serialize)]
struct Guards {
    action: &'static str,
    /// `[shards] write_guard`: whether moves use the guard.
    write_guard: bool,
    servers: Vec<ServerGuard>,
    dry_run: bool,
    /// For a dry run: the statements each server would run.
    statements: Vec<String>,
}

impl Report for Guards {
    fn human(&self) -> String {
        if self.dry_run {
            return format!(
                "guard {} would run on every shard server:\n{}",
                self.action,
                self.statements.join(";\n")
            );
        }
        let rows = self.servers.iter().map(|s| {
            vec![
                s.shard.clone(),
                format!("{}:{}", s.host, s.port),
                match (&s.state, &s.error) {
                    (_, Some(e)) => format!("ERROR: {e}"),
                    (Some(st), None) if st.installed => "installed".into(),
                    (Some(st), None) if st.missing.iter().any(|m| m == guard::TABLE) => {
                        "not installed".into()
                    }
                    (Some(st), None) => format!("missing {}", st.missing.join(", ")),
                    (None, None) => String::new(),
                },
                s.state
                    .as_ref()
                    .map(|st| st.guarded.to_string())
                    .unwrap_or_default(),
            ]
        });
        let mut out = table(&["shard", "server", "guard", "users guarded"], rows);
        if !self.write_guard {
            out.push_str("\n[shards] write_guard is off: moves do not guard their users");
        }
        out
    }

    fn exit_code(&self) -> u8 {
        partial(self.servers.iter().map(|s| s.error.is_some()))
    }
}

/// 0 when no server failed, 5 when some did (the output says which), 1 when all did.
fn partial(failed: impl Iterator<Item = bool>) -> u8 {
    let (mut ok, mut bad) = (0, 0);
    for f in failed {
        if f {
            bad += 1
        } else {
            ok += 1
        }
    }
    match (ok, bad) {
        (_, 0) => exit_codes::OK,
        (0, _) => exit_codes::FAILED,
        _ => exit_codes::PARTIAL,
    }
}

#[derive(Serialize)]
struct Pruned {
    action: &'static str,
    older_than_seconds: u64,
    dry_run: bool,
    /// Users lifted in all (to be lifted, in a dry run).
    users: usize,
    servers: Vec<ServerPrune>,
}

impl Report for Pruned {
    fn human(&self) -> String {
        let rows = self.servers.iter().map(|s| {
            vec![
                s.shard.clone(),
                format!("{}:{}", s.host, s.port),
                match &s.error {
                    Some(e) => format!("ERROR: {e}"),
                    None => s.users.len().to_string(),
                },
            ]
        });
        let verb = if self.dry_run {
            "would be lifted"
        } else {
            "lifted"
        };
        let mut out = table(&["shard", "server", &format!("guards {verb}")], rows);
        out.push_str(&format!(
            "\n{} guard row(s) older than {} {verb}",
            self.users,
            humantime::format_duration(std::time::Duration::from_secs(self.older_than_seconds))
        ));
        out
    }

    fn exit_code(&self) -> u8 {
        partial(self.servers.iter().map(|s| s.error.is_some()))
    }
}

fn prune(ctx: &Ctx, args: GuardPruneArgs) -> Result<Outcome> {
    let cfg = ctx.config()?;
    let servers = guard::prune(&cfg, args.older_than, args.dry_run)?;
    Outcome::of(Pruned {
        action: "prune",
        older_than_seconds: args.older_than.as_secs(),
        dry_run: args.dry_run,
        users: servers.iter().map(|s| s.users.len()).sum(),
        servers,
    })
}

pub fn run(ctx: &Ctx, cmd: GuardCommand) -> Result<Outcome> {
    let cfg = ctx.config()?;
    let (action, args): (Action, Option<GuardChangeArgs>) = match cmd {
        GuardCommand::Install(a) => (Action::Install, Some(a)),
        GuardCommand::Status => (Action::Status, None),
        GuardCommand::Remove(a) => (Action::Remove { force: a.force }, Some(a.change)),
        GuardCommand::Prune(a) => return prune(ctx, a),
    };
    let name = action.name();
    let write_guard = guard::enabled(&cfg);
    if args.as_ref().is_some_and(|a| a.dry_run) {
        return Outcome::of(Guards {
            action: name,
            write_guard,
            servers: Vec::new(),
            dry_run: true,
            statements: match action {
                Action::Install => guard::install_statements(&cfg),
                _ => guard::remove_statements(&cfg),
            },
        });
    }
    let timeout = args.map(|a| a.timeout).unwrap_or_default();
    if action != Action::Status {
        ctx.ui.status(&format!(
            "guard {name}: CREATE/DROP TRIGGER takes a metadata lock on each per-user table; waiting at most {} for each",
            humantime::format_duration(timeout)
        ));
    }
    let servers = guard::everywhere(&cfg, action, timeout)?;
    Outcome::of(Guards {
        action: name,
        write_guard,
        servers,
        dry_run: false,
        statements: Vec::new(),
    })
}

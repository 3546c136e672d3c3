use serde::Serialize;

use crate::cli::{GuardChangeArgs, GuardCommand};
use crate::commands::Ctx;
use crate::error::Result;
use crate::exit_codes;
use crate::output::{table, Outcome, Report};
use crate::shard::guard::{self, Action, ServerGuard};

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
        if self.servers.iter().any(|s| s.error.is_some()) {
            exit_codes::FAILED
        } else {
            exit_codes::OK
        }
    }
}

pub fn run(ctx: &Ctx, cmd: GuardCommand) -> Result<Outcome> {
    let cfg = ctx.config()?;
    let (action, args): (Action, Option<GuardChangeArgs>) = match cmd {
        GuardCommand::Install(a) => (Action::Install, Some(a)),
        GuardCommand::Status => (Action::Status, None),
        GuardCommand::Remove(a) => (Action::Remove, Some(a)),
    };
    let name = match action {
        Action::Install => "install",
        Action::Status => "status",
        Action::Remove => "remove",
    };
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

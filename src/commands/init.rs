use crate::cli::InitArgs;
use crate::commands::Ctx;
use crate::error::Result;
use crate::output::{Outcome, Report};
use crate::ring::{self, InitOutcome};

impl Report for InitOutcome {
    fn human(&self) -> String {
        let (upgraded, created) = if self.dry_run {
            ("would upgrade", "would create")
        } else {
            ("upgraded", "created")
        };
        let what = match self.from_version {
            Some(v) if v == self.version => format!("already at schema version {v}; nothing to do"),
            Some(v) => format!("{upgraded} from schema version {v} to {}", self.version),
            None => format!("{created} at schema version {}", self.version),
        };
        let tickets = if self.ticket_servers.is_empty() {
            String::new()
        } else {
            format!(
                "\nticket tables ready on {}",
                self.ticket_servers.join(", ")
            )
        };
        format!(
            "ring database `{}` on {}: {what}{tickets}",
            self.database, self.server
        )
    }
}

pub fn run(ctx: &Ctx, args: &InitArgs) -> Result<Outcome> {
    Outcome::of(ring::initialize(&ctx.config()?, args.dry_run)?)
}

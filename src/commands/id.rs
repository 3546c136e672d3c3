use serde::Serialize;

use crate::cli::IdCommand;
use crate::commands::Ctx;
use crate::error::Result;
use crate::output::{Outcome, Report};
use crate::ring::tickets;

#[derive(Serialize)]
struct Ids {
    ids: Vec<u64>,
}

impl Report for Ids {
    fn human(&self) -> String {
        self.ids
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub fn run(ctx: &Ctx, cmd: IdCommand) -> Result<Outcome> {
    let IdCommand::Next(args) = cmd;
    let cfg = ctx.config()?;
    // Start the round-robin at a different server in each process, to spread the load.
    let start = std::process::id() as usize;
    let ids = tickets::next_ids(&cfg, args.bits, args.count, start)?;
    Outcome::of(Ids { ids })
}

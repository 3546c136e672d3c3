use serde::Serialize;

use crate::cli::AuditArgs;
use crate::commands::Ctx;
use crate::error::Result;
use crate::output::{table, Outcome, Report};
use crate::ring::{self, audit::Entry};
use crate::types::shown;

#[derive(Serialize)]
#[serde(transparent)]
struct AuditReport(Vec<Entry>);

impl Report for AuditReport {
    fn human(&self) -> String {
        table(
            &["at", "operator", "host", "action", "target", "details"],
            self.0.iter().map(|e| {
                vec![
                    e.at.clone(),
                    shown(&e.operator),
                    shown(&e.host),
                    e.action.clone(),
                    shown(&e.target),
                    e.details.to_string(),
                ]
            }),
        )
    }
}

pub fn run(ctx: &Ctx, args: &AuditArgs) -> Result<Outcome> {
    let cfg = ctx.config()?;
    let mut db = ring::open(&cfg)?;
    let entries = ring::audit::read(
        &mut db,
        args.since.map(|d| d.as_secs().max(1)),
        args.action.as_deref(),
        args.limit,
    )?;
    Outcome::of(AuditReport(entries))
}

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::commands::Ctx;
use crate::doctor::{self, rules::Check};
use crate::error::Result;
use crate::exit_codes;
use crate::output::{table, Outcome, Report};

#[derive(Serialize)]
struct DoctorReport {
    ok: bool,
    checks: Vec<Check>,
}

impl Report for DoctorReport {
    fn human(&self) -> String {
        let rows = self.checks.iter().map(|c| {
            vec![
                if c.ok { "ok" } else { "FAIL" }.to_string(),
                c.target.clone(),
                c.check.clone(),
                c.detail.clone(),
                c.fix.clone().unwrap_or_default(),
            ]
        });
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        let summary = if failed == 0 {
            format!("all {} checks passed", self.checks.len())
        } else {
            format!("{failed} of {} checks failed", self.checks.len())
        };
        format!(
            "{}\n{summary}",
            table(&["", "server", "check", "detail", "fix"], rows)
        )
    }

    fn exit_code(&self) -> u8 {
        if self.ok {
            exit_codes::OK
        } else {
            exit_codes::FAILED
        }
    }
}

pub fn run(ctx: &Ctx, args: &DoctorArgs) -> Result<Outcome> {
    let cfg = ctx.config()?;
    let checks = doctor::checks(&cfg, args.max_lag);
    let ok = checks.iter().all(|c| c.ok);
    Outcome::of(DoctorReport { ok, checks })
}

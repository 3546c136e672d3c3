use crate::cli::{PlanOptions, RebalanceApplyArgs, RebalanceCommand, RebalancePlanArgs};
use crate::commands::Ctx;
use crate::error::Result;
use crate::exit_codes;
use crate::output::{table, Outcome, Report};
use crate::rebalance::apply::{self, Report as ApplyReport};
use crate::rebalance::plan::Params;
use crate::rebalance::{self, PlanFile};
use crate::ring;

pub fn run(ctx: &Ctx, cmd: RebalanceCommand) -> Result<Outcome> {
    match cmd {
        RebalanceCommand::Plan(args) => plan(ctx, &args),
        RebalanceCommand::Apply(args) => apply(ctx, &args),
    }
}

/// Plans from the directory as it is now.
fn plan_now(ctx: &Ctx, opts: &PlanOptions) -> Result<PlanFile> {
    // The tolerance was checked (0 to 100) when the arguments were parsed.
    let params = Params {
        by: opts.by,
        tolerance_pct: opts.tolerance,
        max_moves: opts.max_moves.map(|n| n as usize),
    };
    let cfg = ctx.config()?;
    let mut ring_db = ring::open(&cfg)?;
    let spinner = ctx.ui.spinner("reading the directory and counting rows");
    let (_, loads) = rebalance::gather(&cfg, &mut ring_db)?;
    spinner.finish_and_clear();
    Ok(rebalance::make_plan(&loads, &params))
}

/// How many moves a table shows; the JSON and the plan file have them all.
const MOVES_SHOWN: usize = 20;

struct PlanReport {
    plan: PlanFile,
    written_to: Option<String>,
}

impl serde::Serialize for PlanReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.plan.serialize(s)
    }
}

impl Report for PlanReport {
    fn human(&self) -> String {
        let p = &self.plan;
        let unit = match p.by {
            rebalance::plan::By::Users => "users",
            rebalance::plan::By::Rows => "rows",
        };
        let mut out = table(
            &[
                "shard",
                "state",
                "weight",
                &format!("{unit} now"),
                "target",
                "after",
                "balanced",
            ],
            p.shards.iter().map(|s| {
                vec![
                    s.name.clone(),
                    s.state.to_string(),
                    s.weight.to_string(),
                    s.now.to_string(),
                    format!("{:.1}", s.target),
                    s.after.to_string(),
                    if s.balanced_after { "yes" } else { "no" }.into(),
                ]
            }),
        );
        out.push_str(&format!(
            "\n{} moves, {} rows (lower bound: {} {unit}; tolerance {}%)",
            p.moves.len(),
            p.rows_to_move,
            p.lower_bound,
            p.tolerance_pct
        ));
        if !p.moves.is_empty() {
            out.push('\n');
            out.push_str(&table(
                &["user", "from", "to", "rows"],
                p.moves.iter().take(MOVES_SHOWN).map(|m| {
                    vec![
                        m.user.to_string(),
                        m.from.clone(),
                        m.to.clone(),
                        m.rows.to_string(),
                    ]
                }),
            ));
            if p.moves.len() > MOVES_SHOWN {
                out.push_str(&format!(
                    "\n... and {} more (all of them in --format json or -o)",
                    p.moves.len() - MOVES_SHOWN
                ));
            }
        }
        if let Some(path) = &self.written_to {
            out.push_str(&format!(
                "\nplan written to {path}; apply it with `shardctl rebalance apply {path}`"
            ));
        }
        out
    }
}

fn plan(ctx: &Ctx, args: &RebalancePlanArgs) -> Result<Outcome> {
    let plan = plan_now(ctx, &args.plan)?;
    if let Some(path) = &args.output {
        plan.write(path)?;
    }
    Outcome::of(PlanReport {
        plan,
        written_to: args.output.as_ref().map(|p| p.display().to_string()),
    })
}

impl Report for ApplyReport {
    fn human(&self) -> String {
        let mut out = String::new();
        if self.dry_run {
            out.push_str(&format!(
                "dry run: {} of {} planned moves would run ({} rows); {} already done, {} skipped\n",
                self.would_move, self.planned, self.would_move_rows, self.already_done, self.skipped.len()
            ));
        } else {
            out.push_str(&table(
                &[
                    "moved",
                    "rows",
                    "already done",
                    "skipped",
                    "failed",
                    "seconds",
                    "accounts/s",
                ],
                [vec![
                    self.done.to_string(),
                    self.rows.to_string(),
                    self.already_done.to_string(),
                    self.skipped.len().to_string(),
                    self.failed.len().to_string(),
                    format!("{:.1}", self.seconds),
                    format!("{:.0}", self.accounts_per_second),
                ]],
            ));
            out.push('\n');
            if let Some(longest) = self.longest_read_only_seconds {
                out.push_str(&format!(
                    "{} of {} accounts moved online; the longest read-only: {longest:.3}s\n",
                    self.online, self.done
                ));
            }
        }
        out.push_str(&table(
            &["shard", "state", "users"],
            self.shards
                .iter()
                .map(|s| vec![s.name.clone(), s.state.to_string(), s.users.to_string()]),
        ));
        for s in self.skipped.iter().take(MOVES_SHOWN) {
            out.push_str(&format!(
                "\nskipped user {} ({} -> {}): {}",
                s.user, s.from, s.to, s.reason
            ));
        }
        for f in &self.failed {
            out.push_str(&format!(
                "\nfailed user {} ({} -> {}): {}",
                f.user, f.from, f.to, f.error
            ));
        }
        if self.interrupted {
            out.push_str(&format!(
                "\ninterrupted: {} accounts not started; run the same command again to finish",
                self.left
            ));
        }
        out
    }

    fn exit_code(&self) -> u8 {
        let unfinished = !self.failed.is_empty() || self.left > 0;
        match (unfinished, self.done) {
            (false, _) => exit_codes::OK,
            (true, 0) => exit_codes::FAILED,
            (true, _) => exit_codes::PARTIAL,
        }
    }
}

fn apply(ctx: &Ctx, args: &RebalanceApplyArgs) -> Result<Outcome> {
    let plan = match &args.plan_file {
        Some(path) => PlanFile::read(path)?,
        None => plan_now(ctx, &args.plan)?,
    };
    let cfg = ctx.config()?;
    let opts = apply::Options {
        jobs: args.jobs as usize,
        per_shard: args.per_shard as usize,
        max_lag: args.max_lag,
        lock_ttl: args.lock.lock_ttl.get(),
        dry_run: args.dry_run,
        mode: args.mode,
    };
    crate::signals::catch_termination();
    Outcome::of(apply::apply(
        &cfg,
        &ctx.changes(&cfg),
        &plan,
        &opts,
        &ctx.ui,
    )?)
}

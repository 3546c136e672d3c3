use serde::Serialize;

use crate::cli::ShardCommand;
use crate::commands::Ctx;
use crate::error::Result;
use crate::output::{share_bar, table, Outcome, Report};
use crate::shard::registry::{self, Change, Listed, NewShard};

#[derive(Serialize)]
#[serde(transparent)]
struct ShardList(Vec<Listed>);

impl Report for ShardList {
    fn human(&self) -> String {
        table(
            &[
                "shard", "weight", "state", "users", "share", "target", "", "servers",
            ],
            self.0.iter().map(|s| {
                vec![
                    s.name.clone(),
                    s.weight.to_string(),
                    s.state.to_string(),
                    s.users.to_string(),
                    format!("{:.1}%", s.share * 100.0),
                    format!("{:.1}%", s.target_share * 100.0),
                    format!(
                        "{} {:+.1}",
                        share_bar(s.share, 20),
                        (s.share - s.target_share) * 100.0
                    ),
                    s.servers
                        .iter()
                        .map(|v| {
                            let capacity = v
                                .capacity_qps
                                .map(|c| format!(" ≤{c} q/s"))
                                .unwrap_or_default();
                            format!(
                                "{}:{} {} {}{capacity}",
                                v.addr.host, v.addr.port, v.half, v.status
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                ]
            }),
        )
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Changed(Change);

impl Report for Changed {
    fn human(&self) -> String {
        let Changed(c) = self;
        let verb = match (c.dry_run, c.changed) {
            (true, true) => "would change",
            (true, false) | (false, false) => "unchanged",
            (false, true) => "done",
        };
        format!("{} {}: {verb} {}", c.action, c.shard, c.details)
    }
}

pub fn run(ctx: &Ctx, cmd: ShardCommand) -> Result<Outcome> {
    let cfg = ctx.config()?;
    let mut ring = ctx.ring(&cfg)?;
    let change = match cmd {
        ShardCommand::List => return Outcome::of(ShardList(registry::list(&mut ring)?)),
        ShardCommand::Add(a) => registry::add(
            &cfg,
            &mut ring,
            &NewShard {
                name: &a.name,
                weight: a.weight,
                servers: &a.servers,
                check: !a.no_check,
                dry_run: a.dry_run,
            },
        )?,
        ShardCommand::SetWeight(a) => {
            registry::set_weight(&mut ring, &a.name, a.weight, a.dry_run)?
        }
        ShardCommand::SetState(a) => registry::set_state(&mut ring, &a.name, a.state, a.dry_run)?,
        ShardCommand::SetCapacity(a) => {
            registry::set_capacity(&mut ring, &a.name, &a.servers, a.capacity.0, a.dry_run)?
        }
        ShardCommand::Remove(a) => registry::remove(&mut ring, &a.name, a.dry_run)?,
    };
    Outcome::of(Changed(change))
}

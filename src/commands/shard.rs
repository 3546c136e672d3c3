use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;

use crate::cache;
use crate::cli::{ShardAddArgs, ShardCommand};
use crate::commands::Ctx;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::output::{share_bar, table, Outcome, Report};
use crate::rebalance::balance::{self, Load};
use crate::ring;
use crate::ring::directory::{self, Server};

#[derive(Serialize)]
struct ShardRow {
    name: String,
    weight: f64,
    state: directory::ShardState,
    users: u64,
    /// This shard's fraction of all users.
    share: f64,
    /// The fraction the weights ask for.
    target_share: f64,
    servers: Vec<Server>,
}

#[derive(Serialize)]
#[serde(transparent)]
struct ShardList(Vec<ShardRow>);

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
                            format!("{}:{} {} {}{capacity}", v.host, v.port, v.half, v.status)
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                ]
            }),
        )
    }
}

/// A change to one shard, or the note that there was none.
#[derive(Serialize)]
struct Change {
    shard: String,
    action: &'static str,
    changed: bool,
    dry_run: bool,
    details: serde_json::Value,
}

impl Report for Change {
    fn human(&self) -> String {
        let verb = match (self.dry_run, self.changed) {
            (true, true) => "would change",
            (true, false) | (false, false) => "unchanged",
            (false, true) => "done",
        };
        format!("{} {}: {verb} {}", self.action, self.shard, self.details)
    }
}

pub fn run(ctx: &Ctx, cmd: ShardCommand) -> Result<Outcome> {
    let cfg = ctx.config()?;
    let mut db = ring::open(&cfg)?;
    match cmd {
        ShardCommand::List => Outcome::of(list(&mut db)?),
        ShardCommand::Add(args) => add(&cfg, &mut db, &args),
        ShardCommand::SetWeight(args) => {
            let shard = directory::shard(&mut db, &args.name)?;
            let changed = shard.weight != args.weight.get();
            if changed && !args.dry_run {
                directory::set_weight(&mut db, &args.name, args.weight)?;
                cache::shards_changed(&cfg, &[shard.id]);
            }
            Outcome::of(Change {
                shard: shard.name,
                action: "set-weight",
                changed,
                dry_run: args.dry_run,
                details: json!({ "from": shard.weight, "to": args.weight.get() }),
            })
        }
        ShardCommand::SetState(args) => {
            let shard = directory::shard(&mut db, &args.name)?;
            let changed = shard.state != args.state;
            if changed && !args.dry_run {
                directory::set_state(&mut db, &args.name, args.state)?;
                cache::shards_changed(&cfg, &[shard.id]);
            }
            Outcome::of(Change {
                shard: shard.name,
                action: "set-state",
                changed,
                dry_run: args.dry_run,
                details: json!({ "from": shard.state, "to": args.state }),
            })
        }
        ShardCommand::SetCapacity(args) => {
            let shard = directory::shard(&mut db, &args.name)?;
            if let Some(stranger) = args
                .servers
                .iter()
                .find(|a| !shard.servers.iter().any(|s| s.addr() == **a))
            {
                return Err(Error::NotFound(format!(
                    "{stranger} is not a server of shard `{}`",
                    shard.name
                )));
            }
            let targeted =
                |s: &&Server| args.servers.is_empty() || args.servers.contains(&s.addr());
            let changed = shard
                .servers
                .iter()
                .filter(targeted)
                .any(|s| s.capacity_qps != args.capacity.0);
            if changed && !args.dry_run {
                directory::set_capacity(&mut db, &shard, &args.servers, args.capacity.0)?;
                cache::shards_changed(&cfg, &[shard.id]);
            }
            let servers: Vec<String> = shard
                .servers
                .iter()
                .filter(targeted)
                .map(|s| s.addr().to_string())
                .collect();
            Outcome::of(Change {
                shard: shard.name,
                action: "set-capacity",
                changed,
                dry_run: args.dry_run,
                details: json!({ "capacity_qps": args.capacity.0, "servers": servers }),
            })
        }
        ShardCommand::Remove(args) => {
            let shard = directory::shard(&mut db, &args.name)?;
            let users = directory::user_counts(&mut db)?
                .get(&shard.id)
                .copied()
                .unwrap_or(0);
            if args.dry_run {
                if users > 0 {
                    return Err(Error::Conflict(format!(
                        "shard `{}` still holds {users} users: move them first",
                        shard.name
                    )));
                }
            } else {
                directory::remove_shard(&mut db, &args.name)?;
                cache::shards_changed(&cfg, &[shard.id]);
            }
            Outcome::of(Change {
                shard: shard.name,
                action: "remove",
                changed: true,
                dry_run: args.dry_run,
                details: json!({ "users": users }),
            })
        }
    }
}

fn list(db: &mut Db) -> Result<ShardList> {
    let shards = directory::shards(db)?;
    let counts: HashMap<u32, u64> = directory::user_counts(db)?;
    let loads: Vec<Load> = shards
        .iter()
        .map(|s| Load {
            state: s.state,
            weight: s.weight,
            units: counts.get(&s.id).copied().unwrap_or(0),
        })
        .collect();
    let targets = balance::targets(&loads);
    let total: u64 = loads.iter().map(|l| l.units).sum();
    let active_weight: f64 = loads
        .iter()
        .filter(|l| l.state == directory::ShardState::Active)
        .map(|l| l.weight)
        .sum();
    let frac = |x: f64| if total == 0 { 0.0 } else { x / total as f64 };
    Ok(ShardList(
        shards
            .into_iter()
            .zip(loads.iter().zip(targets))
            .map(|(s, (load, target))| ShardRow {
                share: frac(load.units as f64),
                // With no users yet, the target share still follows the weights.
                target_share: if total == 0
                    && s.state == directory::ShardState::Active
                    && active_weight > 0.0
                {
                    s.weight / active_weight
                } else {
                    frac(target)
                },
                name: s.name,
                weight: s.weight,
                state: s.state,
                users: load.units,
                servers: s.servers,
            })
            .collect(),
    ))
}

fn add(cfg: &Config, db: &mut Db, args: &ShardAddArgs) -> Result<Outcome> {
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = args.servers.iter().find(|s| !seen.insert(*s)) {
        return Err(Error::Usage(format!("server {dup} is given twice")));
    }
    if !args.no_check {
        for s in &args.servers {
            crate::shard::check_schema(cfg, s)?;
        }
    }
    let halves: Vec<String> = args
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{s} half {}", if i % 2 == 0 { "a" } else { "b" }))
        .collect();
    let changed = if args.dry_run {
        if directory::shards(db)?
            .iter()
            .any(|s| s.name == args.name.as_str())
        {
            return Err(Error::Conflict(format!(
                "a shard named `{}` already exists",
                args.name
            )));
        }
        true
    } else {
        // With the write guard on, a new shard gets it before it can take a user.
        crate::shard::guard::install_on(cfg, &args.servers)?;
        let id = directory::add_shard(db, &args.name, args.weight, &args.servers)?;
        // With the home guard on, each server learns which users' writes it takes.
        if crate::shard::home::enabled(cfg) {
            let added = directory::shard(db, &args.name)?;
            if let Some(Err(e)) = crate::shard::handover::to_ring(
                cfg,
                std::slice::from_ref(&added),
                std::time::Duration::from_secs(30),
            )
            .pop()
            {
                return Err(Error::Failed(format!(
                    "shard `{}` was added, but its servers' home guard rules were not settled ({e}): run `shardctl guard install`",
                    args.name
                )));
            }
        }
        cache::shards_changed(cfg, &[id]);
        true
    };
    Outcome::of(Change {
        shard: args.name.to_string(),
        action: "add",
        changed,
        dry_run: args.dry_run,
        details: json!({ "weight": args.weight.get(), "servers": halves }),
    })
}

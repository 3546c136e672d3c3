//! The shard verbs' rules: what each change would change, what a dry run reports, when a
//! removal is refused, and the list with each shard's share against the share its weight asks
//! for. The command layer only translates arguments and renders what these return.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::rebalance::balance::{self, Load};
use crate::ring::directory::{self, Half, Server, ShardState};
use crate::ring::Ring;
use crate::shard::{guard, handover, home};
use crate::types::{HostPort, ShardName, Weight};

/// One shard as `shard list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    pub name: String,
    pub weight: f64,
    pub state: ShardState,
    pub users: u64,
    /// This shard's fraction of all users.
    pub share: f64,
    /// The fraction the weights ask for.
    pub target_share: f64,
    pub servers: Vec<Server>,
}

/// A change to one shard, or the note that there was none.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub shard: String,
    pub action: &'static str,
    pub changed: bool,
    pub dry_run: bool,
    pub details: serde_json::Value,
}

/// Every shard with its users, its share and the share its weight asks for.
pub fn list(db: &mut Db) -> Result<Vec<Listed>> {
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
        .filter(|l| l.state == ShardState::Active)
        .map(|l| l.weight)
        .sum();
    let frac = |x: f64| if total == 0 { 0.0 } else { x / total as f64 };
    Ok(shards
        .into_iter()
        .zip(loads.iter().zip(targets))
        .map(|(s, (load, target))| Listed {
            share: frac(load.units as f64),
            // With no users yet, the target share still follows the weights.
            target_share: if total == 0 && s.state == ShardState::Active && active_weight > 0.0 {
                s.weight / active_weight
            } else {
                frac(target)
            },
            name: s.name.to_string(),
            weight: s.weight,
            state: s.state,
            users: load.units,
            servers: s.servers,
        })
        .collect())
}

/// What `shard add` registers.
pub struct NewShard<'a> {
    pub name: &'a ShardName,
    pub weight: Weight,
    /// Halves a, b, a, ... in order.
    pub servers: &'a [HostPort],
    /// Check first that every server answers and holds the shard database.
    pub check: bool,
    pub dry_run: bool,
}

/// Registers a shard. With the write guard on, its servers get it before the shard can take a
/// user; with the home guard on, each server learns which users' writes it takes.
pub fn add(cfg: &Config, ring: &mut Ring, new: &NewShard) -> Result<Change> {
    let mut seen = HashSet::new();
    if let Some(dup) = new.servers.iter().find(|s| !seen.insert(*s)) {
        return Err(Error::Usage(format!("server {dup} is given twice")));
    }
    if new.check {
        for s in new.servers {
            super::check_schema(cfg, s)?;
        }
    }
    let halves: Vec<String> = new
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let half = if i % 2 == 0 { Half::A } else { Half::B };
            format!("{s} half {half}")
        })
        .collect();
    let change = Change {
        shard: new.name.to_string(),
        action: "add",
        changed: true,
        dry_run: new.dry_run,
        details: json!({ "weight": new.weight.get(), "servers": halves }),
    };
    if new.dry_run {
        if directory::shards(ring)?
            .iter()
            .any(|s| s.name == new.name.as_str())
        {
            return Err(Error::Conflict(format!(
                "a shard named `{}` already exists",
                new.name
            )));
        }
        return Ok(change);
    }
    guard::install_on(cfg, new.servers)?;
    directory::add_shard(ring, new.name, new.weight, new.servers)?;
    if home::enabled(cfg) {
        let added = directory::shard(ring, new.name)?;
        if let Some(Err(e)) =
            handover::to_ring(cfg, std::slice::from_ref(&added), Duration::from_secs(30)).pop()
        {
            return Err(Error::Failed(format!(
                "shard `{}` was added, but its servers' home guard rules were not settled ({e}): run `shardctl guard install`",
                new.name
            )));
        }
    }
    Ok(change)
}

pub fn set_weight(
    ring: &mut Ring,
    name: &ShardName,
    weight: Weight,
    dry_run: bool,
) -> Result<Change> {
    let shard = directory::shard(ring, name)?;
    let changed = shard.weight != weight.get();
    if changed && !dry_run {
        directory::set_weight(ring, name, weight)?;
    }
    Ok(Change {
        shard: shard.name.to_string(),
        action: "set-weight",
        changed,
        dry_run,
        details: json!({ "from": shard.weight, "to": weight.get() }),
    })
}

pub fn set_state(
    ring: &mut Ring,
    name: &ShardName,
    state: ShardState,
    dry_run: bool,
) -> Result<Change> {
    let shard = directory::shard(ring, name)?;
    let changed = shard.state != state;
    if changed && !dry_run {
        directory::set_state(ring, name, state)?;
    }
    Ok(Change {
        shard: shard.name.to_string(),
        action: "set-state",
        changed,
        dry_run,
        details: json!({ "from": shard.state, "to": state }),
    })
}

/// Sets the capacity of `servers` of the shard (all of them when empty); None clears it.
pub fn set_capacity(
    ring: &mut Ring,
    name: &ShardName,
    servers: &[HostPort],
    capacity_qps: Option<f64>,
    dry_run: bool,
) -> Result<Change> {
    let shard = directory::shard(ring, name)?;
    if let Some(stranger) = servers
        .iter()
        .find(|a| !shard.servers.iter().any(|s| s.addr == **a))
    {
        return Err(Error::NotFound(format!(
            "{stranger} is not a server of shard `{}`",
            shard.name
        )));
    }
    let targeted = |s: &&Server| servers.is_empty() || servers.contains(&s.addr);
    let changed = shard
        .servers
        .iter()
        .filter(targeted)
        .any(|s| s.capacity_qps != capacity_qps);
    if changed && !dry_run {
        directory::set_capacity(ring, &shard, servers, capacity_qps)?;
    }
    let targets: Vec<String> = shard
        .servers
        .iter()
        .filter(targeted)
        .map(|s| s.addr.to_string())
        .collect();
    Ok(Change {
        shard: shard.name.to_string(),
        action: "set-capacity",
        changed,
        dry_run,
        details: json!({ "capacity_qps": capacity_qps, "servers": targets }),
    })
}

/// Removes a shard that holds no users; a dry run refuses as the real one would.
pub fn remove(ring: &mut Ring, name: &ShardName, dry_run: bool) -> Result<Change> {
    let shard = directory::shard(ring, name)?;
    let users = directory::user_counts(ring)?
        .get(&shard.id)
        .copied()
        .unwrap_or(0);
    if dry_run {
        if users > 0 {
            return Err(Error::Conflict(format!(
                "shard `{}` still holds {users} users: move them first",
                shard.name
            )));
        }
    } else {
        directory::remove_shard(ring, name)?;
    }
    Ok(Change {
        shard: shard.name.to_string(),
        action: "remove",
        changed: true,
        dry_run,
        details: json!({ "users": users }),
    })
}

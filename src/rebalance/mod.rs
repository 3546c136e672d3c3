//! Rebalancing: reading the directory's loads, planning (pure, in `plan`), the plan file, and
//! applying it (`apply`, with the pure scheduling in `schedule`).

pub mod apply;
pub mod balance;
pub mod plan;
pub mod schedule;

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::parallel;
use crate::ring::directory::{self, Shard, ShardState};
use crate::shard::routing;
use crate::types::ShardName;
use plan::{Account, By, Params, ShardLoad};

/// The plan file's format version.
pub const PLAN_VERSION: u32 = 1;

/// A planned move (PRODUCT.md 3b: `user`, `from`, `to` are pinned).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlannedMove {
    pub user: u64,
    pub from: String,
    pub to: String,
    /// The account's rows when planned (0 if unknown).
    #[serde(default)]
    pub rows: u64,
}

/// A shard as the plan saw it, and what the plan makes of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedShard {
    pub name: String,
    pub state: ShardState,
    pub weight: f64,
    pub users: u64,
    pub rows: u64,
    /// In the plan's unit (`by`): now, the target, and after the moves.
    pub now: u64,
    pub target: f64,
    pub after: u64,
    pub balanced_after: bool,
}

/// The plan document: printed by `rebalance plan`, written by `-o`, read by `apply`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanFile {
    pub version: u32,
    pub created_at: String,
    pub by: By,
    pub tolerance_pct: f64,
    /// The fewest units (users or rows) that must move to balance within the tolerance.
    pub lower_bound: u64,
    pub shards: Vec<PlannedShard>,
    pub moves: Vec<PlannedMove>,
    pub rows_to_move: u64,
}

impl PlanFile {
    /// Reads and checks a plan file: a malformed one is a usage error and changes nothing.
    pub fn read(path: &Path) -> Result<PlanFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("cannot read plan file {}: {e}", path.display())))?;
        let plan: PlanFile = serde_json::from_str(&text).map_err(|e| {
            Error::Usage(format!(
                "plan file {} is not a valid plan: {e}",
                path.display()
            ))
        })?;
        plan.check()
            .map_err(|e| Error::Usage(format!("plan file {}: {e}", path.display())))?;
        Ok(plan)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.version != PLAN_VERSION {
            return Err(format!(
                "version {} is not supported (this shardctl reads version {PLAN_VERSION})",
                self.version
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for m in &self.moves {
            for name in [&m.from, &m.to] {
                name.parse::<ShardName>()
                    .map_err(|e| format!("move of user {}: {e}", m.user))?;
            }
            if m.from == m.to {
                return Err(format!("user {} moves from {} to itself", m.user, m.from));
            }
            if !seen.insert(m.user) {
                return Err(format!("user {} is moved twice", m.user));
            }
        }
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Failed(format!("encoding the plan: {e}")))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))
    }
}

/// Rows per user on one shard (any of its servers that answers), over every per-user table.
fn rows_per_user(cfg: &Config, shard: &Shard) -> Result<HashMap<u64, u64>> {
    let servers = routing::candidates(0, &shard.servers)
        .into_iter()
        .map(|s| s.addr.clone());
    crate::shard::first_answering(&shard.name, servers, |addr| {
        let mut db = crate::shard::connect(cfg, addr)?;
        let mut rows: HashMap<u64, u64> = HashMap::new();
        for t in &cfg.shards.tables {
            let counts: Vec<(u64, u64)> = db
                .exec(
                    "counting rows per user",
                    &format!(
                        "SELECT {0}, COUNT(*) FROM {1} GROUP BY {0}",
                        t.owner_column.quoted(),
                        t.name.quoted()
                    ),
                    (),
                )
                .map_err(|e| t.explain(e))?;
            for (u, n) in counts {
                *rows.entry(u).or_default() += n;
            }
        }
        Ok(rows)
    })
}

/// The directory's shards with their active users and each user's rows (counted on every
/// shard in parallel). Users in the middle of a migration are left out: they are not movable.
pub fn gather(cfg: &Config, ring: &mut Db) -> Result<(Vec<Shard>, Vec<ShardLoad>)> {
    let shards = directory::shards(ring)?;
    let users: Vec<(u64, u32)> = ring.exec(
        "reading the directory",
        "SELECT user_id, shard_id FROM users WHERE state = 'active'",
        (),
    )?;
    let rows = parallel::each(&shards, |shard| rows_per_user(cfg, shard));
    let index: HashMap<u32, usize> = shards.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let mut loads: Vec<ShardLoad> = shards
        .iter()
        .map(|s| ShardLoad {
            name: s.name.to_string(),
            state: s.state,
            weight: s.weight,
            accounts: Vec::new(),
        })
        .collect();
    let rows: Vec<HashMap<u64, u64>> = rows.into_iter().collect::<Result<_>>()?;
    for (user, shard_id) in users {
        if let Some(&i) = index.get(&shard_id) {
            loads[i].accounts.push(Account {
                user,
                rows: rows[i].get(&user).copied().unwrap_or(0),
            });
        }
    }
    Ok((shards, loads))
}

/// Plans from the loads, as the plan document.
pub fn make_plan(loads: &[ShardLoad], params: &Params) -> PlanFile {
    let p = plan::plan(loads, params);
    let shards = loads
        .iter()
        .zip(&p.shards)
        .map(|(l, o)| PlannedShard {
            name: l.name.clone(),
            state: l.state,
            weight: l.weight,
            users: l.accounts.len() as u64,
            rows: l.accounts.iter().map(|a| a.rows).sum(),
            now: o.now,
            target: (o.target * 100.0).round() / 100.0,
            after: o.after,
            balanced_after: o.balanced(),
        })
        .collect();
    let moves: Vec<PlannedMove> = p
        .moves
        .iter()
        .map(|m| PlannedMove {
            user: m.user,
            from: loads[m.from].name.clone(),
            to: loads[m.to].name.clone(),
            rows: m.rows,
        })
        .collect();
    PlanFile {
        version: PLAN_VERSION,
        created_at: now_utc(),
        by: params.by,
        tolerance_pct: params.tolerance_pct,
        lower_bound: p.lower_bound,
        rows_to_move: moves.iter().map(|m| m.rows).sum(),
        shards,
        moves,
    }
}

/// The current time as RFC 3339 UTC.
fn now_utc() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

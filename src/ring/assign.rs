//! Placing new users on active shards by weight.
//!
//! Each batch is one transaction. The fast path is one multi-row INSERT (as fast as a plain
//! INSERT of the same rows); only when it meets a duplicate key does the batch fall back to
//! locking and reading the users that already exist, so a second run over the same file changes
//! nothing and reports every user as existing.

use std::collections::{BTreeMap, HashSet};

use indicatif::ProgressBar;
use serde_json::json;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::placement::WeightedChooser;
use crate::ring::{audit, directory};

/// Rows per INSERT: large enough to amortise the round trip, far below 65,535 placeholders.
pub const BATCH: usize = 5000;

#[derive(Debug, Default)]
pub struct Assignment {
    /// (user, shard id) newly placed.
    pub assigned: Vec<(u64, u32)>,
    /// (user, shard id) already placed before; left alone.
    pub existing: Vec<(u64, u32)>,
}

/// Places `ids` on the active shards. Duplicates within `ids` are placed once.
pub fn assign(
    db: &mut Db,
    ids: &[u64],
    seed: Option<u64>,
    progress: &ProgressBar,
) -> Result<Assignment> {
    let weights: Vec<(u32, f64)> = db.exec(
        "reading active shards",
        "SELECT shard_id, weight FROM shards WHERE state = 'active' ORDER BY shard_id",
        (),
    )?;
    let mut chooser = WeightedChooser::new(&weights, seed).ok_or_else(|| {
        Error::Conflict(
            "no active shard to place users on: add one with `shardctl shard add`".into(),
        )
    })?;
    let mut result = Assignment::default();
    for chunk in ids.chunks(BATCH) {
        let mut seen = HashSet::with_capacity(chunk.len());
        let batch: Vec<u64> = chunk
            .iter()
            .copied()
            .filter(|id| seen.insert(*id))
            .collect();
        let rows: Vec<(u64, u32)> = batch.iter().map(|id| (*id, chooser.choose())).collect();
        let fast = db.run("assigning users", |c| {
            let mut tx = c.start_transaction(mysql::TxOpts::default())?;
            match directory::insert_users(&mut tx, &rows) {
                Ok(()) => tx.commit().map(|_| true),
                Err(e) if directory::is_duplicate(&e) => tx.rollback().map(|_| false),
                Err(e) => Err(e),
            }
        })?;
        if fast {
            result.assigned.extend_from_slice(&rows);
        } else {
            let (new, old) = db.transaction("assigning users", |tx| {
                let old = directory::existing_users(tx, &batch)?;
                let taken: HashSet<u64> = old.iter().map(|(u, _)| *u).collect();
                let new: Vec<(u64, u32)> = rows
                    .iter()
                    .copied()
                    .filter(|(u, _)| !taken.contains(u))
                    .collect();
                directory::insert_users(tx, &new)?;
                Ok((new, old))
            })?;
            result.assigned.extend(new);
            result.existing.extend(old);
        }
        progress.inc(chunk.len() as u64);
    }
    if !result.assigned.is_empty() {
        let mut per_shard: BTreeMap<u32, u64> = BTreeMap::new();
        for (_, s) in &result.assigned {
            *per_shard.entry(*s).or_default() += 1;
        }
        db.run("auditing", |c| {
            audit::record(
                c,
                "user.assign",
                &format!("{} users", result.assigned.len()),
                json!({ "assigned": result.assigned.len(), "existing": result.existing.len(),
                        "per_shard_id": per_shard, "seed": seed }),
            )
        })?;
    }
    Ok(result)
}

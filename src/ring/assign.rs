//! Placing new users on active shards by weight.
//!
//! Each batch is one transaction, audited inside it. The fast path is one multi-row INSERT (as fast as a plain
//! INSERT of the same rows); only when it meets a duplicate key does the batch fall back to
//! locking and reading the users that already exist, so a second run over the same file changes
//! nothing and reports every user as existing.

use std::collections::{BTreeMap, HashSet};

use indicatif::ProgressBar;
use serde_json::json;

use crate::db::retry_deadlocks;
use crate::error::{Error, Result};
use crate::ring::placement::WeightedChooser;
use crate::ring::{audit, directory, Changed, Ring};

/// Rows per INSERT: large enough to amortise the round trip, far below 65,535 placeholders.
pub const BATCH: usize = 5000;

#[derive(Debug, Default)]
pub struct Assignment {
    /// (user, shard id) newly placed.
    pub assigned: Vec<(u64, u32)>,
    /// (user, shard id) already placed before; left alone.
    pub existing: Vec<(u64, u32)>,
    /// The error that stopped the run after some batches had committed: those stand (and are
    /// in the output and the audit log); the rest were not placed.
    pub stopped: Option<Error>,
}

/// Places `ids` on the active shards. Duplicates within `ids` are placed once. Each batch is
/// one transaction with its own audit row, so what committed is always audited; a deadlock
/// (two runs over the same ids) is retried.
pub fn assign(
    db: &mut Ring,
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
        match retry_deadlocks(|| assign_batch(db, &batch, &rows, seed)) {
            Ok((new, old)) => {
                result.assigned.extend(new);
                result.existing.extend(old);
            }
            Err(e) if result.assigned.is_empty() && result.existing.is_empty() => return Err(e),
            Err(e) => {
                result.stopped = Some(e);
                break;
            }
        }
        progress.inc(chunk.len() as u64);
    }
    Ok(result)
}

/// (user, shard id) pairs.
type Placed = Vec<(u64, u32)>;

/// One batch in one transaction: the users inserted (keys in ascending order, so two runs
/// over the same ids lock rows in the same order), and an audit row for what it placed.
/// Returns (placed, already there).
fn assign_batch(
    db: &mut Ring,
    batch: &[u64],
    rows: &[(u64, u32)],
    seed: Option<u64>,
) -> Result<(Placed, Placed)> {
    let mut sorted = rows.to_vec();
    sorted.sort_unstable();
    let audit_row = |c: &mut mysql::Transaction, new: &[(u64, u32)], existing: usize| {
        if new.is_empty() {
            return Ok(());
        }
        let mut per_shard: BTreeMap<u32, u64> = BTreeMap::new();
        for (_, s) in new {
            *per_shard.entry(*s).or_default() += 1;
        }
        audit::record(
            c,
            "user.assign",
            &format!("{} users", new.len()),
            json!({ "assigned": new.len(), "existing": existing, "per_shard_id": per_shard,
                    "seed": seed, "first": new.first().map(|r| r.0), "last": new.last().map(|r| r.0) }),
        )
    };
    let placed = |rows: &[(u64, u32)]| Changed::users(rows.iter().map(|r| r.0).collect());
    let fast = db.write_if("assigning users", |tx| {
        match directory::insert_users(tx, &sorted) {
            Ok(()) => {
                audit_row(tx, &sorted, 0)?;
                Ok(Some(((), placed(&sorted))))
            }
            Err(e) if crate::error::kind_of(&e) == crate::error::DbErrorKind::Duplicate => Ok(None),
            Err(e) => Err(e),
        }
    })?;
    if fast.is_some() {
        return Ok((rows.to_vec(), Vec::new()));
    }
    db.write("assigning users", |tx| {
        let old = directory::existing_users(tx, batch)?;
        let taken: HashSet<u64> = old.iter().map(|(u, _)| *u).collect();
        let new: Vec<(u64, u32)> = sorted
            .iter()
            .copied()
            .filter(|(u, _)| !taken.contains(u))
            .collect();
        directory::insert_users(tx, &new)?;
        audit_row(tx, &new, old.len())?;
        let changed = placed(&new);
        Ok(((new, old), changed))
    })
}

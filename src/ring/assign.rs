//! Placing new users on active shards by weight.
//!
//! Each batch is one transaction, audited inside it. The fast path is one multi-row INSERT (as fast as a plain
//! INSERT of the same rows); only when it meets a duplicate key does the batch fall back to
//! locking and reading the users that already exist, so a second run over the same file changes
//! nothing and reports every user as existing.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use indicatif::ProgressBar;
use mysql::prelude::Queryable;
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
    let mut chooser = chooser(db, seed)?;
    let mut result = Assignment::default();
    for chunk in ids.chunks(BATCH) {
        let mut seen = HashSet::with_capacity(chunk.len());
        let batch: Vec<u64> = chunk
            .iter()
            .copied()
            .filter(|id| seen.insert(*id))
            .collect();
        crate::failpoint!("assign.before_batch");
        let mut rows: Vec<(u64, u32)> = batch.iter().map(|id| (*id, chooser.choose())).collect();
        let mut placed = retry_deadlocks(|| assign_batch(db, &batch, &rows, seed));
        // A shard chosen was removed or left `active` since the weights were read: choose
        // again among the shards active now (at most a few times: each round is one change).
        for _ in 0..5 {
            if !matches!(placed, Ok(Batch::ShardsChanged)) {
                break;
            }
            chooser = self::chooser(db, seed)?;
            rows = batch.iter().map(|id| (*id, chooser.choose())).collect();
            placed = retry_deadlocks(|| assign_batch(db, &batch, &rows, seed));
        }
        let placed = match placed {
            Ok(Batch::ShardsChanged) => Err(Error::Conflict(
                "the active shards kept changing while users were placed; run again".into(),
            )),
            Ok(Batch::Placed(new, old)) => Ok((new, old)),
            Err(e) => Err(e),
        };
        match placed {
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

/// A chooser over the shards active now, by weight.
fn chooser(db: &mut Ring, seed: Option<u64>) -> Result<WeightedChooser<u32>> {
    let weights: Vec<(u32, f64)> = db.exec(
        "reading active shards",
        "SELECT shard_id, weight FROM shards WHERE state = 'active' ORDER BY shard_id",
        (),
    )?;
    WeightedChooser::new(&weights, seed).ok_or_else(|| {
        Error::Conflict(
            "no active shard to place users on: add one with `shardctl shard add`".into(),
        )
    })
}

/// (user, shard id) pairs.
type Placed = Vec<(u64, u32)>;

/// How one batch ended.
enum Batch {
    /// (placed now, placed before).
    Placed(Placed, Placed),
    /// A shard the batch chose is no longer registered and active: nothing was placed.
    ShardsChanged,
}

/// Whether every shard `rows` chose is still registered and active, share-locking their rows
/// until the transaction ends: `shard remove` (which locks the row for update) and
/// `shard set-state` wait for the batch, and a batch after them sees what they did.
fn chosen_still_active(tx: &mut mysql::Transaction, rows: &[(u64, u32)]) -> mysql::Result<bool> {
    let chosen: BTreeSet<u32> = rows.iter().map(|r| r.1).collect();
    if chosen.is_empty() {
        return Ok(true);
    }
    let ids: Vec<u32> = chosen.iter().copied().collect();
    let active: Vec<u32> = tx.exec(
        format!(
            "SELECT shard_id FROM shards WHERE shard_id IN ({}) AND state = 'active' LOCK IN SHARE MODE",
            crate::db::placeholders(ids.len())
        ),
        ids,
    )?;
    Ok(active.len() == chosen.len())
}

/// One batch in one transaction: the users inserted (keys in ascending order, so two runs
/// over the same ids lock rows in the same order), and an audit row for what it placed.
/// Returns (placed, already there).
fn assign_batch(
    db: &mut Ring,
    batch: &[u64],
    rows: &[(u64, u32)],
    seed: Option<u64>,
) -> Result<Batch> {
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
    let changed_shards = std::cell::Cell::new(false);
    let fast = db.write_if("assigning users", |tx| {
        if !chosen_still_active(tx, &sorted)? {
            changed_shards.set(true);
            return Ok(None);
        }
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
        return Ok(Batch::Placed(rows.to_vec(), Vec::new()));
    }
    if changed_shards.get() {
        return Ok(Batch::ShardsChanged);
    }
    db.write("assigning users", |tx| {
        if !chosen_still_active(tx, &sorted)? {
            return Ok((Batch::ShardsChanged, Changed::default()));
        }
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
        Ok((Batch::Placed(new, old), changed))
    })
}

//! The ring's lock fences, for the ZooKeeper backend: the highest token granted for each
//! account lock, raised by every grant before its holder does anything.
//!
//! With the `mysql` backend the directory changes of a move check, in their own transaction,
//! that the mover's lease row is still current, and a taker-over must delete that row: the two
//! are serialized by its row lock. ZooKeeper's lease cannot take part in a ring transaction, so
//! the ring keeps this fence instead: a directory change raises and checks it in its
//! transaction, and a new holder raises it at its grant, waiting for a change under way to
//! commit; after that, the old holder's next change finds a higher token and is refused.

use mysql::prelude::Queryable;

use crate::db::row_placeholders;
use crate::types::LockName;

/// A lock grant as the fences know it.
pub type Grant<'a> = (&'a LockName, u64);

fn params(grants: &[Grant]) -> Vec<mysql::Value> {
    grants
        .iter()
        .flat_map(|(name, token)| [name.as_str().into(), (*token).into()])
        .collect()
}

/// Raises each lock's fence to its grant's token (never lowers one).
pub fn raise(conn: &mut impl Queryable, grants: &[Grant]) -> mysql::Result<()> {
    if grants.is_empty() {
        return Ok(());
    }
    let values = vec!["(?, ?, UTC_TIMESTAMP(6))"; grants.len()].join(", ");
    conn.exec_drop(
        format!(
            "INSERT INTO lock_fences (name, token, updated_at) VALUES {values}
             ON DUPLICATE KEY UPDATE updated_at = IF(VALUES(token) > token, VALUES(updated_at), updated_at),
                                     token = GREATEST(token, VALUES(token))"
        ),
        params(grants),
    )
}

/// The names of the grants that are their lock's highest token (locking those fence rows).
pub fn current(conn: &mut impl Queryable, grants: &[Grant]) -> mysql::Result<Vec<String>> {
    if grants.is_empty() {
        return Ok(Vec::new());
    }
    conn.exec(
        format!(
            "SELECT name FROM lock_fences WHERE (name, token) IN ({}) FOR UPDATE",
            row_placeholders(grants.len(), 2)
        ),
        params(grants),
    )
}

/// The error code a fenced write is refused with (no server uses it): `Error::db` turns it
/// into `LockLost`.
pub const FENCED: u16 = 65_001;

/// A holder's claim on what it writes: its lock and token.
#[derive(Clone, Debug)]
pub struct Fence {
    pub name: LockName,
    pub token: u64,
    /// The holder's keeper: a transaction commits only while it still proves the lock held.
    pub proof: Option<crate::lock::keeper::Proof>,
}

/// Inside a ring transaction, before its writes: holds the lock's fence row until the commit
/// (a successor raising it waits for this transaction) and refuses when a higher token has
/// raised it since (the writer lost its lock to a successor).
pub fn hold(conn: &mut impl Queryable, fence: &Fence) -> mysql::Result<()> {
    let current: Option<u64> = conn.exec_first(
        "SELECT token FROM lock_fences WHERE name = ? FOR UPDATE",
        (fence.name.as_str(),),
    )?;
    if current == Some(fence.token) {
        return Ok(());
    }
    Err(mysql::Error::MySqlError(mysql::MySqlError {
        state: "45000".into(),
        code: FENCED,
        message: format!(
            "lock {} token {} is no longer current (the fence holds {}): a successor holds it; nothing written",
            fence.name,
            fence.token,
            current.map_or("nothing".to_string(), |t| t.to_string())
        ),
    }))
}

/// Last, just before the commit: refuses (the transaction rolls back) when the holder can no
/// longer prove it holds the lock — frozen after `hold`, and woken past its lease. Its
/// successor, raising the fence, waited for this transaction and sees nothing of it.
pub fn still_proven(fence: Option<&Fence>) -> mysql::Result<()> {
    match fence.and_then(|f| f.proof.as_ref().map(|p| (f, p))) {
        Some((f, p)) if !p.holds() => Err(mysql::Error::MySqlError(mysql::MySqlError {
            state: "45000".into(),
            code: FENCED,
            message: format!(
                "lock {} token {} is no longer proven held (its lease may have run out while this \
                 transaction was open); rolled back, nothing written",
                f.name, f.token
            ),
        })),
        _ => Ok(()),
    }
}

/// Whether the holder of `fence` (if any) still proves it holds the lock.
pub fn proven(fence: Option<&Fence>) -> bool {
    fence
        .and_then(|f| f.proof.as_ref())
        .is_none_or(|p| p.holds())
}

/// `hold` for an optional fence.
pub fn hold_if(conn: &mut impl Queryable, fence: Option<&Fence>) -> mysql::Result<()> {
    fence.map_or(Ok(()), |f| hold(conn, f))
}

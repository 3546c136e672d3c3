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

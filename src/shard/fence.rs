//! The fence on every shard server: the highest lock token that has written for each user.
//! Every write of a move is a transaction that first checks it, so a holder that lost its lock
//! (paused past its lease, then woken) cannot write a single chunk afterwards; a newer holder
//! ends the stale holder's registered sessions before it writes.

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};

use crate::db::{placeholders, values, Db};
use crate::error::{Error, Result};
use crate::types::HostPort;

/// The fence table on every shard: the highest lock token that has written for each user.
const FENCE: &str = "shardctl_fence";
/// The connections writing for a user under a token, so a newer holder can end a stale
/// holder's open transactions (a paused process keeps them, and their locks, open).
const SESSIONS: &str = "shardctl_fence_sessions";

/// A registered session that may still be writing: alive now, logged in as we are, and not
/// this one. Connection ids start again at 1 when a server restarts: a row left from before
/// may name this session, or an application's, which must not be killed.
const LIVE: &str = "connection_id <> CONNECTION_ID()
     AND connection_id IN (SELECT ID FROM information_schema.PROCESSLIST
                           WHERE USER = SUBSTRING_INDEX(USER(), '@', 1))";

/// Creates the fence tables if they are missing.
pub fn ensure_fence(db: &mut Db) -> Result<()> {
    db.query_drop(
        "creating the fence table",
        &format!(
            "CREATE TABLE IF NOT EXISTS {FENCE} (
                user_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
                token BIGINT UNSIGNED NOT NULL,
                updated_at DATETIME(6) NOT NULL
            ) ENGINE=InnoDB"
        ),
    )?;
    db.query_drop(
        "creating the fence sessions table",
        &format!(
            "CREATE TABLE IF NOT EXISTS {SESSIONS} (
                user_id BIGINT UNSIGNED NOT NULL,
                server_id INT UNSIGNED NOT NULL,
                connection_id BIGINT UNSIGNED NOT NULL,
                token BIGINT UNSIGNED NOT NULL,
                PRIMARY KEY (user_id, server_id, connection_id)
            ) ENGINE=InnoDB"
        ),
    )
}

/// Records a writing connection of `user` under `token`.
pub fn register(conn: &mut Conn, server: &HostPort, user: u64, token: u64) -> Result<()> {
    conn.exec_drop(
        format!("INSERT IGNORE INTO {SESSIONS} (user_id, server_id, connection_id, token) VALUES (?, @@server_id, CONNECTION_ID(), ?)"),
        (user, token),
    )
    .map_err(|e| Error::db(&server.to_string(), "registering the session", e))
}

pub fn unregister(conn: &mut Conn, user: u64) {
    let _ = conn.exec_drop(
        format!("DELETE FROM {SESSIONS} WHERE user_id = ? AND server_id = @@server_id AND connection_id = CONNECTION_ID()"),
        (user,),
    );
}

/// Raises the user's fence to `token`; fails with `LockLost` if a newer token is already there.
/// Older holders' connections on this server are ended first, so their open transactions (and
/// the locks they hold) cannot make us wait; their later chunks then fail the fence check.
pub fn raise_fence(db: &mut Db, user: u64, token: u64) -> Result<()> {
    ensure_fence(db)?;
    let stale: Vec<u64> = db.exec(
        "finding stale sessions",
        &format!("SELECT connection_id FROM {SESSIONS} WHERE user_id = ? AND token < ? AND server_id = @@server_id AND {LIVE}"),
        (user, token),
    )?;
    for id in &stale {
        db.kill_connection("ending a stale session", *id)?;
    }
    db.exec_drop(
        "forgetting stale sessions",
        &format!(
            "DELETE FROM {SESSIONS} WHERE user_id = ? AND token < ? AND server_id = @@server_id"
        ),
        (user, token),
    )?;
    let current: Option<u64> = db.transaction("raising the fence", |tx| {
        tx.exec_drop(
            format!(
                "INSERT INTO {FENCE} (user_id, token, updated_at) VALUES (?, ?, UTC_TIMESTAMP(6))
                 ON DUPLICATE KEY UPDATE token = GREATEST(token, VALUES(token)), updated_at = VALUES(updated_at)"
            ),
            (user, token),
        )?;
        tx.exec_first(format!("SELECT token FROM {FENCE} WHERE user_id = ?"), (user,))
    })?;
    match current {
        Some(t) if t == token => Ok(()),
        other => Err(fenced_out(&db.server, user, token, other)),
    }
}

pub fn fenced_out(server: &HostPort, user: u64, token: u64, fence: Option<u64>) -> Error {
    Error::LockLost(format!(
        "fenced out on {server}: user {user}'s fence carries token {}, ours is {token}; a newer lock holder took over",
        fence.map(|t| t.to_string()).unwrap_or_else(|| "none".into())
    ))
}

/// Runs `f` in a transaction after checking the fence still carries `token`.
pub fn fenced<T>(
    conn: &mut Conn,
    server: &HostPort,
    user: u64,
    token: u64,
    f: impl FnOnce(&mut mysql::Transaction) -> mysql::Result<T>,
) -> Result<T> {
    fenced_checked(conn, server, user, token, |tx| f(tx).map(Ok))
}

/// Runs `f` in a transaction after checking the fence still carries `token`; where `f` finds
/// the data not as expected (`Err(why)`), everything is rolled back and the write fails.
pub fn fenced_checked<T>(
    conn: &mut Conn,
    server: &HostPort,
    user: u64,
    token: u64,
    f: impl FnOnce(&mut mysql::Transaction) -> mysql::Result<std::result::Result<T, String>>,
) -> Result<T> {
    let mut tx = conn
        .start_transaction(TxOpts::default())
        .map_err(|e| Error::db(&server.to_string(), "starting a chunk", e))?;
    let fence: Option<u64> = tx
        .exec_first(
            format!("SELECT token FROM {FENCE} WHERE user_id = ? LOCK IN SHARE MODE"),
            (user,),
        )
        .map_err(|e| Error::db(&server.to_string(), "checking the fence", e))?;
    if fence != Some(token) {
        let _ = tx.rollback();
        return Err(fenced_out(server, user, token, fence));
    }
    match f(&mut tx).map_err(|e| Error::db(&server.to_string(), "writing a chunk", e))? {
        Ok(v) => {
            tx.commit()
                .map_err(|e| Error::db(&server.to_string(), "committing a chunk", e))?;
            Ok(v)
        }
        Err(why) => {
            let _ = tx.rollback();
            Err(Error::Failed(format!(
                "{server}: {why}; nothing of it was written"
            )))
        }
    }
}

/// Raises each user's fence to its token, as `raise_fence` does for one: stale holders'
/// sessions on this server are ended first. `LockLost` if any fence carries a newer token.
pub fn raise_fences(db: &mut Db, tokens: &[(u64, u64)]) -> Result<()> {
    if tokens.is_empty() {
        return Ok(());
    }
    let ours: std::collections::HashMap<u64, u64> = tokens.iter().copied().collect();
    let users: Vec<u64> = tokens.iter().map(|t| t.0).collect();
    let sessions: Vec<(u64, u64, u64)> = db.exec(
        "finding stale sessions",
        &format!(
            "SELECT user_id, connection_id, token FROM {SESSIONS} WHERE server_id = @@server_id AND {LIVE} AND user_id IN ({})",
            placeholders(users.len())
        ),
        values(&users),
    )?;
    let stale: Vec<u64> = sessions
        .iter()
        .filter(|(u, _, t)| ours.get(u).is_some_and(|ours| t < ours))
        .map(|s| s.1)
        .collect();
    for id in &stale {
        db.kill_connection("ending a stale session", *id)?;
    }
    if !stale.is_empty() {
        db.exec_drop(
            "forgetting stale sessions",
            &format!(
                "DELETE FROM {SESSIONS} WHERE server_id = @@server_id AND connection_id IN ({})",
                placeholders(stale.len())
            ),
            values(&stale),
        )?;
    }
    let mut params = Vec::with_capacity(tokens.len() * 2);
    for (u, t) in tokens {
        params.extend([mysql::Value::from(*u), mysql::Value::from(*t)]);
    }
    let current: Vec<(u64, u64)> = db.transaction("raising the fences", |tx| {
        tx.exec_drop(
            format!(
                "INSERT INTO {FENCE} (user_id, token, updated_at) VALUES {}
                 ON DUPLICATE KEY UPDATE token = GREATEST(token, VALUES(token)), updated_at = VALUES(updated_at)",
                vec!["(?, ?, UTC_TIMESTAMP(6))"; tokens.len()].join(", ")
            ),
            params,
        )?;
        tx.exec(
            format!("SELECT user_id, token FROM {FENCE} WHERE user_id IN ({})", placeholders(users.len())),
            values(&users),
        )
    })?;
    for (user, fence) in current {
        let token = ours[&user];
        if fence != token {
            return Err(fenced_out(&db.server, user, token, Some(fence)));
        }
    }
    Ok(())
}

/// Records this connection as writing for every user of the group.
pub fn register_all(db: &mut Db, tokens: &[(u64, u64)]) -> Result<()> {
    let mut params = Vec::with_capacity(tokens.len() * 2);
    for (u, t) in tokens {
        params.extend([mysql::Value::from(*u), mysql::Value::from(*t)]);
    }
    db.exec_drop(
        "registering the session",
        &format!(
            "INSERT IGNORE INTO {SESSIONS} (user_id, server_id, connection_id, token) VALUES {}",
            vec!["(?, @@server_id, CONNECTION_ID(), ?)"; tokens.len()].join(", ")
        ),
        params,
    )
}

/// Forgets every registration of this connection.
pub fn unregister_all(db: &mut Db) -> Result<()> {
    db.query_drop(
        "unregistering the session",
        &format!("DELETE FROM {SESSIONS} WHERE server_id = @@server_id AND connection_id = CONNECTION_ID()"),
    )
}

/// Runs `f` in a transaction after checking every user's fence still carries its token.
pub fn fenced_all<T>(
    db: &mut Db,
    tokens: &[(u64, u64)],
    doing: &str,
    f: impl FnOnce(&mut mysql::Transaction) -> mysql::Result<T>,
) -> Result<T> {
    let users: Vec<u64> = tokens.iter().map(|t| t.0).collect();
    let toks: Vec<u64> = tokens.iter().map(|t| t.1).collect();
    let mut params = values(&users);
    params.extend(values(&toks));
    // Tokens are unique to one grant of one account's lock, so matching both lists matches
    // each user with its own token.
    let check = format!(
        "SELECT COUNT(*) FROM {FENCE} WHERE user_id IN ({}) AND token IN ({}) LOCK IN SHARE MODE",
        placeholders(users.len()),
        placeholders(toks.len())
    );
    let out = db.transaction_if(doing, |tx| {
        let fenced: Option<u64> = tx.exec_first(&check, params)?;
        if fenced != Some(tokens.len() as u64) {
            return Ok(None);
        }
        f(tx).map(Some)
    })?;
    out.ok_or_else(|| {
        Error::LockLost(format!(
            "fenced out on {}: a newer lock holder took over one of {} accounts",
            db.server,
            tokens.len()
        ))
    })
}

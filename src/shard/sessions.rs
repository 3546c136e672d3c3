//! Application sessions on a shard server: the one rule for what counts as application work,
//! which a drain waits for and `top` counts.

use serde::Serialize;

use crate::db::Db;
use crate::error::Result;
use crate::types::Ident;

/// An application session on a server (see `APP_SESSION`).
#[derive(Clone, Debug, Serialize)]
pub struct Session {
    pub id: u64,
    pub user: String,
    /// The client's host:port.
    pub host: String,
    pub command: String,
    /// Seconds in the current state.
    pub time: u64,
    pub state: Option<String>,
    pub info: Option<String>,
}

/// The rule for an application session, over `information_schema.PROCESSLIST` (its one
/// parameter: the shard database): every non-system session that uses the shard database, or
/// that has a transaction open on the server whatever its default database (a client may
/// write `db.table` with no default database). Replication and daemon threads, and our own
/// session, are not application work.
pub const APP_SESSION: &str =
    "(DB = ? OR ID IN (SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX))
           AND ID <> CONNECTION_ID() AND USER <> 'system user'
           AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Slave_IO', 'Slave_SQL',
                               'Slave_worker', 'Daemon')";

/// The application sessions on the server of `db`, longest in their state first.
pub fn list(db: &mut Db, database: &Ident) -> Result<Vec<Session>> {
    let rows: Vec<mysql::Row> = db.exec(
        "listing application sessions",
        &format!(
            "SELECT ID, USER, HOST, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST
             WHERE {APP_SESSION} ORDER BY TIME DESC, ID"
        ),
        (database.as_str(),),
    )?;
    Ok(rows
        .into_iter()
        .map(|mut r| Session {
            id: r.take("ID").unwrap_or_default(),
            user: r.take("USER").unwrap_or_default(),
            host: r.take("HOST").unwrap_or_default(),
            command: r.take("COMMAND").unwrap_or_default(),
            time: r.take("TIME").unwrap_or_default(),
            state: r
                .take::<Option<String>, _>("STATE")
                .flatten()
                .filter(|s| !s.is_empty()),
            info: r.take::<Option<String>, _>("INFO").flatten(),
        })
        .collect())
}

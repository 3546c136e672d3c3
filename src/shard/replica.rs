//! Replication state of one server, as `SHOW SLAVE STATUS` reports it.

use mysql::prelude::Queryable;
use serde::Serialize;

use crate::db::Db;
use crate::error::Result;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReplicaStatus {
    pub source: String,
    pub io_running: bool,
    pub sql_running: bool,
    /// None while the SQL thread is not running.
    pub lag_seconds: Option<u64>,
    pub last_error: Option<String>,
}

impl ReplicaStatus {
    pub fn healthy(&self, max_lag: u64) -> bool {
        self.io_running && self.sql_running && self.lag_seconds.is_some_and(|l| l <= max_lag)
    }

    /// What is wrong, in words, or None when healthy.
    /// Why this replica is not healthy: a stopped thread, an unknown lag, or (when `max_lag`
    /// is given) a lag above it.
    pub fn problem(&self, max_lag: Option<u64>) -> Option<String> {
        let err = self
            .last_error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        match (self.io_running, self.sql_running, self.lag_seconds) {
            (false, _, _) => Some(format!(
                "replication I/O thread from {} is not running{err}",
                self.source
            )),
            (_, false, _) => Some(format!(
                "replication SQL thread from {} is not running{err}",
                self.source
            )),
            (_, _, Some(l)) if max_lag.is_some_and(|m| l > m) => Some(format!(
                "replication from {} lags {l}s (max {}s)",
                self.source,
                max_lag.unwrap_or_default()
            )),
            (_, _, None) => Some(format!("replication lag from {} is unknown", self.source)),
            _ => None,
        }
    }
}

/// The server's replication status, or None when it replicates from nobody.
pub fn status(db: &mut Db) -> Result<Option<ReplicaStatus>> {
    let row: Option<mysql::Row> = db.run("reading replication status", |c| {
        c.query_first("SHOW SLAVE STATUS")
    })?;
    Ok(row.map(|r| {
        let text = |name: &str| -> Option<String> {
            r.get_opt::<Option<String>, _>(name)
                .and_then(|v| v.ok())
                .flatten()
        };
        let yes = |name: &str| text(name).as_deref() == Some("Yes");
        let last_error = [text("Last_IO_Error"), text("Last_SQL_Error")]
            .into_iter()
            .flatten()
            .find(|e| !e.is_empty());
        ReplicaStatus {
            source: format!(
                "{}:{}",
                text("Master_Host").unwrap_or_default(),
                text("Master_Port").unwrap_or_default()
            ),
            io_running: yes("Slave_IO_Running"),
            sql_running: yes("Slave_SQL_Running"),
            lag_seconds: text("Seconds_Behind_Master").and_then(|s| s.parse().ok()),
            last_error,
        }
    }))
}

/// The GTID position of everything the server has written to its binlog (its own writes and,
/// with `log_slave_updates`, what it replicated), or None when it writes no binlog.
pub fn binlog_position(db: &mut Db) -> Result<Option<String>> {
    let pos: Option<Option<String>> = db.exec_first(
        "reading the binlog position",
        "SELECT @@gtid_binlog_pos",
        (),
    )?;
    Ok(pos.flatten().filter(|p| !p.is_empty()))
}

/// Waits up to `timeout` until the server has applied `position` (MariaDB GTIDs). True when it
/// has.
pub fn wait_for(db: &mut Db, position: &str, timeout: std::time::Duration) -> Result<bool> {
    let waited: Option<Option<i64>> = db.exec_first(
        "waiting for replication",
        "SELECT MASTER_GTID_WAIT(?, ?)",
        (position, timeout.as_secs_f64()),
    )?;
    Ok(waited.flatten() == Some(0))
}

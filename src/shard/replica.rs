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

/// Waits up to `timeout` until the server has applied `position` (MariaDB GTIDs), but for its
/// own GTID domain: a peer that logs what it replicates (`log_slave_updates`) holds this
/// server's own writes in its position, which this server never applies (it wrote them).
/// True when it has.
pub fn wait_for(db: &mut Db, position: &str, timeout: std::time::Duration) -> Result<bool> {
    let own: Option<u32> =
        db.exec_first("reading the GTID domain", "SELECT @@gtid_domain_id", ())?;
    let position = without_domain(position, own.unwrap_or(0));
    let waited: Option<Option<i64>> = db.exec_first(
        "waiting for replication",
        "SELECT MASTER_GTID_WAIT(?, ?)",
        (position, timeout.as_secs_f64()),
    )?;
    Ok(waited.flatten() == Some(0))
}

/// A GTID position (`D-S-N,D-S-N`) without the entries of domain `domain`.
pub fn without_domain(position: &str, domain: u32) -> String {
    position
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .filter(|g| g.split('-').next().and_then(|d| d.parse::<u32>().ok()) != Some(domain))
        .collect::<Vec<_>>()
        .join(",")
}

/// The sessions whose open transactions hold row locks the server's replication threads wait
/// for, as `connection ID (since ...: query)`: an application that got an error inside a
/// transaction and neither committed nor rolled back stops replication into the server until
/// it does. InnoDB's lock views are a cache refreshed after 0.1 s without a reader: read after
/// a pause, for a message, never for a decision.
pub fn blockers(db: &mut Db) -> Result<Vec<String>> {
    std::thread::sleep(std::time::Duration::from_millis(150));
    let rows: Vec<(u64, String, Option<String>)> = db.exec(
        "finding what holds replication up",
        "SELECT DISTINCT b.trx_mysql_thread_id, CAST(b.trx_started AS CHAR), b.trx_query
         FROM information_schema.INNODB_LOCK_WAITS w
         JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id
         JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id
         JOIN information_schema.PROCESSLIST p ON p.ID = r.trx_mysql_thread_id
         WHERE p.COMMAND IN ('Slave_SQL', 'Slave_worker')",
        (),
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, since, query)| {
            format!(
                "connection {id} (a transaction open since {since}{}; KILL {id} ends it)",
                query
                    .map(|q| format!(": {}", q.chars().take(80).collect::<String>()))
                    .unwrap_or_default()
            )
        })
        .collect())
}

/// Why a server has not caught up, for the operator: the sessions holding its replication up,
/// if any, else its lag.
pub fn why_behind(db: &mut Db) -> String {
    match blockers(db) {
        Ok(b) if !b.is_empty() => format!(
            "its replication waits for row locks held by {}",
            b.join("; ")
        ),
        _ => "its replication lags".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_loses_only_the_named_domain() {
        assert_eq!(without_domain("11-11-5,12-12-9", 12), "11-11-5");
        assert_eq!(without_domain("12-12-9", 12), "");
        assert_eq!(without_domain("", 3), "");
        assert_eq!(without_domain("1-1-2, 21-21-4", 2), "1-1-2,21-21-4");
    }
}

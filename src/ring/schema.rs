//! The global ring's schema and its versions.
//!
//! Each version is a list of idempotent statements; `init` applies every version above the one
//! recorded, in order, and records the new one. Running `init` twice changes nothing the second
//! time. Applications read `users` and `shard_servers`, so those columns never change name.

use crate::db::Db;
use crate::error::Result;
use crate::types::Ident;

/// The schema version this build writes and expects.
pub const VERSION: u32 = 6;

/// The ticket tables, Flickr style: one row per table, `REPLACE` bumps its auto-increment.
pub const TICKET_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS tickets32 (
        id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        stub CHAR(1) NOT NULL DEFAULT '',
        UNIQUE KEY stub (stub)
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS tickets64 (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        stub CHAR(1) NOT NULL DEFAULT '',
        UNIQUE KEY stub (stub)
    ) ENGINE=InnoDB",
];

const V1: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS schema_version (
        id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
        version INT UNSIGNED NOT NULL,
        upgraded_at DATETIME(6) NOT NULL
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS shards (
        shard_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(64) NOT NULL,
        weight DOUBLE NOT NULL,
        state ENUM('active','readonly','retiring') NOT NULL DEFAULT 'active',
        created_at DATETIME(6) NOT NULL,
        UNIQUE KEY name (name),
        CONSTRAINT weight_positive CHECK (weight > 0)
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS shard_servers (
        shard_id INT UNSIGNED NOT NULL,
        host VARCHAR(255) NOT NULL,
        port SMALLINT UNSIGNED NOT NULL,
        half ENUM('a','b') NOT NULL,
        status ENUM('online','draining','offline') NOT NULL DEFAULT 'online',
        capacity_qps DOUBLE NULL,
        PRIMARY KEY (host, port),
        KEY shard (shard_id, half),
        CONSTRAINT shard_servers_shard FOREIGN KEY (shard_id) REFERENCES shards (shard_id)
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS users (
        user_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
        shard_id INT UNSIGNED NOT NULL,
        state ENUM('active','moving') NOT NULL DEFAULT 'active',
        KEY shard (shard_id)
    ) ENGINE=InnoDB",
    // `token` is the fencing token: an auto-increment, so the INSERT that wins a lock also
    // draws its token, from one sequence that only grows. `holder_*` name the session holding
    // GET_LOCK for a holder that keeps one (lock run, migrations); NULL for a bare lease.
    "CREATE TABLE IF NOT EXISTS locks (
        name VARCHAR(64) NOT NULL PRIMARY KEY,
        token BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
        owner VARCHAR(255) NOT NULL,
        host VARCHAR(255) NOT NULL,
        pid INT UNSIGNED NOT NULL,
        purpose VARCHAR(255) NOT NULL DEFAULT '',
        acquired_at DATETIME(6) NOT NULL,
        expires_at DATETIME(6) NOT NULL,
        metadata JSON NOT NULL,
        holder_server VARCHAR(300) NULL,
        holder_connection BIGINT UNSIGNED NULL,
        UNIQUE KEY token (token),
        KEY expires_at (expires_at)
    ) ENGINE=InnoDB",
    // The migration journal. `token` is the fencing token of the lock holder driving the row;
    // every journal write is conditional on it, so a stale holder cannot rewrite history.
    "CREATE TABLE IF NOT EXISTS migrations (
        migration_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        user_id BIGINT UNSIGNED NOT NULL,
        from_shard INT UNSIGNED NOT NULL,
        to_shard INT UNSIGNED NOT NULL,
        state VARCHAR(32) NOT NULL,
        token BIGINT UNSIGNED NULL,
        keep_source TINYINT(1) NOT NULL DEFAULT 0,
        source_server VARCHAR(300) NULL,
        dest_server VARCHAR(300) NULL,
        row_counts JSON NULL,
        checksums JSON NULL,
        timings JSON NULL,
        error TEXT NULL,
        started_at DATETIME(6) NOT NULL,
        updated_at DATETIME(6) NOT NULL,
        finished_at DATETIME(6) NULL,
        KEY user (user_id, migration_id),
        KEY state (state)
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS audit_log (
        audit_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        at DATETIME(6) NOT NULL,
        operator VARCHAR(255) NOT NULL,
        host VARCHAR(255) NOT NULL,
        action VARCHAR(64) NOT NULL,
        target VARCHAR(255) NOT NULL,
        details JSON NOT NULL,
        KEY at (at),
        KEY action (action, at)
    ) ENGINE=InnoDB",
];

/// Version 2: the audit log records the database login beside the operator.
const V2: &[&str] = &[
    "ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS db_login VARCHAR(300) NULL AFTER host",
    // The journal of rolling maintenance (`maintenance roll`): a row per roll...
    "CREATE TABLE IF NOT EXISTS rolls (
        roll_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        command TEXT NOT NULL,
        halves VARCHAR(16) NOT NULL,
        state ENUM('running','done','failed','refused','abandoned') NOT NULL,
        operator VARCHAR(255) NOT NULL,
        host VARCHAR(255) NOT NULL,
        started_at DATETIME(6) NOT NULL,
        updated_at DATETIME(6) NOT NULL,
        finished_at DATETIME(6) NULL,
        KEY state (state)
    ) ENGINE=InnoDB",
    // ...and a row per server of it. `step`: drained (its command may be running, or may have
    // died with us), exec_ok, exec_failed, restored. A re-run never runs the command again
    // where it is exec_ok or restored.
    "CREATE TABLE IF NOT EXISTS roll_servers (
        roll_id BIGINT UNSIGNED NOT NULL,
        half ENUM('a','b') NOT NULL,
        shard VARCHAR(64) NOT NULL,
        host VARCHAR(255) NOT NULL,
        port SMALLINT UNSIGNED NOT NULL,
        step ENUM('drained','exec_ok','exec_failed','restored') NOT NULL,
        exit_code INT NULL,
        seconds DOUBLE NULL,
        timed_out TINYINT(1) NOT NULL DEFAULT 0,
        output_tail TEXT NULL,
        updated_at DATETIME(6) NOT NULL,
        PRIMARY KEY (roll_id, host, port)
    ) ENGINE=InnoDB",
];

/// Version 3: routing-cache deletes that failed, retried by the next run and `cache flush`.
const V3: &[&str] = &["CREATE TABLE IF NOT EXISTS cache_pending (
        cache_key VARCHAR(250) NOT NULL PRIMARY KEY,
        since DATETIME(6) NOT NULL,
        attempts INT UNSIGNED NOT NULL
    ) ENGINE=InnoDB"];

/// Version 4: the highest token a move used, found by index (every grant is checked against
/// it, so switching lock backends never hands out a token the shards' fences would refuse),
/// and the ring's fences for locks kept in ZooKeeper.
const V4: &[&str] = &[
    "ALTER TABLE migrations ADD KEY IF NOT EXISTS token (token)",
    // The ZooKeeper backend's fence for directory changes (see ring::fences).
    "CREATE TABLE IF NOT EXISTS lock_fences (
        name VARCHAR(64) NOT NULL PRIMARY KEY,
        token BIGINT UNSIGNED NOT NULL,
        updated_at DATETIME(6) NOT NULL
    ) ENGINE=InnoDB",
];

/// Version 5, online moves: how each migration moved, where its pass over the source's
/// binary log reached, and how long the user was read-only.
const V5: &[&str] = &[
    "ALTER TABLE migrations ADD COLUMN IF NOT EXISTS mode VARCHAR(16) NOT NULL DEFAULT 'offline',
        ADD COLUMN IF NOT EXISTS binlog_position VARCHAR(600) NULL,
        ADD COLUMN IF NOT EXISTS read_only_seconds DOUBLE NULL",
];

/// Version 6, rolls that lose their lock: where each roll's command runs (host and process
/// group), journaled as it starts, so a later roll waits for a command that may still run
/// rather than start a second copy.
const V6: &[&str] = &[
    "ALTER TABLE roll_servers ADD COLUMN IF NOT EXISTS exec_host VARCHAR(255) NULL,
        ADD COLUMN IF NOT EXISTS exec_pgid INT NULL",
];

/// Every version's statements; index 0 is version 1.
const STEPS: &[&[&str]] = &[V1, V2, V3, V4, V5, V6];

/// The recorded version, or None where the schema was never created.
pub fn recorded_version(db: &mut Db, database: &Ident) -> Result<Option<u32>> {
    let exists: Option<u8> = db.exec_first(
        "looking for the schema",
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'schema_version'",
        (database.as_str(),),
    )?;
    if exists.is_none() {
        return Ok(None);
    }
    db.exec_first(
        "reading the schema version",
        &format!(
            "SELECT version FROM {}.schema_version WHERE id = 1",
            database.quoted()
        ),
        (),
    )
}

/// Creates or upgrades the schema in `database` (created if missing). Returns (before, after).
pub fn upgrade(db: &mut Db, database: &Ident) -> Result<(Option<u32>, u32)> {
    db.query_drop(
        "creating the ring database",
        &format!("CREATE DATABASE IF NOT EXISTS {}", database.quoted()),
    )?;
    db.query_drop(
        "selecting the ring database",
        &format!("USE {}", database.quoted()),
    )?;
    let before = recorded_version(db, database)?;
    let from = before.unwrap_or(0) as usize;
    for (i, step) in STEPS.iter().enumerate().skip(from) {
        for sql in step.iter().chain(if i == 0 { TICKET_TABLES } else { &[] }) {
            db.query_drop(&format!("applying schema version {}", i + 1), sql)?;
        }
        db.exec_drop(
            "recording the schema version",
            "INSERT INTO schema_version (id, version, upgraded_at) VALUES (1, ?, UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE version = GREATEST(version, VALUES(version)), upgraded_at = VALUES(upgraded_at)",
            (i as u32 + 1,),
        )?;
    }
    Ok((before, VERSION.max(before.unwrap_or(0))))
}

/// Creates the ticket tables in a ticket server's database.
pub fn create_ticket_tables(db: &mut Db, database: &Ident) -> Result<()> {
    db.query_drop(
        "creating the ticket database",
        &format!("CREATE DATABASE IF NOT EXISTS {}", database.quoted()),
    )?;
    for sql in TICKET_TABLES {
        db.query_drop(
            "creating the ticket tables",
            &sql.replace(
                "IF NOT EXISTS ",
                &format!("IF NOT EXISTS {}.", database.quoted()),
            ),
        )?;
    }
    Ok(())
}

//! The write guard (`[shards] write_guard = true`): on every shard server, a guard table and
//! BEFORE INSERT/UPDATE/DELETE triggers on each per-user table that refuse any write to a
//! guarded owner's rows (SQLSTATE 45000, error 1644, naming the user and where it lives now),
//! except shardctl's own writes. A migration guards the user on the source from just before the
//! `moving` mark, keeps it guarded after the flip for `[cache] ttl` (an application routing
//! from a stale cache entry gets a refusal, never a lost row), and unguards the destination
//! before the flip. Triggers are installed once (`guard install`): `CREATE TRIGGER` takes a
//! metadata lock on its table; afterwards only guard rows change.

use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, TableSpec};
use crate::db::{placeholders, values, Db};
use crate::error::{Error, Result};
use crate::types::HostPort;

use super::home;

/// The guard table: a row per guarded user; `until` NULL while it moves, else when the guard
/// lapses (the cache's ttl after the flip).
pub const TABLE: &str = "shardctl_guard";

/// shardctl's own sessions set this; the triggers let them through.
pub const WRITER_VARIABLE: &str = "@shardctl_writer";

fn trigger_name(table: &TableSpec, event: &str) -> String {
    // Identifiers are [A-Za-z0-9_$]: safe to build names from.
    format!("shardctl_guard_{}_{event}", table.name.as_str())
}

/// The three trigger names of a table.
pub fn trigger_names(table: &TableSpec) -> Vec<String> {
    ["bi", "bu", "bd"]
        .iter()
        .map(|e| trigger_name(table, e))
        .collect()
}

/// The statements that install the guard on one server (idempotent; triggers of an older
/// shardctl are replaced). The triggers hold both guards: the move guard's table and the home
/// guard's (`home`); each refuses nothing while its table is empty.
///
/// Two kinds of write always pass: shardctl's own sessions, and replicated statements (the
/// replication thread runs a statement-format event with the session's `server_id` set to the
/// server that wrote it, so it differs from the global one). Row-format events fire no trigger.
/// A refusal stops only the application's statement, never a replica's SQL thread.
pub fn install_statements(cfg: &Config) -> Vec<String> {
    let mut out = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (
            user_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
            until DATETIME(6) NULL,
            lives_on VARCHAR(64) NOT NULL
        ) ENGINE=InnoDB"
        ),
        home::create_statement(),
        home::upgrade_statement(),
    ];
    for t in &cfg.shards.tables {
        let owner = t.owner_column.quoted();
        let check = |row: &str| {
            let lookup = format!(
                "SELECT g.lives_on FROM {TABLE} g
                  WHERE g.user_id = {row}.{owner} AND (g.until IS NULL OR g.until > UTC_TIMESTAMP(6))"
            );
            format!(
                "{home}
                 IF lives IS NOT NULL THEN
                   SET msg = CONCAT('shardctl write guard: user ', {row}.{owner}, ' is moving or has moved to ', lives, '; re-read the ring');
                   SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 1644, MESSAGE_TEXT = msg;
                 END IF;",
                home = home::trigger_check(row, &owner, &lookup, "lives"),
            )
        };
        for (event, kind, body) in [
            ("bi", "INSERT", check("NEW")),
            (
                "bu",
                "UPDATE",
                // The new owner is checked only when the update changes it: one lookup a row.
                format!(
                    "{} IF NOT (NEW.{owner} <=> OLD.{owner}) THEN {} END IF;",
                    check("OLD"),
                    check("NEW")
                ),
            ),
            ("bd", "DELETE", check("OLD")),
        ] {
            out.push(format!(
                // The condition first, the variables inside: shardctl's own bulk copies fire
                // these triggers for every row, and each DECLARE is a step of its own (measured:
                // 133k rows/s with them outside, about 185k inside, 260k with no trigger).
                "CREATE OR REPLACE TRIGGER {} BEFORE {kind} ON {} FOR EACH ROW
                 IF {WRITER_VARIABLE} IS NULL AND @@session.server_id = @@global.server_id THEN
                   BEGIN
                     DECLARE lives VARCHAR(64) DEFAULT NULL;
                     DECLARE refusals INT DEFAULT 0;
                     DECLARE msg VARCHAR(512);
                     {body}
                   END;
                 END IF",
                trigger_name(t, event),
                t.name.quoted()
            ));
        }
    }
    out
}

/// The statements that remove it from one server.
pub fn remove_statements(cfg: &Config) -> Vec<String> {
    let mut out: Vec<String> = cfg
        .shards
        .tables
        .iter()
        .flat_map(trigger_names)
        .map(|n| format!("DROP TRIGGER IF EXISTS {n}"))
        .collect();
    out.push(format!("DROP TABLE IF EXISTS {TABLE}"));
    out.push(format!("DROP TABLE IF EXISTS {}", home::TABLE));
    out
}

/// Runs `statements` on `db`, each metadata lock waited for at most `timeout`.
pub fn apply(db: &mut Db, statements: &[String], timeout: Duration) -> Result<()> {
    db.exec_drop(
        "bounding the metadata-lock wait",
        "SET SESSION lock_wait_timeout = ?",
        (timeout.as_secs().max(1),),
    )?;
    for s in statements {
        db.query_drop("installing the write guard", s)?;
    }
    Ok(())
}

/// What one server has of the guard.
#[derive(Clone, Debug, Serialize)]
pub struct Installed {
    /// The guard table and every trigger are there.
    pub installed: bool,
    /// Triggers (or the table) that are missing.
    pub missing: Vec<String>,
    /// Users guarded now.
    pub guarded: u64,
    /// The home guard's rules on this server (None without its table).
    pub home: Option<home::View>,
}

pub fn inspect(cfg: &Config, db: &mut Db) -> Result<Installed> {
    let database = cfg.shards.database.as_str();
    // A trigger of an older shardctl, without the home guard's check, is as good as missing.
    let have: Vec<String> = db.exec(
        "reading the triggers",
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS
         WHERE TRIGGER_SCHEMA = ? AND ACTION_STATEMENT LIKE ?",
        (database, format!("%{}%", home::TABLE)),
    )?;
    let table: Option<u8> = db.exec_first(
        "looking for the guard table",
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (database, TABLE),
    )?;
    let mut missing: Vec<String> = cfg
        .shards
        .tables
        .iter()
        .flat_map(trigger_names)
        .filter(|n| !have.contains(n))
        .collect();
    let guarded = if table.is_some() {
        db.exec_first(
            "counting guarded users",
            &format!(
                "SELECT COUNT(*) FROM {}.{TABLE} WHERE until IS NULL OR until > UTC_TIMESTAMP(6)",
                cfg.shards.database.quoted()
            ),
            (),
        )?
        .unwrap_or(0)
    } else {
        missing.push(TABLE.to_string());
        0
    };
    let home = home::read(cfg, db)?;
    if home.is_none() {
        missing.push(home::TABLE.to_string());
    }
    Ok(Installed {
        installed: missing.is_empty(),
        missing,
        guarded,
        home,
    })
}

/// Guards `users` on `db`'s server (until further notice): their rows refuse every write but
/// shardctl's. `lives_on` names where they live now, for the refusal's message.
pub fn guard(db: &mut Db, users: &[u64], lives_on: &str) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let mut params = Vec::with_capacity(users.len() * 2);
    for u in users {
        params.extend([mysql::Value::from(*u), lives_on.into()]);
    }
    db.exec_drop(
        "guarding the users",
        &format!(
            "INSERT INTO {TABLE} (user_id, until, lives_on) VALUES {}
             ON DUPLICATE KEY UPDATE until = NULL, lives_on = VALUES(lives_on)",
            vec!["(?, NULL, ?)"; users.len()].join(", ")
        ),
        params,
    )
}

/// After the flip: the source stays guarded for `keep` (the longest an application may route
/// from a cached entry), then the guard lapses by itself.
pub fn guard_for(db: &mut Db, users: &[u64], lives_on: &str, keep: Duration) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let mut params = vec![mysql::Value::from(keep.as_micros() as u64), lives_on.into()];
    params.extend(values(users));
    db.exec_drop(
        "keeping the users guarded",
        &format!(
            "UPDATE {TABLE} SET until = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, lives_on = ?
             WHERE user_id IN ({})",
            placeholders(users.len())
        ),
        params,
    )
}

/// Lifts the guard of `users` on `db`'s server (given back to it, or about to move onto it).
pub fn unguard(db: &mut Db, users: &[u64]) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    db.exec_drop(
        "lifting the guard",
        &format!(
            "DELETE FROM {TABLE} WHERE user_id IN ({})",
            placeholders(users.len())
        ),
        values(users),
    )
}

/// Whether moves guard their users: `[shards] write_guard`.
pub fn enabled(cfg: &Config) -> bool {
    cfg.shards.write_guard
}

/// How long a source stays guarded after the flip: the cache's ttl, or 30 minutes without one.
pub fn keep_after_flip(cfg: &Config) -> Duration {
    cfg.cache
        .as_ref()
        .map(|c| c.ttl)
        .unwrap_or(Duration::from_secs(30 * 60))
}

/// The refusal for a write guard that is configured but not installed on a server.
pub fn not_installed(server: &str, missing: &[String]) -> Error {
    Error::Refused(format!(
        "[shards] write_guard is on but {server} lacks {}: run `shardctl guard install`",
        missing.join(", ")
    ))
}

/// Servers this process has seen with the guard installed: checked once per run.
static CHECKED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Refuses a move onto or off a server that lacks the guard, when it is configured.
fn check_installed(cfg: &Config, db: &mut Db) -> Result<()> {
    let server = db.server.to_string();
    if CHECKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&server)
    {
        return Ok(());
    }
    let have = inspect(cfg, db)?;
    if !have.installed {
        return Err(not_installed(&server, &have.missing));
    }
    CHECKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(server);
    Ok(())
}

/// Before a move marks `users` moving, on the destination's session: its guard lifted (its
/// rows become theirs at the flip).
pub fn open_destination(cfg: &Config, dst: &mut Db, users: &[u64]) -> Result<()> {
    if !enabled(cfg) {
        return Ok(());
    }
    check_installed(cfg, dst)?;
    unguard(dst, users)
}

/// Before a move marks `users` moving, on the source's session: guarded.
pub fn close_source(cfg: &Config, src: &mut Db, users: &[u64], to_shard: &str) -> Result<()> {
    if !enabled(cfg) {
        return Ok(());
    }
    check_installed(cfg, src)?;
    guard(src, users, to_shard)
}

/// After the flip: the source stays guarded for the cache's ttl.
pub fn after_flip(cfg: &Config, src: &mut Db, users: &[u64], to_shard: &str) -> Result<()> {
    if !enabled(cfg) {
        return Ok(());
    }
    guard_for(src, users, to_shard, keep_after_flip(cfg))
}

/// The move was undone: the users are the source's again.
pub fn given_back(cfg: &Config, src: &mut Db, users: &[u64]) -> Result<()> {
    if !enabled(cfg) {
        return Ok(());
    }
    unguard(src, users)
}

/// Installs the guard on `servers` (a shard being added) when it is configured: a shard that
/// lacks it could not take part in guarded moves.
pub fn install_on(cfg: &Config, servers: &[HostPort]) -> Result<()> {
    if !enabled(cfg) && !home::enabled(cfg) {
        return Ok(());
    }
    let statements = install_statements(cfg);
    for addr in servers {
        apply(
            &mut super::connect(cfg, addr)?,
            &statements,
            Duration::from_secs(30),
        )?;
    }
    Ok(())
}

/// One server's guard, as `guard install|status|remove` report it.
#[derive(Clone, Debug, Serialize)]
pub struct ServerGuard {
    pub shard: String,
    pub host: String,
    pub port: u16,
    /// What the server has now (after the change, for install and remove).
    #[serde(flatten)]
    pub state: Option<Installed>,
    /// Why it could not be read or changed.
    pub error: Option<String>,
}

/// What `guard` does to each server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Status,
    Install,
    Remove,
}

/// Runs `action` on every server of every registered shard (in parallel), each metadata lock
/// waited for at most `timeout`.
pub fn everywhere(cfg: &Config, action: Action, timeout: Duration) -> Result<Vec<ServerGuard>> {
    let mut ring = crate::ring::open(cfg)?;
    let shards = crate::ring::directory::shards(&mut ring)?;
    let servers: Vec<(String, HostPort)> = shards
        .iter()
        .flat_map(|s| s.servers.iter().map(|v| (s.name.clone(), v.addr())))
        .collect();
    let statements = match action {
        Action::Status => Vec::new(),
        Action::Install => install_statements(cfg),
        Action::Remove => remove_statements(cfg),
    };
    let applied = crate::parallel::each(&servers, |(_, addr)| {
        if action == Action::Status {
            return Ok(());
        }
        let mut db = super::connect(cfg, addr)?;
        db.set_timeouts(
            timeout + Duration::from_secs(5),
            timeout + Duration::from_secs(5),
        )?;
        apply(&mut db, &statements, timeout)
    });
    // Installed everywhere first: a hand-over needs every server of the shard to have it.
    let mut unsettled: Vec<(String, String)> = Vec::new();
    if action == Action::Install {
        for (shard, result) in shards
            .iter()
            .zip(super::handover::to_ring(cfg, &shards, timeout))
        {
            if let Err(e) = result {
                unsettled.push((shard.name.clone(), e));
            }
        }
    }
    let items: Vec<(&(String, HostPort), Option<String>)> = servers
        .iter()
        .zip(applied)
        .map(|(s, a)| (s, a.err().map(|e| e.to_string())))
        .collect();
    let results: Vec<ServerGuard> = crate::parallel::each(&items, |((shard, addr), failed)| {
        let done = match failed {
            Some(e) => Err(e.clone()),
            None => super::connect(cfg, addr)
                .and_then(|mut db| inspect(cfg, &mut db))
                .map_err(|e| e.to_string()),
        };
        let unsettled = unsettled
            .iter()
            .find(|(s, _)| s == shard)
            .map(|(_, e)| format!("the home guard's rules were not settled: {e}"));
        ServerGuard {
            shard: shard.clone(),
            host: addr.host.clone(),
            port: addr.port,
            error: done.as_ref().err().cloned().or(unsettled),
            state: done.ok(),
        }
    });
    let verb = match action {
        Action::Status => return Ok(results),
        Action::Install => "guard.install",
        Action::Remove => "guard.remove",
    };
    let entries: Vec<(String, serde_json::Value)> = results
        .iter()
        .map(|s| {
            (
                format!("{}:{}", s.host, s.port),
                serde_json::json!({ "shard": s.shard, "ok": s.error.is_none() }),
            )
        })
        .collect();
    ring.run("auditing", |c| {
        crate::ring::audit::record_many(c, verb, &entries)
    })?;
    Ok(results)
}

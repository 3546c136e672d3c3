//! The write guard (`[shards] write_guard = true`): on every shard server, guard tables and
//! BEFORE INSERT/UPDATE/DELETE triggers on each per-user table that refuse any application
//! write to a guarded owner's rows (SQLSTATE 45000, error 1644, naming the user and where it
//! lives now). A migration guards the user on every server of the source shard just before the
//! `moving` mark, and the source stays guarded for that user until the user moves back to it
//! (which lifts it) or an operator prunes the row (`guard prune`): never by time alone, since
//! an application may keep a stale route for as long as it likes. Triggers are installed once
//! (`guard install`): `CREATE TRIGGER` takes a metadata lock on its table; afterwards only
//! guard rows change.
//!
//! Guard rows are written to each server directly (`sql_log_bin = 0`), never by replication: a
//! lagging peer is guarded before the mark, not when it catches up. Users are spread over
//! `BUCKETS` rows that always exist (`shardctl_guard_buckets`, each listing its guarded users);
//! the triggers read their user's bucket row with a shared lock, like the home guard's rules: a
//! current read (an application transaction whose snapshot predates the guard still sees it),
//! on a row that exists (no gap lock), held until the writer's transaction ends. So guarding a
//! user (an update of its bucket row) is also the barrier: it waits for the transactions that
//! wrote a user of that bucket (1 in 4,096 of the others) and no other, at most
//! `GUARD_LOCK_WAIT`, and every write after it sees the guard. `shardctl_guard` holds the
//! details (where each user lives, since when) for status and pruning; no trigger reads it.

use std::time::Duration;

use mysql::prelude::Queryable;
use serde::Serialize;

use crate::config::Config;
use crate::db::{placeholders, values, Db};
use crate::error::{Error, Result};
use crate::types::HostPort;

use super::conns::Conns;
use super::home;

/// The guard table: a row per user this server refuses, with where the user lives now.
pub const TABLE: &str = "shardctl_guard";

/// The rows the triggers read: one per bucket of users, listing the bucket's guarded users as
/// `,UID=WHERE,UID=WHERE,` (empty when none).
pub const BUCKET_TABLE: &str = "shardctl_guard_buckets";

/// Users are spread over this many bucket rows (`user mod BUCKETS`).
pub const BUCKETS: u64 = 4096;

/// How long guarding a user waits for open application transactions that wrote a user of its
/// bucket.
const GUARD_LOCK_WAIT: Duration = Duration::from_secs(5);

fn trigger_name(table: &crate::config::TableSpec, event: &str) -> String {
    // Identifiers are [A-Za-z0-9_$]: safe to build names from.
    format!("shardctl_guard_{}_{event}", table.name.as_str())
}

/// The three trigger names of a table.
pub fn trigger_names(table: &crate::config::TableSpec) -> Vec<String> {
    ["bi", "bu", "bd"]
        .iter()
        .map(|e| trigger_name(table, e))
        .collect()
}

/// shardctl's login (`[shards.auth]`'s user) as a hex literal: how the triggers recognise
/// shardctl's own sessions, whatever characters the name holds.
fn login_literal(cfg: &Config) -> String {
    let hex: String = cfg
        .shards
        .login
        .user
        .bytes()
        .map(|b| format!("{b:02X}"))
        .collect();
    format!("X'{hex}'")
}

/// True in a trigger for the sessions the guards let through: shardctl's own (the user part of
/// `USER()`, the login as the client gave it, up to the host after the last `@`, is
/// shardctl's login) and the replication thread applying a statement-format event (`USER()` is
/// `<replication_slave>@` there on MariaDB, with no host; no client login has an empty host).
/// Nothing an application can set in its session makes it true.
fn passes(cfg: &Config) -> String {
    format!(
        "BINARY SUBSTRING(USER(), 1, CHAR_LENGTH(USER()) - CHAR_LENGTH(SUBSTRING_INDEX(USER(), '@', -1)) - 1) = {}
         OR USER() IN ('<replication_slave>@', '@', '')",
        login_literal(cfg)
    )
}

/// The list a bucket row holds, built from the guard table: `,UID=WHERE,...,` or empty.
/// `bucket` is the SQL naming the bucket (a placeholder, or a column).
fn bucket_list(cfg: &Config, bucket: &str) -> String {
    format!(
        "COALESCE((SELECT CONCAT(',', GROUP_CONCAT(CONCAT(g.user_id, '=', g.lives_on) ORDER BY g.user_id SEPARATOR ','), ',')
                   FROM {} g WHERE g.bucket = {bucket}), '')",
        qualified(cfg, TABLE)
    )
}

/// Writes each of `buckets`' rows from the guard table, one row at a time by its key, the
/// number written into the text (a list of keys may be read by scanning, and would lock every
/// bucket; bound as a parameter, the key was read by a scan here too).
fn write_buckets(cfg: &Config, tx: &mut mysql::Transaction, buckets: &[u64]) -> mysql::Result<()> {
    for b in buckets {
        tx.query_drop(format!(
            "UPDATE {} FORCE INDEX (PRIMARY) SET users = {} WHERE bucket = {b}",
            qualified(cfg, BUCKET_TABLE),
            bucket_list(cfg, &b.to_string())
        ))?;
    }
    Ok(())
}

/// Brings the bucket rows that disagree with the guard table in line (after `guard install`:
/// an older shardctl kept no buckets). Which disagree is read without locks; each is then
/// written by its key, waiting only for that bucket's writers.
pub fn sync_buckets(cfg: &Config, db: &mut Db) -> Result<()> {
    let stale: Vec<u64> = db.exec(
        "comparing the guard's buckets",
        &format!(
            "SELECT b.bucket FROM {} b WHERE b.users <> {}",
            qualified(cfg, BUCKET_TABLE),
            bucket_list(cfg, "b.bucket")
        ),
        (),
    )?;
    if stale.is_empty() {
        return Ok(());
    }
    db.transaction("writing the guard's buckets", |tx| {
        write_buckets(cfg, tx, &stale)
    })
}

/// The statements that install the guard on one server (idempotent; triggers and the table of
/// an older shardctl are upgraded). The triggers hold both guards: the move guard's table and
/// the home guard's (`home`); each refuses nothing while its table is empty.
///
/// Two kinds of write always pass: shardctl's own sessions (its login), and replicated
/// statements (the replication thread runs a statement-format event with the session's
/// `server_id` set to the server that wrote it, so it differs from the global one). Row-format
/// events fire no trigger. A refusal stops only the application's statement, never a
/// replica's SQL thread.
pub fn install_statements(cfg: &Config) -> Vec<String> {
    let mut out = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (
            user_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
            lives_on VARCHAR(64) NOT NULL,
            guarded_at DATETIME(6) NULL,
            bucket SMALLINT UNSIGNED AS (user_id MOD {BUCKETS}) STORED,
            KEY bucket (bucket)
        ) ENGINE=InnoDB"
        ),
        // An older shardctl's table let rows lapse (`until`): every
        // row now guards until the user moves back, through its bucket.
        format!(
            "ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS guarded_at DATETIME(6) NULL,
             DROP COLUMN IF EXISTS until,
             ADD COLUMN IF NOT EXISTS bucket SMALLINT UNSIGNED AS (user_id MOD {BUCKETS}) STORED,
             ADD KEY IF NOT EXISTS bucket (bucket), ENGINE=InnoDB"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {BUCKET_TABLE} (
            bucket SMALLINT UNSIGNED NOT NULL PRIMARY KEY,
            users MEDIUMTEXT NOT NULL
        ) ENGINE=InnoDB"
        ),
        format!(
            "INSERT IGNORE INTO {BUCKET_TABLE} (bucket, users) SELECT seq, '' FROM seq_0_to_{}",
            BUCKETS - 1
        ),
        home::create_statement(),
        home::upgrade_statement(),
    ];
    let through = passes(cfg);
    for t in &cfg.shards.tables {
        let owner = t.owner_column.quoted();
        let check = |row: &str| {
            let user = format!("{row}.{owner}");
            // The bucket from a variable: compared with the row's expression itself, the
            // lookup was planned as a scan that locked every bucket.
            let lookup = format!(
                "SELECT b.users FROM {BUCKET_TABLE} b WHERE b.bucket = bkt LOCK IN SHARE MODE"
            );
            format!(
                "SET bkt = {user} MOD {BUCKETS};
                 {home}
                 SET at = LOCATE(CONCAT(',', {user}, '='), listed);
                 IF at > 0 THEN
                   SET msg = CONCAT('shardctl write guard: user ', {user}, ' is moving or has moved to ',
                                    SUBSTRING_INDEX(SUBSTRING(listed, at + CHAR_LENGTH({user}) + 2), ',', 1),
                                    '; re-read the ring');
                   SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 1644, MESSAGE_TEXT = msg;
                 END IF;",
                home = home::trigger_check(row, &owner, &lookup, "listed"),
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
                 IF NOT ({through}) THEN
                   BEGIN
                     DECLARE listed MEDIUMTEXT DEFAULT NULL;
                     DECLARE bkt SMALLINT UNSIGNED DEFAULT 0;
                     DECLARE at INT DEFAULT 0;
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
    out.push(format!("DROP TABLE IF EXISTS {BUCKET_TABLE}"));
    out.push(format!("DROP TABLE IF EXISTS {}", home::TABLE));
    out
}

/// Runs `statements` on `db`, each metadata lock waited for at most `timeout`. Nothing is
/// replicated: every server is changed by shardctl itself, and its guard rows are its own.
pub fn apply(db: &mut Db, statements: &[String], timeout: Duration) -> Result<()> {
    db.exec_drop(
        "bounding the metadata-lock wait",
        "SET SESSION lock_wait_timeout = ?, innodb_lock_wait_timeout = ?, sql_log_bin = 0,
                     tx_isolation = 'READ-COMMITTED'",
        (timeout.as_secs().max(1), timeout.as_secs().max(1)),
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
    /// Users this server refuses now (moving away, or moved away and not back).
    pub guarded: u64,
    /// The home guard's rules on this server (None without its table).
    pub home: Option<home::View>,
}

pub fn inspect(cfg: &Config, db: &mut Db) -> Result<Installed> {
    let database = cfg.shards.database.as_str();
    // A trigger of an older shardctl (without the home guard's check, or recognising shardctl
    // by another login or a session variable) is as good as missing.
    let have: Vec<String> = db.exec(
        "reading the triggers",
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS
         WHERE TRIGGER_SCHEMA = ? AND ACTION_STATEMENT LIKE ? AND ACTION_STATEMENT LIKE ?",
        (
            database,
            format!("%{}%", home::TABLE),
            format!("%{}%", login_literal(cfg)),
        ),
    )?;
    let table: Option<String> = db.exec_first(
        "looking for the guard table",
        "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (database, TABLE),
    )?;
    let mut missing: Vec<String> = cfg
        .shards
        .tables
        .iter()
        .flat_map(trigger_names)
        .filter(|n| !have.contains(n))
        .collect();
    let buckets: Result<Option<u64>> = db.exec_first(
        "counting the guard's buckets",
        &format!(
            "SELECT IF(COUNT(*) > 0, (SELECT COUNT(*) FROM {}.{BUCKET_TABLE}), 0)
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            cfg.shards.database.quoted()
        ),
        (database, BUCKET_TABLE),
    );
    if buckets.ok().flatten() != Some(BUCKETS) {
        missing.push(BUCKET_TABLE.to_string());
    }
    let guarded = match table.as_deref() {
        Some(engine) => {
            if !engine.eq_ignore_ascii_case("InnoDB") {
                missing.push(format!("{TABLE} (an older {engine} table)"));
            }
            db.exec_first(
                "counting guarded users",
                &format!("SELECT COUNT(*) FROM {}", qualified(cfg, TABLE)),
                (),
            )?
            .unwrap_or(0)
        }
        None => {
            missing.push(TABLE.to_string());
            0
        }
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

fn qualified(cfg: &Config, table: &str) -> String {
    format!("{}.{table}", cfg.shards.database.quoted())
}

/// Guards `users` on `db`'s server (a guard session's): their rows refuse every write but
/// shardctl's until lifted. `lives_on` names where they live now, for the refusal's message.
fn guard(cfg: &Config, db: &mut Db, users: &[u64], lives_on: &str) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let mut params = Vec::with_capacity(users.len() * 2);
    for u in users {
        params.extend([mysql::Value::from(*u), lives_on.into()]);
    }
    let rows = format!(
        "INSERT INTO {} (user_id, lives_on, guarded_at) VALUES {}
         ON DUPLICATE KEY UPDATE lives_on = VALUES(lives_on), guarded_at = VALUES(guarded_at)",
        qualified(cfg, TABLE),
        vec!["(?, ?, UTC_TIMESTAMP(6))"; users.len()].join(", ")
    );
    change_buckets(cfg, db, users, "guarding the users", &rows, params)
}

/// Lifts the guard of `users` on `db`'s server (a guard session's): given back to it, moved
/// onto it, or pruned. Users it does not guard are left alone: their buckets are not written
/// (nor waited for).
fn unguard(cfg: &Config, db: &mut Db, users: &[u64]) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let guarded: Vec<u64> = db.exec(
        "reading the guard",
        &format!(
            "SELECT user_id FROM {} WHERE user_id IN ({})",
            qualified(cfg, TABLE),
            placeholders(users.len())
        ),
        values(users),
    )?;
    if guarded.is_empty() {
        return Ok(());
    }
    let users = guarded.as_slice();
    let rows = format!(
        "DELETE FROM {} WHERE user_id IN ({})",
        qualified(cfg, TABLE),
        placeholders(users.len())
    );
    change_buckets(cfg, db, users, "lifting the guard", &rows, values(users))
}

/// Changes the guard table (`rows`) and then the bucket rows of `users` to match, in one
/// transaction: the buckets' update waits for every open transaction that wrote a user of those
/// buckets (the barrier), at most `GUARD_LOCK_WAIT`; past it, nothing changes and the refusal
/// names the transactions holding locks.
fn change_buckets(
    cfg: &Config,
    db: &mut Db,
    users: &[u64],
    doing: &str,
    rows: &str,
    params: Vec<mysql::Value>,
) -> Result<()> {
    let mut buckets: Vec<u64> = users.iter().map(|u| u % BUCKETS).collect();
    // Always in one order: two moves guarding at once cannot deadlock on them.
    buckets.sort_unstable();
    buckets.dedup();
    let changed = db.transaction(doing, |tx| {
        tx.exec_drop(rows, params)?;
        write_buckets(cfg, tx, &buckets)
    });
    match changed {
        Err(e) if e.is(crate::error::DbErrorKind::LockWaitTimeout) => {
            let holders = super::handover::holders(db).unwrap_or_else(|e| e.to_string());
            Err(Error::Refused(format!(
                "{doing} on {} waited {}s for open transactions that wrote users sharing their guard bucket (holding locks: {holders})",
                db.server,
                GUARD_LOCK_WAIT.as_secs()
            )))
        }
        other => other,
    }
}

/// Whether moves guard their users: `[shards] write_guard`.
pub fn enabled(cfg: &Config) -> bool {
    cfg.shards.write_guard
}

/// The refusal for a write guard that is configured but not installed on a server.
pub fn not_installed(server: &str, missing: &[String]) -> Error {
    Error::Refused(format!(
        "[shards] write_guard is on but {server} lacks {}: run `shardctl guard install`",
        missing.join(", ")
    ))
}

/// Refuses a move onto or off a server that lacks the guard, when it is configured.
fn check_installed(cfg: &Config, db: &mut Db) -> Result<()> {
    let have = inspect(cfg, db)?;
    if !have.installed {
        return Err(not_installed(&db.server.to_string(), &have.missing));
    }
    Ok(())
}

/// A session for guard rows on one server: nothing it writes is replicated (each server is
/// guarded by shardctl itself, so a lagging peer is too), and it waits for application
/// transactions holding a bucket row at most `GUARD_LOCK_WAIT`.
fn session(cfg: &Config, addr: &HostPort) -> Result<Db> {
    let mut db = home::session(cfg, addr, GUARD_LOCK_WAIT + Duration::from_secs(5))?;
    db.exec_drop(
        "bounding the guard's lock waits",
        "SET SESSION innodb_lock_wait_timeout = ?, lock_wait_timeout = ?, tx_isolation = 'READ-COMMITTED'",
        (GUARD_LOCK_WAIT.as_secs(), GUARD_LOCK_WAIT.as_secs()),
    )?;
    Ok(db)
}

/// Runs `f` on every one of `servers` at once, each on a guard session whose server has the
/// guard installed; fails naming every server where it could not be done.
/// (Whether the guard is installed is checked once per server and command.)
fn on_each(
    conns: &Conns,
    servers: &[HostPort],
    what: &str,
    f: impl Fn(&mut Db) -> Result<()> + Sync,
) -> Result<()> {
    let cfg = conns.cfg();
    let failed: Vec<String> = crate::parallel::each(servers, |addr| {
        conns
            .once(addr, "the write guard installed", |db| {
                check_installed(cfg, db)
            })
            .and_then(|()| session(cfg, addr))
            .and_then(|mut db| f(&mut db))
            .err()
            .map(|e| format!("{addr}: {e}"))
    })
    .into_iter()
    .flatten()
    .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "{what} could not be confirmed on every server of the shard ({})",
        failed.join("; ")
    )))
}

/// Before a move: every server of the destination shard has the guard (a move onto a server
/// without it could not be guarded there later).
pub fn check_destination(conns: &Conns, servers: &[HostPort]) -> Result<()> {
    if !enabled(conns.cfg()) {
        return Ok(());
    }
    on_each(conns, servers, "checking the destination's guard", |_| {
        Ok(())
    })
}

/// At the flip: the users' guard lifted on every server of the destination shard (its rows
/// are theirs now).
pub fn open_destination(conns: &Conns, servers: &[HostPort], users: &[u64]) -> Result<()> {
    if !enabled(conns.cfg()) {
        return Ok(());
    }
    on_each(conns, servers, "lifting the destination's guard", |db| {
        unguard(conns.cfg(), db, users)
    })
}

/// Before a move marks `users` moving: guarded on every server of the source shard, each
/// directly. A server that cannot be guarded holds the move (the caller gives it back).
pub fn close_source(
    conns: &Conns,
    servers: &[HostPort],
    users: &[u64],
    to_shard: &str,
) -> Result<()> {
    if !enabled(conns.cfg()) {
        return Ok(());
    }
    on_each(conns, servers, "guarding the source", |db| {
        guard(conns.cfg(), db, users, to_shard)
    })
}

/// The move was undone: the users are the source's again, on every server of its shard.
pub fn given_back(conns: &Conns, servers: &[HostPort], users: &[u64]) -> Result<()> {
    if !enabled(conns.cfg()) {
        return Ok(());
    }
    on_each(conns, servers, "lifting the source's guard", |db| {
        unguard(conns.cfg(), db, users)
    })
}

/// Installs the guard on `servers` (a shard being added) when it is configured: a shard that
/// lacks it could not take part in guarded moves.
pub fn install_on(cfg: &Config, servers: &[HostPort]) -> Result<()> {
    if !enabled(cfg) && !home::enabled(cfg) {
        return Ok(());
    }
    let statements = install_statements(cfg);
    for addr in servers {
        let mut db = super::connect(cfg, addr)?;
        apply(&mut db, &statements, Duration::from_secs(30))?;
        sync_buckets(cfg, &mut db)?;
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
    /// `force`: even while migrations are in flight or users are guarded.
    Remove {
        force: bool,
    },
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Status => "status",
            Action::Install => "install",
            Action::Remove { .. } => "remove",
        }
    }
}

/// A server, with its shard's name.
type ShardServer = (String, HostPort);

/// A migration not finished: (id, user, state).
type Unfinished = (u64, u64, String);

/// Every server of every registered shard, with its shard's name.
fn all_servers(ring: &mut Db) -> Result<(Vec<crate::ring::directory::Shard>, Vec<ShardServer>)> {
    let shards = crate::ring::directory::shards(ring)?;
    let servers = shards
        .iter()
        .flat_map(|s| {
            s.servers
                .iter()
                .map(|v| (s.name.to_string(), v.addr.clone()))
        })
        .collect();
    Ok((shards, servers))
}

/// Migrations not finished (neither done nor rolled back): (id, user, state), the first 20,
/// and how many there are.
fn in_flight(ring: &mut Db) -> Result<(Vec<Unfinished>, u64)> {
    let listed = ring.exec(
        "listing unfinished migrations",
        "SELECT migration_id, user_id, state FROM migrations
         WHERE state NOT IN ('done', 'rolled_back') ORDER BY migration_id LIMIT 20",
        (),
    )?;
    let count = ring
        .exec_first(
            "counting unfinished migrations",
            "SELECT COUNT(*) FROM migrations WHERE state NOT IN ('done', 'rolled_back')",
            (),
        )?
        .unwrap_or(0);
    Ok((listed, count))
}

/// Refuses `guard remove` while removing it would unprotect someone: a migration in flight
/// (its source would take writes again mid-move) or users guarded on a server they left.
fn check_removable(cfg: &Config, ring: &mut Db, servers: &[(String, HostPort)]) -> Result<()> {
    let (migrations, count) = in_flight(ring)?;
    let guarded: Vec<String> = crate::parallel::each(servers, |(_, addr)| {
        super::connect(cfg, addr)
            .and_then(|mut db| inspect(cfg, &mut db))
            .ok()
            .filter(|i| i.guarded > 0)
            .map(|i| format!("{addr} guards {}", i.guarded))
    })
    .into_iter()
    .flatten()
    .collect();
    let mut why = Vec::new();
    if count > 0 {
        why.push(format!(
            "{count} migration(s) are in flight ({}): their sources would take writes mid-move",
            migrations
                .iter()
                .map(|(id, user, state)| format!("#{id} user {user} {state}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !guarded.is_empty() {
        why.push(format!(
            "users moved away are guarded ({}): their old servers would take writes from stale routes",
            guarded.join(", ")
        ));
    }
    if why.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "guard remove refused: {}; finish the migrations (`shardctl migrate resume --all`) or prune old rows (`shardctl guard prune`), or pass --force",
        why.join("; ")
    )))
}

/// Runs `action` on every server of every registered shard (in parallel), each metadata lock
/// waited for at most `timeout`.
pub fn everywhere(cfg: &Config, action: Action, timeout: Duration) -> Result<Vec<ServerGuard>> {
    let mut ring = crate::ring::open(cfg)?;
    let (shards, servers) = all_servers(&mut ring)?;
    if action == (Action::Remove { force: false }) {
        check_removable(cfg, &mut ring, &servers)?;
    }
    let statements = match action {
        Action::Status => Vec::new(),
        Action::Install => install_statements(cfg),
        Action::Remove { .. } => remove_statements(cfg),
    };
    let applied = crate::parallel::each(&servers, |(_, addr)| -> Result<()> {
        if action == Action::Status {
            return Ok(());
        }
        let mut db = super::connect(cfg, addr)?;
        db.set_timeouts(
            timeout + Duration::from_secs(5),
            timeout + Duration::from_secs(5),
        )?;
        apply(&mut db, &statements, timeout)?;
        if action == Action::Install {
            sync_buckets(cfg, &mut db)?;
        }
        Ok(())
    });
    // Installed everywhere first: a hand-over needs every server of the shard to have it.
    let mut unsettled: Vec<(String, String)> = Vec::new();
    if action == Action::Install {
        for (shard, result) in shards
            .iter()
            .zip(super::handover::to_ring(cfg, &shards, timeout))
        {
            if let Err(e) = result {
                unsettled.push((shard.name.to_string(), e));
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
    let force = match action {
        Action::Status => return Ok(results),
        Action::Install => false,
        Action::Remove { force } => force,
    };
    let entries: Vec<(String, serde_json::Value)> = results
        .iter()
        .map(|s| {
            (
                format!("{}:{}", s.host, s.port),
                serde_json::json!({ "shard": s.shard, "ok": s.error.is_none(), "force": force }),
            )
        })
        .collect();
    let verb = format!("guard.{}", action.name());
    ring.run("auditing", |c| {
        crate::ring::audit::record_many(c, &verb, &entries)
    })?;
    Ok(results)
}

/// One server's old guard rows, as `guard prune` reports them.
#[derive(Clone, Debug, Serialize)]
pub struct ServerPrune {
    pub shard: String,
    pub host: String,
    pub port: u16,
    /// Users whose guard was lifted (would be, in a dry run).
    pub users: Vec<u64>,
    pub error: Option<String>,
}

/// Lifts the guard of users guarded longer ago than `older_than` on every shard server (but
/// for users with a migration in flight), and audits what it lifted.
pub fn prune(cfg: &Config, older_than: Duration, dry_run: bool) -> Result<Vec<ServerPrune>> {
    let mut ring = crate::ring::open(cfg)?;
    let (_, servers) = all_servers(&mut ring)?;
    let busy: Vec<u64> = ring.exec(
        "listing users with unfinished migrations",
        "SELECT DISTINCT user_id FROM migrations WHERE state NOT IN ('done', 'rolled_back')",
        (),
    )?;
    let micros = older_than.as_micros() as u64;
    let old = "(guarded_at IS NULL OR guarded_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND)";
    let results = crate::parallel::each(&servers, |(shard, addr)| {
        let pruned = (|| -> Result<Vec<u64>> {
            let mut db = session(cfg, addr)?;
            let users: Vec<u64> = db
                .exec::<u64>(
                    "listing old guard rows",
                    &format!(
                        "SELECT user_id FROM {} WHERE {old} ORDER BY user_id",
                        qualified(cfg, TABLE)
                    ),
                    (micros,),
                )?
                .into_iter()
                .filter(|u| !busy.contains(u))
                .collect();
            if !dry_run {
                for chunk in users.chunks(1000) {
                    let mut params = vec![mysql::Value::from(micros)];
                    params.extend(values(chunk));
                    // Only rows still old: a user guarded again meanwhile stays guarded.
                    let rows = format!(
                        "DELETE FROM {} WHERE {old} AND user_id IN ({})",
                        qualified(cfg, TABLE),
                        placeholders(chunk.len())
                    );
                    change_buckets(cfg, &mut db, chunk, "lifting old guard rows", &rows, params)?;
                }
            }
            Ok(users)
        })();
        ServerPrune {
            shard: shard.clone(),
            host: addr.host.clone(),
            port: addr.port,
            users: pruned.as_ref().cloned().unwrap_or_default(),
            error: pruned.err().map(|e| e.to_string()),
        }
    });
    if !dry_run {
        let entries: Vec<(String, serde_json::Value)> = results
            .iter()
            .map(|s| {
                (
                    format!("{}:{}", s.host, s.port),
                    serde_json::json!({ "shard": s.shard, "users": s.users.len(), "older_than_seconds": older_than.as_secs(), "ok": s.error.is_none() }),
                )
            })
            .collect();
        ring.run("auditing", |c| {
            crate::ring::audit::record_many(c, "guard.prune", &entries)
        })?;
    }
    Ok(results)
}

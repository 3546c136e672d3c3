//! Online moves: the user stays writable while its rows are copied from a consistent snapshot
//! of the source; the source's binary log from the snapshot's position is then applied to the
//! destination, pass after pass (`binlog` reads it, `applier` writes it), until little is left.
//! Only then is the user marked `moving`, for the last pass, the verification and the flip:
//! under a second, at any size. This module holds the rules: whether a source can be followed,
//! where it stands, its snapshots, when to stop catching up.

use std::fmt;

use mysql::prelude::Queryable;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::db::{placeholders, Db};
use crate::error::{Error, Result};
use crate::shard::conns::{Conns, Lent};

use super::data::Table;
use crate::types::HostPort;

/// A place in a server's binary log: the file and the offset just past an event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub file: String,
    pub pos: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

impl FromStr for Position {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Position, String> {
        let (file, pos) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("binlog position `{s}` is not FILE:POS"))?;
        Ok(Position {
            file: file.to_string(),
            pos: pos
                .parse()
                .map_err(|_| format!("binlog position `{s}` has no numeric offset"))?,
        })
    }
}

/// Whether a move goes online.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Online where the source allows it and the account is large enough, else offline.
    Auto,
    /// Writable while copying; refused where the source's binary log cannot be followed.
    Online,
    /// Read-only from before the copy until the flip.
    Offline,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Online => "online",
            Mode::Offline => "offline",
        }
    }
}

/// What keeps the source from being followed, one sentence each; empty when nothing does.
/// `peers`: the other servers of the source's shard that answered, with their server ids
/// (none may replicate as our server_id); `peers_write`: some other server of the shard is
/// online, so an application may write the user there.
pub fn unmet_preconditions(
    cfg: &Config,
    src: &mut Db,
    peers: &[(HostPort, u32)],
    peers_write: bool,
) -> Result<Vec<String>> {
    let mut unmet = unmet_settings(cfg, src, peers, peers_write)?;
    unmet.extend(unmet_privileges(src)?);
    Ok(unmet)
}

/// The server's settings that keep it from being followed (`doctor` checks the privileges
/// with the others).
pub fn unmet_settings(
    cfg: &Config,
    src: &mut Db,
    peers: &[(HostPort, u32)],
    peers_write: bool,
) -> Result<Vec<String>> {
    let vars: Vec<(String, String)> = src.exec(
        "reading the binary log settings",
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', 'binlog_row_image', 'log_bin_compress', 'server_id', 'log_slave_updates')",
        (),
    )?;
    let var = |name: &str| {
        vars.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_uppercase())
            .unwrap_or_default()
    };
    let server = src.server.clone();
    let mut unmet = Vec::new();
    if var("log_bin") != "ON" {
        unmet.push(format!("{server} writes no binary log (log_bin is OFF)"));
    }
    if var("binlog_format") != "ROW" {
        unmet.push(format!(
            "{server} has binlog_format={} (online moves need ROW)",
            var("binlog_format")
        ));
    }
    if var("binlog_row_image") != "FULL" {
        unmet.push(format!(
            "{server} has binlog_row_image={} (online moves need FULL: a smaller image may lack the owner column)",
            var("binlog_row_image")
        ));
    }
    if peers_write && var("log_slave_updates") != "ON" {
        unmet.push(format!(
            "{server} does not log what it applies from its peer (log_slave_updates=OFF): a write made on the peer during a move would never reach the mover"
        ));
    }
    if var("log_bin_compress") == "ON" {
        unmet.push(format!(
            "{server} compresses its binary log (log_bin_compress=ON), which shardctl cannot read"
        ));
    }
    let ours = cfg.migrate.server_id;
    let mut ids: Vec<(String, u32)> =
        vec![(server.to_string(), var("server_id").parse().unwrap_or(0))];
    ids.extend(peers.iter().map(|(p, id)| (p.to_string(), *id)));
    // Registered replicas (needs a privilege shardctl may not have: then only the servers
    // themselves are checked).
    if let Ok(rows) = src.exec::<mysql::Row>("listing replicas", "SHOW SLAVE HOSTS", ()) {
        for r in rows {
            if let Some(Ok(id)) = r.get_opt::<u32, _>(0) {
                ids.push((format!("a replica of {server}"), id));
            }
        }
    }
    if let Some((who, _)) = ids.iter().find(|(_, id)| *id == ours) {
        unmet.push(format!(
            "{who} uses server_id {ours}, shardctl's replication id ([migrate] server_id): give shardctl one no server uses"
        ));
    }
    Ok(unmet)
}

/// Whether the login may follow the binary log: the GRANT it lacks, if it does.
fn unmet_privileges(src: &mut Db) -> Result<Option<String>> {
    let account: Option<String> =
        src.exec_first("reading the login", "SELECT CURRENT_USER()", ())?;
    let account = account.unwrap_or_default();
    let grants: Vec<String> = src.exec("reading the login's grants", "SHOW GRANTS", ())?;
    let all = grants.join(" ").to_ascii_uppercase();
    let has = |p: &str| all.contains(p);
    let everything = has("ALL PRIVILEGES ON *.*");
    let slave = everything || has("REPLICATION SLAVE");
    let monitor = everything || has("BINLOG MONITOR") || has("REPLICATION CLIENT") || has("SUPER");
    if slave && monitor {
        return Ok(None);
    }
    let (user, host) = account.rsplit_once('@').unwrap_or((&account, "%"));
    Ok(Some(format!(
        "the shard login may not read {}'s binary log: GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'{host}'",
        src.server
    )))
}

/// The source's current binary log position (every transaction committed before it is in the
/// data, every one committed after it is in the log past it).
pub fn current_position(db: &mut Db) -> Result<Position> {
    let row: Option<mysql::Row> =
        db.exec_first("reading the binlog position", "SHOW MASTER STATUS", ())?;
    let row = row.ok_or_else(|| {
        Error::Refused(format!(
            "{} writes no binary log; an online move cannot follow it",
            db.server
        ))
    })?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    match (file, pos) {
        (Some(file), Some(pos)) => Ok(Position { file, pos }),
        _ => Err(Error::inconsistent(format!(
            "{}: SHOW MASTER STATUS gave no position",
            db.server
        ))),
    }
}

/// A consistent snapshot of the source and the binary log position it stands at: rows read
/// through it are exactly the rows as of that position. Ended (rolled back) when dropped.
pub struct Snapshot<'a> {
    pub db: Lent<'a>,
    pub at: Position,
}

/// Times to try opening snapshots that all stand at one position (a commit between two
/// openings moves it) before copying through one snapshot only.
const ALIGN_ATTEMPTS: usize = 20;

impl<'a> Snapshot<'a> {
    pub fn open(conns: &'a Conns<'a>, addr: &HostPort) -> Result<Snapshot<'a>> {
        let mut one = Snapshot::open_many(conns, addr, 1)?;
        one.pop()
            .ok_or_else(|| Error::inconsistent("no snapshot was opened"))
    }

    /// `n` snapshots at one position, so parallel streams copy one consistent state; a source
    /// that commits too often for that gives one (the streams then take turns on it).
    pub fn open_many(conns: &'a Conns<'a>, addr: &HostPort, n: usize) -> Result<Vec<Snapshot<'a>>> {
        for _ in 0..ALIGN_ATTEMPTS {
            let mut dbs = (0..n)
                .map(|_| conns.get(addr))
                .collect::<Result<Vec<_>>>()?;
            for db in &mut dbs {
                // Shared sessions read committed; a snapshot needs a read view that lasts.
                db.query_drop(
                    "opening a consistent snapshot",
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                )?;
            }
            // Back to back: the fewer commits between the first and the last, the likelier
            // they all stand at one position.
            for db in &mut dbs {
                db.query_drop(
                    "opening a consistent snapshot",
                    "START TRANSACTION WITH CONSISTENT SNAPSHOT",
                )?;
            }
            let snaps = dbs
                .into_iter()
                .map(|mut db| {
                    let at = snapshot_position(&mut db)?;
                    Ok(Snapshot { db, at })
                })
                .collect::<Result<Vec<_>>>()?;
            if snaps.windows(2).all(|w| w[0].at == w[1].at) {
                return Ok(snaps);
            }
        }
        Snapshot::open_many(conns, addr, 1)
    }
}

/// The binlog position of the snapshot `db` has open.
fn snapshot_position(db: &mut Db) -> Result<Position> {
    let status: Vec<(String, String)> = db.exec(
        "reading the snapshot's binlog position",
        "SHOW STATUS LIKE 'binlog_snapshot_%'",
        (),
    )?;
    let get = |name: &str| {
        status
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let addr = &db.server;
    match (get("binlog_snapshot_file"), get("binlog_snapshot_position")) {
        (Some(file), Some(pos)) if !file.is_empty() => Ok(Position {
            file,
            pos: pos.parse().map_err(|_| {
                Error::inconsistent(format!("{addr}: binlog_snapshot_position `{pos}`"))
            })?,
        }),
        _ => Err(Error::Refused(format!(
            "{addr} gives no binlog position for a snapshot (is its binary log on?)"
        ))),
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        if self
            .db
            .query_drop("ending the snapshot", "ROLLBACK")
            .is_err()
        {
            // Whatever state it is in, it is not one to lend again.
            self.db.mark_lost();
        }
    }
}

/// Catch-up passes stop when one applies at most this many changes, or took at most this long:
/// the last pass, in the read-only window, then has as little to do.
const SMALL_PASS: usize = 200;
const SHORT_PASS: Duration = Duration::from_millis(150);
/// At most this many passes while writable: a writer faster than the copy never lets a pass be
/// small, and the read-only window then takes what is left.
const MAX_PASSES: usize = 20;

/// Whether to mark the user now, after `passes` passes of which the last applied `changes` in
/// `took`.
pub fn converged(passes: usize, changes: usize, took: Duration) -> bool {
    passes >= MAX_PASSES || changes <= SMALL_PASS || took <= SHORT_PASS
}

/// The read-only window's barrier, once the users are guarded: waits until every transaction
/// that changed their rows before has ended. Locking reads of the users' rows wait on each row
/// lock such a transaction holds, and on nothing else: other users' writers never hold it up.
/// Two per table: one through the owner index (an uncommitted insert, delete or change of
/// owner holds its entry there) and one through the primary key, point by point, for the
/// rows the first found (an update of other columns locks only the row itself). At most
/// `timeout` in all; then the transactions holding locks on the server, named.
pub fn wait_for_writers(
    db: &mut Db,
    tables: &[Table],
    users: &[u64],
    timeout: Duration,
) -> Result<Option<String>> {
    let until = Instant::now() + timeout;
    let waited = tables
        .iter()
        .try_for_each(|t| lock_rows_of(db, t, users, until));
    // The session is lent again: its own bounds go back to the server's.
    let restored = db.query_drop(
        "bounding the wait for the users' writers",
        "SET SESSION innodb_lock_wait_timeout = DEFAULT, max_statement_time = DEFAULT",
    );
    match waited {
        Ok(()) => restored.map(|()| None),
        Err(e) if e.is(crate::error::DbErrorKind::LockWaitTimeout) => {
            Ok(Some(crate::shard::handover::holders(db)?))
        }
        Err(e) => Err(e),
    }
}

/// Takes (and gives back) a shared lock on each of `users`' rows of `t`, waiting until
/// `until` at most for the transactions holding them.
fn lock_rows_of(db: &mut Db, t: &Table, users: &[u64], until: Instant) -> Result<()> {
    let owned = format!("{} IN ({})", t.owner.quoted(), placeholders(users.len()));
    // The rows' keys, as committed (a plain read takes no lock).
    let keys: Vec<mysql::Row> = if t.primary_key.is_empty() {
        Vec::new()
    } else {
        db.exec(
            "reading the users' keys",
            &format!(
                "SELECT {} FROM {} WHERE {owned}",
                t.key_list(),
                t.name.quoted()
            ),
            crate::db::values(users),
        )?
    };
    let left = until
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    db.exec_drop(
        "bounding the wait for the users' writers",
        "SET SESSION innodb_lock_wait_timeout = ?, max_statement_time = ?",
        (left.as_secs(), left.as_secs_f64()),
    )?;
    let by_owner = format!(
        "SELECT COUNT(*) FROM {} WHERE {owned} LOCK IN SHARE MODE",
        t.name.quoted()
    );
    let by_key: Vec<String> = keys
        .chunks(KEYS_PER_READ)
        .map(|chunk| {
            format!(
                "SELECT STRAIGHT_JOIN COUNT(*) FROM {} LOCK IN SHARE MODE",
                super::data::keys_join(t, chunk)
            )
        })
        .collect();
    // The counts are read, not dropped: a lock wait that runs out arrives after the result's
    // columns, and a dropped result swallows it (the `mysql` crate drains it silently).
    db.transaction("waiting for the users' writers", |tx| {
        tx.exec_first::<u64, _, _>(&by_owner, crate::db::values(users))?;
        for sql in &by_key {
            tx.exec_first::<u64, _, _>(sql, ())?;
        }
        Ok(())
    })
}

/// Keys one point-by-point locking read names, in all.
const KEYS_PER_READ: usize = 20_000;

/// Waits until no prepared XA transaction is open on `db`'s server, at most `timeout`; the
/// XIDs of those still open otherwise. A prepared transaction's changes are in neither a
/// snapshot nor the data a copy reads, and it may commit at any time later: a move off a
/// server holding one could leave its changes behind on the old shard.
pub fn wait_for_prepared_xa(db: &mut Db, timeout: Duration) -> Result<Option<String>> {
    let until = Instant::now() + timeout;
    loop {
        let open = crate::shard::handover::prepared_xa(db)?;
        if open.is_empty() {
            return Ok(None);
        }
        if Instant::now() >= until {
            return Ok(Some(open.join(", ")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The refusal for prepared XA transactions that did not end in time.
pub fn prepared_xa_refusal(server: &HostPort, xids: &str, waited: Duration, shard: &str) -> Error {
    Error::Refused(format!(
        "prepared XA transactions on {server} did not end within {}s (XA RECOVER lists {xids}): their changes may be the user's and would commit on the old shard; commit or roll them back (XA COMMIT / XA ROLLBACK), then move again; the user stays on {shard}",
        waited.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_as_written() {
        let p = Position {
            file: "mariadb-bin.000007".into(),
            pos: 1234,
        };
        assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        assert!("nofile".parse::<Position>().is_err());
    }

    #[test]
    fn catching_up_stops_on_a_small_or_short_pass_or_after_enough() {
        assert!(!converged(1, 5000, Duration::from_secs(1)));
        assert!(converged(1, 10, Duration::from_secs(1)));
        assert!(converged(1, 5000, Duration::from_millis(100)));
        assert!(converged(MAX_PASSES, 5000, Duration::from_secs(1)));
    }
}

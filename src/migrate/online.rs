//! Online moves: the user stays writable while its rows are copied; the source's binary log
//! then says which of its rows changed meanwhile, and those rows are copied again, pass after
//! pass, until little is left. Only then is the user marked `moving`, for the last pass, the
//! verification and the flip: under a second, at any size.
//!
//! A pass does not replay the events' values: it takes the keys of the user's rows an event
//! touched (before and after images, so a row moving into or out of the owner counts) and
//! re-reads those rows from the source, deleting and inserting them on the destination in one
//! fenced transaction per chunk. Applying a pass twice or from an earlier position changes
//! nothing, and every column type goes through the same conversion as the batch copy.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use mysql::binlog::events::{EventData, RowsEventData, TableMapEvent};
use mysql::{BinlogDumpFlags, BinlogRequest, Value};

use super::data::{self, Table};
use crate::config::Config;
use crate::db::{placeholders, Db};
use crate::error::{Error, Result};
use crate::shard::conns::{Conns, Lent};
use crate::shard::fence;
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
/// `peers` are the other servers of the source's shard (none may replicate as our server_id).
pub fn unmet_preconditions(cfg: &Config, src: &mut Db, peers: &[HostPort]) -> Result<Vec<String>> {
    let mut unmet = unmet_settings(cfg, src, peers)?;
    unmet.extend(unmet_privileges(src)?);
    Ok(unmet)
}

/// The server's settings that keep it from being followed (`doctor` checks the privileges
/// with the others).
pub fn unmet_settings(cfg: &Config, src: &mut Db, peers: &[HostPort]) -> Result<Vec<String>> {
    let vars: Vec<(String, String)> = src.exec(
        "reading the binary log settings",
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', 'binlog_row_image', 'log_bin_compress', 'server_id')",
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
    if var("log_bin_compress") == "ON" {
        unmet.push(format!(
            "{server} compresses its binary log (log_bin_compress=ON), which shardctl cannot read"
        ));
    }
    let ours = cfg.migrate.server_id;
    let mut ids: Vec<(String, u32)> =
        vec![(server.to_string(), var("server_id").parse().unwrap_or(0))];
    for p in peers {
        if let Ok(id) = crate::shard::connect(cfg, p).and_then(|mut db| {
            db.exec_first::<u32>("reading the server id", "SELECT @@server_id", ())
        }) {
            ids.push((p.to_string(), id.unwrap_or(0)));
        }
    }
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

impl<'a> Snapshot<'a> {
    pub fn open(conns: &'a Conns<'a>, addr: &HostPort) -> Result<Snapshot<'a>> {
        let mut db = conns.get(addr)?;
        // Shared sessions read committed; a snapshot needs a read view that lasts.
        db.query_drop(
            "opening a consistent snapshot",
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        )?;
        db.query_drop(
            "opening a consistent snapshot",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
        )?;
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
        let at = match (get("binlog_snapshot_file"), get("binlog_snapshot_position")) {
            (Some(file), Some(pos)) if !file.is_empty() => Position {
                file,
                pos: pos.parse().map_err(|_| {
                    Error::inconsistent(format!("{addr}: binlog_snapshot_position `{pos}`"))
                })?,
            },
            _ => {
                return Err(Error::Refused(format!(
                    "{addr} gives no binlog position for a snapshot (is its binary log on?)"
                )))
            }
        };
        Ok(Snapshot { db, at })
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

/// Where, in a table's row images, its key and owner columns are.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Row-image index of each primary key column, in key order.
    pub key: Vec<usize>,
    pub owner: usize,
    /// Per key column: the column is unsigned (an image carries it as signed).
    pub unsigned: Vec<bool>,
}

/// A table's columns as information_schema lists them: (name, generated VIRTUAL, unsigned).
type Columns = Vec<(String, bool, bool)>;

/// The layout of a row image of `columns` entries: every column, or every one but the virtual
/// ones (which a server may leave out of its images).
fn layout(table: &Table, columns: &Columns, image_columns: usize) -> Option<Layout> {
    let listed: Vec<&(String, bool, bool)> = if image_columns == columns.len() {
        columns.iter().collect()
    } else {
        let stored: Vec<_> = columns.iter().filter(|c| !c.1).collect();
        if stored.len() != image_columns {
            return None;
        }
        stored
    };
    let at = |name: &str| listed.iter().position(|c| c.0 == name);
    let key: Vec<usize> = table
        .primary_key
        .iter()
        .map(|k| at(k.as_str()))
        .collect::<Option<_>>()?;
    let unsigned = key.iter().map(|&i| listed[i].2).collect();
    Some(Layout {
        key,
        owner: at(table.owner.as_str())?,
        unsigned,
    })
}

/// Whether an image's owner value is `user`.
fn owned_by(v: Option<&Value>, user: u64) -> bool {
    match v {
        Some(Value::UInt(n)) => *n == user,
        Some(Value::Int(n)) => *n as u64 == user,
        Some(Value::Bytes(b)) => {
            std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()) == Some(user)
        }
        _ => false,
    }
}

/// The key of an image, with unsigned columns given back their sign.
fn key_of(image: &[Value], layout: &Layout) -> Option<Vec<Value>> {
    layout
        .key
        .iter()
        .zip(&layout.unsigned)
        .map(|(&i, &unsigned)| {
            image.get(i).map(|v| match v {
                Value::Int(n) if unsigned => Value::UInt(*n as u64),
                v => v.clone(),
            })
        })
        .collect()
}

/// The keys of `user`'s rows that one row change touched: the before image's if it was the
/// user's, the after image's if it is.
pub fn touched(
    before: Option<&[Value]>,
    after: Option<&[Value]>,
    layout: &Layout,
    user: u64,
) -> Vec<Vec<Value>> {
    [before, after]
        .into_iter()
        .flatten()
        .filter(|image| owned_by(image.get(layout.owner), user))
        .filter_map(|image| key_of(image, layout))
        .collect()
}

/// The binlog file a rotate event names. MariaDB appends the event's checksum to the name of
/// the first (artificial) one, so the name is matched against the files the server lists.
pub fn rotated_file(received: &[u8], files: &[String]) -> Option<String> {
    files
        .iter()
        .filter(|f| received.starts_with(f.as_bytes()) && received.len() <= f.len() + 4)
        .max_by_key(|f| f.len())
        .cloned()
}

/// Keys touched, per table (by index), deduplicated by their encoding.
pub type Touched = Vec<HashMap<Vec<u8>, Vec<Value>>>;

/// What one pass over the log found.
pub struct Pass {
    /// Just past the last committed transaction read.
    pub end: Position,
    pub touched: Touched,
    /// Transactions committed in the range.
    pub transactions: u64,
}

impl Pass {
    pub fn keys(&self) -> usize {
        self.touched.iter().map(HashMap::len).sum()
    }
}

/// Follows one source server's binary log for one user.
pub struct Tail<'a> {
    conns: &'a Conns<'a>,
    src: HostPort,
    user: u64,
    tables: Vec<Table>,
    columns: Vec<Columns>,
}

impl<'a> Tail<'a> {
    pub fn new(
        conns: &'a Conns<'a>,
        src: &HostPort,
        user: u64,
        tables: &[Table],
    ) -> Result<Tail<'a>> {
        let cfg = conns.cfg();
        let mut db = conns.get(src)?;
        let columns = tables
            .iter()
            .map(|t| {
                let rows: Vec<(String, String, String)> = db.exec(
                    "reading the table's columns",
                    "SELECT COLUMN_NAME, EXTRA, COLUMN_TYPE FROM information_schema.COLUMNS
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                    (cfg.shards.database.as_str(), t.name.as_str()),
                )?;
                Ok(rows
                    .into_iter()
                    .map(|(name, extra, ty)| {
                        let virt = extra.to_ascii_uppercase().contains("VIRTUAL");
                        (name, virt, ty.to_ascii_lowercase().contains("unsigned"))
                    })
                    .collect())
            })
            .collect::<Result<_>>()?;
        Ok(Tail {
            conns,
            src: src.clone(),
            user,
            tables: tables.to_vec(),
            columns,
        })
    }

    fn fail(&self, what: impl fmt::Display) -> Error {
        Error::Failed(format!("following {}'s binary log: {what}", self.src))
    }

    /// Reads the log from `from` to its current end (the server closes the stream there), or
    /// only to `until`, and collects the keys of the user's rows that committed transactions
    /// touched.
    pub fn pass(&self, from: &Position, until: Option<&Position>) -> Result<Pass> {
        let cfg = self.conns.cfg();
        // The dump takes the session over for good.
        let mut db = self.conns.get(&self.src)?.keep();
        let files: Vec<String> = db
            .exec::<mysql::Row>("listing the binary logs", "SHOW BINARY LOGS", ())?
            .into_iter()
            .filter_map(|r| r.get::<String, _>(0))
            .collect();
        if !files.contains(&from.file) {
            return Err(self.fail(format!(
                "{} is no longer there (purged?): the changes since {from} cannot be followed",
                from.file
            )));
        }
        let request = BinlogRequest::new(cfg.migrate.server_id)
            .with_filename(from.file.as_bytes().to_vec())
            .with_pos(from.pos)
            .with_flags(BinlogDumpFlags::BINLOG_DUMP_NON_BLOCK);
        let stream = db
            .into_conn("following the binary log")?
            .get_binlog_stream(request)
            .map_err(|e| self.fail(e))?;
        let database = cfg.shards.database.as_str();
        let mut maps: HashMap<u64, (usize, TableMapEvent<'static>)> = HashMap::new();
        let mut file = from.file.clone();
        let mut committed = Pass {
            end: from.clone(),
            touched: vec![HashMap::new(); self.tables.len()],
            transactions: 0,
        };
        let mut open: Touched = vec![HashMap::new(); self.tables.len()];
        let mut in_transaction = false;
        let past =
            |file: &str, pos: u64| until.is_some_and(|u| (file, pos) > (u.file.as_str(), u.pos));
        for event in stream {
            let event = event.map_err(|e| self.fail(e))?;
            let log_pos = u64::from(event.header().log_pos());
            if !in_transaction && log_pos > 0 && past(&file, log_pos) {
                // The next transaction ends past `until`: the pass is complete.
                break;
            }
            let data = event.read_data().map_err(|e| self.fail(e))?;
            let mut commit = false;
            match data {
                Some(EventData::RotateEvent(r)) => {
                    // A file created since the listing is named as sent (only the first,
                    // artificial rotate carries the stray checksum).
                    file =
                        rotated_file(r.name_raw(), &files).unwrap_or_else(|| r.name().into_owned());
                    continue;
                }
                Some(EventData::TableMapEvent(tme)) => {
                    if tme.database_name() == database {
                        if let Some(i) = self
                            .tables
                            .iter()
                            .position(|t| t.name.as_str() == tme.table_name())
                        {
                            maps.insert(tme.table_id(), (i, tme.into_owned()));
                        }
                    }
                }
                Some(EventData::RowsEvent(rows)) => {
                    if let Some((i, tme)) = maps.get(&rows.table_id()) {
                        self.collect(&rows, tme, *i, &mut open)?;
                    }
                }
                Some(EventData::QueryEvent(q)) => {
                    let sql = q.query();
                    let word = sql.trim().to_ascii_uppercase();
                    if word == "BEGIN" {
                        in_transaction = true;
                    } else if word == "COMMIT" {
                        commit = true;
                    } else {
                        // A statement of its own (DDL): a transaction by itself.
                        commit = !in_transaction;
                    }
                }
                Some(EventData::XidEvent(_)) => commit = true,
                Some(EventData::UnknownEvent) | None => {
                    if in_transaction {
                        return Err(self.fail(format!(
                            "an event of unknown type {} inside a transaction at {file}:{log_pos}",
                            event.header().event_type_raw()
                        )));
                    }
                }
                Some(_) => {}
            }
            if commit {
                in_transaction = false;
                for (t, keys) in open.iter_mut().enumerate() {
                    committed.touched[t].extend(keys.drain());
                }
                committed.transactions += 1;
                if log_pos > 0 {
                    committed.end = Position {
                        file: file.clone(),
                        pos: log_pos,
                    };
                }
            }
        }
        if let Some(u) = until {
            // Everything committed up to `until` was read: the pass reached it.
            committed.end = committed.end.max(u.clone());
        }
        Ok(committed)
    }

    fn collect(
        &self,
        rows: &RowsEventData<'_>,
        tme: &TableMapEvent<'_>,
        table: usize,
        open: &mut Touched,
    ) -> Result<()> {
        let columns = tme.columns_count() as usize;
        let layout = layout(&self.tables[table], &self.columns[table], columns).ok_or_else(|| {
            self.fail(format!(
                "table `{}` has {columns} columns in the log, not the {} it has now (changed during the move?)",
                self.tables[table].name,
                self.columns[table].len()
            ))
        })?;
        for row in rows.rows(tme) {
            let (before, after) = row.map_err(|e| self.fail(e))?;
            let image = |r: Option<mysql::binlog::row::BinlogRow>| -> Result<Option<Vec<Value>>> {
                r.map(|r| {
                    r.unwrap()
                        .into_iter()
                        .map(|v| Value::try_from(v).map_err(|e| self.fail(e)))
                        .collect()
                })
                .transpose()
            };
            let (before, after) = (image(before)?, image(after)?);
            for key in touched(before.as_deref(), after.as_deref(), &layout, self.user) {
                let mut enc = Vec::new();
                for v in &key {
                    data::encode_value(&mut enc, v);
                    enc.push(0);
                }
                open[table].insert(enc, key);
            }
        }
        Ok(())
    }
}

/// Keys per statement of a pass's copy.
const KEYS_PER_CHUNK: usize = 500;

/// Copies the touched rows again: each chunk of keys is read from the source and replaced on
/// the destination in one fenced transaction. Returns the rows written.
pub fn apply(
    src: &mut Db,
    dst: &HostPort,
    dst_conn: &mut mysql::Conn,
    tables: &[Table],
    touched: &Touched,
    user: u64,
    token: u64,
) -> Result<u64> {
    let mut written = 0;
    for (table, keys) in tables.iter().zip(touched) {
        let keys: Vec<&Vec<Value>> = keys.values().collect();
        for chunk in keys.chunks(KEYS_PER_CHUNK) {
            let (which, params) = key_clause(table, chunk, user);
            let (n, rows) = data::read_rows_where(src, table, &which, params.clone())?;
            fence::fenced(dst_conn, dst, user, token, |tx| {
                data::replace_where(tx, table, &which, params, &rows)
            })?;
            written += n as u64;
        }
    }
    Ok(written)
}

/// The checksum of the user's rows of `table` among `keys`, on `db`.
pub fn checksum_keys(
    db: &mut Db,
    table: &Table,
    keys: &HashMap<Vec<u8>, Vec<Value>>,
    user: u64,
) -> Result<data::Checksum> {
    let keys: Vec<&Vec<Value>> = keys.values().collect();
    let mut sum = data::Checksum::EMPTY;
    for chunk in keys.chunks(KEYS_PER_CHUNK) {
        let (which, params) = key_clause(table, chunk, user);
        sum = sum.plus(data::checksum_where(db, table, &which, params)?);
    }
    Ok(sum)
}

/// `owner = ? AND (key) IN (...)` for a chunk of keys, with its parameters.
fn key_clause(table: &Table, keys: &[&Vec<Value>], user: u64) -> (String, Vec<Value>) {
    let cols: Vec<String> = table.primary_key.iter().map(|k| k.quoted()).collect();
    let one = format!("({})", placeholders(cols.len()));
    let sql = format!(
        "{} = ? AND ({}) IN ({})",
        table.owner.quoted(),
        cols.join(", "),
        vec![one; keys.len()].join(", ")
    );
    let mut params = vec![Value::from(user)];
    for k in keys {
        params.extend(k.iter().cloned());
    }
    (sql, params)
}

/// Catch-up passes stop when one finds at most this many changed rows, or took at most this
/// long: the last pass, in the read-only window, then has as little to do.
const SMALL_PASS_KEYS: usize = 200;
const SHORT_PASS: Duration = Duration::from_millis(150);
/// At most this many passes while writable: a writer faster than the copy never lets a pass be
/// small, and the read-only window then takes what is left.
const MAX_PASSES: usize = 20;

/// Whether to seal now, after `passes` passes of which the last found `keys` rows in `took`.
pub fn converged(passes: usize, keys: usize, took: Duration) -> bool {
    passes >= MAX_PASSES || keys <= SMALL_PASS_KEYS || took <= SHORT_PASS
}

/// The transactions open on `db`'s server that have written something, but for this session's,
/// the server's own background ones (thread 0: statistics, purge) and those of shardctl's own
/// fenced writers for other users (a copy of another account never writes this one's rows).
pub fn writing_transactions(db: &mut Db, user: u64) -> Result<Vec<u64>> {
    crate::shard::fence::ensure_fence(db)?;
    db.exec(
        "listing open transactions",
        "SELECT trx_id FROM information_schema.INNODB_TRX
         WHERE trx_rows_modified > 0 AND trx_mysql_thread_id NOT IN (0, CONNECTION_ID())
           AND trx_mysql_thread_id NOT IN (SELECT connection_id FROM shardctl_fence_sessions
                                           WHERE server_id = @@server_id AND user_id <> ?)",
        (user,),
    )
}

/// Waits until none of `ids` is open any more. On a timeout, the ones still open, described
/// (thread, since when, what it runs) for the operator.
pub fn wait_for_transactions(
    db: &mut Db,
    ids: &[u64],
    timeout: Duration,
) -> Result<Option<String>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let until = Instant::now() + timeout;
    loop {
        let open: Vec<(u64, String, Option<String>)> = db.exec(
            "waiting for open transactions",
            &format!(
                "SELECT trx_mysql_thread_id, CAST(trx_started AS CHAR), trx_query
                 FROM information_schema.INNODB_TRX WHERE trx_id IN ({})",
                placeholders(ids.len())
            ),
            crate::db::values(ids),
        )?;
        if open.is_empty() {
            return Ok(None);
        }
        if Instant::now() >= until {
            return Ok(Some(
                open.iter()
                    .map(|(thread, since, query)| {
                        format!(
                            "thread {thread} since {since} ({})",
                            query
                                .as_deref()
                                .map(crate::error::one_line)
                                .unwrap_or_else(|| "idle in its transaction".into())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            name: "photos".parse().unwrap(),
            owner: "owner_id".parse().unwrap(),
            columns: ["photo_id", "owner_id", "title"]
                .iter()
                .map(|c| c.parse().unwrap())
                .collect(),
            primary_key: vec!["photo_id".parse().unwrap()],
        }
    }

    fn columns() -> Columns {
        vec![
            ("photo_id".into(), false, true),
            ("owner_id".into(), false, true),
            ("title".into(), false, false),
            ("shout".into(), true, false),
        ]
    }

    #[test]
    fn a_change_touches_the_users_rows_in_either_image() {
        let l = layout(&table(), &columns(), 4).unwrap();
        let row = |id: i64, owner: u64| {
            vec![
                Value::Int(id),
                Value::UInt(owner),
                Value::from("t"),
                Value::NULL,
            ]
        };
        // An insert of ours, of someone else's; an update moving a row out, and one moving in.
        assert_eq!(
            touched(None, Some(&row(1, 7)), &l, 7),
            vec![vec![Value::UInt(1)]]
        );
        assert!(touched(None, Some(&row(1, 8)), &l, 7).is_empty());
        assert_eq!(
            touched(Some(&row(2, 7)), Some(&row(2, 8)), &l, 7),
            vec![vec![Value::UInt(2)]]
        );
        assert_eq!(
            touched(Some(&row(3, 8)), Some(&row(4, 7)), &l, 7),
            vec![vec![Value::UInt(4)]]
        );
        // A key change within the user: both keys.
        assert_eq!(touched(Some(&row(5, 7)), Some(&row(6, 7)), &l, 7).len(), 2);
        // An unsigned key past i64::MAX arrives negative and is given its sign back.
        assert_eq!(
            touched(Some(&row(-1, 7)), None, &l, 7),
            vec![vec![Value::UInt(u64::MAX)]]
        );
    }

    #[test]
    fn images_without_virtual_columns_are_laid_out_by_the_stored_ones() {
        let l = layout(&table(), &columns(), 3).unwrap();
        assert_eq!((l.key.clone(), l.owner), (vec![0], 1));
        assert!(layout(&table(), &columns(), 2).is_none());
    }

    #[test]
    fn the_first_rotate_names_its_file_without_the_checksum() {
        let files = vec![
            "mariadb-bin.000001".to_string(),
            "mariadb-bin.000002".to_string(),
        ];
        assert_eq!(
            rotated_file(b"mariadb-bin.000002", &files).as_deref(),
            Some("mariadb-bin.000002")
        );
        assert_eq!(
            rotated_file(b"mariadb-bin.000002\x01\x02\x03\x04", &files).as_deref(),
            Some("mariadb-bin.000002")
        );
        assert_eq!(rotated_file(b"mariadb-bin.000003", &files), None);
    }

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

//! Moving one user's rows between shard servers: table metadata, the fence, copy streams,
//! chunked deletes and checksums. Every write is a transaction that first checks the fence, so
//! a holder that lost its lock cannot write a single chunk afterwards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql::prelude::Queryable;
use serde::Serialize;

use crate::config::TableSpec;
use crate::db::{placeholders, retry_deadlocks, row_placeholders, values, Db};
use crate::error::{DbErrorKind, Error, Result};
use crate::shard::fence;
use crate::types::{HostPort, Ident};

/// Rows per write: large, but far below 65,535 placeholders.
fn chunk_rows(columns: usize) -> usize {
    (60_000 / columns.max(1)).min(5_000)
}

/// Rows per DELETE chunk: a million-row account goes in a handful of statements per stream
/// (measured here: 100,000-row chunks deleted 1.3M rows in 6-10 s, 20,000-row chunks in 9-11 s),
/// and one chunk still holds its locks for well under a second.
const DELETE_CHUNK: u64 = 100_000;
/// Keys a chunk of a delete by key names, in all.
const DELETE_KEYS_CHUNK: u64 = 20_000;

/// What the copy needs to know of a per-user table.
#[derive(Clone, Debug)]
pub struct Table {
    pub name: Ident,
    pub owner: Ident,
    pub columns: Vec<Ident>,
    pub primary_key: Vec<Ident>,
}

impl Table {
    /// A table described by its names alone, for unit tests of what is built from one.
    #[cfg(test)]
    pub fn named(name: &str, owner: &str, columns: &[&str], primary_key: &[&str]) -> Table {
        let idents = |names: &[&str]| names.iter().map(|n| n.parse().unwrap()).collect();
        Table {
            name: name.parse().unwrap(),
            owner: owner.parse().unwrap(),
            columns: idents(columns),
            primary_key: idents(primary_key),
        }
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(Ident::quoted)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The primary key's columns, comma-separated (a select list, an `ORDER BY`).
    pub fn key_list(&self) -> String {
        self.primary_key
            .iter()
            .map(Ident::quoted)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The column whose value ranges split the copy into parallel streams: a single-column
    /// primary key (the owner index orders rows by it).
    fn split_column(&self) -> Option<&Ident> {
        match self.primary_key.as_slice() {
            [only] if only != &self.owner => Some(only),
            _ => None,
        }
    }
}

/// Reads the table's columns and primary key from `db`'s information_schema.
pub fn describe(db: &mut Db, database: &Ident, spec: &TableSpec) -> Result<Table> {
    let parse = |names: Vec<String>| -> Result<Vec<Ident>> {
        names
            .iter()
            .map(|n| n.parse().map_err(Error::Refused))
            .collect()
    };
    let columns: Vec<String> = db.exec(
        "reading the table's columns",
        // Generated columns are the server's to compute: a copy that wrote them would fail
        // (error 1906), and the rows' other columns determine them.
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COALESCE(GENERATION_EXPRESSION, '') = '' ORDER BY ORDINAL_POSITION",
        (database.as_str(), spec.name.as_str()),
    )?;
    let key: Vec<String> = db.exec(
        "reading the table's primary key",
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
        (database.as_str(), spec.name.as_str()),
    )?;
    if columns.is_empty() {
        return Err(Error::Config(format!(
            "[[shards.tables]] names table `{}`, which {} does not have in `{database}`",
            spec.name, db.server
        )));
    }
    if key.is_empty() {
        return Err(Error::Refused(format!(
            "{}: table `{}` has no primary key",
            db.server, spec.name
        )));
    }
    let columns = parse(columns)?;
    if !columns.contains(&spec.owner_column) {
        return Err(Error::Config(format!(
            "[[shards.tables]] names owner column `{}` of table `{}`, which {} does not have",
            spec.owner_column, spec.name, db.server
        )));
    }
    Ok(Table {
        name: spec.name.clone(),
        owner: spec.owner_column.clone(),
        columns,
        primary_key: parse(key)?,
    })
}

/// Why a stream stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Interrupted,
    LockLost,
}

/// Shared by the streams of one step: stop requests, a replication pause, and progress.
#[derive(Default)]
pub struct Control {
    pub stop: AtomicBool,
    pub lock_lost: AtomicBool,
    pub pause: AtomicBool,
    pub rows: AtomicU64,
}

impl Control {
    /// Between chunks: waits out a replication pause; says whether to stop.
    fn checkpoint(&self) -> Option<Stop> {
        loop {
            if self.lock_lost.load(Ordering::SeqCst) {
                return Some(Stop::LockLost);
            }
            if self.stop.load(Ordering::SeqCst) || crate::signals::received() {
                return Some(Stop::Interrupted);
            }
            if !self.pause.load(Ordering::SeqCst) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn stopped(stop: Stop, what: &str) -> Error {
    match stop {
        Stop::Interrupted => Error::Failed(format!(
            "interrupted while {what}; the journal is resumable"
        )),
        Stop::LockLost => Error::LockLost(format!("the migration lock was lost while {what}")),
    }
}

/// Rows of `user` in `table` on `db`.
pub fn count(db: &mut Db, table: &Table, user: u64) -> Result<u64> {
    Ok(db
        .exec_first(
            "counting the user's rows",
            &format!(
                "SELECT COUNT(*) FROM {} WHERE {} = ?",
                table.name.quoted(),
                table.owner.quoted()
            ),
            (user,),
        )?
        .unwrap_or(0))
}

/// Rows of each of `users` already on this server, per table, for the users that have any.
/// Before a copy these are strays: nothing of ours explains them (an earlier attempt of ours
/// is always resolved first), so a move refuses rather than delete what may be a user's only
/// copy.
pub fn strays(
    db: &mut Db,
    tables: &[Table],
    users: &[u64],
) -> Result<BTreeMap<u64, BTreeMap<String, u64>>> {
    let mut out: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    for t in tables {
        let rows: Vec<(u64, u64)> = db.exec(
            "looking for the users' rows on the destination",
            &format!(
                "SELECT {0}, COUNT(*) FROM {1} WHERE {0} IN ({2}) GROUP BY {0}",
                t.owner.quoted(),
                t.name.quoted(),
                placeholders(users.len())
            ),
            values(users),
        )?;
        for (user, n) in rows {
            out.entry(user).or_default().insert(t.name.to_string(), n);
        }
    }
    Ok(out)
}

/// The refusal for rows found where a move was about to copy.
pub fn strays_refusal(server: &HostPort, user: u64, found: &BTreeMap<String, u64>) -> Error {
    let list: Vec<String> = found.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    Error::Refused(format!(
        "{server} already holds rows of user {user} that no migration of ours put there ({}); nothing was changed. \
         Check them by hand; `--clear-destination` deletes them before the copy",
        list.join(", ")
    ))
}

/// An order-independent fingerprint of the user's rows, computed by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Checksum {
    pub rows: u64,
    pub sum: u64,
    pub xor: u64,
}

impl Checksum {
    pub const EMPTY: Checksum = Checksum {
        rows: 0,
        sum: 0,
        xor: 0,
    };

    /// The checksum of two disjoint sets of rows together.
    pub fn plus(self, other: Checksum) -> Checksum {
        Checksum {
            rows: self.rows + other.rows,
            sum: self.sum.wrapping_add(other.sum),
            xor: self.xor ^ other.xor,
        }
    }

    /// The checksum of these rows without `part` (a subset of them).
    pub fn minus(self, part: Checksum) -> Checksum {
        Checksum {
            rows: self.rows.saturating_sub(part.rows),
            sum: self.sum.wrapping_sub(part.sum),
            xor: self.xor ^ part.xor,
        }
    }
}

/// The checksum's select list: rows, sum over whole rows, xor over keys.
fn checksum_exprs(table: &Table) -> String {
    // Each column with its NULL flag, so (NULL, 'a') and ('a', NULL) differ. The sum covers
    // whole rows; the xor, cheaper, covers the keys, so a row moved to another key shows too.
    let row = table
        .columns
        .iter()
        .map(|c| format!("{0}, ISNULL({0})", c.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    let key = table
        .primary_key
        .iter()
        .map(Ident::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "COUNT(*), CAST(COALESCE(SUM(CRC32(CONCAT_WS('#', {row}))), 0) AS UNSIGNED),
         COALESCE(BIT_XOR(CRC32(CONCAT_WS('|', {key}))), 0)"
    )
}

pub fn checksum(db: &mut Db, table: &Table, user: u64) -> Result<Checksum> {
    checksum_where(
        db,
        table,
        &format!("{} = ?", table.owner.quoted()),
        vec![user.into()],
    )
}

/// The checksum of the rows of `table` that `clause` selects.
pub fn checksum_where(
    db: &mut Db,
    table: &Table,
    clause: &str,
    params: Vec<mysql::Value>,
) -> Result<Checksum> {
    db.run("checksumming the user's rows", |c| {
        checksum_on(c, table, clause, params)
    })
}

/// The same, on a session or inside a transaction.
pub fn checksum_on(
    q: &mut impl Queryable,
    table: &Table,
    clause: &str,
    params: Vec<mysql::Value>,
) -> mysql::Result<Checksum> {
    let (rows, sum, xor): (u64, u64, u64) = q
        .exec_first(
            format!(
                "SELECT {} FROM {} WHERE {clause}",
                checksum_exprs(table),
                table.name.quoted(),
            ),
            params,
        )?
        .unwrap_or((0, 0, 0));
    Ok(Checksum { rows, sum, xor })
}

/// A range of the split column's values: from (inclusive), to (inclusive); None is open. The
/// first range is open below and the last above, so a row written after the ranges were drawn
/// still falls in exactly one.
pub type KeyRange = (Option<u64>, Option<u64>);

/// Value ranges of the split column, so `streams` streams share the rows; None for one stream.
pub fn ranges(
    db: &mut Db,
    table: &Table,
    user: u64,
    rows: u64,
    streams: usize,
) -> Result<Vec<Option<KeyRange>>> {
    let Some(col) = table.split_column() else {
        return Ok(vec![None]);
    };
    if streams < 2 || rows < 50_000 {
        return Ok(vec![None]);
    }
    let bounds: Option<(mysql::Value, mysql::Value)> = db.exec_first(
        "finding the key range",
        &format!(
            "SELECT MIN({c}), MAX({c}) FROM {} WHERE {} = ?",
            table.name.quoted(),
            table.owner.quoted(),
            c = col.quoted()
        ),
        (user,),
    )?;
    // Split only a key of unsigned (or never negative) integers.
    let bound = |v: &mysql::Value| mysql::from_value_opt::<u64>(v.clone()).ok();
    let Some((Some(lo), Some(hi))) = bounds.map(|(lo, hi)| (bound(&lo), bound(&hi))) else {
        return Ok(vec![None]);
    };
    let span = (hi - lo) / streams as u64 + 1;
    let n = streams as u64;
    Ok((0..n)
        .map(|i| (lo + i * span, (lo + (i + 1) * span - 1).min(hi)))
        .filter(|(a, b)| a <= b)
        .enumerate()
        .map(|(i, (a, b))| Some(((i > 0).then_some(a), (b < hi).then_some(b))))
        .collect())
}

fn range_clause(table: &Table, range: Option<KeyRange>) -> String {
    match (range, table.split_column()) {
        (Some((from, to)), Some(col)) => {
            let mut clause = String::new();
            if from.is_some() {
                clause.push_str(&format!(" AND {} >= ?", col.quoted()));
            }
            if to.is_some() {
                clause.push_str(&format!(" AND {} <= ?", col.quoted()));
            }
            clause
        }
        _ => String::new(),
    }
}

fn range_params(user: u64, range: Option<KeyRange>) -> Vec<mysql::Value> {
    let mut p = vec![mysql::Value::from(user)];
    if let Some((from, to)) = range {
        p.extend(from.into_iter().chain(to).map(mysql::Value::from));
    }
    p
}

/// A key's value as SQL text: numbers as numbers, strings and bytes as hex literals (no
/// escaping to get wrong, whatever the server's sql_mode), anything else (dates, times) quoted
/// by the driver, which holds no quote or backslash.
fn literal(v: &mysql::Value) -> String {
    match v {
        mysql::Value::Bytes(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
            format!("X'{hex}'")
        }
        other => other.as_sql(true),
    }
}

/// `keys` (rows of `table`'s primary-key values, as read) as a derived table `k` joined to the
/// table as `t` on its primary key: `FROM {k} STRAIGHT_JOIN {table} t FORCE INDEX (PRIMARY)
/// ON {on}`. Each row is then reached by its own key, and locked alone; a list of keys in an
/// `IN (...)` lets the optimizer scan (and lock) a small table whole instead.
pub fn keys_join(table: &Table, keys: &[mysql::Row]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|r| r.clone().unwrap().iter().map(literal).collect())
        .collect();
    let first = rows
        .first()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, v)| format!("{v} AS k{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let rest: Vec<String> = rows[1.min(rows.len())..]
        .iter()
        .map(|r| format!("({})", r.join(", ")))
        .collect();
    let derived = if rest.is_empty() {
        format!("(SELECT {first}) k")
    } else {
        format!("(SELECT {first} UNION ALL VALUES {}) k", rest.join(", "))
    };
    let on: Vec<String> = table
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("t.{} = k.k{i}", c.quoted()))
        .collect();
    format!(
        "{derived} STRAIGHT_JOIN {} t FORCE INDEX (PRIMARY) ON {}",
        table.name.quoted(),
        on.join(" AND ")
    )
}

/// One stream's share of a step: a table (or a key range of it) of one user, under a token.
pub struct Job<'a> {
    pub table: &'a Table,
    pub user: u64,
    pub token: u64,
    pub range: Option<KeyRange>,
    pub control: &'a Control,
}

/// The only file name our LOAD DATA LOCAL handler serves: a server asking for anything else
/// gets an error, never a file.
const STREAM_FILE: &str = "shardctl-copy-stream";

/// A chunk for LOAD DATA is written out at this size.
const LOAD_CHUNK_BYTES: usize = 4 << 20;

/// Appends one value in LOAD DATA's default text format (tab-separated, backslash escapes,
/// `\N` for NULL).
pub fn encode_value(out: &mut Vec<u8>, v: &mysql::Value) {
    use mysql::Value::*;
    use std::io::Write;
    match v {
        NULL => out.extend_from_slice(b"\\N"),
        Bytes(b) => {
            for &c in b {
                match c {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    0 => out.extend_from_slice(b"\\0"),
                    c => out.push(c),
                }
            }
        }
        Int(i) => {
            let _ = write!(out, "{i}");
        }
        UInt(u) => {
            let _ = write!(out, "{u}");
        }
        // Rust prints the shortest representation that reads back as the same number.
        Float(f) => {
            let _ = write!(out, "{f}");
        }
        Double(d) => {
            let _ = write!(out, "{d}");
        }
        Date(y, mo, d, h, mi, s, us) => {
            let _ = write!(out, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            if *us > 0 {
                let _ = write!(out, ".{us:06}");
            }
        }
        Time(neg, days, h, mi, s, us) => {
            let hours = *days as u64 * 24 + *h as u64;
            let _ = write!(
                out,
                "{}{hours:02}:{mi:02}:{s:02}",
                if *neg { "-" } else { "" }
            );
            if *us > 0 {
                let _ = write!(out, ".{us:06}");
            }
        }
    }
}

/// How a copy stream writes: LOAD DATA LOCAL INFILE fed from the stream (fastest), or
/// multi-row INSERTs where the server refuses local files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    Load,
    Insert,
}

/// Copies the job's rows from `src` to `dst`, streaming: at most one chunk is in memory. Calls
/// `after_first_chunk` once, for the crash tests. A session that fails here is not one to use
/// again (it may be registered with the fence, or mid-result).
pub fn copy_stream(
    job: &Job,
    src: &mut Db,
    dst: &mut Db,
    after_first_chunk: &dyn Fn(),
) -> Result<u64> {
    let Job {
        table, user, range, ..
    } = *job;
    let src_name = src.server.to_string();
    let ncols = table.columns.len();
    let chunk = chunk_rows(ncols);
    let select = format!(
        "SELECT {} FROM {} WHERE {} = ?{} ORDER BY {}",
        table.column_list(),
        table.name.quoted(),
        table.owner.quoted(),
        range_clause(table, range),
        table.key_list()
    );
    let mut sink = Sink::open(job, dst, after_first_chunk)?;
    let mut pending = Chunk {
        values: Vec::with_capacity(chunk * ncols),
        text: Vec::new(),
        rows: 0,
    };
    let mut probing = true;
    let src_conn = src.raw("copying")?;
    let mut result = src_conn
        .exec_iter(&select, range_params(user, range))
        .map_err(|e| Error::db(&src_name, "reading the user's rows", e))?;
    // YEAR arrives as a number; LOAD DATA reads a short one as a two-digit year (0 is 2000),
    // so years are written with four digits.
    let years: Vec<bool> = result
        .columns()
        .as_ref()
        .iter()
        .map(|c| c.column_type() == mysql::consts::ColumnType::MYSQL_TYPE_YEAR)
        .collect();
    for row in result.by_ref() {
        let row = row
            .map_err(|e| Error::db(&src_name, "reading the user's rows", e))?
            .unwrap();
        if sink.writer == Writer::Load {
            encode_row(&mut pending.text, &row, &years);
        }
        // The first chunk's values are kept too, in case the server refuses LOAD DATA.
        if sink.writer == Writer::Insert || probing {
            pending.values.extend(row);
        }
        pending.rows += 1;
        let full = match sink.writer {
            Writer::Load => pending.text.len() >= LOAD_CHUNK_BYTES,
            Writer::Insert => pending.rows >= chunk,
        };
        if full {
            sink.flush(&mut pending)?;
            probing = false;
        }
    }
    sink.flush(&mut pending)?;
    Ok(sink.close())
}

/// Appends one row in LOAD DATA's text format, a line of tab-separated values; `years` marks
/// the YEAR columns, written with four digits (LOAD DATA reads a short year as two-digit).
fn encode_row(text: &mut Vec<u8>, row: &[mysql::Value], years: &[bool]) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            text.push(b'\t');
        }
        match v {
            mysql::Value::Int(y) if years[i] => {
                let _ = std::io::Write::write_fmt(text, format_args!("{y:04}"));
            }
            mysql::Value::UInt(y) if years[i] => {
                let _ = std::io::Write::write_fmt(text, format_args!("{y:04}"));
            }
            v => encode_value(text, v),
        }
    }
    text.push(b'\n');
}

/// The rows of a copy stream's current chunk, as values (for INSERT) or encoded text (for
/// LOAD DATA).
struct Chunk {
    values: Vec<mysql::Value>,
    text: Vec<u8>,
    rows: usize,
}

/// The destination of a copy stream: its session, registered with the fence, with what writes
/// a chunk there and how many rows it has written.
struct Sink<'a> {
    conn: &'a mut mysql::Conn,
    addr: HostPort,
    table: &'a Table,
    user: u64,
    token: u64,
    control: &'a Control,
    /// The chunk the LOAD DATA LOCAL handler hands the server next.
    staged: Arc<Mutex<Vec<u8>>>,
    insert: String,
    load: String,
    writer: Writer,
    written: u64,
    first: bool,
    after_first_chunk: &'a dyn Fn(),
}

impl<'a> Sink<'a> {
    /// Registers `dst`'s session with the fence, so a newer lock holder can end it, and
    /// installs the LOAD DATA LOCAL handler that serves the staged chunk.
    fn open(job: &Job<'a>, dst: &'a mut Db, after_first_chunk: &'a dyn Fn()) -> Result<Sink<'a>> {
        let Job {
            table,
            user,
            token,
            control,
            ..
        } = *job;
        let addr = dst.server.clone();
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ",
            table.name.quoted(),
            table.column_list()
        );
        let load = format!(
            "LOAD DATA LOCAL INFILE '{STREAM_FILE}' INTO TABLE {} CHARACTER SET utf8mb4 ({})",
            table.name.quoted(),
            table.column_list()
        );
        let conn = dst.raw("copying")?;
        fence::register(conn, &addr, user, token)?;
        let staged = serve_staged(conn);
        Ok(Sink {
            conn,
            addr,
            table,
            user,
            token,
            control,
            staged,
            insert,
            load,
            writer: Writer::Load,
            written: 0,
            first: true,
            after_first_chunk,
        })
    }

    /// Writes `chunk` under the fence, once the control allows, and empties it; the first chunk
    /// written calls `after_first_chunk`, for the crash tests.
    fn flush(&mut self, chunk: &mut Chunk) -> Result<()> {
        if chunk.rows == 0 {
            return Ok(());
        }
        if let Some(stop) = self.control.checkpoint() {
            return Err(stopped(stop, "copying"));
        }
        let n = chunk.rows as u64;
        if self.writer == Writer::Load {
            self.load_chunk(&mut chunk.text, n)?;
        }
        if self.writer == Writer::Insert {
            self.insert_chunk(&chunk.values)?;
        }
        chunk.values.clear();
        chunk.text.clear();
        chunk.rows = 0;
        self.written += n;
        self.control.rows.fetch_add(n, Ordering::Relaxed);
        if self.first {
            self.first = false;
            (self.after_first_chunk)();
        }
        Ok(())
    }

    /// Writes the `n` rows of `text` with LOAD DATA LOCAL. Where the server refuses local files,
    /// writes nothing and turns the sink to INSERTs, from this chunk on (its values are kept).
    fn load_chunk(&mut self, text: &mut Vec<u8>, n: u64) -> Result<()> {
        *self
            .staged
            .lock()
            .map_err(|_| Error::Failed("poisoned chunk buffer".into()))? = std::mem::take(text);
        let load = &self.load;
        // LOAD DATA LOCAL turns a refused row (a duplicate key) into a warning: the first
        // one is read in the same transaction, before anything resets it, to say why.
        let loaded = fence::fenced(self.conn, &self.addr, self.user, self.token, |tx| {
            tx.query_drop(load)?;
            let got = tx.affected_rows();
            let why: Option<(String, u32, String)> = if got == n {
                None
            } else {
                tx.query_first("SHOW WARNINGS LIMIT 1")?
            };
            Ok((got, why))
        });
        match loaded {
            Ok((got, _)) if got == n => {}
            Ok((got, why)) => {
                return Err(Error::Failed(format!(
                    "{}: LOAD DATA took {got} of {n} rows of {}: {}",
                    self.addr,
                    self.table.name,
                    why.map(|(level, code, text)| format!(
                        "{level} {code}: {}",
                        crate::error::one_line(&text)
                    ))
                    .unwrap_or_else(|| "the server gave no warning".into())
                )))
            }
            // Local files are disabled on this server: write these rows (kept by the caller)
            // with INSERTs instead, from now on.
            Err(e) if e.is(DbErrorKind::LocalInfileRefused) => self.writer = Writer::Insert,
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Writes `values` with multi-row INSERTs, each within a statement's placeholders.
    fn insert_chunk(&mut self, values: &[mysql::Value]) -> Result<()> {
        let ncols = self.table.columns.len();
        // A chunk kept for LOAD DATA may be larger than one INSERT may carry.
        for part in values.chunks(chunk_rows(ncols) * ncols) {
            let sql = format!(
                "{}{}",
                self.insert,
                row_placeholders(part.len() / ncols, ncols)
            );
            fence::fenced(self.conn, &self.addr, self.user, self.token, |tx| {
                tx.exec_drop(&sql, part.to_vec())
            })?;
        }
        Ok(())
    }

    /// Leaves the session unregistered and without the file handler, once every chunk is
    /// written; returns how many rows were.
    fn close(self) -> u64 {
        fence::unregister(self.conn, self.user);
        self.conn.set_local_infile_handler(None);
        self.written
    }
}

/// Installs on `conn` the LOAD DATA LOCAL handler that hands the server the chunk staged in the
/// returned buffer, and nothing else: a server asking for any other file gets an error.
fn serve_staged(conn: &mut mysql::Conn) -> Arc<Mutex<Vec<u8>>> {
    let staged: Arc<Mutex<Vec<u8>>> = Default::default();
    let feed = staged.clone();
    conn.set_local_infile_handler(Some(mysql::LocalInfileHandler::new(move |name, out| {
        if name != STREAM_FILE.as_bytes() {
            return Err(std::io::Error::other(
                "the server asked for a file shardctl did not offer",
            ));
        }
        let data =
            std::mem::take(&mut *feed.lock().map_err(|_| std::io::Error::other("poisoned"))?);
        std::io::Write::write_all(out, &data)
    })));
    staged
}

/// Deletes the job's rows on `db`'s server in fenced chunks (the session's minimal row images
/// keep the binary log and the replica's work a fraction of full ones).
pub fn delete_stream(job: &Job, db: &mut Db, after_first_chunk: &dyn Fn()) -> Result<u64> {
    let Job {
        table,
        user,
        token,
        range,
        control,
    } = *job;
    let addr = db.server.clone();
    let addr = &addr;
    let conn = db.raw("deleting")?;
    fence::register(conn, addr, user, token)?;
    // A chunk's keys are read first (a plain read, no locks) and its rows deleted by key: a
    // DELETE scanning the owner's range would lock the next owner's first row too, and wait
    // behind any transaction of that user's (50 s, then fail).
    let keyed = !table.primary_key.is_empty();
    let width = table.primary_key.len();
    // Within a statement's 65,535 placeholders.
    let chunk = if keyed {
        DELETE_KEYS_CHUNK / width as u64
    } else {
        DELETE_CHUNK
    };
    let sql = if keyed {
        format!(
            "SELECT {} FROM {} WHERE {} = ?{} ORDER BY {} LIMIT {chunk}",
            table.key_list(),
            table.name.quoted(),
            table.owner.quoted(),
            range_clause(table, range),
            table.key_list(),
        )
    } else {
        format!(
            "DELETE FROM {} WHERE {} = ?{} LIMIT {}",
            table.name.quoted(),
            table.owner.quoted(),
            range_clause(table, range),
            DELETE_CHUNK
        )
    };
    // By the primary key, point by point, the owner still checked (wrapped so no index
    // serves it): on the owner index even a point lookup reads (and locks) the entry after the
    // last.
    let by_key = |keys: &[mysql::Row]| {
        format!(
            "DELETE t FROM {} WHERE IFNULL(t.{}, NULL) = ?",
            keys_join(table, keys),
            table.owner.quoted(),
        )
    };
    let mut deleted = 0u64;
    loop {
        if let Some(stop) = control.checkpoint() {
            return Err(stopped(stop, "deleting"));
        }
        // Neighbouring streams' gap locks can deadlock; the chunk is rolled back whole and
        // tried again, under the one deadlock policy.
        let (n, found) = retry_deadlocks(|| {
            fence::fenced(conn, addr, user, token, |tx| {
                if !keyed {
                    tx.exec_drop(&sql, range_params(user, range))?;
                    return Ok((tx.affected_rows(), tx.affected_rows()));
                }
                let keys: Vec<mysql::Row> = tx.exec(&sql, range_params(user, range))?;
                if keys.is_empty() {
                    return Ok((0, 0));
                }
                tx.exec_drop(by_key(&keys), (user,))?;
                Ok((tx.affected_rows(), keys.len() as u64))
            })
        })?;
        deleted += n;
        control.rows.fetch_add(n, Ordering::Relaxed);
        if deleted == n && n > 0 {
            after_first_chunk();
        }
        if found < chunk {
            fence::unregister(conn, user);
            return Ok(deleted);
        }
    }
}

// Many small accounts at once: the same fence and the same checks, one statement per table
// for the whole group instead of one per account.

/// The group's rows of `table`, as flat values (columns in table order).
pub fn read_rows(db: &mut Db, table: &Table, users: &[u64]) -> Result<(usize, Vec<mysql::Value>)> {
    read_rows_where(db, table, &owners_clause(table, users), values(users))
}

/// The rows of `table` that `clause` selects, as flat values (columns in table order).
pub fn read_rows_where(
    db: &mut Db,
    table: &Table,
    clause: &str,
    params: Vec<mysql::Value>,
) -> Result<(usize, Vec<mysql::Value>)> {
    let rows: Vec<mysql::Row> = db.exec(
        "reading the accounts' rows",
        &format!(
            "SELECT {} FROM {} WHERE {clause}",
            table.column_list(),
            table.name.quoted(),
        ),
        params,
    )?;
    let n = rows.len();
    Ok((n, rows.into_iter().flat_map(|r| r.unwrap()).collect()))
}

fn owners_clause(table: &Table, users: &[u64]) -> String {
    format!(
        "{} IN ({})",
        table.owner.quoted(),
        placeholders(users.len())
    )
}

/// Inside a fenced transaction: deletes the group's rows of `table`, then inserts `rows`.
pub fn replace_rows(
    tx: &mut mysql::Transaction,
    table: &Table,
    users: &[u64],
    rows: &[mysql::Value],
) -> mysql::Result<()> {
    replace_where(tx, table, &owners_clause(table, users), values(users), rows)
}

/// Inside a fenced transaction: deletes the rows of `table` that `clause` selects, then
/// inserts `rows`.
pub fn replace_where(
    tx: &mut mysql::Transaction,
    table: &Table,
    clause: &str,
    params: Vec<mysql::Value>,
    rows: &[mysql::Value],
) -> mysql::Result<()> {
    tx.exec_drop(
        format!("DELETE FROM {} WHERE {clause}", table.name.quoted()),
        params,
    )?;
    let ncols = table.columns.len();
    for part in rows.chunks(chunk_rows(ncols) * ncols) {
        tx.exec_drop(
            format!(
                "INSERT INTO {} ({}) VALUES {}",
                table.name.quoted(),
                table.column_list(),
                row_placeholders(part.len() / ncols, ncols)
            ),
            part.to_vec(),
        )?;
    }
    Ok(())
}

/// Inside a fenced transaction: deletes the group's rows of `table`.
pub fn delete_rows(tx: &mut mysql::Transaction, table: &Table, users: &[u64]) -> mysql::Result<()> {
    tx.exec_drop(
        format!(
            "DELETE FROM {} WHERE {}",
            table.name.quoted(),
            owners_clause(table, users)
        ),
        values(users),
    )
}

/// Checksums of every user of the group in `table`, computed by the server; users without
/// rows are absent.
pub fn checksums_by_owner(
    db: &mut Db,
    table: &Table,
    users: &[u64],
) -> Result<std::collections::HashMap<u64, Checksum>> {
    let rows: Vec<(u64, u64, u64, u64)> = db.exec(
        "checksumming the accounts' rows",
        &format!(
            "SELECT {}, {} FROM {} WHERE {} IN ({}) GROUP BY {}",
            table.owner.quoted(),
            checksum_exprs(table),
            table.name.quoted(),
            table.owner.quoted(),
            placeholders(users.len()),
            table.owner.quoted()
        ),
        values(users),
    )?;
    Ok(rows
        .into_iter()
        .map(|(u, rows, sum, xor)| (u, Checksum { rows, sum, xor }))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql::Value;

    fn enc(v: Value) -> String {
        let mut out = Vec::new();
        encode_value(&mut out, &v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_encoded_for_load_data() {
        assert_eq!(enc(Value::NULL), "\\N");
        assert_eq!(
            enc(Value::Bytes(b"a\tb\nc\\d\re\0f".to_vec())),
            "a\\tb\\nc\\\\d\\re\\0f"
        );
        assert_eq!(enc(Value::Int(-5)), "-5");
        assert_eq!(enc(Value::UInt(u64::MAX)), "18446744073709551615");
        assert_eq!(enc(Value::Double(0.1)), "0.1");
        assert_eq!(
            enc(Value::Date(2024, 1, 2, 3, 4, 5, 0)),
            "2024-01-02 03:04:05"
        );
        assert_eq!(
            enc(Value::Date(2024, 1, 2, 3, 4, 5, 7)),
            "2024-01-02 03:04:05.000007"
        );
        assert_eq!(enc(Value::Time(true, 1, 2, 3, 4, 0)), "-26:03:04");
    }
}

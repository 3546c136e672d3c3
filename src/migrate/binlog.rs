//! Following one source server's binary log for one user: every change to the user's rows in
//! every per-user table, transaction by transaction, in the order the source committed them,
//! with each value as the applier writes it back.
//!
//! A row image carries values the way the server stores them, not the way a client writes
//! them, so each column's type says how a value is given back: unsigned integers arrive signed,
//! a `TIMESTAMP` as seconds since the epoch, a `YEAR` as 1900 plus its byte (1900 being the
//! zero year), a `BIT` as big-endian bytes, a `SET` as a little-endian bitmap, text as the
//! bytes of its column's character set (written back relabelled, never transcoded). `DECIMAL`
//! (as text), `ENUM` (its index), dates, times, floats, binary strings, blobs and JSON arrive
//! as they are written.

use std::collections::HashMap;
use std::fmt;

use mysql::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql::{BinlogDumpFlags, BinlogRequest, Value};

use super::data::Table;
use super::online::Position;
use crate::error::{Error, Result};
use crate::shard::conns::Conns;
use crate::types::HostPort;

/// How a column's value arrives in a row image, and so how it is given back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An integer column declared unsigned, of this many bits: its image carries it signed.
    Unsigned(u32),
    Timestamp,
    Year,
    Bit,
    Set,
    /// A fixed-length binary value (`BINARY(n)`, `INET6`, `UUID`): its image leaves out
    /// trailing zero bytes.
    Fixed(usize),
    /// Text in a character set (and its collation): its bytes, relabelled.
    Text {
        charset: String,
        collation: String,
    },
    /// Everything that arrives as it is written.
    Plain,
}

impl Kind {
    /// From information_schema.COLUMNS: `DATA_TYPE`, `COLUMN_TYPE`, `CHARACTER_OCTET_LENGTH`,
    /// `CHARACTER_SET_NAME`, `COLLATION_NAME`. Names that could not be SQL identifiers are
    /// refused.
    pub fn of(
        data_type: &str,
        column_type: &str,
        octets: Option<u64>,
        charset: Option<&str>,
        collation: Option<&str>,
    ) -> Result<Kind> {
        let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
        let bits = match data_type.to_ascii_lowercase().as_str() {
            "tinyint" => 8,
            "smallint" => 16,
            "mediumint" => 24,
            "int" | "integer" => 32,
            "bigint" => 64,
            "timestamp" => return Ok(Kind::Timestamp),
            "year" => return Ok(Kind::Year),
            "bit" => return Ok(Kind::Bit),
            "set" => return Ok(Kind::Set),
            // ENUM and SET carry a character set, but arrive as numbers.
            "enum" => return Ok(Kind::Plain),
            "inet6" | "uuid" => return Ok(Kind::Fixed(16)),
            "binary" => return Ok(Kind::Fixed(octets.unwrap_or(0) as usize)),
            _ => 0,
        };
        if bits > 0 {
            return Ok(if unsigned {
                Kind::Unsigned(bits)
            } else {
                Kind::Plain
            });
        }
        match (charset, collation) {
            (Some(cs), Some(co)) if cs != "binary" => {
                let name = |n: &str| -> Result<String> {
                    if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        Ok(n.to_string())
                    } else {
                        Err(Error::inconsistent(format!(
                            "the server names a character set or collation `{n}`"
                        )))
                    }
                };
                Ok(Kind::Text {
                    charset: name(cs)?,
                    collation: name(co)?,
                })
            }
            _ => Ok(Kind::Plain),
        }
    }

    /// The placeholder a value of this kind is written with.
    pub fn placeholder(&self) -> String {
        match self {
            Kind::Text { charset, collation } => {
                format!("CONVERT(CAST(? AS BINARY) USING {charset}) COLLATE {collation}")
            }
            // Given as text, INET6 and UUID parse it; given as bytes, they take them.
            Kind::Fixed(_) => "CAST(? AS BINARY)".into(),
            _ => "?".into(),
        }
    }

    /// The value as the applier writes it.
    pub fn give_back(&self, v: Value) -> std::result::Result<Value, String> {
        let text = |v: &Value| match v {
            Value::Bytes(b) => std::str::from_utf8(b).map(str::to_owned).ok(),
            _ => None,
        };
        match (self, v) {
            (_, Value::NULL) => Ok(Value::NULL),
            (Kind::Unsigned(64), Value::Int(n)) => Ok(Value::UInt(n as u64)),
            (Kind::Unsigned(bits), Value::Int(n)) if n < 0 => {
                Ok(Value::UInt((n + (1i64 << bits)) as u64))
            }
            (Kind::Unsigned(_), Value::Int(n)) => Ok(Value::UInt(n as u64)),
            (Kind::Timestamp, v) => {
                let t = text(&v).ok_or_else(|| format!("a TIMESTAMP image {v:?}"))?;
                timestamp(&t).ok_or_else(|| format!("a TIMESTAMP image `{t}`"))
            }
            (Kind::Year, v) => {
                let t = text(&v).ok_or_else(|| format!("a YEAR image {v:?}"))?;
                let y: u64 = t.parse().map_err(|_| format!("a YEAR image `{t}`"))?;
                // The stored byte 0 is the year 0000.
                Ok(Value::UInt(if y == 1900 { 0 } else { y }))
            }
            (Kind::Bit, Value::Bytes(b)) => Ok(Value::UInt(
                b.iter().fold(0u64, |n, byte| (n << 8) | u64::from(*byte)),
            )),
            (Kind::Set, Value::Bytes(b)) => Ok(Value::UInt(
                b.iter()
                    .rev()
                    .fold(0u64, |n, byte| (n << 8) | u64::from(*byte)),
            )),
            (Kind::Fixed(len), Value::Bytes(mut b)) => {
                if b.len() < *len {
                    b.resize(*len, 0);
                }
                Ok(Value::Bytes(b))
            }
            (_, v) => Ok(v),
        }
    }
}

/// A `TIMESTAMP` image (`seconds[.micros]` since the epoch) as the UTC date and time every
/// shard session writes in; 0 is the zero timestamp.
fn timestamp(t: &str) -> Option<Value> {
    let (secs, micros) = match t.split_once('.') {
        Some((s, f)) => (s, f.parse::<u32>().ok()?),
        None => (t, 0),
    };
    let secs: i64 = secs.parse().ok()?;
    if secs == 0 && micros == 0 {
        return Some(Value::Date(0, 0, 0, 0, 0, 0, 0));
    }
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    Some(Value::Date(
        u16::try_from(y).ok()?,
        m,
        d,
        (rem / 3600) as u8,
        (rem % 3600 / 60) as u8,
        (rem % 60) as u8,
        micros,
    ))
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m as u8, d as u8)
}

/// One column as information_schema lists it.
#[derive(Clone, Debug)]
pub struct ColumnInfo {
    pub name: String,
    /// VIRTUAL generated: a server may leave it out of its row images.
    pub virtual_: bool,
    pub kind: Kind,
}

/// The columns of `table` on `addr`, in table order, with their kinds.
pub fn columns(conns: &Conns, addr: &HostPort, table: &Table) -> Result<Vec<ColumnInfo>> {
    let cfg = conns.cfg();
    let rows: Vec<mysql::Row> = conns.get(addr)?.exec(
        "reading the table's columns",
        "SELECT COLUMN_NAME, EXTRA, DATA_TYPE, COLUMN_TYPE, CHARACTER_OCTET_LENGTH, CHARACTER_SET_NAME,
                COLLATION_NAME
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        (cfg.shards.database.as_str(), table.name.as_str()),
    )?;
    rows.into_iter()
        .map(|r| {
            let text = |i: usize| {
                r.get_opt::<Option<String>, _>(i)
                    .and_then(|v| v.ok())
                    .flatten()
            };
            let name = text(0).unwrap_or_default();
            Ok(ColumnInfo {
                virtual_: text(1)
                    .unwrap_or_default()
                    .to_ascii_uppercase()
                    .contains("VIRTUAL"),
                kind: Kind::of(
                    &text(2).unwrap_or_default(),
                    &text(3).unwrap_or_default(),
                    r.get_opt::<Option<u64>, _>(4)
                        .and_then(|v| v.ok())
                        .flatten(),
                    text(5).as_deref(),
                    text(6).as_deref(),
                )?,
                name,
            })
        })
        .collect()
}

/// Where, in a table's row images, each written column is.
#[derive(Clone, Debug)]
pub struct Layout {
    /// For each of the table map's columns: its place among `Table::columns` (None: generated).
    mapped: Vec<Option<usize>>,
    kinds: Vec<Kind>,
    owner: usize,
    /// The place of each primary key column among `Table::columns` (None: one is generated).
    key: Option<Vec<usize>>,
}

/// What one row image says of its row.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// Every written column.
    Row(Vec<Value>),
    /// Some columns only (a session that logged minimal images): the owner and the key, where
    /// the image holds them.
    Part {
        owner: Option<Value>,
        key: Option<Vec<Value>>,
    },
}

impl Layout {
    /// The layout of images of a table map with `mapped_columns` columns: every column, or
    /// every one but the virtual ones.
    pub fn new(table: &Table, columns: &[ColumnInfo], mapped_columns: usize) -> Option<Layout> {
        let listed: Vec<&ColumnInfo> = if mapped_columns == columns.len() {
            columns.iter().collect()
        } else {
            let stored: Vec<&ColumnInfo> = columns.iter().filter(|c| !c.virtual_).collect();
            if stored.len() != mapped_columns {
                return None;
            }
            stored
        };
        let mapped = listed
            .iter()
            .map(|c| table.columns.iter().position(|w| w.as_str() == c.name))
            .collect();
        let kinds = table
            .columns
            .iter()
            .map(|w| {
                columns
                    .iter()
                    .find(|c| c.name == w.as_str())
                    .map(|c| c.kind.clone())
            })
            .collect::<Option<Vec<Kind>>>()?;
        let at = |c: &crate::types::Ident| table.columns.iter().position(|w| w == c);
        Some(Layout {
            mapped,
            kinds,
            owner: at(&table.owner)?,
            key: table.primary_key.iter().map(at).collect(),
        })
    }

    /// An image's values of the written columns, in `Table::columns` order. `present`: the
    /// table map's columns the image holds, in order.
    fn image(&self, values: Vec<Value>, present: &[usize]) -> std::result::Result<Seen, String> {
        let mut out: Vec<Option<Value>> = vec![None; self.kinds.len()];
        for (v, &column) in values.into_iter().zip(present) {
            if let Some(Some(w)) = self.mapped.get(column) {
                out[*w] = Some(self.kinds[*w].give_back(v)?);
            }
        }
        if out.iter().all(Option::is_some) {
            return Ok(Seen::Row(out.into_iter().flatten().collect()));
        }
        Ok(Seen::Part {
            owner: out[self.owner].clone(),
            key: self
                .key
                .as_ref()
                .and_then(|k| k.iter().map(|&i| out[i].clone()).collect()),
        })
    }
}

/// Whether an owner value is `user`.
fn is_user(v: &Value, user: u64) -> bool {
    match v {
        Value::UInt(n) => *n == user,
        Value::Int(n) => *n as u64 == user,
        Value::Bytes(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()) == Some(user),
        _ => false,
    }
}

/// One change to a row of the user's, as the source committed it: the key it had where it was
/// the user's, the whole row where it is (an update moving a row out of the user has only the
/// key here, one moving a row in only the row).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Index into the move's tables.
    pub table: usize,
    pub before: Option<Vec<Value>>,
    pub after: Option<Vec<Value>>,
    /// A row of this key was changed (`false`) or deleted or given to another owner (`true`)
    /// by a session that logged minimal images, which name its key but not its owner: it was
    /// the user's if the destination (whose rows of the user mirror the source's) holds it.
    pub unowned: Option<(Vec<Value>, bool)>,
}

/// What the before side of a logged row change says about the user.
enum Before {
    /// The user's row, by its key.
    Mine(Vec<Value>),
    Other,
    /// A row named by its key only.
    Unowned(Vec<Value>),
}

/// What the after side says.
enum After {
    /// The user's row, whole.
    Mine(Vec<Value>),
    Other,
    /// Changed, by a session that named neither its owner nor the whole row.
    Unowned,
}

const INCOMPLETE: &str = "an image of the user's row without all its columns (a session writing with binlog_row_image other than FULL)";

impl Layout {
    fn owned(&self, image: &[Value], user: u64) -> bool {
        image.get(self.owner).is_some_and(|v| is_user(v, user))
    }

    fn key_of(&self, image: &[Value]) -> Option<Vec<Value>> {
        self.key
            .as_ref()
            .map(|k| k.iter().map(|&i| image[i].clone()).collect())
    }

    /// The changes to the user's rows one logged row change makes (a row named only by its
    /// key, then made the user's whole, is two). An image that holds the user's row but not
    /// all of it cannot be applied: that fails the move rather than leave the destination
    /// behind.
    fn changes(
        &self,
        table: usize,
        before: Option<Seen>,
        after: Option<Seen>,
        user: u64,
    ) -> std::result::Result<Vec<Change>, &'static str> {
        let before = match before {
            None => None,
            Some(Seen::Row(image)) if self.owned(&image, user) => Some(Before::Mine(
                self.key_of(&image).ok_or("a row whose key is generated")?,
            )),
            Some(Seen::Row(_)) => Some(Before::Other),
            Some(Seen::Part {
                owner: Some(o),
                key,
            }) if is_user(&o, user) => Some(Before::Mine(key.ok_or(INCOMPLETE)?)),
            Some(Seen::Part { owner: Some(_), .. }) => Some(Before::Other),
            Some(Seen::Part {
                owner: None,
                key: Some(k),
            }) => Some(Before::Unowned(k)),
            Some(Seen::Part {
                owner: None,
                key: None,
            }) => return Err("an image naming neither the owner nor the key of its row"),
        };
        let after = match after {
            None => None,
            Some(Seen::Row(image)) if self.owned(&image, user) => Some(After::Mine(image)),
            Some(Seen::Row(_)) => Some(After::Other),
            Some(Seen::Part { owner: Some(o), .. }) if is_user(&o, user) => return Err(INCOMPLETE),
            Some(Seen::Part { owner: Some(_), .. }) => Some(After::Other),
            // Without the owner, the owner did not change.
            Some(Seen::Part { owner: None, .. }) => match &before {
                Some(Before::Mine(_)) => return Err(INCOMPLETE),
                Some(Before::Unowned(_)) => Some(After::Unowned),
                _ => Some(After::Other),
            },
        };
        let change = |before, after| Change {
            table,
            before,
            after,
            unowned: None,
        };
        let unowned = |key, gone| Change {
            table,
            before: None,
            after: None,
            unowned: Some((key, gone)),
        };
        Ok(match (before, after) {
            (Some(Before::Mine(k)), Some(After::Mine(a))) => vec![change(Some(k), Some(a))],
            (Some(Before::Mine(k)), _) => vec![change(Some(k), None)],
            (Some(Before::Unowned(k)), Some(After::Unowned)) => vec![unowned(k, false)],
            (Some(Before::Unowned(k)), Some(After::Mine(a))) => {
                vec![unowned(k, true), change(None, Some(a))]
            }
            (Some(Before::Unowned(k)), _) => vec![unowned(k, true)],
            (_, Some(After::Mine(a))) => vec![change(None, Some(a))],
            _ => Vec::new(),
        })
    }
}

/// A committed transaction's changes to the user's rows, and where it ends in the log.
#[derive(Clone, Debug)]
pub struct Txn {
    pub end: Position,
    pub changes: Vec<Change>,
}

/// What a pass read.
#[derive(Clone, Debug)]
pub struct Read {
    /// Just past the last committed transaction read.
    pub end: Position,
    /// Transactions that changed the user's rows.
    pub transactions: u64,
    pub changes: u64,
    /// The first event read that may have changed rows without saying which (a statement-format
    /// write, a rollback to a savepoint, an XA transaction ended apart from its changes), as
    /// `FILE:POS `text``: only a verification of the whole account can vouch for the copy.
    pub unattributed: Option<String>,
}

/// What a query event in the log means to a follower.
#[derive(Debug, PartialEq, Eq)]
enum Query {
    /// A transaction begins (`BEGIN`, `XA START`).
    Begin,
    /// It commits (`COMMIT`).
    Commit,
    /// Nothing for the rows (`XA END`, `SAVEPOINT`).
    Nothing,
    /// The transaction's changes so far are void (`ROLLBACK`): they are dropped, and since a
    /// rolled-back group may still have changed non-transactional rows, it is also unattributed.
    Rollback,
    /// Anything else: a statement whose changes the log does not list row by row.
    Statement,
}

fn query_kind(sql: &str) -> Query {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(2)
        .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
        .collect();
    // A comment alone (the dummy a server sends in place of an event an older replica would
    // not understand) changes nothing.
    if sql.trim_start().starts_with('#') {
        return Query::Nothing;
    }
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["BEGIN"] | ["START", "TRANSACTION"] | ["XA", "START" | "BEGIN"] => Query::Begin,
        ["COMMIT"] => Query::Commit,
        ["XA", "END"] | ["SAVEPOINT", _] => Query::Nothing,
        ["ROLLBACK"] => Query::Rollback,
        _ => Query::Statement,
    }
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

/// Where a pass is in the log and what it has gathered, carried from event to event.
struct Cursor {
    /// The file being read: a rotate event names the next.
    file: String,
    /// The move's tables (index and map) by the table id the log's row events name.
    maps: HashMap<u64, (usize, TableMapEvent<'static>)>,
    read: Read,
    /// The changes of the transaction being read: handed on only once it commits.
    open: Vec<Change>,
    in_transaction: bool,
}

impl Cursor {
    /// Keeps the first event (of the followed server's) that may have changed rows without
    /// saying which: only a verification of the whole account can vouch for the copy then.
    fn unattributed(&mut self, ours: bool, log_pos: u64, what: &str) {
        if ours && self.read.unattributed.is_none() {
            let text: String = crate::error::one_line(what).chars().take(120).collect();
            self.read.unattributed = Some(format!("{}:{log_pos} `{text}`", self.file));
        }
    }

    /// A transaction ended at `log_pos`: the pass has read up to there, and the user's rows it
    /// changed go to `each`.
    fn commit(&mut self, log_pos: u64, each: &mut dyn FnMut(Txn) -> Result<()>) -> Result<()> {
        self.in_transaction = false;
        if log_pos > 0 {
            self.read.end = Position {
                file: self.file.clone(),
                pos: log_pos,
            };
        }
        if !self.open.is_empty() {
            self.read.transactions += 1;
            self.read.changes += self.open.len() as u64;
            each(Txn {
                end: self.read.end.clone(),
                changes: std::mem::take(&mut self.open),
            })?;
        }
        Ok(())
    }
}

/// Follows one source server's binary log for one user.
pub struct Tail<'a> {
    conns: &'a Conns<'a>,
    src: HostPort,
    user: u64,
    tables: Vec<Table>,
    columns: Vec<Vec<ColumnInfo>>,
    /// Layouts by (table, the table map's column count).
    layouts: HashMap<(usize, usize), Layout>,
    /// Only events first written by this server count (None: every event).
    origin: Option<u32>,
}

impl<'a> Tail<'a> {
    pub fn new(
        conns: &'a Conns<'a>,
        src: &HostPort,
        user: u64,
        tables: &[Table],
    ) -> Result<Tail<'a>> {
        let columns = tables
            .iter()
            .map(|t| columns(conns, src, t))
            .collect::<Result<_>>()?;
        Ok(Tail {
            conns,
            src: src.clone(),
            user,
            tables: tables.to_vec(),
            columns,
            layouts: HashMap::new(),
            origin: None,
        })
    }

    /// Counts only what `server_id` wrote itself, not what its log holds of others' writes
    /// (a peer logging what it applies from the source).
    pub fn written_by(mut self, server_id: u32) -> Tail<'a> {
        self.origin = Some(server_id);
        self
    }

    /// The kinds of every table's written columns (how the applier writes them).
    pub fn kinds(&self) -> Result<Vec<Vec<Kind>>> {
        self.tables
            .iter()
            .zip(&self.columns)
            .map(|(t, c)| {
                Layout::new(t, c, c.len())
                    .map(|l| l.kinds)
                    .ok_or_else(|| self.fail(format!("table `{}` lacks its owner column", t.name)))
            })
            .collect()
    }

    fn fail(&self, what: impl fmt::Display) -> Error {
        Error::Failed(format!("following {}'s binary log: {what}", self.src))
    }

    /// Reads the log from `from` to its current end (the server closes the stream there), or
    /// only to `until`, and hands every committed transaction that changed the user's rows to
    /// `each`, in commit order.
    pub fn pass(
        &mut self,
        from: &Position,
        until: Option<&Position>,
        each: &mut dyn FnMut(Txn) -> Result<()>,
    ) -> Result<Read> {
        let (stream, files) = self.dump(from)?;
        let mut at = Cursor {
            file: from.file.clone(),
            maps: HashMap::new(),
            read: Read {
                end: from.clone(),
                transactions: 0,
                changes: 0,
                unattributed: None,
            },
            open: Vec::new(),
            in_transaction: false,
        };
        let past =
            |file: &str, pos: u64| until.is_some_and(|u| (file, pos) > (u.file.as_str(), u.pos));
        for event in stream {
            let event = event.map_err(|e| self.fail(e))?;
            let log_pos = u64::from(event.header().log_pos());
            if !at.in_transaction && log_pos > 0 && past(&at.file, log_pos) {
                // The next transaction ends past `until`: the pass is complete.
                break;
            }
            if self.event(&mut at, &event, log_pos, &files)? {
                at.commit(log_pos, each)?;
            }
        }
        let mut read = at.read;
        if let Some(u) = until {
            // Everything committed up to `until` was read: the pass reached it.
            read.end = read.end.max(u.clone());
        }
        Ok(read)
    }

    /// Starts the dump at `from`, whose file must still be there: from a purged one the changes
    /// since `from` cannot be followed. Also gives the files listed, against which a rotate
    /// event's name is matched.
    fn dump(&self, from: &Position) -> Result<(mysql::BinlogStream, Vec<String>)> {
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
        // A MariaDB-aware replica: sent as they are, MariaDB's own events (GTIDs, annotations)
        // decode as unknown and are passed over. For an older replica the server replaces them
        // with dummy statements, and cannot replace an XA transaction's at all (error 1236).
        db.query_drop(
            "following the binary log",
            "SET @mariadb_slave_capability = 4",
        )?;
        let request = BinlogRequest::new(cfg.migrate.server_id)
            .with_filename(from.file.as_bytes().to_vec())
            .with_pos(from.pos)
            .with_flags(BinlogDumpFlags::BINLOG_DUMP_NON_BLOCK);
        let stream = db
            .into_conn("following the binary log")?
            .get_binlog_stream(request)
            .map_err(|e| self.fail(e))?;
        Ok((stream, files))
    }

    /// Takes one event (at `log_pos` in `at.file`) into the pass: true when it ends a
    /// transaction, whose changes are then complete.
    fn event(
        &mut self,
        at: &mut Cursor,
        event: &Event,
        log_pos: u64,
        files: &[String],
    ) -> Result<bool> {
        let data = event.read_data().map_err(|e| self.fail(e))?;
        let ours = self
            .origin
            .is_none_or(|id| event.header().server_id() == id);
        let mut commit = false;
        match data {
            Some(EventData::RotateEvent(r)) => {
                // A file created since the listing is named as sent (only the first,
                // artificial rotate carries the stray checksum).
                at.file =
                    rotated_file(r.name_raw(), files).unwrap_or_else(|| r.name().into_owned());
            }
            Some(EventData::TableMapEvent(tme)) => {
                if tme.database_name() == self.conns.cfg().shards.database.as_str() {
                    if let Some(i) = self
                        .tables
                        .iter()
                        .position(|t| t.name.as_str() == tme.table_name())
                    {
                        at.maps.insert(tme.table_id(), (i, tme.into_owned()));
                    }
                }
            }
            Some(EventData::RowsEvent(rows)) => {
                if let (Some((i, tme)), true) = (at.maps.get(&rows.table_id()), ours) {
                    let i = *i;
                    self.collect(&rows, tme, i, &mut at.open)?;
                }
            }
            Some(EventData::QueryEvent(q)) => {
                let sql = q.query();
                match query_kind(&sql) {
                    Query::Begin => at.in_transaction = true,
                    Query::Commit => commit = true,
                    Query::Nothing => {}
                    Query::Rollback => {
                        at.open.clear();
                        at.unattributed(ours, log_pos, &sql);
                        commit = true;
                    }
                    Query::Statement => {
                        at.unattributed(ours, log_pos, &sql);
                        // A statement of its own (DDL, XA COMMIT): a transaction by itself.
                        commit = !at.in_transaction;
                    }
                }
            }
            // A statement loading a file (LOAD DATA in statement format).
            Some(EventData::ExecuteLoadQueryEvent(q)) => {
                at.unattributed(ours, log_pos, &q.query());
                commit = !at.in_transaction;
            }
            // An XA transaction's changes are logged when it is prepared: applied then, and
            // its later XA COMMIT or XA ROLLBACK is a statement of its own.
            Some(EventData::XidEvent(_)) | Some(EventData::XaPrepareLogEvent(_)) => commit = true,
            Some(EventData::UnknownEvent) | None => {
                if at.in_transaction {
                    return Err(self.fail(format!(
                        "an event of unknown type {} inside a transaction at {}:{log_pos}",
                        event.header().event_type_raw(),
                        at.file
                    )));
                }
            }
            Some(_) => {}
        }
        Ok(commit)
    }

    fn layout(&mut self, table: usize, mapped_columns: usize) -> Result<&Layout> {
        if !self.layouts.contains_key(&(table, mapped_columns)) {
            let layout = Layout::new(&self.tables[table], &self.columns[table], mapped_columns)
                .ok_or_else(|| {
                    self.fail(format!(
                        "table `{}` has {mapped_columns} columns in the log, not the {} it has now (changed during the move?)",
                        self.tables[table].name,
                        self.columns[table].len()
                    ))
                })?;
            self.layouts.insert((table, mapped_columns), layout);
        }
        Ok(&self.layouts[&(table, mapped_columns)])
    }

    fn collect(
        &mut self,
        rows: &RowsEventData<'_>,
        tme: &TableMapEvent<'_>,
        table: usize,
        open: &mut Vec<Change>,
    ) -> Result<()> {
        if matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)) {
            return Err(self.fail(
                "a partial JSON update (binlog_row_value_options=PARTIAL_JSON) cannot be applied",
            ));
        }
        let before_cols: Vec<usize> = rows
            .columns_before_image()
            .map(|b| b.iter_ones().collect())
            .unwrap_or_default();
        let after_cols: Vec<usize> = rows
            .columns_after_image()
            .map(|b| b.iter_ones().collect())
            .unwrap_or_default();
        let user = self.user;
        let src = self.src.clone();
        let fail = |what: String| Error::Failed(format!("following {src}'s binary log: {what}"));
        let layout = self.layout(table, tme.columns_count() as usize)?.clone();
        let name = self.tables[table].name.clone();
        for row in rows.rows(tme) {
            let (before, after) = row.map_err(|e| fail(e.to_string()))?;
            let seen = |r: Option<mysql::binlog::row::BinlogRow>, present: &[usize]| {
                r.map(|r| -> Result<Seen> {
                    let values = r
                        .unwrap()
                        .into_iter()
                        .map(|v| Value::try_from(v).map_err(|e| fail(e.to_string())))
                        .collect::<Result<Vec<Value>>>()?;
                    layout.image(values, present).map_err(fail)
                })
                .transpose()
            };
            let changes = layout
                .changes(
                    table,
                    seen(before, &before_cols)?,
                    seen(after, &after_cols)?,
                    user,
                )
                .map_err(|why| {
                    fail(format!(
                        "table `{name}`: {why}; an online move cannot apply it"
                    ))
                })?;
            open.extend(changes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::named(
            "photos",
            "owner_id",
            &["photo_id", "owner_id", "title"],
            &["photo_id"],
        )
    }

    fn columns() -> Vec<ColumnInfo> {
        let c = |name: &str, virtual_: bool, kind: Kind| ColumnInfo {
            name: name.into(),
            virtual_,
            kind,
        };
        vec![
            c("photo_id", false, Kind::Unsigned(64)),
            c("owner_id", false, Kind::Unsigned(64)),
            c("title", false, Kind::Plain),
            c("shout", true, Kind::Plain),
        ]
    }

    #[test]
    fn images_are_laid_out_by_the_written_columns_whatever_the_log_holds() {
        let l = Layout::new(&table(), &columns(), 4).unwrap();
        let full = vec![
            Value::Int(-1),
            Value::Int(7),
            Value::from("t"),
            Value::from("T"),
        ];
        assert_eq!(
            l.image(full, &[0, 1, 2, 3]).unwrap(),
            Seen::Row(vec![
                Value::UInt(u64::MAX),
                Value::UInt(7),
                Value::from("t")
            ])
        );
        // Without the virtual column.
        let stored = Layout::new(&table(), &columns(), 3).unwrap();
        let Seen::Row(image) = stored
            .image(
                vec![Value::Int(1), Value::Int(7), Value::from("t")],
                &[0, 1, 2],
            )
            .unwrap()
        else {
            panic!("not a whole row")
        };
        assert!(stored.owned(&image, 7));
        assert!(!stored.owned(&image, 8));
        assert!(Layout::new(&table(), &columns(), 2).is_none());
        // A minimal image: the key alone.
        assert_eq!(
            l.image(vec![Value::Int(1)], &[0]).unwrap(),
            Seen::Part {
                owner: None,
                key: Some(vec![Value::UInt(1)])
            }
        );
    }

    fn row(id: u64, owner: u64) -> Seen {
        Seen::Row(vec![Value::UInt(id), Value::UInt(owner), Value::from("t")])
    }

    fn key(id: u64) -> Seen {
        Seen::Part {
            owner: None,
            key: Some(vec![Value::UInt(id)]),
        }
    }

    #[test]
    fn a_change_is_the_users_by_either_image() {
        let l = Layout::new(&table(), &columns(), 3).unwrap();
        let k = |id: u64| Some(vec![Value::UInt(id)]);
        let whole = |id: u64, owner: u64| match row(id, owner) {
            Seen::Row(r) => Some(r),
            _ => None,
        };
        let of = |b: Option<Seen>, a: Option<Seen>| l.changes(0, b, a, 7).unwrap();
        // An insert of ours, of someone else's.
        assert_eq!(of(None, Some(row(1, 7)))[0].after, whole(1, 7));
        assert!(of(None, Some(row(1, 8))).is_empty());
        // A row moving out (its key), one moving in (the row), a change of key within the user.
        let out = of(Some(row(2, 7)), Some(row(2, 8)));
        assert_eq!((out[0].before.clone(), out[0].after.clone()), (k(2), None));
        let inward = of(Some(row(3, 8)), Some(row(4, 7)));
        assert_eq!(
            (inward[0].before.clone(), inward[0].after.clone()),
            (None, whole(4, 7))
        );
        let moved = of(Some(row(5, 7)), Some(row(6, 7)));
        assert_eq!(
            (moved[0].before.clone(), moved[0].after.clone()),
            (k(5), whole(6, 7))
        );
        // Minimal images: a delete by key, an update without the owner, for the destination
        // to judge; the user's row without all its columns, refused.
        assert_eq!(
            of(Some(key(9)), None)[0].unowned,
            Some((vec![Value::UInt(9)], true))
        );
        let minimal_update = Seen::Part {
            owner: None,
            key: None,
        };
        assert_eq!(
            of(Some(key(9)), Some(minimal_update.clone()))[0].unowned,
            Some((vec![Value::UInt(9)], false))
        );
        assert!(l
            .changes(0, Some(row(1, 7)), Some(minimal_update), 7)
            .is_err());
        let partial_mine = Seen::Part {
            owner: Some(Value::UInt(7)),
            key: None,
        };
        assert!(l.changes(0, None, Some(partial_mine), 7).is_err());
    }

    #[test]
    fn values_are_given_back_as_written() {
        let cases = [
            (
                Kind::Unsigned(32),
                Value::Int(-1),
                Value::UInt(4_294_967_295),
            ),
            (Kind::Unsigned(24), Value::Int(-2), Value::UInt(16_777_214)),
            (Kind::Unsigned(8), Value::Int(5), Value::UInt(5)),
            (Kind::Year, Value::from("1900"), Value::UInt(0)),
            (Kind::Year, Value::from("2155"), Value::UInt(2155)),
            (Kind::Bit, Value::Bytes(vec![0x03, 0x01]), Value::UInt(769)),
            (Kind::Set, Value::Bytes(vec![0x05]), Value::UInt(5)),
            (Kind::Set, Value::Bytes(vec![0x01, 0x02]), Value::UInt(513)),
            (
                Kind::Fixed(3),
                Value::Bytes(vec![7]),
                Value::Bytes(vec![7, 0, 0]),
            ),
            (
                Kind::Timestamp,
                Value::from("0"),
                Value::Date(0, 0, 0, 0, 0, 0, 0),
            ),
            (
                Kind::Timestamp,
                Value::from("1711848600.500000"),
                Value::Date(2024, 3, 31, 1, 30, 0, 500_000),
            ),
            (
                Kind::Timestamp,
                Value::from("1"),
                Value::Date(1970, 1, 1, 0, 0, 1, 0),
            ),
            (
                Kind::Timestamp,
                Value::from("2147483647"),
                Value::Date(2038, 1, 19, 3, 14, 7, 0),
            ),
            (Kind::Timestamp, Value::NULL, Value::NULL),
        ];
        for (kind, logged, written) in cases {
            let what = format!("{kind:?} logged as {logged:?}");
            assert_eq!(kind.give_back(logged).unwrap(), written, "{what}");
        }
        assert!(Kind::Timestamp.give_back(Value::from("x")).is_err());
    }

    #[test]
    fn kinds_come_from_the_declared_types() {
        assert_eq!(
            Kind::of("int", "int(10) unsigned", None, None, None).unwrap(),
            Kind::Unsigned(32)
        );
        assert_eq!(
            Kind::of("bigint", "bigint(20)", None, None, None).unwrap(),
            Kind::Plain
        );
        assert_eq!(
            Kind::of(
                "varchar",
                "varchar(40)",
                Some(40),
                Some("latin1"),
                Some("latin1_swedish_ci")
            )
            .unwrap(),
            Kind::Text {
                charset: "latin1".into(),
                collation: "latin1_swedish_ci".into()
            }
        );
        assert_eq!(
            Kind::of(
                "enum",
                "enum('x','y')",
                Some(4),
                Some("utf8mb4"),
                Some("utf8mb4_general_ci")
            )
            .unwrap(),
            Kind::Plain
        );
        assert_eq!(
            Kind::of("blob", "blob", Some(65535), None, None).unwrap(),
            Kind::Plain
        );
        assert_eq!(
            Kind::of("uuid", "uuid", None, None, None).unwrap(),
            Kind::Fixed(16)
        );
        assert_eq!(
            Kind::of("binary", "binary(4)", Some(4), None, None).unwrap(),
            Kind::Fixed(4)
        );
        assert!(Kind::of("text", "text", None, Some("x; DROP"), Some("y")).is_err());
    }

    #[test]
    fn civil_dates_round_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn only_transaction_control_and_comments_are_not_unattributed_changes() {
        for (sql, kind) in [
            ("BEGIN", Query::Begin),
            ("XA START X'31',X'',1", Query::Begin),
            ("COMMIT", Query::Commit),
            ("XA END X'31',X'',1", Query::Nothing),
            ("SAVEPOINT `a`", Query::Nothing),
            (
                "# Dummy event replacing event type 160 that slave cannot handle.",
                Query::Nothing,
            ),
            ("ROLLBACK", Query::Rollback),
            ("ROLLBACK TO `a`", Query::Statement),
            ("XA COMMIT X'31',X'',1", Query::Statement),
            ("UPDATE photos SET views = views + 1", Query::Statement),
            ("CREATE TABLE t (a INT)", Query::Statement),
        ] {
            assert_eq!(query_kind(sql), kind, "{sql}");
        }
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
}

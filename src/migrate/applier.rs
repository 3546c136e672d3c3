//! Applying a source's changes to the user's rows on the destination, transaction by
//! transaction: whole source transactions, in commit order, grouped into one destination
//! transaction that first checks the fence and last records the source position it reached
//! (`shardctl_applied`), so the destination's rows and the position they stand at change
//! together. An event is never applied twice or skipped: each statement must find exactly the
//! row its image names, or the group is rolled back and the move fails.

use std::collections::HashMap;

use mysql::prelude::Queryable;
use mysql::Value;

use super::binlog::{Change, Kind, Txn};
use super::data::{self, Checksum, Table};
use super::online::Position;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::shard::conns::{Conns, Lent};
use crate::shard::fence;
use crate::types::HostPort;

/// Where the destination records, with the rows, how far it has applied the source's log.
const APPLIED: &str = "shardctl_applied";

/// Source transactions' changes applied per destination transaction, at most.
const GROUP_CHANGES: usize = 500;

/// Keys of the user's rows, per table (by index), deduplicated by their encoding.
pub type Touched = Vec<HashMap<Vec<u8>, Vec<Value>>>;

/// How one table's changes are written.
#[derive(Clone, Debug)]
pub struct Statements {
    table: Table,
    kinds: Vec<Kind>,
    /// Written-column index of each primary key column, in key order.
    key: Vec<usize>,
    insert: String,
    update: String,
    delete: String,
}

impl Statements {
    pub fn new(table: &Table, kinds: Vec<Kind>) -> Result<Statements> {
        let at = |c: &crate::types::Ident| {
            table.columns.iter().position(|w| w == c).ok_or_else(|| {
                Error::Refused(format!(
                    "table `{}`: key column `{c}` is generated; an online move cannot apply changes to it",
                    table.name
                ))
            })
        };
        let key = table
            .primary_key
            .iter()
            .map(at)
            .collect::<Result<Vec<_>>>()?;
        let name = table.name.quoted();
        let placeholder = |i: usize| kinds[i].placeholder();
        let assign = |i: usize| format!("{} = {}", table.columns[i].quoted(), placeholder(i));
        let which = format!(
            "{} AND {} = ?",
            key.iter()
                .map(|&i| assign(i))
                .collect::<Vec<_>>()
                .join(" AND "),
            table.owner.quoted()
        );
        let all: Vec<usize> = (0..table.columns.len()).collect();
        Ok(Statements {
            insert: format!(
                "INSERT INTO {name} ({}) VALUES ({})",
                table
                    .columns
                    .iter()
                    .map(|c| c.quoted())
                    .collect::<Vec<_>>()
                    .join(", "),
                all.iter()
                    .map(|&i| placeholder(i))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            update: format!(
                "UPDATE {name} SET {} WHERE {which}",
                all.iter()
                    .map(|&i| assign(i))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            delete: format!("DELETE FROM {name} WHERE {which}"),
            table: table.clone(),
            kinds,
            key,
        })
    }

    /// The key of an image.
    pub fn key_of(&self, image: &[Value]) -> Vec<Value> {
        self.key.iter().map(|&i| image[i].clone()).collect()
    }

    /// `owner = ? AND (key) IN (...)` for a chunk of keys, with its parameters.
    fn key_clause(&self, keys: &[&Vec<Value>], user: u64) -> (String, Vec<Value>) {
        let cols: Vec<String> = self
            .key
            .iter()
            .map(|&i| self.table.columns[i].quoted())
            .collect();
        let one = format!(
            "({})",
            self.key
                .iter()
                .map(|&i| self.kinds[i].placeholder())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let sql = format!(
            "{} = ? AND ({}) IN ({})",
            self.table.owner.quoted(),
            cols.join(", "),
            vec![one; keys.len()].join(", ")
        );
        let mut params = vec![Value::from(user)];
        for k in keys {
            params.extend(k.iter().cloned());
        }
        (sql, params)
    }

    /// Applies one change inside `tx`; a description of what did not match, if anything.
    /// `unowned_mine`: of the keys named without their owner, the user's ones on the
    /// destination, kept as the changes are applied.
    fn apply(
        &self,
        tx: &mut mysql::Transaction,
        change: &Change,
        user: u64,
        unowned_mine: &mut HashMap<Vec<u8>, ()>,
    ) -> mysql::Result<Option<String>> {
        let which = |key: &[Value]| {
            let mut p = key.to_vec();
            p.push(user.into());
            p
        };
        let (sql, params, what) = match (&change.before, &change.after, &change.unowned) {
            (_, _, Some((key, gone))) => {
                if unowned_mine.remove(&encode(key)).is_none() {
                    return Ok(None);
                }
                if !gone {
                    return Ok(Some(format!(
                        "a session logging minimal row images changed a row of the user's in table {}: an online move needs binlog_row_image=FULL for every writer",
                        self.table.name
                    )));
                }
                (&self.delete, which(key), "delete")
            }
            (Some(before), Some(after), None) => {
                let mut p = after.clone();
                p.extend(which(before));
                (&self.update, p, "update")
            }
            (Some(before), None, None) => (&self.delete, which(before), "delete"),
            (None, Some(after), None) => (&self.insert, after.clone(), "insert"),
            (None, None, None) => return Ok(None),
        };
        if change.unowned.is_none() {
            if let Some(before) = &change.before {
                unowned_mine.remove(&encode(before));
            }
            if let Some(after) = &change.after {
                unowned_mine.insert(encode(&self.key_of(after)), ());
            }
        }
        tx.exec_drop(sql, params)?;
        // An update that changes nothing reports no affected row: count the rows it found.
        let found = if what == "update" {
            matched(&tx.info_str())
        } else {
            tx.affected_rows()
        };
        Ok((found != 1).then(|| {
            format!(
                "a logged {what} of table {} found {found} rows of the user's on the destination, not 1",
                self.table.name
            )
        }))
    }
}

/// "Rows matched: N" of an UPDATE's info.
fn matched(info: &str) -> u64 {
    info.split("Rows matched:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A key's encoding, for sets of keys.
fn encode(key: &[Value]) -> Vec<u8> {
    let mut enc = Vec::new();
    for v in key {
        data::encode_value(&mut enc, v);
        enc.push(0);
    }
    enc
}

/// The keys a change touched, before and after, added to `into`.
fn touch(into: &mut Touched, statements: &[Statements], change: &Change) {
    let s = &statements[change.table];
    let keys = [
        change.before.clone(),
        change.after.as_ref().map(|a| s.key_of(a)),
        change.unowned.as_ref().map(|(k, _)| k.clone()),
    ];
    for key in keys.into_iter().flatten() {
        into[change.table].insert(encode(&key), key);
    }
}

/// Adds the keys `changes` touch for the first time to `touched`, and the checksums of their
/// rows as they are before the changes (inside the changes' transaction) to `before`.
fn first_touch(
    tx: &mut mysql::Transaction,
    statements: &[Statements],
    changes: &[&Change],
    user: u64,
    touched: &mut Touched,
    before: &mut [Checksum],
) -> mysql::Result<()> {
    let mut new: Touched = vec![HashMap::new(); statements.len()];
    for change in changes {
        touch(&mut new, statements, change);
    }
    for (t, keys) in new.into_iter().enumerate() {
        let keys: Vec<(Vec<u8>, Vec<Value>)> = keys
            .into_iter()
            .filter(|(enc, _)| !touched[t].contains_key(enc))
            .collect();
        let values: Vec<&Vec<Value>> = keys.iter().map(|(_, k)| k).collect();
        for chunk in values.chunks(GROUP_CHANGES) {
            let (which, params) = statements[t].key_clause(chunk, user);
            before[t] =
                before[t].plus(data::checksum_on(tx, &statements[t].table, &which, params)?);
        }
        touched[t].extend(keys);
    }
    Ok(())
}

/// Of the keys the changes name without their owner, the ones of the user's rows on `tx`'s
/// server, per table.
fn unowned_mine(
    tx: &mut mysql::Transaction,
    statements: &[Statements],
    changes: &[&Change],
    user: u64,
) -> mysql::Result<Vec<HashMap<Vec<u8>, ()>>> {
    let mut mine = vec![HashMap::new(); statements.len()];
    for (t, s) in statements.iter().enumerate() {
        let keys: Vec<&Vec<Value>> = changes
            .iter()
            .filter(|c| c.table == t)
            .filter_map(|c| c.unowned.as_ref().map(|(k, _)| k))
            .collect();
        for chunk in keys.chunks(GROUP_CHANGES) {
            let (which, params) = s.key_clause(chunk, user);
            let cols: Vec<String> = s.key.iter().map(|&i| s.table.columns[i].quoted()).collect();
            let found: Vec<mysql::Row> = tx.exec(
                format!(
                    "SELECT {} FROM {} WHERE {which}",
                    cols.join(", "),
                    s.table.name.quoted()
                ),
                params,
            )?;
            for row in found {
                let key: Vec<Value> = row.unwrap();
                mine[t].insert(encode(&key), ());
            }
        }
    }
    Ok(mine)
}

/// The checksum of the user's rows of one table among `keys`, on `db`.
pub fn checksum_keys(
    db: &mut Db,
    statements: &Statements,
    keys: &HashMap<Vec<u8>, Vec<Value>>,
    user: u64,
) -> Result<Checksum> {
    let keys: Vec<&Vec<Value>> = keys.values().collect();
    let text_key = statements
        .key
        .iter()
        .any(|&i| matches!(statements.kinds[i], Kind::Text { .. }));
    if text_key {
        binary_strings(db)?;
    }
    let mut sum = Checksum::EMPTY;
    let summed = keys.chunks(GROUP_CHANGES).try_for_each(|chunk| {
        let (which, params) = statements.key_clause(chunk, user);
        sum = sum.plus(data::checksum_where(db, &statements.table, &which, params)?);
        Ok::<(), Error>(())
    });
    if text_key {
        db.query_drop("choosing the session's character set", "SET NAMES utf8mb4")?;
    }
    summed.map(|()| sum)
}

/// Makes the session take string parameters as bytes: a text image carries its column's
/// character set's bytes (latin1's `é` is one byte), which a utf8mb4 session would refuse.
fn binary_strings(db: &mut Db) -> Result<()> {
    db.query_drop("choosing the session's character set", "SET NAMES binary")
}

/// Creates the table where each move records how far it applied the source's log, if missing.
fn ensure_applied(db: &mut Db) -> Result<()> {
    db.query_drop(
        "creating the applied-position table",
        &format!(
            "CREATE TABLE IF NOT EXISTS {APPLIED} (
                user_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
                token BIGINT UNSIGNED NOT NULL,
                source VARCHAR(300) NOT NULL,
                binlog_position VARCHAR(600) NOT NULL,
                updated_at DATETIME(6) NOT NULL
            ) ENGINE=InnoDB"
        ),
    )
}

/// Applies a source's changes to the user's rows on one destination session, registered with
/// the fence.
pub struct Applier<'a> {
    db: Option<Lent<'a>>,
    dst: HostPort,
    source: String,
    user: u64,
    token: u64,
    statements: Vec<Statements>,
    pending: Vec<Txn>,
    pending_changes: usize,
    /// Changes applied so far.
    pub applied: u64,
    /// Once the account was verified whole (`verified_whole`): the keys the applied changes
    /// touched since, and their checksums on the destination just before the first change to
    /// each, what they were as verified. None before: nothing is noted that no one will read.
    since_verified: Option<(Touched, Vec<Checksum>)>,
}

impl<'a> Applier<'a> {
    pub fn new(
        conns: &'a Conns<'a>,
        (src, dst): (&HostPort, &HostPort),
        (user, token): (u64, u64),
        statements: Vec<Statements>,
    ) -> Result<Applier<'a>> {
        conns.once(dst, "the applied-position table", ensure_applied)?;
        let mut db = conns.get(dst)?;
        binary_strings(&mut db)?;
        fence::register(db.raw("applying the binary log")?, dst, user, token)?;
        Ok(Applier {
            db: Some(db),
            dst: dst.clone(),
            source: src.to_string(),
            user,
            token,
            statements,
            pending: Vec::new(),
            pending_changes: 0,
            applied: 0,
            since_verified: None,
        })
    }

    /// The keys touched since the account was verified whole, and their checksums per table
    /// as they were then; None when it has not been.
    pub fn since_verified(&self) -> Option<(&Touched, &[Checksum])> {
        self.since_verified.as_ref().map(|(t, b)| (t, b.as_slice()))
    }

    /// The whole account was verified as it stands now: from here on, each row's first change
    /// is noted.
    pub fn verified_whole(&mut self) {
        let n = self.statements.len();
        self.since_verified = Some((vec![HashMap::new(); n], vec![Checksum::EMPTY; n]));
    }

    pub fn statements(&self) -> &[Statements] {
        &self.statements
    }

    /// Takes a committed source transaction; applies what is pending once it is large.
    pub fn push(&mut self, txn: Txn) -> Result<()> {
        self.pending_changes += txn.changes.len();
        self.pending.push(txn);
        if self.pending_changes >= GROUP_CHANGES {
            self.flush(None)?;
        }
        Ok(())
    }

    /// Applies every pending transaction in one fenced destination transaction, which records
    /// `reached` (else the last pending transaction's end) as the position it stands at.
    pub fn flush(&mut self, reached: Option<&Position>) -> Result<()> {
        let Some(position) = reached
            .cloned()
            .or_else(|| self.pending.last().map(|t| t.end.clone()))
        else {
            return Ok(());
        };
        let Applier {
            db,
            dst,
            source,
            user,
            token,
            statements,
            pending,
            since_verified,
            ..
        } = self;
        let (user, token) = (*user, *token);
        let conn = db
            .as_mut()
            .ok_or_else(|| Error::inconsistent("the applier's session is gone"))?
            .raw("applying the binary log")?;
        let record = format!(
            "REPLACE INTO {APPLIED} (user_id, token, source, binlog_position, updated_at) VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6))"
        );
        fence::fenced_checked(conn, dst, user, token, |tx| {
            let changes: Vec<&Change> = pending.iter().flat_map(|t| &t.changes).collect();
            if let Some((touched, before)) = since_verified.as_mut() {
                first_touch(tx, statements, &changes, user, touched, before)?;
            }
            let mut mine = unowned_mine(tx, statements, &changes, user)?;
            for change in changes {
                let s = &statements[change.table];
                if let Some(mismatch) = s.apply(tx, change, user, &mut mine[change.table])? {
                    return Ok(Err(mismatch));
                }
            }
            tx.exec_drop(
                &record,
                (user, token, source.as_str(), position.to_string()),
            )?;
            Ok(Ok(()))
        })
        .inspect_err(|_| {
            // Its state is unknown: not a session to lend again.
            if let Some(db) = db.take() {
                db.discard();
            }
        })?;
        self.applied += self.pending_changes as u64;
        self.pending.clear();
        self.pending_changes = 0;
        Ok(())
    }

    /// Ends the applier: the position record and the session's registration go.
    pub fn finish(mut self) -> Result<()> {
        if let Some(db) = self.db.as_mut() {
            db.exec_drop(
                "forgetting the applied position",
                &format!("DELETE FROM {APPLIED} WHERE user_id = ?"),
                (self.user,),
            )?;
            fence::unregister(db.raw("applying the binary log")?, self.user);
        }
        Ok(())
    }
}

impl Drop for Applier<'_> {
    fn drop(&mut self) {
        // Registered with the fence and taking strings as bytes: not a session to lend again.
        if let Some(db) = self.db.take() {
            db.discard();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::named(
            "exotic",
            "owner_id",
            &["k", "owner_id", "latin"],
            &["k", "owner_id"],
        )
    }

    #[test]
    fn statements_name_rows_by_key_and_owner_and_write_text_unconverted() {
        let kinds = vec![
            Kind::Plain,
            Kind::Unsigned(64),
            Kind::Text {
                charset: "latin1".into(),
                collation: "latin1_swedish_ci".into(),
            },
        ];
        let s = Statements::new(&table(), kinds).unwrap();
        assert_eq!(
            s.insert,
            "INSERT INTO `exotic` (`k`, `owner_id`, `latin`) VALUES (?, ?, CONVERT(CAST(? AS BINARY) USING latin1) COLLATE latin1_swedish_ci)"
        );
        assert_eq!(
            s.delete,
            "DELETE FROM `exotic` WHERE `k` = ? AND `owner_id` = ? AND `owner_id` = ?"
        );
        assert!(s
            .update
            .starts_with("UPDATE `exotic` SET `k` = ?, `owner_id` = ?, `latin` = CONVERT("));
        let image = vec![Value::Int(3), Value::UInt(7), Value::from("x")];
        assert_eq!(s.key_of(&image), vec![Value::Int(3), Value::UInt(7)]);
        let mut touched: Touched = vec![HashMap::new()];
        let change = Change {
            table: 0,
            before: Some(s.key_of(&image)),
            after: Some(image),
            unowned: Some((vec![Value::Int(4), Value::UInt(7)], true)),
        };
        touch(&mut touched, std::slice::from_ref(&s), &change);
        assert_eq!(touched[0].len(), 2);
    }

    #[test]
    fn an_updates_found_rows_are_read_from_its_info() {
        assert_eq!(matched("Rows matched: 1  Changed: 0  Warnings: 0"), 1);
        assert_eq!(matched("Rows matched: 0  Changed: 0  Warnings: 0"), 0);
        assert_eq!(matched(""), 0);
    }
}

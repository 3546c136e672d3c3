//! The demo application on the sandbox's shards: a photo site's per-user tables (photos,
//! comments, favorites, each keyed by an owner column) and accounts of realistically skewed
//! sizes: most small, a few with tens of thousands of rows.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::TableSpec;
use crate::db::{row_placeholders, Db};
use crate::error::Result;
use crate::types::Ident;

pub const DATABASE: &str = "photoapp";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS photos (
        photo_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
        owner_id BIGINT UNSIGNED NOT NULL,
        title VARCHAR(255) NOT NULL,
        taken_at DATETIME NOT NULL,
        views INT UNSIGNED NOT NULL DEFAULT 0,
        KEY owner (owner_id, photo_id)
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS comments (
        comment_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
        owner_id BIGINT UNSIGNED NOT NULL,
        photo_id BIGINT UNSIGNED NOT NULL,
        body TEXT NOT NULL,
        created_at DATETIME NOT NULL,
        KEY owner (owner_id, comment_id)
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS favorites (
        owner_id BIGINT UNSIGNED NOT NULL,
        photo_id BIGINT UNSIGNED NOT NULL,
        created_at DATETIME NOT NULL,
        PRIMARY KEY (owner_id, photo_id)
    ) ENGINE=InnoDB",
];

/// The per-user tables, as the config names them.
pub fn tables() -> Vec<TableSpec> {
    ["photos", "comments", "favorites"]
        .iter()
        .map(|t| TableSpec {
            name: t.parse().expect("valid identifier"),
            owner_column: "owner_id".parse().expect("valid identifier"),
        })
        .collect()
}

/// Creates the database and tables (on one server of a shard; replication brings them over).
pub fn create_schema(db: &mut Db, database: &Ident) -> Result<()> {
    db.query_drop(
        "creating the application database",
        &format!("CREATE DATABASE IF NOT EXISTS {}", database.quoted()),
    )?;
    for sql in SCHEMA {
        db.query_drop(
            "creating the application tables",
            &sql.replace(
                "IF NOT EXISTS ",
                &format!("IF NOT EXISTS {}.", database.quoted()),
            ),
        )?;
    }
    Ok(())
}

/// How many rows one account has in each table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AccountSize {
    pub photos: u64,
    pub comments: u64,
    pub favorites: u64,
}

/// Deterministic skewed sizes: one account in a thousand holds 20k–40k photos, two in a hundred
/// hold hundreds to a few thousand, the rest a few dozen at most.
pub fn account_sizes(users: u64, seed: u64) -> Vec<AccountSize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..users)
        .map(|i| {
            let r: f64 = rng.random();
            let photos = if i % 1000 == 7 {
                rng.random_range(20_000..40_000)
            } else if r < 0.02 {
                rng.random_range(300..3_000)
            } else {
                (60f64.powf(rng.random::<f64>()) - 1.0) as u64
            };
            AccountSize {
                photos,
                comments: photos * 3 / 10,
                favorites: (photos / 5).min(500),
            }
        })
        .collect()
}

/// One account to write: its owner, its size, and where its ids start (ids are global, so an
/// account can move to any shard without colliding).
#[derive(Clone, Copy, Debug)]
pub struct Account {
    pub owner: u64,
    pub size: AccountSize,
    pub first_photo_id: u64,
    pub first_comment_id: u64,
}

/// Accounts for `owners` with sizes from `account_sizes`, ids allocated in owner order.
pub fn plan_accounts(owners: &[u64], seed: u64) -> Vec<Account> {
    let (mut photo, mut comment) = (1u64, 1u64);
    owners
        .iter()
        .zip(account_sizes(owners.len() as u64, seed))
        .map(|(owner, size)| {
            let a = Account {
                owner: *owner,
                size,
                first_photo_id: photo,
                first_comment_id: comment,
            };
            photo += size.photos;
            comment += size.comments;
            a
        })
        .collect()
}

/// Rows are written in statements of this many rows.
const CHUNK: usize = 2000;

/// Rows for one table, written as a multi-row INSERT whenever a chunk is full.
struct Buffer {
    insert: String,
    columns: usize,
    values: Vec<mysql::Value>,
    written: u64,
}

impl Buffer {
    fn new(database: &Ident, table: &str, columns: &[&str]) -> Buffer {
        Buffer {
            insert: format!(
                "INSERT INTO {}.{table} ({}) VALUES ",
                database.quoted(),
                columns.join(", ")
            ),
            columns: columns.len(),
            values: Vec::new(),
            written: 0,
        }
    }

    fn push<const N: usize>(&mut self, db: &mut Db, row: [mysql::Value; N]) -> Result<()> {
        self.values.extend(row);
        if self.values.len() >= CHUNK * self.columns {
            self.flush(db)?;
        }
        Ok(())
    }

    fn flush(&mut self, db: &mut Db) -> Result<()> {
        let rows = self.values.len() / self.columns;
        if rows > 0 {
            let sql = format!("{}{}", self.insert, row_placeholders(rows, self.columns));
            db.exec_drop("writing demo rows", &sql, std::mem::take(&mut self.values))?;
            self.written += rows as u64;
        }
        Ok(())
    }
}

/// Writes `accounts` into `database` on `db`; returns the rows written.
pub fn write_accounts(db: &mut Db, database: &Ident, accounts: &[Account]) -> Result<u64> {
    let mut photos = Buffer::new(
        database,
        "photos",
        &["photo_id", "owner_id", "title", "taken_at", "views"],
    );
    let mut comments = Buffer::new(
        database,
        "comments",
        &["comment_id", "owner_id", "photo_id", "body", "created_at"],
    );
    let mut favorites = Buffer::new(
        database,
        "favorites",
        &["owner_id", "photo_id", "created_at"],
    );
    for a in accounts {
        let owner = a.owner;
        for photo_id in a.first_photo_id..a.first_photo_id + a.size.photos {
            let taken = format!(
                "2024-{:02}-{:02} 12:00:00",
                1 + photo_id % 12,
                1 + photo_id % 28
            );
            photos.push(
                db,
                [
                    photo_id.into(),
                    owner.into(),
                    format!("photo {photo_id} by {owner}").into(),
                    taken.into(),
                    (photo_id % 997).into(),
                ],
            )?;
        }
        for k in 0..a.size.comments {
            let comment_id = a.first_comment_id + k;
            comments.push(
                db,
                [
                    comment_id.into(),
                    owner.into(),
                    (a.first_photo_id + k % a.size.photos.max(1)).into(),
                    format!("comment {comment_id}: lovely light").into(),
                    "2024-06-01 08:00:00".into(),
                ],
            )?;
        }
        for k in 0..a.size.favorites {
            favorites.push(
                db,
                [
                    owner.into(),
                    (a.first_photo_id + k).into(),
                    "2024-07-01 09:30:00".into(),
                ],
            )?;
        }
    }
    for b in [&mut photos, &mut comments, &mut favorites] {
        b.flush(db)?;
    }
    Ok(photos.written + comments.written + favorites.written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_skewed_and_deterministic() {
        let sizes = account_sizes(2000, 1);
        assert_eq!(sizes, account_sizes(2000, 1));
        let big = sizes.iter().filter(|s| s.photos >= 20_000).count();
        let small = sizes.iter().filter(|s| s.photos < 60).count();
        assert_eq!(big, 2);
        assert!(small > 1900, "{small}");
    }
}

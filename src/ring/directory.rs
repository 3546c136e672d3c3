//! The directory: shards, their servers, and which shard each user lives on.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use mysql::prelude::Queryable;
use serde::Serialize;
use serde_json::json;

use crate::db::Db;
use crate::error::{DbErrorKind, Error, Result};
use crate::ring::{audit, Changed, Ring};
use crate::types::{HostPort, ShardName, Weight};

/// Declares a string-valued enum stored as a MySQL ENUM, with its text both ways.
macro_rules! sql_enum {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize, clap::ValueEnum)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unexpected {} `{other}`", stringify!($name))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

sql_enum!(ShardState { Active = "active", Readonly = "readonly", Retiring = "retiring" });
sql_enum!(Half { A = "a", B = "b" });
sql_enum!(ServerStatus { Online = "online", Draining = "draining", Offline = "offline" });
sql_enum!(UserState { Active = "active", Moving = "moving" });

/// Where a user lives: (shard id, state).
pub type Placed = (u32, UserState);

impl Half {
    pub fn other(self) -> Half {
        match self {
            Half::A => Half::B,
            Half::B => Half::A,
        }
    }
}

/// A shard's server as the ring registers it.
#[derive(Clone, Debug)]
pub struct Server {
    pub addr: HostPort,
    pub half: Half,
    pub status: ServerStatus,
    /// Queries per second the server can carry, where configured: a drain refuses to leave a
    /// shard on servers that cannot carry its load.
    pub capacity_qps: Option<f64>,
}

/// Serialised with `host` and `port` apart, as the JSON contract has them.
impl Serialize for Server {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Fields<'a> {
            host: &'a str,
            port: u16,
            half: Half,
            status: ServerStatus,
            capacity_qps: Option<f64>,
        }
        Fields {
            host: &self.addr.host,
            port: self.addr.port,
            half: self.half,
            status: self.status,
            capacity_qps: self.capacity_qps,
        }
        .serialize(s)
    }
}

#[derive(Clone, Debug)]
pub struct Shard {
    pub id: u32,
    pub name: ShardName,
    pub weight: f64,
    pub state: ShardState,
    pub servers: Vec<Server>,
}

fn parse_col<T: FromStr<Err = String>>(v: &str) -> Result<T> {
    v.parse().map_err(Error::inconsistent)
}

/// Every shard with its servers, by name.
pub fn shards(db: &mut Db) -> Result<Vec<Shard>> {
    let rows: Vec<(u32, String, f64, String)> = db.exec(
        "reading shards",
        "SELECT shard_id, name, weight, state FROM shards ORDER BY name",
        (),
    )?;
    let server_rows: Vec<(u32, String, u16, String, String, Option<f64>)> = db.exec(
        "reading shard servers",
        "SELECT shard_id, host, port, half, status, capacity_qps FROM shard_servers ORDER BY shard_id, half, host, port",
        (),
    )?;
    let mut servers: HashMap<u32, Vec<Server>> = HashMap::new();
    for (id, host, port, half, status, capacity_qps) in server_rows {
        servers.entry(id).or_default().push(Server {
            addr: HostPort::new(host, port),
            half: parse_col(&half)?,
            status: parse_col(&status)?,
            capacity_qps,
        });
    }
    rows.into_iter()
        .map(|(id, name, weight, state)| {
            Ok(Shard {
                id,
                name: parse_col(&name)?,
                weight,
                state: parse_col(&state)?,
                servers: servers.remove(&id).unwrap_or_default(),
            })
        })
        .collect()
}

/// One shard by name, or a not-found error naming it.
pub fn shard(db: &mut Db, name: &ShardName) -> Result<Shard> {
    shards(db)?
        .into_iter()
        .find(|s| s.name == name.as_str())
        .ok_or_else(|| Error::NotFound(format!("no shard named `{name}`")))
}

/// Users per shard id.
pub fn user_counts(db: &mut Db) -> Result<HashMap<u32, u64>> {
    let rows: Vec<(u32, u64)> = db.exec(
        "counting users per shard",
        "SELECT shard_id, COUNT(*) FROM users GROUP BY shard_id",
        (),
    )?;
    Ok(rows.into_iter().collect())
}

/// Registers a shard and its servers (halves a, b, a, ... in order) in one transaction.
pub fn add_shard(
    db: &mut Ring,
    name: &ShardName,
    weight: Weight,
    servers: &[HostPort],
) -> Result<u32> {
    let taken: Vec<(String, u16, String)> = db.exec(
        "checking the servers are not registered",
        &format!(
            "SELECT ss.host, ss.port, s.name FROM shard_servers ss JOIN shards s USING (shard_id)
             WHERE (ss.host, ss.port) IN ({})",
            vec!["(?, ?)"; servers.len()].join(",")
        ),
        servers
            .iter()
            .flat_map(|s| [mysql::Value::from(&s.host), mysql::Value::from(s.port)])
            .collect::<Vec<_>>(),
    )?;
    if let Some((host, port, shard)) = taken.first() {
        return Err(Error::Conflict(format!(
            "server {} is already registered to shard `{shard}`",
            HostPort::new(host.clone(), *port)
        )));
    }
    let result = db.write("registering the shard", |tx| {
        tx.exec_drop(
            "INSERT INTO shards (name, weight, state, created_at) VALUES (?, ?, 'active', UTC_TIMESTAMP(6))",
            (name.as_str(), weight.get()),
        )?;
        let id = tx.last_insert_id().unwrap_or_default() as u32;
        for (i, s) in servers.iter().enumerate() {
            let half = if i % 2 == 0 { Half::A } else { Half::B };
            tx.exec_drop(
                "INSERT INTO shard_servers (shard_id, host, port, half, status) VALUES (?, ?, ?, ?, 'online')",
                (id, &s.host, s.port, half.as_str()),
            )?;
        }
        audit::record(
            tx,
            "shard.add",
            name.as_str(),
            json!({ "weight": weight.get(), "servers": servers.iter().map(|s| s.to_string()).collect::<Vec<_>>() }),
        )?;
        Ok((id, Changed::shards(vec![id])))
    });
    match result {
        Err(e) if e.is(DbErrorKind::Duplicate) => Err(Error::Conflict(format!(
            "a shard named `{name}` already exists (or one of its servers is registered)"
        ))),
        other => other,
    }
}

/// Changes a shard's weight. Returns the old weight, or None when unchanged.
pub fn set_weight(db: &mut Ring, name: &ShardName, weight: Weight) -> Result<Option<f64>> {
    let shard = shard(db, name)?;
    if shard.weight == weight.get() {
        return Ok(None);
    }
    db.write("changing the shard weight", |tx| {
        tx.exec_drop(
            "UPDATE shards SET weight = ? WHERE shard_id = ?",
            (weight.get(), shard.id),
        )?;
        audit::record(
            tx,
            "shard.set-weight",
            name.as_str(),
            json!({ "from": shard.weight, "to": weight.get() }),
        )?;
        Ok(((), Changed::shards(vec![shard.id])))
    })?;
    Ok(Some(shard.weight))
}

/// Changes a shard's state. Returns the old state, or None when unchanged.
pub fn set_state(db: &mut Ring, name: &ShardName, state: ShardState) -> Result<Option<ShardState>> {
    let shard = shard(db, name)?;
    if shard.state == state {
        return Ok(None);
    }
    db.write("changing the shard state", |tx| {
        tx.exec_drop(
            "UPDATE shards SET state = ? WHERE shard_id = ?",
            (state.as_str(), shard.id),
        )?;
        audit::record(
            tx,
            "shard.set-state",
            name.as_str(),
            json!({ "from": shard.state, "to": state }),
        )?;
        Ok(((), Changed::shards(vec![shard.id])))
    })?;
    Ok(Some(shard.state))
}

/// Sets the capacity of `servers` (all the shard's when empty) in one audited transaction.
pub fn set_capacity(
    db: &mut Ring,
    shard: &Shard,
    servers: &[HostPort],
    capacity_qps: Option<f64>,
) -> Result<()> {
    let targets: Vec<HostPort> = if servers.is_empty() {
        shard.servers.iter().map(|s| s.addr.clone()).collect()
    } else {
        servers.to_vec()
    };
    db.write("changing server capacity", |tx| {
        for t in &targets {
            tx.exec_drop(
                "UPDATE shard_servers SET capacity_qps = ? WHERE shard_id = ? AND host = ? AND port = ?",
                (capacity_qps, shard.id, &t.host, t.port),
            )?;
        }
        audit::record(
            tx,
            "shard.set-capacity",
            &shard.name,
            json!({ "capacity_qps": capacity_qps, "servers": targets.iter().map(|t| t.to_string()).collect::<Vec<_>>() }),
        )?;
        Ok(((), Changed::shards(vec![shard.id])))
    })
}

/// Removes an empty shard. The users index range is share-locked in the same transaction, so
/// no concurrent assignment can slip a user onto the shard while it goes.
pub fn remove_shard(db: &mut Ring, name: &ShardName) -> Result<()> {
    let shard = shard(db, name)?;
    let removed = db.write("removing the shard", |tx| {
        // The shard's row is locked first: a flip into it reads it in share mode in its own
        // transaction, so the two cannot interleave.
        // Read, not dropped: a lock wait that runs out arrives after the result's columns,
        // and a dropped result would swallow it.
        tx.exec_first::<u32, _, _>(
            "SELECT shard_id FROM shards WHERE shard_id = ? FOR UPDATE",
            (shard.id,),
        )?;
        let moving: Vec<(u64, u64, String)> = tx.exec(
            "SELECT migration_id, user_id, state FROM migrations
             WHERE (from_shard = ? OR to_shard = ?) AND state NOT IN ('done', 'rolled_back')
             ORDER BY migration_id LIMIT 5",
            (shard.id, shard.id),
        )?;
        if let Some((id, user, state)) = moving.first() {
            return Ok((Err(Error::Refused(format!(
                "shard `{name}` takes part in {} unfinished migration(s), #{id} of user {user} ({state}) first; \
                 nothing was changed: let them finish or run `shardctl migrate resume --all`",
                moving.len()
            ))), Changed::default()));
        }
        let holds: Option<u8> = tx.exec_first(
            "SELECT 1 FROM users WHERE shard_id = ? LIMIT 1 LOCK IN SHARE MODE",
            (shard.id,),
        )?;
        if holds.is_some() {
            return Ok((Err(Error::Conflict(format!(
                "shard `{name}` still holds users: move them first (set it retiring and rebalance)"
            ))), Changed::default()));
        }
        tx.exec_drop("DELETE FROM shard_servers WHERE shard_id = ?", (shard.id,))?;
        tx.exec_drop("DELETE FROM shards WHERE shard_id = ?", (shard.id,))?;
        audit::record(
            tx,
            "shard.remove",
            name.as_str(),
            json!({ "weight": shard.weight }),
        )?;
        Ok((Ok(()), Changed::shards(vec![shard.id])))
    })?;
    removed
}

/// Users the directory places on a shard id that is not registered: unreachable rows that
/// only hand-written SQL could find. (count, the first few ids)
pub fn users_on_unknown_shards(db: &mut Db) -> Result<(u64, Vec<u64>)> {
    let ids: Vec<u64> = db.exec(
        "looking for users on unknown shards",
        "SELECT u.user_id FROM users u LEFT JOIN shards s USING (shard_id)
         WHERE s.shard_id IS NULL ORDER BY u.user_id LIMIT 10",
        (),
    )?;
    if ids.is_empty() {
        return Ok((0, ids));
    }
    let n: Option<u64> = db.exec_first(
        "counting users on unknown shards",
        "SELECT COUNT(*) FROM users u LEFT JOIN shards s USING (shard_id) WHERE s.shard_id IS NULL",
        (),
    )?;
    Ok((n.unwrap_or(0), ids))
}

/// Where a user lives, or None for a user never assigned.
pub fn user(db: &mut Db, user_id: u64) -> Result<Option<Placed>> {
    let row: Option<(u32, String)> = db.exec_first(
        "locating the user",
        "SELECT shard_id, state FROM users WHERE user_id = ?",
        (user_id,),
    )?;
    row.map(|(s, st)| Ok((s, st.parse().map_err(Error::inconsistent)?)))
        .transpose()
}

/// Where each of `users` lives now: (shard id, state); users never assigned are absent.
pub fn placements(db: &mut Db, users: &[u64]) -> Result<HashMap<u64, Placed>> {
    let mut out = HashMap::with_capacity(users.len());
    for chunk in users.chunks(10_000) {
        let rows: Vec<(u64, u32, String)> = db.exec(
            "locating the users",
            &format!(
                "SELECT user_id, shard_id, state FROM users WHERE user_id IN ({})",
                vec!["?"; chunk.len()].join(", ")
            ),
            chunk
                .iter()
                .map(|&u| mysql::Value::from(u))
                .collect::<Vec<_>>(),
        )?;
        for (u, s, st) in rows {
            out.insert(u, (s, st.parse().map_err(Error::inconsistent)?));
        }
    }
    Ok(out)
}

/// Inserts new users in one multi-row statement inside `tx`. A duplicate key fails the whole
/// statement (InnoDB statements are atomic), which the caller handles.
pub(super) fn insert_users(tx: &mut impl Queryable, rows: &[(u64, u32)]) -> mysql::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO users (user_id, shard_id) VALUES {}",
        crate::db::row_placeholders(rows.len(), 2)
    );
    let params: Vec<mysql::Value> = rows
        .iter()
        .flat_map(|(u, s)| [mysql::Value::from(*u), mysql::Value::from(*s)])
        .collect();
    tx.exec_drop(sql, params)
}

/// The users among `ids` that already exist, with their shard; locks those keys and the gaps.
pub fn existing_users(tx: &mut impl Queryable, ids: &[u64]) -> mysql::Result<Vec<(u64, u32)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    tx.exec(
        format!(
            "SELECT user_id, shard_id FROM users WHERE user_id IN ({}) FOR UPDATE",
            vec!["?"; ids.len()].join(",")
        ),
        ids.to_vec(),
    )
}

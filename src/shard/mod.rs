//! Talking to shard servers: connections, the first server that answers, the routing rule,
//! replication state, application sessions and the fence. Every command and engine that reaches a shard server goes
//! through here.

pub mod conns;
pub mod fence;
pub mod guard;
pub mod handover;
pub mod home;
pub mod probe;
pub mod registry;
pub mod replica;
pub mod routing;
pub mod sessions;

use std::time::Duration;

use crate::config::{Config, NetOptions};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::ring::directory::Server;
use crate::types::HostPort;

/// A session in the shard database, in UTC.
pub fn connect(cfg: &Config, addr: &HostPort) -> Result<Db> {
    let mut db = Db::connect(
        addr,
        &cfg.shards.login,
        Some(&cfg.shards.database),
        &cfg.net,
    )?;
    // TIMESTAMPs are read and written as text in the session's zone: one zone for every
    // session, so servers in different zones (or a DST change) cannot shift one.
    db.query_drop("preparing the session", "SET time_zone = '+00:00'")?;
    Ok(db)
}

/// Runs `f` on the first of `servers` (a shard's, in order) that answers; otherwise one error
/// naming the shard and every server's failure. A server that answers with an error has
/// answered: that error is the result (the next server would only say the same).
pub fn first_answering<T>(
    shard: &str,
    servers: impl IntoIterator<Item = HostPort>,
    mut f: impl FnMut(&HostPort) -> Result<T>,
) -> Result<T> {
    let mut failures = Vec::new();
    for addr in servers {
        match f(&addr) {
            Err(e @ Error::Unreachable(_)) => failures.push(e.to_string()),
            answered => return answered,
        }
    }
    Err(Error::Unreachable(format!(
        "no server of shard `{shard}` answers: {}",
        if failures.is_empty() {
            "none is online".into()
        } else {
            failures.join("; ")
        }
    )))
}

/// A session on a shard server without selecting the database (replication state, sessions,
/// GET_LOCK, or checking the database exists), with `net`'s timeouts.
pub fn connect_server(cfg: &Config, addr: &HostPort, net: &NetOptions) -> Result<Db> {
    Db::connect(addr, &cfg.shards.login, None, net)
}

/// The routing rule followed as an application would: the user's first candidate server that
/// accepts a login (each tried for at most 2 s), and why each one before it was skipped.
pub fn first_accepting(
    cfg: &Config,
    user: u64,
    servers: &[Server],
) -> (Option<HostPort>, Vec<(HostPort, String)>) {
    let net = NetOptions {
        connect_timeout: cfg.net.connect_timeout.min(Duration::from_secs(2)),
        ..cfg.net.clone()
    };
    let mut skipped = Vec::new();
    for s in routing::candidates(user, servers) {
        match connect_server(cfg, &s.addr, &net) {
            Ok(_) => return (Some(s.addr.clone()), skipped),
            Err(e) => skipped.push((s.addr.clone(), e.to_string())),
        }
    }
    (None, skipped)
}

/// Checks a prospective shard server answers and holds the shard database and every per-user
/// table with its owner column.
pub fn check_schema(cfg: &Config, addr: &HostPort) -> Result<()> {
    let mut db = connect(cfg, addr)?;
    for t in &cfg.shards.tables {
        let found: Option<u8> = db.exec_first(
            "checking the per-user tables",
            "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
            (cfg.shards.database.as_str(), t.name.as_str(), t.owner_column.as_str()),
        )?;
        if found.is_none() {
            return Err(Error::Refused(format!(
                "{addr} has no table `{}`.`{}` with column `{}` (create the application schema first, or pass --no-check)",
                cfg.shards.database, t.name, t.owner_column
            )));
        }
    }
    Ok(())
}

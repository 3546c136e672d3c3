//! Globally unique IDs from ticket servers, the Flickr way: `REPLACE INTO ticketsNN (stub)
//! VALUES ('a')` bumps a one-row table's auto-increment and `LAST_INSERT_ID()` (returned in the
//! OK packet, so one round trip) is the ID. Servers use the same increment and distinct offsets,
//! so they never hand out the same number; calls go round-robin and fall over to the next server
//! when one does not answer.

use mysql::prelude::Queryable;

use crate::config::{Config, TicketServer};
use crate::db::Db;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Bits {
    #[value(name = "32")]
    B32,
    #[value(name = "64")]
    B64,
}

impl Bits {
    fn table(self) -> &'static str {
        match self {
            Bits::B32 => "tickets32",
            Bits::B64 => "tickets64",
        }
    }
}

/// Connects to one ticket server, applying its per-session increment and offset if configured.
pub fn connect(cfg: &Config, t: &TicketServer) -> Result<Db> {
    let mut db = Db::connect(&t.server, &cfg.ring.login, Some(&t.database), &cfg.net)?;
    if let (Some(inc), Some(off)) = (t.auto_increment_increment, t.auto_increment_offset) {
        // Both are validated integers from the config, not user text.
        db.query_drop(
            "setting the ticket increment",
            &format!("SET SESSION auto_increment_increment = {inc}, auto_increment_offset = {off}"),
        )?;
    }
    Ok(db)
}

/// The effective (increment, offset) on a ticket connection.
pub fn increment_and_offset(db: &mut Db) -> Result<(u64, u64)> {
    Ok(db
        .exec_first(
            "reading the auto-increment settings",
            "SELECT @@session.auto_increment_increment, @@session.auto_increment_offset",
            (),
        )?
        .unwrap_or((1, 1)))
}

/// `n` new IDs, round-robin over the ticket servers starting at `start`.
pub fn next_ids(cfg: &Config, bits: Bits, n: u64, start: usize) -> Result<Vec<u64>> {
    if cfg.tickets.is_empty() {
        return Err(Error::Config(format!(
            "config {} names no [[tickets]] servers",
            cfg.path.display()
        )));
    }
    let count = cfg.tickets.len();
    let mut conns: Vec<Option<Db>> = (0..count).map(|_| None).collect();
    let mut dead = vec![false; count];
    let mut failures: Vec<String> = Vec::new();
    let sql = format!("REPLACE INTO {} (stub) VALUES ('a')", bits.table());
    let mut ids = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let mut got = None;
        for k in 0..count {
            let idx = (start + i + k) % count;
            if dead[idx] {
                continue;
            }
            let attempt = (|| {
                if conns[idx].is_none() {
                    conns[idx] = Some(connect(cfg, &cfg.tickets[idx])?);
                }
                let db = conns[idx].as_mut().expect("connected above");
                db.run("taking a ticket", |c| {
                    c.query_drop(&sql)?;
                    Ok(c.last_insert_id())
                })
            })();
            match attempt {
                Ok(id) if id > 0 => {
                    got = Some(id);
                    break;
                }
                Ok(_) => {
                    failures.push(format!("{}: no insert id", cfg.tickets[idx].server));
                    dead[idx] = true;
                }
                Err(e) => {
                    failures.push(e.to_string());
                    dead[idx] = true;
                    conns[idx] = None;
                }
            }
        }
        match got {
            Some(id) => ids.push(id),
            None => {
                return Err(Error::Unreachable(format!(
                    "no ticket server answered: {}",
                    failures.join("; ")
                )))
            }
        }
    }
    Ok(ids)
}

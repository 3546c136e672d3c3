//! One probe of a shard server, for every command that asks a server how it is: its
//! replication, its application sessions, its query counter and the home guard's rules it
//! holds. Drain, restore, `maintenance status`, the roll, `top` and `doctor` all read a server
//! through here, on a session whose login and statements are bounded by one rule.

use std::time::{Duration, Instant};

use crate::config::{Config, NetOptions};
use crate::db::Db;
use crate::error::Result;
use crate::shard::home::{self, View};
use crate::shard::replica::{self, ReplicaStatus};
use crate::shard::sessions::{self, Session};
use crate::types::HostPort;

/// What one server reported.
#[derive(Clone, Debug)]
pub struct Probe {
    /// None when it replicates from nobody.
    pub replica: Option<ReplicaStatus>,
    /// Application sessions open on it now.
    pub sessions: Vec<Session>,
    /// Its `QUESTIONS` counter: two probes give the query rate between them.
    pub questions: u64,
    /// The home guard's rules it holds (None: it has no home guard table).
    pub home: Option<View>,
}

impl Probe {
    /// Queries per second between an earlier probe (`then`, taken at `at`) and this one.
    pub fn rate_since(&self, then: &Probe, at: Instant, now: Instant) -> Option<f64> {
        let secs = now.duration_since(at).as_secs_f64();
        (secs > 0.0).then(|| self.questions.saturating_sub(then.questions) as f64 / secs)
    }
}

/// How long a probe's login and each of its statements may take: a frozen server costs this
/// much, never the connection's full read timeout.
pub fn bound(cfg: &Config) -> Duration {
    cfg.net
        .connect_timeout
        .clamp(Duration::from_secs(2), Duration::from_secs(5))
}

/// A session on `addr` whose login and every statement are bounded by `io` (the login never
/// by more than the configured connect timeout): a wait bounded by an operator's deadline
/// stays within it even when it must log in again to a frozen server. No default database, so
/// the session is never counted as application work.
pub fn session(cfg: &Config, addr: &HostPort, io: Duration) -> Result<Db> {
    let net = NetOptions {
        connect_timeout: cfg.net.connect_timeout.min(io),
        ..cfg.net.clone()
    };
    let mut db = super::connect_server(cfg, addr, &net)?;
    db.set_timeouts(io, io)?;
    Ok(db)
}

/// Probes the server of `db`.
pub fn probe(cfg: &Config, db: &mut Db) -> Result<Probe> {
    let replica = replica::status(db)?;
    let sessions = sessions::list(db, &cfg.shards.database)?;
    let questions = questions(db)?;
    Ok(Probe {
        replica,
        sessions,
        questions,
        // Informational: a server without the home guard's table simply shows none.
        home: home::read(cfg, db).ok().flatten(),
    })
}

/// Probes `addr` on a session of its own, bounded by `bound`.
pub fn probe_at(cfg: &Config, addr: &HostPort) -> Result<Probe> {
    probe(cfg, &mut session(cfg, addr, bound(cfg))?)
}

/// The server's query counter.
pub fn questions(db: &mut Db) -> Result<u64> {
    let v: Option<String> = db.exec_first(
        "reading the query counter",
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'QUESTIONS'",
        (),
    )?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

//! The global ring: the directory (shards, servers, users), ticket IDs, locks, the migration
//! journal and the audit log, all in one database on the ring's servers.

pub mod assign;
pub mod audit;
pub mod directory;
pub mod fences;
pub mod placement;
pub mod schema;
pub mod session;
pub mod tickets;

pub use session::{Changed, Changes, Ring};

use crate::config::Config;
use crate::db::Db;
use crate::error::{DbErrorKind, Error, Result};

/// Connects to the first ring server that answers, in the configured order.
///
/// A refused login is a configuration error and is reported as such even when a later server
/// is down; otherwise the error lists every server tried.
pub fn connect(cfg: &Config, with_database: bool) -> Result<Db> {
    let database = with_database.then_some(&cfg.ring.database);
    let mut failures = Vec::new();
    for server in &cfg.ring.servers {
        match Db::connect(server, &cfg.ring.login, database, &cfg.net) {
            Ok(db) => return Ok(db),
            Err(e) if e.is(DbErrorKind::UnknownDatabase) => {
                return Err(Error::Config(format!(
                    "{e}: the ring schema does not exist yet; run `shardctl init`"
                )))
            }
            Err(e) if e.exit_code() == crate::exit_codes::USAGE => return Err(e),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(Error::Unreachable(format!(
        "no global ring server answered: {}",
        failures.join("; ")
    )))
}

/// Connects and checks the schema is the version this build expects (one query: commands that
/// run from cron pay for every round trip).
pub fn open(cfg: &Config) -> Result<Db> {
    let mut db = connect(cfg, true)?;
    let version: Result<Option<u32>> = db.exec_first(
        "reading the schema version",
        "SELECT version FROM schema_version WHERE id = 1",
        (),
    );
    match version {
        Ok(Some(v)) if v == schema::VERSION => Ok(db),
        Ok(Some(v)) if v < schema::VERSION => Err(Error::Config(format!(
            "the ring schema is version {v}, this shardctl needs {}: run `shardctl init` to upgrade",
            schema::VERSION
        ))),
        Ok(Some(v)) => Err(Error::Config(format!(
            "the ring schema is version {v}, newer than this shardctl ({}): upgrade shardctl",
            schema::VERSION
        ))),
        Ok(None) | Err(Error::Database(_)) => Err(Error::Config(format!(
            "database `{}` on {} holds no shardctl schema: run `shardctl init`",
            cfg.ring.database, db.server
        ))),
        Err(e) => Err(e),
    }
}

/// What `init` did.
#[derive(Debug, serde::Serialize)]
pub struct InitOutcome {
    pub server: String,
    pub database: String,
    pub from_version: Option<u32>,
    pub version: u32,
    pub ticket_servers: Vec<String>,
    pub dry_run: bool,
}

/// Creates or upgrades the ring schema and the ticket tables; idempotent. With `dry_run`, only
/// reads the recorded version.
pub fn initialize(cfg: &Config, dry_run: bool) -> Result<InitOutcome> {
    let mut db = connect(cfg, false)?;
    if dry_run {
        let from_version = schema::recorded_version(&mut db, &cfg.ring.database)?;
        return Ok(InitOutcome {
            server: db.server.to_string(),
            database: cfg.ring.database.to_string(),
            version: schema::VERSION.max(from_version.unwrap_or(0)),
            from_version,
            ticket_servers: cfg
                .tickets
                .iter()
                .map(|t| format!("{}/{}", t.server, t.database))
                .collect(),
            dry_run,
        });
    }
    let (from_version, version) = schema::upgrade(&mut db, &cfg.ring.database)?;
    let mut ticket_servers = Vec::new();
    for t in &cfg.tickets {
        let mut tdb = Db::connect(&t.server, &cfg.ring.login, None, &cfg.net)?;
        schema::create_ticket_tables(&mut tdb, &t.database)?;
        ticket_servers.push(format!("{}/{}", t.server, t.database));
    }
    if from_version != Some(version) {
        db.run("auditing", |c| {
            audit::record(
                c,
                "init",
                cfg.ring.database.as_str(),
                serde_json::json!({ "from_version": from_version, "version": version }),
            )
        })?;
    }
    Ok(InitOutcome {
        server: db.server.to_string(),
        database: cfg.ring.database.to_string(),
        from_version,
        version,
        ticket_servers,
        dry_run,
    })
}

/// The highest fencing token any move has used (0: none): the shards' fences hold no higher,
/// since every move journals its token before it writes.
pub fn highest_token(ring: &mut Db) -> Result<u64> {
    let t: Option<Option<u64>> = ring.exec_first(
        "reading the highest token used",
        "SELECT MAX(token) FROM migrations",
        (),
    )?;
    Ok(t.flatten().unwrap_or(0))
}

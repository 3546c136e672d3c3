//! `doctor`: what every server must offer shardctl, checked. The rules (what a check
//! concludes, which privileges a role needs) are pure, in `rules`; `grants` reads what a login
//! has; this module runs every check against the servers.

pub mod grants;
mod locks;
pub mod rules;

use std::collections::HashSet;

use crate::config::Config;
use crate::db::Db;
use crate::error::Result;
use crate::parallel;
use crate::ring::{directory, schema, tickets};
use crate::shard::home::{self, Rule};
use crate::shard::probe;
use crate::types::HostPort;
use rules::{Check, Flavor, Need};

/// Whether the login has what shardctl needs on this server; if not, the fix is the exact
/// GRANT statements to run (as an administrator).
fn privilege_check(
    db: &mut Db,
    target: &str,
    check: &str,
    database: &str,
    needs: fn(Flavor) -> Vec<Need>,
) -> Check {
    match grants::gap(db, database, needs) {
        Ok(None) => Check::pass(target, check, "sufficient"),
        Ok(Some(gap)) => Check::fail(target, check, gap.describe(), gap.statements.join(" ")),
        Err(e) => Check::fail(
            target,
            check,
            e.to_string(),
            "let the login run SHOW GRANTS",
        ),
    }
}

fn ring_checks(cfg: &Config, out: &mut Vec<Check>) -> Option<Db> {
    let mut first = None;
    for server in &cfg.ring.servers {
        let target = server.to_string();
        let mut db = match Db::connect(server, &cfg.ring.login, None, &cfg.net) {
            Ok(db) => db,
            Err(e) => {
                out.push(Check::fail(
                    &target,
                    "ring reachable",
                    e.to_string(),
                    "start the server or fix [ring] servers / credentials",
                ));
                continue;
            }
        };
        out.push(Check::pass(
            &target,
            "ring reachable",
            db.version().unwrap_or_default(),
        ));
        out.push(privilege_check(
            &mut db,
            &target,
            "ring privileges",
            cfg.ring.database.as_str(),
            rules::ring_needs,
        ));
        match schema::recorded_version(&mut db, &cfg.ring.database) {
            Ok(Some(v)) if v == schema::VERSION => {
                out.push(Check::pass(&target, "schema version", format!("{v}")))
            }
            Ok(Some(v)) => out.push(Check::fail(
                &target,
                "schema version",
                format!("{v}, expected {}", schema::VERSION),
                "run `shardctl init`",
            )),
            Ok(None) => out.push(Check::fail(
                &target,
                "schema version",
                format!("no schema in `{}`", cfg.ring.database),
                "run `shardctl init`",
            )),
            Err(e) => out.push(Check::fail(
                &target,
                "schema version",
                e.to_string(),
                "check the ring user's privileges",
            )),
        }
        if first.is_none() {
            first = Some(db);
        }
    }
    first
}

fn ticket_checks(cfg: &Config, out: &mut Vec<Check>) {
    let mut settings = Vec::new();
    // Every ticket server at once: a frozen one costs one login's time, not one per server.
    let answers = parallel::each(&cfg.tickets, |t| {
        tickets::connect(cfg, t).and_then(|mut db| {
            let io = tickets::increment_and_offset(&mut db)?;
            let tables: Vec<String> = db.exec("reading the ticket tables",
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN ('tickets32','tickets64')",
                (t.database.as_str(),))?;
            Ok((io, tables.len()))
        })
    });
    for (t, answer) in cfg.tickets.iter().zip(answers) {
        let target = format!("{}/{}", t.server, t.database);
        match answer {
            Ok(((inc, off), tables)) => {
                out.push(Check::pass(
                    &target,
                    "tickets reachable",
                    format!("auto_increment_increment={inc} auto_increment_offset={off}"),
                ));
                if tables < 2 {
                    out.push(Check::fail(
                        &target,
                        "ticket tables",
                        "tickets32/tickets64 missing",
                        "run `shardctl init`",
                    ));
                }
                settings.push((target, inc, off));
            }
            Err(e) => out.push(Check::fail(
                &target,
                "tickets reachable",
                e.to_string(),
                "start the ticket server or fix [[tickets]]",
            )),
        }
    }
    for p in rules::ticket_problems(&settings) {
        out.push(Check::fail(
            "tickets",
            "ticket offsets",
            p,
            "give the ticket servers one increment >= their count and distinct offsets",
        ));
    }
}

/// Whether the server's home guard takes the writes the ring routes to it, and no others. With
/// the guard off, says what drains then rely on (a pass: it is a choice, not a fault).
fn home_check(cfg: &Config, db: &mut Db, target: &str, expected: &Rule) -> Check {
    const CHECK: &str = "home guard";
    let view = home::read(cfg, db);
    if !home::enabled(cfg) {
        return match view {
            Ok(Some(v)) if v != home::View::default() => Check::fail(
                target,
                CHECK,
                format!("[shards] home_guard is off but the server still takes writes only for {}", v.describe()),
                "run `shardctl guard install` (it clears the rules while home_guard is off), or turn home_guard on",
            ),
            _ => Check::pass(
                target,
                CHECK,
                "off: drains, restores and rolls rely on every application following the ring; a session still writing on the old server while the new one takes the same user loses updates (set [shards] home_guard = true and run `shardctl guard install`)",
            ),
        };
    }
    let triggers = crate::shard::guard::inspect(cfg, db);
    match (triggers, view) {
        (Ok(g), _) if !g.installed => Check::fail(
            target,
            CHECK,
            format!("missing {}", g.missing.join(", ")),
            "run `shardctl guard install`",
        ),
        (Ok(_), Ok(Some(v))) if v.settled_on(expected) => Check::pass(
            target,
            CHECK,
            format!("takes writes for {}, as the ring routes them", expected.describe()),
        ),
        (Ok(_), Ok(Some(v))) => Check::fail(
            target,
            CHECK,
            format!(
                "takes writes for {} but the ring routes it {}",
                v.describe(),
                expected.describe()
            ),
            "a hand-over was interrupted: run the drain or restore again (`shardctl maintenance restore` finishes it for online servers), or `shardctl guard install`",
        ),
        (Ok(_), Ok(None)) => Check::fail(
            target,
            CHECK,
            "its rules are missing",
            "run `shardctl guard install`",
        ),
        (Err(e), _) | (_, Err(e)) => Check::fail(
            target,
            CHECK,
            e.to_string(),
            "grant SELECT on the shard database and information_schema",
        ),
    }
}

/// Every check of one shard server.
fn shard_server_checks(
    cfg: &Config,
    shard: &str,
    addr: &HostPort,
    paired: bool,
    writes_for: &Rule,
    max_lag: u64,
) -> Vec<Check> {
    let target = format!("{addr} ({shard})");
    let mut out = Vec::new();
    let mut db = match crate::shard::connect_server(cfg, addr, &cfg.net) {
        Ok(db) => db,
        Err(e) => {
            out.push(Check::fail(
                &target,
                "reachable",
                e.to_string(),
                "start the server, or drain it with `shardctl maintenance drain`",
            ));
            return out;
        }
    };
    out.push(Check::pass(
        &target,
        "reachable",
        db.version().unwrap_or_default(),
    ));
    out.push(tables_check(cfg, &mut db, &target));
    out.push(privilege_check(
        &mut db,
        &target,
        "privileges",
        cfg.shards.database.as_str(),
        rules::shard_needs,
    ));
    // The privileges online moves need are in the privileges check above.
    out.push(online_moves_check(cfg, &mut db, &target, paired));
    if crate::shard::guard::enabled(cfg) {
        out.push(write_guard_check(cfg, &mut db, &target));
    }
    out.push(home_check(cfg, &mut db, &target, writes_for));
    out.push(replication_check(cfg, &mut db, &target, paired, max_lag));
    out
}

/// Whether the shard database has every per-user table with its owner column: moves find a
/// user's rows by them, so the config must match the schema.
fn tables_check(cfg: &Config, db: &mut Db, target: &str) -> Check {
    let db_name = cfg.shards.database.as_str();
    let tables: Result<HashSet<(String, String)>> = db
        .exec(
            "reading the shard tables",
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?",
            (db_name,),
        )
        .map(|v: Vec<(String, String)>| v.into_iter().collect());
    match tables {
        Ok(found) => {
            let missing: Vec<String> = cfg
                .shards
                .tables
                .iter()
                .filter(|t| !found.contains(&(t.name.to_string(), t.owner_column.to_string())))
                .map(|t| format!("{}.{}", t.name, t.owner_column))
                .collect();
            if missing.is_empty() {
                Check::pass(
                    target,
                    "tables",
                    format!("{} per-user tables in `{db_name}`", cfg.shards.tables.len()),
                )
            } else {
                Check::fail(
                    target,
                    "tables",
                    format!("missing {}", missing.join(", ")),
                    format!("create the application schema in `{db_name}`"),
                )
            }
        }
        Err(e) => Check::fail(
            target,
            "tables",
            e.to_string(),
            "grant SELECT on the shard database",
        ),
    }
}

/// Whether a move can follow the server's binary log: where it cannot, `--mode auto` moves
/// offline, and the operator should know why.
fn online_moves_check(cfg: &Config, db: &mut Db, target: &str, paired: bool) -> Check {
    match crate::migrate::online::unmet_settings(cfg, db, &[], paired) {
        Ok(unmet) if unmet.is_empty() => Check::pass(
            target,
            "online moves",
            "its binary log can be followed (ROW, FULL images, uncompressed, a free server_id, its peer's writes logged)",
        ),
        Ok(unmet) => Check::fail(
            target,
            "online moves",
            format!("{}; `--mode auto` moves offline until this is fixed", unmet.join("; ")),
            "set log_bin=ON, binlog_format=ROW, binlog_row_image=FULL, log_bin_compress=OFF and (for a server with a peer) log_slave_updates=ON, and give shardctl a [migrate] server_id no server uses; applications must not override binlog_format or binlog_row_image in their sessions while a move follows the log",
        ),
        Err(e) => Check::fail(
            target,
            "online moves",
            e.to_string(),
            "grant the privileges the privileges check names",
        ),
    }
}

/// Whether the write guard's triggers are all there: with `write_guard` on, moves rely on
/// them to keep a user's writes off the rows being copied.
fn write_guard_check(cfg: &Config, db: &mut Db, target: &str) -> Check {
    match crate::shard::guard::inspect(cfg, db) {
        Ok(g) if g.installed => Check::pass(
            target,
            "write guard",
            format!("installed; {} users guarded", g.guarded),
        ),
        Ok(g) => Check::fail(
            target,
            "write guard",
            format!("missing {}", g.missing.join(", ")),
            "run `shardctl guard install`",
        ),
        Err(e) => Check::fail(
            target,
            "write guard",
            e.to_string(),
            "grant SELECT on information_schema",
        ),
    }
}

/// Whether the server replicates as its shard expects: from its peer, within `max_lag`, when
/// paired; a single server is expected not to.
fn replication_check(cfg: &Config, db: &mut Db, target: &str, paired: bool, max_lag: u64) -> Check {
    match probe::probe(cfg, db).map(|p| p.replica) {
        Ok(Some(s)) => match s.problem(Some(max_lag)) {
            None => Check::pass(
                target,
                "replication",
                format!("from {}, lag {}s", s.source, s.lag_seconds.unwrap_or(0)),
            ),
            Some(p) => Check::fail(
                target,
                "replication",
                p,
                "fix and START SLAVE on this server",
            ),
        },
        Ok(None) if paired => Check::fail(
            target,
            "replication",
            "not replicating from its peer",
            "CHANGE MASTER TO its peer and START SLAVE",
        ),
        Ok(None) => Check::pass(target, "replication", "single server; none expected"),
        Err(e) => Check::fail(
            target,
            "replication",
            e.to_string(),
            "grant REPLICATION CLIENT / SLAVE MONITOR",
        ),
    }
}

/// Every check of the federation `cfg` describes: the ring, the ticket servers, and every
/// server of every registered shard (in parallel).
pub fn checks(cfg: &Config, max_lag: u64) -> Vec<Check> {
    // The ring, the ticket servers and the lock ensemble at once: a frozen server costs one
    // bounded wait, not one per source.
    let (mut checks, ring_db, tickets, ensemble) = std::thread::scope(|s| {
        let tickets = s.spawn(|| {
            let mut out = Vec::new();
            ticket_checks(cfg, &mut out);
            out
        });
        let ensemble = s.spawn(|| {
            let mut out = Vec::new();
            locks::ensemble(cfg, &mut out);
            out
        });
        let mut ring = Vec::new();
        let ring_db = ring_checks(cfg, &mut ring);
        let joined = |h: std::thread::ScopedJoinHandle<'_, Vec<Check>>| {
            h.join().unwrap_or_else(|_| {
                vec![Check::fail(
                    "doctor",
                    "checks",
                    "a check panicked",
                    "report this",
                )]
            })
        };
        (ring, ring_db, joined(tickets), joined(ensemble))
    });
    checks.extend(tickets);
    checks.extend(ensemble);
    if let Some(mut db) = ring_db {
        let use_ring = format!("USE {}", cfg.ring.database.quoted());
        match db
            .query_drop("selecting the ring database", &use_ring)
            .and_then(|_| directory::shards(&mut db))
        {
            Ok(shards) => {
                locks::tokens(cfg, &mut db, &mut checks);
                checks.push(match directory::users_on_unknown_shards(&mut db) {
                    Ok((0, _)) => Check::pass("ring", "users' shards", "every user's shard is registered"),
                    Ok((n, ids)) => Check::fail(
                        "ring",
                        "users' shards",
                        format!(
                            "{n} users are placed on unregistered shards (first: {})",
                            ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
                        ),
                        "register the shard again with `shardctl shard add` (same servers) so the users can be moved",
                    ),
                    Err(e) => Check::fail("ring", "users' shards", e.to_string(), "check the ring user's privileges"),
                });
                if shards.is_empty() {
                    checks.push(Check::fail(
                        "ring",
                        "shards",
                        "no shards registered",
                        "register one with `shardctl shard add`",
                    ));
                }
                let jobs: Vec<(String, HostPort, bool, Rule)> = shards
                    .iter()
                    .flat_map(|s| {
                        let writers = home::writers(&s.servers);
                        s.servers.iter().map(move |v| {
                            let rule = Rule::of(&v.addr, &writers);
                            (
                                s.name.to_string(),
                                v.addr.clone(),
                                s.servers.len() > 1,
                                rule,
                            )
                        })
                    })
                    .collect();
                let results = parallel::each(&jobs, |(shard, addr, paired, rule)| {
                    shard_server_checks(cfg, shard, addr, *paired, rule, max_lag)
                });
                checks.extend(results.into_iter().flatten());
            }
            Err(e) => checks.push(Check::fail(
                "ring",
                "shards",
                e.to_string(),
                "run `shardctl init`",
            )),
        }
    }
    checks
}

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use serde::Serialize;

use crate::cli::{UserAssignArgs, UserCommand, UserLocateArgs};
use crate::commands::Ctx;
use crate::config::{Config, NetOptions};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::output::{table, Outcome, Report};
use crate::ring::directory::{self, Server};
use crate::ring::{self, assign};
use crate::routing;

pub fn run(ctx: &Ctx, cmd: UserCommand) -> Result<Outcome> {
    match cmd {
        UserCommand::Assign(args) => assign_users(ctx, &args),
        UserCommand::Locate(args) => locate(ctx, &args),
    }
}

#[derive(Serialize)]
struct Placed {
    user: u64,
    shard: String,
}

#[derive(Serialize)]
struct AssignReport {
    assigned: Vec<Placed>,
    existing: Vec<Placed>,
    dry_run: bool,
    #[serde(skip)]
    per_shard: BTreeMap<String, (u64, u64)>,
}

impl Report for AssignReport {
    fn human(&self) -> String {
        let verb = if self.dry_run {
            "would assign"
        } else {
            "assigned"
        };
        let rows = self
            .per_shard
            .iter()
            .map(|(s, (a, e))| vec![s.clone(), a.to_string(), e.to_string()]);
        format!(
            "{}\n{verb} {} new users; {} already placed and left alone",
            table(&["shard", verb, "existing"], rows),
            self.assigned.len(),
            self.existing.len()
        )
    }
}

/// Reads user ids: one per line (blank lines and `#` comments skipped). Everything is parsed
/// before anything is written, so a bad line changes nothing.
fn read_ids(reader: impl Read, source: &str, into: &mut Vec<u64>) -> Result<()> {
    for (n, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| Error::io(&format!("reading {source}"), e))?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let id = t.parse::<u64>().map_err(|_| {
            Error::Usage(format!(
                "{source} line {}: `{t}` is not a user id (an unsigned 64-bit integer)",
                n + 1
            ))
        })?;
        into.push(id);
    }
    Ok(())
}

fn assign_users(ctx: &Ctx, args: &UserAssignArgs) -> Result<Outcome> {
    let mut ids = args.users.clone();
    match args.file.as_deref() {
        Some(p) if p.as_os_str() == "-" => read_ids(std::io::stdin().lock(), "stdin", &mut ids)?,
        Some(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| Error::Usage(format!("cannot read {}: {e}", p.display())))?;
            read_ids(f, &p.display().to_string(), &mut ids)?
        }
        None => {}
    }
    if ids.is_empty() {
        return Err(Error::Usage(
            "no user ids given: pass UID ... or --file F".into(),
        ));
    }
    let cfg = ctx.config()?;
    let mut db = ring::open(&cfg)?;
    let names: HashMap<u32, String> = directory::shards(&mut db)?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let result = if args.dry_run {
        dry_run(&mut db, &ids)?
    } else {
        let bar = ctx.ui.progress(ids.len() as u64, "assigning");
        let r = assign::assign(&mut db, &ids, args.seed, &bar)?;
        bar.finish_and_clear();
        r
    };
    let name = |id: &u32| names.get(id).cloned().unwrap_or_else(|| format!("#{id}"));
    let mut per_shard: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut placed = |list: &[(u64, u32)], existing: bool| -> Vec<Placed> {
        list.iter()
            .map(|(u, s)| {
                let e = per_shard.entry(name(s)).or_default();
                if existing {
                    e.1 += 1
                } else {
                    e.0 += 1
                }
                Placed {
                    user: *u,
                    shard: name(s),
                }
            })
            .collect()
    };
    let assigned = placed(&result.assigned, false);
    let existing = placed(&result.existing, true);
    Outcome::of(&AssignReport {
        assigned,
        existing,
        dry_run: args.dry_run,
        per_shard,
    })
}

/// Reports which users exist, writes nothing; the new ones are listed with no shard yet.
fn dry_run(db: &mut Db, ids: &[u64]) -> Result<assign::Assignment> {
    let mut out = assign::Assignment::default();
    for chunk in ids.chunks(assign::BATCH) {
        let existing: Vec<(u64, u32)> =
            db.run("reading users", |c| directory::existing_users(c, chunk))?;
        out.existing.extend(existing);
    }
    Ok(out)
}

#[derive(Serialize)]
struct Location {
    user: u64,
    shard: String,
    state: String,
    /// The server the application should use now, or null when none answers.
    server: Option<Endpoint>,
    servers: Vec<Server>,
    /// Servers tried before the one chosen, with why they were passed over.
    skipped: Vec<Skipped>,
}

#[derive(Serialize)]
struct Endpoint {
    host: String,
    port: u16,
}

#[derive(Serialize)]
struct Skipped {
    host: String,
    port: u16,
    reason: String,
}

impl Report for Location {
    fn human(&self) -> String {
        let server = match &self.server {
            Some(s) => format!("{}:{}", s.host, s.port),
            None => "none: no online server answers".into(),
        };
        let mut out = table(
            &["user", "shard", "state", "use now"],
            [vec![
                self.user.to_string(),
                self.shard.clone(),
                self.state.clone(),
                server,
            ]],
        );
        for s in &self.skipped {
            out.push_str(&format!("\nskipped {}:{}: {}", s.host, s.port, s.reason));
        }
        out
    }

    fn exit_code(&self) -> u8 {
        if self.server.is_some() {
            exit_codes::OK
        } else {
            exit_codes::FAILED
        }
    }
}

fn locate(ctx: &Ctx, args: &UserLocateArgs) -> Result<Outcome> {
    let cfg = ctx.config()?;
    let mut db = ring::open(&cfg)?;
    let (shard_id, state) = directory::user(&mut db, args.user)?.ok_or_else(|| {
        Error::NotFound(format!("user {} is not assigned to any shard", args.user))
    })?;
    let shard = directory::shards(&mut db)?
        .into_iter()
        .find(|s| s.id == shard_id)
        .ok_or_else(|| {
            Error::Database(format!(
                "user {} names shard id {shard_id}, which does not exist",
                args.user
            ))
        })?;
    let (server, skipped) = first_answering(&cfg, args.user, &shard.servers);
    Outcome::of(&Location {
        user: args.user,
        shard: shard.name,
        state,
        server,
        servers: shard.servers,
        skipped,
    })
}

/// Follows the routing rule: the user's first candidate that answers a login.
fn first_answering(
    cfg: &Config,
    user: u64,
    servers: &[Server],
) -> (Option<Endpoint>, Vec<Skipped>) {
    let net = NetOptions {
        connect_timeout: cfg.net.connect_timeout.min(Duration::from_secs(2)),
        ..cfg.net.clone()
    };
    let mut skipped = Vec::new();
    for s in routing::candidates(user, servers) {
        match Db::connect(&s.addr(), &cfg.shards.login, None, &net) {
            Ok(_) => {
                return (
                    Some(Endpoint {
                        host: s.host.clone(),
                        port: s.port,
                    }),
                    skipped,
                )
            }
            Err(e) => skipped.push(Skipped {
                host: s.host.clone(),
                port: s.port,
                reason: e.to_string(),
            }),
        }
    }
    (None, skipped)
}

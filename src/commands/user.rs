use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};

use serde::Serialize;

use crate::cli::{UserAssignArgs, UserCommand, UserLocateArgs};
use crate::commands::Ctx;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::output::{table, Outcome, Report};
use crate::ring::directory::{self, Server};
use crate::ring::{self, assign};

pub fn run(ctx: &Ctx, cmd: UserCommand) -> Result<Outcome> {
    match cmd {
        UserCommand::Assign(args) => assign_users(ctx, &args),
        UserCommand::Locate(args) => locate(ctx, &args),
    }
}

/// (user, shard id) pairs, serialised as `[{"user", "shard"}]` with the shard's name.
struct PlacedList<'a> {
    rows: &'a [(u64, u32)],
    names: &'a HashMap<u32, String>,
}

impl Serialize for PlacedList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Placed<'n> {
            user: u64,
            shard: &'n str,
        }
        s.collect_seq(self.rows.iter().map(|(user, shard)| Placed {
            user: *user,
            shard: self.names.get(shard).map(String::as_str).unwrap_or("?"),
        }))
    }
}

struct AssignReport {
    result: assign::Assignment,
    names: HashMap<u32, String>,
    dry_run: bool,
    /// With --dry-run: how many users would be placed.
    would_assign: usize,
}

impl Serialize for AssignReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("AssignReport", 5)?;
        st.serialize_field(
            "assigned",
            &PlacedList {
                rows: &self.result.assigned,
                names: &self.names,
            },
        )?;
        st.serialize_field(
            "existing",
            &PlacedList {
                rows: &self.result.existing,
                names: &self.names,
            },
        )?;
        st.serialize_field("dry_run", &self.dry_run)?;
        if let Some(e) = &self.result.stopped {
            st.serialize_field("error", &e.to_string())?;
        }
        if self.dry_run {
            st.serialize_field("would_assign", &self.would_assign)?;
        }
        st.end()
    }
}

impl Report for AssignReport {
    fn human(&self) -> String {
        let mut per_shard: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        let name = |id: &u32| self.names.get(id).map(String::as_str).unwrap_or("?");
        for (_, s) in &self.result.assigned {
            per_shard.entry(name(s)).or_default().0 += 1;
        }
        for (_, s) in &self.result.existing {
            per_shard.entry(name(s)).or_default().1 += 1;
        }
        // A dry run places nobody, so only what already exists is known per shard.
        let (headers, rows): (&[&str], Vec<Vec<String>>) = if self.dry_run {
            (
                &["shard", "existing"],
                per_shard
                    .iter()
                    .map(|(s, (_, e))| vec![s.to_string(), e.to_string()])
                    .collect(),
            )
        } else {
            (
                &["shard", "assigned", "existing"],
                per_shard
                    .iter()
                    .map(|(s, (a, e))| vec![s.to_string(), a.to_string(), e.to_string()])
                    .collect(),
            )
        };
        let summary = if self.dry_run {
            format!("{} new users would be placed by weight", self.would_assign)
        } else {
            format!("{} new users placed", self.result.assigned.len())
        };
        let stopped = match &self.result.stopped {
            Some(e) => format!("\nstopped after those batches: {e}; the rest were not placed (run the same command again)"),
            None => String::new(),
        };
        format!(
            "{}\n{summary}; {} already placed and left alone{stopped}",
            table(headers, rows),
            self.result.existing.len()
        )
    }

    fn exit_code(&self) -> u8 {
        if self.result.stopped.is_some() {
            crate::exit_codes::PARTIAL
        } else {
            crate::exit_codes::OK
        }
    }
}

/// The longest line an id file may have: a user id is at most 20 digits, so anything this
/// long is not an id file (`/dev/zero`, a binary), and is refused before it fills memory.
const MAX_LINE: usize = 4096;

/// Reads user ids: one per line (blank lines and `#` comments skipped). Everything is parsed
/// before anything is written, so a bad line changes nothing.
fn read_ids(reader: impl Read, source: &str, into: &mut Vec<u64>) -> Result<()> {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(&format!("reading {source}"), e))?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
            return Err(Error::Usage(format!(
                "{source} line {n} is longer than {MAX_LINE} bytes: not a file of user ids"
            )));
        }
        let text = String::from_utf8_lossy(&line);
        let t = text.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let id = t.parse::<u64>().map_err(|_| {
            Error::Usage(format!(
                "{source} line {n}: `{}` is not a user id (an unsigned 64-bit integer)",
                crate::error::excerpt(t, 40)
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
    let mut db = ctx.ring(&cfg)?;
    let names: HashMap<u32, String> = directory::shards(&mut db)?
        .into_iter()
        .map(|s| (s.id, s.name.to_string()))
        .collect();
    let result = if args.dry_run {
        dry_run(&mut db, &ids)?
    } else {
        let bar = ctx.ui.progress(ids.len() as u64, "assigning");
        let r = assign::assign(&mut db, &ids, args.seed, &bar)?;
        bar.finish_and_clear();
        r
    };
    let unique: std::collections::HashSet<u64> = ids.iter().copied().collect();
    let would_assign = unique.len() - result.existing.len();
    Outcome::of(AssignReport {
        result,
        names,
        dry_run: args.dry_run,
        would_assign,
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
    state: directory::UserState,
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
                self.state.to_string(),
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
            Error::inconsistent(format!(
                "user {} names shard id {shard_id}, which does not exist",
                args.user
            ))
        })?;
    let (server, skipped) = crate::shard::first_accepting(&cfg, args.user, &shard.servers);
    let server = server.map(|a| Endpoint {
        host: a.host,
        port: a.port,
    });
    let skipped = skipped
        .into_iter()
        .map(|(a, reason)| Skipped {
            host: a.host,
            port: a.port,
            reason,
        })
        .collect();
    Outcome::of(Location {
        user: args.user,
        shard: shard.name.to_string(),
        state,
        server,
        servers: shard.servers,
        skipped,
    })
}

use serde::Serialize;

use crate::cache::{self, ServerState};
use crate::cli::CacheCommand;
use crate::commands::Ctx;
use crate::config::{CacheConfig, Config};
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::output::{table, Outcome, Report};
use crate::ring;

#[derive(Serialize)]
struct Status {
    servers: Vec<ServerState>,
    pending: Vec<String>,
}

impl Report for Status {
    fn human(&self) -> String {
        let mut out = table(
            &["cache server", "reachable"],
            self.servers.iter().map(|s| {
                vec![
                    format!("{}:{}", s.host, s.port),
                    if s.reachable { "yes" } else { "NO" }.to_string(),
                ]
            }),
        );
        out.push_str(&if self.pending.is_empty() {
            "\nno deletes pending".to_string()
        } else {
            format!(
                "\n{} deletes pending: {}",
                self.pending.len(),
                self.pending.join(" ")
            )
        });
        out
    }

    fn exit_code(&self) -> u8 {
        if self.servers.iter().all(|s| s.reachable) {
            exit_codes::OK
        } else {
            exit_codes::FAILED
        }
    }
}

#[derive(Serialize)]
struct Deleted {
    /// Deleted on every cache server (a dry run: would be).
    deleted: Vec<String>,
    pending: Vec<String>,
    dry_run: bool,
}

impl Report for Deleted {
    fn human(&self) -> String {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let mut out = format!("{verb} {} keys", self.deleted.len());
        if !self.pending.is_empty() {
            out.push_str(&format!("; still pending: {}", self.pending.join(" ")));
        }
        out
    }

    fn exit_code(&self) -> u8 {
        if self.pending.is_empty() {
            exit_codes::OK
        } else {
            exit_codes::PARTIAL
        }
    }
}

fn configured(cfg: &Config) -> Result<&CacheConfig> {
    cfg.cache.as_ref().ok_or_else(|| {
        Error::Config(format!(
            "config {} has no [cache] section: there is no routing cache to talk to",
            cfg.path.display()
        ))
    })
}

#[derive(Serialize)]
struct Redeleted {
    keys: usize,
}

impl Report for Redeleted {
    fn human(&self) -> String {
        String::new()
    }
}

pub fn run(ctx: &Ctx, cmd: CacheCommand) -> Result<Outcome> {
    let cfg = ctx.config()?;
    let cache_cfg = configured(&cfg)?;
    match cmd {
        CacheCommand::Redelete(args) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| Error::io("reading the keys", e))?;
            let keys: Vec<String> = text.lines().map(str::to_string).collect();
            std::thread::sleep(std::time::Duration::from_millis(args.after_ms));
            cache::redelete(&cfg, &keys);
            Outcome::of(Redeleted { keys: keys.len() })
        }
        CacheCommand::Status => {
            let mut ring = ring::open(&cfg)?;
            Outcome::of(Status {
                servers: cache::servers(&cfg),
                pending: cache::pending(&mut ring)?,
            })
        }
        CacheCommand::Invalidate(args) => {
            let keys: Vec<String> = args.users.iter().map(|u| cache_cfg.user_key(*u)).collect();
            if args.dry_run {
                return Outcome::of(Deleted {
                    deleted: keys,
                    pending: Vec::new(),
                    dry_run: true,
                });
            }
            // The second delete and any failure are reported when the command ends too.
            let pending = ctx.invalidate_users(&cfg, &args.users);
            Outcome::of(Deleted {
                deleted: keys.into_iter().filter(|k| !pending.contains(k)).collect(),
                pending,
                dry_run: false,
            })
        }
        CacheCommand::Flush(args) => {
            let mut ring = ring::open(&cfg)?;
            if args.dry_run {
                return Outcome::of(Deleted {
                    deleted: cache::pending(&mut ring)?,
                    pending: Vec::new(),
                    dry_run: true,
                });
            }
            let (deleted, pending) = cache::flush(&cfg, &mut ring, &mut cache::Down::new())?;
            Outcome::of(Deleted {
                deleted,
                pending,
                dry_run: false,
            })
        }
    }
}

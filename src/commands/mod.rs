//! The command layer: turns parsed arguments into calls of the core and a `Report`.
//! Nothing here speaks SQL directly or decides between table and JSON.

mod audit;
mod cache;
mod completions;
mod doctor;
mod guard;
mod id;
mod init;
mod lock;
mod maintenance;
mod migrate;
mod rebalance;
mod sandbox;
mod shard;
mod top;
mod user;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::cache::{Invalidator, Pending};
use crate::cli::{Cli, Command};
use crate::config::{self, Config, OptionSources};
use crate::error::Result;
use crate::output::{Outcome, Ui};
use crate::ring::{Changes, Ring};

/// What every command may need: stderr, the config (loaded only by commands that use it), and
/// the routing cache's invalidator, which observes every ring session the command opens for
/// directory writes and is finished once, when the command ends.
pub struct Ctx {
    pub ui: Ui,
    config_path: Option<PathBuf>,
    option_files: OptionSources,
    invalidator: OnceLock<Arc<Invalidator>>,
}

impl Ctx {
    pub fn config(&self) -> Result<Config> {
        // Every command that changes anything loads its config first, and audits as this name.
        crate::ring::audit::check_operator().map_err(crate::error::Error::Config)?;
        let cfg = Config::load_with(
            &config::locate(self.config_path.as_deref())?,
            &self.option_files,
        )?;
        for w in &cfg.warnings {
            self.ui.warn(w);
        }
        Ok(cfg)
    }

    /// The command's invalidator (made on first use, with the first config loaded).
    fn invalidator(&self, cfg: &Config) -> &Arc<Invalidator> {
        self.invalidator
            .get_or_init(|| Arc::new(Invalidator::new(cfg)))
    }

    /// Deletes the routing cache's entries of `users` now: the keys some server did not
    /// delete (the second delete follows when the command ends).
    pub fn invalidate_users(&self, cfg: &Config, users: &[u64]) -> Vec<String> {
        self.invalidator(cfg).users(users)
    }

    /// What observes this command's directory writes.
    pub fn changes(&self, cfg: &Config) -> Changes {
        Changes::new(self.invalidator(cfg).clone())
    }

    /// A ring session for directory writes.
    pub fn ring(&self, cfg: &Config) -> Result<Ring> {
        Ring::open(cfg, &self.changes(cfg))
    }

    /// The second delete of what this command invalidated, and what could not be deleted.
    fn finish(&self) -> Option<Pending> {
        self.invalidator.get()?.finish(&self.option_files)
    }
}

pub fn dispatch(cli: Cli, ui: Ui) -> Result<Outcome> {
    let ctx = Ctx {
        ui,
        config_path: cli.global.config,
        option_files: OptionSources {
            defaults_file: cli.global.defaults_file,
            extra_file: cli.global.defaults_extra_file,
            none: cli.global.no_defaults,
        },
        invalidator: OnceLock::new(),
    };
    let result = match cli.command {
        Command::Init(args) => init::run(&ctx, &args),
        Command::Doctor(args) => doctor::run(&ctx, &args),
        Command::Shard(cmd) => shard::run(&ctx, cmd),
        Command::User(cmd) => user::run(&ctx, cmd),
        Command::Id(cmd) => id::run(&ctx, cmd),
        Command::Migrate(args) => migrate::run(&ctx, args),
        Command::Rebalance(cmd) => rebalance::run(&ctx, cmd),
        Command::Lock(cmd) => lock::run(&ctx, cmd),
        Command::Maintenance(cmd) => maintenance::run(&ctx, cmd),
        Command::Top(args) => top::run(&ctx, &args),
        Command::Audit(args) => audit::run(&ctx, &args),
        Command::Sandbox(cmd) => sandbox::run(&ctx, cmd),
        Command::Completions(args) => completions::run(&args),
        Command::Cache(cmd) => cache::run(&ctx, cmd),
        Command::Guard(cmd) => guard::run(&ctx, cmd),
    };
    // The routing cache: the second delete of what this run invalidated, and a report of what
    // could not be deleted (the ring change stands; exit 5 says the cache may be stale).
    match ctx.finish() {
        Some(p) if !p.pending.is_empty() => {
            ctx.ui.warn(&format!(
                "the routing cache may still hold {} stale entries (`shardctl cache flush` retries them): {}",
                p.pending.len(),
                crate::error::excerpt(&p.pending.join(" "), 500)
            ));
            result.map(|o| o.with_cache_pending(p.pending))
        }
        _ => result,
    }
}

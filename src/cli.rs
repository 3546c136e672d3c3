//! The command tree (PRODUCT.md section 2). Names are the public contract; flags may grow.

use crate::lock::lease::Ttl;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;
use crate::ring::directory::ShardState;
use crate::ring::tickets::Bits;
use crate::types::{HostPort, LockName, ShardName, Weight};

#[derive(Debug, Parser)]
#[command(
    name = "shardctl",
    version,
    about = "Admin and rebalancing toolkit for federated MySQL",
    long_about = "Admin and rebalancing toolkit for federated MySQL: assigns users to weighted \
                  shards, migrates accounts between shards under a held account lock, manages \
                  locks, and drains half of every shard for maintenance.",
    after_long_help = crate::exit_codes::HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file [default: $SHARDCTL_CONFIG, else ~/.config/shardctl/config.toml]
    #[arg(long, global = true, env = "SHARDCTL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read credentials from only this MySQL option file (for auth sections naming none)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "no_defaults"
    )]
    pub defaults_file: Option<PathBuf>,
    /// Read this MySQL option file after the global ones, before ~/.my.cnf
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "no_defaults"
    )]
    pub defaults_extra_file: Option<PathBuf>,
    /// Read no MySQL option file
    #[arg(long, global = true)]
    pub no_defaults: bool,
    /// Output format: a table for people, one JSON document for scripts
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print nothing on stderr but warnings, errors and what commands shardctl runs print
    /// (`lock run`, `maintenance roll`): no status lines, no progress bars
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail on stderr
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the global ring schema (idempotent)
    Init(InitArgs),
    /// Check every server: reachable, privileges, schema version, replication
    Doctor(DoctorArgs),
    /// Register shards and change their weight and state
    #[command(subcommand)]
    Shard(ShardCommand),
    /// Place new users on shards and find where users live
    #[command(subcommand)]
    User(UserCommand),
    /// Globally unique IDs from the ticket servers
    #[command(subcommand)]
    Id(IdCommand),
    /// Move a user's rows to another shard: journaled, verified, fenced, resumable
    Migrate(MigrateArgs),
    /// Plan and apply moves of users so every shard carries its weight's share
    #[command(subcommand)]
    Rebalance(RebalanceCommand),
    /// Account and job locks: acquire, inspect, release, sweep, run under a lock
    #[command(subcommand)]
    Lock(LockCommand),
    /// Drain half of every shard for maintenance, and bring it back
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// The federation live in one screen: shards, servers, migrations, locks, audit
    Top(TopArgs),
    /// Who did what, from the audit log
    Audit(AuditArgs),
    /// A local federation of MariaDB servers for trying shardctl
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Print shell completions
    Completions(CompletionsArgs),
    /// The application's routing cache (memcached): what shardctl deletes, and by hand
    #[command(subcommand)]
    Cache(CacheCommand),
    /// The write guard: triggers on every shard server that refuse writes to moving users' rows
    #[command(subcommand)]
    Guard(GuardCommand),
}

#[derive(Debug, Subcommand)]
pub enum GuardCommand {
    /// Install the guard table and triggers on every server of every shard (idempotent)
    Install(GuardChangeArgs),
    /// What every server has installed, and how many users it guards now
    Status,
    /// Remove the triggers and the guard table from every server (refused while migrations are
    /// in flight or users are guarded, unless --force)
    Remove(GuardRemoveArgs),
    /// Lift old guard rows: users moved away longer ago than --older-than are accepted again by
    /// the servers they left (a stale route may then write there)
    Prune(GuardPruneArgs),
}

#[derive(Debug, Args)]
pub struct GuardRemoveArgs {
    #[command(flatten)]
    pub change: GuardChangeArgs,
    /// Remove it even while migrations are in flight or users are guarded (audited)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct GuardPruneArgs {
    /// Lift the guard of users guarded longer ago than this (rows from before shardctl recorded
    /// when count as older than any)
    #[arg(long, value_name = "DUR", value_parser = positive_duration)]
    pub older_than: std::time::Duration,
    /// List what would be lifted, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct GuardChangeArgs {
    /// How long to wait for each table's metadata lock (CREATE and DROP TRIGGER take one)
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = positive_duration)]
    pub timeout: std::time::Duration,
    /// Print the statements, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// The cache servers and the deletes still pending
    Status,
    /// Delete users' cached entries on every cache server (and again after redelete_after)
    Invalidate(CacheInvalidateArgs),
    /// Retry the deletes that failed earlier
    Flush(CacheFlushArgs),
    /// (internal) The second delete of a run's keys, read from stdin, after a delay
    #[command(hide = true)]
    Redelete(CacheRedeleteArgs),
}

#[derive(Debug, Args)]
pub struct CacheRedeleteArgs {
    #[arg(long, value_name = "MS")]
    pub after_ms: u64,
}

#[derive(Debug, Args)]
pub struct CacheInvalidateArgs {
    /// The users whose entries to delete
    #[arg(value_name = "UID", required = true)]
    pub users: Vec<u64>,
    /// Name the keys, delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CacheFlushArgs {
    /// Name the pending keys, delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Say what would be created or upgraded, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Replication lag above this many seconds is a problem
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub max_lag: u64,
}

#[derive(Debug, Subcommand)]
pub enum ShardCommand {
    /// Register a shard and its servers (halves a, b, a, ... in order)
    Add(ShardAddArgs),
    /// Weight, state, users, share against target share, and servers of every shard
    List,
    /// Change a shard's weight
    SetWeight(ShardSetWeightArgs),
    /// Change a shard's state (only active shards take new users)
    SetState(ShardSetStateArgs),
    /// Remove a shard that holds no users
    Remove(ShardRemoveArgs),
    /// Set the queries per second a shard's servers can carry (checked before a drain)
    SetCapacity(ShardSetCapacityArgs),
}

#[derive(Debug, Args)]
pub struct ShardAddArgs {
    /// Shard name: letters, digits, `_`, `.`, `-`; at most 64 characters
    pub name: ShardName,
    /// How much of the user base this shard's hardware should carry (> 0)
    #[arg(long, allow_negative_numbers = true)]
    pub weight: Weight,
    /// A server of the shard, HOST:PORT; repeat for each server
    #[arg(long = "server", value_name = "HOST:PORT", required = true)]
    pub servers: Vec<HostPort>,
    /// Do not check that the servers answer and hold the shard database
    #[arg(long)]
    pub no_check: bool,
    /// Show what would be registered, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ShardSetWeightArgs {
    pub name: ShardName,
    /// The new weight (> 0)
    #[arg(allow_negative_numbers = true)]
    pub weight: Weight,
    /// Show the change, make none
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ShardSetStateArgs {
    pub name: ShardName,
    #[arg(value_enum)]
    pub state: ShardState,
    /// Show the change, make none
    #[arg(long)]
    pub dry_run: bool,
}

/// A server's capacity in queries per second, or `none` to stop checking it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Capacity(pub Option<f64>);

fn capacity(s: &str) -> Result<Capacity, String> {
    if s == "none" {
        return Ok(Capacity(None));
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Capacity(Some(v))),
        _ => Err(format!(
            "`{s}` is not a capacity: give queries per second (> 0) or `none`"
        )),
    }
}

#[derive(Debug, Args)]
pub struct ShardSetCapacityArgs {
    pub name: ShardName,
    /// Queries per second one server can carry, or `none`
    #[arg(value_name = "QPS", value_parser = capacity, allow_negative_numbers = true)]
    pub capacity: Capacity,
    /// Only this server of the shard [default: every server]; repeat for several
    #[arg(long = "server", value_name = "HOST:PORT")]
    pub servers: Vec<HostPort>,
    /// Show the change, make none
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ShardRemoveArgs {
    pub name: ShardName,
    /// Check that the shard could be removed, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Place new users on active shards at random, in proportion to weight
    Assign(UserAssignArgs),
    /// The user's shard, state, servers, and the server to use now
    Locate(UserLocateArgs),
}

#[derive(Debug, Args)]
pub struct UserAssignArgs {
    /// User ids (unsigned 64-bit)
    pub users: Vec<u64>,
    /// Read user ids from a file, one per line (`-` for stdin)
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
    /// Seed the random choice, for a reproducible placement
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Show how many users would be placed, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct UserLocateArgs {
    /// User id
    pub user: u64,
}

#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Take new IDs from the ticket servers
    Next(IdNextArgs),
}

#[derive(Debug, Args)]
pub struct IdNextArgs {
    /// 32- or 64-bit IDs
    #[arg(long, value_enum, default_value = "64")]
    pub bits: Bits,
    /// How many IDs
    #[arg(short = 'n', default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: u64,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: Option<MigrateCommand>,
    #[command(flatten)]
    pub run: MigrateRunArgs,
}

#[derive(Debug, Args)]
pub struct MigrateRunArgs {
    /// The user to move
    #[arg(value_name = "UID", required = true)]
    pub user: Option<u64>,
    /// The shard to move the user to
    #[arg(long, value_name = "SHARD", required = true)]
    pub to: Option<ShardName>,
    /// Leave the user's rows on the source (`migrate resume` deletes them later)
    #[arg(long)]
    pub keep_source: bool,
    /// When the source's rows are deleted: right after the flip, or (later) by `migrate
    /// resume`, so the move's time until served never includes the delete
    #[arg(long, value_enum, default_value = "now")]
    pub cleanup: Cleanup,
    /// online: writable while copying, read-only only for the last catch-up, the verification
    /// and the flip (refused with exit 4 where the source's binary log cannot be followed);
    /// offline: read-only from before the copy; auto: online for accounts of at least
    /// `[migrate] online_min_rows` rows where the source allows it
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: crate::migrate::Mode,
    /// Delete rows of the user already on the destination before copying. Without it such
    /// rows (which no migration explains) make the move refuse with exit 4
    #[arg(long)]
    pub clear_destination: bool,
    #[command(flatten)]
    pub lock: MigrateLockArgs,
    /// Wait while a peer of the source or destination lags more than this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub max_lag: u64,
    /// Show what would be moved, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// When a move deletes the source's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cleanup {
    Now,
    Later,
}

#[derive(Debug, Args)]
pub struct MigrateLockArgs {
    /// The account lock's lease, renewed every third of it while working
    #[arg(long, value_name = "DUR", default_value = "30s")]
    pub lock_ttl: Ttl,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Finish (past the flip) or roll back (before it) interrupted migrations
    Resume(MigrateResumeArgs),
    /// The migration journal
    Status(MigrateStatusArgs),
}

#[derive(Debug, Args)]
pub struct MigrateResumeArgs {
    /// The user whose migration to resume
    #[arg(
        value_name = "UID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub user: Option<u64>,
    /// Every unfinished migration
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub lock: MigrateLockArgs,
    /// The clean-up after a flip (`--cleanup later`) waits while a peer of the source lags more
    /// than this many seconds; a roll-back never waits
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub max_lag: u64,
}

#[derive(Debug, Args)]
pub struct MigrateStatusArgs {
    /// Only this user's migrations [default: unfinished ones and the latest]
    #[arg(value_name = "UID")]
    pub user: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum RebalanceCommand {
    /// The fewest moves that bring every shard within the tolerance of its target
    Plan(RebalancePlanArgs),
    /// Apply a plan (or plan now and apply): parallel, resumable, safe to run twice
    Apply(RebalanceApplyArgs),
}

fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}` is not a percentage"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("{s} is not between 0 and 100"));
    }
    Ok(v)
}

#[derive(Debug, Args)]
pub struct PlanOptions {
    /// A shard is balanced within this many percent of its target
    #[arg(long, value_name = "PCT", default_value = "2", value_parser = percent)]
    pub tolerance: f64,
    /// Balance the count of users, or their rows
    #[arg(long, value_enum, default_value = "users")]
    pub by: crate::rebalance::plan::By,
    /// Plan at most N moves (the most pressing first)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_moves: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RebalancePlanArgs {
    #[command(flatten)]
    pub plan: PlanOptions,
    /// Write the plan to this file (JSON), for `rebalance apply`
    #[arg(short = 'o', long = "output", value_name = "PLAN.json")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RebalanceApplyArgs {
    /// A plan from `rebalance plan -o` [default: plan now with the options below]
    #[arg(value_name = "PLAN.json")]
    pub plan_file: Option<PathBuf>,
    /// Workers moving accounts in parallel
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: u64,
    /// At most N moves touching any one shard at a time
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub per_shard: u64,
    /// Wait while a server of a shard being moved lags more than this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub max_lag: u64,
    #[command(flatten)]
    pub lock: MigrateLockArgs,
    /// How accounts too large for a batch move: online (writable while copying), offline, or
    /// auto (online where the source allows it and the account has at least `[migrate]
    /// online_min_rows` rows)
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: crate::migrate::Mode,
    /// Say what would move, move nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub plan: PlanOptions,
}

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Take a lock and print its fencing token
    Acquire(LockAcquireArgs),
    /// Release a lock (only the current holder's, with --token)
    Release(LockReleaseArgs),
    /// A lock's lease and its GET_LOCK holder
    Show(LockNameArgs),
    /// Every lease: holder, age, time left, GET_LOCK session
    List(LockListArgs),
    /// Hold (and renew) a lock while a command runs
    Run(LockRunArgs),
    /// End whoever holds a lock: kill its GET_LOCK session, delete its lease
    ForceRelease(LockForceReleaseArgs),
    /// Release every expired lock (for cron: prints nothing on success without -v)
    Sweep(LockSweepArgs),
}

fn lock_name(s: &str) -> Result<LockName, String> {
    s.parse()
}

fn owner(s: &str) -> Result<String, String> {
    crate::types::plain_text("--owner", s, 255)
}

fn purpose(s: &str) -> Result<String, String> {
    crate::types::plain_text("--purpose", s, 255)
}

fn reason(s: &str) -> Result<String, String> {
    crate::types::plain_text("--reason", s, 1000)
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    crate::types::parse_duration(s)
}

/// A duration that must leave something time to run: a roll's zero exec timeout stopped every
/// command at once after its half was drained; a zero drain or restore timeout can only fail.
fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match duration(s)? {
        d if d < std::time::Duration::from_secs(1) => {
            Err(format!("`{s}` is too short: give at least 1s"))
        }
        d => Ok(d),
    }
}

#[derive(Debug, Args)]
pub struct LockAcquireArgs {
    /// Lock name: letters, digits, `_ . : -`; at most 64; ACCOUNT_<uid>_<TASK> for account locks
    #[arg(value_parser = lock_name)]
    pub name: LockName,
    /// How long the lease lasts unless renewed (30s, 10m)
    #[arg(long, value_name = "DUR")]
    pub ttl: Ttl,
    /// Who holds it [default: the operator]
    #[arg(long, value_name = "O", value_parser = owner)]
    pub owner: Option<String>,
    /// Keep trying this long while the lock is in use
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub wait: Option<std::time::Duration>,
    /// Why it is held, recorded in the lease
    #[arg(long, value_name = "TEXT", value_parser = purpose)]
    pub purpose: Option<String>,
    /// Say whether the lock could be taken now (exit 3 if not), take nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct LockReleaseArgs {
    #[arg(value_parser = lock_name)]
    pub name: LockName,
    /// Release only if the lock still carries this token
    #[arg(long, value_name = "T")]
    pub token: Option<u64>,
    /// Say what would be released, release nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct LockNameArgs {
    #[arg(value_parser = lock_name)]
    pub name: LockName,
}

#[derive(Debug, Args)]
pub struct LockListArgs {
    /// Only expired leases
    #[arg(long)]
    pub expired: bool,
    /// Only names starting with P
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// Only leases held by O
    #[arg(long, value_name = "O")]
    pub owner: Option<String>,
}

#[derive(Debug, Args)]
pub struct LockRunArgs {
    #[command(flatten)]
    pub lock: LockAcquireArgs,
    /// After SIGTERM, how long the command has before SIGKILL when the lock is lost
    #[arg(long, value_name = "DUR", value_parser = duration, default_value = "10s")]
    pub grace: std::time::Duration,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct LockForceReleaseArgs {
    #[arg(value_parser = lock_name)]
    pub name: LockName,
    /// Why, for the audit log
    #[arg(long, value_name = "TEXT", value_parser = reason)]
    pub reason: String,
    /// Show the lease and the session that would be killed, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct LockSweepArgs {
    /// List what would be released, release nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Release at most N locks (at least 1) [default: all]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// How often the screen refreshes (at least 100ms)
    #[arg(long, value_name = "DUR", value_parser = refresh_interval, default_value = "1s")]
    pub interval: std::time::Duration,
    /// Print one snapshot (tables, or one JSON document) and exit; no terminal needed
    #[arg(long)]
    pub once: bool,
}

fn refresh_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::types::parse_duration(s)?;
    if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(3600) {
        return Err("the interval must be between 100ms and 1h".into());
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries newer than this (30m, 2h, 7d)
    #[arg(long, value_name = "DUR", value_parser = crate::types::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Only this action (for example shard.add, user.assign)
    #[arg(long, value_name = "A")]
    pub action: Option<String>,
    /// At most this many entries, newest first
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub limit: u64,
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceCommand {
    /// Every shard server: half, status, reachable, replication and lag, application sessions
    Status,
    /// Take half of every shard out of service: check, mark draining, wait, mark offline
    Drain(DrainArgs),
    /// Bring a drained half back online once each server has caught up
    Restore(RestoreArgs),
    /// Drain each half in turn, run a command for each drained server, restore; then the next
    Roll(RollArgs),
}

#[derive(Debug, Args)]
pub struct RollArgs {
    /// The command run (through `sh -c`) once for each drained server, with SHARDCTL_SHARD,
    /// SHARDCTL_HALF, SHARDCTL_HOST and SHARDCTL_PORT set
    #[arg(long, value_name = "CMD")]
    pub exec: String,
    /// The halves, in order
    #[arg(
        long,
        value_name = "a,b",
        value_delimiter = ',',
        default_value = "a,b",
        value_enum
    )]
    pub halves: Vec<crate::ring::directory::Half>,
    /// How many commands run at once
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    /// How long each drain waits for sessions, and each restore for servers to catch up
    #[arg(long, value_name = "DUR", value_parser = positive_duration, default_value = "5m")]
    pub timeout: std::time::Duration,
    /// A command still running after this long is stopped (SIGTERM, SIGKILL 5s later) and
    /// counts as failed; raise it for long upgrades
    #[arg(long, value_name = "DUR", value_parser = positive_duration, default_value = "1h")]
    pub exec_timeout: std::time::Duration,
    /// Refuse to drain, and wait to restore, while replication lags more than this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub max_lag: u64,
    /// Check the first half's drain and show what would run, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The half to drain
    #[arg(long, value_enum)]
    pub half: crate::ring::directory::Half,
    /// How long to wait for application sessions to end before giving up (servers left draining)
    #[arg(long, value_name = "DUR", value_parser = positive_duration, default_value = "60s")]
    pub timeout: std::time::Duration,
    /// Refuse when replication between the halves lags more than this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub max_lag: u64,
    /// Check and show what would be drained, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Drain the shards that pass the checks and list the rest (exit 5), instead of refusing all
    #[arg(long)]
    pub skip_unsafe: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The half to bring back
    #[arg(long, value_enum)]
    pub half: crate::ring::directory::Half,
    /// A server goes online only once its replication lags at most this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub max_lag: u64,
    /// How long to wait for servers to answer and catch up (the rest stay offline)
    #[arg(long, value_name = "DUR", value_parser = positive_duration, default_value = "5m")]
    pub timeout: std::time::Duration,
    /// Show which servers are ready to come back now, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start (or restart what is down of) a local federation
    Up(SandboxUpArgs),
    /// The sandbox's servers and whether they run
    Status(SandboxDirArgs),
    /// Stop the sandbox's servers (by pid; idempotent)
    Down(SandboxDirArgs),
}

#[derive(Debug, Args)]
pub struct SandboxDirArgs {
    /// The sandbox directory
    #[arg(long, default_value = "shardctl-sandbox", value_name = "D")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SandboxUpArgs {
    #[command(flatten)]
    pub dir: SandboxDirArgs,
    /// Number of shards, two servers each
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub shards: u32,
    /// More shards whose servers run with the schema but are not registered: hardware to add
    /// with `shard add`
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub spare_shards: u32,
    /// Users to create, placed by weight, with skewed account sizes
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub users: u64,
    /// First port: the ring server; shards take the ports after it
    #[arg(long, default_value_t = 23400, value_parser = clap::value_parser!(u16).range(1024..))]
    pub base_port: u16,
    /// InnoDB buffer pool of each server, in MB
    #[arg(long, default_value_t = crate::sandbox::DEFAULT_BUFFER_POOL_MB, value_parser = clap::value_parser!(u32).range(16..=65536))]
    pub buffer_pool_mb: u32,
    /// Also run a memcached (the application's routing cache) on the port after the shards',
    /// and write its `[cache]` section
    #[arg(long)]
    pub cache: bool,
    /// Turn the write guard on (`[shards] write_guard = true`) and install it on every server
    #[arg(long)]
    pub write_guard: bool,
    /// Where lock records live: the ring's `locks` table, or a ZooKeeper ensemble started
    /// beside the servers (`[locks] backend = "zookeeper"`)
    #[arg(long, value_enum, default_value_t = LockBackendArg::Mysql, value_name = "BACKEND")]
    pub lock_backend: LockBackendArg,
    /// Nodes of the ZooKeeper ensemble (with --lock-backend zookeeper; default 3)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=7))]
    pub zookeeper_nodes: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LockBackendArg {
    Mysql,
    Zookeeper,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The clap command, for completions, man pages and tests.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_tree_is_consistent() {
        super::command().debug_assert();
    }
}

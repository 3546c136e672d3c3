//! The application's routing cache (memcached, `[cache]`): after every ring commit that changes
//! what a user's or a shard's cached entry would say, its key is deleted on every cache server,
//! then once more after `redelete_after` (a reader that read the ring before the commit and
//! filled the cache after the first delete). A delete that fails is journaled in the ring
//! (`cache_pending`) and retried by the next run that changes the ring and by `cache flush`;
//! the command reports it and exits 5, its ring change standing.
//!
//! Without `[cache]` nothing here runs.

pub mod memcached;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{CacheConfig, Config, OptionSources};
use crate::db::Db;
use crate::error::Result;
use crate::ring::session::{Changed, Observer};
use crate::types::HostPort;

/// What a command invalidated, for the second delete and the report.
#[derive(Default)]
struct Run {
    keys: BTreeSet<String>,
    /// When the second delete is due.
    due: Option<Instant>,
    /// Keys whose delete failed on some server (journaled in the ring).
    pending: BTreeSet<String>,
    /// Cache servers that did not answer once this run: not waited for again (a frozen cache
    /// costs one timeout per run, not one per change); their keys go straight to pending.
    down: Down,
}

/// Servers (`HOST:PORT`) found not answering.
pub type Down = BTreeSet<String>;

/// One command's invalidation of the routing cache: it observes the command's ring sessions
/// (the first delete right after each commit) and is finished once, when the command ends
/// (the second delete, the retry of what earlier runs left pending, the report).
pub struct Invalidator {
    cfg: Config,
    /// Held across the deletes: concurrent workers learn of a server that is down from the
    /// first one that waited for it.
    run: Mutex<Run>,
}

impl Invalidator {
    pub fn new(cfg: &Config) -> Invalidator {
        Invalidator {
            cfg: cfg.clone(),
            run: Mutex::new(Run::default()),
        }
    }

    /// Deletes the entries of `users` now (an operator's `cache invalidate`): the keys that
    /// some server did not delete (journaled as pending).
    pub fn users(&self, users: &[u64]) -> Vec<String> {
        self.invalidate(&Changed::users(users.to_vec()))
    }

    /// At the end of a command: a retry of what earlier runs left pending, and the second
    /// delete of everything this command invalidated. The second delete is due
    /// `redelete_after` after the last invalidation; rather than hold the command (and every
    /// script waiting on it) until then, a detached `shardctl cache redelete` does it and
    /// journals what it cannot delete. None when this command invalidated nothing; otherwise
    /// the keys still pending.
    pub fn finish(&self, sources: &OptionSources) -> Option<Pending> {
        let mut run = std::mem::take(&mut *self.run.lock().unwrap_or_else(|p| p.into_inner()));
        let due = run.due?;
        let keys: Vec<String> = run.keys.iter().cloned().collect();
        let wait = due.saturating_duration_since(Instant::now());
        if !redelete_later(&self.cfg, sources, &keys, wait) {
            std::thread::sleep(wait);
            redelete(&self.cfg, &keys);
        }
        let mut pending: BTreeSet<String> = run.pending;
        if let Ok(mut ring) = crate::ring::open(&self.cfg) {
            if let Ok((done, left)) = flush(&self.cfg, &mut ring, &mut run.down) {
                for k in done {
                    pending.remove(&k);
                }
                pending.extend(left);
            }
        }
        Some(Pending {
            pending: pending.into_iter().collect(),
        })
    }
}

impl Observer for Invalidator {
    fn committed(&self, changed: &Changed) {
        self.invalidate(changed);
    }
}

impl Invalidator {
    /// The first delete of what `changed` concerns: the keys some server did not delete.
    fn invalidate(&self, changed: &Changed) -> Vec<String> {
        let Some(cache) = &self.cfg.cache else {
            return Vec::new();
        };
        let keys: Vec<String> = changed
            .users
            .iter()
            .map(|u| cache.user_key(*u))
            .chain(changed.shards.iter().map(|s| cache.shard_key(*s)))
            .collect();
        if keys.is_empty() {
            return Vec::new();
        }
        let mut run = self.run.lock().unwrap_or_else(|p| p.into_inner());
        let failed = delete_everywhere(cache, &keys, io_timeout(&self.cfg), &mut run.down);
        if !failed.is_empty() {
            journal_pending(&self.cfg, &failed);
        }
        run.keys.extend(keys);
        run.due = Some(Instant::now() + cache.redelete_after);
        run.pending.extend(failed.iter().cloned());
        failed
    }
}

/// How long one memcached server may take to answer: it answers in well under a millisecond,
/// and a frozen one must not hold a command.
pub fn io_timeout(cfg: &Config) -> Duration {
    cfg.net.connect_timeout.min(Duration::from_secs(1))
}

/// Deletes `keys` on every server (not only the one a client's hash would pick: the
/// application's client may hash differently), skipping those in `down` and adding those that
/// fail to it. The keys some server did not delete.
pub fn delete_everywhere(
    cache: &CacheConfig,
    keys: &[String],
    timeout: Duration,
    down: &mut Down,
) -> Vec<String> {
    for server in &cache.servers {
        let name = server.to_string();
        if !down.contains(&name) && memcached::delete(server, keys, timeout).is_err() {
            down.insert(name);
        }
    }
    if down.is_empty() {
        Vec::new()
    } else {
        keys.to_vec()
    }
}

/// Records keys whose delete failed, so a later run retries them. If the ring cannot be
/// reached either, the report still names them.
fn journal_pending(cfg: &Config, keys: &[String]) {
    if let Ok(mut ring) = crate::ring::open(cfg) {
        let _ = add_pending(&mut ring, keys);
    }
}

/// Journals keys as pending, 1,000 to a statement (a rebalance with the cache down leaves one
/// per account).
fn add_pending(ring: &mut Db, keys: &[String]) -> Result<()> {
    for part in keys.chunks(1000) {
        ring.exec_drop(
            "journaling pending cache deletes",
            &format!(
                "INSERT INTO cache_pending (cache_key, since, attempts) VALUES {}
                 ON DUPLICATE KEY UPDATE attempts = attempts + 1",
                vec!["(?, UTC_TIMESTAMP(6), 1)"; part.len()].join(", ")
            ),
            part.to_vec(),
        )?;
    }
    Ok(())
}

/// The keys journaled as pending.
pub fn pending(ring: &mut Db) -> Result<Vec<String>> {
    ring.exec(
        "reading the pending cache deletes",
        "SELECT cache_key FROM cache_pending ORDER BY since, cache_key",
        (),
    )
}

/// Retries every pending delete (skipping servers in `down`): (deleted now, still pending).
pub fn flush(cfg: &Config, ring: &mut Db, down: &mut Down) -> Result<(Vec<String>, Vec<String>)> {
    let Some(cache) = &cfg.cache else {
        return Ok((Vec::new(), Vec::new()));
    };
    let keys = pending(ring)?;
    if keys.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    if !delete_everywhere(cache, &keys, io_timeout(cfg), down).is_empty() {
        // Another attempt, counted.
        add_pending(ring, &keys)?;
        return Ok((Vec::new(), keys));
    }
    for part in keys.chunks(1000) {
        ring.exec_drop(
            "clearing pending cache deletes",
            &format!(
                "DELETE FROM cache_pending WHERE cache_key IN ({})",
                crate::db::placeholders(part.len())
            ),
            part.to_vec(),
        )?;
    }
    Ok((keys, Vec::new()))
}

/// What a run that changed cached entries left undone.
#[derive(Clone, Debug, Serialize)]
pub struct Pending {
    pub pending: Vec<String>,
}

/// Deletes `keys` once more, journaling what could not be deleted.
pub fn redelete(cfg: &Config, keys: &[String]) {
    let Some(cache) = &cfg.cache else { return };
    let failed = delete_everywhere(cache, keys, io_timeout(cfg), &mut Down::new());
    if !failed.is_empty() {
        journal_pending(cfg, &failed);
    }
}

/// Starts `shardctl cache redelete` detached (its own process group, keys on its stdin), to
/// delete `keys` again after `wait`. False if it could not be started.
fn redelete_later(cfg: &Config, sources: &OptionSources, keys: &[String], wait: Duration) -> bool {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let Ok(me) = std::env::current_exe() else {
        return false;
    };
    let mut cmd = std::process::Command::new(me);
    cmd.arg("--config").arg(&cfg.path).arg("-q");
    if let Some(f) = &sources.defaults_file {
        cmd.arg("--defaults-file").arg(f);
    }
    if let Some(f) = &sources.extra_file {
        cmd.arg("--defaults-extra-file").arg(f);
    }
    if sources.none {
        cmd.arg("--no-defaults");
    }
    cmd.args([
        "cache",
        "redelete",
        "--after-ms",
        &wait.as_millis().to_string(),
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .process_group(0);
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    // Not waited for: it outlives us by design (init reaps it).
    child
        .stdin
        .take()
        .is_some_and(|mut stdin| stdin.write_all(keys.join("\n").as_bytes()).is_ok())
}

/// One cache server as `cache status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ServerState {
    pub host: String,
    pub port: u16,
    pub reachable: bool,
}

pub fn servers(cfg: &Config) -> Vec<ServerState> {
    let Some(cache) = &cfg.cache else {
        return Vec::new();
    };
    cache
        .servers
        .iter()
        .map(|s: &HostPort| ServerState {
            host: s.host.clone(),
            port: s.port,
            reachable: memcached::version(s, io_timeout(cfg)).is_ok(),
        })
        .collect()
}

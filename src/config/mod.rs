//! The TOML configuration: where the global ring and the ticket servers are, how to log in to
//! them and to the shards, and which per-user tables the shards hold.
//!
//! Unknown keys are rejected (a typo must not silently fall back to a default), and every value
//! is validated here, so the rest of the program works with checked types. Passwords come from a
//! file, an environment variable, or a MySQL option file — never the command line.

pub mod optionfile;
pub mod secret;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::types::{parse_duration, HostPort, Ident};
use optionfile::{Files, OptionFile};
use secret::Secret;

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub ring: RingConfig,
    pub tickets: Vec<TicketServer>,
    pub shards: ShardsConfig,
    pub net: NetOptions,
    /// The application's routing cache, which shardctl invalidates; None: no `[cache]`.
    pub cache: Option<CacheConfig>,
    /// `[locks]`: where lock records live.
    pub locks: LockBackend,
    /// `[migrate]`: online moves.
    pub migrate: MigrateConfig,
    /// Things worth telling the operator about the config (a password file others can read).
    pub warnings: Vec<String>,
}

/// `[locks] backend`: the ring's `locks` table (the default), or a ZooKeeper ensemble.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LockBackend {
    #[default]
    Mysql,
    Zookeeper(ZookeeperConfig),
}

impl LockBackend {
    /// The backend's name in JSON output and messages.
    pub fn name(&self) -> &'static str {
        match self {
            LockBackend::Mysql => "mysql",
            LockBackend::Zookeeper(_) => "zookeeper",
        }
    }
}

/// `[migrate]`: when a move copies while the user stays writable, and as whom it reads the
/// source's binary log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateConfig {
    /// `--mode auto` moves accounts of at least this many rows online.
    pub online_min_rows: u64,
    /// The replication server_id the binlog reader registers with; no replica may use it.
    pub server_id: u32,
}

impl Default for MigrateConfig {
    fn default() -> MigrateConfig {
        MigrateConfig {
            online_min_rows: 50_000,
            server_id: 4_242_424_242,
        }
    }
}

/// The ZooKeeper ensemble that keeps the locks, and where under it.
#[derive(Debug, Clone, PartialEq)]
pub struct ZookeeperConfig {
    pub servers: Vec<HostPort>,
    /// The chroot of shardctl's nodes; the lock NAME is `<root>/locks/NAME`.
    pub root: String,
    /// The session timeout asked of the ensemble: how long a holder that stopped answering
    /// keeps its ephemeral nodes, and the bound on waiting for an ensemble that does not answer.
    pub session_timeout: Duration,
    /// ZooKeeper digest authentication (`digest_user` and its password): with it, the nodes
    /// shardctl creates can be changed only by that identity (everyone may still read them).
    pub digest: Option<(String, Secret)>,
}

impl ZookeeperConfig {
    /// The connect string, as ZooKeeper clients write it.
    pub fn ensemble(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `[cache]`: the memcached servers where the application caches routing entries, and the
/// keys it uses for them.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub servers: Vec<HostPort>,
    /// The key of a user's entry, with `{user_id}` in it.
    pub user_key: String,
    /// The key of a shard's entry, with `{shard_id}` in it.
    pub shard_key: String,
    /// The longest time the application keeps an entry.
    pub ttl: Duration,
    /// When each key is deleted a second time (a reader that read the ring before our commit
    /// and filled the cache after the first delete).
    pub redelete_after: Duration,
}

impl CacheConfig {
    pub fn user_key(&self, user: u64) -> String {
        self.user_key.replace("{user_id}", &user.to_string())
    }

    pub fn shard_key(&self, shard_id: u32) -> String {
        self.shard_key.replace("{shard_id}", &shard_id.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct RingConfig {
    /// Tried in order; the first that answers is used.
    pub servers: Vec<HostPort>,
    pub database: Ident,
    pub login: Login,
}

#[derive(Debug, Clone)]
pub struct TicketServer {
    pub server: HostPort,
    pub database: Ident,
    /// Set per session when given. Production ticket servers set these server-wide; the sandbox
    /// keeps both of its ticket schemas on one server, so it sets them per session instead.
    pub auto_increment_increment: Option<u32>,
    pub auto_increment_offset: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ShardsConfig {
    pub database: Ident,
    pub login: Login,
    pub tables: Vec<TableSpec>,
    /// `write_guard = true`: moves guard their users with the triggers of `guard install`.
    pub write_guard: bool,
    /// `home_guard = true`: the same triggers refuse an application write for a user on every
    /// server but the one the ring routes that user's writes to, and drains, restores and rolls
    /// hand each user's writes from one server to the next with never two accepting them.
    pub home_guard: bool,
}

/// A per-user table on the shards: every row belongs to the user named in `owner_column`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub name: Ident,
    pub owner_column: Ident,
}

impl TableSpec {
    /// A statement built from this entry failed: a shard without the table or its owner
    /// column means the configuration does not match the schema (exit 2).
    pub fn explain(&self, err: Error) -> Error {
        use crate::error::DbErrorKind::{UnknownColumn, UnknownTable};
        if err.is(UnknownColumn) || err.is(UnknownTable) {
            return Error::Config(format!(
                "[[shards.tables]] `{}` (owner column `{}`) does not match the shard's schema: {err}",
                self.name, self.owner_column
            ));
        }
        err
    }
}

#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    Disabled,
    Preferred,
    Required,
    VerifyIdentity,
}

#[derive(Debug, Clone)]
pub struct NetOptions {
    pub tls: TlsMode,
    pub ca: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for NetOptions {
    fn default() -> NetOptions {
        NetOptions {
            tls: TlsMode::Disabled,
            ca: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ring: RawRing,
    #[serde(default)]
    tickets: Vec<RawTicket>,
    shards: RawShards,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    timeouts: RawTimeouts,
    cache: Option<RawCache>,
    locks: Option<RawLocks>,
    migrate: Option<RawMigrate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMigrate {
    online_min_rows: Option<u64>,
    server_id: Option<u32>,
}

fn migrate_config(raw: RawMigrate) -> std::result::Result<MigrateConfig, String> {
    let d = MigrateConfig::default();
    let server_id = raw.server_id.unwrap_or(d.server_id);
    if server_id == 0 {
        return Err(
            "[migrate] server_id must not be 0 (a server with id 0 refuses replicas)".into(),
        );
    }
    Ok(MigrateConfig {
        online_min_rows: raw.online_min_rows.unwrap_or(d.online_min_rows),
        server_id,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocks {
    #[serde(default = "default_lock_backend")]
    backend: String,
    servers: Option<Vec<String>>,
    root: Option<String>,
    session_timeout: Option<String>,
    digest_user: Option<String>,
    digest_password_file: Option<PathBuf>,
    digest_password_env: Option<String>,
}

fn default_lock_backend() -> String {
    "mysql".into()
}

/// `[locks] digest_user` with `digest_password_file` or `digest_password_env`.
fn zookeeper_digest(
    raw: &RawLocks,
    base: &Path,
    warnings: &mut Vec<String>,
) -> std::result::Result<Option<(String, Secret)>, String> {
    let password = match (&raw.digest_password_file, &raw.digest_password_env) {
        (Some(_), Some(_)) => {
            return Err("[locks] use one of digest_password_file and digest_password_env".into())
        }
        (Some(file), None) => {
            let path = base.join(file);
            let text = Disk
                .read(&path)
                .map_err(|e| format!("[locks] digest_password_file {e}"))?;
            if world_readable(&path) {
                warnings.push(format!(
                    "ZooKeeper password file {} is readable by everyone (chmod 600 {})",
                    path.display(),
                    path.display()
                ));
            }
            Some(text.trim_end_matches(['\n', '\r']).to_string())
        }
        (None, Some(var)) => {
            Some(std::env::var(var).map_err(|_| {
                format!("[locks] digest_password_env names ${var}, which is not set")
            })?)
        }
        (None, None) => None,
    };
    match (&raw.digest_user, password) {
        (None, None) => Ok(None),
        (Some(user), Some(password)) => {
            if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
                return Err(format!(
                    "[locks] digest_user `{user}` must be a name without `:` or control characters"
                ));
            }
            Ok(Some((user.clone(), Secret::new(password))))
        }
        (Some(_), None) => {
            Err("[locks] digest_user needs digest_password_file or digest_password_env".into())
        }
        (None, Some(_)) => Err("[locks] a digest password needs digest_user".into()),
    }
}

fn locks_config(
    raw: RawLocks,
    base: &Path,
    warnings: &mut Vec<String>,
) -> std::result::Result<LockBackend, String> {
    match raw.backend.as_str() {
        "mysql" => {
            let stray = [
                ("servers", raw.servers.is_some()),
                ("root", raw.root.is_some()),
                ("session_timeout", raw.session_timeout.is_some()),
                ("digest_user", raw.digest_user.is_some()),
                ("digest_password_file", raw.digest_password_file.is_some()),
                ("digest_password_env", raw.digest_password_env.is_some()),
            ];
            match stray.iter().find(|(_, given)| *given) {
                Some((key, _)) => Err(format!(
                    "[locks] {key} is for backend = \"zookeeper\"; the mysql backend keeps locks in the ring"
                )),
                None => Ok(LockBackend::Mysql),
            }
        }
        "zookeeper" => {
            let servers = raw.servers.clone().unwrap_or_default();
            if servers.is_empty() {
                return Err(
                    "[locks] backend = \"zookeeper\" needs servers = [\"HOST:PORT\", ...] (the ensemble)"
                        .into(),
                );
            }
            let servers = servers
                .iter()
                .map(|s| s.parse().map_err(|e| format!("[locks] servers: {e}")))
                .collect::<std::result::Result<Vec<HostPort>, String>>()?;
            let root = raw.root.clone().unwrap_or_else(|| "/shardctl".into());
            let segments_ok = root.strip_prefix('/').is_some_and(|r| {
                r.split('/')
                    .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            });
            if !segments_ok
                || root
                    .chars()
                    .any(|c| crate::types::is_hidden_char(c) || c.is_whitespace())
            {
                return Err(format!(
                    "[locks] root `{root}` must be an absolute ZooKeeper path like /shardctl (no trailing slash, no empty segments)"
                ));
            }
            if root == "/zookeeper" || root.starts_with("/zookeeper/") {
                return Err(format!(
                    "[locks] root `{root}` is inside /zookeeper, which ZooKeeper keeps for itself"
                ));
            }
            let digest = zookeeper_digest(&raw, base, warnings)?;
            let session_timeout = match raw.session_timeout {
                None => Duration::from_secs(6),
                Some(v) => match parse_duration(&v) {
                    Ok(d) if (Duration::from_secs(1)..=Duration::from_secs(120)).contains(&d) => d,
                    Ok(_) => {
                        return Err(format!(
                            "[locks] session_timeout `{v}` must be between 1s and 2m"
                        ))
                    }
                    Err(e) => return Err(format!("[locks] session_timeout: {e}")),
                },
            };
            Ok(LockBackend::Zookeeper(ZookeeperConfig {
                servers,
                root,
                session_timeout,
                digest,
            }))
        }
        other => Err(format!(
            "[locks] backend `{other}` is not one of \"mysql\", \"zookeeper\""
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    servers: Vec<String>,
    #[serde(default = "default_user_key")]
    user_key: String,
    #[serde(default = "default_shard_key")]
    shard_key: String,
    #[serde(default = "default_cache_ttl")]
    ttl: String,
    #[serde(default = "default_redelete_after")]
    redelete_after: String,
}

fn default_user_key() -> String {
    "shardctl:user:{user_id}".into()
}
fn default_shard_key() -> String {
    "shardctl:shard:{shard_id}".into()
}
fn default_cache_ttl() -> String {
    "30m".into()
}
fn default_redelete_after() -> String {
    "2s".into()
}

/// A memcached key template: `{placeholder}` once, and what memcached accepts around it (no
/// whitespace or control characters; at most 250 bytes once filled in).
fn key_template(
    what: &str,
    template: &str,
    placeholder: &str,
) -> std::result::Result<String, String> {
    if template.matches(placeholder).count() != 1 {
        return Err(format!(
            "[cache] {what} `{template}` must contain {placeholder} once"
        ));
    }
    if template
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "[cache] {what} `{template}` may not contain spaces or control characters"
        ));
    }
    // The longest id is 20 digits.
    if template.len() - placeholder.len() + 20 > 250 {
        return Err(format!(
            "[cache] {what} is longer than memcached's 250-byte keys"
        ));
    }
    Ok(template.to_string())
}

fn cache_config(raw: RawCache) -> std::result::Result<CacheConfig, String> {
    if raw.servers.is_empty() {
        return Err("[cache] servers lists no memcached server".into());
    }
    let servers = raw
        .servers
        .iter()
        .map(|s| s.parse().map_err(|e| format!("[cache] servers: {e}")))
        .collect::<std::result::Result<Vec<HostPort>, String>>()?;
    let duration = |key: &str, v: &str| -> std::result::Result<Duration, String> {
        match parse_duration(v) {
            Ok(d) if d.is_zero() => Err(format!("[cache] {key}: `{v}` must be above zero")),
            Ok(d) => Ok(d),
            Err(e) => Err(format!("[cache] {key}: {e}")),
        }
    };
    Ok(CacheConfig {
        servers,
        user_key: key_template("user_key", &raw.user_key, "{user_id}")?,
        shard_key: key_template("shard_key", &raw.shard_key, "{shard_id}")?,
        ttl: duration("ttl", &raw.ttl)?,
        redelete_after: duration("redelete_after", &raw.redelete_after)?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRing {
    servers: Vec<String>,
    #[serde(default = "default_ring_database")]
    database: String,
    #[serde(default)]
    auth: RawAuth,
}

fn default_ring_database() -> String {
    "shardctl".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    user: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    defaults_file: Option<PathBuf>,
    /// Log in without a password and read no option file (the sandbox's root).
    #[serde(default)]
    no_password: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTicket {
    server: String,
    database: String,
    auto_increment_increment: Option<u32>,
    auto_increment_offset: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShards {
    database: String,
    #[serde(default)]
    auth: RawAuth,
    /// Moves guard their users with the triggers `guard install` puts on every shard server.
    #[serde(default)]
    write_guard: bool,
    /// Every shard server refuses application writes for users whose writes go elsewhere.
    #[serde(default)]
    home_guard: bool,
    #[serde(default)]
    tables: Vec<RawTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: String,
    owner_column: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    mode: TlsMode,
    ca: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect: Option<String>,
    read: Option<String>,
    write: Option<String>,
}

/// Where the config comes from: `--config`, else `$SHARDCTL_CONFIG` (clap folds both into one
/// value), else the user's config directory.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let dir = dirs::config_dir().ok_or_else(|| {
        Error::Config("no config given: pass --config FILE or set SHARDCTL_CONFIG".into())
    })?;
    Ok(dir.join("shardctl").join("config.toml"))
}

/// Which MySQL option files supply credentials for an `auth` section that names no password
/// source of its own, as the client's `--defaults-file`, `--defaults-extra-file` and
/// `--no-defaults` choose them.
#[derive(Clone, Debug, Default)]
pub struct OptionSources {
    /// Read only this file.
    pub defaults_file: Option<PathBuf>,
    /// Read this file after the global ones, before `~/.my.cnf`.
    pub extra_file: Option<PathBuf>,
    /// Read none.
    pub none: bool,
}

/// The global option files the client reads, in its order.
const GLOBAL_OPTION_FILES: &[&str] = &["/etc/my.cnf", "/etc/mysql/my.cnf"];

impl OptionSources {
    /// The option files in effect, read and merged in order (missing usual files are skipped;
    /// a file named on the command line must exist).
    fn read(&self) -> Result<Option<OptionFile>, String> {
        if self.none {
            return Ok(None);
        }
        if let Some(f) = &self.defaults_file {
            return OptionFile::load(f, &Disk).map(Some);
        }
        let mut merged = OptionFile::default();
        let user = dirs::home_dir().map(|h| h.join(".my.cnf"));
        for path in GLOBAL_OPTION_FILES.iter().map(PathBuf::from) {
            if path.exists() {
                merged.load_more(&path, &Disk)?;
            }
        }
        if let Some(extra) = &self.extra_file {
            merged.load_more(extra, &Disk)?;
        }
        if let Some(path) = user.filter(|p| p.exists()) {
            merged.load_more(&path, &Disk)?;
        }
        Ok(Some(merged))
    }
}

/// The disk, as option files and password files are read from it: a file anyone may write is
/// refused (whoever wrote it would choose the credentials, or the server, we log in to).
struct Disk;

fn refuse_world_writable(path: &Path) -> Result<std::fs::Metadata, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o002 != 0 {
        return Err(format!(
            "{} is world-writable: refusing to read credentials from it (chmod o-w {})",
            path.display(),
            path.display()
        ));
    }
    Ok(meta)
}

fn world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

impl Files for Disk {
    fn read(&self, path: &Path) -> Result<String, String> {
        refuse_world_writable(path)?;
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "cnf"))
            .collect();
        files.sort();
        Ok(files)
    }
}

/// Warnings for option files that hold a password anyone on the machine can read.
fn readable_password_warnings(opts: &OptionFile) -> Vec<String> {
    opts.files
        .iter()
        .filter(|(path, has_password)| *has_password && world_readable(path))
        .map(|(path, _)| {
            format!(
                "{} holds a password and is readable by everyone (chmod 600 {})",
                path.display(),
                path.display()
            )
        })
        .collect()
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        Config::load_with(path, &OptionSources::default())
    }

    pub fn load_with(path: &Path, sources: &OptionSources) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read config file {}: {e} (pass --config FILE or set SHARDCTL_CONFIG; \
                 `shardctl sandbox up` writes one)",
                path.display()
            ))
        })?;
        Config::parse_with(&text, path, sources)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        Config::parse_with(text, path, &OptionSources::default())
    }

    pub fn parse_with(text: &str, path: &Path, sources: &OptionSources) -> Result<Config> {
        let mut p = Parsing {
            path,
            base: path.parent().unwrap_or(Path::new(".")),
            sources,
            discovered: None,
            warnings: Vec::new(),
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| p.bad(crate::error::one_line(&e.to_string())))?;
        let ring = p.ring(&raw.ring)?;
        let tickets = p.tickets(&raw.tickets)?;
        let shards = p.shards(&raw.shards)?;
        let net = p.net(raw.tls, &raw.timeouts)?;
        let cache = raw
            .cache
            .map(cache_config)
            .transpose()
            .map_err(|e| p.bad(e))?;
        let locks = raw
            .locks
            .map(|l| locks_config(l, p.base, &mut p.warnings))
            .transpose()
            .map_err(|e| p.bad(e))?
            .unwrap_or_default();
        let migrate = raw
            .migrate
            .map(migrate_config)
            .transpose()
            .map_err(|e| p.bad(e))?
            .unwrap_or_default();
        Ok(Config {
            path: path.to_path_buf(),
            ring,
            tickets,
            shards,
            net,
            cache,
            locks,
            migrate,
            warnings: p.warnings,
        })
    }
}

/// One config file being checked section by section: what the sections share (where its
/// relative paths start, the option files, the warnings so far) travels here between them.
struct Parsing<'a> {
    path: &'a Path,
    /// Relative paths in the file are relative to the file, not to the working directory.
    base: &'a Path,
    sources: &'a OptionSources,
    /// The option files, read once, and only if an auth section needs them.
    discovered: Option<Option<OptionFile>>,
    warnings: Vec<String>,
}

impl Parsing<'_> {
    /// Every mistake names the file it is in: the operator may have several.
    fn bad(&self, msg: String) -> Error {
        Error::Config(format!("config {}: {msg}", self.path.display()))
    }

    /// Names end up quoted in SQL: they are checked here, once, and a bad one names its key.
    fn ident(&self, what: &str, v: &str) -> Result<Ident> {
        v.parse::<Ident>()
            .map_err(|e| self.bad(format!("{what}: {e}")))
    }

    /// An `auth` section's login. The option files are read at the first section that leaves
    /// its password to them (a config that names its own sources never touches them), and
    /// their warnings are given once.
    fn login(&mut self, auth: &RawAuth, section: &str) -> Result<Login> {
        if !auth.needs_option_files() {
            return resolve_login(auth, self.base, None, &mut self.warnings)
                .map_err(|e| self.bad(format!("[{section}] {e}")));
        }
        if self.discovered.is_none() {
            let found = self
                .sources
                .read()
                .map_err(|e| self.bad(format!("[{section}] option files: {e}")))?;
            if let Some(f) = &found {
                self.warnings.extend(readable_password_warnings(f));
            }
            self.discovered = Some(found);
        }
        resolve_login(
            auth,
            self.base,
            self.discovered.as_ref().and_then(Option::as_ref),
            &mut self.warnings,
        )
        .map_err(|e| self.bad(format!("[{section}] {e}")))
    }

    /// `[ring]`: its servers are tried in order, so with none there is nothing to try.
    fn ring(&mut self, raw: &RawRing) -> Result<RingConfig> {
        if raw.servers.is_empty() {
            return Err(self.bad("[ring] servers must name at least one HOST:PORT".into()));
        }
        let servers = raw
            .servers
            .iter()
            .map(|s| s.parse::<HostPort>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.bad(format!("[ring] servers: {e}")))?;
        Ok(RingConfig {
            servers,
            database: self.ident("[ring] database", &raw.database)?,
            login: self.login(&raw.auth, "ring.auth")?,
        })
    }

    /// `[[tickets]]`: an auto-increment setting of zero is outside MySQL's range, so it is
    /// refused here, where the message can name its key.
    fn tickets(&self, raw: &[RawTicket]) -> Result<Vec<TicketServer>> {
        raw.iter()
            .map(|t| {
                let check_positive = |v: Option<u32>, key: &str| match v {
                    Some(0) => Err(self.bad(format!("[[tickets]] {key} must be at least 1"))),
                    _ => Ok(v),
                };
                Ok(TicketServer {
                    server: t
                        .server
                        .parse()
                        .map_err(|e| self.bad(format!("[[tickets]] server: {e}")))?,
                    database: self.ident("[[tickets]] database", &t.database)?,
                    auto_increment_increment: check_positive(
                        t.auto_increment_increment,
                        "auto_increment_increment",
                    )?,
                    auto_increment_offset: check_positive(
                        t.auto_increment_offset,
                        "auto_increment_offset",
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()
    }

    /// `[shards]`: what a move copies (see `check_tables`) and how it logs in to the shards.
    fn shards(&mut self, raw: &RawShards) -> Result<ShardsConfig> {
        let tables = raw
            .tables
            .iter()
            .map(|t| {
                Ok(TableSpec {
                    name: self.ident("[[shards.tables]] name", &t.name)?,
                    owner_column: self.ident("[[shards.tables]] owner_column", &t.owner_column)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        check_tables(&tables).map_err(|e| self.bad(e))?;
        Ok(ShardsConfig {
            database: self.ident("[shards] database", &raw.database)?,
            login: self.login(&raw.auth, "shards.auth")?,
            tables,
            write_guard: raw.write_guard,
            home_guard: raw.home_guard,
        })
    }

    /// `[tls]` and `[timeouts]`: how every connection is made, to the ring and shards alike.
    fn net(&self, tls: RawTls, timeouts: &RawTimeouts) -> Result<NetOptions> {
        let defaults = NetOptions::default();
        Ok(NetOptions {
            tls: tls.mode,
            ca: tls.ca.map(|p| self.base.join(p)),
            connect_timeout: self.timeout(
                timeouts.connect.as_deref(),
                defaults.connect_timeout,
                "connect",
            )?,
            read_timeout: self.timeout(timeouts.read.as_deref(), defaults.read_timeout, "read")?,
            write_timeout: self.timeout(
                timeouts.write.as_deref(),
                defaults.write_timeout,
                "write",
            )?,
        })
    }

    /// One `[timeouts]` key. Zero would mean "wait forever" to the socket: every wait must be
    /// bounded.
    fn timeout(&self, v: Option<&str>, default: Duration, key: &str) -> Result<Duration> {
        match v {
            None => Ok(default),
            Some(s) => match parse_duration(s) {
                Ok(d) if d < Duration::from_millis(1) => Err(self.bad(format!(
                    "[timeouts] {key}: `{s}` must be at least 1ms (a timeout of zero never ends)"
                ))),
                Ok(d) => Ok(d),
                Err(e) => Err(self.bad(format!("[timeouts] {key}: {e}"))),
            },
        }
    }
}

/// A move copies exactly the tables listed: with none listed it would flip a user with nothing
/// copied, and the rows left behind would be deleted as strays by a later move. A table listed
/// twice would be copied twice.
fn check_tables(tables: &[TableSpec]) -> std::result::Result<(), String> {
    if tables.is_empty() {
        return Err("[shards] lists no per-user tables: add a [[shards.tables]] entry (name, owner_column) for every table that holds users' rows".into());
    }
    for (i, t) in tables.iter().enumerate() {
        if tables[..i].iter().any(|u| u.name == t.name) {
            return Err(format!(
                "[[shards.tables]] lists table `{}` more than once",
                t.name
            ));
        }
    }
    Ok(())
}

impl RawAuth {
    /// Whether the section leaves its password (and perhaps user) to the option files.
    fn needs_option_files(&self) -> bool {
        !self.no_password
            && self.password_file.is_none()
            && self.password_env.is_none()
            && self.defaults_file.is_none()
    }
}

/// Resolves one `auth` section into a user and an optional password: from its own
/// `password_file`, `password_env` or `defaults_file`, else from the option files in effect
/// (`found`). Warnings about readable password files go to `warnings`.
fn resolve_login(
    auth: &RawAuth,
    base: &Path,
    found: Option<&OptionFile>,
    warnings: &mut Vec<String>,
) -> Result<Login, String> {
    let sources = [
        auth.password_file.is_some(),
        auth.password_env.is_some(),
        auth.defaults_file.is_some(),
        auth.no_password,
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err(
            "use only one of password_file, password_env, defaults_file and no_password".into(),
        );
    }
    let mut user = auth.user.clone();
    let mut password = None;
    if let Some(file) = &auth.password_file {
        let path = base.join(file);
        let text = Disk.read(&path).map_err(|e| format!("password_file {e}"))?;
        if world_readable(&path) {
            warnings.push(format!(
                "password file {} is readable by everyone (chmod 600 {})",
                path.display(),
                path.display()
            ));
        }
        password = Some(Secret::new(text.trim_end_matches(['\n', '\r'])));
    }
    if let Some(var) = &auth.password_env {
        let value = std::env::var(var)
            .map_err(|_| format!("password_env names ${var}, which is not set"))?;
        password = Some(Secret::new(value));
    }
    let own_file;
    let options = match &auth.defaults_file {
        Some(file) => {
            let path = base.join(file);
            own_file = OptionFile::load(&path, &Disk).map_err(|e| format!("defaults_file {e}"))?;
            warnings.extend(readable_password_warnings(&own_file));
            Some(&own_file)
        }
        None => found,
    };
    if let Some(opts) = options {
        let groups = ["client", "shardctl"];
        if user.is_none() {
            user = opts.get(&groups, "user").map(str::to_string);
        }
        password = opts.get(&groups, "password").map(Secret::new);
    }
    Ok(Login {
        user: user.unwrap_or_else(|| "root".into()),
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[ring]
servers = ["127.0.0.1:3306", "db2:3306"]
[ring.auth]
user = "ops"
password_env = "SHARDCTL_TEST_PW_GOOD"

[[tickets]]
server = "127.0.0.1:3306"
database = "tickets_a"
auto_increment_increment = 2
auto_increment_offset = 1

[shards]
database = "app"
[[shards.tables]]
name = "photos"
owner_column = "owner_id"

[timeouts]
connect = "2s"
"#;

    #[test]
    fn parses_a_full_config() {
        std::env::set_var("SHARDCTL_TEST_PW_GOOD", "s3cret");
        let c = Config::parse(GOOD, Path::new("/etc/shardctl/config.toml")).unwrap();
        assert_eq!(c.ring.servers.len(), 2);
        assert_eq!(c.ring.database.as_str(), "shardctl");
        assert_eq!(c.ring.login.user, "ops");
        assert_eq!(c.ring.login.password.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(c.tickets[0].auto_increment_offset, Some(1));
        assert_eq!(c.shards.tables[0].owner_column.as_str(), "owner_id");
        assert_eq!(c.net.connect_timeout, Duration::from_secs(2));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn rejects_bad_configs() {
        let p = Path::new("c.toml");
        let cases = [
            GOOD.replace("[timeouts]", "[timeouts]\nbogus = 1"),
            GOOD.replace("user = \"ops\"", "usr = \"ops\""),
            GOOD.replace("\"db2:3306\"", "\"db2\""),
            GOOD.replace("database = \"app\"", "database = \"app`; DROP\""),
            GOOD.replace("connect = \"2s\"", "connect = \"soon\""),
            GOOD.replace("auto_increment_offset = 1", "auto_increment_offset = 0"),
            GOOD.replace("SHARDCTL_TEST_PW_GOOD", "SHARDCTL_TEST_PW_UNSET"),
            "[ring]\nservers = []\n[shards]\ndatabase = \"a\"\n".to_string(),
            GOOD.replace("[[shards.tables]]\nname = \"photos\"\nowner_column = \"owner_id\"\n", ""),
            GOOD.replace("owner_column = \"owner_id\"\n", "owner_column = \"owner_id\"\n[[shards.tables]]\nname = \"photos\"\nowner_column = \"user_id\"\n"),
            "not toml at all [".to_string(),
        ];
        std::env::set_var("SHARDCTL_TEST_PW_GOOD", "s3cret");
        for (i, text) in cases.iter().enumerate() {
            let err = Config::parse(text, p).expect_err(&format!("case {i} should fail"));
            assert!(matches!(err, Error::Config(_)), "case {i}: {err:?}");
            assert!(!err.to_string().contains('\n'), "case {i}: one line");
        }
    }

    #[test]
    fn the_locks_section_chooses_a_backend() {
        let p = Path::new("c.toml");
        let with = |locks: &str| format!("{MINIMAL}[locks]\n{locks}");
        assert_eq!(Config::parse(MINIMAL, p).unwrap().locks, LockBackend::Mysql);
        assert_eq!(
            Config::parse(&with("backend = \"mysql\"\n"), p)
                .unwrap()
                .locks,
            LockBackend::Mysql
        );
        let zk = Config::parse(
            &with("backend = \"zookeeper\"\nservers = [\"zk1:2181\", \"zk2:2181\"]\n"),
            p,
        )
        .unwrap();
        let LockBackend::Zookeeper(z) = &zk.locks else {
            panic!("{:?}", zk.locks)
        };
        assert_eq!(z.root, "/shardctl");
        assert_eq!(z.session_timeout, Duration::from_secs(6));
        assert_eq!(z.ensemble(), "zk1:2181,zk2:2181");
        assert_eq!(zk.locks.name(), "zookeeper");
        for bad in [
            "backend = \"etcd\"\n",
            "backend = \"zookeeper\"\n",
            "backend = \"zookeeper\"\nservers = []\n",
            "backend = \"zookeeper\"\nservers = [\"zk1\"]\n",
            "backend = \"zookeeper\"\nservers = [\"zk1:2181\"]\nroot = \"shardctl\"\n",
            "backend = \"zookeeper\"\nservers = [\"zk1:2181\"]\nroot = \"/a//b\"\n",
            "backend = \"zookeeper\"\nservers = [\"zk1:2181\"]\nroot = \"/a/\"\n",
            "backend = \"zookeeper\"\nservers = [\"zk1:2181\"]\nsession_timeout = \"0s\"\n",
            "backend = \"zookeeper\"\nservers = [\"zk1:2181\"]\nsession_timeout = \"10m\"\n",
            "servers = [\"zk1:2181\"]\n",
            "backend = \"mysql\"\nroot = \"/x\"\n",
            "backend = \"zookeeper\"\nservers = [\"zk1:2181\"]\nbogus = 1\n",
        ] {
            let err = Config::parse(&with(bad), p).expect_err(bad);
            assert!(matches!(err, Error::Config(_)), "{bad}: {err:?}");
            let text = err.to_string();
            assert!(
                text.contains("[locks]") || text.contains("unknown field"),
                "{bad}: {err}"
            );
        }
    }

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    const MINIMAL: &str = "[ring]\nservers = [\"db:3306\"]\n[shards]\ndatabase = \"app\"\n[[shards.tables]]\nname = \"photos\"\nowner_column = \"owner_id\"\n";

    #[test]
    fn option_files_with_includes_supply_credentials() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "secret.cnf",
            "[shardctl]\npassword = \"in cl\\\"ude\"\n",
            0o600,
        );
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        write(
            &dir.path().join("conf.d"),
            "user.cnf",
            "[client]\nuser = ops\n",
            0o600,
        );
        let main = write(
            dir.path(),
            "my.cnf",
            "[client]\npassword = old\n!include secret.cnf\n!includedir conf.d\n",
            0o644,
        );
        let sources = OptionSources {
            defaults_file: Some(main.clone()),
            ..Default::default()
        };
        let c = Config::parse_with(MINIMAL, &dir.path().join("c.toml"), &sources).unwrap();
        assert_eq!(c.ring.login.user, "ops");
        assert_eq!(
            c.ring.login.password.as_ref().unwrap().expose(),
            "in cl\"ude"
        );
        assert_eq!(c.shards.login.password, c.ring.login.password);
        // my.cnf itself holds a password and anyone may read it.
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("my.cnf holds a password"));

        let none = OptionSources {
            none: true,
            ..Default::default()
        };
        let c = Config::parse_with(MINIMAL, &dir.path().join("c.toml"), &none).unwrap();
        assert!(c.ring.login.password.is_none());
        assert_eq!(c.ring.login.user, "root");

        // The sandbox's way: no password, whatever the option files say.
        let own = MINIMAL.replace("[shards]", "[ring.auth]\nno_password = true\n[shards]");
        let c = Config::parse_with(&own, &dir.path().join("c.toml"), &sources).unwrap();
        assert!(c.ring.login.password.is_none());
        assert!(c.shards.login.password.is_some());
    }

    #[test]
    fn world_writable_credentials_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cnf = write(dir.path(), "open.cnf", "[client]\npassword = x\n", 0o666);
        let pw = write(dir.path(), "pw", "x\n", 0o666);
        let included = write(dir.path(), "inc.cnf", "!include open.cnf\n", 0o600);
        for auth in [
            format!("defaults_file = \"{}\"", cnf.display()),
            format!("password_file = \"{}\"", pw.display()),
            format!("defaults_file = \"{}\"", included.display()),
        ] {
            let text = MINIMAL.replace("[shards]", &format!("[ring.auth]\n{auth}\n[shards]"));
            let err = Config::parse(&text, &dir.path().join("c.toml")).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{err:?}");
            assert!(err.to_string().contains("world-writable"), "{err}");
        }
        let sources = OptionSources {
            defaults_file: Some(cnf),
            ..Default::default()
        };
        let err = Config::parse_with(MINIMAL, &dir.path().join("c.toml"), &sources).unwrap_err();
        assert!(err.to_string().contains("world-writable"), "{err}");
    }

    #[test]
    fn readable_password_files_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pw", "hunter2\n", 0o644);
        let text = MINIMAL.replace("[shards]", "[ring.auth]\npassword_file = \"pw\"\n[shards]");
        let none = OptionSources {
            none: true,
            ..Default::default()
        };
        let c = Config::parse_with(&text, &dir.path().join("c.toml"), &none).unwrap();
        assert_eq!(c.ring.login.password.as_ref().unwrap().expose(), "hunter2");
        assert_eq!(c.warnings.len(), 1);
        assert!(!c.warnings[0].contains("hunter2"));
        write(dir.path(), "pw", "hunter2\n", 0o600);
        let c = Config::parse_with(&text, &dir.path().join("c.toml"), &none).unwrap();
        assert!(c.warnings.is_empty());
    }
}

//! The TOML configuration: where the global ring and the ticket servers are, how to log in to
//! them and to the shards, and which per-user tables the shards hold.
//!
//! Unknown keys are rejected (a typo must not silently fall back to a default), and every value
//! is validated here, so the rest of the program works with checked types. Passwords come from a
//! file, an environment variable, or a MySQL option file — never the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::optionfile::OptionFile;
use crate::secret::Secret;
use crate::types::{parse_duration, HostPort, Ident};

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub ring: RingConfig,
    pub tickets: Vec<TicketServer>,
    pub shards: ShardsConfig,
    pub net: NetOptions,
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
}

/// A per-user table on the shards: every row belongs to the user named in `owner_column`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub name: Ident,
    pub owner_column: Ident,
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

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read config file {}: {e} (pass --config FILE or set SHARDCTL_CONFIG; \
                 `shardctl sandbox up` writes one)",
                path.display()
            ))
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let bad = |msg: String| Error::Config(format!("config {}: {msg}", path.display()));
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| bad(crate::error::one_line(&e.to_string())))?;
        let base = path.parent().unwrap_or(Path::new("."));

        if raw.ring.servers.is_empty() {
            return Err(bad("[ring] servers must name at least one HOST:PORT".into()));
        }
        let servers = raw
            .ring
            .servers
            .iter()
            .map(|s| s.parse::<HostPort>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("[ring] servers: {e}")))?;
        let ident =
            |what: &str, v: &str| v.parse::<Ident>().map_err(|e| bad(format!("{what}: {e}")));
        let ring = RingConfig {
            servers,
            database: ident("[ring] database", &raw.ring.database)?,
            login: resolve_login(&raw.ring.auth, base)
                .map_err(|e| bad(format!("[ring.auth] {e}")))?,
        };
        let tickets = raw
            .tickets
            .iter()
            .map(|t| {
                let check_positive = |v: Option<u32>, key: &str| match v {
                    Some(0) => Err(bad(format!("[[tickets]] {key} must be at least 1"))),
                    _ => Ok(v),
                };
                Ok(TicketServer {
                    server: t
                        .server
                        .parse()
                        .map_err(|e| bad(format!("[[tickets]] server: {e}")))?,
                    database: ident("[[tickets]] database", &t.database)?,
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
            .collect::<Result<Vec<_>>>()?;
        let tables = raw
            .shards
            .tables
            .iter()
            .map(|t| {
                Ok(TableSpec {
                    name: ident("[[shards.tables]] name", &t.name)?,
                    owner_column: ident("[[shards.tables]] owner_column", &t.owner_column)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let shards = ShardsConfig {
            database: ident("[shards] database", &raw.shards.database)?,
            login: resolve_login(&raw.shards.auth, base)
                .map_err(|e| bad(format!("[shards.auth] {e}")))?,
            tables,
        };
        let timeout = |v: &Option<String>, default: Duration, key: &str| match v {
            None => Ok(default),
            Some(s) => parse_duration(s).map_err(|e| bad(format!("[timeouts] {key}: {e}"))),
        };
        let defaults = NetOptions::default();
        let net = NetOptions {
            tls: raw.tls.mode,
            ca: raw.tls.ca.map(|p| base.join(p)),
            connect_timeout: timeout(&raw.timeouts.connect, defaults.connect_timeout, "connect")?,
            read_timeout: timeout(&raw.timeouts.read, defaults.read_timeout, "read")?,
            write_timeout: timeout(&raw.timeouts.write, defaults.write_timeout, "write")?,
        };
        Ok(Config {
            path: path.to_path_buf(),
            ring,
            tickets,
            shards,
            net,
        })
    }
}

/// Resolves one `auth` section into a user and an optional password.
fn resolve_login(auth: &RawAuth, base: &Path) -> Result<Login, String> {
    let sources = [
        auth.password_file.is_some(),
        auth.password_env.is_some(),
        auth.defaults_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err("use only one of password_file, password_env and defaults_file".into());
    }
    let mut user = auth.user.clone();
    let mut password = None;
    if let Some(file) = &auth.password_file {
        let path = base.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("password_file {}: {e}", path.display()))?;
        password = Some(Secret::new(text.trim_end_matches(['\n', '\r'])));
    }
    if let Some(var) = &auth.password_env {
        let value = std::env::var(var)
            .map_err(|_| format!("password_env names ${var}, which is not set"))?;
        password = Some(Secret::new(value));
    }
    if let Some(file) = &auth.defaults_file {
        let path = base.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("defaults_file {}: {e}", path.display()))?;
        let opts = OptionFile::parse(&text)
            .map_err(|e| format!("defaults_file {}: {e}", path.display()))?;
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
            "not toml at all [".to_string(),
        ];
        std::env::set_var("SHARDCTL_TEST_PW_GOOD", "s3cret");
        for (i, text) in cases.iter().enumerate() {
            let err = Config::parse(text, p).expect_err(&format!("case {i} should fail"));
            assert!(matches!(err, Error::Config(_)), "case {i}: {err:?}");
            assert!(!err.to_string().contains('\n'), "case {i}: one line");
        }
    }
}

//! What `doctor` checks, as plain functions over what the servers report, so the rules are
//! tested without a server and the command only gathers facts.

use std::collections::HashSet;

use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Check {
    /// The server (or `ring`, `tickets`) the check is about.
    pub target: String,
    pub check: String,
    pub ok: bool,
    pub detail: String,
    /// What to do about a failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(target: &str, check: &str, detail: impl Into<String>) -> Check {
        Check {
            target: target.into(),
            check: check.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn fail(
        target: &str,
        check: &str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            target: target.into(),
            check: check.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Which server family a server is: the privileges differ in name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

impl Flavor {
    /// From `SELECT VERSION()`.
    pub fn of(version: &str) -> Flavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }
}

/// One privilege shardctl needs, satisfied by any of `any_of` (the first is the one to grant);
/// `global` ones can only be granted `ON *.*`.
#[derive(Clone, Debug, PartialEq)]
pub struct Need {
    pub any_of: &'static [&'static str],
    pub global: bool,
    /// What it is for, for the operator reading doctor's output.
    pub for_what: &'static str,
}

const fn db(p: &'static [&'static str], for_what: &'static str) -> Need {
    Need {
        any_of: p,
        global: false,
        for_what,
    }
}

const fn global(p: &'static [&'static str], for_what: &'static str) -> Need {
    Need {
        any_of: p,
        global: true,
        for_what,
    }
}

fn kill(f: Flavor) -> Need {
    match f {
        Flavor::MariaDb => global(
            &["CONNECTION ADMIN", "SUPER"],
            "KILL of a lock holder's session",
        ),
        Flavor::MySql => global(
            &["CONNECTION_ADMIN", "SUPER"],
            "KILL of a lock holder's session",
        ),
    }
}

/// `SET SESSION sql_log_bin = 0`: guard rows and the home guard's rules are written to each
/// server alone, never replicated.
fn unlogged(f: Flavor) -> Need {
    let why = "writing guard rows and home-guard rules to one server alone (sql_log_bin = 0)";
    match f {
        Flavor::MariaDb => global(&["BINLOG ADMIN", "SUPER"], why),
        Flavor::MySql => global(&["SYSTEM_VARIABLES_ADMIN", "SUPER"], why),
    }
}

/// Reading `SHOW SLAVE STATUS`: MariaDB 10.5.9 and later moved it from REPLICATION CLIENT to
/// SLAVE MONITOR.
fn replication_monitor(f: Flavor) -> Need {
    match f {
        Flavor::MariaDb => global(
            &["SLAVE MONITOR", "REPLICA MONITOR", "SUPER"],
            "replication state and lag",
        ),
        Flavor::MySql => global(
            &["REPLICATION CLIENT", "SUPER"],
            "replication state and lag",
        ),
    }
}

/// What shardctl does on the ring database.
pub fn ring_needs(f: Flavor) -> Vec<Need> {
    let dir = "the directory, locks, journal and audit log";
    vec![
        db(&["SELECT"], dir),
        db(&["INSERT"], dir),
        db(&["UPDATE"], dir),
        db(&["DELETE"], dir),
        db(&["CREATE"], "init"),
        db(&["INDEX"], "init"),
        db(&["ALTER"], "init upgrades"),
        kill(f),
    ]
}

/// What shardctl does on shard servers: users' rows, the fence tables, lag, sessions, KILL.
pub fn shard_needs(f: Flavor) -> Vec<Need> {
    let rows = "moving users' rows";
    vec![
        db(&["SELECT"], rows),
        db(&["INSERT"], rows),
        db(&["UPDATE"], rows),
        db(&["DELETE"], rows),
        db(&["CREATE"], "the fence and guard tables"),
        db(&["TRIGGER"], "the guard's triggers (guard install)"),
        // The server's own rule for CREATE TRIGGER while it writes a binary log.
        global(
            &["SUPER"],
            "guard install with the binary log on (unless log_bin_trust_function_creators=ON)",
        ),
        db(&["ALTER"], "guard install upgrading an older guard table"),
        db(&["DROP"], "guard remove"),
        global(&["PROCESS"], "seeing application sessions (drain)"),
        unlogged(f),
        replication_monitor(f),
        kill(f),
    ]
    .into_iter()
    .chain(binlog_reading(f))
    .collect()
}

/// Following a server's binary log as a replica does (online moves; MariaDB only).
fn binlog_reading(f: Flavor) -> Vec<Need> {
    match f {
        Flavor::MariaDb => vec![
            global(
                &["REPLICATION SLAVE"],
                "online moves: reading the binary log",
            ),
            global(
                &["BINLOG MONITOR", "REPLICATION CLIENT", "SUPER"],
                "online moves: the binary log position",
            ),
            global(
                &["REPLICATION MASTER ADMIN"],
                "online moves: the server ids of registered replicas (SHOW SLAVE HOSTS)",
            ),
        ],
        Flavor::MySql => Vec::new(),
    }
}

/// What a drain must have on every shard server before it trusts what it sees: without
/// PROCESS a server shows only our own session, and a drain would take "no sessions" for
/// drained.
pub fn drain_needs(f: Flavor) -> Vec<Need> {
    vec![
        global(&["PROCESS"], "seeing application sessions (drain)"),
        replication_monitor(f),
    ]
}

/// The needs not met by `have` (privilege names, upper case, `_` read as a space;
/// `ALL PRIVILEGES` covers everything).
pub fn missing_privileges(have: &HashSet<String>, needs: &[Need]) -> Vec<Need> {
    if have.contains("ALL PRIVILEGES") {
        return Vec::new();
    }
    needs
        .iter()
        .filter(|n| !n.any_of.iter().any(|p| have.contains(&p.replace('_', " "))))
        .cloned()
        .collect()
}

/// The GRANT statements that give `account` (as `CURRENT_USER()` prints it, `user@host`) what
/// is missing: one for the database, one `ON *.*`.
pub fn grant_statements(missing: &[Need], database: &str, account: &str) -> Vec<String> {
    let (user, host) = account.rsplit_once('@').unwrap_or((account, "%"));
    let to = format!(
        "'{}'@'{}'",
        user.replace('\'', "''"),
        host.replace('\'', "''")
    );
    let list = |global: bool| -> Vec<&str> {
        missing
            .iter()
            .filter(|n| n.global == global)
            .map(|n| n.any_of[0])
            .collect()
    };
    let mut out = Vec::new();
    let on_db = list(false);
    if !on_db.is_empty() {
        out.push(format!(
            "GRANT {} ON `{}`.* TO {to};",
            on_db.join(", "),
            database.replace('`', "``")
        ));
    }
    let on_all = list(true);
    if !on_all.is_empty() {
        out.push(format!("GRANT {} ON *.* TO {to};", on_all.join(", ")));
    }
    out
}

/// Parses the privilege names out of `SHOW GRANTS` lines that apply to `database` (or all).
pub fn privileges_from_grants(grants: &[String], database: &str) -> HashSet<String> {
    let mut have = HashSet::new();
    for g in grants {
        let Some(rest) = g.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((privs, on)) = rest.split_once(" ON ") else {
            continue;
        };
        let object = on.split_whitespace().next().unwrap_or("");
        let applies = object == "*.*"
            || object
                .strip_suffix(".*")
                .is_some_and(|d| database_pattern_matches(d.trim_matches('`'), database));
        if applies {
            have.extend(
                privs
                    .split(',')
                    .map(|p| p.trim().to_ascii_uppercase().replace('_', " ")),
            );
        }
    }
    have
}

/// Whether a database-level grant's name (`t\_%`: `%` any run, `_` any one character, `\`
/// escaping either, as the server matches them) covers `database`.
fn database_pattern_matches(pattern: &str, database: &str) -> bool {
    fn go(p: &[char], d: &[char]) -> bool {
        match p.split_first() {
            None => d.is_empty(),
            Some(('%', rest)) => (0..=d.len()).any(|i| go(rest, &d[i..])),
            Some(('_', rest)) => !d.is_empty() && go(rest, &d[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                d.first() == Some(&rest[0]) && go(&rest[1..], &d[1..])
            }
            Some((c, rest)) => d.first() == Some(c) && go(rest, &d[1..]),
        }
    }
    let (p, d): (Vec<char>, Vec<char>) = (pattern.chars().collect(), database.chars().collect());
    go(&p, &d)
}

/// Ticket servers must share one increment at least as large as their count, and use distinct
/// offsets within it, or two of them can hand out the same ID.
pub fn ticket_problems(settings: &[(String, u64, u64)]) -> Vec<String> {
    let mut problems = Vec::new();
    let n = settings.len() as u64;
    let mut offsets = HashSet::new();
    for (server, inc, off) in settings {
        if n > 1 && *inc < n {
            problems.push(format!(
                "{server}: auto_increment_increment={inc} is below the {n} ticket servers"
            ));
        }
        if settings.iter().any(|(_, i, _)| i != inc) {
            problems.push(format!(
                "{server}: auto_increment_increment={inc} differs from another ticket server's"
            ));
        }
        if !offsets.insert(off.saturating_sub(1) % (*inc).max(1)) {
            problems.push(format!(
                "{server}: auto_increment_offset={off} repeats another ticket server's"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grants_and_writes_the_missing_ones() {
        let grants = vec![
            "GRANT PROCESS, REPLICATION CLIENT ON *.* TO `ops`@`%`".to_string(),
            "GRANT SELECT, INSERT ON `app`.* TO `ops`@`%`".to_string(),
            "GRANT DELETE ON `other`.* TO `ops`@`%`".to_string(),
        ];
        let have = privileges_from_grants(&grants, "app");
        let missing = missing_privileges(&have, &shard_needs(Flavor::MariaDb));
        assert_eq!(
            grant_statements(&missing, "app", "ops@%"),
            [
                "GRANT UPDATE, DELETE, CREATE, TRIGGER, ALTER, DROP ON `app`.* TO 'ops'@'%';",
                // REPLICATION CLIENT is BINLOG MONITOR's old name: only REPLICATION SLAVE is
                // missing for online moves.
                "GRANT SUPER, BINLOG ADMIN, SLAVE MONITOR, CONNECTION ADMIN, REPLICATION SLAVE, REPLICATION MASTER ADMIN ON *.* TO 'ops'@'%';",
            ]
        );
        // MySQL's names: REPLICATION CLIENT still reads replica status; CONNECTION_ADMIN.
        let missing = missing_privileges(&have, &shard_needs(Flavor::MySql));
        assert_eq!(
            grant_statements(&missing, "app", "ops@10.0.0.%"),
            [
                "GRANT UPDATE, DELETE, CREATE, TRIGGER, ALTER, DROP ON `app`.* TO 'ops'@'10.0.0.%';",
                "GRANT SUPER, SYSTEM_VARIABLES_ADMIN, CONNECTION_ADMIN ON *.* TO 'ops'@'10.0.0.%';",
            ]
        );
        let mysql8 = privileges_from_grants(
            &["GRANT CONNECTION_ADMIN ON *.* TO `ops`@`%`".into()],
            "app",
        );
        assert!(missing_privileges(&mysql8, &[kill(Flavor::MySql)]).is_empty());
        let all =
            privileges_from_grants(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`x`".into()], "app");
        assert!(missing_privileges(&all, &shard_needs(Flavor::MariaDb)).is_empty());
        assert_eq!(Flavor::of("10.11.6-MariaDB-0+deb12u1-log"), Flavor::MariaDb);
        assert_eq!(Flavor::of("8.0.36"), Flavor::MySql);
    }

    #[test]
    fn database_grants_match_by_the_servers_wildcards() {
        let grants =
            vec![r"GRANT SELECT, INSERT ON `t\_%`.* TO `shardctl`@`127.0.0.1`".to_string()];
        let have = privileges_from_grants(&grants, "t_walk_app");
        assert!(have.contains("SELECT") && have.contains("INSERT"));
        // The escaped `_` is a literal underscore; `%` any run.
        assert!(privileges_from_grants(&grants, "tx_app").is_empty());
        assert!(database_pattern_matches("photo_pp", "photoapp"));
        assert!(!database_pattern_matches(r"photo\_pp", "photoapp"));
        assert!(database_pattern_matches("photoapp", "photoapp"));
        assert!(!database_pattern_matches("photoapp", "photoapp2"));
    }

    #[test]
    fn ticket_settings() {
        let ok = vec![("a".to_string(), 2, 1), ("b".to_string(), 2, 2)];
        assert!(ticket_problems(&ok).is_empty());
        let clash = vec![("a".to_string(), 2, 1), ("b".to_string(), 2, 1)];
        assert_eq!(ticket_problems(&clash).len(), 1);
        // An offset of 0 (a misconfigured server) is reported, not a crash.
        let zero = vec![("a".to_string(), 2, 0), ("b".to_string(), 2, 1)];
        assert_eq!(ticket_problems(&zero).len(), 1);
        let small = vec![("a".to_string(), 1, 1), ("b".to_string(), 1, 1)];
        assert!(ticket_problems(&small).len() >= 2);
    }
}

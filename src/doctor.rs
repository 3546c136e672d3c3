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

/// Privileges as alternatives: each inner list is satisfied by any one of its members.
pub type Need = &'static [&'static str];

/// What shardctl does on the ring database.
pub const RING_NEEDS: &[Need] = &[
    &["SELECT"],
    &["INSERT"],
    &["UPDATE"],
    &["DELETE"],
    &["CREATE"],
    &["INDEX"],
    &["ALTER"],
];
/// What shardctl does on shard servers: rows of the shard database, lag, sessions, KILL.
pub const SHARD_NEEDS: &[Need] = &[
    &["SELECT"],
    &["INSERT"],
    &["UPDATE"],
    &["DELETE"],
    &["PROCESS"],
    &[
        "REPLICATION CLIENT",
        "BINLOG MONITOR",
        "SLAVE MONITOR",
        "REPLICA MONITOR",
        "SUPER",
    ],
    &["CONNECTION ADMIN", "SUPER"],
];

/// The needed privileges missing from `have` (privilege names, upper case; `ALL PRIVILEGES`
/// covers everything).
pub fn missing_privileges(have: &HashSet<String>, needs: &[Need]) -> Vec<String> {
    if have.contains("ALL PRIVILEGES") {
        return Vec::new();
    }
    needs
        .iter()
        .filter(|alts| !alts.iter().any(|p| have.contains(*p)))
        .map(|alts| alts.join(" or "))
        .collect()
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
            || object == format!("`{database}`.*")
            || object == format!("{database}.*");
        if applies {
            have.extend(privs.split(',').map(|p| p.trim().to_ascii_uppercase()));
        }
    }
    have
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
    fn reads_grants_for_the_database() {
        let grants = vec![
            "GRANT PROCESS, REPLICATION CLIENT ON *.* TO `ops`@`%`".to_string(),
            "GRANT SELECT, INSERT ON `app`.* TO `ops`@`%`".to_string(),
            "GRANT DELETE ON `other`.* TO `ops`@`%`".to_string(),
        ];
        let have = privileges_from_grants(&grants, "app");
        assert_eq!(
            missing_privileges(&have, SHARD_NEEDS),
            vec!["UPDATE", "DELETE", "CONNECTION ADMIN or SUPER"]
        );
        let all =
            privileges_from_grants(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`x`".into()], "app");
        assert!(missing_privileges(&all, SHARD_NEEDS).is_empty());
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

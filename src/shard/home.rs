//! The home guard (`[shards] home_guard = true`): each shard server knows which users'
//! application writes it takes now, and its triggers (installed with the write guard's, see
//! `guard`) refuse the rest. The ring routes user `u` to the shard's online servers, ordered by
//! half, host and port, at index `u mod count`; a server's rule is that index and count, so
//! every user has exactly one server whose rule accepts it.
//!
//! The rules live in `shardctl_home`, one table a server, written to each server directly and
//! never replicated (`sql_log_bin = 0`): the point is that each server holds its own view. It
//! always holds two rows, `now` and `next`, and a server accepts a user only when both accept
//! it (`next` accepts every user unless a hand-over is in progress). The triggers read both rows
//! with a shared lock (`LOCK IN SHARE MODE`, at any isolation level), which the application's
//! transaction keeps until it ends. So changing a rule is also a barrier: the `UPDATE` waits
//! until every transaction that wrote under the old rule has committed or rolled back (prepared
//! XA transactions included), and every write after it meets the new rule. No list of
//! transactions has to be read (`information_schema.INNODB_TRX` is a cache that a busy monitor
//! keeps stale). The table is InnoDB, so a server restarted during its maintenance comes back
//! with the rule it was left with (none, for a drained server).

use std::time::Duration;

use mysql::prelude::Queryable;

use serde::Serialize;

use crate::config::Config;
use crate::db::Db;
use crate::error::Result;
use crate::ring::directory::Server;
use crate::types::HostPort;

/// The table of a server's rules, in the shard database.
pub const TABLE: &str = "shardctl_home";

/// Which users a server takes writes for: those with `user mod members == position`; none
/// when `position` is None.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub members: u32,
    pub position: Option<u32>,
}

impl Rule {
    pub const ALL: Rule = Rule {
        members: 1,
        position: Some(0),
    };
    pub const NONE: Rule = Rule {
        members: 1,
        position: None,
    };

    pub fn accepts(&self, user: u64) -> bool {
        self.position
            .is_some_and(|p| user % u64::from(self.members.max(1)) == u64::from(p))
    }

    /// Whether every user this rule accepts, `other` accepts too.
    pub fn within(&self, other: &Rule) -> bool {
        match (self.position, other.position) {
            (None, _) => true,
            (Some(_), None) => false,
            // {u : u ≡ p (mod m)} ⊆ {u : u ≡ q (mod n)} exactly when n divides m and p ≡ q (mod n).
            (Some(p), Some(q)) => {
                let (m, n) = (self.members.max(1), other.members.max(1));
                m % n == 0 && p % n == q
            }
        }
    }

    /// The rule of `addr` when `writers` (in routing order) are the shard's online servers.
    pub fn of(addr: &HostPort, writers: &[HostPort]) -> Rule {
        Rule {
            members: (writers.len() as u32).max(1),
            position: writers.iter().position(|w| w == addr).map(|i| i as u32),
        }
    }

    /// In a few characters, for a narrow column: `all`, `none`, `%2=0`.
    pub fn short(&self) -> String {
        match self.position {
            None => "none".into(),
            Some(_) if self.members <= 1 => "all".into(),
            Some(p) => format!("%{}={p}", self.members),
        }
    }

    /// In words, for people.
    pub fn describe(&self) -> String {
        match self.position {
            None => "no user".into(),
            Some(_) if self.members <= 1 => "every user".into(),
            Some(p) => format!("users with id mod {} = {p}", self.members),
        }
    }
}

/// A shard's writers in routing order: its online servers by half, host, port.
pub fn writers(servers: &[Server]) -> Vec<HostPort> {
    super::routing::online_in_order(servers)
        .into_iter()
        .map(|s| s.addr.clone())
        .collect()
}

/// What one server holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct View {
    pub now: Rule,
    /// Anything but every user while a hand-over is in progress (or was interrupted).
    pub next: Rule,
}

impl Default for View {
    /// A server whose rules were never set: it accepts every user.
    fn default() -> View {
        View {
            now: Rule::ALL,
            next: Rule::ALL,
        }
    }
}

impl View {
    fn rules(&self) -> [Rule; 2] {
        [self.now, self.next]
    }

    /// Whether it accepts `user` now.
    pub fn accepts(&self, user: u64) -> bool {
        self.rules().iter().all(|r| r.accepts(user))
    }

    /// Whether it accepts only users `rule` accepts (judged on one rule at a time, which can
    /// only say no too often: a hand-over then waits for a server it did not need to).
    pub fn within(&self, rule: &Rule) -> bool {
        self.rules().iter().any(|r| r.within(rule))
    }

    /// Whether it accepts every user `rule` accepts.
    pub fn covers(&self, rule: &Rule) -> bool {
        self.rules().iter().all(|r| rule.within(r))
    }

    /// Whether it holds exactly `rule` and no hand-over is pending.
    pub fn settled_on(&self, rule: &Rule) -> bool {
        self.next == Rule::ALL && self.now == *rule
    }

    /// In a few characters: the rule, and the one it is handing over to.
    pub fn short(&self) -> String {
        if self.next == Rule::ALL {
            self.now.short()
        } else {
            format!("{}>{}", self.now.short(), self.next.short())
        }
    }

    /// In words, for people: whose writes it takes, and the hand-over in progress.
    pub fn describe(&self) -> String {
        if self.next == Rule::ALL {
            return self.now.describe();
        }
        let takes = if self.next.within(&self.now) {
            self.next.describe()
        } else if self.now.within(&self.next) {
            self.now.describe()
        } else {
            format!(
                "{} that are also {}",
                self.now.describe(),
                self.next.describe()
            )
        };
        format!(
            "{takes} (handing over from {} to {})",
            self.now.describe(),
            self.next.describe()
        )
    }
}

/// The statements that create the table and its two rows (part of `guard install`; the rows
/// are each server's own, never replicated: see `ensure_rows`).
pub fn create_statement() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (
            rule VARCHAR(8) NOT NULL PRIMARY KEY,
            members INT UNSIGNED NOT NULL,
            position INT UNSIGNED NULL,
            writers VARCHAR(4096) NOT NULL DEFAULT '',
            changed_at DATETIME(6) NOT NULL,
            expires_at DATETIME(6) NULL
        ) ENGINE=InnoDB"
    )
}

/// Brings a table made by an earlier shardctl up to date (part of `guard install`).
pub fn upgrade_statement() -> String {
    format!("ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS expires_at DATETIME(6) NULL")
}

/// The trigger code that refuses a write for `row` (`NEW` or `OLD`) when this server's rules do
/// not accept its owner, naming where the user's writes go. Both rows are read with a shared
/// lock and no condition, so every writing transaction holds that lock until it ends (at READ
/// COMMITTED, a locking read keeps the locks of the rows its condition matched). A rule past
/// its `expires_at` (a proposal whose hand-over died with its process) no longer counts; the
/// server's own clock judges its own rows.
///
/// The same statement also reads `also` (a scalar subquery of the caller's, the move guard's)
/// into the variable `also_into`: a statement inside a trigger costs far more than the rows it
/// reads, so one a row, not two.
pub fn trigger_check(row: &str, owner: &str, also: &str, also_into: &str) -> String {
    let user = format!("{row}.{owner}");
    format!(
        "SELECT SUM((h.expires_at IS NULL OR h.expires_at > UTC_TIMESTAMP(6))
                    AND (h.position IS NULL OR {user} MOD h.members <> h.position)), ({also})
           INTO refusals, {also_into}
           FROM {TABLE} h LOCK IN SHARE MODE;
         IF refusals > 0 THEN
           SET msg = CONCAT('shardctl home guard: this server does not take writes for user ', {user},
                            ' now; re-read the ring and retry');
           -- The newest list of writers names the one to use: index user mod their count.
           SELECT CONCAT('shardctl home guard: this server does not take writes for user ', {user},
                         ' now; they go to ',
                         SUBSTRING_INDEX(SUBSTRING_INDEX(h.writers, ',',
                           {user} MOD (1 + LENGTH(h.writers) - LENGTH(REPLACE(h.writers, ',', ''))) + 1), ',', -1),
                         '; re-read the ring and retry')
             INTO msg FROM {TABLE} h WHERE h.writers <> '' ORDER BY h.changed_at DESC LIMIT 1;
           SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 1644, MESSAGE_TEXT = msg;
         END IF;"
    )
}

/// A session for changing one server's rules: every statement bounded by `io`, nothing it
/// writes replicated, no default database (so it never counts as application work).
pub fn session(cfg: &Config, addr: &HostPort, io: Duration) -> Result<Db> {
    // The login's handshake too: a frozen server answers the connect and then nothing.
    let net = crate::config::NetOptions {
        connect_timeout: cfg.net.connect_timeout.min(io),
        read_timeout: cfg.net.read_timeout.min(io),
        write_timeout: cfg.net.write_timeout.min(io),
        ..cfg.net.clone()
    };
    let mut db = super::connect_server(cfg, addr, &net)?;
    db.set_timeouts(io, io)?;
    db.query_drop(
        "keeping the home guard's rules off the binary log",
        "SET SESSION sql_log_bin = 0",
    )?;
    Ok(db)
}

fn table(cfg: &Config) -> String {
    format!("{}.{TABLE}", cfg.shards.database.quoted())
}

/// The server's rules; None when it has no home guard table or its rows are missing.
pub fn read(cfg: &Config, db: &mut Db) -> Result<Option<View>> {
    let exists: Option<u8> = db.exec_first(
        "looking for the home guard table",
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (cfg.shards.database.as_str(), TABLE),
    )?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows: Vec<(String, u32, Option<u32>, bool)> = db.exec(
        "reading the home guard's rules",
        &format!(
            "SELECT rule, members, position, COALESCE(expires_at <= UTC_TIMESTAMP(6), FALSE)
             FROM {}",
            table(cfg)
        ),
        (),
    )?;
    // A lapsed rule is as good as one accepting every user: the triggers skip it.
    let rule = |name: &str| {
        rows.iter().find(|(n, _, _, _)| n == name).map(
            |(_, members, position, lapsed)| match lapsed {
                true => Rule::ALL,
                false => Rule {
                    members: *members,
                    position: *position,
                },
            },
        )
    };
    Ok(match (rule("now"), rule("next")) {
        (Some(now), Some(next)) => Some(View { now, next }),
        _ => None,
    })
}

/// Creates the server's two rows if they are missing, accepting every user (the triggers lock
/// only rows that exist, so a hand-over needs both).
pub fn ensure_rows(cfg: &Config, db: &mut Db) -> Result<()> {
    db.exec_drop(
        "creating the home guard's rules",
        &format!(
            "INSERT IGNORE INTO {} (rule, members, position, writers, changed_at)
             VALUES ('now', 1, 0, '', UTC_TIMESTAMP(6)), ('next', 1, 0, '', UTC_TIMESTAMP(6))",
            table(cfg)
        ),
        (),
    )
}

fn list(writers: &[HostPort]) -> String {
    writers
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Makes `rule` the server's `next` rule until `lease` from now: meanwhile it accepts only users
/// both its rules accept; if the hand-over has not settled it by then (its process died), the
/// rule lapses and the server takes what it took before. The update waits, at most `lock_wait`
/// seconds, until every transaction that wrote under the old rules has ended; Ok(false) when
/// that wait ran out (nothing changed).
pub fn propose(
    cfg: &Config,
    db: &mut Db,
    rule: &Rule,
    writers: &[HostPort],
    lock_wait: u64,
    lease: Duration,
) -> Result<bool> {
    db.exec_drop(
        "bounding the wait for open writers",
        "SET SESSION innodb_lock_wait_timeout = ?",
        (lock_wait.max(1),),
    )?;
    let changed = db.exec_drop(
        "writing the home guard's next rule",
        &format!(
            "UPDATE {} SET members = ?, position = ?, writers = ?, changed_at = UTC_TIMESTAMP(6),
                    expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND
             WHERE rule = 'next'",
            table(cfg)
        ),
        (
            rule.members,
            rule.position,
            list(writers),
            lease.as_micros() as u64,
        ),
    );
    match changed {
        Ok(()) => Ok(true),
        // A lock wait timeout or a deadlock: an application's transaction holds on; the
        // caller tries again until its deadline.
        Err(crate::error::Error::Database(e)) if matches!(e.code(), Some(1205 | 1213)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes `rule` the server's only rule, for good. The `now` row keeps the list of writers
/// (refusals name the user's writer from it); `next` accepts every user and lists none. When
/// the server holds a proposal, only while it has not lapsed: Ok(false) if it had (nothing
/// changed: the server took its old users back meanwhile, so its peers must not take them).
pub fn settle(cfg: &Config, db: &mut Db, rule: &Rule, writers: &[HostPort]) -> Result<bool> {
    let list = list(writers);
    db.transaction("settling the home guard's rules", |tx| {
        let lapsed: Option<bool> = tx.exec_first(
            format!(
                "SELECT COALESCE(expires_at <= UTC_TIMESTAMP(6), FALSE) FROM {}
                 WHERE rule = 'next' FOR UPDATE",
                table(cfg)
            ),
            (),
        )?;
        if lapsed == Some(true) {
            return Ok(false);
        }
        tx.exec_drop(
            set_both_sql(cfg),
            (rule.members, rule.position, list.as_str()),
        )?;
        Ok(true)
    })
}

fn set_both_sql(cfg: &Config) -> String {
    format!(
        "UPDATE {} SET members = IF(rule = 'now', ?, 1), position = IF(rule = 'now', ?, 0),
                writers = IF(rule = 'now', ?, ''), changed_at = UTC_TIMESTAMP(6), expires_at = NULL",
        table(cfg)
    )
}

fn set_both(cfg: &Config, db: &mut Db, rule: &Rule, writers: &str) -> Result<()> {
    db.exec_drop(
        "settling the home guard's rules",
        &set_both_sql(cfg),
        (rule.members, rule.position, writers),
    )
}

/// Drops the `next` rule: the server is back to what it took before the hand-over began.
pub fn withdraw(cfg: &Config, db: &mut Db) -> Result<()> {
    db.exec_drop(
        "withdrawing the home guard's next rule",
        &format!(
            "UPDATE {} SET members = 1, position = 0, writers = '', changed_at = UTC_TIMESTAMP(6),
                    expires_at = NULL
             WHERE rule = 'next'",
            table(cfg)
        ),
        (),
    )
}

/// Every user accepted again (the home guard turned off).
pub fn clear(cfg: &Config, db: &mut Db) -> Result<()> {
    set_both(cfg, db, &Rule::ALL, "")
}

/// Whether hand-overs are enforced by the database: `[shards] home_guard`.
pub fn enabled(cfg: &Config) -> bool {
    cfg.shards.home_guard
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(members: u32, position: Option<u32>) -> Rule {
        Rule { members, position }
    }

    #[test]
    fn every_user_has_exactly_one_writer() {
        let writers: Vec<HostPort> = (0..3).map(|i| HostPort::new("db", 3306 + i)).collect();
        let rules: Vec<Rule> = writers.iter().map(|w| Rule::of(w, &writers)).collect();
        for user in 0..100u64 {
            assert_eq!(rules.iter().filter(|r| r.accepts(user)).count(), 1);
        }
        assert_eq!(Rule::of(&HostPort::new("gone", 1), &writers), rule(3, None));
    }

    #[test]
    fn within_is_the_subset_relation() {
        // Checked against the sets themselves, over every small rule pair.
        let all: Vec<Rule> = (1..=4)
            .flat_map(|m| (0..m).map(move |p| rule(m, Some(p))).chain([rule(m, None)]))
            .collect();
        for a in &all {
            for b in &all {
                let by_sets = (0..48u64).all(|u| !a.accepts(u) || b.accepts(u));
                assert_eq!(a.within(b), by_sets, "{a:?} within {b:?}");
            }
        }
    }

    #[test]
    fn a_view_accepts_what_both_its_rules_accept() {
        let handing_over = View {
            now: rule(2, Some(1)),
            next: rule(4, Some(1)),
        };
        assert!(handing_over.accepts(5) && !handing_over.accepts(3) && !handing_over.accepts(4));
        assert!(handing_over.within(&rule(2, Some(1))));
        assert!(!handing_over.covers(&Rule::ALL));
        assert!(View::default().accepts(7) && View::default().covers(&Rule::ALL));
        let drained = View {
            now: Rule::NONE,
            next: Rule::ALL,
        };
        assert!(drained.within(&Rule::NONE) && drained.settled_on(&Rule::NONE));
        assert_eq!(
            handing_over.describe(),
            "users with id mod 4 = 1 (handing over from users with id mod 2 = 1 to users with id mod 4 = 1)"
        );
        let stopping = View {
            now: rule(2, Some(0)),
            next: Rule::NONE,
        };
        assert_eq!(
            stopping.describe(),
            "no user (handing over from users with id mod 2 = 0 to no user)"
        );
    }
}

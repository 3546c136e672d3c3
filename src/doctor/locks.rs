//! `doctor`'s lock checks: the ZooKeeper ensemble (every node serves, one leader, a session
//! opens), and the token rule: the configured backend's next token is above every token a move
//! has used, so switching backends never hands out one the shards' fences would refuse.

use std::time::Duration;

use crate::config::{Config, LockBackend, ZookeeperConfig};
use crate::db::Db;
use crate::lock::zk::{four_letter, mode, ZkStore};
use crate::ring;

use super::rules::Check;

/// `srvr` on every node at once, each bounded by the session timeout (at most 2 s): a frozen
/// node costs that once, not once per node.
fn srvr_all(z: &ZookeeperConfig) -> Vec<crate::error::Result<String>> {
    let bound = z.session_timeout.min(Duration::from_secs(2));
    crate::parallel::each(&z.servers, |s| four_letter(s, "srvr", bound))
}

/// The ensemble, node by node, then as a whole.
fn ensemble_checks(z: &ZookeeperConfig, out: &mut Vec<Check>) {
    let mut leaders = 0;
    let mut serving = 0;
    for (server, answer) in z.servers.iter().zip(srvr_all(z)) {
        let target = format!("{server} (zookeeper)");
        match answer {
            Ok(answer) => match mode(&answer) {
                Some(m) => {
                    serving += 1;
                    if m == "leader" || m == "standalone" {
                        leaders += 1;
                    }
                    let version = answer
                        .lines()
                        .next()
                        .and_then(|l| l.strip_prefix("Zookeeper version: "))
                        .and_then(|v| v.split('-').next())
                        .unwrap_or("?");
                    out.push(Check::pass(
                        &target,
                        "zookeeper serving",
                        format!("{m}, ZooKeeper {version}"),
                    ));
                }
                None => out.push(Check::fail(
                    &target,
                    "zookeeper serving",
                    answer.lines().next().unwrap_or("no answer").to_string(),
                    "the node answers but does not serve: it has no quorum; start the other nodes",
                )),
            },
            Err(e) => out.push(Check::fail(
                &target,
                "zookeeper serving",
                e.to_string(),
                "start the node, or let `srvr` through its 4lw.commands.whitelist",
            )),
        }
    }
    let target = format!("zookeeper {}", z.ensemble());
    out.push(if leaders == 1 {
        Check::pass(
            &target,
            "zookeeper leader",
            format!("one leader, {serving} of {} nodes serving", z.servers.len()),
        )
    } else {
        Check::fail(
            &target,
            "zookeeper leader",
            format!("{leaders} leaders among {serving} serving nodes"),
            "a majority of the ensemble must run and agree on one leader: check each node's server.N lines",
        )
    });
    let store = ZkStore::connect(z);
    if let Ok(store) = &store {
        match store.world_writable() {
            // Said, not failed: a sandbox or a closed network may choose open nodes.
            Ok(true) => out.push(Check::pass(
                &target,
                "zookeeper acl",
                format!(
                    "WORLD-WRITABLE: anyone who reaches the ensemble can change or delete {}/locks; \
                     set [locks] digest_user with digest_password_file (an existing directory keeps \
                     its ACL: setAcl it, or use a new root)",
                    z.root
                ),
            )),
            Ok(false) => out.push(Check::pass(
                &target,
                "zookeeper acl",
                "the lock nodes are not world-writable".to_string(),
            )),
            Err(_) => {}
        }
    }
    out.push(match store.and_then(|s| s.probe()) {
        Ok(()) => Check::pass(
            &target,
            "zookeeper session",
            format!(
                "opens (session timeout {}); locks under {}/locks, no TTL nodes used",
                humantime::format_duration(z.session_timeout),
                z.root
            ),
        ),
        Err(e) => Check::fail(
            &target,
            "zookeeper session",
            e.to_string(),
            "check [locks] servers and that the nodes accept clients",
        ),
    });
}

/// The next token the configured backend would hand out: the ring's auto-increment, or the
/// ensemble's last zxid plus one (a lock node's czxid is the zxid of its create).
fn next_token(cfg: &Config, ring_db: &mut Db) -> crate::error::Result<Option<u64>> {
    match &cfg.locks {
        LockBackend::Mysql => ring_db.exec_first(
            "reading the lease sequence",
            "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'locks'",
            (cfg.ring.database.as_str(),),
        ).map(Option::flatten),
        LockBackend::Zookeeper(z) => Ok(srvr_all(z)
            .into_iter()
            .filter_map(|a| a.ok())
            .filter_map(|a| {
                let hex = a.lines().find_map(|l| l.strip_prefix("Zxid: 0x"))?;
                u64::from_str_radix(hex.trim(), 16).ok()
            })
            .max()
            .map(|z| z + 1)),
    }
}

fn token_check(cfg: &Config, ring_db: &mut Db) -> Check {
    let target = format!("locks ({})", cfg.locks.name());
    let highest = ring::highest_token(ring_db);
    match (highest, next_token(cfg, ring_db)) {
        (Ok(highest), Ok(Some(next))) if next > highest => Check::pass(
            &target,
            "tokens",
            format!("next token {next} is above the highest used ({highest})"),
        ),
        (Ok(highest), Ok(Some(next))) => Check::fail(
            &target,
            "tokens",
            format!(
                "the {} backend's next token {next} is not above {highest}, already used by moves: its grants would be refused",
                cfg.locks.name()
            ),
            crate::lock::token_remedy(&cfg.locks, highest),
        ),
        (Ok(_), Ok(None)) => Check::fail(
            &target,
            "tokens",
            "the backend's next token cannot be read",
            "check that the ring schema exists (`shardctl init`) and the ensemble answers `srvr`",
        ),
        (Err(e), _) | (_, Err(e)) => Check::fail(
            &target,
            "tokens",
            e.to_string(),
            "run `shardctl init`",
        ),
    }
}

/// The ensemble's checks, when the locks are kept in one (whether or not the ring answers).
pub fn ensemble(cfg: &Config, out: &mut Vec<Check>) {
    if let LockBackend::Zookeeper(z) = &cfg.locks {
        ensemble_checks(z, out);
    }
}

/// The token rule; `ring_db` is on the ring database.
pub fn tokens(cfg: &Config, ring_db: &mut Db, out: &mut Vec<Check>) {
    out.push(token_check(cfg, ring_db));
}

//! When a half of a shard may be drained, and when a server may come back: plain functions
//! over what the servers reported, so the safety rules are tested without a server.

use crate::ring::directory::{Half, Server, ServerStatus};
use crate::shard::probe::Probe;
use crate::types::HostPort;

/// One server of a shard and what probing it found (the error when it did not answer).
#[derive(Clone, Debug)]
pub struct Facts {
    pub server: Server,
    pub probe: Result<Probe, String>,
    /// Queries per second, when sampled (only where capacities are configured).
    pub qps: Option<f64>,
}

fn label(s: &Server) -> String {
    format!("{}:{} (half {})", s.addr.host, s.addr.port, s.half)
}

/// Whether `server` is one a drain or restore of `half` acts on: every server of the half, or
/// only those listed (a roll picking up after a failure).
pub fn in_scope(server: &Server, half: Half, only: Option<&[HostPort]>) -> bool {
    server.half == half && only.is_none_or(|o| o.contains(&server.addr))
}

/// Whether draining `half` of a shard with these servers has anything left to do: some server
/// of the half (of those listed in `only`) is not offline yet. A drained half is left alone
/// without probing its servers (they may be down for their upgrade).
pub fn drain_pending(half: Half, servers: &[Server], only: Option<&[HostPort]>) -> bool {
    servers
        .iter()
        .any(|s| in_scope(s, half, only) && s.status != ServerStatus::Offline)
}

/// Whether the servers of the other half, as the ring records them, could serve the shard
/// alone: there is at least one, and all are online. Checked again inside the transaction that
/// marks the half draining, so two drains at once cannot take both halves.
pub fn other_half_online(half: Half, servers: &[Server]) -> Result<(), String> {
    let others: Vec<&Server> = servers.iter().filter(|s| s.half != half).collect();
    if others.is_empty() {
        return Err(format!(
            "no server in half {} would serve the shard",
            half.other()
        ));
    }
    let not_online: Vec<String> = others
        .iter()
        .filter(|s| s.status != ServerStatus::Online)
        .map(|s| format!("{} is {}", label(s), s.status))
        .collect();
    if not_online.is_empty() {
        Ok(())
    } else {
        Err(not_online.join("; "))
    }
}

/// Why draining `half` of this shard would be unsafe, every reason at once, or Ok.
///
/// Safe means: the other half is online, every server answers, replication runs in both
/// directions with the other half within `max_lag` seconds of the drained one (so users routed
/// over see their own writes), and, where every server of the other half has a capacity, the
/// other half can carry the shard's current query rate.
pub fn drain_refusal(half: Half, facts: &[Facts], max_lag: u64) -> Result<(), String> {
    let servers: Vec<Server> = facts.iter().map(|f| f.server.clone()).collect();
    let mut reasons = Vec::new();
    if let Err(r) = other_half_online(half, &servers) {
        reasons.push(r);
    }
    for f in facts {
        let name = label(&f.server);
        match &f.probe {
            Err(e) => reasons.push(format!("{name} cannot be checked: {e}")),
            Ok(p) => match &p.replica {
                None => reasons.push(format!("{name} does not replicate from its peer")),
                Some(r) => {
                    if let Some(problem) = r.problem(Some(max_lag)) {
                        reasons.push(format!("{name}: {problem}"));
                    }
                }
            },
        }
    }
    if let Some(problem) = capacity_problem(half, facts) {
        reasons.push(problem);
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("; "))
    }
}

/// Whether the shard's current query rate exceeds what the other half can carry. Only judged
/// when every server of the other half has a capacity and every server's rate was sampled.
fn capacity_problem(half: Half, facts: &[Facts]) -> Option<String> {
    let others: Vec<&Facts> = facts.iter().filter(|f| f.server.half != half).collect();
    if others.is_empty() {
        return None;
    }
    let capacity: f64 = others
        .iter()
        .map(|f| f.server.capacity_qps)
        .sum::<Option<f64>>()?;
    let load: f64 = facts
        .iter()
        .map(|f| f.probe.as_ref().ok().and(f.qps))
        .sum::<Option<f64>>()?;
    (load > capacity).then(|| {
        format!(
            "the shard serves {load:.1} queries/s; half {} can carry {capacity:.1}",
            half.other()
        )
    })
}

/// Whether a drained server may go back online: it answers, and its replication from its peers
/// runs within `max_lag`. (Catching up with the peers' binlog positions is waited for apart.)
pub fn restore_problem(facts: &Facts, max_lag: u64) -> Option<String> {
    match &facts.probe {
        Err(e) => Some(format!("does not answer: {e}")),
        Ok(Probe { replica: None, .. }) => Some("does not replicate from its peer".into()),
        Ok(Probe {
            replica: Some(r), ..
        }) => r.problem(Some(max_lag)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::replica::ReplicaStatus;

    fn server(port: u16, half: Half, status: ServerStatus) -> Server {
        Server {
            addr: HostPort::new("db", port),
            half,
            status,
            capacity_qps: None,
        }
    }

    fn replica(io: bool, sql: bool, lag: Option<u64>) -> Option<ReplicaStatus> {
        Some(ReplicaStatus {
            source: "peer:1".into(),
            io_running: io,
            sql_running: sql,
            lag_seconds: lag,
            last_error: None,
        })
    }

    fn healthy(s: Server) -> Facts {
        Facts {
            server: s,
            probe: Ok(Probe {
                replica: replica(true, true, Some(0)),
                sessions: Vec::new(),
                questions: 0,
                home: None,
            }),
            qps: None,
        }
    }

    fn pair() -> Vec<Facts> {
        vec![
            healthy(server(1, Half::A, ServerStatus::Online)),
            healthy(server(2, Half::B, ServerStatus::Online)),
        ]
    }

    #[test]
    fn a_healthy_pair_drains_either_half() {
        assert_eq!(drain_refusal(Half::A, &pair(), 5), Ok(()));
        assert_eq!(drain_refusal(Half::B, &pair(), 5), Ok(()));
    }

    #[test]
    fn the_other_half_must_be_online() {
        let mut f = pair();
        f[0].server.status = ServerStatus::Offline;
        let why = drain_refusal(Half::B, &f, 5).unwrap_err();
        assert!(why.contains("db:1 (half a) is offline"), "{why}");
        // Draining the half that is already down is what the half is for.
        assert_eq!(drain_refusal(Half::A, &f, 5), Ok(()));
        let single = vec![healthy(server(1, Half::A, ServerStatus::Online))];
        assert!(drain_refusal(Half::A, &single, 5)
            .unwrap_err()
            .contains("no server in half b"));
    }

    #[test]
    fn replication_must_run_both_ways_within_the_lag() {
        for (io, sql, lag, expect) in [
            (false, true, Some(0), "I/O thread"),
            (true, false, None, "SQL thread"),
            (true, true, Some(9), "lags 9s"),
            (true, true, None, "unknown"),
        ] {
            for i in 0..2 {
                let mut f = pair();
                if let Ok(p) = &mut f[i].probe {
                    p.replica = replica(io, sql, lag);
                }
                let why = drain_refusal(Half::A, &f, 5).unwrap_err();
                assert!(why.contains(expect), "{why}");
            }
        }
        let mut f = pair();
        f[1].probe = Err("connection refused".into());
        assert!(drain_refusal(Half::A, &f, 5)
            .unwrap_err()
            .contains("db:2 (half b) cannot be checked: connection refused"));
        let mut f = pair();
        if let Ok(p) = &mut f[1].probe {
            p.replica = None;
        }
        assert!(drain_refusal(Half::A, &f, 5)
            .unwrap_err()
            .contains("does not replicate"));
    }

    #[test]
    fn capacity_is_judged_only_where_configured() {
        let with = |cap: Option<f64>, qps: [f64; 2]| {
            let mut f = pair();
            f[1].server.capacity_qps = cap;
            for (x, q) in f.iter_mut().zip(qps) {
                x.qps = Some(q);
            }
            drain_refusal(Half::A, &f, 5)
        };
        assert_eq!(with(None, [500.0, 500.0]), Ok(()));
        assert_eq!(with(Some(1000.0), [500.0, 500.0]), Ok(()));
        let why = with(Some(900.0), [500.0, 500.0]).unwrap_err();
        assert!(
            why.contains("1000.0 queries/s; half b can carry 900.0"),
            "{why}"
        );
    }

    #[test]
    fn pending_and_restore() {
        let s = vec![
            server(1, Half::A, ServerStatus::Offline),
            server(2, Half::B, ServerStatus::Online),
        ];
        assert!(!drain_pending(Half::A, &s, None));
        assert!(drain_pending(Half::B, &s, None));
        let first_b = s.iter().find(|v| v.half == Half::B).unwrap().addr.clone();
        assert!(drain_pending(Half::B, &s, Some(&[first_b])));
        assert!(!drain_pending(Half::B, &s, Some(&[])));
        let mut f = healthy(s[0].clone());
        assert_eq!(restore_problem(&f, 5), None);
        if let Ok(p) = &mut f.probe {
            p.replica = replica(true, false, None);
        }
        assert!(restore_problem(&f, 5).unwrap().contains("SQL thread"));
    }
}

//! The tests' application simulator as a program, for `scripts/bench handover`: threads
//! incrementing hot rows and a churner inserting and deleting rows, routed by the ring (re-read
//! every 100–300 ms and after every refusal), on pooled and per-write connections, for SECONDS;
//! then it compares every server of the shard with its ledger of acknowledged writes and prints
//! one JSON line: what was acknowledged and refused, the longest run of refusals a thread felt
//! (the write window), and what was lost.
//!
//!     app_load RING_PORT RING_DB SHARD SHARD_DB PORT_A,PORT_B SECONDS FIRST_PHOTO
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a benchmark tool, not shipped

use std::time::Duration;

use mysql::prelude::Queryable;

// The tests' simulator itself, so the benchmark measures what the tests prove.
#[allow(dead_code)]
#[path = "../tests/common/app.rs"]
mod app;

/// What the simulator needs from its surroundings (the tests' helpers, here by hand).
fn conn(port: u16) -> mysql::Conn {
    conn_within(port, Duration::from_secs(10)).expect("connect")
}

fn conn_within(port: u16, limit: Duration) -> Option<mysql::Conn> {
    mysql::Conn::new(
        mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(port)
            .user(Some("root"))
            .tcp_connect_timeout(Some(limit))
            .read_timeout(Some(Duration::from_secs(60)))
            .write_timeout(Some(Duration::from_secs(60))),
    )
    .ok()
}

/// shardctl's own login (the sandbox's), whose writes the guards let through: for seeding.
fn shardctl_conn(port: u16) -> mysql::Conn {
    mysql::Conn::new(
        mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(port)
            .user(Some("shardctl")),
    )
    .expect("connect as shardctl")
}

fn wait_replicated(source: &mut mysql::Conn, replica_port: u16) {
    let pos: String = source
        .query_first("SELECT @@gtid_binlog_pos")
        .unwrap()
        .unwrap();
    let waited: Option<i64> = conn(replica_port)
        .exec_first("SELECT MASTER_GTID_WAIT(?, 60)", (pos,))
        .unwrap();
    assert_eq!(waited, Some(0), "{replica_port} did not catch up");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 8 {
        eprintln!(
            "usage: app_load RING_PORT RING_DB SHARD SHARD_DB PORT_A,PORT_B SECONDS FIRST_PHOTO"
        );
        std::process::exit(2);
    }
    let ports: Vec<u16> = args[5].split(',').map(|p| p.parse().unwrap()).collect();
    let first: u64 = args[7].parse().unwrap();
    let spec = app::Spec {
        ring_port: args[1].parse().unwrap(),
        ring_db: args[2].clone(),
        shard: args[3].clone(),
        shard_db: args[4].clone(),
        hot: (1..=8u64)
            .flat_map(|u| (0..4).map(move |k| (u, first + u * 100 + k)))
            .collect(),
        first_new_photo: first + 10_000,
        writers: 6,
    };
    app::seed(&spec, ports[0], ports[1]);
    let running = app::App::start(spec.clone());
    std::thread::sleep(Duration::from_secs_f64(args[6].parse().unwrap()));
    let ledger = running.stop();
    let lost = app::compare(&spec, &ledger, &ports);
    println!(
        "{}",
        serde_json::json!({
            "acknowledged": ledger.acknowledged(),
            "refused": ledger.refused,
            "longest_refusal_seconds": ledger.longest_refusal.as_secs_f64(),
            "lost_increments": lost.increments,
            "lost_rows": lost.rows,
        })
    );
}

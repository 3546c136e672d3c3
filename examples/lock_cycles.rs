//! Lock acquire+release cycles per second in one process, for `scripts/bench locks` and
//! `zookeeper`: `ours` is the library's acquire and release as migrations use them, on the
//! config's backend (a lease row, or a lock node; a fencing token; held by the session); `raw`
//! is bare GET_LOCK/RELEASE_LOCK round trips, the ring's limit; `zk-raw` is a bare ZooKeeper
//! create and delete of one node from this program, the ensemble's limit.
//!
//!     lock_cycles CONFIG ours|raw|zk-raw CLIENTS SECONDS
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a benchmark tool, not shipped

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use shardctl::config::Config;
use shardctl::db::Db;
use shardctl::error::Result;
use shardctl::lock::{LockClient, Request};

fn ours(cfg: &Config, name: String, until: Instant) -> Result<u64> {
    let mut client = LockClient::new(cfg)?;
    let req = Request {
        name: name.parse().map_err(shardctl::error::Error::Usage)?,
        ttl: Duration::from_secs(60),
        owner: "bench".into(),
        purpose: String::new(),
        hold_session: true,
        metadata: serde_json::json!({}),
    };
    let mut n = 0;
    while Instant::now() < until {
        let held = client.try_acquire(&req)?;
        client.release(&held)?;
        n += 1;
    }
    Ok(n)
}

fn raw(cfg: &Config, name: String, until: Instant) -> Result<u64> {
    let mut db = Db::connect(&cfg.ring.servers[0], &cfg.ring.login, None, &cfg.net)?;
    let mut n = 0;
    while Instant::now() < until {
        db.run("cycling GET_LOCK", |c| {
            let got: Option<i64> = c.exec_first("SELECT GET_LOCK(?, 0)", (&name,))?;
            assert_eq!(got, Some(1));
            c.exec_drop("DO RELEASE_LOCK(?)", (&name,))
        })?;
        n += 1;
    }
    Ok(n)
}

/// One session creating and deleting a node, each request awaited, on a one-worker runtime
/// (the library's own arrangement).
fn zk_raw(cfg: &Config, name: String, until: Instant) -> Result<u64> {
    use zookeeper_client as zk;
    let shardctl::config::LockBackend::Zookeeper(z) = &cfg.locks else {
        return Err(shardctl::error::Error::Usage(
            "zk-raw needs [locks] backend = \"zookeeper\"".into(),
        ));
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // From a random server on, as the library connects (a leader serves writes a hop sooner
    // than a follower).
    let n = z.servers.len();
    let first = rand::random_range(0..n);
    let ensemble: Vec<String> = (0..n)
        .map(|i| z.servers[(first + i) % n].to_string())
        .collect();
    let client = rt
        .block_on(zk::Client::connect(&ensemble.join(",")))
        .unwrap();
    let dir = format!("{}/raw", z.root);
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let _ = rt.block_on(client.mkdir(&dir, &mode));
    let path = format!("{dir}/{name}");
    let data = br#"{"owner":"bench"}"#;
    let mut n = 0;
    while Instant::now() < until {
        rt.block_on(client.create(&path, data, &mode)).unwrap();
        rt.block_on(client.delete(&path, None)).unwrap();
        n += 1;
    }
    Ok(n)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: lock_cycles CONFIG ours|raw|zk-raw CLIENTS SECONDS");
        return std::process::ExitCode::from(2);
    }
    let cfg = match Config::load(std::path::Path::new(&args[1])) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let clients: usize = args[3].parse().unwrap_or(1);
    let secs: f64 = args[4].parse().unwrap_or(3.0);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let results: Vec<Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let cfg = &cfg;
                let mode = args[2].clone();
                s.spawn(move || {
                    let name = format!("bench_{mode}_{i}");
                    match mode.as_str() {
                        "raw" => raw(cfg, name, until),
                        "zk-raw" => zk_raw(cfg, name, until),
                        _ => ours(cfg, name, until),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let mut total = 0;
    for r in results {
        match r {
            Ok(n) => total += n,
            Err(e) => {
                eprintln!("{e}");
                return std::process::ExitCode::from(1);
            }
        }
    }
    println!("{total} {:.3}", start.elapsed().as_secs_f64());
    std::process::ExitCode::SUCCESS
}

//! Lock acquire+release cycles per second in one process, for `scripts/bench locks`:
//! `ours` is the library's acquire and release as migrations use them (lease row, fencing token,
//! GET_LOCK held by the session); `raw` is bare GET_LOCK/RELEASE_LOCK round trips, the limit.
//!
//!     lock_cycles CONFIG ours|raw CLIENTS SECONDS
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

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: lock_cycles CONFIG ours|raw CLIENTS SECONDS");
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
                    if mode == "raw" {
                        raw(cfg, name, until)
                    } else {
                        ours(cfg, name, until)
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

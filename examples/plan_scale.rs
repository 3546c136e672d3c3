//! Planning at scale, for `scripts/bench plan-scale`: a synthetic directory of USERS users over
//! SHARDS shards (no servers), weights changed so a tenth of the shards doubled in weight and one
//! shard retires, then one plan. Prints the seconds the plan took and the moves it made.
//!
//!     plan_scale USERS SHARDS
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a benchmark tool, not shipped

use std::time::Instant;

use shardctl::rebalance::plan::{plan, Account, By, Params, ShardLoad};
use shardctl::ring::directory::ShardState;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (users, shards): (u64, u64) = (a[1].parse().unwrap(), a[2].parse().unwrap());
    // Users were placed uniformly; sizes are skewed (most small, a few large).
    let mut loads: Vec<ShardLoad> = (0..shards)
        .map(|i| ShardLoad {
            name: format!("s{i}"),
            state: if i == 0 {
                ShardState::Retiring
            } else {
                ShardState::Active
            },
            weight: if i % 10 == 1 { 2.0 } else { 1.0 },
            accounts: Vec::with_capacity((users / shards + 1) as usize),
        })
        .collect();
    let mut x: u64 = 88172645463325252;
    for user in 1..=users {
        // xorshift: deterministic and cheap.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let rows = if x.is_multiple_of(1000) {
            20_000 + x % 20_000
        } else {
            x % 60
        };
        loads[(user % shards) as usize]
            .accounts
            .push(Account { user, rows });
    }
    let start = Instant::now();
    let p = plan(
        &loads,
        &Params {
            by: By::Users,
            tolerance_pct: 2.0,
            max_moves: None,
        },
    );
    let seconds = start.elapsed().as_secs_f64();
    let balanced = p.shards.iter().filter(|s| s.balanced()).count();
    println!("{seconds} {} {} {balanced}", p.moves.len(), p.lower_bound);
}

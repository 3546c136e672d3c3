//! The floor of what a hand-written mover costs, for `scripts/bench rebalance-small`: per
//! account GET_LOCK, SELECT, INSERT, DELETE, the directory UPDATE and RELEASE_LOCK, each in
//! autocommit on persistent connections, with WORKERS threads. No journal, no verification,
//! no fencing: unsafe, and the rate a safe tool has to beat.
//!
//!     naive_mover RING_PORT RING_DB SHARD_DB FROM_PORTS TO_PORTS TO_SHARD_ID WORKERS FIRST_USER COUNT
//!
//! FROM_PORTS and TO_PORTS are `A,B`: each account is read from and written to the server its
//! routing names (user mod 2), as shardctl does.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // a benchmark tool, not shipped

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Value};

const TABLES: [&str; 3] = ["photos", "comments", "favorites"];

fn connect(port: u16, db: &str) -> Conn {
    Conn::new(
        OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(port)
            .user(Some("root"))
            .db_name(Some(db)),
    )
    .expect("connect")
}

fn ports(s: &str) -> Vec<u16> {
    s.split(',').map(|p| p.parse().expect("port")).collect()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (ring_port, ring_db, shard_db) = (a[1].parse().unwrap(), &a[2], &a[3]);
    let (from, to) = (ports(&a[4]), ports(&a[5]));
    let to_shard: u32 = a[6].parse().unwrap();
    let workers: u64 = a[7].parse().unwrap();
    let (first, count): (u64, u64) = (a[8].parse().unwrap(), a[9].parse().unwrap());
    std::thread::scope(|s| {
        for w in 0..workers {
            let (from, to) = (&from, &to);
            s.spawn(move || {
                let mut ring = connect(ring_port, ring_db);
                let mut src: Vec<Conn> = from.iter().map(|&p| connect(p, shard_db)).collect();
                let mut dst: Vec<Conn> = to.iter().map(|&p| connect(p, shard_db)).collect();
                let mut user = first + w;
                while user < first + count {
                    let half = (user % 2) as usize;
                    let (s, d) = (&mut src[half], &mut dst[half]);
                    let lock = format!("ACCOUNT_{user}_MOVE");
                    let got: Option<i64> = s.exec_first("SELECT GET_LOCK(?, 0)", (&lock,)).unwrap();
                    assert_eq!(got, Some(1));
                    for t in TABLES {
                        let rows: Vec<mysql::Row> = s
                            .exec(format!("SELECT * FROM {t} WHERE owner_id = ?"), (user,))
                            .unwrap();
                        if rows.is_empty() {
                            continue;
                        }
                        let cols = rows[0].len();
                        let one = format!("({})", vec!["?"; cols].join(","));
                        let values: Vec<Value> =
                            rows.into_iter().flat_map(|r| r.unwrap()).collect();
                        let n = values.len() / cols;
                        d.exec_drop(
                            format!("INSERT INTO {t} VALUES {}", vec![one; n].join(",")),
                            values,
                        )
                        .unwrap();
                        s.exec_drop(format!("DELETE FROM {t} WHERE owner_id = ?"), (user,))
                            .unwrap();
                    }
                    ring.exec_drop(
                        "UPDATE users SET shard_id = ? WHERE user_id = ?",
                        (to_shard, user),
                    )
                    .unwrap();
                    s.exec_drop("DO RELEASE_LOCK(?)", (&lock,)).unwrap();
                    user += workers;
                }
            });
        }
    });
}

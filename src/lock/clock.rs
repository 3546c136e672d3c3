//! Time on the lock backends. Whether a lease is alive is judged by one clock every client
//! shares — the ring's (`UTC_TIMESTAMP`) on the mysql backend, the ZooKeeper leader's (the
//! `mtime` it stamps on every write) on the other — never by the reading host's. A host whose
//! own clock strays from that clock by more than `MAX_SKEW` refuses to hold a lock: what it
//! writes and shows in local time (and what the command it runs under the lock believes)
//! would be wrong by that much.

use std::time::{Duration, SystemTime};

/// How far this host's clock may stray from the backend's before a holder refuses to act.
pub const MAX_SKEW: Duration = Duration::from_secs(10);

/// Milliseconds since the epoch on this host's clock.
pub fn local_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// How far this host's clock is from the shared one, in ms (positive: this host is ahead),
/// given the shared clock's reading `shared_ms` taken between local instants `before` and
/// `after`: zero when the reading falls inside that window.
pub fn skew_ms(shared_ms: i64, before: SystemTime, after: SystemTime) -> i64 {
    let (lo, hi) = (local_ms(before), local_ms(after));
    if shared_ms < lo {
        lo - shared_ms
    } else if shared_ms > hi {
        -(shared_ms - hi)
    } else {
        0
    }
}

/// Refuses when the skew exceeds `MAX_SKEW`, saying by how much and against which clock.
pub fn check(
    shared_ms: i64,
    before: SystemTime,
    after: SystemTime,
    whose: &str,
) -> Result<(), String> {
    let skew = skew_ms(shared_ms, before, after);
    if skew.unsigned_abs() as u128 <= MAX_SKEW.as_millis() {
        return Ok(());
    }
    Err(format!(
        "this host's clock is {:.1} s {} {whose}, more than the {} s a lock holder allows: \
         fix the clock (NTP) before holding locks from this host",
        skew.unsigned_abs() as f64 / 1000.0,
        if skew > 0 { "ahead of" } else { "behind" },
        MAX_SKEW.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
    }

    #[test]
    fn a_reading_inside_the_round_trip_is_no_skew() {
        assert_eq!(skew_ms(1_500, at(1_000), at(2_000)), 0);
        assert_eq!(skew_ms(900, at(1_000), at(2_000)), 100);
        assert_eq!(skew_ms(2_300, at(1_000), at(2_000)), -300);
    }

    #[test]
    fn skew_beyond_the_bound_is_refused_both_ways() {
        let hour = 3_600_000;
        let now = 10 * hour;
        assert!(check(now, at(now - 5), at(now + 5), "the ring's clock").is_ok());
        let ahead = check(
            now,
            at(now + 2 * hour),
            at(now + 2 * hour),
            "the ring's clock",
        )
        .unwrap_err();
        assert!(
            ahead.contains("7200.0 s ahead of the ring's clock"),
            "{ahead}"
        );
        let behind = check(now, at(now - hour), at(now - hour), "ZooKeeper's clock").unwrap_err();
        assert!(
            behind.contains("3600.0 s behind ZooKeeper's clock"),
            "{behind}"
        );
        assert!(check(now, at(now + 9_000), at(now + 9_000), "x").is_ok());
        assert!(check(now, at(now + 11_000), at(now + 11_000), "x").is_err());
    }
}

//! The one renewal keeper: a thread that renews a held lock every third of its ttl while work
//! goes on, shared by `lock run`, migrations and the roll. The work asks the `Watch` before
//! each thing it does; the watch proves the lock is held only until the end of the last lease
//! a renewal confirmed, on this host's monotonic clock, so a holder frozen past its lease and
//! woken knows at once that it may have lost the lock, before any renewal is tried.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{lease, Held, LockClient};
use crate::error::{Error, Result};

/// What the keeper has confirmed, shared with the work.
pub struct Watch {
    name: String,
    /// How long one confirmed renewal proves the lock held (the ttl, or the ZooKeeper session
    /// timeout where an ephemeral holder child is dropped sooner).
    proof: Duration,
    /// The start of the last confirmed renewal (or of the grant) plus the ttl: the backend
    /// extended the lease from its own clock at or after that instant.
    confirmed_until: Arc<Mutex<Instant>>,
    renewals: AtomicU64,
    /// Set once the lock is, or may be, lost.
    lost: Arc<AtomicBool>,
    why: Mutex<Option<Error>>,
    stop: AtomicBool,
}

impl Watch {
    fn new(held: &Held, granted: Instant, proof: Duration) -> Watch {
        Watch {
            name: held.name.to_string(),
            proof,
            confirmed_until: Arc::new(Mutex::new(granted + proof)),
            renewals: AtomicU64::new(0),
            lost: Arc::new(AtomicBool::new(false)),
            why: Mutex::new(None),
            stop: AtomicBool::new(false),
        }
    }

    /// Set once a renewal failed or the lease ran out unconfirmed (work that only polls).
    pub fn flag(&self) -> &AtomicBool {
        &self.lost
    }

    /// How much longer the lock is known to be held (zero: it may be lost).
    pub fn confirmed_for(&self) -> Duration {
        self.confirmed_until
            .lock()
            .map(|u| u.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }

    /// Ok while the lock is proven held; else `LockLost`, saying why. Ask before every act.
    pub fn check(&self) -> Result<()> {
        if let Some(e) = self.why.lock().ok().and_then(|w| w.clone()) {
            return Err(e);
        }
        if self.lost.load(Ordering::SeqCst) || self.confirmed_for().is_zero() {
            self.lost.store(true, Ordering::SeqCst);
            return Err(Error::LockLost(format!(
                "lock {} may have been lost: no renewal was confirmed within its ttl",
                self.name
            )));
        }
        Ok(())
    }

    /// A handle that says, from anywhere (a ring transaction about to commit), whether the
    /// lock is still proven held.
    pub fn held_proof(&self) -> Proof {
        Proof {
            until: self.confirmed_until.clone(),
            lost: self.lost.clone(),
        }
    }

    /// How long one confirmed renewal proves the lock held.
    pub fn proof(&self) -> Duration {
        self.proof
    }

    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::SeqCst)
    }

    fn lose(&self, e: Error) {
        if let Ok(mut w) = self.why.lock() {
            w.get_or_insert(e);
        }
        self.lost.store(true, Ordering::SeqCst);
    }
}

/// Whether a lock is still proven held, as its keeper knows: checked by a fenced transaction
/// just before it commits, so one frozen after its fence check and woken past the lease rolls
/// back rather than write.
#[derive(Clone, Debug)]
pub struct Proof {
    until: Arc<Mutex<Instant>>,
    lost: Arc<AtomicBool>,
}

impl Proof {
    pub fn holds(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && self.until.lock().is_ok_and(|u| Instant::now() < *u)
    }
}

/// Renews until told to stop or the lock is lost; returns the client.
fn renew_loop<'c>(mut client: LockClient<'c>, held: &Held, watch: &Watch) -> LockClient<'c> {
    let interval = lease::renew_interval(watch.proof);
    // A renewal that takes longer than the next one is due proves nothing: bounded so, a
    // frozen ring loses the lock in seconds (and the holder stops), instead of holding the
    // keeper, and whoever waits for it, for the connection's whole read timeout.
    let bound = interval.max(Duration::from_secs(2));
    let _ = client.ring().set_timeouts(bound, bound);
    let mut next = Instant::now() + interval;
    while !watch.stop.load(Ordering::SeqCst) {
        if watch.check().is_err() {
            return client;
        }
        if Instant::now() >= next {
            let began = Instant::now();
            match client.renew(held) {
                Ok(()) => {
                    if let Ok(mut until) = watch.confirmed_until.lock() {
                        *until = began + watch.proof;
                    }
                    watch.renewals.fetch_add(1, Ordering::SeqCst);
                    next = Instant::now() + interval;
                }
                Err(e) => {
                    watch.lose(e);
                    return client;
                }
            }
        }
        // Woken early when the work is done; at the latest when the lease would run out.
        let wake = next.min(Instant::now() + watch.confirmed_for());
        std::thread::park_timeout(wake.saturating_duration_since(Instant::now()));
    }
    client
}

/// Runs `work` while a thread keeps `held` renewed (granted at `granted`); the client comes
/// back for the release.
pub fn keeping<'c, T>(
    client: LockClient<'c>,
    held: &Held,
    granted: Instant,
    work: impl FnOnce(&Watch) -> T,
) -> (T, Watch, Result<LockClient<'c>>) {
    let watch = Watch::new(held, granted, client.proof_for(held));
    /// Stops the keeper however `work` ends: a panic unwinding through the scope would
    /// otherwise wait for a keeper that renews forever.
    struct StopKeeper<'a>(&'a AtomicBool, std::thread::Thread);
    impl Drop for StopKeeper<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
            self.1.unpark();
        }
    }
    let (out, client) = std::thread::scope(|s| {
        let keeper = s.spawn(|| renew_loop(client, held, &watch));
        let stopping = StopKeeper(&watch.stop, keeper.thread().clone());
        let out = work(&watch);
        drop(stopping);
        (
            out,
            keeper
                .join()
                .map_err(|_| Error::Failed("the lock keeper panicked".into())),
        )
    });
    (out, watch, client)
}

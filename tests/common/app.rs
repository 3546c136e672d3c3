//! A simulated application, as the README tells applications to behave: it routes every write
//! by the ring (re-read on a timer, every 100–300 ms, and at once after a refused or failed
//! write), half of its threads on pooled connections (one kept per server they write to, given
//! up when the route moves away) and half opening a connection per write. Writers increment
//! hot rows (`views = views + 1`) over and over; a churner inserts rows and deletes some of
//! them. Each keeps a ledger of what the database acknowledged, so a test can prove that every
//! acknowledged write is on every server of the shard, with its value.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use super::{conn, wait_replicated};

/// What the application writes and where it reads its routes.
#[derive(Clone)]
pub struct Spec {
    pub ring_port: u16,
    pub ring_db: String,
    pub shard_db: String,
    pub shard: String,
    /// The hot rows: (owner, photo id).
    pub hot: Vec<(u64, u64)>,
    /// Ids the churner's inserted photos start at.
    pub first_new_photo: u64,
    pub writers: usize,
}

/// What one thread saw acknowledged.
#[derive(Default, Debug)]
pub struct Ledger {
    /// Acknowledged increments per photo.
    pub increments: BTreeMap<u64, u64>,
    pub inserted: BTreeSet<u64>,
    pub deleted: BTreeSet<u64>,
    /// Acknowledged inserts that a later delete, routed by the ring, did not find.
    pub vanished: BTreeSet<u64>,
    /// Writes refused by a guard (error 1644): not applied.
    pub refused: u64,
    /// Writes whose outcome is unknown (the connection failed mid-statement): maybe applied.
    pub uncertain: BTreeMap<u64, u64>,
    /// The longest any one user's writes were refused in a row (from its first refusal to its
    /// next acknowledged write): the write window the application felt.
    pub longest_refusal: Duration,
}

impl Ledger {
    fn merge(&mut self, other: Ledger) {
        for (k, v) in other.increments {
            *self.increments.entry(k).or_default() += v;
        }
        for (k, v) in other.uncertain {
            *self.uncertain.entry(k).or_default() += v;
        }
        self.inserted.extend(other.inserted);
        self.vanished.extend(other.vanished);
        self.deleted.extend(other.deleted);
        self.refused += other.refused;
        self.longest_refusal = self.longest_refusal.max(other.longest_refusal);
    }

    pub fn acknowledged(&self) -> u64 {
        self.increments.values().sum::<u64>() + self.inserted.len() as u64
    }
}

pub struct App {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Ledger>>,
    pub spec: Spec,
}

/// Seeds the hot rows on `port` (as an administrator loading data, logged in as shardctl: the
/// guards let its sessions through) and waits until `peer` has them.
pub fn seed(spec: &Spec, port: u16, peer: u16) {
    let mut c = super::shardctl_conn(port);
    for (owner, photo) in &spec.hot {
        c.exec_drop(
            format!(
                "INSERT INTO {}.photos (photo_id, owner_id, title, taken_at, views)
                 VALUES (?, ?, 'hot', '2026-01-01 00:00:00', 0)",
                spec.shard_db
            ),
            (photo, owner),
        )
        .unwrap();
    }
    wait_replicated(&mut c, peer);
}

/// A small deterministic random source (xorshift): each thread, each test its own sequence.
pub struct Rng(pub u64);
impl Rng {
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Router {
    ring: mysql::Conn,
    spec: Spec,
    routes: Vec<u16>,
    next_read: Instant,
    rng: Rng,
}

impl Router {
    fn new(spec: &Spec, seed: u64) -> Router {
        let mut r = Router {
            ring: conn(spec.ring_port),
            spec: spec.clone(),
            routes: Vec::new(),
            next_read: Instant::now(),
            rng: Rng(seed | 1),
        };
        r.refresh();
        r
    }

    /// The shard's online servers in routing order, as the README's rule says.
    fn refresh(&mut self) {
        let read: mysql::Result<Vec<u16>> = self.ring.exec(
            format!(
                "SELECT s.port FROM {db}.shard_servers s JOIN {db}.shards h USING (shard_id)
                 WHERE h.name = ? AND s.status = 'online' ORDER BY s.half, s.host, s.port",
                db = self.spec.ring_db
            ),
            (&self.spec.shard,),
        );
        if let Ok(r) = read {
            self.routes = r;
        }
        self.next_read = Instant::now() + Duration::from_millis(100 + self.rng.next() % 200);
    }

    fn route(&mut self, user: u64) -> Option<u16> {
        if Instant::now() >= self.next_read {
            self.refresh();
        }
        (!self.routes.is_empty()).then(|| self.routes[(user % self.routes.len() as u64) as usize])
    }
}

fn is_refusal(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(m) if m.code == 1644)
}

/// The connections of one thread: pooled (kept per server) or opened per write.
struct Sessions {
    pooled: bool,
    pool: BTreeMap<u16, mysql::Conn>,
}

impl Sessions {
    fn get(&mut self, port: u16) -> Option<&mut mysql::Conn> {
        if !self.pooled {
            self.pool.clear();
        }
        if let std::collections::btree_map::Entry::Vacant(e) = self.pool.entry(port) {
            e.insert(super::conn_within(port, Duration::from_secs(2))?);
        }
        self.pool.get_mut(&port)
    }
    /// Gives up connections to servers no longer routed to.
    fn keep_only(&mut self, routes: &[u16]) {
        self.pool.retain(|p, _| routes.contains(p));
    }
}

/// Tracks, per user, refusals in a row until its next acknowledged write: the longest write
/// window the application felt for any one user.
#[derive(Default)]
struct Window(BTreeMap<u64, Instant>, Duration);
impl Window {
    fn refused(&mut self, user: u64) {
        self.0.entry(user).or_insert_with(Instant::now);
    }
    fn acknowledged(&mut self, user: u64) {
        if let Some(t) = self.0.remove(&user) {
            self.1 = self.1.max(t.elapsed());
        }
    }
}

fn writer(spec: Spec, index: usize, stop: Arc<AtomicBool>) -> Ledger {
    let mut ledger = Ledger::default();
    let mut router = Router::new(&spec, 7919 * (index as u64 + 1));
    let mut sessions = Sessions {
        pooled: index.is_multiple_of(2),
        pool: BTreeMap::new(),
    };
    let mut window = Window::default();
    let sql = format!(
        "UPDATE {}.photos SET views = views + 1 WHERE photo_id = ?",
        spec.shard_db
    );
    while !stop.load(Ordering::Relaxed) {
        let (user, photo) = spec.hot[(router.rng.next() % spec.hot.len() as u64) as usize];
        let Some(port) = router.route(user) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        sessions.keep_only(&router.routes);
        let Some(c) = sessions.get(port) else {
            router.refresh();
            continue;
        };
        match c.exec_drop(&sql, (photo,)) {
            Ok(()) if c.affected_rows() == 1 => {
                *ledger.increments.entry(photo).or_default() += 1;
                window.acknowledged(user);
            }
            Ok(()) => panic!("photo {photo} is missing on {port}"),
            Err(e) => {
                if is_refusal(&e) {
                    ledger.refused += 1;
                    window.refused(user);
                } else {
                    *ledger.uncertain.entry(photo).or_default() += 1;
                }
                sessions.pool.remove(&port);
                router.refresh();
            }
        }
    }
    ledger.longest_refusal = window.1;
    ledger
}

/// Inserts photos for the hot users and deletes every third one it inserted.
fn churner(spec: Spec, index: usize, stop: Arc<AtomicBool>) -> Ledger {
    let mut ledger = Ledger::default();
    let mut router = Router::new(&spec, 104_729 * (index as u64 + 1));
    let mut sessions = Sessions {
        pooled: index.is_multiple_of(2),
        pool: BTreeMap::new(),
    };
    let mut next_id = spec.first_new_photo + 1_000_000 * index as u64;
    let mut mine: Vec<(u64, u64)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let delete = mine.len() >= 3 && router.rng.next().is_multiple_of(3);
        let (user, photo) = if delete {
            mine.remove(0)
        } else {
            let user = spec.hot[(router.rng.next() % spec.hot.len() as u64) as usize].0;
            (user, next_id)
        };
        let Some(port) = router.route(user) else {
            std::thread::sleep(Duration::from_millis(5));
            if delete {
                mine.insert(0, (user, photo));
            }
            continue;
        };
        sessions.keep_only(&router.routes);
        let result = match sessions.get(port) {
            None => Err(None),
            Some(c) => {
                let done = if delete {
                    c.exec_drop(
                        format!("DELETE FROM {}.photos WHERE photo_id = ?", spec.shard_db),
                        (photo,),
                    )
                } else {
                    c.exec_drop(
                        format!(
                            "INSERT INTO {}.photos (photo_id, owner_id, title, taken_at)
                             VALUES (?, ?, 'new', '2026-01-02 00:00:00')",
                            spec.shard_db
                        ),
                        (photo, user),
                    )
                };
                done.map(|()| c.affected_rows()).map_err(Some)
            }
        };
        match result {
            Ok(1) if delete => {
                ledger.deleted.insert(photo);
            }
            Ok(1) => {
                ledger.inserted.insert(photo);
                mine.push((user, photo));
                next_id += 1;
            }
            // A delete that found nothing: the row it was acknowledged on has not reached
            // this server (what two writers lose); an insert that inserted nothing cannot be.
            Ok(_) if delete => {
                ledger.vanished.insert(photo);
            }
            Ok(n) => panic!("photo {photo}: {n} rows inserted on {port}"),
            Err(e) => {
                match e {
                    Some(e) if is_refusal(&e) => ledger.refused += 1,
                    // Unknown outcome: this id is never used again, nor deleted.
                    Some(_) => {
                        *ledger.uncertain.entry(photo).or_default() += 1;
                        if !delete {
                            next_id += 1;
                        }
                    }
                    None => {}
                }
                if delete && !ledger.uncertain.contains_key(&photo) {
                    mine.insert(0, (user, photo));
                }
                sessions.pool.remove(&port);
                router.refresh();
            }
        }
    }
    ledger
}

impl App {
    /// Starts `spec.writers` incrementing threads and one churner.
    pub fn start(spec: Spec) -> App {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..spec.writers {
            let (s, st) = (spec.clone(), stop.clone());
            threads.push(std::thread::spawn(move || writer(s, i, st)));
        }
        let (s, st) = (spec.clone(), stop.clone());
        threads.push(std::thread::spawn(move || churner(s, 0, st)));
        App {
            stop,
            threads,
            spec,
        }
    }

    /// Stops every thread and merges their ledgers.
    pub fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Ledger::default();
        for t in self.threads {
            all.merge(t.join().expect("application thread"));
        }
        all
    }
}

/// What a server holds that the ledger says it should not.
#[derive(Debug, Default)]
pub struct Lost {
    /// Acknowledged increments missing, summed over the hot rows and servers.
    pub increments: u64,
    /// Rows differing from the ledger (value, presence), per server.
    pub rows: Vec<String>,
}

impl Lost {
    pub fn nothing(&self) -> bool {
        self.increments == 0 && self.rows.is_empty()
    }
}

/// Compares every server in `ports` with the ledger, after they have applied each other's
/// writes: each hot row's value is the acknowledged increments (plus at most the uncertain
/// ones), each churned row is there exactly when its insert was acknowledged and its delete
/// was not.
pub fn compare(spec: &Spec, ledger: &Ledger, ports: &[u16]) -> Lost {
    for a in ports {
        for b in ports.iter().filter(|b| *b != a) {
            wait_replicated(&mut conn(*a), *b);
        }
    }
    let mut lost = Lost::default();
    for photo in &ledger.vanished {
        lost.rows.push(format!(
            "acknowledged photo {photo} was not there to delete"
        ));
    }
    for port in ports {
        let mut c = conn(*port);
        let owners: Vec<String> = spec.hot.iter().map(|(o, _)| o.to_string()).collect();
        let rows: Vec<(u64, u64)> = c
            .query(format!(
                "SELECT photo_id, views FROM {}.photos WHERE owner_id IN ({})",
                spec.shard_db,
                owners.join(",")
            ))
            .unwrap();
        let have: BTreeMap<u64, u64> = rows.into_iter().collect();
        for (_, photo) in &spec.hot {
            let acked = ledger.increments.get(photo).copied().unwrap_or(0);
            let maybe = ledger.uncertain.get(photo).copied().unwrap_or(0);
            let value = have.get(photo).copied().unwrap_or(0);
            if value < acked {
                lost.increments += acked - value;
            }
            if value < acked || value > acked + maybe {
                lost.rows.push(format!(
                    "{port}: photo {photo} has {value} views, {acked} acknowledged (+{maybe} uncertain)"
                ));
            }
        }
        for photo in have.keys().filter(|p| **p >= spec.first_new_photo) {
            let expected = ledger.inserted.contains(photo) && !ledger.deleted.contains(photo);
            if !expected && !ledger.uncertain.contains_key(photo) {
                lost.rows
                    .push(format!("{port}: photo {photo} is there but should not be"));
            }
        }
        for photo in ledger
            .inserted
            .difference(&ledger.deleted)
            .filter(|p| !ledger.vanished.contains(p))
        {
            if !have.contains_key(photo) {
                lost.rows
                    .push(format!("{port}: acknowledged photo {photo} is missing"));
            }
        }
    }
    lost
}

/// `CHECKSUM TABLE` of every demo table on `port`.
pub fn checksums(port: u16, database: &str) -> Vec<(String, Option<u64>)> {
    let mut c = conn(port);
    ["photos", "comments", "favorites"]
        .iter()
        .map(|t| {
            let row: (String, Option<u64>) = c
                .query_first(format!("CHECKSUM TABLE {database}.{t}"))
                .unwrap()
                .unwrap();
            row
        })
        .collect()
}

/// Both replication threads of the server on `port` run, with no error.
pub fn replicating(port: u16) -> bool {
    let row: Option<mysql::Row> = conn(port).query_first("SHOW SLAVE STATUS").unwrap();
    row.is_some_and(|r| {
        let yes = |k: &str| r.get::<Option<String>, _>(k).flatten().as_deref() == Some("Yes");
        yes("Slave_IO_Running") && yes("Slave_SQL_Running")
    })
}

//! The ZooKeeper lock store: each lock is the node `<root>/locks/NAME`, whose data is a JSON
//! record anyone can read with stock tools (`zkCli.sh get`), and whose one child names the
//! holder with a name no one else draws (`e-<random>` or `p-<random>`).
//!
//! The child is what makes the recipe safe where the usual ones are not:
//! - It is created in the same multi as the lock and deleted in the same multi as it, so a
//!   stale delete (a sweeper or a takeover that read the lock a moment ago) names a child the
//!   successor does not have and fails with NoNode: a re-created lock node is back at version 0,
//!   and delete-by-version alone cannot tell it from its predecessor.
//! - `e-` children are ephemeral: a holder that keeps a session loses the child when its session
//!   ends, so a lock without a child is a dead holder's, and a holder whose renewal finds its
//!   child gone knows it lost the lock.
//! - After a connection loss during a create, the client asks for its own child: the answer
//!   says whether the create happened, with no guess.
//!
//! The fencing token is the lock node's `czxid`: ZooKeeper's zxid only grows, across deletes
//! and re-creates and across leader elections (the epoch is its high half).

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zookeeper_client as zk;

use crate::config::ZookeeperConfig;
use crate::error::{Error, Result};

/// The fields of the lock node's JSON that are a public contract (README, PRODUCT.md 3b).
pub const RECORD_FIELDS: &[&str] = &[
    "owner",
    "host",
    "pid",
    "purpose",
    "token",
    "acquired_at",
    "expires_at",
    "max_hold_seconds",
];

/// The lock node's data: the public record of who holds what.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub purpose: String,
    /// The node's czxid. The create cannot know it, so the create writes 0 and the holder
    /// writes the token right after; readers take the czxid itself.
    pub token: u64,
    pub acquired_at: String,
    pub expires_at: String,
    pub max_hold_seconds: f64,
    /// Where the holder keeps `GET_LOCK(NAME)` (account locks): server and connection id.
    #[serde(default)]
    pub holder_server: Option<String>,
    #[serde(default)]
    pub holder_connection: Option<u64>,
    #[serde(default)]
    pub metadata: Value,
}

impl Record {
    /// A new record for a lease of `ttl` starting now.
    pub fn starting_now(
        owner: &str,
        purpose: &str,
        ttl: Duration,
        holder: Option<(String, u64)>,
        metadata: Value,
    ) -> Record {
        let now = SystemTime::now();
        let (holder_server, holder_connection) = holder.unzip();
        Record {
            owner: owner.to_string(),
            host: crate::ring::audit::hostname(),
            pid: std::process::id(),
            purpose: purpose.to_string(),
            token: 0,
            acquired_at: timestamp(now),
            expires_at: timestamp(now + ttl),
            max_hold_seconds: ttl.as_secs_f64(),
            holder_server,
            holder_connection,
            metadata,
        }
    }

    /// Moves the written expiry to `ttl` from now. Informational only: readers judge expiry
    /// by the node's `mtime` (the leader's clock), never by this text.
    pub fn extend(&mut self, ttl: Duration) {
        self.expires_at = timestamp(SystemTime::now() + ttl);
    }

    /// The lease's length in milliseconds; a record that does not say (written by hand) has
    /// none, so it is expired and can be swept.
    fn ttl_ms(&self) -> i64 {
        if self.max_hold_seconds.is_finite() && self.max_hold_seconds > 0.0 {
            (self.max_hold_seconds * 1000.0).min(i64::MAX as f64 / 2.0) as i64
        } else {
            0
        }
    }
}

/// The ring's format for times (`2026-12-02T03:40:00.123456Z`), so both backends print alike.
fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// A ZooKeeper time (milliseconds since the epoch, the leader's clock) in the ring's format.
pub fn zk_timestamp(ms: i64) -> String {
    timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// A lock node as read: its record, its token, and its holder child (None: the holder's
/// ephemeral child is gone, so its session ended).
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub record: Record,
    pub token: u64,
    pub holder: Option<String>,
    /// Every child, the holder's and any stray one (a delete must remove them all).
    pub children: Vec<String>,
    /// The data version read: a delete or takeover judged on this read is conditional on it,
    /// so a renewal in between makes it fail.
    pub version: i32,
    /// The leader's clock when the node was created and last written (ms since the epoch).
    pub ctime_ms: i64,
    pub mtime_ms: i64,
}

impl Node {
    /// When the lease ends, by the ensemble's clock: the last write (the grant or the holder's
    /// last renewal, stamped by the leader) plus the lease's length. No client's clock enters.
    pub fn expires_ms(&self) -> i64 {
        self.mtime_ms.saturating_add(self.record.ttl_ms())
    }

    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.expires_ms() <= now_ms
    }
}

/// Whether the holder keeps a session: its child is ephemeral, or was (a lock without a child
/// lost its ephemeral one; a lease's persistent child is deleted only with the lock).
pub fn keeps_session(holder: Option<&str>) -> bool {
    holder.is_none_or(|h| h.starts_with("e-"))
}

/// Whether the holder's ZooKeeper session is alive, as far as the ensemble knows.
pub fn session_alive(holder: Option<&str>) -> bool {
    holder.is_some_and(|h| h.starts_with("e-"))
}

pub enum Created {
    /// Won: the token, the holder child, and the leader's clock at the grant (ms).
    Won(u64, String, i64),
    /// The lock node exists (someone else's).
    Exists,
}

/// One blocking-code handle on one ZooKeeper session.
pub struct ZkStore {
    client: zk::Client,
    cfg: ZookeeperConfig,
    /// `<root>/locks`.
    dir: String,
}

/// The process's runtime for the ZooKeeper client: worker threads, not a current-thread
/// runtime, so the sessions' pings go on while this program is busy elsewhere (else a session
/// expires while `state()` still says connected); as many as the machine has cores, at most 4,
/// so the sessions of a rebalance's workers do not queue behind one thread.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .clamp(1, 4),
            )
            .thread_name("zookeeper")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::Failed(format!("starting the ZooKeeper client runtime: {e}")))
}

/// Connection trouble: the ensemble (or the session) is not there. Anything else is a real
/// answer from a server.
fn is_connection(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::ConnectionLoss
            | zk::Error::Timeout
            | zk::Error::NoHosts
            | zk::Error::SessionExpired
            | zk::Error::ClientClosed
            | zk::Error::SessionMoved
            | zk::Error::Custom(_)
    )
}

/// The connection broke with the request in flight (the server died, a leader is being
/// elected): the session may go on from another server, and the request may or may not have
/// been applied. The client reports a broken socket as an I/O error (`Custom`).
fn is_transient(e: &zk::Error) -> bool {
    matches!(e, zk::Error::ConnectionLoss | zk::Error::Custom(_))
}

fn multi_source(e: &zk::MultiWriteError) -> &zk::Error {
    match e {
        zk::MultiWriteError::RequestFailed { source } => source,
        zk::MultiWriteError::OperationFailed { source, .. } => source,
    }
}

impl ZkStore {
    /// Opens a session, failing within the session timeout when the ensemble does not answer.
    pub fn connect(cfg: &ZookeeperConfig) -> Result<ZkStore> {
        let rt = runtime()?;
        let timeout = cfg.session_timeout;
        let deadline = Instant::now() + timeout;
        // Each attempt tries the servers from another one first (a random one at the start, as
        // the Java client shuffles them), bounded to a third of the session timeout: a frozen
        // server accepts TCP and never answers, and must not hold every connect to the end.
        // While the ensemble elects a leader its servers turn clients away: attempts repeat
        // until the session timeout has passed.
        let n = cfg.servers.len();
        if n == 0 {
            return Err(Error::Config(
                "[locks] servers lists no ZooKeeper server".into(),
            ));
        }
        let first = rand::random_range(0..n);
        let mut attempt = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let bound = left.min((timeout / 3).max(Duration::from_millis(500)));
            let order: Vec<String> = (0..n)
                .map(|i| cfg.servers[(first + attempt + i) % n].to_string())
                .collect();
            let ensemble = order.join(",");
            let mut connector = zk::Client::connector();
            if let Some((user, password)) = &cfg.digest {
                connector = connector
                    .with_auth("digest", format!("{user}:{}", password.expose()).as_bytes());
            }
            let connecting = connector
                .with_session_timeout(timeout)
                .with_connection_timeout((bound / n as u32).max(Duration::from_millis(200)))
                .with_fail_eagerly()
                .connect(&ensemble);
            let why = match rt.block_on(async { tokio::time::timeout(bound, connecting).await }) {
                Ok(Ok(client)) => {
                    return Ok(ZkStore {
                        client,
                        dir: format!("{}/locks", cfg.root),
                        cfg: cfg.clone(),
                    })
                }
                Ok(Err(e)) if is_connection(&e) => e.to_string(),
                Ok(Err(e)) => return Err(unreachable_ensemble(cfg, "connecting", &e.to_string())),
                Err(_) => format!("no answer within the session timeout ({timeout:?})"),
            };
            if Instant::now() + Duration::from_millis(100) >= deadline {
                return Err(unreachable_ensemble(cfg, "connecting", &why));
            }
            std::thread::sleep(Duration::from_millis(100));
            attempt += 1;
        }
    }

    /// The session timeout asked of the ensemble.
    pub fn session_timeout(&self) -> Duration {
        self.cfg.session_timeout
    }

    pub fn backend_description(&self) -> String {
        format!("ZooKeeper ensemble {}", self.cfg.ensemble())
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    /// The ACL of every node shardctl creates: with digest authentication configured, only
    /// that identity may change or delete them (anyone may read, as stock tools do); without
    /// it, anyone may do anything, which `doctor` says.
    fn acls(&self) -> zk::Acls<'static> {
        static OWNER_ALL_WORLD_READ: [zk::Acl; 2] = [
            zk::Acl::new_const(zk::Permission::ALL, "auth", ""),
            zk::Acl::new_const(zk::Permission::READ, "world", "anyone"),
        ];
        if self.cfg.digest.is_some() {
            zk::Acls::new(&OWNER_ALL_WORLD_READ)
        } else {
            zk::Acls::anyone_all()
        }
    }

    /// Whether anyone who can reach the ensemble may change or delete the locks directory.
    pub fn world_writable(&self) -> Result<bool> {
        let doing = "reading the locks directory's ACL";
        let got = self.retrying(doing, |s| {
            s.wait(doing, s.client.get_acl(&s.dir)).map(|r| match r {
                Ok((acls, _)) => Ok(Some(acls)),
                Err(zk::Error::NoNode) => Ok(None),
                Err(e) => Err(e),
            })
        })?;
        // Not there yet: it will be created with the configured ACL.
        let Some(acls) = got else {
            return Ok(self.cfg.digest.is_none());
        };
        Ok(acls.iter().any(|a| {
            a.scheme() == "world"
                && a.id() == "anyone"
                && (a.permission()
                    & (zk::Permission::WRITE | zk::Permission::DELETE | zk::Permission::CREATE))
                    != zk::Permission::NONE
        }))
    }

    /// Runs one request, bounded by the session timeout.
    fn wait<T>(&self, doing: &str, f: impl Future<Output = T>) -> Result<T> {
        let timeout = self.cfg.session_timeout;
        runtime()?
            .block_on(async { tokio::time::timeout(timeout, f).await })
            .map_err(|_| {
                unreachable_ensemble(
                    &self.cfg,
                    doing,
                    &format!("no answer within the session timeout ({timeout:?})"),
                )
            })
    }

    fn failed(&self, doing: &str, e: &zk::Error) -> Error {
        if is_connection(e) {
            unreachable_ensemble(&self.cfg, doing, &e.to_string())
        } else {
            Error::Failed(format!("{doing} on {}: {e}", self.backend_description()))
        }
    }

    /// Repeats `f` while the connection is being re-established (a server of the ensemble
    /// died, a leader is being elected), until the session timeout has passed since the start.
    fn retrying<T>(
        &self,
        doing: &str,
        mut f: impl FnMut(&ZkStore) -> Result<std::result::Result<T, zk::Error>>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.cfg.session_timeout;
        loop {
            match f(self)? {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(self.failed(doing, &e)),
            }
        }
    }

    /// A request that reaches the ensemble, to learn whether the session serves.
    pub fn probe(&self) -> Result<()> {
        self.retrying("asking the ensemble", |s| {
            s.wait("asking the ensemble", s.client.check_stat("/"))
                .map(|r| r.map(|_| ()))
        })
    }

    /// Creates the lock with its holder child, or reports the lock that is there.
    pub fn create(&self, name: &str, record: &Record, ephemeral: bool) -> Result<Created> {
        let path = self.path(name);
        let holder = format!(
            "{}-{:016x}",
            if ephemeral { "e" } else { "p" },
            rand::random::<u64>()
        );
        let child = format!("{path}/{holder}");
        let data = serde_json::to_vec(record).map_err(|e| Error::Failed(e.to_string()))?;
        let lock_mode = zk::CreateMode::Persistent.with_acls(self.acls());
        let child_mode = if ephemeral {
            zk::CreateMode::Ephemeral
        } else {
            zk::CreateMode::Persistent
        }
        .with_acls(self.acls());
        let mut lost_connection = false;
        let deadline = Instant::now() + self.cfg.session_timeout;
        loop {
            let mut writer = self.client.new_multi_writer();
            writer
                .add_create(&path, &data, &lock_mode)
                .and_then(|_| writer.add_create(&child, &[], &child_mode))
                .map_err(|e| self.failed("creating the lock", &e))?;
            // Sent behind the create on the same session, so it sees the create's outcome, in
            // the same round trip. Our child was created in the lock's own transaction, so its
            // czxid is the lock's: the token (3.8.0 returns no valid Stat from a create inside
            // a multi), and its existence proves the lock is still ours.
            let commit = writer.commit();
            let mine = self.client.check_stat(&child);
            let (created, mine) =
                self.wait("creating the lock", async { (commit.await, mine.await) })?;
            let won = match created {
                Ok(_) => match mine {
                    Ok(stat) => stat.map(|st| (st.czxid, st.ctime)),
                    // Created, then the connection broke: ask again.
                    Err(e) if is_transient(&e) => self.own_token(&child)?,
                    Err(e) => return Err(self.failed("reading the lock", &e)),
                },
                Err(e) => match multi_source(&e) {
                    zk::Error::NodeExists if !lost_connection => None,
                    zk::Error::NoNode => {
                        self.ensure_dir()?;
                        continue;
                    }
                    e if is_transient(e) && Instant::now() < deadline => {
                        lost_connection = true;
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    // After a connection loss our own create may have gone through: our child
                    // says whether it did.
                    zk::Error::NodeExists => self.own_token(&child)?,
                    other => return Err(self.failed("creating the lock", other)),
                },
            };
            return match won {
                Some((czxid, granted_ms)) => {
                    let token = czxid.max(0) as u64;
                    if ephemeral {
                        self.send_token(name, &holder, record, token)?;
                    } else {
                        // A lease nobody renews: its record gets the token before we answer.
                        let mut record = record.clone();
                        record.token = token;
                        self.update(name, &holder, &record)?;
                    }
                    Ok(Created::Won(token, holder, granted_ms))
                }
                // Someone else's, or ours taken away at once (force-released).
                None => Ok(Created::Exists),
            };
        }
    }

    /// The czxid and ctime of our holder child, if it exists.
    fn own_token(&self, child: &str) -> Result<Option<(i64, i64)>> {
        self.retrying("reading the lock", |s| {
            s.wait("reading the lock", s.client.check_stat(child))
                .map(|r| r.map(|st| st.map(|st| (st.czxid, st.ctime))))
        })
    }

    /// The ensemble's clock now (ms since the epoch): the leader stamps every write with its
    /// own time, so a write to a scratch node reads the one clock every client shares.
    pub fn now_ms(&self) -> Result<i64> {
        let path = format!("{}/clock", self.cfg.root);
        let doing = "reading the ensemble's clock";
        self.retrying(doing, |s| {
            let got = s.wait(doing, s.client.set_data(&path, &[], None))?;
            Ok(match got {
                Ok(stat) => Ok(stat.mtime),
                Err(zk::Error::NoNode) => {
                    let mode = zk::CreateMode::Persistent.with_acls(s.acls());
                    match s.wait(doing, s.client.mkdir(&path, &mode))? {
                        Ok(()) | Err(zk::Error::NodeExists) => Err(zk::Error::ConnectionLoss),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            })
        })
    }

    /// Writes the token into the record of a lock held with a session, only while `holder` is
    /// still the lock's child. Sent now, not waited for: the session runs requests in order, so
    /// every later request of ours (a read, a renewal, the release) comes after it, and the grant
    /// does not wait a round trip for a field readers can also take from the node's czxid.
    /// Should it fail (the connection broke), the holder's next renewal writes it.
    fn send_token(&self, name: &str, holder: &str, record: &Record, token: u64) -> Result<()> {
        let mut record = record.clone();
        record.token = token;
        let path = self.path(name);
        let child = format!("{path}/{holder}");
        let data = serde_json::to_vec(&record).map_err(|e| Error::Failed(e.to_string()))?;
        let client = self.client.clone();
        let mut write = Box::pin(async move {
            let mut writer = client.new_multi_writer();
            writer.add_check_version(&child, 0)?;
            writer.add_set_data(&path, &data, None)?;
            writer.commit().await.map(|_| ()).map_err(zk::Error::from)
        });
        // One poll queues the request on the session (everything before the first await runs);
        // the runtime then takes the reply.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if write.as_mut().poll(&mut cx).is_pending() {
            runtime()?.spawn(write);
        }
        Ok(())
    }

    fn ensure_dir(&self) -> Result<()> {
        let mode = zk::CreateMode::Persistent.with_acls(self.acls());
        self.retrying("creating the locks directory", |s| {
            s.wait(
                "creating the locks directory",
                s.client.mkdir(&s.dir, &mode),
            )
            .map(|r| match r {
                Err(zk::Error::NodeExists) => Ok(()),
                other => other,
            })
        })
    }

    /// The lock's data and children, read in one consistent request.
    fn read_request(
        &self,
        path: &str,
    ) -> impl Future<Output = std::result::Result<Vec<zk::MultiReadResult>, zk::Error>> + Send + '_
    {
        let mut reader = self.client.new_multi_reader();
        let added = reader
            .add_get_data(path)
            .and_then(|_| reader.add_get_children(path));
        let commit = reader.commit();
        async move {
            added?;
            commit.await
        }
    }

    fn node_from(
        &self,
        name: &str,
        read: std::result::Result<Vec<zk::MultiReadResult>, zk::Error>,
    ) -> std::result::Result<Option<Node>, zk::Error> {
        let mut results = read?.into_iter();
        let (data, stat) = match results.next() {
            Some(zk::MultiReadResult::Data { data, stat }) => (data, stat),
            Some(zk::MultiReadResult::Error {
                err: zk::Error::NoNode,
            })
            | None => return Ok(None),
            Some(zk::MultiReadResult::Error { err }) => return Err(err),
            Some(_) => {
                return Err(zk::Error::UnexpectedError(
                    "a read answered out of order".into(),
                ))
            }
        };
        let children = match results.next() {
            Some(zk::MultiReadResult::Children { children }) => children,
            // Deleted between the two reads of one request cannot happen; be plain about it.
            _ => return Ok(None),
        };
        let record = serde_json::from_slice::<Record>(&data).unwrap_or_else(|_| Record {
            // A node written by someone else: shown, and sweepable, never trusted as a lease.
            owner: "(unreadable record)".into(),
            host: String::new(),
            pid: 0,
            purpose: String::new(),
            token: 0,
            acquired_at: String::new(),
            expires_at: String::new(),
            max_hold_seconds: 0.0,
            holder_server: None,
            holder_connection: None,
            metadata: Value::Null,
        });
        Ok(Some(Node {
            name: name.to_string(),
            record,
            token: stat.czxid.max(0) as u64,
            holder: children
                .iter()
                .find(|c| c.starts_with("e-") || c.starts_with("p-"))
                .cloned(),
            children,
            version: stat.version,
            ctime_ms: stat.ctime,
            mtime_ms: stat.mtime,
        }))
    }

    /// The lock named `name`, if it exists.
    pub fn read(&self, name: &str) -> Result<Option<Node>> {
        let path = self.path(name);
        self.retrying("reading the lock", |s| {
            let read = s.read_request(&path);
            let got = s.wait("reading the lock", read)?;
            Ok(s.node_from(name, got))
        })
    }

    /// Every lock, by name.
    pub fn read_all(&self) -> Result<Vec<Node>> {
        let names = self.retrying("listing locks", |s| {
            s.wait("listing locks", s.client.list_children(&s.dir))
                .map(|r| match r {
                    Err(zk::Error::NoNode) => Ok(Vec::new()),
                    other => other,
                })
        })?;
        let mut nodes = Vec::with_capacity(names.len());
        // Many locks per request, few enough to stay far below ZooKeeper's 1 MB packets.
        for chunk in names.chunks(200) {
            let got = self.retrying("listing locks", |s| {
                let mut reader = s.client.new_multi_reader();
                for n in chunk {
                    let path = s.path(n);
                    if let Err(e) = reader
                        .add_get_data(&path)
                        .and_then(|_| reader.add_get_children(&path))
                    {
                        return Ok(Err(e));
                    }
                }
                let commit = reader.commit();
                s.wait("listing locks", commit)
            })?;
            let mut results = got.into_iter();
            for n in chunk {
                let pair: Vec<zk::MultiReadResult> = results.by_ref().take(2).collect();
                if let Some(node) = self
                    .node_from(n, Ok(pair))
                    .map_err(|e| self.failed("listing locks", &e))?
                {
                    nodes.push(node);
                }
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nodes)
    }

    /// Rewrites the record, only while `holder` is the lock's child. None: the lock is not
    /// ours any more (released, taken over, or our session ended); else the leader's time of
    /// the write (ms), from which the lease now runs.
    pub fn update(&self, name: &str, holder: &str, record: &Record) -> Result<Option<i64>> {
        let path = self.path(name);
        let child = format!("{path}/{holder}");
        let data = serde_json::to_vec(record).map_err(|e| Error::Failed(e.to_string()))?;
        let doing = "updating the lock";
        self.retrying(doing, |s| {
            let mut writer = s.client.new_multi_writer();
            if let Err(e) = writer
                .add_check_version(&child, 0)
                .and_then(|_| writer.add_set_data(&path, &data, None))
            {
                return Ok(Err(e));
            }
            let commit = writer.commit();
            let done = s.wait(doing, commit)?;
            Ok(match done {
                Ok(results) => Ok(results.into_iter().find_map(|r| match r {
                    zk::MultiWriteResult::SetData { stat } => Some(stat.mtime),
                    _ => None,
                })),
                Err(e) => match multi_source(&e) {
                    zk::Error::NoNode | zk::Error::BadVersion => Ok(None),
                    e => Err(e.clone()),
                },
            })
        })
    }

    /// Deletes the lock we hold under `holder`. A stray child someone put beside ours (the
    /// delete would fail NotEmpty) is read and removed with it, while ours is still there.
    pub fn release(&self, name: &str, holder: &str) -> Result<bool> {
        if self.delete_once(name, &[holder.to_string()], None)? == Some(true) {
            return Ok(true);
        }
        match self.read(name)? {
            Some(node) if node.holder.as_deref() == Some(holder) => self.remove(&node),
            _ => Ok(false),
        }
    }

    /// Deletes the lock as it was read: every child read with it (the holder's, which a
    /// successor never has, and any stray one) and the node itself only at the version read, so
    /// a renewal since the read, or a successor, makes it fail. False: it is not that lock any
    /// more.
    ///
    /// A node whose children have children of their own is not a lock's shape (another tool's
    /// tree, or another root nested inside this one): a takeover or a sweep never removes it.
    pub fn delete_judged(&self, node: &Node) -> Result<bool> {
        Ok(self
            .delete_once(&node.name, &node.children, Some(node.version))?
            .unwrap_or(false))
    }

    /// Removes a lock an operator named (its release, `force-release`): as `delete_judged`,
    /// and where a child has children of its own, the whole subtree of every child read goes
    /// too, deepest first, still at the version read.
    pub fn remove(&self, node: &Node) -> Result<bool> {
        if let Some(done) = self.delete_once(&node.name, &node.children, Some(node.version))? {
            return Ok(done);
        }
        let mut all = Vec::new();
        for c in &node.children {
            self.subtree(&self.path(&node.name), c, 0, &mut all)?;
        }
        Ok(self
            .delete_once(&node.name, &all, Some(node.version))?
            .unwrap_or(false))
    }

    /// `rel` under `base` and everything below it, deepest first, as paths relative to `base`
    /// (at most 16 levels and 1,000 nodes: what a hand or a tool left, not a tree to walk for
    /// ever).
    fn subtree(&self, base: &str, rel: &str, depth: usize, out: &mut Vec<String>) -> Result<()> {
        if depth > 16 || out.len() > 1_000 {
            return Err(Error::Failed(format!(
                "{base}/{rel} holds a deeper or larger tree than a lock ever has; remove it by hand"
            )));
        }
        let doing = "listing a lock's children";
        let path = format!("{base}/{rel}");
        let kids = self.retrying(doing, |s| {
            s.wait(doing, s.client.list_children(&path))
                .map(|r| match r {
                    Err(zk::Error::NoNode) => Ok(Vec::new()),
                    other => other,
                })
        })?;
        for k in kids {
            self.subtree(base, &format!("{rel}/{k}"), depth + 1, out)?;
        }
        out.push(rel.to_string());
        Ok(())
    }

    /// One delete multi: Some(whether it went), None when a node named has children it did not
    /// name.
    fn delete_once(
        &self,
        name: &str,
        children: &[String],
        version: Option<i32>,
    ) -> Result<Option<bool>> {
        let path = self.path(name);
        let doing = "deleting the lock";
        let mut retried = false;
        let holder = children.first().map(String::as_str);
        self.retrying(doing, |s| {
            let done = s.multi(doing, |w| {
                for c in children {
                    w.add_delete(&format!("{path}/{c}"), None)?;
                }
                // Without every child named it fails NotEmpty: a successor always has one.
                w.add_delete(&path, version)
            })?;
            Ok(match done {
                Ok(()) => Ok(Some(true)),
                // A retry after a lost connection may find our own delete done.
                Err(zk::Error::NoNode) if retried && holder.is_some() => {
                    Ok(Some(!s.holder_is(&path, holder)))
                }
                Err(zk::Error::NotEmpty) => Ok(None),
                Err(zk::Error::NoNode | zk::Error::BadVersion) => Ok(Some(false)),
                Err(e) if is_transient(&e) => {
                    retried = true;
                    Err(zk::Error::ConnectionLoss)
                }
                Err(e) => Err(e),
            })
        })
    }

    /// One multi built by `add`, sent and waited for; Err inside is the server's answer (or a
    /// broken connection).
    fn multi(
        &self,
        doing: &str,
        add: impl FnOnce(&mut zk::MultiWriter) -> std::result::Result<(), zk::Error>,
    ) -> Result<std::result::Result<(), zk::Error>> {
        let mut writer = self.client.new_multi_writer();
        if let Err(e) = add(&mut writer) {
            return Ok(Err(e));
        }
        let commit = writer.commit();
        Ok(self
            .wait(doing, commit)?
            .map(|_| ())
            .map_err(|e| multi_source(&e).clone()))
    }

    /// Whether `holder` is still a child of the lock at `path` (false when it cannot be told).
    fn holder_is(&self, path: &str, holder: Option<&str>) -> bool {
        let Some(h) = holder else { return false };
        let child = format!("{path}/{h}");
        matches!(
            self.wait("reading the lock", self.client.check_stat(&child)),
            Ok(Ok(Some(_)))
        )
    }
}

/// A ZooKeeper four-letter-word command (`srvr`, `mntr`, `ruok`) on one server, bounded by
/// `timeout`: its whole answer.
pub fn four_letter(
    server: &crate::types::HostPort,
    word: &str,
    timeout: Duration,
) -> Result<String> {
    use std::io::{Read, Write};
    let failed =
        |e: std::io::Error| Error::Unreachable(format!("ZooKeeper server {server} ({word}): {e}"));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(server.host.as_str(), server.port))
        .map_err(failed)?
        .next()
        .ok_or_else(|| Error::Unreachable(format!("ZooKeeper server {server}: no address")))?;
    let mut conn = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
    conn.set_read_timeout(Some(timeout)).map_err(failed)?;
    conn.set_write_timeout(Some(timeout)).map_err(failed)?;
    conn.write_all(word.as_bytes()).map_err(failed)?;
    let mut out = String::new();
    conn.read_to_string(&mut out).map_err(failed)?;
    Ok(out)
}

/// The server's role from its `srvr` answer: `leader`, `follower` or `standalone`; None while
/// it does not serve (it answers "not currently serving requests").
pub fn mode(srvr: &str) -> Option<&str> {
    srvr.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(str::trim)
}

fn unreachable_ensemble(cfg: &ZookeeperConfig, doing: &str, what: &str) -> Error {
    Error::Unreachable(format!(
        "ZooKeeper ensemble {} does not answer ({doing}): {what}",
        cfg.ensemble()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ttl: Duration) -> Record {
        Record::starting_now("ops", "test", ttl, None, Value::Null)
    }

    fn node(record: Record, mtime_ms: i64) -> Node {
        Node {
            name: "n".into(),
            record,
            token: 1,
            holder: None,
            children: Vec::new(),
            version: 0,
            ctime_ms: mtime_ms,
            mtime_ms,
        }
    }

    #[test]
    fn expiry_is_the_leaders_last_write_plus_the_ttl_whatever_the_text_says() {
        let mut r = record(Duration::from_secs(60));
        assert!(
            r.expires_at.ends_with('Z') && r.expires_at.len() == 27,
            "{}",
            r.expires_at
        );
        // A writer two hours behind wrote an expiry long past: the leader's time decides.
        r.expires_at = "2020-01-01T00:00:00.000000Z".into();
        let n = node(r, 1_000_000);
        assert_eq!(n.expires_ms(), 1_060_000);
        assert!(!n.expired_at(1_059_999));
        assert!(n.expired_at(1_060_000));
        let mut forged = record(Duration::from_secs(60));
        forged.max_hold_seconds = f64::NAN;
        assert!(
            node(forged, 1_000).expired_at(1_000),
            "a record without a readable ttl is sweepable"
        );
        assert_eq!(zk_timestamp(1_000), "1970-01-01T00:00:01.000000Z");
    }

    #[test]
    fn the_record_is_the_public_json() {
        let r = record(Duration::from_secs(90));
        let v = serde_json::to_value(&r).unwrap();
        for key in RECORD_FIELDS {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["max_hold_seconds"], 90.0);
    }

    #[test]
    fn a_lock_without_its_child_lost_its_session() {
        assert!(keeps_session(Some("e-1")) && session_alive(Some("e-1")));
        assert!(!keeps_session(Some("p-1")) && !session_alive(Some("p-1")));
        assert!(keeps_session(None) && !session_alive(None));
    }
}

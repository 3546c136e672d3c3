//! The one loop every move runs: a single streamed account, a batch of small ones, an online
//! move, and `migrate resume` alike. `state::next` says which step comes next; the engine runs
//! it, writes the journal, and passes the failpoints, here and nowhere else. What differs
//! between a streamed account and a batch (how rows are copied, compared and deleted) is a
//! `Mover`; what is the same for both (fences, the directory's changes, the catch-up with the
//! source's peers, rows already on the destination, giving the accounts back) is done here.
//!
//! The directory flip is the commit point: before it the accounts' rows are whole on the
//! source and a failure gives them back; from it on they are whole on the destination and a
//! failure leaves a clean-up for `migrate resume`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::json;

use super::data::{self, Checksum, Table};
use super::state::{self, Course, Stage, State, Step};
use crate::config::{Config, LockBackend};
use crate::db::{placeholders, retry_deadlocks, values};
use crate::error::{Error, Result};
use crate::output::Ui;
use crate::ring::directory::Shard;
use crate::ring::{audit, fences, Changed, Ring};
use crate::shard::conns::Conns;
use crate::shard::{fence, guard, replica};
use crate::types::{HostPort, LockName};

/// Counts and checksums per account, per table.
pub type Sums = BTreeMap<u64, BTreeMap<String, Checksum>>;

/// One account of a move, under its own lock, token and journal entry.
#[derive(Clone, Debug)]
pub struct Account {
    pub user: u64,
    pub lock: LockName,
    pub token: u64,
    /// Its journal entry (0 until journaled).
    pub migration_id: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

/// Whoever holds the accounts' locks: the ring session the journal and the directory are
/// written on, and the check, between steps, that the locks are still ours.
pub trait Holder {
    fn ring(&mut self) -> Result<&mut Ring>;
    /// `LockLost` once a lock is no longer ours; renews the leases when due.
    fn keep(&mut self) -> Result<()>;
}

/// How rows move: what differs between one streamed account and a batch of small ones.
pub trait Mover<'a> {
    /// Copies every account's rows of every table to the destination, which holds none of them.
    fn copy(&mut self, g: &mut Group<'a>) -> Result<()>;

    /// Online: follows the source's binary log while the accounts are writable.
    fn follow(&mut self, _g: &mut Group<'a>) -> Result<()> {
        Err(offline_only())
    }

    /// Online, read-only: the rest of the source's binary log.
    fn last_pass(&mut self, _g: &mut Group<'a>) -> Result<()> {
        Err(offline_only())
    }

    /// Counts and checksums of every account, computed by both servers and equal.
    fn verify(&mut self, g: &mut Group<'a>) -> Result<Sums>;

    /// Deletes every account's rows on `side`, as part of `step` (whose mid failpoint it passes
    /// once its first chunk is deleted: see `mid`).
    fn delete(&mut self, g: &mut Group<'a>, side: Side, step: Step) -> Result<()>;
}

fn offline_only() -> Error {
    Error::Failed("this mover moves accounts offline only".into())
}

/// Passes `step`'s failpoint inside it (a mover calls it once its first chunk is written).
pub fn mid(step: Step) {
    passes(step.failpoint_mid());
}

fn passes(point: Option<&'static str>) {
    if let Some(point) = point {
        // Used only where failpoints are compiled in.
        let _ = point;
        failpoint!(point);
    }
}

/// What a move came to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The journal state it ended in.
    pub reached: Option<State>,
    pub sums: Sums,
    /// From the `moving` mark to the flip's commit.
    pub read_only_seconds: Option<f64>,
    /// Seconds per step, `served` (until the flip's commit) and `total`.
    pub timings: BTreeMap<String, f64>,
    /// Past the flip: what stopped the clean-up (`migrate resume` finishes it).
    pub cleanup_error: Option<Error>,
}

/// Where a move goes: the two shards, the server read and the server written (by the routing
/// rule, else the first that answers), and the per-user tables as both describe them.
pub struct Route<'a> {
    pub from: &'a Shard,
    pub to: &'a Shard,
    pub src: HostPort,
    pub dst: HostPort,
    pub tables: Vec<Table>,
}

/// A move of one or more accounts between two servers.
pub struct Group<'a> {
    pub cfg: &'a Config,
    pub ui: &'a Ui,
    pub conns: &'a Conns<'a>,
    pub from: &'a Shard,
    pub to: &'a Shard,
    pub src: HostPort,
    pub dst: HostPort,
    pub tables: Vec<Table>,
    pub accounts: Vec<Account>,
    pub course: Course,
    /// Delete rows of the accounts already on the destination instead of refusing.
    pub clear_destination: bool,
    pub holder: &'a mut dyn Holder,
    /// Hears which step is running (a progress line).
    pub phase: &'a dyn Fn(&str),
    pub outcome: Outcome,
    /// When the move began (for `served` and `total`).
    pub started: Instant,
    marked_at: Option<Instant>,
}

/// A journal column set by a step: one value for every account, or one each.
pub enum Column {
    All(mysql::Value),
    Each(Vec<mysql::Value>),
}

/// How a fenced ring transaction ended.
enum Fenced<T> {
    Done(T),
    /// The directory was not as the step expected; nothing was changed.
    Unexpected,
}

impl<'a> Group<'a> {
    pub fn new(
        ui: &'a Ui,
        conns: &'a Conns<'a>,
        route: Route<'a>,
        accounts: Vec<Account>,
        course: Course,
        holder: &'a mut dyn Holder,
        phase: &'a dyn Fn(&str),
    ) -> Group<'a> {
        let Route {
            from,
            to,
            src,
            dst,
            tables,
        } = route;
        Group {
            cfg: conns.cfg(),
            ui,
            conns,
            from,
            to,
            src,
            dst,
            tables,
            accounts,
            course,
            clear_destination: false,
            holder,
            phase,
            outcome: Outcome::default(),
            started: Instant::now(),
            marked_at: None,
        }
    }

    pub fn users(&self) -> Vec<u64> {
        self.accounts.iter().map(|a| a.user).collect()
    }

    /// (user, token) of every account, as the shards' fences take them.
    pub fn tokens(&self) -> Vec<(u64, u64)> {
        self.accounts.iter().map(|a| (a.user, a.token)).collect()
    }

    fn ids(&self) -> Vec<mysql::Value> {
        self.accounts
            .iter()
            .map(|a| a.migration_id.into())
            .collect()
    }

    /// Journals every account's migration as started; sets their ids. `rows`: the counts per
    /// table known before the move (one map per account, or none).
    pub fn journal_start(
        &mut self,
        keep_source: bool,
        rows: Option<&BTreeMap<String, u64>>,
    ) -> Result<()> {
        let mode = if self.course.is_online() {
            "online"
        } else {
            "offline"
        };
        let rows = json!(rows.cloned().unwrap_or_default()).to_string();
        let mut params: Vec<mysql::Value> = Vec::new();
        for a in &self.accounts {
            params.extend([
                a.user.into(),
                self.from.id.into(),
                self.to.id.into(),
                a.token.into(),
                keep_source.into(),
                self.src.to_string().into(),
                self.dst.to_string().into(),
                rows.as_str().into(),
                mode.into(),
            ]);
        }
        // By the user index (tokens alone are not the way in), then our tokens.
        let mut lookup: Vec<mysql::Value> = self.accounts.iter().map(|a| a.user.into()).collect();
        lookup.extend(self.accounts.iter().map(|a| mysql::Value::from(a.token)));
        let n = self.accounts.len();
        let ring = self.holder.ring()?;
        // One transaction: a deadlock retried runs the insert again only after it was rolled
        // back, so the journal never holds an attempt twice.
        let rows: Vec<(u64, u64)> = retry_deadlocks(|| {
            ring.transaction("journaling the migrations", |c| {
                c.exec_drop(
                    format!(
                        "INSERT INTO migrations (user_id, from_shard, to_shard, state, token, keep_source, source_server,
                                                 dest_server, row_counts, mode, started_at, updated_at)
                         VALUES {}",
                        vec!["(?, ?, ?, 'started', ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"; n].join(", ")
                    ),
                    params.clone(),
                )?;
                c.exec(
                    format!(
                        "SELECT user_id, migration_id FROM migrations WHERE user_id IN ({0}) AND token IN ({0})",
                        placeholders(n)
                    ),
                    lookup.clone(),
                )
            })
        })?;
        let ids: BTreeMap<u64, u64> = rows.into_iter().collect();
        for a in &mut self.accounts {
            a.migration_id = *ids.get(&a.user).ok_or_else(|| {
                Error::inconsistent(format!(
                    "the journal entry of user {} was not found",
                    a.user
                ))
            })?;
        }
        self.outcome.reached = Some(State::Started);
        Ok(())
    }

    /// Moves every account's journal entry to `state`, setting `columns`, only while our tokens
    /// drive them: a newer holder that took any over makes this `LockLost`.
    pub fn journal(&mut self, state: State, columns: &[(&str, Column)]) -> Result<()> {
        let n = self.accounts.len();
        let (sql, params) = self.journal_update(state, columns);
        let ring = self.holder.ring()?;
        let changed = retry_deadlocks(|| {
            ring.run("updating the migration journal", |c| {
                c.exec_drop(&sql, params.clone())?;
                Ok(c.affected_rows())
            })
        })?;
        if changed != n as u64 {
            return Err(Error::LockLost(match self.accounts.as_slice() {
                [one] => format!(
                    "fenced out of the journal: migration #{} is driven by a newer lock holder now",
                    one.migration_id
                ),
                _ => format!(
                    "fenced out of the journal: {} of {n} migrations are driven by a newer lock holder now",
                    n as u64 - changed
                ),
            }));
        }
        self.outcome.reached = Some(state);
        Ok(())
    }

    /// Journals where a pass over the source's binary log reached, once its rows are applied.
    pub fn journal_applied(&mut self, state: State, position: String) -> Result<()> {
        failpoint!(state::APPLY_BEFORE_JOURNAL);
        self.journal(state, &[("binlog_position", Column::All(position.into()))])
    }

    /// Runs one ring transaction after checking that every grant is still current: the
    /// directory's changes are fenced where they are stored. With the `mysql` backend the
    /// leases themselves are checked (and row-locked, so a takeover waits for this commit); with
    /// ZooKeeper, the ring's lock fences (`ring::fences`). `f` returning `Unexpected` rolls
    /// everything back.
    fn directory<T>(
        &mut self,
        f: impl Fn(&mut mysql::Transaction) -> mysql::Result<Fenced<T>>,
    ) -> Result<Fenced<T>> {
        let users = self.users();
        let Group {
            cfg,
            accounts,
            holder,
            ..
        } = self;
        let tokens: Vec<mysql::Value> = accounts.iter().map(|a| a.token.into()).collect();
        let grants: Vec<fences::Grant> = accounts.iter().map(|a| (&a.lock, a.token)).collect();
        let backend: &LockBackend = &cfg.locks;
        let ring = holder.ring()?;
        // Why a transaction was rolled back: a lock no longer ours, or a directory not as
        // expected (whatever `f` changed before noticing is undone).
        let unexpected = std::cell::Cell::new(false);
        let result = retry_deadlocks(|| {
            unexpected.set(false);
            ring.write_if("changing the directory", |tx| {
                let current = match backend {
                    LockBackend::Mysql => tx
                        .exec_first::<u64, _, _>(
                            format!(
                                "SELECT COUNT(*) FROM locks WHERE token IN ({}) AND expires_at > UTC_TIMESTAMP(6) FOR UPDATE",
                                placeholders(tokens.len())
                            ),
                            tokens.clone(),
                        )?
                        .unwrap_or(0),
                    LockBackend::Zookeeper(_) => {
                        fences::raise(tx, &grants)?;
                        fences::current(tx, &grants)?.len() as u64
                    }
                };
                if current != grants.len() as u64 {
                    return Ok(None);
                }
                match f(tx)? {
                    Fenced::Unexpected => {
                        unexpected.set(true);
                        Ok(None)
                    }
                    Fenced::Done(v) => Ok(Some((v, Changed::users(users.clone())))),
                }
            })
        })?;
        match result {
            Some(v) => Ok(Fenced::Done(v)),
            None if unexpected.get() => Ok(Fenced::Unexpected),
            None => Err(match self.accounts.as_slice() {
                [one] => Error::LockLost(format!(
                    "the account lock was lost (token {} is no longer current); nothing changed",
                    one.token
                )),
                _ => Error::LockLost(format!(
                    "account locks were lost (not all of {} tokens are current); nothing changed",
                    self.accounts.len()
                )),
            }),
        }
    }

    /// `UPDATE users ... WHERE shard_id = ? [AND state = ?] AND user_id IN (...)` for every
    /// account, with its parameters.
    fn users_update(
        &self,
        set: &str,
        set_params: Vec<mysql::Value>,
        state: Option<&str>,
    ) -> (String, Vec<mysql::Value>) {
        let mut params = set_params;
        params.push(self.from.id.into());
        params.extend(state.map(mysql::Value::from));
        params.extend(values(&self.users()));
        (
            format!(
                "UPDATE users SET {set} WHERE shard_id = ?{} AND user_id IN ({})",
                if state.is_some() {
                    " AND state = ?"
                } else {
                    ""
                },
                placeholders(self.accounts.len())
            ),
            params,
        )
    }

    /// `UPDATE migrations SET state = ?, ... WHERE migration_id IN (...) AND token IN (...)`
    /// for every account, setting `columns` too, with its parameters: only entries our tokens
    /// still drive change.
    fn journal_update(
        &self,
        state: State,
        columns: &[(&str, Column)],
    ) -> (String, Vec<mysql::Value>) {
        let n = self.accounts.len();
        let mut sets = vec![
            "state = ?".to_string(),
            "updated_at = UTC_TIMESTAMP(6)".into(),
        ];
        let mut params: Vec<mysql::Value> = vec![state.as_str().into()];
        if state.is_final() {
            sets.push("finished_at = UTC_TIMESTAMP(6)".into());
        }
        for (column, value) in columns {
            match value {
                Column::All(v) => {
                    sets.push(format!("{column} = ?"));
                    params.push(v.clone());
                }
                Column::Each(vs) => {
                    sets.push(format!(
                        "{column} = CASE migration_id {} END",
                        vec!["WHEN ? THEN ?"; vs.len()].join(" ")
                    ));
                    for (a, v) in self.accounts.iter().zip(vs) {
                        params.extend([a.migration_id.into(), v.clone()]);
                    }
                }
            }
        }
        params.extend(self.ids());
        params.extend(self.accounts.iter().map(|a| mysql::Value::from(a.token)));
        let sql = format!(
            "UPDATE migrations SET {} WHERE migration_id IN ({}) AND token IN ({})",
            sets.join(", "),
            placeholders(n),
            placeholders(n)
        );
        (sql, params)
    }

    fn fence(&mut self) -> Result<()> {
        let tokens = self.tokens();
        for addr in [&self.src, &self.dst] {
            self.conns
                .once(addr, "the fence tables", fence::ensure_fence)?;
            let mut db = self.conns.get(addr)?;
            retry_deadlocks(|| fence::raise_fences(&mut db, &tokens))?;
        }
        // Only checked here: the destination's servers keep refusing the accounts (guarded
        // when they left it before) until the flip makes it theirs; a move given back leaves
        // that guard as it was.
        guard::check_destination(self.conns, &servers(self.to))
    }

    /// From the flip on, the destination takes the accounts' writes: any guard it kept for them
    /// from an earlier move is lifted. Done again by the clean-up (a failure here only delays
    /// their writes there, refused until it is done).
    fn open_destination(&mut self) {
        if let Err(e) = guard::open_destination(self.conns, &servers(self.to), &self.users()) {
            self.ui.warn(&format!(
                "{e}: the accounts' writes on {} stay refused until `shardctl migrate resume` lifts the guard",
                self.to.name
            ));
        }
    }

    /// The accounts `moving`: guarded on every server of the source shard first (where the
    /// guard is installed), then in the directory, with the journal, in one fenced ring
    /// transaction.
    fn mark(&mut self) -> Result<()> {
        let users = self.users();
        let sources = servers(self.from);
        // A failure gives the accounts back, their guard lifted with them.
        guard::close_source(self.conns, &sources, &users, &self.to.name)?;
        let n = users.len() as u64;
        let (mark, mark_params) = self.users_update("state = 'moving'", vec![], Some("active"));
        let (journal, journal_params) = self.journal_update(State::Moving, &[]);
        let marked = self.directory(|tx| {
            tx.exec_drop(&mark, mark_params.clone())?;
            if tx.affected_rows() != n {
                return Ok(Fenced::Unexpected);
            }
            tx.exec_drop(&journal, journal_params.clone())?;
            Ok(Fenced::Done(()))
        });
        // A lost lock is not given back: a newer holder drives the accounts, guard included.
        if let Fenced::Unexpected = marked? {
            return Err(Error::Failed(format!(
                "not every account was still active on {}; nothing changed",
                self.from.name
            )));
        }
        self.marked_at = Some(Instant::now());
        self.outcome.reached = Some(State::Moving);
        Ok(())
    }

    /// Waits until the source has applied everything its peers wrote (MariaDB GTIDs), so
    /// a copy read from it misses none of the accounts' last writes, and until no prepared XA
    /// transaction is open on it (whose changes no copy would see).
    pub fn catch_up(&mut self) -> Result<()> {
        // Prepared XA transactions first: the barrier would find their locks too, but not
        // their names.
        self.no_prepared_xa()?;
        // With the guard, guarding the accounts at the mark already waited for their writers
        // on every server (the bucket rows' locks); without it, their rows' locks tell.
        if self.marked_at.is_some() && !guard::enabled(self.cfg) {
            self.no_writers()?;
        }
        let mut positions = Vec::new();
        for peer in self.from.servers.iter().map(|s| s.addr.clone()) {
            if peer == self.src {
                continue;
            }
            let pos = self
                .conns
                .get(&peer)
                .and_then(|mut db| replica::binlog_position(&mut db));
            positions.push((peer, pos));
        }
        let mut src = self.conns.get(&self.src)?;
        for (peer, pos) in positions {
            let pos = match pos {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    self.ui.warn(&format!(
                        "cannot read {peer}'s position ({e}); copying without waiting for it"
                    ));
                    continue;
                }
            };
            if !replica::wait_for(&mut src, &pos, CATCH_UP_LIMIT)? {
                return Err(Error::Refused(format!(
                    "{} did not catch up with {peer} within {}s; nothing was copied",
                    self.src,
                    CATCH_UP_LIMIT.as_secs()
                )));
            }
        }
        Ok(())
    }

    /// Once the accounts are guarded and marked: waits (bounded) until every transaction that
    /// changed their rows before has ended, on every server of the source shard (a write in
    /// flight on a peer reaches the source by replication, after the catch-up looked); refuses
    /// naming what holds locks.
    fn no_writers(&mut self) -> Result<()> {
        let users = self.users();
        let whose = match users.as_slice() {
            [one] => format!("user {one}'s rows"),
            many => format!("the {} accounts' rows", many.len()),
        };
        for addr in servers(self.from) {
            let Ok(mut db) = self.conns.get(&addr) else {
                continue;
            };
            if let Some(holders) =
                super::online::wait_for_writers(&mut db, &self.tables, &users, WRITERS_GRACE)?
            {
                // Whatever state the session is in, it is not one to lend again.
                db.discard();
                return Err(Error::Refused(format!(
                    "transactions that wrote {whose} on {addr} before the read-only mark did not end within {}s (holding locks: {holders}); {} on {}",
                    WRITERS_GRACE.as_secs(),
                    self.who("stays", "stay"),
                    self.from.name
                )));
            }
        }
        Ok(())
    }

    /// Waits (bounded) until no server of the source shard holds a prepared XA transaction;
    /// refuses naming them.
    pub fn no_prepared_xa(&mut self) -> Result<()> {
        for addr in servers(self.from) {
            let Ok(mut db) = self.conns.get(&addr) else {
                continue;
            };
            if let Some(xids) = super::online::wait_for_prepared_xa(&mut db, PREPARED_XA_GRACE)? {
                return Err(super::online::prepared_xa_refusal(
                    &addr,
                    &xids,
                    PREPARED_XA_GRACE,
                    &self.from.name,
                ));
            }
        }
        Ok(())
    }

    /// The accounts' checksums as verified before the flip: this run's, or the journal's (a
    /// resumed clean-up); None for an account whose journal has none.
    fn verified_sums(&mut self) -> Result<BTreeMap<u64, Option<BTreeMap<String, Checksum>>>> {
        if !self.outcome.sums.is_empty() {
            return Ok(self
                .outcome
                .sums
                .iter()
                .map(|(u, s)| (*u, Some(s.clone())))
                .collect());
        }
        let ids = self.ids();
        let n = ids.len();
        let rows: Vec<(u64, Option<String>)> = self.holder.ring()?.exec(
            "reading the verified checksums",
            &format!(
                "SELECT user_id, checksums FROM migrations WHERE migration_id IN ({})",
                placeholders(n)
            ),
            ids,
        )?;
        Ok(rows
            .into_iter()
            .map(|(u, sums)| (u, sums.and_then(|j| serde_json::from_str(&j).ok())))
            .collect())
    }

    /// Before the clean-up deletes anything: the accounts' rows on the source are still what
    /// was verified. Rows changed since were written after the flip (a prepared XA
    /// transaction committed late, a write that bypassed the guard): they are not the
    /// destination's, so they are kept, and the clean-up stops naming them.
    fn source_unchanged(&mut self) -> Result<()> {
        if let Course::Resume {
            state: State::Cleaning,
            ..
        } = self.course
        {
            // A clean-up that died midway left part of the rows: they no longer add up to
            // what was verified, and the check was made before it began.
            return Ok(());
        }
        let verified = self.verified_sums()?;
        let users = self.users();
        let mut src = self.conns.get(&self.src)?;
        let mut now: BTreeMap<u64, BTreeMap<String, Checksum>> = BTreeMap::new();
        for t in &self.tables {
            for (u, sum) in data::checksums_by_owner(&mut src, t, &users)? {
                now.entry(u).or_default().insert(t.name.to_string(), sum);
            }
        }
        let mut changed = Vec::new();
        for user in &users {
            let Some(Some(was)) = verified.get(user) else {
                continue;
            };
            let here = now.remove(user).unwrap_or_default();
            // Nothing left (cleaned before, or cleared by hand): nothing to keep.
            if here.is_empty() {
                continue;
            }
            for t in &self.tables {
                let name = t.name.to_string();
                let (a, b) = (
                    was.get(&name).copied().unwrap_or(Checksum::EMPTY),
                    here.get(&name).copied().unwrap_or(Checksum::EMPTY),
                );
                if a != b {
                    changed.push(format!(
                        "user {user}'s {name}: {} rows verified, {} now",
                        a.rows, b.rows
                    ));
                }
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        Err(Error::Failed(format!(
            "the source {} changed after the verification ({}): those writes reached it past the log the move followed (after the flip, or from a session that turned its binary log off) and are not on {}; its rows are kept. Copy what is missing to {} (compare both), delete the user's rows on {} as shardctl's login, then `shardctl migrate resume` finishes",
            self.src,
            changed.join("; "),
            self.to.name,
            self.to.name,
            self.src
        )))
    }

    /// Rows of the accounts already on the destination: no attempt of ours explains them (an
    /// earlier one is always resolved before a move starts), so they are refused rather than
    /// overwritten, unless the operator asked for them to be cleared.
    fn clear(&mut self, mover: &mut dyn Mover<'a>) -> Result<()> {
        let found = data::strays(
            &mut *self.conns.get(&self.dst)?,
            &self.tables,
            &self.users(),
        )?;
        match found.iter().next() {
            None => Ok(()),
            Some(_) if self.clear_destination => mover.delete(self, Side::Destination, Step::Clear),
            Some((user, rows)) => Err(data::strays_refusal(&self.dst, *user, rows)),
        }
    }

    fn verified(&mut self, sums: Sums) -> Result<()> {
        let per =
            |f: &dyn Fn(&BTreeMap<String, Checksum>) -> serde_json::Value| -> Vec<mysql::Value> {
                self.accounts
                    .iter()
                    .map(|a| {
                        f(&sums.get(&a.user).cloned().unwrap_or_default())
                            .to_string()
                            .into()
                    })
                    .collect()
            };
        let counts = per(&|s| {
            json!(s
                .iter()
                .map(|(t, c)| (t, c.rows))
                .collect::<BTreeMap<_, _>>())
        });
        let checksums = per(&|s| json!(s));
        self.journal(
            State::Verified,
            &[
                ("row_counts", Column::Each(counts)),
                ("checksums", Column::Each(checksums)),
            ],
        )?;
        self.outcome.sums = sums;
        Ok(())
    }

    /// The commit point: the directory names the destination, in one ring transaction checked
    /// against every lock's token, that also checks the destination shard is still registered
    /// and active (read in share mode, so `shard remove` and the flip cannot interleave).
    fn flip(&mut self) -> Result<()> {
        let users = self.users();
        let n = users.len() as u64;
        let (flip, flip_params) = self.users_update(
            "shard_id = ?, state = 'active'",
            vec![self.to.id.into()],
            Some("moving"),
        );
        let read_only = self.marked_at.map(|t| t.elapsed().as_secs_f64());
        let (journal, journal_params) = self.journal_update(
            State::Flipped,
            &[("read_only_seconds", Column::All(read_only.into()))],
        );
        let audits: Vec<(String, serde_json::Value)> = self
            .accounts
            .iter()
            .map(|a| {
                (
                    a.user.to_string(),
                    json!({ "from": self.from.name, "to": self.to.name, "migration_id": a.migration_id,
                            "token": a.token, "rows": self.outcome.sums.get(&a.user)
                                .map(|t| t.iter().map(|(k, c)| (k.clone(), c.rows)).collect::<BTreeMap<_, _>>()) }),
                )
            })
            .collect();
        let to = self.to.id;
        let flipped = self.directory(|tx| {
            let state: Option<String> = tx.exec_first(
                "SELECT state FROM shards WHERE shard_id = ? LOCK IN SHARE MODE",
                (to,),
            )?;
            if state.as_deref() != Some("active") {
                return Ok(Fenced::Done(false));
            }
            tx.exec_drop(&flip, flip_params.clone())?;
            if tx.affected_rows() != n {
                return Ok(Fenced::Unexpected);
            }
            tx.exec_drop(&journal, journal_params.clone())?;
            audit::record_many(tx, "migrate.flip", &audits)?;
            Ok(Fenced::Done(true))
        })?;
        match flipped {
            Fenced::Done(true) => {}
            Fenced::Done(false) => {
                return Err(Error::Refused(format!(
                    "shard `{}` was removed or is no longer active; {} on {}",
                    self.to.name,
                    self.who("stays", "stay"),
                    self.from.name
                )))
            }
            Fenced::Unexpected => {
                return Err(Error::Failed(format!(
                    "not every account was `moving` on {} at the flip; nothing changed",
                    self.from.name
                )))
            }
        }
        self.outcome.reached = Some(State::Flipped);
        self.open_destination();
        self.outcome.read_only_seconds = self.marked_at.map(|t| t.elapsed().as_secs_f64());
        self.outcome
            .timings
            .insert("served".into(), self.started.elapsed().as_secs_f64());
        Ok(())
    }

    /// "the user stays" or "the 12 accounts stay".
    fn who(&self, one: &str, many: &str) -> String {
        match self.accounts.len() {
            1 => format!("the user {one}"),
            n => format!("the {n} accounts {many}"),
        }
    }

    /// The source's rows go (its servers keep refusing the accounts' writes until they move
    /// back).
    fn clean(&mut self, mover: &mut dyn Mover<'a>) -> Result<()> {
        // A resumed clean-up finishes what the flip may have left undone.
        if let Course::Resume { .. } = self.course {
            guard::open_destination(self.conns, &servers(self.to), &self.users())?;
        }
        self.source_unchanged()?;
        mover.delete(self, Side::Source, Step::Clean)?;
        passes(Step::Clean.failpoint_done());
        self.journal(State::Done, &[])
    }

    /// Before the flip: clears what the copy left on the destination (`clears`), makes the
    /// accounts active on the source again, lifts their guard there, and journals the end:
    /// `rolled_back`, or `aborted` where the destination could not be cleared (a resume clears
    /// it). The journal is written last, so a failure on the way leaves an entry to resume.
    fn abort(
        &mut self,
        mover: &mut dyn Mover<'a>,
        clears: bool,
        cause: Option<&str>,
    ) -> Result<()> {
        let cleared = !clears
            || mover
                .delete(self, Side::Destination, Step::Abort)
                .map_err(|e| {
                    self.ui.warn(&format!("clearing {} failed: {e}", self.dst));
                })
                .is_ok();
        let users = self.users();
        let (give_back, params) = self.users_update("state = 'active'", vec![], None);
        self.directory(|tx| {
            tx.exec_drop(&give_back, params.clone())?;
            Ok(Fenced::Done(()))
        })?;
        // The accounts are the source's again in the directory; a server whose guard could not
        // be lifted keeps refusing their writes: the entry stays `aborted`, and `migrate
        // resume` lifts it.
        let unguarded = guard::given_back(self.conns, &servers(self.from), &users)
            .map_err(|e| {
                self.ui.warn(&format!(
                    "{e}: there the accounts' writes stay refused until `shardctl migrate resume` lifts the guard"
                ));
            })
            .is_ok();
        let state = if cleared && unguarded {
            State::RolledBack
        } else {
            State::Aborted
        };
        let error: Vec<(&str, Column)> = cause
            .map(|c| ("error", Column::All(c.into())))
            .into_iter()
            .collect();
        self.journal(state, &error)
    }

    /// Between steps: the locks are still ours, and nobody asked us to stop.
    fn between_steps(&mut self, step: Step) -> Result<()> {
        self.holder.keep()?;
        if step != Step::Abort && crate::signals::received() {
            return Err(Error::Failed(
                "interrupted; the journal is resumable".into(),
            ));
        }
        Ok(())
    }
}

/// Every server of a shard, whatever its status: each must refuse a moved user's writes.
fn servers(shard: &Shard) -> Vec<HostPort> {
    shard.servers.iter().map(|s| s.addr.clone()).collect()
}

/// How long transactions that wrote the accounts' rows before the `moving` mark may take to
/// end.
const WRITERS_GRACE: Duration = Duration::from_secs(5);

/// How long prepared XA transactions on the source may take to end before a copy or the
/// read-only window's last pass.
const PREPARED_XA_GRACE: Duration = Duration::from_secs(5);

/// How long the source may take to apply what its peers wrote before a copy.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);

/// Runs the move from its start to its end: done, flipped (the source kept, or its clean-up
/// left for `migrate resume`), or given back. A failure before the flip gives the accounts back
/// and is returned; a lost lock is returned at once (a newer holder drives the accounts now).
pub fn drive<'a>(g: &mut Group<'a>, mover: &mut dyn Mover<'a>) -> Result<Outcome> {
    let mut stage = Stage::Start;
    let mut cause: Option<Error> = None;
    while let Some(step) = state::next(g.course, stage) {
        (g.phase)(step.doing());
        let began = Instant::now();
        let result = g.between_steps(step).and_then(|()| {
            if let Some(first) = step.journals_first() {
                g.journal(first, &[])?;
            }
            run(g, mover, step, stage, cause.as_ref())
        });
        *g.outcome.timings.entry(step.name().into()).or_default() += began.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                passes(step.failpoint_after());
                stage = Stage::After(step);
            }
            Err(e @ Error::LockLost(_)) => return Err(e),
            Err(e) if step == Step::Abort => {
                let why = cause.map(|c| format!("{c}; then ")).unwrap_or_default();
                return Err(Error::Failed(format!(
                    "{why}giving back failed ({e}); `shardctl migrate resume` finishes it"
                )));
            }
            Err(e) => {
                stage = Stage::Failed(step);
                if state::next(g.course, stage).is_some() {
                    cause = Some(e);
                } else {
                    g.outcome.cleanup_error = Some(e);
                }
            }
        }
    }
    g.outcome
        .timings
        .insert("total".into(), g.started.elapsed().as_secs_f64());
    if let Some(e) = cause {
        g.ui.warn(&format!(
            "stopped before the flip and {}: {} on {}",
            g.outcome
                .reached
                .map(|s| s.to_string())
                .unwrap_or_default()
                .replace('_', " "),
            g.who("stays", "stay"),
            g.from.name
        ));
        return Err(e);
    }
    Ok(std::mem::take(&mut g.outcome))
}

fn run<'a>(
    g: &mut Group<'a>,
    mover: &mut dyn Mover<'a>,
    step: Step,
    stage: Stage,
    cause: Option<&Error>,
) -> Result<()> {
    match step {
        Step::Fence => g.fence(),
        Step::Mark => g.mark(),
        Step::CatchUp => g.catch_up(),
        Step::Clear => g.clear(mover),
        Step::Copy => mover.copy(g),
        Step::Follow => mover.follow(g),
        Step::LastPass => mover.last_pass(g),
        Step::Verify => {
            let sums = mover.verify(g)?;
            g.verified(sums)
        }
        Step::Flip => g.flip(),
        Step::Clean => g.clean(mover),
        Step::Abort => {
            let clears = g.course.copy_began(stage);
            let cause = cause.map(|e| e.to_string());
            g.abort(mover, clears, cause.as_deref())
        }
    }
}

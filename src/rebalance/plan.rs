//! The rebalance planner (pure): which users to move so every shard ends within the tolerance
//! of its target, moving as little as the tolerance allows.
//!
//! Loads are counted in units: one per user (`--by users`) or the account's rows (`--by rows`).
//! A shard is balanced when its load lies in `[lo, hi]`, the target widened by the tolerance and
//! rounded inwards to whole units (a retiring shard's band is exactly zero). The plan runs in
//! three passes:
//!
//! 1. every shard above `hi` sheds just enough to reach `hi` (cheapest accounts first), never
//!    going below `lo`;
//! 2. each shed account goes to the active shard furthest below its target that stays within
//!    its `hi`;
//! 3. shards still below `lo` take from the shards furthest above their targets.
//!
//! Pass 1 moves exactly the units that must leave overfull shards and pass 3 exactly those that
//! must reach underfull ones, so by users the count of moves is the lower bound
//! `max(Σ (load - hi)+, Σ (lo - load)+)` whenever a balanced outcome exists. A user is only ever
//! taken from a shard above its target.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::rebalance::balance::{self, Load};
use crate::ring::directory::ShardState;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(clap::ValueEnum)]
pub enum By {
    Users,
    Rows,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub user: u64,
    pub rows: u64,
}

#[derive(Clone, Debug)]
pub struct ShardLoad {
    pub name: String,
    pub state: ShardState,
    pub weight: f64,
    pub accounts: Vec<Account>,
}

#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub by: By,
    /// Percent of the target.
    pub tolerance_pct: f64,
    pub max_moves: Option<usize>,
}

/// A move by shard index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub user: u64,
    pub rows: u64,
    pub from: usize,
    pub to: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShardOutcome {
    pub now: u64,
    pub target: f64,
    pub lo: u64,
    pub hi: u64,
    pub after: u64,
}

impl ShardOutcome {
    pub fn balanced(&self) -> bool {
        (self.lo..=self.hi).contains(&self.after)
    }
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub moves: Vec<Move>,
    pub shards: Vec<ShardOutcome>,
    /// The fewest units that must move: by users, the fewest moves.
    pub lower_bound: u64,
}

fn units(by: By, a: &Account) -> u64 {
    match by {
        By::Users => 1,
        By::Rows => a.rows,
    }
}

/// The band `[lo, hi]` around `target`, in whole units, never empty.
pub fn band(target: f64, tolerance_pct: f64) -> (u64, u64) {
    if target <= 0.0 {
        return (0, 0);
    }
    let slack = target * tolerance_pct / 100.0;
    // A hair of epsilon so 500 * 1.02 counts as 510, not 509.99999.
    let lo = (target - slack - 1e-9).ceil().max(0.0) as u64;
    let hi = (target + slack + 1e-9).floor() as u64;
    if lo <= hi {
        (lo, hi)
    } else {
        // A tolerance narrower than one unit: the nearest whole units around the target.
        (target.floor() as u64, target.ceil() as u64)
    }
}

/// An f64 ordered totally, for heaps.
#[derive(Clone, Copy, PartialEq)]
struct Key(f64);
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

type ReceiverKey = (bool, Key);

struct State<'a> {
    by: By,
    shards: &'a [ShardLoad],
    load: Vec<u64>,
    target: Vec<f64>,
    lo: Vec<u64>,
    hi: Vec<u64>,
    /// Per shard, its accounts in the order they may leave (cheapest first), and how many left.
    order: Vec<Vec<Account>>,
    taken: Vec<Vec<bool>>,
    moves: Vec<Move>,
}

impl State<'_> {
    fn movable(&self, i: usize) -> bool {
        self.shards[i].state != ShardState::Readonly
    }

    fn accepts(&self, i: usize) -> bool {
        self.shards[i].state == ShardState::Active
    }

    fn record(&mut self, from: usize, to: usize, a: Account) {
        let u = units(self.by, &a);
        self.load[from] -= u;
        self.load[to] += u;
        self.moves.push(Move {
            user: a.user,
            rows: a.rows,
            from,
            to,
        });
    }

    /// Pass 1: the accounts each overfull shard gives up, as (from, account), in shed order.
    fn shed(&mut self) -> Vec<(usize, Account)> {
        let mut pool = Vec::new();
        for i in 0..self.shards.len() {
            if !self.movable(i) || self.load[i] <= self.hi[i] {
                continue;
            }
            let need = self.load[i] - self.hi[i];
            // How far it may go: down to lo (a retiring shard's lo is 0).
            let room = self.load[i] - self.lo[i];
            let picks = pick(self.by, &self.order[i], need, room);
            for k in picks {
                self.taken[i][k] = true;
                pool.push((i, self.order[i][k]));
            }
        }
        pool
    }

    /// Pass 2: each shed account to the active shard furthest below its target that can take
    /// it. Accounts nobody can take stay where they are (a retiring shard's go anyway, to the
    /// shard with the most room: emptying it matters more than a band).
    fn place(&mut self, mut pool: Vec<(usize, Account)>) {
        // Big accounts first, so they find room before small ones fill it.
        pool.sort_by_key(|(i, a)| (Reverse(units(self.by, a)), *i, a.user));
        let mut heap: BinaryHeap<(ReceiverKey, Reverse<usize>)> = (0..self.shards.len())
            .filter(|&i| self.accepts(i))
            .map(|i| (self.receiver_key(i), Reverse(i)))
            .collect();
        for (from, a) in pool {
            let u = units(self.by, &a);
            let mut popped = Vec::new();
            let mut chosen = None;
            // Each receiver is in the heap once, with its current key (popped ones go back
            // with fresh keys below).
            while let Some((_, Reverse(i))) = heap.pop() {
                popped.push(i);
                if i != from && self.load[i] + u <= self.hi[i] {
                    chosen = Some(i);
                    break;
                }
            }
            let chosen = chosen.or_else(|| {
                (self.shards[from].state == ShardState::Retiring)
                    .then(|| {
                        (0..self.shards.len())
                            .filter(|&i| i != from && self.accepts(i))
                            .max_by_key(|&i| {
                                (Key(self.hi[i] as f64 - self.load[i] as f64), Reverse(i))
                            })
                    })
                    .flatten()
            });
            match chosen {
                Some(to) => self.record(from, to, a),
                None => self.give_back(from, a),
            }
            for i in popped {
                heap.push((self.receiver_key(i), Reverse(i)));
            }
        }
    }

    /// Which receiver comes first: those below their band (so every unit placed also fills a
    /// gap that would otherwise cost a move of its own), then the furthest below target.
    fn receiver_key(&self, i: usize) -> ReceiverKey {
        (
            self.load[i] < self.lo[i],
            Key(self.target[i] - self.load[i] as f64),
        )
    }

    fn give_back(&mut self, from: usize, a: Account) {
        if let Some(k) = self.order[from].iter().position(|x| x.user == a.user) {
            self.taken[from][k] = false;
        }
    }

    /// Pass 3: shards below lo take from the shards furthest above their targets.
    fn fill(&mut self) {
        let n = self.shards.len();
        let mut cursor: Vec<usize> = vec![0; n];
        let mut donors: BinaryHeap<(Key, Reverse<usize>)> = (0..n)
            .filter(|&i| self.movable(i) && self.load[i] as f64 > self.target[i])
            .map(|i| (Key(self.load[i] as f64 - self.target[i]), Reverse(i)))
            .collect();
        let mut needy: Vec<usize> = (0..n)
            .filter(|&i| self.accepts(i) && self.load[i] < self.lo[i])
            .collect();
        needy.sort_by_key(|&i| (Reverse(self.lo[i] - self.load[i]), i));
        for r in needy {
            while self.load[r] < self.lo[r] && self.fill_one(r, &mut donors, &mut cursor) {}
        }
    }

    /// Moves one account to `r` from the best donor; false when no donor can give.
    fn fill_one(
        &mut self,
        r: usize,
        donors: &mut BinaryHeap<(Key, Reverse<usize>)>,
        cursor: &mut [usize],
    ) -> bool {
        let mut aside = Vec::new();
        let mut moved = false;
        // The heap holds each donor once, with its current key and above its target; `r`,
        // below its band, is never among them.
        while let Some((key, Reverse(d))) = donors.pop() {
            while cursor[d] < self.order[d].len() && self.taken[d][cursor[d]] {
                cursor[d] += 1;
            }
            let cap_receiver = self.hi[r].saturating_sub(self.load[r]);
            let cap_donor = self.load[d].saturating_sub(self.lo[d]);
            // An account of no units (an empty one, by rows) cannot bring `r` any nearer its
            // band: moving it would only cost a migration.
            let fits = |a: &Account| {
                let u = units(self.by, a);
                u > 0 && u <= cap_receiver && u <= cap_donor
            };
            let found = (cursor[d]..self.order[d].len())
                .find(|&k| !self.taken[d][k] && fits(&self.order[d][k]));
            match found {
                Some(k) => {
                    self.taken[d][k] = true;
                    let a = self.order[d][k];
                    self.record(d, r, a);
                    if self.load[d] as f64 > self.target[d] {
                        donors.push((Key(self.load[d] as f64 - self.target[d]), Reverse(d)));
                    }
                    moved = true;
                    break;
                }
                // Nothing of this donor fits: it drops out for this receiver.
                None => aside.push((key, Reverse(d))),
            }
        }
        donors.extend(aside);
        moved
    }
}

/// Which accounts (indexes into `order`) to shed: at least `need` units, at most `room`.
/// By users, simply the first `need` (the cheapest). By rows, the fewest rows that cover `need`:
/// the largest accounts that fit what is still needed, then the smallest one that covers the
/// rest, else small ones until it is covered.
fn pick(by: By, order: &[Account], need: u64, room: u64) -> Vec<usize> {
    if by == By::Users {
        return (0..(need as usize).min(order.len())).collect();
    }
    let mut left = need;
    let mut budget = room;
    let mut chosen = vec![false; order.len()];
    let take = |k: usize, chosen: &mut [bool], left: &mut u64, budget: &mut u64| {
        chosen[k] = true;
        *left = left.saturating_sub(order[k].rows);
        *budget -= order[k].rows;
    };
    // `order` is cheapest first: walk it from the largest.
    for k in (0..order.len()).rev() {
        let r = order[k].rows;
        if left > 0 && r > 0 && r <= left && r <= budget {
            take(k, &mut chosen, &mut left, &mut budget);
        }
    }
    if left > 0 {
        let unchosen: Vec<usize> = (0..order.len()).filter(|&k| !chosen[k]).collect();
        let cover = unchosen
            .iter()
            .copied()
            .find(|&k| order[k].rows >= left && order[k].rows <= budget);
        match cover {
            Some(k) => take(k, &mut chosen, &mut left, &mut budget),
            None => {
                for k in unchosen {
                    if left == 0 || order[k].rows > budget {
                        break;
                    }
                    if order[k].rows > 0 {
                        take(k, &mut chosen, &mut left, &mut budget);
                    }
                }
            }
        }
    }
    (0..order.len()).filter(|&k| chosen[k]).collect()
}

/// Plans the moves.
pub fn plan(shards: &[ShardLoad], params: &Params) -> Plan {
    let by = params.by;
    let load: Vec<u64> = shards
        .iter()
        .map(|s| s.accounts.iter().map(|a| units(by, a)).sum())
        .collect();
    let target = balance::targets(
        &shards
            .iter()
            .zip(&load)
            .map(|(s, &units)| Load {
                state: s.state,
                weight: s.weight,
                units,
            })
            .collect::<Vec<_>>(),
    );
    let (lo, hi): (Vec<u64>, Vec<u64>) = shards
        .iter()
        .zip(&target)
        .zip(&load)
        .map(|((s, &t), &l)| match s.state {
            ShardState::Readonly => (l, l),
            _ => band(t, params.tolerance_pct),
        })
        .unzip();
    let lower_bound = {
        let over: u64 = (0..shards.len())
            .map(|i| load[i].saturating_sub(hi[i]))
            .sum();
        let under: u64 = (0..shards.len())
            .map(|i| lo[i].saturating_sub(load[i]))
            .sum();
        over.max(under)
    };
    let order: Vec<Vec<Account>> = shards
        .iter()
        .map(|s| {
            let mut a = s.accounts.clone();
            a.sort_unstable_by_key(|a| (a.rows, a.user));
            a
        })
        .collect();
    let taken = order.iter().map(|o| vec![false; o.len()]).collect();
    let mut st = State {
        by,
        shards,
        load: load.clone(),
        target: target.clone(),
        lo,
        hi,
        order,
        taken,
        moves: Vec::new(),
    };
    let pool = st.shed();
    st.place(pool);
    st.fill();
    let mut moves = st.moves;
    if let Some(max) = params.max_moves {
        moves.truncate(max);
    }
    let mut after = load.clone();
    for m in &moves {
        let u = units(
            by,
            &Account {
                user: m.user,
                rows: m.rows,
            },
        );
        after[m.from] -= u;
        after[m.to] += u;
    }
    let outcomes = (0..shards.len())
        .map(|i| ShardOutcome {
            now: load[i],
            target: target[i],
            lo: st.lo[i],
            hi: st.hi[i],
            after: after[i],
        })
        .collect();
    Plan {
        moves,
        shards: outcomes,
        lower_bound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shard(name: &str, state: ShardState, weight: f64, users: std::ops::Range<u64>) -> ShardLoad {
        ShardLoad {
            name: name.into(),
            state,
            weight,
            accounts: users
                .map(|u| Account {
                    user: u,
                    rows: u % 7,
                })
                .collect(),
        }
    }

    fn params(by: By, tolerance_pct: f64) -> Params {
        Params {
            by,
            tolerance_pct,
            max_moves: None,
        }
    }

    #[test]
    fn by_rows_an_account_that_cannot_change_the_balance_is_never_moved() {
        // One 400,000-row account among empty ones: nothing can balance it, and moving the
        // empty accounts changes no shard's rows.
        let mut big = ShardLoad {
            name: "big".into(),
            state: ShardState::Active,
            weight: 1.0,
            accounts: (1..=2000).map(|u| Account { user: u, rows: 0 }).collect(),
        };
        big.accounts.push(Account {
            user: 9999,
            rows: 400_000,
        });
        let empty = ShardLoad {
            name: "empty".into(),
            state: ShardState::Active,
            weight: 1.0,
            accounts: (3000..5000).map(|u| Account { user: u, rows: 0 }).collect(),
        };
        let p = plan(&[big, empty], &params(By::Rows, 2.0));
        assert!(
            p.moves.iter().all(|m| m.rows > 0),
            "{} moves, {} of empty accounts",
            p.moves.len(),
            p.moves.iter().filter(|m| m.rows == 0).count()
        );
    }

    #[test]
    fn bands_round_inwards_and_never_empty() {
        assert_eq!(band(500.0, 2.0), (490, 510));
        assert_eq!(band(0.0, 2.0), (0, 0));
        assert_eq!(band(3.3, 2.0), (3, 4));
        assert_eq!(band(1000.0 / 3.0, 2.0), (327, 340));
    }

    #[test]
    fn weights_1_1_4_move_exactly_the_lower_bound() {
        let shards = vec![
            shard("s1", ShardState::Active, 1.0, 0..1000),
            shard("s2", ShardState::Active, 1.0, 1000..2000),
            shard("s3", ShardState::Active, 4.0, 2000..3000),
        ];
        let p = plan(&shards, &params(By::Users, 2.0));
        assert!(
            p.shards.iter().all(ShardOutcome::balanced),
            "{:?}",
            p.shards
        );
        // s1 and s2 go from 1000 to at most 510 each: 980 moves, all to s3.
        assert_eq!(p.lower_bound, 980);
        assert_eq!(p.moves.len(), 980);
        assert!(p.moves.iter().all(|m| m.to == 2));
        // Cheapest accounts first: nothing of 6 rows leaves while a 0-row account stays.
        let moved_rows: Vec<u64> = p.moves.iter().map(|m| m.rows).collect();
        assert!(moved_rows.iter().all(|&r| r <= 4));
    }

    #[test]
    fn a_retiring_shard_is_emptied_and_readonly_is_left_alone() {
        let shards = vec![
            shard("old", ShardState::Retiring, 1.0, 0..300),
            shard("ro", ShardState::Readonly, 1.0, 300..900),
            shard("a", ShardState::Active, 1.0, 900..1000),
            shard("b", ShardState::Active, 1.0, 1000..1100),
        ];
        let p = plan(&shards, &params(By::Users, 2.0));
        assert_eq!(p.shards[0].after, 0);
        assert_eq!(p.shards[1].after, 600);
        assert!(p.moves.iter().all(|m| m.from != 1 && m.to != 1));
        assert!(
            p.shards.iter().all(ShardOutcome::balanced),
            "{:?}",
            p.shards
        );
    }

    #[test]
    fn a_balanced_federation_plans_nothing() {
        let shards = vec![
            shard("s1", ShardState::Active, 1.0, 0..1000),
            shard("s2", ShardState::Active, 1.0, 1000..2010),
        ];
        assert!(plan(&shards, &params(By::Users, 2.0)).moves.is_empty());
    }

    #[test]
    fn max_moves_truncates() {
        let shards = vec![
            shard("s1", ShardState::Active, 1.0, 0..1000),
            shard("s2", ShardState::Active, 1.0, 1000..1000),
        ];
        let p = plan(
            &shards,
            &Params {
                max_moves: Some(10),
                ..params(By::Users, 2.0)
            },
        );
        assert_eq!(p.moves.len(), 10);
        assert_eq!(p.shards[1].after, 10);
    }

    #[test]
    fn by_rows_moves_few_rows() {
        let accounts = |base: u64, sizes: &[u64]| -> Vec<Account> {
            sizes
                .iter()
                .enumerate()
                .map(|(i, &rows)| Account {
                    user: base + i as u64,
                    rows,
                })
                .collect()
        };
        let shards = vec![
            ShardLoad {
                name: "big".into(),
                state: ShardState::Active,
                weight: 1.0,
                accounts: accounts(0, &[5000, 3000, 1000, 500, 400, 100]),
            },
            ShardLoad {
                name: "new".into(),
                state: ShardState::Active,
                weight: 1.0,
                accounts: vec![],
            },
        ];
        let p = plan(&shards, &params(By::Rows, 10.0));
        assert!(
            p.shards.iter().all(ShardOutcome::balanced),
            "{:?}",
            p.shards
        );
        let rows: u64 = p.moves.iter().map(|m| m.rows).sum();
        assert!(rows <= 5000 + 500, "moved {rows} rows");
    }

    fn arb_federation() -> impl Strategy<Value = (Vec<ShardLoad>, f64)> {
        let shard = (
            1u32..=8,
            0u64..400,
            prop_oneof![
                8 => Just(ShardState::Active),
                1 => Just(ShardState::Retiring),
                1 => Just(ShardState::Readonly)
            ],
        );
        (prop::collection::vec(shard, 2..8), 1.0f64..10.0).prop_map(|(specs, tol)| {
            let mut next = 0u64;
            let mut shards: Vec<ShardLoad> = specs
                .into_iter()
                .enumerate()
                .map(|(i, (w, n, state))| {
                    let accounts = (next..next + n)
                        .map(|u| Account {
                            user: u,
                            rows: (u * 2654435761) % 97,
                        })
                        .collect();
                    next += n;
                    ShardLoad {
                        name: format!("s{i}"),
                        state,
                        weight: w as f64,
                        accounts,
                    }
                })
                .collect();
            // At least one shard must take users.
            shards[0].state = ShardState::Active;
            (shards, tol)
        })
    }

    /// Whether some integer loads within the bands add up to the movable total.
    fn feasible(p: &Plan, shards: &[ShardLoad]) -> bool {
        let movable = |i: usize| shards[i].state != ShardState::Readonly;
        let total: u64 = (0..shards.len())
            .filter(|&i| movable(i))
            .map(|i| p.shards[i].now)
            .sum();
        let lo: u64 = (0..shards.len())
            .filter(|&i| movable(i))
            .map(|i| p.shards[i].lo)
            .sum();
        let hi: u64 = (0..shards.len())
            .filter(|&i| movable(i))
            .map(|i| p.shards[i].hi)
            .sum();
        lo <= total && total <= hi
    }

    proptest! {
        #[test]
        fn plans_by_users_balance_with_the_fewest_moves((shards, tol) in arb_federation()) {
            let p = plan(&shards, &params(By::Users, tol));
            let mut load: Vec<u64> = p.shards.iter().map(|s| s.now).collect();
            let mut seen = std::collections::HashSet::new();
            for m in &p.moves {
                // Never from a shard at or below its target, never into a non-active one, and
                // each user at most once.
                prop_assert!(load[m.from] as f64 > p.shards[m.from].target);
                prop_assert_eq!(shards[m.to].state, ShardState::Active);
                prop_assert!(seen.insert(m.user));
                prop_assert!(shards[m.from].accounts.iter().any(|a| a.user == m.user));
                load[m.from] -= 1;
                load[m.to] += 1;
            }
            prop_assert_eq!(&load, &p.shards.iter().map(|s| s.after).collect::<Vec<_>>());
            if feasible(&p, &shards) {
                for (i, s) in p.shards.iter().enumerate() {
                    prop_assert!(s.balanced(), "shard {} {:?} of {:?}", i, s, p.shards);
                }
                prop_assert_eq!(p.moves.len() as u64, p.lower_bound);
            }
            // Readonly shards neither give nor take.
            for m in &p.moves {
                prop_assert!(shards[m.from].state != ShardState::Readonly);
            }
        }

        #[test]
        fn plans_by_rows_never_take_from_underfull_shards((shards, tol) in arb_federation()) {
            let p = plan(&shards, &params(By::Rows, tol));
            let mut load: Vec<u64> = p.shards.iter().map(|s| s.now).collect();
            for m in &p.moves {
                prop_assert!(load[m.from] as f64 > p.shards[m.from].target);
                prop_assert_eq!(shards[m.to].state, ShardState::Active);
                load[m.from] -= m.rows;
                load[m.to] += m.rows;
            }
            // Retiring shards' rows all leave whenever some active shard exists.
            for (i, s) in shards.iter().enumerate() {
                if s.state == ShardState::Retiring {
                    prop_assert_eq!(load[i], 0, "{:?}", p.shards);
                }
            }
            let moved: u64 = p.moves.iter().map(|m| m.rows).sum();
            let slack: u64 = shards.iter().map(|s| s.accounts.iter().map(|a| a.rows).max().unwrap_or(0)).sum();
            prop_assert!(moved <= 2 * p.lower_bound + 2 * slack, "moved {} rows, bound {}", moved, p.lower_bound);
        }
    }
}

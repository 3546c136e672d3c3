//! Scheduling a plan's moves (pure): small accounts in batches per pair of shards, large ones
//! one by one, and a gate that keeps at most `per_shard` tasks on any one shard at a time.

use std::collections::{BTreeMap, VecDeque};

/// Accounts up to this many rows move in batches (read into memory whole, one transaction
/// per table); larger ones move alone, streamed.
pub const SMALL_ACCOUNT_ROWS: u64 = 2_000;
/// A batch holds at most this many accounts...
pub const BATCH_ACCOUNTS: usize = 400;
/// ...and at most this many rows.
pub const BATCH_ROWS: u64 = 40_000;

/// Work for one worker. Shards are indexes into the caller's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Task {
    /// Small accounts from one shard to another: (user, rows).
    Batch {
        from: usize,
        to: usize,
        users: Vec<(u64, u64)>,
    },
    /// One large account.
    Single {
        from: usize,
        to: usize,
        user: u64,
        rows: u64,
    },
}

impl Task {
    pub fn shards(&self) -> [usize; 2] {
        match self {
            Task::Batch { from, to, .. } | Task::Single { from, to, .. } => [*from, *to],
        }
    }

    pub fn accounts(&self) -> usize {
        match self {
            Task::Batch { users, .. } => users.len(),
            Task::Single { .. } => 1,
        }
    }

    pub fn rows(&self) -> u64 {
        match self {
            Task::Batch { users, .. } => users.iter().map(|u| u.1).sum(),
            Task::Single { rows, .. } => *rows,
        }
    }
}

/// A move: (user, rows, from, to).
pub type Move = (u64, u64, usize, usize);

/// Cuts moves into tasks: batches first (cheap accounts, many per round trip), taking turns
/// between pairs of shards so parallel workers spread over the shards; large accounts last,
/// smallest first.
pub fn tasks(moves: &[Move]) -> Vec<Task> {
    let mut pairs: BTreeMap<(usize, usize), Vec<Task>> = BTreeMap::new();
    let mut open: BTreeMap<(usize, usize), Vec<(u64, u64)>> = BTreeMap::new();
    let mut singles = Vec::new();
    for &(user, rows, from, to) in moves {
        if rows > SMALL_ACCOUNT_ROWS {
            singles.push(Task::Single {
                from,
                to,
                user,
                rows,
            });
            continue;
        }
        let batch = open.entry((from, to)).or_default();
        let batch_rows: u64 = batch.iter().map(|u| u.1).sum();
        if batch.len() >= BATCH_ACCOUNTS || batch_rows + rows > BATCH_ROWS {
            let users = std::mem::take(batch);
            pairs
                .entry((from, to))
                .or_default()
                .push(Task::Batch { from, to, users });
        }
        open.entry((from, to)).or_default().push((user, rows));
    }
    for ((from, to), users) in open {
        if !users.is_empty() {
            pairs
                .entry((from, to))
                .or_default()
                .push(Task::Batch { from, to, users });
        }
    }
    let mut queues: Vec<VecDeque<Task>> = pairs.into_values().map(VecDeque::from).collect();
    let mut out = Vec::new();
    while queues.iter().any(|q| !q.is_empty()) {
        for q in &mut queues {
            out.extend(q.pop_front());
        }
    }
    singles.sort_by_key(|t| t.rows());
    out.extend(singles);
    out
}

/// The tasks not yet started, handed out so no shard has more than `per_shard` running.
#[derive(Debug)]
pub struct Queue {
    pending: VecDeque<Task>,
    busy: Vec<usize>,
    per_shard: usize,
}

impl Queue {
    pub fn new(tasks: Vec<Task>, shards: usize, per_shard: usize) -> Queue {
        Queue {
            pending: tasks.into(),
            busy: vec![0; shards],
            per_shard: per_shard.max(1),
        }
    }

    /// The first pending task whose shards both have room, now marked running.
    pub fn take(&mut self) -> Option<Task> {
        let i = self
            .pending
            .iter()
            .position(|t| t.shards().iter().all(|&s| self.busy[s] < self.per_shard))?;
        let task = self.pending.remove(i)?;
        for s in task.shards() {
            self.busy[s] += 1;
        }
        Some(task)
    }

    pub fn finish(&mut self, task: &Task) {
        for s in task.shards() {
            self.busy[s] -= 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops what was not started (after an interruption); returns how many accounts.
    pub fn abandon(&mut self) -> usize {
        self.pending.drain(..).map(|t| t.accounts()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_accounts_batch_per_pair_and_large_ones_go_alone() {
        let mut moves: Vec<Move> = (0..450).map(|u| (u, 25, 0, 1)).collect();
        moves.extend((1000..1010).map(|u| (u, 10, 2, 1)));
        moves.push((5000, 1_000_000, 0, 2));
        moves.push((5001, 3_000, 0, 2));
        let t = tasks(&moves);
        let sizes: Vec<usize> = t.iter().map(Task::accounts).collect();
        // Pairs take turns: (0,1) 400, (2,1) 10, (0,1) 50, then the large, small first.
        assert_eq!(sizes, vec![400, 10, 50, 1, 1]);
        assert_eq!(t[3].rows(), 3_000);
        assert_eq!(t[4].rows(), 1_000_000);
        let total: usize = sizes.iter().sum();
        assert_eq!(total, moves.len());
    }

    #[test]
    fn batches_are_bounded_by_rows() {
        let moves: Vec<Move> = (0..60).map(|u| (u, 1_500, 0, 1)).collect();
        let t = tasks(&moves);
        assert!(t.iter().all(|t| t.rows() <= BATCH_ROWS));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn the_queue_keeps_per_shard_limits() {
        let task = |from, to| Task::Single {
            from,
            to,
            user: 1,
            rows: 1,
        };
        let mut q = Queue::new(vec![task(0, 1), task(0, 2), task(1, 2), task(3, 4)], 5, 1);
        let a = q.take().unwrap();
        assert_eq!(a.shards(), [0, 1]);
        // (0,2) and (1,2) wait for shard 0 and 1; (3,4) may run.
        assert_eq!(q.take().unwrap().shards(), [3, 4]);
        assert_eq!(q.take(), None);
        q.finish(&a);
        assert_eq!(q.take().unwrap().shards(), [0, 2]);
        assert_eq!(q.abandon(), 1);
        assert!(q.is_empty());
    }
}

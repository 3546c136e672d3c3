//! Target loads from weights (pure): active shards share the users by weight, a retiring
//! shard's target is zero, a readonly shard neither gives nor takes (its target is what it has).

use crate::ring::directory::ShardState;

#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub state: ShardState,
    pub weight: f64,
    pub units: u64,
}

/// The target units of each shard, in the same order; fractional, summing to the total.
pub fn targets(loads: &[Load]) -> Vec<f64> {
    let total: u64 = loads.iter().map(|l| l.units).sum();
    let readonly: u64 = loads
        .iter()
        .filter(|l| l.state == ShardState::Readonly)
        .map(|l| l.units)
        .sum();
    let active_weight: f64 = loads
        .iter()
        .filter(|l| l.state == ShardState::Active)
        .map(|l| l.weight)
        .sum();
    let movable = (total - readonly) as f64;
    loads
        .iter()
        .map(|l| match l.state {
            ShardState::Readonly => l.units as f64,
            ShardState::Retiring => 0.0,
            ShardState::Active if active_weight > 0.0 => movable * l.weight / active_weight,
            ShardState::Active => 0.0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(state: ShardState, weight: f64, units: u64) -> Load {
        Load {
            state,
            weight,
            units,
        }
    }

    #[test]
    fn active_shards_share_by_weight() {
        let t = targets(&[
            load(ShardState::Active, 1.0, 300),
            load(ShardState::Active, 2.0, 0),
            load(ShardState::Readonly, 5.0, 100),
            load(ShardState::Retiring, 1.0, 300),
        ]);
        assert_eq!(t, vec![200.0, 400.0, 100.0, 0.0]);
        assert_eq!(t.iter().sum::<f64>(), 700.0);
    }
}

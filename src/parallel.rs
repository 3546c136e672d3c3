//! Work on many servers at once: the slowest server sets the pace, not the sum of them (an
//! unreachable one costs a connect timeout, a drain's rate sample a second).

/// Runs `f` on every item, each in a scoped thread of its own; results in the items' order.
/// A panic in `f` is a bug and carries on into the caller.
pub fn each<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = items.iter().map(|i| scope.spawn(|| f(i))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

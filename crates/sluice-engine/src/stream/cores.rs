//! Work spread over the cores: a batch's partitions processed side by side, each on one
//! thread (so in offset order), on this thread and scoped threads beside it.

use std::sync::OnceLock;

use anyhow::Result;

/// Runs `each` over `items` on this thread and, when there is more than one item and at least
/// `from_weight` for each thread (below it, threads would cost more than they save), on up to
/// as many scoped threads beside it as there are other cores, the items split so that each
/// thread gets about the same weight. Returns the first error.
pub(super) fn on_every_core<T: Send>(
    mut items: Vec<T>,
    weight: impl Fn(&T) -> usize,
    from_weight: usize,
    each: impl Fn(T) -> Result<()> + Sync,
) -> Result<()> {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    let total: usize = items.iter().map(&weight).sum();
    // At least `from_weight` per thread.
    let threads = cores.min(items.len()).min(total / from_weight.max(1));
    if threads < 2 {
        return items.into_iter().try_for_each(each);
    }
    let mut groups: Vec<(usize, Vec<T>)> = (0..threads).map(|_| (0, Vec::new())).collect();
    items.sort_by_key(|item| std::cmp::Reverse(weight(item)));
    for item in items {
        let lightest = groups
            .iter_mut()
            .min_by_key(|(w, _)| *w)
            .expect("threads ≥ 2");
        lightest.0 += weight(&item);
        lightest.1.push(item);
    }
    let each = &each;
    let run = move |group: Vec<T>| group.into_iter().try_for_each(each);
    std::thread::scope(|scope| {
        let mut groups = groups.into_iter().map(|(_, group)| group);
        let here = groups.next().expect("threads ≥ 2");
        let beside: Vec<_> = groups
            .map(|group| scope.spawn(move || run(group)))
            .collect();
        let mut result = run(here);
        for thread in beside {
            let ran = thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            result = result.and(ran);
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::on_every_core;
    use std::sync::Mutex;
    use std::thread::ThreadId;

    fn run(items: Vec<usize>, from_weight: usize) -> (Vec<usize>, Vec<ThreadId>) {
        let seen = Mutex::new(Vec::new());
        on_every_core(
            items,
            |w| *w,
            from_weight,
            |w| {
                seen.lock().unwrap().push((w, std::thread::current().id()));
                Ok(())
            },
        )
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_by_key(|(w, _)| *w);
        seen.into_iter().unzip()
    }

    #[test]
    fn every_item_runs_once_on_this_thread_when_light() {
        let (items, threads) = run(vec![3, 1, 2], 100);
        assert_eq!(items, [1, 2, 3]);
        assert!(threads.iter().all(|t| *t == std::thread::current().id()));
    }

    #[test]
    fn heavy_work_runs_on_more_threads_when_there_are_cores() {
        let (items, threads) = run(vec![300, 100, 200, 50], 100);
        assert_eq!(items, [50, 100, 200, 300]);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let distinct: std::collections::HashSet<_> = threads.iter().collect();
        assert_eq!(distinct.len(), cores.min(4));
    }

    #[test]
    fn an_error_on_any_thread_is_returned() {
        let failed = on_every_core(
            vec![1, 2, 3, 4],
            |_| 1000,
            1,
            |w| {
                anyhow::ensure!(w != 3, "item {w} failed");
                Ok(())
            },
        );
        assert_eq!(failed.unwrap_err().to_string(), "item 3 failed");
    }
}

//! Records in doubt: purged from a producer that was replaced because the broker went away. A
//! record in a produce request when the connection dropped may have been written by the broker
//! or not (librdkafka queues it again either way); sending it again blindly would double it.
//!
//! Every record the gateway produces carries a [`RECORD_ID_HEADER`]: this process's run id and
//! a counter taken in the order records are handed to the producer. So in each partition this
//! process's records stand in counter order, and whether an in-doubt record landed is answered
//! by reading its partition back from the end ([`landed`]) until its id is found, or a record
//! of this run with a lower counter is (anything of ours in flight after that one lies beyond
//! it), or the log starts.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rdkafka::Message as _;
use rdkafka::message::{BorrowedMessage, Headers as _};
use sluice_kafka::tail::{TailSearch, search_back};
use sluice_kafka::{ClientOptions, KafkaError};

/// The header naming a record the gateway produced: `<run id, 16 hex digits>-<counter>`,
/// unique per record sent (a record sent again gets a new one).
pub const RECORD_ID_HEADER: &str = "sluice.id";

/// A record whose fate is unknown: its partition (unknown when its producer went without a
/// word) and its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InDoubt {
    /// The partition it was sent to.
    pub partition: Option<i32>,
    /// Its counter in this run.
    pub counter: u64,
}

/// The ids of this process's records: one run id, and a counter that a record takes in the
/// same step as it is handed to the producer.
pub struct RecordIds {
    run: String,
    next: Mutex<u64>,
}

impl Default for RecordIds {
    /// A random run id.
    fn default() -> Self {
        Self {
            run: format!("{:016x}", rand::random::<u64>()),
            next: Mutex::new(0),
        }
    }
}

impl RecordIds {
    /// Calls `hand_over` with the next counter and its header value, under a lock, and moves
    /// the counter on when it returns `Ok`: counters follow the order of hand-overs.
    pub fn assign<T, E>(&self, hand_over: impl FnOnce(u64, &str) -> Result<T, E>) -> Result<T, E> {
        let mut next = self.next.lock().expect("record ids");
        let counter = *next;
        let handed = hand_over(counter, &format!("{}-{counter}", self.run))?;
        *next += 1;
        Ok(handed)
    }

    /// The run id.
    pub fn run(&self) -> &str {
        &self.run
    }
}

/// The counters of `in_doubt` (records of run `run` sent to `topic`) that `topic` holds, read
/// back from the ends of their partitions (every partition for those without one). Blocking.
pub fn landed(
    options: &ClientOptions,
    topic: &str,
    run: &str,
    in_doubt: &[InDoubt],
) -> Result<HashSet<u64>, KafkaError> {
    let partitions = if in_doubt.iter().any(|d| d.partition.is_none()) {
        (0..sluice_kafka::side::partition_count(options, topic)?).collect()
    } else {
        let mut partitions: Vec<i32> = in_doubt.iter().filter_map(|d| d.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        partitions
    };
    let mut search = Search::new(run, &partitions, in_doubt);
    search_back(options, topic, &partitions, &mut search)?;
    Ok(search.found)
}

/// The search of [`landed`], per partition: the counters looked for, and whether a record of
/// this run below the lowest of them was seen.
struct Search<'a> {
    run: &'a str,
    wanted: HashMap<i32, HashSet<u64>>,
    floor: HashMap<i32, u64>,
    below_floor: HashSet<i32>,
    found: HashSet<u64>,
}

impl<'a> Search<'a> {
    fn new(run: &'a str, partitions: &[i32], in_doubt: &[InDoubt]) -> Self {
        let mut wanted: HashMap<i32, HashSet<u64>> = HashMap::new();
        for d in in_doubt {
            let one = d.partition.map(|q| [q]);
            let on = one.as_ref().map_or(partitions, |q| q.as_slice());
            for &q in on {
                wanted.entry(q).or_default().insert(d.counter);
            }
        }
        let floor = wanted
            .iter()
            .map(|(&q, counters)| (q, counters.iter().copied().min().unwrap_or(0)))
            .collect();
        Self {
            run,
            wanted,
            floor,
            below_floor: HashSet::new(),
            found: HashSet::new(),
        }
    }
}

impl TailSearch for Search<'_> {
    fn visit(&mut self, message: &BorrowedMessage<'_>) {
        let Some(counter) = counter_of(message, self.run) else {
            return;
        };
        let q = message.partition();
        if self.wanted.get(&q).is_some_and(|c| c.contains(&counter)) {
            self.found.insert(counter);
        }
        if self.floor.get(&q).is_some_and(|&floor| counter < floor) {
            self.below_floor.insert(q);
        }
    }

    fn settled(&self, partition: i32) -> bool {
        self.below_floor.contains(&partition)
            || self.wanted[&partition]
                .iter()
                .all(|c| self.found.contains(c))
    }
}

/// The counter of a record of run `run`, from its [`RECORD_ID_HEADER`].
fn counter_of(message: &BorrowedMessage<'_>, run: &str) -> Option<u64> {
    let headers = message.headers()?;
    let id = headers.iter().find(|h| h.key == RECORD_ID_HEADER)?.value?;
    let (record_run, counter) = std::str::from_utf8(id).ok()?.split_once('-')?;
    (record_run == run).then_some(())?;
    counter.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_hand_overs_and_a_refused_one_is_not_used() {
        let ids = RecordIds::default();
        let first = ids
            .assign(|n, id| Ok::<_, ()>((n, id.to_string())))
            .unwrap();
        assert_eq!(first, (0, format!("{}-0", ids.run())));
        assert!(ids.assign(|_, _| Err::<(), _>("queue full")).is_err());
        let second = ids.assign(|n, _| Ok::<_, ()>(n)).unwrap();
        assert_eq!(second, 1);
        assert_eq!(ids.run().len(), 16);
        assert_ne!(RecordIds::default().run(), ids.run());
    }

    #[test]
    fn a_record_without_a_partition_is_looked_for_in_every_partition() {
        let in_doubt = [
            InDoubt {
                partition: Some(1),
                counter: 7,
            },
            InDoubt {
                partition: None,
                counter: 9,
            },
        ];
        let search = Search::new("r", &[0, 1, 2], &in_doubt);
        assert_eq!(search.wanted[&0], HashSet::from([9]));
        assert_eq!(search.wanted[&1], HashSet::from([7, 9]));
        assert_eq!(search.floor[&1], 7);
        assert!(!search.settled(1));
    }
}

//! Reading the ends of partitions: to their ends from given offsets ([`read_to_ends`]), or
//! backwards from their ends until what is looked for is found ([`search_back`]).
//!
//! Both work around a broker that serves a fetch from the first record batch *starting* at or
//! after the offset asked for (tansu 0.6): such a broker sends nothing at all for an offset
//! inside the last batch. A partition that delivers nothing for [`QUIET_BEFORE_MOVING_BACK`] is
//! read again from further back. Kafka sends that batch whole, and then no move happens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::admin::{LogRange, end_of_partition_reader, log_ranges};
use crate::client::{REACHABILITY_TIMEOUT, metadata_of};
use crate::{ClientOptions, KafkaError};

/// How many records at the end of a partition [`search_back`] reads first; eight times more
/// each time its search is not settled.
const FIRST_TAIL: i64 = 256;

/// How long a partition read from inside its log may deliver nothing before its reader moves
/// further back.
const QUIET_BEFORE_MOVING_BACK: Duration = Duration::from_secs(2);

/// One partition to read: from `from` to the end of `range`.
#[derive(Debug, Clone, Copy)]
pub struct Read {
    /// The partition.
    pub partition: i32,
    /// The first offset to read.
    pub from: i64,
    /// The partition's log as it was when the read was planned.
    pub range: LogRange,
}

/// What [`search_back`] looks for in the records it reads.
pub trait TailSearch {
    /// Looks at one record (a record may be shown again when its partition is read from
    /// further back).
    fn visit(&mut self, message: &BorrowedMessage<'_>);

    /// Whether `partition` needs no further reading back.
    fn settled(&self, partition: i32) -> bool;
}

/// Reads `partitions` of `topic` backwards from their ends, [`FIRST_TAIL`] records first and
/// eight times as far each round, until `search` says each partition is settled or its log
/// start is reached. Blocking.
pub fn search_back(
    options: &ClientOptions,
    topic: &str,
    partitions: &[i32],
    search: &mut impl TailSearch,
) -> Result<(), KafkaError> {
    let keys: Vec<(String, i32)> = partitions.iter().map(|&q| (topic.to_string(), q)).collect();
    let ranges = log_ranges(options, &keys)?;
    let mut open: Vec<i32> = partitions.to_vec();
    let mut back = FIRST_TAIL;
    while !open.is_empty() {
        let reads: Vec<Read> = open
            .iter()
            .map(|&q| {
                let range = ranges[&(topic.to_string(), q)];
                Read {
                    partition: q,
                    from: (range.end - back).max(range.start),
                    range,
                }
            })
            .collect();
        let reached = read_to_ends(options, topic, &reads, |message| search.visit(message))?;
        open.retain(|q| {
            let at_start = reached[q] == ranges[&(topic.to_string(), *q)].start;
            !at_start && !search.settled(*q)
        });
        back *= 8;
    }
    Ok(())
}

/// Where one partition's read stands.
struct Reading {
    range: LogRange,
    /// The offset read from: `from`, or lower after a move back.
    from: i64,
    /// When it last delivered a record, or was (re)positioned.
    heard: Instant,
}

/// Calls `visit` with every record of each read of `topic`, read by one consumer to the end.
/// A partition that delivers nothing for [`QUIET_BEFORE_MOVING_BACK`] is read again from
/// further back (eight times as far from its end, down to its log start). Returns where each
/// partition's read started in the end. Blocking.
pub fn read_to_ends(
    options: &ClientOptions,
    topic: &str,
    reads: &[Read],
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<HashMap<i32, i64>, KafkaError> {
    let mut reached: HashMap<i32, i64> = reads.iter().map(|r| (r.partition, r.from)).collect();
    let now = Instant::now();
    let mut open: HashMap<i32, Reading> = reads
        .iter()
        .filter(|r| r.from < r.range.end)
        .map(|r| {
            let reading = Reading {
                range: r.range,
                from: r.from,
                heard: now,
            };
            (r.partition, reading)
        })
        .collect();
    if open.is_empty() {
        return Ok(reached);
    }
    let error = |source| KafkaError::Consume {
        context: format!("the tails of {topic}"),
        source,
    };
    let consumer = end_of_partition_reader(options, "sluice-tail-reader")?;
    metadata_of(consumer.client(), &options.brokers, Some(topic))?;
    let mut assignment = TopicPartitionList::new();
    for (q, reading) in &open {
        assignment
            .add_partition_offset(topic, *q, Offset::Offset(reading.from))
            .map_err(error)?;
    }
    consumer.assign(&assignment).map_err(error)?;
    let assigned_at = Instant::now();
    for reading in open.values_mut() {
        reading.heard = assigned_at;
    }
    let mut deadline = assigned_at + REACHABILITY_TIMEOUT;
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(KafkaError::Consume {
                context: format!(
                    "{topic}: partitions {:?} not read to their ends in time",
                    open.keys()
                ),
                source: rdkafka::error::KafkaError::NoMessageReceived,
            });
        }
        for (q, reading) in open.iter_mut() {
            let LogRange { start, end } = reading.range;
            if reading.from > start && reading.heard.elapsed() > QUIET_BEFORE_MOVING_BACK {
                let back = (end - (end - reading.from) * 8).max(start);
                reading.heard = Instant::now();
                match consumer.seek(topic, *q, Offset::Offset(back), REACHABILITY_TIMEOUT) {
                    Ok(()) => {
                        tracing::debug!(
                            topic,
                            partition = q,
                            from = back,
                            "Nothing read from inside the log; reading from further back."
                        );
                        reading.from = back;
                        reached.insert(*q, back);
                        deadline = Instant::now() + REACHABILITY_TIMEOUT;
                    }
                    Err(err) => {
                        tracing::debug!(topic, partition = q, error = %err, "Could not move the reader back yet.");
                    }
                }
            }
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                deadline = Instant::now() + REACHABILITY_TIMEOUT;
                let q = message.partition();
                visit(&message);
                if let Some(reading) = open.get_mut(&q) {
                    reading.heard = Instant::now();
                    if message.offset() + 1 >= reading.range.end {
                        open.remove(&q);
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(q))) => {
                open.remove(&q);
            }
            Some(Err(source)) => return Err(error(source)),
            None => {}
        }
    }
    Ok(reached)
}

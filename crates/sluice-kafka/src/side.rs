//! Side outputs of `sluice stream` — the dead-letter topic and alert topics — written exactly
//! once per source record, on brokers without transactions too.
//!
//! The protocol (docs/DESIGN.md, "Side outputs"):
//! - what a source record at (topic, partition p, offset o) gives goes to partition
//!   `p mod N` of the side topic, with headers naming the source and an ordinal that orders the
//!   side records of one source record (the rule's position for alerts);
//! - the producer is idempotent with acks=all and no message timeout, so each side partition
//!   holds, per source partition, a gap-free prefix of what was sent, in order;
//! - the stream flushes side records before any lake commit that covers their source offsets;
//! - a lane that opens reads the tail of its side partitions ([`last_marks`]) and sends nothing
//!   at or below the last (offset, ordinal) found there.
//!
//! A zombie (a member that lost its partition but has not noticed yet) can still send side
//! records until its next commit is refused; without broker transactions nothing prevents that.
//! Every record carries its source position, so a consumer can drop such repeats.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};

use crate::admin::log_ranges;
use crate::tail::{Read, TailSearch, read_to_ends, search_back};
use crate::{ClientOptions, KafkaError};

/// Header: the topic of the source record.
pub const SOURCE_TOPIC: &str = "sluice.source.topic";
/// Header: the partition of the source record.
pub const SOURCE_PARTITION: &str = "sluice.source.partition";
/// Header: the offset of the source record.
pub const SOURCE_OFFSET: &str = "sluice.source.offset";
/// Header: the position of this side record among those of its source record.
pub const ORDINAL: &str = "sluice.ordinal";

/// The last side record sent for a source record: its offset and ordinal, in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SideMark {
    /// The source record's offset.
    pub offset: i64,
    /// The side record's ordinal among those of that source record.
    pub ordinal: u32,
}

/// What a side record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SideKind {
    /// A refused source record, copied to the dead-letter topic.
    DeadLetter,
    /// An event behind a closed window, copied to the window's late topic.
    Late,
    /// An alert.
    Alert,
    /// An event forwarded to a window's repartition topic.
    Forward,
}

impl SideKind {
    const ALL: [Self; 4] = [Self::DeadLetter, Self::Late, Self::Alert, Self::Forward];

    /// Its name as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::DeadLetter => "dead_letter",
            Self::Late => "late",
            Self::Alert => "alert",
            Self::Forward => "forward",
        }
    }
}

/// Told, for each side record acknowledged by Kafka that was sent with the instant its source
/// record was received, its kind and the time since then.
pub type OnAcknowledged = Box<dyn Fn(SideKind, Duration) + Send + Sync>;

/// One record to send to a side topic.
#[derive(Debug, Clone)]
pub struct SideRecord {
    /// What it is.
    pub kind: SideKind,
    /// The side topic.
    pub topic: String,
    /// The source record's topic.
    pub source_topic: String,
    /// The source record's partition.
    pub source_partition: i32,
    /// Where it stands among the side records of its source record in this topic.
    pub mark: SideMark,
    /// The Kafka key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub payload: Vec<u8>,
    /// Headers sent before the source headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record timestamp (epoch ms), or the time of sending.
    pub timestamp: Option<i64>,
    /// The side partition: `None` for the source partition mod the side topic's partition
    /// count (dead letters, alerts, late events); a key's partition for repartitioned records.
    pub partition: Option<i32>,
}

impl SideRecord {
    /// The headers naming its source record and its place among that record's side records,
    /// sent after [`Self::headers`].
    pub fn source_headers(&self) -> [(&'static str, String); 4] {
        [
            (SOURCE_TOPIC, self.source_topic.clone()),
            (SOURCE_PARTITION, self.source_partition.to_string()),
            (SOURCE_OFFSET, self.mark.offset.to_string()),
            (ORDINAL, self.mark.ordinal.to_string()),
        ]
    }
}

/// Remembers the first failed delivery, which [`SideProducer::flush`] reports, and tells
/// `acknowledged` how long acknowledged records took.
struct Deliveries {
    failed: Mutex<Option<(String, rdkafka::error::KafkaError)>>,
    acknowledged: Option<OnAcknowledged>,
    /// What [`Receipt`]s count from.
    epoch: Instant,
}

impl ClientContext for Deliveries {
    serves_msk_iam_tokens!();
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, receipt: usize) {
        match result {
            Err((error, message)) => {
                let mut failed = self.failed.lock().expect("not poisoned");
                failed.get_or_insert_with(|| (message.topic().to_string(), error.clone()));
            }
            Ok(_) => {
                if let (Some(told), Some((kind, received))) =
                    (&self.acknowledged, Receipt::decode(receipt, self.epoch))
                {
                    told(kind, received.elapsed());
                }
            }
        }
    }
}

/// A side record's kind and the instant its source record was received, carried through
/// librdkafka as a delivery opaque without an allocation: microseconds since the producer's
/// epoch, shifted left by two, with the kind in the low two bits; 0 for none.
struct Receipt;

impl Receipt {
    fn encode(received: Option<Instant>, kind: SideKind, epoch: Instant) -> usize {
        let Some(received) = received else {
            return 0;
        };
        let micros = received.saturating_duration_since(epoch).as_micros() as usize;
        let code = SideKind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("listed");
        // +1 so that a record received at the epoch is not "none".
        ((micros + 1) << 2) | code
    }

    fn decode(receipt: usize, epoch: Instant) -> Option<(SideKind, Instant)> {
        let micros = (receipt >> 2).checked_sub(1)?;
        let received = epoch + Duration::from_micros(micros as u64);
        Some((SideKind::ALL[receipt & 3], received))
    }
}

/// The producer of a stream's side outputs.
pub struct SideProducer {
    inner: ThreadedProducer<Deliveries>,
    partitions: HashMap<String, i32>,
}

impl SideProducer {
    /// Connects and checks that every side topic exists; `acknowledged` is told of each
    /// acknowledged record sent with its receipt. Blocking.
    pub fn connect(
        options: &ClientOptions,
        topics: &[&str],
        acknowledged: Option<OnAcknowledged>,
    ) -> Result<Self, KafkaError> {
        let inner: ThreadedProducer<Deliveries> = options
            .config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "1"),
                // Never give a record up: a timed-out record could leave a hole in a side
                // partition that the tail scan would then skip over.
                ("message.timeout.ms", "0"),
                ("queue.buffering.max.messages", "1000000"),
            ])
            .create_with_context(Deliveries {
                failed: Mutex::default(),
                acknowledged,
                epoch: Instant::now(),
            })
            .map_err(|source| KafkaError::client(&options.brokers, source))?;
        let mut partitions = HashMap::new();
        for topic in topics {
            partitions.insert(topic.to_string(), partition_count(options, topic)?);
        }
        Ok(Self { inner, partitions })
    }

    /// Queues one record, with the instant its source record was received (for the time to
    /// its acknowledgement); waits while librdkafka's queue is full. Blocking.
    pub fn send(&self, record: &SideRecord, received: Option<Instant>) -> Result<(), KafkaError> {
        let count = self.partitions[&record.topic];
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 4);
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        for (key, value) in &record.source_headers() {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let receipt = Receipt::encode(received, record.kind, self.inner.context().epoch);
        let mut base: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&record.topic, receipt)
                .payload(record.payload.as_slice())
                .partition(record.partition.unwrap_or(record.source_partition % count))
                .headers(headers);
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        if let Some(timestamp) = record.timestamp {
            base = base.timestamp(timestamp);
        }
        loop {
            match self.inner.send(base) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    base = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((source, _)) => {
                    return Err(KafkaError::Produce {
                        topic: record.topic.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Waits up to `timeout` until every queued record is acknowledged. A failed delivery is an
    /// error: the stream must stop and resume from the lake and the side topics' tails.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let flushed = self.inner.flush(timeout);
        if let Some((topic, source)) = self
            .inner
            .context()
            .failed
            .lock()
            .expect("not poisoned")
            .clone()
        {
            return Err(KafkaError::Produce { topic, source });
        }
        flushed.map_err(|source| KafkaError::Produce {
            topic: self
                .partitions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            source,
        })
    }

    /// Records queued and not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.inner.in_flight_count()
    }
}

/// The partition a record keyed `key` goes to among `partitions`: CRC-32 of the key modulo the
/// partition count, the same in every process and version.
pub fn keyed_partition(key: &[u8], partitions: i32) -> i32 {
    (crc32fast::hash(key) % partitions as u32) as i32
}

/// How many partitions `topic` has. Blocking.
pub fn partition_count(options: &ClientOptions, topic: &str) -> Result<i32, KafkaError> {
    let metadata = options.fetch_metadata(Some(topic))?;
    Ok(metadata.topics()[0].partitions().len() as i32)
}

/// For each of `partitions` of `source_topic`, the last mark that `side_topic` holds, found
/// by reading the tails of the side partitions they map to (further back until found or at
/// the log start), all side partitions at once. Blocking.
pub fn last_marks(
    options: &ClientOptions,
    side_topic: &str,
    source_topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, SideMark>, KafkaError> {
    let count = partition_count(options, side_topic)?;
    let mut wanted: HashMap<i32, Vec<i32>> = HashMap::new();
    for &partition in partitions {
        wanted.entry(partition % count).or_default().push(partition);
    }
    let found = tails(options, side_topic, source_topic, wanted)?;
    Ok(found.into_iter().map(|((_, p), mark)| (p, mark)).collect())
}

/// For each of `partitions` of `source_topic`, the last mark that each partition of
/// `side_topic` holds (a repartition topic, where a source partition's records go to every
/// partition by key). Blocking.
pub fn last_marks_per_side_partition(
    options: &ClientOptions,
    side_topic: &str,
    source_topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, HashMap<i32, SideMark>>, KafkaError> {
    let count = partition_count(options, side_topic)?;
    let wanted = (0..count).map(|q| (q, partitions.to_vec())).collect();
    let mut marks: HashMap<i32, HashMap<i32, SideMark>> = HashMap::new();
    for ((q, p), mark) in tails(options, side_topic, source_topic, wanted)? {
        marks.entry(p).or_default().insert(q, mark);
    }
    Ok(marks)
}

/// The last mark of each wanted source partition in each side partition (`wanted`: side
/// partition → source partitions), reading the side partitions' tails further back until
/// every wanted mark is found or the log start is reached.
fn tails(
    options: &ClientOptions,
    side_topic: &str,
    source_topic: &str,
    wanted: HashMap<i32, Vec<i32>>,
) -> Result<HashMap<(i32, i32), SideMark>, KafkaError> {
    let mut search = LastMarks {
        source_topic,
        found: HashMap::new(),
        wanted: &wanted,
    };
    let partitions: Vec<i32> = wanted.keys().copied().collect();
    search_back(options, side_topic, &partitions, &mut search)?;
    let LastMarks { found, .. } = search;
    Ok(found
        .into_iter()
        .filter(|((q, p), _)| wanted.get(q).is_some_and(|sources| sources.contains(p)))
        .collect())
}

/// The search of [`tails`]: the highest mark of each source partition in each side partition,
/// settled once every wanted source partition has one.
struct LastMarks<'a> {
    source_topic: &'a str,
    found: HashMap<(i32, i32), SideMark>,
    wanted: &'a HashMap<i32, Vec<i32>>,
}

impl TailSearch for LastMarks<'_> {
    fn visit(&mut self, message: &BorrowedMessage<'_>) {
        if let Some((p, mark)) = mark_of(message, self.source_topic) {
            let best = self.found.entry((message.partition(), p)).or_insert(mark);
            *best = (*best).max(mark);
        }
    }

    fn settled(&self, partition: i32) -> bool {
        self.wanted[&partition]
            .iter()
            .all(|p| self.found.contains_key(&(partition, *p)))
    }
}

/// Every source offset that `side_topic` holds records of, per partition of `source_topic`,
/// in the order found (repeats included). Reads the whole topic; for `sluice verify`. Blocking.
pub fn source_offsets(
    options: &ClientOptions,
    side_topic: &str,
    source_topic: &str,
) -> Result<HashMap<i32, Vec<i64>>, KafkaError> {
    let count = partition_count(options, side_topic)?;
    let keys: Vec<(String, i32)> = (0..count).map(|q| (side_topic.to_string(), q)).collect();
    let reads: Vec<Read> = log_ranges(options, &keys)?
        .into_iter()
        .map(|((_, partition), range)| Read {
            partition,
            from: range.start,
            range,
        })
        .collect();
    let mut offsets: HashMap<i32, Vec<i64>> = HashMap::new();
    read_to_ends(options, side_topic, &reads, |message| {
        if let Some((partition, mark)) = mark_of(message, source_topic) {
            offsets.entry(partition).or_default().push(mark.offset);
        }
    })?;
    Ok(offsets)
}

/// The source partition and mark of a side record from `source_topic`.
fn mark_of<M: Message>(message: &M, source_topic: &str) -> Option<(i32, SideMark)> {
    let headers = message.headers()?;
    let mut topic = None;
    let (mut partition, mut offset, mut ordinal) = (None, None, None);
    for header in headers.iter() {
        let value = header.value.and_then(|v| std::str::from_utf8(v).ok());
        match header.key {
            SOURCE_TOPIC => topic = value,
            SOURCE_PARTITION => partition = value.and_then(|v| v.parse().ok()),
            SOURCE_OFFSET => offset = value.and_then(|v| v.parse().ok()),
            ORDINAL => ordinal = value.and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    (topic? == source_topic).then_some(())?;
    Some((
        partition?,
        SideMark {
            offset: offset?,
            ordinal: ordinal?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_carries_the_kind_and_the_instant_to_the_microsecond() {
        let epoch = Instant::now();
        for kind in SideKind::ALL {
            for after in [
                Duration::ZERO,
                Duration::from_micros(1),
                Duration::from_secs(86_400),
            ] {
                let received = epoch + after;
                let decoded = Receipt::decode(Receipt::encode(Some(received), kind, epoch), epoch);
                assert_eq!(decoded, Some((kind, received)), "{kind:?} {after:?}");
            }
        }
        assert_eq!(Receipt::encode(None, SideKind::Alert, epoch), 0);
        assert_eq!(Receipt::decode(0, epoch), None);
    }
}

//! A plain librdkafka client for tests: produce exactly the bytes, keys, headers and partitions
//! a test needs, and read a whole topic back — independent of sluice's own Kafka code.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::helpers::brokers;

/// A record as stored in a topic.
#[derive(Debug, Clone)]
pub struct Stored {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl Stored {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// A record to produce.
pub struct Outgoing<'a> {
    pub partition: i32,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: &'a [(&'a str, &'a str)],
}

/// Produces `records` in order (acks=all, idempotent) and waits for every acknowledgement.
pub fn produce_raw(topic: &str, records: &[Outgoing<'_>]) {
    produce_raw_at(&brokers(), topic, records);
}

/// [`produce_raw`] to the broker at `brokers`.
pub fn produce_raw_at(brokers: &str, topic: &str, records: &[Outgoing<'_>]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(*value),
            });
        }
        let mut base: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(record.partition)
            .payload(record.payload)
            .headers(headers);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        producer.send(base).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Every record of `topic`: each partition read from its start past the high watermark it had
/// when the read began, then until nothing has arrived for `idle`. Fails after two minutes
/// rather than return a partition short.
pub fn read_all(topic: &str, idle: Duration) -> Vec<Stored> {
    read_all_at(&brokers(), topic, idle)
}

/// [`read_all`] from the broker at `bootstrap`.
pub fn read_all_at(bootstrap: &str, topic: &str, idle: Duration) -> Vec<Stored> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-tests-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    // Per partition, the last offset that must be read: the high watermark minus one (tansu
    // 0.6 reports the last batch's base offset + 1; the rest of that batch comes with it).
    let mut unread: BTreeMap<i32, i64> = BTreeMap::new();
    for partition in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
            .unwrap();
        if high > low {
            unread.insert(partition.id(), high - 1);
        }
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let (started, mut last) = (Instant::now(), Instant::now());
    while !unread.is_empty() || last.elapsed() < idle {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reading {topic}: partitions not read up to these offsets in 2 minutes: {unread:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last = Instant::now();
                if unread
                    .get(&message.partition())
                    .is_some_and(|until| message.offset() >= *until)
                {
                    unread.remove(&message.partition());
                }
                records.push(Stored {
                    partition: message.partition(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().unwrap_or_default().to_vec(),
                    headers: message
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            Some(Err(err)) => panic!("reading {topic}: {err}"),
            None => {}
        }
    }
    records
}

/// The high watermark that the broker at `brokers` reports for `topic`/`partition` (tansu 0.6
/// in memory: the last record batch's base offset + 1, not the log end).
pub fn watermark_high(brokers: &str, topic: &str, partition: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .unwrap();
    high
}

//! How fast a plain librdkafka consumer reads a topic here: every partition from its start to
//! its current end, records discarded. It is the ceiling `sluice stream` is measured against
//! (BENCHMARKS.md), and a quick check of what a cluster and network deliver.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use crate::admin::log_ranges;
use crate::client::{BasicContext, metadata_of};
use crate::{ClientOptions, KafkaError};

/// What a read took.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReadSpeed {
    /// Records read.
    pub records: u64,
    /// Payload bytes read (keys not counted).
    pub bytes: u64,
    /// From the first fetch to the last record.
    pub seconds: f64,
}

/// Reads `topic` from start to end with a `BaseConsumer` (no group, no commits). Blocking.
pub fn read_topic(options: &ClientOptions, topic: &str) -> Result<ReadSpeed, KafkaError> {
    let consumer = options.base_consumer(
        &[
            ("group.id", "sluice-read-speed"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ],
        BasicContext,
    )?;
    let metadata = metadata_of(consumer.client(), &options.brokers, Some(topic))?;
    let partitions: Vec<(String, i32)> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| (topic.to_string(), p.id()))
        .collect();
    let ranges = log_ranges(options, &partitions)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0u64;
    for key in &partitions {
        let range = ranges[key];
        remaining += (range.end - range.start).max(0) as u64;
        assignment
            .add_partition_offset(topic, key.1, Offset::Beginning)
            .map_err(|source| consume_error(topic, source))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|source| consume_error(topic, source))?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    while records < remaining {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(message)) => {
                records += 1;
                bytes += message.payload_len() as u64;
            }
            Some(Err(source)) => return Err(consume_error(topic, source)),
            None => {
                return Err(KafkaError::Consume {
                    context: format!(
                        "read {topic}: nothing for 10 s after {records} of {remaining} records"
                    ),
                    source: rdkafka::error::KafkaError::NoMessageReceived,
                });
            }
        }
    }
    Ok(ReadSpeed {
        records,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn consume_error(topic: &str, source: rdkafka::error::KafkaError) -> KafkaError {
    KafkaError::Consume {
        context: format!("read {topic}"),
        source,
    }
}
